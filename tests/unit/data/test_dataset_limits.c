/* test_dataset_limits.c: datasets that would cost too much to register: many unreadable
 * files, IDX headers declaring more items than the files hold or than the dataset's
 * item cap allows, and labels files without bounds. Each must be refused (or listed)
 * with a reason, never allowed to take the machine's memory or time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_many_missing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
