/* test_fit.c: the learner's fit on the generated shapes (fixture.h): it reaches a stated
 * accuracy with the scheduled LR and momentum of every batch, with a snapshot, TTA and a
 * prediction after it; lr_find puts weights, BatchNorm statistics and optimizer state back
 * bit for bit (also when cancelled); early stopping, 1cycle's momentum, part epochs, a
 * 1cycle paced to a time limit (its last epoch trimmed as it runs), label smoothing, the
 * cycle rule, and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "clock_mono.h"
#include "fixture.h"
#include "lrsched.h"

static void fit_learns_the_shapes(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->bs = 16;
    learner *l = fx_make(c, ds);
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 4, .cycle_mult = 1,
                  .wd = 1e-4, .schedule = SCHED_SGDR, .snapshots = 1};
    sched_plan plan;
    fx_expect_schedule(&r, &plan, SCHED_SGDR, N_TRAIN / 16, 4, 0.05);
    char err[256] = "";
    int rc = learner_fit(l, &o, &h, err, sizeof err);
    if (rc)
        print_error("fit: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(r.n_epoch, 4);
    assert_int_equal(r.n_batch, 4 * (N_TRAIN / 16));
    assert_int_equal(r.n_cycle_end, 1);
    assert_int_equal(r.lr_mismatch, 0);
    assert_int_equal(r.mom_mismatch, 0);
    assert_int_equal(r.step_mismatch, 0);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.step, 4 * (N_TRAIN / 16));
    assert_int_equal(st.epochs_done, 4);
    print_message("fit: validation accuracy %.3f after 4 epochs\n", r.last_acc);
    assert_true(r.last_acc >= 0.9f);
    /* The one snapshot is taken after the cycle's last batch: its "ensemble" is exactly
     * the final weights. */
    assert_int_equal(learner_n_snapshots(l), 1);
    float el, ea;
    assert_int_equal(learner_snapshot_ensemble(l, &el, &ea, err, sizeof err), 0);
    assert_true(ea == r.last_acc && isfinite(el));

    tta_result t;
    assert_int_equal(learner_tta(l, 2, &h, &t, err, sizeof err), 0);
    assert_int_equal(t.n_aug, 2);
    assert_true(fabsf(t.accuracy - r.last_acc) < 1e-6f); /* the centre pass is validation */
    assert_true(t.tta_accuracy >= 0.8f);

    float probs[N_CLASSES];
    image im = {.w = SZ, .h = SZ, .c = 1, .px = malloc(SZ * SZ)};
    uint64_t rr = 99;
    fx_draw(im.px, 1, &rr);
    assert_int_equal(learner_predict_image(l, &im, 1, probs, err, sizeof err), 0);
    float sum = 0;
    for (int k = 0; k < N_CLASSES; k++)
        sum += probs[k];
    assert_true(fabsf(sum - 1.0f) < 1e-4f);
    free(im.px);
    learner_destroy(l);
}

static void lr_find_restores_everything(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    learner *l = fx_make(c, ds);
    net *n = learner_net(l);
    char err[256] = "";
    /* Some optimizer state first, so that there is momentum to restore. */
    fit_opts o = {.n_lrs = 1, .lrs = {0.02}, .n_cycle = 1, .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), 0);
    size_t np = n->n_params * sizeof(float), nb = n->n_buffers * sizeof(float);
    float *p0 = malloc(np), *b0 = malloc(nb);
    memcpy(p0, n->params, np);
    memcpy(b0, n->buffers, nb);
    uint64_t rng0 = n->rng;
    learner_state s0, s1;
    learner_get_state(l, &s0);

    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    lrfind_opts lo = {.start_lr = 1e-4, .end_lr = 10, .num_it = 20};
    lrfind_result res;
    double t0 = clock_mono_s();
    int rc = learner_lr_find(l, &lo, &h, &res, err, sizeof err);
    double wall_s = clock_mono_s() - t0;
    if (rc)
        print_error("lr_find: %s\n", err);
    assert_int_equal(rc, 0);
    assert_true(res.n_points >= 12 && res.n_points <= 20);
    /* The speed it reports leaves its first steps out, and only them. */
    assert_int_equal(res.steady_it, res.n_points - LRFIND_WARM_IT);
    assert_true(res.steady_s > 0 && res.steady_s < wall_s);
    assert_int_equal(r.n_sweep, res.n_points);
    for (int i = 0; i < res.n_points; i++) {
        assert_int_equal(res.points[i].iter, i);
        assert_true(fabs(res.points[i].lr - sched_exp_sweep(1e-4, 10, i, 20)) <
                    1e-12 * res.points[i].lr);
        assert_true(res.points[i].start_lr == 1e-4 && res.points[i].end_lr == 10 &&
                    res.points[i].num_it == 20);
    }
    assert_true(res.valley.lr > 0 && strlen(res.valley.reason) > 0);
    assert_memory_equal(n->params, p0, np);
    assert_memory_equal(n->buffers, b0, nb);
    assert_true(n->rng == rng0);
    learner_get_state(l, &s1);
    assert_int_equal(s1.step, s0.step);
    lrfind_result_free(&res);

    /* Cancelled at iteration 5: still restored, and the points so far are kept. */
    r.cancel_after_sweep = 5;
    rc = learner_lr_find(l, &lo, &h, &res, err, sizeof err);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(res.n_points, 6);
    assert_memory_equal(n->params, p0, np);
    assert_memory_equal(n->buffers, b0, nb);
    lrfind_result_free(&res);

    /* The fit after a sweep is the fit without one. */
    learner *l2 = fx_make(c, ds);
    assert_int_equal(learner_fit(l2, &o, NULL, err, sizeof err), 0);
    assert_memory_equal(learner_net(l2)->params, p0, np);
    free(p0);
    free(b0);
    learner_destroy(l2);
    learner_destroy(l);
}

/* With every group frozen nothing changes, so the validation loss never improves after
 * the first epoch: patience 2 stops the fit after epoch 2 of 10. */
static void early_stop_after_patience(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    learner *l = fx_make(c, ds);
    char err[256] = "";
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(learner_freeze_to(l, st.n_groups, err, sizeof err), 0);
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    fit_opts o = {.n_lrs = 1, .lrs = {0.1}, .n_cycle = 10, .schedule = SCHED_CONSTANT,
                  .early_stop_patience = 2};
    assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
    assert_int_equal(r.n_epoch, 3);
    learner_get_state(l, &st);
    assert_int_equal(st.epochs_done, 3);
    learner_destroy(l);
}

/* 1cycle moves the optimizer's momentum every batch (0.95 down to 0.85 and back); the
 * next fit with another schedule is back at the configured 0.9. */
static void onecycle_moves_the_momentum(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    learner *l = fx_make(c, ds);
    char err[256] = "";
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 2,
                  .schedule = SCHED_1CYCLE};
    sched_plan plan;
    fx_expect_schedule(&r, &plan, SCHED_1CYCLE, N_SMALL / BS, 2, 0.05);
    assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
    assert_int_equal(r.n_batch, 2 * N_SMALL / BS);
    assert_int_equal(r.lr_mismatch, 0);
    assert_int_equal(r.mom_mismatch, 0);
    assert_true(r.mom_min == 0.85f); /* T = 16: the LR peaks at iteration 7 */

    fx_rec r2 = {0};
    ev_hooks h2 = fx_hooks_for(&r2);
    fit_opts oc = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .schedule = SCHED_CONSTANT};
    sched_plan pc;
    fx_expect_schedule(&r2, &pc, SCHED_CONSTANT, N_SMALL / BS, 1, 0.05);
    r2.last_step = r.last_step;
    assert_int_equal(learner_fit(l, &oc, &h2, err, sizeof err), 0);
    assert_int_equal(r2.mom_mismatch, 0);
    assert_true(r2.mom_min == 0.9f);
    learner_destroy(l);
}

/* fit_opts.epoch_frac: every epoch trains on that share of its batches (rounded up) and
 * validates; the 1cycle spans the batches that run. */
static void fit_trains_part_epochs(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    learner *l = fx_make(c, ds);
    char err[256] = "";
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    const int bpe = N_SMALL / BS, part = (bpe * 3 + 4) / 5;
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 2,
                  .schedule = SCHED_1CYCLE, .epoch_frac = 0.6};
    sched_plan plan;
    fx_expect_schedule(&r, &plan, SCHED_1CYCLE, part, 2, 0.05);
    assert_true(part < bpe);
    assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
    assert_int_equal(r.n_batch, 2 * part);
    assert_int_equal(r.n_epoch, 2);
    assert_int_equal(r.step_mismatch, 0);
    assert_int_equal(r.lr_mismatch, 0);
    assert_int_equal(r.mom_mismatch, 0);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.epochs_done, 2);
    for (int i = 0; i < 3; i++) {
        o.epoch_frac = (double[]){-0.5, 1.5, NAN}[i];
        assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "epoch_frac"));
    }
    learner_destroy(l);
}

/* A 1cycle under a time limit paces itself: epochs after the first train on as many
 * batches as the time left allows, between 5% (at least one) and all of them, and each
 * fills its own slice of the schedule. */
static void fit_paces_a_1cycle_to_its_time_limit(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    char err[256] = "";
    const int bpe = N_SMALL / BS, half = bpe / 2;
    for (int roomy = 0; roomy <= 1; roomy++) {
        learner *l = fx_make(c, ds);
        fx_rec r = {0};
        ev_hooks h = fx_hooks_for(&r);
        fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 3,
                      .schedule = SCHED_1CYCLE, .epoch_frac = 0.5,
                      .time_limit_s = roomy ? 1e6 : 1e-3};
        sched_plan plan;
        fx_expect_schedule(&r, &plan, SCHED_1CYCLE, half, 3, 0.05);
        assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
        assert_int_equal(r.n_epoch, 3);
        assert_int_equal(r.epoch_batches[0], half);
        for (int e = 1; e < 3; e++)
            assert_int_equal(r.epoch_batches[e], roomy ? bpe : 1);
        assert_int_equal(r.lr_mismatch, 0);
        assert_int_equal(r.mom_mismatch, 0);
        assert_int_equal(r.step_mismatch, 0);
        /* One note when the count changes at epoch 1; none when it stays. */
        assert_int_equal(r.n_note, 1);
        assert_string_equal(r.last_note, "time_limit");
        learner_destroy(l);
    }
}

/* A paced 1cycle keeps back the validation passes that follow it (the recipe's TTA) at
 * the validation speed it measures. The limit leaves room for every batch of the epochs
 * left several times over when nothing follows; passes that take more than twice the
 * limit at the speed measured here leave room for the fewest batches. */
static void fit_keeps_time_for_the_passes_after_it(void **state)
{
    fx_case *fx = *state;
    char err[256] = "";
    const int bpe = N_SMALL / BS, half = bpe / 2;
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 3,
                  .schedule = SCHED_1CYCLE, .epoch_frac = 0.5, .time_limit_s = 1e6};
    learner *l = fx_make(&fx->c, fx->ds);
    double t = clock_mono_s();
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), 0);
    double fit_s = clock_mono_s() - t, pass_s = INFINITY;
    for (int i = 0; i < 3; i++) {
        tta_result tr;
        t = clock_mono_s();
        assert_int_equal(learner_tta(l, 0, NULL, &tr, err, sizeof err), 0);
        double s = clock_mono_s() - t;
        pass_s = s < pass_s ? s : pass_s;
    }
    learner_destroy(l);
    int passes = (int)ceil(10.0 * fit_s / pass_s);
    print_message("pacing: 3 epochs %.4f s, a validation pass %.5f s, %d passes after\n",
                  fit_s, pass_s, passes);
    assert_true(passes <= 1000);
    o.time_limit_s = 4.0 * fit_s;
    for (int after = 0; after <= 1; after++) {
        o.after_passes = after ? passes : 0;
        l = fx_make(&fx->c, fx->ds);
        fx_rec r = {0};
        ev_hooks h = fx_hooks_for(&r);
        assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
        assert_int_equal(r.n_epoch, 3);
        assert_int_equal(r.epoch_batches[0], half);
        for (int e = 1; e < 3; e++)
            assert_int_equal(r.epoch_batches[e], after ? 1 : bpe);
        learner_destroy(l);
    }
    o.after_passes = -1;
    l = fx_make(&fx->c, fx->ds);
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "after_passes"));
    learner_destroy(l);
}

/* The fixture's recorder with a slow last epoch: each of its batches sleeps sleep_s. r
 * comes first, so the fixture's other hooks read this as their fx_rec. */
typedef struct slow_rec {
    fx_rec r;
    int (*on_batch)(void *, const ev_batch *);
    void (*on_note)(void *, const char *, const char *);
    int slow_epoch;
    double sleep_s;
    int trimmed_as_it_ran; /* a note of an epoch trimmed while it trained */
} slow_rec;

static void slow_on_note(void *ctx, const char *what, const char *why)
{
    slow_rec *s = ctx;
    s->trimmed_as_it_ran |= strcmp(what, "time_limit") == 0 && strstr(why, "instead of");
    s->on_note(&s->r, what, why);
}

static int slow_on_batch(void *ctx, const ev_batch *e)
{
    slow_rec *s = ctx;
    if (e->epoch == s->slow_epoch) {
        struct timespec ts = {.tv_sec = (time_t)s->sleep_s,
                              .tv_nsec = (long)(fmod(s->sleep_s, 1.0) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return s->on_batch(&s->r, e);
}

/* A paced 1cycle whose last epoch runs far slower than the epoch before it (a host that
 * slows down) trims that epoch as it goes, to what the time left allows at its own
 * speed, and says so; each batch keeps the schedule's LR for its position. */
static void fit_trims_a_slow_last_epoch(void **state)
{
    fx_case *fx = *state;
    char err[256] = "";
    const int bpe = N_SMALL / BS;
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 3,
                  .schedule = SCHED_1CYCLE, .time_limit_s = 1e6};
    learner *l = fx_make(&fx->c, fx->ds);
    double t = clock_mono_s();
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), 0);
    double fit_s = clock_mono_s() - t;
    learner_destroy(l);
    /* Room for every batch at this speed (four times over: tests run side by side); at the
     * last epoch's, for two at most. */
    o.time_limit_s = 4.0 * fit_s;
    slow_rec s = {.slow_epoch = 2, .sleep_s = o.time_limit_s / 2.0};
    ev_hooks h = fx_hooks_for(&s.r);
    s.on_batch = h.on_batch;
    s.on_note = h.on_note;
    h.on_batch = slow_on_batch;
    h.on_note = slow_on_note;
    h.ctx = &s;
    sched_plan plan;
    fx_expect_schedule(&s.r, &plan, SCHED_1CYCLE, bpe, 3, 0.05);
    l = fx_make(&fx->c, fx->ds);
    t = clock_mono_s();
    assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
    double slow_s = clock_mono_s() - t;
    print_message("a fit of %.3f s with a limit of %.3f s and a last epoch of %.3f s a batch: "
                  "%.3f s, %d of its %d batches\n", fit_s, o.time_limit_s, s.sleep_s,
                  slow_s, s.r.epoch_batches[2], bpe);
    assert_int_equal(s.r.n_epoch, 3);
    assert_int_equal(s.r.epoch_batches[0], bpe);
    assert_in_range(s.r.epoch_batches[2], 1, 2);
    assert_true(s.trimmed_as_it_ran);
    assert_int_equal(s.r.lr_mismatch, 0);
    learner_destroy(l);
}

/* Label smoothing trains on the smoothed cross-entropy (its loss stays above the
 * smoothing's floor) and still learns; validation reports the plain cross-entropy, the
 * same as TTA's centre pass computes from the probabilities. */
static void label_smoothing_trains_and_validates_plain(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->bs = 16;
    c->model.label_smoothing = 0.2f;
    learner *l = fx_make(c, ds);
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 3,
                  .schedule = SCHED_1CYCLE};
    char err[256] = "";
    assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
    print_message("label smoothing: validation accuracy %.3f, loss %.4f after 3 epochs\n",
                  r.last_acc, r.last_valid_loss);
    assert_true(r.last_acc >= 0.9f);
    tta_result t;
    assert_int_equal(learner_tta(l, 0, NULL, &t, err, sizeof err), 0);
    assert_true(fabsf(t.loss - r.last_valid_loss) < 1e-4f * (1.0f + t.loss));
    /* The smoothed objective of a batch cannot go below the entropy of its target; the
     * plain one of a net this accurate would. */
    const int nc = N_CLASSES;
    double eps = 0.2, on = 1.0 - eps + eps / nc, off = eps / nc;
    double floor_h = -on * log(on) - (nc - 1) * off * log(off);
    print_message("label smoothing: lowest batch loss %.4f, floor %.4f\n", r.min_loss, floor_h);
    assert_true(r.min_loss >= floor_h - 1e-4);
    assert_true(r.last_valid_loss < floor_h);
    learner_destroy(l);
    c->model.label_smoothing = 1.0f;
    learner *bad = NULL;
    assert_int_not_equal(learner_create(&bad, c, ds, err, sizeof err), 0);
    assert_non_null(strstr(err, "label_smoothing"));
}

/* The cycle rule: worse only when the loss did not fall and the accuracy did not rise. */
static void cycle_worse_needs_loss_and_accuracy(void **state)
{
    (void)state;
    assert_false(learner_cycle_worse(0.5f, 0.80f, 0.6f, 0.70f)); /* both better */
    assert_false(learner_cycle_worse(0.5f, 0.60f, 0.6f, 0.70f)); /* loss fell */
    /* BatchNorm on a few batches: the loss jumps while the accuracy climbs */
    assert_false(learner_cycle_worse(60.0f, 0.74f, 4.6f, 0.28f));
    assert_true(learner_cycle_worse(0.7f, 0.70f, 0.6f, 0.70f));  /* loss up, accuracy level */
    assert_true(learner_cycle_worse(0.6f, 0.65f, 0.6f, 0.70f));  /* loss level, accuracy down */
    assert_true(learner_cycle_worse(NAN, NAN, 0.6f, 0.70f));
    assert_false(learner_cycle_worse(9.0f, 0.1f, INFINITY, -INFINITY)); /* the first cycle */
}

static void bad_requests_are_refused(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    char err[256] = "";
    learner *l = NULL;
    c->sz = 2;
    assert_int_equal(learner_create(&l, c, ds, err, sizeof err), -EINVAL);
    assert_null(l);
    assert_non_null(strstr(err, "sz"));
    fx_base_config(c);
    c->model.arch = "vgg";
    assert_int_equal(learner_create(&l, c, ds, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "arch"));
    fx_base_config(c);
    c->precompute = 1;
    assert_int_equal(learner_create(&l, c, ds, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "precompute"));
    fx_base_config(c);
    l = fx_make(c, ds);
    fit_opts o = {.n_lrs = 2, .lrs = {0.1, 0.1}, .n_cycle = 1, .schedule = SCHED_SGDR};
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "lrs"));
    o.n_lrs = 1;
    o.n_cycle = 0;
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "n_cycle"));
    assert_int_equal(learner_set_precompute(l, 1, err, sizeof err), -EINVAL);
    assert_int_equal(learner_freeze_to(l, 9, err, sizeof err), -EINVAL);
    assert_int_equal(learner_resize(l, 3, err, sizeof err), -EINVAL);
    assert_int_equal(learner_predict_test(l, 0, "/tmp/x.csv", NULL, err, sizeof err),
                     -ENOENT);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.step, 0);
    learner_destroy(l);
    learner_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fx_test_big(fit_learns_the_shapes),
        fx_test_small(lr_find_restores_everything),
        fx_test_small(early_stop_after_patience),
        fx_test_small(onecycle_moves_the_momentum),
        fx_test_small(fit_trains_part_epochs),
        fx_test_small(fit_paces_a_1cycle_to_its_time_limit),
        fx_test_small(fit_trims_a_slow_last_epoch),
        fx_test_small(fit_keeps_time_for_the_passes_after_it),
        fx_test_big(label_smoothing_trains_and_validates_plain),
        cmocka_unit_test(cycle_worse_needs_loss_and_accuracy),
        fx_test_small(bad_requests_are_refused),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
