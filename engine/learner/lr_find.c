/* lr_find: the LR sweep. */
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

/* ---- LR sweep ---------------------------------------------------------------------------- */

int learner_lr_find(learner *l, const lrfind_opts *o, const ev_hooks *h, lrfind_result *out,
                    char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    double start = o && o->start_lr > 0 ? o->start_lr : 1e-5;
    double end = o && o->end_lr > 0 ? o->end_lr : 10.0;
    if (!(start < end) || !isfinite(end) || end > 1e3) {
        err_set(err, errlen, "end_lr: must be above start_lr and at most 1000 (%g, %g)", start,
                end);
        return -EINVAL;
    }
    double ratios[LEARNER_MAX_GROUPS];
    for (int g = 0; g < l->n_groups; g++)
        ratios[g] = 1.0;
    if (o && o->n_lrs) {
        int rc = lrn_check_lrs(l, o->n_lrs, o->lrs, "lrs", err, errlen);
        if (rc)
            return rc;
        double last = o->lrs[o->n_lrs - 1];
        for (int g = 0; g < l->n_groups; g++)
            ratios[g] = o->lrs[o->n_lrs == 1 ? 0 : g] / last;
    }
    if (o && (o->wd < 0.0 || !isfinite(o->wd))) {
        err_set(err, errlen, "wd: must be a non-negative number");
        return -EINVAL;
    }
    int64_t bpe;
    int rc = lrn_train_batches(l, h, &bpe, err, errlen);
    if (rc)
        return rc;
    int cached = l->precompute;
    if (bpe < 1) {
        err_set(err, errlen, "lr_find: the training split gives no batch");
        return -EINVAL;
    }
    int num_it = o && o->num_it > 0 ? o->num_it : lrfind_default_iters(bpe);
    if (num_it > 100000) {
        err_set(err, errlen, "num_it: at most 100000 (got %d)", num_it);
        return -EINVAL;
    }

    /* Everything the sweep changes is put back afterwards, whatever happens. */
    net_copy saved;
    rc = lrn_net_copy_save(&saved, l);
    if (rc) {
        err_set(err, errlen, "lr_find: out of memory saving the weights");
        return rc;
    }
    double wd = o ? o->wd : 0.0;
    optim_set_wds(l->opt, &wd, 1);
    out->points = calloc((size_t)num_it, sizeof *out->points);
    if (!out->points) {
        rc = -ENOMEM;
        err_set(err, errlen, "lr_find: out of memory");
        goto out_restore;
    }
    loss_smoother sm;
    smoother_reset(&sm);
    lrfind_stop stop;
    lrfind_stop_reset(&stop);
    double t0 = clock_mono_s();
    int it = 0;
    while (it < num_it && rc == 0) {
        batch_src s;
        rc = lrn_src_begin(&s, l, SPLIT_TRAIN, !cached, cached);
        if (rc) {
            err_set(err, errlen, "lr_find: the loader failed (%d)", rc);
            break;
        }
        batch_view v;
        int got = 0;
        while (it < num_it && (got = lrn_src_next(&s, &v)) > 0) {
            double f = sched_exp_sweep(start, end, it, num_it), lrs[LEARNER_MAX_GROUPS];
            for (int g = 0; g < l->n_groups; g++)
                lrs[g] = ratios[g] * f;
            float loss = lrn_train_step(l, cached, &v, lrs, &rc);
            if (rc) {
                err_set(err, errlen, "lr_find: the batch does not fit the network (%d)", rc);
                break;
            }
            double sl = smoother_add(&sm, loss);
            ev_sweep_point *p = &out->points[it];
            p->iter = it;
            p->lr = lrs[l->n_groups - 1];
            p->loss = loss;
            p->smooth_loss = (float)sl;
            p->start_lr = ratios[l->n_groups - 1] * start;
            p->end_lr = ratios[l->n_groups - 1] * end;
            p->num_it = num_it;
            out->n_points = ++it;
            if (h && h->on_sweep_point && h->on_sweep_point(h->ctx, p)) {
                rc = -ECANCELED;
                err_set(err, errlen, "lr_find: cancelled");
                break;
            }
            lrn_progress(h, (double)it / num_it, t0);
            if (lrfind_stop_check(&stop, it - 1, sl)) {
                out->stopped_early = 1;
                it = num_it;
                break;
            }
        }
        if (!rc && it < num_it && got < 0) {
            rc = got;
            err_set(err, errlen, "lr_find: the loader failed (%d)", rc);
        }
        if (!rc && it < num_it && s.batch_i == 0) {
            rc = -EIO;
            err_set(err, errlen, "lr_find: the training split gave no batch");
        }
    }
    if (!rc)
        lrfind_suggest(out);
out_restore:
    lrn_net_copy_restore(&saved, l);
    lrn_net_copy_free(&saved);
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
    lrn_note(h, "lr_find",
         "swept %d iterations from %.3g to %.3g%s; suggestions: min_div10 %.3g, steep %.3g, "
         "valley %.3g, slide %.3g", out->n_points, start, end,
         out->stopped_early ? " (stopped: the smoothed loss diverged)" : "",
         out->min_div10.lr, out->steep.lr, out->valley.lr, out->slide.lr);
    return 0;
}
