/* test_conv_assign.c: conv2d_backward with assign_din writes the input gradient instead of
 * adding to it (net.c asks for that where a convolution writes its input's gradient first,
 * and skips zeroing it). On every backend (fp32, bf16 on the fp32 kernels, bf16 on
 * oneDNN) and on shapes that take each of their paths, the assigned gradient must equal
 * the one added to zeros, whatever din held before (NaN here), and the weight gradient
 * must still accumulate. oneDNN adds in chunks of images, so the cases include batches of
 * several chunks, and its scratch must stay below the whole input gradient. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/precision.h"

typedef struct assign_case {
    const char *name;
    int n, h, w, c_in, c_out, k, stride, pad;
} assign_case;

static const assign_case cases[] = {
    {"3x3 stride 1, 28x28", 4, 28, 28, 16, 16, 3, 1, 1},
    {"3x3 stride 1, 7x7", 3, 7, 7, 32, 32, 3, 1, 1},
    {"3x3 stride 2", 3, 9, 7, 5, 12, 3, 2, 1},
    {"1x1 stride 2", 2, 7, 7, 16, 24, 1, 2, 0},
    {"1x1 stride 1", 3, 5, 5, 13, 7, 1, 1, 0},
    {"one input channel", 2, 10, 10, 1, 8, 3, 1, 1},
    /* oneDNN adds its input gradient in chunks of images: several and a smaller last. */
    {"3x3 stride 2, chunks of images", 23, 28, 28, 32, 64, 3, 2, 1},
    {"1x1 stride 2, chunks of images", 23, 28, 28, 32, 64, 1, 2, 0},
};

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float *filled(size_t n)
{
    float *x = malloc(n * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        x[i] = (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    return x;
}

static void check_case(const assign_case *c, precision prec, bf16_kernels kernels)
{
    conv2d_shape s;
    conv2d_shape_init(&s, c->n, c->h, c->w, c->c_in, c->c_out, c->k, c->stride, c->pad);
    s.precision = prec;
    s.bf16_kernels = kernels;
    const size_t nin = (size_t)c->n * c->h * c->w * c->c_in;
    const size_t nout = (size_t)c->n * s.h_out * s.w_out * c->c_out;
    const size_t nw = (size_t)c->c_out * c->c_in * c->k * c->k;
    float *x = filled(nin), *w = filled(nw), *dy = filled(nout);
    float *dw_add = filled(nw), *dw_set = malloc(nw * sizeof(float));
    float *din_add = calloc(nin, sizeof(float)), *din_set = malloc(nin * sizeof(float));
    size_t wsf = conv2d_workspace_floats(&s);
    float *ws = malloc(sizeof(float) * (wsf ? wsf : 1));
    assert_true(dw_set && din_add && din_set && ws);
    memcpy(dw_set, dw_add, nw * sizeof(float));
    for (size_t i = 0; i < nin; i++)
        din_set[i] = NAN;
    conv2d_backward(din_add, dw_add, NULL, dy, x, w, ws, &s, 0);
    conv2d_backward(din_set, dw_set, NULL, dy, x, w, ws, &s, 1);
    for (size_t i = 0; i < nin; i++)
        if (!(din_set[i] == din_add[i]))
            fail_msg("%s: din[%zu] assigned %g, added to zeros %g", c->name, i,
                     (double)din_set[i], (double)din_add[i]);
    for (size_t i = 0; i < nw; i++)
        if (!(dw_set[i] == dw_add[i]))
            fail_msg("%s: dw[%zu] %g against %g", c->name, i, (double)dw_set[i],
                     (double)dw_add[i]);
    free(x);
    free(w);
    free(dy);
    free(dw_add);
    free(dw_set);
    free(din_add);
    free(din_set);
    free(ws);
}

static void check_all(precision prec, bf16_kernels kernels)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i], prec, kernels);
}

static void fp32_assigns(void **state)
{
    (void)state;
    check_all(PRECISION_FP32, BF16_KERNELS_AUTO);
}

static void bf16_fp32_kernels_assign(void **state)
{
    (void)state;
    check_all(PRECISION_BF16, BF16_KERNELS_FP32);
}

static void bf16_onednn_kernels_assign(void **state)
{
    (void)state;
    if (!precision_bf16_supported())
        skip();
    check_all(PRECISION_BF16, BF16_KERNELS_ONEDNN);
}

/* The input gradient that is added rather than assigned goes through scratch a chunk of
 * images at a time, so a convolution's scratch is not its whole input gradient: on
 * resnet_small's downsampling shapes at bs 128 the whole would be the plan's largest item. */
static void bf16_onednn_adds_in_chunks(void **state)
{
    (void)state;
    if (!precision_bf16_supported())
        skip();
    static const int shapes[][5] = {{32, 64, 3, 2, 1}, {32, 64, 1, 2, 0}};
    for (int i = 0; i < 2; i++) {
        conv2d_shape s;
        conv2d_shape_init(&s, 128, 28, 28, shapes[i][0], shapes[i][1], shapes[i][2],
                          shapes[i][3], shapes[i][4]);
        s.precision = PRECISION_BF16;
        s.bf16_kernels = BF16_KERNELS_ONEDNN;
        size_t din = (size_t)128 * 28 * 28 * shapes[i][0];
        if (!(conv2d_workspace_floats(&s) < din))
            fail_msg("k%d: scratch %zu floats, the input gradient %zu", shapes[i][2],
                     conv2d_workspace_floats(&s), din);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fp32_assigns),
        cmocka_unit_test(bf16_fp32_kernels_assign),
        cmocka_unit_test(bf16_onednn_kernels_assign),
        cmocka_unit_test(bf16_onednn_adds_in_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
