/* fit: the SGDR fit with per-batch events, early stop and checkpoints. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lrsched.h"
#include "optim.h"
#include "weights.h"

/* ---- fit ---------------------------------------------------------------------------------- */

static int fit_checkpoint(learner *l, char *err, size_t errlen)
{
    if (!l->ckpt_dir || !lrn_writes_files(l))
        return 0;
    char path[4096];
    int rc = lrn_ckpt_path(l, path, sizeof path, "last.ckpt.safetensors");
    if (!rc)
        rc = learner_save(l, path, err, errlen);
    return rc;
}

static int fit_same(const fit_pos *a, const fit_opts *o, const sched_plan *p)
{
    if (a->plan.kind != p->kind || a->plan.n_cycle != p->n_cycle ||
        a->plan.cycle_len != p->cycle_len || a->plan.cycle_mult != p->cycle_mult ||
        a->plan.batches_per_epoch != p->batches_per_epoch || a->n_lrs != o->n_lrs ||
        a->wd != o->wd || a->snapshots != (o->snapshots != 0) ||
        a->patience != o->early_stop_patience || a->stop_cycle != (o->stop_at_worse_cycle != 0) ||
        a->resize_epoch != o->resize_epoch || a->resize_sz != o->resize_sz)
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
    int rc = lrn_net_copy_save(&keep, l);
    if (rc)
        return rc;
    for (int i = 0; i < n_snap && !rc; i++) {
        char name[64], path[4096];
        snprintf(name, sizeof name, "snapshot_%d.safetensors", i);
        rc = lrn_ckpt_path(l, path, sizeof path, name);
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
    lrn_net_copy_restore(&keep, l);
    lrn_net_copy_free(&keep);
    return rc;
}

/* Keeps the current weights as the ones an early stop goes back to: in memory, and as a
 * file when there is a checkpoint folder (the previous file goes once the epoch
 * checkpoint that no longer names it is written). */
static int best_take(learner *l, net_copy *best, int *have_best, char *err, size_t errlen)
{
    lrn_net_copy_free(best);
    *have_best = 0;
    int rc = lrn_net_copy_save(best, l);
    if (rc) {
        err_set(err, errlen, "fit: out of memory keeping the best weights");
        return rc;
    }
    *have_best = 1;
    if (l->ckpt_dir && lrn_writes_files(l) &&
        (rc = lrn_best_save(l, best, l->step, err, errlen)))
        return rc;
    l->fit.best_step = l->step;
    return 0;
}

/* Epochs in the cycle after the one epoch e ends (0 when e ends the fit). */
static int next_cycle_epochs(const sched_plan *p, int64_t e, int64_t total_epochs)
{
    int is_last, next = sched_cycle_of_epoch(p, e, &is_last) + 1, n = 0;
    for (int64_t f = e + 1; f < total_epochs && sched_cycle_of_epoch(p, f, &is_last) == next;
         f++)
        n++;
    return n;
}

/* The last epoch's pace: seconds per training batch and for its validation, at its size. */
typedef struct pace {
    int sz;
    double batch_s, valid_s;
} pace;

/* Batches for epoch e of a 1cycle under time_limit_s: as many as let epochs e..total-1
 * train and validate, and the after_passes validations that follow the fit run, within
 * the time left at the last epoch's pace, scaled by pixels for an epoch at another size
 * (progressive resizing; a conservative guess until that size has run once), with 5% to
 * spare (the host slows by a few percent from one epoch to the next). Between 5% of the
 * batches (at least one) and all. */
static int64_t paced_batches(const learner *l, const fit_opts *o, const pace *pc, int64_t e,
                             int64_t total_epochs, double left_s, int64_t all)
{
    double train_s = 0.0, valid_s = 0.0, px = 1.0;
    for (int64_t k = e; k < total_epochs; k++) {
        int sz = o->resize_epoch > 0 && k >= o->resize_epoch ? o->resize_sz : l->sz;
        px = ((double)sz * sz) / ((double)pc->sz * pc->sz);
        train_s += px * pc->batch_s;
        valid_s += px * pc->valid_s;
    }
    /* px is the last epoch's now: the passes after the fit run at its size */
    valid_s += o->after_passes * px * pc->valid_s;
    int64_t least = (int64_t)ceil(0.05 * (double)all);
    double n = train_s > 0 ? floor((0.95 * left_s - valid_s) / train_s) : (double)all;
    if (!(n >= (double)least))
        return least < 1 ? 1 : least;
    return n > (double)all ? all : (int64_t)n;
}

int learner_cycle_worse(float loss, float accuracy, float prev_loss, float prev_accuracy)
{
    return !(loss < prev_loss) && !(accuracy > prev_accuracy);
}

/* Why a fit ends before its last epoch, errors and cancellation aside. */
typedef enum fit_stop {
    FIT_GOES_ON = 0,
    FIT_STOP_PATIENCE,    /* early_stop_patience epochs without a lower validation loss */
    FIT_STOP_WORSE_CYCLE, /* stop_at_worse_cycle: this cycle end is worse than the last */
    FIT_STOP_TIME,        /* time_limit_s: the next cycle would end past it */
} fit_stop;

/* One learner_fit call: what it was asked, its plan and pace, and the weights an early stop
 * goes back to (owned; freed when the call ends). */
typedef struct fit_run {
    learner *l;
    const fit_opts *o;
    const ev_hooks *h;
    sched_plan plan;
    int64_t bpe;          /* batches an epoch's slice of the schedule spans (epoch_frac) */
    int64_t all_batches;  /* batches of a whole epoch */
    int64_t n_batches;    /* batches this epoch trains on (a paced 1cycle: maybe fewer) */
    int64_t total_epochs;
    int cached;           /* batches come from the precompute cache */
    int body_trains;      /* a step changes the body's weights (the cache goes stale) */
    int paced;            /* a 1cycle under a time limit: paced_batches, no time stop */
    int first_epoch;      /* the first epoch this call runs (after a resume: not 0) */
    double t0, epochs_s;  /* this call's start, and its epochs' seconds so far */
    pace pc;
    net_copy best;
    int have_best;
} fit_run;

/* One epoch as it runs: what its training leaves for its end. */
typedef struct fit_epoch {
    int e;                /* the epoch of the fit */
    int b;                /* batches trained so far */
    int is_last;          /* it ends a cycle */
    int64_t imgs;         /* images trained so far */
    double te, train_s;   /* its start, and the seconds its training took */
    double last_sl;       /* the smoothed training loss after its last batch */
    ev_epoch ee;
} fit_epoch;

/* What an epoch's end decided, and the figures its stop note reports. */
typedef struct fit_verdict {
    fit_stop stop;
    int take;             /* keep this epoch's weights as the ones to go back to */
    float last_cycle_loss, last_cycle_acc;
    int64_t old_best;     /* the best file before this epoch's decisions */
    int next_len;
    double done_s, mean_epoch_s, next_end_s;
} fit_verdict;

static int fit_check_opts(const learner *l, const fit_opts *o, char *err, size_t errlen)
{
    if (!o) {
        err_set(err, errlen, "fit: no options");
        return -EINVAL;
    }
    int rc = lrn_check_lrs(l, o->n_lrs, o->lrs, "lrs", err, errlen);
    if (rc)
        return rc;
    if (!(o->wd >= 0.0 && o->wd < 1.0)) {
        err_set(err, errlen, "wd: must be in [0, 1) (got %g)", o->wd);
        return -EINVAL;
    }
    if (!(o->time_limit_s >= 0.0)) {
        err_set(err, errlen, "time_limit_s: must be 0 (none) or positive");
        return -EINVAL;
    }
    if (o->after_passes < 0 || o->after_passes > 1000) {
        err_set(err, errlen, "after_passes: must be between 0 and 1000 (got %d)",
                o->after_passes);
        return -EINVAL;
    }
    if (!(o->epoch_frac >= 0.0 && o->epoch_frac <= 1.0)) {
        err_set(err, errlen, "epoch_frac: must be in (0, 1], or 0 for whole epochs");
        return -EINVAL;
    }
    if (o->resize_epoch < 0 ||
        (o->resize_epoch > 0 && (o->resize_sz < 8 || o->resize_sz > 1024))) {
        err_set(err, errlen, "resize_epoch, resize_sz: an epoch of the fit (0: none) and a "
                "size between 8 and 1024 (got %d and %d)", o->resize_epoch, o->resize_sz);
        return -EINVAL;
    }
    if (o->resize_epoch > 0 && l->precompute) {
        err_set(err, errlen, "resize_epoch: the precompute cache holds one size; turn "
                "precompute off to resize inside a fit");
        return -EINVAL;
    }
    if (o->early_stop_patience < 0) {
        err_set(err, errlen, "early_stop.patience: must be positive");
        return -EINVAL;
    }
    return 0;
}

/* The batches of an epoch and the schedule over them. */
static int fit_plan(fit_run *r, char *err, size_t errlen)
{
    const fit_opts *o = r->o;
    int rc = lrn_train_batches(r->l, r->h, &r->bpe, err, errlen);
    if (rc)
        return rc;
    r->all_batches = r->bpe;
    if (o->epoch_frac > 0.0 && o->epoch_frac < 1.0) {
        int64_t part = (int64_t)ceil(o->epoch_frac * (double)r->bpe);
        r->bpe = part < 1 ? 1 : part;
    }
    r->cached = r->l->precompute;
    sched_plan_defaults(&r->plan, r->bpe);
    r->plan.kind = o->schedule;
    r->plan.n_cycle = o->n_cycle;
    r->plan.cycle_len = o->cycle_len > 0 ? o->cycle_len : 1;
    r->plan.cycle_mult = o->cycle_mult > 0 ? o->cycle_mult : 1;
    char serr[160];
    if ((rc = sched_plan_check(&r->plan, serr, sizeof serr)))
        err_set(err, errlen, "%s", serr);
    return rc;
}

/* Picks up the fit of the last epoch checkpoint. *done = 1 when that fit had finished. */
static int fit_resume(fit_run *r, int *done, char *err, size_t errlen)
{
    learner *l = r->l;
    fit_pos *fp = &l->fit;
    if (!l->ckpt_dir) {
        err_set(err, errlen, "resume: the learner has no checkpoint folder");
        return -EINVAL;
    }
    char path[4096];
    int rc = lrn_ckpt_path(l, path, sizeof path, "last.ckpt.safetensors");
    if (!rc && access(path, R_OK) != 0) {
        err_set(err, errlen, "resume: no checkpoint at %s", path);
        return -ENOENT;
    }
    if (!rc)
        rc = learner_load(l, path, err, errlen);
    if (rc)
        return rc;
    if (!fp->active) {
        lrn_note(r->h, "resume", "the checkpointed fit had already finished; nothing to do");
        *done = 1;
        return 0;
    }
    r->cached = l->precompute;
    if (r->cached && (rc = lrn_pc_ensure(l, r->h, err, errlen)))
        return rc;
    if (!fit_same(fp, r->o, &r->plan)) {
        err_set(err, errlen, "resume: the checkpoint belongs to a fit with other settings");
        return -EINVAL;
    }
    rc = snapshots_reload(l, fp->n_snapshots, err, errlen);
    if (rc)
        return rc;
    if (fp->best_step > 0) {
        rc = lrn_best_load(l, &r->best, fp->best_step, err, errlen);
        if (rc)
            return rc;
        r->have_best = 1;
    }
    lrn_note(r->h, "resume", "continuing at epoch %d of %lld from the last epoch checkpoint",
             fp->next_epoch, (long long)sched_total_epochs(&r->plan));
    return 0;
}

/* A new fit: its position from epoch 0, no snapshots, no kept weights. */
static void fit_start(fit_run *r)
{
    learner *l = r->l;
    const fit_opts *o = r->o;
    fit_pos *fp = &l->fit;
    if (l->ckpt_dir && fp->best_step > 0)
        lrn_best_remove(l, fp->best_step); /* an abandoned fit's */
    memset(fp, 0, sizeof *fp);
    fp->active = 1;
    fp->plan = r->plan;
    fp->n_lrs = o->n_lrs;
    memcpy(fp->lrs, o->lrs, sizeof fp->lrs);
    fp->wd = o->wd;
    fp->snapshots = o->snapshots != 0;
    fp->patience = o->early_stop_patience;
    fp->stop_cycle = o->stop_at_worse_cycle != 0;
    fp->resize_epoch = o->resize_epoch;
    fp->resize_sz = o->resize_sz;
    fp->best_loss = INFINITY;
    fp->prev_cycle_loss = INFINITY;
    fp->prev_cycle_acc = -INFINITY;
    fp->epoch_base = l->epoch_id;
    fp->step_base = l->step;
    smoother_reset(&fp->smooth);
    for (int i = 0; i < l->n_snapshots; i++)
        free(l->snapshots[i]);
    l->n_snapshots = 0;
}

/* Before epoch e trains: its batch count under a paced time limit, and its image size. */
static void fit_epoch_begin(fit_run *r, int e, double te)
{
    learner *l = r->l;
    const fit_opts *o = r->o;
    if (r->paced && r->pc.sz > 0) {
        double left_s = lrn_agree(l, o->time_limit_s - (te - r->t0));
        int64_t n = paced_batches(l, o, &r->pc, e, r->total_epochs, left_s, r->all_batches);
        if (n != r->n_batches)
            lrn_note(r->h, "time_limit", "epoch %d trains on %lld of its %lld batches, so that "
                     "the %lld epoch%s left%s end within %.1f minutes at the last epoch's "
                     "speed (%.0f img/s at %d pixels)", e, (long long)n,
                     (long long)r->all_batches, (long long)(r->total_epochs - e),
                     r->total_epochs - e == 1 ? "" : "s",
                     o->after_passes > 0 ? " and the validation passes after the fit" : "",
                     left_s / 60.0, l->bs / r->pc.batch_s, r->pc.sz);
        r->n_batches = n;
    }
    if (o->resize_epoch > 0 && e >= o->resize_epoch && l->sz != o->resize_sz) {
        lrn_note(r->h, "resize", "epoch %d: images are %d pixels from here on instead of %d "
                 "(progressive resizing)", e, o->resize_sz, l->sz);
        learner_resize(l, o->resize_sz, NULL, 0);
    }
}

/* One training step of epoch fe->e at its batch fe->b, with its batch event. */
static int fit_batch(fit_run *r, fit_epoch *fe, const batch_view *v, char *err, size_t errlen)
{
    learner *l = r->l;
    int e = fe->e, b = fe->b, rc = 0;
    int64_t t = (int64_t)e * r->bpe + b * r->bpe / r->n_batches;
    double lrs[NET_MAX_GROUPS];
    lrn_expand_lrs(lrs, l->n_groups, r->o->n_lrs, r->o->lrs, sched_factor(&r->plan, t));
    double mom;
    if (sched_momentum(&r->plan, t, &mom))
        optim_set_momentum(l->opt, mom);
    float loss = lrn_train_step(l, r->cached, v, lrs, &rc);
    if (rc) {
        err_set(err, errlen, "fit: the batch does not fit the network (%d)", rc);
        return rc;
    }
    l->step++;
    fe->imgs += v->n;
    if (r->body_trains)
        l->weights_version++;
    fe->last_sl = smoother_add(&l->fit.smooth, loss);
    if (!isfinite(loss)) {
        err_set(err, errlen,
                "fit: the training loss is not finite at epoch %d batch %d: the "
                "learning rate is too high", e, b);
        return -EDOM;
    }
    ev_batch eb = {.step = l->step, .epoch = e, .batch = b, .n_batches = (int)r->n_batches,
                   .loss = loss, .smooth_loss = (float)fe->last_sl,
                   .n_groups = l->n_groups, .momentum = (float)l->opt->mom};
    for (int g = 0; g < l->n_groups && g < NET_MAX_GROUPS; g++)
        eb.lrs[g] = (float)lrs[g];
    double el = clock_mono_s() - fe->te;
    eb.img_per_s = el > 0 ? (double)fe->imgs / el : 0.0;
    fe->b++;
    if (r->h && r->h->on_batch && r->h->on_batch(r->h->ctx, &eb)) {
        err_set(err, errlen, "fit: cancelled");
        return -ECANCELED;
    }
    lrn_progress(r->h, (e - r->first_epoch + (double)fe->b / (double)r->n_batches) /
                           (double)(r->total_epochs - r->first_epoch), r->t0);
    return 0;
}

/* During the last epoch of a paced fit, every twentieth of its batches: when it runs
 * slower than the pace it was planned at, trims it to the batches the time left allows at
 * its own speed so far (the validation and the passes after the fit still at the last
 * epoch's). No later epoch can make up for a slow last one, and without this the fit ends
 * past its limit by what the host slowed down. It only ever trims: the schedule's position
 * then moves on by the share of the slice the dropped batches would have taken. */
static void fit_repace(fit_run *r, fit_epoch *fe)
{
    learner *l = r->l;
    int64_t every = (r->all_batches + 19) / 20;
    if (!r->paced || r->pc.sz <= 0 || fe->e != r->total_epochs - 1 || fe->b % every != 0 ||
        fe->b >= r->n_batches)
        return;
    double now = clock_mono_s();
    double px = ((double)l->sz * l->sz) / ((double)r->pc.sz * r->pc.sz);
    pace own = {.sz = l->sz, .batch_s = lrn_agree(l, (now - fe->te) / fe->b),
                .valid_s = px * r->pc.valid_s};
    double left_s = lrn_agree(l, r->o->time_limit_s - (now - r->t0));
    int64_t rest = paced_batches(l, r->o, &own, fe->e, r->total_epochs, left_s,
                                 r->all_batches);
    if (fe->b + rest >= r->n_batches)
        return;
    lrn_note(r->h, "time_limit", "epoch %d trains on %lld of its %lld batches instead of "
             "%lld: it runs at %.0f img/s, slower than the %.0f img/s it was planned at, and "
             "has %.1f minutes left", fe->e, (long long)(fe->b + rest),
             (long long)r->all_batches, (long long)r->n_batches, l->bs / own.batch_s,
             l->bs / (px * r->pc.batch_s), left_s / 60.0);
    r->n_batches = fe->b + rest;
}

/* The training batches of epoch fe->e. */
static int fit_train(fit_run *r, fit_epoch *fe, char *err, size_t errlen)
{
    batch_src s;
    int rc = lrn_src_begin(&s, r->l, SPLIT_TRAIN, !r->cached, r->cached);
    if (rc)
        return lrn_loader_failed(r->l, "fit", rc, err, errlen);
    batch_view v;
    int got = 0;
    while (fe->b < r->n_batches && (got = lrn_src_next(&s, &v)) > 0) {
        if ((rc = fit_batch(r, fe, &v, err, errlen)))
            return rc;
        fit_repace(r, fe);
    }
    if (got < 0)
        return lrn_loader_failed(r->l, "fit", got, err, errlen);
    return 0;
}

/* Validates epoch fe->e and records it: the learner's bests, the pace, a snapshot at a
 * cycle end, and the fit's position. */
static int fit_epoch_end(fit_run *r, fit_epoch *fe, char *err, size_t errlen)
{
    learner *l = r->l;
    fit_pos *fp = &l->fit;
    int e = fe->e;
    fe->train_s = clock_mono_s() - fe->te;
    ev_epoch *ee = &fe->ee;
    *ee = (ev_epoch){.epoch = e, .step = l->step, .train_loss = (float)fe->last_sl};
    ee->cycle = sched_cycle_of_epoch(&r->plan, e, &fe->is_last);
    int rc = lrn_validate(l, &ee->valid_loss, &ee->accuracy, &ee->f2);
    if (rc) {
        err_set(err, errlen, "fit: validation failed (%d)", rc);
        return rc;
    }
    ee->seconds = clock_mono_s() - fe->te;
    ee->img_per_s = fe->train_s > 0 ? (double)fe->imgs / fe->train_s : 0.0;
    if (fe->b > 0)
        r->pc = (pace){.sz = l->sz, .batch_s = lrn_agree(l, fe->train_s / fe->b),
                       .valid_s = lrn_agree(l, ee->seconds - fe->train_s)};
    l->epochs_done++;
    if (ee->valid_loss < l->best_valid_loss)
        l->best_valid_loss = ee->valid_loss;
    if (ee->accuracy > l->best_accuracy)
        l->best_accuracy = ee->accuracy;
    if (fe->is_last && r->o->snapshots &&
        (rc = lrn_snapshot_take(l, ee->cycle, r->h, err, errlen)))
        return rc;
    fp->next_epoch = e + 1;
    fp->n_snapshots = l->n_snapshots;
    if (e + 1 == r->total_epochs)
        fp->active = 0;
    return 0;
}

/* Whether to stop after epoch fe->e (patience, a worse cycle end, the time limit) and
 * whether its weights become the ones to go back to. */
static void fit_decide(fit_run *r, const fit_epoch *fe, fit_verdict *v)
{
    const fit_opts *o = r->o;
    fit_pos *fp = &r->l->fit;
    const ev_epoch *ee = &fe->ee;
    *v = (fit_verdict){.last_cycle_loss = fp->prev_cycle_loss,
                       .last_cycle_acc = fp->prev_cycle_acc, .old_best = fp->best_step};
    if (o->early_stop_patience > 0) {
        if (ee->valid_loss < fp->best_loss) {
            fp->best_loss = ee->valid_loss;
            fp->since_best = 0;
            v->take = 1;
        } else if (++fp->since_best >= o->early_stop_patience) {
            v->stop = FIT_STOP_PATIENCE;
        }
    }
    if (o->stop_at_worse_cycle && fe->is_last) {
        if (learner_cycle_worse(ee->valid_loss, ee->accuracy, fp->prev_cycle_loss,
                                fp->prev_cycle_acc) &&
            (r->have_best || v->take)) {
            v->stop = FIT_STOP_WORSE_CYCLE;
        } else {
            fp->prev_cycle_loss = ee->valid_loss;
            fp->prev_cycle_acc = ee->accuracy;
            v->take = 1;
        }
    }
    r->epochs_s += ee->seconds;
    if (!v->stop && fe->is_last && o->time_limit_s > 0 && !r->paced)
        v->next_len = next_cycle_epochs(&r->plan, fe->e, r->total_epochs);
    v->done_s = lrn_agree(r->l, clock_mono_s() - r->t0);
    v->mean_epoch_s = lrn_agree(r->l, r->epochs_s / (fe->e + 1 - r->first_epoch));
    v->next_end_s = v->done_s + v->next_len * v->mean_epoch_s;
    if (v->next_len > 0 && v->next_end_s > o->time_limit_s)
        v->stop = FIT_STOP_TIME;
}

/* Carries out the verdict: keeps or restores weights, writes the epoch checkpoint, and
 * removes the best file that the checkpoint no longer names. */
static int fit_settle(fit_run *r, const fit_verdict *v, char *err, size_t errlen)
{
    learner *l = r->l;
    fit_pos *fp = &l->fit;
    int rc;
    if (v->take && (rc = best_take(l, &r->best, &r->have_best, err, errlen)))
        return rc;
    if (v->stop) {
        fp->active = 0;
        if (r->have_best && v->stop != FIT_STOP_TIME) {
            lrn_net_copy_restore(&r->best, l);
            l->weights_version++;
        }
    }
    rc = fit_checkpoint(l, err, errlen);
    if (rc)
        return rc;
    /* The checkpoint on disk now names the new best file (or the fit is over). */
    if (l->ckpt_dir && v->old_best > 0 && (v->old_best != fp->best_step || !fp->active))
        lrn_best_remove(l, v->old_best);
    if (l->ckpt_dir && !fp->active && fp->best_step > 0)
        lrn_best_remove(l, fp->best_step);
    return 0;
}

/* The epoch hook; 1 when it asks to stop. */
static int fit_epoch_hook(const fit_run *r, const fit_epoch *fe)
{
    const ev_hooks *h = r->h;
    return h && h->on_epoch && h->on_epoch(h->ctx, &fe->ee);
}

/* The cycle-end hook, once the cycle's snapshot and checkpoint are on disk; 1 when it asks
 * to stop. */
static int fit_cycle_hook(const fit_run *r, const fit_epoch *fe)
{
    const ev_hooks *h = r->h;
    return fe->is_last && h && h->on_cycle_end && h->on_cycle_end(h->ctx, fe->ee.cycle, fe->e);
}

static void fit_report_stop(const fit_run *r, const fit_epoch *fe, const fit_verdict *v)
{
    const fit_opts *o = r->o;
    const ev_epoch *ee = &fe->ee;
    switch (v->stop) {
    case FIT_STOP_PATIENCE:
        lrn_note(r->h, "early_stop",
                 "validation loss has not improved for %d epochs; kept the best epoch's "
                 "weights (valid loss %.4f)", o->early_stop_patience, r->l->fit.best_loss);
        break;
    case FIT_STOP_TIME:
        lrn_note(r->h, "time_limit",
                 "stopped at the end of cycle %d after %.1f minutes: the next cycle's %d "
                 "epoch%s at %.1f minutes each would end at %.1f minutes, past the limit "
                 "of %.1f; kept this cycle end's weights", ee->cycle, v->done_s / 60.0,
                 v->next_len, v->next_len == 1 ? "" : "s", v->mean_epoch_s / 60.0,
                 v->next_end_s / 60.0, o->time_limit_s / 60.0);
        break;
    case FIT_STOP_WORSE_CYCLE:
        lrn_note(r->h, "stop",
                 "at the end of cycle %d validation loss %.4f is not below %.4f and "
                 "accuracy %.4f not above %.4f at the previous cycle's end; went back to "
                 "those weights", ee->cycle, ee->valid_loss, v->last_cycle_loss,
                 ee->accuracy, v->last_cycle_acc);
        break;
    case FIT_GOES_ON:
        break;
    }
}

/* Epoch e from its first batch to its checkpoint and hooks; *stop says whether the fit
 * ends here (a verdict's stop, reported). */
static int fit_epoch_run(fit_run *r, int e, int *stop, char *err, size_t errlen)
{
    fit_epoch fe = {.e = e, .te = clock_mono_s(), .last_sl = NAN};
    r->l->epoch_id = r->l->fit.epoch_base + e;
    fit_epoch_begin(r, e, fe.te);
    int rc = fit_train(r, &fe, err, errlen);
    if (!rc)
        rc = fit_epoch_end(r, &fe, err, errlen);
    if (rc)
        return rc;
    fit_verdict v;
    fit_decide(r, &fe, &v);
    /* The epoch is reported before its checkpoint is written: a stop between the two
     * repeats the epoch on resume, and the report of the repeat replaces this one, where
     * the other order would lose the report of an epoch the checkpoint holds. */
    int cancel = fit_epoch_hook(r, &fe);
    if ((rc = fit_settle(r, &v, err, errlen)))
        return rc;
    cancel |= fit_cycle_hook(r, &fe);
    if (v.stop) {
        fit_report_stop(r, &fe, &v);
        *stop = 1;
        return 0;
    }
    if (cancel && e + 1 < r->total_epochs) {
        err_set(err, errlen, "fit: cancelled");
        return -ECANCELED;
    }
    return 0;
}

int learner_fit(learner *l, const fit_opts *o, const ev_hooks *h, char *err, size_t errlen)
{
    int rc = fit_check_opts(l, o, err, errlen);
    if (rc)
        return rc;
    fit_run r = {.l = l, .o = o, .h = h};
    if ((rc = fit_plan(&r, err, errlen)))
        return rc;
    if (o->resume) {
        int done = 0;
        rc = fit_resume(&r, &done, err, errlen);
        if (rc || done) {
            lrn_net_copy_free(&r.best);
            return rc;
        }
    } else {
        fit_start(&r);
    }
    optim_set_wds(l->opt, &o->wd, 1);
    r.body_trains = l->net->freeze_to < l->head_group;
    r.total_epochs = sched_total_epochs(&r.plan);
    r.t0 = clock_mono_s();
    r.first_epoch = l->fit.next_epoch;
    /* A 1cycle cannot stop early without losing its annealing, so under a time limit it
     * paces itself instead: each epoch keeps its slice of the schedule, and how many
     * batches fill that slice follows the measured speed. */
    r.paced = r.plan.kind == SCHED_1CYCLE && o->time_limit_s > 0;
    r.n_batches = r.bpe;
    int stop = 0;
    for (int e = r.first_epoch; e < r.total_epochs && !stop && !rc; e++)
        rc = fit_epoch_run(&r, e, &stop, err, errlen);
    if (!rc)
        l->fit.active = 0;
    lrn_net_copy_free(&r.best);
    optim_reset_momentum(l->opt);
    return rc;
}
