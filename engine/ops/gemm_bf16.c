/* gemm_bf16.c: the blocked GEMMs of gemm_bf16.h. Blocks run one after another, each GEMM
 * threaded by OpenBLAS (or single-threaded inside a parallel region); the rounding of a
 * block splits over threads itself. */
#include "gemm_bf16.h"
#include "bf16_round.h"

#include <cblas.h>

static int min_i(long a, long b)
{
    return (int)(a < b ? a : b);
}

/* Rows of a (k floats each) per block: all of them when they fit. */
static int rows_per_block(int rows, int k)
{
    long fit = (long)(GEMM_BF16_BLOCK / (size_t)k);
    return min_i(rows, fit < 1 ? 1 : fit);
}

static size_t pad16(size_t f)
{
    return (f + 15) / 16 * 16;
}

size_t gemm_bf16_floats(int m, int n, int k, int round_a)
{
    size_t wf = (size_t)rows_per_block(n, k) * k;
    size_t af = round_a ? (size_t)rows_per_block(m, k) * k : 0;
    return pad16(wf) + af;
}

/* wb <- columns [n0, n0 + nb) of op(w), rounded, laid out as op(w) would be (row stride k
 * when w_trans, nb otherwise). */
static void round_w_block(float *wb, const float *w, int ldw, int w_trans, int n0, int nb,
                          int k)
{
    if (w_trans)
        bf16_round_block(wb, (size_t)k, w + (size_t)n0 * ldw, (size_t)ldw, (size_t)nb,
                         (size_t)k);
    else
        bf16_round_block(wb, (size_t)nb, w + n0, (size_t)ldw, (size_t)k, (size_t)nb);
}

void gemm_bf16(float *c, int ldc, const float *a, int lda, int round_a, const float *w,
               int ldw, int w_trans, int m, int n, int k, float beta, float *buf)
{
    const int nb_max = rows_per_block(n, k), mb_max = rows_per_block(m, k);
    float *wb = buf, *ab = buf + pad16((size_t)nb_max * k);
    for (int n0 = 0; n0 < n; n0 += nb_max) {
        const int nb = min_i(nb_max, n - n0);
        round_w_block(wb, w, ldw, w_trans, n0, nb, k);
        for (int m0 = 0; m0 < m; m0 += mb_max) {
            const int mb = min_i(mb_max, m - m0);
            const float *ap = a + (size_t)m0 * lda;
            int ldap = lda;
            if (round_a) {
                /* With one block of rows, the first pass's copy serves every later one. */
                if (n0 == 0 || mb_max < m)
                    bf16_round_block(ab, (size_t)k, ap, (size_t)lda, (size_t)mb, (size_t)k);
                ap = ab;
                ldap = k;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, w_trans ? CblasTrans : CblasNoTrans, mb,
                        nb, k, 1.0f, ap, ldap, wb, w_trans ? k : nb, beta,
                        c + (size_t)m0 * ldc + n0, ldc);
        }
    }
}

/* Columns of w per block of gemm_bf16_nt_ksplit. */
static int k_block(int n, int k)
{
    return rows_per_block(k, n);
}

size_t gemm_bf16_nt_ksplit_floats(int n, int k)
{
    return (size_t)k_block(n, k) * n;
}

void gemm_bf16_nt_ksplit(float *c, int ldc, const float *a, int lda, const float *w, int ldw,
                         int m, int n, int k, float beta, float *buf)
{
    const int kb_max = k_block(n, k);
    for (int k0 = 0; k0 < k; k0 += kb_max) {
        const int kb = min_i(kb_max, k - k0);
        bf16_round_block(buf, (size_t)kb, w + k0, (size_t)ldw, (size_t)n, (size_t)kb);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, kb, 1.0f, a + k0, lda, buf,
                    kb, k0 == 0 ? beta : 1.0f, c, ldc);
    }
}

/* Rows of a and b per block. */
static int tn_rows(int m, int n, int k)
{
    long fit = (long)(GEMM_BF16_BLOCK / ((size_t)m + (size_t)n));
    return min_i(k, fit < 1 ? 1 : fit);
}

size_t gemm_bf16_tn_floats(int m, int n, int k)
{
    size_t kb = (size_t)tn_rows(m, n, k);
    return pad16(kb * m) + kb * n;
}

void gemm_bf16_tn(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int m,
                  int n, int k, float *buf)
{
    const int kb_max = tn_rows(m, n, k);
    float *ab = buf, *bb = buf + pad16((size_t)kb_max * m);
    for (int k0 = 0; k0 < k; k0 += kb_max) {
        const int kb = min_i(kb_max, k - k0);
        bf16_round_block(ab, (size_t)m, a + (size_t)k0 * lda, (size_t)lda, (size_t)kb,
                         (size_t)m);
        bf16_round_block(bb, (size_t)n, b + (size_t)k0 * ldb, (size_t)ldb, (size_t)kb,
                         (size_t)n);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, kb, 1.0f, ab, m, bb, n,
                    1.0f, c, ldc);
    }
}
