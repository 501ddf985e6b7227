/* test_common.c: common/: fs_mkdir_p (nested, existing, too long, under a file), buf_grow,
 * buf_grow_bytes, err_set. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "errmsg.h"
#include "fs_path.h"

static char tmp_root[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/sgdrd_common_XXXXXX");
    return mkdtemp(tmp_root) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void mkdir_p_makes_every_level(void **state)
{
    char path[PATH_MAX];
    (void)state;
    snprintf(path, sizeof path, "%s/a/b/c", tmp_root);
    assert_int_equal(fs_mkdir_p(path), 0);
    assert_true(is_dir(path));
    assert_int_equal(fs_mkdir_p(path), 0);
    snprintf(path, sizeof path, "%s/a/b/c/", tmp_root);
    assert_int_equal(fs_mkdir_p(path), 0);
}

/* A path that does not fit is refused whole: no folder is made from a cut-off copy. */
static void mkdir_p_refuses_too_long_a_path(void **state)
{
    char *path = malloc(PATH_MAX + 64);
    char cut[PATH_MAX];
    (void)state;
    assert_non_null(path);
    int n = snprintf(path, PATH_MAX + 64, "%s/long/", tmp_root);
    memset(path + n, 'x', (size_t)(PATH_MAX + 64 - n - 1));
    path[PATH_MAX + 63] = '\0';
    assert_int_equal(fs_mkdir_p(path), -ENAMETOOLONG);
    snprintf(cut, sizeof cut, "%s/long", tmp_root);
    assert_false(is_dir(cut));
    assert_int_equal(fs_mkdir_p(""), -ENAMETOOLONG);
    free(path);
}

static void mkdir_p_under_a_file_fails(void **state)
{
    char file[PATH_MAX], path[PATH_MAX];
    (void)state;
    snprintf(file, sizeof file, "%s/plain", tmp_root);
    snprintf(path, sizeof path, "%s/plain/sub", tmp_root);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(fs_mkdir_p(path), -ENOTDIR);
}

static void buf_grow_doubles_and_keeps_contents(void **state)
{
    int *v = NULL, cap = 0;
    (void)state;
    for (int i = 0; i < 100; i++) {
        int *nv = buf_grow(v, &cap, i + 1, sizeof *v);
        assert_non_null(nv);
        v = nv;
        v[i] = i;
    }
    assert_int_equal(cap, 128);
    for (int i = 0; i < 100; i++)
        assert_int_equal(v[i], i);
    assert_ptr_equal(buf_grow(v, &cap, 50, sizeof *v), v);
    int big = cap;
    assert_null(buf_grow(v, &big, INT_MAX, (size_t)1 << 40));
    assert_int_equal(big, cap);
    free(v);
}

static void buf_grow_bytes_stops_at_the_limit(void **state)
{
    size_t cap = 0;
    char *b = buf_grow_bytes(NULL, &cap, 10, 4096, 6000);
    (void)state;
    assert_non_null(b);
    assert_int_equal(cap, 4096);
    char *nb = buf_grow_bytes(b, &cap, 5000, 4096, 6000);
    assert_non_null(nb);
    assert_int_equal(cap, 6000);
    assert_null(buf_grow_bytes(nb, &cap, 6001, 4096, 6000));
    assert_int_equal(cap, 6000);
    free(nb);
}

static void err_set_formats_and_accepts_no_buffer(void **state)
{
    char err[8];
    (void)state;
    err_set(err, sizeof err, "%s %d", "abc", 12345);
    assert_string_equal(err, "abc 123");
    err_set(NULL, 0, "%s", "nothing");
    err_set(err, 0, "%s", "nothing");
    assert_string_equal(err, "abc 123");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mkdir_p_makes_every_level),
        cmocka_unit_test(mkdir_p_refuses_too_long_a_path),
        cmocka_unit_test(mkdir_p_under_a_file_fails),
        cmocka_unit_test(buf_grow_doubles_and_keeps_contents),
        cmocka_unit_test(buf_grow_bytes_stops_at_the_limit),
        cmocka_unit_test(err_set_formats_and_accepts_no_buffer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
