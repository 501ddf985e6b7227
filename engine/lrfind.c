/* lrfind.c: loss smoothing, the sweep's stop rule and its four LR suggestions. */
#include "lrfind.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lrfind_result_free(lrfind_result *r)
{
    if (!r)
        return;
    free(r->points);
    memset(r, 0, sizeof *r);
}

void smoother_reset(loss_smoother *s)
{
    s->avg = 0.0;
    s->n = 0;
}

double smoother_add(loss_smoother *s, double loss)
{
    s->n++;
    s->avg = s->avg * LRFIND_BETA + loss * (1.0 - LRFIND_BETA);
    return s->avg / (1.0 - pow(LRFIND_BETA, (double)s->n));
}

void lrfind_stop_reset(lrfind_stop *s)
{
    s->best = 1e9; /* fast.ai's initial best */
}

int lrfind_stop_check(lrfind_stop *s, int iter, double smooth_loss)
{
    if (!isfinite(smooth_loss) || smooth_loss > 4.0 * s->best)
        return 1;
    if (smooth_loss < s->best && iter > 10)
        s->best = smooth_loss;
    return 0;
}

int lrfind_default_iters(int64_t batches_per_epoch)
{
    if (batches_per_epoch < 20)
        return 20;
    if (batches_per_epoch > 200)
        return 200;
    return (int)batches_per_epoch;
}

static void no_suggestion(lr_suggestion *s, const char *why)
{
    s->lr = 0.0;
    snprintf(s->reason, sizeof s->reason, "%s", why);
}

/* The points every suggestion looks at: [*lo, *hi) without the first 10% and the last 5,
 * of which only those with a finite smoothed loss and a positive LR count. */
static void window(const lrfind_result *r, int *lo, int *hi)
{
    *lo = r->n_points / 10;
    *hi = r->n_points - 5;
}

static int counts(const ev_sweep_point *p)
{
    return isfinite(p->smooth_loss) && p->lr > 0.0;
}

/* np.gradient with unit spacing: one-sided at the ends, central inside. */
static void gradient(double *g, const double *y, int n)
{
    if (n == 1) {
        g[0] = 0.0;
        return;
    }
    g[0] = y[1] - y[0];
    g[n - 1] = y[n - 1] - y[n - 2];
    for (int i = 1; i < n - 1; i++)
        g[i] = (y[i + 1] - y[i - 1]) / 2.0;
}

static void no_suggestions(lrfind_result *r, const char *why)
{
    no_suggestion(&r->min_div10, why);
    no_suggestion(&r->steep, why);
    no_suggestion(&r->valley, why);
    no_suggestion(&r->slide, why);
}

/* min_div10: the LR at the lowest smoothed loss, divided by 10. */
static void suggest_min_div10(lr_suggestion *s, const double *lr, const double *y, int n)
{
    int imin = 0;
    for (int i = 1; i < n; i++)
        if (y[i] < y[imin])
            imin = i;
    s->lr = lr[imin] / 10.0;
    snprintf(s->reason, sizeof s->reason,
             "lowest smoothed loss %.4g at lr %.3g; a tenth of that lr", y[imin], lr[imin]);
}

/* steep: most negative d loss / d ln lr, at the left point of the pair. */
static void suggest_steep(lr_suggestion *s, const double *lr, const double *y, int n)
{
    int isteep = 0;
    double best = INFINITY;
    for (int i = 0; i + 1 < n; i++) {
        double d = (y[i + 1] - y[i]) / (log(lr[i + 1]) - log(lr[i]));
        if (d < best) {
            best = d;
            isteep = i;
        }
    }
    s->lr = lr[isteep];
    snprintf(s->reason, sizeof s->reason,
             "steepest descent of the smoothed loss (%.3g per unit of ln lr) at lr %.3g", best,
             lr[isteep]);
}

/* valley: the middle of the longest strictly decreasing run (first one on ties). */
static void suggest_valley(lr_suggestion *s, const double *lr, const double *y, int n)
{
    int run_a = 0, run_b = 0, a = 0;
    for (int i = 1; i < n; i++) {
        if (!(y[i] < y[i - 1]))
            a = i;
        if (i - a > run_b - run_a) {
            run_a = a;
            run_b = i;
        }
    }
    int ival = (run_a + run_b) / 2;
    s->lr = lr[ival];
    if (run_b > run_a)
        snprintf(s->reason, sizeof s->reason,
                 "middle of the longest decreasing run of the smoothed loss (%d points, lr "
                 "%.3g to %.3g)", run_b - run_a + 1, lr[run_a], lr[run_b]);
    else
        snprintf(s->reason, sizeof s->reason,
                 "the smoothed loss never decreases; the smallest lr of the window");
}

/* slide (fast.ai 2): slide an interval of LRFIND_SLIDE_DIFF points leftwards from the
 * right end until the loss gradients at its two ends agree within the threshold. g is
 * scratch of n doubles. */
static void suggest_slide(lr_suggestion *s, const double *lr, const double *y, double *g,
                          int n)
{
    gradient(g, y, n);
    int diff = n - 1 < LRFIND_SLIDE_DIFF ? n - 1 : LRFIND_SLIDE_DIFF;
    int ri = n - 1, li = ri - diff;
    double local = lr[li];
    while (li >= 0 && fabs(g[ri] - g[li]) > LRFIND_SLIDE_THRESH) {
        local = lr[li];
        ri--;
        li--;
    }
    s->lr = local;
    if (li >= 0)
        snprintf(s->reason, sizeof s->reason,
                 "interval slide: loss gradients %d points apart agree within %.3g from lr "
                 "%.3g", diff, LRFIND_SLIDE_THRESH, lr[li]);
    else
        snprintf(s->reason, sizeof s->reason,
                 "interval slide: loss gradients %d points apart never agree within %.3g; "
                 "the leftmost interval's lr", diff, LRFIND_SLIDE_THRESH);
}

void lrfind_suggest(lrfind_result *r)
{
    int lo, hi;
    window(r, &lo, &hi);
    double *lr = NULL, *y = NULL, *g = NULL;
    int n = 0;
    if (hi - lo >= 3) {
        lr = malloc(sizeof *lr * (size_t)(hi - lo));
        y = malloc(sizeof *y * (size_t)(hi - lo));
        g = malloc(sizeof *g * (size_t)(hi - lo));
        for (int i = lo; i < hi && lr && y && g; i++) {
            if (!counts(&r->points[i]))
                continue;
            lr[n] = r->points[i].lr;
            y[n] = r->points[i].smooth_loss;
            n++;
        }
    }
    if (hi - lo >= 3 && (!lr || !y || !g)) {
        no_suggestions(r, "out of memory");
    } else if (n < 3) {
        char why[160];
        snprintf(why, sizeof why,
                 "too few points (%d of %d after dropping the first 10%% and the last 5)",
                 n, r->n_points);
        no_suggestions(r, why);
    } else {
        suggest_min_div10(&r->min_div10, lr, y, n);
        suggest_steep(&r->steep, lr, y, n);
        suggest_valley(&r->valley, lr, y, n);
        suggest_slide(&r->slide, lr, y, g, n);
    }
    free(g);
    free(y);
    free(lr);
}

double lrfind_flat_start(const lrfind_result *r, double frac, double *at_loss)
{
    int lo, hi, n = 0;
    window(r, &lo, &hi);
    double first = NAN, lowest = INFINITY;
    for (int i = lo; i < hi; i++) {
        if (!counts(&r->points[i]))
            continue;
        double y = r->points[i].smooth_loss;
        if (n++ == 0)
            first = y;
        if (y < lowest)
            lowest = y;
    }
    if (n < 3)
        return 0.0;
    double within = lowest + frac * (first - lowest);
    for (int i = lo; i < hi; i++) {
        if (counts(&r->points[i]) && r->points[i].smooth_loss <= within) {
            if (at_loss)
                *at_loss = r->points[i].smooth_loss;
            return r->points[i].lr;
        }
    }
    return 0.0; /* not reached: the lowest point qualifies */
}
