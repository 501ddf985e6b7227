/* ops.h: the engine's layer operations, each a forward and a backward function.
 *
 * Conventions (in the style of llm.c):
 * - Activations are float32 in NHWC order: element (n, y, x, c) of a (N, H, W, C) tensor
 *   lives at ((n*H + y)*W + x)*C + c. A 2-D tensor (N, C) is the 1x1 case of that.
 * - Parameters keep PyTorch's layout: conv weights (C_out, C_in, K, K) (OIHW), linear
 *   weights (out, in).
 * - Outputs first, inputs next, sizes last.
 * - Backward functions ACCUMULATE (+=) into every gradient they write (din, dw, db, ...),
 *   so the caller zeroes gradients once per step. Any gradient pointer may be NULL, in
 *   which case that gradient is not computed (frozen parameters, the network's input).
 * - Nothing here allocates: scratch memory comes from the caller (see *_workspace_floats).
 * - Loops are parallelised with OpenMP where it pays. Results are bit-identical from run
 *   to run at a given thread count; they depend on the thread count only through a
 *   convolution's parts (its weight gradient is summed per block of images, see
 *   conv2d_shape_init) and OpenBLAS's own summation order. BatchNorm, pools, ReLU, add
 *   and dropout give the same bits for any thread count.
 * - 3x3 stride-1 convolutions with at least 16 channels in and out use Winograd's
 *   F(2x2, 3x3) (2.25x fewer multiplications; accuracy as im2col to ~1e-6 relative).
 * - A convolution's precision (conv2d_shape.precision, see precision.h) picks its backend
 *   (backend.h): fp32 as above; bf16 on oneDNN, whose results depend on the thread count
 *   through oneDNN's own blocking and are bit-identical from run to run at a given one, or
 *   on the fp32 kernels with operands rounded to bf16 (conv2d_shape.bf16_kernels).
 */
#ifndef SGDRD_OPS_H
#define SGDRD_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "precision.h"

/* ---- conv2d: im2col + cblas_sgemm; 1x1 stride-1 pad-0 skips im2col ---------------- */

typedef struct conv2d_shape {
    int n, h, w, c_in;   /* input (N, H, W, C_in) */
    int c_out, k, stride, pad;
    int h_out, w_out;    /* filled by conv2d_shape_init */
    int parts;           /* filled by conv2d_shape_init: image blocks run in parallel */
    precision precision; /* PRECISION_FP32 after conv2d_shape_init; set before use */
    bf16_kernels bf16_kernels; /* of bf16: AUTO after conv2d_shape_init (the process's
                                * bf16_kernels_choice()); a net sets its own */
} conv2d_shape;

/* Fills h_out, w_out: floor((h + 2*pad - k) / stride) + 1, and parts from the OpenMP
 * thread count at the time (call it after blas_startup): the batch is split into that many
 * blocks of images, each convolved by one thread with single-threaded GEMMs in its own
 * slice of the workspace. Results depend on parts, never on scheduling. */
void conv2d_shape_init(conv2d_shape *s, int n, int h, int w, int c_in, int c_out, int k,
                       int stride, int pad);
/* Floats of scratch that conv2d_forward/backward need for this shape (0 for 1x1 s1 p0). */
size_t conv2d_workspace_floats(const conv2d_shape *s);
/* Floats of scratch that conv2d_forward alone needs (at most conv2d_workspace_floats): a
 * plan without a backward gives a convolution no more. */
size_t conv2d_forward_workspace_floats(const conv2d_shape *s);

/* out (N, H_out, W_out, C_out) = conv(in (N, H, W, C_in), w (C_out, C_in, K, K)) + b (C_out).
 * b may be NULL. out is overwritten. ws: conv2d_forward_workspace_floats(s) floats. */
void conv2d_forward(float *out, const float *in, const float *w, const float *b, float *ws,
                    const conv2d_shape *s);
/* din (N,H,W,C_in) += ..., dw (C_out,C_in,K,K) += ..., db (C_out) += ...; each may be NULL.
 * With assign_din, din = ... instead: what it held is never read, so a caller that would
 * zero it first need not. */
void conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                     const float *w, float *ws, const conv2d_shape *s, int assign_din);

/* ---- batchnorm over the last axis of an (M, C) view: 2d (M = N*H*W) and 1d (M = N) ---- */

/* Training (training != 0): normalises with the batch statistics, saves mean (C) and
 * rstd = 1/sqrt(var_biased + eps) (C) for backward, and updates running_mean/running_var
 * with momentum (PyTorch: r = (1-momentum)*r + momentum*batch, var unbiased: *M/(M-1));
 * running_mean/running_var may be NULL in training (then nothing is tracked).
 * Eval: uses running statistics, writes mean/rstd from them, leaves the running ones alone.
 * out may alias in only when no backward will read in (backward reads in). */
void batchnorm_forward(float *out, float *mean, float *rstd, float *running_mean,
                       float *running_var, const float *in, const float *gamma,
                       const float *beta, int m, int c, int training, float momentum,
                       float eps);
/* The normalisation pass of batchnorm_forward alone: out = (in - mean) * (rstd * gamma) +
 * beta with given statistics, bit for bit what batchnorm_forward wrote with them, then
 * optionally + residual (M, C) and ReLU, bit for bit what add_forward and relu_forward
 * would make of it (the net rebuilds a dropped training-mode output this way in one
 * pass). residual may be NULL; out may alias in. */
void batchnorm_apply(float *out, const float *in, const float *mean, const float *rstd,
                     const float *gamma, const float *beta, const float *residual, int relu,
                     int m, int c);
/* din (M,C) +=, dgamma (C) +=, dbeta (C) +=; mean/rstd as saved by forward with the same
 * training flag (in eval mode the statistics are constants, so din = dout*gamma*rstd). */
void batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                        const float *in, const float *mean, const float *rstd,
                        const float *gamma, int m, int c, int training);

/* SyncBN: data-parallel ranks each hold M_r rows of one batch; sum adds v (n doubles) over
 * every rank in place (the same call on each rank). With it, a training forward computes
 * the statistics of all M = sum M_r rows and the backward's din uses the sums of all
 * ranks, while dgamma and dbeta stay this rank's part (the gradient sum adds them). */
typedef struct bn_sync {
    int (*sum)(void *ctx, double *v, size_t n);
    void *ctx;
} bn_sync;
/* batchnorm_forward and batchnorm_backward over the rows of every rank; sync NULL is the
 * plain call (bit for bit). With assign, backward writes din instead of adding to it
 * (bit for bit what adding to a zeroed din gives) and din may alias dout. */
void batchnorm_forward_sync(float *out, float *mean, float *rstd, float *running_mean,
                            float *running_var, const float *in, const float *gamma,
                            const float *beta, int m, int c, int training, float momentum,
                            float eps, const bn_sync *sync);
void batchnorm_backward_sync(float *din, float *dgamma, float *dbeta, const float *dout,
                             const float *in, const float *mean, const float *rstd,
                             const float *gamma, int m, int c, int training, int assign,
                             const bn_sync *sync);
/* The statistics half of batchnorm_forward_sync (mean, rstd, running statistics): with
 * batchnorm_apply after it, bit for bit batchnorm_forward_sync, so that the net can fuse
 * the residual add and ReLU that follow into the normalisation pass. */
void batchnorm_stats_sync(float *mean, float *rstd, float *running_mean, float *running_var,
                          const float *in, int m, int c, int training, float momentum,
                          float eps, const bn_sync *sync);

/* ---- ReLU: out may alias in (in-place); backward reads the output ---------------------- */

void relu_forward(float *out, const float *in, size_t n);
/* din += dout * (out > 0). din may alias dout (then din is overwritten with the product:
 * only valid when dout is din's only contribution, which the net guarantees for in-place). */
void relu_backward(float *din, const float *dout, const float *out, size_t n);

/* ---- SiLU (swish): out = x * sigmoid(x); out must not alias in; backward reads the
 * input ------------------------------------------------------------------------------ */

void silu_forward(float *out, const float *in, size_t n);
/* din += dout * s * (1 + x * (1 - s)), s = sigmoid(x); din must not alias dout or in. */
void silu_backward(float *din, const float *dout, const float *in, size_t n);

/* ---- residual add: out = a + b (out may alias a or b) ------------------------------- */

void add_forward(float *out, const float *a, const float *b, size_t n);
/* da += dout, db += dout; either may be NULL; neither may alias dout. */
void add_backward(float *da, float *db, const float *dout, size_t n);
/* d = 0 + dout: bit for bit add_backward into a zeroed d, without zeroing or reading it. */
void add_backward_assign(float *d, const float *dout, size_t n);

/* ---- max pool (any k, stride, pad; padding never wins) ------------------------------ */

typedef struct pool2d_shape {
    int n, h, w, c, k, stride, pad;
    int h_out, w_out; /* filled by pool2d_shape_init */
} pool2d_shape;

void pool2d_shape_init(pool2d_shape *s, int n, int h, int w, int c, int k, int stride,
                       int pad);
/* out (N,H_out,W_out,C); argmax (same count) gets the flat input index of each max, or is
 * NULL where no backward will read it. */
void maxpool2d_forward(float *out, int32_t *argmax, const float *in, const pool2d_shape *s);
void maxpool2d_backward(float *din, const float *dout, const int32_t *argmax,
                        const pool2d_shape *s);
/* maxpool2d_backward followed by the backward of a ReLU before the pool, in one pass: only
 * outputs with out > 0 pass their gradient. The ReLU's output at an argmax is the pooled
 * output there, so din is bit for bit what relu_backward makes of maxpool2d_backward's
 * (din zeroed first, as the net does), without reading the ReLU's output. */
void maxpool2d_backward_relu(float *din, const float *dout, const int32_t *argmax,
                             const float *out, const pool2d_shape *s);

/* ---- adaptive pools to 1x1 over an (N, HW, C) view, and the concat pool ---------------- */

/* out (N, C) = mean over HW. */
void avgpool_global_forward(float *out, const float *in, int n, int hw, int c);
void avgpool_global_backward(float *din, const float *dout, int n, int hw, int c);
/* out (N, C) = max over HW; argmax (N, C) = the spatial index 0..HW-1 of the max. */
void maxpool_global_forward(float *out, int32_t *argmax, const float *in, int n, int hw,
                            int c);
void maxpool_global_backward(float *din, const float *dout, const int32_t *argmax, int n,
                             int hw, int c);
/* fastai AdaptiveConcatPool2d: out (N, 2C) = [max over HW (C) | mean over HW (C)]. */
void concatpool_forward(float *out, int32_t *argmax, const float *in, int n, int hw, int c);
void concatpool_backward(float *din, const float *dout, const int32_t *argmax, int n,
                         int hw, int c);

/* ---- linear: out (N, O) = in (N, I) · w (O, I)^T + b (O); b may be NULL --------------- */

void linear_forward(float *out, const float *in, const float *w, const float *b, int n,
                    int in_f, int out_f);
void linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                     const float *w, int n, int in_f, int out_f);

/* ---- dropout (inverted): kept elements are scaled by 1/(1-p) ------------------------- */

/* mask (n) gets 0 or 1/(1-p) per element, drawn from the engine RNG state *rng (advanced);
 * out = in * mask; out may alias in. p == 0 writes a mask of ones. */
void dropout_forward(float *out, float *mask, const float *in, size_t n, float p,
                     uint64_t *rng);
void dropout_backward(float *din, const float *dout, const float *mask, size_t n);

/* ---- losses (mean over the batch) --------------------------------------------------- */

/* Softmax cross-entropy over logits (N, C) with integer labels (N) and label smoothing
 * eps in [0, 1) (torch.nn.CrossEntropyLoss(label_smoothing=eps): the target is
 * (1 - eps) * onehot + eps / C). Writes probs (N, C) and returns the mean loss.
 * Numerically stable (max-subtracted log-sum-exp). */
float softmax_xent_forward(float *probs, const float *logits, const int32_t *labels, int n,
                           int c, float eps);
/* dlogits += (probs - (1 - eps) * onehot(labels) - eps / C) / N. */
void softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels, int n,
                           int c, float eps);
/* Sigmoid binary cross-entropy with targets (N, C) in {0,1}, mean over all N*C elements
 * (torch.nn.BCEWithLogitsLoss). Writes probs = sigmoid(logits) and returns the loss. */
float bce_logits_forward(float *probs, const float *logits, const float *targets, int n,
                         int c);
/* dlogits += (probs - targets) / (N*C). */
void bce_logits_backward(float *dlogits, const float *probs, const float *targets, int n,
                         int c);

#endif
