/* test_fused_step.c: the optimizer update fused into the backward (optim_backward_step)
 * changes where gradients live, never a result: two nets from one seed, one trained with
 * the update after a whole backward (net_zero_grad, net_backward, optim_step), the other
 * fused, hold bit for bit the same parameters, optimizer state, step counts, BatchNorm
 * statistics and losses after a few steps, for SGD (momentum, Nesterov, L2 or decoupled
 * weight decay) and Adam/AdamW, with a frozen group, through the precompute path, and in
 * bf16; and the fused net's full gradient buffer is never written (none of its pages
 * resident). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "models/models.h"
#include "net.h"
#include "optim.h"
#include "rng.h"

#define BATCH 8
#define STEPS 3

typedef struct side {
    net *n;
    optim *o;
} side;

typedef struct trial {
    const char *arch;
    model_head head;
    int size, c_in, freeze_to, cached;
    precision prec;
    optim_config cfg;
    double wd;
} trial;

static side side_create(const trial *t, int fused)
{
    model_spec s;
    model_spec_defaults(&s);
    s.arch = t->arch;
    s.head = t->head;
    s.c_in = t->c_in;
    s.n_classes = 5;
    s.seed = 11; /* both sides: the same weights and dropout masks */
    char err[256];
    side sd = {0};
    assert_int_equal(model_create(&sd.n, &s, err, sizeof(err)), 0);
    assert_int_equal(net_set_batch(sd.n, BATCH, t->size, t->size), 0);
    assert_int_equal(net_freeze_to(sd.n, t->freeze_to), 0);
    assert_int_equal(net_set_fused_backward(sd.n, fused), 0);
    if (t->prec != PRECISION_FP32)
        assert_int_equal(net_set_precision(sd.n, t->prec), 0);
    assert_int_equal(optim_create(&sd.o, sd.n, &t->cfg), 0);
    /* A different LR per group, so that a tensor updated with another's would show. */
    double lrs[MODEL_N_GROUPS];
    for (int g = 0; g < MODEL_N_GROUPS; g++)
        lrs[g] = (t->cfg.kind == OPTIM_ADAM ? 1e-3 : 1e-2) * (g + 1);
    assert_int_equal(optim_set_lrs(sd.o, lrs, MODEL_N_GROUPS), 0);
    assert_int_equal(optim_set_wds(sd.o, &t->wd, 1), 0);
    return sd;
}

static void side_destroy(side *sd)
{
    optim_destroy(sd->o);
    net_destroy(sd->n);
}

/* The forward of one step: the whole net, or the head from pooled features (the
 * learner's precompute cache, computed in eval mode). */
static void forward(side *sd, const trial *t, const float *x, float *loss, const int32_t *y)
{
    net *n = sd->n;
    if (!t->cached) {
        assert_non_null(net_forward(n, x, 1));
    } else {
        int pool = net_pool_node(n);
        size_t feats = (size_t)BATCH * net_node_features(n, pool);
        const float *pooled = net_forward_to(n, x, 0, pool);
        assert_non_null(pooled);
        float *cache = malloc(feats * sizeof(float));
        memcpy(cache, pooled, feats * sizeof(float));
        assert_non_null(net_forward_from(n, pool, cache, 1));
        free(cache);
    }
    *loss = net_loss(n, y, NULL);
}

/* Resident pages of the net's full gradient buffer. */
static size_t grad_pages_resident(const net *n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (n->n_params * sizeof(float) + page - 1) / page;
    unsigned char *v = malloc(pages);
    assert_int_equal(mincore(n->grads, n->n_params * sizeof(float), v), 0);
    size_t k = 0;
    for (size_t i = 0; i < pages; i++)
        k += v[i] & 1;
    free(v);
    return k;
}

static void run_trial(const trial *t)
{
    side after = side_create(t, 0), fused = side_create(t, 1);
    size_t nx = (size_t)BATCH * t->size * t->size * t->c_in;
    float *x = malloc(nx * sizeof(float));
    int32_t y[BATCH];
    uint64_t r = 29;
    for (int step = 0; step < STEPS; step++) {
        for (size_t i = 0; i < nx; i++)
            x[i] = rng_normal(&r);
        for (int i = 0; i < BATCH; i++)
            y[i] = (int32_t)rng_below(&r, 5);
        float la, lf;
        forward(&after, t, x, &la, y);
        assert_false(net_backward_fusable(after.n));
        net_zero_grad(after.n);
        net_backward(after.n, y, NULL);
        optim_step(after.o);
        forward(&fused, t, x, &lf, y);
        assert_true(net_backward_fusable(fused.n));
        optim_backward_step(fused.o, y, NULL);
        assert_memory_equal(&la, &lf, sizeof(float));
    }
    const net *a = after.n, *f = fused.n;
    assert_memory_equal(a->params, f->params, a->n_params * sizeof(float));
    assert_memory_equal(a->buffers, f->buffers, a->n_buffers * sizeof(float));
    assert_memory_equal(after.o->state, fused.o->state, after.o->n_state * sizeof(float));
    assert_memory_equal(after.o->steps, fused.o->steps, (size_t)a->n_tensors * sizeof(int64_t));
    /* The trainable parameters really moved (the comparison is not of two idle nets). */
    side fresh = side_create(t, 0);
    const net_tensor *last = &a->tensors[a->n_tensors - 1];
    assert_memory_not_equal(a->params + last->offset, fresh.n->params + last->offset,
                            last->numel * sizeof(float));
    side_destroy(&fresh);
    assert_int_equal(grad_pages_resident(f), 0);
    assert_true(grad_pages_resident(a) > 0);
    free(x);
    side_destroy(&after);
    side_destroy(&fused);
}

static trial base(const char *arch, optim_kind kind)
{
    trial t = {.arch = arch, .head = HEAD_FASTAI, .size = 28, .c_in = 1, .wd = 1e-2};
    optim_config_defaults(&t.cfg);
    t.cfg.kind = kind;
    return t;
}

static void sgd_momentum_l2(void **state)
{
    (void)state;
    trial t = base("resnet_small", OPTIM_SGD);
    run_trial(&t);
}

static void sgd_nesterov_decoupled(void **state)
{
    (void)state;
    trial t = base("resnet_small", OPTIM_SGD);
    t.cfg.nesterov = 1;
    t.cfg.decoupled_wd = 1;
    t.head = HEAD_PLAIN;
    run_trial(&t);
}

static void adam_l2(void **state)
{
    (void)state;
    trial t = base("resnet_small", OPTIM_ADAM);
    run_trial(&t);
}

static void adamw(void **state)
{
    (void)state;
    trial t = base("resnet_small", OPTIM_ADAM);
    t.cfg.decoupled_wd = 1;
    t.cfg.beta2 = 0.99;
    run_trial(&t);
}

static void frozen_group(void **state)
{
    (void)state;
    trial t = base("resnet_small", OPTIM_SGD);
    t.freeze_to = 1;
    run_trial(&t);
    t.cfg.kind = OPTIM_ADAM;
    t.cfg.decoupled_wd = 1;
    t.freeze_to = 2;
    run_trial(&t);
}

/* The learner's precompute path: the head trained from cached pooled features. */
static void head_from_cache(void **state)
{
    (void)state;
    trial t = base("resnet_small", OPTIM_ADAM);
    t.freeze_to = 2;
    t.cached = 1;
    run_trial(&t);
}

/* resnet18's stem (its convolution output rebuilt for backward, then a max pool). */
static void resnet18_rgb(void **state)
{
    (void)state;
    trial t = base("resnet18", OPTIM_SGD);
    t.size = 32;
    t.c_in = 3;
    t.cfg.nesterov = 1;
    run_trial(&t);
}

static void bf16(void **state)
{
    (void)state;
    if (!precision_bf16_supported())
        skip();
    trial t = base("resnet_small", OPTIM_ADAM);
    t.prec = PRECISION_BF16;
    t.cfg.decoupled_wd = 1;
    run_trial(&t);
}

/* Where a trainable parameter lies before the start node (a head-only forward with the
 * body trainable), the update cannot be fused: optim_backward_step takes the path after
 * the backward, with the same results. */
static void not_fusable_falls_back(void **state)
{
    (void)state;
    trial t = base("resnet_small", OPTIM_SGD);
    side a = side_create(&t, 0), b = side_create(&t, 1);
    int pool = net_pool_node(a.n);
    size_t feats = (size_t)BATCH * net_node_features(a.n, pool);
    float *cache = calloc(feats, sizeof(float));
    int32_t y[BATCH] = {0, 1, 2, 3, 4, 0, 1, 2};
    for (size_t i = 0; i < feats; i++)
        cache[i] = (float)(i % 7) * 0.25f;
    assert_non_null(net_forward_from(a.n, pool, cache, 1));
    net_loss(a.n, y, NULL);
    net_zero_grad(a.n);
    net_backward(a.n, y, NULL);
    optim_step(a.o);
    assert_non_null(net_forward_from(b.n, pool, cache, 1));
    net_loss(b.n, y, NULL);
    assert_false(net_backward_fusable(b.n));
    assert_int_equal(net_backward_fused(b.n, y, NULL, NULL, NULL), -EOPNOTSUPP);
    optim_backward_step(b.o, y, NULL);
    assert_memory_equal(a.n->params, b.n->params, a.n->n_params * sizeof(float));
    assert_memory_equal(a.o->state, b.o->state, a.o->n_state * sizeof(float));
    free(cache);
    side_destroy(&a);
    side_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sgd_momentum_l2),
        cmocka_unit_test(sgd_nesterov_decoupled),
        cmocka_unit_test(adam_l2),
        cmocka_unit_test(adamw),
        cmocka_unit_test(frozen_group),
        cmocka_unit_test(head_from_cache),
        cmocka_unit_test(resnet18_rgb),
        cmocka_unit_test(bf16),
        cmocka_unit_test(not_fusable_falls_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
