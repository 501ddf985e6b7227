/* fit: the SGDR fit with per-batch events, early stop and checkpoints. */
#include "internal.h"

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

/* ---- fit ---------------------------------------------------------------------------------- */

static int fit_checkpoint(learner *l, char *err, size_t errlen)
{
    if (!l->ckpt_dir)
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
    if (l->ckpt_dir && (rc = lrn_best_save(l, best, l->step, err, errlen)))
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
 * train and validate within the time left at the last epoch's pace, scaled by pixels for
 * an epoch at another size (progressive resizing; a conservative guess until that size
 * has run once), with 5% to spare (the host slows by a few percent from one epoch to the
 * next). Between 5% of the batches (at least one) and all. */
static int64_t paced_batches(const learner *l, const fit_opts *o, const pace *pc, int64_t e,
                             int64_t total_epochs, double left_s, int64_t all)
{
    double train_s = 0.0, valid_s = 0.0;
    for (int64_t k = e; k < total_epochs; k++) {
        int sz = o->resize_epoch > 0 && k >= o->resize_epoch ? o->resize_sz : l->sz;
        double px = ((double)sz * sz) / ((double)pc->sz * pc->sz);
        train_s += px * pc->batch_s;
        valid_s += px * pc->valid_s;
    }
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

int learner_fit(learner *l, const fit_opts *o, const ev_hooks *h, char *err, size_t errlen)
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
    int64_t bpe, all_batches;
    if ((rc = lrn_train_batches(l, h, &bpe, err, errlen)))
        return rc;
    all_batches = bpe;
    if (o->epoch_frac > 0.0 && o->epoch_frac < 1.0) {
        int64_t part = (int64_t)ceil(o->epoch_frac * (double)bpe);
        bpe = part < 1 ? 1 : part;
    }
    int cached = l->precompute;
    sched_plan plan;
    sched_plan_defaults(&plan, bpe);
    plan.kind = o->schedule;
    plan.n_cycle = o->n_cycle;
    plan.cycle_len = o->cycle_len > 0 ? o->cycle_len : 1;
    plan.cycle_mult = o->cycle_mult > 0 ? o->cycle_mult : 1;
    char serr[160];
    if ((rc = sched_plan_check(&plan, serr, sizeof serr))) {
        err_set(err, errlen, "%s", serr);
        return rc;
    }

    fit_pos *fp = &l->fit;
    net_copy best = {0};
    int have_best = 0;
    if (o->resume) {
        if (!l->ckpt_dir) {
            err_set(err, errlen, "resume: the learner has no checkpoint folder");
            return -EINVAL;
        }
        char path[4096];
        rc = lrn_ckpt_path(l, path, sizeof path, "last.ckpt.safetensors");
        if (!rc && access(path, R_OK) != 0) {
            err_set(err, errlen, "resume: no checkpoint at %s", path);
            return -ENOENT;
        }
        if (!rc)
            rc = learner_load(l, path, err, errlen);
        if (rc)
            return rc;
        if (!fp->active) {
            lrn_note(h, "resume", "the checkpointed fit had already finished; nothing to do");
            return 0;
        }
        cached = l->precompute;
        if (cached && (rc = lrn_pc_ensure(l, h, err, errlen)))
            return rc;
        if (!fit_same(fp, o, &plan)) {
            err_set(err, errlen, "resume: the checkpoint belongs to a fit with other settings");
            return -EINVAL;
        }
        rc = snapshots_reload(l, fp->n_snapshots, err, errlen);
        if (rc)
            return rc;
        if (fp->best_step > 0) {
            rc = lrn_best_load(l, &best, fp->best_step, err, errlen);
            if (rc)
                return rc;
            have_best = 1;
        }
        lrn_note(h, "resume", "continuing at epoch %d of %lld from the last epoch checkpoint",
             fp->next_epoch, (long long)sched_total_epochs(&plan));
    } else {
        if (l->ckpt_dir && fp->best_step > 0)
            lrn_best_remove(l, fp->best_step); /* an abandoned fit's */
        memset(fp, 0, sizeof *fp);
        fp->active = 1;
        fp->plan = plan;
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
    optim_set_wds(l->opt, &o->wd, 1);
    int body_trains = l->net->freeze_to < l->head_group;

    int64_t total_epochs = sched_total_epochs(&plan);
    double t0 = clock_mono_s(), epochs_s = 0.0; /* epochs_s: this call's epochs, for the limit */
    const int fp_first = fp->next_epoch;
    /* A 1cycle cannot stop early without losing its annealing, so under a time limit it
     * paces itself instead: each epoch keeps its slice of the schedule, and how many
     * batches fill that slice follows the measured speed. */
    const int paced = plan.kind == SCHED_1CYCLE && o->time_limit_s > 0;
    pace pc = {0};
    int64_t n_batches = bpe;
    for (int e = fp->next_epoch; e < total_epochs; e++) {
        double te = clock_mono_s();
        l->epoch_id = fp->epoch_base + e;
        if (paced && pc.sz > 0) {
            int64_t n = paced_batches(l, o, &pc, e, total_epochs,
                                      o->time_limit_s - (te - t0), all_batches);
            if (n != n_batches)
                lrn_note(h, "time_limit", "epoch %d trains on %lld of its %lld batches, so that "
                         "the %lld epoch%s left end within %.1f minutes at the last epoch's "
                         "speed (%.0f img/s at %d pixels)", e, (long long)n,
                         (long long)all_batches, (long long)(total_epochs - e),
                         total_epochs - e == 1 ? "" : "s",
                         (o->time_limit_s - (te - t0)) / 60.0, l->bs / pc.batch_s, pc.sz);
            n_batches = n;
        }
        if (o->resize_epoch > 0 && e >= o->resize_epoch && l->sz != o->resize_sz) {
            lrn_note(h, "resize", "epoch %d: images are %d pixels from here on instead of %d "
                     "(progressive resizing)", e, o->resize_sz, l->sz);
            learner_resize(l, o->resize_sz, NULL, 0);
        }
        batch_src s;
        rc = lrn_src_begin(&s, l, SPLIT_TRAIN, !cached, cached);
        if (rc) {
            err_set(err, errlen, "fit: the loader failed (%d)", rc);
            goto out_stop;
        }
        batch_view v;
        int got = 0, b = 0;
        int64_t imgs = 0;
        double last_sl = NAN;
        while (b < n_batches && (got = lrn_src_next(&s, &v)) > 0) {
            int64_t t = (int64_t)e * bpe + b * bpe / n_batches;
            double lrs[LEARNER_MAX_GROUPS];
            lrn_expand_lrs(lrs, l->n_groups, o->n_lrs, o->lrs, sched_factor(&plan, t));
            double mom;
            if (sched_momentum(&plan, t, &mom))
                optim_set_momentum(l->opt, mom);
            float loss = lrn_train_step(l, cached, &v, lrs, &rc);
            if (rc) {
                err_set(err, errlen, "fit: the batch does not fit the network (%d)", rc);
                goto out_stop;
            }
            l->step++;
            imgs += v.n;
            if (body_trains)
                l->weights_version++;
            last_sl = smoother_add(&fp->smooth, loss);
            if (!isfinite(loss)) {
                err_set(err, errlen,
                        "fit: the training loss is not finite at epoch %d batch %d: the "
                        "learning rate is too high", e, b);
                rc = -EDOM;
                goto out_stop;
            }
            ev_batch eb = {.step = l->step, .epoch = e, .batch = b, .n_batches = (int)n_batches,
                           .loss = loss, .smooth_loss = (float)last_sl,
                           .n_groups = l->n_groups, .momentum = (float)l->opt->mom};
            for (int g = 0; g < l->n_groups && g < 4; g++)
                eb.lrs[g] = (float)lrs[g];
            double el = clock_mono_s() - te;
            eb.img_per_s = el > 0 ? (double)imgs / el : 0.0;
            b++;
            if (h && h->on_batch && h->on_batch(h->ctx, &eb)) {
                rc = -ECANCELED;
                err_set(err, errlen, "fit: cancelled");
                goto out_stop;
            }
            lrn_progress(h, (e - fp_first + (double)b / (double)n_batches) /
                                (double)(total_epochs - fp_first), t0);
        }
        if (got < 0) {
            rc = got;
            err_set(err, errlen, "fit: the loader failed (%d)", rc);
            goto out_stop;
        }
        double train_s = clock_mono_s() - te;
        ev_epoch ee = {.epoch = e, .step = l->step, .train_loss = (float)last_sl};
        int is_last = 0;
        ee.cycle = sched_cycle_of_epoch(&plan, e, &is_last);
        rc = lrn_validate(l, &ee.valid_loss, &ee.accuracy, &ee.f2);
        if (rc) {
            err_set(err, errlen, "fit: validation failed (%d)", rc);
            goto out_stop;
        }
        ee.seconds = clock_mono_s() - te;
        ee.img_per_s = train_s > 0 ? (double)imgs / train_s : 0.0;
        if (b > 0)
            pc = (pace){.sz = l->sz, .batch_s = train_s / b, .valid_s = ee.seconds - train_s};
        l->epochs_done++;
        if (ee.valid_loss < l->best_valid_loss)
            l->best_valid_loss = ee.valid_loss;
        if (ee.accuracy > l->best_accuracy)
            l->best_accuracy = ee.accuracy;
        if (is_last && o->snapshots && (rc = lrn_snapshot_take(l, ee.cycle, h, err, errlen)))
            goto out_stop;
        fp->next_epoch = e + 1;
        fp->n_snapshots = l->n_snapshots;
        if (e + 1 == total_epochs)
            fp->active = 0;
        int stop = 0, take = 0;
        float last_cycle_loss = fp->prev_cycle_loss, last_cycle_acc = fp->prev_cycle_acc;
        int64_t old_best = fp->best_step;
        if (o->early_stop_patience > 0) {
            if (ee.valid_loss < fp->best_loss) {
                fp->best_loss = ee.valid_loss;
                fp->since_best = 0;
                take = 1;
            } else if (++fp->since_best >= o->early_stop_patience) {
                stop = 1;
            }
        }
        if (o->stop_at_worse_cycle && is_last) {
            if (learner_cycle_worse(ee.valid_loss, ee.accuracy, fp->prev_cycle_loss,
                                    fp->prev_cycle_acc) &&
                (have_best || take)) {
                stop = 2;
            } else {
                fp->prev_cycle_loss = ee.valid_loss;
                fp->prev_cycle_acc = ee.accuracy;
                take = 1;
            }
        }
        epochs_s += ee.seconds;
        int next_len = 0;
        if (!stop && is_last && o->time_limit_s > 0 && !paced)
            next_len = next_cycle_epochs(&plan, e, total_epochs);
        double done_s = clock_mono_s() - t0, mean_epoch_s = epochs_s / (e + 1 - fp_first),
               next_end_s = done_s + next_len * mean_epoch_s;
        if (next_len > 0 && next_end_s > o->time_limit_s)
            stop = 3;
        if (take && (rc = best_take(l, &best, &have_best, err, errlen)))
            goto out_stop;
        if (stop) {
            fp->active = 0;
            if (have_best && stop != 3) {
                lrn_net_copy_restore(&best, l);
                l->weights_version++;
            }
        }
        rc = fit_checkpoint(l, err, errlen);
        if (rc)
            goto out_stop;
        /* The checkpoint on disk now names the new best file (or the fit is over). */
        if (l->ckpt_dir && old_best > 0 && (old_best != fp->best_step || !fp->active))
            lrn_best_remove(l, old_best);
        if (l->ckpt_dir && !fp->active && fp->best_step > 0)
            lrn_best_remove(l, fp->best_step);
        int cancel = 0;
        if (h && h->on_epoch && h->on_epoch(h->ctx, &ee))
            cancel = 1;
        if (is_last && h && h->on_cycle_end && h->on_cycle_end(h->ctx, ee.cycle, e))
            cancel = 1;
        if (stop) {
            if (stop == 1)
                lrn_note(h, "early_stop",
                     "validation loss has not improved for %d epochs; kept the best epoch's "
                     "weights (valid loss %.4f)", o->early_stop_patience, fp->best_loss);
            else if (stop == 3)
                lrn_note(h, "time_limit",
                     "stopped at the end of cycle %d after %.1f minutes: the next cycle's %d "
                     "epoch%s at %.1f minutes each would end at %.1f minutes, past the limit "
                     "of %.1f; kept this cycle end's weights", ee.cycle, done_s / 60.0,
                     next_len, next_len == 1 ? "" : "s", mean_epoch_s / 60.0,
                     next_end_s / 60.0, o->time_limit_s / 60.0);
            else
                lrn_note(h, "stop",
                     "at the end of cycle %d validation loss %.4f is not below %.4f and "
                     "accuracy %.4f not above %.4f at the previous cycle's end; went back to "
                     "those weights", ee.cycle, ee.valid_loss, last_cycle_loss, ee.accuracy,
                     last_cycle_acc);
            break;
        }
        if (cancel && e + 1 < total_epochs) {
            rc = -ECANCELED;
            err_set(err, errlen, "fit: cancelled");
            goto out_stop;
        }
    }
    fp->active = 0;
    lrn_net_copy_free(&best);
    optim_reset_momentum(l->opt);
    return 0;
out_stop:
    lrn_net_copy_free(&best);
    optim_reset_momentum(l->opt);
    return rc;
}

