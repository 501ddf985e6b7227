/* winograd.h: Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (internal to ops/). */
#ifndef SGDRD_WINOGRAD_H
#define SGDRD_WINOGRAD_H

#include <stddef.h>

#include "ops.h"

/* Whether conv2d_* uses the Winograd path for this shape: 3x3, stride 1, at least 16
 * channels in and out, and outputs of at least 4x4 (smaller maps waste their tiles). */
int wino_applies(const conv2d_shape *s);
size_t wino_workspace_floats(const conv2d_shape *s);
/* out = conv(in, w) (+ b); as conv2d_forward. With rnd, in and w are rounded to bf16 as
 * the transforms load them (the bf16 mode on the fp32 kernels); the workspace is the same. */
void wino_forward(float *out, const float *in, const float *w, const float *b, float *ws,
                  const conv2d_shape *s, int rnd);
/* din += ..., dw += ...; either may be NULL (the bias gradient is conv.c's). With rnd, dout,
 * in and w are rounded to bf16 as the transforms load them. */
void wino_backward(float *din, float *dw, const float *dout, const float *in, const float *w,
                   float *ws, const conv2d_shape *s, int rnd);

#endif
