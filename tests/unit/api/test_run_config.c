/* test_run_config.c: runcfg_learner, the one mapping of a run's config to the engine's
 * learner_config that the daemon and the ranks of a data-parallel world share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>

#include "models/models.h"
#include "ops/precision.h"
#include "run_config.h"

static learner_config of(const char *text, int multi_label)
{
    json_t *cfg = text ? json_loads(text, 0, NULL) : NULL;
    if (text)
        assert_non_null(cfg);
    learner_config lc;
    runcfg_learner(cfg, multi_label, &lc);
    json_decref(cfg);
    return lc;
}

static void bf16_run_keeps_its_precision_and_kernels(void **state)
{
    (void)state;
    learner_config lc = of("{\"precision\": \"bf16\", \"bf16_kernels\": \"onednn\"}", 0);
    assert_int_equal(lc.precision, PRECISION_BF16);
    assert_int_equal(lc.bf16_kernels, BF16_KERNELS_ONEDNN);
    lc = of("{\"precision\": \"bf16\", \"bf16_kernels\": \"fp32\"}", 0);
    assert_int_equal(lc.precision, PRECISION_BF16);
    assert_int_equal(lc.bf16_kernels, BF16_KERNELS_FP32);
}

/* Rows from before a key was recorded read as they were trained. */
static void old_rows_take_the_defaults(void **state)
{
    (void)state;
    learner_config lc = of("{}", 1);
    assert_int_equal(lc.precision, PRECISION_FP32);
    assert_int_equal(lc.bf16_kernels, BF16_KERNELS_AUTO);
    assert_int_equal(lc.opt, OPTIM_SGD);
    assert_int_equal(lc.sz, 224);
    assert_int_equal(lc.bs, 64);
    assert_int_equal(lc.tfms, TFMS_NONE);
    assert_int_equal(lc.model.multi_label, 1);
    assert_null(lc.pretrained);
    assert_int_equal(lc.loader_threads, 0);
    assert_null(lc.dist);
    lc = of(NULL, 0);
    assert_int_equal(lc.precision, PRECISION_FP32);
    lc = of("{\"precision\": \"bf16\", \"bf16_kernels\": \"auto\"}", 0);
    assert_int_equal(lc.bf16_kernels, BF16_KERNELS_AUTO);
}

static void every_key_reaches_the_config(void **state)
{
    (void)state;
    learner_config lc = of("{\"sz\": 28, \"bs\": 32, \"tfms\": \"flip\", \"max_zoom\": 1.0, "
                           "\"precompute\": true, \"seed\": 7, \"opt\": \"adamw\", "
                           "\"multi_label\": false, \"label_smoothing\": 0.1, "
                           "\"head\": \"plain\", \"ps\": [0.25, 0.5], \"xtra_fc\": [64]}",
                           1);
    assert_int_equal(lc.sz, 28);
    assert_int_equal(lc.bs, 32);
    assert_int_equal(lc.tfms, TFMS_FLIP);
    assert_true(lc.max_zoom == 1.0f);
    assert_int_equal(lc.precompute, 1);
    assert_int_equal(lc.seed, 7);
    assert_int_equal(lc.model.seed, 7);
    assert_int_equal(lc.opt, OPTIM_ADAM);
    assert_int_equal(lc.model.multi_label, 0);
    assert_true(lc.model.label_smoothing == 0.1f);
    assert_int_equal(lc.model.head, HEAD_PLAIN);
    assert_true(lc.model.ps[0] == 0.25f && lc.model.ps[1] == 0.5f);
    assert_int_equal(lc.model.n_xtra_fc, 1);
    assert_int_equal(lc.model.xtra_fc[0], 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bf16_run_keeps_its_precision_and_kernels),
        cmocka_unit_test(old_rows_take_the_defaults),
        cmocka_unit_test(every_key_reaches_the_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
