/* test_net_plan.c: the memory plan changes where activations live, never a result: a net
 * whose activations share buffers (and whose BatchNorm outputs and stem convolution are
 * recomputed for backward) gives bit for bit the logits, loss, parameter gradients and
 * BatchNorm running statistics of the same net with every activation in its own buffer,
 * in training, eval and frozen modes and through net_forward_to / net_forward_from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blas.h"
#include "models/models.h"
#include "net.h"
#include "rng.h"

typedef struct pair {
    net *planned, *kept;
    float *x;
    int32_t y[8];
    int batch, size, c_in;
} pair;

static net *build(const char *arch, model_head head, int c_in, uint64_t seed)
{
    model_spec s;
    model_spec_defaults(&s);
    s.arch = arch;
    s.head = head;
    s.c_in = c_in;
    s.n_classes = 5;
    s.ps[0] = 0.25f; /* active dropout: both nets draw the same masks from the same seed */
    s.ps[1] = 0.5f;
    s.seed = seed;
    char err[256];
    net *n = NULL;
    assert_int_equal(model_create(&n, &s, err, sizeof(err)), 0);
    return n;
}

static void pair_init(pair *p, const char *arch, model_head head, int c_in, int batch,
                      int size)
{
    memset(p, 0, sizeof(*p));
    p->planned = build(arch, head, c_in, 3);
    p->kept = build(arch, head, c_in, 3);
    p->batch = batch;
    p->size = size;
    p->c_in = c_in;
    assert_int_equal(net_set_batch(p->planned, batch, size, size), 0);
    assert_int_equal(net_set_batch(p->kept, batch, size, size), 0);
    assert_int_equal(net_keep_values(p->kept, 1), 0);
    /* Sharing really happens: the planned slab is smaller than the unshared one. */
    assert_true(p->planned->slab_floats < p->kept->slab_floats);
    size_t nx = (size_t)batch * size * size * c_in;
    p->x = malloc(nx * sizeof(float));
    uint64_t r = 17;
    for (size_t i = 0; i < nx; i++)
        p->x[i] = rng_normal(&r);
    for (int i = 0; i < batch; i++)
        p->y[i] = (int32_t)rng_below(&r, 5);
}

static void pair_free(pair *p)
{
    net_destroy(p->planned);
    net_destroy(p->kept);
    free(p->x);
}

static void same_output(const pair *p, const float *a, const float *b)
{
    assert_non_null(a);
    assert_non_null(b);
    size_t cnt = (size_t)p->batch * p->planned->n_out;
    assert_memory_equal(a, b, cnt * sizeof(float));
}

/* Parameter gradients (all of them: frozen ones stay zero in both) and BN statistics. */
static void same_state(const pair *p)
{
    const net *a = p->planned, *b = p->kept;
    assert_memory_equal(a->grads, b->grads, a->n_params * sizeof(float));
    assert_memory_equal(a->buffers, b->buffers, a->n_buffers * sizeof(float));
}

static void train_step(pair *p)
{
    net *ns[2] = {p->planned, p->kept};
    const float *out[2];
    float loss[2];
    for (int k = 0; k < 2; k++) {
        net_zero_grad(ns[k]);
        out[k] = net_forward(ns[k], p->x, 1);
        loss[k] = net_loss(ns[k], p->y, NULL);
        net_backward(ns[k], p->y, NULL);
    }
    same_output(p, out[0], out[1]);
    assert_memory_equal(&loss[0], &loss[1], sizeof(float));
    same_state(p);
}

static void eval_step(pair *p)
{
    const float *a = net_forward(p->planned, p->x, 0);
    float la = net_loss(p->planned, p->y, NULL);
    const float *b = net_forward(p->kept, p->x, 0);
    float lb = net_loss(p->kept, p->y, NULL);
    same_output(p, a, b);
    assert_memory_equal(&la, &lb, sizeof(float));
    same_state(p);
}

/* The precompute path: pooled features in eval mode, then head-only training from them. */
static void cached_head_step(pair *p)
{
    int pool = net_pool_node(p->planned);
    assert_true(pool > 0);
    size_t feats = (size_t)p->batch * net_node_features(p->planned, pool);
    float *cache[2];
    net *ns[2] = {p->planned, p->kept};
    for (int k = 0; k < 2; k++) {
        const float *pooled = net_forward_to(ns[k], p->x, 0, pool);
        assert_non_null(pooled);
        cache[k] = malloc(feats * sizeof(float));
        memcpy(cache[k], pooled, feats * sizeof(float));
    }
    assert_memory_equal(cache[0], cache[1], feats * sizeof(float));
    const float *out[2];
    for (int k = 0; k < 2; k++) {
        net_zero_grad(ns[k]);
        out[k] = net_forward_from(ns[k], pool, cache[k], 1);
        net_loss(ns[k], p->y, NULL);
        net_backward(ns[k], p->y, NULL);
    }
    same_output(p, out[0], out[1]);
    same_state(p);
    free(cache[0]);
    free(cache[1]);
}

static void run_modes(const char *arch, model_head head, int c_in, int batch, int size)
{
    pair p;
    pair_init(&p, arch, head, c_in, batch, size);
    train_step(&p);
    eval_step(&p);
    train_step(&p); /* back to the training plan after eval */
    int frozen = p.planned->n_groups - 1;
    assert_int_equal(net_freeze_to(p.planned, frozen), 0);
    assert_int_equal(net_freeze_to(p.kept, frozen), 0);
    train_step(&p);
    eval_step(&p);
    cached_head_step(&p);
    train_step(&p); /* frozen, from the input again after a head-only step */
    assert_int_equal(net_freeze_to(p.planned, 0), 0);
    assert_int_equal(net_freeze_to(p.kept, 0), 0);
    cached_head_step(&p);
    train_step(&p);
    pair_free(&p);
}

static void resnet_small_planned_equals_unshared(void **state)
{
    (void)state;
    run_modes("resnet_small", HEAD_FASTAI, 1, 6, 20);
}

/* SiLU's backward reads its input, the BatchNorm output (after the residual add in each
 * block's second half), which the plan keeps or rebuilds. */
static void resnet_small_silu_planned_equals_unshared(void **state)
{
    (void)state;
    run_modes("resnet_small_silu", HEAD_PLAIN, 1, 6, 20);
}

static void resnet18_planned_equals_unshared(void **state)
{
    (void)state;
    run_modes("resnet18", HEAD_PLAIN, 3, 4, 48);
}

static void resnet18_fastai_head_planned_equals_unshared(void **state)
{
    (void)state;
    run_modes("resnet18", HEAD_FASTAI, 3, 3, 40);
}

/* In training the stem convolution's output (the largest activation of an ImageNet
 * ResNet) is not kept for its BatchNorm's backward but recomputed: after a training
 * forward its buffer holds something else (in the net that keeps everything, the same),
 * and the gradients are still those of the net that keeps everything. */
static void stem_output_not_kept(precision prec)
{
    pair p;
    pair_init(&p, "resnet18", HEAD_PLAIN, 3, 4, 64);
    net *ns[2] = {p.planned, p.kept};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(net_set_bf16_kernels(ns[k], BF16_KERNELS_FP32), 0);
        assert_int_equal(net_set_precision(ns[k], prec), 0);
    }
    for (int k = 0; k < 2; k++) {
        net *n = ns[k];
        int v = n->nodes[1].value;
        size_t cnt = n->value_numel[v];
        assert_int_equal(n->nodes[1].kind, NODE_CONV);
        assert_non_null(net_forward_to(n, p.x, 1, 1));
        float *stem = malloc(cnt * sizeof(float));
        memcpy(stem, n->values[v], cnt * sizeof(float));
        net_zero_grad(n);
        assert_non_null(net_forward(n, p.x, 1));
        int same = memcmp(stem, n->values[v], cnt * sizeof(float)) == 0;
        assert_int_equal(same, k == 1);
        net_loss(n, p.y, NULL);
        net_backward(n, p.y, NULL);
        free(stem);
    }
    same_state(&p);
    pair_free(&p);
}

static void resnet18_stem_output_not_kept(void **state)
{
    (void)state;
    stem_output_not_kept(PRECISION_FP32);
}

/* bf16 on the fp32 kernels recomputes the stem as fp32 does: the same call on the same
 * rounded operands gives the same output bit for bit. */
static void resnet18_bf16_stem_output_not_kept(void **state)
{
    (void)state;
    if (!precision_bf16_supported())
        skip();
    stem_output_not_kept(PRECISION_BF16);
}

int main(void)
{
    blas_startup(NULL, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resnet_small_planned_equals_unshared),
        cmocka_unit_test(resnet_small_silu_planned_equals_unshared),
        cmocka_unit_test(resnet18_planned_equals_unshared),
        cmocka_unit_test(resnet18_fastai_head_planned_equals_unshared),
        cmocka_unit_test(resnet18_stem_output_not_kept),
        cmocka_unit_test(resnet18_bf16_stem_output_not_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
