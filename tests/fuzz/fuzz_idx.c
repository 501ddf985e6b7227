/* fuzz_idx.c: the IDX dataset reader (dataset_open with DS_IDX). One input is a flags byte
 * then up to five files separated by IDX_SEP: train images, train labels, validation
 * images, validation labels, classes.txt (an empty part is no file). Flags: bit 0 names the
 * train images .gz (zlib reads plain bytes there too), bit 1 names the validation split
 * "test" rather than "t10k", bit 2 uses the dotted form (train-images.idx3-ubyte), bit 3
 * puts the set in a folder called "fashion" (Fashion-MNIST's class names). An opened set
 * must describe itself consistently and decode and transform its first and last items. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"
#include "fuzz_util.h"

#define IDX_SEP "\n--idx--\n"
/* Bounds the pixels of one item, as --max-pixels does; items * pixels stays unbounded. */
#define FUZZ_MAX_PIXELS (1 << 16)
#define FUZZ_SZ 8

static void write_parts(const char *root, const uint8_t *data, size_t size)
{
    size_t start[5], len[5];
    int flags = size ? data[0] : 0;
    int n = fuzz_split(data + (size ? 1 : 0), size ? size - 1 : 0, IDX_SEP, start, len, 5);
    const char *val = flags & 2 ? "test" : "t10k";
    const char *dot = flags & 4 ? "." : "-";
    char names[5][64];
    snprintf(names[0], sizeof names[0], "train-images%sidx3-ubyte%s", dot,
             flags & 1 ? ".gz" : "");
    snprintf(names[1], sizeof names[1], "train-labels%sidx1-ubyte", dot);
    snprintf(names[2], sizeof names[2], "%s-images%sidx3-ubyte", val, dot);
    snprintf(names[3], sizeof names[3], "%s-labels%sidx1-ubyte", val, dot);
    snprintf(names[4], sizeof names[4], "classes.txt");
    for (int i = 0; i < n; i++) {
        char path[4300];
        if (len[i] == 0)
            continue;
        fuzz_path(path, sizeof path, "%s/%s", root, names[i]);
        FUZZ_CHECK(fuzz_write_file(path, data + 1 + start[i], len[i]) == 0);
    }
}

static void check_item(dataset *ds, ds_split split, int i)
{
    const ds_info *info = dataset_info(ds);
    image im;
    char err[256];
    FUZZ_CHECK(dataset_item_name(ds, split, i) != NULL);
    int label = dataset_item_label(ds, split, i);
    FUZZ_CHECK(label >= 0 && label < info->n_classes);
    FUZZ_CHECK(dataset_item_image(ds, split, i, &im, err, sizeof err) == 0);
    FUZZ_CHECK(im.c == 1 && im.w > 0 && im.h > 0 &&
               (int64_t)im.w * im.h <= FUZZ_MAX_PIXELS);
    FUZZ_CHECK(im.w >= info->min_w && im.w <= info->max_w);
    FUZZ_CHECK(im.h >= info->min_h && im.h <= info->max_h);

    static float out[FUZZ_SZ * FUZZ_SZ];
    tfm_config cfg = {.sz = FUZZ_SZ, .c_out = 1, .tfms = TFMS_SIDE_ON, .max_zoom = 1.2f,
                      .augment = 1, .mean = {info->mean[0]}, .std = {1}};
    uint64_t rng = (uint64_t)i;
    transform_apply(out, &im, &cfg, &rng);
    for (int k = 0; k < FUZZ_SZ * FUZZ_SZ; k++)
        FUZZ_CHECK(isfinite(out[k]));
    image_free(&im);
}

static void check_dataset(dataset *ds)
{
    const ds_info *info = dataset_info(ds);
    FUZZ_CHECK(info->n_classes >= 1 && info->n_classes <= 256 && info->channels == 1);
    for (int c = 0; c < info->n_classes; c++)
        FUZZ_CHECK(info->classes[c] != NULL);
    FUZZ_CHECK(info->count[SPLIT_TRAIN] >= 1 && info->count[SPLIT_VALID] >= 0 &&
               info->count[SPLIT_TEST] == 0);
    FUZZ_CHECK(isfinite(info->mean[0]) && info->mean[0] >= 0 && info->mean[0] <= 1);
    FUZZ_CHECK(isfinite(info->std[0]) && info->std[0] >= 0);
    for (int s = SPLIT_TRAIN; s <= SPLIT_VALID; s++) {
        int n = info->count[s];
        if (n == 0)
            continue;
        check_item(ds, (ds_split)s, 0);
        check_item(ds, (ds_split)s, n - 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char root[4200], err[512];
    int fashion = size && (data[0] & 8);
    fuzz_path(root, sizeof root, "%s/%s", fuzz_scratch(), fashion ? "fashion" : "set");
    FUZZ_CHECK(fuzz_rmtree(root) == 0 && mkdir(root, 0755) == 0);
    write_parts(root, data, size);

    ds_options o = {.format = DS_IDX, .path = root, .valid_pct = 0.2, .seed = 1,
                    .max_pixels = FUZZ_MAX_PIXELS};
    dataset *ds = NULL;
    err[0] = '\0';
    int rc = dataset_open(&ds, &o, err, sizeof err);
    if (rc == 0)
        check_dataset(ds);
    else
        FUZZ_CHECK(rc < 0 && ds == NULL && err[0] != '\0');
    dataset_destroy(ds);
    return 0;
}
