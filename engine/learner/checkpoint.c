/* checkpoint: epoch checkpoints with exact resume, and snapshots. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lrsched.h"
#include "optim.h"
#include "safetensors.h"
#include "weights.h"

/* ---- checkpoints ---------------------------------------------------------------------- */

enum {
    M_VERSION, M_STEP, M_EPOCHS_DONE, M_FREEZE_TO, M_PRECOMPUTE, M_SZ, M_RNG, M_EPOCH_ID,
    M_WEIGHTS_VERSION, M_BEST_LOSS, M_BEST_ACC, M_FIT_ACTIVE, M_FIT_NEXT, M_FIT_EPOCH_BASE,
    M_FIT_STEP_BASE, M_KIND, M_N_CYCLE, M_CYCLE_LEN, M_CYCLE_MULT, M_BPE, M_WARMUP, M_DIV,
    M_PCT, M_N_LRS, M_LR0, M_LR1, M_LR2, M_LR3, M_WD, M_SNAPSHOTS, M_PATIENCE, M_SM_AVG,
    M_SM_N, M_N_SNAP, M_N_PARAMS, M_N_STATE,
    M_COUNT_V1, /* version 1 ended here; what follows defaults to "no early stop" */
    M_STOP_CYCLE = M_COUNT_V1, M_FIT_BEST_LOSS, M_SINCE_BEST, M_PREV_CYCLE_LOSS, M_BEST_STEP,
    M_COUNT_V2, /* version 2 ended here; a cycle end's accuracy then did not count */
    M_PREV_CYCLE_ACC = M_COUNT_V2,
    M_COUNT_V3, /* version 3 ended here; a fit then kept one image size */
    M_RESIZE_EPOCH = M_COUNT_V3, M_RESIZE_SZ,
    M_COUNT
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
    for (int g = 0; g < NET_MAX_GROUPS; g++)
        m[M_LR0 + g] = dbits(f->lrs[g]);
    m[M_WD] = dbits(f->wd);
    m[M_SNAPSHOTS] = f->snapshots;
    m[M_PATIENCE] = f->patience;
    m[M_SM_AVG] = dbits(f->smooth.avg);
    m[M_SM_N] = f->smooth.n;
    m[M_N_SNAP] = l->n_snapshots;
    m[M_N_PARAMS] = (int64_t)l->net->n_params;
    m[M_N_STATE] = (int64_t)l->opt->n_state;
    m[M_STOP_CYCLE] = f->stop_cycle;
    m[M_FIT_BEST_LOSS] = dbits(f->best_loss);
    m[M_SINCE_BEST] = f->since_best;
    m[M_PREV_CYCLE_LOSS] = dbits(f->prev_cycle_loss);
    m[M_BEST_STEP] = f->best_step;
    m[M_PREV_CYCLE_ACC] = dbits(f->prev_cycle_acc);
    m[M_RESIZE_EPOCH] = f->resize_epoch;
    m[M_RESIZE_SZ] = f->resize_sz;
}

int learner_save(learner *l, const char *path, char *err, size_t errlen)
{
    int cap = l->net->n_tensors + 4;
    st_tensor *ts = calloc((size_t)cap, sizeof *ts);
    if (!ts) {
        err_set(err, errlen, "checkpoint: out of memory");
        return -ENOMEM;
    }
    int n = weights_views(l->net, ts, cap - 3);
    if (n < 0) {
        free(ts);
        err_set(err, errlen, "checkpoint: cannot list the weights (%d)", n);
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

/* The learner's entries of checkpoint f: its meta in m (an older version's brought up to
 * date), and the optimizer's state and steps. -EINVAL with err naming path when f is no
 * checkpoint of this learner. */
static int ckpt_read_meta(const learner *l, const st_file *f, const char *path, int64_t *m,
                          const st_tensor **tst, const st_tensor **tsp, char *err,
                          size_t errlen)
{
    const st_tensor *tm = st_find(f, "learner.meta");
    *tst = st_find(f, "optim.state");
    *tsp = st_find(f, "optim.steps");
    int version = !tm                                      ? 0
                  : tm->nbytes == M_COUNT_V1 * sizeof(int64_t) ? 1
                  : tm->nbytes == M_COUNT_V2 * sizeof(int64_t) ? 2
                  : tm->nbytes == M_COUNT_V3 * sizeof(int64_t) ? 3
                  : tm->nbytes == M_COUNT * sizeof(int64_t)    ? CKPT_VERSION
                                                               : 0;
    if (!version || tm->dtype != ST_I64 || !*tst ||
        (*tst)->dtype != ST_F32 ||
        (*tst)->nbytes != l->opt->n_state * sizeof(float) || !*tsp ||
        (*tsp)->dtype != ST_I64 ||
        (*tsp)->nbytes != (size_t)l->net->n_tensors * sizeof(int64_t)) {
        err_set(err, errlen, "checkpoint %s: not a checkpoint of this learner (learner.meta, "
                "optim.state or optim.steps missing or of another size)", path);
        return -EINVAL;
    }
    memcpy(m, tm->data, tm->nbytes);
    if (version == 1) {
        m[M_STOP_CYCLE] = 0;
        m[M_FIT_BEST_LOSS] = dbits(INFINITY);
        m[M_SINCE_BEST] = 0;
        m[M_PREV_CYCLE_LOSS] = dbits(INFINITY);
        m[M_BEST_STEP] = 0;
    }
    if (version < 3) /* no accuracy is higher: the cycle rule compares losses alone */
        m[M_PREV_CYCLE_ACC] = dbits(INFINITY);
    if (version < 4) {
        m[M_RESIZE_EPOCH] = 0;
        m[M_RESIZE_SZ] = 0;
    }
    if (m[M_VERSION] != version || m[M_N_PARAMS] != (int64_t)l->net->n_params ||
        m[M_FREEZE_TO] < 0 || m[M_FREEZE_TO] > l->n_groups || m[M_SZ] < 8 ||
        m[M_SZ] > 1024) {
        err_set(err, errlen, "checkpoint %s: learner.meta is of another version or model",
                path);
        return -EINVAL;
    }
    return 0;
}

static int is_extra(const char *name)
{
    return strncmp(name, "learner.", 8) == 0 || strncmp(name, "optim.", 6) == 0;
}

/* The weights of checkpoint f, without the learner's own entries. */
static int ckpt_load_weights(learner *l, const st_file *f, char *err, size_t errlen)
{
    st_file wf = *f;
    wf.tensors = calloc((size_t)(f->n ? f->n : 1), sizeof *wf.tensors);
    if (!wf.tensors) {
        err_set(err, errlen, "checkpoint: out of memory");
        return -ENOMEM;
    }
    wf.n = 0;
    for (int i = 0; i < f->n; i++)
        if (!is_extra(f->tensors[i].name))
            wf.tensors[wf.n++] = f->tensors[i];
    int rc = weights_load_st(l->net, &wf, WEIGHTS_ALL, err, errlen);
    free(wf.tensors);
    return rc;
}

/* The learner's counters, size, freezing and precompute from the meta. */
static void meta_read_learner(learner *l, const int64_t *m)
{
    l->step = m[M_STEP];
    l->epochs_done = (int)m[M_EPOCHS_DONE];
    l->net->rng = (uint64_t)m[M_RNG];
    l->epoch_id = m[M_EPOCH_ID];
    l->best_valid_loss = (float)bitsd(m[M_BEST_LOSS]);
    l->best_accuracy = (float)bitsd(m[M_BEST_ACC]);
    if (l->sz != (int)m[M_SZ])
        lrn_pc_drop(l);
    l->sz = (int)m[M_SZ];
    l->weights_version++;
    lrn_pc_drop(l);
    int want_pc = (int)m[M_PRECOMPUTE];
    l->precompute = 0;
    net_freeze_to(l->net, (int)m[M_FREEZE_TO]);
    if (want_pc && learner_set_precompute(l, 1, NULL, 0) != 0)
        l->precompute = 0;
}

/* The fit's position from the meta (meta_fill's inverse). */
static void meta_read_fit(fit_pos *fp, const int64_t *m)
{
    memset(fp, 0, sizeof *fp);
    sched_plan_defaults(&fp->plan, m[M_BPE]); /* what the meta does not hold */
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
    for (int g = 0; g < NET_MAX_GROUPS; g++)
        fp->lrs[g] = bitsd(m[M_LR0 + g]);
    fp->wd = bitsd(m[M_WD]);
    fp->snapshots = (int)m[M_SNAPSHOTS];
    fp->patience = (int)m[M_PATIENCE];
    fp->smooth.avg = bitsd(m[M_SM_AVG]);
    fp->smooth.n = m[M_SM_N];
    fp->n_snapshots = (int)m[M_N_SNAP];
    fp->stop_cycle = (int)m[M_STOP_CYCLE];
    fp->best_loss = (float)bitsd(m[M_FIT_BEST_LOSS]);
    fp->since_best = (int)m[M_SINCE_BEST];
    fp->prev_cycle_loss = (float)bitsd(m[M_PREV_CYCLE_LOSS]);
    fp->prev_cycle_acc = (float)bitsd(m[M_PREV_CYCLE_ACC]);
    fp->best_step = m[M_BEST_STEP];
    fp->resize_epoch = (int)m[M_RESIZE_EPOCH];
    fp->resize_sz = (int)m[M_RESIZE_SZ];
}

int learner_load(learner *l, const char *path, char *err, size_t errlen)
{
    st_file f = {0};
    int rc = st_read_file(&f, path, err, errlen);
    if (rc)
        return rc;
    int64_t m[M_COUNT];
    const st_tensor *tst, *tsp;
    rc = ckpt_read_meta(l, &f, path, m, &tst, &tsp, err, errlen);
    if (!rc)
        rc = ckpt_load_weights(l, &f, err, errlen);
    if (!rc) {
        memcpy(l->opt->state, tst->data, tst->nbytes);
        memcpy(l->opt->steps, tsp->data, tsp->nbytes);
        meta_read_learner(l, m);
        meta_read_fit(&l->fit, m);
    }
    st_free(&f);
    return rc;
}

int lrn_ckpt_path(const learner *l, char *buf, size_t cap, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", l->ckpt_dir, name);
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

/* ---- the weights an early stop goes back to ---------------------------------------------- */

static int best_path(const learner *l, int64_t step, char *buf, size_t cap)
{
    char name[64];
    snprintf(name, sizeof name, "best_%lld.safetensors", (long long)step);
    return lrn_ckpt_path(l, buf, cap, name);
}

static void view(st_tensor *t, char *name, st_dtype dt, const void *data, size_t count)
{
    size_t width = dt == ST_I64 ? sizeof(int64_t) : sizeof(float);
    t->name = name;
    t->dtype = dt;
    t->ndim = 1;
    t->shape[0] = (int64_t)count;
    t->nbytes = count * width;
    t->data = data;
}

int lrn_best_save(const learner *l, const net_copy *c, int64_t step, char *err,
                  size_t errlen)
{
    const net *n = l->net;
    char path[4096];
    int rc = best_path(l, step, path, sizeof path);
    if (rc) {
        err_set(err, errlen, "checkpoint: the folder's path is too long");
        return rc;
    }
    int64_t rng = (int64_t)c->rng;
    st_tensor ts[5];
    view(&ts[0], "best.params", ST_F32, c->params, n->n_params);
    view(&ts[1], "best.buffers", ST_F32, c->buffers, n->n_buffers);
    view(&ts[2], "best.optim_state", ST_F32, c->opt_state, l->opt->n_state);
    view(&ts[3], "best.optim_steps", ST_I64, c->opt_steps, (size_t)n->n_tensors);
    view(&ts[4], "best.rng", ST_I64, &rng, 1);
    return st_write_file(path, ts, 5, err, errlen);
}

int lrn_best_load(const learner *l, net_copy *c, int64_t step, char *err, size_t errlen)
{
    const net *n = l->net;
    char path[4096];
    int rc = best_path(l, step, path, sizeof path);
    if (rc) {
        err_set(err, errlen, "checkpoint: the folder's path is too long");
        return rc;
    }
    st_file f = {0};
    if ((rc = st_read_file(&f, path, err, errlen)))
        return rc;
    const char *names[5] = {"best.params", "best.buffers", "best.optim_state",
                            "best.optim_steps", "best.rng"};
    const size_t bytes[5] = {n->n_params * sizeof(float), n->n_buffers * sizeof(float),
                             l->opt->n_state * sizeof(float),
                             (size_t)n->n_tensors * sizeof(int64_t), sizeof(int64_t)};
    const st_tensor *t[5];
    for (int i = 0; i < 5; i++) {
        t[i] = st_find(&f, names[i]);
        if (!t[i] || t[i]->nbytes != bytes[i] ||
            t[i]->dtype != (i >= 3 ? ST_I64 : ST_F32)) {
            err_set(err, errlen, "checkpoint %s: %s missing or of another size (not this "
                    "learner's best weights)", path, names[i]);
            st_free(&f);
            return -EINVAL;
        }
    }
    if ((rc = lrn_net_copy_save(c, l))) { /* allocates; the contents are replaced below */
        err_set(err, errlen, "checkpoint: out of memory");
        st_free(&f);
        return rc;
    }
    memcpy(c->params, t[0]->data, bytes[0]);
    memcpy(c->buffers, t[1]->data, bytes[1]);
    memcpy(c->opt_state, t[2]->data, bytes[2]);
    memcpy(c->opt_steps, t[3]->data, bytes[3]);
    int64_t rng;
    memcpy(&rng, t[4]->data, sizeof rng);
    c->rng = (uint64_t)rng;
    st_free(&f);
    return 0;
}

void lrn_best_remove(const learner *l, int64_t step)
{
    char path[4096];
    if (lrn_writes_files(l) && best_path(l, step, path, sizeof path) == 0)
        unlink(path);
}

/* ---- snapshots ---------------------------------------------------------------------------- */

int lrn_snapshot_take(learner *l, int cycle, const ev_hooks *h, char *err, size_t errlen)
{
    net *n = l->net;
    float *s = malloc((n->n_params + n->n_buffers) * sizeof(float));
    float **grown = realloc(l->snapshots, sizeof *grown * (size_t)(l->n_snapshots + 1));
    if (!s || !grown) {
        free(s);
        if (grown)
            l->snapshots = grown;
        err_set(err, errlen, "snapshot: out of memory");
        return -ENOMEM;
    }
    l->snapshots = grown;
    memcpy(s, n->params, n->n_params * sizeof(float));
    memcpy(s + n->n_params, n->buffers, n->n_buffers * sizeof(float));
    l->snapshots[l->n_snapshots++] = s;
    char path[4096] = "";
    if (l->ckpt_dir && lrn_writes_files(l)) {
        char name[64];
        snprintf(name, sizeof name, "snapshot_%d.safetensors", l->n_snapshots - 1);
        int rc = lrn_ckpt_path(l, path, sizeof path, name);
        if (!rc)
            rc = weights_save_file(n, path, err, errlen);
        if (rc)
            return rc;
    }
    lrn_note(h, "snapshot", "saved the weights after the last batch of cycle %d (snapshot %d)%s%s",
         cycle, l->n_snapshots - 1, path[0] ? " to " : "", path);
    return 0;
}

int learner_n_snapshots(const learner *l)
{
    return l->n_snapshots;
}
