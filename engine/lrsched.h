/* lrsched.h: pure learning-rate schedules as functions of the iteration: SGDR (cosine
 * annealing with warm restarts and fast.ai 0.7's warm-up), constant, 1cycle (fast.ai 0.7's
 * CircularLR_beta) and the exponential sweep of the LR finder. No state: the LR of
 * iteration t depends on t and the plan only, which is what makes resuming exact.
 *
 * Semantics follow fast.ai 0.7 (sgdr.py CosAnneal, CircularLR_beta; learner.py fit_gen):
 * the LR of batch t (0-based, counted from the start of the fit) is calc_lr evaluated
 * with iteration = t. Deviations, each to keep the schedule a pure function:
 *  - the warm-up covers only the first cycle (fast.ai compares the global iteration with
 *    nb/20 where nb has already been multiplied by cycle_mult, so with cycle_mult >= 20 it
 *    would re-enter the warm-up in the second cycle);
 *  - a first cycle of a single batch restarts normally (fast.ai's warm-up branch skips
 *    the cycle-end check, so its cycle counter would never wrap);
 *  - 1cycle cycles grow with cycle_mult like SGDR's (fast.ai's CircularLR_beta keeps every
 *    cycle at cycle_len epochs while fit_gen counts sum_geom epochs); identical when
 *    cycle_mult = 1;
 *  - 1cycle's momentum (fast.ai's use_clr_beta with momentums, CircularLR_beta.calc_mom)
 *    is taken at the same position of the cycle as the LR. fast.ai calls calc_mom after
 *    calc_lr has advanced cycle_iter, so its momentum runs one batch ahead of its LR (at
 *    the LR's peak its momentum is already rising again); torch's OneCycleLR computes
 *    both from the same step, and so do we: the momentum is exactly linear in the LR.
 *    Momentum cycling is on by default for 1cycle (torch's cycle_momentum=True);
 *    fast.ai 0.7 cycles it only when use_clr_beta names the two momentums.
 * (Named lrsched.h, not sched.h: engine/ is on the include path, and a sched.h there
 * would shadow the system <sched.h> that cblas.h pulls in.)
 */
#ifndef SGDRD_LRSCHED_H
#define SGDRD_LRSCHED_H

#include <stdint.h>

typedef enum sched_kind { SCHED_SGDR, SCHED_CONSTANT, SCHED_1CYCLE } sched_kind;

/* A whole fit's schedule. */
typedef struct sched_plan {
    sched_kind kind;
    int n_cycle;              /* cycles (constant: epochs) */
    int cycle_len;            /* epochs of the first cycle (sgdr, 1cycle) */
    int cycle_mult;           /* growth of each cycle (sgdr, 1cycle) */
    int64_t batches_per_epoch;
    int warmup;               /* sgdr: the first 1/20 of cycle 0 at lr0/100 (fast.ai 0.7) */
    double div;               /* 1cycle: lr0/div at both ends of the triangle (default 10) */
    double pct;               /* 1cycle: percent of the cycle for annihilation (default 10) */
    int cycle_mom;            /* 1cycle: move the momentum against the LR (default on) */
    double mom_hi, mom_lo;    /* 1cycle: momentum at the cycle's ends and at the LR's peak
                               * (defaults 0.95, 0.85); SGD's momentum or Adam's beta1 */
} sched_plan;

/* Fills p with defaults (sgdr, one cycle of one epoch, cycle_mult 1, warm-up on, div 10,
 * pct 10, momentum cycling 0.95 -> 0.85 -> 0.95) for batches_per_epoch batches. */
void sched_plan_defaults(sched_plan *p, int64_t batches_per_epoch);

/* Checks a plan: 0, or -EINVAL with err naming the field at fault. */
int sched_plan_check(const sched_plan *p, char *err, unsigned errlen);

/* Epochs the fit runs: n_cycle for constant, else cycle_len * sum(cycle_mult^i). */
int64_t sched_total_epochs(const sched_plan *p);
int64_t sched_total_iters(const sched_plan *p);

/* Cycle of epoch e (0-based) and whether e is the cycle's last epoch. Constant: every
 * epoch is its own cycle. */
int sched_cycle_of_epoch(const sched_plan *p, int64_t epoch, int *is_last);

/* Multiplier of every group's base LR at iteration t (0 <= t < total iterations). */
double sched_factor(const sched_plan *p, int64_t t);

/* The momentum (SGD) or beta1 (Adam) of iteration t: returns 1 and fills *mom when the
 * plan schedules it (1cycle with cycle_mom), else returns 0, leaves *mom alone, and the
 * optimizer keeps its configured value. */
int sched_momentum(const sched_plan *p, int64_t t, double *mom);

/* Building blocks, exposed for tests. */
/* 1/2 (1 + cos(pi t / T)). */
double sched_cosine(int64_t t, int64_t T);
/* fast.ai 0.7 CircularLR_beta factor at position t of a cycle of T iterations. */
double sched_1cycle(int64_t t, int64_t T, double div, double pct);
/* fast.ai 0.7 CircularLR_beta momentum at position t of a cycle of T iterations: hi down
 * to lo while the LR rises, back up to hi while it falls, hi through the annihilation. */
double sched_1cycle_mom(int64_t t, int64_t T, double pct, double hi, double lo);
/* LR finder: start * (end/start)^(i/num_it). */
double sched_exp_sweep(double start, double end, int64_t i, int64_t num_it);

#endif
