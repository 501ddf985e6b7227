/* sink.c: the engine-event sink: ev_hooks calls of a running job turned into store rows
 * (metric points, sweeps and their points, epochs, notes, progress). */
#define _GNU_SOURCE
#include "jobs_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int stop_requested(sink *k)
{
    return atomic_load(&k->jq->cancel);
}

/* Ends a sweep row this sink opened: the LR and iteration count it reached. */
void jq_sweep_close(sink *k)
{
    if (!k->own_sweeps || !k->lr_find_id)
        return;
    store_flush(k->jq->st);
    store_lr_find_finish(k->jq->st, k->lr_find_id, NULL, 0, k->sweep_last_lr, k->sweep_n);
    k->lr_find_id = 0;
}

static json_t *ev_suggestion_json(const ev_suggestion *s)
{
    return json_pack("{sf ss}", "lr", s->lr, "reason", s->reason ? s->reason : "");
}

/* A sweep inside another job (the recipe) ended: its row gets the suggestions. A plain
 * lr-find job records its own in do_lr_find. */
static void on_sweep_end(void *ctx, const ev_sweep_end *e)
{
    sink *k = ctx;
    if (!k->own_sweeps || !k->lr_find_id)
        return;
    json_t *sug = json_pack("{so so so so}", "min_div10", ev_suggestion_json(&e->min_div10),
                            "steep", ev_suggestion_json(&e->steep), "valley",
                            ev_suggestion_json(&e->valley), "slide",
                            ev_suggestion_json(&e->slide));
    store_flush(k->jq->st);
    store_lr_find_finish(k->jq->st, k->lr_find_id, sug, e->stopped_early, k->sweep_last_lr,
                         k->sweep_n);
    json_decref(sug);
    k->lr_find_id = 0;
}

static int on_batch(void *ctx, const ev_batch *e)
{
    sink *k = ctx;
    jq_sweep_close(k);
    const char *keys[2 + 4 + 1];
    char lr_names[4][8];
    double vals[2 + 4 + 1];
    int n = 0;
    keys[n] = "train_loss";
    vals[n++] = e->loss;
    keys[n] = "smooth_loss";
    vals[n++] = e->smooth_loss;
    for (int g = 0; g < e->n_groups && g < 4; g++) {
        snprintf(lr_names[g], sizeof lr_names[g], "lr_%d", g);
        keys[n] = lr_names[g];
        vals[n++] = e->lrs[g];
    }
    keys[n] = "momentum"; /* constant but for 1cycle, which cycles it against the LR */
    vals[n++] = e->momentum;
    store_metrics_push(k->jq->st, k->run_id, k->job_id, e->step, n, keys, vals);
    if (!k->engine_progress && k->total_epochs > 0 && e->n_batches > 0) {
        /* Progress from the batch position when the learner does not report it. */
        double total = (double)k->total_epochs * e->n_batches;
        double done = (double)e->epoch * e->n_batches + e->batch + 1;
        double frac = done / total, el = clock_mono_s() - k->t0;
        store_job_progress(k->jq->st, k->job_id, frac > 1 ? 1 : frac,
                           done > 0 && frac < 1 ? el * (total - done) / done : -1);
    }
    return stop_requested(k);
}

static int on_sweep_point(void *ctx, const ev_sweep_point *e)
{
    sink *k = ctx;
    if (k->own_sweeps && (!k->lr_find_id || e->iter <= k->sweep_last_iter)) {
        /* A sweep the recipe runs: one lr_finds row per sweep, from its first point. */
        jq_sweep_close(k);
        if (store_lr_find_create(k->jq->st, k->run_id, k->job_id, e->start_lr, e->end_lr,
                                 e->num_it, &k->lr_find_id))
            k->lr_find_id = 0;
        k->sweep_n = 0;
    }
    if (k->lr_find_id)
        store_lr_find_point_push(k->jq->st, k->lr_find_id, k->run_id, k->job_id, e->iter, e->lr,
                                 e->loss, e->smooth_loss);
    k->sweep_last_iter = e->iter;
    k->sweep_last_lr = e->lr;
    k->sweep_n++;
    return stop_requested(k);
}

static int on_epoch(void *ctx, const ev_epoch *e)
{
    sink *k = ctx;
    jq_sweep_close(k);
    store_epoch se = {e->epoch, e->cycle, e->train_loss, e->valid_loss, e->accuracy, e->f2,
                      e->seconds, e->img_per_s, e->step};
    int n = -1;
    if (store_epoch_add(k->jq->st, k->run_id, k->job_id, &se, &n))
        log_msg(LOG_ERROR, k->job_id, "cannot record epoch %d: %s", e->epoch, store_errmsg());
    else
        k->last_epoch = n;
    log_msg(LOG_INFO, k->job_id, "epoch %d (cycle %d): train_loss %.4f valid_loss %.4f "
            "accuracy %.4f, %.1f s, %.0f img/s", e->epoch, e->cycle, e->train_loss,
            e->valid_loss, e->accuracy, e->seconds, e->img_per_s);
    return stop_requested(k);
}

static int on_cycle_end(void *ctx, int cycle, int epoch)
{
    sink *k = ctx;
    k->last_cycle = cycle;
    log_msg(LOG_DEBUG, k->job_id, "cycle %d ended at epoch %d", cycle, epoch);
    return stop_requested(k);
}

static void on_note(void *ctx, const char *what, const char *why)
{
    sink *k = ctx;
    store_note_push(k->jq->st, k->run_id, k->job_id, what, why);
    log_msg(LOG_INFO, k->job_id, "%s: %s", what, why ? why : "");
    /* The learner names the snapshot file at the end of its note: "... to <path>". */
    const char *to = NULL;
    for (const char *p = why; what && !strcmp(what, "snapshot") && p && (p = strstr(p, " to /"));
         p++)
        to = p + 4;
    if (to && access(to, R_OK) == 0)
        store_snapshot_add(k->jq->st, k->run_id, k->job_id, "snapshot", k->last_cycle,
                           k->last_epoch, to, NULL);
}

static void on_progress(void *ctx, double fraction, double eta_s)
{
    sink *k = ctx;
    k->engine_progress = 1;
    store_job_progress(k->jq->st, k->job_id, fraction, eta_s);
}

ev_hooks jq_sink_hooks(sink *k)
{
    ev_hooks h = {.ctx = k, .on_batch = on_batch, .on_sweep_point = on_sweep_point,
                  .on_epoch = on_epoch, .on_cycle_end = on_cycle_end, .on_note = on_note,
                  .on_progress = on_progress, .on_sweep_end = on_sweep_end};
    return h;
}
