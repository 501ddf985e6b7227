/* precision.h: the arithmetic a run's convolutions and linear layers use, and whether this
 * CPU can run it.
 *
 * fp32: every GEMM in float32 (im2col or Winograd on OpenBLAS, see conv.c).
 * bf16: mixed precision as PyTorch's CPU autocast: the inputs of the convolution and linear
 * GEMMs (activations, weights, output gradients) are rounded to bfloat16 and multiplied
 * with float32 accumulation on oneDNN's AVX512_BF16 kernels; outputs, gradients, master
 * weights, optimizer state, BatchNorm and the loss stay float32. */
#ifndef SGDRD_PRECISION_H
#define SGDRD_PRECISION_H

typedef enum precision {
    PRECISION_FP32 = 0,
    PRECISION_BF16 = 1,
} precision;

/* "fp32" or "bf16". */
const char *precision_name(precision p);

/* Parses "fp32", "bf16" or "auto" (bf16 where the CPU supports it, fp32 elsewhere) into *out.
 * Returns 0, -EINVAL for any other string, or -ENOTSUP for "bf16" on a CPU without native
 * bf16 arithmetic (AVX512_BF16). */
int precision_parse(const char *s, precision *out);

/* 1 when oneDNN dispatches to native bf16 kernels here (AVX512_BF16 or newer, and not capped
 * by ONEDNN_MAX_CPU_ISA), else 0. */
int precision_bf16_supported(void);

/* The instruction set oneDNN dispatches to ("avx512_core_bf16", ...), for logs and health. */
const char *precision_onednn_isa(void);

#endif
