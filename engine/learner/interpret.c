/* interpret: what a trained model gets wrong on the validation split (confusion matrix,
 * per-class metrics, most confused pairs, top losses), and the images behind it: an item's
 * thumbnail and a training item under the run's transforms, as PNGs. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

void interp_result_free(interp_result *r)
{
    if (!r)
        return;
    free(r->confusion);
    free(r->classes);
    free(r->pairs);
    free(r->items);
    memset(r, 0, sizeof *r);
}

/* Highest loss first; equal losses in item order, so the order is reproducible. */
static int item_cmp(const void *a, const void *b)
{
    const interp_item *x = a, *y = b;
    if (x->loss != y->loss)
        return x->loss < y->loss ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

static int pair_cmp(const void *a, const void *b)
{
    const interp_pair *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    if (x->actual != y->actual)
        return x->actual - y->actual;
    return x->predicted - y->predicted;
}

static float ratio(int64_t a, int64_t b)
{
    return b > 0 ? (float)((double)a / (double)b) : 0.0f;
}

/* One item: its loss as validation computes it (lrn_probs_loss) and, single-label, the
 * arg max (the lowest class on ties). */
static void item_of(interp_item *it, const float *p, int32_t y, const float *t, int nc,
                    int multi)
{
    it->actual = multi ? -1 : y;
    it->predicted = -1;
    if (multi) {
        double s = 0.0;
        for (int c = 0; c < nc; c++) {
            double q = fmin(fmax(p[c], 1e-12), 1.0 - 1e-7);
            s -= (t[c] * log(q) + (1.0 - t[c]) * log(1.0 - q)) / nc;
        }
        it->loss = (float)s;
        return;
    }
    int best = 0;
    for (int c = 1; c < nc; c++)
        if (p[c] > p[best])
            best = c;
    it->predicted = best;
    it->p_predicted = p[best];
    it->p_actual = p[y];
    it->loss = (float)-log(fmax(p[y], 1e-12));
}

/* Per-class counts into out->classes (and the confusion matrix, single-label). */
static void count_classes(interp_result *out, const float *probs, const int32_t *y,
                          const float *t)
{
    int nc = out->n_classes;
    for (int k = 0; k < out->n; k++) {
        const interp_item *it = &out->items[k];
        size_t i = (size_t)it->index;
        if (!out->multi_label) {
            out->confusion[(size_t)it->actual * nc + it->predicted]++;
            out->classes[it->actual].support++;
            out->classes[it->predicted].predicted++;
            out->classes[it->actual].tp += it->actual == it->predicted;
            continue;
        }
        for (int c = 0; c < nc; c++) {
            int truth = t[i * nc + c] > 0.5f, pred = probs[i * nc + c] > out->threshold;
            out->classes[c].support += truth;
            out->classes[c].predicted += pred;
            out->classes[c].tp += truth && pred;
        }
    }
    (void)y;
}

static void class_metrics(interp_result *out)
{
    for (int c = 0; c < out->n_classes; c++) {
        interp_class *k = &out->classes[c];
        int64_t tn = out->n - k->support - k->predicted + k->tp;
        k->precision = ratio(k->tp, k->predicted);
        k->recall = ratio(k->tp, k->support);
        k->accuracy = ratio(k->tp + tn, out->n);
        double pr = k->precision, rc = k->recall;
        k->f2 = pr + rc > 0 ? (float)(5.0 * pr * rc / (4.0 * pr + rc)) : 0.0f;
    }
}

static int confused_pairs(interp_result *out)
{
    int nc = out->n_classes, n = 0;
    for (size_t k = 0; k < (size_t)nc * nc; k++)
        n += (int)(k / nc != k % nc && out->confusion[k] > 0);
    out->pairs = malloc((size_t)(n ? n : 1) * sizeof *out->pairs);
    if (!out->pairs)
        return -ENOMEM;
    for (int a = 0; a < nc; a++)
        for (int p = 0; p < nc; p++)
            if (a != p && out->confusion[(size_t)a * nc + p] > 0)
                out->pairs[out->n_pairs++] =
                    (interp_pair){a, p, out->confusion[(size_t)a * nc + p]};
    qsort(out->pairs, (size_t)out->n_pairs, sizeof *out->pairs, pair_cmp);
    return 0;
}

int interp_compute(interp_result *out, const float *probs, const int32_t *y, const float *t,
                   const uint8_t *seen, int n, int nc, int multi, float threshold)
{
    memset(out, 0, sizeof *out);
    if (n < 0 || nc < 1 || (multi ? !t : !y))
        return -EINVAL;
    out->n_classes = nc;
    out->multi_label = multi;
    out->threshold = multi ? threshold : 0.0f;
    out->items = malloc((size_t)(n ? n : 1) * sizeof *out->items);
    out->classes = calloc((size_t)nc, sizeof *out->classes);
    out->confusion = multi ? NULL : calloc((size_t)nc * nc, sizeof *out->confusion);
    if (!out->items || !out->classes || (!multi && !out->confusion))
        goto out_oom;
    double loss = 0.0;
    int64_t correct = 0;
    for (int i = 0; i < n; i++) {
        if (seen && !seen[i])
            continue;
        if (!multi && (y[i] < 0 || y[i] >= nc)) {
            interp_result_free(out);
            return -EINVAL;
        }
        interp_item *it = &out->items[out->n++];
        it->index = i;
        item_of(it, probs + (size_t)i * nc, multi ? 0 : y[i], multi ? t + (size_t)i * nc : NULL,
                nc, multi);
        loss += it->loss;
        correct += !multi && it->predicted == it->actual;
    }
    count_classes(out, probs, y, t);
    class_metrics(out);
    out->loss = out->n ? (float)(loss / out->n) : 0.0f;
    out->accuracy = multi ? 0.0f : ratio(correct, out->n);
    if (!multi && confused_pairs(out))
        goto out_oom;
    qsort(out->items, (size_t)out->n, sizeof *out->items, item_cmp);
    return 0;
out_oom:
    interp_result_free(out);
    return -ENOMEM;
}

const ds_info *learner_info(const learner *l)
{
    return l->info;
}

/* The centre-crop probabilities of every validation item, by item index; seen[i] is 1 for
 * the items the loader could read. */
static int valid_probs(learner *l, float *probs, uint8_t *seen, char *err, size_t errlen)
{
    int nc = l->info->n_classes, multi = l->info->multi_label;
    /* Without augmentation an epoch id changes nothing a validation pass draws, so the id
     * is not used up: the data order of later fits stays what it would have been. */
    int rc = loader_begin_epoch(l->valid_dl, (int)l->epoch_id, l->sz, 0);
    const batch *b;
    while (rc == 0 && (rc = loader_next(l->valid_dl, &b)) > 0) {
        rc = net_set_batch(l->net, b->n, l->sz, l->sz);
        if (rc)
            break;
        const float *z = net_forward(l->net, b->x, 0);
        for (int i = 0; i < b->n; i++) {
            lrn_logits_to_probs(probs + (size_t)b->index[i] * nc, z + (size_t)i * nc, 1, nc,
                                multi);
            seen[b->index[i]] = 1;
        }
        rc = 0;
    }
    if (rc < 0)
        err_set(err, errlen, "interpret: reading validation images failed (%d)", rc);
    return rc < 0 ? rc : 0;
}

int learner_interpret(learner *l, interp_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int n = l->info->count[SPLIT_VALID], nc = l->info->n_classes, multi = l->info->multi_label;
    if (n < 1) {
        err_set(err, errlen, "interpret: the dataset has no validation images");
        return -ENOENT;
    }
    float *p = calloc((size_t)n * nc, sizeof(float));
    float *t = multi ? malloc((size_t)n * nc * sizeof(float)) : NULL;
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    uint8_t *seen = calloc((size_t)n, 1);
    int rc = -ENOMEM;
    if (!p || !y || !seen || (multi && !t)) {
        err_set(err, errlen, "interpret: out of memory");
        goto out_free;
    }
    for (int i = 0; i < n; i++) {
        y[i] = multi ? 0 : dataset_item_label(l->ds, SPLIT_VALID, i);
        if (multi)
            dataset_item_targets(l->ds, SPLIT_VALID, i, t + (size_t)i * nc);
    }
    rc = valid_probs(l, p, seen, err, errlen);
    if (rc == 0)
        rc = interp_compute(out, p, y, t, seen, n, nc, multi, INTERP_ML_THRESHOLD);
    if (rc == -ENOMEM)
        err_set(err, errlen, "interpret: out of memory");
out_free:
    free(p);
    free(t);
    free(y);
    free(seen);
    return rc;
}

/* ---- images ---------------------------------------------------------------------------- */

int learner_item_png(learner *l, ds_split split, int i, int max_side, uint8_t **png,
                     size_t *len, char *err, size_t errlen)
{
    *png = NULL;
    *len = 0;
    if (split < SPLIT_TRAIN || split > SPLIT_TEST || i < 0 || i >= l->info->count[split]) {
        err_set(err, errlen, "item: %d is not an item of the split (it has %d)", i,
                split >= SPLIT_TRAIN && split <= SPLIT_TEST ? l->info->count[split] : 0);
        return -ERANGE;
    }
    image im = {0}, small = {0};
    int rc = dataset_item_image(l->ds, split, i, &im, err, errlen);
    if (rc)
        return rc;
    int longer = im.w > im.h ? im.w : im.h, shorter = im.w < im.h ? im.w : im.h;
    const image *src = &im;
    if (max_side > 0 && longer > max_side) {
        int s = (int)((int64_t)shorter * max_side / longer);
        rc = image_scale_min(&small, &im, s > 0 ? s : 1);
        src = &small;
    }
    if (rc == 0)
        rc = image_encode_png(src, png, len);
    if (rc)
        err_set(err, errlen, "item %d: cannot render its thumbnail (%d)", i, rc);
    image_free(&small);
    image_free(&im);
    return rc;
}

/* One transformed tile (sz x sz x c floats, 0..1 before normalisation) into the strip. */
static void put_tile(image *strip, const float *x, int tile, int sz)
{
    for (int r = 0; r < sz; r++)
        for (int cx = 0; cx < sz; cx++)
            for (int ch = 0; ch < strip->c; ch++) {
                float v = x[((size_t)r * sz + cx) * strip->c + ch] * 255.0f + 0.5f;
                v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
                strip->px[((size_t)r * strip->w + (size_t)tile * sz + cx) * strip->c + ch] =
                    (uint8_t)v;
            }
}

int learner_augment_png(learner *l, int item, int n, uint64_t seed, uint8_t **png,
                        size_t *len, char *err, size_t errlen)
{
    *png = NULL;
    *len = 0;
    int count = l->info->count[SPLIT_TRAIN];
    if (item < 0 || item >= count) {
        err_set(err, errlen, "item: %d is not an item of the training split (it has %d)",
                item, count);
        return -ERANGE;
    }
    if (n < 1 || n > LEARNER_AUG_PREVIEW_MAX) {
        err_set(err, errlen, "n: must be between 1 and %d (got %d)", LEARNER_AUG_PREVIEW_MAX,
                n);
        return -ERANGE;
    }
    image im = {0};
    int rc = dataset_item_image(l->ds, SPLIT_TRAIN, item, &im, err, errlen);
    if (rc)
        return rc;
    tfm_config tc;
    lrn_tfm_fill(l, &tc, 1);
    for (int ch = 0; ch < 3; ch++) { /* pixels on the 0..1 scale, not normalised */
        tc.mean[ch] = 0.0f;
        tc.std[ch] = 1.0f;
    }
    int sz = tc.sz, c = tc.c_out;
    image strip = {.w = sz * n, .h = sz, .c = c};
    float *x = malloc((size_t)sz * sz * c * sizeof(float));
    strip.px = malloc((size_t)strip.w * strip.h * c);
    rc = -ENOMEM;
    if (x && strip.px) {
        uint64_t r = rng_derive(seed, (uint64_t)item);
        for (int k = 0; k < n; k++) {
            transform_apply(x, &im, &tc, &r);
            put_tile(&strip, x, k, sz);
        }
        rc = image_encode_png(&strip, png, len);
    }
    if (rc)
        err_set(err, errlen, "augmentations: cannot render item %d (%d)", item, rc);
    free(x);
    free(strip.px);
    image_free(&im);
    return rc;
}
