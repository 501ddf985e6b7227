/* bf16_round.h: rounding float32 values to bfloat16 values held in float32 (internal to
 * ops/). The bf16 mode on the fp32 kernels rounds every operand of a convolution or linear
 * layer this way as the kernels load it (conv.c, winograd.c, gemm_bf16.c).
 *
 * Round to nearest, ties to even, as PyTorch's .to(torch.bfloat16) and oneDNN round: Inf
 * stays Inf, a finite value past bf16's range becomes Inf, a NaN stays a (quiet) NaN.
 * Branch-free, so loops over it vectorise. */
#ifndef SGDRD_BF16_ROUND_H
#define SGDRD_BF16_ROUND_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) float bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    uint32_t q = (u & 0xffff0000u) | 0x00400000u;
    r = (int32_t)(u & 0x7fffffffu) > 0x7f800000 ? q : r;
    memcpy(&x, &r, sizeof(r));
    return x;
}

/* The bfloat16 bits of bf16_round(x): what a bf16 tensor stores. */
static inline __attribute__((always_inline)) uint16_t bf16_bits(float x)
{
    float r = bf16_round(x);
    uint32_t u;
    memcpy(&u, &r, sizeof(u));
    return (uint16_t)(u >> 16);
}

/* dst[i] = bf16_bits(src[i]) for n floats, on the calling thread. */
void bf16_pack_span(uint16_t *restrict dst, const float *restrict src, size_t n);

/* dst[i] = bf16_round(src[i]) for n floats, on the calling thread. */
void bf16_round_span(float *restrict dst, const float *restrict src, size_t n);

/* x[i] = bf16_round(x[i]) for n floats, on the calling thread. */
void bf16_round_inplace(float *x, size_t n);

/* dst (rows x cols, row stride ldd) = src (row stride lds) rounded; split over threads when
 * large and not called from inside a parallel region. */
void bf16_round_block(float *dst, size_t ldd, const float *src, size_t lds, size_t rows,
                      size_t cols);

#endif
