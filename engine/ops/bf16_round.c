/* bf16_round.c: the rounding loops of bf16_round.h. */
#include "bf16_round.h"

#include <omp.h>

/* Floats from which a block is rounded on several threads. */
#define ROUND_PAR_MIN 65536

#if defined(__x86_64__)
#define ROUND_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ROUND_KERNEL
#endif

ROUND_KERNEL void bf16_round_span(float *restrict dst, const float *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_round(src[i]);
}

ROUND_KERNEL void bf16_pack_span(uint16_t *restrict dst, const float *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_bits(src[i]);
}

ROUND_KERNEL void bf16_round_inplace(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = bf16_round(x[i]);
}

void bf16_round_block(float *dst, size_t ldd, const float *src, size_t lds, size_t rows,
                      size_t cols)
{
    if (ldd == cols && lds == cols && rows * cols < ROUND_PAR_MIN) {
        bf16_round_span(dst, src, rows * cols);
        return;
    }
    const int par = rows * cols >= ROUND_PAR_MIN && !omp_in_parallel();
    if (ldd == cols && lds == cols) {
        /* One contiguous span: split it evenly rather than by rows. */
        const size_t n = rows * cols, blk = 16384, nb = (n + blk - 1) / blk;
#pragma omp parallel for schedule(static) if (par)
        for (size_t b = 0; b < nb; b++) {
            size_t i0 = b * blk, len = n - i0 < blk ? n - i0 : blk;
            bf16_round_span(dst + i0, src + i0, len);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (par)
    for (size_t r = 0; r < rows; r++)
        bf16_round_span(dst + r * ldd, src + r * lds, cols);
}
