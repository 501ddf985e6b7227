/* batchnorm.c: batch normalisation over the last axis of an (M, C) view, training and
 * eval, forward and backward.
 *
 * Per-channel sums run over blocks of whole rows (contiguous memory, every cache line read
 * once), each block summing every channel in double; the blocks' sums are then added in
 * block order. The number of blocks depends on M and C only, so results are the same for
 * any thread count. The elementwise passes run over rows in parallel.
 *
 * The row loops get an AVX2 build picked at load time where the CPU has it (the portable
 * build stays SSE2): the sums convert to double, so they are bound by arithmetic rather
 * than memory on SSE2. AVX2 enables no FMA, so both builds give the same bits. The sums
 * also get an AVX-512 build, whose FMAs change nothing there: each product they would
 * fuse is of two floats widened to double, exact before the addition. */
#include "ops.h"

#include <math.h>
#include <string.h>

#define BN_MAX_BLOCKS 16
#define BN_MIN_ROWS 256
/* Doubles of per-block partial sums kept on the stack: blocks * C * 2 at most. */
#define BN_PARTIAL_DOUBLES 8192
/* Channels whose coefficients are prepared at once for the elementwise passes. */
#define BN_CHUNK_C 512
#define BN_PAR_MIN 32768
/* Rows per call of the row loops below. */
#define BN_ROWS 64
#define BN_KERNEL __attribute__((target_clones("avx2", "default")))
#define BN_SUM_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))

static int row_blocks(int m, int c)
{
    int b = m / BN_MIN_ROWS;
    if (b > BN_MAX_BLOCKS)
        b = BN_MAX_BLOCKS;
    if ((size_t)b * c * 2 > BN_PARTIAL_DOUBLES)
        b = (int)(BN_PARTIAL_DOUBLES / (2 * (size_t)c));
    return b < 1 ? 1 : b;
}

/* Sums over rows [i0, i1) of channels [c0, c0 + cn) into s1, s2 (zeroed here):
 * s1 = sum a, s2 = sum a*a when b is NULL, else s1 = sum b, s2 = sum b*(a - mu)*rs. */
BN_SUM_KERNEL static void channel_sums(double *s1, double *s2, const float *a, const float *b,
                         const float *mu, const float *rs, int i0, int i1, int c0, int cn,
                         int c)
{
    memset(s1, 0, (size_t)cn * sizeof(double));
    memset(s2, 0, (size_t)cn * sizeof(double));
    for (int i = i0; i < i1; i++) {
        const float *x = a + (size_t)i * c + c0;
        if (!b) {
            for (int j = 0; j < cn; j++) {
                double v = x[j];
                s1[j] += v;
                s2[j] += v * v;
            }
        } else {
            const float *dy = b + (size_t)i * c + c0;
            for (int j = 0; j < cn; j++) {
                double g = dy[j];
                s1[j] += g;
                s2[j] += g * (double)((x[j] - mu[j]) * rs[j]);
            }
        }
    }
}

/* Column sums of (M, C) data (see channel_sums) into t1, t2 (C doubles each), channels
 * processed BN_CHUNK_C at a time when C is large. */
static void column_sums(double *t1, double *t2, const float *a, const float *b,
                        const float *mu, const float *rs, int m, int c)
{
    const int nb = row_blocks(m, c);
    if (nb == 1) {
        /* Few rows (or very many channels): split the channels instead. */
        const int cb = 64;
#pragma omp parallel for schedule(static) if ((size_t)m * c >= BN_PAR_MIN)
        for (int c0 = 0; c0 < c; c0 += cb) {
            int cn = c - c0 < cb ? c - c0 : cb;
            channel_sums(t1 + c0, t2 + c0, a, b, mu ? mu + c0 : NULL, rs ? rs + c0 : NULL,
                         0, m, c0, cn, c);
        }
        return;
    }
    double part[BN_PARTIAL_DOUBLES];
#pragma omp parallel for schedule(static) if ((size_t)m * c >= BN_PAR_MIN)
    for (int k = 0; k < nb; k++) {
        int i0 = (int)((long long)m * k / nb), i1 = (int)((long long)m * (k + 1) / nb);
        channel_sums(part + (size_t)k * 2 * c, part + (size_t)k * 2 * c + c, a, b, mu, rs,
                     i0, i1, 0, c, c);
    }
    for (int j = 0; j < c; j++) {
        double x1 = 0.0, x2 = 0.0;
        for (int k = 0; k < nb; k++) {
            x1 += part[(size_t)k * 2 * c + j];
            x2 += part[(size_t)k * 2 * c + c + j];
        }
        t1[j] = x1;
        t2[j] = x2;
    }
}

/* Adds the other ranks' sums of a channel chunk to s1, s2 (cn each) and returns the rows
 * of all ranks; without sync, m. */
static double sync_sums(const bn_sync *sync, double *s1, double *s2, int cn, int m)
{
    if (!sync)
        return m;
    double buf[2 * BN_CHUNK_C + 1];
    memcpy(buf, s1, (size_t)cn * sizeof(double));
    memcpy(buf + cn, s2, (size_t)cn * sizeof(double));
    buf[2 * cn] = m;
    sync->sum(sync->ctx, buf, 2 * (size_t)cn + 1);
    memcpy(s1, buf, (size_t)cn * sizeof(double));
    memcpy(s2, buf + cn, (size_t)cn * sizeof(double));
    return buf[2 * cn];
}

void batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean,
                       float *running_var, const float *in, const float *gamma,
                       const float *beta, int m, int c, int training, float momentum,
                       float eps)
{
    batchnorm_forward_sync(out, mean, rstd, running_mean, running_var, in, gamma, beta, m, c,
                           training, momentum, eps, NULL);
}

void batchnorm_forward_sync(float *out, float *mean, float *rstd, float *running_mean,
                            float *running_var, const float *in, const float *gamma,
                            const float *beta, int m, int c, int training, float momentum,
                            float eps, const bn_sync *sync)
{
    batchnorm_stats_sync(mean, rstd, running_mean, running_var, in, m, c, training, momentum,
                         eps, sync);
    batchnorm_apply(out, in, mean, rstd, gamma, beta, NULL, 0, m, c);
}

void batchnorm_stats_sync(float *mean, float *rstd, float *running_mean, float *running_var,
                          const float *in, int m, int c, int training, float momentum,
                          float eps, const bn_sync *sync)
{
    const size_t work = (size_t)m * c;
    if (training) {
        for (int c0 = 0; c0 < c; c0 += BN_CHUNK_C) {
            int cn = c - c0 < BN_CHUNK_C ? c - c0 : BN_CHUNK_C;
            double s1[BN_CHUNK_C], s2[BN_CHUNK_C];
            /* The sums of a channel chunk: view the chunk's columns through the full row
             * stride by offsetting the base pointer. */
            if (cn == c) {
                column_sums(s1, s2, in, NULL, NULL, NULL, m, c);
            } else {
                for (int j = 0; j < cn; j++)
                    s1[j] = s2[j] = 0.0;
#pragma omp parallel for schedule(static) if (work >= BN_PAR_MIN)
                for (int j0 = 0; j0 < cn; j0 += 64) {
                    int jn = cn - j0 < 64 ? cn - j0 : 64;
                    channel_sums(s1 + j0, s2 + j0, in, NULL, NULL, NULL, 0, m, c0 + j0, jn,
                                 c);
                }
            }
            const double mg = sync_sums(sync, s1, s2, cn, m);
            for (int j = 0; j < cn; j++) {
                double mu = s1[j] / mg;
                double var = s2[j] / mg - mu * mu;
                if (var < 0)
                    var = 0;
                mean[c0 + j] = (float)mu;
                rstd[c0 + j] = (float)(1.0 / sqrt(var + eps));
                /* PyTorch refuses M == 1; keep the biased value (0) rather than divide. */
                double unbiased = mg > 1 ? var * mg / (mg - 1) : var;
                if (!running_mean || !running_var)
                    continue;
                running_mean[c0 + j] =
                    (float)((1.0 - momentum) * running_mean[c0 + j] + momentum * mu);
                running_var[c0 + j] =
                    (float)((1.0 - momentum) * running_var[c0 + j] + momentum * unbiased);
            }
        }
    } else {
        for (int j = 0; j < c; j++) {
            mean[j] = running_mean[j];
            rstd[j] = (float)(1.0 / sqrt((double)running_var[j] + eps));
        }
    }
}

/* Rows [i0, i1) of batchnorm_apply, on channels [0, cn) of rows of c floats (the pointers
 * start at the chunk's first channel). */
BN_KERNEL static void apply_rows(float *out, const float *in, const float *mu,
                                 const float *sc, const float *be, const float *residual,
                                 int relu, int i0, int i1, int c, int cn)
{
    for (int i = i0; i < i1; i++) {
        const float *x = in + (size_t)i * c;
        float *y = out + (size_t)i * c;
        if (!residual && !relu && y == x) {
            float *z = y; /* in place: one pointer keeps the loop vectorised */
            for (int j = 0; j < cn; j++)
                z[j] = (z[j] - mu[j]) * sc[j] + be[j];
        } else if (!residual && !relu && y != x) {
            for (int j = 0; j < cn; j++)
                y[j] = (x[j] - mu[j]) * sc[j] + be[j];
        } else if (!residual && y == x) {
            float *z = y;
            for (int j = 0; j < cn; j++) {
                float v = (z[j] - mu[j]) * sc[j] + be[j];
                z[j] = v > 0.0f ? v : 0.0f;
            }
        } else if (!residual) {
            for (int j = 0; j < cn; j++) {
                float v = (x[j] - mu[j]) * sc[j] + be[j];
                y[j] = v > 0.0f ? v : 0.0f;
            }
        } else if (y == x) {
            float *z = y;
            const float *r = residual + (size_t)i * c;
            for (int j = 0; j < cn; j++) {
                float v = (z[j] - mu[j]) * sc[j] + be[j];
                v = v + r[j];
                z[j] = !relu || v > 0.0f ? v : 0.0f;
            }
        } else {
            const float *r = residual + (size_t)i * c;
            for (int j = 0; j < cn; j++) {
                float v = (x[j] - mu[j]) * sc[j] + be[j];
                v = v + r[j];
                y[j] = !relu || v > 0.0f ? v : 0.0f;
            }
        }
    }
}

void batchnorm_apply(float *out, const float *in, const float *mean, const float *rstd,
                     const float *gamma, const float *beta, const float *residual, int relu,
                     int m, int c)
{
    const size_t work = (size_t)m * c;
    for (int c0 = 0; c0 < c; c0 += BN_CHUNK_C) {
        int cn = c - c0 < BN_CHUNK_C ? c - c0 : BN_CHUNK_C;
        /* (x - mean) first: folding the mean into the shift loses bits when the mean is
         * large against the spread. */
        float sc[BN_CHUNK_C];
        const float *mu = mean + c0, *be = beta + c0;
        for (int j = 0; j < cn; j++)
            sc[j] = rstd[c0 + j] * gamma[c0 + j];
        /* The residual add and the ReLU as add_forward and relu_forward compute them. */
#pragma omp parallel for schedule(static) if (work >= BN_PAR_MIN)
        for (int i0 = 0; i0 < m; i0 += BN_ROWS) {
            int i1 = m - i0 < BN_ROWS ? m : i0 + BN_ROWS;
            apply_rows(out + c0, in + c0, mu, sc, be, residual ? residual + c0 : NULL, relu,
                       i0, i1, c, cn);
        }
    }
}

/* Rows [i0, i1) of din += a*dy + b*(x - mu) + k (b, k NULL: din += a*dy), channels
 * [0, cn) of rows of c floats. With assign, din = 0 + (...): bit for bit what += gives on
 * a zeroed din, without reading it; din may then alias dout. */
BN_KERNEL static void din_rows(float *din, const float *dout, const float *in,
                               const float *mu, const float *a, const float *b,
                               const float *k, int assign, int i0, int i1, int c, int cn)
{
    for (int i = i0; i < i1; i++) {
        const float *x = in + (size_t)i * c, *dy = dout + (size_t)i * c;
        float *dx = din + (size_t)i * c;
        if (assign && dx == dy) {
            float *g = dx; /* in place: one pointer keeps the loop vectorised */
            if (b) {
                for (int j = 0; j < cn; j++)
                    g[j] = 0.0f + (a[j] * g[j] + b[j] * (x[j] - mu[j]) + k[j]);
            } else {
                for (int j = 0; j < cn; j++)
                    g[j] = 0.0f + a[j] * g[j];
            }
        } else if (assign && b) {
            for (int j = 0; j < cn; j++)
                dx[j] = 0.0f + (a[j] * dy[j] + b[j] * (x[j] - mu[j]) + k[j]);
        } else if (assign) {
            for (int j = 0; j < cn; j++)
                dx[j] = 0.0f + a[j] * dy[j];
        } else if (b) {
            for (int j = 0; j < cn; j++)
                dx[j] += a[j] * dy[j] + b[j] * (x[j] - mu[j]) + k[j];
        } else {
            for (int j = 0; j < cn; j++)
                dx[j] += a[j] * dy[j];
        }
    }
}

void batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                        const float *in, const float *mean, const float *rstd,
                        const float *gamma, int m, int c, int training)
{
    batchnorm_backward_sync(din, dgamma, dbeta, dout, in, mean, rstd, gamma, m, c, training, 0,
                            NULL);
}

void batchnorm_backward_sync(float *din, float *dgamma, float *dbeta, const float *dout,
                             const float *in, const float *mean, const float *rstd,
                             const float *gamma, int m, int c, int training, int assign,
                             const bn_sync *sync)
{
    const size_t work = (size_t)m * c;
    const int need_sums = dgamma || dbeta || (din && training);
    for (int c0 = 0; c0 < c; c0 += BN_CHUNK_C) {
        int cn = c - c0 < BN_CHUNK_C ? c - c0 : BN_CHUNK_C;
        double sdy[BN_CHUNK_C], sdyx[BN_CHUNK_C];
        if (need_sums) {
            if (cn == c) {
                column_sums(sdy, sdyx, in, dout, mean, rstd, m, c);
            } else {
#pragma omp parallel for schedule(static) if (work >= BN_PAR_MIN)
                for (int j0 = 0; j0 < cn; j0 += 64) {
                    int jn = cn - j0 < 64 ? cn - j0 : 64;
                    channel_sums(sdy + j0, sdyx + j0, in, dout, mean + c0 + j0,
                                 rstd + c0 + j0, 0, m, c0 + j0, jn, c);
                }
            }
            for (int j = 0; j < cn; j++) {
                if (dbeta)
                    dbeta[c0 + j] += (float)sdy[j];
                if (dgamma)
                    dgamma[c0 + j] += (float)sdyx[j];
            }
        }
        if (!din)
            continue;
        /* SyncBN: din's means run over the rows of every rank; dgamma and dbeta above kept
         * this rank's part. */
        const double mg = training ? sync_sums(sync, sdy, sdyx, cn, m) : m;
        /* Training: din = gamma*rstd * (dy - mean(dy) - xhat*mean(dy*xhat)), written as
         * din += a*dy + b*(x - mean) + k with per-channel a, b, k. Eval: din += a*dy. */
        float a[BN_CHUNK_C], b[BN_CHUNK_C], k[BN_CHUNK_C];
        for (int j = 0; j < cn; j++) {
            float sc = gamma[c0 + j] * rstd[c0 + j];
            if (training) {
                float k1 = (float)(sdy[j] / mg), k2 = (float)(sdyx[j] / mg);
                float r = rstd[c0 + j];
                a[j] = sc;
                b[j] = -sc * k2 * r;
                k[j] = -sc * k1;
            } else {
                a[j] = sc;
                b[j] = 0.0f;
                k[j] = 0.0f;
            }
        }
        const float *mu = mean + c0;
#pragma omp parallel for schedule(static) if (work >= BN_PAR_MIN)
        for (int i0 = 0; i0 < m; i0 += BN_ROWS) {
            int i1 = m - i0 < BN_ROWS ? m : i0 + BN_ROWS;
            din_rows(din + c0, dout + c0, in + c0, mu, a, training ? b : NULL,
                     training ? k : NULL, assign, i0, i1, c, cn);
        }
    }
}
