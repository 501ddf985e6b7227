/* lrfind.h: the LR finder's pure parts: the debiased exponential loss average (also the
 * fit's smoothed loss), the stop rule, the default sweep length, and the four suggestions
 * read off a finished sweep. The sweep itself (training steps, save/restore) is
 * learner_lr_find in learner.h.
 *
 * Semantics: fast.ai 0.7 model.py fit (avg_mom 0.98, debias by 1 - 0.98^n) and sgdr.py
 * LR_Finder (stop when the smoothed loss is NaN or above 4x the best seen after iteration
 * 10); the suggestions follow fast.ai 2's lr_find (minimum/10, steep, slide) over the
 * points without the first 10% and the last 5, except `valley`, which here is the middle
 * of the longest strictly decreasing contiguous run (fast.ai 2 uses the longest
 * decreasing subsequence and takes a point about half-way through it).
 */
#ifndef SGDRD_LRFIND_H
#define SGDRD_LRFIND_H

#include <stdint.h>

#include "events.h"

#define LRFIND_BETA 0.98
#define LRFIND_WARM_IT 3          /* steps a sweep's speed leaves out (steady_it) */
#define LRFIND_SLIDE_DIFF 15     /* fast.ai 2 slide: lr_diff */
#define LRFIND_SLIDE_THRESH 0.005 /* fast.ai 2 slide: thresh */

typedef struct lr_suggestion {
    double lr;          /* 0 when there were too few points to suggest anything */
    char reason[160];
} lr_suggestion;

typedef struct lrfind_result {
    int n_points;
    ev_sweep_point *points;    /* malloc'd; free with lrfind_result_free */
    lr_suggestion min_div10, steep, valley, slide;
    int stopped_early;         /* the smoothed loss diverged */
    /* The steps after the first LRFIND_WARM_IT, and the seconds they took: the speed a
     * fit trains at, without the first steps' one-off costs (buffers touched for the
     * first time, the loader filling its queue). 0 when the sweep had no such steps. */
    int steady_it;
    double steady_s;
} lrfind_result;

/* Frees the points and zeroes r; NULL is fine. */
void lrfind_result_free(lrfind_result *r);

/* Debiased exponential moving average with beta = LRFIND_BETA. */
typedef struct loss_smoother {
    double avg;
    int64_t n;
} loss_smoother;

void smoother_reset(loss_smoother *s);
/* Adds a raw loss; returns avg / (1 - beta^n). A non-finite loss makes every later value
 * non-finite, which the stop rule relies on. */
double smoother_add(loss_smoother *s, double loss);

/* The divergence stop rule. */
typedef struct lrfind_stop {
    double best;
} lrfind_stop;

void lrfind_stop_reset(lrfind_stop *s);
/* Called after iteration iter (0-based) with its smoothed loss: 1 when the sweep must stop
 * (non-finite, or more than 4x the best smoothed loss seen after iteration 10), else 0. */
int lrfind_stop_check(lrfind_stop *s, int iter, double smooth_loss);

/* Sweep length when the caller gives none: one epoch of batches, at least 20, at most
 * 200. */
int lrfind_default_iters(int64_t batches_per_epoch);

/* Fills the four suggestions of r from r->points[0..n_points) (smoothed losses). Points
 * with a non-finite smoothed loss are left out. With fewer than 3 usable points each
 * suggestion has lr 0 and a reason saying so. */
void lrfind_suggest(lrfind_result *r);

/* Where the smoothed loss's flat bottom starts: the lowest LR of the suggestions' window
 * whose smoothed loss has come within frac of the window's drop (its first smoothed loss
 * minus its lowest) of the lowest; *at_loss gets that loss (may be NULL). A sweep with
 * AdamW often bottoms out over a decade of LRs within a few hundredths of a loss, and
 * where along it the minimum falls is numerical noise (it moves with the sgemm kernel;
 * bench_recipe --opt adamw shows it, see bench/README.md); where the bottom starts is not.
 * 0 when the window has fewer than 3 finite points. */
double lrfind_flat_start(const lrfind_result *r, double frac, double *at_loss);

#endif
