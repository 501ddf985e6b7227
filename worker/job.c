/* job.c: the spec's job on a learner (job.h). */
#include "job.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "spec.h"

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *tta_json(const tta_result *r)
{
    return json_pack("{so so so so si}", "loss", num(r->loss), "accuracy", num(r->accuracy),
                     "tta_loss", num(r->tta_loss), "tta_accuracy", num(r->tta_accuracy),
                     "n_aug", r->n_aug);
}

static json_t *suggestion_json(const lr_suggestion *s)
{
    return json_pack("{so}", "lr", num(s->lr));
}

static int do_lr_find(learner *l, json_t *p, const ev_hooks *h, json_t **result, char *err,
                      size_t errlen)
{
    lrfind_opts o = {0};
    o.start_lr = spec_num(p, "start_lr", 1e-5);
    o.end_lr = spec_num(p, "end_lr", 10);
    o.num_it = (int)spec_num(p, "num_it", 0);
    lrfind_result r = {0};
    int rc = learner_lr_find(l, &o, h, &r, err, errlen);
    if (rc == 0)
        *result = json_pack("{s{so so so so} si sb}", "suggestions", "min_div10",
                            suggestion_json(&r.min_div10), "steep", suggestion_json(&r.steep),
                            "valley", suggestion_json(&r.valley), "slide",
                            suggestion_json(&r.slide), "n_points", r.n_points,
                            "stopped_early", r.stopped_early);
    lrfind_result_free(&r);
    return rc;
}

static int fit_opts_of(json_t *p, fit_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    json_t *lrs = json_object_get(p, "lrs");
    if (json_is_number(lrs)) {
        o->n_lrs = 1;
        o->lrs[0] = json_number_value(lrs);
    } else if (json_is_array(lrs) && json_array_size(lrs) >= 1 &&
               json_array_size(lrs) <= LEARNER_MAX_GROUPS) {
        o->n_lrs = (int)json_array_size(lrs);
        for (int i = 0; i < o->n_lrs; i++)
            o->lrs[i] = json_number_value(json_array_get(lrs, (size_t)i));
    } else {
        snprintf(err, errlen, "lrs: a number or 1..%d numbers", LEARNER_MAX_GROUPS);
        return -EINVAL;
    }
    o->n_cycle = (int)spec_num(p, "n_cycle", 1);
    o->cycle_len = (int)spec_num(p, "cycle_len", 1);
    o->cycle_mult = (int)spec_num(p, "cycle_mult", 1);
    o->wd = spec_num(p, "wd", 0);
    const char *sched = json_string_value(json_object_get(p, "schedule"));
    o->schedule = !sched || !strcmp(sched, "sgdr") ? SCHED_SGDR
                  : !strcmp(sched, "constant")     ? SCHED_CONSTANT
                                                   : SCHED_1CYCLE;
    o->snapshots = spec_bool(p, "snapshots", 0);
    o->early_stop_patience = (int)spec_num(json_object_get(p, "early_stop"), "patience", 0);
    o->stop_at_worse_cycle = spec_bool(p, "stop_at_worse_cycle", 0);
    o->time_limit_s = spec_num(p, "time_limit_minutes", 0) * 60.0;
    return 0;
}

static int do_recipe(learner *l, json_t *p, const ev_hooks *h, json_t **result, char *err,
                     size_t errlen)
{
    const char *sched = json_string_value(json_object_get(p, "schedule"));
    recipe_opts o = {.max_epochs = (int)spec_num(p, "max_epochs", 0),
                     .close_to_imagenet = spec_bool(p, "close_to_imagenet", 0),
                     .n_aug = (int)spec_num(p, "n_aug", 0),
                     .budget_minutes = spec_num(p, "budget_minutes", 0),
                     .one_cycle = sched && !strcmp(sched, "1cycle")};
    tta_result r = {0};
    int rc = learner_recipe(l, &o, h, &r, err, errlen);
    if (rc == 0)
        *result = tta_json(&r);
    return rc;
}

int job_run(learner *l, json_t *spec, const ev_hooks *h, json_t **result, char *err,
            size_t errlen)
{
    json_t *job = json_object_get(spec, "job");
    json_t *p = json_object_get(job, "params");
    const char *kind = json_string_value(json_object_get(job, "kind"));
    *result = NULL;
    if (!strcmp(kind, "lr_find"))
        return do_lr_find(l, p, h, result, err, errlen);
    if (!strcmp(kind, "fit")) {
        fit_opts o;
        int rc = fit_opts_of(p, &o, err, errlen);
        o.resume = spec_bool(job, "resume", 0);
        return rc ? rc : learner_fit(l, &o, h, err, errlen);
    }
    if (!strcmp(kind, "recipe"))
        return do_recipe(l, p, h, result, err, errlen);
    if (!strcmp(kind, "tta")) {
        tta_result r = {0};
        int rc = learner_tta(l, (int)spec_num(p, "n_aug", 4), h, &r, err, errlen);
        if (rc == 0)
            *result = tta_json(&r);
        return rc;
    }
    if (!strcmp(kind, "predict_test")) {
        const char *csv = json_string_value(json_object_get(spec, "predictions_csv"));
        if (!csv) {
            snprintf(err, errlen, "spec: predict_test needs predictions_csv");
            return -EINVAL;
        }
        return learner_predict_test(l, spec_bool(p, "tta", 0), csv, h, err, errlen);
    }
    snprintf(err, errlen, "spec: job.kind must be lr_find, fit, recipe, tta or predict_test "
             "(got %s)", kind);
    return -EINVAL;
}

json_t *job_state_json(learner *l)
{
    learner_state s;
    learner_get_state(l, &s);
    return json_pack("{si si sb si si sb sI si so so}", "freeze_to", s.freeze_to, "n_groups",
                     s.n_groups, "precompute", s.precompute, "sz", s.sz, "bs", s.bs,
                     "augment", s.augment, "step", (json_int_t)s.step, "epochs_done",
                     s.epochs_done, "best_valid_loss", num(s.best_valid_loss),
                     "best_accuracy", num(s.best_accuracy));
}
