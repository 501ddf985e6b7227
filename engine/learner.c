/* learner.c: the recipe's operations on a model + dataset: LR sweep, SGDR fit with per-batch
 * events, validation, freeze/unfreeze, the precompute cache of pooled activations, resize,
 * TTA and prediction, snapshots, epoch checkpoints with exact resume, and the recipe. */
#include "learner.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lrsched.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include "weights.h"

#define CKPT_VERSION 1
#define LOADER_CACHE_BYTES ((size_t)256 << 20)
#define TTA_MAX_AUG 15

/* The precompute cache of one split: pooled body activations by item index. */
typedef struct pc_split {
    int n;          /* items */
    float *x;       /* (n, dim) */
    int32_t *y;     /* (n) labels (single-label) */
    float *t;       /* (n, n_classes) targets (multi-label) */
} pc_split;

/* A saved copy of everything an LR sweep or early stop may have to put back. */
typedef struct net_copy {
    float *params, *buffers, *opt_state;
    int64_t *opt_steps;
    uint64_t rng;
} net_copy;

/* Where a fit is, for checkpoints and resume. */
typedef struct fit_pos {
    int active;            /* a fit has started and not finished */
    int next_epoch;        /* the first epoch of the fit not yet done */
    int64_t epoch_base;    /* loader epoch id of the fit's epoch 0 */
    int64_t step_base;     /* learner step at the fit's start */
    sched_plan plan;
    int n_lrs;
    double lrs[LEARNER_MAX_GROUPS];
    double wd;
    int snapshots, patience;
    loss_smoother smooth;
    int n_snapshots;
} fit_pos;

struct learner {
    learner_config cfg;
    char *pretrained, *ckpt_dir;
    dataset *ds;
    const ds_info *info;
    net *net;
    optim *opt;
    int n_groups, head_group;
    int c_in, sz, bs;
    float mean[3], std[3];
    loader *train_dl;      /* shuffled, augmentation per state */
    loader *valid_dl;      /* in order; augmented only for TTA passes */
    loader *plain_dl;      /* the training split in order without augmentation (precompute) */
    int64_t epoch_id;      /* loader epoch ids handed out so far (data order, augmentation) */
    int64_t step;
    int epochs_done;
    float best_valid_loss, best_accuracy;
    uint64_t weights_version; /* bumped whenever the body's weights change */

    /* precompute */
    int precompute;
    int pool_node, pc_dim;
    int pc_valid;          /* the cache matches weights_version and pc_sz */
    int pc_sz;
    uint64_t pc_version;
    pc_split pc_train, pc_valid_split;
    float *pc_xbuf, *pc_tbuf;
    int32_t *pc_ybuf, *pc_perm;

    /* snapshots (in memory; also files when there is a checkpoint folder) */
    int n_snapshots;
    float **snapshots;     /* params then buffers */

    fit_pos fit;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void note(const ev_hooks *h, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void note(const ev_hooks *h, const char *what, const char *fmt, ...)
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

static void progress(const ev_hooks *h, double frac, double t0)
{
    if (!h || !h->on_progress)
        return;
    double el = now_s() - t0;
    double eta = frac > 1e-6 ? el * (1.0 - frac) / frac : -1.0;
    h->on_progress(h->ctx, frac > 1.0 ? 1.0 : frac, eta);
}

/* ---- net copies ------------------------------------------------------------------------- */

static void net_copy_free(net_copy *c)
{
    free(c->params);
    free(c->buffers);
    free(c->opt_state);
    free(c->opt_steps);
    memset(c, 0, sizeof *c);
}

static int net_copy_save(net_copy *c, const learner *l)
{
    const net *n = l->net;
    memset(c, 0, sizeof *c);
    c->params = malloc((n->n_params ? n->n_params : 1) * sizeof(float));
    c->buffers = malloc((n->n_buffers ? n->n_buffers : 1) * sizeof(float));
    c->opt_state = malloc((l->opt->n_state ? l->opt->n_state : 1) * sizeof(float));
    c->opt_steps = malloc((size_t)(n->n_tensors ? n->n_tensors : 1) * sizeof(int64_t));
    if (!c->params || !c->buffers || !c->opt_state || !c->opt_steps) {
        net_copy_free(c);
        return -ENOMEM;
    }
    memcpy(c->params, n->params, n->n_params * sizeof(float));
    memcpy(c->buffers, n->buffers, n->n_buffers * sizeof(float));
    memcpy(c->opt_state, l->opt->state, l->opt->n_state * sizeof(float));
    memcpy(c->opt_steps, l->opt->steps, (size_t)n->n_tensors * sizeof(int64_t));
    c->rng = n->rng;
    return 0;
}

static void net_copy_restore(const net_copy *c, learner *l)
{
    net *n = l->net;
    memcpy(n->params, c->params, n->n_params * sizeof(float));
    memcpy(n->buffers, c->buffers, n->n_buffers * sizeof(float));
    memcpy(l->opt->state, c->opt_state, l->opt->n_state * sizeof(float));
    memcpy(l->opt->steps, c->opt_steps, (size_t)n->n_tensors * sizeof(int64_t));
    n->rng = c->rng;
}

/* ---- precompute set-up -------------------------------------------------------------------- */

/* Finds the head's pooling node, whose output the cache holds. */
static int pc_setup(learner *l, char *err, size_t errlen)
{
    int pid = net_pool_node(l->net);
    if (pid < 0) {
        set_err(err, errlen, "precompute: the model has no pooling between body and head");
        return -EINVAL;
    }
    /* Node shapes are known once a batch shape is set. */
    int rc = net_set_batch(l->net, l->bs, l->sz, l->sz);
    if (rc) {
        set_err(err, errlen, "precompute: size %d does not fit the network", l->sz);
        return rc;
    }
    l->pool_node = pid;
    l->pc_dim = net_node_features(l->net, pid);
    return l->pc_dim > 0 ? 0 : -EINVAL;
}

static void pc_split_free(pc_split *s)
{
    free(s->x);
    free(s->y);
    free(s->t);
    memset(s, 0, sizeof *s);
}

static void pc_drop(learner *l)
{
    pc_split_free(&l->pc_train);
    pc_split_free(&l->pc_valid_split);
    l->pc_valid = 0;
}

static int make_loader(learner *l, loader **out, ds_split split, int shuffle, int drop_last,
                       int augment, char *err, size_t errlen);

/* ---- batches from the loaders or from the cache ------------------------------------------- */

typedef struct batch_src {
    learner *l;
    int cached;
    loader *dl;
    const pc_split *cs;
    int pos, n_batches, batch_i;
    int shuffle, drop_last;
} batch_src;

typedef struct batch_view {
    int n;
    const float *x;
    const int32_t *y;
    const float *t;
    const int32_t *index; /* NULL for cached batches */
} batch_view;

static int src_begin(batch_src *s, learner *l, ds_split split, int augment, int cached)
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
static int src_next(batch_src *s, batch_view *v)
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
    int n = s->cs->n - s->pos < l->bs ? s->cs->n - s->pos : l->bs;
    int nc = l->info->n_classes, dim = l->pc_dim;
    for (int i = 0; i < n; i++) {
        int k = s->shuffle ? l->pc_perm[s->pos + i] : s->pos + i;
        memcpy(l->pc_xbuf + (size_t)i * dim, s->cs->x + (size_t)k * dim, dim * sizeof(float));
        if (s->cs->y)
            l->pc_ybuf[i] = s->cs->y[k];
        if (s->cs->t)
            memcpy(l->pc_tbuf + (size_t)i * nc, s->cs->t + (size_t)k * nc, nc * sizeof(float));
    }
    s->pos += n;
    s->batch_i++;
    v->n = n;
    v->x = l->pc_xbuf;
    v->y = s->cs->y ? l->pc_ybuf : NULL;
    v->t = s->cs->t ? l->pc_tbuf : NULL;
    v->index = NULL;
    return 1;
}

/* Forward of a batch: images through the whole net, or cached pooled activations through
 * the head only (backward then stops at the pooling node). */
static const float *src_forward(learner *l, int cached, const float *x, int training)
{
    if (cached)
        return net_forward_from(l->net, l->pool_node, x, training);
    return net_forward(l->net, x, training);
}

/* ---- precompute --------------------------------------------------------------------------- */

static int pc_fill(learner *l, ds_split split, loader *dl, pc_split *out, const ev_hooks *h,
                   char *err, size_t errlen)
{
    int n_items = loader_n_items(dl), dim = l->pc_dim, nc = l->info->n_classes;
    memset(out, 0, sizeof *out);
    out->n = n_items;
    out->x = malloc((size_t)(n_items ? n_items : 1) * dim * sizeof(float));
    if (l->info->multi_label)
        out->t = malloc((size_t)(n_items ? n_items : 1) * nc * sizeof(float));
    else
        out->y = malloc((size_t)(n_items ? n_items : 1) * sizeof(int32_t));
    if (!out->x || (!out->t && !out->y)) {
        pc_split_free(out);
        set_err(err, errlen, "precompute: out of memory for %d cached activations", n_items);
        return -ENOMEM;
    }
    int rc = loader_begin_epoch(dl, (int)l->epoch_id++, l->sz, 0);
    const batch *b;
    while (rc == 0 && (rc = loader_next(dl, &b)) > 0) {
        rc = net_set_batch(l->net, b->n, l->sz, l->sz);
        if (rc)
            break;
        const float *pooled = net_forward_to(l->net, b->x, 0, l->pool_node);
        if (!pooled) {
            rc = -ENOMEM;
            break;
        }
        for (int i = 0; i < b->n; i++) {
            int k = b->index[i];
            memcpy(out->x + (size_t)k * dim, pooled + (size_t)i * dim, dim * sizeof(float));
            if (out->y)
                out->y[k] = b->y[i];
            else
                memcpy(out->t + (size_t)k * nc, b->targets + (size_t)i * nc,
                       nc * sizeof(float));
        }
        rc = 0;
    }
    if (rc < 0) {
        pc_split_free(out);
        set_err(err, errlen, "precompute: reading the %s split failed (%d)",
                split == SPLIT_TRAIN ? "training" : "validation", rc);
        return rc;
    }
    return 0;
}

/* Makes sure the cache matches the current weights and size. */
static int pc_ensure(learner *l, const ev_hooks *h, char *err, size_t errlen)
{
    if (l->pc_valid && l->pc_sz == l->sz && l->pc_version == l->weights_version)
        return 0;
    pc_drop(l);
    double t0 = now_s();
    if (!l->plain_dl) {
        int rc = make_loader(l, &l->plain_dl, SPLIT_TRAIN, 0, 0, 0, err, errlen);
        if (rc)
            return rc;
    }
    int rc = pc_fill(l, SPLIT_TRAIN, l->plain_dl, &l->pc_train, h, err, errlen);
    if (!rc)
        rc = pc_fill(l, SPLIT_VALID, l->valid_dl, &l->pc_valid_split, h, err, errlen);
    if (rc) {
        pc_drop(l);
        return rc;
    }
    l->pc_valid = 1;
    l->pc_sz = l->sz;
    l->pc_version = l->weights_version;
    note(h, "precompute",
         "cached the frozen body's pooled activations (%d floats each) of %d training and %d "
         "validation images at size %d in %.1f s; the head trains from them without "
         "augmentation", l->pc_dim, l->pc_train.n, l->pc_valid_split.n, l->sz,
         now_s() - t0);
    return 0;
}

/* ---- metrics ---------------------------------------------------------------------------- */

typedef struct metric_acc {
    double loss_sum;
    int64_t n, correct;
    double cell_correct; /* multi-label: (prob > 0.5) == target, over samples x classes */
    double f2_sum;       /* multi-label: per-sample F2 at 0.2 */
} metric_acc;

static void acc_add_probs(metric_acc *a, const float *probs, const int32_t *y, const float *t,
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

static void acc_result(const metric_acc *a, int multi, float *loss, float *accuracy, float *f2)
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
static void logits_to_probs(float *p, const float *z, int n, int nc, int multi)
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
static double probs_loss(const float *p, const int32_t *y, const float *t, int n, int nc,
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

/* Validation over the valid split: loss, accuracy, F2. Uses the cache when it is on. */
static int validate(learner *l, float *loss, float *accuracy, float *f2)
{
    batch_src s;
    int cached = l->precompute && l->pc_valid;
    int rc = src_begin(&s, l, SPLIT_VALID, 0, cached);
    if (rc)
        return rc;
    metric_acc a = {0};
    batch_view v;
    int nc = l->info->n_classes, multi = l->info->multi_label;
    net *m = l->net;
    while ((rc = src_next(&s, &v)) > 0) {
        rc = net_set_batch(m, v.n, l->sz, l->sz);
        if (rc)
            return rc;
        if (!src_forward(l, cached, v.x, 0))
            return -ENOMEM;
        float bl = net_loss(m, v.y, v.t);
        a.loss_sum += (double)bl * v.n;
        acc_add_probs(&a, m->probs, v.y, v.t, v.n, nc, multi);
    }
    if (rc < 0)
        return rc;
    acc_result(&a, multi, loss, accuracy, f2);
    return 0;
}

/* ---- creation ----------------------------------------------------------------------------- */

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

static void tfm_fill(const learner *l, tfm_config *t, int augment)
{
    memset(t, 0, sizeof *t);
    t->sz = l->sz;
    t->c_out = l->c_in;
    t->tfms = l->cfg.tfms;
    t->max_zoom = l->cfg.max_zoom;
    t->augment = augment;
    memcpy(t->mean, l->mean, sizeof t->mean);
    memcpy(t->std, l->std, sizeof t->std);
}

static int make_loader(learner *l, loader **out, ds_split split, int shuffle, int drop_last,
                       int augment, char *err, size_t errlen)
{
    loader_config lc;
    memset(&lc, 0, sizeof lc);
    lc.bs = l->bs;
    tfm_fill(l, &lc.tfm, augment);
    lc.shuffle = shuffle;
    lc.drop_last = drop_last;
    lc.threads = l->cfg.loader_threads;
    lc.seed = l->cfg.seed;
    lc.cache_bytes = LOADER_CACHE_BYTES;
    return loader_create(out, l->ds, split, &lc, err, errlen);
}

void learner_destroy(learner *l)
{
    if (!l)
        return;
    loader_destroy(l->train_dl);
    loader_destroy(l->valid_dl);
    loader_destroy(l->plain_dl);
    pc_drop(l);
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

/* c_in of a pretrained file: the second dimension of conv1.weight. */
static int pretrained_c_in(const st_file *f)
{
    const st_tensor *t = st_find(f, "conv1.weight");
    return t && t->ndim == 4 ? (int)t->shape[1] : -1;
}

int learner_create(learner **out, const learner_config *cfg, dataset *ds, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (!cfg || !ds) {
        set_err(err, errlen, "learner: no configuration or dataset");
        return -EINVAL;
    }
    const ds_info *info = dataset_info(ds);
    if (cfg->sz < 8 || cfg->sz > 1024) {
        set_err(err, errlen, "sz: must be between 8 and 1024 (got %d)", cfg->sz);
        return -EINVAL;
    }
    if (cfg->bs < 1 || cfg->bs > 4096) {
        set_err(err, errlen, "bs: must be between 1 and 4096 (got %d)", cfg->bs);
        return -EINVAL;
    }
    if (!cfg->model.arch || !model_arch_known(cfg->model.arch)) {
        set_err(err, errlen, "arch: unknown architecture '%s'",
                cfg->model.arch ? cfg->model.arch : "(null)");
        return -EINVAL;
    }
    if (cfg->precompute && !cfg->pretrained) {
        set_err(err, errlen, "precompute: needs a pretrained body (set pretrained)");
        return -EINVAL;
    }
    if (info->count[SPLIT_TRAIN] < 1 || info->count[SPLIT_VALID] < 1) {
        set_err(err, errlen, "dataset: needs training and validation images (has %d and %d)",
                info->count[SPLIT_TRAIN], info->count[SPLIT_VALID]);
        return -EINVAL;
    }
    if (info->n_classes < 2 && !info->multi_label) {
        set_err(err, errlen, "dataset: needs at least 2 classes (has %d)", info->n_classes);
        return -EINVAL;
    }

    int rc = -ENOMEM;
    st_file pre = {0};
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

    l->c_in = info->channels;
    if (l->pretrained) {
        rc = st_read_file(&pre, l->pretrained, err, errlen);
        if (rc)
            goto out_fail;
        l->c_in = pretrained_c_in(&pre);
        if (l->c_in != 1 && l->c_in != 3) {
            set_err(err, errlen, "pretrained: %s has no conv1.weight of 1 or 3 input channels",
                    l->pretrained);
            rc = -EINVAL;
            goto out_fail;
        }
    }
    model_spec ms = cfg->model;
    ms.c_in = l->c_in;
    ms.n_classes = info->n_classes;
    ms.multi_label = info->multi_label;
    ms.seed = cfg->seed;
    rc = model_create(&l->net, &ms, err, errlen);
    if (rc)
        goto out_fail;
    if (l->pretrained) {
        rc = weights_load_st(l->net, &pre, WEIGHTS_BODY, err, errlen);
        if (rc)
            goto out_fail;
    }
    st_free(&pre);
    l->n_groups = l->net->n_groups;
    l->head_group = l->n_groups - 1;
    if (l->n_groups > LEARNER_MAX_GROUPS) {
        set_err(err, errlen, "arch: %d layer groups, at most %d supported", l->n_groups,
                LEARNER_MAX_GROUPS);
        rc = -EINVAL;
        goto out_fail;
    }
    for (int c = 0; c < 3; c++) {
        int src = l->c_in == 1 ? 0 : c;
        if (cfg->imagenet_stats) {
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

    optim_config oc;
    optim_config_defaults(&oc);
    rc = optim_create(&l->opt, l->net, &oc);
    if (rc)
        goto out_fail;
    int n_train = info->count[SPLIT_TRAIN];
    rc = make_loader(l, &l->train_dl, SPLIT_TRAIN, 1, n_train >= l->bs, 1, err, errlen);
    if (!rc)
        rc = make_loader(l, &l->valid_dl, SPLIT_VALID, 0, 0, 0, err, errlen);
    if (rc)
        goto out_fail;

    if (l->pretrained) {
        net_freeze_to(l->net, l->head_group);
        if (cfg->precompute) {
            rc = learner_set_precompute(l, 1, err, errlen);
            if (rc)
                goto out_fail;
        }
    } else {
        net_freeze_to(l->net, 0);
    }
    *out = l;
    return 0;
out_nomem:
    rc = -ENOMEM;
    set_err(err, errlen, "learner: out of memory");
out_fail:
    st_free(&pre);
    learner_destroy(l);
    return rc;
}

net *learner_net(learner *l)
{
    return l->net;
}

/* ---- state changes ------------------------------------------------------------------------ */

int learner_freeze_to(learner *l, int group, char *err, size_t errlen)
{
    if (group < 0 || group > l->n_groups) {
        set_err(err, errlen, "to: must be between 0 and %d (got %d)", l->n_groups, group);
        return -EINVAL;
    }
    if (group < l->head_group)
        l->precompute = 0; /* the cache holds a frozen body's output only */
    int rc = net_freeze_to(l->net, group);
    if (rc)
        set_err(err, errlen, "freeze: out of memory for the gradient buffers");
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
        set_err(err, errlen,
                "precompute: needs the body frozen (freeze_to %d, now %d)", l->head_group,
                l->net->freeze_to);
        return -EINVAL;
    }
    if (!l->pc_perm) {
        int rc = pc_setup(l, err, errlen);
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
            set_err(err, errlen, "precompute: out of memory");
            return -ENOMEM;
        }
    }
    l->precompute = 1;
    return 0;
}

int learner_resize(learner *l, int sz, char *err, size_t errlen)
{
    if (sz < 8 || sz > 1024) {
        set_err(err, errlen, "sz: must be between 8 and 1024 (got %d)", sz);
        return -EINVAL;
    }
    if (sz != l->sz) {
        l->sz = sz;
        pc_drop(l);
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
static float train_step(learner *l, int cached, const batch_view *v, const double *lrs,
                        int *rc)
{
    net *m = l->net;
    optim *o = l->opt;
    int n_groups = l->n_groups;
    *rc = net_set_batch(m, v->n, l->sz, l->sz);
    if (*rc)
        return NAN;
    net_zero_grad(m);
    if (!src_forward(l, cached, v->x, 1)) {
        *rc = -ENOMEM;
        return NAN;
    }
    float loss = net_loss(m, v->y, v->t);
    net_backward(m, v->y, v->t);
    optim_set_lrs(o, lrs, n_groups);
    optim_step(o);
    return loss;
}

static int check_lrs(const learner *l, int n_lrs, const double *lrs, const char *field,
                     char *err, size_t errlen)
{
    if (n_lrs != 1 && n_lrs != l->n_groups) {
        set_err(err, errlen, "%s: give one value or one per layer group (%d), got %d", field,
                l->n_groups, n_lrs);
        return -EINVAL;
    }
    for (int g = 0; g < n_lrs; g++)
        if (!isfinite(lrs[g]) || lrs[g] <= 0.0 || lrs[g] > 100.0) {
            set_err(err, errlen, "%s: must be positive and at most 100 (got %g)", field,
                    lrs[g]);
            return -EINVAL;
        }
    return 0;
}

static void expand_lrs(double *dst, int n_groups, int n_lrs, const double *lrs, double f)
{
    for (int g = 0; g < n_groups; g++)
        dst[g] = lrs[n_lrs == 1 ? 0 : g] * f;
}

/* ---- LR sweep ---------------------------------------------------------------------------- */

int learner_lr_find(learner *l, const lrfind_opts *o, const ev_hooks *h, lrfind_result *out,
                    char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    double start = o && o->start_lr > 0 ? o->start_lr : 1e-5;
    double end = o && o->end_lr > 0 ? o->end_lr : 10.0;
    if (!(start < end) || !isfinite(end) || end > 1e3) {
        set_err(err, errlen, "end_lr: must be above start_lr and at most 1000 (%g, %g)", start,
                end);
        return -EINVAL;
    }
    double ratios[LEARNER_MAX_GROUPS];
    for (int g = 0; g < l->n_groups; g++)
        ratios[g] = 1.0;
    if (o && o->n_lrs) {
        int rc = check_lrs(l, o->n_lrs, o->lrs, "lrs", err, errlen);
        if (rc)
            return rc;
        double last = o->lrs[o->n_lrs - 1];
        for (int g = 0; g < l->n_groups; g++)
            ratios[g] = o->lrs[o->n_lrs == 1 ? 0 : g] / last;
    }
    if (o && (o->wd < 0.0 || !isfinite(o->wd))) {
        set_err(err, errlen, "wd: must be a non-negative number");
        return -EINVAL;
    }
    int rc = 0;
    if (l->precompute) {
        rc = pc_ensure(l, h, err, errlen);
        if (rc)
            return rc;
    }
    int cached = l->precompute;
    int64_t bpe = cached ? (l->pc_train.n >= l->bs ? l->pc_train.n / l->bs
                                                    : (l->pc_train.n > 0))
                         : loader_n_batches(l->train_dl);
    if (bpe < 1) {
        set_err(err, errlen, "lr_find: the training split gives no batch");
        return -EINVAL;
    }
    int num_it = o && o->num_it > 0 ? o->num_it : lrfind_default_iters(bpe);
    if (num_it > 100000) {
        set_err(err, errlen, "num_it: at most 100000 (got %d)", num_it);
        return -EINVAL;
    }

    /* Everything the sweep changes is put back afterwards, whatever happens. */
    net_copy saved;
    rc = net_copy_save(&saved, l);
    if (rc) {
        set_err(err, errlen, "lr_find: out of memory saving the weights");
        return rc;
    }
    double wd = o ? o->wd : 0.0;
    optim_set_wds(l->opt, &wd, 1);
    out->points = calloc((size_t)num_it, sizeof *out->points);
    if (!out->points) {
        rc = -ENOMEM;
        set_err(err, errlen, "lr_find: out of memory");
        goto out_restore;
    }
    loss_smoother sm;
    smoother_reset(&sm);
    lrfind_stop stop;
    lrfind_stop_reset(&stop);
    double t0 = now_s();
    int it = 0;
    while (it < num_it && rc == 0) {
        batch_src s;
        rc = src_begin(&s, l, SPLIT_TRAIN, !cached, cached);
        if (rc) {
            set_err(err, errlen, "lr_find: the loader failed (%d)", rc);
            break;
        }
        batch_view v;
        int got = 0;
        while (it < num_it && (got = src_next(&s, &v)) > 0) {
            double f = sched_exp_sweep(start, end, it, num_it), lrs[LEARNER_MAX_GROUPS];
            for (int g = 0; g < l->n_groups; g++)
                lrs[g] = ratios[g] * f;
            float loss = train_step(l, cached, &v, lrs, &rc);
            if (rc) {
                set_err(err, errlen, "lr_find: the batch does not fit the network (%d)", rc);
                break;
            }
            double sl = smoother_add(&sm, loss);
            ev_sweep_point *p = &out->points[it];
            p->iter = it;
            p->lr = lrs[l->n_groups - 1];
            p->loss = loss;
            p->smooth_loss = (float)sl;
            out->n_points = ++it;
            if (h && h->on_sweep_point && h->on_sweep_point(h->ctx, p)) {
                rc = -ECANCELED;
                set_err(err, errlen, "lr_find: cancelled");
                break;
            }
            progress(h, (double)it / num_it, t0);
            if (lrfind_stop_check(&stop, it - 1, sl)) {
                out->stopped_early = 1;
                it = num_it;
                break;
            }
        }
        if (!rc && it < num_it && got < 0) {
            rc = got;
            set_err(err, errlen, "lr_find: the loader failed (%d)", rc);
        }
        if (!rc && it < num_it && s.batch_i == 0) {
            rc = -EIO;
            set_err(err, errlen, "lr_find: the training split gave no batch");
        }
    }
    if (!rc)
        lrfind_suggest(out);
out_restore:
    net_copy_restore(&saved, l);
    net_copy_free(&saved);
    if (rc) {
        if (rc != -ECANCELED)
            lrfind_result_free(out);
        return rc;
    }
    if (h && h->on_sweep_end) {
        ev_sweep_end e = {out->n_points, out->stopped_early,
                          {out->min_div10.lr, out->min_div10.reason},
                          {out->steep.lr, out->steep.reason},
                          {out->valley.lr, out->valley.reason},
                          {out->slide.lr, out->slide.reason}};
        h->on_sweep_end(h->ctx, &e);
    }
    note(h, "lr_find",
         "swept %d iterations from %.3g to %.3g%s; suggestions: min_div10 %.3g, steep %.3g, "
         "valley %.3g, slide %.3g", out->n_points, start, end,
         out->stopped_early ? " (stopped: the smoothed loss diverged)" : "",
         out->min_div10.lr, out->steep.lr, out->valley.lr, out->slide.lr);
    return 0;
}

/* ---- checkpoints ---------------------------------------------------------------------- */

enum {
    M_VERSION, M_STEP, M_EPOCHS_DONE, M_FREEZE_TO, M_PRECOMPUTE, M_SZ, M_RNG, M_EPOCH_ID,
    M_WEIGHTS_VERSION, M_BEST_LOSS, M_BEST_ACC, M_FIT_ACTIVE, M_FIT_NEXT, M_FIT_EPOCH_BASE,
    M_FIT_STEP_BASE, M_KIND, M_N_CYCLE, M_CYCLE_LEN, M_CYCLE_MULT, M_BPE, M_WARMUP, M_DIV,
    M_PCT, M_N_LRS, M_LR0, M_LR1, M_LR2, M_LR3, M_WD, M_SNAPSHOTS, M_PATIENCE, M_SM_AVG,
    M_SM_N, M_N_SNAP, M_N_PARAMS, M_N_STATE, M_COUNT
};

static int64_t dbits(double d)
{
    int64_t v;
    memcpy(&v, &d, sizeof v);
    return v;
}

static double bitsd(int64_t v)
{
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

static void meta_fill(const learner *l, int64_t *m)
{
    memset(m, 0, sizeof(int64_t) * M_COUNT);
    const fit_pos *f = &l->fit;
    m[M_VERSION] = CKPT_VERSION;
    m[M_STEP] = l->step;
    m[M_EPOCHS_DONE] = l->epochs_done;
    m[M_FREEZE_TO] = l->net->freeze_to;
    m[M_PRECOMPUTE] = l->precompute;
    m[M_SZ] = l->sz;
    m[M_RNG] = (int64_t)l->net->rng;
    m[M_EPOCH_ID] = l->epoch_id;
    m[M_WEIGHTS_VERSION] = (int64_t)l->weights_version;
    m[M_BEST_LOSS] = dbits(l->best_valid_loss);
    m[M_BEST_ACC] = dbits(l->best_accuracy);
    m[M_FIT_ACTIVE] = f->active;
    m[M_FIT_NEXT] = f->next_epoch;
    m[M_FIT_EPOCH_BASE] = f->epoch_base;
    m[M_FIT_STEP_BASE] = f->step_base;
    m[M_KIND] = f->plan.kind;
    m[M_N_CYCLE] = f->plan.n_cycle;
    m[M_CYCLE_LEN] = f->plan.cycle_len;
    m[M_CYCLE_MULT] = f->plan.cycle_mult;
    m[M_BPE] = f->plan.batches_per_epoch;
    m[M_WARMUP] = f->plan.warmup;
    m[M_DIV] = dbits(f->plan.div);
    m[M_PCT] = dbits(f->plan.pct);
    m[M_N_LRS] = f->n_lrs;
    for (int g = 0; g < LEARNER_MAX_GROUPS; g++)
        m[M_LR0 + g] = dbits(f->lrs[g]);
    m[M_WD] = dbits(f->wd);
    m[M_SNAPSHOTS] = f->snapshots;
    m[M_PATIENCE] = f->patience;
    m[M_SM_AVG] = dbits(f->smooth.avg);
    m[M_SM_N] = f->smooth.n;
    m[M_N_SNAP] = l->n_snapshots;
    m[M_N_PARAMS] = (int64_t)l->net->n_params;
    m[M_N_STATE] = (int64_t)l->opt->n_state;
}

int learner_save(learner *l, const char *path, char *err, size_t errlen)
{
    int cap = l->net->n_tensors + 4;
    st_tensor *ts = calloc((size_t)cap, sizeof *ts);
    if (!ts) {
        set_err(err, errlen, "checkpoint: out of memory");
        return -ENOMEM;
    }
    int n = weights_views(l->net, ts, cap - 3);
    if (n < 0) {
        free(ts);
        set_err(err, errlen, "checkpoint: cannot list the weights (%d)", n);
        return n;
    }
    int64_t meta[M_COUNT];
    meta_fill(l, meta);
    ts[n].name = "learner.meta";
    ts[n].dtype = ST_I64;
    ts[n].ndim = 1;
    ts[n].shape[0] = M_COUNT;
    ts[n].nbytes = sizeof meta;
    ts[n].data = meta;
    n++;
    ts[n].name = "optim.state";
    ts[n].dtype = ST_F32;
    ts[n].ndim = 1;
    ts[n].shape[0] = (int64_t)l->opt->n_state;
    ts[n].nbytes = l->opt->n_state * sizeof(float);
    ts[n].data = l->opt->state;
    n++;
    ts[n].name = "optim.steps";
    ts[n].dtype = ST_I64;
    ts[n].ndim = 1;
    ts[n].shape[0] = l->net->n_tensors;
    ts[n].nbytes = (size_t)l->net->n_tensors * sizeof(int64_t);
    ts[n].data = l->opt->steps;
    n++;
    int rc = st_write_file(path, ts, n, err, errlen);
    free(ts);
    return rc;
}

static int is_extra(const char *name)
{
    return strncmp(name, "learner.", 8) == 0 || strncmp(name, "optim.", 6) == 0;
}

int learner_load(learner *l, const char *path, char *err, size_t errlen)
{
    st_file f = {0};
    int rc = st_read_file(&f, path, err, errlen);
    if (rc)
        return rc;
    const st_tensor *tm = st_find(&f, "learner.meta");
    const st_tensor *tst = st_find(&f, "optim.state");
    const st_tensor *tsp = st_find(&f, "optim.steps");
    int64_t m[M_COUNT];
    if (!tm || tm->dtype != ST_I64 || tm->nbytes != sizeof m || !tst || tst->dtype != ST_F32 ||
        tst->nbytes != l->opt->n_state * sizeof(float) || !tsp || tsp->dtype != ST_I64 ||
        tsp->nbytes != (size_t)l->net->n_tensors * sizeof(int64_t)) {
        set_err(err, errlen, "checkpoint %s: not a checkpoint of this learner (learner.meta, "
                "optim.state or optim.steps missing or of another size)", path);
        rc = -EINVAL;
        goto out_free;
    }
    memcpy(m, tm->data, sizeof m);
    if (m[M_VERSION] != CKPT_VERSION || m[M_N_PARAMS] != (int64_t)l->net->n_params ||
        m[M_FREEZE_TO] < 0 || m[M_FREEZE_TO] > l->n_groups || m[M_SZ] < 8 ||
        m[M_SZ] > 1024) {
        set_err(err, errlen, "checkpoint %s: learner.meta is of another version or model",
                path);
        rc = -EINVAL;
        goto out_free;
    }
    /* The weights without the learner's own entries. */
    st_file wf = f;
    wf.tensors = calloc((size_t)(f.n ? f.n : 1), sizeof *wf.tensors);
    if (!wf.tensors) {
        rc = -ENOMEM;
        set_err(err, errlen, "checkpoint: out of memory");
        goto out_free;
    }
    wf.n = 0;
    for (int i = 0; i < f.n; i++)
        if (!is_extra(f.tensors[i].name))
            wf.tensors[wf.n++] = f.tensors[i];
    rc = weights_load_st(l->net, &wf, WEIGHTS_ALL, err, errlen);
    free(wf.tensors);
    if (rc)
        goto out_free;
    memcpy(l->opt->state, tst->data, tst->nbytes);
    memcpy(l->opt->steps, tsp->data, tsp->nbytes);
    l->step = m[M_STEP];
    l->epochs_done = (int)m[M_EPOCHS_DONE];
    l->net->rng = (uint64_t)m[M_RNG];
    l->epoch_id = m[M_EPOCH_ID];
    l->best_valid_loss = (float)bitsd(m[M_BEST_LOSS]);
    l->best_accuracy = (float)bitsd(m[M_BEST_ACC]);
    if (l->sz != (int)m[M_SZ])
        pc_drop(l);
    l->sz = (int)m[M_SZ];
    l->weights_version++;
    pc_drop(l);
    int want_pc = (int)m[M_PRECOMPUTE];
    l->precompute = 0;
    net_freeze_to(l->net, (int)m[M_FREEZE_TO]);
    if (want_pc && learner_set_precompute(l, 1, NULL, 0) != 0)
        l->precompute = 0;
    fit_pos *fp = &l->fit;
    memset(fp, 0, sizeof *fp);
    fp->active = (int)m[M_FIT_ACTIVE];
    fp->next_epoch = (int)m[M_FIT_NEXT];
    fp->epoch_base = m[M_FIT_EPOCH_BASE];
    fp->step_base = m[M_FIT_STEP_BASE];
    fp->plan.kind = (sched_kind)m[M_KIND];
    fp->plan.n_cycle = (int)m[M_N_CYCLE];
    fp->plan.cycle_len = (int)m[M_CYCLE_LEN];
    fp->plan.cycle_mult = (int)m[M_CYCLE_MULT];
    fp->plan.batches_per_epoch = m[M_BPE];
    fp->plan.warmup = (int)m[M_WARMUP];
    fp->plan.div = bitsd(m[M_DIV]);
    fp->plan.pct = bitsd(m[M_PCT]);
    fp->n_lrs = (int)m[M_N_LRS];
    for (int g = 0; g < LEARNER_MAX_GROUPS; g++)
        fp->lrs[g] = bitsd(m[M_LR0 + g]);
    fp->wd = bitsd(m[M_WD]);
    fp->snapshots = (int)m[M_SNAPSHOTS];
    fp->patience = (int)m[M_PATIENCE];
    fp->smooth.avg = bitsd(m[M_SM_AVG]);
    fp->smooth.n = m[M_SM_N];
    fp->n_snapshots = (int)m[M_N_SNAP];
out_free:
    st_free(&f);
    return rc;
}

static int ckpt_path(const learner *l, char *buf, size_t cap, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", l->ckpt_dir, name);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

/* ---- snapshots ---------------------------------------------------------------------------- */

static int snapshot_take(learner *l, int cycle, const ev_hooks *h, char *err, size_t errlen)
{
    net *n = l->net;
    float *s = malloc((n->n_params + n->n_buffers) * sizeof(float));
    float **grown = realloc(l->snapshots, sizeof *grown * (size_t)(l->n_snapshots + 1));
    if (!s || !grown) {
        free(s);
        if (grown)
            l->snapshots = grown;
        set_err(err, errlen, "snapshot: out of memory");
        return -ENOMEM;
    }
    l->snapshots = grown;
    memcpy(s, n->params, n->n_params * sizeof(float));
    memcpy(s + n->n_params, n->buffers, n->n_buffers * sizeof(float));
    l->snapshots[l->n_snapshots++] = s;
    char path[4096] = "";
    if (l->ckpt_dir) {
        char name[64];
        snprintf(name, sizeof name, "snapshot_%d.safetensors", l->n_snapshots - 1);
        int rc = ckpt_path(l, path, sizeof path, name);
        if (!rc)
            rc = weights_save_file(n, path, err, errlen);
        if (rc)
            return rc;
    }
    note(h, "snapshot", "saved the weights after the last batch of cycle %d (snapshot %d)%s%s",
         cycle, l->n_snapshots - 1, path[0] ? " to " : "", path);
    return 0;
}

int learner_n_snapshots(const learner *l)
{
    return l->n_snapshots;
}

/* ---- fit ---------------------------------------------------------------------------------- */

static int fit_checkpoint(learner *l, char *err, size_t errlen)
{
    if (!l->ckpt_dir)
        return 0;
    char path[4096];
    int rc = ckpt_path(l, path, sizeof path, "last.ckpt.safetensors");
    if (!rc)
        rc = learner_save(l, path, err, errlen);
    return rc;
}

static int fit_same(const fit_pos *a, const fit_opts *o, const sched_plan *p)
{
    if (a->plan.kind != p->kind || a->plan.n_cycle != p->n_cycle ||
        a->plan.cycle_len != p->cycle_len || a->plan.cycle_mult != p->cycle_mult ||
        a->plan.batches_per_epoch != p->batches_per_epoch || a->n_lrs != o->n_lrs ||
        a->wd != o->wd || a->snapshots != (o->snapshots != 0))
        return 0;
    for (int g = 0; g < o->n_lrs; g++)
        if (a->lrs[g] != o->lrs[g])
            return 0;
    return 1;
}

/* Restores snapshots saved as files by an interrupted fit. */
static int snapshots_reload(learner *l, int n_snap, char *err, size_t errlen)
{
    for (int i = 0; i < l->n_snapshots; i++)
        free(l->snapshots[i]);
    l->n_snapshots = 0;
    if (!l->ckpt_dir || n_snap == 0)
        return 0;
    net *n = l->net;
    net_copy keep;
    int rc = net_copy_save(&keep, l);
    if (rc)
        return rc;
    for (int i = 0; i < n_snap && !rc; i++) {
        char name[64], path[4096];
        snprintf(name, sizeof name, "snapshot_%d.safetensors", i);
        rc = ckpt_path(l, path, sizeof path, name);
        if (!rc)
            rc = weights_load_file(n, path, WEIGHTS_ALL, err, errlen);
        if (!rc) {
            float *s = malloc((n->n_params + n->n_buffers) * sizeof(float));
            float **grown = realloc(l->snapshots, sizeof *grown * (size_t)(i + 1));
            if (grown)
                l->snapshots = grown;
            if (!s || !grown) {
                free(s);
                rc = -ENOMEM;
                break;
            }
            memcpy(s, n->params, n->n_params * sizeof(float));
            memcpy(s + n->n_params, n->buffers, n->n_buffers * sizeof(float));
            l->snapshots[l->n_snapshots++] = s;
        }
    }
    net_copy_restore(&keep, l);
    net_copy_free(&keep);
    return rc;
}

/* stop_worse_cycle: the recipe's "until validation loss stops improving": stop at a cycle
 * end whose validation loss is not below the previous cycle end's, and go back to that
 * cycle end's weights. */
static int fit_run(learner *l, const fit_opts *o, const ev_hooks *h, int stop_worse_cycle,
                   char *err, size_t errlen)
{
    int rc = check_lrs(l, o->n_lrs, o->lrs, "lrs", err, errlen);
    if (rc)
        return rc;
    if (!(o->wd >= 0.0 && o->wd < 1.0)) {
        set_err(err, errlen, "wd: must be in [0, 1) (got %g)", o->wd);
        return -EINVAL;
    }
    if (o->early_stop_patience < 0) {
        set_err(err, errlen, "early_stop.patience: must be positive");
        return -EINVAL;
    }
    if (l->precompute) {
        rc = pc_ensure(l, h, err, errlen);
        if (rc)
            return rc;
    }
    int cached = l->precompute;
    int64_t bpe = cached ? (l->pc_train.n >= l->bs ? l->pc_train.n / l->bs
                                                    : (l->pc_train.n > 0))
                         : loader_n_batches(l->train_dl);
    sched_plan plan;
    sched_plan_defaults(&plan, bpe);
    plan.kind = o->schedule;
    plan.n_cycle = o->n_cycle;
    plan.cycle_len = o->cycle_len > 0 ? o->cycle_len : 1;
    plan.cycle_mult = o->cycle_mult > 0 ? o->cycle_mult : 1;
    char serr[160];
    if ((rc = sched_plan_check(&plan, serr, sizeof serr))) {
        set_err(err, errlen, "%s", serr);
        return rc;
    }

    fit_pos *fp = &l->fit;
    if (o->resume) {
        if (!l->ckpt_dir) {
            set_err(err, errlen, "resume: the learner has no checkpoint folder");
            return -EINVAL;
        }
        char path[4096];
        rc = ckpt_path(l, path, sizeof path, "last.ckpt.safetensors");
        if (!rc && access(path, R_OK) != 0) {
            set_err(err, errlen, "resume: no checkpoint at %s", path);
            return -ENOENT;
        }
        if (!rc)
            rc = learner_load(l, path, err, errlen);
        if (rc)
            return rc;
        if (!fp->active) {
            note(h, "resume", "the checkpointed fit had already finished; nothing to do");
            return 0;
        }
        cached = l->precompute;
        if (cached && (rc = pc_ensure(l, h, err, errlen)))
            return rc;
        if (!fit_same(fp, o, &plan)) {
            set_err(err, errlen, "resume: the checkpoint belongs to a fit with other settings");
            return -EINVAL;
        }
        rc = snapshots_reload(l, fp->n_snapshots, err, errlen);
        if (rc)
            return rc;
        note(h, "resume", "continuing at epoch %d of %lld from the last epoch checkpoint",
             fp->next_epoch, (long long)sched_total_epochs(&plan));
    } else {
        memset(fp, 0, sizeof *fp);
        fp->active = 1;
        fp->plan = plan;
        fp->n_lrs = o->n_lrs;
        memcpy(fp->lrs, o->lrs, sizeof fp->lrs);
        fp->wd = o->wd;
        fp->snapshots = o->snapshots != 0;
        fp->patience = o->early_stop_patience;
        fp->epoch_base = l->epoch_id;
        fp->step_base = l->step;
        smoother_reset(&fp->smooth);
        for (int i = 0; i < l->n_snapshots; i++)
            free(l->snapshots[i]);
        l->n_snapshots = 0;
    }
    optim_set_wds(l->opt, &o->wd, 1);
    int body_trains = l->net->freeze_to < l->head_group;

    int64_t total_epochs = sched_total_epochs(&plan), total_it = total_epochs * bpe;
    net_copy best = {0};
    int have_best = 0, since_best = 0;
    float best_loss = INFINITY, prev_cycle_loss = INFINITY;
    double t0 = now_s();
    int64_t it0 = (int64_t)fp->next_epoch * bpe;
    for (int e = fp->next_epoch; e < total_epochs; e++) {
        double te = now_s();
        l->epoch_id = fp->epoch_base + e;
        batch_src s;
        rc = src_begin(&s, l, SPLIT_TRAIN, !cached, cached);
        if (rc) {
            set_err(err, errlen, "fit: the loader failed (%d)", rc);
            goto out_stop;
        }
        batch_view v;
        int got = 0, b = 0;
        int64_t imgs = 0;
        double last_sl = NAN;
        while (b < bpe && (got = src_next(&s, &v)) > 0) {
            int64_t t = (int64_t)e * bpe + b;
            double lrs[LEARNER_MAX_GROUPS];
            expand_lrs(lrs, l->n_groups, o->n_lrs, o->lrs, sched_factor(&plan, t));
            float loss = train_step(l, cached, &v, lrs, &rc);
            if (rc) {
                set_err(err, errlen, "fit: the batch does not fit the network (%d)", rc);
                goto out_stop;
            }
            l->step++;
            imgs += v.n;
            if (body_trains)
                l->weights_version++;
            last_sl = smoother_add(&fp->smooth, loss);
            if (!isfinite(loss)) {
                set_err(err, errlen,
                        "fit: the training loss is not finite at epoch %d batch %d: the "
                        "learning rate is too high", e, b);
                rc = -EDOM;
                goto out_stop;
            }
            ev_batch eb = {.step = l->step, .epoch = e, .batch = b, .n_batches = (int)bpe,
                           .loss = loss, .smooth_loss = (float)last_sl,
                           .n_groups = l->n_groups};
            for (int g = 0; g < l->n_groups && g < 4; g++)
                eb.lrs[g] = (float)lrs[g];
            double el = now_s() - te;
            eb.img_per_s = el > 0 ? (double)imgs / el : 0.0;
            b++;
            if (h && h->on_batch && h->on_batch(h->ctx, &eb)) {
                rc = -ECANCELED;
                set_err(err, errlen, "fit: cancelled");
                goto out_stop;
            }
            progress(h, (double)(t + 1 - it0) / (double)(total_it - it0), t0);
        }
        if (got < 0) {
            rc = got;
            set_err(err, errlen, "fit: the loader failed (%d)", rc);
            goto out_stop;
        }
        double train_s = now_s() - te;
        ev_epoch ee = {.epoch = e, .train_loss = (float)last_sl};
        int is_last = 0;
        ee.cycle = sched_cycle_of_epoch(&plan, e, &is_last);
        rc = validate(l, &ee.valid_loss, &ee.accuracy, &ee.f2);
        if (rc) {
            set_err(err, errlen, "fit: validation failed (%d)", rc);
            goto out_stop;
        }
        ee.seconds = now_s() - te;
        ee.img_per_s = train_s > 0 ? (double)imgs / train_s : 0.0;
        l->epochs_done++;
        if (ee.valid_loss < l->best_valid_loss)
            l->best_valid_loss = ee.valid_loss;
        if (ee.accuracy > l->best_accuracy)
            l->best_accuracy = ee.accuracy;
        if (is_last && o->snapshots && (rc = snapshot_take(l, ee.cycle, h, err, errlen)))
            goto out_stop;
        fp->next_epoch = e + 1;
        fp->n_snapshots = l->n_snapshots;
        if (e + 1 == total_epochs)
            fp->active = 0;
        int stop = 0;
        if (o->early_stop_patience > 0) {
            if (ee.valid_loss < best_loss) {
                best_loss = ee.valid_loss;
                since_best = 0;
                net_copy_free(&best);
                if (net_copy_save(&best, l) == 0)
                    have_best = 1;
            } else if (++since_best >= o->early_stop_patience) {
                stop = 1;
            }
        }
        if (stop_worse_cycle && is_last) {
            if (!(ee.valid_loss < prev_cycle_loss) && have_best) {
                stop = 2;
            } else {
                prev_cycle_loss = ee.valid_loss;
                net_copy_free(&best);
                have_best = net_copy_save(&best, l) == 0;
            }
        }
        if (stop) {
            fp->active = 0;
            if (have_best) {
                net_copy_restore(&best, l);
                l->weights_version++;
            }
        }
        rc = fit_checkpoint(l, err, errlen);
        if (rc)
            goto out_stop;
        int cancel = 0;
        if (h && h->on_epoch && h->on_epoch(h->ctx, &ee))
            cancel = 1;
        if (is_last && h && h->on_cycle_end && h->on_cycle_end(h->ctx, ee.cycle, e))
            cancel = 1;
        if (stop) {
            if (stop == 1)
                note(h, "early_stop",
                     "validation loss has not improved for %d epochs; kept the best epoch's "
                     "weights (valid loss %.4f)", o->early_stop_patience, best_loss);
            else
                note(h, "stop",
                     "validation loss %.4f at the end of cycle %d is not below %.4f at the "
                     "previous cycle's end; went back to those weights", ee.valid_loss,
                     ee.cycle, prev_cycle_loss);
            break;
        }
        if (cancel && e + 1 < total_epochs) {
            rc = -ECANCELED;
            set_err(err, errlen, "fit: cancelled");
            goto out_stop;
        }
    }
    fp->active = 0;
    net_copy_free(&best);
    return 0;
out_stop:
    net_copy_free(&best);
    return rc;
}

int learner_fit(learner *l, const fit_opts *o, const ev_hooks *h, char *err, size_t errlen)
{
    if (!o) {
        set_err(err, errlen, "fit: no options");
        return -EINVAL;
    }
    int rc = fit_run(l, o, h, 0, err, errlen);
    return rc;
}

/* ---- prediction ----------------------------------------------------------------------------- */

/* Probabilities of every item of a split for one pass, placed by item index. */
static int predict_pass(learner *l, loader *dl, int augment, float *probs, float *loss_sum,
                        char *err, size_t errlen)
{
    int nc = l->info->n_classes, multi = l->info->multi_label;
    int rc = loader_begin_epoch(dl, (int)l->epoch_id++, l->sz, augment);
    const batch *b;
    double ls = 0.0;
    while (rc == 0 && (rc = loader_next(dl, &b)) > 0) {
        rc = net_set_batch(l->net, b->n, l->sz, l->sz);
        if (rc)
            break;
        const float *z = net_forward(l->net, b->x, 0);
        for (int i = 0; i < b->n; i++)
            logits_to_probs(probs + (size_t)b->index[i] * nc, z + (size_t)i * nc, 1, nc, multi);
        if (loss_sum)
            ls += (double)net_loss(l->net, b->y, b->targets) * b->n;
        rc = 0;
    }
    if (rc < 0) {
        set_err(err, errlen, "predict: reading images failed (%d)", rc);
        return rc;
    }
    if (loss_sum)
        *loss_sum = (float)ls;
    return 0;
}

int learner_tta(learner *l, int n_aug, const ev_hooks *h, tta_result *out, char *err,
                size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (n_aug < 0 || n_aug > TTA_MAX_AUG) {
        set_err(err, errlen, "n_aug: must be between 0 and %d (got %d)", TTA_MAX_AUG, n_aug);
        return -EINVAL;
    }
    int n = l->info->count[SPLIT_VALID], nc = l->info->n_classes, multi = l->info->multi_label;
    float *p = calloc((size_t)n * nc, sizeof(float)); /* unreadable items stay 0 */
    float *avg = calloc((size_t)n * nc, sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    float *t = multi ? malloc((size_t)n * nc * sizeof(float)) : NULL;
    int rc = 0;
    if (!p || !avg || !y || (multi && !t)) {
        rc = -ENOMEM;
        set_err(err, errlen, "tta: out of memory");
        goto out_free;
    }
    for (int i = 0; i < n; i++) {
        if (multi)
            dataset_item_targets(l->ds, SPLIT_VALID, i, t + (size_t)i * nc);
        else
            y[i] = dataset_item_label(l->ds, SPLIT_VALID, i);
    }
    double t0 = now_s();
    for (int pass = 0; pass <= n_aug; pass++) {
        float ls;
        rc = predict_pass(l, l->valid_dl, pass > 0, p, &ls, err, errlen);
        if (rc)
            goto out_free;
        metric_acc a = {0};
        acc_add_probs(&a, p, y, t, n, nc, multi);
        float acc;
        acc_result(&a, multi, NULL, &acc, NULL);
        if (pass == 0) {
            out->loss = ls / (float)n;
            out->accuracy = acc;
        } else {
            out->pass_accuracy[pass - 1] = acc;
        }
        for (size_t k = 0; k < (size_t)n * nc; k++)
            avg[k] += p[k];
        progress(h, (double)(pass + 1) / (n_aug + 1), t0);
    }
    for (size_t k = 0; k < (size_t)n * nc; k++)
        avg[k] /= (float)(n_aug + 1);
    metric_acc a = {0};
    acc_add_probs(&a, avg, y, t, n, nc, multi);
    acc_result(&a, multi, NULL, &out->tta_accuracy, NULL);
    out->tta_loss = (float)(probs_loss(avg, y, t, n, nc, multi) / n);
    out->n_aug = n_aug;
    note(h, "tta",
         "centre crop: loss %.4f accuracy %.4f; mean of centre + %d augmented passes: loss "
         "%.4f accuracy %.4f", out->loss, out->accuracy, n_aug, out->tta_loss,
         out->tta_accuracy);
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
        set_err(err, errlen, "image: empty");
        return -EINVAL;
    }
    int nc = l->info->n_classes, passes = tta ? 5 : 1;
    size_t px = (size_t)l->sz * l->sz * l->c_in;
    float *x = malloc(px * sizeof(float));
    if (!x) {
        set_err(err, errlen, "predict: out of memory");
        return -ENOMEM;
    }
    int rc = net_set_batch(l->net, 1, l->sz, l->sz);
    if (rc) {
        free(x);
        set_err(err, errlen, "predict: size %d does not fit the network", l->sz);
        return rc;
    }
    for (int c = 0; c < nc; c++)
        probs[c] = 0.0f;
    uint64_t r = rng_derive(l->cfg.seed, 0x545441ull);
    for (int pass = 0; pass < passes; pass++) {
        tfm_config tc;
        tfm_fill(l, &tc, pass > 0);
        transform_apply(x, im, &tc, &r);
        const float *z = net_forward(l->net, x, 0);
        float pp[1024];
        float *pv = nc <= 1024 ? pp : NULL;
        if (!pv)
            break;
        logits_to_probs(pv, z, 1, nc, l->info->multi_label);
        for (int c = 0; c < nc; c++)
            probs[c] += pv[c] / (float)passes;
    }
    free(x);
    return 0;
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0)
            return -errno;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void csv_field(char *dst, size_t cap, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        snprintf(dst, cap, "%s", s);
        return;
    }
    size_t k = 0;
    if (k + 1 < cap)
        dst[k++] = '"';
    for (; *s && k + 3 < cap; s++) {
        if (*s == '"')
            dst[k++] = '"';
        dst[k++] = *s;
    }
    dst[k++] = '"';
    dst[k] = '\0';
}

int learner_predict_test(learner *l, int tta, const char *csv_path, const ev_hooks *h,
                         char *err, size_t errlen)
{
    int n = l->info->count[SPLIT_TEST], nc = l->info->n_classes;
    if (n < 1) {
        set_err(err, errlen, "predict-test: the dataset has no test images");
        return -ENOENT;
    }
    loader *dl = NULL;
    int rc = make_loader(l, &dl, SPLIT_TEST, 0, 0, 0, err, errlen);
    if (rc)
        return rc;
    int passes = tta ? 5 : 1, fd = -1;
    float *p = calloc((size_t)n * nc, sizeof(float)); /* unreadable items stay 0 */
    float *avg = calloc((size_t)n * nc, sizeof(float));
    char tmp[4096], line[8192];
    if (!p || !avg) {
        rc = -ENOMEM;
        set_err(err, errlen, "predict-test: out of memory");
        goto out_free;
    }
    double t0 = now_s();
    for (int pass = 0; pass < passes; pass++) {
        rc = predict_pass(l, dl, pass > 0, p, NULL, err, errlen);
        if (rc)
            goto out_free;
        for (size_t k = 0; k < (size_t)n * nc; k++)
            avg[k] += p[k] / (float)passes;
        progress(h, (double)(pass + 1) / passes * 0.95, t0);
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp", csv_path) >= (int)sizeof tmp) {
        rc = -ENAMETOOLONG;
        set_err(err, errlen, "predict-test: path too long");
        goto out_free;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rc = -errno;
        set_err(err, errlen, "predict-test: cannot create %s: %s", tmp, strerror(errno));
        goto out_free;
    }
    size_t k = (size_t)snprintf(line, sizeof line, "file");
    for (int c = 0; c < nc && k < sizeof line; c++) {
        char f[512];
        csv_field(f, sizeof f, l->info->classes[c]);
        k += (size_t)snprintf(line + k, sizeof line - k, ",%s", f);
    }
    if (k < sizeof line)
        k += (size_t)snprintf(line + k, sizeof line - k, "\n");
    rc = write_all(fd, line, k < sizeof line ? k : sizeof line - 1);
    for (int i = 0; i < n && !rc; i++) {
        char f[4096];
        csv_field(f, sizeof f, dataset_item_name(l->ds, SPLIT_TEST, i));
        k = (size_t)snprintf(line, sizeof line, "%s", f);
        for (int c = 0; c < nc && k < sizeof line; c++)
            k += (size_t)snprintf(line + k, sizeof line - k, ",%.6g",
                                  avg[(size_t)i * nc + c]);
        if (k < sizeof line)
            k += (size_t)snprintf(line + k, sizeof line - k, "\n");
        rc = write_all(fd, line, k < sizeof line ? k : sizeof line - 1);
    }
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && !rc)
        rc = -errno;
    fd = -1;
    if (!rc && rename(tmp, csv_path) != 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        set_err(err, errlen, "predict-test: writing %s failed: %s", csv_path, strerror(-rc));
        goto out_free;
    }
    note(h, "predict_test", "wrote %d predictions%s to %s", n, tta ? " with TTA" : "",
         csv_path);
    progress(h, 1.0, t0);
out_free:
    if (fd >= 0)
        close(fd);
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
        set_err(err, errlen, "ensemble: no snapshots (fit with snapshots on)");
        return -ENOENT;
    }
    int n = l->info->count[SPLIT_VALID], nc = l->info->n_classes, multi = l->info->multi_label;
    net_copy keep;
    int rc = net_copy_save(&keep, l);
    if (rc)
        return rc;
    float *p = calloc((size_t)n * nc, sizeof(float)); /* unreadable items stay 0 */
    float *avg = calloc((size_t)n * nc, sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    float *t = multi ? malloc((size_t)n * nc * sizeof(float)) : NULL;
    if (!p || !avg || !y || (multi && !t)) {
        rc = -ENOMEM;
        set_err(err, errlen, "ensemble: out of memory");
        goto out_free;
    }
    for (int i = 0; i < n; i++) {
        if (multi)
            dataset_item_targets(l->ds, SPLIT_VALID, i, t + (size_t)i * nc);
        else
            y[i] = dataset_item_label(l->ds, SPLIT_VALID, i);
    }
    for (int s = 0; s < l->n_snapshots && !rc; s++) {
        memcpy(l->net->params, l->snapshots[s], l->net->n_params * sizeof(float));
        memcpy(l->net->buffers, l->snapshots[s] + l->net->n_params,
               l->net->n_buffers * sizeof(float));
        rc = predict_pass(l, l->valid_dl, 0, p, NULL, err, errlen);
        for (size_t k = 0; k < (size_t)n * nc && !rc; k++)
            avg[k] += p[k] / (float)l->n_snapshots;
    }
    if (!rc) {
        metric_acc a = {0};
        acc_add_probs(&a, avg, y, t, n, nc, multi);
        acc_result(&a, multi, NULL, accuracy, NULL);
        *loss = (float)(probs_loss(avg, y, t, n, nc, multi) / n);
    }
out_free:
    net_copy_restore(&keep, l);
    net_copy_free(&keep);
    free(p);
    free(avg);
    free(y);
    free(t);
    return rc;
}

/* ---- the recipe --------------------------------------------------------------------------- */

/* The LR a sweep suggests: valley, else min_div10, else the fallback. */
static double pick_lr(const lrfind_result *r, double fallback, const ev_hooks *h,
                      const char *when)
{
    if (r->valley.lr > 0.0) {
        note(h, "pick_lr", "%s: lr %.3g from the valley suggestion (%s)", when, r->valley.lr,
             r->valley.reason);
        return r->valley.lr;
    }
    if (r->min_div10.lr > 0.0) {
        note(h, "pick_lr", "%s: lr %.3g from min_div10 (no valley: %s)", when,
             r->min_div10.lr, r->valley.reason);
        return r->min_div10.lr;
    }
    note(h, "pick_lr", "%s: lr %.3g, the default (the sweep gave no suggestion: %s)", when,
         fallback, r->valley.reason);
    return fallback;
}

int learner_recipe(learner *l, const recipe_opts *o, const ev_hooks *h, tta_result *out,
                   char *err, size_t errlen)
{
    int max_epochs = o && o->max_epochs > 0 ? o->max_epochs : 7;
    int n_aug = o && o->n_aug > 0 ? o->n_aug : 4;
    int close = o && o->close_to_imagenet;
    if (max_epochs > 1000 || n_aug > TTA_MAX_AUG) {
        set_err(err, errlen, "recipe: max_epochs at most 1000, n_aug at most %d", TTA_MAX_AUG);
        return -EINVAL;
    }
    /* SGDR cycles of 1, 2, 4, ... epochs that fit the budget. */
    int n_cycle = 0, used = 0;
    while (used + (1 << n_cycle) <= max_epochs && n_cycle < 10)
        used += 1 << n_cycle++;
    if (n_cycle < 1)
        n_cycle = 1;
    lrfind_opts lo = {.start_lr = 1e-5, .end_lr = 10.0};
    lrfind_result r;
    fit_opts fo;
    int rc;
    double lr;

    if (!l->pretrained) {
        note(h, "recipe", "no pretrained body: train from scratch with lr_find, SGDR "
             "(cycle_mult 2, %d cycles = %d epochs) and TTA", n_cycle, used);
        if ((rc = learner_unfreeze(l)))
            return rc;
        rc = learner_lr_find(l, &lo, h, &r, err, errlen);
        if (rc)
            return rc;
        lr = pick_lr(&r, 1e-2, h, "from scratch");
        lrfind_result_free(&r);
        memset(&fo, 0, sizeof fo);
        fo.n_lrs = 1;
        fo.lrs[0] = lr;
        fo.n_cycle = n_cycle;
        fo.cycle_len = 1;
        fo.cycle_mult = 2;
        fo.wd = 1e-4;
        fo.schedule = SCHED_SGDR;
        note(h, "fit", "SGDR with cycle_len 1, cycle_mult 2, %d cycles at lr %.3g, wd 1e-4; "
             "stop at a cycle end when validation loss stops improving", n_cycle, lr);
        rc = fit_run(l, &fo, h, 1, err, errlen);
        if (rc)
            return rc;
        return learner_tta(l, n_aug, h, out, err, errlen);
    }

    /* 1. precompute on (the body is frozen since creation). */
    if ((rc = learner_freeze_to(l, l->head_group, err, errlen)))
        return rc;
    if ((rc = learner_set_precompute(l, 1, err, errlen)))
        return rc;
    note(h, "recipe", "step 1: body frozen, precompute on: the head trains from cached "
         "activations, without augmentation");
    /* 2. lr_find and pick. */
    rc = learner_lr_find(l, &lo, h, &r, err, errlen);
    if (rc)
        return rc;
    lr = pick_lr(&r, 1e-2, h, "step 2 (head)");
    lrfind_result_free(&r);
    /* 3. the head from the cache, 2 epochs at a constant LR (fast.ai's learn.fit(lr, 2)). */
    memset(&fo, 0, sizeof fo);
    fo.n_lrs = 1;
    fo.lrs[0] = lr;
    fo.n_cycle = 2;
    fo.wd = 1e-4;
    fo.schedule = SCHED_CONSTANT;
    note(h, "recipe", "step 3: train the head from precomputed activations for 2 epochs at "
         "lr %.3g (the seed's 1-2; the cache makes them cheap)", lr);
    if ((rc = fit_run(l, &fo, h, 0, err, errlen)))
        return rc;
    /* 4. augmentation on: precompute off, 2 cycles of cycle_len 1. */
    if ((rc = learner_set_precompute(l, 0, err, errlen)))
        return rc;
    fo.n_cycle = 2;
    fo.cycle_len = 1;
    fo.cycle_mult = 1;
    fo.schedule = SCHED_SGDR;
    note(h, "recipe", "step 4: precompute off so augmentation applies; 2 SGDR cycles of "
         "cycle_len 1 on the head (the seed's 2-3, the lower end to keep the budget for "
         "the unfrozen phase)");
    if ((rc = fit_run(l, &fo, h, 0, err, errlen)))
        return rc;
    /* 5. unfreeze. 6. differential LRs. */
    if ((rc = learner_unfreeze(l)))
        return rc;
    double div_lo = close ? 100.0 : 9.0, div_mid = close ? 10.0 : 3.0;
    note(h, "recipe", "step 5-6: unfreeze; lrs = [lr/%g, lr/%g, lr] (%s)", div_lo, div_mid,
         close ? "the data is close to ImageNet: 10x steps"
               : "the data differs from ImageNet: 3x steps");
    /* 7. lr_find again with those ratios. */
    lo.n_lrs = l->n_groups;
    for (int g = 0; g < l->n_groups; g++)
        lo.lrs[g] = g == l->n_groups - 1 ? 1.0
                    : g == l->n_groups - 2 ? 1.0 / div_mid : 1.0 / div_lo;
    rc = learner_lr_find(l, &lo, h, &r, err, errlen);
    if (rc)
        return rc;
    double lr2 = pick_lr(&r, lr, h, "step 7 (unfrozen)");
    lrfind_result_free(&r);
    if (lr2 > lr) {
        note(h, "pick_lr", "step 7: keeping lr %.3g: the new suggestion %.3g is higher, and "
             "a higher rate than the head's would damage the pretrained body", lr, lr2);
        lr2 = lr;
    }
    /* 8. cycle_mult 2 until validation loss stops improving. */
    memset(&fo, 0, sizeof fo);
    fo.n_lrs = l->n_groups;
    for (int g = 0; g < l->n_groups; g++)
        fo.lrs[g] = lr2 * lo.lrs[g];
    fo.n_cycle = n_cycle;
    fo.cycle_len = 1;
    fo.cycle_mult = 2;
    fo.wd = 1e-4;
    fo.schedule = SCHED_SGDR;
    note(h, "recipe", "step 8: the whole network, SGDR cycle_len 1, cycle_mult 2, up to %d "
         "cycles (%d epochs), stopping at a cycle end when validation loss stops improving",
         n_cycle, used);
    if ((rc = fit_run(l, &fo, h, 1, err, errlen)))
        return rc;
    return learner_tta(l, n_aug, h, out, err, errlen);
}
