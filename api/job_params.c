/* job_params.c: each job kind's field spec, defaults, cross-field checks and canonical
 * JSON (see job_params.h). */
#include "job_params.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "learner.h"
#include "lrsched.h"
#include "models/models.h"

#define P(member) offsetof(job_params, member)
#define WORKERS JOB_WORKERS_FIELD(job_params, workers, workers_set)

/* In sched_kind's order: the parsed index is the engine's schedule. */
static const char *const schedule_names[] = {"sgdr", "constant", "1cycle", NULL};
/* The recipe's from-scratch fit (recipe_opts.one_cycle): the index is one_cycle. */
static const char *const recipe_schedule_names[] = {"sgdr", "1cycle", NULL};

static const spec_field lr_find_spec[] = {
    {.name = "start_lr", .type = SPEC_NUMBER, .min = 1e-12, .max = 100,
     .offset = P(lr_find.start_lr)},
    {.name = "end_lr", .type = SPEC_NUMBER, .min = 1e-12, .max = 1000,
     .offset = P(lr_find.end_lr)},
    {.name = "num_it", .type = SPEC_INT, .min = 0, .max = 100000, .offset = P(lr_find.num_it)},
    WORKERS,
    {0},
};

static const spec_field early_stop_spec[] = {
    {.name = "patience", .type = SPEC_INT, .required = 1, .min = 1, .max = 1000,
     .offset = P(fit.patience)},
    {0},
};

static const spec_field fit_spec[] = {
    {.name = "lrs", .type = SPEC_NUMBERS, .required = 1, .min = 1e-12, .max = 100,
     .min_n = 1, .max_n = MODEL_N_GROUPS, .offset = P(fit.lrs)},
    {.name = "n_cycle", .type = SPEC_INT, .required = 1, .min = 1, .max = 64,
     .offset = P(fit.n_cycle)},
    {.name = "cycle_len", .type = SPEC_INT, .min = 1, .max = 1000, .offset = P(fit.cycle_len)},
    {.name = "cycle_mult", .type = SPEC_INT, .min = 1, .max = 16, .offset = P(fit.cycle_mult)},
    {.name = "wd", .type = SPEC_NUMBER, .min = 0, .max = 1, .offset = P(fit.wd)},
    {.name = "schedule", .type = SPEC_ENUM, .values = schedule_names,
     .offset = P(fit.schedule)},
    {.name = "snapshots", .type = SPEC_BOOL, .offset = P(fit.snapshots)},
    {.name = "early_stop", .type = SPEC_OBJECT, .fields = early_stop_spec},
    {.name = "stop_at_worse_cycle", .type = SPEC_BOOL, .offset = P(fit.stop_at_worse_cycle)},
    {.name = "time_limit_minutes", .type = SPEC_NUMBER, .min = 0, .max = 1e6,
     .offset = P(fit.time_limit_minutes)},
    WORKERS,
    {0},
};

static const spec_field freeze_spec[] = {
    {.name = "to", .type = SPEC_INT, .required = 1, .min = 0, .max = MODEL_N_GROUPS,
     .offset = P(freeze_to)},
    {0},
};
static const spec_field empty_spec[] = {{0}};
static const spec_field precompute_spec[] = {
    {.name = "on", .type = SPEC_BOOL, .required = 1, .offset = P(precompute_on)},
    {0},
};
static const spec_field resize_spec[] = {
    {.name = "sz", .type = SPEC_INT, .required = 1, .min = 8, .max = 1024,
     .offset = P(resize_sz)},
    {0},
};
static const spec_field tta_spec[] = {
    {.name = "n_aug", .type = SPEC_INT, .min = 1, .max = TTA_MAX_AUG, .offset = P(tta_n_aug)},
    WORKERS,
    {0},
};
static const spec_field recipe_spec[] = {
    {.name = "max_epochs", .type = SPEC_INT, .min = 1, .max = 1000,
     .offset = P(recipe.max_epochs)},
    {.name = "close_to_imagenet", .type = SPEC_BOOL, .offset = P(recipe.close_to_imagenet)},
    {.name = "n_aug", .type = SPEC_INT, .min = 1, .max = TTA_MAX_AUG,
     .offset = P(recipe.n_aug)},
    {.name = "budget_minutes", .type = SPEC_NUMBER, .min = 0, .max = 1e6,
     .offset = P(recipe.budget_minutes)},
    {.name = "schedule", .type = SPEC_ENUM, .values = recipe_schedule_names,
     .offset = P(recipe.one_cycle)},
    WORKERS,
    {0},
};
static const spec_field predict_test_spec[] = {
    {.name = "tta", .type = SPEC_BOOL, .offset = P(predict_tta)},
    WORKERS,
    {0},
};

static const spec_field *const kind_specs[JOB_KIND_COUNT] = {
    [JOB_LR_FIND] = lr_find_spec,       [JOB_FIT] = fit_spec,
    [JOB_FREEZE] = freeze_spec,         [JOB_UNFREEZE] = empty_spec,
    [JOB_PRECOMPUTE] = precompute_spec, [JOB_RESIZE] = resize_spec,
    [JOB_TTA] = tta_spec,               [JOB_RECIPE] = recipe_spec,
    [JOB_PREDICT_TEST] = predict_test_spec,
};

void job_params_defaults(job_kind kind, job_params *out)
{
    *out = (job_params){
        .kind = kind,
        .lr_find = {.start_lr = 1e-5, .end_lr = 10},
        .fit = {.cycle_len = 1, .cycle_mult = 1, .schedule = SCHED_SGDR},
        .tta_n_aug = 4,
        .recipe = {.max_epochs = 7, .n_aug = 4},
        .workers = 1,
    };
}

static int fail(char *field, size_t fieldlen, const char *name, char *detail,
                size_t detaillen, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fail(char *field, size_t fieldlen, const char *name, char *detail,
                size_t detaillen, const char *fmt, ...)
{
    va_list ap;
    snprintf(field, fieldlen, "%s", name);
    va_start(ap, fmt);
    vsnprintf(detail, detaillen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* The fit's rules across fields. The schedule's are the engine's (cycles, their lengths,
 * the epochs they add up to), judged by the same check, so that a plan the fit would
 * refuse is refused here; its message starts with the field at fault. */
static int fit_check(const job_fit *f, char *field, size_t fieldlen, char *detail,
                     size_t detaillen)
{
    if (f->lrs.n != 1 && f->lrs.n != MODEL_N_GROUPS)
        return fail(field, fieldlen, "lrs", detail, detaillen,
                    "lrs must be one number or one per layer group (%d)", MODEL_N_GROUPS);
    if (f->wd >= 1)
        return fail(field, fieldlen, "wd", detail, detaillen, "wd must be below 1, got %g",
                    f->wd);
    sched_plan plan;
    char serr[160];
    sched_plan_defaults(&plan, 1);
    plan.kind = (sched_kind)f->schedule;
    plan.n_cycle = (int)f->n_cycle;
    plan.cycle_len = (int)f->cycle_len;
    plan.cycle_mult = (int)f->cycle_mult;
    if (sched_plan_check(&plan, serr, sizeof serr) == 0)
        return 0;
    snprintf(field, fieldlen, "%.*s", (int)strcspn(serr, ":"), serr);
    snprintf(detail, detaillen, "%s", serr);
    return -EINVAL;
}

int job_params_parse(job_kind kind, json_t *body, job_params *out, char *field,
                     size_t fieldlen, char *detail, size_t detaillen)
{
    json_t *empty = NULL;
    int rc;
    field[0] = '\0';
    if ((unsigned)kind >= JOB_KIND_COUNT) {
        snprintf(detail, detaillen, "unknown job kind %d", (int)kind);
        return -EINVAL;
    }
    job_params_defaults(kind, out);
    if (!body)
        body = empty = json_object();
    rc = spec_parse(kind_specs[kind], body, out, field, fieldlen, detail, detaillen);
    json_decref(empty);
    if (rc)
        return rc;
    if (kind == JOB_LR_FIND && out->lr_find.end_lr <= out->lr_find.start_lr)
        return fail(field, fieldlen, "end_lr", detail, detaillen,
                    "end_lr (%g) must be above start_lr (%g)", out->lr_find.end_lr,
                    out->lr_find.start_lr);
    if (kind == JOB_FIT)
        return fit_check(&out->fit, field, fieldlen, detail, detaillen);
    return 0;
}

static json_t *fit_json(const job_fit *f)
{
    json_t *lrs;
    if (f->lrs.was_array) {
        lrs = json_array();
        for (int i = 0; lrs && i < f->lrs.n; i++)
            json_array_append_new(lrs, json_real(f->lrs.v[i]));
    } else {
        lrs = json_real(f->lrs.v[0]);
    }
    json_t *o = json_pack("{so sI sI sI sf ss sb sb sf}", "lrs", lrs, "n_cycle",
                          (json_int_t)f->n_cycle, "cycle_len", (json_int_t)f->cycle_len,
                          "cycle_mult", (json_int_t)f->cycle_mult, "wd", f->wd, "schedule",
                          schedule_names[f->schedule], "snapshots", f->snapshots,
                          "stop_at_worse_cycle", f->stop_at_worse_cycle,
                          "time_limit_minutes", f->time_limit_minutes);
    if (o && f->patience > 0 &&
        json_object_set_new(o, "early_stop",
                            json_pack("{sI}", "patience", (json_int_t)f->patience))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *kind_json(const job_params *p)
{
    const job_recipe *rc = &p->recipe;
    switch (p->kind) {
    case JOB_LR_FIND:
        return json_pack("{sf sf sI}", "start_lr", p->lr_find.start_lr, "end_lr",
                         p->lr_find.end_lr, "num_it", (json_int_t)p->lr_find.num_it);
    case JOB_FIT:
        return fit_json(&p->fit);
    case JOB_FREEZE:
        return json_pack("{sI}", "to", (json_int_t)p->freeze_to);
    case JOB_UNFREEZE:
        return json_object();
    case JOB_PRECOMPUTE:
        return json_pack("{sb}", "on", p->precompute_on);
    case JOB_RESIZE:
        return json_pack("{sI}", "sz", (json_int_t)p->resize_sz);
    case JOB_TTA:
        return json_pack("{sI}", "n_aug", (json_int_t)p->tta_n_aug);
    case JOB_RECIPE:
        return json_pack("{sI sb sI sf ss}", "max_epochs", (json_int_t)rc->max_epochs,
                         "close_to_imagenet", rc->close_to_imagenet, "n_aug",
                         (json_int_t)rc->n_aug, "budget_minutes", rc->budget_minutes,
                         "schedule", recipe_schedule_names[rc->one_cycle ? 1 : 0]);
    case JOB_PREDICT_TEST:
        return json_pack("{sb}", "tta", p->predict_tta);
    case JOB_KIND_COUNT:
        break;
    }
    return NULL;
}

void job_params_run_workers(job_params *p, int64_t run_workers)
{
    if (p->workers_set || run_workers < 1)
        return;
    for (const spec_field *f = kind_specs[p->kind]; f && f->name; f++)
        if (!strcmp(f->name, "workers"))
            p->workers = run_workers;
}

json_t *job_params_json(const job_params *p)
{
    json_t *o = kind_json(p);
    if (o && p->workers > 1 &&
        json_object_set_new(o, "workers", json_integer((json_int_t)p->workers))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void job_fit_opts(const job_fit *p, fit_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_lrs = p->lrs.n;
    for (int i = 0; i < p->lrs.n && i < LEARNER_MAX_GROUPS; i++)
        o->lrs[i] = p->lrs.v[i];
    o->n_cycle = (int)p->n_cycle;
    o->cycle_len = (int)p->cycle_len;
    o->cycle_mult = (int)p->cycle_mult;
    o->wd = p->wd;
    o->schedule = (sched_kind)p->schedule;
    o->snapshots = p->snapshots;
    o->early_stop_patience = (int)p->patience;
    o->stop_at_worse_cycle = p->stop_at_worse_cycle;
    o->time_limit_s = p->time_limit_minutes * 60.0;
}
