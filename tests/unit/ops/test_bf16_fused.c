/* test_bf16_fused.c: the bf16 mode on the fp32 kernels rounds its operands as the kernels
 * load them (Winograd's transforms, im2col, the weight copy, blocked GEMMs). Its results
 * must be those of the plain route: round input, weights and output gradient first, then
 * run the fp32 kernels. Bit for bit where no GEMM is split into blocks; where one is (large
 * weights read in place, a 1x1 convolution's weight gradient over many pixels, a stem whose
 * rows bf16 cuts into shorter chunks than fp32 to bound its rounded output gradient),
 * within a float32 summation error. Shapes with tails (channels, tiles cut by the border),
 * one image, stride 2, 1x1, a 7x7 stem, weight-major late stages; forward and backward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

typedef struct fused_case {
    const char *name;
    int n, h, w, c_in, c_out, k, stride, pad, bias;
    int blocked; /* a GEMM is split into blocks: compare within a tolerance */
} fused_case;

static const fused_case cases[] = {
    {"winograd odd tails", 3, 11, 9, 17, 19, 3, 1, 1, 1, 0},
    {"winograd one image", 1, 8, 8, 32, 16, 3, 1, 1, 0, 0},
    {"winograd U-heavy", 2, 4, 4, 128, 128, 3, 1, 1, 0, 0},
    {"im2col 3x3 stride 2", 3, 9, 7, 5, 12, 3, 2, 1, 1, 0},
    {"1x1 stride 2", 2, 7, 7, 16, 24, 1, 2, 0, 0, 0},
    {"1x1 stride 1", 3, 5, 5, 13, 7, 1, 1, 0, 1, 0},
    {"7x7 stem stride 2", 2, 17, 17, 3, 8, 7, 2, 3, 0, 0},
    {"one input channel", 2, 10, 10, 1, 8, 3, 1, 1, 1, 0},
    {"weight-major 3x3", 1, 3, 3, 20, 24, 3, 1, 1, 0, 0},
    {"weight-major stride 2", 2, 4, 4, 32, 40, 3, 2, 1, 0, 0},
    {"weight-major, blocked weights", 2, 2, 2, 256, 512, 3, 1, 1, 0, 1},
    {"1x1, blocked weights", 5, 1, 1, 1024, 600, 1, 1, 0, 1, 1},
    {"1x1, blocked pixels", 2, 24, 24, 512, 512, 1, 1, 0, 0, 1},
    {"one-channel stem, shorter chunks", 64, 28, 28, 1, 32, 3, 1, 1, 1, 1},
};

/* bf16 round to nearest even, for the finite values these tests draw. */
static float to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, sizeof(u));
    return x;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* Uniform in [-1, 1), with low bits that rounding to bf16 changes. */
static float draw(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}

static float *filled(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = draw();
    return p;
}

static float *rounded(const float *x, size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = to_bf16(x[i]);
    return p;
}

static float *copy(const float *x, size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    memcpy(p, x, sizeof(float) * n);
    return p;
}

static float max_abs(const float *x, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++)
        m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

/* got == want bit for bit, or within 1e-5 of want's largest element when blocked. */
static void check_equal(const char *what, const fused_case *c, const float *got,
                        const float *want, size_t n)
{
    float tol = c->blocked ? 1e-5f * max_abs(want, n) : 0.0f;
    size_t bad = 0, first = n;
    for (size_t i = 0; i < n; i++) {
        int ok = c->blocked ? fabsf(got[i] - want[i]) <= tol
                            : memcmp(&got[i], &want[i], sizeof(float)) == 0;
        if (!ok && bad++ == 0)
            first = i;
    }
    if (bad)
        print_error("%s, %s: %zu of %zu differ, first [%zu]: %a against %a\n", c->name, what,
                    bad, n, first, got[first], want[first]);
    assert_int_equal(bad, 0);
}

static float *workspace(const conv2d_shape *s)
{
    size_t f = conv2d_workspace_floats(s);
    float *ws = malloc(sizeof(float) * (f ? f : 1));
    assert_non_null(ws);
    return ws;
}

/* The tensors of one case, and their sizes. */
typedef struct tensors {
    size_t xn, wn, yn;
    float *x, *w, *b, *dy, *din0, *dw0;
} tensors;

static void tensors_fill(tensors *t, const conv2d_shape *s)
{
    t->xn = (size_t)s->n * s->h * s->w * s->c_in;
    t->wn = (size_t)s->c_out * s->c_in * s->k * s->k;
    t->yn = (size_t)s->n * s->h_out * s->w_out * s->c_out;
    t->x = filled(t->xn);
    t->w = filled(t->wn);
    t->b = filled((size_t)s->c_out);
    t->dy = filled(t->yn);
    t->din0 = filled(t->xn); /* backward adds to what is there */
    t->dw0 = filled(t->wn);
}

static void tensors_free(tensors *t)
{
    free(t->x);
    free(t->w);
    free(t->b);
    free(t->dy);
    free(t->din0);
    free(t->dw0);
}

/* out, din, dw of one route: fused (bf16 on the fp32 kernels, raw operands) or plain (fp32
 * on operands rounded here). */
static void run_route(float *out, float *din, float *dw, float *db, const tensors *t,
                      const conv2d_shape *s, int fused, int bias)
{
    float *x = fused ? copy(t->x, t->xn) : rounded(t->x, t->xn);
    float *w = fused ? copy(t->w, t->wn) : rounded(t->w, t->wn);
    float *dy = fused ? copy(t->dy, t->yn) : rounded(t->dy, t->yn);
    float *ws = workspace(s);
    conv2d_forward(out, x, w, bias ? t->b : NULL, ws, s);
    memcpy(din, t->din0, sizeof(float) * t->xn);
    memcpy(dw, t->dw0, sizeof(float) * t->wn);
    memset(db, 0, sizeof(float) * (size_t)s->c_out);
    conv2d_backward(din, dw, db, dy, x, w, ws, s, 0);
    free(x);
    free(w);
    free(dy);
    free(ws);
}

static void check_case(const fused_case *c)
{
    conv2d_shape fs, ps;
    conv2d_shape_init(&fs, c->n, c->h, c->w, c->c_in, c->c_out, c->k, c->stride, c->pad);
    ps = fs; /* fp32 */
    fs.precision = PRECISION_BF16;
    fs.bf16_kernels = BF16_KERNELS_FP32;
    tensors t;
    tensors_fill(&t, &fs);
    float *out[2], *din[2], *dw[2], *db[2];
    for (int r = 0; r < 2; r++) {
        out[r] = filled(t.yn);
        din[r] = filled(t.xn);
        dw[r] = filled(t.wn);
        db[r] = filled((size_t)c->c_out);
        run_route(out[r], din[r], dw[r], db[r], &t, r ? &ps : &fs, r == 0, c->bias);
    }
    check_equal("forward", c, out[0], out[1], t.yn);
    check_equal("input gradient", c, din[0], din[1], t.xn);
    check_equal("weight gradient", c, dw[0], dw[1], t.wn);
    /* The bias gradient sums the unrounded output gradient in both modes. */
    for (int r = 0; r < 2; r++) {
        free(out[r]);
        free(din[r]);
        free(dw[r]);
        free(db[r]);
    }
    tensors_free(&t);
}

static void fused_equals_rounded_then_fp32(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i]);
}

/* No rounded copy of a layer's weights: a late-stage convolution whose weights outweigh
 * its activations needs well under the weights' size of scratch more in bf16 than in fp32
 * (its columns in one chunk and one block of rounded weights). */
static void no_whole_layer_copy(void **state)
{
    (void)state;
    conv2d_shape fp, bf;
    conv2d_shape_init(&fp, 64, 2, 2, 512, 512, 3, 1, 1);
    bf = fp;
    bf.precision = PRECISION_BF16;
    bf.bf16_kernels = BF16_KERNELS_FP32;
    size_t weights = (size_t)512 * 512 * 9;
    size_t extra = conv2d_workspace_floats(&bf) - conv2d_workspace_floats(&fp);
    assert_true(conv2d_workspace_floats(&bf) >= conv2d_workspace_floats(&fp));
    assert_true(extra < weights * 3 / 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fused_equals_rounded_then_fp32),
        cmocka_unit_test(no_whole_layer_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
