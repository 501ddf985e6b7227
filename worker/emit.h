/* emit.h: the worker's events for the daemon: one JSON object per line on rank 0's
 * standard output (mpirun forwards it from whichever host rank 0 runs on), flushed at once.
 * Other ranks emit nothing. Every line has "ev": batch, sweep_point, sweep_end, epoch,
 * cycle_end, note, progress, world, done or error. */
#ifndef SGDRD_WORKER_EMIT_H
#define SGDRD_WORKER_EMIT_H

#include <jansson.h>
#include <stdio.h>

#include "dist.h"
#include "events.h"
#include "net.h"

typedef struct emitter {
    FILE *out;       /* rank 0: stdout; NULL on other ranks */
    dist *d;         /* the world (borrowed) */
    const net *n;    /* the rank's net (borrowed), once its learner is built; else NULL */
    double t_world;  /* when the last world event went out */
} emitter;

/* Writes o (taken) as one line with "ev": ev added, on rank 0. */
void emit(emitter *e, const char *ev, json_t *o);
/* Hooks that emit every engine event; on_epoch also sends a world event (every rank's
 * img/s and gradient-sum time, gathered: all ranks call it at the same point). */
ev_hooks emit_hooks(emitter *e);
/* The world event: ranks with their host, pid, img/s, gradient-sum time per step and the
 * precision their net trains in (with its bf16 kernels when bf16), and the sums' totals.
 * img_s is this rank's (a collective). */
void emit_world(emitter *e, double img_s);

#endif
