/* linear.c: fully connected layer, out = in · w^T + b, on cblas_sgemm. */
#include "ops.h"

#include <cblas.h>
#include <string.h>

void linear_forward(float *out, const float *in, const float *w, const float *b, int n,
                    int in_f, int out_f)
{
    float beta = 0.0f;
    if (b) {
        for (int i = 0; i < n; i++)
            memcpy(out + (size_t)i * out_f, b, (size_t)out_f * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out_f, in_f, 1.0f, in, in_f, w,
                in_f, beta, out, out_f);
}

void linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                     const float *w, int n, int in_f, int out_f)
{
    if (db) {
        for (int o = 0; o < out_f; o++) {
            double acc = 0.0;
            for (int i = 0; i < n; i++)
                acc += dout[(size_t)i * out_f + o];
            db[o] += (float)acc;
        }
    }
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_f, in_f, n, 1.0f, dout,
                    out_f, in, in_f, 1.0f, dw, in_f);
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in_f, out_f, 1.0f, dout,
                    out_f, w, in_f, 1.0f, din, in_f);
}
