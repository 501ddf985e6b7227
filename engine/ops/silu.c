/* silu.c: SiLU (swish), x * sigmoid(x), forward and backward.
 *
 * The exponential is written here rather than called: glibc's expf has vector versions
 * (libmvec) that GCC uses only when told that math calls need not set errno nor see
 * infinities or NaNs, which this project never tells it (its NaN checks catch
 * divergence), and one scalar call per element would cost more than the convolutions
 * around it. This one is Cephes' expf (range reduction by ln 2 in two parts, a degree-6
 * polynomial, the power of two put into the exponent bits), a loop the compiler
 * vectorises; it is within a few ulp of expf over the range it clamps to, where sigmoid
 * is saturated anyway. */
#include "ops.h"

#include <stdint.h>

#define SILU_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#define SILU_PAR_MIN 65536

/* e^x for x clamped to [-87, 88], whose results are normal floats. */
static inline float silu_exp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* Rounded to nearest by adding and taking away 1.5 * 2^23 (exact for |k| < 2^22):
     * floorf is a libm call in a build that keeps floating-point traps, and a call stops
     * the loop from being vectorised. */
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    union {
        uint32_t u;
        float f;
    } scale = {.u = (uint32_t)((int32_t)k + 127) << 23};
    return y * scale.f;
}

static inline float silu_sigmoid(float x) { return 1.0f / (1.0f + silu_exp(-x)); }

SILU_KERNEL void silu_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= SILU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] * silu_sigmoid(in[i]);
}

SILU_KERNEL void silu_backward(float *din, const float *dout, const float *in, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= SILU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float s = silu_sigmoid(in[i]);
        din[i] += dout[i] * (s * (1.0f + in[i] * (1.0f - s)));
    }
}
