/* interp.c: the interpretation of a run's weights, computed on the worker after a fit or TTA
 * and stored (see jq_interpret); computed again only when the weights file changed. */
#define _GNU_SOURCE
#include "jobs_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "json_text.h"
#include "log.h"

/* The identity of the run's saved weights: the checkpoint's modification time and size
 * ("none" before the first save). Every save rewrites the file, so a new identity is
 * new weights; the same identity after a restart is the same weights. */
static void weights_identity(jobs *jq, int64_t run_id, char *out, size_t len)
{
    char cur[PATH_MAX];
    struct stat sb;
    jq_run_file(jq, run_id, "current.ckpt", cur, sizeof cur);
    if (stat(cur, &sb) != 0)
        snprintf(out, len, "none");
    else
        snprintf(out, len, "%lld.%09ld:%lld", (long long)sb.st_mtim.tv_sec,
                 sb.st_mtim.tv_nsec, (long long)sb.st_size);
}

static json_t *class_json(const interp_class *c, const char *name)
{
    return json_pack("{so sI sI sI sf sf sf sf}", "class", json_text(name), "support",
                     (json_int_t)c->support, "predicted", (json_int_t)c->predicted, "tp",
                     (json_int_t)c->tp, "precision", c->precision, "recall", c->recall,
                     "accuracy", c->accuracy, "f2", c->f2);
}

static json_t *summary_json(const interp_result *r, const ds_info *in)
{
    int nc = r->n_classes;
    json_t *names = json_array(), *per = json_array(), *pairs = json_array();
    json_t *cm = r->confusion ? json_array() : json_null();
    for (int c = 0; c < nc; c++) {
        json_array_append_new(names, json_text(in->classes[c]));
        json_array_append_new(per, class_json(&r->classes[c], in->classes[c]));
        if (!r->confusion)
            continue;
        json_t *row = json_array();
        for (int p = 0; p < nc; p++)
            json_array_append_new(row, json_integer(r->confusion[(size_t)c * nc + p]));
        json_array_append_new(cm, row);
    }
    for (int k = 0; k < r->n_pairs; k++)
        json_array_append_new(pairs, json_pack("{si si sI}", "actual", r->pairs[k].actual,
                                               "predicted", r->pairs[k].predicted, "count",
                                               (json_int_t)r->pairs[k].count));
    return json_pack("{si si sb so sf so so so so so}", "n", r->n, "n_classes", nc,
                     "multi_label", r->multi_label, "threshold",
                     r->multi_label ? json_real(r->threshold) : json_null(), "loss", r->loss,
                     "accuracy", r->multi_label ? json_null() : json_real(r->accuracy),
                     "classes", names, "per_class", per, "confusion", cm,
                     "most_confused", pairs);
}

/* Every judged item, highest loss first; classes by index into summary.classes. */
static json_t *items_json(const interp_result *r)
{
    json_t *a = json_array();
    for (int k = 0; a && k < r->n; k++) {
        const interp_item *it = &r->items[k];
        json_t *o = r->multi_label
                        ? json_pack("{si sf}", "item", it->index, "loss", it->loss)
                        : json_pack("{si si si sf sf sf}", "item", it->index, "actual",
                                    it->actual, "predicted", it->predicted, "p_predicted",
                                    it->p_predicted, "p_actual", it->p_actual, "loss",
                                    it->loss);
        if (!o || json_array_append_new(a, o)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

int jq_interpret(jobs *jq, int64_t run_id, int64_t job_id, learner *l, char *err,
                 size_t errlen)
{
    char id[96], *have = NULL;
    weights_identity(jq, run_id, id, sizeof id);
    if (store_interpretation_weights(jq->st, run_id, &have) == 0 && have &&
        strcmp(have, id) == 0) {
        free(have);
        return 0;
    }
    free(have);
    interp_result r;
    int rc = learner_interpret(l, &r, err, errlen);
    if (rc)
        return rc;
    json_t *sum = summary_json(&r, learner_info(l)), *items = items_json(&r);
    rc = sum && items ? store_interpretation_put(jq->st, run_id, job_id, id, sum, items)
                      : -ENOMEM;
    if (rc)
        snprintf(err, errlen, "cannot store the interpretation: %s",
                 rc == -ENOMEM ? "out of memory" : store_errmsg());
    json_decref(sum);
    json_decref(items);
    interp_result_free(&r);
    return rc;
}
