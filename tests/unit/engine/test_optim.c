/* test_optim.c: the optimizer object over a net's slabs: per-group lr and weight decay,
 * frozen groups untouched with their state kept, buffers never touched, state copy and
 * transfer by name, a scheduled momentum / beta1 used by the next steps. The net is
 * assembled by hand (only its public fields matter here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "optim.h"

/* Three parameters in groups 0, 1, 2 (4 floats each) and one buffer in group 0. */
static net *toy_net(void)
{
    net *n = calloc(1, sizeof *n);
    n->n_tensors = 4;
    n->tensors = calloc(4, sizeof *n->tensors);
    const char *names[] = {"a.weight", "b.weight", "c.weight", "a.running_mean"};
    for (int i = 0; i < 4; i++) {
        snprintf(n->tensors[i].name, NET_NAME_MAX, "%s", names[i]);
        n->tensors[i].ndim = 1;
        n->tensors[i].shape[0] = 4;
        n->tensors[i].numel = 4;
        n->tensors[i].group = i < 3 ? i : 0;
        n->tensors[i].is_buffer = i == 3;
        n->tensors[i].offset = i < 3 ? (size_t)i * 4 : 0;
    }
    n->n_groups = 3;
    n->n_params = 12;
    n->n_buffers = 4;
    n->params = calloc(12, sizeof(float));
    n->grads = calloc(12, sizeof(float));
    n->buffers = calloc(4, sizeof(float));
    for (int i = 0; i < 12; i++) {
        n->params[i] = 1.0f + 0.1f * (float)i;
        n->grads[i] = 0.5f - 0.05f * (float)i;
    }
    for (int i = 0; i < 4; i++)
        n->buffers[i] = 7.0f;
    return n;
}

static void toy_free(net *n)
{
    free(n->tensors);
    free(n->params);
    free(n->grads);
    free(n->buffers);
    free(n);
}

static void per_group_lr_and_wd_match_the_core(void **state)
{
    (void)state;
    net *n = toy_net();
    optim_config c;
    optim_config_defaults(&c);
    c.nesterov = 1;
    optim *o;
    assert_int_equal(optim_create(&o, n, &c), 0);
    const double lrs[] = {0.01, 0.03, 0.1}, wds[] = {0.0, 1e-3, 1e-2};
    assert_int_equal(optim_set_lrs(o, lrs, 3), 0);
    assert_int_equal(optim_set_wds(o, wds, 3), 0);

    float want[12], buf[12] = {0};
    memcpy(want, n->params, sizeof want);
    for (int step = 0; step < 3; step++) {
        for (int g = 0; g < 3; g++)
            sgd_step(want + 4 * g, n->grads + 4 * g, buf + 4 * g, 4, (float)lrs[g], 0.9f, 1,
                     (float)wds[g], 0);
        optim_step(o);
    }
    assert_memory_equal(n->params, want, sizeof want);
    for (int i = 0; i < 4; i++)
        assert_true(n->buffers[i] == 7.0f);
    assert_int_equal(o->steps[0], 3);
    assert_int_equal(o->steps[3], 0); /* the buffer is no parameter */
    optim_destroy(o);
    toy_free(n);
}

static void frozen_groups_keep_params_and_state(void **state)
{
    (void)state;
    net *n = toy_net();
    optim_config c;
    optim_config_defaults(&c);
    optim *o;
    assert_int_equal(optim_create(&o, n, &c), 0);
    double lr = 0.1;
    assert_int_equal(optim_set_lrs(o, &lr, 1), 0);
    optim_step(o); /* everything trainable: momentum buffers of all groups filled */
    float mom_before[12], p_before[12];
    memcpy(mom_before, o->state, sizeof mom_before);
    memcpy(p_before, n->params, sizeof p_before);

    n->freeze_to = 2;
    optim_step(o);
    assert_memory_equal(n->params, p_before, 8 * sizeof(float));     /* groups 0, 1 */
    assert_memory_equal(o->state, mom_before, 8 * sizeof(float));
    assert_memory_not_equal(n->params + 8, p_before + 8, 4 * sizeof(float));
    assert_int_equal(o->steps[0], 1);
    assert_int_equal(o->steps[2], 2);

    /* Unfreezing resumes with the kept momentum: the next step of group 0 is the core's
     * second step from that state. */
    n->freeze_to = 0;
    float want[4], buf[4];
    memcpy(want, n->params, sizeof want);
    memcpy(buf, o->state, sizeof buf);
    sgd_step(want, n->grads, buf, 4, 0.1f, 0.9f, 0, 0.0f, 0);
    optim_step(o);
    assert_memory_equal(n->params, want, sizeof want);
    optim_destroy(o);
    toy_free(n);
}

static void bad_settings_are_refused(void **state)
{
    (void)state;
    net *n = toy_net();
    optim_config c;
    optim_config_defaults(&c);
    optim *o = NULL;
    c.momentum = 1.5;
    assert_int_equal(optim_create(&o, n, &c), -EINVAL);
    assert_null(o);
    optim_config_defaults(&c);
    assert_int_equal(optim_create(&o, n, &c), 0);
    const double two[] = {0.1, 0.2}, neg[] = {-1.0}, nan_[] = {NAN};
    assert_int_equal(optim_set_lrs(o, two, 2), -EINVAL);
    assert_int_equal(optim_set_lrs(o, neg, 1), -EINVAL);
    assert_int_equal(optim_set_wds(o, nan_, 1), -EINVAL);
    assert_true(o->lr[0] == 0.0);
    optim_destroy(o);
    optim_destroy(NULL);
    toy_free(n);
}

static void adam_state_copies_and_transfers(void **state)
{
    (void)state;
    net *a = toy_net(), *b = toy_net();
    optim_config c;
    optim_config_defaults(&c);
    c.kind = OPTIM_ADAM;
    optim *oa, *ob;
    assert_int_equal(optim_create(&oa, a, &c), 0);
    assert_int_equal(optim_create(&ob, b, &c), 0);
    double lr = 1e-2;
    optim_set_lrs(oa, &lr, 1);
    optim_set_lrs(ob, &lr, 1);
    optim_step(oa);
    optim_step(oa);
    assert_int_equal(optim_copy_state(ob, oa), 0);
    memcpy(b->params, a->params, 12 * sizeof(float));
    optim_step(oa);
    optim_step(ob);
    assert_memory_equal(a->params, b->params, 12 * sizeof(float));

    /* Transfer by name into a net holding only "c.weight". */
    net *h = toy_net();
    h->n_tensors = 1;
    h->tensors[0] = a->tensors[2];
    h->tensors[0].offset = 0;
    h->tensors[0].group = 0;
    optim *oh;
    assert_int_equal(optim_create(&oh, h, &c), 0);
    assert_int_equal(optim_transfer(oh, oa), 1);
    assert_memory_equal(oh->state, oa->state + 8, 4 * sizeof(float));
    assert_memory_equal(oh->state + h->n_params, oa->state + 12 + 8, 4 * sizeof(float));
    assert_int_equal(oh->steps[0], 3);
    optim_destroy(oh);
    optim_destroy(oa);
    optim_destroy(ob);
    toy_free(h);
    toy_free(a);
    toy_free(b);
}

static void scheduled_momentum_is_used(void **state)
{
    (void)state;
    const optim_kind kinds[] = {OPTIM_SGD, OPTIM_ADAM};
    const double moms[] = {0.95, 0.9, 0.85, 0.88};
    for (int k = 0; k < 2; k++) {
        net *n = toy_net();
        optim_config c;
        optim_config_defaults(&c);
        c.kind = kinds[k];
        optim *o;
        assert_int_equal(optim_create(&o, n, &c), 0);
        assert_true(o->mom == 0.9); /* the configured momentum / beta1 */
        double lr = 0.05;
        optim_set_lrs(o, &lr, 1);
        float want[12], s1[12] = {0}, s2[12] = {0};
        memcpy(want, n->params, sizeof want);
        for (int step = 0; step < 4; step++) {
            assert_int_equal(optim_set_momentum(o, moms[step]), 0);
            if (kinds[k] == OPTIM_SGD)
                sgd_step(want, n->grads, s1, 12, 0.05f, (float)moms[step], 0, 0.0f, 0);
            else
                adam_step(want, n->grads, s1, s2, 12, step + 1, 0.05f, (float)moms[step],
                          0.999f, 1e-8f, 0.0f, 0);
            optim_step(o);
            assert_memory_equal(n->params, want, sizeof want);
        }
        /* Out of range: refused, nothing changed. */
        assert_int_equal(optim_set_momentum(o, 1.0), -EINVAL);
        assert_int_equal(optim_set_momentum(o, -0.1), -EINVAL);
        assert_int_equal(optim_set_momentum(o, NAN), -EINVAL);
        assert_true(o->mom == 0.88);
        optim_reset_momentum(o);
        assert_true(o->mom == 0.9);
        /* After the reset, steps use the configured value again. */
        if (kinds[k] == OPTIM_SGD)
            sgd_step(want, n->grads, s1, 12, 0.05f, 0.9f, 0, 0.0f, 0);
        else
            adam_step(want, n->grads, s1, s2, 12, 5, 0.05f, 0.9f, 0.999f, 1e-8f, 0.0f, 0);
        optim_step(o);
        assert_memory_equal(n->params, want, sizeof want);
        optim_destroy(o);
        toy_free(n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(per_group_lr_and_wd_match_the_core),
        cmocka_unit_test(frozen_groups_keep_params_and_state),
        cmocka_unit_test(bad_settings_are_refused),
        cmocka_unit_test(adam_state_copies_and_transfers),
        cmocka_unit_test(scheduled_momentum_is_used),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
