/* core: helpers, net copies, batches, metrics, creation, state changes and training steps. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include "weights.h"

int lrn_writes_files(const learner *l) { return dist_rank(l->cfg.dist) == 0; }

double lrn_agree(const learner *l, double v)
{
    if (!dist_active(l->cfg.dist))
        return v;
    double x = dist_rank(l->cfg.dist) == 0 ? v : 0.0;
    return dist_sum_f64(l->cfg.dist, &x, 1) ? v : x;
}

void lrn_note(const ev_hooks *h, const char *what, const char *fmt, ...)
{
    if (!h || !h->on_note)
        return;
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    h->on_note(h->ctx, what, why);
}

void lrn_progress(const ev_hooks *h, double frac, double t0)
{
    if (!h || !h->on_progress)
        return;
    double el = clock_mono_s() - t0;
    double eta = frac > 1e-6 ? el * (1.0 - frac) / frac : -1.0;
    h->on_progress(h->ctx, frac > 1.0 ? 1.0 : frac, eta);
}

/* ---- net copies ------------------------------------------------------------------------- */

void lrn_net_copy_free(net_copy *c)
{
    free(c->params);
    free(c->buffers);
    free(c->opt_state);
    free(c->opt_steps);
    memset(c, 0, sizeof *c);
}

int lrn_net_copy_save(net_copy *c, const learner *l)
{
    const net *n = l->net;
    memset(c, 0, sizeof *c);
    c->params = malloc((n->n_params ? n->n_params : 1) * sizeof(float));
    c->buffers = malloc((n->n_buffers ? n->n_buffers : 1) * sizeof(float));
    c->opt_state = malloc((l->opt->n_state ? l->opt->n_state : 1) * sizeof(float));
    c->opt_steps = malloc((size_t)(n->n_tensors ? n->n_tensors : 1) * sizeof(int64_t));
    if (!c->params || !c->buffers || !c->opt_state || !c->opt_steps) {
        lrn_net_copy_free(c);
        return -ENOMEM;
    }
    memcpy(c->params, n->params, n->n_params * sizeof(float));
    memcpy(c->buffers, n->buffers, n->n_buffers * sizeof(float));
    memcpy(c->opt_state, l->opt->state, l->opt->n_state * sizeof(float));
    memcpy(c->opt_steps, l->opt->steps, (size_t)n->n_tensors * sizeof(int64_t));
    c->rng = n->rng;
    return 0;
}

void lrn_net_copy_restore(const net_copy *c, learner *l)
{
    net *n = l->net;
    memcpy(n->params, c->params, n->n_params * sizeof(float));
    memcpy(n->buffers, c->buffers, n->n_buffers * sizeof(float));
    memcpy(l->opt->state, c->opt_state, l->opt->n_state * sizeof(float));
    memcpy(l->opt->steps, c->opt_steps, (size_t)n->n_tensors * sizeof(int64_t));
    n->rng = c->rng;
}

/* ---- batches from the loaders or from the cache ------------------------------------------- */

int lrn_src_begin(batch_src *s, learner *l, ds_split split, int augment, int cached)
{
    memset(s, 0, sizeof *s);
    s->l = l;
    s->cached = cached;
    int64_t eid = l->epoch_id++;
    if (cached) {
        s->cs = split == SPLIT_TRAIN ? &l->pc_train : &l->pc_valid_split;
        s->shuffle = split == SPLIT_TRAIN;
        s->drop_last = split == SPLIT_TRAIN && s->cs->n >= l->bs;
        s->n_batches = s->drop_last ? s->cs->n / l->bs : (s->cs->n + l->bs - 1) / l->bs;
        if (s->shuffle) {
            uint64_t r = rng_derive(l->cfg.seed ^ 0x5052454350ull, (uint64_t)eid);
            for (int i = 0; i < s->cs->n; i++)
                l->pc_perm[i] = i;
            for (int i = s->cs->n - 1; i > 0; i--) {
                int j = (int)rng_below(&r, (uint32_t)(i + 1));
                int tmp = l->pc_perm[i];
                l->pc_perm[i] = l->pc_perm[j];
                l->pc_perm[j] = tmp;
            }
        }
        return 0;
    }
    s->dl = split == SPLIT_TRAIN ? l->train_dl : l->valid_dl;
    s->n_batches = loader_n_batches(s->dl);
    return loader_begin_epoch(s->dl, (int)eid, l->sz, augment);
}

/* 1 with *v filled, 0 at the end, negative on error. */
int lrn_src_next(batch_src *s, batch_view *v)
{
    learner *l = s->l;
    if (!s->cached) {
        const batch *b;
        int rc = loader_next(s->dl, &b);
        if (rc <= 0)
            return rc;
        v->n = b->n;
        v->x = b->x;
        v->y = b->y;
        v->t = b->targets;
        v->index = b->index;
        s->batch_i++;
        return 1;
    }
    if (s->batch_i >= s->n_batches)
        return 0;
    int n_all = s->cs->n - s->pos < l->bs ? s->cs->n - s->pos : l->bs;
    int nc = l->info->n_classes, dim = l->pc_dim;
    /* Data parallelism: this rank's shard of the batch the whole world draws. */
    int64_t lo, hi;
    dist_shard(0, n_all, dist_rank(l->cfg.dist), dist_size(l->cfg.dist), &lo, &hi);
    int n = (int)(hi - lo);
    for (int i = 0; i < n; i++) {
        int at = s->pos + (int)lo + i;
        int k = s->shuffle ? l->pc_perm[at] : at;
        memcpy(l->pc_xbuf + (size_t)i * dim, s->cs->x + (size_t)k * dim, dim * sizeof(float));
        if (s->cs->y)
            l->pc_ybuf[i] = s->cs->y[k];
        if (s->cs->t)
            memcpy(l->pc_tbuf + (size_t)i * nc, s->cs->t + (size_t)k * nc, nc * sizeof(float));
    }
    s->pos += n_all;
    s->batch_i++;
    v->n = n;
    v->x = l->pc_xbuf;
    v->y = s->cs->y ? l->pc_ybuf : NULL;
    v->t = s->cs->t ? l->pc_tbuf : NULL;
    v->index = NULL;
    return 1;
}

int lrn_loader_failed(learner *l, const char *what, int rc, char *err, size_t errlen)
{
    if (rc != -ENODATA) {
        err_set(err, errlen, "%s: the loader failed (%d)", what, rc);
        return rc;
    }
    ds_unreadable *list = NULL;
    int n = 0;
    dataset_unreadable_copy(l->ds, &list, &n);
    err_set(err, errlen, "%s: every image of this worker's shard of a batch failed to decode "
            "(%d unreadable, the last %s: %s); a worker cannot leave out a batch the others "
            "train on", what, n, n ? list[n - 1].file : "?", n ? list[n - 1].reason : "?");
    ds_unreadable_free(list, n);
    return rc;
}

/* Forward of a batch: images through the whole net, or cached pooled activations through
 * the head only (backward then stops at the pooling node). */
static const float *src_forward(learner *l, int cached, const float *x, int training)
{
    if (cached)
        return net_forward_from(l->net, l->pool_node, x, training);
    return net_forward(l->net, x, training);
}

/* ---- metrics ---------------------------------------------------------------------------- */

void lrn_acc_add_probs(metric_acc *a, const float *probs, const int32_t *y, const float *t,
                   int n, int nc, int multi)
{
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * nc;
        if (!multi) {
            int best = 0;
            for (int c = 1; c < nc; c++)
                if (p[c] > p[best])
                    best = c;
            a->correct += best == y[i];
            continue;
        }
        const float *ti = t + (size_t)i * nc;
        int tp = 0, fp = 0, fn = 0, ok = 0;
        for (int c = 0; c < nc; c++) {
            int pos = ti[c] > 0.5f;
            ok += (p[c] > 0.5f) == pos;
            int pred = p[c] > 0.2f;
            tp += pred && pos;
            fp += pred && !pos;
            fn += !pred && pos;
        }
        a->cell_correct += (double)ok / nc;
        double den = 5.0 * tp + 4.0 * fn + fp;
        a->f2_sum += den > 0.0 ? 5.0 * tp / den : 0.0;
    }
    a->n += n;
}

void lrn_acc_result(const metric_acc *a, int multi, float *loss, float *accuracy, float *f2)
{
    double n = a->n ? (double)a->n : 1.0;
    if (loss)
        *loss = (float)(a->loss_sum / n);
    if (accuracy)
        *accuracy = (float)(multi ? a->cell_correct / n : (double)a->correct / n);
    if (f2)
        *f2 = multi ? (float)(a->f2_sum / n) : -1.0f;
}

/* Softmax (or sigmoid when multi-label) of logits, for predictions without labels. */
void lrn_logits_to_probs(float *p, const float *z, int n, int nc, int multi)
{
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * nc;
        float *pi = p + (size_t)i * nc;
        if (multi) {
            for (int c = 0; c < nc; c++)
                pi[c] = 1.0f / (1.0f + expf(-zi[c]));
            continue;
        }
        float mx = zi[0];
        for (int c = 1; c < nc; c++)
            mx = zi[c] > mx ? zi[c] : mx;
        double sum = 0.0;
        for (int c = 0; c < nc; c++)
            sum += exp((double)(zi[c] - mx));
        for (int c = 0; c < nc; c++)
            pi[c] = (float)(exp((double)(zi[c] - mx)) / sum);
    }
}

/* Loss of given probabilities (the averaged TTA ones). */
double lrn_probs_loss(const float *p, const int32_t *y, const float *t, int n, int nc,
                  int multi)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        if (!multi) {
            s -= log(fmax(p[(size_t)i * nc + y[i]], 1e-12));
            continue;
        }
        for (int c = 0; c < nc; c++) {
            double q = fmin(fmax(p[(size_t)i * nc + c], 1e-12), 1.0 - 1e-7);
            double tc = t[(size_t)i * nc + c];
            s -= (tc * log(q) + (1.0 - tc) * log(1.0 - q)) / nc;
        }
    }
    return s;
}

float lrn_eval_loss(net *m, const int32_t *y, const float *t)
{
    if (m->label_smoothing == 0.0f)
        return net_loss(m, y, t);
    /* smoothing is single-label only (model_create) */
    return softmax_xent_forward(m->probs, net_output(m), y, m->batch, m->n_out, 0.0f);
}

/* Validation over the valid split: loss, accuracy, F2. Uses the cache when it is on. */
int lrn_validate(learner *l, float *loss, float *accuracy, float *f2)
{
    batch_src s;
    int cached = l->precompute && l->pc_valid;
    int rc = lrn_src_begin(&s, l, SPLIT_VALID, 0, cached);
    if (rc)
        return rc;
    metric_acc a = {0};
    batch_view v;
    int nc = l->info->n_classes, multi = l->info->multi_label;
    net *m = l->net;
    while ((rc = lrn_src_next(&s, &v)) > 0) {
        if (v.n == 0)
            continue; /* a shard of a short last batch */
        rc = net_set_batch(m, v.n, l->sz, l->sz);
        if (rc)
            return rc;
        if (!src_forward(l, cached, v.x, 0))
            return -ENOMEM;
        float bl = lrn_eval_loss(m, v.y, v.t);
        a.loss_sum += (double)bl * v.n;
        lrn_acc_add_probs(&a, m->probs, v.y, v.t, v.n, nc, multi);
    }
    if (rc < 0)
        return rc;
    if (dist_active(l->cfg.dist)) {
        /* Every rank saw its shard: the split's metrics are the sums of all. */
        double sums[5] = {a.loss_sum, (double)a.n, (double)a.correct, a.cell_correct,
                          a.f2_sum};
        if ((rc = dist_sum_f64(l->cfg.dist, sums, 5)))
            return rc;
        a.loss_sum = sums[0];
        a.n = (int64_t)sums[1];
        a.correct = (int64_t)sums[2];
        a.cell_correct = sums[3];
        a.f2_sum = sums[4];
    }
    lrn_acc_result(&a, multi, loss, accuracy, f2);
    return 0;
}

/* ---- creation ----------------------------------------------------------------------------- */

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

void lrn_tfm_fill(const learner *l, tfm_config *t, int augment)
{
    memset(t, 0, sizeof *t);
    t->sz = l->sz;
    t->c_out = l->c_in;
    t->tfms = l->cfg.tfms;
    t->max_zoom = l->cfg.max_zoom;
    t->pad = l->cfg.pad;
    t->pad_sz = l->cfg.sz;
    t->augment = augment;
    memcpy(t->mean, l->mean, sizeof t->mean);
    memcpy(t->std, l->std, sizeof t->std);
}

int lrn_make_loader(learner *l, loader **out, ds_split split, int shuffle, int drop_last,
                int augment, char *err, size_t errlen)
{
    loader_config lc;
    memset(&lc, 0, sizeof lc);
    lc.bs = l->bs;
    lrn_tfm_fill(l, &lc.tfm, augment);
    lc.shuffle = shuffle;
    lc.drop_last = drop_last;
    lc.threads = l->cfg.loader_threads;
    lc.seed = l->cfg.seed;
    lc.cache_bytes = LOADER_CACHE_BYTES;
    lc.shard_rank = dist_rank(l->cfg.dist);
    lc.shard_size = dist_size(l->cfg.dist);
    return loader_create(out, l->ds, split, &lc, err, errlen);
}

void learner_destroy(learner *l)
{
    if (!l)
        return;
    loader_destroy(l->train_dl);
    loader_destroy(l->valid_dl);
    loader_destroy(l->plain_dl);
    lrn_pc_drop(l);
    free(l->pc_xbuf);
    free(l->pc_ybuf);
    free(l->pc_tbuf);
    free(l->pc_perm);
    for (int i = 0; i < l->n_snapshots; i++)
        free(l->snapshots[i]);
    free(l->snapshots);
    optim_destroy(l->opt);
    net_destroy(l->net);
    free(l->pretrained);
    free(l->ckpt_dir);
    free(l);
}

/* The input channels of a pretrained body, 1 or 3, from its conv1.weight; else -EINVAL with
 * err naming what (the file's path, or "the file"). */
static int pretrained_c_in(const st_file *f, const char *what, char *err, size_t errlen)
{
    const st_tensor *t = st_find(f, "conv1.weight");
    int c_in = t && t->ndim == 4 ? (int)t->shape[1] : -1;
    if (c_in != 1 && c_in != 3) {
        err_set(err, errlen, "pretrained: %s has no conv1.weight of 1 or 3 input channels",
                what);
        return -EINVAL;
    }
    return c_in;
}

int learner_check_pretrained(const char *arch, const st_file *f, char *err, size_t errlen)
{
    int c_in = pretrained_c_in(f, "the file", err, errlen);
    if (c_in < 0)
        return c_in;
    model_spec ms;
    model_spec_defaults(&ms);
    ms.arch = arch;
    ms.c_in = c_in;
    ms.head = HEAD_PLAIN; /* WEIGHTS_BODY ignores a plain head's fc.* and checks the rest */
    net *n;
    int rc = model_create(&n, &ms, err, errlen);
    if (rc)
        return rc;
    rc = weights_check_st(n, f, WEIGHTS_BODY, err, errlen);
    net_destroy(n);
    return rc;
}

static int create_check_config(const learner_config *cfg, const ds_info *info, char *err,
                               size_t errlen)
{
    if (cfg->sz < 8 || cfg->sz > 1024) {
        err_set(err, errlen, "sz: must be between 8 and 1024 (got %d)", cfg->sz);
        return -EINVAL;
    }
    if (cfg->bs < 1 || cfg->bs > 4096) {
        err_set(err, errlen, "bs: must be between 1 and 4096 (got %d)", cfg->bs);
        return -EINVAL;
    }
    if (cfg->pad < 0 || cfg->pad > cfg->sz / 2) {
        err_set(err, errlen, "pad: must be between 0 and sz / 2 (%d for sz %d; got %d)",
                cfg->sz / 2, cfg->sz, cfg->pad);
        return -EINVAL;
    }
    if (cfg->bs < dist_size(cfg->dist)) {
        err_set(err, errlen, "bs: the global batch (%d) must be at least the number of "
                    "workers (%d)", cfg->bs, dist_size(cfg->dist));
        return -EINVAL;
    }
    if (!cfg->model.arch || !model_arch_known(cfg->model.arch)) {
        err_set(err, errlen, "arch: unknown architecture '%s'",
                cfg->model.arch ? cfg->model.arch : "(null)");
        return -EINVAL;
    }
    if (cfg->precompute && !cfg->pretrained) {
        err_set(err, errlen, "precompute: needs a pretrained body (set pretrained)");
        return -EINVAL;
    }
    if (cfg->precision != PRECISION_FP32 && cfg->precision != PRECISION_BF16) {
        err_set(err, errlen, "precision: unknown precision %d", (int)cfg->precision);
        return -EINVAL;
    }
    if (cfg->bf16_kernels != BF16_KERNELS_AUTO && cfg->bf16_kernels != BF16_KERNELS_ONEDNN &&
        cfg->bf16_kernels != BF16_KERNELS_FP32) {
        err_set(err, errlen, "bf16_kernels: unknown kernels %d", (int)cfg->bf16_kernels);
        return -EINVAL;
    }
    if (cfg->precision == PRECISION_BF16 && !precision_bf16_supported()) {
        err_set(err, errlen, "precision: bf16 needs a CPU with AVX512_BF16; oneDNN "
                "runs %s here (use fp32)", precision_onednn_isa());
        return -ENOTSUP;
    }
    if (cfg->precision == PRECISION_BF16 && bf16_kernels_check(cfg->bf16_kernels, err, errlen))
        return -ENOTSUP;
    if (cfg->opt != OPTIM_SGD && cfg->opt != OPTIM_ADAM) {
        err_set(err, errlen, "opt: unknown optimizer %d", (int)cfg->opt);
        return -EINVAL;
    }
    if (info->count[SPLIT_TRAIN] < 1 || info->count[SPLIT_VALID] < 1) {
        err_set(err, errlen, "dataset: needs training and validation images (has %d and %d)",
                info->count[SPLIT_TRAIN], info->count[SPLIT_VALID]);
        return -EINVAL;
    }
    if (info->n_classes < 2 && !info->multi_label) {
        err_set(err, errlen, "dataset: needs at least 2 classes (has %d)", info->n_classes);
        return -EINVAL;
    }
    return 0;
}

/* The network: the model of cfg for the dataset's classes, with the pretrained body's
 * weights (whose conv1 sets the input channels) when there is one. */
static int create_net(learner *l, char *err, size_t errlen)
{
    st_file pre = {0};
    int rc = 0;
    l->c_in = l->info->channels;
    if (l->pretrained) {
        rc = st_read_file(&pre, l->pretrained, err, errlen);
        if (rc)
            return rc;
        l->c_in = pretrained_c_in(&pre, l->pretrained, err, errlen);
        if (l->c_in < 0) {
            st_free(&pre);
            return l->c_in;
        }
    }
    model_spec ms = l->cfg.model;
    ms.c_in = l->c_in;
    ms.n_classes = l->info->n_classes;
    ms.multi_label = l->info->multi_label;
    ms.seed = l->cfg.seed;
    rc = model_create(&l->net, &ms, err, errlen);
    if (!rc && l->cfg.bf16_kernels != BF16_KERNELS_AUTO)
        rc = net_set_bf16_kernels(l->net, l->cfg.bf16_kernels);
    if (!rc)
        rc = net_set_precision(l->net, l->cfg.precision);
    if (!rc)
        net_set_dist(l->net, l->cfg.dist);
    if (!rc && l->pretrained)
        rc = weights_load_st(l->net, &pre, WEIGHTS_BODY, err, errlen);
    st_free(&pre);
    if (rc)
        return rc;
    l->n_groups = l->net->n_groups;
    l->head_group = l->n_groups - 1;
    if (l->n_groups > NET_MAX_GROUPS) {
        err_set(err, errlen, "arch: %d layer groups, at most %d supported", l->n_groups,
                NET_MAX_GROUPS);
        return -EINVAL;
    }
    return 0;
}

/* The normalisation per input channel: ImageNet's for a pretrained body, else the
 * dataset's, averaged over the colours when a gray model reads them. */
static void create_stats(learner *l)
{
    const ds_info *info = l->info;
    for (int c = 0; c < 3; c++) {
        int src = l->c_in == 1 ? 0 : c;
        if (l->cfg.imagenet_stats) {
            /* A gray model on ImageNet statistics: the mean of the three channels. */
            l->mean[c] = l->c_in == 1 ? (imagenet_mean[0] + imagenet_mean[1] +
                                         imagenet_mean[2]) / 3.0f : imagenet_mean[c];
            l->std[c] = l->c_in == 1 ? (imagenet_std[0] + imagenet_std[1] +
                                        imagenet_std[2]) / 3.0f : imagenet_std[c];
        } else {
            l->mean[c] = info->mean[info->channels == 1 ? 0 : src];
            l->std[c] = info->std[info->channels == 1 ? 0 : src] > 1e-6f
                            ? info->std[info->channels == 1 ? 0 : src] : 1.0f;
            if (l->c_in == 1 && info->channels == 3) {
                l->mean[c] = (info->mean[0] + info->mean[1] + info->mean[2]) / 3.0f;
                l->std[c] = (info->std[0] + info->std[1] + info->std[2]) / 3.0f;
                if (l->std[c] < 1e-6f)
                    l->std[c] = 1.0f;
            }
        }
    }
}

/* The optimizer, the loaders, and the starting freeze (and precompute) state. */
static int create_training(learner *l, char *err, size_t errlen)
{
    optim_config oc;
    optim_config_defaults(&oc);
    if (l->cfg.opt == OPTIM_ADAM) {
        oc.kind = OPTIM_ADAM;
        oc.decoupled_wd = 1;
        oc.beta2 = 0.99;
    }
    int rc = optim_create(&l->opt, l->net, &oc);
    if (rc)
        return rc;
    /* Each step's update runs inside the backward (optim_backward_step), so the full
     * gradient buffer is never written; a data-parallel world keeps it (net_dist.c). */
    if ((rc = net_set_fused_backward(l->net, 1)))
        return rc;
    int n_train = l->info->count[SPLIT_TRAIN];
    rc = lrn_make_loader(l, &l->train_dl, SPLIT_TRAIN, 1, n_train >= l->bs, 1, err, errlen);
    if (!rc)
        rc = lrn_make_loader(l, &l->valid_dl, SPLIT_VALID, 0, 0, 0, err, errlen);
    if (rc)
        return rc;
    if (!l->pretrained) {
        net_freeze_to(l->net, 0);
        return 0;
    }
    net_freeze_to(l->net, l->head_group);
    return l->cfg.precompute ? learner_set_precompute(l, 1, err, errlen) : 0;
}

int learner_create(learner **out, const learner_config *cfg, dataset *ds, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (!cfg || !ds) {
        err_set(err, errlen, "learner: no configuration or dataset");
        return -EINVAL;
    }
    const ds_info *info = dataset_info(ds);
    int rc = create_check_config(cfg, info, err, errlen);
    if (rc)
        return rc;
    learner *l = calloc(1, sizeof *l);
    if (!l)
        goto out_nomem;
    l->cfg = *cfg;
    l->ds = ds;
    l->info = info;
    l->sz = cfg->sz;
    l->bs = cfg->bs;
    l->best_valid_loss = INFINITY;
    if (cfg->pretrained && !(l->pretrained = strdup(cfg->pretrained)))
        goto out_nomem;
    if (cfg->checkpoint_dir && !(l->ckpt_dir = strdup(cfg->checkpoint_dir)))
        goto out_nomem;
    l->cfg.pretrained = l->pretrained;
    l->cfg.checkpoint_dir = l->ckpt_dir;
    rc = create_net(l, err, errlen);
    if (!rc) {
        create_stats(l);
        rc = create_training(l, err, errlen);
    }
    if (rc) {
        learner_destroy(l);
        return rc;
    }
    *out = l;
    return 0;
out_nomem:
    err_set(err, errlen, "learner: out of memory");
    learner_destroy(l);
    return -ENOMEM;
}

net *learner_net(learner *l)
{
    return l->net;
}

/* ---- state changes ------------------------------------------------------------------------ */

int learner_freeze_to(learner *l, int group, char *err, size_t errlen)
{
    if (group < 0 || group > l->n_groups) {
        err_set(err, errlen, "to: must be between 0 and %d (got %d)", l->n_groups, group);
        return -EINVAL;
    }
    if (group < l->head_group)
        l->precompute = 0; /* the cache holds a frozen body's output only */
    int rc = net_freeze_to(l->net, group);
    if (rc)
        err_set(err, errlen, "freeze: out of memory for the gradient buffers");
    return rc;
}

int learner_unfreeze(learner *l)
{
    return learner_freeze_to(l, 0, NULL, 0);
}

int learner_set_precompute(learner *l, int on, char *err, size_t errlen)
{
    if (!on) {
        l->precompute = 0;
        return 0;
    }
    if (l->net->freeze_to != l->head_group) {
        err_set(err, errlen,
                "precompute: needs the body frozen (freeze_to %d, now %d)", l->head_group,
                l->net->freeze_to);
        return -EINVAL;
    }
    if (!l->pc_perm) {
        int rc = lrn_pc_setup(l, err, errlen);
        if (rc)
            return rc;
        int n = l->info->count[SPLIT_TRAIN] > l->info->count[SPLIT_VALID]
                    ? l->info->count[SPLIT_TRAIN] : l->info->count[SPLIT_VALID];
        l->pc_xbuf = malloc((size_t)l->bs * l->pc_dim * sizeof(float));
        l->pc_ybuf = malloc((size_t)l->bs * sizeof(int32_t));
        l->pc_tbuf = malloc((size_t)l->bs * l->info->n_classes * sizeof(float));
        l->pc_perm = malloc((size_t)(n + 1) * sizeof(int32_t));
        if (!l->pc_xbuf || !l->pc_ybuf || !l->pc_tbuf || !l->pc_perm) {
            free(l->pc_perm);
            l->pc_perm = NULL;
            err_set(err, errlen, "precompute: out of memory");
            return -ENOMEM;
        }
    }
    l->precompute = 1;
    return 0;
}

int learner_resize(learner *l, int sz, char *err, size_t errlen)
{
    if (sz < 8 || sz > 1024) {
        err_set(err, errlen, "sz: must be between 8 and 1024 (got %d)", sz);
        return -EINVAL;
    }
    if (sz != l->sz) {
        l->sz = sz;
        lrn_pc_drop(l);
    }
    return 0;
}

void learner_get_state(const learner *l, learner_state *st)
{
    memset(st, 0, sizeof *st);
    st->freeze_to = l->net->freeze_to;
    st->n_groups = l->n_groups;
    st->precompute = l->precompute;
    st->sz = l->sz;
    st->bs = l->bs;
    st->augment = !l->precompute;
    st->step = l->step;
    st->epochs_done = l->epochs_done;
    st->best_valid_loss = l->best_valid_loss;
    st->best_accuracy = l->best_accuracy;
}

/* ---- training steps ---------------------------------------------------------------------- */

/* One optimizer step on a batch (images, or cached activations through the head);
 * returns the batch loss. */
float lrn_train_step(learner *l, int cached, const batch_view *v, const double *lrs,
                 int *rc)
{
    net *m = l->net;
    optim *o = l->opt;
    int n_groups = l->n_groups;
    *rc = net_set_batch(m, v->n, l->sz, l->sz);
    if (*rc)
        return NAN;
    if (!src_forward(l, cached, v->x, 1)) {
        *rc = -ENOMEM;
        return NAN;
    }
    float loss = net_loss(m, v->y, v->t);
    optim_set_lrs(o, lrs, n_groups); /* before: the update may run inside the backward */
    optim_backward_step(o, v->y, v->t);
    if (dist_active(l->cfg.dist)) {
        /* The mean over the global batch, as one process would report it. */
        double sum = (double)loss * v->n;
        if ((*rc = dist_sum_f64(l->cfg.dist, &sum, 1)))
            return NAN;
        loss = (float)(sum / (double)m->dist_total);
    }
    return loss;
}

int lrn_check_lrs(const learner *l, int n_lrs, const double *lrs, const char *field,
              char *err, size_t errlen)
{
    if (n_lrs != 1 && n_lrs != l->n_groups) {
        err_set(err, errlen, "%s: give one value or one per layer group (%d), got %d", field,
                l->n_groups, n_lrs);
        return -EINVAL;
    }
    for (int g = 0; g < n_lrs; g++)
        if (!isfinite(lrs[g]) || lrs[g] <= 0.0 || lrs[g] > 100.0) {
            err_set(err, errlen, "%s: must be positive and at most 100 (got %g)", field,
                    lrs[g]);
            return -EINVAL;
        }
    return 0;
}

void lrn_expand_lrs(double *dst, int n_groups, int n_lrs, const double *lrs, double f)
{
    for (int g = 0; g < n_groups; g++)
        dst[g] = lrs[n_lrs == 1 ? 0 : g] * f;
}
