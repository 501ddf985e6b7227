/* predict: validation passes, TTA, prediction and the snapshot ensemble. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Augmented passes of a prediction with TTA (an image, the test split), as the recipe's
 * default n_aug. */
#define TTA_PREDICT_AUG 4

/* ---- prediction ----------------------------------------------------------------------------- */

/* Probabilities of every item of a split for one pass (the centre crop when plan is NULL),
 * placed by item index. */
static int predict_pass(learner *l, loader *dl, const tfm_plan *plan, float *probs,
                        float *loss_sum, char *err, size_t errlen)
{
    int nc = l->info->n_classes, multi = l->info->multi_label;
    int eid = (int)l->epoch_id++;
    int rc = plan ? loader_begin_epoch_plan(dl, eid, l->sz, plan)
                  : loader_begin_epoch(dl, eid, l->sz, 0);
    const batch *b;
    double ls = 0.0;
    dist *d = l->cfg.dist;
    size_t n_probs = (size_t)loader_n_items(dl) * nc;
    /* Data parallelism: each rank fills its shard's rows; the sum gathers them. */
    if (dist_active(d))
        memset(probs, 0, n_probs * sizeof(float));
    while (rc == 0 && (rc = loader_next(dl, &b)) > 0) {
        rc = net_set_batch(l->net, b->n, l->sz, l->sz);
        if (rc)
            break;
        const float *z = net_forward(l->net, b->x, 0);
        for (int i = 0; i < b->n; i++)
            lrn_logits_to_probs(probs + (size_t)b->index[i] * nc, z + (size_t)i * nc, 1, nc, multi);
        if (loss_sum)
            ls += (double)lrn_eval_loss(l->net, b->y, b->targets) * b->n;
        rc = 0;
    }
    if (rc < 0) {
        err_set(err, errlen, "predict: reading images failed (%d)", rc);
        return rc;
    }
    if (dist_active(d) &&
        ((rc = dist_sum_f32(d, probs, n_probs)) || (rc = dist_sum_f64(d, &ls, 1)))) {
        err_set(err, errlen, "predict: gathering the workers' predictions failed (%d)", rc);
        return rc;
    }
    if (loss_sum)
        *loss_sum = (float)ls;
    return 0;
}

/* The validation split's labels (*y) and, for a multi-label dataset, its targets (*t),
 * malloc'd for the caller to free (also on failure); -ENOMEM. */
static int valid_truth(const learner *l, int32_t **y, float **t)
{
    int n = l->info->count[SPLIT_VALID], nc = l->info->n_classes, multi = l->info->multi_label;
    *y = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    *t = multi ? malloc((size_t)(n ? n : 1) * nc * sizeof(float)) : NULL;
    if (!*y || (multi && !*t))
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        if (multi)
            dataset_item_targets(l->ds, SPLIT_VALID, i, *t + (size_t)i * nc);
        else
            (*y)[i] = dataset_item_label(l->ds, SPLIT_VALID, i);
    }
    return 0;
}

/* The note of a finished TTA; flags out->tta_worse. */
static void tta_report(const learner *l, const tfm_plan *plans, tta_result *out,
                       const ev_hooks *h)
{
    char what[256];
    lrn_tta_describe(l, plans, out->n_run, what, sizeof what);
    if (out->n_run == 0) {
        lrn_note(h, "tta", "centre crop: loss %.4f accuracy %.4f; no augmented pass was run: "
                 "%s", out->loss, out->accuracy, out->n_aug == 0 ? "n_aug is 0" :
                 "the run was trained without flips, half of its zoom range (max_zoom) is "
                 "less than a pixel at its size, and its images are square, so no view "
                 "besides the centre crop follows from its training");
        return;
    }
    lrn_note(h, "tta", "centre crop: loss %.4f accuracy %.4f; mean of centre + %d augmented "
             "passes (%s; %d of the %d asked for): loss %.4f accuracy %.4f", out->loss,
             out->accuracy, out->n_run, what, out->n_run, out->n_aug, out->tta_loss,
             out->tta_accuracy);
    out->tta_worse = out->tta_accuracy < out->accuracy;
    if (out->tta_worse)
        lrn_note(h, "tta_worse", "TTA lowered accuracy: %.4f averaged against %.4f for the "
                 "centre crop alone; for this run the centre crop is the better prediction",
                 out->tta_accuracy, out->accuracy);
}

int learner_tta(learner *l, int n_aug, const ev_hooks *h, tta_result *out, char *err,
                size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (n_aug < 0 || n_aug > TTA_MAX_AUG) {
        err_set(err, errlen, "n_aug: must be between 0 and %d (got %d)", TTA_MAX_AUG, n_aug);
        return -EINVAL;
    }
    int n = l->info->count[SPLIT_VALID], nc = l->info->n_classes, multi = l->info->multi_label;
    float *p = calloc((size_t)n * nc, sizeof(float)); /* unreadable items stay 0 */
    float *avg = calloc((size_t)n * nc, sizeof(float));
    int32_t *y = NULL;
    float *t = NULL;
    int rc = 0;
    if (!p || !avg || valid_truth(l, &y, &t)) {
        rc = -ENOMEM;
        err_set(err, errlen, "tta: out of memory");
        goto out_free;
    }
    double t0 = clock_mono_s();
    tfm_plan plans[TTA_MAX_AUG];
    const int runs = learner_tta_plans(l, plans, n_aug);
    for (int pass = 0; pass <= runs; pass++) {
        float ls;
        rc = predict_pass(l, l->valid_dl, pass ? &plans[pass - 1] : NULL, p, &ls, err, errlen);
        if (rc)
            goto out_free;
        metric_acc a = {0};
        lrn_acc_add_probs(&a, p, y, t, n, nc, multi);
        float acc;
        lrn_acc_result(&a, multi, NULL, &acc, NULL);
        if (pass == 0) {
            out->loss = ls / (float)n;
            out->accuracy = acc;
            for (int k = runs; k < n_aug; k++)
                out->pass_accuracy[k] = acc;
        } else {
            out->pass_accuracy[pass - 1] = acc;
        }
        for (size_t k = 0; k < (size_t)n * nc; k++)
            avg[k] += p[k];
        lrn_progress(h, (double)(pass + 1) / (runs + 1), t0);
    }
    for (size_t k = 0; k < (size_t)n * nc; k++)
        avg[k] /= (float)(runs + 1);
    metric_acc a = {0};
    lrn_acc_add_probs(&a, avg, y, t, n, nc, multi);
    lrn_acc_result(&a, multi, NULL, &out->tta_accuracy, NULL);
    out->tta_loss = (float)(lrn_probs_loss(avg, y, t, n, nc, multi) / n);
    out->n_aug = n_aug;
    out->n_run = runs;
    tta_report(l, plans, out, h);
out_free:
    free(p);
    free(avg);
    free(y);
    free(t);
    return rc;
}

int learner_predict_image(learner *l, const image *im, int tta, float *probs, char *err,
                          size_t errlen)
{
    if (!im || !im->px || im->w < 1 || im->h < 1) {
        err_set(err, errlen, "image: empty");
        return -EINVAL;
    }
    tfm_plan plans[TTA_PREDICT_AUG];
    int nc = l->info->n_classes;
    int passes = 1 + (tta ? learner_tta_plans(l, plans, TTA_PREDICT_AUG) : 0);
    size_t px = (size_t)l->sz * l->sz * l->c_in;
    float *x = malloc(px * sizeof(float)), *pv = malloc((size_t)nc * sizeof(float));
    if (!x || !pv) {
        free(x);
        free(pv);
        err_set(err, errlen, "predict: out of memory");
        return -ENOMEM;
    }
    int rc = net_set_batch(l->net, 1, l->sz, l->sz);
    if (rc) {
        free(x);
        free(pv);
        err_set(err, errlen, "predict: size %d does not fit the network", l->sz);
        return rc;
    }
    for (int c = 0; c < nc; c++)
        probs[c] = 0.0f;
    tfm_config tc;
    lrn_tfm_fill(l, &tc, 0);
    for (int pass = 0; pass < passes && !rc; pass++) {
        tfm_plan centre;
        transform_plan_identity(&centre);
        rc = transform_apply_plan(x, im, &tc, pass ? &plans[pass - 1] : &centre);
        if (rc == -ENOMEM)
            err_set(err, errlen, "predict: out of memory");
        else if (rc)
            err_set(err, errlen, "image: %d channels (1 or 3 expected)", im->c);
        if (rc)
            break;
        const float *z = net_forward(l->net, x, 0);
        lrn_logits_to_probs(pv, z, 1, nc, l->info->multi_label);
        for (int c = 0; c < nc; c++)
            probs[c] += pv[c] / (float)passes;
    }
    free(x);
    free(pv);
    return rc;
}

/* Writes s as one CSV field (RFC 4180: quoted when it holds a comma, quote or line break,
 * quotes doubled). */
static void csv_put(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    putc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            putc('"', f);
        putc(*s, f);
    }
    putc('"', f);
}

int learner_predict_test(learner *l, int tta, const char *csv_path, const ev_hooks *h,
                         char *err, size_t errlen)
{
    int n = l->info->count[SPLIT_TEST], nc = l->info->n_classes;
    if (n < 1) {
        err_set(err, errlen, "predict-test: the dataset has no test images");
        return -ENOENT;
    }
    loader *dl = NULL;
    int rc = lrn_make_loader(l, &dl, SPLIT_TEST, 0, 0, 0, err, errlen);
    if (rc)
        return rc;
    tfm_plan plans[TTA_PREDICT_AUG];
    int passes = 1 + (tta ? learner_tta_plans(l, plans, TTA_PREDICT_AUG) : 0);
    FILE *f = NULL;
    float *p = calloc((size_t)n * nc, sizeof(float)); /* unreadable items stay 0 */
    float *avg = calloc((size_t)n * nc, sizeof(float));
    char tmp[4096];
    if (!p || !avg) {
        rc = -ENOMEM;
        err_set(err, errlen, "predict-test: out of memory");
        goto out_free;
    }
    double t0 = clock_mono_s();
    for (int pass = 0; pass < passes; pass++) {
        rc = predict_pass(l, dl, pass ? &plans[pass - 1] : NULL, p, NULL, err, errlen);
        if (rc)
            goto out_free;
        for (size_t k = 0; k < (size_t)n * nc; k++)
            avg[k] += p[k] / (float)passes;
        lrn_progress(h, (double)(pass + 1) / passes * 0.95, t0);
    }
    if (!lrn_writes_files(l)) {
        lrn_progress(h, 1.0, t0);
        goto out_free;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp", csv_path) >= (int)sizeof tmp) {
        rc = -ENAMETOOLONG;
        err_set(err, errlen, "predict-test: path too long");
        goto out_free;
    }
    f = fopen(tmp, "w");
    if (!f) {
        rc = -errno;
        err_set(err, errlen, "predict-test: cannot create %s: %s", tmp, strerror(errno));
        goto out_free;
    }
    /* Rows of any width: a row holds one probability per class, and names can be long. */
    fputs("file", f);
    for (int c = 0; c < nc; c++) {
        putc(',', f);
        csv_put(f, l->info->classes[c]);
    }
    putc('\n', f);
    for (int i = 0; i < n; i++) {
        csv_put(f, dataset_item_name(l->ds, SPLIT_TEST, i));
        for (int c = 0; c < nc; c++)
            fprintf(f, ",%.6g", avg[(size_t)i * nc + c]);
        putc('\n', f);
    }
    errno = 0;
    if (fflush(f) != 0 || ferror(f))
        rc = errno ? -errno : -EIO;
    if (!rc && fsync(fileno(f)) != 0)
        rc = -errno;
    if (fclose(f) != 0 && !rc)
        rc = errno ? -errno : -EIO;
    f = NULL;
    if (!rc && rename(tmp, csv_path) != 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        err_set(err, errlen, "predict-test: writing %s failed: %s", csv_path, strerror(-rc));
        goto out_free;
    }
    lrn_note(h, "predict_test", "wrote %d predictions%s to %s", n, tta ? " with TTA" : "",
         csv_path);
    lrn_progress(h, 1.0, t0);
out_free:
    if (f) {
        fclose(f);
        unlink(tmp);
    }
    free(p);
    free(avg);
    loader_destroy(dl);
    return rc;
}

/* Validation metrics of the mean probabilities of the snapshots (centre crop). */
int learner_snapshot_ensemble(learner *l, float *loss, float *accuracy, char *err,
                              size_t errlen)
{
    if (l->n_snapshots < 1) {
        err_set(err, errlen, "ensemble: no snapshots (fit with snapshots on)");
        return -ENOENT;
    }
    int n = l->info->count[SPLIT_VALID], nc = l->info->n_classes, multi = l->info->multi_label;
    net_copy keep;
    int rc = lrn_net_copy_save(&keep, l);
    if (rc)
        return rc;
    float *p = calloc((size_t)n * nc, sizeof(float)); /* unreadable items stay 0 */
    float *avg = calloc((size_t)n * nc, sizeof(float));
    int32_t *y = NULL;
    float *t = NULL;
    if (!p || !avg || valid_truth(l, &y, &t)) {
        rc = -ENOMEM;
        err_set(err, errlen, "ensemble: out of memory");
        goto out_free;
    }
    for (int s = 0; s < l->n_snapshots && !rc; s++) {
        memcpy(l->net->params, l->snapshots[s], l->net->n_params * sizeof(float));
        memcpy(l->net->buffers, l->snapshots[s] + l->net->n_params,
               l->net->n_buffers * sizeof(float));
        rc = predict_pass(l, l->valid_dl, NULL, p, NULL, err, errlen);
        for (size_t k = 0; k < (size_t)n * nc && !rc; k++)
            avg[k] += p[k] / (float)l->n_snapshots;
    }
    if (!rc) {
        metric_acc a = {0};
        lrn_acc_add_probs(&a, avg, y, t, n, nc, multi);
        lrn_acc_result(&a, multi, NULL, accuracy, NULL);
        *loss = (float)(lrn_probs_loss(avg, y, t, n, nc, multi) / n);
    }
out_free:
    lrn_net_copy_restore(&keep, l);
    lrn_net_copy_free(&keep);
    free(p);
    free(avg);
    free(y);
    free(t);
    return rc;
}
