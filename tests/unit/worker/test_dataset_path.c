/* test_dataset_path.c: dpath_ok, the relative paths a rank receiving a dataset accepts:
 * plain names and nested ones; never empty, absolute, "." or ".." components, empty
 * components, a trailing slash, or a path too long. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "dataset_path.h"

static void accepts_paths_below(void **state)
{
    (void)state;
    assert_true(dpath_ok("train-images-idx3-ubyte"));
    assert_true(dpath_ok("train/cat/001.jpg"));
    assert_true(dpath_ok("..hidden/.x/a..b/..."));
}

static void refuses_paths_outside(void **state)
{
    (void)state;
    const char *bad[] = {"", "/etc/passwd", "..", "../x", "a/../../x", "a/..", "./a", "a/./b",
                         ".", "a//b", "a/", "/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dpath_ok(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_false(dpath_ok(NULL));
}

static void refuses_too_long(void **state)
{
    (void)state;
    static char name[PATH_MAX];
    memset(name, 'a', sizeof name - 1);
    assert_false(dpath_ok(name));
    name[PATH_MAX / 2 - 1] = '\0';
    assert_true(dpath_ok(name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_paths_below),
        cmocka_unit_test(refuses_paths_outside),
        cmocka_unit_test(refuses_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
