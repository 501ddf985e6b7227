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
    for (int y = 0; y < h; y++) {
        const uint8_t *row = in->px + (size_t)y * w * c;
        float *o = tmp + (size_t)y * W * c;
        for (int x = 0; x < W; x++) {
            const float *wt = tx.w + tx.off[x];
            const uint8_t *s = row + (size_t)tx.start[x] * c;
            for (int ch = 0; ch < c; ch++) {
                float acc = 0;
                for (int k = 0; k < tx.n[x]; k++)
                    acc += wt[k] * s[k * c + ch];
                o[x * c + ch] = acc * inv255;
            }
        }
    }
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

/* dst = src (h, w, c) rotated by deg counter-clockwise about its centre, bilinear. */
static void rotate(float *dst, const float *src, int w, int h, int c, float deg)
{
    double a = deg * (3.14159265358979323846 / 180.0);
    double ca = cos(a), sa = sin(a);
    double cx = (w - 1) * 0.5, cy = (h - 1) * 0.5;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            /* Inverse of the counter-clockwise rotation, in image coordinates (y down). */
            double dx = x - cx, dy = y - cy;
            double sx = ca * dx - sa * dy + cx, sy = sa * dx + ca * dy + cy;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            float fx = (float)(sx - x0), fy = (float)(sy - y0);
            int xa = reflect(x0, w), xb = reflect(x0 + 1, w);
            int ya = reflect(y0, h), yb = reflect(y0 + 1, h);
            const float *p00 = src + ((size_t)ya * w + xa) * c;
            const float *p01 = src + ((size_t)ya * w + xb) * c;
            const float *p10 = src + ((size_t)yb * w + xa) * c;
            const float *p11 = src + ((size_t)yb * w + xb) * c;
            float *o = dst + ((size_t)y * w + x) * c;
            for (int ch = 0; ch < c; ch++) {
                float top = p00[ch] + (p01[ch] - p00[ch]) * fx;
                float bot = p10[ch] + (p11[ch] - p10[ch]) * fx;
                o[ch] = top + (bot - top) * fy;
            }
        }
    }
}

/* fast.ai's lighting(): out = clip((x - mu) * c + mu + b, 0, 1), mu the image mean. */
static void lighting(float *px, size_t n, float b, float cprime)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += px[i];
    float mu = (float)(sum / (double)n);
    float c = cprime >= 0 ? 1 + cprime : 1 / (1 - cprime);
    for (size_t i = 0; i < n; i++) {
        float v = (px[i] - mu) * c + mu + b;
        px[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
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
    if (cfg->tfms != TFMS_NONE) {
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

int transform_apply_plan(float *out, const image *in, const tfm_config *cfg, const tfm_plan *p)
{
    const int sz = cfg->sz, c_out = cfg->c_out == 1 ? 1 : 3, c = in->c;
    int rc = -ENOMEM;
    float *a = NULL, *b = NULL;

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
    if (p->rotate_deg != 0) {
        b = malloc(sizeof(float) * n);
        if (!b) {
            rc = -ENOMEM;
            goto out_fail;
        }
        rotate(b, a, W, H, c, p->rotate_deg);
        float *t = a;
        a = b;
        b = t;
    }
    if (p->brightness != 0 || p->contrast != 0)
        lighting(a, n, p->brightness, p->contrast);

    /* Dihedral, crop, channel conversion and normalisation in one pass over the output. */
    int k = p->dihedral & 7;
    int DW = k & 1 ? H : W, DH = k & 1 ? W : H;
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

    /* The map is affine in (x, y): find the origin and the two unit steps once. */
    int x0, y0, x1, y1, x2, y2;
    dihedral_map(k, W, H, ox, oy, &x0, &y0);
    dihedral_map(k, W, H, ox + 1, oy, &x1, &y1);
    dihedral_map(k, W, H, ox, oy + 1, &x2, &y2);
    int dxj = x1 - x0, dyj = y1 - y0, dxi = x2 - x0, dyi = y2 - y0;

    float mean[3], inv[3];
    for (int ch = 0; ch < 3; ch++) {
        mean[ch] = cfg->mean[ch];
        inv[ch] = cfg->std[ch] > 0 ? 1.0f / cfg->std[ch] : 1.0f;
    }
    for (int i = 0; i < sz; i++) {
        for (int j = 0; j < sz; j++) {
            int sx = clampi(x0 + dxj * j + dxi * i, 0, W - 1);
            int sy = clampi(y0 + dyj * j + dyi * i, 0, H - 1);
            const float *s = a + ((size_t)sy * W + sx) * c;
            float *o = out + ((size_t)i * sz + j) * c_out;
            if (c == c_out) {
                for (int ch = 0; ch < c; ch++)
                    o[ch] = (s[ch] - mean[ch]) * inv[ch];
            } else if (c == 1) {
                for (int ch = 0; ch < 3; ch++)
                    o[ch] = (s[0] - mean[ch]) * inv[ch];
            } else {
                float g = (s[0] + s[1] + s[2]) * (1.0f / 3.0f);
                o[0] = (g - mean[0]) * inv[0];
            }
        }
    }
    free(a);
    free(b);
    return 0;

out_fail:
    free(a);
    free(b);
    memset(out, 0, sizeof(float) * (size_t)sz * sz * c_out);
    return rc;
}

void transform_apply(float *out, const image *in, const tfm_config *cfg, uint64_t *rng)
{
    tfm_plan p;
    transform_draw(&p, cfg, rng);
    (void)transform_apply_plan(out, in, cfg, &p);
}
