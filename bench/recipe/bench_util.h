/* bench_util.h: what the recipe benchmarks share: opening the IDX data set, the monotonic
 * clock and the note hook that prints the learner's decisions to stderr. Header-only:
 * each benchmark is one file. */
#ifndef SGDRD_BENCH_UTIL_H
#define SGDRD_BENCH_UTIL_H

#include <stdio.h>
#include <time.h>

#include "data/data.h"

static inline double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void bench_on_note(void *ctx, const char *what, const char *why)
{
    (void)ctx;
    fprintf(stderr, "  [%s] %s\n", what, why);
}

/* The IDX data set at dir with its own train/test split; NULL (and a message) if absent. */
static inline dataset *bench_open_idx(const char *dir)
{
    ds_options o = {.format = DS_IDX, .path = dir, .valid_pct = -1, .seed = 1};
    dataset *ds;
    char err[256];
    if (dataset_open(&ds, &o, err, sizeof err) != 0) {
        fprintf(stderr, "dataset %s: %s\n", dir, err);
        return NULL;
    }
    return ds;
}

#endif
