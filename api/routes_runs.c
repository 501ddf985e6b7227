/* routes_runs.c: /runs: create, list, read, delete; the recipe's operations queued as jobs
 * (lr-find, fit, freeze, unfreeze, precompute, resize, tta, recipe, predict-test); the
 * synchronous single-image predict; curves (lr-finds, metrics, epochs), snapshots,
 * weights and the event stream. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "learner.h"
#include "models/models.h"
#include "routes.h"
#include "sse.h"
#include "store.h"

#define MAX_SEED 9007199254740991.0 /* 2^53 - 1: exact in every JSON reader */

static const char *const arch_names[] = {"resnet18", "resnet34", "resnet_small", NULL};
static const char *const tfms_names[] = {"side_on", "top_down", "none", "flip", NULL};
/* fastai: concat pooling, BatchNorm, dropout and xtra_fc layers (fast.ai's custom head for
 * a pretrained body); plain: the architecture's own average pool and linear layer. */
static const char *const head_names[] = {"fastai", "plain", NULL};
/* sgd: momentum 0.9 with L2 weight decay (fast.ai 0.7); adamw: Adam with decoupled weight
 * decay, betas 0.9 and 0.99 (learner_config.opt). */
static const char *const opt_names[] = {"sgd", "adamw", NULL};
/* "auto": bf16 where this CPU runs it natively, else fp32; the run's config keeps which. */
static const char *const precision_names[] = {"fp32", "bf16", "auto", NULL};
/* In sched_kind's order: the parsed index is the engine's schedule. */
static const char *const schedule_names[] = {"sgdr", "constant", "1cycle", NULL};

/* Answers 404 unless run r->ids[0] exists. */
static int run_exists(api_req *r)
{
    json_t *run = NULL;
    char what[48];
    int rc = store_run_get(r->srv->store, r->ids[0], &run);
    json_decref(run);
    if (rc) {
        snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
        reply_store_error(r, rc, what);
    }
    return rc;
}

/* ---- POST /runs ------------------------------------------------------------------------ */

typedef struct run_body {
    spec_ref dataset;
    int arch;
    int64_t pretrained;
    int64_t sz, bs;
    int tfms;
    double max_zoom;
    int precompute;
    spec_numbers ps, xtra_fc;
    int head, opt;
    int multi_label, has_multi_label, has_sz;
    double label_smoothing;
    int64_t seed;
    int precision;
} run_body;

static const spec_field run_spec[] = {
    {.name = "dataset", .type = SPEC_REF, .required = 1, .offset = offsetof(run_body, dataset)},
    {.name = "arch", .type = SPEC_ENUM, .required = 1, .values = arch_names,
     .offset = offsetof(run_body, arch)},
    {.name = "pretrained", .type = SPEC_INT, .min = 1, .max = MAX_SEED,
     .offset = offsetof(run_body, pretrained)},
    {.name = "sz", .type = SPEC_INT, .min = 8, .max = 1024, .offset = offsetof(run_body, sz),
     .present = SPEC_PRESENT(run_body, has_sz)},
    {.name = "bs", .type = SPEC_INT, .min = 1, .max = 4096, .offset = offsetof(run_body, bs)},
    {.name = "tfms", .type = SPEC_ENUM, .values = tfms_names,
     .offset = offsetof(run_body, tfms)},
    {.name = "max_zoom", .type = SPEC_NUMBER, .min = 1, .max = 4,
     .offset = offsetof(run_body, max_zoom)},
    {.name = "precompute", .type = SPEC_BOOL, .offset = offsetof(run_body, precompute)},
    {.name = "head", .type = SPEC_ENUM, .values = head_names,
     .offset = offsetof(run_body, head)},
    {.name = "opt", .type = SPEC_ENUM, .values = opt_names, .offset = offsetof(run_body, opt)},
    {.name = "ps", .type = SPEC_NUMBERS, .min = 0, .max = 0.99, .min_n = 1, .max_n = 2,
     .offset = offsetof(run_body, ps)},
    {.name = "xtra_fc", .type = SPEC_NUMBERS, .min = 1, .max = 8192, .min_n = 0,
     .max_n = 4, .integral = 1, .offset = offsetof(run_body, xtra_fc)},
    {.name = "multi_label", .type = SPEC_BOOL, .offset = offsetof(run_body, multi_label),
     .present = SPEC_PRESENT(run_body, has_multi_label)},
    {.name = "label_smoothing", .type = SPEC_NUMBER, .min = 0, .max = 0.99,
     .offset = offsetof(run_body, label_smoothing)},
    {.name = "seed", .type = SPEC_INT, .min = 0, .max = MAX_SEED,
     .offset = offsetof(run_body, seed)},
    {.name = "precision", .type = SPEC_ENUM, .values = precision_names,
     .offset = offsetof(run_body, precision)},
    {0},
};

void route_run_create(api_req *r)
{
    run_body b = {.bs = 64, .tfms = 0, .max_zoom = 1.1, .ps = {.n = 2, .v = {0.25, 0.5}},
                  .xtra_fc = {.n = 1, .v = {512}}, .seed = 42};
    json_t *ds = NULL, *model = NULL, *config = NULL, *ps = NULL, *xtra = NULL, *run = NULL;
    int64_t ds_id, run_id;
    char loc[96];
    int rc;

    if (req_need_backend(r) || req_parse(r, run_spec, &b))
        return;
    ds_id = b.dataset.id;
    if (b.dataset.name) {
        rc = store_dataset_find(r->srv->store, b.dataset.name, &ds_id);
        if (rc == -ENOENT) {
            reply_problem(r, 404, PROBLEM_NOT_FOUND, "dataset", "dataset \"%s\" does not exist",
                          b.dataset.name);
            goto out;
        }
        if (rc) {
            reply_store_error(r, rc, "dataset");
            goto out;
        }
    }
    rc = store_dataset_get(r->srv->store, ds_id, &ds);
    if (rc == -ENOENT) {
        reply_problem(r, 404, PROBLEM_NOT_FOUND, "dataset", "dataset %lld does not exist",
                      (long long)ds_id);
        goto out;
    }
    if (rc) {
        reply_store_error(r, rc, "dataset");
        goto out;
    }
    if (b.pretrained) {
        const char *march;
        rc = store_model_get(r->srv->store, b.pretrained, &model);
        if (rc == -ENOENT) {
            reply_problem(r, 404, PROBLEM_NOT_FOUND, "pretrained", "model %lld does not exist",
                          (long long)b.pretrained);
            goto out;
        }
        if (rc) {
            reply_store_error(r, rc, "model");
            goto out;
        }
        march = json_string_value(json_object_get(model, "arch"));
        if (!march || strcmp(march, arch_names[b.arch]) != 0) {
            reply_problem(r, 400, PROBLEM_INVALID, "pretrained",
                          "model %lld holds %s weights, not %s", (long long)b.pretrained,
                          march ? march : "unknown", arch_names[b.arch]);
            goto out;
        }
    }
    /* What learner_create would refuse when the first job runs, refused now. */
    if (b.precompute && !b.pretrained) {
        reply_problem(r, 400, PROBLEM_INVALID, "precompute",
                      "precompute needs a pretrained body: without one the body trains, and "
                      "there are no fixed activations to cache");
        goto out;
    }
    json_t *info = json_object_get(ds, "info");
    json_t *ncl = json_object_get(info, "n_classes");
    if (json_is_integer(ncl) && json_integer_value(ncl) < 2 &&
        !json_is_true(json_object_get(info, "multi_label"))) {
        reply_problem(r, 400, PROBLEM_INVALID, "dataset",
                      "dataset %lld has %lld class%s; a classifier needs at least 2",
                      (long long)ds_id, (long long)json_integer_value(ncl),
                      json_integer_value(ncl) == 1 ? "" : "es");
        goto out;
    }
    if (!b.has_sz)
        b.sz = strcmp(arch_names[b.arch], "resnet_small") == 0 ? 28 : 224;
    if (!b.has_multi_label)
        b.multi_label = json_is_true(json_object_get(info, "multi_label"));
    if (b.label_smoothing > 0 && b.multi_label) {
        reply_problem(r, 400, PROBLEM_INVALID, "label_smoothing",
                      "label_smoothing is for single-label data; this run is multi-label");
        goto out;
    }
    precision prec;
    if (precision_parse(precision_names[b.precision], &prec) == -ENOTSUP) {
        reply_problem(r, 400, PROBLEM_INVALID, "precision",
                      "precision bf16 needs a CPU with AVX512_BF16; oneDNN runs %s here "
                      "(use fp32, or auto to take bf16 only where it is native)",
                      precision_onednn_isa());
        goto out;
    }
    if (b.ps.n == 1) {
        b.ps.v[1] = b.ps.v[0];
        b.ps.n = 2;
    }
    ps = json_pack("[f, f]", b.ps.v[0], b.ps.v[1]);
    xtra = json_array();
    for (int i = 0; xtra && i < b.xtra_fc.n; i++)
        json_array_append_new(xtra, json_integer((json_int_t)b.xtra_fc.v[i]));
    /* Every default filled in, so the run's config says exactly what it trains with. */
    config = (ps && xtra) ? json_pack("{s:I, s:s, s:I, s:I, s:s, s:f, s:b, s:O, s:O, s:b, s:I}",
                                      "dataset", (json_int_t)ds_id, "arch",
                                      arch_names[b.arch], "sz", (json_int_t)b.sz, "bs",
                                      (json_int_t)b.bs, "tfms", tfms_names[b.tfms],
                                      "max_zoom", b.max_zoom, "precompute", b.precompute,
                                      "ps", ps, "xtra_fc", xtra, "multi_label",
                                      b.multi_label, "seed", (json_int_t)b.seed)
                          : NULL;
    if (config && b.pretrained)
        json_object_set_new(config, "pretrained", json_integer((json_int_t)b.pretrained));
    if (config) {
        json_object_set_new(config, "head", json_string(head_names[b.head]));
        json_object_set_new(config, "opt", json_string(opt_names[b.opt]));
        json_object_set_new(config, "label_smoothing", json_real(b.label_smoothing));
        json_object_set_new(config, "precision", json_string(precision_name(prec)));
    }
    if (!config) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
        goto out;
    }
    rc = store_run_create(r->srv->store, ds_id, b.pretrained, arch_names[b.arch], config,
                          &run_id);
    if (rc) {
        reply_store_error(r, rc, "run");
        goto out;
    }
    rc = store_run_get(r->srv->store, run_id, &run);
    if (rc) {
        reply_store_error(r, rc, "run");
        goto out;
    }
    snprintf(loc, sizeof loc, API_PREFIX "/runs/%lld", (long long)run_id);
    reply_created(r, 201, loc, run);
    run = NULL;
out:
    json_decref(run);
    json_decref(config);
    json_decref(ps);
    json_decref(xtra);
    json_decref(model);
    json_decref(ds);
}

void route_run_list(api_req *r)
{
    reply_store_page(r, store_run_list, "runs");
}

void route_run_get(api_req *r)
{
    reply_store_row(r, store_run_get, "run");
}

void route_run_delete(api_req *r)
{
    char what[48];
    int rc;
    if (req_need_backend(r))
        return;
    rc = jobs_delete_run(r->srv->jobs, r->ids[0]);
    if (rc == -EBUSY) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL,
                      "run %lld has a queued or running job; cancel it first",
                      (long long)r->ids[0]);
        return;
    }
    if (rc) {
        snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
        reply_store_error(r, rc, what);
        return;
    }
    sse_hub_wake(r->srv->hub);
    reply_response(r, 204, MHD_create_response_from_buffer(0, (void *)"",
                                                            MHD_RESPMEM_PERSISTENT));
}

/* ---- operations queued as jobs --------------------------------------------------------- */

static void submit(api_req *r, job_kind kind)
{
    int64_t job_id;
    json_t *job = NULL;
    char loc[96], what[48];
    int rc;

    snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
    rc = jobs_submit(r->srv->jobs, r->ids[0], kind, r->json, &job_id);
    if (rc) {
        reply_store_error(r, rc, what);
        return;
    }
    rc = store_job_get(r->srv->store, job_id, &job);
    if (rc) {
        reply_store_error(r, rc, "job");
        return;
    }
    snprintf(loc, sizeof loc, API_PREFIX "/jobs/%lld", (long long)job_id);
    reply_created(r, 202, loc, job);
}

typedef struct lr_find_body {
    double start_lr, end_lr;
    int64_t num_it;
} lr_find_body;

static const spec_field lr_find_spec[] = {
    {.name = "start_lr", .type = SPEC_NUMBER, .min = 1e-12, .max = 100,
     .offset = offsetof(lr_find_body, start_lr)},
    {.name = "end_lr", .type = SPEC_NUMBER, .min = 1e-12, .max = 1000,
     .offset = offsetof(lr_find_body, end_lr)},
    {.name = "num_it", .type = SPEC_INT, .min = 0, .max = 100000,
     .offset = offsetof(lr_find_body, num_it)},
    {0},
};

void route_run_lr_find(api_req *r)
{
    lr_find_body b = {.start_lr = 1e-5, .end_lr = 10};
    if (req_need_backend(r) || req_parse(r, lr_find_spec, &b))
        return;
    if (b.end_lr <= b.start_lr) {
        reply_problem(r, 400, PROBLEM_INVALID, "end_lr",
                      "end_lr (%g) must be above start_lr (%g)", b.end_lr, b.start_lr);
        return;
    }
    submit(r, JOB_LR_FIND);
}

typedef struct fit_body {
    spec_numbers lrs;
    int64_t n_cycle, cycle_len, cycle_mult, patience;
    double wd, time_limit_minutes;
    int schedule, snapshots, stop_at_worse_cycle;
} fit_body;

static const spec_field early_stop_spec[] = {
    {.name = "patience", .type = SPEC_INT, .required = 1, .min = 1, .max = 1000,
     .offset = offsetof(fit_body, patience)},
    {0},
};

static const spec_field fit_spec[] = {
    {.name = "lrs", .type = SPEC_NUMBERS, .required = 1, .min = 1e-12, .max = 100,
     .min_n = 1, .max_n = MODEL_N_GROUPS, .offset = offsetof(fit_body, lrs)},
    {.name = "n_cycle", .type = SPEC_INT, .required = 1, .min = 1, .max = 64,
     .offset = offsetof(fit_body, n_cycle)},
    {.name = "cycle_len", .type = SPEC_INT, .min = 1, .max = 1000,
     .offset = offsetof(fit_body, cycle_len)},
    {.name = "cycle_mult", .type = SPEC_INT, .min = 1, .max = 16,
     .offset = offsetof(fit_body, cycle_mult)},
    {.name = "wd", .type = SPEC_NUMBER, .min = 0, .max = 1, .offset = offsetof(fit_body, wd)},
    {.name = "schedule", .type = SPEC_ENUM, .values = schedule_names,
     .offset = offsetof(fit_body, schedule)},
    {.name = "snapshots", .type = SPEC_BOOL, .offset = offsetof(fit_body, snapshots)},
    {.name = "early_stop", .type = SPEC_OBJECT, .fields = early_stop_spec},
    {.name = "stop_at_worse_cycle", .type = SPEC_BOOL,
     .offset = offsetof(fit_body, stop_at_worse_cycle)},
    {.name = "time_limit_minutes", .type = SPEC_NUMBER, .min = 0, .max = 1e6,
     .offset = offsetof(fit_body, time_limit_minutes)},
    {0},
};

void route_run_fit(api_req *r)
{
    fit_body b = {.cycle_len = 1, .cycle_mult = 1};
    if (req_need_backend(r) || req_parse(r, fit_spec, &b))
        return;
    if (b.lrs.n != 1 && b.lrs.n != MODEL_N_GROUPS) {
        reply_problem(r, 400, PROBLEM_INVALID, "lrs",
                      "lrs must be one number or one per layer group (%d)", MODEL_N_GROUPS);
        return;
    }
    if (b.wd >= 1) {
        reply_problem(r, 400, PROBLEM_INVALID, "wd", "wd must be below 1, got %g", b.wd);
        return;
    }
    /* The schedule's rules are the engine's (cycles, their lengths, the epochs they add up
     * to): judged here by the same check, so that a plan the fit would refuse is a 400 and
     * not a failed job. Its message starts with the field at fault. */
    sched_plan plan;
    char serr[160], field[32];
    sched_plan_defaults(&plan, 1);
    plan.kind = (sched_kind)b.schedule;
    plan.n_cycle = (int)b.n_cycle;
    plan.cycle_len = (int)b.cycle_len;
    plan.cycle_mult = (int)b.cycle_mult;
    if (sched_plan_check(&plan, serr, sizeof serr)) {
        snprintf(field, sizeof field, "%.*s", (int)strcspn(serr, ":"), serr);
        reply_problem(r, 400, PROBLEM_INVALID, field, "%s", serr);
        return;
    }
    submit(r, JOB_FIT);
}

typedef struct int_body {
    int64_t v;
} int_body;
typedef struct bool_body {
    int v;
} bool_body;

static const spec_field freeze_spec[] = {
    {.name = "to", .type = SPEC_INT, .required = 1, .min = 0, .max = 3,
     .offset = offsetof(int_body, v)},
    {0},
};
static const spec_field empty_spec[] = {{0}};
static const spec_field precompute_spec[] = {
    {.name = "on", .type = SPEC_BOOL, .required = 1, .offset = offsetof(bool_body, v)},
    {0},
};
static const spec_field resize_spec[] = {
    {.name = "sz", .type = SPEC_INT, .required = 1, .min = 8, .max = 1024,
     .offset = offsetof(int_body, v)},
    {0},
};
static const spec_field tta_spec[] = {
    {.name = "n_aug", .type = SPEC_INT, .min = 1, .max = TTA_MAX_AUG,
     .offset = offsetof(int_body, v)},
    {0},
};
static const spec_field predict_test_spec[] = {
    {.name = "tta", .type = SPEC_BOOL, .offset = offsetof(bool_body, v)},
    {0},
};

typedef struct recipe_body {
    int64_t max_epochs, n_aug;
    int close_to_imagenet, schedule;
    double budget_minutes;
} recipe_body;
/* The from-scratch fit's schedule (recipe_opts.one_cycle). */
static const char *const recipe_schedule_names[] = {"sgdr", "1cycle", NULL};
static const spec_field recipe_spec[] = {
    {.name = "max_epochs", .type = SPEC_INT, .min = 1, .max = 1000,
     .offset = offsetof(recipe_body, max_epochs)},
    {.name = "close_to_imagenet", .type = SPEC_BOOL,
     .offset = offsetof(recipe_body, close_to_imagenet)},
    {.name = "n_aug", .type = SPEC_INT, .min = 1, .max = TTA_MAX_AUG,
     .offset = offsetof(recipe_body, n_aug)},
    {.name = "budget_minutes", .type = SPEC_NUMBER, .min = 0, .max = 1e6,
     .offset = offsetof(recipe_body, budget_minutes)},
    {.name = "schedule", .type = SPEC_ENUM, .values = recipe_schedule_names,
     .offset = offsetof(recipe_body, schedule)},
    {0},
};

void route_run_freeze(api_req *r)
{
    int_body b = {0};
    if (!req_need_backend(r) && !req_parse(r, freeze_spec, &b))
        submit(r, JOB_FREEZE);
}

void route_run_unfreeze(api_req *r)
{
    int_body b = {0};
    if (!req_need_backend(r) && !req_parse(r, empty_spec, &b))
        submit(r, JOB_UNFREEZE);
}

/* Answers 409 when the body is not frozen, which precompute needs. The run's saved state
 * is the learner's only while no job of the run is queued or running (a queued freeze or
 * unfreeze would change it, a recipe in ways known only when it runs); then the job judges
 * for itself. A run no job has finished yet has the state learner_create gives it: the
 * body frozen only when pretrained. */
static int precompute_conflict(api_req *r)
{
    json_t *run = NULL, *st;
    char what[48];
    int rc = store_run_get(r->srv->store, r->ids[0], &run);
    if (rc) {
        snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
        reply_store_error(r, rc, what);
        return rc;
    }
    st = json_object_get(run, "state");
    if (json_is_null(json_object_get(run, "current_job"))) {
        json_t *ft = json_object_get(st, "freeze_to"), *ng = json_object_get(st, "n_groups");
        int head = (json_is_integer(ng) ? (int)json_integer_value(ng) : MODEL_N_GROUPS) - 1;
        int frozen = json_is_integer(ft) ? json_integer_value(ft) == head
                                         : json_is_integer(json_object_get(run, "model"));
        if (!frozen) {
            reply_problem(r, 409, PROBLEM_CONFLICT, "on",
                          "precompute needs the body frozen (freeze_to %d); run %lld has "
                          "freeze_to %lld: freeze it first", head, (long long)r->ids[0],
                          json_is_integer(ft) ? (long long)json_integer_value(ft) : 0ll);
            rc = -EBUSY;
        }
    }
    json_decref(run);
    return rc;
}

void route_run_precompute(api_req *r)
{
    bool_body b = {0};
    if (req_need_backend(r) || req_parse(r, precompute_spec, &b))
        return;
    if (b.v && precompute_conflict(r))
        return;
    submit(r, JOB_PRECOMPUTE);
}

void route_run_resize(api_req *r)
{
    int_body b = {0};
    if (!req_need_backend(r) && !req_parse(r, resize_spec, &b))
        submit(r, JOB_RESIZE);
}

void route_run_tta(api_req *r)
{
    int_body b = {4};
    if (!req_need_backend(r) && !req_parse(r, tta_spec, &b))
        submit(r, JOB_TTA);
}

void route_run_recipe(api_req *r)
{
    recipe_body b = {0};
    if (!req_need_backend(r) && !req_parse(r, recipe_spec, &b))
        submit(r, JOB_RECIPE);
}

void route_run_predict_test(api_req *r)
{
    bool_body b = {0};
    if (!req_need_backend(r) && !req_parse(r, predict_test_spec, &b))
        submit(r, JOB_PREDICT_TEST);
}

/* ---- POST /runs/{id}/predict ----------------------------------------------------------- */

void route_run_predict(api_req *r)
{
    int64_t tta;
    json_t *out = NULL;
    char err[256] = "", what[48];
    int rc;

    if (req_need_backend(r) || req_query_int(r, "tta", 0, 1, 0, &tta))
        return;
    if (r->len == 0) {
        reply_problem(r, 400, PROBLEM_INVALID, NULL, "the body must hold a PNG or JPEG image");
        return;
    }
    rc = jobs_predict_image(r->srv->jobs, r->ids[0], r->buf, r->len, (int)tta, &out, err,
                            sizeof err);
    if (rc == -EINVAL) {
        reply_problem(r, 400, PROBLEM_INVALID, NULL, "the image cannot be used: %s", err);
        return;
    }
    if (rc == -EAGAIN) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL,
                      "run %lld has no trained weights yet; run a job first",
                      (long long)r->ids[0]);
        return;
    }
    if (rc == -ESTALE) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL, "run %lld: %s", (long long)r->ids[0],
                      err);
        return;
    }
    if (rc) {
        snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
        if (rc == -ENOENT || !err[0])
            reply_store_error(r, rc, what);
        else
            reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "predict failed: %s", err);
        return;
    }
    reply_json(r, 200, out);
}

/* ---- curves and files -------------------------------------------------------------------- */

void route_run_lr_finds(api_req *r)
{
    int limit;
    const char *token;
    store_page pg;
    json_t *out = NULL;
    int rc;
    if (req_need_backend(r) || req_page(r, &limit, &token) || run_exists(r))
        return;
    pg.limit = limit;
    pg.page_token = token;
    rc = store_lr_find_list(r->srv->store, r->ids[0], &pg, &out);
    if (rc == -EINVAL) {
        reply_problem(r, 400, PROBLEM_INVALID, "page_token", "page_token is not valid");
        return;
    }
    if (rc) {
        reply_store_error(r, rc, "lr-finds");
        return;
    }
    reply_json(r, 200, out);
}

void route_run_metrics(api_req *r)
{
    int64_t after, limit;
    const char *key = req_query(r, "key");
    json_t *out = NULL;
    int rc;
    if (req_need_backend(r) ||
        req_query_int(r, "after_step", -1, INT64_MAX / 2, -1, &after) ||
        req_query_int(r, "limit", 1, STORE_METRICS_MAX, 1000, &limit))
        return;
    if (key && (!key[0] || strlen(key) > 64)) {
        reply_problem(r, 400, PROBLEM_INVALID, "key", "key must be 1 to 64 characters");
        return;
    }
    /* Pages are cached per store generation: while a fit runs, every client polling
     * the same page between two commits gets one serialisation. A hit also proves the
     * run exists (deleting it is a commit). */
    char ckey[160];
    uint64_t gen = store_generation(r->srv->store);
    snprintf(ckey, sizeof ckey, "metrics %lld %lld %lld %s", (long long)r->ids[0],
             (long long)after, (long long)limit, key ? key : "");
    if (reply_cached(r, ckey, gen) || run_exists(r))
        return;
    rc = store_metrics_get(r->srv->store, r->ids[0], key, after, (int)limit, &out);
    if (rc) {
        reply_store_error(r, rc, "metrics");
        return;
    }
    reply_json_caching(r, ckey, gen, out);
}

void route_run_epochs(api_req *r)
{
    json_t *out = NULL;
    int rc;
    if (req_need_backend(r) || run_exists(r))
        return;
    rc = store_epochs_get(r->srv->store, r->ids[0], &out);
    if (rc) {
        reply_store_error(r, rc, "epochs");
        return;
    }
    reply_json(r, 200, json_pack("{s:o}", "items", out));
}

void route_run_snapshots(api_req *r)
{
    json_t *out = NULL;
    int rc;
    if (req_need_backend(r) || run_exists(r))
        return;
    rc = store_snapshots_get(r->srv->store, r->ids[0], &out);
    if (rc) {
        reply_store_error(r, rc, "snapshots");
        return;
    }
    reply_json(r, 200, json_pack("{s:o}", "items", out));
}

void route_run_weights(api_req *r)
{
    char *path = NULL, disp[96];
    int rc;
    if (req_need_backend(r) || run_exists(r))
        return;
    rc = jobs_weights_path(r->srv->jobs, r->ids[0], &path);
    if (rc == -ENOENT) {
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "run %lld has no weights yet",
                      (long long)r->ids[0]);
        return;
    }
    if (rc) {
        reply_store_error(r, rc, "weights");
        return;
    }
    snprintf(disp, sizeof disp, "attachment; filename=\"run-%lld.safetensors\"",
             (long long)r->ids[0]);
    reply_file(r, path, "application/octet-stream", disp);
    free(path);
}

void route_run_events(api_req *r)
{
    const char *h = req_header(r, "Last-Event-ID");
    long long last = 0;
    if (req_need_backend(r))
        return;
    if (h && *h) {
        char *end;
        errno = 0;
        last = strtoll(h, &end, 10);
        if (*end || errno || last < 0) {
            reply_problem(r, 400, PROBLEM_INVALID, "Last-Event-ID",
                          "Last-Event-ID must be a non-negative integer");
            return;
        }
    } else {
        int64_t q;
        if (req_query_int(r, "last_event_id", 0, INT64_MAX / 2, 0, &q))
            return;
        last = q;
    }
    if (run_exists(r))
        return;
    sse_start(r, r->srv->hub, r->ids[0], last);
}
