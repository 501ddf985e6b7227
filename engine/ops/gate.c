/* gate.c: squeeze-and-excitation's channel gate (Hu et al., "Squeeze-and-Excitation
 * Networks"): each channel of a sample scaled by the sigmoid of its own logit. */
#include "ops.h"

#include <math.h>

#define GATE_PAR_MIN 65536

static float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

void gate_forward(float *out, const float *x, const float *g, int n, int hw, int c)
{
    const size_t work = (size_t)n * hw * c;
#pragma omp parallel for schedule(static) if (work >= GATE_PAR_MIN)
    for (int i = 0; i < n; i++) {
        float s[c];
        for (int j = 0; j < c; j++)
            s[j] = sigmoid(g[(size_t)i * c + j]);
        for (int p = 0; p < hw; p++) {
            size_t o = ((size_t)i * hw + p) * c;
            for (int j = 0; j < c; j++)
                out[o + j] = x[o + j] * s[j];
        }
    }
}

void gate_backward(float *dx, float *dg, const float *dout, const float *x, const float *g,
                   int n, int hw, int c)
{
    const size_t work = (size_t)n * hw * c;
#pragma omp parallel for schedule(static) if (work >= GATE_PAR_MIN)
    for (int i = 0; i < n; i++) {
        float s[c], acc[c];
        for (int j = 0; j < c; j++) {
            s[j] = sigmoid(g[(size_t)i * c + j]);
            acc[j] = 0.0f;
        }
        for (int p = 0; p < hw; p++) {
            size_t o = ((size_t)i * hw + p) * c;
            for (int j = 0; j < c; j++) {
                acc[j] += dout[o + j] * x[o + j];
                if (dx)
                    dx[o + j] += dout[o + j] * s[j];
            }
        }
        for (int j = 0; dg && j < c; j++)
            dg[(size_t)i * c + j] += acc[j] * s[j] * (1.0f - s[j]);
    }
}
