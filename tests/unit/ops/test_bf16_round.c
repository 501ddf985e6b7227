/* test_bf16_round.c: both kernels of the bf16 mode round their operands as PyTorch's
 * .to(torch.bfloat16) does (nearest, ties to even; Inf kept, overflow to Inf, NaN kept),
 * seen through a 1x1 convolution by the weight 1, whose output is the rounded input, and
 * through the weight gradient of a 3x3 convolution of a 1x1 image under an output
 * gradient of 1, whose centre taps are the rounded input (the columns a weight gradient
 * gathers, rounded channel by channel). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static float of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

/* Inputs and their bf16 values, worked out by hand. (-0.0 is left out: a GEMM's sums
 * start from +0, so the sign of a zero does not show through the convolution.) */
typedef struct round_case {
    float in, want;
} round_case;

static const round_case *cases(int *count)
{
    static round_case c[16];
    int i = 0;
    c[i++] = (round_case){1.0f, 1.0f};
    c[i++] = (round_case){1.0f + 0x1p-8f, 1.0f};                    /* tie: to even (down) */
    c[i++] = (round_case){1.0f + 0x3p-8f, 1.0f + 0x4p-8f};          /* tie: to even (up) */
    c[i++] = (round_case){1.0f + 0x1p-8f + 0x1p-20f, 1.0f + 0x1p-7f}; /* past the tie */
    c[i++] = (round_case){-(1.0f + 0x1p-9f), -1.0f};
    c[i++] = (round_case){3.14159265f, 3.140625f};
    c[i++] = (round_case){FLT_MAX, INFINITY};                       /* overflow */
    c[i++] = (round_case){-FLT_MAX, -INFINITY};
    c[i++] = (round_case){INFINITY, INFINITY};
    c[i++] = (round_case){-INFINITY, -INFINITY};
    c[i++] = (round_case){NAN, NAN};
    c[i++] = (round_case){of_bits(0x7f800001u), NAN};              /* low-payload NaN */
    c[i++] = (round_case){0x1.0101p-120f, 0x1.02p-120f};
    *count = i;
    return c;
}

/* got is case i % nc rounded: its bits, or a NaN for a NaN. */
static void check_rounded(const round_case *c, int nc, int i, float got)
{
    float want = c[i % nc].want;
    if (isnan(want)) {
        assert_true(isnan(got));
        return;
    }
    if (bits(got) != bits(want))
        print_error("case %d: %a gave %a, want %a\n", i % nc, c[i % nc].in, got, want);
    assert_int_equal(bits(got), bits(want));
}

static void check_kernels(bf16_kernels kernels)
{
    enum { REPEAT = 5 }; /* long enough for the vector loop and its tail */
    int nc;
    const round_case *c = cases(&nc);
    int n = nc * REPEAT;
    conv2d_shape s;
    conv2d_shape_init(&s, n, 1, 1, 1, 1, 1, 1, 0);
    s.precision = PRECISION_BF16;
    s.bf16_kernels = kernels;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), w = 1.0f;
    size_t wsf = conv2d_workspace_floats(&s);
    float *ws = malloc(sizeof(float) * (wsf ? wsf : 1));
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(ws);
    for (int i = 0; i < n; i++)
        x[i] = c[i % nc].in;
    conv2d_forward(y, x, &w, NULL, ws, &s);
    for (int i = 0; i < n; i++)
        check_rounded(c, nc, i, y[i]);
    free(x);
    free(y);
    free(ws);
}

/* A 3x3 convolution (pad 1) of one 1x1 image with c_in channels into one output: under an
 * output gradient of 1 its weight gradient's centre taps are the rounded input, the other
 * taps the padding's zeros. c_in 3 takes the stem's path, 37 the vector loop and its tail. */
static void check_weight_grad(bf16_kernels kernels, int c_in)
{
    int nc;
    const round_case *c = cases(&nc);
    conv2d_shape s;
    conv2d_shape_init(&s, 1, 1, 1, c_in, 1, 3, 1, 1);
    s.precision = PRECISION_BF16;
    s.bf16_kernels = kernels;
    float *x = malloc(sizeof(float) * c_in), *w = calloc((size_t)c_in * 9, sizeof(float));
    float *dw = calloc((size_t)c_in * 9, sizeof(float)), dy = 1.0f;
    size_t wsf = conv2d_workspace_floats(&s);
    float *ws = malloc(sizeof(float) * (wsf ? wsf : 1));
    assert_true(x && w && dw && ws);
    for (int i = 0; i < c_in; i++)
        x[i] = c[i % nc].in;
    conv2d_backward(NULL, dw, NULL, &dy, x, w, ws, &s, 0);
    for (int i = 0; i < c_in; i++) {
        check_rounded(c, nc, i, dw[(size_t)i * 9 + 4]);
        /* Only an input finite in bf16 leaves the padding's taps at zero on every path:
         * oneDNN's backward-weights kernel may multiply an Inf or NaN by a padding zero. */
        for (int t = 0; t < 9 && isfinite(c[i % nc].want); t++)
            assert_true(t == 4 || dw[(size_t)i * 9 + t] == 0.0f);
    }
    free(x);
    free(w);
    free(dw);
    free(ws);
}

static void weight_grads_round_as_pytorch(void **state)
{
    (void)state;
    check_weight_grad(BF16_KERNELS_FP32, 3);
    check_weight_grad(BF16_KERNELS_FP32, 37);
    if (!precision_bf16_supported())
        skip();
    check_weight_grad(BF16_KERNELS_ONEDNN, 3);
    check_weight_grad(BF16_KERNELS_ONEDNN, 37);
}

static void rounded_fp32_kernels_round_as_pytorch(void **state)
{
    (void)state;
    check_kernels(BF16_KERNELS_FP32);
}

static void onednn_kernels_round_as_pytorch(void **state)
{
    (void)state;
    if (!precision_bf16_supported())
        skip();
    check_kernels(BF16_KERNELS_ONEDNN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rounded_fp32_kernels_round_as_pytorch),
        cmocka_unit_test(onednn_kernels_round_as_pytorch),
        cmocka_unit_test(weight_grads_round_as_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
