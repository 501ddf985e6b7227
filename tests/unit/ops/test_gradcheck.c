/* test_gradcheck.c: finite-difference gradient checks of every op in ops.h, for inputs and
 * parameters, plus accumulation (+=) semantics, NULL gradients, reference forwards and
 * thread-count independence of the engine's own loops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "rng.h"

/* Central differences on float32 forwards: the step is large enough that the float
 * rounding of the loss stays well below the tolerance, small enough that the truncation
 * error (O(h^2)) does too. Outputs untouched by a perturbation are bit-identical in both
 * evaluations, so only the affected ones add noise. */
#define GC_H 1e-2
#define GC_TOL 2e-2
#define GC_FLOOR 1e-2
#define GC_SAMPLES 24
#define MAXP 4

typedef struct gc_case gc_case;
struct gc_case {
    const char *name;
    int nparam;
    const char *pname[MAXP];
    float *param[MAXP];
    float *grad[MAXP];
    size_t count[MAXP];
    float *out; /* forward output (or the scalar loss for loss ops) */
    size_t nout;
    float *r;   /* dL/dout: the loss is sum(out * r) */
    void (*fwd)(gc_case *);
    void (*bwd)(gc_case *, float **grads);
    void *op;
    double h;   /* step, GC_H unless the op has kinks closer than that */
};

static uint64_t test_rng = 12345;

static float *rand_buf(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = scale * (2.0f * rng_uniform(&test_rng) - 1.0f);
    return p;
}

static float *zero_buf(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static double loss_of(gc_case *c)
{
    c->fwd(c);
    double l = 0.0;
    for (size_t i = 0; i < c->nout; i++)
        l += (double)c->out[i] * c->r[i];
    return l;
}

static int close_enough(double a, double b, double tol, double floor_)
{
    double scale = fmax(fmax(fabs(a), fabs(b)), floor_);
    return fabs(a - b) <= tol * scale;
}

static void zero_grads(gc_case *c)
{
    for (int p = 0; p < c->nparam; p++)
        memset(c->grad[p], 0, c->count[p] * sizeof(float));
}

/* The full check: analytic vs numeric on sampled elements of every parameter, backward
 * twice doubles, each NULL gradient leaves the others unchanged. */
static void gradcheck(gc_case *c)
{
    double h = c->h > 0 ? c->h : GC_H;
    float *analytic[MAXP];
    c->fwd(c);
    zero_grads(c);
    c->bwd(c, c->grad);
    for (int p = 0; p < c->nparam; p++) {
        analytic[p] = malloc(c->count[p] * sizeof(float));
        assert_non_null(analytic[p]);
        memcpy(analytic[p], c->grad[p], c->count[p] * sizeof(float));
    }

    /* Accumulation: a second backward adds the same gradient again, up to the rounding
     * of sums whose order may change (scaled by the parameter's largest gradient). */
    double floor_[MAXP];
    for (int p = 0; p < c->nparam; p++) {
        double mx = 0.0;
        for (size_t i = 0; i < c->count[p]; i++)
            mx = fmax(mx, fabs(analytic[p][i]));
        floor_[p] = fmax(0.1, 0.05 * mx);
    }
    c->bwd(c, c->grad);
    for (int p = 0; p < c->nparam; p++)
        for (size_t i = 0; i < c->count[p]; i++)
            if (!close_enough(c->grad[p][i], 2.0 * analytic[p][i], 1e-5, floor_[p]))
                fail_msg("%s: %s[%zu] after two backwards %g, expected 2 x %g", c->name,
                         c->pname[p], i, c->grad[p][i], analytic[p][i]);

    /* NULL gradients: skipping one leaves the others as they were. */
    for (int skip = 0; skip < c->nparam; skip++) {
        float *g[MAXP];
        zero_grads(c);
        for (int p = 0; p < c->nparam; p++)
            g[p] = p == skip ? NULL : c->grad[p];
        c->bwd(c, g);
        for (int p = 0; p < c->nparam; p++)
            for (size_t i = 0; i < c->count[p]; i++) {
                if (p == skip) {
                    if (c->grad[p][i] != 0.0f)
                        fail_msg("%s: NULL %s was written", c->name, c->pname[p]);
                    continue;
                }
                if (!close_enough(c->grad[p][i], analytic[p][i], 1e-5, floor_[p]))
                    fail_msg("%s: %s[%zu] = %g with %s NULL, %g without", c->name,
                             c->pname[p], i, c->grad[p][i], c->pname[skip],
                             analytic[p][i]);
            }
    }
    {
        float *none[MAXP] = {0};
        c->bwd(c, none);
    }

    /* Finite differences. */
    double worst = 0.0;
    for (int p = 0; p < c->nparam; p++) {
        size_t n = c->count[p];
        size_t samples = n < GC_SAMPLES ? n : GC_SAMPLES;
        for (size_t s = 0; s < samples; s++) {
            size_t i = n <= GC_SAMPLES ? s
                       : s == 0        ? 0
                       : s == 1        ? n - 1
                                       : rng_below(&test_rng, (uint32_t)n);
            float *x = &c->param[p][i];
            float v = *x;
            *x = (float)(v + h);
            double lp = loss_of(c);
            *x = (float)(v - h);
            double lm = loss_of(c);
            *x = v;
            double num = (lp - lm) / (2.0 * h);
            double an = analytic[p][i];
            double err = fabs(num - an) / fmax(fmax(fabs(num), fabs(an)), GC_FLOOR);
            if (err > worst)
                worst = err;
            if (!close_enough(an, num, GC_TOL, GC_FLOOR))
                fail_msg("%s: d/d%s[%zu]: analytic %.6g, numeric %.6g", c->name, c->pname[p],
                         i, an, num);
        }
    }
    print_message("  %-40s worst relative error %.2e\n", c->name, worst);
    for (int p = 0; p < c->nparam; p++)
        free(analytic[p]);
}

/* ---- conv2d ------------------------------------------------------------------------ */

typedef struct conv_op {
    conv2d_shape s;
    float *ws;
    int bias;
} conv_op;

static void conv_fwd(gc_case *c)
{
    conv_op *o = c->op;
    conv2d_forward(c->out, c->param[0], c->param[1], o->bias ? c->param[2] : NULL, o->ws,
                   &o->s);
}

static void conv_bwd(gc_case *c, float **g)
{
    conv_op *o = c->op;
    conv2d_backward(g[0], g[1], o->bias ? g[2] : NULL, c->r, c->param[0], c->param[1],
                    o->ws, &o->s, 0);
}

/* Direct convolution in double, NHWC/OIHW. */
static void conv_reference(double *out, double *mag, const float *in, const float *w,
                           const float *b, const conv2d_shape *s)
{
    for (int n = 0; n < s->n; n++)
        for (int oy = 0; oy < s->h_out; oy++)
            for (int ox = 0; ox < s->w_out; ox++)
                for (int co = 0; co < s->c_out; co++) {
                    double acc = b ? b[co] : 0.0, m = b ? fabs(b[co]) : 0.0;
                    for (int ci = 0; ci < s->c_in; ci++)
                        for (int ky = 0; ky < s->k; ky++)
                            for (int kx = 0; kx < s->k; kx++) {
                                int iy = oy * s->stride - s->pad + ky;
                                int ix = ox * s->stride - s->pad + kx;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w)
                                    continue;
                                double t = (double)in[(((size_t)n * s->h + iy) * s->w + ix) *
                                                          s->c_in + ci] *
                                           w[(((size_t)co * s->c_in + ci) * s->k + ky) * s->k +
                                             kx];
                                acc += t;
                                m += fabs(t);
                            }
                    size_t o = (((size_t)n * s->h_out + oy) * s->w_out + ox) * s->c_out + co;
                    out[o] = acc;
                    mag[o] = m;
                }
}

static void run_conv(int n, int h, int w, int cin, int cout, int k, int stride, int pad,
                     int bias)
{
    conv_op o = {.bias = bias};
    conv2d_shape_init(&o.s, n, h, w, cin, cout, k, stride, pad);
    size_t nin = (size_t)n * h * w * cin, nw = (size_t)cout * cin * k * k;
    size_t nout = (size_t)n * o.s.h_out * o.s.w_out * cout;
    size_t nws = conv2d_workspace_floats(&o.s);
    if (k == 1 && stride == 1 && pad == 0)
        assert_int_equal(nws, 0);
    o.ws = nws ? malloc(nws * sizeof(float)) : NULL;
    char name[96];
    snprintf(name, sizeof(name), "conv %dx%dx%dx%d->%d k%d s%d p%d%s", n, h, w, cin, cout, k,
             stride, pad, bias ? " +bias" : "");
    gc_case c = {.name = name, .nparam = bias ? 3 : 2, .pname = {"in", "w", "b"},
                 .fwd = conv_fwd, .bwd = conv_bwd, .op = &o};
    c.param[0] = rand_buf(nin, 1.0f);
    c.param[1] = rand_buf(nw, 0.5f);
    c.param[2] = rand_buf(cout, 0.5f);
    c.count[0] = nin;
    c.count[1] = nw;
    c.count[2] = cout;
    for (int p = 0; p < 3; p++)
        c.grad[p] = zero_buf(c.count[p]);
    c.out = rand_buf(nout, 1.0f); /* garbage: forward must overwrite it */
    c.nout = nout;
    c.r = rand_buf(nout, 1.0f);

    double *ref = malloc(nout * sizeof(double)), *mag = malloc(nout * sizeof(double));
    assert_non_null(ref);
    assert_non_null(mag);
    conv_reference(ref, mag, c.param[0], c.param[1], bias ? c.param[2] : NULL, &o.s);
    c.fwd(&c);
    for (size_t i = 0; i < nout; i++)
        if (fabs(c.out[i] - ref[i]) > 1e-5 * (mag[i] + 1e-3))
            fail_msg("%s: out[%zu] = %g, reference %g", name, i, c.out[i], ref[i]);
    free(ref);
    free(mag);

    gradcheck(&c);
    for (int p = 0; p < 3; p++) {
        free(c.param[p]);
        free(c.grad[p]);
    }
    free(c.out);
    free(c.r);
    free(o.ws);
}

static void conv_gradients(void **state)
{
    (void)state;
    run_conv(2, 5, 5, 3, 4, 1, 1, 0, 1);  /* direct GEMM */
    run_conv(2, 5, 6, 3, 4, 1, 1, 0, 0);
    run_conv(2, 7, 6, 3, 5, 3, 2, 1, 0);  /* ResNet downsampling 3x3 */
    run_conv(2, 7, 7, 4, 3, 3, 2, 1, 1);
    run_conv(1, 6, 5, 3, 4, 3, 1, 1, 1);  /* 3x3 same */
    run_conv(2, 13, 11, 3, 4, 7, 2, 3, 0); /* ResNet stem */
    run_conv(1, 9, 9, 1, 3, 3, 1, 1, 1);  /* one input channel: no weight permutation */
    run_conv(2, 7, 7, 3, 4, 1, 2, 0, 0);  /* 1x1 stride 2 shortcut */
    run_conv(1, 5, 5, 2, 2, 2, 3, 0, 1);  /* stride larger than kernel */
}

static void conv_chunked_cases(void)
{
    conv2d_shape s;
    conv2d_shape_init(&s, 3, 64, 64, 16, 3, 3, 1, 1);
    size_t one_chunk_all = (size_t)s.n * s.h_out * s.w_out * s.k * s.k * s.c_in;
    assert_true(conv2d_workspace_floats(&s) < one_chunk_all);
    run_conv(3, 64, 64, 16, 3, 3, 1, 1, 1);
    conv2d_shape_init(&s, 3, 61, 67, 24, 2, 7, 2, 3);
    one_chunk_all = (size_t)s.n * s.h_out * s.w_out * s.k * s.k * s.c_in;
    assert_true(conv2d_workspace_floats(&s) < one_chunk_all);
    run_conv(3, 61, 67, 24, 2, 7, 2, 3, 0);
}

/* 3x3 stride-1 with at least 16 channels each way: the Winograd path, with partial tiles
 * (odd sizes), every padding, several chunks, and one to three parts. */
static void conv_gradients_winograd(void **state)
{
    (void)state;
    int threads = omp_get_max_threads();
    conv2d_shape s;
    conv2d_shape_init(&s, 2, 8, 8, 16, 16, 3, 1, 1);
    assert_true(s.c_in >= 16 && s.k == 3);
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        run_conv(2, 7, 9, 16, 17, 3, 1, 1, 1);
        run_conv(3, 8, 8, 16, 16, 3, 1, 0, 0);
        run_conv(1, 5, 6, 17, 16, 3, 1, 2, 1);
    }
    omp_set_num_threads(2);
    run_conv(3, 48, 50, 16, 16, 3, 1, 1, 1); /* several chunks per part */
    omp_set_num_threads(threads);
}

/* Larger than one im2col chunk, so chunk boundaries fall inside and across images; with
 * one, two and three threads, so the batch runs as one part (OpenBLAS threads each GEMM)
 * and as several blocks of images, evenly split or not. */
static void conv_gradients_chunked(void **state)
{
    (void)state;
    int threads = omp_get_max_threads();
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        conv2d_shape s;
        conv2d_shape_init(&s, 3, 8, 8, 4, 5, 3, 2, 1);
        assert_int_equal(s.parts, t);
        run_conv(3, 9, 8, 4, 5, 3, 2, 1, 1);
        run_conv(2, 9, 9, 3, 4, 7, 2, 3, 0);
    }
    omp_set_num_threads(3);
    conv_chunked_cases();
    omp_set_num_threads(threads);
    conv_chunked_cases();
}

/* ---- batchnorm ----------------------------------------------------------------------- */

typedef struct bn_op {
    int m, c, training;
    float *mean, *rstd, *rm, *rv;
} bn_op;

static void bn_fwd(gc_case *c)
{
    bn_op *o = c->op;
    batchnorm_forward(c->out, o->mean, o->rstd, o->rm, o->rv, c->param[0], c->param[1],
                      c->param[2], o->m, o->c, o->training, 0.1f, 1e-5f);
}

static void bn_bwd(gc_case *c, float **g)
{
    bn_op *o = c->op;
    batchnorm_backward(g[0], g[1], g[2], c->r, c->param[0], o->mean, o->rstd, c->param[1],
                       o->m, o->c, o->training);
}

static void run_bn(int m, int ch, int training, const char *label, double h)
{
    bn_op o = {.m = m, .c = ch, .training = training};
    o.mean = zero_buf(ch);
    o.rstd = zero_buf(ch);
    o.rm = rand_buf(ch, 0.5f);
    o.rv = rand_buf(ch, 0.5f);
    for (int j = 0; j < ch; j++)
        o.rv[j] += 1.0f; /* a variance */
    char name[96];
    snprintf(name, sizeof(name), "batchnorm %s M=%d C=%d %s", label, m, ch,
             training ? "train" : "eval");
    gc_case c = {.name = name, .nparam = 3, .pname = {"in", "gamma", "beta"}, .fwd = bn_fwd,
                 .bwd = bn_bwd, .op = &o, .h = h};
    size_t n = (size_t)m * ch;
    c.param[0] = rand_buf(n, 2.0f);
    for (size_t i = 0; i < n; i++)
        c.param[0][i] += 0.3f * (float)(i % ch % 8); /* non-zero channel means */
    c.param[1] = rand_buf(ch, 1.0f);
    c.param[2] = rand_buf(ch, 1.0f);
    c.count[0] = n;
    c.count[1] = ch;
    c.count[2] = ch;
    for (int p = 0; p < 3; p++)
        c.grad[p] = zero_buf(c.count[p]);
    c.out = zero_buf(n);
    c.nout = n;
    c.r = rand_buf(n, 1.0f);

    /* Forward and running statistics against a double-precision computation. */
    float *rm0 = malloc(ch * sizeof(float)), *rv0 = malloc(ch * sizeof(float));
    memcpy(rm0, o.rm, ch * sizeof(float));
    memcpy(rv0, o.rv, ch * sizeof(float));
    c.fwd(&c);
    for (int j = 0; j < ch; j++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < m; i++)
            s += c.param[0][(size_t)i * ch + j];
        double mu = s / m;
        for (int i = 0; i < m; i++) {
            double d = c.param[0][(size_t)i * ch + j] - mu;
            s2 += d * d;
        }
        double var = s2 / m;
        double use_mu = training ? mu : rm0[j];
        double use_var = training ? var : rv0[j];
        for (int i = 0; i < m; i++) {
            double x = c.param[0][(size_t)i * ch + j];
            double y = (x - use_mu) / sqrt(use_var + 1e-5) * c.param[1][j] + c.param[2][j];
            if (!close_enough(c.out[(size_t)i * ch + j], y, 1e-5, 1.0))
                fail_msg("%s: out[%d,%d] = %g, expected %g", name, i, j,
                         c.out[(size_t)i * ch + j], y);
        }
        double erm = training ? 0.9 * rm0[j] + 0.1 * mu : rm0[j];
        double erv = training ? 0.9 * rv0[j] + 0.1 * var * m / (m - 1) : rv0[j];
        if (!close_enough(o.rm[j], erm, 1e-5, 1e-3) || !close_enough(o.rv[j], erv, 1e-5, 1e-3))
            fail_msg("%s: running stats of channel %d: %g %g, expected %g %g", name, j,
                     o.rm[j], o.rv[j], erm, erv);
    }
    free(rm0);
    free(rv0);

    gradcheck(&c);
    for (int p = 0; p < 3; p++) {
        free(c.param[p]);
        free(c.grad[p]);
    }
    free(c.out);
    free(c.r);
    free(o.mean);
    free(o.rstd);
    free(o.rm);
    free(o.rv);
}

static void batchnorm_gradients(void **state)
{
    (void)state;
    run_bn(2 * 4 * 3, 5, 1, "2d", 0);
    run_bn(2 * 4 * 3, 5, 0, "2d", 0);
    run_bn(2 * 3 * 3, 37, 1, "2d", 0);
    run_bn(8, 40, 1, "1d", 0);
    run_bn(8, 40, 0, "1d", 0);
    run_bn(8, 600, 1, "1d wide", 0); /* more channels than one coefficient chunk */
    /* Above the parallel threshold, in several row blocks. A perturbation moves the loss
     * through all M outputs of its channel, so a larger step keeps the rounding of the
     * loss below the tolerance (the function is close to linear at this scale). */
    run_bn(64 * 16, 24, 1, "2d large", 5e-2);
    run_bn(64 * 16, 24, 0, "2d large", 5e-2);
}

/* ---- relu, add, dropout ------------------------------------------------------------ */

typedef struct ew_op {
    size_t n;
    float *mask;
    float p;
    uint64_t seed;
} ew_op;

/* Values at least 0.05 away from zero, so a step of 1e-2 never crosses the kink. */
static float *away_from_zero(size_t n)
{
    float *p = rand_buf(n, 1.0f);
    for (size_t i = 0; i < n; i++)
        p[i] += p[i] >= 0 ? 0.05f : -0.05f;
    return p;
}

static void relu_fwd(gc_case *c)
{
    ew_op *o = c->op;
    relu_forward(c->out, c->param[0], o->n);
}

static void relu_bwd(gc_case *c, float **g)
{
    ew_op *o = c->op;
    if (g[0])
        relu_backward(g[0], c->r, c->out, o->n);
}

static void silu_fwd(gc_case *c)
{
    ew_op *o = c->op;
    silu_forward(c->out, c->param[0], o->n);
}

static void silu_bwd(gc_case *c, float **g)
{
    ew_op *o = c->op;
    if (g[0])
        silu_backward(g[0], c->r, c->param[0], o->n);
}

static void add_fwd(gc_case *c)
{
    ew_op *o = c->op;
    add_forward(c->out, c->param[0], c->param[1], o->n);
}

static void add_bwd(gc_case *c, float **g)
{
    ew_op *o = c->op;
    add_backward(g[0], g[1], c->r, o->n);
}

static void dropout_fwd(gc_case *c)
{
    ew_op *o = c->op;
    uint64_t rng = o->seed; /* the same mask at every evaluation */
    dropout_forward(c->out, o->mask, c->param[0], o->n, o->p, &rng);
}

static void dropout_bwd(gc_case *c, float **g)
{
    ew_op *o = c->op;
    if (g[0])
        dropout_backward(g[0], c->r, o->mask, o->n);
}

static void run_ew(const char *name, int nparam, void (*fwd)(gc_case *),
                   void (*bwd)(gc_case *, float **), size_t n, float p)
{
    ew_op o = {.n = n, .p = p, .seed = 99};
    o.mask = zero_buf(n);
    gc_case c = {.name = name, .nparam = nparam, .pname = {"a", "b"}, .fwd = fwd, .bwd = bwd,
                 .op = &o};
    for (int i = 0; i < nparam; i++) {
        c.param[i] = away_from_zero(n);
        c.count[i] = n;
        c.grad[i] = zero_buf(n);
    }
    c.out = zero_buf(n);
    c.nout = n;
    c.r = rand_buf(n, 1.0f);
    gradcheck(&c);
    for (int i = 0; i < nparam; i++) {
        free(c.param[i]);
        free(c.grad[i]);
    }
    free(c.out);
    free(c.r);
    free(o.mask);
}

static void elementwise_gradients(void **state)
{
    (void)state;
    run_ew("relu", 1, relu_fwd, relu_bwd, 300, 0);
    run_ew("relu (parallel size)", 1, relu_fwd, relu_bwd, 100000, 0);
    run_ew("silu", 1, silu_fwd, silu_bwd, 300, 0);
    run_ew("silu (parallel size)", 1, silu_fwd, silu_bwd, 100000, 0);
    run_ew("add", 2, add_fwd, add_bwd, 300, 0);
    run_ew("dropout p=0.5", 1, dropout_fwd, dropout_bwd, 300, 0.5f);
    run_ew("dropout p=0.25", 1, dropout_fwd, dropout_bwd, 300, 0.25f);
    run_ew("dropout p=0", 1, dropout_fwd, dropout_bwd, 300, 0.0f);
}

static void relu_in_place(void **state)
{
    (void)state;
    size_t n = 1000;
    float *x = rand_buf(n, 1.0f), *ref = malloc(n * sizeof(float));
    float *dout = rand_buf(n, 1.0f), *dref = zero_buf(n);
    relu_forward(ref, x, n);
    relu_forward(x, x, n);
    assert_memory_equal(x, ref, n * sizeof(float));
    relu_backward(dref, dout, ref, n);
    relu_backward(dout, dout, x, n); /* din aliases dout: overwritten with the product */
    assert_memory_equal(dout, dref, n * sizeof(float));
    free(x);
    free(ref);
    free(dout);
    free(dref);
}

/* SiLU's own exponential against libm's, in double, from -200 to 200 (its clamps
 * included): within a few float ulp of x * sigmoid(x) and of its derivative. */
static void silu_matches_libm(void **state)
{
    (void)state;
    size_t n = 400001;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *dout = malloc(n * sizeof(float)), *dx = zero_buf(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = -200.0f + 0.001f * (float)i;
        dout[i] = 1.0f;
    }
    silu_forward(y, x, n);
    silu_backward(dx, dout, x, n);
    double worst_y = 0, worst_dx = 0;
    for (size_t i = 0; i < n; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x[i]));
        double ry = (double)x[i] * s, rdx = s * (1.0 + (double)x[i] * (1.0 - s));
        double ey = fabs(y[i] - ry) / fmax(fabs(ry), 1e-30);
        /* PyTorch's formula s * (1 + x * (1 - s)) loses digits in float whatever the
         * exponential: 1 - s for large x, and the sum near x = -1.28, where the
         * derivative crosses zero. Its error is taken against max(|d|, 1). */
        double edx = fabs(dx[i] - rdx) / fmax(fabs(rdx), 1.0);
        /* Below -87 the forward's result is under 1e-35: absolute error counts there. */
        if (x[i] < -87.0f && fabs(y[i] - ry) < 1e-30)
            ey = 0;
        worst_y = fmax(worst_y, ey);
        worst_dx = fmax(worst_dx, edx);
    }
    printf("silu vs libm: worst relative error forward %.2e, backward %.2e\n", worst_y,
           worst_dx);
    assert_true(worst_y < 1e-6);
    assert_true(worst_dx < 4e-6);
    free(x);
    free(y);
    free(dout);
    free(dx);
}

static void dropout_mask(void **state)
{
    (void)state;
    size_t n = 100000;
    float *x = rand_buf(n, 1.0f), *out = zero_buf(n), *mask = zero_buf(n);
    float *mask2 = zero_buf(n);
    uint64_t rng = 7;
    dropout_forward(out, mask, x, n, 0.3f, &rng);
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        if (mask[i] == 0.0f)
            dropped++;
        else
            assert_float_equal(mask[i], 1.0f / 0.7f, 1e-6);
        assert_float_equal(out[i], x[i] * mask[i], 0);
    }
    assert_in_range(dropped, 29000, 31000);
    assert_int_not_equal(rng, 7); /* the state advanced */
    /* Same seed, another thread count: the same mask. */
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    uint64_t rng2 = 7;
    dropout_forward(out, mask2, x, n, 0.3f, &rng2);
    omp_set_num_threads(threads);
    assert_memory_equal(mask, mask2, n * sizeof(float));
    assert_int_equal(rng, rng2);
    /* p == 0: ones, nothing dropped. */
    dropout_forward(out, mask, x, n, 0.0f, &rng);
    for (size_t i = 0; i < n; i++)
        assert_true(mask[i] == 1.0f && out[i] == x[i]);
    free(x);
    free(out);
    free(mask);
    free(mask2);
}

/* ---- pools --------------------------------------------------------------------------- */

typedef struct pool_op {
    pool2d_shape s;
    int n, hw, c, kind; /* kind: 0 maxpool2d, 1 avg, 2 global max, 3 concat */
    int32_t *argmax;
} pool_op;

/* Distinct values 0.05 apart in random order: no ties, and a step of 1e-2 never changes
 * which element is the maximum. */
static float *distinct_values(size_t n)
{
    float *p = malloc(n * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = 0.05f * (float)i - 0.025f * (float)n;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_below(&test_rng, (uint32_t)(i + 1));
        float t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

static void pool_fwd(gc_case *c)
{
    pool_op *o = c->op;
    switch (o->kind) {
    case 0:
        maxpool2d_forward(c->out, o->argmax, c->param[0], &o->s);
        break;
    case 1:
        avgpool_global_forward(c->out, c->param[0], o->n, o->hw, o->c);
        break;
    case 2:
        maxpool_global_forward(c->out, o->argmax, c->param[0], o->n, o->hw, o->c);
        break;
    default:
        concatpool_forward(c->out, o->argmax, c->param[0], o->n, o->hw, o->c);
    }
}

static void pool_bwd(gc_case *c, float **g)
{
    pool_op *o = c->op;
    if (!g[0])
        return;
    switch (o->kind) {
    case 0:
        maxpool2d_backward(g[0], c->r, o->argmax, &o->s);
        break;
    case 1:
        avgpool_global_backward(g[0], c->r, o->n, o->hw, o->c);
        break;
    case 2:
        maxpool_global_backward(g[0], c->r, o->argmax, o->n, o->hw, o->c);
        break;
    default:
        concatpool_backward(g[0], c->r, o->argmax, o->n, o->hw, o->c);
    }
}

static void run_pool(const char *name, pool_op *o, size_t nin, size_t nout)
{
    gc_case c = {.name = name, .nparam = 1, .pname = {"in"}, .fwd = pool_fwd,
                 .bwd = pool_bwd, .op = o};
    o->argmax = malloc(nout * sizeof(int32_t));
    c.param[0] = distinct_values(nin);
    c.count[0] = nin;
    c.grad[0] = zero_buf(nin);
    c.out = zero_buf(nout);
    c.nout = nout;
    c.r = rand_buf(nout, 1.0f);
    gradcheck(&c);
    free(c.param[0]);
    free(c.grad[0]);
    free(c.out);
    free(c.r);
    free(o->argmax);
}

static void maxpool_reference_check(const float *in, const float *out, const pool2d_shape *s)
{
    for (int n = 0; n < s->n; n++)
        for (int oy = 0; oy < s->h_out; oy++)
            for (int ox = 0; ox < s->w_out; ox++)
                for (int ch = 0; ch < s->c; ch++) {
                    float best = -INFINITY;
                    for (int ky = 0; ky < s->k; ky++)
                        for (int kx = 0; kx < s->k; kx++) {
                            int y = oy * s->stride - s->pad + ky;
                            int x = ox * s->stride - s->pad + kx;
                            if (y < 0 || y >= s->h || x < 0 || x >= s->w)
                                continue;
                            float v = in[(((size_t)n * s->h + y) * s->w + x) * s->c + ch];
                            if (v > best)
                                best = v;
                        }
                    assert_float_equal(
                        out[(((size_t)n * s->h_out + oy) * s->w_out + ox) * s->c + ch],
                        best, 0);
                }
}

static void pool_gradients(void **state)
{
    (void)state;
    pool_op o = {.kind = 0};
    pool2d_shape_init(&o.s, 2, 7, 6, 3, 3, 2, 1);
    assert_int_equal(o.s.h_out, 4);
    assert_int_equal(o.s.w_out, 3);
    size_t nin = 2 * 7 * 6 * 3, nout = 2 * 4 * 3 * 3;
    {
        float *in = distinct_values(nin), *out = zero_buf(nout);
        int32_t *am = malloc(nout * sizeof(int32_t));
        maxpool2d_forward(out, am, in, &o.s);
        maxpool_reference_check(in, out, &o.s);
        for (size_t i = 0; i < nout; i++)
            assert_float_equal(in[am[i]], out[i], 0);
        /* Without argmax (no backward follows) the same maxima. */
        float *out2 = zero_buf(nout);
        maxpool2d_forward(out2, NULL, in, &o.s);
        assert_memory_equal(out2, out, nout * sizeof(float));
        free(out2);
        free(in);
        free(out);
        free(am);
    }
    run_pool("maxpool2d k3 s2 p1", &o, nin, nout);
    pool2d_shape_init(&o.s, 2, 6, 6, 4, 2, 2, 0);
    run_pool("maxpool2d k2 s2 p0", &o, 2 * 6 * 6 * 4, 2 * 3 * 3 * 4);
    /* All-negative input: padding must never win. */
    pool2d_shape_init(&o.s, 1, 4, 4, 2, 3, 2, 1);
    {
        float in[32], out[8];
        int32_t am[8];
        for (int i = 0; i < 32; i++)
            in[i] = -1.0f - (float)i;
        maxpool2d_forward(out, am, in, &o.s);
        maxpool_reference_check(in, out, &o.s);
    }

    pool_op g = {.n = 3, .hw = 5, .c = 4};
    for (g.kind = 1; g.kind <= 3; g.kind++) {
        const char *names[] = {"", "global avgpool", "global maxpool", "concat pool"};
        size_t out = (size_t)g.n * g.c * (g.kind == 3 ? 2 : 1);
        run_pool(names[g.kind], &g, (size_t)g.n * g.hw * g.c, out);
    }
}

/* Ties go to the window's first maximum (row-major), and a NaN wins over numbers. */
static void maxpool_ties_and_nan(void **state)
{
    (void)state;
    pool2d_shape s;
    pool2d_shape_init(&s, 1, 2, 2, 2, 2, 2, 0); /* one 2x2 window, two channels */
    float in[8] = {1, 3, /* (0,0) */ 2, NAN, /* (0,1) */ 2, 3, /* (1,0) */ 0, 1 /* (1,1) */};
    float out[2];
    int32_t am[2];
    maxpool2d_forward(out, am, in, &s);
    assert_float_equal(out[0], 2, 0);
    assert_int_equal(am[0], 2); /* (0,1) before the equal (1,0) */
    assert_true(isnan(out[1]));
    assert_int_equal(am[1], 3);
    maxpool2d_forward(out, NULL, in, &s); /* the same without argmax */
    assert_float_equal(out[0], 2, 0);
    assert_true(isnan(out[1]));
}

static void concatpool_layout(void **state)
{
    (void)state;
    int n = 2, hw = 3, c = 2;
    float in[12] = {1, -1, 4, -2, 2, -3, /* image 0 */ 0, 5, -1, 6, 3, 7};
    float out[8];
    int32_t am[4];
    concatpool_forward(out, am, in, n, hw, c);
    float expect[8] = {4, -1, 7.0f / 3, -2, 3, 7, 2.0f / 3, 6};
    for (int i = 0; i < 8; i++)
        assert_float_equal(out[i], expect[i], 1e-6);
    assert_int_equal(am[0], 1);
    assert_int_equal(am[1], 0);
    assert_int_equal(am[2], 2);
    assert_int_equal(am[3], 2);
}

/* ---- linear ------------------------------------------------------------------------ */

typedef struct lin_op {
    int n, in_f, out_f, bias;
} lin_op;

static void lin_fwd(gc_case *c)
{
    lin_op *o = c->op;
    linear_forward(c->out, c->param[0], c->param[1], o->bias ? c->param[2] : NULL, o->n,
                   o->in_f, o->out_f);
}

static void lin_bwd(gc_case *c, float **g)
{
    lin_op *o = c->op;
    linear_backward(g[0], g[1], o->bias ? g[2] : NULL, c->r, c->param[0], c->param[1], o->n,
                    o->in_f, o->out_f);
}

static void run_linear(int n, int in_f, int out_f, int bias)
{
    lin_op o = {n, in_f, out_f, bias};
    char name[64];
    snprintf(name, sizeof(name), "linear %d x %d -> %d%s", n, in_f, out_f,
             bias ? " +bias" : "");
    gc_case c = {.name = name, .nparam = bias ? 3 : 2, .pname = {"in", "w", "b"},
                 .fwd = lin_fwd, .bwd = lin_bwd, .op = &o};
    c.count[0] = (size_t)n * in_f;
    c.count[1] = (size_t)out_f * in_f;
    c.count[2] = out_f;
    for (int p = 0; p < 3; p++) {
        c.param[p] = rand_buf(c.count[p], 1.0f);
        c.grad[p] = zero_buf(c.count[p]);
    }
    c.nout = (size_t)n * out_f;
    c.out = rand_buf(c.nout, 1.0f);
    c.r = rand_buf(c.nout, 1.0f);
    c.fwd(&c);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < out_f; j++) {
            double acc = bias ? c.param[2][j] : 0.0;
            for (int k = 0; k < in_f; k++)
                acc += (double)c.param[0][(size_t)i * in_f + k] *
                       c.param[1][(size_t)j * in_f + k];
            assert_true(close_enough(c.out[(size_t)i * out_f + j], acc, 1e-5, 1.0));
        }
    gradcheck(&c);
    for (int p = 0; p < 3; p++) {
        free(c.param[p]);
        free(c.grad[p]);
    }
    free(c.out);
    free(c.r);
}

static void linear_gradients(void **state)
{
    (void)state;
    run_linear(4, 7, 5, 1);
    run_linear(3, 9, 2, 0);
    run_linear(1, 1, 1, 1);
}

/* ---- losses -------------------------------------------------------------------------- */

typedef struct loss_op {
    int n, c, bce;
    float eps;                /* label smoothing of the cross-entropy */
    int32_t *labels;
    float *targets, *probs;
} loss_op;

static void loss_fwd(gc_case *gc)
{
    loss_op *o = gc->op;
    if (o->bce)
        gc->out[0] = bce_logits_forward(o->probs, gc->param[0], o->targets, o->n, o->c);
    else
        gc->out[0] = softmax_xent_forward(o->probs, gc->param[0], o->labels, o->n, o->c,
                                          o->eps);
}

static void loss_bwd(gc_case *gc, float **g)
{
    loss_op *o = gc->op;
    if (!g[0])
        return;
    if (o->bce)
        bce_logits_backward(g[0], o->probs, o->targets, o->n, o->c);
    else
        softmax_xent_backward(g[0], o->probs, o->labels, o->n, o->c, o->eps);
}

static void run_loss(int bce, int n, int c, float scale, float eps)
{
    loss_op o = {.n = n, .c = c, .bce = bce, .eps = eps};
    size_t nn = (size_t)n * c;
    o.labels = malloc(n * sizeof(int32_t));
    o.targets = zero_buf(nn);
    o.probs = zero_buf(nn);
    for (int i = 0; i < n; i++)
        o.labels[i] = (int32_t)rng_below(&test_rng, (uint32_t)c);
    for (size_t i = 0; i < nn; i++)
        o.targets[i] = rng_uniform(&test_rng) < 0.3f ? 1.0f : 0.0f;
    float one = 1.0f, out = 0.0f;
    char name[64];
    snprintf(name, sizeof(name), "%s %dx%d scale %g eps %g", bce ? "bce_logits" : "softmax_xent",
             n, c, scale, eps);
    gc_case gc = {.name = name, .nparam = 1, .pname = {"logits"}, .fwd = loss_fwd,
                  .bwd = loss_bwd, .op = &o, .out = &out, .nout = 1, .r = &one};
    gc.param[0] = rand_buf(nn, scale);
    gc.count[0] = nn;
    gc.grad[0] = zero_buf(nn);

    /* The loss value against a direct double computation. */
    gc.fwd(&gc);
    double ref = 0.0;
    for (int i = 0; i < n; i++) {
        const float *x = gc.param[0] + (size_t)i * c;
        if (bce) {
            for (int j = 0; j < c; j++) {
                double p = 1.0 / (1.0 + exp(-(double)x[j]));
                double t = o.targets[(size_t)i * c + j];
                ref -= t * log(p) + (1 - t) * log1p(-p);
                assert_true(close_enough(o.probs[(size_t)i * c + j], p, 1e-5, 1e-6));
            }
        } else {
            double s = 0.0;
            for (int j = 0; j < c; j++)
                s += exp((double)x[j]);
            double all = 0.0;
            for (int j = 0; j < c; j++)
                all += log(s) - x[j];
            ref += (1.0 - eps) * (log(s) - x[o.labels[i]]) + eps * all / c;
        }
    }
    ref /= bce ? (double)nn : (double)n;
    if (!close_enough(out, ref, 1e-5, 1e-6))
        fail_msg("%s: loss %g, reference %g", name, out, ref);

    gradcheck(&gc);
    free(gc.param[0]);
    free(gc.grad[0]);
    free(o.labels);
    free(o.targets);
    free(o.probs);
}

static void loss_gradients(void **state)
{
    (void)state;
    run_loss(0, 5, 7, 2.0f, 0.0f);
    run_loss(0, 3, 2, 5.0f, 0.0f);
    run_loss(0, 5, 7, 2.0f, 0.1f);
    run_loss(0, 4, 3, 4.0f, 0.3f);
    run_loss(1, 4, 6, 3.0f, 0.0f);
    run_loss(1, 2, 3, 0.5f, 0.0f);
}

static void losses_are_stable(void **state)
{
    (void)state;
    float logits[4] = {1000.0f, -1000.0f, 0.0f, 500.0f}, probs[4];
    int32_t labels[2] = {0, 0};
    float l = softmax_xent_forward(probs, logits, labels, 2, 2, 0.0f);
    assert_true(isfinite(l));
    assert_float_equal(l, (0.0f + 500.0f) / 2.0f, 1e-3);
    float targets[4] = {1, 0, 1, 0};
    l = bce_logits_forward(probs, logits, targets, 2, 2);
    assert_true(isfinite(l));
    assert_float_equal(l, (0.0f + 0.0f + logf(2.0f) + 500.0f) / 4.0f, 1e-3);
}

/* ---- thread-count independence of the engine's own loops -------------------------- */

static void same_with_one_thread(void **state)
{
    (void)state;
    int threads = omp_get_max_threads();
    int m = 32 * 20 * 20, c = 48;
    size_t n = (size_t)m * c;
    float *x = rand_buf(n, 3.0f), *dy = rand_buf(n, 1.0f);
    float *g = rand_buf(c, 1.0f), *b = rand_buf(c, 1.0f);
    float *out[2], *din[2], *dg[2], *db[2], *rm[2], *rv[2], *mean[2], *rstd[2];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t == 0 ? 1 : (threads > 1 ? threads : 2));
        out[t] = zero_buf(n);
        din[t] = zero_buf(n);
        dg[t] = zero_buf(c);
        db[t] = zero_buf(c);
        rm[t] = zero_buf(c);
        rv[t] = zero_buf(c);
        mean[t] = zero_buf(c);
        rstd[t] = zero_buf(c);
        batchnorm_forward(out[t], mean[t], rstd[t], rm[t], rv[t], x, g, b, m, c, 1, 0.1f,
                          1e-5f);
        batchnorm_backward(din[t], dg[t], db[t], dy, x, mean[t], rstd[t], g, m, c, 1);
        relu_forward(out[t], out[t], n);
    }
    omp_set_num_threads(threads);
    assert_memory_equal(out[0], out[1], n * sizeof(float));
    assert_memory_equal(din[0], din[1], n * sizeof(float));
    assert_memory_equal(dg[0], dg[1], c * sizeof(float));
    assert_memory_equal(db[0], db[1], c * sizeof(float));
    assert_memory_equal(rv[0], rv[1], c * sizeof(float));
    for (int t = 0; t < 2; t++) {
        free(out[t]);
        free(din[t]);
        free(dg[t]);
        free(db[t]);
        free(rm[t]);
        free(rv[t]);
        free(mean[t]);
        free(rstd[t]);
    }
    free(x);
    free(dy);
    free(g);
    free(b);
}

/* The fused forms the net uses are bit for bit the separate ops: batchnorm_stats_sync +
 * batchnorm_apply with a residual and ReLU against forward, add and ReLU; backward's assign
 * mode (out of place and in place over dout) against adding to a zeroed din. */
static void batchnorm_fused_forms(void **state)
{
    (void)state;
    int m = 8 * 9 * 9, c = 40;
    size_t n = (size_t)m * c;
    float *x = rand_buf(n, 3.0f), *dy = rand_buf(n, 1.0f), *res = rand_buf(n, 2.0f);
    float *g = rand_buf(c, 1.0f), *b = rand_buf(c, 1.0f);
    float *mean = zero_buf(c), *rstd = zero_buf(c), *rm = zero_buf(c), *rv = zero_buf(c);
    float *ref = zero_buf(n), *out = zero_buf(n), *din = zero_buf(n), *got = zero_buf(n);
    float *dg = zero_buf(c), *db = zero_buf(c);
    for (int training = 0; training < 2; training++) {
        for (int j = 0; j < c; j++)
            rv[j] = 1.0f + 0.5f * (float)j / (float)c;
        batchnorm_forward(ref, mean, rstd, rm, rv, x, g, b, m, c, training, 0.1f, 1e-5f);
        add_forward(ref, ref, res, n);
        relu_forward(ref, ref, n);
        batchnorm_stats_sync(mean, rstd, rm, rv, x, m, c, training, 0.1f, 1e-5f, NULL);
        batchnorm_apply(out, x, mean, rstd, g, b, res, 1, m, c);
        assert_memory_equal(ref, out, n * sizeof(float));

        memset(din, 0, n * sizeof(float));
        batchnorm_backward(din, dg, db, dy, x, mean, rstd, g, m, c, training);
        memset(got, 0x7f, n * sizeof(float)); /* assign never reads din */
        batchnorm_backward_sync(got, NULL, NULL, dy, x, mean, rstd, g, m, c, training, 1,
                                NULL);
        assert_memory_equal(din, got, n * sizeof(float));
        memcpy(got, dy, n * sizeof(float));
        batchnorm_backward_sync(got, NULL, NULL, got, x, mean, rstd, g, m, c, training, 1,
                                NULL);
        assert_memory_equal(din, got, n * sizeof(float));
    }
    free(x);
    free(dy);
    free(res);
    free(g);
    free(b);
    free(mean);
    free(rstd);
    free(rm);
    free(rv);
    free(ref);
    free(out);
    free(din);
    free(got);
    free(dg);
    free(db);
}

/* maxpool2d_backward_relu is bit for bit maxpool2d_backward into a zeroed din followed by
 * relu_backward in place (the net's ReLU-then-pool stem), ties and zeros included. */
static void maxpool_relu_backward(void **state)
{
    (void)state;
    pool2d_shape s;
    pool2d_shape_init(&s, 3, 9, 8, 5, 3, 2, 1);
    size_t n_in = (size_t)s.n * s.h * s.w * s.c, n_out = (size_t)s.n * s.h_out * s.w_out * s.c;
    float *x = rand_buf(n_in, 1.0f), *dy = rand_buf(n_out, 1.0f);
    for (size_t i = 0; i < n_in; i += 7)
        x[i] = 0.0f; /* ties at zero, as ReLU makes them */
    relu_forward(x, x, n_in);
    float *y = zero_buf(n_out), *ref = zero_buf(n_in), *got = zero_buf(n_in);
    int32_t *am = malloc(n_out * sizeof(int32_t));
    maxpool2d_forward(y, am, x, &s);
    maxpool2d_backward(ref, dy, am, &s);
    relu_backward(ref, ref, x, n_in);
    maxpool2d_backward_relu(got, dy, am, y, &s);
    assert_memory_equal(ref, got, n_in * sizeof(float));
    free(x);
    free(dy);
    free(y);
    free(ref);
    free(got);
    free(am);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv_gradients),
        cmocka_unit_test(conv_gradients_chunked),
        cmocka_unit_test(conv_gradients_winograd),
        cmocka_unit_test(batchnorm_gradients),
        cmocka_unit_test(elementwise_gradients),
        cmocka_unit_test(relu_in_place),
        cmocka_unit_test(silu_matches_libm),
        cmocka_unit_test(dropout_mask),
        cmocka_unit_test(pool_gradients),
        cmocka_unit_test(maxpool_ties_and_nan),
        cmocka_unit_test(concatpool_layout),
        cmocka_unit_test(linear_gradients),
        cmocka_unit_test(loss_gradients),
        cmocka_unit_test(losses_are_stable),
        cmocka_unit_test(same_with_one_thread),
        cmocka_unit_test(batchnorm_fused_forms),
        cmocka_unit_test(maxpool_relu_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
