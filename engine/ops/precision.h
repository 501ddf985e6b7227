/* precision.h: the arithmetic a run's convolutions and linear layers use, and whether this
 * CPU can run it.
 *
 * fp32: every GEMM in float32 (im2col or Winograd on OpenBLAS, see conv.c).
 * bf16: mixed precision as PyTorch's CPU autocast: the inputs of the convolution and linear
 * GEMMs (activations, weights, output gradients) are rounded to bfloat16 and multiplied
 * with float32 accumulation; outputs, gradients, master weights, optimizer state,
 * BatchNorm and the loss stay float32. Two sets of kernels compute that contract
 * (bf16_kernels below): oneDNN's AVX512_BF16 kernels, or the fp32 kernels on operands
 * rounded to bf16 (a product of two bf16 values is exact in float32, so only the
 * accumulation order differs). */
#ifndef SGDRD_PRECISION_H
#define SGDRD_PRECISION_H

#include <stddef.h>

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
 * by ONEDNN_MAX_CPU_ISA), else 0. Where oneDNN cannot be loaded: 1 when the CPU has
 * AVX512_BF16. Asks oneDNN once per process, in a child process unless it is loaded here. */
int precision_bf16_supported(void);

/* 1 when oneDNN (libdnnl.so.2) can be loaded here, else 0 (asked as above). */
int precision_onednn_loadable(void);

/* Which kernels run the bf16 mode. AUTO (0) is "not chosen yet": a shape or net with AUTO
 * takes bf16_kernels_choice(). */
typedef enum bf16_kernels {
    BF16_KERNELS_AUTO = 0,
    BF16_KERNELS_ONEDNN = 1, /* oneDNN's bf16 convolutions and matmul (backend_onednn.c) */
    BF16_KERNELS_FP32 = 2,   /* OpenBLAS / Winograd on bf16-rounded operands (backend_rounded.c) */
} bf16_kernels;

/* "onednn", "fp32" (or "auto"). */
const char *bf16_kernels_name(bf16_kernels k);

/* Parses "onednn" or "fp32" into *out: 0, or -EINVAL for anything else. */
int bf16_kernels_parse(const char *s, bf16_kernels *out);

/* This process's kernels for bf16, fixed at the first call: SGDRD_BF16_KERNELS=onednn|fp32
 * when set (another value, or onednn where oneDNN cannot be loaded, is reported on stderr
 * and ignored), else the faster of a bf16 oneDNN matmul and cblas_sgemm of the same shape,
 * timed once on one core in a child process (tens of milliseconds, see bf16_kernels.c);
 * fp32 where oneDNN cannot be loaded. Never AUTO. Thread-safe. */
bf16_kernels bf16_kernels_choice(void);

/* 0 when kernels k can run here; -ENOTSUP for BF16_KERNELS_ONEDNN where oneDNN cannot be
 * loaded, with the reason in err (errlen bytes, field name first). */
int bf16_kernels_check(bf16_kernels k, char *err, size_t errlen);

/* The instruction set oneDNN dispatches to ("avx512_core_bf16", ...), or "unavailable" where
 * oneDNN cannot be loaded, for logs and health. */
const char *precision_onednn_isa(void);

#endif
