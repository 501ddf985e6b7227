/* job.c: the spec's job on a learner (job.h). */
#include "job.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "job_params.h"
#include "job_spec.h"

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

static int do_lr_find(learner *l, const job_lr_find *p, const ev_hooks *h, json_t **result,
                      char *err, size_t errlen)
{
    lrfind_opts o = {.start_lr = p->start_lr, .end_lr = p->end_lr, .num_it = (int)p->num_it};
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

static int run_params(learner *l, const job_params *p, json_t *spec, int resume,
                      const ev_hooks *h, json_t **result, char *err, size_t errlen)
{
    tta_result r = {0};
    int rc;
    switch (p->kind) {
    case JOB_LR_FIND:
        return do_lr_find(l, &p->lr_find, h, result, err, errlen);
    case JOB_FIT: {
        fit_opts o;
        job_fit_opts(&p->fit, &o);
        o.resume = resume;
        return learner_fit(l, &o, h, err, errlen);
    }
    case JOB_TTA:
        rc = learner_tta(l, (int)p->tta_n_aug, h, &r, err, errlen);
        break;
    case JOB_RECIPE: {
        recipe_opts o = {.max_epochs = (int)p->recipe.max_epochs,
                         .close_to_imagenet = p->recipe.close_to_imagenet,
                         .n_aug = (int)p->recipe.n_aug,
                         .budget_minutes = p->recipe.budget_minutes,
                         .one_cycle = p->recipe.one_cycle};
        rc = learner_recipe(l, &o, h, &r, err, errlen);
        break;
    }
    case JOB_PREDICT_TEST: {
        const char *csv = json_string_value(json_object_get(spec, "predictions_csv"));
        if (!csv) {
            snprintf(err, errlen, "spec: predict_test needs predictions_csv");
            return -EINVAL;
        }
        return learner_predict_test(l, p->predict_tta, csv, h, err, errlen);
    }
    default:
        snprintf(err, errlen, "spec: job.kind %s does not run on workers (lr_find, fit, "
                 "recipe, tta or predict_test do)", job_kind_name(p->kind));
        return -EINVAL;
    }
    if (rc == 0)
        *result = tta_json(&r);
    return rc;
}

int worker_parse_job(json_t *spec, job_params *p, char *err, size_t errlen)
{
    json_t *job = json_object_get(spec, "job");
    const char *kind_name = json_string_value(json_object_get(job, "kind"));
    job_kind kind;
    if (job_kind_parse(kind_name, &kind)) {
        snprintf(err, errlen, "spec: job.kind: unknown kind %s", kind_name);
        return -EINVAL;
    }
    char field[64], detail[256];
    if (job_params_parse(kind, json_object_get(job, "params"), p, field, sizeof field, detail,
                         sizeof detail)) {
        snprintf(err, errlen, "params%s%s: %s", field[0] ? "." : "", field, detail);
        return -EINVAL;
    }
    return 0;
}

int worker_run_job(learner *l, const job_params *p, json_t *spec, const ev_hooks *h,
                   json_t **result, char *err, size_t errlen)
{
    *result = NULL;
    int resume = jspec_bool(json_object_get(spec, "job"), "resume", 0);
    return run_params(l, p, spec, resume, h, result, err, errlen);
}

json_t *worker_state_json(learner *l)
{
    learner_state s;
    learner_get_state(l, &s);
    return json_pack("{si si sb si si sb sI si so so}", "freeze_to", s.freeze_to, "n_groups",
                     s.n_groups, "precompute", s.precompute, "sz", s.sz, "bs", s.bs,
                     "augment", s.augment, "step", (json_int_t)s.step, "epochs_done",
                     s.epochs_done, "best_valid_loss", num(s.best_valid_loss),
                     "best_accuracy", num(s.best_accuracy));
}
