/* backend.h: the seam between the ops and the libraries that run their GEMMs (internal to
 * ops/). A backend runs the convolutions of one precision; conv2d_* pick the backend by the
 * shape's precision (and for bf16 its kernels), once per call, and the linear layers go
 * through conv2d_* as 1x1 convolutions when not in fp32. A new backend (a GPU one) is a
 * new file filling this table and a case in backend_for. */
#ifndef SGDRD_BACKEND_H
#define SGDRD_BACKEND_H

#include <stddef.h>

#include "ops.h"

typedef struct conv_backend {
    const char *name;
    /* Floats of scratch forward and backward need (the larger of the two). */
    size_t (*workspace_floats)(const conv2d_shape *s);
    /* Floats of scratch the forward alone needs. */
    size_t (*forward_workspace_floats)(const conv2d_shape *s);
    /* As conv2d_forward / conv2d_backward (backward leaves the bias gradient to conv.c). */
    void (*forward)(float *out, const float *in, const float *w, const float *b, float *ws,
                    const conv2d_shape *s);
    void (*backward)(float *din, float *dw, const float *dout, const float *in,
                     const float *w, float *ws, const conv2d_shape *s, int assign_din);
} conv_backend;

/* fp32: im2col or Winograd with OpenBLAS's sgemm (conv.c, winograd.c). */
extern const conv_backend conv_backend_openblas;
/* bf16 inputs, fp32 accumulation and outputs: oneDNN's convolutions (backend_onednn.c). */
extern const conv_backend conv_backend_onednn_bf16;
/* The same contract on the fp32 kernels, operands rounded to bf16 (backend_rounded.c). */
extern const conv_backend conv_backend_rounded_bf16;

/* The fp32 kernels behind both of the last two (conv.c, winograd.c): with rnd, every
 * operand rounded to bf16 as the kernels load it. Otherwise as the backend's members
 * (backward zeroes din first where asked to assign it). */
size_t conv_fp32_workspace_floats(const conv2d_shape *s, int rnd);
void conv_fp32_forward(float *out, const float *in, const float *w, const float *b, float *ws,
                       const conv2d_shape *s, int rnd);
void conv_fp32_backward(float *din, float *dw, const float *dout, const float *in,
                        const float *w, float *ws, const conv2d_shape *s, int rnd,
                        int assign_din);

#endif
