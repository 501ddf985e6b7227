/* test_net.c: networks built from models/: torchvision sizes and names, layer groups and
 * freezing, determinism, a finite-difference check through a whole residual net, and the
 * gradient memory plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blas.h"
#include "models/models.h"
#include "net.h"
#include "net_plan.h"
#include "ops/precision.h"
#include "rng.h"

static net *build(const char *arch, model_head head, int c_in, int n_classes, float p,
                  uint64_t seed)
{
    model_spec s;
    model_spec_defaults(&s);
    s.arch = arch;
    s.head = head;
    s.c_in = c_in;
    s.n_classes = n_classes;
    s.ps[0] = s.ps[1] = p;
    s.seed = seed;
    char err[256];
    net *n = NULL;
    assert_int_equal(model_create(&n, &s, err, sizeof(err)), 0);
    return n;
}

static void fill(float *x, size_t n, uint64_t seed)
{
    uint64_t r = seed;
    for (size_t i = 0; i < n; i++)
        x[i] = rng_normal(&r);
}

static void torchvision_parameter_counts_and_names(void **state)
{
    (void)state;
    net *n = build("resnet18", HEAD_PLAIN, 3, 1000, 0, 1);
    assert_int_equal(n->n_params, 11689512); /* torchvision.models.resnet18() */
    assert_true(net_find(n, "layer2.0.downsample.0.weight") >= 0);
    assert_true(net_find(n, "layer4.1.bn2.running_var") >= 0);
    assert_true(net_find(n, "fc.bias") >= 0);
    assert_int_equal(net_find(n, "layer1.0.downsample.0.weight"), -1);
    assert_int_equal(n->n_groups, 3);
    net_destroy(n);

    n = build("resnet34", HEAD_PLAIN, 3, 1000, 0, 1);
    assert_int_equal(n->n_params, 21797672); /* torchvision.models.resnet34() */
    assert_true(net_find(n, "layer3.5.conv2.weight") >= 0);
    net_destroy(n);

    n = build("resnet_small", HEAD_FASTAI, 1, 10, 0.25f, 1);
    assert_true(net_find(n, "head.2.running_mean") >= 0); /* BN1d(256) */
    assert_true(net_find(n, "head.4.weight") >= 0);       /* Linear(256, 512) */
    assert_true(net_find(n, "head.8.weight") >= 0);       /* Linear(512, 10) */
    int w = net_find(n, "head.8.weight");
    assert_int_equal(n->tensors[w].shape[0], 10);
    assert_int_equal(n->tensors[w].shape[1], 512);
    assert_int_equal(n->tensors[net_find(n, "conv1.weight")].group, 0);
    assert_int_equal(n->tensors[net_find(n, "layer1.1.conv2.weight")].group, 0);
    assert_int_equal(n->tensors[net_find(n, "layer2.0.conv1.weight")].group, 1);
    assert_int_equal(n->tensors[net_find(n, "head.2.weight")].group, 2);
    net_destroy(n);
}

static void bad_specs_are_refused_with_a_reason(void **state)
{
    (void)state;
    model_spec s;
    model_spec_defaults(&s);
    char err[256];
    net *n = (net *)1;
    s.arch = "vgg16";
    assert_true(model_create(&n, &s, err, sizeof(err)) < 0);
    assert_null(n);
    assert_non_null(strstr(err, "vgg16"));
    model_spec_defaults(&s);
    s.c_in = 2;
    assert_true(model_create(&n, &s, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "c_in"));
    model_spec_defaults(&s);
    s.ps[1] = 1.0f;
    assert_true(model_create(&n, &s, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "ps"));
}

static void same_seed_same_numbers_bit_for_bit(void **state)
{
    (void)state;
    enum { B = 4, S = 16 };
    float *x = malloc(sizeof(float) * B * S * S);
    fill(x, B * S * S, 7);
    int32_t y[B] = {0, 3, 9, 1};
    float loss[2];
    float *grads[2];
    for (int k = 0; k < 2; k++) {
        net *n = build("resnet_small", HEAD_FASTAI, 1, 10, 0.5f, 42);
        assert_int_equal(net_set_batch(n, B, S, S), 0);
        net_zero_grad(n);
        net_forward(n, x, 1);
        loss[k] = net_loss(n, y, NULL);
        net_backward(n, y, NULL);
        grads[k] = malloc(n->n_params * sizeof(float));
        memcpy(grads[k], n->grads, n->n_params * sizeof(float));
        if (k == 1)
            assert_memory_equal(grads[0], grads[1], n->n_params * sizeof(float));
        net_destroy(n);
    }
    assert_memory_equal(&loss[0], &loss[1], sizeof(float));
    net *other = build("resnet_small", HEAD_FASTAI, 1, 10, 0.5f, 43);
    net *same = build("resnet_small", HEAD_FASTAI, 1, 10, 0.5f, 42);
    assert_memory_not_equal(other->params, same->params, 64 * sizeof(float));
    net_destroy(other);
    net_destroy(same);
    free(grads[0]);
    free(grads[1]);
    free(x);
}

/* The cosine of the angle between a and b (n floats), in double. */
static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* A net switched to bf16 after its batch shape is set re-plans its scratch and trains,
 * repeating bit for bit; its loss is fp32's within 1%, and its gradient points where
 * fp32's does (cosine >= 0.9). Element bounds would be meaningless here: with batch
 * statistics, ReLU kinks and max-pool choices the gradient of so small a net moves by
 * tens of percent of its largest element under any perturbation (in fp32, scaling the
 * input by 1 +- 0.2% moves it 14% and leaves a cosine of 0.986; bf16 rounds every
 * convolution's input by up to 0.4% and leaves 0.96). The ops are proven element by element
 * against PyTorch in tests/parity/ops/test_bf16_parity.py. On a CPU without bf16 the
 * switch is refused and nothing changes. Run once per kernels of the bf16 mode; the net
 * keeps the kernels it was given. */
static void bf16_follows_fp32(bf16_kernels kernels)
{
    enum { B = 8, S = 16 };
    float *x = malloc(sizeof(float) * B * S * S);
    fill(x, B * S * S, 5);
    int32_t y[B] = {0, 3, 9, 1, 4, 4, 7, 2};
    net *n = build("resnet_small", HEAD_FASTAI, 1, 10, 0.0f, 42);
    assert_int_equal(net_set_batch(n, B, S, S), 0);
    assert_int_equal(net_set_bf16_kernels(n, kernels), 0);
    float *g32 = malloc(n->n_params * sizeof(float)), *g16 = malloc(n->n_params * sizeof(float));
    float loss[3];
    for (int k = 0; k < 3; k++) {
        if (k == 1) {
            int rc = net_set_precision(n, PRECISION_BF16);
            if (!precision_bf16_supported()) {
                assert_int_equal(rc, -ENOTSUP);
                assert_int_equal(n->precision, PRECISION_FP32);
                break;
            }
            assert_int_equal(rc, 0);
        }
        net_zero_grad(n);
        net_forward(n, x, 1);
        loss[k] = net_loss(n, y, NULL);
        net_backward(n, y, NULL);
        if (k == 2)
            assert_memory_equal(g16, n->grads, n->n_params * sizeof(float));
        memcpy(k == 0 ? g32 : g16, n->grads, n->n_params * sizeof(float));
    }
    if (precision_bf16_supported()) {
        assert_int_equal(n->bf16_kernels, kernels);
        assert_memory_equal(&loss[1], &loss[2], sizeof(float));
        assert_true(fabs(loss[1] - loss[0]) <= 1e-2 * fabs(loss[0]));
        assert_true(cosine(g16, g32, n->n_params) >= 0.9);
    }
    net_destroy(n);
    free(g32);
    free(g16);
    free(x);
}

static void bf16_on_onednn_follows_fp32_within_its_rounding(void **state)
{
    (void)state;
    bf16_follows_fp32(BF16_KERNELS_ONEDNN);
}

static void bf16_on_rounded_fp32_follows_fp32_within_its_rounding(void **state)
{
    (void)state;
    bf16_follows_fp32(BF16_KERNELS_FP32);
}

/* A net takes the process's kernels when it first switches to bf16 and keeps them; only
 * ONEDNN and FP32 can be set. */
static void bf16_kernels_are_chosen_once_per_net(void **state)
{
    (void)state;
    net *n = build("resnet_small", HEAD_FASTAI, 1, 10, 0.0f, 42);
    assert_int_equal(n->bf16_kernels, BF16_KERNELS_AUTO);
    assert_int_equal(net_set_bf16_kernels(n, BF16_KERNELS_AUTO), -EINVAL);
    assert_int_equal(net_set_bf16_kernels(n, (bf16_kernels)7), -EINVAL);
    if (precision_bf16_supported()) {
        assert_int_equal(net_set_precision(n, PRECISION_BF16), 0);
        bf16_kernels k = n->bf16_kernels;
        assert_int_equal(k, bf16_kernels_choice());
        assert_int_equal(net_set_precision(n, PRECISION_FP32), 0);
        assert_int_equal(net_set_precision(n, PRECISION_BF16), 0);
        assert_int_equal(n->bf16_kernels, k);
    }
    net_destroy(n);
}

/* Loss as a function of one parameter, in eval mode: BatchNorm is then a fixed affine map
 * and the net is piecewise linear up to the loss, so a central difference is exact up to
 * rounding unless a ReLU kink lies in the step (which the caller detects). Training-mode
 * BatchNorm is checked op by op (tests/unit/ops) and against PyTorch (tests/parity). */
static double loss_at(net *n, const float *x, const int32_t *y, size_t idx, float value)
{
    float keep = n->params[idx];
    n->params[idx] = value;
    net_forward(n, x, 0);
    double l = net_loss(n, y, NULL);
    n->params[idx] = keep;
    return l;
}

static void finite_differences_through_a_residual_net(void **state)
{
    (void)state;
    enum { B = 4, S = 16 };
    net *n = build("resnet_small", HEAD_FASTAI, 3, 4, 0.0f, 5);
    assert_int_equal(net_set_batch(n, B, S, S), 0);
    float *x = malloc(sizeof(float) * B * S * S * 3);
    fill(x, B * S * S * 3, 11);
    int32_t y[B] = {1, 0, 3, 2};
    assert_int_equal(net_keep_values(n, 1), 0); /* backward after an eval-mode forward */
    for (int k = 0; k < 20; k++) /* running statistics near the batch's own */
        net_forward(n, x, 1);
    net_zero_grad(n);
    net_forward(n, x, 0);
    net_loss(n, y, NULL);
    net_backward(n, y, NULL);
    float *g = malloc(n->n_params * sizeof(float));
    memcpy(g, n->grads, n->n_params * sizeof(float));
    const char *probe[] = {"conv1.weight", "layer1.0.conv1.weight", "layer1.1.bn2.weight",
                           "layer2.0.downsample.0.weight", "layer3.1.conv2.weight",
                           "layer3.1.bn2.bias", "head.2.weight", "head.3.weight",
                           "head.6.bias"};
    uint64_t r = 3;
    int checked = 0, skipped = 0;
    for (size_t p = 0; p < sizeof(probe) / sizeof(probe[0]); p++) {
        int t = net_find(n, probe[p]);
        assert_true(t >= 0);
        for (int k = 0; k < 3;) {
            size_t idx = n->tensors[t].offset + rng_below(&r, (uint32_t)n->tensors[t].numel);
            float v = n->params[idx];
            float h = 1e-3f * fmaxf(1.0f, fabsf(v));
            double f0 = loss_at(n, x, y, idx, v);
            double fp = loss_at(n, x, y, idx, v + h), fm = loss_at(n, x, y, idx, v - h);
            double fwd = (fp - f0) / h, bwd = (f0 - fm) / h, num = (fp - fm) / (2.0 * h);
            /* A ReLU kink inside [v-h, v+h] makes the one-sided slopes disagree: the
             * central difference means nothing there, so draw another element. */
            if (fabs(fwd - bwd) > 0.01 * fmax(fabs(fwd), fabs(bwd)) + 1e-3) {
                assert_true(++skipped < 50);
                continue;
            }
            double ana = g[idx];
            /* float32 rounding through ~20 layers is noise of ~1e-6 in the loss, so about
             * 1e-3 in a difference quotient; a wiring error is off by far more. */
            double tol = 0.05 * fmax(fabs(num), fabs(ana)) + 0.01;
            if (getenv("GC_VERBOSE"))
                print_message("%s[%zu]: numeric %g vs analytic %g\n", probe[p],
                              idx - n->tensors[t].offset, num, ana);
            if (fabs(num - ana) > tol)
                fail_msg("%s[%zu]: numeric %g vs analytic %g", probe[p],
                         idx - n->tensors[t].offset, num, ana);
            checked++;
            k++;
        }
    }
    assert_int_equal(checked, 27);
    free(g);
    free(x);
    net_destroy(n);
}

static void frozen_body_gets_no_gradient_and_keeps_its_statistics(void **state)
{
    (void)state;
    enum { B = 4, S = 12 };
    net *n = build("resnet_small", HEAD_FASTAI, 1, 3, 0.25f, 9);
    assert_int_equal(net_set_batch(n, B, S, S), 0);
    assert_int_equal(net_freeze_to(n, 2), 0);
    assert_int_equal(net_freeze_to(n, 4), -EINVAL);
    float *x = malloc(sizeof(float) * B * S * S);
    fill(x, B * S * S, 2);
    int32_t y[B] = {0, 1, 2, 1};
    float *buf_before = malloc(n->n_buffers * sizeof(float));
    memcpy(buf_before, n->buffers, n->n_buffers * sizeof(float));
    memset(n->grads, 0, n->n_params * sizeof(float));
    net_forward(n, x, 1);
    net_loss(n, y, NULL);
    net_backward(n, y, NULL);
    int head_has_grad = 0;
    for (int t = 0; t < n->n_tensors; t++) {
        const net_tensor *nt = &n->tensors[t];
        const float *d = (nt->is_buffer ? buf_before : n->grads) + nt->offset;
        const float *now = (nt->is_buffer ? n->buffers : n->grads) + nt->offset;
        if (nt->group < 2 && nt->is_buffer) {
            assert_memory_equal(d, now, nt->numel * sizeof(float)); /* eval-mode BN */
        } else if (nt->group < 2) {
            for (size_t i = 0; i < nt->numel; i++)
                assert_true(now[i] == 0.0f);
        } else if (!nt->is_buffer) {
            for (size_t i = 0; i < nt->numel; i++)
                head_has_grad |= now[i] != 0.0f;
        }
    }
    assert_true(head_has_grad);
    /* Unfreezing gives the body gradients again. */
    assert_int_equal(net_freeze_to(n, 0), 0);
    net_zero_grad(n);
    net_forward(n, x, 1);
    net_loss(n, y, NULL);
    net_backward(n, y, NULL);
    const float *g0 = n->grads + n->tensors[net_find(n, "conv1.weight")].offset;
    int body_has_grad = 0;
    for (int i = 0; i < 32; i++)
        body_has_grad |= g0[i] != 0.0f;
    assert_true(body_has_grad);
    free(buf_before);
    free(x);
    net_destroy(n);
}

static void activations_and_gradients_share_one_slab(void **state)
{
    (void)state;
    net *n = build("resnet18", HEAD_FASTAI, 3, 10, 0.25f, 1);
    assert_int_equal(net_set_batch(n, 2, 64, 64), 0);
    size_t activations = 0, scratch = 0;
    for (int v = 0; v < n->n_values; v++)
        activations += n->value_numel[v];
    for (int i = 0; i < n->n_nodes; i++)
        if (n->nodes[i].kind == NODE_CONV && conv2d_workspace_floats(&n->nodes[i].conv) > scratch)
            scratch = conv2d_workspace_floats(&n->nodes[i].conv);
    /* In-place ReLU/add/dropout leave fewer buffers than nodes, and the liveness plan
     * fits every activation, gradient and scratch buffer of a training step into less
     * than the activations alone would take unshared next to the largest scratch. */
    assert_true(n->n_values < n->n_nodes);
    size_t trained = n->slab_floats;
    if (getenv("GC_VERBOSE"))
        print_message("values %d nodes %d activations %zu slab %zu\n", n->n_values,
                      n->n_nodes, activations, trained);
    assert_true(trained < activations + scratch);
    /* Keeping every value unshared needs more than all activations. */
    assert_int_equal(net_keep_values(n, 1), 0);
    assert_true(n->slab_floats > activations);
    assert_int_equal(net_keep_values(n, 0), 0);
    /* A smaller size after a larger one reuses the buffers; a bad size is refused. */
    assert_int_equal(net_set_batch(n, 2, 32, 32), 0);
    assert_int_equal(net_set_batch(n, 0, 32, 32), -EINVAL);
    net_destroy(n);
}

/* Evaluation runs no backward, so its plan holds each convolution's forward scratch only.
 * oneDNN's bf16 backward needs far more than its forward (the weight gradient in float32,
 * its columns, the output gradient in bf16): at a small batch the widest convolution's
 * backward scratch alone is more than all that evaluation holds at any step. */
static void evaluation_holds_forward_scratch_only(void **state)
{
    (void)state;
    if (!precision_bf16_supported())
        skip();
    net *n = build("resnet18", HEAD_PLAIN, 3, 10, 0.25f, 1);
    assert_int_equal(net_set_precision(n, PRECISION_BF16), 0);
    assert_int_equal(net_set_bf16_kernels(n, BF16_KERNELS_ONEDNN), 0);
    assert_int_equal(net_set_batch(n, 8, 64, 64), 0);
    size_t widest = 0;
    for (int i = 0; i < n->n_nodes; i++) {
        if (n->nodes[i].kind != NODE_CONV)
            continue;
        const conv2d_shape *s = &n->nodes[i].conv;
        assert_true(conv2d_forward_workspace_floats(s) <= conv2d_workspace_floats(s));
        if (conv2d_workspace_floats(s) > widest)
            widest = conv2d_workspace_floats(s);
    }
    int rc = 0;
    size_t eval = net_plan_size(n, 0, &rc);
    assert_int_equal(rc, 0);
    if (getenv("GC_VERBOSE"))
        print_message("eval plan %zu floats; largest scratch %zu\n", eval, widest);
    assert_true(eval < widest);
    net_destroy(n);
}

static void a_batch_too_big_for_memory_is_refused_before_allocating(void **state)
{
    (void)state;
    net *n = build("resnet34", HEAD_FASTAI, 3, 10, 0.25f, 1);
    assert_int_equal(net_set_batch(n, 2, 32, 32), 0);
    /* 1024 images of 448 px: each activation buffer alone fits in memory (13 GB at most,
     * so malloc would succeed under overcommit), all of them together are hundreds of GB:
     * refused up front. */
    assert_true(net_memory_limit() < 100e9);
    assert_int_equal(net_set_batch(n, 1024, 448, 448), -ENOMEM);
    /* The net is usable again at a size that fits. */
    assert_int_equal(net_set_batch(n, 2, 32, 32), 0);
    float x[2 * 32 * 32 * 3] = {0};
    int32_t y[2] = {1, 2};
    net_forward(n, x, 1);
    assert_true(isfinite(net_loss(n, y, NULL)));
    net_destroy(n);
}

int main(void)
{
    blas_startup(NULL, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(torchvision_parameter_counts_and_names),
        cmocka_unit_test(bad_specs_are_refused_with_a_reason),
        cmocka_unit_test(same_seed_same_numbers_bit_for_bit),
        cmocka_unit_test(bf16_on_onednn_follows_fp32_within_its_rounding),
        cmocka_unit_test(bf16_on_rounded_fp32_follows_fp32_within_its_rounding),
        cmocka_unit_test(bf16_kernels_are_chosen_once_per_net),
        cmocka_unit_test(finite_differences_through_a_residual_net),
        cmocka_unit_test(frozen_body_gets_no_gradient_and_keeps_its_statistics),
        cmocka_unit_test(activations_and_gradients_share_one_slab),
        cmocka_unit_test(evaluation_holds_forward_scratch_only),
        cmocka_unit_test(a_batch_too_big_for_memory_is_refused_before_allocating),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
