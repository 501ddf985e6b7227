/* events.h: how the engine reports progress. The learner calls these hooks from the thread
 * that runs the job; the daemon turns them into SQLite rows and SSE messages, tests and
 * benchmarks record them. Any hook may be NULL. A hook returning nonzero asks the learner
 * to stop at the next batch boundary (cancellation). */
#ifndef SGDRD_EVENTS_H
#define SGDRD_EVENTS_H

#include <stdint.h>

#include "net.h"

typedef struct ev_batch {
    int64_t step;      /* global iteration of this learner, monotonic across jobs */
    int epoch;         /* epoch within the current fit, 0-based */
    int batch;         /* batch within the epoch */
    int n_batches;     /* batches per epoch */
    float loss;        /* raw training loss */
    float smooth_loss; /* debiased exponential average, beta 0.98 */
    int n_groups;
    float lrs[NET_MAX_GROUPS]; /* per layer group */
    double img_per_s;
    float momentum;    /* SGD's momentum or Adam's beta1 of this batch (1cycle moves it) */
} ev_batch;

typedef struct ev_sweep_point {
    int iter;
    double lr;         /* the last group's LR */
    float loss, smooth_loss;
    /* The sweep this point belongs to, as planned (the last group's range): a sink that
     * sees a sweep only through its points (the recipe's) records it from the first. */
    double start_lr, end_lr;
    int num_it;
} ev_sweep_point;

/* An LR sweep's end: its suggestions, each with a one-line reason. */
typedef struct ev_suggestion {
    double lr;
    const char *reason;
} ev_suggestion;

typedef struct ev_sweep_end {
    int n_points;
    int stopped_early; /* the smoothed loss diverged */
    ev_suggestion min_div10, steep, valley, slide;
} ev_sweep_end;

typedef struct ev_epoch {
    int epoch;         /* 0-based within the fit */
    int64_t step;      /* ev_batch.step of the epoch's last batch: where its validation
                        * point and end mark go on a chart over iterations */
    int cycle;         /* 0-based SGDR cycle */
    float train_loss, valid_loss;
    float accuracy;    /* single-label accuracy, or accuracy at 0.5 for multi-label */
    float f2;          /* multi-label F2 at threshold 0.2; negative when single-label */
    double seconds, img_per_s;
} ev_epoch;

typedef struct ev_hooks {
    void *ctx;
    int (*on_batch)(void *ctx, const ev_batch *e);
    int (*on_sweep_point)(void *ctx, const ev_sweep_point *e);
    int (*on_epoch)(void *ctx, const ev_epoch *e);
    int (*on_cycle_end)(void *ctx, int cycle, int epoch);
    /* A free-text decision with its reason (the recipe's choices, snapshot saved, ...). */
    void (*on_note)(void *ctx, const char *what, const char *why);
    /* Progress 0..1 of the whole job, and seconds left (negative when unknown). */
    void (*on_progress)(void *ctx, double fraction, double eta_s);
    /* After every completed LR sweep (also the ones the recipe runs), before the call
     * that ran it returns. */
    void (*on_sweep_end)(void *ctx, const ev_sweep_end *e);
} ev_hooks;

#endif
