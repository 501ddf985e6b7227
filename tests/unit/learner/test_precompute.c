/* test_precompute.c: a head trained from the precompute cache (the frozen body's
 * activations computed once) equals one trained through the frozen body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>

#include <cmocka.h>

#include "fixture.h"
#include "weights.h"

static void precompute_head_equals_full_head(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->model.ps[0] = c->model.ps[1] = 0.0f;
    c->bs = N_SMALL; /* one batch an epoch: the data order inside it changes nothing */
    char err[256] = "", pre[512];
    /* A "pretrained" body: a briefly trained learner's weights. */
    learner *base = fx_make(c, ds);
    fit_opts o1 = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 2, .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(base, &o1, NULL, err, sizeof err), 0);
    snprintf(pre, sizeof pre, "%s/pre.safetensors", fx_root);
    assert_int_equal(weights_save_file(learner_net(base), pre, err, sizeof err), 0);
    learner_destroy(base);

    c->pretrained = pre;
    c->precompute = 1;
    learner *a = fx_make(c, ds);
    c->precompute = 0;
    learner *b = fx_make(c, ds);
    learner_state sa, sb;
    learner_get_state(a, &sa);
    learner_get_state(b, &sb);
    assert_int_equal(sa.precompute, 1);
    assert_int_equal(sa.augment, 0);
    assert_int_equal(sb.precompute, 0);
    assert_int_equal(sa.freeze_to, sa.n_groups - 1);
    fit_opts o = {.n_lrs = 1, .lrs = {0.1}, .n_cycle = 3, .wd = 1e-3,
                  .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), 0);
    assert_int_equal(learner_fit(b, &o, NULL, err, sizeof err), 0);
    net *na = learner_net(a), *nb = learner_net(b);
    double worst = 0.0, moved = 0.0;
    for (size_t i = 0; i < na->n_params; i++) {
        double d = fabs((double)na->params[i] - nb->params[i]);
        worst = d > worst ? d : worst;
    }
    net *n0 = NULL;
    model_spec ms = c->model;
    ms.c_in = 1;
    ms.n_classes = N_CLASSES;
    ms.seed = c->seed;
    assert_int_equal(model_create(&n0, &ms, err, sizeof err), 0);
    assert_int_equal(weights_load_file(n0, pre, WEIGHTS_BODY, err, sizeof err), 0);
    for (int t = 0; t < na->n_tensors; t++) {
        const net_tensor *nt = &na->tensors[t];
        if (nt->is_buffer || nt->group != sa.n_groups - 1)
            continue;
        for (size_t i = 0; i < nt->numel; i++)
            moved += fabs((double)na->params[nt->offset + i] - n0->params[nt->offset + i]);
    }
    net_destroy(n0);
    print_message("precompute vs full: max parameter difference %.3g (head moved %.3g)\n",
                  worst, moved);
    assert_true(worst < 1e-4);
    assert_true(moved > 1e-2); /* the head did train */
    /* The body is untouched in both. */
    learner_destroy(a);
    learner_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fx_test_small(precompute_head_equals_full_head),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
