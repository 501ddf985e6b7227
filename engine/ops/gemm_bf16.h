/* gemm_bf16.h: float32 GEMMs on operands rounded to bf16 one bounded block at a time
 * (internal to ops/).
 *
 * The bf16 mode on the fp32 kernels rounds operands as the kernels load them; where a GEMM
 * reads an operand in place (the weights of a 1x1 or weight-major convolution, a 1x1
 * convolution's input and output gradient) there is no load to round in, and a rounded
 * copy of the whole operand can be the largest scratch of a step (a 512x512x3x3 layer's
 * weights). These split the GEMM instead and round one block of each operand at a time,
 * at most GEMM_BF16_BLOCK floats of it: large enough that each GEMM stays efficient. */
#ifndef SGDRD_GEMM_BF16_H
#define SGDRD_GEMM_BF16_H

#include <stddef.h>

#define GEMM_BF16_BLOCK (1u << 19)

/* Floats of buf that gemm_bf16 needs for these sizes. */
size_t gemm_bf16_floats(int m, int n, int k, int round_a);
/* c (m x n, row stride ldc) = a . op(w) + beta * c, where a is (m x k, row stride lda) and
 * rounded when round_a (else used as it is, already rounded), and op(w) is w^T for w
 * (n x k) when w_trans, else w (k x n); w is always rounded. Split over m and n, never k,
 * so each element sums its k products as one sgemm of the whole would order them. */
void gemm_bf16(float *c, int ldc, const float *a, int lda, int round_a, const float *w,
               int ldw, int w_trans, int m, int n, int k, float beta, float *buf);

/* Floats of buf that gemm_bf16_nt_ksplit needs. */
size_t gemm_bf16_nt_ksplit_floats(int n, int k);
/* c (m x n, row stride ldc) = a . w^T + beta * c for a (m x k, row stride lda) already
 * rounded and w (n x k, row stride ldw) rounded here, over blocks of k: the products of
 * each block are added to c in block order. For a large w against a small c (a
 * weight-major convolution's forward), where splitting n would pack all of a again for
 * every block. */
void gemm_bf16_nt_ksplit(float *c, int ldc, const float *a, int lda, const float *w, int ldw,
                         int m, int n, int k, float beta, float *buf);

/* Floats of buf that gemm_bf16_tn needs. */
size_t gemm_bf16_tn_floats(int m, int n, int k);
/* c (m x n, row stride ldc) += a^T b for a (k x m) and b (k x n), both rounded, in blocks
 * of rows of both (a weight gradient over blocks of pixels, summed in block order). */
void gemm_bf16_tn(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int m,
                  int n, int k, float *buf);

#endif
