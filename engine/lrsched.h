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
 *    cycle_mult = 1.
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
} sched_plan;

/* Fills p with defaults (sgdr, one cycle of one epoch, cycle_mult 1, warm-up on, div 10,
 * pct 10) for batches_per_epoch batches. */
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

/* Building blocks, exposed for tests. */
/* 1/2 (1 + cos(pi t / T)). */
double sched_cosine(int64_t t, int64_t T);
/* fast.ai 0.7 CircularLR_beta factor at position t of a cycle of T iterations. */
double sched_1cycle(int64_t t, int64_t T, double div, double pct);
/* LR finder: start * (end/start)^(i/num_it). */
double sched_exp_sweep(double start, double end, int64_t i, int64_t num_it);

#endif
