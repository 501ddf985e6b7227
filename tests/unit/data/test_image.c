/* test_image.c: PNG and JPEG decoding of every colour type, and every refusal path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <zlib.h>

#include "data/data.h"
#include "testutil.h"

#define W 13
#define H 7

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp();
    return dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

/* A deterministic RGB pattern with every channel different. */
static uint8_t pat(int x, int y, int ch)
{
    return (uint8_t)(x * 17 + y * 31 + ch * 71 + x * y * 3);
}

static void decode_ok(const char *name, image *im)
{
    char err[256] = "";
    int rc = image_decode_file(im, tu_path(dir, name), 0, err, sizeof err);
    if (rc)
        fail_msg("%s: %s", name, err);
    assert_int_equal(im->w, W);
    assert_int_equal(im->h, H);
}

static void test_png_gray(void **state)
{
    (void)state;
    uint8_t g8[W * H], g16[W * H * 2], ga[W * H * 2];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int i = y * W + x;
            uint8_t v = pat(x, y, 0);
            g8[i] = v;
            g16[2 * i] = v; /* v * 257 big-endian: both bytes v */
            g16[2 * i + 1] = v;
            ga[2 * i] = v;
            ga[2 * i + 1] = (uint8_t)(x * 40);
        }
    assert_int_equal(tu_write_png(tu_path(dir, "g8.png"), W, H, PNG_COLOR_TYPE_GRAY, 8, 0, g8,
                                  NULL, 0), 0);
    assert_int_equal(tu_write_png(tu_path(dir, "g16.png"), W, H, PNG_COLOR_TYPE_GRAY, 16, 0,
                                  g16, NULL, 0), 0);
    assert_int_equal(tu_write_png(tu_path(dir, "ga.png"), W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0,
                                  ga, NULL, 0), 0);
    const char *names[] = {"g8.png", "g16.png", "ga.png"};
    for (int k = 0; k < 3; k++) {
        image im;
        decode_ok(names[k], &im);
        assert_int_equal(im.c, 1);
        assert_memory_equal(im.px, g8, sizeof g8);
        image_free(&im);
    }
}

static void test_png_gray_1bit(void **state)
{
    (void)state;
    /* 1-bit gray expands to 0 / 255. */
    int stride = (W + 7) / 8;
    uint8_t bits[((W + 7) / 8) * H];
    memset(bits, 0, sizeof bits);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if ((x + y) & 1)
                bits[y * stride + x / 8] |= (uint8_t)(0x80 >> (x % 8));
    assert_int_equal(tu_write_png(tu_path(dir, "g1.png"), W, H, PNG_COLOR_TYPE_GRAY, 1, 0, bits,
                                  NULL, 0), 0);
    image im;
    decode_ok("g1.png", &im);
    assert_int_equal(im.c, 1);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            assert_int_equal(im.px[y * W + x], (x + y) & 1 ? 255 : 0);
    image_free(&im);
}

static void test_png_color(void **state)
{
    (void)state;
    uint8_t rgb[W * H * 3], rgb16[W * H * 6], rgba[W * H * 4], idx[W * H], pal[16 * 3],
        pal_rgb[W * H * 3];
    for (int i = 0; i < 16; i++)
        for (int ch = 0; ch < 3; ch++)
            pal[3 * i + ch] = pat(i, 2 * i, ch);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int i = y * W + x;
            idx[i] = (uint8_t)((x + 3 * y) % 16);
            for (int ch = 0; ch < 3; ch++) {
                uint8_t v = pat(x, y, ch);
                rgb[3 * i + ch] = v;
                rgb16[6 * i + 2 * ch] = v;
                rgb16[6 * i + 2 * ch + 1] = v;
                rgba[4 * i + ch] = v;
                pal_rgb[3 * i + ch] = pal[3 * idx[i] + ch];
            }
            rgba[4 * i + 3] = (uint8_t)(y * 30);
        }
    assert_int_equal(tu_write_png(tu_path(dir, "rgb.png"), W, H, PNG_COLOR_TYPE_RGB, 8, 0, rgb,
                                  NULL, 0), 0);
    assert_int_equal(tu_write_png(tu_path(dir, "rgb16.png"), W, H, PNG_COLOR_TYPE_RGB, 16, 0,
                                  rgb16, NULL, 0), 0);
    assert_int_equal(tu_write_png(tu_path(dir, "rgba.png"), W, H, PNG_COLOR_TYPE_RGBA, 8, 0,
                                  rgba, NULL, 0), 0);
    assert_int_equal(tu_write_png(tu_path(dir, "inter.png"), W, H, PNG_COLOR_TYPE_RGB, 8, 1,
                                  rgb, NULL, 0), 0);
    assert_int_equal(tu_write_png(tu_path(dir, "pal.png"), W, H, PNG_COLOR_TYPE_PALETTE, 8, 0,
                                  idx, pal, 16), 0);
    const char *names[] = {"rgb.png", "rgb16.png", "rgba.png", "inter.png"};
    for (int k = 0; k < 4; k++) {
        image im;
        decode_ok(names[k], &im);
        assert_int_equal(im.c, 3);
        assert_memory_equal(im.px, rgb, sizeof rgb);
        image_free(&im);
    }
    image im;
    decode_ok("pal.png", &im);
    assert_int_equal(im.c, 3);
    assert_memory_equal(im.px, pal_rgb, sizeof pal_rgb);
    image_free(&im);

    /* From memory, sniffed from the bytes whatever the name. */
    size_t len;
    uint8_t *buf = tu_read_file(tu_path(dir, "rgb.png"), &len);
    assert_non_null(buf);
    char err[256];
    assert_int_equal(image_decode_mem(&im, buf, len, 0, err, sizeof err), 0);
    assert_memory_equal(im.px, rgb, sizeof rgb);
    image_free(&im);
    free(buf);

    int w, h;
    assert_int_equal(image_probe_file(tu_path(dir, "inter.png"), &w, &h, err, sizeof err), 0);
    assert_int_equal(w, W);
    assert_int_equal(h, H);
}

/* Smooth content so JPEG's loss stays small; compares the mean absolute error. */
static double jpeg_mae(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a[i] - (int)b[i]);
    return s / (double)n;
}

static void test_jpeg(void **state)
{
    (void)state;
    enum { JW = 40, JH = 24 };
    uint8_t rgb[JW * JH * 3], gray[JW * JH];
    for (int y = 0; y < JH; y++)
        for (int x = 0; x < JW; x++) {
            gray[y * JW + x] = (uint8_t)(40 + 4 * x + 2 * y);
            for (int ch = 0; ch < 3; ch++)
                rgb[(y * JW + x) * 3 + ch] = (uint8_t)(20 + 2 * x + 3 * y + 40 * ch);
        }
    assert_int_equal(tu_write_jpeg(tu_path(dir, "base.jpg"), JW, JH, 3, rgb, 95, 0), 0);
    assert_int_equal(tu_write_jpeg(tu_path(dir, "prog.jpg"), JW, JH, 3, rgb, 95, 1), 0);
    assert_int_equal(tu_write_jpeg(tu_path(dir, "gray.jpg"), JW, JH, 1, gray, 95, 0), 0);
    char err[256];
    const char *names[] = {"base.jpg", "prog.jpg"};
    for (int k = 0; k < 2; k++) {
        image im;
        int rc = image_decode_file(&im, tu_path(dir, names[k]), 0, err, sizeof err);
        assert_int_equal(rc, 0);
        assert_int_equal(im.w, JW);
        assert_int_equal(im.h, JH);
        assert_int_equal(im.c, 3);
        assert_true(jpeg_mae(im.px, rgb, sizeof rgb) < 3.0);
        image_free(&im);
    }
    image im;
    assert_int_equal(image_decode_file(&im, tu_path(dir, "gray.jpg"), 0, err, sizeof err), 0);
    assert_int_equal(im.c, 1);
    assert_true(jpeg_mae(im.px, gray, sizeof gray) < 3.0);
    image_free(&im);

    int w, h;
    assert_int_equal(image_probe_file(tu_path(dir, "prog.jpg"), &w, &h, err, sizeof err), 0);
    assert_int_equal(w, JW);
    assert_int_equal(h, JH);

    /* Shrinking in the DCT: the largest of 1/2, 1/4, 1/8 that keeps the shorter side. */
    const int mins[] = {0, 3, 4, 6, 7, 12, 13, 24, 25};
    const int want_h[] = {24, 3, 6, 6, 12, 12, 24, 24, 24};
    for (int k = 0; k < 9; k++) {
        assert_int_equal(image_decode_file_min(&im, tu_path(dir, "base.jpg"), mins[k], 0, err,
                                               sizeof err), 0);
        assert_int_equal(im.h, want_h[k]);
        assert_int_equal(im.w, want_h[k] * JW / JH);
        image_free(&im);
    }
    /* PNG has no such shortcut: full size */
    uint8_t g[16 * 16] = {0};
    assert_int_equal(tu_write_png(tu_path(dir, "g16x16.png"), 16, 16, PNG_COLOR_TYPE_GRAY, 8, 0,
                                  g, NULL, 0), 0);
    assert_int_equal(image_decode_file_min(&im, tu_path(dir, "g16x16.png"), 2, 0, err,
                                           sizeof err), 0);
    assert_int_equal(im.w, 16);
    image_free(&im);
}

/* Seeded random corruption of valid files: each decodes or is refused, never crashes or
 * leaks (the suite runs under AddressSanitizer in CI). */
static void test_fuzz_corruption(void **state)
{
    (void)state;
    enum { FW = 33, FH = 21 };
    uint8_t rgb[FW * FH * 3];
    for (int i = 0; i < FW * FH * 3; i++)
        rgb[i] = (uint8_t)(i * 5 + (i >> 3));
    assert_int_equal(tu_write_png(tu_path(dir, "fz.png"), FW, FH, PNG_COLOR_TYPE_RGB, 8, 1, rgb,
                                  NULL, 0), 0);
    assert_int_equal(tu_write_jpeg(tu_path(dir, "fz.jpg"), FW, FH, 3, rgb, 80, 1), 0);
    const char *names[] = {"fz.png", "fz.jpg"};
    uint64_t s = 12345;
    for (int f = 0; f < 2; f++) {
        size_t len;
        uint8_t *orig = tu_read_file(tu_path(dir, names[f]), &len);
        uint8_t *buf = malloc(len);
        int refused_n = 0;
        for (int trial = 0; trial < 300; trial++) {
            memcpy(buf, orig, len);
            int flips = 1 + (int)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 60);
            for (int k = 0; k < flips; k++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                size_t at = 3 + (size_t)((s >> 33) % (len - 3));
                buf[at] ^= (uint8_t)(1u << ((s >> 20) & 7));
            }
            image im;
            char err[256] = "";
            if (image_decode_mem(&im, buf, len, 0, err, sizeof err) == 0) {
                assert_true(im.w > 0 && im.h > 0 && (im.c == 1 || im.c == 3));
                image_free(&im);
            } else {
                assert_true(err[0] != 0);
                assert_null(im.px);
                refused_n++;
            }
        }
        /* PNG's CRCs catch nearly every flip */
        if (f == 0)
            assert_true(refused_n > 250);
        free(buf);
        free(orig);
    }
}

/* Expects decoding (from file and from memory) to fail with a reason containing `want`. */
static void refused(const char *path, int64_t max_pixels, const char *want)
{
    char err[256] = "";
    image im = {0};
    int rc = image_decode_file(&im, path, max_pixels, err, sizeof err);
    if (rc == 0)
        fail_msg("%s decoded but should be refused (%s)", path, want);
    assert_null(im.px);
    if (!strstr(err, want))
        fail_msg("%s: reason '%s' lacks '%s'", path, err, want);
    size_t len;
    uint8_t *buf = tu_read_file(path, &len);
    if (buf) {
        err[0] = 0;
        assert_true(image_decode_mem(&im, buf, len, max_pixels, err, sizeof err) < 0);
        assert_null(im.px);
        if (!strstr(err, want))
            fail_msg("%s (memory): reason '%s' lacks '%s'", path, err, want);
        free(buf);
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Rewrites the IHDR of a PNG in memory to w x h with a valid CRC. */
static void png_set_dims(uint8_t *buf, uint32_t w, uint32_t h)
{
    /* signature (8) + length (4) + "IHDR" (4) → data at 16, 13 bytes, CRC after. */
    put_be32(buf + 16, w);
    put_be32(buf + 20, h);
    uint32_t crc = (uint32_t)crc32(0, buf + 12, 17);
    put_be32(buf + 29, crc);
}

/* Finds the SOF0/SOF2 marker of a JPEG and rewrites its height and width. */
static void jpeg_set_dims(uint8_t *buf, size_t len, uint16_t w, uint16_t h)
{
    for (size_t i = 2; i + 9 < len; i++)
        if (buf[i] == 0xFF && (buf[i + 1] == 0xC0 || buf[i + 1] == 0xC2)) {
            buf[i + 5] = (uint8_t)(h >> 8);
            buf[i + 6] = (uint8_t)h;
            buf[i + 7] = (uint8_t)(w >> 8);
            buf[i + 8] = (uint8_t)w;
            return;
        }
    fail_msg("no SOF marker");
}

static void test_refusals(void **state)
{
    (void)state;
    uint8_t rgb[W * H * 3];
    for (int i = 0; i < W * H * 3; i++)
        rgb[i] = (uint8_t)(i * 7);
    assert_int_equal(tu_write_png(tu_path(dir, "ok.png"), W, H, PNG_COLOR_TYPE_RGB, 8, 0, rgb,
                                  NULL, 0), 0);
    enum { JW = 64, JH = 48 };
    uint8_t *big = malloc(JW * JH * 4);
    for (int i = 0; i < JW * JH * 4; i++)
        big[i] = (uint8_t)(i * 13 ^ i >> 5);
    assert_int_equal(tu_write_jpeg(tu_path(dir, "ok.jpg"), JW, JH, 3, big, 90, 0), 0);
    assert_int_equal(tu_write_jpeg(tu_path(dir, "cmyk.jpg"), JW, JH, 4, big, 90, 0), 0);
    free(big);
    size_t plen, jlen;
    uint8_t *png = tu_read_file(tu_path(dir, "ok.png"), &plen);
    uint8_t *jpg = tu_read_file(tu_path(dir, "ok.jpg"), &jlen);
    assert_non_null(png);
    assert_non_null(jpg);

    /* empty, not an image, missing */
    assert_int_equal(tu_write_file(tu_path(dir, "empty.png"), "", 0), 0);
    refused(tu_path(dir, "empty.png"), 0, "empty");
    assert_int_equal(tu_write_file(tu_path(dir, "text.png"), "hello, world\n", 13), 0);
    refused(tu_path(dir, "text.png"), 0, "not a PNG or JPEG");
    {
        char err[256] = "";
        image im;
        assert_true(image_decode_file(&im, tu_path(dir, "missing.png"), 0, err, sizeof err) < 0);
        assert_non_null(strstr(err, "missing.png"));
    }

    /* truncated: half the file, and the signature only */
    assert_int_equal(tu_write_file(tu_path(dir, "trunc.png"), png, plen / 2), 0);
    refused(tu_path(dir, "trunc.png"), 0, "truncated");
    assert_int_equal(tu_write_file(tu_path(dir, "sig.png"), png, 8), 0);
    refused(tu_path(dir, "sig.png"), 0, "truncated");
    assert_int_equal(tu_write_file(tu_path(dir, "trunc.jpg"), jpg, jlen / 2), 0);
    refused(tu_path(dir, "trunc.jpg"), 0, "truncated");
    assert_int_equal(tu_write_file(tu_path(dir, "sig.jpg"), jpg, 3), 0);
    refused(tu_path(dir, "sig.jpg"), 0, "JPEG");

    /* corrupt: a flipped byte in the PNG's IHDR (CRC mismatch), garbage after the
     * signature, a JPEG whose header bytes are overwritten */
    uint8_t *bad = malloc(plen > jlen ? plen : jlen);
    memcpy(bad, png, plen);
    bad[18] ^= 0x55;
    assert_int_equal(tu_write_file(tu_path(dir, "crc.png"), bad, plen), 0);
    refused(tu_path(dir, "crc.png"), 0, "corrupt PNG");
    memcpy(bad, png, plen);
    for (size_t i = 8; i < plen; i++)
        bad[i] = (uint8_t)(i * 37);
    assert_int_equal(tu_write_file(tu_path(dir, "garbage.png"), bad, plen), 0);
    refused(tu_path(dir, "garbage.png"), 0, "corrupt PNG");
    memcpy(bad, jpg, jlen);
    for (size_t i = 3; i < 200 && i < jlen; i++)
        bad[i] = (uint8_t)(i * 37);
    assert_int_equal(tu_write_file(tu_path(dir, "garbage.jpg"), bad, jlen), 0);
    refused(tu_path(dir, "garbage.jpg"), 0, "corrupt JPEG");

    /* zero-sized */
    memcpy(bad, png, plen);
    png_set_dims(bad, 0, H);
    assert_int_equal(tu_write_file(tu_path(dir, "zero.png"), bad, plen), 0);
    refused(tu_path(dir, "zero.png"), 0, "PNG");
    memcpy(bad, jpg, jlen);
    jpeg_set_dims(bad, jlen, JW, 0);
    assert_int_equal(tu_write_file(tu_path(dir, "zero.jpg"), bad, jlen), 0);
    refused(tu_path(dir, "zero.jpg"), 0, "JPEG");

    /* absurdly large headers: refused before any pixel buffer is allocated */
    memcpy(bad, png, plen);
    png_set_dims(bad, 20000, 20000);
    assert_int_equal(tu_write_file(tu_path(dir, "huge.png"), bad, plen), 0);
    refused(tu_path(dir, "huge.png"), 0, "too large");
    memcpy(bad, jpg, jlen);
    jpeg_set_dims(bad, jlen, 60000, 60000);
    assert_int_equal(tu_write_file(tu_path(dir, "huge.jpg"), bad, jlen), 0);
    refused(tu_path(dir, "huge.jpg"), 0, "too large");
    /* and a real image over a small cap */
    refused(tu_path(dir, "ok.png"), W * H - 1, "too large");
    refused(tu_path(dir, "ok.jpg"), 1000, "too large");

    /* CMYK */
    refused(tu_path(dir, "cmyk.jpg"), 0, "CMYK");
    {
        char err[256];
        int w, h;
        assert_true(image_probe_file(tu_path(dir, "cmyk.jpg"), &w, &h, err, sizeof err) < 0);
        assert_true(image_probe_file(tu_path(dir, "zero.png"), &w, &h, err, sizeof err) < 0);
        assert_true(image_probe_file(tu_path(dir, "text.png"), &w, &h, err, sizeof err) < 0);
    }

    /* NULL and zero-length buffers */
    {
        char err[64] = "";
        image im;
        assert_true(image_decode_mem(&im, NULL, 0, 0, err, sizeof err) < 0);
        assert_non_null(strstr(err, "empty"));
        assert_true(image_decode_mem(&im, png, 0, 0, NULL, 0) < 0);
    }
    /* Every prefix of the PNG and the JPEG is refused or decoded, never a crash or leak. */
    for (size_t n = 1; n < plen; n += 3) {
        image im;
        if (image_decode_mem(&im, png, n, 0, NULL, 0) == 0)
            fail_msg("a %zu-byte prefix of a %zu-byte PNG decoded", n, plen);
    }
    for (size_t n = 1; n < jlen; n += 7) {
        image im;
        if (image_decode_mem(&im, jpg, n, 0, NULL, 0) == 0)
            fail_msg("a %zu-byte prefix of a %zu-byte JPEG decoded", n, jlen);
    }
    free(bad);
    free(png);
    free(jpg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_gray),
        cmocka_unit_test(test_png_gray_1bit),
        cmocka_unit_test(test_png_color),
        cmocka_unit_test(test_jpeg),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_fuzz_corruption),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
