/* pool.c: max pooling (any window), global average and max pooling to 1x1, and fastai's
 * AdaptiveConcatPool2d, over NHWC activations. */
#include "ops.h"

#include <assert.h>
#include <math.h>

#define POOL_PAR_MIN 32768

void pool2d_shape_init(pool2d_shape *s, int n, int h, int w, int c, int k, int stride,
                       int pad)
{
    assert(n > 0 && h > 0 && w > 0 && c > 0 && k > 0 && stride > 0 && pad >= 0);
    /* With pad > k/2 a window could hold only padding (PyTorch refuses it too). */
    assert(2 * pad <= k);
    s->n = n;
    s->h = h;
    s->w = w;
    s->c = c;
    s->k = k;
    s->stride = stride;
    s->pad = pad;
    s->h_out = (h + 2 * pad - k) / stride + 1;
    s->w_out = (w + 2 * pad - k) / stride + 1;
    assert(s->h_out > 0 && s->w_out > 0);
}

/* dst (c floats) <- the larger of dst and src, elementwise: src replaces dst only when
 * strictly greater (the first maximum wins), or when it is NaN and dst is not (NaN wins,
 * as in PyTorch, so divergence stays visible); am, unless NULL, follows with src's index
 * base + j. Written without branches in the loop so that the compiler vectorises it. */
static inline void max_into(float *dst, int32_t *am, const float *src, size_t base, int c)
{
    if (!am) {
        for (int j = 0; j < c; j++) {
            float v = src[j], d = dst[j];
            dst[j] = (v > d) | ((v != v) & (d == d)) ? v : d;
        }
        return;
    }
    for (int j = 0; j < c; j++) {
        float v = src[j], d = dst[j];
        int take = (v > d) | ((v != v) & (d == d));
        dst[j] = take ? v : d;
        am[j] = take ? (int32_t)(base + j) : am[j];
    }
}

void maxpool2d_forward(float *out, int32_t *argmax, const float *in, const pool2d_shape *s)
{
    const int c = s->c, ho = s->h_out, wo = s->w_out;
    const int rows = s->n * ho;
    const size_t work = (size_t)rows * wo * c * s->k * s->k;
#pragma omp parallel for schedule(static) if (work >= POOL_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        int n = r / ho, oy = r % ho;
        int y0 = oy * s->stride - s->pad, y1 = y0 + s->k;
        if (y0 < 0)
            y0 = 0;
        if (y1 > s->h)
            y1 = s->h;
        for (int ox = 0; ox < wo; ox++) {
            int x0 = ox * s->stride - s->pad, x1 = x0 + s->k;
            if (x0 < 0)
                x0 = 0;
            if (x1 > s->w)
                x1 = s->w;
            size_t o = (((size_t)n * ho + oy) * wo + ox) * c;
            float *dst = out + o;
            int32_t *am = argmax ? argmax + o : NULL;
            /* The window's first element starts the maximum. */
            size_t first = (((size_t)n * s->h + y0) * s->w + x0) * c;
            for (int j = 0; j < c; j++)
                dst[j] = in[first + j];
            for (int j = 0; am && j < c; j++)
                am[j] = (int32_t)(first + j);
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) {
                    size_t base = (((size_t)n * s->h + y) * s->w + x) * c;
                    if (base != first)
                        max_into(dst, am, in + base, base, c);
                }
        }
    }
}

void maxpool2d_backward(float *din, const float *dout, const int32_t *argmax,
                        const pool2d_shape *s)
{
    /* Each image's argmax indices stay inside that image, so images are independent. */
    const size_t per_img = (size_t)s->h_out * s->w_out * s->c;
    const size_t work = per_img * s->n;
#pragma omp parallel for schedule(static) if (work >= POOL_PAR_MIN)
    for (int n = 0; n < s->n; n++)
        for (size_t i = n * per_img; i < (n + 1) * per_img; i++)
            din[argmax[i]] += dout[i];
}

void maxpool2d_backward_relu(float *din, const float *dout, const int32_t *argmax,
                             const float *out, const pool2d_shape *s)
{
    const size_t per_img = (size_t)s->h_out * s->w_out * s->c;
    const size_t work = per_img * s->n;
#pragma omp parallel for schedule(static) if (work >= POOL_PAR_MIN)
    for (int n = 0; n < s->n; n++)
        for (size_t i = n * per_img; i < (n + 1) * per_img; i++)
            if (out[i] > 0.0f)
                din[argmax[i]] += dout[i];
}

void avgpool_global_forward(float *out, const float *in, int n, int hw, int c)
{
    const size_t work = (size_t)n * hw * c;
#pragma omp parallel for schedule(static) if (work >= POOL_PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * c;
        for (int j = 0; j < c; j++)
            o[j] = 0.0f;
        for (int p = 0; p < hw; p++) {
            const float *x = in + ((size_t)i * hw + p) * c;
            for (int j = 0; j < c; j++)
                o[j] += x[j];
        }
        const float inv = 1.0f / (float)hw;
        for (int j = 0; j < c; j++)
            o[j] *= inv;
    }
}

void avgpool_global_backward(float *din, const float *dout, int n, int hw, int c)
{
    const size_t work = (size_t)n * hw * c;
    const float inv = 1.0f / (float)hw;
#pragma omp parallel for schedule(static) if (work >= POOL_PAR_MIN)
    for (int i = 0; i < n; i++) {
        const float *g = dout + (size_t)i * c;
        for (int p = 0; p < hw; p++) {
            float *d = din + ((size_t)i * hw + p) * c;
            for (int j = 0; j < c; j++)
                d[j] += g[j] * inv;
        }
    }
}

/* out (N, ostride) rows get the max over HW in their first C entries. */
static void global_max(float *out, int ostride, int32_t *argmax, int astride,
                       const float *in, int n, int hw, int c)
{
    const size_t work = (size_t)n * hw * c;
#pragma omp parallel for schedule(static) if (work >= POOL_PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * ostride;
        int32_t *am = argmax + (size_t)i * astride;
        const float *x0 = in + (size_t)i * hw * c;
        for (int j = 0; j < c; j++) {
            o[j] = x0[j];
            am[j] = 0;
        }
        for (int p = 1; p < hw; p++) {
            const float *x = x0 + (size_t)p * c;
            for (int j = 0; j < c; j++)
                if (x[j] > o[j] || (isnan(x[j]) && !isnan(o[j]))) {
                    o[j] = x[j];
                    am[j] = p;
                }
        }
    }
}

static void global_max_backward(float *din, const float *dout, int dstride,
                                const int32_t *argmax, int n, int hw, int c)
{
    for (int i = 0; i < n; i++) {
        const float *g = dout + (size_t)i * dstride;
        const int32_t *am = argmax + (size_t)i * c;
        float *d = din + (size_t)i * hw * c;
        for (int j = 0; j < c; j++)
            d[(size_t)am[j] * c + j] += g[j];
    }
}

void maxpool_global_forward(float *out, int32_t *argmax, const float *in, int n, int hw,
                            int c)
{
    global_max(out, c, argmax, c, in, n, hw, c);
}

void maxpool_global_backward(float *din, const float *dout, const int32_t *argmax, int n,
                             int hw, int c)
{
    global_max_backward(din, dout, c, argmax, n, hw, c);
}

void concatpool_forward(float *out, int32_t *argmax, const float *in, int n, int hw, int c)
{
    global_max(out, 2 * c, argmax, c, in, n, hw, c);
    const float inv = 1.0f / (float)hw;
    const size_t work = (size_t)n * hw * c;
#pragma omp parallel for schedule(static) if (work >= POOL_PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * 2 * c + c;
        for (int j = 0; j < c; j++)
            o[j] = 0.0f;
        for (int p = 0; p < hw; p++) {
            const float *x = in + ((size_t)i * hw + p) * c;
            for (int j = 0; j < c; j++)
                o[j] += x[j];
        }
        for (int j = 0; j < c; j++)
            o[j] *= inv;
    }
}

void concatpool_backward(float *din, const float *dout, const int32_t *argmax, int n,
                         int hw, int c)
{
    global_max_backward(din, dout, 2 * c, argmax, n, hw, c);
    const float inv = 1.0f / (float)hw;
    const size_t work = (size_t)n * hw * c;
#pragma omp parallel for schedule(static) if (work >= POOL_PAR_MIN)
    for (int i = 0; i < n; i++) {
        const float *g = dout + (size_t)i * 2 * c + c;
        for (int p = 0; p < hw; p++) {
            float *d = din + ((size_t)i * hw + p) * c;
            for (int j = 0; j < c; j++)
                d[j] += g[j] * inv;
        }
    }
}
