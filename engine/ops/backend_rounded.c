/* backend_rounded.c: the bf16 mixed-precision contract on the fp32 kernels.
 *
 * bf16 mode means: the operands of a convolution (input, weights; in backward the output
 * gradient and the saved input) rounded to bfloat16, round to nearest even, products
 * accumulated in float32. A product of two bf16 values (8-bit significands) is exact in
 * float32 (24 bits), so the fp32 kernels of conv.c and winograd.c run on the rounded
 * operands compute that contract, up to the order of the float32 sums; Winograd adds its
 * transforms' rounding, the same error the fp32 convolutions carry. Where the CPU's bf16
 * units are no faster than its float32 FMAs this is the fastest way to the contract
 * (bf16_kernels.c decides).
 *
 * The rounded operands are float32 values in scratch. To keep that scratch small the
 * batch runs in chunks of whole images (at least one per thread, about CHUNK_FLOATS
 * rounded floats each); every chunk is an fp32 convolution of its own on the same
 * weights, whose weight gradient adds into dw. The chunking is fixed by the shape, so
 * results repeat bit for bit at a given thread count.
 *
 * Workspace: [rounded weights][rounded input chunk][rounded output-gradient chunk][the fp32
 * backend's workspace for a chunk]. */
#include "backend.h"

#include <stdint.h>
#include <string.h>

/* Rounded floats (input plus output gradient) per chunk of images: 2 MB, small beside the
 * activations; larger chunks were no faster. */
#define CHUNK_FLOATS (1u << 19)
/* Floats per block of the rounding loop, and the size from which it runs in parallel. */
#define ROUND_BLOCK 16384
#define ROUND_PAR_MIN (4 * ROUND_BLOCK)

#if defined(__x86_64__)
#define ROUND_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ROUND_KERNEL
#endif

/* dst <- src rounded to bf16 (nearest even), as float32 values: Inf stays Inf, a finite
 * value past bf16's range becomes Inf, a NaN stays a (quiet) NaN, as PyTorch's
 * .to(torch.bfloat16) and the oneDNN backend round. Branch-free, so it vectorises. */
ROUND_KERNEL static void round_span(float *restrict dst, const float *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof(u));
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        uint32_t q = (u & 0xffff0000u) | 0x00400000u;
        r = (int32_t)(u & 0x7fffffffu) > 0x7f800000 ? q : r;
        memcpy(&dst[i], &r, sizeof(r));
    }
}

static void round_bf16(float *dst, const float *src, size_t n)
{
    size_t blocks = (n + ROUND_BLOCK - 1) / ROUND_BLOCK;
#pragma omp parallel for schedule(static) if (n >= ROUND_PAR_MIN)
    for (size_t b = 0; b < blocks; b++) {
        size_t i0 = b * ROUND_BLOCK, len = n - i0 < ROUND_BLOCK ? n - i0 : ROUND_BLOCK;
        round_span(dst + i0, src + i0, len);
    }
}

static size_t round64(size_t f)
{
    return (f + 15) / 16 * 16; /* floats: keeps every part 64-byte aligned */
}

static size_t in_img(const conv2d_shape *s)
{
    return (size_t)s->h * s->w * s->c_in;
}

static size_t out_img(const conv2d_shape *s)
{
    return (size_t)s->h_out * s->w_out * s->c_out;
}

static size_t weight_floats(const conv2d_shape *s)
{
    return (size_t)s->c_out * s->c_in * s->k * s->k;
}

/* Images per chunk: as many as fit CHUNK_FLOATS, at least one per part (thread). */
static int chunk_imgs(const conv2d_shape *s)
{
    size_t fit = CHUNK_FLOATS / (in_img(s) + out_img(s));
    int imgs = fit > (size_t)s->n ? s->n : (int)fit;
    if (imgs < s->parts)
        imgs = s->parts;
    return imgs < 1 ? 1 : imgs;
}

/* The fp32 shape of a chunk of `imgs` images. */
static void chunk_shape(conv2d_shape *c, const conv2d_shape *s, int imgs)
{
    *c = *s;
    c->n = imgs;
    c->parts = s->parts < imgs ? s->parts : imgs;
    c->precision = PRECISION_FP32;
}

static size_t inner_floats(const conv2d_shape *s)
{
    int imgs = chunk_imgs(s), tail = s->n % imgs;
    conv2d_shape c;
    chunk_shape(&c, s, imgs);
    size_t f = conv_backend_openblas.workspace_floats(&c);
    if (tail) {
        chunk_shape(&c, s, tail);
        size_t t = conv_backend_openblas.workspace_floats(&c);
        f = t > f ? t : f;
    }
    return f;
}

static size_t rounded_workspace_floats(const conv2d_shape *s)
{
    size_t imgs = (size_t)chunk_imgs(s);
    return round64(weight_floats(s)) + round64(imgs * in_img(s)) +
           round64(imgs * out_img(s)) + inner_floats(s);
}

static void rounded_forward(float *out, const float *in, const float *w, const float *b,
                            float *ws, const conv2d_shape *s)
{
    const int imgs = chunk_imgs(s);
    float *rw = ws, *rin = rw + round64(weight_floats(s));
    float *inner = rin + round64((size_t)imgs * in_img(s)) +
                   round64((size_t)imgs * out_img(s));
    round_bf16(rw, w, weight_floats(s));
    for (int n0 = 0; n0 < s->n; n0 += imgs) {
        conv2d_shape c;
        chunk_shape(&c, s, s->n - n0 < imgs ? s->n - n0 : imgs);
        round_bf16(rin, in + (size_t)n0 * in_img(s), (size_t)c.n * in_img(s));
        conv_backend_openblas.forward(out + (size_t)n0 * out_img(s), rin, rw, b, inner, &c);
    }
}

/* Rounds only what is read: the weights for din, the input for dw. */
static void rounded_backward(float *din, float *dw, const float *dout, const float *in,
                             const float *w, float *ws, const conv2d_shape *s)
{
    const int imgs = chunk_imgs(s);
    float *rw = ws, *rin = rw + round64(weight_floats(s));
    float *rdy = rin + round64((size_t)imgs * in_img(s));
    float *inner = rdy + round64((size_t)imgs * out_img(s));
    if (din)
        round_bf16(rw, w, weight_floats(s));
    for (int n0 = 0; n0 < s->n; n0 += imgs) {
        conv2d_shape c;
        chunk_shape(&c, s, s->n - n0 < imgs ? s->n - n0 : imgs);
        const float *x = in + (size_t)n0 * in_img(s);
        round_bf16(rdy, dout + (size_t)n0 * out_img(s), (size_t)c.n * out_img(s));
        if (dw) {
            round_bf16(rin, x, (size_t)c.n * in_img(s));
            x = rin;
        }
        conv_backend_openblas.backward(din ? din + (size_t)n0 * in_img(s) : NULL, dw, rdy, x,
                                       din ? rw : w, inner, &c);
    }
}

const conv_backend conv_backend_rounded_bf16 = {
    .name = "rounded-bf16",
    .workspace_floats = rounded_workspace_floats,
    .forward = rounded_forward,
    .backward = rounded_backward,
};
