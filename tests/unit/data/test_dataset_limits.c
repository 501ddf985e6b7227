/* test_dataset_limits.c: datasets that would cost too much to register: many unreadable
 * files, IDX headers declaring more items than the files hold or than the dataset's
 * item cap allows, and labels files without bounds. Each must be refused (or listed)
 * with a reason, never allowed to take the machine's memory or time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <png.h>

#include "data/data.h"
#include "testutil.h"

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

static const char *sub(const char *a, const char *b)
{
    return tu_path(a, b);
}

static void write_gray_png(const char *path)
{
    uint8_t px[4] = {10, 20, 30, 40};
    assert_int_equal(tu_write_png(path, 2, 2, PNG_COLOR_TYPE_GRAY, 8, 0, px, NULL, 0), 0);
}

static const char *reason_of(const ds_info *in, const char *file)
{
    for (int i = 0; i < in->n_unreadable; i++)
        if (strcmp(in->unreadable[i].file, file) == 0)
            return in->unreadable[i].reason;
    return NULL;
}

/* A labels.csv naming 200,000 missing files (every tenth twice) and one real image: the
 * scan lists each missing file once, in the csv's order, and keeps the real one. */
static void test_csv_many_missing(void **state)
{
    (void)state;
    enum { N_MISSING = 200000 };
    char *d = strdup(sub(root, "many_missing"));
    assert_int_equal(tu_mkdirs(sub(d, "train")), 0);
    write_gray_png(sub(d, "train/real.png"));
    size_t cap = (size_t)N_MISSING * 32 + 64, len = 0;
    char *csv = malloc(cap);
    assert_non_null(csv);
    len += (size_t)snprintf(csv + len, cap - len, "file,label\nreal.png,a\n");
    for (int i = 0; i < N_MISSING; i++) {
        len += (size_t)snprintf(csv + len, cap - len, "m%d.png,b\n", i);
        if (i % 10 == 0)
            len += (size_t)snprintf(csv + len, cap - len, "m%d.png,b\n", i);
    }
    assert_int_equal(tu_write_file(sub(d, "labels.csv"), csv, len), 0);
    free(csv);

    ds_options o = {.format = DS_CSV, .path = d, .valid_pct = 0};
    dataset *ds = NULL;
    char err[256] = "";
    if (dataset_open(&ds, &o, err, sizeof err))
        fail_msg("%s", err);
    const ds_info *in = dataset_info(ds);
    assert_int_equal(in->count[SPLIT_TRAIN], 1);
    assert_string_equal(dataset_item_name(ds, SPLIT_TRAIN, 0), "train/real.png");
    assert_int_equal(in->n_unreadable, N_MISSING);
    char want[64];
    for (int i = 0; i < N_MISSING; i += 9973) {
        snprintf(want, sizeof want, "train/m%d.png", i);
        assert_string_equal(in->unreadable[i].file, want);
        assert_non_null(strstr(in->unreadable[i].reason, "No such file"));
    }
    assert_non_null(reason_of(in, "train/m199999.png"));
    dataset_destroy(ds);
    free(d);
}

/* An IDX header (images: n x rows x cols; labels: n) followed by `have` zero bytes. */
static void write_idx_header(const char *path, int dims, uint32_t n, uint32_t rows,
                             uint32_t cols, size_t have, int gz)
{
    size_t hlen = 4 + 4 * (size_t)dims, len = hlen + have;
    uint8_t *b = calloc(1, len);
    assert_non_null(b);
    uint32_t d[3] = {n, rows, cols};
    b[2] = 0x08;
    b[3] = (uint8_t)dims;
    for (int k = 0; k < dims; k++)
        for (int j = 0; j < 4; j++)
            b[4 + 4 * k + j] = (uint8_t)(d[k] >> (24 - 8 * j));
    if (gz) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.raw", path);
        assert_int_equal(tu_write_file(tmp, b, len), 0);
        char cmd[8400];
        snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s' && rm '%s'", tmp, path, tmp);
        assert_int_equal(system(cmd), 0);
    } else {
        assert_int_equal(tu_write_file(path, b, len), 0);
    }
    free(b);
}

static int open_idx(const char *d, int64_t max_items, char *err, size_t errlen)
{
    ds_options o = {.format = DS_IDX, .path = d, .valid_pct = -1, .max_items = max_items};
    dataset *ds = NULL;
    int rc = dataset_open(&ds, &o, err, errlen);
    if (rc == 0)
        assert_non_null(ds);
    else
        assert_null(ds);
    dataset_destroy(ds);
    return rc;
}

/* Headers declaring 100,000,000 images of 28x28 (78 GB) in files that hold a few bytes,
 * plain and gzip: refused for what the file holds, not for the memory the header asks. */
static void test_idx_declares_more_than_held(void **state)
{
    (void)state;
    char err[512];
    for (int gz = 0; gz < 2; gz++) {
        char *d = strdup(sub(root, gz ? "idx_liar_gz" : "idx_liar"));
        assert_int_equal(tu_mkdirs(d), 0);
        const char *ip = gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte";
        const char *lp = gz ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte";
        write_idx_header(sub(d, ip), 3, 100000000u, 28, 28, 784 * 3, gz);
        write_idx_header(sub(d, lp), 1, 100000000u, 1, 1, 3, gz);
        err[0] = 0;
        assert_int_equal(open_idx(d, 200000000, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, ip));
        assert_non_null(strstr(err, "truncated"));
        free(d);
    }
}

/* max_items bounds the items over every split: over it, the header alone refuses the
 * dataset, naming the file; the default bound refuses 10,000,001 declared images. */
static void test_idx_max_items(void **state)
{
    (void)state;
    char err[512];
    char *d = strdup(sub(root, "idx_cap"));
    assert_int_equal(tu_mkdirs(d), 0);
    write_idx_header(sub(d, "train-images-idx3-ubyte"), 3, 15, 2, 2, 15 * 4, 0);
    write_idx_header(sub(d, "train-labels-idx1-ubyte"), 1, 15, 1, 1, 15, 0);
    write_idx_header(sub(d, "t10k-images-idx3-ubyte"), 3, 10, 2, 2, 10 * 4, 0);
    write_idx_header(sub(d, "t10k-labels-idx1-ubyte"), 1, 10, 1, 1, 10, 0);
    assert_int_equal(open_idx(d, 25, err, sizeof err), 0);
    err[0] = 0;
    assert_int_equal(open_idx(d, 24, err, sizeof err), -EFBIG);
    assert_non_null(strstr(err, "t10k-images-idx3-ubyte"));
    assert_non_null(strstr(err, "24"));
    err[0] = 0;
    assert_int_equal(open_idx(d, 14, err, sizeof err), -EFBIG);
    assert_non_null(strstr(err, "train-images-idx3-ubyte"));

    /* Without t10k files the valid split comes from train; every item keeps its name. */
    assert_int_equal(unlink(sub(d, "t10k-images-idx3-ubyte")), 0);
    assert_int_equal(unlink(sub(d, "t10k-labels-idx1-ubyte")), 0);
    ds_options o = {.format = DS_IDX, .path = d, .valid_pct = 0.2, .seed = 5};
    dataset *ds = NULL;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    const ds_info *in = dataset_info(ds);
    assert_int_equal(in->count[SPLIT_TRAIN], 12);
    assert_int_equal(in->count[SPLIT_VALID], 3);
    int seen[15] = {0};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < in->count[s]; i++) {
            const char *name = dataset_item_name(ds, s, i);
            int k = -1;
            assert_int_equal(sscanf(name, "train-images-idx3-ubyte#%d", &k), 1);
            assert_true(k >= 0 && k < 15);
            seen[k]++;
        }
    for (int k = 0; k < 15; k++)
        assert_int_equal(seen[k], 1);
    dataset_destroy(ds);

    write_idx_header(sub(d, "train-images-idx3-ubyte"), 3, 10000001u, 1, 1, 0, 0);
    err[0] = 0;
    assert_int_equal(open_idx(d, 0, err, sizeof err), -EFBIG);
    assert_non_null(strstr(err, "10000000"));
    free(d);
}

/* The same bound for files: a csv with more rows, a folder with more images. */
static void test_files_max_items(void **state)
{
    (void)state;
    char *d = strdup(sub(root, "files_cap"));
    assert_int_equal(tu_mkdirs(sub(d, "train/a")), 0);
    for (int i = 0; i < 6; i++) {
        char name[64];
        snprintf(name, sizeof name, "train/a/%d.png", i);
        write_gray_png(sub(d, name));
    }
    const char *csv = "file,label\na/0.png,x\na/1.png,x\na/2.png,y\na/3.png,y\n";
    assert_int_equal(tu_write_file(sub(d, "labels.csv"), csv, strlen(csv)), 0);
    ds_options o = {.format = DS_CSV, .path = d, .valid_pct = 0, .max_items = 4};
    dataset *ds = NULL;
    char err[512] = "";
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    dataset_destroy(ds);
    o.max_items = 3;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), -EFBIG);
    assert_non_null(strstr(err, "labels.csv line 5"));
    o.format = DS_FOLDERS;
    o.max_items = 6;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    dataset_destroy(ds);
    o.max_items = 5;
    err[0] = 0;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), -EFBIG);
    assert_null(ds);
    assert_non_null(strstr(err, "train/a"));
    free(d);
}

/* A labels.csv with a line longer than a labels file needs, or bigger than one can be,
 * is refused naming it, before its lines are held in memory. */
static void test_csv_bounds(void **state)
{
    (void)state;
    char *d = strdup(sub(root, "csv_bounds"));
    assert_int_equal(tu_mkdirs(sub(d, "train")), 0);
    write_gray_png(sub(d, "train/real.png"));
    size_t big = 100000;
    char *csv = malloc(big + 64);
    assert_non_null(csv);
    int len = snprintf(csv, 64, "file,label\nreal.png,a\nx.png,");
    memset(csv + len, 'b', big);
    csv[len + big] = '\n';
    assert_int_equal(tu_write_file(sub(d, "labels.csv"), csv, len + big + 1), 0);
    free(csv);
    ds_options o = {.format = DS_CSV, .path = d, .valid_pct = 0};
    dataset *ds = NULL;
    char err[512] = "";
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), -EINVAL);
    assert_null(ds);
    assert_non_null(strstr(err, "labels.csv line 3"));
    assert_non_null(strstr(err, "longer than"));

    /* 300 MiB that take no disk: a sparse file. */
    const char *head = "file,label\nreal.png,a\n";
    assert_int_equal(tu_write_file(sub(d, "labels.csv"), head, strlen(head)), 0);
    assert_int_equal(truncate(sub(d, "labels.csv"), 300ll << 20), 0);
    err[0] = 0;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), -EFBIG);
    assert_null(ds);
    assert_non_null(strstr(err, "labels.csv"));
    assert_non_null(strstr(err, "bytes"));
    free(d);
}

/* Counts progress calls; asks the scan to stop once it has seen `stop_at` files. */
typedef struct scan_watch {
    int calls, stop;
    int64_t last, stop_at;
} scan_watch;

static void on_progress(void *ctx, int64_t seen)
{
    scan_watch *w = ctx;
    assert_true(seen > w->last);
    w->calls++;
    w->last = seen;
    if (w->stop_at && seen >= w->stop_at)
        w->stop = 1;
}

/* A scan reports the files it has probed every DS_SCAN_EVERY files, and one asked to stop
 * ends soon after with -ECANCELED, saying so; one never asked finishes. */
static void test_scan_progress_and_stop(void **state)
{
    (void)state;
    enum { N = 20 * DS_SCAN_EVERY };
    char *d = strdup(sub(root, "watched"));
    assert_int_equal(tu_mkdirs(sub(d, "train")), 0);
    write_gray_png(sub(d, "train/real.png"));
    FILE *fp = fopen(sub(d, "labels.csv"), "w");
    assert_non_null(fp);
    fprintf(fp, "file,label\nreal.png,a\n");
    for (int i = 1; i < N; i++)
        fprintf(fp, "m%d.png,%c\n", i, i % 2 ? 'a' : 'b');
    fclose(fp);

    scan_watch w = {0};
    ds_options o = {.format = DS_CSV, .path = d, .valid_pct = 0, .progress = on_progress,
                    .progress_ctx = &w, .stop = &w.stop};
    dataset *ds = NULL;
    char err[256] = "";
    if (dataset_open(&ds, &o, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(w.calls, N / DS_SCAN_EVERY);
    assert_int_equal(w.last, N);
    dataset_destroy(ds);

    w = (scan_watch){.stop_at = 3 * DS_SCAN_EVERY};
    ds = NULL;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), -ECANCELED);
    assert_null(ds);
    assert_int_equal(w.last, 3 * DS_SCAN_EVERY);
    assert_non_null(strstr(err, "stopped"));
    free(d);
}

/* An IDX registration looks at the stop flag as it reads (16 MiB at a time), not only
 * once the whole file is in memory, and reports the images read as its progress. */
static void test_idx_progress_and_stop(void **state)
{
    (void)state;
    enum { N = 40000, ROWS = 32, COLS = 32 };
    char *d = strdup(sub(root, "idx_watched"));
    assert_int_equal(tu_mkdirs(d), 0);
    uint8_t *px = calloc((size_t)N * ROWS * COLS, 1), *lab = calloc(N, 1);
    assert_non_null(px);
    assert_non_null(lab);
    for (int i = 0; i < N; i++)
        lab[i] = (uint8_t)(i % 3);
    assert_int_equal(tu_write_idx(sub(d, "train-images-idx3-ubyte.gz"), 3,
                                  (int[]){N, ROWS, COLS}, px, 1), 0);
    assert_int_equal(tu_write_idx(sub(d, "train-labels-idx1-ubyte.gz"), 1, (int[]){N}, lab, 1),
                     0);
    free(px);
    free(lab);

    scan_watch w = {0};
    ds_options o = {.format = DS_IDX, .path = d, .valid_pct = 0.1, .progress = on_progress,
                    .progress_ctx = &w, .stop = &w.stop};
    dataset *ds = NULL;
    char err[256] = "";
    if (dataset_open(&ds, &o, err, sizeof err))
        fail_msg("%s", err);
    assert_true(w.calls >= 2);
    assert_int_equal(w.last, N);
    dataset_destroy(ds);

    w = (scan_watch){.stop_at = 1};
    ds = NULL;
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), -ECANCELED);
    assert_null(ds);
    assert_int_equal(w.calls, 1);
    assert_true(w.last < N);
    assert_non_null(strstr(err, "stopped"));
    assert_non_null(strstr(err, "train-images"));
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_many_missing),
        cmocka_unit_test(test_idx_declares_more_than_held),
        cmocka_unit_test(test_idx_max_items),
        cmocka_unit_test(test_files_max_items),
        cmocka_unit_test(test_csv_bounds),
        cmocka_unit_test(test_scan_progress_and_stop),
        cmocka_unit_test(test_idx_progress_and_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
