/* test_interpret: the interpretation of predictions against hand-computed values, a
 * learner's interpretation against its own validation numbers, and the PNGs of items and
 * augmentation previews. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"

static void test_compute_single(void **state)
{
    (void)state;
    /* 3 classes, 5 items: 0->0, 0->1, 1->1, 2->1, 2->2 */
    const float p[] = {0.7f, 0.2f, 0.1f, 0.3f, 0.6f, 0.1f, 0.1f, 0.8f, 0.1f,
                       0.2f, 0.6f, 0.2f, 0.1f, 0.1f, 0.8f};
    const int32_t y[] = {0, 0, 1, 2, 2};
    interp_result r;
    assert_int_equal(interp_compute(&r, p, y, NULL, NULL, 5, 3, 0, 0.2f), 0);
    assert_int_equal(r.n, 5);
    const int64_t cm[9] = {1, 1, 0, 0, 1, 0, 0, 1, 1};
    for (int k = 0; k < 9; k++)
        assert_int_equal(r.confusion[k], cm[k]);
    assert_float_equal(r.accuracy, 3.0f / 5.0f, 1e-6);
    /* class 1: predicted 3 times, right once; support 1 */
    assert_float_equal(r.classes[1].precision, 1.0f / 3.0f, 1e-6);
    assert_float_equal(r.classes[1].recall, 1.0f, 1e-6);
    assert_float_equal(r.classes[1].accuracy, 3.0f / 5.0f, 1e-6);
    assert_float_equal(r.classes[0].recall, 0.5f, 1e-6);
    assert_float_equal(r.classes[0].precision, 1.0f, 1e-6);
    assert_int_equal(r.n_pairs, 2); /* (0,1) and (2,1), one each, in class order */
    assert_int_equal(r.pairs[0].actual, 0);
    assert_int_equal(r.pairs[0].predicted, 1);
    assert_int_equal(r.pairs[1].actual, 2);
    /* top losses: item 3 (p 0.2) then item 1 (p 0.3) */
    assert_int_equal(r.items[0].index, 3);
    assert_float_equal(r.items[0].loss, -logf(0.2f), 1e-5);
    assert_int_equal(r.items[0].predicted, 1);
    assert_float_equal(r.items[0].p_predicted, 0.6f, 1e-6);
    assert_int_equal(r.items[1].index, 1);
    double mean = (-log(0.7) - log(0.3) - log(0.8) - log(0.2) - log(0.8)) / 5;
    assert_float_equal(r.loss, mean, 1e-5);
    interp_result_free(&r);
    interp_result_free(&r); /* a freed result is zeroed */

    const int32_t bad[] = {0, 0, 3, 0, 0};
    assert_int_equal(interp_compute(&r, p, bad, NULL, NULL, 5, 3, 0, 0.2f), -EINVAL);
    const uint8_t seen[] = {1, 0, 1, 0, 1};
    assert_int_equal(interp_compute(&r, p, y, NULL, seen, 5, 3, 0, 0.2f), 0);
    assert_int_equal(r.n, 3);
    assert_float_equal(r.accuracy, 1.0f, 1e-6);
    assert_int_equal(r.n_pairs, 0);
    interp_result_free(&r);
}

static void test_compute_multi(void **state)
{
    (void)state;
    const float p[] = {0.9f, 0.3f, 0.1f, 0.1f, 0.5f, 0.05f};
    const float t[] = {1, 0, 1, 1, 1, 1};
    interp_result r;
    assert_int_equal(interp_compute(&r, p, NULL, t, NULL, 3, 2, 1, 0.2f), 0);
    assert_null(r.confusion);
    assert_int_equal(r.n_pairs, 0);
    /* class 0: truth {0,1,2}, predicted {0,2}: precision 1, recall 2/3 */
    assert_int_equal(r.classes[0].support, 3);
    assert_int_equal(r.classes[0].tp, 2);
    assert_float_equal(r.classes[0].precision, 1.0f, 1e-6);
    assert_float_equal(r.classes[0].recall, 2.0f / 3.0f, 1e-6);
    assert_float_equal(r.classes[0].f2, 5.0 * (2.0 / 3.0) / (4.0 + 2.0 / 3.0), 1e-6);
    /* class 1: truth {1,2}, predicted {0}: all wrong */
    assert_int_equal(r.classes[1].tp, 0);
    assert_float_equal(r.classes[1].f2, 0.0f, 1e-6);
    assert_float_equal(r.classes[1].accuracy, 0.0f, 1e-6);
    assert_int_equal(r.items[0].index, 1); /* 0.1 on both true classes */
    assert_int_equal(r.items[0].actual, -1);
    interp_result_free(&r);
}

/* A trained learner's interpretation agrees with its own validation pass. */
static void test_learner(void **state)
{
    (void)state;
    learner_config c;
    fx_base_config(&c);
    dataset *ds = fx_open_ds(fx_big);
    learner *l = fx_make(&c, ds);
    char err[256] = "";
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 1, .cycle_mult = 1,
                  .schedule = SCHED_SGDR};
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), 0);
    tta_result t;
    assert_int_equal(learner_tta(l, 0, NULL, &t, err, sizeof err), 0);
    interp_result r;
    assert_int_equal(learner_interpret(l, &r, err, sizeof err), 0);
    assert_int_equal(r.n, N_VALID);
    int64_t sum = 0, diag = 0;
    for (int a = 0; a < N_CLASSES; a++)
        for (int p = 0; p < N_CLASSES; p++) {
            sum += r.confusion[a * N_CLASSES + p];
            diag += a == p ? r.confusion[a * N_CLASSES + p] : 0;
        }
    assert_int_equal(sum, N_VALID);
    assert_float_equal(r.accuracy, (float)diag / N_VALID, 1e-6);
    assert_float_equal(r.accuracy, t.accuracy, 1e-6);
    assert_float_equal(r.loss, t.loss, 1e-4);
    for (int k = 1; k < r.n; k++)
        assert_true(r.items[k - 1].loss >= r.items[k].loss);
    interp_result_free(&r);

    learner_destroy(l);
    dataset_destroy(ds);
}

/* Interpreting between two fits changes nothing the second fit does: it draws no random
 * numbers and uses up no loader epoch. */
static void test_fit_unchanged_by_interpreting(void **state)
{
    (void)state;
    learner_config c;
    fx_base_config(&c);
    c.tfms = TFMS_SIDE_ON;
    dataset *ds = fx_open_ds(fx_small);
    learner *a = fx_make(&c, ds), *b = fx_make(&c, ds);
    char err[256] = "";
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 1, .cycle_mult = 1,
                  .schedule = SCHED_SGDR};
    interp_result r;
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), 0);
    assert_int_equal(learner_fit(b, &o, NULL, err, sizeof err), 0);
    assert_int_equal(learner_interpret(a, &r, err, sizeof err), 0);
    interp_result_free(&r);
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), 0);
    assert_int_equal(learner_fit(b, &o, NULL, err, sizeof err), 0);
    assert_memory_equal(learner_net(a)->params, learner_net(b)->params,
                        learner_net(a)->n_params * sizeof(float));
    learner_destroy(a);
    learner_destroy(b);
    dataset_destroy(ds);
}

static void test_pngs(void **state)
{
    (void)state;
    learner_config c;
    fx_base_config(&c);
    c.tfms = TFMS_SIDE_ON;
    c.max_zoom = 1.2f;
    dataset *ds = fx_open_ds(fx_small);
    learner *l = fx_make(&c, ds);
    char err[256] = "";
    uint8_t *png = NULL;
    size_t len = 0;
    int nv = dataset_info(ds)->count[SPLIT_VALID];
    assert_int_equal(learner_item_png(l, SPLIT_VALID, nv, 64, &png, &len, err, sizeof err),
                     -ERANGE);
    assert_int_equal(learner_item_png(l, SPLIT_VALID, -1, 64, &png, &len, err, sizeof err),
                     -ERANGE);
    assert_int_equal(learner_item_png(l, SPLIT_VALID, 2, 64, &png, &len, err, sizeof err), 0);
    image a = {0}, b = {0};
    assert_int_equal(image_decode_mem(&a, png, len, 0, err, sizeof err), 0);
    assert_int_equal(dataset_item_image(ds, SPLIT_VALID, 2, &b, err, sizeof err), 0);
    assert_int_equal(a.w, b.w);
    assert_int_equal(a.h, b.h);
    assert_int_equal(a.c, b.c);
    assert_memory_equal(a.px, b.px, (size_t)a.w * a.h * a.c);
    image_free(&a);
    image_free(&b);
    free(png);

    uint8_t *p2 = NULL;
    size_t len2 = 0;
    assert_int_equal(learner_augment_png(l, 0, 0, 1, &png, &len, err, sizeof err), -ERANGE);
    assert_int_equal(learner_augment_png(l, N_SMALL, 4, 1, &png, &len, err, sizeof err),
                     -ERANGE);
    assert_int_equal(learner_augment_png(l, 3, 4, 7, &png, &len, err, sizeof err), 0);
    assert_int_equal(learner_augment_png(l, 3, 4, 7, &p2, &len2, err, sizeof err), 0);
    assert_int_equal(len, len2);
    assert_memory_equal(png, p2, len);
    assert_int_equal(image_decode_mem(&a, png, len, 0, err, sizeof err), 0);
    assert_int_equal(a.w, 4 * SZ);
    assert_int_equal(a.h, SZ);
    /* augmented tiles differ from one another */
    int differ = 0;
    for (int y = 0; y < SZ && !differ; y++)
        differ = memcmp(a.px + (size_t)y * a.w * a.c, a.px + ((size_t)y * a.w + SZ) * a.c,
                        (size_t)SZ * a.c) != 0;
    assert_true(differ);
    image_free(&a);
    free(png);
    free(p2);
    learner_destroy(l);
    dataset_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compute_single),
        cmocka_unit_test(test_compute_multi),
        cmocka_unit_test(test_learner),
        cmocka_unit_test(test_fit_unchanged_by_interpreting),
        cmocka_unit_test(test_pngs),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
