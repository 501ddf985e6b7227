/* loss.c: softmax cross-entropy and sigmoid binary cross-entropy, mean over the batch. */
#include "ops.h"

#include <assert.h>
#include <math.h>

float softmax_xent_forward(float *probs, const float *logits, const int32_t *labels, int n,
                           int c, float eps)
{
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * c;
        float *p = probs + (size_t)i * c;
        assert(labels[i] >= 0 && labels[i] < c);
        float mx = x[0];
        for (int j = 1; j < c; j++)
            if (x[j] > mx || isnan(x[j]))
                mx = x[j];
        double sum = 0.0;
        for (int j = 0; j < c; j++)
            sum += exp((double)x[j] - mx);
        double lse = log(sum), all = 0.0;
        for (int j = 0; j < c; j++) {
            p[j] = (float)exp((double)x[j] - mx - lse);
            all += lse - ((double)x[j] - mx);
        }
        total += (1.0 - eps) * (lse - ((double)x[labels[i]] - mx)) + eps * all / c;
    }
    return (float)(total / n);
}

void softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels, int n,
                           int c, float eps)
{
    const float inv = 1.0f / (float)n, off = eps / (float)c, on = 1.0f - eps + off;
    for (int i = 0; i < n; i++) {
        float *d = dlogits + (size_t)i * c;
        const float *p = probs + (size_t)i * c;
        for (int j = 0; j < c; j++)
            d[j] += (p[j] - (j == labels[i] ? on : off)) * inv;
    }
}

float bce_logits_forward(float *probs, const float *logits, const float *targets, int n,
                         int c)
{
    const size_t total = (size_t)n * c;
    double sum = 0.0;
    for (size_t i = 0; i < total; i++) {
        double x = logits[i], t = targets[i];
        /* max(x,0) - x*t + log(1 + exp(-|x|)): never overflows. */
        sum += (x > 0 ? x : 0) - x * t + log1p(exp(-fabs(x)));
        double e = exp(-fabs(x));
        probs[i] = (float)(x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e));
    }
    return (float)(sum / (double)total);
}

void bce_logits_backward(float *dlogits, const float *probs, const float *targets, int n,
                         int c)
{
    const size_t total = (size_t)n * c;
    const float inv = 1.0f / (float)total;
    for (size_t i = 0; i < total; i++)
        dlogits[i] += (probs[i] - targets[i]) * inv;
}
