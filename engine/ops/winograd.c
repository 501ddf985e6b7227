/* winograd.c: 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin
 * and Gray, 2015): each 2x2 output tile costs 16 products per channel pair instead of 36,
 * done as 16 GEMMs over a chunk of tiles. The backward pass is the exact transpose of the
 * forward one (backpropagation through the transforms), so gradients match the forward.
 *
 * Transforms, with d a 4x4 input patch, g a 3x3 filter and y the 2x2 output tile:
 *   V = B^T d B,  U = G g G^T,  M = sum over input channels of U (.) V,  y = A^T M A,
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * Layouts (row-major): U[16][C_out][C_in], V[16][T][C_in], M[16][T][C_out] for T tiles.
 *
 * Threads work as in conv.c: the batch is split into blocks of whole images, one per
 * part, each with its own V/M chunk and, for the weight gradient, its own dU, summed in
 * part order. When U (16/9 of the weights) outweighs the chunks, as on small images where
 * it would be the largest scratch of a step, backward computes the input gradient first
 * and the weight gradient after, in the place U took (transforming dout twice), and the
 * parts split dU's 16 components instead of the images (each part transforms every tile:
 * twice the transform work, no per-part copies of dU).
 *
 * In the bf16 mode on these kernels (rnd), the weight, input and output-gradient
 * transforms round each value they load to bf16 (bf16_round.h): the same bits as rounding
 * the operands first, with no rounded copy of them and no pass of its own. */
#include "winograd.h"
#include "bf16_round.h"

#include <cblas.h>
#include <string.h>

/* V + M of one chunk, in floats: about the L2 cache. */
#define WINO_CHUNK_FLOATS (1u << 18)
#define WINO_MIN_TILES 32
#define WINO_PAR_MIN 32768

/* The channel loops get an AVX2 build picked at load time where the CPU has it (the
 * portable build stays SSE2). Only additions, subtractions and exact halvings happen in
 * them and no FMA is enabled, so both builds give the same bits. The tile transforms,
 * which only add and subtract (nothing an FMA could fuse), also get an AVX-512 build:
 * with 32 or 64 channels a tile's loop is then two or four vectors, and the transforms
 * of the activations are a large share of a small net's step. */
#define WINO_KERNEL __attribute__((target_clones("avx2", "default")))
#define WINO_TILE_KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))

int wino_applies(const conv2d_shape *s)
{
    return s->k == 3 && s->stride == 1 && s->c_in >= 16 && s->c_out >= 16 && s->h_out >= 4 &&
           s->w_out >= 4;
}

static int tiles_x(const conv2d_shape *s)
{
    return (s->w_out + 1) / 2;
}

static int tiles_per_image(const conv2d_shape *s)
{
    return ((s->h_out + 1) / 2) * tiles_x(s);
}

static int chunk_tiles(const conv2d_shape *s)
{
    size_t t = WINO_CHUNK_FLOATS / (16 * (size_t)(s->c_in + s->c_out));
    size_t most = (size_t)((s->n + s->parts - 1) / s->parts) * tiles_per_image(s);
    if (t < WINO_MIN_TILES)
        t = WINO_MIN_TILES;
    if (t > most)
        t = most;
    return (int)t;
}

static size_t u_floats(const conv2d_shape *s)
{
    return 16 * (size_t)s->c_out * s->c_in;
}

static size_t zero_floats(const conv2d_shape *s)
{
    return (size_t)(s->c_in > s->c_out ? s->c_in : s->c_out);
}

/* V and M of one chunk, then one output tile of scratch for tiles cut by the border and
 * one pixel where input gradients that fall outside the image are dumped. */
static size_t vm_floats(const conv2d_shape *s)
{
    return 16 * (size_t)chunk_tiles(s) * (s->c_in + s->c_out);
}

static size_t chunk_floats(const conv2d_shape *s)
{
    return vm_floats(s) + 4 * (size_t)s->c_out + (size_t)s->c_in;
}

/* U outweighs the chunks: backward in two passes sharing U's place, dU by component. */
static int u_heavy(const conv2d_shape *s)
{
    return u_floats(s) > (size_t)s->parts * chunk_floats(s);
}

/* [U][dU, unless U-heavy][zeros][per part: V, M, scratch][dU per part > 0, unless
 * U-heavy or one part] */
size_t wino_workspace_floats(const conv2d_shape *s)
{
    size_t uf = u_floats(s), extra = u_heavy(s) ? 0 : uf * (size_t)s->parts;
    return uf + extra + zero_floats(s) + (size_t)s->parts * chunk_floats(s);
}

/* Weight transforms work on blocks of WINO_WBLOCK input channels, so that the arithmetic
 * runs along the block (vectorised) rather than along a 3x3 kernel. */
#define WINO_WBLOCK 16

/* U = G g G^T for every (c_out, c_in); g rounded to bf16 first when rnd. */
WINO_KERNEL static void transform_weights(float *restrict u, const float *restrict w,
                                          const conv2d_shape *s, int rnd)
{
    const int co_n = s->c_out, ci_n = s->c_in;
    const size_t plane = (size_t)co_n * ci_n;
#pragma omp parallel for schedule(static) if (plane * 16 >= WINO_PAR_MIN)
    for (int co = 0; co < co_n; co++)
        for (int c0 = 0; c0 < ci_n; c0 += WINO_WBLOCK) {
            const int cn = ci_n - c0 < WINO_WBLOCK ? ci_n - c0 : WINO_WBLOCK;
            const float *src = w + ((size_t)co * ci_n + c0) * 9;
            float g[9][WINO_WBLOCK], t[4][3][WINO_WBLOCK];
            for (int c = 0; c < cn; c++)
                for (int q = 0; q < 9; q++)
                    g[q][c] = src[c * 9 + q];
            if (rnd)
                for (int q = 0; q < 9; q++)
                    for (int c = 0; c < cn; c++)
                        g[q][c] = bf16_round(g[q][c]);
            for (int j = 0; j < 3; j++)
                for (int c = 0; c < cn; c++) {
                    t[0][j][c] = g[j][c];
                    t[1][j][c] = 0.5f * (g[j][c] + g[3 + j][c] + g[6 + j][c]);
                    t[2][j][c] = 0.5f * (g[j][c] - g[3 + j][c] + g[6 + j][c]);
                    t[3][j][c] = g[6 + j][c];
                }
            for (int i = 0; i < 4; i++) {
                float *u0 = u + (size_t)(i * 4) * plane + (size_t)co * ci_n + c0;
                for (int c = 0; c < cn; c++) {
                    u0[c] = t[i][0][c];
                    u0[plane + c] = 0.5f * (t[i][0][c] + t[i][1][c] + t[i][2][c]);
                    u0[2 * plane + c] = 0.5f * (t[i][0][c] - t[i][1][c] + t[i][2][c]);
                    u0[3 * plane + c] = t[i][2][c];
                }
            }
        }
}

/* dw += G^T dU G for every (c_out, c_in). */
WINO_KERNEL static void add_weight_grad(float *restrict dw, const float *restrict du,
                                        const conv2d_shape *s)
{
    const int co_n = s->c_out, ci_n = s->c_in;
    const size_t plane = (size_t)co_n * ci_n;
#pragma omp parallel for schedule(static) if (plane * 16 >= WINO_PAR_MIN)
    for (int co = 0; co < co_n; co++)
        for (int c0 = 0; c0 < ci_n; c0 += WINO_WBLOCK) {
            const int cn = ci_n - c0 < WINO_WBLOCK ? ci_n - c0 : WINO_WBLOCK;
            const size_t o = (size_t)co * ci_n + c0;
            float h[3][4][WINO_WBLOCK], g[9][WINO_WBLOCK];
            for (int j = 0; j < 4; j++) {
                const float *x0 = du + (size_t)j * plane + o, *x1 = x0 + 4 * plane;
                const float *x2 = x0 + 8 * plane, *x3 = x0 + 12 * plane;
                for (int c = 0; c < cn; c++) {
                    h[0][j][c] = x0[c] + 0.5f * (x1[c] + x2[c]);
                    h[1][j][c] = 0.5f * (x1[c] - x2[c]);
                    h[2][j][c] = 0.5f * (x1[c] + x2[c]) + x3[c];
                }
            }
            for (int k = 0; k < 3; k++)
                for (int c = 0; c < cn; c++) {
                    g[k * 3 + 0][c] = h[k][0][c] + 0.5f * (h[k][1][c] + h[k][2][c]);
                    g[k * 3 + 1][c] = 0.5f * (h[k][1][c] - h[k][2][c]);
                    g[k * 3 + 2][c] = 0.5f * (h[k][1][c] + h[k][2][c]) + h[k][3][c];
                }
            float *dst = dw + o * 9;
            for (int c = 0; c < cn; c++)
                for (int q = 0; q < 9; q++)
                    dst[c * 9 + q] += g[q][c];
        }
}

/* The 16 input pixels of tile t's 4x4 patch (outside pointing to zero). */
static inline __attribute__((always_inline)) void
patch_pointers(const float **p, const float *img_base, const float *zero, int t,
               const conv2d_shape *s, int cs)
{
    const int tpi = tiles_per_image(s), tx_n = tiles_x(s);
    int n = t / tpi, r = t % tpi, ty = r / tx_n, tx = r % tx_n;
    for (int i = 0; i < 4; i++) {
        int iy = 2 * ty - s->pad + i;
        for (int j = 0; j < 4; j++) {
            int ix = 2 * tx - s->pad + j;
            if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w)
                p[i * 4 + j] = zero;
            else
                p[i * 4 + j] = img_base + (((size_t)n * s->h + iy) * s->w + ix) * cs;
        }
    }
}

/* The channel loops below are written out without inner loops so that the compiler
 * vectorises them across channels (NHWC keeps channels contiguous). */

/* A loaded operand: rounded to bf16 in the bf16 mode. rnd is a constant wherever the
 * function using it is inlined, so the fp32 build has no trace of it. */
#define WINO_LD(x) (rnd ? bf16_round(x) : (x))

/* V[16][tc][C_in] = B^T d B for tiles [t0, t0 + tc), d rounded when rnd. */
static inline __attribute__((always_inline)) void
transform_input_body(float *restrict v, const float *in, const float *zero, int t0, int tc,
                     const conv2d_shape *s, const int rnd)
{
    const int c_n = s->c_in;
    const size_t plane = (size_t)tc * c_n;
    for (int tl = 0; tl < tc; tl++) {
        const float *p[16];
        patch_pointers(p, in, zero, t0 + tl, s, c_n);
        const float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3], *p4 = p[4], *p5 = p[5];
        const float *p6 = p[6], *p7 = p[7], *p8 = p[8], *p9 = p[9], *p10 = p[10];
        const float *p11 = p[11], *p12 = p[12], *p13 = p[13], *p14 = p[14], *p15 = p[15];
        float *restrict o = v + (size_t)tl * c_n;
#pragma omp simd
        for (int c = 0; c < c_n; c++) {
            float d0 = WINO_LD(p0[c]), d1 = WINO_LD(p1[c]), d2 = WINO_LD(p2[c]),
                  d3 = WINO_LD(p3[c]), d4 = WINO_LD(p4[c]), d5 = WINO_LD(p5[c]),
                  d6 = WINO_LD(p6[c]), d7 = WINO_LD(p7[c]), d8 = WINO_LD(p8[c]),
                  d9 = WINO_LD(p9[c]), d10 = WINO_LD(p10[c]), d11 = WINO_LD(p11[c]),
                  d12 = WINO_LD(p12[c]), d13 = WINO_LD(p13[c]), d14 = WINO_LD(p14[c]),
                  d15 = WINO_LD(p15[c]);
            /* rows of B^T d */
            float e00 = d0 - d8, e01 = d1 - d9, e02 = d2 - d10, e03 = d3 - d11;
            float e10 = d4 + d8, e11 = d5 + d9, e12 = d6 + d10, e13 = d7 + d11;
            float e20 = d8 - d4, e21 = d9 - d5, e22 = d10 - d6, e23 = d11 - d7;
            float e30 = d4 - d12, e31 = d5 - d13, e32 = d6 - d14, e33 = d7 - d15;
            o[0 * plane + c] = e00 - e02;
            o[1 * plane + c] = e01 + e02;
            o[2 * plane + c] = e02 - e01;
            o[3 * plane + c] = e01 - e03;
            o[4 * plane + c] = e10 - e12;
            o[5 * plane + c] = e11 + e12;
            o[6 * plane + c] = e12 - e11;
            o[7 * plane + c] = e11 - e13;
            o[8 * plane + c] = e20 - e22;
            o[9 * plane + c] = e21 + e22;
            o[10 * plane + c] = e22 - e21;
            o[11 * plane + c] = e21 - e23;
            o[12 * plane + c] = e30 - e32;
            o[13 * plane + c] = e31 + e32;
            o[14 * plane + c] = e32 - e31;
            o[15 * plane + c] = e31 - e33;
        }
    }
}

WINO_TILE_KERNEL static void transform_input_fp32(float *restrict v, const float *in,
                                                  const float *zero, int t0, int tc,
                                                  const conv2d_shape *s)
{
    transform_input_body(v, in, zero, t0, tc, s, 0);
}

WINO_TILE_KERNEL static void transform_input_bf16(float *restrict v, const float *in,
                                                  const float *zero, int t0, int tc,
                                                  const conv2d_shape *s)
{
    transform_input_body(v, in, zero, t0, tc, s, 1);
}

static void transform_input(float *v, const float *in, const float *zero, int t0, int tc,
                            const conv2d_shape *s, int rnd)
{
    if (rnd)
        transform_input_bf16(v, in, zero, t0, tc, s);
    else
        transform_input_fp32(v, in, zero, t0, tc, s);
}

/* y = A^T M A of one tile into y00..y11 (each c_n floats), plus bias b (never NULL). */
WINO_TILE_KERNEL static void output_tile(float *restrict y00, float *restrict y01,
                                         float *restrict y10, float *restrict y11,
                                         const float *restrict x, size_t plane,
                                         const float *b, int c_n)
{
#pragma omp simd
    for (int c = 0; c < c_n; c++) {
        float a0 = x[0 * plane + c] + x[4 * plane + c] + x[8 * plane + c];
        float a1 = x[1 * plane + c] + x[5 * plane + c] + x[9 * plane + c];
        float a2 = x[2 * plane + c] + x[6 * plane + c] + x[10 * plane + c];
        float a3 = x[3 * plane + c] + x[7 * plane + c] + x[11 * plane + c];
        float b0 = x[4 * plane + c] - x[8 * plane + c] - x[12 * plane + c];
        float b1 = x[5 * plane + c] - x[9 * plane + c] - x[13 * plane + c];
        float b2 = x[6 * plane + c] - x[10 * plane + c] - x[14 * plane + c];
        float b3 = x[7 * plane + c] - x[11 * plane + c] - x[15 * plane + c];
        float bias = b[c];
        y00[c] = a0 + a1 + a2 + bias;
        y01[c] = a1 - a2 - a3 + bias;
        y10[c] = b0 + b1 + b2 + bias;
        y11[c] = b1 - b2 - b3 + bias;
    }
}

/* out tiles [t0, t0 + tc) = A^T M A (+ b); tiles cut by the border go through scratch. */
static void transform_output(float *out, const float *restrict m, const float *b,
                             float *scratch, int t0, int tc, const conv2d_shape *s)
{
    const int c_n = s->c_out, tpi = tiles_per_image(s), tx_n = tiles_x(s);
    const size_t plane = (size_t)tc * c_n;
    for (int tl = 0; tl < tc; tl++) {
        int t = t0 + tl, n = t / tpi, r = t % tpi, ty = r / tx_n, tx = r % tx_n;
        int oy = 2 * ty, ox = 2 * tx;
        int has_y1 = oy + 1 < s->h_out, has_x1 = ox + 1 < s->w_out;
        float *o00 = out + (((size_t)n * s->h_out + oy) * s->w_out + ox) * c_n;
        float *o01 = o00 + c_n;
        float *o10 = o00 + (size_t)s->w_out * c_n;
        float *o11 = o10 + c_n;
        const float *x = m + (size_t)tl * c_n;
        if (has_y1 && has_x1) {
            output_tile(o00, o01, o10, o11, x, plane, b, c_n);
            continue;
        }
        float *y = scratch;
        output_tile(y, y + c_n, y + 2 * (size_t)c_n, y + 3 * (size_t)c_n, x, plane, b, c_n);
        memcpy(o00, y, (size_t)c_n * sizeof(float));
        if (has_x1)
            memcpy(o01, y + c_n, (size_t)c_n * sizeof(float));
        if (has_y1)
            memcpy(o10, y + 2 * (size_t)c_n, (size_t)c_n * sizeof(float));
    }
}

/* dM[16][tc][C_out] = A dY A^T for tiles [t0, t0 + tc) (dY zero outside the output),
 * dY rounded when rnd. */
static inline __attribute__((always_inline)) void
transform_dout_body(float *restrict dm, const float *dout, const float *zero, int t0, int tc,
                    const conv2d_shape *s, const int rnd)
{
    const int c_n = s->c_out, tpi = tiles_per_image(s), tx_n = tiles_x(s);
    const size_t plane = (size_t)tc * c_n;
    for (int tl = 0; tl < tc; tl++) {
        int t = t0 + tl, n = t / tpi, r = t % tpi, ty = r / tx_n, tx = r % tx_n;
        int oy = 2 * ty, ox = 2 * tx;
        int has_y1 = oy + 1 < s->h_out, has_x1 = ox + 1 < s->w_out;
        const float *g00 = dout + (((size_t)n * s->h_out + oy) * s->w_out + ox) * c_n;
        const float *g01 = has_x1 ? g00 + c_n : zero;
        const float *g10 = has_y1 ? g00 + (size_t)s->w_out * c_n : zero;
        const float *g11 = has_y1 && has_x1 ? g00 + ((size_t)s->w_out + 1) * c_n : zero;
        float *restrict o = dm + (size_t)tl * c_n;
#pragma omp simd
        for (int c = 0; c < c_n; c++) {
            float a0 = WINO_LD(g00[c]), b0 = WINO_LD(g01[c]), a1 = WINO_LD(g10[c]),
                  b1 = WINO_LD(g11[c]);
            /* rows of A dY: (a0,b0), (a0+a1, b0+b1), (a0-a1, b0-b1), (-a1, -b1); each row
             * (a, b) becomes (a, a+b, a-b, -b). */
            float r1a = a0 + a1, r1b = b0 + b1, r2a = a0 - a1, r2b = b0 - b1;
            o[0 * plane + c] = a0;
            o[1 * plane + c] = a0 + b0;
            o[2 * plane + c] = a0 - b0;
            o[3 * plane + c] = -b0;
            o[4 * plane + c] = r1a;
            o[5 * plane + c] = r1a + r1b;
            o[6 * plane + c] = r1a - r1b;
            o[7 * plane + c] = -r1b;
            o[8 * plane + c] = r2a;
            o[9 * plane + c] = r2a + r2b;
            o[10 * plane + c] = r2a - r2b;
            o[11 * plane + c] = -r2b;
            o[12 * plane + c] = -a1;
            o[13 * plane + c] = -a1 - b1;
            o[14 * plane + c] = b1 - a1;
            o[15 * plane + c] = b1;
        }
    }
}

WINO_TILE_KERNEL static void transform_dout_fp32(float *restrict dm, const float *dout,
                                                 const float *zero, int t0, int tc,
                                                 const conv2d_shape *s)
{
    transform_dout_body(dm, dout, zero, t0, tc, s, 0);
}

WINO_TILE_KERNEL static void transform_dout_bf16(float *restrict dm, const float *dout,
                                                 const float *zero, int t0, int tc,
                                                 const conv2d_shape *s)
{
    transform_dout_body(dm, dout, zero, t0, tc, s, 1);
}

static void transform_dout(float *dm, const float *dout, const float *zero, int t0, int tc,
                           const conv2d_shape *s, int rnd)
{
    if (rnd)
        transform_dout_bf16(dm, dout, zero, t0, tc, s);
    else
        transform_dout_fp32(dm, dout, zero, t0, tc, s);
}

/* d[q] += (B dV B^T)[q] for the 16 pixels of one patch; dV at x with the given plane
 * stride. Pixels outside the image point at a scratch sink, never read back. */
WINO_TILE_KERNEL static void input_grad_tile(float *const *d, const float *restrict x,
                                             size_t plane, int c_n)
{
    float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
    float *d6 = d[6], *d7 = d[7], *d8 = d[8], *d9 = d[9], *d10 = d[10], *d11 = d[11];
    float *d12 = d[12], *d13 = d[13], *d14 = d[14], *d15 = d[15];
#pragma omp simd
    for (int c = 0; c < c_n; c++) {
        float x00 = x[0 * plane + c], x01 = x[1 * plane + c], x02 = x[2 * plane + c],
              x03 = x[3 * plane + c];
        float x10 = x[4 * plane + c], x11 = x[5 * plane + c], x12 = x[6 * plane + c],
              x13 = x[7 * plane + c];
        float x20 = x[8 * plane + c], x21 = x[9 * plane + c], x22 = x[10 * plane + c],
              x23 = x[11 * plane + c];
        float x30 = x[12 * plane + c], x31 = x[13 * plane + c], x32 = x[14 * plane + c],
              x33 = x[15 * plane + c];
        /* rows of B dV: f0 = x0, f1 = x1 - x2 + x3, f2 = -x0 + x1 + x2, f3 = -x3 */
        float f10 = x10 - x20 + x30, f11 = x11 - x21 + x31, f12 = x12 - x22 + x32,
              f13 = x13 - x23 + x33;
        float f20 = x10 + x20 - x00, f21 = x11 + x21 - x01, f22 = x12 + x22 - x02,
              f23 = x13 + x23 - x03;
        /* each row (y0..y3) becomes (y0, y1 - y2 + y3, -y0 + y1 + y2, -y3) */
        d0[c] += x00;
        d1[c] += x01 - x02 + x03;
        d2[c] += x01 + x02 - x00;
        d3[c] += -x03;
        d4[c] += f10;
        d5[c] += f11 - f12 + f13;
        d6[c] += f11 + f12 - f10;
        d7[c] += -f13;
        d8[c] += f20;
        d9[c] += f21 - f22 + f23;
        d10[c] += f21 + f22 - f20;
        d11[c] += -f23;
        d12[c] += -x30;
        d13[c] += -(x31 - x32 + x33);
        d14[c] += -(x31 + x32 - x30);
        d15[c] += x33;
    }
}

/* din patches of tiles [t0, t0 + tc) += B dV B^T. Patches overlap: run serially. */
static void scatter_input_grad(float *din, const float *dv, float *sink, int t0, int tc,
                               const conv2d_shape *s)
{
    const int c_n = s->c_in, tpi = tiles_per_image(s), tx_n = tiles_x(s);
    const size_t plane = (size_t)tc * c_n;
    for (int tl = 0; tl < tc; tl++) {
        int t = t0 + tl, n = t / tpi, r = t % tpi, ty = r / tx_n, tx = r % tx_n;
        float *d[16];
        for (int i = 0; i < 4; i++) {
            int iy = 2 * ty - s->pad + i;
            for (int j = 0; j < 4; j++) {
                int ix = 2 * tx - s->pad + j;
                d[i * 4 + j] = iy < 0 || iy >= s->h || ix < 0 || ix >= s->w
                                   ? sink
                                   : din + (((size_t)n * s->h + iy) * s->w + ix) * c_n;
            }
        }
        input_grad_tile(d, dv + (size_t)tl * c_n, plane, c_n);
    }
}

static void part_tiles(const conv2d_shape *s, int p, int *t0, int *t1)
{
    int n0 = (int)((long long)s->n * p / s->parts);
    int n1 = (int)((long long)s->n * (p + 1) / s->parts);
    *t0 = n0 * tiles_per_image(s);
    *t1 = n1 * tiles_per_image(s);
}

static void forward_tiles(float *out, const float *in, const float *u, const float *b,
                          const float *zero, float *v, int t0, int t1, const conv2d_shape *s,
                          int rnd)
{
    float *scratch = v + vm_floats(s);
    const int ci = s->c_in, co = s->c_out, step = chunk_tiles(s);
    for (int t = t0; t < t1; t += step) {
        int tc = t1 - t < step ? t1 - t : step;
        float *m = v + 16 * (size_t)tc * ci;
        transform_input(v, in, zero, t, tc, s, rnd);
        for (int q = 0; q < 16; q++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tc, co, ci, 1.0f,
                        v + (size_t)q * tc * ci, ci, u + (size_t)q * co * ci, ci, 0.0f,
                        m + (size_t)q * tc * co, co);
        transform_output(out, m, b ? b : zero, scratch, t, tc, s);
    }
}

void wino_forward(float *out, const float *in, const float *w, const float *b, float *ws,
                  const conv2d_shape *s, int rnd)
{
    float *u = ws, *zero = ws + (u_heavy(s) ? 1 : 2) * u_floats(s);
    float *chunks = zero + zero_floats(s);
    const size_t cf = chunk_floats(s);
    memset(zero, 0, zero_floats(s) * sizeof(float));
    transform_weights(u, w, s, rnd);
    if (s->parts == 1) {
        forward_tiles(out, in, u, b, zero, chunks, 0, s->n * tiles_per_image(s), s, rnd);
        return;
    }
#pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < s->parts; p++) {
        int t0, t1;
        part_tiles(s, p, &t0, &t1);
        forward_tiles(out, in, u, b, zero, chunks + (size_t)p * cf, t0, t1, s, rnd);
    }
}

static void backward_tiles(float *din, float *du, const float *dout, const float *in,
                           const float *u, const float *zero, float *v, int t0, int t1,
                           const conv2d_shape *s, int rnd)
{
    const int ci = s->c_in, co = s->c_out, step = chunk_tiles(s);
    for (int t = t0; t < t1; t += step) {
        int tc = t1 - t < step ? t1 - t : step;
        float *dm = v + 16 * (size_t)tc * ci;
        transform_dout(dm, dout, zero, t, tc, s, rnd);
        if (du)
            transform_input(v, in, zero, t, tc, s, rnd);
        for (int q = 0; q < 16; q++) {
            float *vq = v + (size_t)q * tc * ci;
            const float *dmq = dm + (size_t)q * tc * co;
            if (du)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, co, ci, tc, 1.0f, dmq,
                            co, vq, ci, 1.0f, du + (size_t)q * co * ci, ci);
            if (din)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tc, ci, co, 1.0f, dmq,
                            co, u + (size_t)q * co * ci, ci, 0.0f, vq, ci);
        }
        if (din)
            scatter_input_grad(din, v, v + vm_floats(s) + 4 * (size_t)co, t, tc, s);
    }
}

/* One backward pass over every part: din (given U) and/or du. */
static void backward_parts(float *din, float *du, const float *dout, const float *in,
                           const float *u, const float *zero, float *chunks, float *partial,
                           const conv2d_shape *s, int rnd)
{
    const size_t uf = u_floats(s), cf = chunk_floats(s);
    if (s->parts == 1) {
        backward_tiles(din, du, dout, in, u, zero, chunks, 0, s->n * tiles_per_image(s), s,
                       rnd);
        return;
    }
#pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < s->parts; p++) {
        int t0, t1;
        part_tiles(s, p, &t0, &t1);
        float *dup = NULL;
        if (du && p == 0) {
            dup = du;
        } else if (du) {
            dup = partial + (size_t)(p - 1) * uf;
            memset(dup, 0, uf * sizeof(float));
        }
        backward_tiles(din, dup, dout, in, u, zero, chunks + (size_t)p * cf, t0, t1, s,
                       rnd);
    }
    if (du) {
#pragma omp parallel for schedule(static) if (uf * s->parts >= WINO_PAR_MIN)
        for (size_t i = 0; i < uf; i++) {
            float acc = du[i];
            for (int p = 1; p < s->parts; p++)
                acc += partial[(size_t)(p - 1) * uf + i];
            du[i] = acc;
        }
    }
}

/* du += the weight gradient, part p owning components [16p/parts, 16(p+1)/parts) over
 * every tile, in tile order. */
static void du_components(float *du, const float *dout, const float *in, const float *zero,
                          float *chunks, const conv2d_shape *s, int rnd)
{
    const int ci = s->c_in, co = s->c_out, step = chunk_tiles(s);
    const int total = s->n * tiles_per_image(s), parts = s->parts;
    const size_t cf = chunk_floats(s);
#pragma omp parallel for schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        float *v = chunks + (size_t)p * cf;
        int q0 = 16 * p / parts, q1 = 16 * (p + 1) / parts;
        for (int t = 0; t < total; t += step) {
            int tc = total - t < step ? total - t : step;
            float *dm = v + 16 * (size_t)tc * ci;
            transform_dout(dm, dout, zero, t, tc, s, rnd);
            transform_input(v, in, zero, t, tc, s, rnd);
            for (int q = q0; q < q1; q++)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, co, ci, tc, 1.0f,
                            dm + (size_t)q * tc * co, co, v + (size_t)q * tc * ci, ci, 1.0f,
                            du + (size_t)q * co * ci, ci);
        }
    }
}

void wino_backward(float *din, float *dw, const float *dout, const float *in, const float *w,
                   float *ws, const conv2d_shape *s, int rnd)
{
    if (!din && !dw)
        return;
    const size_t uf = u_floats(s);
    const int heavy = u_heavy(s);
    float *u = ws, *du = heavy ? ws : ws + uf, *zero = heavy ? ws + uf : ws + 2 * uf;
    float *chunks = zero + zero_floats(s);
    float *partial = chunks + (size_t)s->parts * chunk_floats(s);
    memset(zero, 0, zero_floats(s) * sizeof(float));
    if (din)
        transform_weights(u, w, s, rnd);
    if (!heavy) {
        if (dw)
            memset(du, 0, uf * sizeof(float));
        backward_parts(din, dw ? du : NULL, dout, in, u, zero, chunks, partial, s, rnd);
    } else {
        if (din)
            backward_parts(din, NULL, dout, in, u, zero, chunks, partial, s, rnd);
        if (dw) { /* U is done with */
            memset(du, 0, uf * sizeof(float));
            if (s->parts > 1)
                du_components(du, dout, in, zero, chunks, s, rnd);
            else
                backward_parts(NULL, du, dout, in, NULL, zero, chunks, partial, s, rnd);
        }
    }
    if (dw)
        add_weight_grad(dw, du, s);
}
