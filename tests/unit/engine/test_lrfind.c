/* test_lrfind.c: the LR finder's smoothing, stop rule, default length, and each of the
 * four suggestions on hand-made curves whose answer follows from the rule by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lrfind.h"
#include "lrsched.h"

/* 120 points: the suggestions look at points 12..114, i.e. window index w = point - 12. */
#define NPTS 120
#define LO 12

static void make_sweep(lrfind_result *r, double (*curve)(int w))
{
    memset(r, 0, sizeof *r);
    r->n_points = NPTS;
    r->points = calloc(NPTS, sizeof *r->points);
    assert_non_null(r->points);
    for (int i = 0; i < NPTS; i++) {
        r->points[i].iter = i;
        r->points[i].lr = sched_exp_sweep(1e-5, 10.0, i, NPTS);
        /* Outside the window: values that would win every rule if they were looked at. */
        double y = (i < LO || i >= NPTS - 5) ? -100.0 + (i % 2) * 200.0 : curve(i - LO);
        r->points[i].loss = (float)y;
        r->points[i].smooth_loss = (float)y;
    }
}

static double wlr(const lrfind_result *r, int w)
{
    return r->points[w + LO].lr;
}

/* Flat at 2, down with slope -0.02 per point from w=20, one steep step (-0.2) into 51, a
 * one-point bump at 30, the minimum at 70, then up steeply. */
static double classic(int w)
{
    double y = 2.0;
    for (int i = 1; i <= w; i++) {
        if (i <= 20)
            continue;
        else if (i == 30)
            y += 0.05;
        else if (i == 51)
            y -= 0.2;
        else if (i <= 70)
            y -= 0.02;
        else
            y += 0.3;
    }
    return y;
}

static void suggestions_on_a_classic_curve(void **state)
{
    (void)state;
    lrfind_result r;
    make_sweep(&r, classic);
    lrfind_suggest(&r);
    /* Minimum at w = 70. */
    assert_true(r.min_div10.lr == wlr(&r, 70) / 10.0);
    /* Steepest pair: (50, 51). */
    assert_true(r.steep.lr == wlr(&r, 50));
    /* Decreasing runs: 20..29 (the bump at 30 breaks it) and 30..70: middle 50. */
    assert_true(r.valley.lr == wlr(&r, 50));
    assert_non_null(strstr(r.valley.reason, "41 points"));
    assert_true(strlen(r.min_div10.reason) > 0 && strlen(r.steep.reason) > 0);
    assert_true(strlen(r.slide.reason) > 0);
    lrfind_result_free(&r);
    assert_null(r.points);
}

/* Flat until w = 60, then 0.001 (w - 60)^2. np.gradient: 0 left of 60, 0.0005 at 60,
 * 0.002 (w - 60) inside the parabola, so two points 15 apart both in the parabola differ by
 * 0.03 > 0.005. The interval slides left until its right end is at 62 (gradient 0.004
 * against 0 at 47): the loop stops there and keeps the previous left end, 48. */
static double knee(int w)
{
    return w <= 60 ? 1.0 : 1.0 + 0.001 * (w - 60) * (w - 60);
}

static void slide_finds_the_knee(void **state)
{
    (void)state;
    lrfind_result r;
    make_sweep(&r, knee);
    lrfind_suggest(&r);
    assert_true(r.slide.lr == wlr(&r, 48));
    /* The whole flat part ties for the minimum: the first one wins. */
    assert_true(r.min_div10.lr == wlr(&r, 0) / 10.0);
    /* Nothing ever decreases. */
    assert_true(r.valley.lr == wlr(&r, 0));
    assert_non_null(strstr(r.valley.reason, "never decreases"));
    lrfind_result_free(&r);
}

/* A straight line in the window: the interval's ends agree at once, so slide keeps its
 * starting left end, 15 points before the last point of the window (w = 102). */
static double line(int w)
{
    return 3.0 - 0.01 * w;
}

static void slide_on_a_line_keeps_the_first_interval(void **state)
{
    (void)state;
    lrfind_result r;
    make_sweep(&r, line);
    lrfind_suggest(&r);
    assert_true(r.slide.lr == wlr(&r, 102 - 15));
    /* One decreasing run over the whole window: middle 51. */
    assert_true(r.valley.lr == wlr(&r, 51));
    assert_true(r.min_div10.lr == wlr(&r, 102) / 10.0);
    lrfind_result_free(&r);
}

/* Down from 2 by 0.02 a point to 1.0 at w = 50, then a flat bottom with noise of +-0.002
 * and its lowest, 0.996, at w = 80, up steeply from w = 90. Within 2% of the drop (2.0 to
 * 0.996) the bottom starts at w = 50, wherever the noise puts the minimum. */
static double flat_bottom(int w)
{
    if (w <= 50)
        return 2.0 - 0.02 * w;
    if (w < 90)
        return w == 80 ? 0.996 : 1.0 + ((w % 3) - 1) * 0.002;
    return 1.0 + 0.3 * (w - 89);
}

static void flat_start_ignores_where_the_noise_puts_the_minimum(void **state)
{
    (void)state;
    lrfind_result r;
    make_sweep(&r, flat_bottom);
    lrfind_suggest(&r);
    assert_true(r.min_div10.lr == wlr(&r, 80) / 10.0);
    double at = 0.0;
    assert_true(lrfind_flat_start(&r, 0.02, &at) == wlr(&r, 50));
    assert_true(fabs(at - 1.0) < 1e-6);
    /* A tighter band waits for the noise's lowest points. */
    assert_true(lrfind_flat_start(&r, 0.0, NULL) == wlr(&r, 80));
    lrfind_result_free(&r);
    memset(&r, 0, sizeof r);
    assert_true(lrfind_flat_start(&r, 0.02, NULL) == 0.0);
}

static void too_few_points_gives_no_suggestion(void **state)
{
    (void)state;
    lrfind_result r;
    memset(&r, 0, sizeof r);
    r.n_points = 7;
    r.points = calloc(7, sizeof *r.points);
    for (int i = 0; i < 7; i++) {
        r.points[i].lr = 1e-3 * (i + 1);
        r.points[i].smooth_loss = 1.0f;
    }
    lrfind_suggest(&r);
    assert_true(r.valley.lr == 0.0);
    assert_non_null(strstr(r.valley.reason, "too few points"));
    lrfind_result_free(&r);
    lrfind_result_free(NULL);
}

static void non_finite_points_are_skipped(void **state)
{
    (void)state;
    lrfind_result r;
    make_sweep(&r, classic);
    r.points[LO + 80].smooth_loss = NAN;
    r.points[LO + 81].smooth_loss = -INFINITY;
    lrfind_suggest(&r);
    assert_true(r.min_div10.lr == wlr(&r, 70) / 10.0);
    lrfind_result_free(&r);
}

static void smoother_is_debiased_ema(void **state)
{
    (void)state;
    loss_smoother s;
    smoother_reset(&s);
    double raw[50], num = 0.0;
    for (int n = 1; n <= 50; n++) {
        raw[n - 1] = 1.0 + sin(n) * 0.5;
        double got = smoother_add(&s, raw[n - 1]);
        /* Closed form: sum (1-b) b^(n-k) x_k / (1 - b^n). */
        num = 0.0;
        for (int k = 1; k <= n; k++)
            num += (1 - 0.98) * pow(0.98, n - k) * raw[k - 1];
        assert_true(fabs(got - num / (1 - pow(0.98, n))) < 1e-12);
    }
    smoother_reset(&s);
    assert_true(fabs(smoother_add(&s, 2.5) - 2.5) < 1e-12); /* first value unbiased */
    assert_false(isfinite(smoother_add(&s, NAN)));
    assert_false(isfinite(smoother_add(&s, 1.0)));
}

static void stop_rule(void **state)
{
    (void)state;
    lrfind_stop s;
    lrfind_stop_reset(&s);
    /* Before iteration 11 nothing sets the best, however low. */
    for (int i = 0; i <= 10; i++)
        assert_int_equal(lrfind_stop_check(&s, i, i == 5 ? 0.1 : 1.0), 0);
    assert_int_equal(lrfind_stop_check(&s, 11, 1.0), 0); /* best = 1 */
    assert_int_equal(lrfind_stop_check(&s, 12, 3.99), 0);
    assert_int_equal(lrfind_stop_check(&s, 13, 0.5), 0); /* best = 0.5 */
    assert_int_equal(lrfind_stop_check(&s, 14, 1.99), 0);
    assert_int_equal(lrfind_stop_check(&s, 15, 2.01), 1);
    lrfind_stop_reset(&s);
    assert_int_equal(lrfind_stop_check(&s, 0, NAN), 1);
    lrfind_stop_reset(&s);
    assert_int_equal(lrfind_stop_check(&s, 3, INFINITY), 1);
    assert_int_equal(lrfind_stop_check(&s, 3, 1e8), 0); /* below 4 x 1e9 */
}

static void default_length(void **state)
{
    (void)state;
    assert_int_equal(lrfind_default_iters(3), 20);
    assert_int_equal(lrfind_default_iters(20), 20);
    assert_int_equal(lrfind_default_iters(117), 117);
    assert_int_equal(lrfind_default_iters(469), 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(suggestions_on_a_classic_curve),
        cmocka_unit_test(slide_finds_the_knee),
        cmocka_unit_test(slide_on_a_line_keeps_the_first_interval),
        cmocka_unit_test(flat_start_ignores_where_the_noise_puts_the_minimum),
        cmocka_unit_test(too_few_points_gives_no_suggestion),
        cmocka_unit_test(non_finite_points_are_skipped),
        cmocka_unit_test(smoother_is_debiased_ema),
        cmocka_unit_test(stop_rule),
        cmocka_unit_test(default_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
