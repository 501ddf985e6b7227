/* fuzz_csv.c: the labels-csv dataset reader (dataset_open with DS_CSV): the input is
 * labels.csv of a dataset whose train/ folder holds a few real images (colour and gray
 * PNG, JPEG, one truncated after its header, one in a subfolder) and symbolic links that
 * loop or lead out of the dataset to an image beside it. An opened set must have sorted,
 * distinct, non-empty class names, labels in range, and only items whose real path lies
 * inside the dataset's folder. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "fuzz_util.h"

/* Real images to build the set from: the image harness's seeds. */
#ifndef FUZZ_IMAGE_SEEDS
#error "FUZZ_IMAGE_SEEDS must name the image seed folder"
#endif

static char root[4200];
static char real_root[PATH_MAX];

static void copy_seed(const char *seed, const char *rel, size_t keep)
{
    char src[4200], dst[4200];
    static uint8_t buf[1 << 16];
    fuzz_path(src, sizeof src, "%s/%s", FUZZ_IMAGE_SEEDS, seed);
    fuzz_path(dst, sizeof dst, "%s/%s", root, rel);
    FILE *fp = fopen(src, "rb");
    FUZZ_CHECK(fp != NULL);
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    FUZZ_CHECK(n > 0 && n < sizeof buf);
    FUZZ_CHECK(fuzz_write_file(dst, buf, keep && keep < n ? keep : n) == 0);
}

static void make_set(void)
{
    char path[4300];
    const char *scratch = fuzz_scratch();
    fuzz_path(root, sizeof root, "%s/set", scratch);
    FUZZ_CHECK(mkdir(root, 0755) == 0);
    fuzz_path(path, sizeof path, "%s/train", root);
    FUZZ_CHECK(mkdir(path, 0755) == 0);
    fuzz_path(path, sizeof path, "%s/train/sub", root);
    FUZZ_CHECK(mkdir(path, 0755) == 0);
    copy_seed("rgb.png", "train/a.png", 0);
    copy_seed("gray.png", "train/b.png", 0);
    copy_seed("rgb.jpg", "train/c.jpg", 0);
    copy_seed("gray.jpg", "train/D.JPG", 0);
    copy_seed("rgb.png", "train/t.png", 60);
    copy_seed("gray.png", "train/sub/e.png", 0);
    copy_seed("rgb.png", "../secret.png", 0);
    fuzz_path(path, sizeof path, "%s/train/out.png", root);
    FUZZ_CHECK(symlink("../../secret.png", path) == 0);
    fuzz_path(path, sizeof path, "%s/train/loop", root);
    FUZZ_CHECK(symlink("loop", path) == 0);
    fuzz_path(path, sizeof path, "%s/train/in.png", root);
    FUZZ_CHECK(symlink("a.png", path) == 0);
    FUZZ_CHECK(realpath(root, real_root) != NULL);
}

static void check_item(dataset *ds, ds_split split, int i)
{
    const ds_info *info = dataset_info(ds);
    const char *name = dataset_item_name(ds, split, i);
    char full[8400], real[PATH_MAX];
    FUZZ_CHECK(name != NULL);
    fuzz_path(full, sizeof full, "%s/%s", root, name);
    FUZZ_CHECK(realpath(full, real) != NULL && path_is_under(real, real_root));

    int label = dataset_item_label(ds, split, i);
    if (split == SPLIT_TEST || info->multi_label)
        FUZZ_CHECK(label >= -1 && label < info->n_classes);
    else
        FUZZ_CHECK(label >= 0 && label < info->n_classes);
    if (info->multi_label && split != SPLIT_TEST) {
        float t[64];
        int n = info->n_classes < 64 ? info->n_classes : 64;
        if (n == info->n_classes) {
            dataset_item_targets(ds, split, i, t);
            for (int k = 0; k < n; k++)
                FUZZ_CHECK(t[k] == 0 || t[k] == 1);
            FUZZ_CHECK(label < 0 || t[label] == 1);
        }
    }
    image im;
    char err[256];
    if (dataset_item_image(ds, split, i, &im, err, sizeof err) == 0) {
        FUZZ_CHECK(im.w > 0 && im.h > 0 && (im.c == 1 || im.c == 3));
        image_free(&im);
    }
}

static void check_dataset(dataset *ds)
{
    const ds_info *info = dataset_info(ds);
    FUZZ_CHECK(info->n_classes >= 1);
    for (int c = 0; c < info->n_classes; c++) {
        FUZZ_CHECK(info->classes[c] != NULL && info->classes[c][0] != '\0');
        FUZZ_CHECK(c == 0 || strcmp(info->classes[c - 1], info->classes[c]) < 0);
    }
    FUZZ_CHECK(info->count[SPLIT_TRAIN] >= 1 && info->count[SPLIT_TEST] == 0);
    for (int ch = 0; ch < 3; ch++)
        FUZZ_CHECK(isfinite(info->mean[ch]) && isfinite(info->std[ch]));
    for (int s = SPLIT_TRAIN; s <= SPLIT_VALID; s++)
        for (int i = 0; i < info->count[s]; i++)
            check_item(ds, (ds_split)s, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4300], err[512];
    if (!root[0])
        make_set();
    fuzz_path(path, sizeof path, "%s/labels.csv", root);
    FUZZ_CHECK(fuzz_write_file(path, data, size) == 0);

    ds_options o = {.format = DS_CSV, .path = root, .valid_pct = 0.2, .seed = 1};
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
