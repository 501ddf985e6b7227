/* dist.h: the collective seam of data-parallel training. A world of `size` ranks runs the
 * same network on disjoint shards of every global batch; the engine reaches the other
 * ranks only through the sums of this interface, so it depends on no transport. The Open
 * MPI implementation lives in dist/dist_mpi.c (its own library: the engine and the daemon
 * never link MPI). A NULL dist, or one of size 1, is a world of one: every helper below is
 * then a no-op and the engine computes exactly what it computes without one.
 *
 * What is summed where (each rank holds b_r of the global batch B = sum b_r):
 *   - SyncBN: per-channel sums of a training BatchNorm (forward and backward) and the row
 *     count, so that statistics are those of the global batch (net.c, ops/batchnorm.c);
 *   - gradients: the loss gradient of each rank is scaled by b_r / B, and parameter
 *     gradients are summed in buckets started while backward goes on (net.c);
 *   - metrics: losses and counts of training steps, validation and predictions (learner).
 * Every rank must make the same calls in the same order (collective semantics). */
#ifndef SGDRD_DIST_H
#define SGDRD_DIST_H

#include <stddef.h>
#include <stdint.h>

/* A transport's sums. Each returns 0 or a negative errno code. */
typedef struct dist_ops {
    /* Sums v (n doubles) over the world, in place, and returns when done. */
    int (*sum_f64)(void *ctx, double *v, size_t n);
    /* Starts summing v (n floats) over the world in place; v must stay untouched until
     * wait_all. */
    int (*isum_f32)(void *ctx, float *v, size_t n);
    /* Lets started sums progress without waiting. */
    int (*progress)(void *ctx);
    /* Waits for every started sum. */
    int (*wait_all)(void *ctx);
} dist_ops;

/* Time and traffic of the gradient sums, for health and the benchmark. */
typedef struct dist_stats {
    uint64_t steps;        /* backwards whose gradients were summed */
    uint64_t bytes;        /* gradient bytes summed (each rank's buffer size) */
    uint64_t buckets;
    double sum_s;          /* seconds from the first bucket's start to the last one's end */
    double wait_s;         /* of which spent waiting after backward (not hidden by it) */
} dist_stats;

typedef struct dist {
    const dist_ops *ops;
    void *ctx;
    int rank, size;
    size_t bucket_floats;  /* gradient floats per bucket (0: DIST_BUCKET_FLOATS) */
    int overlap;           /* start buckets during backward (else all after it) */
    dist_stats stats;
} dist;

/* 1 MiB of floats: large enough that per-message latency is small, small enough that the
 * first buckets start early in backward. */
#define DIST_BUCKET_FLOATS ((size_t)1 << 18)

/* Ranks in the world of d (1 for NULL). */
int dist_size(const dist *d);
int dist_rank(const dist *d);
/* 1 when d spans more than one rank. */
int dist_active(const dist *d);

/* Sums v in place over the world (no-op in a world of one). */
int dist_sum_f64(dist *d, double *v, size_t n);

/* Sums v (n floats, or n int32) in place over the world through fp64, in chunks: exact
 * where each entry is nonzero on one rank at most, which is how sharded results indexed
 * by item (precomputed activations, predictions) are gathered. -ENOMEM. */
int dist_sum_f32(dist *d, float *v, size_t n);
int dist_sum_i32(dist *d, int32_t *v, size_t n);

/* The global batch and where this rank's shard starts in it: *total = sum of every rank's
 * n, *before = the sum over lower ranks. In a world of one: n and 0. */
int dist_batch_layout(dist *d, int n, int64_t *total, int64_t *before);

/* Shard r of size s of the items [start, end): [*lo, *hi). Balanced, in rank order, so
 * that the shards of all ranks concatenated are [start, end) in order. */
void dist_shard(int64_t start, int64_t end, int rank, int size, int64_t *lo, int64_t *hi);

#endif
