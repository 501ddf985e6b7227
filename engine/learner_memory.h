/* learner_memory.h: what a learner will hold in memory, estimated before anything of it is
 * allocated, and the admission of a run or job against the memory there is: weights,
 * gradients, optimizer state, activations (the net's own memory plan), the loaders'
 * batch rings and image caches, the precompute cache and the prediction learner. */
#ifndef SGDRD_LEARNER_MEMORY_H
#define SGDRD_LEARNER_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "learner.h"
#include "models/models.h"
#include "optim.h"

/* What a run is, as far as memory goes. */
typedef struct lmem_run {
    model_spec model;     /* arch, c_in, n_classes, head as the run's learner builds it */
    int sz, bs;
    optim_kind opt;
    int pretrained;       /* a precompute cache may be built (it needs a frozen body) */
    int loader_threads;   /* per loader; 0 means the loader's default */
    int dist;             /* one rank of a data-parallel world (full gradient buffer) */
    int n_train, n_valid; /* images per split */
    int64_t image_bytes;  /* one decoded image of median size (w * h * channels) */
} lmem_run;

/* The run a learner_create(lc, a dataset described by in) would build. */
void lmem_run_of(lmem_run *r, const learner_config *lc, const ds_info *in);

/* Bytes of each part, and their sum. */
typedef struct lmem_parts {
    double weights, grads, optim, activations, loaders, precompute, predict, total;
} lmem_parts;

/* Estimates what a learner for r holds at its peak (training unfrozen, with its loaders,
 * cache and a prediction learner for the same run). Builds the model once to plan it.
 * 0; -EINVAL with err when sz does not fit the network; -ENOMEM. */
int lmem_estimate(const lmem_run *r, lmem_parts *out, char *err, size_t errlen);

/* Bytes a new run may take: limit when > 0 (--memory-limit), else MemAvailable from
 * /proc/meminfo (0 when it cannot be read). *source gets "--memory-limit" or
 * "MemAvailable". */
double lmem_available(double limit, const char **source);

/* Admits r when its estimate fits in avail bytes (avail <= 0: not known, admitted).
 * Else -ENOMEM with err saying what it needs, part by part, what is available (source
 * names where that figure comes from), and which bs or sz fits; *field gets "bs" (or "sz"
 * when no bs fits at this size). Other failures as lmem_estimate. */
int lmem_admit(const lmem_run *r, double avail, const char *source, const char **field,
               char *err, size_t errlen);

#endif
