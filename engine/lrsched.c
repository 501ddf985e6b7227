/* lrsched.c: the LR schedules of sched.h as pure functions of the iteration. */
#include "lrsched.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

void sched_plan_defaults(sched_plan *p, int64_t batches_per_epoch)
{
    p->kind = SCHED_SGDR;
    p->n_cycle = 1;
    p->cycle_len = 1;
    p->cycle_mult = 1;
    p->batches_per_epoch = batches_per_epoch;
    p->warmup = 1;
    p->div = 10.0;
    p->pct = 10.0;
    p->cycle_mom = 1;
    p->mom_hi = 0.95;
    p->mom_lo = 0.85;
}

int sched_plan_check(const sched_plan *p, char *err, unsigned errlen)
{
    const char *bad = NULL;
    if (p->kind != SCHED_SGDR && p->kind != SCHED_CONSTANT && p->kind != SCHED_1CYCLE)
        bad = "schedule: must be sgdr, constant or 1cycle";
    else if (p->n_cycle < 1 || p->n_cycle > 64)
        bad = "n_cycle: must be between 1 and 64";
    else if (p->batches_per_epoch < 1)
        bad = "batches_per_epoch: the training split has no full batch";
    else if (p->kind != SCHED_CONSTANT && (p->cycle_len < 1 || p->cycle_len > 1000))
        bad = "cycle_len: must be between 1 and 1000";
    else if (p->kind != SCHED_CONSTANT && (p->cycle_mult < 1 || p->cycle_mult > 16))
        bad = "cycle_mult: must be between 1 and 16";
    else if (p->kind == SCHED_1CYCLE && !(p->div > 1.0 && p->div < 1e6))
        bad = "div: must be above 1";
    else if (p->kind == SCHED_1CYCLE && !(p->pct >= 0.0 && p->pct < 100.0))
        bad = "pct: must be in [0, 100)";
    else if (p->kind == SCHED_1CYCLE && p->cycle_mom &&
             !(p->mom_hi >= 0.0 && p->mom_hi < 1.0 && p->mom_lo >= 0.0 && p->mom_lo < 1.0))
        bad = "moms: the 1cycle momentums must be in [0, 1)";
    if (!bad && sched_total_epochs(p) > 100000)
        bad = "n_cycle: the schedule would run more than 100000 epochs";
    if (bad) {
        if (err && errlen)
            snprintf(err, errlen, "%s", bad);
        return -EINVAL;
    }
    return 0;
}

int64_t sched_total_epochs(const sched_plan *p)
{
    if (p->kind == SCHED_CONSTANT)
        return p->n_cycle;
    int64_t total = 0, len = p->cycle_len;
    for (int i = 0; i < p->n_cycle; i++) {
        total += len;
        if (total > INT64_MAX / 64 / (p->cycle_mult > 0 ? p->cycle_mult : 1))
            return INT64_MAX / 64; /* absurd plans are refused by sched_plan_check */
        len *= p->cycle_mult;
    }
    return total;
}

int64_t sched_total_iters(const sched_plan *p)
{
    return sched_total_epochs(p) * p->batches_per_epoch;
}

int sched_cycle_of_epoch(const sched_plan *p, int64_t epoch, int *is_last)
{
    if (p->kind == SCHED_CONSTANT) {
        if (is_last)
            *is_last = 1;
        return (int)epoch;
    }
    int64_t start = 0, len = p->cycle_len;
    int c = 0;
    while (epoch >= start + len && c < p->n_cycle - 1) {
        start += len;
        len *= p->cycle_mult;
        c++;
    }
    if (is_last)
        *is_last = (epoch == start + len - 1);
    return c;
}

double sched_cosine(int64_t t, int64_t T)
{
    return (cos(M_PI * (double)t / (double)T) + 1.0) / 2.0;
}

double sched_1cycle(int64_t t, int64_t T, double div, double pct)
{
    /* int() truncation of the same double expression as fast.ai's cycle_nb. */
    int64_t cnb = (int64_t)((double)T * (1.0 - pct / 100.0) / 2.0);
    double q;
    if (t > 2 * cnb) {
        /* Annihilation: lr0/div down towards lr0/div/100 by the cycle's end. */
        q = (double)(t - 2 * cnb) / (double)(T - 2 * cnb);
        return (1.0 + q * (1.0 - 100.0) / 100.0) / div;
    }
    if (cnb == 0)
        return 1.0 / div; /* a cycle too short for a triangle: only t = 0 lands here */
    if (t > cnb)
        q = 1.0 - (double)(t - cnb) / (double)cnb;
    else
        q = (double)t / (double)cnb;
    return (1.0 + q * (div - 1.0)) / div;
}

double sched_1cycle_mom(int64_t t, int64_t T, double pct, double hi, double lo)
{
    int64_t cnb = (int64_t)((double)T * (1.0 - pct / 100.0) / 2.0);
    if (t > 2 * cnb || cnb == 0)
        return hi; /* annihilation (and a cycle too short for a triangle) */
    double q;
    if (t > cnb)
        q = 1.0 - (double)(t - cnb) / (double)cnb;
    else
        q = (double)t / (double)cnb;
    return hi + q * (lo - hi);
}

double sched_exp_sweep(double start, double end, int64_t i, int64_t num_it)
{
    return start * pow(end / start, (double)i / (double)num_it);
}

/* Position of iteration t in its cycle, and that cycle's length (sgdr, 1cycle). */
static int64_t cycle_pos(const sched_plan *p, int64_t t, int64_t *len)
{
    int64_t T = p->batches_per_epoch * p->cycle_len, pos = t;
    for (int c = 0; c < p->n_cycle - 1 && pos >= T; c++) {
        pos -= T;
        T *= p->cycle_mult;
    }
    if (pos >= T)
        pos = T - 1; /* past the end: hold the last iteration's value */
    *len = T;
    return pos;
}

double sched_factor(const sched_plan *p, int64_t t)
{
    if (p->kind == SCHED_CONSTANT)
        return 1.0;
    int64_t T0 = p->batches_per_epoch * p->cycle_len;
    if (p->kind == SCHED_SGDR && p->warmup && (double)t < (double)T0 / 20.0)
        return 1.0 / 100.0;
    int64_t T;
    int64_t pos = cycle_pos(p, t, &T);
    if (p->kind == SCHED_SGDR)
        return sched_cosine(pos, T);
    return sched_1cycle(pos, T, p->div, p->pct);
}

int sched_momentum(const sched_plan *p, int64_t t, double *mom)
{
    if (p->kind != SCHED_1CYCLE || !p->cycle_mom)
        return 0;
    int64_t T;
    int64_t pos = cycle_pos(p, t, &T);
    *mom = sched_1cycle_mom(pos, T, p->pct, p->mom_hi, p->mom_lo);
    return 1;
}
