/* test_onednn_missing.c: a host without oneDNN. This test's copy of the loader, the
 * precision queries and the bf16 kernel choice is built to dlopen a library that does not
 * exist (ONEDNN_LIB_SONAME), as on a host where libdnnl.so.2 is not installed: bf16 support
 * comes from the CPU's flags, the bf16 mode takes the fp32 kernels (also when
 * SGDRD_BF16_KERNELS=onednn asks otherwise: run once with it set), and an explicit request
 * for oneDNN's kernels is refused with a message naming the library. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "onednn_lib.h"
#include "precision.h"

static void loading_fails_with_the_reason(void **state)
{
    (void)state;
    const onednn_fns *f = (const onednn_fns *)1;
    assert_int_equal(onednn_lib_load(&f), -ENOENT);
    assert_null(f);
    assert_null(onednn_lib_loaded());
    assert_non_null(strstr(onednn_lib_error(), ONEDNN_LIB_SONAME));
}

static void support_comes_from_the_cpu(void **state)
{
    (void)state;
    int cpu = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    assert_int_equal(precision_onednn_loadable(), 0);
    assert_string_equal(precision_onednn_isa(), "unavailable");
    assert_int_equal(precision_bf16_supported(), cpu);
    precision p = PRECISION_FP32;
    assert_int_equal(precision_parse("auto", &p), 0);
    assert_int_equal(p, cpu ? PRECISION_BF16 : PRECISION_FP32);
    assert_int_equal(precision_parse("bf16", &p), cpu ? 0 : -ENOTSUP);
}

static void bf16_takes_the_fp32_kernels(void **state)
{
    (void)state;
    assert_int_equal(bf16_kernels_choice(), BF16_KERNELS_FP32);
}

static void onednn_kernels_are_refused(void **state)
{
    (void)state;
    char err[256] = "";
    assert_int_equal(bf16_kernels_check(BF16_KERNELS_ONEDNN, err, sizeof(err)), -ENOTSUP);
    assert_non_null(strstr(err, "bf16_kernels"));
    assert_non_null(strstr(err, ONEDNN_LIB_SONAME));
    assert_int_equal(bf16_kernels_check(BF16_KERNELS_FP32, err, sizeof(err)), 0);
    assert_int_equal(bf16_kernels_check(BF16_KERNELS_AUTO, err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loading_fails_with_the_reason),
        cmocka_unit_test(support_comes_from_the_cpu),
        cmocka_unit_test(bf16_takes_the_fp32_kernels),
        cmocka_unit_test(onednn_kernels_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
