/* lr_find: the LR sweep. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lrsched.h"
#include "optim.h"

/* ---- LR sweep ---------------------------------------------------------------------------- */

/* One sweep as it runs. */
typedef struct sweep {
    learner *l;
    const ev_hooks *h;
    lrfind_result *out;
    double start, end;              /* the last group's range; the others scale by ratios */
    double ratios[NET_MAX_GROUPS];
    int num_it, cached, it;
    loss_smoother sm;
    lrfind_stop stop;
    double t0, t_warm;              /* the sweep's start; the end of its warm-up steps */
} sweep;

/* The range, the groups' ratios and the weight decay of the options. */
static int sweep_check_opts(sweep *sw, const lrfind_opts *o, char *err, size_t errlen)
{
    const learner *l = sw->l;
    sw->start = o && o->start_lr > 0 ? o->start_lr : 1e-5;
    sw->end = o && o->end_lr > 0 ? o->end_lr : 10.0;
    if (!(sw->start < sw->end) || !isfinite(sw->end) || sw->end > 1e3) {
        err_set(err, errlen, "end_lr: must be above start_lr and at most 1000 (%g, %g)",
                sw->start, sw->end);
        return -EINVAL;
    }
    for (int g = 0; g < l->n_groups; g++)
        sw->ratios[g] = 1.0;
    if (o && o->n_lrs) {
        int rc = lrn_check_lrs(l, o->n_lrs, o->lrs, "lrs", err, errlen);
        if (rc)
            return rc;
        double last = o->lrs[o->n_lrs - 1];
        for (int g = 0; g < l->n_groups; g++)
            sw->ratios[g] = o->lrs[o->n_lrs == 1 ? 0 : g] / last;
    }
    if (o && (o->wd < 0.0 || !isfinite(o->wd))) {
        err_set(err, errlen, "wd: must be a non-negative number");
        return -EINVAL;
    }
    return 0;
}

/* The sweep's length: num_it, or one epoch's worth (lrfind_default_iters). */
static int sweep_length(sweep *sw, const lrfind_opts *o, char *err, size_t errlen)
{
    int64_t bpe;
    int rc = lrn_train_batches(sw->l, sw->h, &bpe, err, errlen);
    if (rc)
        return rc;
    sw->cached = sw->l->precompute;
    if (bpe < 1) {
        err_set(err, errlen, "lr_find: the training split gives no batch");
        return -EINVAL;
    }
    sw->num_it = o && o->num_it > 0 ? o->num_it : lrfind_default_iters(bpe);
    if (sw->num_it > 100000) {
        err_set(err, errlen, "num_it: at most 100000 (got %d)", sw->num_it);
        return -EINVAL;
    }
    return 0;
}

/* One training step at the sweep's next LR, recorded as a point. Ends the sweep (it =
 * num_it) when the stop rule says the loss diverged. */
static int sweep_point(sweep *sw, const batch_view *v, char *err, size_t errlen)
{
    learner *l = sw->l;
    int it = sw->it, rc = 0, top = l->n_groups - 1;
    double f = sched_exp_sweep(sw->start, sw->end, it, sw->num_it), lrs[NET_MAX_GROUPS];
    for (int g = 0; g < l->n_groups; g++)
        lrs[g] = sw->ratios[g] * f;
    float loss = lrn_train_step(l, sw->cached, v, lrs, &rc);
    if (rc) {
        err_set(err, errlen, "lr_find: the batch does not fit the network (%d)", rc);
        return rc;
    }
    double sl = smoother_add(&sw->sm, loss);
    ev_sweep_point *p = &sw->out->points[it];
    p->iter = it;
    p->lr = lrs[top];
    p->loss = loss;
    p->smooth_loss = (float)sl;
    p->start_lr = sw->ratios[top] * sw->start;
    p->end_lr = sw->ratios[top] * sw->end;
    p->num_it = sw->num_it;
    sw->out->n_points = sw->it = ++it;
    double now = clock_mono_s();
    if (it == LRFIND_WARM_IT)
        sw->t_warm = now;
    if (it > LRFIND_WARM_IT) {
        sw->out->steady_it = it - LRFIND_WARM_IT;
        sw->out->steady_s = now - sw->t_warm;
    }
    const ev_hooks *h = sw->h;
    if (h && h->on_sweep_point && h->on_sweep_point(h->ctx, p)) {
        err_set(err, errlen, "lr_find: cancelled");
        return -ECANCELED;
    }
    lrn_progress(h, (double)it / sw->num_it, sw->t0);
    if (lrfind_stop_check(&sw->stop, it - 1, sl)) {
        sw->out->stopped_early = 1;
        sw->it = sw->num_it;
    }
    return 0;
}

/* One pass over the training batches, until the sweep has its points. */
static int sweep_pass(sweep *sw, char *err, size_t errlen)
{
    batch_src s;
    int rc = lrn_src_begin(&s, sw->l, SPLIT_TRAIN, !sw->cached, sw->cached);
    if (rc)
        return lrn_loader_failed(sw->l, "lr_find", rc, err, errlen);
    batch_view v;
    int got = 0;
    while (sw->it < sw->num_it && (got = lrn_src_next(&s, &v)) > 0)
        if ((rc = sweep_point(sw, &v, err, errlen)))
            return rc;
    if (sw->it < sw->num_it && got < 0)
        return lrn_loader_failed(sw->l, "lr_find", got, err, errlen);
    if (sw->it < sw->num_it && s.batch_i == 0) {
        err_set(err, errlen, "lr_find: the training split gave no batch");
        return -EIO;
    }
    return 0;
}

static void sweep_report(const sweep *sw)
{
    const lrfind_result *out = sw->out;
    const ev_hooks *h = sw->h;
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
         "valley %.3g, slide %.3g", out->n_points, sw->start, sw->end,
         out->stopped_early ? " (stopped: the smoothed loss diverged)" : "",
         out->min_div10.lr, out->steep.lr, out->valley.lr, out->slide.lr);
}

int learner_lr_find(learner *l, const lrfind_opts *o, const ev_hooks *h, lrfind_result *out,
                    char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    sweep sw = {.l = l, .h = h, .out = out};
    int rc = sweep_check_opts(&sw, o, err, errlen);
    if (!rc)
        rc = sweep_length(&sw, o, err, errlen);
    if (rc)
        return rc;
    /* Everything the sweep changes is put back afterwards, whatever happens. */
    net_copy saved;
    rc = lrn_net_copy_save(&saved, l);
    if (rc) {
        err_set(err, errlen, "lr_find: out of memory saving the weights");
        return rc;
    }
    double wd = o ? o->wd : 0.0;
    optim_set_wds(l->opt, &wd, 1);
    out->points = calloc((size_t)sw.num_it, sizeof *out->points);
    if (!out->points) {
        rc = -ENOMEM;
        err_set(err, errlen, "lr_find: out of memory");
    }
    smoother_reset(&sw.sm);
    lrfind_stop_reset(&sw.stop);
    sw.t0 = clock_mono_s();
    while (!rc && sw.it < sw.num_it)
        rc = sweep_pass(&sw, err, errlen);
    if (!rc)
        lrfind_suggest(out);
    lrn_net_copy_restore(&saved, l);
    lrn_net_copy_free(&saved);
    if (rc) {
        if (rc != -ECANCELED)
            lrfind_result_free(out);
        return rc;
    }
    sweep_report(&sw);
    return 0;
}
