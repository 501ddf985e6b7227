/* test_transforms.c: pixel-exact crops, flips, the 8 dihedral transforms, reflect padding,
 * the lighting formula, scaling, normalisation, channel conversion, and seeded
 * reproducibility. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "rng.h"

static image make_image(int w, int h, int c, uint64_t seed)
{
    image im = {w, h, c, malloc((size_t)w * h * c)};
    uint64_t s = seed;
    for (int i = 0; i < w * h * c; i++)
        im.px[i] = (uint8_t)(rng_next(&s) >> 56);
    return im;
}

static tfm_config plain_cfg(int sz, int c_out)
{
    tfm_config cfg = {.sz = sz, .c_out = c_out, .tfms = TFMS_NONE, .max_zoom = 1};
    for (int i = 0; i < 3; i++) {
        cfg.mean[i] = 0;
        cfg.std[i] = 1;
    }
    return cfg;
}

static float px01(const image *im, int x, int y, int ch)
{
    return im->px[((size_t)y * im->w + x) * im->c + ch] * (1.0f / 255.0f);
}

static void test_center_and_random_crop(void **state)
{
    (void)state;
    image im = make_image(7, 4, 3, 1);
    tfm_config cfg = plain_cfg(4, 3);
    float out[4 * 4 * 3];
    tfm_plan p;
    transform_plan_identity(&p);
    assert_int_equal(transform_apply_plan(out, &im, &cfg, &p), 0);
    /* CenterCrop: start = ceil((7 - 4) / 2) = 2 */
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int ch = 0; ch < 3; ch++)
                assert_float_equal(out[(y * 4 + x) * 3 + ch], px01(&im, x + 2, y, ch), 1e-7);
    /* RandomCrop: start = floor(crop * slack) for slack 3 */
    const float crops[] = {0.0f, 0.34f, 0.67f, 0.999f};
    const int starts[] = {0, 1, 2, 2};
    for (int k = 0; k < 4; k++) {
        p.crop_x = crops[k];
        p.crop_y = 0.5f;
        assert_int_equal(transform_apply_plan(out, &im, &cfg, &p), 0);
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++)
                assert_float_equal(out[(y * 4 + x) * 3], px01(&im, x + starts[k], y, 0), 1e-7);
    }
    image_free(&im);

    /* The same vertically. */
    im = make_image(3, 6, 1, 2);
    cfg = plain_cfg(3, 1);
    float o2[9];
    transform_plan_identity(&p);
    p.crop_x = 0.3f;
    p.crop_y = 0.9f; /* floor(0.9 * 3) = 2 */
    assert_int_equal(transform_apply_plan(o2, &im, &cfg, &p), 0);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++)
            assert_float_equal(o2[y * 3 + x], px01(&im, x, y + 2, 0), 1e-7);
    image_free(&im);
}

/* Reference dihedral on a plain array, written the numpy way: k rot90s then fliplr. */
static void ref_dihedral(const float *a, int w, int h, int k, float *out, int *ow, int *oh)
{
    float *cur = malloc(sizeof(float) * w * h), *nxt = malloc(sizeof(float) * w * h);
    memcpy(cur, a, sizeof(float) * w * h);
    int cw = w, chh = h;
    for (int r = 0; r < (k & 3); r++) {
        /* rot90: R[i][j] = A[j][cw - 1 - i]; R is cw rows by chh columns. */
        for (int i = 0; i < cw; i++)
            for (int j = 0; j < chh; j++)
                nxt[i * chh + j] = cur[j * cw + (cw - 1 - i)];
        float *t = cur;
        cur = nxt;
        nxt = t;
        int tw = cw;
        cw = chh;
        chh = tw;
    }
    for (int i = 0; i < chh; i++)
        for (int j = 0; j < cw; j++)
            out[i * cw + j] = k & 4 ? cur[i * cw + (cw - 1 - j)] : cur[i * cw + j];
    *ow = cw;
    *oh = chh;
    free(cur);
    free(nxt);
}

static void test_flip_and_dihedral(void **state)
{
    (void)state;
    /* Square: every one of the 8 must match the reference and all 8 must differ. */
    image im = make_image(5, 5, 1, 3);
    tfm_config cfg = plain_cfg(5, 1);
    float a[25], outs[8][25], ref[25];
    for (int i = 0; i < 25; i++)
        a[i] = im.px[i] * (1.0f / 255.0f);
    for (int k = 0; k < 8; k++) {
        tfm_plan p;
        transform_plan_identity(&p);
        p.dihedral = k;
        assert_int_equal(transform_apply_plan(outs[k], &im, &cfg, &p), 0);
        int ow, oh;
        ref_dihedral(a, 5, 5, k, ref, &ow, &oh);
        for (int i = 0; i < 25; i++)
            assert_float_equal(outs[k][i], ref[i], 1e-7);
        for (int j = 0; j < k; j++)
            assert_memory_not_equal(outs[k], outs[j], sizeof outs[k]);
    }
    /* RandomFlip is dihedral 4: out[y][x] = in[y][w - 1 - x]. */
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 5; x++)
            assert_float_equal(outs[4][y * 5 + x], a[y * 5 + 4 - x], 1e-7);
    image_free(&im);

    /* Non-square, cropped after the dihedral: 6 x 3, sz 3, random crop at the far end. */
    im = make_image(6, 3, 1, 4);
    cfg = plain_cfg(3, 1);
    float b[18], full[18];
    for (int i = 0; i < 18; i++)
        b[i] = im.px[i] * (1.0f / 255.0f);
    for (int k = 0; k < 8; k++) {
        tfm_plan p;
        transform_plan_identity(&p);
        p.dihedral = k;
        p.crop_x = 0.99f;
        p.crop_y = 0.99f;
        float out[9];
        assert_int_equal(transform_apply_plan(out, &im, &cfg, &p), 0);
        int ow, oh;
        ref_dihedral(b, 6, 3, k, full, &ow, &oh);
        int ox = (int)floorf(0.99f * (ow - 3)), oy = (int)floorf(0.99f * (oh - 3));
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 3; x++)
                assert_float_equal(out[y * 3 + x], full[(y + oy) * ow + x + ox], 1e-7);
    }
    image_free(&im);
}

/* OpenCV's BORDER_REFLECT written out for one reflection: ...cb|abc...yz|zy... */
static int ref_reflect(int i, int n)
{
    return i < 0 ? -i - 1 : i >= n ? 2 * n - 1 - i : i;
}

/* out (sz x sz, one channel) shows im reflected: out[y][x] = im[y0 + y][x0 + dx * x]. */
static void assert_reflected(const float *out, const image *im, int sz, int x0, int dx, int y0)
{
    for (int y = 0; y < sz; y++)
        for (int x = 0; x < sz; x++)
            assert_float_equal(out[y * sz + x],
                               px01(im, ref_reflect(x0 + dx * x, im->w),
                                    ref_reflect(y0 + y, im->h), 0), 1e-7);
}

static void test_padding(void **state)
{
    (void)state;
    image im = make_image(5, 5, 1, 21);
    tfm_config cfg = plain_cfg(5, 1), unpadded = cfg;
    cfg.pad = 2;
    float out[25], ref[25];
    tfm_plan p;
    /* The centre crop of the padded image is the image itself. */
    transform_plan_identity(&p);
    assert_int_equal(transform_apply_plan(out, &im, &cfg, &p), 0);
    assert_int_equal(transform_apply_plan(ref, &im, &unpadded, &p), 0);
    assert_memory_equal(out, ref, sizeof out);
    /* RandomCrop over the 9 x 9 padded image: offset floor(crop * 4), reflected edges. */
    const float crops[] = {0.0f, 0.3f, 0.6f, 0.999f};
    const int starts[] = {0, 1, 2, 3};
    for (int kx = 0; kx < 4; kx++)
        for (int ky = 0; ky < 4; ky++) {
            p.crop_x = crops[kx];
            p.crop_y = crops[ky];
            assert_int_equal(transform_apply_plan(out, &im, &cfg, &p), 0);
            assert_reflected(out, &im, 5, starts[kx] - 2, 1, starts[ky] - 2);
        }
    /* The flip mirrors the padded image: crop at the left edge of the mirror shows the
     * image's right border reflected. */
    p.dihedral = 4;
    p.crop_x = 0.0f;
    p.crop_y = 0.0f;
    assert_int_equal(transform_apply_plan(out, &im, &cfg, &p), 0);
    assert_reflected(out, &im, 5, 8 - 2, -1, -2);
    image_free(&im);

    /* pad_sz: 3 pixels at 28 are round(3 * 16 / 28) = 2 at 16. */
    im = make_image(16, 16, 1, 22);
    cfg = plain_cfg(16, 1);
    cfg.pad = 3;
    cfg.pad_sz = 28;
    float o16[256];
    transform_plan_identity(&p);
    p.crop_x = 0.0f;
    p.crop_y = 0.0f;
    assert_int_equal(transform_apply_plan(o16, &im, &cfg, &p), 0);
    assert_reflected(o16, &im, 16, -2, 1, -2);
    image_free(&im);
}

static void test_lighting_formula(void **state)
{
    (void)state;
    image im = make_image(6, 6, 3, 5);
    tfm_config cfg = plain_cfg(6, 3);
    double mu = 0;
    for (int i = 0; i < 6 * 6 * 3; i++)
        mu += im.px[i] * (1.0f / 255.0f);
    mu /= 6 * 6 * 3;
    const float bs[] = {0.03f, -0.05f, 0.0f, 0.5f};
    const float cs[] = {-0.04f, 0.05f, 0.02f, 0.0f};
    for (int k = 0; k < 4; k++) {
        tfm_plan p;
        transform_plan_identity(&p);
        p.brightness = bs[k];
        p.contrast = cs[k];
        float out[6 * 6 * 3];
        assert_int_equal(transform_apply_plan(out, &im, &cfg, &p), 0);
        double c = cs[k] >= 0 ? 1 + cs[k] : 1 / (1 - cs[k]);
        int clipped = 0;
        for (int i = 0; i < 6 * 6 * 3; i++) {
            double x = im.px[i] * (1.0f / 255.0f);
            double v = (x - mu) * c + mu + bs[k];
            if (v > 1) {
                v = 1;
                clipped++;
            }
            if (v < 0)
                v = 0;
            assert_float_equal(out[i], v, 1e-5);
        }
        if (bs[k] == 0.5f)
            assert_true(clipped > 0);
    }
    image_free(&im);
}

static void test_normalise_and_channels(void **state)
{
    (void)state;
    image rgb = make_image(4, 4, 3, 6), gray = make_image(4, 4, 1, 7);
    tfm_config cfg = plain_cfg(4, 3);
    const float mean[3] = {0.4f, 0.5f, 0.6f}, sd[3] = {0.2f, 0.25f, 0.3f};
    memcpy(cfg.mean, mean, sizeof mean);
    memcpy(cfg.std, sd, sizeof sd);
    float out[48];
    tfm_plan p;
    transform_plan_identity(&p);
    transform_apply_plan(out, &rgb, &cfg, &p);
    for (int i = 0; i < 16; i++)
        for (int ch = 0; ch < 3; ch++)
            assert_float_equal(out[i * 3 + ch], (rgb.px[i * 3 + ch] / 255.0f - mean[ch]) / sd[ch],
                               1e-5);
    /* gray replicated to 3 channels, each normalised with its own statistics */
    transform_apply_plan(out, &gray, &cfg, &p);
    for (int i = 0; i < 16; i++)
        for (int ch = 0; ch < 3; ch++)
            assert_float_equal(out[i * 3 + ch], (gray.px[i] / 255.0f - mean[ch]) / sd[ch], 1e-5);
    /* RGB averaged to 1 channel */
    cfg.c_out = 1;
    transform_apply_plan(out, &rgb, &cfg, &p);
    for (int i = 0; i < 16; i++) {
        float g = (rgb.px[i * 3] + rgb.px[i * 3 + 1] + rgb.px[i * 3 + 2]) / (3 * 255.0f);
        assert_float_equal(out[i], (g - mean[0]) / sd[0], 1e-5);
    }
    image_free(&rgb);
    image_free(&gray);
}

static void test_scaling(void **state)
{
    (void)state;
    /* Shrinking by 2 averages 2x2 blocks. */
    image im = make_image(8, 4, 1, 8);
    tfm_config cfg = plain_cfg(2, 1);
    float out[4];
    tfm_plan p;
    transform_plan_identity(&p);
    p.crop_x = 0; /* 4 x 2 after scaling: take the left 2 x 2 */
    transform_apply_plan(out, &im, &cfg, &p);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++) {
            float s = 0;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++)
                    s += px01(&im, 2 * x + dx, 2 * y + dy, 0);
            assert_float_equal(out[y * 2 + x], s / 4, 1e-5);
        }
    image_free(&im);

    /* Shrinking 3 -> 2 weighs the shared middle pixel by a half: (2/3, 1/3). */
    uint8_t px3[9] = {0, 90, 255, 0, 90, 255, 0, 90, 255};
    image i3 = {3, 3, 1, px3};
    float o2[4];
    transform_plan_identity(&p);
    transform_apply_plan(o2, &i3, &cfg, &p);
    assert_float_equal(o2[0], (0 * 2.0f / 3 + 90 / 3.0f) / 255, 1e-5);
    assert_float_equal(o2[1], (90 / 3.0f + 255 * 2.0f / 3) / 255, 1e-5);

    /* Enlarging is bilinear with half-pixel centres: 0, 255 -> 0, 63.75, 191.25, 255. */
    uint8_t px2[4] = {0, 255, 0, 255};
    image i2 = {2, 2, 1, px2};
    cfg = plain_cfg(4, 1);
    float o4[16];
    transform_apply_plan(o4, &i2, &cfg, &p);
    const float want[4] = {0, 63.75f, 191.25f, 255};
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            assert_float_equal(o4[y * 4 + x], want[x] / 255, 1e-5);

    /* image_scale_min keeps the aspect ratio (floor, never below the target). */
    image big = make_image(50, 30, 3, 9), small;
    assert_int_equal(image_scale_min(&small, &big, 12), 0);
    assert_int_equal(small.h, 12);
    assert_int_equal(small.w, 20);
    assert_int_equal(small.c, 3);
    image_free(&small);
    image_free(&big);

    /* RandomScale: zoom 1.5 at sz 4 scales the shorter side to 6, then crops 4. */
    im = make_image(4, 4, 1, 10);
    cfg = plain_cfg(4, 1);
    image z6;
    assert_int_equal(image_scale_min(&z6, &im, 6), 0);
    transform_plan_identity(&p);
    p.zoom = 1.5f;
    p.crop_x = 0;
    p.crop_y = 0;
    float oz[16];
    transform_apply_plan(oz, &im, &cfg, &p);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            assert_float_equal(oz[y * 4 + x], px01(&z6, x, y, 0), 0.5f / 255 + 1e-6);
    image_free(&z6);
    image_free(&im);
}

static void test_rotation_reflects(void **state)
{
    (void)state;
    /* Reflect padding: a constant image stays constant under rotation (zero padding
     * would blacken the corners). */
    image im = make_image(9, 9, 3, 11);
    memset(im.px, 153, 9 * 9 * 3);
    tfm_config cfg = plain_cfg(9, 3);
    tfm_plan p;
    transform_plan_identity(&p);
    p.rotate_deg = 10;
    float out[9 * 9 * 3];
    transform_apply_plan(out, &im, &cfg, &p);
    for (int i = 0; i < 9 * 9 * 3; i++)
        assert_float_equal(out[i], 153 / 255.0f, 1e-5);
    image_free(&im);

    /* A pattern rotates: the centre pixel stays, others move. */
    im = make_image(9, 9, 1, 12);
    cfg = plain_cfg(9, 1);
    float o0[81], o1[81];
    p.rotate_deg = 0;
    transform_apply_plan(o0, &im, &cfg, &p);
    p.rotate_deg = 9.5f;
    transform_apply_plan(o1, &im, &cfg, &p);
    assert_float_equal(o1[4 * 9 + 4], o0[4 * 9 + 4], 1e-6);
    assert_memory_not_equal(o0, o1, sizeof o0);
    image_free(&im);
}

static void test_draw_distribution(void **state)
{
    (void)state;
    tfm_config cfg = plain_cfg(32, 3);
    cfg.augment = 1;
    cfg.max_zoom = 1.5f;
    cfg.tfms = TFMS_TOP_DOWN;
    int zoomed = 0, rotated = 0, seen[8] = {0};
    const int n = 4000;
    uint64_t rng = 42;
    for (int i = 0; i < n; i++) {
        tfm_plan p;
        transform_draw(&p, &cfg, &rng);
        assert_true(p.zoom >= 1 && p.zoom <= 1.5f);
        zoomed += p.zoom > 1;
        assert_true(fabsf(p.rotate_deg) <= 10);
        rotated += p.rotate_deg != 0;
        assert_true(fabsf(p.brightness) <= 0.05f && fabsf(p.contrast) <= 0.05f);
        assert_true(p.crop_x >= 0 && p.crop_x < 1 && p.crop_y >= 0 && p.crop_y < 1);
        seen[p.dihedral]++;
    }
    assert_true(zoomed > n * 0.70 && zoomed < n * 0.80);
    assert_true(rotated > n * 0.70 && rotated < n * 0.80);
    for (int k = 0; k < 8; k++)
        assert_true(seen[k] > n / 8 * 0.8 && seen[k] < n / 8 * 1.2);

    cfg.tfms = TFMS_SIDE_ON;
    int flips = 0;
    for (int i = 0; i < n; i++) {
        tfm_plan p;
        transform_draw(&p, &cfg, &rng);
        assert_true(p.dihedral == 0 || p.dihedral == 4);
        flips += p.dihedral == 4;
    }
    assert_true(flips > n * 0.45 && flips < n * 0.55);

    /* flip: left-right flips half the time and nothing else but zoom and crop */
    cfg.tfms = TFMS_FLIP;
    flips = 0;
    for (int i = 0; i < n; i++) {
        tfm_plan p;
        transform_draw(&p, &cfg, &rng);
        assert_true(p.dihedral == 0 || p.dihedral == 4);
        assert_true(p.rotate_deg == 0 && p.brightness == 0 && p.contrast == 0);
        flips += p.dihedral == 4;
    }
    assert_true(flips > n * 0.45 && flips < n * 0.55);

    cfg.tfms = TFMS_NONE;
    for (int i = 0; i < 100; i++) {
        tfm_plan p;
        transform_draw(&p, &cfg, &rng);
        assert_true(p.rotate_deg == 0 && p.dihedral == 0 && p.brightness == 0 &&
                    p.contrast == 0);
    }
    cfg.augment = 0;
    cfg.tfms = TFMS_TOP_DOWN;
    tfm_plan p;
    transform_draw(&p, &cfg, &rng);
    assert_true(p.zoom == 1 && p.rotate_deg == 0 && p.dihedral == 0 && p.crop_x < 0);
}

static void test_seeded_reproducible(void **state)
{
    (void)state;
    image im = make_image(40, 30, 3, 13);
    tfm_config cfg = plain_cfg(24, 3);
    cfg.augment = 1;
    cfg.max_zoom = 1.3f;
    cfg.tfms = TFMS_TOP_DOWN;
    float a[24 * 24 * 3], b[24 * 24 * 3], c[24 * 24 * 3];
    uint64_t r1 = 77, r2 = 77, r3 = 78;
    transform_apply(a, &im, &cfg, &r1);
    transform_apply(b, &im, &cfg, &r2);
    transform_apply(c, &im, &cfg, &r3);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(r1, r2);
    assert_memory_not_equal(a, c, sizeof a);
    image_free(&im);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_center_and_random_crop),
        cmocka_unit_test(test_flip_and_dihedral),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_lighting_formula),
        cmocka_unit_test(test_normalise_and_channels),
        cmocka_unit_test(test_scaling),
        cmocka_unit_test(test_rotation_reflects),
        cmocka_unit_test(test_draw_distribution),
        cmocka_unit_test(test_seeded_reproducible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
