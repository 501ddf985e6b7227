/* test_loader.c: the prefetching loader: every item once per epoch, seeded shuffles,
 * thread-count independence, stopping mid-epoch, progressive resizing, the cache, the
 * orientation dataset (side_on flips, none does not), epochs of one fixed plan (TTA), and
 * unreadable items. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "data/data.h"
#include "testutil.h"

static char *root;
static dataset *idx_ds;      /* 103 gray 6x5 images, 4 classes, in memory */
static dataset *orient_ds;   /* folders: left/right bars, 16x16 gray PNGs */
static dataset *photo_ds;    /* folders: 40x30 RGB PNG and JPEG images */

static void write_idx_set(const char *d, int n)
{
    int rows = 5, cols = 6;
    uint8_t *px = malloc((size_t)n * rows * cols), *lab = malloc(n);
    for (int i = 0; i < n; i++) {
        lab[i] = (uint8_t)(i % 4);
        for (int p = 0; p < rows * cols; p++)
            px[(size_t)i * rows * cols + p] = (uint8_t)(i * 7 + p * 13);
    }
    int dims[3] = {n, rows, cols};
    assert_int_equal(tu_write_idx(tu_path(d, "train-images-idx3-ubyte.gz"), 3, dims, px, 1), 0);
    assert_int_equal(tu_write_idx(tu_path(d, "train-labels-idx1-ubyte.gz"), 1, dims, lab, 1), 0);
    free(px);
    free(lab);
}

/* A 16x16 gray image, dark with a bright vertical bar on the left or on the right. */
static void write_bar(const char *path, int right, int variant)
{
    uint8_t px[16 * 16];
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) {
            int bar = right ? (x >= 10 && x <= 13) : (x >= 2 && x <= 5);
            px[y * 16 + x] = (uint8_t)(bar ? 220 - variant : 20 + (x * y + variant) % 10);
        }
    assert_int_equal(tu_write_png(path, 16, 16, PNG_COLOR_TYPE_GRAY, 8, 0, px, NULL, 0), 0);
}

static void write_photo(const char *path, int seed, int jpeg)
{
    uint8_t px[40 * 30 * 3];
    for (int i = 0; i < 40 * 30 * 3; i++)
        px[i] = (uint8_t)((i * 31 + seed * 57) ^ (i >> 4));
    if (jpeg)
        assert_int_equal(tu_write_jpeg(path, 40, 30, 3, px, 90, 0), 0);
    else
        assert_int_equal(tu_write_png(path, 40, 30, PNG_COLOR_TYPE_RGB, 8, 0, px, NULL, 0), 0);
}

static int setup(void **state)
{
    (void)state;
    root = tu_mkdtemp();
    char err[256];
    char name[128];

    char *d = strdup(tu_path(root, "idx"));
    tu_mkdirs(d);
    write_idx_set(d, 103);
    ds_options o = {.format = DS_IDX, .path = d, .valid_pct = 0};
    if (dataset_open(&idx_ds, &o, err, sizeof err))
        return -1;
    free(d);

    d = strdup(tu_path(root, "orient"));
    tu_mkdirs(tu_path(d, "train/left"));
    tu_mkdirs(tu_path(d, "train/right"));
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "train/left/%02d.png", i);
        write_bar(tu_path(d, name), 0, i);
        snprintf(name, sizeof name, "train/right/%02d.png", i);
        write_bar(tu_path(d, name), 1, i);
    }
    o = (ds_options){.format = DS_FOLDERS, .path = d, .valid_pct = 0};
    if (dataset_open(&orient_ds, &o, err, sizeof err))
        return -1;
    free(d);

    d = strdup(tu_path(root, "photo"));
    tu_mkdirs(tu_path(d, "train/a"));
    tu_mkdirs(tu_path(d, "train/b"));
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof name, "train/%s/%02d.%s", i % 2 ? "a" : "b", i, i % 3 ? "png" : "jpg");
        write_photo(tu_path(d, name), i, i % 3 == 0);
    }
    o = (ds_options){.format = DS_FOLDERS, .path = d, .valid_pct = 0};
    if (dataset_open(&photo_ds, &o, err, sizeof err))
        return -1;
    free(d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dataset_destroy(idx_ds);
    dataset_destroy(orient_ds);
    dataset_destroy(photo_ds);
    tu_rmtree(root);
    free(root);
    return 0;
}

static loader_config base_cfg(int bs, int sz, int c_out)
{
    loader_config c = {.bs = bs, .threads = 2, .seed = 1};
    c.tfm.sz = sz;
    c.tfm.c_out = c_out;
    c.tfm.tfms = TFMS_NONE;
    c.tfm.max_zoom = 1;
    for (int i = 0; i < 3; i++) {
        c.tfm.mean[i] = 0;
        c.tfm.std[i] = 1;
    }
    return c;
}

static loader *make(dataset *ds, const loader_config *cfg)
{
    loader *l;
    char err[256] = "";
    if (loader_create(&l, ds, SPLIT_TRAIN, cfg, err, sizeof err))
        fail_msg("loader_create: %s", err);
    return l;
}

/* The item order of one epoch. */
static void epoch_order(loader *l, int epoch, int *order, int *n)
{
    assert_int_equal(loader_begin_epoch(l, epoch, 5, 0), 0);
    const batch *b;
    int k = 0, rc;
    while ((rc = loader_next(l, &b)) == 1)
        for (int i = 0; i < b->n; i++)
            order[k++] = b->index[i];
    assert_int_equal(rc, 0);
    *n = k;
}

static void test_every_item_once(void **state)
{
    (void)state;
    loader_config cfg = base_cfg(10, 5, 1);
    cfg.shuffle = 1;
    cfg.threads = 3;
    cfg.queue_depth = 2;
    loader *l = make(idx_ds, &cfg);
    assert_int_equal(loader_n_items(l), 103);
    assert_int_equal(loader_n_batches(l), 11);
    for (int epoch = 0; epoch < 3; epoch++) {
        assert_int_equal(loader_begin_epoch(l, epoch, 5, epoch == 1), 0);
        int seen[103] = {0}, nb = 0, rc;
        const batch *b;
        while ((rc = loader_next(l, &b)) == 1) {
            assert_int_equal(b->n, nb < 10 ? 10 : 3);
            assert_int_equal(b->sz, 5);
            assert_int_equal(b->c, 1);
            assert_null(b->targets);
            for (int i = 0; i < b->n; i++) {
                seen[b->index[i]]++;
                assert_int_equal(b->y[i], b->index[i] % 4);
            }
            nb++;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(nb, 11);
        for (int i = 0; i < 103; i++)
            assert_int_equal(seen[i], 1);
        /* the end stays the end */
        assert_int_equal(loader_next(l, &b), 0);
    }
    loader_destroy(l);

    cfg.drop_last = 1;
    l = make(idx_ds, &cfg);
    assert_int_equal(loader_n_batches(l), 10);
    int order[103], n;
    epoch_order(l, 0, order, &n);
    assert_int_equal(n, 100);
    loader_destroy(l);
}

static void test_batch_contents(void **state)
{
    (void)state;
    /* Augment off: each image is exactly transform_apply_plan(identity) of the item. */
    loader_config cfg = base_cfg(4, 24, 3);
    cfg.tfm.mean[1] = 0.5f;
    cfg.tfm.std[2] = 0.25f;
    loader *l = make(photo_ds, &cfg);
    assert_int_equal(loader_begin_epoch(l, 0, 24, 0), 0);
    const batch *b;
    float *want = malloc(sizeof(float) * 24 * 24 * 3);
    int k = 0;
    while (loader_next(l, &b) == 1) {
        for (int i = 0; i < b->n; i++, k++) {
            assert_int_equal(b->index[i], k);
            image im;
            assert_int_equal(dataset_item_image(photo_ds, SPLIT_TRAIN, k, &im, NULL, 0), 0);
            tfm_config t = cfg.tfm;
            t.sz = 24;
            tfm_plan p;
            transform_plan_identity(&p);
            /* 30 > 24: the loader shrinks to the shorter side first, as the cache would */
            image small;
            assert_int_equal(image_scale_min(&small, &im, 24), 0);
            assert_int_equal(transform_apply_plan(want, &small, &t, &p), 0);
            assert_memory_equal(b->x + (size_t)i * 24 * 24 * 3, want, sizeof(float) * 24 * 24 * 3);
            assert_int_equal(b->y[i], dataset_item_label(photo_ds, SPLIT_TRAIN, k));
            image_free(&small);
            image_free(&im);
        }
    }
    assert_int_equal(k, 12);
    free(want);
    loader_destroy(l);
}

/* loader_begin_epoch_plan: every item transformed by the one plan given (TTA's fixed
 * passes), exactly as transform_apply_plan does it; the next plain epoch draws again. */
static void test_fixed_plan(void **state)
{
    (void)state;
    loader_config cfg = base_cfg(3, 16, 1);
    cfg.tfm.max_zoom = 1.3f;
    cfg.tfm.tfms = TFMS_FLIP;
    loader *l = make(orient_ds, &cfg);
    assert_int_equal(loader_begin_epoch_plan(l, 0, 16, NULL), -EINVAL);
    tfm_plan plans[2];
    transform_plan_identity(&plans[0]);
    plans[0].dihedral = 4;
    transform_plan_identity(&plans[1]);
    plans[1].zoom = 18.5f / 16;
    plans[1].crop_x = 1;
    plans[1].crop_y = 0;
    float want[16 * 16];
    for (int pass = 0; pass < 3; pass++) {
        tfm_plan centre;
        transform_plan_identity(&centre);
        const tfm_plan *p = pass < 2 ? &plans[pass] : &centre;
        if (pass < 2)
            assert_int_equal(loader_begin_epoch_plan(l, pass, 16, p), 0);
        else
            assert_int_equal(loader_begin_epoch(l, pass, 16, 0), 0);
        const batch *b;
        int k = 0;
        while (loader_next(l, &b) == 1)
            for (int i = 0; i < b->n; i++, k++) {
                image im;
                assert_int_equal(dataset_item_image(orient_ds, SPLIT_TRAIN, b->index[i], &im,
                                                    NULL, 0), 0);
                assert_int_equal(transform_apply_plan(want, &im, &cfg.tfm, p), 0);
                assert_memory_equal(b->x + (size_t)i * 16 * 16, want, sizeof want);
                image_free(&im);
            }
        assert_int_equal(k, loader_n_items(l));
    }
    loader_destroy(l);
}

static void test_shuffle_seeded(void **state)
{
    (void)state;
    loader_config cfg = base_cfg(8, 5, 1);
    cfg.shuffle = 1;
    loader *a = make(idx_ds, &cfg), *b = make(idx_ds, &cfg);
    cfg.seed = 2;
    loader *c = make(idx_ds, &cfg);
    cfg.shuffle = 0;
    loader *d = make(idx_ds, &cfg);
    int a0[103], a1[103], b0[103], b1[103], c0[103], d0[103], n;
    epoch_order(a, 0, a0, &n);
    epoch_order(a, 1, a1, &n);
    epoch_order(b, 1, b1, &n); /* epochs may be visited in any order */
    epoch_order(b, 0, b0, &n);
    epoch_order(c, 0, c0, &n);
    epoch_order(d, 0, d0, &n);
    assert_memory_equal(a0, b0, sizeof a0);
    assert_memory_equal(a1, b1, sizeof a1);
    assert_memory_not_equal(a0, a1, sizeof a0);
    assert_memory_not_equal(a0, c0, sizeof a0);
    for (int i = 0; i < 103; i++)
        assert_int_equal(d0[i], i);
    loader_destroy(a);
    loader_destroy(b);
    loader_destroy(c);
    loader_destroy(d);
}

/* Every batch of an epoch, concatenated. */
static float *epoch_x(loader *l, int epoch, int sz, int augment, size_t *n_floats)
{
    assert_int_equal(loader_begin_epoch(l, epoch, sz, augment), 0);
    size_t cap = 1 << 16, n = 0;
    float *all = malloc(sizeof(float) * cap);
    const batch *b;
    while (loader_next(l, &b) == 1) {
        size_t m = (size_t)b->n * b->sz * b->sz * b->c;
        while (n + m > cap)
            all = realloc(all, sizeof(float) * (cap *= 2));
        memcpy(all + n, b->x, sizeof(float) * m);
        n += m;
    }
    *n_floats = n;
    return all;
}

static void test_deterministic_across_threads(void **state)
{
    (void)state;
    loader_config cfg = base_cfg(3, 20, 3);
    cfg.shuffle = 1;
    cfg.tfm.tfms = TFMS_TOP_DOWN;
    cfg.tfm.max_zoom = 1.3f;
    cfg.threads = 1;
    loader *one = make(photo_ds, &cfg);
    cfg.threads = 4;
    cfg.queue_depth = 1;
    loader *four = make(photo_ds, &cfg);
    size_t n1, n4, n5;
    float *x1 = epoch_x(one, 3, 20, 1, &n1);
    float *x4 = epoch_x(four, 3, 20, 1, &n4);
    float *x5 = epoch_x(four, 4, 20, 1, &n5);
    assert_int_equal(n1, 12 * 20 * 20 * 3);
    assert_int_equal(n1, n4);
    assert_memory_equal(x1, x4, sizeof(float) * n1);
    assert_memory_not_equal(x4, x5, sizeof(float) * n1);
    free(x1);
    free(x4);
    free(x5);
    loader_destroy(one);
    loader_destroy(four);
}

static void test_stop_mid_epoch(void **state)
{
    (void)state;
    loader_config cfg = base_cfg(4, 16, 3);
    cfg.shuffle = 1;
    cfg.tfm.tfms = TFMS_SIDE_ON;
    cfg.threads = 3;
    cfg.queue_depth = 2;
    /* destroyed without ever starting */
    loader_destroy(make(photo_ds, &cfg));
    loader_destroy(NULL);
    /* destroyed while the workers are busy */
    for (int k = 0; k < 5; k++) {
        loader *l = make(photo_ds, &cfg);
        assert_int_equal(loader_begin_epoch(l, k, 16, 1), 0);
        if (k & 1) {
            const batch *b;
            assert_int_equal(loader_next(l, &b), 1);
        }
        loader_destroy(l);
    }
    /* an epoch abandoned part-way; the next one is whole */
    loader *l = make(idx_ds, &cfg);
    const batch *b;
    assert_int_equal(loader_next(l, &b), -22); /* -EINVAL: no epoch begun */
    assert_int_equal(loader_begin_epoch(l, 0, 5, 1), 0);
    assert_int_equal(loader_next(l, &b), 1);
    assert_int_equal(loader_next(l, &b), 1);
    int order[103], n;
    epoch_order(l, 1, order, &n);
    assert_int_equal(n, 103);
    int ref[103];
    loader *fresh = make(idx_ds, &cfg);
    epoch_order(fresh, 1, ref, &n);
    assert_memory_equal(order, ref, sizeof ref);
    loader_destroy(fresh);
    assert_int_equal(loader_begin_epoch(l, 2, 5, 1), 0);
    assert_int_equal(loader_next(l, &b), 1);
    loader_destroy(l);
}

static void test_progressive_resizing(void **state)
{
    (void)state;
    loader_config cfg = base_cfg(5, 8, 3);
    loader *l = make(photo_ds, &cfg);
    const int sizes[] = {8, 16, 28, 8};
    for (int e = 0; e < 4; e++) {
        int sz = sizes[e];
        assert_int_equal(loader_begin_epoch(l, e, sz, 0), 0);
        const batch *b;
        int k = 0;
        float *want = malloc(sizeof(float) * sz * sz * 3);
        while (loader_next(l, &b) == 1) {
            assert_int_equal(b->sz, sz);
            for (int i = 0; i < b->n; i++, k++) {
                image im, small;
                /* JPEG may decode shrunk in the DCT, never below the size needed */
                assert_int_equal(dataset_item_image_min(photo_ds, SPLIT_TRAIN, k, sz, &im, NULL,
                                                        0), 0);
                assert_true((im.w < im.h ? im.w : im.h) >= sz);
                int shorter = im.h < im.w ? im.h : im.w;
                if (shorter > sz) {
                    assert_int_equal(image_scale_min(&small, &im, sz), 0);
                    image_free(&im);
                    im = small;
                }
                tfm_config t = cfg.tfm;
                t.sz = sz;
                tfm_plan p;
                transform_plan_identity(&p);
                transform_apply_plan(want, &im, &t, &p);
                assert_memory_equal(b->x + (size_t)i * sz * sz * 3, want,
                                    sizeof(float) * sz * sz * 3);
                image_free(&im);
            }
        }
        assert_int_equal(k, 12);
        free(want);
    }
    loader_destroy(l);
}

static void test_cache_identical(void **state)
{
    (void)state;
    loader_config cfg = base_cfg(5, 20, 3);
    cfg.shuffle = 1;
    loader *plain = make(photo_ds, &cfg);
    cfg.cache_bytes = 50u << 20;
    loader *cached = make(photo_ds, &cfg);
    cfg.cache_bytes = 2000; /* room for one or two images only */
    loader *tight = make(photo_ds, &cfg);
    for (int e = 0; e < 3; e++) {
        int sz = e == 2 ? 12 : 20; /* a new size invalidates the cache */
        size_t n0, n1, n2;
        float *x0 = epoch_x(plain, e, sz, 0, &n0);
        float *x1 = epoch_x(cached, e, sz, 0, &n1);
        float *x2 = epoch_x(tight, e, sz, 0, &n2);
        assert_int_equal(n0, n1);
        assert_int_equal(n0, n2);
        assert_memory_equal(x0, x1, sizeof(float) * n0);
        assert_memory_equal(x0, x2, sizeof(float) * n0);
        free(x0);
        free(x1);
        free(x2);
    }
    /* with augmentation too, since the random choices depend on the item only */
    size_t n0, n1;
    float *x0 = epoch_x(plain, 7, 20, 1, &n0);
    float *x1 = epoch_x(cached, 7, 20, 1, &n1);
    assert_memory_equal(x0, x1, sizeof(float) * n0);
    free(x0);
    free(x1);
    loader_destroy(plain);
    loader_destroy(cached);
    loader_destroy(tight);

    /* an in-memory (idx) dataset: the cache steps aside, the batches are the same */
    cfg = base_cfg(16, 5, 3);
    cfg.tfm.tfms = TFMS_SIDE_ON;
    plain = make(idx_ds, &cfg);
    cfg.cache_bytes = 1u << 20;
    cached = make(idx_ds, &cfg);
    for (int e = 0; e < 2; e++) {
        x0 = epoch_x(plain, e, 5, e, &n0);
        x1 = epoch_x(cached, e, 5, e, &n1);
        assert_int_equal(n0, 103 * 5 * 5 * 3);
        assert_int_equal(n0, n1);
        assert_memory_equal(x0, x1, sizeof(float) * n0);
        free(x0);
        free(x1);
    }
    loader_destroy(plain);
    loader_destroy(cached);
}

/* Sum of the left half minus the right half of a (16, 16, 1) image. */
static float left_minus_right(const float *x)
{
    float s = 0;
    for (int y = 0; y < 16; y++)
        for (int c = 0; c < 16; c++)
            s += c < 8 ? x[y * 16 + c] : -x[y * 16 + c];
    return s;
}

/* Over several epochs: how many images came out looking like the other class. */
static int count_swapped(tfm_set tfms, int *total)
{
    loader_config cfg = base_cfg(8, 16, 1);
    cfg.tfm.tfms = tfms;
    cfg.shuffle = 1;
    loader *l = make(orient_ds, &cfg);
    int swapped = 0;
    *total = 0;
    for (int e = 0; e < 5; e++) {
        assert_int_equal(loader_begin_epoch(l, e, 16, 1), 0);
        const batch *b;
        while (loader_next(l, &b) == 1)
            for (int i = 0; i < b->n; i++) {
                float d = left_minus_right(b->x + (size_t)i * 256);
                int looks_right = d < 0;
                swapped += looks_right != (b->y[i] == 1);
                (*total)++;
            }
    }
    loader_destroy(l);
    return swapped;
}

static void test_orientation(void **state)
{
    (void)state;
    const ds_info *in = dataset_info(orient_ds);
    assert_string_equal(in->classes[0], "left");
    assert_int_equal(in->count[SPLIT_TRAIN], 40);
    int total;
    int none = count_swapped(TFMS_NONE, &total);
    assert_int_equal(total, 200);
    assert_int_equal(none, 0);
    int side = count_swapped(TFMS_SIDE_ON, &total);
    /* RandomFlip with p = 0.5: about 100 of 200 */
    assert_true(side > 70 && side < 130);
}

/* Opens a CSV dataset in root/sub: n bar images train/<i>.png (the bar on the right for odd
 * i) labelled by csv, no validation split. Its folder's path goes to *dir (the caller frees
 * it); a dataset that does not open fails the test. */
static dataset *open_bar_csv(const char *sub, int n, const char *csv, char **dir)
{
    char *d = strdup(tu_path(root, sub));
    tu_mkdirs(tu_path(d, "train"));
    char name[64];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "train/%d.png", i);
        write_bar(tu_path(d, name), i & 1, i);
    }
    tu_write_file(tu_path(d, "labels.csv"), csv, strlen(csv));
    ds_options o = {.format = DS_CSV, .path = d, .valid_pct = 0};
    dataset *ds;
    char err[256] = "";
    if (dataset_open(&ds, &o, err, sizeof err))
        fail_msg("%s", err);
    *dir = d;
    return ds;
}

/* Cuts the image dir/file to half its length after the dataset was opened: it fails when
 * a loader decodes it. */
static void break_image(const char *dir, const char *file)
{
    size_t len;
    uint8_t *buf = tu_read_file(tu_path(dir, file), &len);
    tu_write_file(tu_path(dir, file), buf, len / 2);
    free(buf);
}

static void test_multi_label_and_unreadable(void **state)
{
    (void)state;
    char *d;
    dataset *ds = open_bar_csv("multi", 9,
                               "file,tags\n0,a b\n1,b\n2,c\n3,a c\n4,a\n5,b c\n6,a b c\n7,c\n8,b\n", &d);
    assert_int_equal(dataset_info(ds)->n_unreadable, 0);
    /* 4.png breaks after the dataset was opened: skipped when loading, and listed */
    break_image(d, "train/4.png");
    loader_config cfg = base_cfg(4, 8, 3);
    loader *l = make(ds, &cfg);
    assert_int_equal(loader_begin_epoch(l, 0, 8, 1), 0);
    const batch *b;
    int got = 0, nb = 0;
    while (loader_next(l, &b) == 1) {
        assert_non_null(b->targets);
        for (int i = 0; i < b->n; i++) {
            float t[3];
            dataset_item_targets(ds, SPLIT_TRAIN, b->index[i], t);
            assert_memory_equal(b->targets + i * 3, t, sizeof t);
            assert_int_not_equal(b->index[i], 4);
            got++;
        }
        nb++;
    }
    assert_int_equal(got, 8);
    assert_int_equal(nb, 3);
    const ds_info *in = dataset_info(ds);
    assert_int_equal(in->n_unreadable, 1);
    assert_string_equal(in->unreadable[0].file, "train/4.png");
    loader_destroy(l);
    dataset_destroy(ds);
    free(d);
}

/* A shard of a world cannot leave out its batch as one process does: the world's other
 * ranks train on it and wait for this one's sums. A shard whose every image fails is
 * -ENODATA; the other rank's shard of the same batch, and a shard with one image left,
 * load as before. */
static void test_shard_all_unreadable(void **state)
{
    (void)state;
    char *d;
    dataset *ds = open_bar_csv("shards", 8, "file,tags\n0,a\n1,b\n2,a\n3,b\n4,a\n5,b\n6,a\n7,b\n", &d);
    /* Unshuffled batches of 4 on 2 ranks: batch 1 is items 4-7, rank 0's shard 4 and 5,
     * rank 1's 6 and 7. Item 4 breaks (rank 0 keeps 5), then 6 and 7 (rank 1 keeps none). */
    const char *broken[] = {"train/4.png", "train/6.png", "train/7.png"};
    for (int i = 0; i < 3; i++)
        break_image(d, broken[i]);
    for (int rank = 0; rank < 2; rank++) {
        loader_config cfg = base_cfg(4, 8, 3);
        cfg.shard_rank = rank;
        cfg.shard_size = 2;
        loader *l = make(ds, &cfg);
        assert_int_equal(loader_begin_epoch(l, 0, 8, 0), 0);
        const batch *b;
        assert_int_equal(loader_next(l, &b), 1);
        assert_int_equal(b->n, 2);
        assert_int_equal(b->index[0], 2 * rank);
        if (rank == 0) {
            assert_int_equal(loader_next(l, &b), 1);
            assert_int_equal(b->n, 1);
            assert_int_equal(b->index[0], 5);
            assert_int_equal(loader_next(l, &b), 0);
        } else {
            assert_int_equal(loader_next(l, &b), -ENODATA);
        }
        loader_destroy(l);
    }
    dataset_destroy(ds);
    free(d);
}

static void test_create_errors(void **state)
{
    (void)state;
    loader *l = (loader *)1;
    char err[128];
    loader_config cfg = base_cfg(0, 8, 3);
    assert_true(loader_create(&l, idx_ds, SPLIT_TRAIN, &cfg, err, sizeof err) < 0);
    assert_null(l);
    assert_non_null(strstr(err, "bs"));
    cfg = base_cfg(4, 8, 2);
    assert_true(loader_create(&l, idx_ds, SPLIT_TRAIN, &cfg, err, sizeof err) < 0);
    assert_non_null(strstr(err, "c_out"));
    cfg = base_cfg(4, 8, 3);
    assert_true(loader_create(&l, idx_ds, SPLIT_TEST, &cfg, err, sizeof err) < 0);
    assert_non_null(strstr(err, "split"));
    l = make(idx_ds, &cfg);
    assert_true(loader_begin_epoch(l, 0, 0, 0) < 0);
    loader_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_item_once),
        cmocka_unit_test(test_batch_contents),
        cmocka_unit_test(test_fixed_plan),
        cmocka_unit_test(test_shuffle_seeded),
        cmocka_unit_test(test_deterministic_across_threads),
        cmocka_unit_test(test_stop_mid_epoch),
        cmocka_unit_test(test_progressive_resizing),
        cmocka_unit_test(test_cache_identical),
        cmocka_unit_test(test_orientation),
        cmocka_unit_test(test_multi_label_and_unreadable),
        cmocka_unit_test(test_shard_all_unreadable),
        cmocka_unit_test(test_create_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
