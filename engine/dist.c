/* dist.c: the world-of-one defaults and the small helpers over a dist's sums. */
#include "dist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Ranks dist_batch_layout handles (its exchange buffer lives on the stack). */
#define DIST_MAX_RANKS 1024

int dist_size(const dist *d) { return d && d->size > 1 ? d->size : 1; }

int dist_rank(const dist *d) { return d && d->size > 1 ? d->rank : 0; }

int dist_active(const dist *d) { return dist_size(d) > 1; }

int dist_sum_f64(dist *d, double *v, size_t n)
{
    if (!dist_active(d) || n == 0)
        return 0;
    return d->ops->sum_f64(d->ctx, v, n);
}

/* Doubles one dist_sum_f32 or dist_sum_i32 round sends. */
#define DIST_CHUNK ((size_t)1 << 16)

/* Sums n values of v (f32 when i32 is NULL, else i32) through a double buffer. */
static int sum_via_f64(dist *d, float *f32, int32_t *i32, size_t n)
{
    if (!dist_active(d) || n == 0)
        return 0;
    double *buf = malloc(DIST_CHUNK * sizeof(double));
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    for (size_t at = 0; at < n && !rc; at += DIST_CHUNK) {
        size_t k = n - at < DIST_CHUNK ? n - at : DIST_CHUNK;
        for (size_t i = 0; i < k; i++)
            buf[i] = f32 ? (double)f32[at + i] : (double)i32[at + i];
        rc = d->ops->sum_f64(d->ctx, buf, k);
        for (size_t i = 0; i < k && !rc; i++) {
            if (f32)
                f32[at + i] = (float)buf[i];
            else
                i32[at + i] = (int32_t)buf[i];
        }
    }
    free(buf);
    return rc;
}

int dist_sum_f32(dist *d, float *v, size_t n) { return sum_via_f64(d, v, NULL, n); }

int dist_sum_i32(dist *d, int32_t *v, size_t n) { return sum_via_f64(d, NULL, v, n); }

int dist_batch_layout(dist *d, int n, int64_t *total, int64_t *before)
{
    *total = n;
    *before = 0;
    if (!dist_active(d))
        return 0;
    if (d->size > DIST_MAX_RANKS)
        return -EINVAL;
    /* Each rank writes its count in its own slot: the sum is every rank's count. */
    double counts[DIST_MAX_RANKS];
    memset(counts, 0, sizeof(double) * (size_t)d->size);
    counts[d->rank] = n;
    int rc = d->ops->sum_f64(d->ctx, counts, (size_t)d->size);
    if (rc)
        return rc;
    int64_t t = 0;
    for (int r = 0; r < d->size; r++) {
        if (r == d->rank)
            *before = t;
        t += (int64_t)counts[r];
    }
    *total = t;
    return 0;
}

void dist_shard(int64_t start, int64_t end, int rank, int size, int64_t *lo, int64_t *hi)
{
    int64_t len = end - start;
    if (size < 1) {
        rank = 0;
        size = 1;
    }
    *lo = start + len * rank / size;
    *hi = start + len * (rank + 1) / size;
}
