/* job_params.h: one model of a job's parameters, shared by the API and the daemon.
 *
 * A job's body is parsed and checked once into a typed job_params (unknown keys, wrong
 * types, out-of-range or unknown values are errors naming the field, never a fallback),
 * stored as its canonical JSON (every default filled in, so the job's row shows what ran)
 * and read back with the same parser when the daemon runs, resumes or restarts it.
 *
 * Bodies and their defaults:
 *   lr_find      {"start_lr":1e-5, "end_lr":10, "num_it":0 (0: the engine picks)}
 *   fit          {"lrs": x | [x, one per layer group] (required), "n_cycle" (required),
 *                 "cycle_len":1, "cycle_mult":1, "wd":0,
 *                 "schedule":"sgdr"|"constant"|"1cycle" ("sgdr"), "snapshots":false,
 *                 "early_stop":{"patience":n} (absent: none), "stop_at_worse_cycle":false,
 *                 "time_limit_minutes":0 (0: none)}
 *   freeze       {"to": n} (required)
 *   unfreeze     {}
 *   precompute   {"on": bool} (required)
 *   resize       {"sz": n} (required)
 *   tta          {"n_aug":4}
 *   recipe       {"max_epochs":7, "close_to_imagenet":false, "n_aug":4, "budget_minutes":0,
 *                 "schedule":"sgdr"|"1cycle" ("sgdr")}
 *   predict_test {"tta":false}
 * lr_find, fit, tta, recipe and predict_test also take "workers":1, the processes that run
 * the job data-parallel (1: in the daemon; more: ranks of an mpirun world, capped by the
 * daemon's --max-workers); the canonical JSON names it only when it is above 1. A job
 * that leaves it out takes its run's default (the run's "workers", the same field).
 */
#ifndef SGDRD_API_JOB_PARAMS_H
#define SGDRD_API_JOB_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "job_kind.h"
#include "spec.h"

typedef struct job_lr_find {
    double start_lr, end_lr;
    int64_t num_it;            /* 0: the engine's default */
} job_lr_find;

typedef struct job_fit {
    spec_numbers lrs;          /* one for every group, or one per layer group */
    int64_t n_cycle, cycle_len, cycle_mult;
    double wd;
    int schedule;              /* the engine's sched_kind (sgdr, constant, 1cycle) */
    int snapshots, stop_at_worse_cycle;
    int64_t patience;          /* early_stop.patience; 0: no early stop */
    double time_limit_minutes; /* 0: none */
} job_fit;

typedef struct job_recipe {
    int64_t max_epochs, n_aug;
    int close_to_imagenet;
    int one_cycle;             /* "schedule": 0 sgdr, 1 1cycle */
    double budget_minutes;     /* 0: none */
} job_recipe;

/* The most ranks a job may ask for; the daemon's --max-workers caps it further. */
#define JOB_MAX_WORKERS 1024

/* The "workers" field of a body parsed into member (int64_t) of struct st, with has (an
 * int) set when the body names it: a job's, and a run's default for its jobs. */
#define JOB_WORKERS_FIELD(st, member, has)                                                   \
    {.name = "workers", .type = SPEC_INT, .min = 1, .max = JOB_MAX_WORKERS,                 \
     .offset = offsetof(st, member), .present = SPEC_PRESENT(st, has)}

/* Only the member of kind means anything. */
typedef struct job_params {
    job_kind kind;
    job_lr_find lr_find;
    job_fit fit;
    int64_t freeze_to;
    int precompute_on;
    int64_t resize_sz;
    int64_t tta_n_aug;
    job_recipe recipe;
    int predict_tta;
    int64_t workers;           /* data-parallel ranks; 1: in the daemon */
    int workers_set;           /* the body named workers */
} job_params;

/* Fills out with kind's defaults (required values left 0). */
void job_params_defaults(job_kind kind, job_params *out);

/* Parses body (a JSON object; NULL is {}) as kind's parameters into out, defaults first.
 * Returns 0, or -EINVAL with the field's dotted name in field (empty when the body itself
 * is wrong) and a one-line reason in detail. */
int job_params_parse(job_kind kind, json_t *body, job_params *out, char *field,
                     size_t fieldlen, char *detail, size_t detaillen);

/* The run's default for a job that did not name its workers (run_workers: the run's
 * config "workers"; below 1: none), for kinds that take workers. */
void job_params_run_workers(job_params *p, int64_t run_workers);

/* The canonical JSON of p: every parameter of its kind, defaults included, which
 * job_params_parse reads back to the same p. A new object, NULL when out of memory. */
json_t *job_params_json(const job_params *p);

struct fit_opts;
/* The engine's fit options of a fit's parameters (resume off): the one mapping the daemon
 * and the worker ranks share. */
void job_fit_opts(const job_fit *p, struct fit_opts *o);

#endif
