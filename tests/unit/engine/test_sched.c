/* test_sched.c: every iteration's LR of sgdr, constant and 1cycle, and 1cycle's momentum,
 * against closed forms, literal values, and a transcription of fast.ai 0.7's stateful
 * CosAnneal/CircularLR_beta callbacks (the pure functions must agree with the stateful
 * originals at every batch, up to the one documented ordering difference). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lrsched.h"

#define assert_close(a, b) assert_true(fabs((a) - (b)) <= 1e-12 * fmax(1.0, fabs(b)))

/* fast.ai 0.7 CosAnneal, as a state machine: calc_lr is called at train begin and after
 * every batch, with `iteration` the number of batches done. */
typedef struct fa_cos {
    int64_t nb, cycle_iter, iteration;
    int cycle_mult, cycle_count;
} fa_cos;

static double fa_cos_calc(fa_cos *s)
{
    if ((double)s->iteration < (double)s->nb / 20.0) {
        s->cycle_iter++;
        return 1.0 / 100.0;
    }
    double cos_out = cos(M_PI * (double)s->cycle_iter / (double)s->nb) + 1.0;
    s->cycle_iter++;
    if (s->cycle_iter == s->nb) {
        s->cycle_iter = 0;
        s->nb *= s->cycle_mult;
        s->cycle_count++;
    }
    return cos_out / 2.0;
}

static void sgdr_matches_fastai_cosanneal(void **state)
{
    (void)state;
    /* Not a one-batch first cycle: there fast.ai's warm-up skips the cycle-end check and
     * never restarts (see lrsched.h). */
    const int bpes[] = {2, 3, 7, 20, 45};
    const int lens[] = {1, 2, 3};
    const int mults[] = {1, 2, 3};
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 3; b++)
            for (size_t c = 0; c < 3; c++) {
                sched_plan p;
                sched_plan_defaults(&p, bpes[a]);
                p.n_cycle = 3;
                p.cycle_len = lens[b];
                p.cycle_mult = mults[c];
                fa_cos s = {.nb = (int64_t)bpes[a] * lens[b], .cycle_mult = mults[c]};
                int64_t total = sched_total_iters(&p);
                for (int64_t t = 0; t < total; t++) {
                    s.iteration = t;
                    double want = fa_cos_calc(&s);
                    assert_close(sched_factor(&p, t), want);
                }
                assert_int_equal(s.cycle_count, 3); /* the schedule ends with cycle 3 */
            }
}

static void sgdr_closed_form_table(void **state)
{
    (void)state;
    /* n_cycle=3, cycle_len=1, cycle_mult=2: 1+2+4 = 7 epochs of 10 batches. */
    sched_plan p;
    sched_plan_defaults(&p, 10);
    p.n_cycle = 3;
    p.cycle_mult = 2;
    assert_int_equal(sched_total_epochs(&p), 7);
    assert_int_equal(sched_total_iters(&p), 70);
    const int64_t start[] = {0, 10, 30, 70};
    for (int c = 0; c < 3; c++)
        for (int64_t t = start[c]; t < start[c + 1]; t++) {
            double T = (double)(start[c + 1] - start[c]);
            double want = 0.5 * (1.0 + cos(M_PI * (double)(t - start[c]) / T));
            if (t == 0)
                want = 0.01; /* warm-up: t < 10/20 */
            assert_close(sched_factor(&p, t), want);
        }
    /* Literal values. */
    assert_close(sched_factor(&p, 1), 0.9755282581475768);
    assert_close(sched_factor(&p, 5), 0.5);
    assert_close(sched_factor(&p, 10), 1.0);
    assert_close(sched_factor(&p, 15), 0.8535533905932737);
    assert_close(sched_factor(&p, 20), 0.5);
    assert_close(sched_factor(&p, 50), 0.5);
    assert_close(sched_factor(&p, 69), 0.0015413331334360181);

    /* The warm-up: 1/20 of the first cycle only. */
    sched_plan_defaults(&p, 100);
    p.n_cycle = 2;
    for (int64_t t = 0; t < 5; t++)
        assert_close(sched_factor(&p, t), 0.01);
    assert_close(sched_factor(&p, 5), 0.5 * (1.0 + cos(M_PI * 5.0 / 100.0)));
    assert_close(sched_factor(&p, 100), 1.0);
    assert_close(sched_factor(&p, 101), 0.5 * (1.0 + cos(M_PI / 100.0)));
    p.warmup = 0;
    assert_close(sched_factor(&p, 0), 1.0);
}

static void cycles_of_epochs(void **state)
{
    (void)state;
    sched_plan p;
    sched_plan_defaults(&p, 5);
    p.n_cycle = 3;
    p.cycle_mult = 2;
    const int want_cycle[] = {0, 1, 1, 2, 2, 2, 2};
    const int want_last[] = {1, 0, 1, 0, 0, 0, 1};
    for (int e = 0; e < 7; e++) {
        int last = -1;
        assert_int_equal(sched_cycle_of_epoch(&p, e, &last), want_cycle[e]);
        assert_int_equal(last, want_last[e]);
    }
    p.cycle_len = 2;
    p.cycle_mult = 1;
    assert_int_equal(sched_total_epochs(&p), 6);
    int last;
    assert_int_equal(sched_cycle_of_epoch(&p, 3, &last), 1);
    assert_int_equal(last, 1);
}

static void constant_is_lr0_for_n_cycle_epochs(void **state)
{
    (void)state;
    sched_plan p;
    sched_plan_defaults(&p, 13);
    p.kind = SCHED_CONSTANT;
    p.n_cycle = 4;
    p.cycle_len = 3; /* ignored */
    p.cycle_mult = 2;
    assert_int_equal(sched_total_epochs(&p), 4);
    for (int64_t t = 0; t < sched_total_iters(&p); t++)
        assert_true(sched_factor(&p, t) == 1.0);
    int last;
    assert_int_equal(sched_cycle_of_epoch(&p, 2, &last), 2);
    assert_int_equal(last, 1);
}

/* fast.ai 0.7 CircularLR_beta.calc_lr. */
static double fa_clr_beta(int64_t ci, int64_t nb, double div, double pct)
{
    int64_t cycle_nb = (int64_t)((double)nb * (1.0 - pct / 100.0) / 2.0);
    double q;
    if (ci > 2 * cycle_nb) {
        q = (double)(ci - 2 * cycle_nb) / (double)(nb - 2 * cycle_nb);
        return (1.0 + (q * (1.0 - 100.0) / 100.0)) / div;
    } else if (ci > cycle_nb) {
        q = 1.0 - (double)(ci - cycle_nb) / (double)cycle_nb;
    } else {
        q = (double)ci / (double)cycle_nb;
    }
    return (1.0 + q * (div - 1.0)) / div;
}

static void onecycle_table(void **state)
{
    (void)state;
    sched_plan p;
    sched_plan_defaults(&p, 50);
    p.kind = SCHED_1CYCLE;
    p.cycle_len = 2;
    p.n_cycle = 2;
    /* T = 100, cycle_nb = 45: up over 0..45, down over 45..90, annihilation 91..99. */
    assert_close(sched_factor(&p, 0), 0.1);
    assert_close(sched_factor(&p, 45), 1.0);
    assert_close(sched_factor(&p, 90), 0.1);
    assert_close(sched_factor(&p, 91), (1.0 - 0.099) / 10.0);
    assert_close(sched_factor(&p, 99), (1.0 - 0.891) / 10.0);
    assert_close(sched_factor(&p, 100), 0.1); /* second cycle restarts */
    assert_close(sched_factor(&p, 145), 1.0);
    for (int64_t t = 0; t < 200; t++) {
        double up = 0.1 + 0.9 * (double)(t % 100) / 45.0;
        double down = 1.0 - 0.9 * (double)(t % 100 - 45) / 45.0;
        double ann = (1.0 - 0.99 * (double)(t % 100 - 90) / 10.0) / 10.0;
        double want = t % 100 <= 45 ? up : t % 100 <= 90 ? down : ann;
        assert_true(fabs(sched_factor(&p, t) - want) < 1e-12);
        assert_close(sched_factor(&p, t), fa_clr_beta(t % 100, 100, 10.0, 10.0));
    }
    /* Other shapes against the transcription. */
    const int64_t nbs[] = {7, 19, 64, 333};
    for (size_t i = 0; i < 4; i++)
        for (int64_t t = 0; t < nbs[i]; t++)
            assert_close(sched_1cycle(t, nbs[i], 25.0, 20.0),
                          fa_clr_beta(t, nbs[i], 25.0, 20.0));
}

/* fast.ai 0.7 CircularLR_beta.calc_mom with moms = (hi, lo). */
static double fa_clr_beta_mom(int64_t ci, int64_t nb, double pct, double hi, double lo)
{
    int64_t cycle_nb = (int64_t)((double)nb * (1.0 - pct / 100.0) / 2.0);
    double q;
    if (ci > 2 * cycle_nb)
        return hi;
    else if (ci > cycle_nb)
        q = 1.0 - (double)(ci - cycle_nb) / (double)cycle_nb;
    else
        q = (double)ci / (double)cycle_nb;
    return hi + q * (lo - hi);
}

static void onecycle_momentum_table(void **state)
{
    (void)state;
    sched_plan p;
    sched_plan_defaults(&p, 50);
    p.kind = SCHED_1CYCLE;
    p.cycle_len = 2;
    p.n_cycle = 2;
    /* T = 100, cycle_nb = 45: 0.95 down to 0.85 over 0..45 while the LR rises, back up to
     * 0.95 over 45..90 while it falls, 0.95 through the annihilation 91..99. */
    double m = -1.0;
    assert_int_equal(sched_momentum(&p, 0, &m), 1);
    assert_close(m, 0.95);
    sched_momentum(&p, 45, &m);
    assert_close(m, 0.85);
    sched_momentum(&p, 90, &m);
    assert_close(m, 0.95);
    sched_momentum(&p, 99, &m);
    assert_close(m, 0.95);
    sched_momentum(&p, 100, &m); /* second cycle restarts */
    assert_close(m, 0.95);
    sched_momentum(&p, 145, &m);
    assert_close(m, 0.85);
    sched_momentum(&p, 9, &m);
    assert_close(m, 0.93);
    sched_momentum(&p, 72, &m);
    assert_close(m, 0.91);
    for (int64_t t = 0; t < 200; t++) {
        int64_t c = t % 100;
        double want = c <= 45 ? 0.95 - 0.1 * (double)c / 45.0
                      : c <= 90 ? 0.85 + 0.1 * (double)(c - 45) / 45.0
                                : 0.95;
        assert_int_equal(sched_momentum(&p, t, &m), 1);
        assert_true(fabs(m - want) < 1e-12);
        /* The momentum mirrors the LR: exactly linear in it inside the triangle. */
        if (c <= 90)
            assert_true(fabs(m - (0.95 - 0.1 * (sched_factor(&p, t) * 10.0 - 1.0) / 9.0)) <
                        1e-12);
        /* fast.ai's formula at the LR's position... */
        assert_close(m, fa_clr_beta_mom(c, 100, 10.0, 0.95, 0.85));
        /* ...and its stateful order (calc_mom after calc_lr advanced cycle_iter) runs one
         * batch ahead: fast.ai's momentum at batch t is ours at t + 1. */
        int64_t fa_ci = (c + 1) % 100;
        double ahead;
        sched_momentum(&p, t + 1 < 200 ? t + 1 : t, &ahead);
        if (t + 1 < 200)
            assert_close(fa_clr_beta_mom(fa_ci, 100, 10.0, 0.95, 0.85), ahead);
    }
    /* Past the end: the last iteration's value. */
    sched_momentum(&p, 1000, &m);
    assert_close(m, 0.95);

    /* Other shapes, momentums and cycle growth against the transcription. */
    const int64_t nbs[] = {7, 19, 64, 333};
    for (size_t i = 0; i < 4; i++)
        for (int64_t t = 0; t < nbs[i]; t++)
            assert_close(sched_1cycle_mom(t, nbs[i], 20.0, 0.9, 0.8),
                         fa_clr_beta_mom(t, nbs[i], 20.0, 0.9, 0.8));
    sched_plan_defaults(&p, 10);
    p.kind = SCHED_1CYCLE;
    p.n_cycle = 3;
    p.cycle_mult = 2;
    p.mom_hi = 0.99;
    p.mom_lo = 0.5;
    const int64_t start[] = {0, 10, 30, 70};
    for (int c = 0; c < 3; c++)
        for (int64_t t = start[c]; t < start[c + 1]; t++) {
            assert_int_equal(sched_momentum(&p, t, &m), 1);
            assert_close(m, fa_clr_beta_mom(t - start[c], start[c + 1] - start[c], 10.0, 0.99,
                                            0.5));
        }
    /* A one-batch cycle has no triangle: the high momentum, with the LR at lr0/div. */
    assert_close(sched_1cycle_mom(0, 1, 10.0, 0.95, 0.85), 0.95);
    assert_close(sched_1cycle(0, 1, 10.0, 10.0), 0.1);
}

static void momentum_is_scheduled_only_by_1cycle(void **state)
{
    (void)state;
    sched_plan p;
    double m = 0.5;
    sched_plan_defaults(&p, 10);
    for (int64_t t = 0; t < 10; t++)
        assert_int_equal(sched_momentum(&p, t, &m), 0); /* sgdr */
    p.kind = SCHED_CONSTANT;
    assert_int_equal(sched_momentum(&p, 3, &m), 0);
    p.kind = SCHED_1CYCLE;
    p.cycle_mom = 0;
    assert_int_equal(sched_momentum(&p, 3, &m), 0);
    assert_true(m == 0.5); /* untouched */
}

static void exp_sweep(void **state)
{
    (void)state;
    assert_close(sched_exp_sweep(1e-5, 10.0, 0, 100), 1e-5);
    assert_close(sched_exp_sweep(1e-5, 10.0, 100, 100), 10.0);
    assert_close(sched_exp_sweep(1e-5, 10.0, 50, 100), 1e-5 * sqrt(1e6));
    for (int i = 0; i < 200; i++)
        assert_close(sched_exp_sweep(1e-4, 1.0, i, 200), 1e-4 * pow(1e4, i / 200.0));
}

static void bad_plans_are_refused(void **state)
{
    (void)state;
    sched_plan p;
    char err[128];
    sched_plan_defaults(&p, 10);
    assert_int_equal(sched_plan_check(&p, err, sizeof err), 0);
    p.n_cycle = 0;
    assert_int_equal(sched_plan_check(&p, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "n_cycle"));
    sched_plan_defaults(&p, 10);
    p.cycle_mult = 0;
    assert_int_equal(sched_plan_check(&p, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "cycle_mult"));
    sched_plan_defaults(&p, 10);
    p.cycle_len = -1;
    assert_int_equal(sched_plan_check(&p, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "cycle_len"));
    sched_plan_defaults(&p, 0);
    assert_int_equal(sched_plan_check(&p, err, sizeof err), -EINVAL);
    sched_plan_defaults(&p, 10);
    p.n_cycle = 40;
    p.cycle_mult = 16;
    assert_int_equal(sched_plan_check(&p, err, sizeof err), -EINVAL);
    sched_plan_defaults(&p, 10);
    p.kind = SCHED_1CYCLE;
    p.pct = 100;
    assert_int_equal(sched_plan_check(&p, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "pct"));
    sched_plan_defaults(&p, 10);
    p.kind = SCHED_1CYCLE;
    p.mom_lo = 1.0;
    assert_int_equal(sched_plan_check(&p, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "moms"));
    p.cycle_mom = 0; /* not cycled: not checked */
    assert_int_equal(sched_plan_check(&p, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sgdr_matches_fastai_cosanneal),
        cmocka_unit_test(sgdr_closed_form_table),
        cmocka_unit_test(cycles_of_epochs),
        cmocka_unit_test(constant_is_lr0_for_n_cycle_epochs),
        cmocka_unit_test(onecycle_table),
        cmocka_unit_test(onecycle_momentum_table),
        cmocka_unit_test(momentum_is_scheduled_only_by_1cycle),
        cmocka_unit_test(exp_sweep),
        cmocka_unit_test(bad_plans_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
