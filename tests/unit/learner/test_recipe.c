/* test_recipe.c: the recipe. Its plans (SGDR cycles for an epoch allowance, the fit a
 * time budget allows, progressive resizing), from scratch (SGDR; one 1cycle with AdamW;
 * progressive resizing), with a pretrained body, and under budgets too small for it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "weights.h"

typedef struct notes {
    int n;
    char what[64][32];
} notes;

static void keep_note(void *ctx, const char *what, const char *why)
{
    notes *n = ctx;
    if (n->n < 64)
        snprintf(n->what[n->n++], sizeof n->what[0], "%s", what);
    assert_true(strlen(why) > 10); /* every choice comes with its reason */
}

static int count_notes(const notes *n, const char *what)
{
    int k = 0;
    for (int i = 0; i < n->n; i++)
        k += strcmp(n->what[i], what) == 0;
    return k;
}

/* Runs the recipe, which must succeed. */
static void recipe_ok(learner *l, const recipe_opts *o, const ev_hooks *h, tta_result *t)
{
    char err[256] = "";
    int rc = learner_recipe(l, o, h, t, err, sizeof err);
    if (rc)
        print_error("recipe: %s\n", err);
    assert_int_equal(rc, 0);
}

static void recipe_from_scratch(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->bs = 16;
    learner *l = fx_make(c, ds);
    notes nt = {0};
    ev_hooks h = {.ctx = &nt, .on_note = keep_note};
    recipe_opts o = {.max_epochs = 3, .n_aug = 2};
    tta_result t;
    recipe_ok(l, &o, &h, &t);
    print_message("recipe from scratch: accuracy %.3f, with TTA %.3f\n", t.accuracy,
                  t.tta_accuracy);
    assert_int_equal(count_notes(&nt, "pick_lr"), 1);
    assert_int_equal(count_notes(&nt, "lr_find"), 1);
    assert_int_equal(count_notes(&nt, "tta"), 1);
    learner_state st;
    learner_get_state(l, &st);
    assert_true(st.epochs_done >= 1 && st.epochs_done <= 3);
    assert_true(t.tta_accuracy >= 0.85f);
    learner_destroy(l);
}

typedef struct lr_trace {
    int n;
    double first, peak, last;
    int peak_at;
} lr_trace;

static int trace_lr(void *ctx, const ev_batch *e)
{
    lr_trace *t = ctx;
    double lr = e->lrs[e->n_groups - 1];
    if (t->n == 0)
        t->first = lr;
    if (lr > t->peak) {
        t->peak = lr;
        t->peak_at = t->n;
    }
    t->last = lr;
    t->n++;
    return 0;
}

/* recipe_opts.one_cycle: the from-scratch fit is one 1cycle over every planned epoch (from
 * lr/10 up to the picked lr and down, then annealing), here with AdamW. */
static void recipe_from_scratch_one_cycle(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->bs = 16;
    c->opt = OPTIM_ADAM;
    learner *l = fx_make(c, ds);
    lr_trace tr = {0};
    ev_hooks h = {.ctx = &tr, .on_batch = trace_lr};
    recipe_opts o = {.max_epochs = 3, .n_aug = 2, .one_cycle = 1};
    tta_result t;
    recipe_ok(l, &o, &h, &t);
    print_message("recipe from scratch, one 1cycle with AdamW: accuracy %.3f, with TTA %.3f\n",
                  t.accuracy, t.tta_accuracy);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.epochs_done, 3);
    int n_fit = 3 * (N_TRAIN / 16);
    assert_int_equal(tr.n, n_fit); /* the sweep reports points, not batches */
    /* lr/10 first; the last batch is most of the way from lr/10 down to lr/1000 */
    assert_true(fabs(tr.first * 10 - tr.peak) < 1e-9 && tr.last < tr.peak / 20);
    assert_true(tr.peak_at > n_fit / 3 && tr.peak_at < n_fit / 2);
    assert_true(t.tta_accuracy >= 0.85f);
    learner_destroy(l);
}

/* The SGDR plan for an epoch allowance: the most epochs with cycle_mult 2, then the most
 * cycles. */
static void recipe_plans_cycles(void **state)
{
    (void)state;
    static const int want[][3] = {{1, 1, 1}, {2, 1, 2}, {3, 2, 1}, {4, 1, 4}, {5, 1, 5},
                                  {6, 2, 2}, {7, 3, 1}, {8, 1, 8}, {14, 3, 2}, {15, 4, 1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int n, c;
        recipe_plan_cycles(want[i][0], &n, &c);
        assert_int_equal(n, want[i][1]);
        assert_int_equal(c, want[i][2]);
    }
}

/* The fit a budget allows: whole epochs for SGDR; for one 1cycle, the fewest epochs that
 * hold the time, each on a share of its batches (validation always runs in full). */
static void recipe_plans_the_budget(void **state)
{
    (void)state;
    /* avail, train, valid, max, part -> epochs, frac */
    static const struct {
        double avail, train, valid;
        int max, part, epochs;
        double frac;
    } want[] = {
        {100, 30, 5, 7, 0, 2, 1.0},           /* room for 2.86 epochs */
        {100, 30, 5, 7, 1, 3, (100.0 / 3 - 5) / 30},
        {100, 30, 5, 2, 1, 2, 1.0},           /* max_epochs first */
        {70, 30, 5, 7, 1, 2, 1.0},            /* exactly two */
        {20, 30, 5, 7, 0, 1, 1.0},            /* less than one: one runs */
        {20, 30, 5, 7, 1, 1, 0.5},
        {3, 30, 5, 7, 1, 1, 0.05},            /* not even the validation: the least share */
        {100, 0, 0, 7, 1, 7, 1.0},            /* no speed measured */
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        double frac = -1;
        int e = recipe_plan_budget(want[i].avail, want[i].train, want[i].valid, want[i].max,
                                   want[i].part, &frac);
        assert_int_equal(e, want[i].epochs);
        assert_true(fabs(frac - want[i].frac) < 1e-12);
    }
}

/* Progressive resizing's plan: 4/7 of the size (none below 12 pixels), half of the epochs
 * rounded up and never all of them; a budget counts small epochs at their own cost. */
static void recipe_plans_progressive_resizing(void **state)
{
    (void)state;
    assert_int_equal(recipe_small_size(28), 16);
    assert_int_equal(recipe_small_size(21), 12);
    assert_int_equal(recipe_small_size(20), 0);
    assert_int_equal(recipe_small_size(224), 128);
    static const int small_of[][2] = {{1, 0}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {6, 3}, {7, 4},
                                      {10, 5}};
    for (size_t i = 0; i < sizeof small_of / sizeof small_of[0]; i++)
        assert_int_equal(recipe_small_epochs(small_of[i][0]), small_of[i][1]);
    /* Small epochs 10 + 2, full ones 30 + 5: 5 epochs (3 small) take 36 + 70 = 106. */
    const double ts[2] = {10, 30}, vs[2] = {2, 5};
    double frac = -1;
    assert_int_equal(recipe_plan_progressive(106, ts, vs, 7, 0, &frac), 5);
    assert_true(frac == 1.0);
    assert_int_equal(recipe_plan_progressive(106, ts, vs, 7, 1, &frac), 5);
    assert_true(frac == 1.0);
    assert_int_equal(recipe_plan_progressive(105, ts, vs, 7, 0, &frac), 4);
    /* 4 epochs (2 small) take 94; 105 holds 5 at (105 - 6 - 10) / (30 + 60) of the batches */
    assert_int_equal(recipe_plan_progressive(105, ts, vs, 7, 1, &frac), 5);
    assert_true(fabs(frac - 89.0 / 90.0) < 1e-12);
    assert_int_equal(recipe_plan_progressive(1000, ts, vs, 7, 1, &frac), 7);
    assert_true(frac == 1.0);
}

/* The from-scratch 1cycle at a size with a small one trains its first epochs small and
 * ends at the learner's size, also under a budget (which times the small size first). */
static void recipe_resizes_progressively(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->sz = 24;
    c->opt = OPTIM_ADAM;
    tta_result t;
    for (int budget = 0; budget <= 1; budget++) {
        learner *l = fx_make(c, ds);
        notes nt = {0};
        ev_hooks h = {.ctx = &nt, .on_note = keep_note};
        recipe_opts o = {.max_epochs = 3, .n_aug = 1, .one_cycle = 1,
                         .budget_minutes = budget ? 1000.0 : 0.0};
        recipe_ok(l, &o, &h, &t);
        assert_int_equal(count_notes(&nt, "resize"), 1);
        assert_int_equal(count_notes(&nt, "budget"), budget ? 2 : 0);
        learner_state st;
        learner_get_state(l, &st);
        assert_int_equal(st.sz, 24);
        assert_int_equal(st.epochs_done, 3);
        learner_destroy(l);
    }
}

/* The budget note's speeds: what the sweep trained at, and what the plan allows for. */
typedef struct budget_speeds {
    double trained, allowed;
    int seen;
} budget_speeds;

static void keep_budget_speeds(void *ctx, const char *what, const char *why)
{
    budget_speeds *b = ctx;
    const char *t = strstr(why, "it trained "), *a = strstr(why, "allows for up to ");
    if (strcmp(what, "budget") != 0 || !t)
        return;
    b->seen++;
    b->trained = atof(t + strlen("it trained "));
    b->allowed = a ? atof(a + strlen("allows for up to ")) : 0.0;
}

/* A budgeted 1cycle cannot add epochs once it has started, so its plan allows for a host
 * RECIPE_PACE_HEADROOM (1.25) times faster than the sweep measured; SGDR, which checks
 * the time at every cycle end, plans at the measured speed. */
static void recipe_plans_for_a_faster_host(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->opt = OPTIM_ADAM;
    tta_result t;
    for (int one_cycle = 0; one_cycle <= 1; one_cycle++) {
        learner *l = fx_make(c, ds);
        budget_speeds b = {0};
        ev_hooks h = {.ctx = &b, .on_note = keep_budget_speeds};
        recipe_opts o = {.max_epochs = 2, .n_aug = 1, .one_cycle = one_cycle,
                         .small_sz = -1, .budget_minutes = 1000.0};
        recipe_ok(l, &o, &h, &t);
        assert_int_equal(b.seen, 1);
        assert_true(b.trained > 0);
        if (one_cycle)
            assert_true(fabs(b.allowed - 1.25 * b.trained) <= 1.0);
        else
            assert_true(b.allowed == 0.0);
        learner_destroy(l);
    }
}

/* The recipe note's text and the resizes, for the options that change them. */
typedef struct recipe_text {
    char recipe[512];
    int resizes;
} recipe_text;

static void keep_recipe_text(void *ctx, const char *what, const char *why)
{
    recipe_text *t = ctx;
    if (strcmp(what, "recipe") == 0)
        snprintf(t->recipe, sizeof t->recipe, "%s", why);
    t->resizes += strcmp(what, "resize") == 0;
}

/* recipe_opts.small_sz and wd: the from-scratch 1cycle starts at the size asked for (or at
 * the full size with -1) and trains with the decay asked for; out-of-range values are
 * refused naming the option, before anything trains. */
static void recipe_takes_small_size_and_wd(void **state)
{
    fx_case *fx = *state;
    learner_config *c = &fx->c;
    c->sz = 24;
    c->opt = OPTIM_ADAM;
    const int smalls[2] = {16, -1}; /* the recipe's own would be 14 */
    for (int i = 0; i < 2; i++) {
        learner *l = fx_make(c, fx->ds);
        recipe_text rt = {0};
        ev_hooks h = {.ctx = &rt, .on_note = keep_recipe_text};
        recipe_opts o = {.max_epochs = 2, .n_aug = 1, .one_cycle = 1, .small_sz = smalls[i],
                         .wd = 0.05};
        tta_result t;
        recipe_ok(l, &o, &h, &t);
        assert_non_null(strstr(rt.recipe, "wd 0.05 (AdamW)"));
        assert_int_equal(rt.resizes, smalls[i] > 0 ? 1 : 0);
        assert_true((strstr(rt.recipe, "first 1 epoch at 16 pixels") != NULL) == (i == 0));
        assert_null(i == 1 ? strstr(rt.recipe, "progressive") : NULL);
        learner_state st;
        learner_get_state(l, &st);
        assert_int_equal(st.sz, 24);
        assert_int_equal(st.epochs_done, 2);
        learner_destroy(l);
    }
    const recipe_opts bad[] = {{.small_sz = 11}, {.small_sz = 24}, {.small_sz = -2},
                               {.wd = -0.1}, {.wd = 2.0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        learner *l = fx_make(c, fx->ds);
        char err[256] = "";
        tta_result t;
        assert_int_equal(learner_recipe(l, &bad[i], NULL, &t, err, sizeof err), -EINVAL);
        const char *field = bad[i].wd != 0 ? "wd:" : "small_sz:";
        assert_int_equal(strncmp(err, field, strlen(field)), 0);
        learner_state st;
        learner_get_state(l, &st);
        assert_int_equal(st.epochs_done, 0);
        learner_destroy(l);
    }
}

/* A budget too small for one epoch still trains one (and says so); a budget that is no
 * constraint leaves max_epochs to plan the fit. */
static void recipe_budget_plans_the_epochs(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    char err[256] = "";
    tta_result t;
    for (int big_budget = 0; big_budget <= 1; big_budget++) {
        learner *l = fx_make(c, ds);
        notes nt = {0};
        ev_hooks h = {.ctx = &nt, .on_note = keep_note};
        recipe_opts o = {.max_epochs = 3, .n_aug = 1,
                         .budget_minutes = big_budget ? 1000.0 : 1e-4};
        recipe_ok(l, &o, &h, &t);
        assert_true(count_notes(&nt, "budget") >= 1);
        learner_state st;
        learner_get_state(l, &st);
        assert_int_equal(st.epochs_done, big_budget ? 3 : 1);
        learner_destroy(l);
    }
    /* The fit's own check at cycle ends: a limit that the first cycle already passes
     * stops there, with that cycle end's weights; a negative one is refused. */
    learner *lt = fx_make(c, ds);
    notes nt = {0};
    ev_hooks h = {.ctx = &nt, .on_note = keep_note};
    fit_opts fo = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 3, .cycle_len = 1, .cycle_mult = 2,
                   .wd = 1e-4, .schedule = SCHED_SGDR, .time_limit_s = 1e-3};
    assert_int_equal(learner_fit(lt, &fo, &h, err, sizeof err), 0);
    learner_state st;
    learner_get_state(lt, &st);
    assert_int_equal(st.epochs_done, 1);
    assert_int_equal(count_notes(&nt, "time_limit"), 1);
    fo.time_limit_s = -1;
    assert_int_equal(learner_fit(lt, &fo, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "time_limit_s"));
    learner_destroy(lt);
    recipe_opts bad = {.budget_minutes = -1};
    learner *l = fx_make(c, ds);
    assert_int_equal(learner_recipe(l, &bad, NULL, &t, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "budget_minutes"));
    learner_destroy(l);
}

static void recipe_with_a_pretrained_body(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    char err[256] = "", pre[512];
    learner *base = fx_make(c, ds);
    fit_opts o1 = {.n_lrs = 1, .lrs = {0.02}, .n_cycle = 1, .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(base, &o1, NULL, err, sizeof err), 0);
    snprintf(pre, sizeof pre, "%s/pre2.safetensors", fx_root);
    assert_int_equal(weights_save_file(learner_net(base), pre, err, sizeof err), 0);
    learner_destroy(base);

    c->pretrained = pre;
    c->precompute = 1;
    learner *l = fx_make(c, ds);
    notes nt = {0};
    ev_hooks h = {.ctx = &nt, .on_note = keep_note};
    recipe_opts o = {.max_epochs = 1, .n_aug = 1};
    tta_result t;
    recipe_ok(l, &o, &h, &t);
    /* precompute, both sweeps, the head from the cache, then unfrozen with 3 groups' LRs. */
    assert_int_equal(count_notes(&nt, "lr_find"), 2);
    assert_int_equal(count_notes(&nt, "precompute"), 1);
    assert_true(count_notes(&nt, "recipe") >= 4);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.freeze_to, 0);
    assert_int_equal(st.precompute, 0);
    assert_int_equal(st.epochs_done, 2 + 2 + 1);
    assert_true(isfinite(t.tta_loss) && t.tta_accuracy > 0.0f);
    learner_destroy(l);

    /* A budget the first steps use up: step 8 runs its first cycle only and says why. */
    l = fx_make(c, ds);
    notes nb = {0};
    h.ctx = &nb;
    recipe_opts ob = {.max_epochs = 3, .n_aug = 1, .budget_minutes = 1e-4};
    recipe_ok(l, &ob, &h, &t);
    assert_int_equal(count_notes(&nb, "budget"), 1);
    assert_int_equal(count_notes(&nb, "time_limit"), 1);
    learner_get_state(l, &st);
    assert_int_equal(st.epochs_done, 2 + 2 + 1);
    learner_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fx_test_big(recipe_from_scratch),
        fx_test_big(recipe_from_scratch_one_cycle),
        cmocka_unit_test(recipe_plans_cycles),
        cmocka_unit_test(recipe_plans_the_budget),
        cmocka_unit_test(recipe_plans_progressive_resizing),
        fx_test_small(recipe_resizes_progressively),
        fx_test_small(recipe_takes_small_size_and_wd),
        fx_test_small(recipe_budget_plans_the_epochs),
        fx_test_small(recipe_plans_for_a_faster_host),
        fx_test_small(recipe_with_a_pretrained_body),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
