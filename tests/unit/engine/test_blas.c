/* test_blas.c: the OpenBLAS core-type choice (docs/architecture.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "blas.h"

static void generic_core_on_avx512_picks_skylakex(void **state)
{
    (void)state;
    assert_string_equal(blas_better_core("Prescott", 1, 1), "SkylakeX");
    assert_string_equal(blas_better_core("prescott", 0, 1), "Haswell");
    assert_string_equal(blas_better_core("Core2", 0, 1), "Haswell");
}

static void known_core_is_kept(void **state)
{
    (void)state;
    assert_null(blas_better_core("Zen", 0, 1));
    assert_null(blas_better_core("Haswell", 0, 1));
    assert_null(blas_better_core("SkylakeX", 1, 1));
    assert_null(blas_better_core("Prescott", 0, 0)); /* nothing better to offer */
}

static void library_reports_a_core(void **state)
{
    (void)state;
    blas_startup(NULL, 2);
    assert_non_null(blas_core_name());
    assert_true(strlen(blas_core_name()) > 0);
    assert_int_equal(blas_threads(), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generic_core_on_avx512_picks_skylakex),
        cmocka_unit_test(known_core_is_kept),
        cmocka_unit_test(library_reports_a_core),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
