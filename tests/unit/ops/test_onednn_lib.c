/* test_onednn_lib.c: oneDNN is loaded only by what computes with it. Asking which ISA it
 * runs, and probing whether its bf16 kernels beat the fp32 ones, leave this process without
 * a mapping of libdnnl; loading it maps it and gives the same answers; a question asked
 * aside returns what its child wrote, or an error when the child dies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/onednn_aside.h"
#include "ops/onednn_lib.h"
#include "ops/precision.h"

/* 1 when /proc/self/maps maps a file whose name holds "libdnnl". */
static int dnnl_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "libdnnl"))
            found = 1;
    fclose(f);
    return found;
}

/* A sanitizer build links libdnnl (see meson.build): there it is mapped from the start. */
#ifdef ONEDNN_PRELINKED
#define assert_unmapped() ((void)0)
#else
#define assert_unmapped() assert_false(dnnl_mapped())
#endif

static void isa_query_maps_nothing(void **state)
{
    (void)state;
    assert_unmapped();
    assert_int_equal(precision_onednn_loadable(), 1);
    assert_string_not_equal(precision_onednn_isa(), "unavailable");
    (void)precision_bf16_supported();
    assert_unmapped();
    assert_null(onednn_lib_loaded());
}

static void probe_maps_nothing(void **state)
{
    (void)state;
    bf16_kernels k = bf16_kernels_choice();
    assert_true(k == BF16_KERNELS_ONEDNN || k == BF16_KERNELS_FP32);
    assert_unmapped();
    char err[256] = "";
    assert_int_equal(bf16_kernels_check(BF16_KERNELS_ONEDNN, err, sizeof(err)), 0);
    assert_unmapped();
}

static void load_maps_it_and_agrees(void **state)
{
    (void)state;
    const char *aside = precision_onednn_isa();
    const onednn_fns *f = NULL;
    assert_int_equal(onednn_lib_load(&f), 0);
    assert_non_null(f);
    assert_ptr_equal(onednn_lib_loaded(), f);
    assert_true(dnnl_mapped());
    assert_string_equal(onednn_lib_error(), "");
    /* The answer in process is the one the child gave. */
    dnnl_cpu_isa_t isa = f->get_effective_cpu_isa();
    assert_true(isa != dnnl_cpu_isa_all);
    assert_string_equal(precision_onednn_isa(), aside);
    const onednn_fns *again = NULL;
    assert_int_equal(onednn_lib_load(&again), 0);
    assert_ptr_equal(again, f);
}

static void answer_42(void *out, size_t size)
{
    int v = 42;
    memcpy(out, &v, size);
}

static void die(void *out, size_t size)
{
    (void)out;
    (void)size;
    _exit(3);
}

static void aside_returns_the_answer_or_an_error(void **state)
{
    (void)state;
    int v = 0;
    assert_int_equal(onednn_aside_run(answer_42, &v, sizeof(v)), 0);
    assert_int_equal(v, 42);
    v = 7;
    assert_int_equal(onednn_aside_run(die, &v, sizeof(v)), -EPIPE);
    assert_int_equal(v, 7);
    char big[ONEDNN_ASIDE_MAX + 1];
    assert_int_equal(onednn_aside_run(answer_42, big, sizeof(big)), -EINVAL);
}

int main(void)
{
    /* The probe is what is tested, not an override. */
    unsetenv("SGDRD_BF16_KERNELS");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(isa_query_maps_nothing),
        cmocka_unit_test(probe_maps_nothing),
        cmocka_unit_test(aside_returns_the_answer_or_an_error),
        cmocka_unit_test(load_maps_it_and_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
