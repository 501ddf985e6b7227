/* test_dataset.c: folders, csv (single- and multi-label) and idx datasets: classes, counts,
 * the seeded valid_pct split, sizes, statistics, unreadable files, and Fashion-MNIST. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>

#include "data/data.h"
#include "testutil.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static char *root;

static int setup(void **state)
{
    (void)state;
    root = tu_mkdtemp();
    return root ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(root);
    free(root);
    return 0;
}

/* A w x h image filled with v (gray) or (v, v/2, 255-v) (colour), as PNG or JPEG. */
static void write_img(const char *path, int w, int h, int color, uint8_t v, int jpeg)
{
    int c = color ? 3 : 1;
    uint8_t *px = malloc((size_t)w * h * c);
    for (int i = 0; i < w * h; i++) {
        px[i * c] = v;
        if (color) {
            px[i * c + 1] = v / 2;
            px[i * c + 2] = 255 - v;
        }
    }
    int rc = jpeg ? tu_write_jpeg(path, w, h, c, px, 95, 0)
                  : tu_write_png(path, w, h, color ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                                 8, 0, px, NULL, 0);
    free(px);
    assert_int_equal(rc, 0);
}

static const char *sub(const char *a, const char *b)
{
    return tu_path(a, b);
}

/* Opens o's dataset, which must open: a failure fails the test with dataset_open's message. */
static dataset *open_ok(const ds_options *o)
{
    dataset *ds;
    char err[256] = "";
    if (dataset_open(&ds, o, err, sizeof err))
        fail_msg("%s", err);
    return ds;
}

/* The dataset holds these many items in its train, valid and test splits. */
static void assert_counts(const ds_info *in, int train, int valid, int test)
{
    assert_int_equal(in->count[SPLIT_TRAIN], train);
    assert_int_equal(in->count[SPLIT_VALID], valid);
    assert_int_equal(in->count[SPLIT_TEST], test);
}

static int find_unreadable(const ds_info *in, const char *file, const char *reason)
{
    for (int i = 0; i < in->n_unreadable; i++)
        if (strcmp(in->unreadable[i].file, file) == 0 &&
            strstr(in->unreadable[i].reason, reason))
            return 1;
    return 0;
}

static void test_folders(void **state)
{
    (void)state;
    char *d = strdup(sub(root, "folders"));
    assert_int_equal(tu_mkdirs(sub(d, "train/dog")), 0);
    assert_int_equal(tu_mkdirs(sub(d, "train/cat")), 0);
    assert_int_equal(tu_mkdirs(sub(d, "valid/cat")), 0);
    assert_int_equal(tu_mkdirs(sub(d, "valid/dog")), 0);
    assert_int_equal(tu_mkdirs(sub(d, "test")), 0);
    write_img(sub(d, "train/cat/c2.png"), 10, 20, 1, 100, 0);
    write_img(sub(d, "train/cat/c1.png"), 30, 10, 1, 100, 0);
    write_img(sub(d, "train/cat/c3.jpg"), 16, 16, 1, 100, 1);
    write_img(sub(d, "train/dog/d1.jpg"), 16, 16, 0, 50, 1);
    write_img(sub(d, "train/dog/d2.png"), 16, 16, 0, 50, 0);
    assert_int_equal(tu_write_file(sub(d, "train/dog/bad.png"), "not an image", 12), 0);
    assert_int_equal(tu_write_file(sub(d, "train/dog/.hidden.png"), "x", 1), 0);
    write_img(sub(d, "valid/cat/v1.png"), 16, 16, 1, 10, 0);
    write_img(sub(d, "valid/dog/v2.png"), 16, 16, 1, 10, 0);
    write_img(sub(d, "test/t1.png"), 16, 16, 1, 10, 0);
    write_img(sub(d, "test/t2.jpg"), 16, 16, 1, 10, 1);

    ds_options o = {.format = DS_FOLDERS, .path = d, .valid_pct = -1, .seed = 1};
    dataset *ds;
    char err[256] = "";
    int rc = dataset_open(&ds, &o, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    const ds_info *in = dataset_info(ds);
    assert_int_equal(in->n_classes, 2);
    assert_string_equal(in->classes[0], "cat");
    assert_string_equal(in->classes[1], "dog");
    assert_counts(in, 5, 2, 2);
    assert_int_equal(in->channels, 3);
    assert_false(in->multi_label);
    assert_int_equal(in->n_unreadable, 1);
    assert_true(find_unreadable(in, "train/dog/bad.png", "not a PNG or JPEG"));
    /* sorted by class, then file name */
    assert_string_equal(dataset_item_name(ds, SPLIT_TRAIN, 0), "train/cat/c1.png");
    assert_string_equal(dataset_item_name(ds, SPLIT_TRAIN, 2), "train/cat/c3.jpg");
    assert_string_equal(dataset_item_name(ds, SPLIT_TRAIN, 4), "train/dog/d2.png");
    assert_int_equal(dataset_item_label(ds, SPLIT_TRAIN, 1), 0);
    assert_int_equal(dataset_item_label(ds, SPLIT_TRAIN, 3), 1);
    assert_int_equal(dataset_item_label(ds, SPLIT_VALID, 1), 1);
    assert_int_equal(dataset_item_label(ds, SPLIT_TEST, 0), -1);
    assert_string_equal(dataset_item_name(ds, SPLIT_TEST, 1), "test/t2.jpg");
    float t[2];
    dataset_item_targets(ds, SPLIT_TRAIN, 3, t);
    assert_true(t[0] == 0 && t[1] == 1);
    /* sizes over 10x20, 30x10, and seven 16x16 */
    assert_int_equal(in->min_w, 10);
    assert_int_equal(in->max_w, 30);
    assert_int_equal(in->min_h, 10);
    assert_int_equal(in->max_h, 20);
    assert_int_equal(in->median_w, 16);
    assert_int_equal(in->median_h, 16);
    /* statistics of the training split: gray 100 (x3 images, JPEG approx) and colour */
    assert_true(in->mean[0] > 0.2f && in->mean[0] < 0.5f);
    assert_true(in->std[0] > 0);

    image im;
    assert_int_equal(dataset_item_image(ds, SPLIT_TRAIN, 1, &im, err, sizeof err), 0);
    assert_int_equal(im.w, 10);
    assert_int_equal(im.h, 20);
    assert_int_equal(im.c, 3);
    assert_int_equal(im.px[0], 100);
    image_free(&im);
    assert_true(dataset_item_image(ds, SPLIT_TRAIN, 99, &im, err, sizeof err) < 0);
    dataset_destroy(ds);

    /* A file that passes the header probe but fails to decode joins the list then. */
    size_t len;
    uint8_t *buf = tu_read_file(sub(d, "train/cat/c1.png"), &len);
    assert_int_equal(tu_write_file(sub(d, "train/cat/c1.png"), buf, len - 20), 0);
    free(buf);
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    in = dataset_info(ds);
    /* the statistics pass decodes every training image here and drops the bad one */
    assert_int_equal(in->count[SPLIT_TRAIN], 4);
    assert_string_equal(dataset_item_name(ds, SPLIT_TRAIN, 0), "train/cat/c2.png");
    assert_true(find_unreadable(in, "train/cat/c1.png", "truncated"));
    assert_int_equal(in->n_unreadable, 2);
    dataset_destroy(ds);
    /* a file that breaks after opening is listed once, however often it fails */
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    in = dataset_info(ds);
    buf = tu_read_file(sub(d, "valid/dog/v2.png"), &len);
    assert_int_equal(tu_write_file(sub(d, "valid/dog/v2.png"), buf, len - 20), 0);
    free(buf);
    assert_true(dataset_item_image(ds, SPLIT_VALID, 1, &im, err, sizeof err) < 0);
    assert_non_null(strstr(err, "valid/dog/v2.png"));
    assert_true(dataset_item_image(ds, SPLIT_VALID, 1, &im, err, sizeof err) < 0);
    assert_int_equal(in->n_unreadable, 3);
    assert_true(find_unreadable(in, "valid/dog/v2.png", "truncated"));
    ds_unreadable *copy;
    int n_copy;
    assert_int_equal(dataset_unreadable_copy(ds, &copy, &n_copy), 0);
    assert_int_equal(n_copy, 3);
    assert_string_equal(copy[2].file, "valid/dog/v2.png");
    assert_non_null(strstr(copy[2].reason, "truncated"));
    ds_unreadable_free(copy, n_copy);
    dataset_destroy(ds);
    dataset_destroy(NULL);

    /* a pixel cap: images over it are listed, not loaded */
    o.max_pixels = 16 * 16;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    in = dataset_info(ds);
    assert_int_equal(in->count[SPLIT_TRAIN], 4); /* c1 (30x10) is over, c2 (10x20) not */
    assert_true(find_unreadable(in, "train/cat/c1.png", "too large"));
    assert_int_equal(in->max_w, 16);
    dataset_destroy(ds);
    free(d);
}

static void test_folders_valid_pct(void **state)
{
    (void)state;
    char *d = strdup(sub(root, "split"));
    char name[64];
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 20; i++) {
            snprintf(name, sizeof name, "train/%s/%02d.png", c ? "b" : "a", i);
            assert_int_equal(tu_mkdirs(sub(d, c ? "train/b" : "train/a")), 0);
            write_img(sub(d, name), 4, 4, 0, (uint8_t)(c * 200), 0);
        }
    ds_options o = {.format = DS_FOLDERS, .path = d, .valid_pct = 0.25, .seed = 5};
    dataset *a, *b, *c;
    char err[256];
    assert_int_equal(dataset_open(&a, &o, err, sizeof err), 0);
    assert_int_equal(dataset_open(&b, &o, err, sizeof err), 0);
    o.seed = 6;
    assert_int_equal(dataset_open(&c, &o, err, sizeof err), 0);
    const ds_info *ia = dataset_info(a);
    assert_int_equal(ia->count[SPLIT_TRAIN], 30);
    assert_int_equal(ia->count[SPLIT_VALID], 10);
    assert_int_equal(ia->channels, 1);
    /* gray 0 and 200 in equal numbers (the split moves a few), std > 0 */
    assert_true(ia->mean[0] > 0.25f && ia->mean[0] < 0.55f);
    assert_float_equal(ia->mean[0], ia->mean[1], 1e-6);
    int same = 1;
    for (int i = 0; i < 10; i++) {
        assert_string_equal(dataset_item_name(a, SPLIT_VALID, i),
                            dataset_item_name(b, SPLIT_VALID, i));
        same &= strcmp(dataset_item_name(a, SPLIT_VALID, i),
                       dataset_item_name(c, SPLIT_VALID, i)) == 0;
    }
    assert_false(same);
    /* train and valid are disjoint and cover everything, each in sorted order */
    int seen[40] = {0};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < ia->count[s]; i++) {
            const char *n = dataset_item_name(a, s, i);
            int cls = n[6] == 'b', k = atoi(n + 8);
            seen[cls * 20 + k]++;
            assert_int_equal(dataset_item_label(a, s, i), cls);
            if (i > 0)
                assert_true(strcmp(dataset_item_name(a, s, i - 1), n) < 0);
        }
    for (int i = 0; i < 40; i++)
        assert_int_equal(seen[i], 1);
    dataset_destroy(a);
    dataset_destroy(b);
    dataset_destroy(c);
    free(d);
}

static void test_csv(void **state)
{
    (void)state;
    char *d = strdup(sub(root, "csv"));
    assert_int_equal(tu_mkdirs(sub(d, "train")), 0);
    char name[64];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "train/img_%d.%s", i, i % 2 ? "jpg" : "png");
        write_img(sub(d, name), 8, 6, 1, (uint8_t)(i * 20), i % 2);
    }
    /* multi-label: extensions left out (planet style), one missing file */
    const char *multi = "image_name,tags\n"
                        "img_0,haze primary\n"
                        "img_1,clear primary water\n"
                        "img_2,clear\n"
                        "img_3,\"agriculture clear primary\"\n"
                        "img_4,haze\n"
                        "img_5,primary\n"
                        "img_6,clear water\n"
                        "img_7,haze water\n"
                        "img_8,primary\n"
                        "img_9,clear\n"
                        "missing,clear\n";
    assert_int_equal(tu_write_file(sub(d, "labels.csv"), multi, strlen(multi)), 0);
    ds_options o = {.format = DS_CSV, .path = d, .valid_pct = 0.2, .seed = 3};
    dataset *ds = open_ok(&o);
    char err[256] = "";
    const ds_info *in = dataset_info(ds);
    assert_true(in->multi_label);
    assert_int_equal(in->n_classes, 5);
    const char *want[] = {"agriculture", "clear", "haze", "primary", "water"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(in->classes[i], want[i]);
    assert_int_equal(in->count[SPLIT_TRAIN] + in->count[SPLIT_VALID], 10);
    assert_int_equal(in->count[SPLIT_VALID], 2);
    assert_int_equal(in->n_unreadable, 1);
    assert_true(find_unreadable(in, "train/missing", "No such file"));
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < in->count[s]; i++) {
            const char *n = dataset_item_name(ds, s, i);
            float t[5];
            dataset_item_targets(ds, s, i, t);
            if (strcmp(n, "train/img_3.jpg") == 0)
                assert_true(t[0] == 1 && t[1] == 1 && t[2] == 0 && t[3] == 1 && t[4] == 0);
            if (strcmp(n, "train/img_0.png") == 0)
                assert_true(t[0] == 0 && t[1] == 0 && t[2] == 1 && t[3] == 1 && t[4] == 0);
        }
    dataset_destroy(ds);

    /* single-label, custom names; a row with no label is listed, a bad row is an error */
    const char *single = "id,label\nimg_0.png,cat\nimg_1.jpg,dog\nimg_2.png,cat\nimg_4.png,\n";
    assert_int_equal(tu_write_file(sub(d, "single.csv"), single, strlen(single)), 0);
    o.csv = "single.csv";
    o.valid_pct = 0;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    in = dataset_info(ds);
    assert_false(in->multi_label);
    assert_int_equal(in->n_classes, 2);
    assert_int_equal(in->count[SPLIT_TRAIN], 3);
    assert_int_equal(in->count[SPLIT_VALID], 0);
    assert_int_equal(dataset_item_label(ds, SPLIT_TRAIN, 1), 1);
    assert_true(find_unreadable(in, "train/img_4.png", "no label"));
    dataset_destroy(ds);

    const char *bad = "id,label\njust-a-name\n";
    assert_int_equal(tu_write_file(sub(d, "bad.csv"), bad, strlen(bad)), 0);
    o.csv = "bad.csv";
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_null(ds);
    assert_non_null(strstr(err, "line 2"));
    o.csv = "nope.csv";
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "nope.csv"));
    free(d);
}

static void write_idx_pair(const char *d, const char *prefix, int n, int rows, int cols,
                           int n_classes, int gz)
{
    uint8_t *px = malloc((size_t)n * rows * cols), *lab = malloc(n);
    for (int i = 0; i < n; i++) {
        lab[i] = (uint8_t)(i % n_classes);
        for (int p = 0; p < rows * cols; p++)
            px[(size_t)i * rows * cols + p] = (uint8_t)(i + p);
    }
    char name[128];
    int dims[3] = {n, rows, cols};
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    assert_int_equal(tu_write_idx(tu_path(d, name), 3, dims, px, gz), 0);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    assert_int_equal(tu_write_idx(tu_path(d, name), 1, dims, lab, gz), 0);
    free(px);
    free(lab);
}

static void test_idx(void **state)
{
    (void)state;
    char *d = strdup(sub(root, "idx"));
    assert_int_equal(tu_mkdirs(d), 0);
    write_idx_pair(d, "train", 50, 5, 4, 3, 1);
    write_idx_pair(d, "t10k", 12, 5, 4, 3, 0);
    ds_options o = {.format = DS_IDX, .path = d, .valid_pct = -1};
    dataset *ds = open_ok(&o);
    char err[256] = "";
    const ds_info *in = dataset_info(ds);
    assert_counts(in, 50, 12, 0);
    assert_int_equal(in->n_classes, 3);
    assert_string_equal(in->classes[0], "0");
    assert_string_equal(in->classes[2], "2");
    assert_int_equal(in->channels, 1);
    assert_int_equal(in->min_w, 4);
    assert_int_equal(in->max_h, 5);
    assert_string_equal(dataset_item_name(ds, SPLIT_TRAIN, 7), "train-images-idx3-ubyte#7");
    assert_string_equal(dataset_item_name(ds, SPLIT_VALID, 3), "t10k-images-idx3-ubyte#3");
    assert_int_equal(dataset_item_label(ds, SPLIT_TRAIN, 7), 1);
    image im;
    assert_int_equal(dataset_item_image(ds, SPLIT_TRAIN, 7, &im, err, sizeof err), 0);
    assert_int_equal(im.w, 4);
    assert_int_equal(im.h, 5);
    assert_int_equal(im.c, 1);
    assert_int_equal(im.px[0], 7);
    assert_int_equal(im.px[19], 26);
    image_free(&im);
    /* mean of (i + p) over i < 50, p < 20: (24.5 + 9.5) / 255 */
    assert_float_equal(in->mean[0], 34.0 / 255, 1e-4);
    dataset_destroy(ds);

    /* classes.txt names the classes */
    const char *names = "alpha\nbeta\ngamma\n";
    assert_int_equal(tu_write_file(tu_path(d, "classes.txt"), names, strlen(names)), 0);
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    assert_string_equal(dataset_info(ds)->classes[1], "beta");
    dataset_destroy(ds);

    /* test-* stands in for t10k-* */
    char *d3 = strdup(sub(root, "idx3"));
    assert_int_equal(tu_mkdirs(d3), 0);
    write_idx_pair(d3, "train", 20, 2, 2, 2, 0);
    write_idx_pair(d3, "test", 7, 2, 2, 2, 1);
    o.path = d3;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    assert_int_equal(dataset_info(ds)->count[SPLIT_VALID], 7);
    assert_string_equal(dataset_item_name(ds, SPLIT_VALID, 6), "test-images-idx3-ubyte#6");
    dataset_destroy(ds);
    free(d3);

    /* no t10k: valid_pct of train */
    char *d2 = strdup(sub(root, "idx2"));
    assert_int_equal(tu_mkdirs(d2), 0);
    write_idx_pair(d2, "train", 40, 3, 3, 4, 0);
    o.path = d2;
    o.valid_pct = 0.1;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    assert_int_equal(dataset_info(ds)->count[SPLIT_TRAIN], 36);
    assert_int_equal(dataset_info(ds)->count[SPLIT_VALID], 4);
    dataset_destroy(ds);

    /* broken files: wrong magic, label count mismatch, truncated data, missing labels */
    int dims[3] = {40, 3, 3};
    static uint8_t junk[400 * 3 * 3];
    assert_int_equal(tu_write_idx(tu_path(d2, "train-labels-idx1-ubyte"), 1, (int[]){39}, junk,
                                  0), 0);
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "39 labels for 40 images"));
    assert_int_equal(tu_write_file(tu_path(d2, "train-labels-idx1-ubyte"), "\0\0\x08\x03xxxx",
                                   8), 0);
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "train-labels-idx1-ubyte"));
    dims[0] = 400;
    assert_int_equal(tu_write_idx(tu_path(d2, "train-images-idx3-ubyte"), 3, dims, junk, 0), 0);
    size_t len;
    uint8_t *buf = tu_read_file(tu_path(d2, "train-images-idx3-ubyte"), &len);
    assert_int_equal(tu_write_file(tu_path(d2, "train-images-idx3-ubyte"), buf, 100), 0);
    free(buf);
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "truncated"));
    remove(tu_path(d2, "train-labels-idx1-ubyte"));
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "labels"));
    free(d2);
    free(d);
}

static void test_open_errors(void **state)
{
    (void)state;
    dataset *ds = (dataset *)1;
    char err[256];
    ds_options o = {.format = DS_FOLDERS, .path = "/nonexistent/sgdrd", .valid_pct = -1};
    strcpy(err, "stale text from before");
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), -ENOENT);
    assert_null(ds);
    assert_non_null(strstr(err, "/nonexistent/sgdrd"));
    o.path = root; /* no train/ */
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "train"));
    char *d = strdup(sub(root, "empty"));
    assert_int_equal(tu_mkdirs(sub(d, "train")), 0);
    o.path = d;
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "no class folders"));
    assert_int_equal(tu_mkdirs(sub(d, "train/a")), 0);
    assert_int_equal(tu_write_file(sub(d, "train/a/x.png"), "junk", 4), 0);
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "no readable training images"));
    o.valid_pct = 1.5;
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "valid_pct"));
    o.valid_pct = -1;
    o.format = (ds_format)42;
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "format"));
    o.path = NULL;
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "path"));
    free(d);
}

/* IDX files and classes.txt follow the image files' rule: a link that stays inside the
 * dataset's folder is read, one that leads out of it is not (classes.txt would otherwise
 * publish the first lines of any file as class names). */
static void test_idx_links_stay_inside(void **state)
{
    (void)state;
    char *d = strdup(sub(root, "idxlinks")), *out = strdup(sub(root, "idxlinks-outside"));
    assert_int_equal(tu_mkdirs(sub(d, "real")), 0);
    assert_int_equal(tu_mkdirs(out), 0);
    write_idx_pair(sub(d, "real"), "train", 20, 2, 2, 2, 0);
    write_idx_pair(out, "t10k", 6, 2, 2, 2, 0);
    assert_int_equal(symlink("real/train-images-idx3-ubyte", sub(d, "train-images-idx3-ubyte")), 0);
    assert_int_equal(symlink("real/train-labels-idx1-ubyte", sub(d, "train-labels-idx1-ubyte")), 0);
    const char *secret = "first-secret-line\nsecond\n";
    assert_int_equal(tu_write_file(sub(out, "secret.txt"), secret, strlen(secret)), 0);
    assert_int_equal(symlink(sub(out, "secret.txt"), sub(d, "classes.txt")), 0);
    ds_options o = {.format = DS_IDX, .path = d, .valid_pct = -1};
    dataset *ds = open_ok(&o);
    char err[256] = "";
    const ds_info *in = dataset_info(ds);
    assert_int_equal(in->count[SPLIT_TRAIN] + in->count[SPLIT_VALID], 20);
    assert_string_equal(in->classes[0], "0");
    assert_true(find_unreadable(in, "classes.txt", "outside"));
    dataset_destroy(ds);
    /* A validation split linked from outside stops the registration, naming the file. */
    assert_int_equal(symlink(sub(out, "t10k-images-idx3-ubyte"), sub(d, "t10k-images-idx3-ubyte")),
                     0);
    assert_int_equal(symlink(sub(out, "t10k-labels-idx1-ubyte"), sub(d, "t10k-labels-idx1-ubyte")),
                     0);
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_null(ds);
    assert_non_null(strstr(err, "t10k-images-idx3-ubyte"));
    assert_non_null(strstr(err, "outside the dataset root"));
    free(out);
    free(d);
}

/* A scan must not open what is not a regular file (a FIFO blocks open and read forever),
 * must not follow links out of the dataset, and must say why it left any entry out. The
 * alarm turns a hang into a failure. */
static void test_unsafe_entries(void **state)
{
    (void)state;
    alarm(30);
    char *d = strdup(sub(root, "unsafe"));
    char *out = strdup(sub(root, "outside/secretclass"));
    assert_int_equal(tu_mkdirs(sub(d, "train/cat")), 0);
    assert_int_equal(tu_mkdirs(sub(d, "train/dog")), 0);
    assert_int_equal(tu_mkdirs(out), 0);
    write_img(sub(out, "s0.png"), 8, 8, 1, 200, 0);
    write_img(sub(d, "train/cat/c1.png"), 8, 8, 1, 10, 0);
    write_img(sub(d, "train/dog/d1.png"), 8, 8, 1, 90, 0);
    assert_int_equal(mkfifo(sub(d, "train/dog/fifo.png"), 0600), 0);
    assert_int_equal(symlink(out, sub(d, "train/secret")), 0);
    assert_int_equal(symlink(sub(out, "s0.png"), sub(d, "train/dog/leak.png")), 0);
    assert_int_equal(symlink("loop.png", sub(d, "train/dog/loop.png")), 0);
    assert_int_equal(symlink("gone.png", sub(d, "train/dog/dangling.png")), 0);
    /* links that stay inside the dataset keep working */
    assert_int_equal(symlink("cat", sub(d, "train/alias")), 0);
    assert_int_equal(symlink(sub(d, "train/cat/c1.png"), sub(d, "train/cat/c2.png")), 0);

    ds_options o = {.format = DS_FOLDERS, .path = d, .valid_pct = 0, .seed = 1};
    dataset *ds = open_ok(&o);
    char err[256] = "";
    const ds_info *in = dataset_info(ds);
    assert_int_equal(in->n_classes, 3);
    assert_string_equal(in->classes[0], "alias");
    assert_string_equal(in->classes[2], "dog");
    assert_int_equal(in->count[SPLIT_TRAIN], 5);
    assert_true(find_unreadable(in, "train/dog/fifo.png", "not a regular file"));
    assert_true(find_unreadable(in, "train/secret", "outside the dataset root"));
    assert_true(find_unreadable(in, "train/dog/leak.png", "outside the dataset root"));
    assert_true(find_unreadable(in, "train/dog/loop.png", "symbolic link"));
    assert_true(find_unreadable(in, "train/dog/dangling.png", "dangling symbolic link"));
    assert_int_equal(in->n_unreadable, 5);

    /* a file swapped for a FIFO after the scan fails to decode instead of blocking */
    image im;
    int i = 0;
    while (strcmp(dataset_item_name(ds, SPLIT_TRAIN, i), "train/dog/d1.png") != 0)
        i++;
    assert_int_equal(remove(sub(d, "train/dog/d1.png")), 0);
    assert_int_equal(mkfifo(sub(d, "train/dog/d1.png"), 0600), 0);
    assert_true(dataset_item_image(ds, SPLIT_TRAIN, i, &im, err, sizeof err) < 0);
    assert_non_null(strstr(err, "not a regular file"));
    assert_true(find_unreadable(dataset_info(ds), "train/dog/d1.png", "not a regular file"));
    dataset_destroy(ds);

    /* csv: rows that lead out of the dataset are refused, a FIFO row is never opened */
    const char *csv = "file,label\n"
                      "cat/c1.png,cat\n"
                      "../../outside/secretclass/s0.png,secret\n"
                      "dog/leak.png,dog\n"
                      "dog/fifo.png,dog\n";
    assert_int_equal(tu_write_file(sub(d, "labels.csv"), csv, strlen(csv)), 0);
    o.format = DS_CSV;
    if (dataset_open(&ds, &o, err, sizeof err))
        fail_msg("%s", err);
    in = dataset_info(ds);
    assert_int_equal(in->count[SPLIT_TRAIN], 1);
    assert_true(find_unreadable(in, "train/../../outside/secretclass/s0.png",
                                "outside the dataset root"));
    assert_true(find_unreadable(in, "train/dog/leak.png", "outside the dataset root"));
    assert_true(find_unreadable(in, "train/dog/fifo.png", "not a regular file"));
    dataset_destroy(ds);

    /* a labels file that is a FIFO is refused, not waited on */
    assert_int_equal(mkfifo(sub(d, "fifo.csv"), 0600), 0);
    o.csv = "fifo.csv";
    assert_true(dataset_open(&ds, &o, err, sizeof err) < 0);
    assert_non_null(strstr(err, "not a regular file"));
    alarm(0);
    free(out);
    free(d);
}

static void test_fashion_mnist(void **state)
{
    (void)state;
    struct stat st;
    if (stat(FASHION_DIR "/train-images-idx3-ubyte.gz", &st) != 0)
        skip();
    ds_options o = {.format = DS_IDX, .path = FASHION_DIR, .valid_pct = -1};
    dataset *ds = open_ok(&o);
    const ds_info *in = dataset_info(ds);
    assert_counts(in, 60000, 10000, 0);
    assert_int_equal(in->n_classes, 10);
    assert_string_equal(in->classes[0], "T-shirt/top");
    assert_string_equal(in->classes[9], "Ankle boot");
    assert_int_equal(in->channels, 1);
    assert_int_equal(in->n_unreadable, 0);
    assert_int_equal(in->min_w, 28);
    assert_int_equal(in->max_h, 28);
    /* the published statistics of Fashion-MNIST's training set: 0.2860, 0.3530 */
    assert_float_equal(in->mean[0], 0.2860, 0.002);
    assert_float_equal(in->std[0], 0.3530, 0.002);
    int hist[10] = {0};
    for (int i = 0; i < 60000; i++)
        hist[dataset_item_label(ds, SPLIT_TRAIN, i)]++;
    for (int k = 0; k < 10; k++)
        assert_int_equal(hist[k], 6000);
    dataset_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folders),
        cmocka_unit_test(test_folders_valid_pct),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_idx),
        cmocka_unit_test(test_idx_links_stay_inside),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_unsafe_entries),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
