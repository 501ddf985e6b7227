/* fuzz_image.c: PNG and JPEG decoding (engine/data/image.c) from memory and, the way the
 * loader reads files, from disk with DCT scaling; then the training transforms on what
 * came out. A decoded image must be as large as it says, agree with the header probe, and
 * a scaled decode must keep its shorter side at least min_shorter (or its full size). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "fuzz_util.h"

/* Small enough that a hostile header cannot make one input take seconds. */
#define FUZZ_MAX_PIXELS (1 << 20)
#define FUZZ_SZ 16

static void check_image(const image *im)
{
    FUZZ_CHECK(im->w > 0 && im->h > 0 && (im->c == 1 || im->c == 3));
    FUZZ_CHECK((int64_t)im->w * im->h <= FUZZ_MAX_PIXELS);
    FUZZ_CHECK(im->px != NULL);
    /* Every byte is read, so that an allocation shorter than w*h*c shows. */
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)im->w * im->h * im->c; i++)
        sum += im->px[i];
    FUZZ_CHECK(sum <= 255u * (size_t)im->w * im->h * im->c);
}

static void check_transform(const image *im, uint64_t seed)
{
    static float out[FUZZ_SZ * FUZZ_SZ * 3];
    tfm_config cfg = {.sz = FUZZ_SZ, .c_out = 3, .tfms = TFMS_TOP_DOWN, .max_zoom = 1.5f,
                      .augment = 1, .mean = {0.5f, 0.5f, 0.5f}, .std = {0.25f, 0.25f, 0.25f}};
    uint64_t rng = seed;
    transform_apply(out, im, &cfg, &rng);
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
        FUZZ_CHECK(isfinite(out[i]) && fabsf(out[i]) <= 2.0f / 0.25f + 1e-3f);
}

/* The file route: probe, then a decode allowed to shrink to min_shorter. */
static void check_file(const uint8_t *data, size_t size, const image *mem, int mem_rc)
{
    char path[4200], err[256];
    int w = 0, h = 0;
    fuzz_path(path, sizeof path, "%s/image", fuzz_scratch());
    FUZZ_CHECK(fuzz_write_file(path, data, size) == 0);
    int probe_rc = image_probe_file(path, &w, &h, err, sizeof err);
    if (mem_rc == 0)
        FUZZ_CHECK(probe_rc == 0 && w == mem->w && h == mem->h);

    int min_shorter = size ? 1 + data[size - 1] % 64 : 1;
    image im;
    int rc = image_decode_file_min(&im, path, min_shorter, FUZZ_MAX_PIXELS, err, sizeof err);
    if (rc == 0) {
        check_image(&im);
        FUZZ_CHECK(probe_rc == 0 && im.w <= w && im.h <= h);
        int full = w < h ? w : h, got = im.w < im.h ? im.w : im.h;
        FUZZ_CHECK(got >= (min_shorter < full ? min_shorter : full));
        image_free(&im);
    } else {
        FUZZ_CHECK(im.px == NULL && err[0] != '\0');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    image im;
    char err[256];
    err[0] = '\0';
    int rc = image_decode_mem(&im, data, size, FUZZ_MAX_PIXELS, err, sizeof err);
    if (rc == 0) {
        check_image(&im);
        check_transform(&im, size ? data[0] : 0);
    } else {
        FUZZ_CHECK(rc < 0 && im.px == NULL && err[0] != '\0');
    }
    check_file(data, size, &im, rc);
    image_free(&im);
    return 0;
}
