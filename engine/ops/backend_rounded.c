/* backend_rounded.c: the bf16 mixed-precision contract on the fp32 kernels.
 *
 * bf16 mode means: the operands of a convolution (input, weights; in backward the output
 * gradient and the saved input) rounded to bfloat16, round to nearest even, products
 * accumulated in float32. A product of two bf16 values (8-bit significands) is exact in
 * float32 (24 bits), so the fp32 kernels of conv.c and winograd.c run on rounded operands
 * compute that contract, up to the order of the float32 sums; Winograd adds its
 * transforms' rounding, the same error the fp32 convolutions carry. Where the CPU's bf16
 * units are no faster than its float32 FMAs this is the fastest way to the contract
 * (bf16_kernels.c decides).
 *
 * The kernels round as they load (conv_fp32_* with rnd): Winograd's transforms round what
 * they read, im2col rounds what it gathers, the weight copy rounds the weights, and GEMMs
 * that read an operand in place round it in bounded blocks (gemm_bf16.h). So the results
 * are those of the fp32 kernels on operands rounded beforehand, bit for bit wherever no
 * GEMM is split into blocks, and the scratch is fp32's plus at most a rounded chunk of the
 * output gradient per part and those blocks; the batch runs whole, as in fp32. */
#include "backend.h"

static size_t rounded_workspace_floats(const conv2d_shape *s)
{
    return conv_fp32_workspace_floats(s, 1);
}

static void rounded_forward(float *out, const float *in, const float *w, const float *b,
                            float *ws, const conv2d_shape *s)
{
    conv_fp32_forward(out, in, w, b, ws, s, 1);
}

static void rounded_backward(float *din, float *dw, const float *dout, const float *in,
                             const float *w, float *ws, const conv2d_shape *s, int assign_din)
{
    conv_fp32_backward(din, dw, dout, in, w, ws, s, 1, assign_din);
}

const conv_backend conv_backend_rounded_bf16 = {
    .name = "rounded-bf16",
    .workspace_floats = rounded_workspace_floats,
    .forward_workspace_floats = rounded_workspace_floats,
    .forward = rounded_forward,
    .backward = rounded_backward,
};
