/* conv.c: 2-D convolution over NHWC activations with OIHW weights: im2col + cblas_sgemm,
 * in chunks of output rows so the column buffer stays small; 1x1 stride-1 is a plain GEMM.
 *
 * With several threads the batch is split into blocks of whole images ("parts"), one per
 * thread; each part runs im2col and single-threaded GEMMs on chunks that fit the L2 cache
 * (OpenBLAS runs single-threaded inside an OpenMP region), so no thread waits on another
 * between GEMMs and parts never write the same input gradient. Weight gradients go to one
 * buffer per part, summed in part order. With one part (one thread or one image), chunks
 * are larger and OpenBLAS threads each GEMM itself. 3x3 stride-1 convolutions with enough
 * channels take the Winograd path of winograd.c instead.
 *
 * When the weights outweigh the image (late stages on small images: 512x512x3x3 weights
 * against 2x2 outputs), copies of them would dominate the scratch: such a convolution
 * runs as one part and lays its columns out channel-major, (ci, ky, kx) like OIHW, so the
 * GEMMs use the weights and weight gradient in place and the scratch is one column chunk.
 *
 * The same kernels run the bf16 mode (rnd; backend_rounded.c): im2col rounds what it
 * gathers, the weight copy (permuted, or for shapes fp32 reads in place a plain copy)
 * rounds the weights, backward rounds each chunk of the output gradient into a buffer of
 * its part, and GEMMs that read an operand in place (a 1x1 stride-1 convolution's, or a
 * weight-major one's weights) round it in bounded blocks (gemm_bf16.h). No buffer holds a
 * whole layer's rounded weights beyond the copy fp32 makes anyway; a weight-major
 * convolution keeps its columns in one chunk instead (CONV_BF16_WMAJOR_FLOATS). */
#include "ops.h"
#include "backend.h"
#include "bf16_round.h"
#include "gemm_bf16.h"
#include "winograd.h"

#include <assert.h>
#include <cblas.h>
#include <omp.h>
#include <string.h>

/* im2col chunk, in floats: per part (L2-sized), and when OpenBLAS threads the GEMM. */
#define CONV_PART_CHUNK_FLOATS (1u << 18)
#define CONV_CHUNK_FLOATS (1u << 19)

/* In bf16 a weight-major convolution rounds its weights, the largest tensor of its step,
 * once per chunk of rows (gemm_bf16): up to this many floats of columns it runs as one
 * chunk, so they are rounded once. */
#define CONV_BF16_WMAJOR_FLOATS (1u << 21)

/* Parallelise a loop only when it has at least this many floats of work. */
#define CONV_PAR_MIN 32768

void conv2d_shape_init(conv2d_shape *s, int n, int h, int w, int c_in, int c_out, int k,
                       int stride, int pad)
{
    assert(n > 0 && h > 0 && w > 0 && c_in > 0 && c_out > 0 && k > 0 && stride > 0 &&
           pad >= 0);
    s->n = n;
    s->h = h;
    s->w = w;
    s->c_in = c_in;
    s->c_out = c_out;
    s->k = k;
    s->stride = stride;
    s->pad = pad;
    s->h_out = (h + 2 * pad - k) / stride + 1;
    s->w_out = (w + 2 * pad - k) / stride + 1;
    assert(s->h_out > 0 && s->w_out > 0);
    int t = omp_get_max_threads();
    s->parts = t < n ? t : n;
    if (s->parts < 1)
        s->parts = 1;
    s->precision = PRECISION_FP32;
    s->bf16_kernels = BF16_KERNELS_AUTO;
}

static const conv_backend *backend_for(const conv2d_shape *s)
{
    if (s->precision != PRECISION_BF16)
        return &conv_backend_openblas;
    bf16_kernels k = s->bf16_kernels ? s->bf16_kernels : bf16_kernels_choice();
    return k == BF16_KERNELS_FP32 ? &conv_backend_rounded_bf16 : &conv_backend_onednn_bf16;
}

static int is_direct(const conv2d_shape *s)
{
    return s->k == 1 && s->stride == 1 && s->pad == 0;
}

/* Weights at least half the size of the whole column matrix: columns in OIHW order. */
static int is_weight_major(const conv2d_shape *s)
{
    return !is_direct(s) && 2 * (size_t)s->c_out >= (size_t)s->n * s->h_out * s->w_out;
}

/* Column order is (ky, kx, ci) so that im2col copies contiguous runs of channels; the
 * OIHW weights are then permuted to (C_out, K, K, C_in) in the workspace. With one input
 * channel or a 1x1 kernel the two orders coincide and no copy is needed. */
static int needs_permute(const conv2d_shape *s)
{
    return s->k > 1 && s->c_in > 1 && !is_weight_major(s);
}

/* The GEMMs read a copy of the weights: permuted, or in bf16 rounded (the permutation is
 * then the identity where needs_permute is false). Weight-major shapes never copy. */
static int needs_wcopy(const conv2d_shape *s, int rnd)
{
    return needs_permute(s) || (rnd && !is_weight_major(s));
}

static size_t kkc(const conv2d_shape *s)
{
    return (size_t)s->k * s->k * s->c_in;
}

static int parts_of(const conv2d_shape *s)
{
    return is_direct(s) || is_weight_major(s) ? 1 : s->parts;
}

/* Output rows (n, oy) per chunk. In bf16 the rounded output-gradient chunk is bounded
 * like the columns: where C_out exceeds K*K*C_in (a stem on one channel) the chunks are
 * shorter, so its weight gradient sums over more, smaller chunks than in fp32. */
static int chunk_rows(const conv2d_shape *s, int rnd)
{
    size_t row = rnd && (size_t)s->c_out > kkc(s) ? (size_t)s->c_out : kkc(s);
    size_t per_row = (size_t)s->w_out * row;
    int parts = parts_of(s);
    size_t rows = (parts > 1 ? CONV_PART_CHUNK_FLOATS : CONV_CHUNK_FLOATS) / per_row;
    /* A part holds at most ceil(N/parts) images. */
    size_t total = (size_t)((s->n + parts - 1) / parts) * s->h_out;
    if (rows < 1)
        rows = 1;
    if (rows > total)
        rows = total;
    if (rnd && is_weight_major(s) && total * per_row <= CONV_BF16_WMAJOR_FLOATS)
        rows = total;
    return (int)rows;
}

/* Workspace layout: [W copy | dW permuted] [column chunk per part] [dW per part > 0], and
 * in bf16 [output-gradient chunk per part] [gemm_bf16 blocks, weight-major only]. */
static size_t wperm_floats(const conv2d_shape *s, int rnd)
{
    size_t wsz = (size_t)s->c_out * kkc(s);
    return needs_permute(s) ? 2 * wsz : needs_wcopy(s, rnd) ? wsz : 0;
}

static size_t col_floats(const conv2d_shape *s, int rnd)
{
    return (size_t)chunk_rows(s, rnd) * s->w_out * kkc(s);
}

size_t conv2d_workspace_floats(const conv2d_shape *s)
{
    return backend_for(s)->workspace_floats(s);
}

size_t conv2d_forward_workspace_floats(const conv2d_shape *s)
{
    return backend_for(s)->forward_workspace_floats(s);
}

/* A rounded chunk of the output gradient: chunk_rows output rows. */
static size_t dy_floats(const conv2d_shape *s)
{
    return (size_t)chunk_rows(s, 1) * s->w_out * s->c_out;
}

/* gemm_bf16's blocks for a weight-major chunk: forward's out = col W^T (over blocks of
 * K*K*C_in: out is small, col large) and backward's dcol = dY W (over blocks of columns:
 * dY is small). */
static size_t wmajor_gemm_floats(const conv2d_shape *s)
{
    int p = chunk_rows(s, 1) * s->w_out, rowlen = (int)kkc(s);
    size_t f = gemm_bf16_nt_ksplit_floats(s->c_out, rowlen);
    size_t b = gemm_bf16_floats(p, rowlen, s->c_out, 0);
    return f > b ? f : b;
}

/* gemm_bf16's blocks for a 1x1 stride-1 convolution: forward, dW and dX. */
static size_t direct_gemm_floats(const conv2d_shape *s)
{
    int p = s->n * s->h * s->w;
    size_t f = gemm_bf16_floats(p, s->c_out, s->c_in, 1);
    size_t dw = gemm_bf16_tn_floats(s->c_out, s->c_in, p);
    size_t dx = gemm_bf16_floats(p, s->c_in, s->c_out, 1);
    f = dw > f ? dw : f;
    return dx > f ? dx : f;
}

size_t conv_fp32_workspace_floats(const conv2d_shape *s, int rnd)
{
    if (is_direct(s))
        return rnd ? direct_gemm_floats(s) : 0;
    if (wino_applies(s))
        return wino_workspace_floats(s);
    int parts = parts_of(s);
    size_t f = wperm_floats(s, rnd) + (size_t)parts * col_floats(s, rnd) +
               (size_t)(parts - 1) * s->c_out * kkc(s);
    if (rnd)
        f += (size_t)parts * dy_floats(s) + (is_weight_major(s) ? wmajor_gemm_floats(s) : 0);
    return f;
}

static size_t openblas_workspace_floats(const conv2d_shape *s)
{
    return conv_fp32_workspace_floats(s, 0);
}

/* dst (C_out, K, K, C_in) <- src (C_out, C_in, K, K), rounded to bf16 when rnd. */
static void permute_oihw_to_ohwi(float *dst, const float *src, const conv2d_shape *s, int rnd)
{
    int kk = s->k * s->k, ci_n = s->c_in;
    if (kk == 1 || ci_n == 1) { /* the identity */
        size_t n = (size_t)s->c_out * ci_n * kk;
        if (rnd)
            bf16_round_block(dst, n, src, n, 1, n);
        else
            memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (int o = 0; o < s->c_out; o++) {
        const float *so = src + (size_t)o * ci_n * kk;
        float *d = dst + (size_t)o * ci_n * kk;
        for (int ci = 0; ci < ci_n; ci++)
            for (int q = 0; q < kk; q++)
                d[(size_t)q * ci_n + ci] = rnd ? bf16_round(so[(size_t)ci * kk + q])
                                               : so[(size_t)ci * kk + q];
    }
}

/* dst (C_out, C_in, K, K) <- src (C_out, K, K, C_in). */
static void permute_ohwi_to_oihw(float *dst, const float *src, const conv2d_shape *s)
{
    int kk = s->k * s->k, ci_n = s->c_in;
    for (int o = 0; o < s->c_out; o++) {
        const float *so = src + (size_t)o * ci_n * kk;
        float *d = dst + (size_t)o * ci_n * kk;
        for (int ci = 0; ci < ci_n; ci++)
            for (int q = 0; q < kk; q++)
                d[(size_t)ci * kk + q] = so[(size_t)q * ci_n + ci];
    }
}

/* Channel-major columns: element (ky, kx, ci) of a patch at ci*K*K + ky*K + kx. */
static void im2col_weight_major(float *col, const float *in, int r0, int rows,
                                const conv2d_shape *s, int par, int rnd)
{
    const int k = s->k, cin = s->c_in, wo = s->w_out, ho = s->h_out, kk = k * k;
    const size_t rowlen = kkc(s);
    const size_t work = (size_t)rows * wo * rowlen;
#pragma omp parallel for schedule(static) if (par && work >= CONV_PAR_MIN)
    for (int rr = 0; rr < rows; rr++) {
        int r = r0 + rr, n = r / ho, oy = r % ho;
        const float *img = in + (size_t)n * s->h * s->w * cin;
        for (int ox = 0; ox < wo; ox++) {
            float *dst = col + ((size_t)rr * wo + ox) * rowlen;
            for (int ky = 0; ky < k; ky++) {
                int iy = oy * s->stride - s->pad + ky;
                for (int kx = 0; kx < k; kx++) {
                    int ix = ox * s->stride - s->pad + kx, q = ky * k + kx;
                    if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) {
                        for (int c = 0; c < cin; c++)
                            dst[(size_t)c * kk + q] = 0.0f;
                        continue;
                    }
                    const float *src = img + ((size_t)iy * s->w + ix) * cin;
                    for (int c = 0; c < cin; c++)
                        dst[(size_t)c * kk + q] = src[c];
                }
            }
        }
        if (rnd)
            bf16_round_inplace(col + (size_t)rr * wo * rowlen, (size_t)wo * rowlen);
    }
}

/* col (rows*W_out, K*K*C_in) <- patches of output rows [r0, r0+rows), row r = n*H_out+oy,
 * rounded to bf16 when rnd: each output row's columns once gathered, while they are in the
 * cache (rounding run by run would cost a call per few channels on a stem). */
static void im2col(float *col, const float *in, int r0, int rows, const conv2d_shape *s,
                   int par, int rnd)
{
    const int k = s->k, cin = s->c_in, wo = s->w_out, ho = s->h_out;
    const size_t rowlen = kkc(s), krun = (size_t)k * cin;
    const size_t work = (size_t)rows * wo * rowlen;
    if (is_weight_major(s)) {
        im2col_weight_major(col, in, r0, rows, s, par, rnd);
        return;
    }
#pragma omp parallel for schedule(static) if (par && work >= CONV_PAR_MIN)
    for (int rr = 0; rr < rows; rr++) {
        int r = r0 + rr, n = r / ho, oy = r % ho;
        const float *img = in + (size_t)n * s->h * s->w * cin;
        for (int ox = 0; ox < wo; ox++) {
            float *dst = col + ((size_t)rr * wo + ox) * rowlen;
            int ix0 = ox * s->stride - s->pad;
            int full_x = ix0 >= 0 && ix0 + k <= s->w;
            for (int ky = 0; ky < k; ky++) {
                int iy = oy * s->stride - s->pad + ky;
                float *d = dst + (size_t)ky * krun;
                if (iy < 0 || iy >= s->h) {
                    memset(d, 0, krun * sizeof(float));
                    continue;
                }
                const float *src = img + ((size_t)iy * s->w) * cin;
                if (full_x) {
                    memcpy(d, src + (size_t)ix0 * cin, krun * sizeof(float));
                    continue;
                }
                for (int kx = 0; kx < k; kx++) {
                    int ix = ix0 + kx;
                    if (ix < 0 || ix >= s->w)
                        memset(d + (size_t)kx * cin, 0, cin * sizeof(float));
                    else
                        memcpy(d + (size_t)kx * cin, src + (size_t)ix * cin,
                               cin * sizeof(float));
                }
            }
        }
        if (rnd)
            bf16_round_inplace(col + (size_t)rr * wo * rowlen, (size_t)wo * rowlen);
    }
}

/* din += col2im(dcol) for output rows [r0, r0+rows). Gathers per input row rather than
 * scattering per output pixel, so threads never write the same element and the order of
 * the sums is fixed. */
static void col2im_add(float *din, const float *dcol, int r0, int rows,
                       const conv2d_shape *s, int par)
{
    const int k = s->k, cin = s->c_in, wo = s->w_out, ho = s->h_out, st = s->stride;
    const int pad = s->pad;
    const size_t rowlen = kkc(s);
    /* Offsets of a patch element: (ky, kx) steps by q_step, a channel by c_step. */
    const int wmaj = is_weight_major(s);
    const size_t q_step = wmaj ? 1 : (size_t)cin, c_step = wmaj ? (size_t)k * k : 1;
    const int r1 = r0 + rows;
    const int n0 = r0 / ho, n1 = (r1 - 1) / ho;

    /* Input rows touched by the chunk, image by image, flattened into one index space.
     * Image n sees output rows [oya, oyb) and so input rows [iya, iyb). */
    int total = 0;
    for (int n = n0; n <= n1; n++) {
        int oya = n == n0 ? r0 - n * ho : 0, oyb = n == n1 ? r1 - n * ho : ho;
        int iya = oya * st - pad, iyb = (oyb - 1) * st - pad + k;
        if (iya < 0)
            iya = 0;
        if (iyb > s->h)
            iyb = s->h;
        if (iyb > iya)
            total += iyb - iya;
    }
    const size_t work = (size_t)total * s->w * cin * k;
#pragma omp parallel for schedule(static) if (par && work >= CONV_PAR_MIN)
    for (int idx = 0; idx < total; idx++) {
        int n = n0, oya = 0, oyb = 0, iy = 0, rem = idx;
        for (; n <= n1; n++) {
            oya = n == n0 ? r0 - n * ho : 0;
            oyb = n == n1 ? r1 - n * ho : ho;
            int iya = oya * st - pad, iyb = (oyb - 1) * st - pad + k;
            if (iya < 0)
                iya = 0;
            if (iyb > s->h)
                iyb = s->h;
            int cnt = iyb > iya ? iyb - iya : 0;
            if (rem < cnt) {
                iy = iya + rem;
                break;
            }
            rem -= cnt;
        }
        assert(n <= n1);
        float *drow = din + (((size_t)n * s->h + iy) * s->w) * cin;
        for (int ky = 0; ky < k; ky++) {
            int ty = iy + pad - ky;
            if (ty < 0 || ty % st)
                continue;
            int oy = ty / st;
            if (oy < oya || oy >= oyb)
                continue;
            size_t crow = (size_t)(n * ho + oy - r0) * wo;
            for (int ix = 0; ix < s->w; ix++) {
                float *d = drow + (size_t)ix * cin;
                for (int kx = 0; kx < k; kx++) {
                    int tx = ix + pad - kx;
                    if (tx < 0 || tx % st)
                        continue;
                    int ox = tx / st;
                    if (ox >= wo)
                        continue;
                    const float *src = dcol + (crow + ox) * rowlen +
                                       ((size_t)ky * k + kx) * q_step;
                    if (!wmaj) {
                        for (int c = 0; c < cin; c++)
                            d[c] += src[c];
                    } else {
                        for (int c = 0; c < cin; c++)
                            d[c] += src[(size_t)c * c_step];
                    }
                }
            }
        }
    }
}

/* db (C) += column sums of dout (P, C), in double, fixed order per channel. */
static void bias_grad(float *db, const float *dout, size_t p, int c)
{
#pragma omp parallel for schedule(static) if (p * (size_t)c >= 4 * CONV_PAR_MIN)
    for (int c0 = 0; c0 < c; c0 += 16) {
        int cn = c - c0 < 16 ? c - c0 : 16;
        double acc[16] = {0};
        for (size_t i = 0; i < p; i++) {
            const float *row = dout + i * c + c0;
            for (int j = 0; j < cn; j++)
                acc[j] += row[j];
        }
        for (int j = 0; j < cn; j++)
            db[c0 + j] += (float)acc[j];
    }
}

static void fill_bias(float *out, const float *b, size_t p, int c)
{
#pragma omp parallel for schedule(static) if (p * (size_t)c >= CONV_PAR_MIN)
    for (size_t i = 0; i < p; i++)
        memcpy(out + i * c, b, (size_t)c * sizeof(float));
}

/* Output rows [r0, r1) of part p: a block of whole images. */
static void part_rows(const conv2d_shape *s, int p, int parts, int *r0, int *r1)
{
    int n0 = (int)((long long)s->n * p / parts), n1 = (int)((long long)s->n * (p + 1) / parts);
    *r0 = n0 * s->h_out;
    *r1 = n1 * s->h_out;
}

/* out rows [r*W_out, ...) = col W^T (+ beta out), W being wk, or when wbuf is given the
 * weights as stored, rounded to bf16 block by block in wbuf (weight-major bf16). */
static void gemm_fwd(float *out, const float *col, const float *wk, float beta, float *wbuf,
                     int p, const conv2d_shape *s)
{
    const int rowlen = (int)kkc(s), cout = s->c_out;
    if (wbuf)
        gemm_bf16_nt_ksplit(out, cout, col, rowlen, wk, rowlen, p, cout, rowlen, beta, wbuf);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p, cout, rowlen, 1.0f, col,
                    rowlen, wk, rowlen, beta, out, cout);
}

static void forward_rows(float *out, const float *in, const float *wk, float beta, float *col,
                         float *wbuf, int r0, int r1, int step, int par, int rnd,
                         const conv2d_shape *s)
{
    const int wo = s->w_out, cout = s->c_out;
    for (int r = r0; r < r1; r += step) {
        int rows = r1 - r < step ? r1 - r : step;
        im2col(col, in, r, rows, s, par, rnd);
        gemm_fwd(out + (size_t)r * wo * cout, col, wk, beta, wbuf, rows * wo, s);
    }
}

void conv2d_forward(float *out, const float *in, const float *w, const float *b, float *ws,
                    const conv2d_shape *s)
{
    backend_for(s)->forward(out, in, w, b, ws, s);
}

void conv_fp32_forward(float *out, const float *in, const float *w, const float *b, float *ws,
                       const conv2d_shape *s, int rnd)
{
    const int cout = s->c_out;
    const size_t total_p = (size_t)s->n * s->h_out * s->w_out;
    const float beta = b ? 1.0f : 0.0f;
    if (wino_applies(s)) {
        wino_forward(out, in, w, b, ws, s, rnd);
        return;
    }
    if (b)
        fill_bias(out, b, total_p, cout);
    if (is_direct(s) && rnd) {
        gemm_bf16(out, cout, in, s->c_in, 1, w, s->c_in, 1, (int)total_p, cout, s->c_in,
                  beta, ws);
        return;
    }
    if (is_direct(s)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)total_p, cout, s->c_in,
                    1.0f, in, s->c_in, w, s->c_in, beta, out, cout);
        return;
    }
    const float *wk = w;
    if (needs_wcopy(s, rnd)) {
        permute_oihw_to_ohwi(ws, w, s, rnd);
        wk = ws;
    }
    float *col = ws + wperm_floats(s, rnd);
    const int parts = parts_of(s), step = chunk_rows(s, rnd);
    const size_t colf = col_floats(s, rnd);
    if (parts == 1) {
        /* Weight-major in bf16: gemm_bf16's blocks lie after the two chunks. */
        float *wbuf = rnd && wk == w ? col + colf + dy_floats(s) : NULL;
        forward_rows(out, in, wk, beta, col, wbuf, 0, s->n * s->h_out, step, 1, rnd, s);
        return;
    }
#pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        int r0, r1;
        part_rows(s, p, parts, &r0, &r1);
        forward_rows(out, in, wk, beta, col + (size_t)p * colf, NULL, r0, r1, step, 0, rnd, s);
    }
}

static void openblas_forward(float *out, const float *in, const float *w, const float *b,
                             float *ws, const conv2d_shape *s)
{
    conv_fp32_forward(out, in, w, b, ws, s, 0);
}

/* Scratch of one part's backward: its column chunk, in bf16 its rounded output-gradient
 * chunk (else NULL), and for weight-major bf16 gemm_bf16's blocks (else NULL). */
typedef struct conv_scratch {
    float *col, *dy, *wbuf;
} conv_scratch;

/* Backward over output rows [r0, r1) in chunks; dwk (may be NULL) accumulates. */
static void backward_rows(float *din, float *dwk, const float *dout, const float *in,
                          const float *wk, const conv_scratch *sc, int r0, int r1, int step,
                          int par, const conv2d_shape *s)
{
    const int rowlen = (int)kkc(s), wo = s->w_out, cout = s->c_out;
    const int rnd = sc->dy != NULL;
    float *col = sc->col;
    for (int r = r0; r < r1; r += step) {
        int rows = r1 - r < step ? r1 - r : step;
        int p = rows * wo;
        const float *dch = dout + (size_t)r * wo * cout;
        if (rnd) {
            bf16_round_block(sc->dy, (size_t)p * cout, dch, (size_t)p * cout, 1,
                             (size_t)p * cout);
            dch = sc->dy;
        }
        if (dwk) {
            im2col(col, in, r, rows, s, par, rnd);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cout, rowlen, p, 1.0f, dch,
                        cout, col, rowlen, 1.0f, dwk, rowlen);
        }
        if (din && sc->wbuf) {
            gemm_bf16(col, rowlen, dch, cout, 0, wk, rowlen, 0, p, rowlen, cout, 0.0f,
                      sc->wbuf);
            col2im_add(din, col, r, rows, s, par);
        } else if (din) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p, rowlen, cout, 1.0f,
                        dch, cout, wk, rowlen, 0.0f, col, rowlen);
            col2im_add(din, col, r, rows, s, par);
        }
    }
}

void conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                     const float *w, float *ws, const conv2d_shape *s, int assign_din)
{
    if (db)
        bias_grad(db, dout, (size_t)s->n * s->h_out * s->w_out, s->c_out);
    if (din || dw)
        backend_for(s)->backward(din, dw, dout, in, w, ws, s, assign_din && din);
}

/* A 1x1 stride-1 convolution's backward: two GEMMs on the tensors in place, in bf16 on
 * blocks rounded by gemm_bf16. */
static void direct_backward(float *din, float *dw, const float *dout, const float *in,
                            const float *w, float *ws, const conv2d_shape *s, int rnd)
{
    const int cout = s->c_out, cin = s->c_in, p = s->n * s->h * s->w;
    if (dw && rnd)
        gemm_bf16_tn(dw, cin, dout, cout, in, cin, cout, cin, p, ws);
    else if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cout, cin, p, 1.0f, dout, cout,
                    in, cin, 1.0f, dw, cin);
    if (din && rnd)
        gemm_bf16(din, cin, dout, cout, 1, w, cin, 0, p, cin, cout, 1.0f, ws);
    else if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p, cin, cout, 1.0f, dout, cout,
                    w, cin, 1.0f, din, cin);
}

/* dw += the parts' weight gradients: dwk holds part 0's, partial the others', in part
 * order. */
static void sum_parts(float *dwk, const float *partial, size_t wsz, int parts)
{
#pragma omp parallel for schedule(static) if (wsz * parts >= CONV_PAR_MIN)
    for (size_t i = 0; i < wsz; i++) {
        float acc = dwk[i];
        for (int p = 1; p < parts; p++)
            acc += partial[(size_t)(p - 1) * wsz + i];
        dwk[i] = acc;
    }
}

static void backward_parts(float *din, float *dwk, const float *dout, const float *in,
                           const float *wk, float *col, int rnd, const conv2d_shape *s)
{
    const int parts = parts_of(s), step = chunk_rows(s, rnd);
    const size_t wsz = (size_t)s->c_out * kkc(s), colf = col_floats(s, rnd);
    const size_t dyf = dy_floats(s);
    float *partial = col + (size_t)parts * colf; /* parts - 1 weight gradients */
    float *dy = partial + (size_t)(parts - 1) * wsz;
#pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        int r0, r1;
        part_rows(s, p, parts, &r0, &r1);
        float *dwp = NULL;
        if (dwk && p == 0) {
            dwp = dwk;
        } else if (dwk) {
            dwp = partial + (size_t)(p - 1) * wsz;
            memset(dwp, 0, wsz * sizeof(float));
        }
        conv_scratch sc = {col + (size_t)p * colf, rnd ? dy + (size_t)p * dyf : NULL, NULL};
        backward_rows(din, dwp, dout, in, wk, &sc, r0, r1, step, 0, s);
    }
    if (dwk)
        sum_parts(dwk, partial, wsz, parts);
}

void conv_fp32_backward(float *din, float *dw, const float *dout, const float *in,
                        const float *w, float *ws, const conv2d_shape *s, int rnd,
                        int assign_din)
{
    /* These kernels accumulate into din. */
    if (assign_din)
        memset(din, 0, (size_t)s->n * s->h * s->w * s->c_in * sizeof(float));
    if (wino_applies(s)) {
        wino_backward(din, dw, dout, in, w, ws, s, rnd);
        return;
    }
    if (is_direct(s)) {
        direct_backward(din, dw, dout, in, w, ws, s, rnd);
        return;
    }
    const size_t wsz = (size_t)s->c_out * kkc(s);
    const float *wk = w;
    float *dwk = dw;
    if (din && needs_wcopy(s, rnd)) {
        permute_oihw_to_ohwi(ws, w, s, rnd);
        wk = ws;
    }
    if (dw && needs_permute(s)) {
        permute_oihw_to_ohwi(ws + wsz, dw, s, 0);
        dwk = ws + wsz;
    }
    float *col = ws + wperm_floats(s, rnd);
    if (parts_of(s) == 1) {
        const size_t colf = col_floats(s, rnd);
        conv_scratch sc = {col, rnd ? col + colf : NULL,
                           rnd && is_weight_major(s) ? col + colf + dy_floats(s) : NULL};
        backward_rows(din, dwk, dout, in, wk, &sc, 0, s->n * s->h_out, chunk_rows(s, rnd), 1,
                      s);
    } else {
        backward_parts(din, dwk, dout, in, wk, col, rnd, s);
    }
    if (dw && dwk != dw)
        permute_ohwi_to_oihw(dw, dwk, s);
}

static void openblas_backward(float *din, float *dw, const float *dout, const float *in,
                              const float *w, float *ws, const conv2d_shape *s, int assign_din)
{
    conv_fp32_backward(din, dw, dout, in, w, ws, s, 0, assign_din);
}

const conv_backend conv_backend_openblas = {
    .name = "openblas-fp32",
    .workspace_floats = openblas_workspace_floats,
    .forward_workspace_floats = openblas_workspace_floats,
    .forward = openblas_forward,
    .backward = openblas_backward,
};
