/* batchnorm.c: batch normalisation over the last axis of an (M, C) view, training and
 * eval, forward and backward. */
#include "ops.h"

#include <math.h>

/* Channels per block: each block's statistics are summed by one thread in a fixed order
 * over M, so results never depend on the thread count. 16 floats = one cache line. */
#define BN_BLOCK 16
#define BN_PAR_MIN 32768

static int nblocks(int c)
{
    return (c + BN_BLOCK - 1) / BN_BLOCK;
}

void batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean,
                       float *running_var, const float *in, const float *gamma,
                       const float *beta, int m, int c, int training, float momentum,
                       float eps)
{
    const int nb = nblocks(c);
    const size_t work = (size_t)m * c;
    if (training) {
#pragma omp parallel for schedule(static) if (work >= BN_PAR_MIN)
        for (int b = 0; b < nb; b++) {
            int c0 = b * BN_BLOCK, cn = c - c0 < BN_BLOCK ? c - c0 : BN_BLOCK;
            double s1[BN_BLOCK] = {0}, s2[BN_BLOCK] = {0};
            for (int i = 0; i < m; i++) {
                const float *x = in + (size_t)i * c + c0;
                for (int j = 0; j < cn; j++) {
                    double v = x[j];
                    s1[j] += v;
                    s2[j] += v * v;
                }
            }
            for (int j = 0; j < cn; j++) {
                double mu = s1[j] / m;
                double var = s2[j] / m - mu * mu;
                if (var < 0)
                    var = 0;
                mean[c0 + j] = (float)mu;
                rstd[c0 + j] = (float)(1.0 / sqrt(var + eps));
                /* PyTorch refuses M == 1; keep the biased value (0) rather than divide. */
                double unbiased = m > 1 ? var * m / (m - 1) : var;
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
#pragma omp parallel for schedule(static) if (work >= BN_PAR_MIN)
    for (int i = 0; i < m; i++) {
        const float *x = in + (size_t)i * c;
        float *y = out + (size_t)i * c;
        for (int j = 0; j < c; j++)
            y[j] = (x[j] - mean[j]) * (rstd[j] * gamma[j]) + beta[j];
    }
}

void batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                        const float *in, const float *mean, const float *rstd,
                        const float *gamma, int m, int c, int training)
{
    const int nb = nblocks(c);
    const size_t work = (size_t)m * c;
    const int need_sums = dgamma || dbeta || (din && training);
    if (need_sums) {
#pragma omp parallel for schedule(static) if (work >= BN_PAR_MIN)
        for (int b = 0; b < nb; b++) {
            int c0 = b * BN_BLOCK, cn = c - c0 < BN_BLOCK ? c - c0 : BN_BLOCK;
            double sdy[BN_BLOCK] = {0}, sdyx[BN_BLOCK] = {0};
            float mu[BN_BLOCK], rs[BN_BLOCK];
            for (int j = 0; j < cn; j++) {
                mu[j] = mean[c0 + j];
                rs[j] = rstd[c0 + j];
            }
            for (int i = 0; i < m; i++) {
                const float *x = in + (size_t)i * c + c0;
                const float *dy = dout + (size_t)i * c + c0;
                for (int j = 0; j < cn; j++) {
                    double g = dy[j];
                    sdy[j] += g;
                    sdyx[j] += g * (double)((x[j] - mu[j]) * rs[j]);
                }
            }
            if (dbeta)
                for (int j = 0; j < cn; j++)
                    dbeta[c0 + j] += (float)sdy[j];
            if (dgamma)
                for (int j = 0; j < cn; j++)
                    dgamma[c0 + j] += (float)sdyx[j];
            if (!din || !training)
                continue;
            /* din = gamma*rstd * (dy - mean(dy) - xhat*mean(dy*xhat)), done per block
             * while the block's sums are at hand. */
            float k1[BN_BLOCK], k2[BN_BLOCK], sc[BN_BLOCK];
            for (int j = 0; j < cn; j++) {
                sc[j] = gamma[c0 + j] * rs[j];
                k1[j] = (float)(sdy[j] / m);
                k2[j] = (float)(sdyx[j] / m);
            }
            for (int i = 0; i < m; i++) {
                const float *x = in + (size_t)i * c + c0;
                const float *dy = dout + (size_t)i * c + c0;
                float *dx = din + (size_t)i * c + c0;
                for (int j = 0; j < cn; j++) {
                    float xh = (x[j] - mu[j]) * rs[j];
                    dx[j] += sc[j] * (dy[j] - k1[j] - xh * k2[j]);
                }
            }
        }
    }
    if (din && !training) {
#pragma omp parallel for schedule(static) if (work >= BN_PAR_MIN)
        for (int i = 0; i < m; i++) {
            const float *dy = dout + (size_t)i * c;
            float *dx = din + (size_t)i * c;
            for (int j = 0; j < c; j++)
                dx[j] += dy[j] * (gamma[j] * rstd[j]);
        }
    }
}
