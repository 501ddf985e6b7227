/* transforms.c: fast.ai 0.7 image transforms (Scale/RandomScale, RandomRotate,
 * RandomLighting, RandomFlip/RandomDihedral, Random/CenterCrop) and normalisation. */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define ROTATE_P 0.75f
#define ROTATE_DEG 10.0f
#define SCALE_P 0.75f
#define LIGHTING_B 0.05f
#define LIGHTING_C 0.05f
#define FLIP_P 0.5f

/* One resampling axis: output i is sum over k < n[i] of w[off[i] + k] * src[start[i] + k]. */
typedef struct axis_tab {
    int *start, *n, *off;
    float *w;
} axis_tab;

static void axis_free(axis_tab *t)
{
    free(t->start);
    free(t->n);
    free(t->off);
    free(t->w);
}

/* Area weights when shrinking (each output averages the source span it covers, like
 * OpenCV's INTER_AREA), bilinear with half-pixel centres when enlarging. */
static int axis_build(axis_tab *t, int src, int dst)
{
    int taps = dst < src ? (int)ceil((double)src / dst) + 1 : 2;
    t->start = malloc(sizeof(int) * dst);
    t->n = malloc(sizeof(int) * dst);
    t->off = malloc(sizeof(int) * dst);
    t->w = malloc(sizeof(float) * (size_t)dst * taps);
    if (!t->start || !t->n || !t->off || !t->w) {
        axis_free(t);
        return -ENOMEM;
    }
    double scale = (double)src / dst;
    for (int i = 0; i < dst; i++) {
        t->off[i] = i * taps;
        float *w = t->w + (size_t)i * taps;
        if (dst < src) {
            double a = i * scale, b = (i + 1) * scale;
            int s0 = (int)floor(a), s1 = (int)ceil(b);
            if (s1 > src)
                s1 = src;
            int n = 0;
            for (int s = s0; s < s1 && n < taps; s++) {
                double lo = s > a ? s : a, hi = s + 1 < b ? s + 1 : b;
                if (hi > lo)
                    w[n++] = (float)((hi - lo) / scale);
                else if (n == 0)
                    s0++;
            }
            t->start[i] = s0;
            t->n[i] = n;
        } else {
            double f = (i + 0.5) * scale - 0.5;
            int x0 = (int)floor(f);
            float frac = (float)(f - x0);
            if (x0 < 0) {
                x0 = 0;
                frac = 0;
            }
            if (x0 >= src - 1) {
                x0 = src - 1;
                frac = 0;
            }
            t->start[i] = x0;
            if (frac == 0) {
                t->n[i] = 1;
                w[0] = 1;
            } else {
                t->n[i] = 2;
                w[0] = 1 - frac;
                w[1] = frac;
            }
        }
    }
    return 0;
}

/* The horizontal resampling pass, inlined with a constant c so the channel loop unrolls. */
static inline __attribute__((always_inline)) void hpass(float *tmp, const uint8_t *px, int w,
                                                        int h, int W, const axis_tab *tx,
                                                        const int c)
{
    const float inv255 = 1.0f / 255.0f;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = px + (size_t)y * w * c;
        float *o = tmp + (size_t)y * W * c;
        for (int x = 0; x < W; x++) {
            const float *wt = tx->w + tx->off[x];
            const uint8_t *s = row + (size_t)tx->start[x] * c;
            const int n = tx->n[x];
            float acc[4] = {0, 0, 0, 0};
            for (int k = 0; k < n; k++)
                for (int ch = 0; ch < c && ch < 4; ch++)
                    acc[ch] += wt[k] * s[k * c + ch];
            for (int ch = 0; ch < c && ch < 4; ch++)
                o[x * c + ch] = acc[ch] * inv255;
        }
    }
}

/* dst (H, W, c) floats in [0,1] = in (h, w, c) bytes resampled. */
static int resample(float *dst, int W, int H, const image *in)
{
    const int w = in->w, h = in->h, c = in->c;
    const float inv255 = 1.0f / 255.0f;
    if (W == w && H == h) {
        size_t n = (size_t)w * h * c;
        for (size_t i = 0; i < n; i++)
            dst[i] = in->px[i] * inv255;
        return 0;
    }
    axis_tab tx = {0}, ty = {0};
    float *tmp = NULL;
    int rc = axis_build(&tx, w, W);
    if (rc)
        return rc;
    rc = axis_build(&ty, h, H);
    if (rc)
        goto out_free_tx;
    tmp = malloc(sizeof(float) * (size_t)h * W * c);
    if (!tmp) {
        rc = -ENOMEM;
        goto out_free_ty;
    }
    if (c == 3)
        hpass(tmp, in->px, w, h, W, &tx, 3);
    else if (c == 1)
        hpass(tmp, in->px, w, h, W, &tx, 1);
    else
        hpass(tmp, in->px, w, h, W, &tx, c);
    const size_t rowlen = (size_t)W * c;
    for (int y = 0; y < H; y++) {
        const float *wt = ty.w + ty.off[y];
        float *o = dst + (size_t)y * rowlen;
        const float *s = tmp + (size_t)ty.start[y] * rowlen;
        for (size_t i = 0; i < rowlen; i++)
            o[i] = wt[0] * s[i];
        for (int k = 1; k < ty.n[y]; k++) {
            const float *sk = s + k * rowlen;
            for (size_t i = 0; i < rowlen; i++)
                o[i] += wt[k] * sk[i];
        }
    }
    free(tmp);
out_free_ty:
    axis_free(&ty);
out_free_tx:
    axis_free(&tx);
    return rc;
}

/* fast.ai's scale_min: the shorter side becomes targ, the other floor(side * ratio) but
 * never below targ. */
static void scale_dims(int w, int h, int targ, int *W, int *H)
{
    double ratio = (double)targ / (w < h ? w : h);
    int a = (int)floor(w * ratio), b = (int)floor(h * ratio);
    *W = a < targ ? targ : a;
    *H = b < targ ? targ : b;
}

int image_scale_min(image *out, const image *in, int shorter)
{
    memset(out, 0, sizeof *out);
    if (!in || !in->px || in->w <= 0 || in->h <= 0 || shorter <= 0)
        return -EINVAL;
    int W, H;
    scale_dims(in->w, in->h, shorter, &W, &H);
    size_t n = (size_t)W * H * in->c;
    float *f = malloc(sizeof(float) * n);
    uint8_t *px = malloc(n);
    int rc = -ENOMEM;
    if (!f || !px)
        goto out_free;
    rc = resample(f, W, H, in);
    if (rc)
        goto out_free;
    for (size_t i = 0; i < n; i++) {
        float v = f[i] * 255.0f + 0.5f;
        px[i] = v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
    }
    out->w = W;
    out->h = H;
    out->c = in->c;
    out->px = px;
    px = NULL;
out_free:
    free(px);
    free(f);
    return rc;
}

/* OpenCV's BORDER_REFLECT (fedcba|abcdef|fedcba), fast.ai's padding for rotations. */
static inline int reflect(int i, int n)
{
    if (n == 1)
        return 0;
    int p = 2 * n;
    i %= p;
    if (i < 0)
        i += p;
    return i < n ? i : p - 1 - i;
}

/* One output pixel of the rotation: bilinear, with reflect padding near the border. */
static inline __attribute__((always_inline)) void rot_px(float *o, const float *src, int w,
                                                         int h, float sx, float sy, const int c)
{
    float fx0 = floorf(sx), fy0 = floorf(sy);
    int x0 = (int)fx0, y0 = (int)fy0;
    float fx = sx - fx0, fy = sy - fy0;
    int xa, xb, ya, yb;
    if (x0 >= 0 && x0 < w - 1 && y0 >= 0 && y0 < h - 1) {
        xa = x0;
        xb = x0 + 1;
        ya = y0;
        yb = y0 + 1;
    } else {
        xa = reflect(x0, w);
        xb = reflect(x0 + 1, w);
        ya = reflect(y0, h);
        yb = reflect(y0 + 1, h);
    }
    const float *p00 = src + ((size_t)ya * w + xa) * c;
    const float *p01 = src + ((size_t)ya * w + xb) * c;
    const float *p10 = src + ((size_t)yb * w + xa) * c;
    const float *p11 = src + ((size_t)yb * w + xb) * c;
    for (int ch = 0; ch < c; ch++) {
        float top = p00[ch] + (p01[ch] - p00[ch]) * fx;
        float bot = p10[ch] + (p11[ch] - p10[ch]) * fx;
        o[ch] = top + (bot - top) * fy;
    }
}

static double sum_floats(const float *px, size_t n)
{
    /* Eight float lanes per block of 4096, accumulated in double: vectorises without
     * reassociation flags and stays accurate. */
    double total = 0;
    size_t i = 0;
    while (i + 8 <= n) {
        size_t end = i + 4096 < n ? i + 4096 : n;
        float acc[8] = {0};
        for (; i + 8 <= end; i += 8)
            for (int j = 0; j < 8; j++)
                acc[j] += px[i + j];
        for (int j = 0; j < 8; j++)
            total += acc[j];
    }
    for (; i < n; i++)
        total += px[i];
    return total;
}

void transform_plan_identity(tfm_plan *p)
{
    memset(p, 0, sizeof *p);
    p->zoom = 1;
    p->crop_x = p->crop_y = -1;
}

void transform_draw(tfm_plan *p, const tfm_config *cfg, uint64_t *rng)
{
    transform_plan_identity(p);
    if (!cfg->augment)
        return;
    if (cfg->max_zoom > 1 && rng_uniform(rng) < SCALE_P)
        p->zoom = 1 + rng_uniform(rng) * (cfg->max_zoom - 1);
    if (cfg->tfms == TFMS_FLIP) {
        p->dihedral = rng_uniform(rng) < FLIP_P ? 4 : 0;
    } else if (cfg->tfms != TFMS_NONE) {
        if (rng_uniform(rng) < ROTATE_P)
            p->rotate_deg = (2 * rng_uniform(rng) - 1) * ROTATE_DEG;
        p->brightness = (2 * rng_uniform(rng) - 1) * LIGHTING_B;
        p->contrast = (2 * rng_uniform(rng) - 1) * LIGHTING_C;
        if (cfg->tfms == TFMS_SIDE_ON)
            p->dihedral = rng_uniform(rng) < FLIP_P ? 4 : 0;
        else
            p->dihedral = (int)rng_below(rng, 4) | (rng_uniform(rng) < FLIP_P ? 4 : 0);
    }
    p->crop_x = rng_uniform(rng);
    p->crop_y = rng_uniform(rng);
}

/* Maps a pixel (x, y) of the dihedral-transformed image back to the source (w, h). */
static void dihedral_map(int k, int w, int h, int x, int y, int *sx, int *sy)
{
    int rot = k & 3;
    /* Widths of the image after each rotation alternate w, h. */
    int dw = rot & 1 ? h : w;
    if (k & 4)
        x = dw - 1 - x;
    for (int r = rot; r > 0; r--) {
        /* np.rot90 once: R[i][j] = A[j][W_A - 1 - i], so A_x = W_A - 1 - R_y, A_y = R_x. */
        int wa = (r - 1) & 1 ? h : w;
        int nx = wa - 1 - y, ny = x;
        x = nx;
        y = ny;
    }
    *sx = x;
    *sy = y;
}

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The pixel of an image n wide that coordinate i of its reflect-padded copy (pad each side)
 * shows. */
static inline int unpad(int i, int pad, int n)
{
    i -= pad;
    return i >= 0 && i < n ? i : reflect(i, n);
}

int transform_pad_at(const tfm_config *cfg)
{
    if (cfg->pad <= 0)
        return 0;
    if (cfg->pad_sz <= 0)
        return cfg->pad;
    return (2 * cfg->pad * cfg->sz + cfg->pad_sz) / (2 * cfg->pad_sz);
}

/* Everything after the scaling, in one pass over the sz x sz output: for each output pixel
 * the dihedral transform and the crop give a pixel of the rotated image, the rotation gives
 * a point of the scaled image a, sampled bilinearly (reflect padding); then lighting,
 * channel conversion and normalisation. Inlined per (c, c_out) so the channel loops unroll. */
typedef struct final_args {
    int W, H, sz;
    int pad;                          /* AddPadding: the rotated image is W + 2 pad wide */
    int x0, y0, dxj, dyj, dxi, dyi;   /* affine map from (j, i) to the rotated image */
    int rotating;
    float ca, sa, cx, cy;
    int light;
    float mu, lc, lb;
    float mean[3], inv[3];
} final_args;

static inline __attribute__((always_inline)) void final_pass(float *out, const float *a,
                                                             const final_args *f, const int c,
                                                             const int c_out)
{
    const int W = f->W, H = f->H, sz = f->sz;
    for (int i = 0; i < sz; i++) {
        float *o = out + (size_t)i * sz * c_out;
        for (int j = 0; j < sz; j++, o += c_out) {
            int xr = f->x0 + f->dxj * j + f->dxi * i;
            int yr = f->y0 + f->dyj * j + f->dyi * i;
            float v[4];
            if (f->rotating) {
                float dx = xr - f->cx, dy = yr - f->cy;
                float sx = f->ca * dx - f->sa * dy + f->cx, sy = f->sa * dx + f->ca * dy + f->cy;
                rot_px(v, a, W, H, sx - f->pad, sy - f->pad, c);
            } else {
                size_t at = (size_t)unpad(yr, f->pad, H) * W + unpad(xr, f->pad, W);
                const float *src = a + at * c;
                for (int ch = 0; ch < c; ch++)
                    v[ch] = src[ch];
            }
            if (f->light)
                for (int ch = 0; ch < c; ch++) {
                    float t = (v[ch] - f->mu) * f->lc + f->mu + f->lb;
                    v[ch] = t < 0 ? 0 : t > 1 ? 1 : t;
                }
            if (c == c_out) {
                for (int ch = 0; ch < c; ch++)
                    o[ch] = (v[ch] - f->mean[ch]) * f->inv[ch];
            } else if (c == 1) {
                for (int ch = 0; ch < 3; ch++)
                    o[ch] = (v[0] - f->mean[ch]) * f->inv[ch];
            } else {
                float g = (v[0] + v[1] + v[2]) * (1.0f / 3.0f);
                o[0] = (g - f->mean[0]) * f->inv[0];
            }
        }
    }
}

int transform_apply_plan(float *out, const image *in, const tfm_config *cfg, const tfm_plan *p)
{
    const int sz = cfg->sz, c_out = cfg->c_out == 1 ? 1 : 3, c = in->c;
    int rc = -ENOMEM;
    float *a = NULL;

    if (c != 1 && c != 3) {
        rc = -EINVAL;
        goto out_fail;
    }
    int targ = sz;
    if (p->zoom > 1)
        targ = (int)floor(p->zoom * sz);
    if (targ < sz)
        targ = sz;
    int W, H;
    scale_dims(in->w, in->h, targ, &W, &H);
    size_t n = (size_t)W * H * c;
    a = malloc(sizeof(float) * n);
    if (!a)
        goto out_fail;
    rc = resample(a, W, H, in);
    if (rc)
        goto out_fail;

    const int pad = transform_pad_at(cfg), PW = W + 2 * pad, PH = H + 2 * pad;
    final_args f = {.W = W, .H = H, .sz = sz, .pad = pad};
    if (p->rotate_deg != 0) {
        double rad = p->rotate_deg * (3.14159265358979323846 / 180.0);
        f.rotating = 1;
        f.ca = (float)cos(rad);
        f.sa = (float)sin(rad);
        f.cx = (PW - 1) * 0.5f;
        f.cy = (PH - 1) * 0.5f;
    }
    /* RandomLighting, fast.ai's lighting(): clip((x - mu) * c + mu + b, 0, 1). fast.ai takes
     * mu after the rotation; we take it before, which saves rotating pixels the crop drops
     * (reflect padding keeps the two means within a fraction of a percent). */
    if (p->brightness != 0 || p->contrast != 0) {
        f.light = 1;
        f.mu = (float)(sum_floats(a, n) / (double)n);
        f.lc = p->contrast >= 0 ? 1 + p->contrast : 1 / (1 - p->contrast);
        f.lb = p->brightness;
    }

    int k = p->dihedral & 7;
    int DW = k & 1 ? PH : PW, DH = k & 1 ? PW : PH;
    int ox, oy;
    if (p->crop_x < 0)
        ox = (DW - sz + 1) / 2;
    else
        ox = (int)floor(p->crop_x * (DW - sz));
    if (p->crop_y < 0)
        oy = (DH - sz + 1) / 2;
    else
        oy = (int)floor(p->crop_y * (DH - sz));
    ox = clampi(ox, 0, DW > sz ? DW - sz : 0);
    oy = clampi(oy, 0, DH > sz ? DH - sz : 0);
    /* The dihedral map is affine in (x, y): find the origin and the two unit steps once. */
    int x1, y1, x2, y2;
    dihedral_map(k, PW, PH, ox, oy, &f.x0, &f.y0);
    dihedral_map(k, PW, PH, ox + 1, oy, &x1, &y1);
    dihedral_map(k, PW, PH, ox, oy + 1, &x2, &y2);
    f.dxj = x1 - f.x0;
    f.dyj = y1 - f.y0;
    f.dxi = x2 - f.x0;
    f.dyi = y2 - f.y0;
    for (int ch = 0; ch < 3; ch++) {
        f.mean[ch] = cfg->mean[ch];
        f.inv[ch] = cfg->std[ch] > 0 ? 1.0f / cfg->std[ch] : 1.0f;
    }
    if (c == 3 && c_out == 3)
        final_pass(out, a, &f, 3, 3);
    else if (c == 1 && c_out == 1)
        final_pass(out, a, &f, 1, 1);
    else if (c == 1)
        final_pass(out, a, &f, 1, 3);
    else
        final_pass(out, a, &f, 3, 1);
    free(a);
    return 0;

out_fail:
    free(a);
    memset(out, 0, sizeof(float) * (size_t)sz * sz * c_out);
    return rc;
}

void transform_apply(float *out, const image *in, const tfm_config *cfg, uint64_t *rng)
{
    tfm_plan p;
    transform_draw(&p, cfg, rng);
    (void)transform_apply_plan(out, in, cfg, &p);
}
