/* elementwise.c: ReLU, residual add and inverted dropout, forward and backward. */
#include "ops.h"

#include "rng.h"

#define EW_PAR_MIN 65536

void relu_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void relu_backward(float *din, const float *dout, const float *out, size_t n)
{
    if (din == dout) {
        /* One pointer, so the compiler's overlap check does not send it to scalar code. */
        float *d = din;
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
        for (size_t i = 0; i < n; i++)
            d[i] = out[i] > 0.0f ? d[i] : 0.0f;
        return;
    }
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        din[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

void add_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void add_backward(float *da, float *db, const float *dout, size_t n)
{
    if (da) {
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
        for (size_t i = 0; i < n; i++)
            da[i] += dout[i];
    }
    if (db) {
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
        for (size_t i = 0; i < n; i++)
            db[i] += dout[i];
    }
}

void add_backward_assign(float *d, const float *dout, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        d[i] = 0.0f + dout[i];
}

void dropout_forward(float *out, float *mask, const float *in, size_t n, float p,
                     uint64_t *rng)
{
    if (p <= 0.0f) {
        for (size_t i = 0; i < n; i++)
            mask[i] = 1.0f;
    } else {
        /* Drawn serially: the mask depends on the seed only, never on the thread count. */
        float keep = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
        for (size_t i = 0; i < n; i++)
            mask[i] = rng_uniform(rng) < p ? 0.0f : keep;
    }
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] * mask[i];
}

void dropout_backward(float *din, const float *dout, const float *mask, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        din[i] += dout[i] * mask[i];
}
