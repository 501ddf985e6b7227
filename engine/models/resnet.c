/* resnet.c: torchvision's resnet18/resnet34 and the small 3-stage ResNet for 28-64 px
 * inputs (with ReLU, or SiLU in resnet_small_silu), as net.h graphs with torchvision
 * parameter names, plus model_create. */
#include "models.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* name = prefix + suffix; module paths are far shorter than NET_NAME_MAX. */
static void join(char *name, const char *prefix, const char *suffix)
{
    if (snprintf(name, NET_NAME_MAX, "%s%s", prefix, suffix) >= NET_NAME_MAX)
        name[NET_NAME_MAX - 1] = 0;
}

/* The activation: SiLU when silu, else ReLU. */
static int act(net *n, int x, int silu, int group)
{
    return silu ? net_silu(n, x, group) : net_relu(n, x, group);
}

/* torchvision BasicBlock: conv3x3(stride)-bn-act-conv3x3-bn, plus identity or a 1x1
 * conv + bn downsample, then add and act. Returns the block's output node. */
static int basic_block(net *n, int x, const char *prefix, int planes, int stride, int silu,
                       int group)
{
    char name[NET_NAME_MAX];
    int c_in = n->nodes[x].c;
    join(name, prefix, ".conv1");
    int h = net_conv(n, x, name, planes, 3, stride, 1, 0, group);
    join(name, prefix, ".bn1");
    h = h < 0 ? h : net_bn(n, h, name, group);
    h = h < 0 ? h : act(n, h, silu, group);
    join(name, prefix, ".conv2");
    h = h < 0 ? h : net_conv(n, h, name, planes, 3, 1, 1, 0, group);
    join(name, prefix, ".bn2");
    h = h < 0 ? h : net_bn(n, h, name, group);
    if (h < 0)
        return h;
    int id = x;
    if (stride != 1 || c_in != planes) {
        join(name, prefix, ".downsample.0");
        id = net_conv(n, x, name, planes, 1, stride, 0, 0, group);
        join(name, prefix, ".downsample.1");
        id = id < 0 ? id : net_bn(n, id, name, group);
        if (id < 0)
            return id;
    }
    h = net_add(n, h, id, group);
    return h < 0 ? h : act(n, h, silu, group);
}

/* A stage ("layerK") of n_blocks blocks; the first may stride. */
static int stage(net *n, int x, int k, int n_blocks, int planes, int stride, int silu,
                 int group)
{
    char prefix[NET_NAME_MAX];
    for (int b = 0; b < n_blocks && x >= 0; b++) {
        snprintf(prefix, sizeof(prefix), "layer%d.%d", k, b);
        x = basic_block(n, x, prefix, planes, b == 0 ? stride : 1, silu, group);
    }
    return x;
}

/* torchvision resnet18/34 body; groups: G0 = stem, layer1, layer2; G1 = layer3, layer4. */
static int resnet_imagenet(net *n, int x, const int blocks[4])
{
    x = net_conv(n, x, "conv1", 64, 7, 2, 3, 0, 0);
    x = x < 0 ? x : net_bn(n, x, "bn1", 0);
    x = x < 0 ? x : net_relu(n, x, 0);
    x = x < 0 ? x : net_maxpool(n, x, 3, 2, 1, 0);
    x = x < 0 ? x : stage(n, x, 1, blocks[0], 64, 1, 0, 0);
    x = x < 0 ? x : stage(n, x, 2, blocks[1], 128, 2, 0, 0);
    x = x < 0 ? x : stage(n, x, 3, blocks[2], 256, 2, 0, 1);
    x = x < 0 ? x : stage(n, x, 4, blocks[3], 512, 2, 0, 1);
    return x;
}

/* resnet_small: stem conv3x3 (w, stride 1) + bn + act, no max pool; stages of two
 * blocks at widths w, 2w, 4w (w 32 by default), striding 2 at stages 2 and 3.
 * G0 = stem + layer1. */
static int resnet_small(net *n, int x, int w, int silu)
{
    x = net_conv(n, x, "conv1", w, 3, 1, 1, 0, 0);
    x = x < 0 ? x : net_bn(n, x, "bn1", 0);
    x = x < 0 ? x : act(n, x, silu, 0);
    x = x < 0 ? x : stage(n, x, 1, 2, w, 1, silu, 0);
    x = x < 0 ? x : stage(n, x, 2, 2, 2 * w, 2, silu, 1);
    x = x < 0 ? x : stage(n, x, 3, 2, 4 * w, 2, silu, 1);
    return x;
}

static const char *const arch_names[] = {"resnet18", "resnet34", "resnet_small",
                                         "resnet_small_silu", NULL};

int model_arch_known(const char *arch)
{
    for (int i = 0; arch && arch_names[i]; i++)
        if (strcmp(arch, arch_names[i]) == 0)
            return 1;
    return 0;
}

int model_arch_small(const char *arch)
{
    return arch && (strcmp(arch, "resnet_small") == 0 || strcmp(arch, "resnet_small_silu") == 0);
}

void model_spec_defaults(model_spec *s)
{
    memset(s, 0, sizeof(*s));
    s->arch = "resnet_small";
    s->c_in = 3;
    s->n_classes = 2;
    s->head = HEAD_FASTAI;
    s->ps[0] = 0.25f;
    s->ps[1] = 0.5f;
    s->n_xtra_fc = 1;
    s->xtra_fc[0] = 512;
}

int model_create(net **out, const model_spec *s, char *err, size_t errlen)
{
    *out = NULL;
    if (!model_arch_known(s->arch)) {
        snprintf(err, errlen, "arch: unknown architecture '%s' (resnet18, resnet34, "
                 "resnet_small, resnet_small_silu)", s->arch ? s->arch : "(null)");
        return -EINVAL;
    }
    if (s->c_in != 1 && s->c_in != 3) {
        snprintf(err, errlen, "c_in: %d channels; 1 or 3 are supported", s->c_in);
        return -EINVAL;
    }
    if (!(s->label_smoothing >= 0.0f && s->label_smoothing < 1.0f) ||
        (s->multi_label && s->label_smoothing != 0.0f)) {
        snprintf(err, errlen, "label_smoothing: %g; must be in [0, 1), and 0 for multi-label "
                 "data", s->label_smoothing);
        return -EINVAL;
    }
    int silu = strcmp(s->arch, "resnet_small_silu") == 0;
    int small = model_arch_small(s->arch);
    if (s->width != 0 && (!small || s->width < 8 || s->width > MODEL_SMALL_WIDTH_MAX)) {
        snprintf(err, errlen, "width: %d; resnet_small(_silu) takes 8 to %d (default "
                 "%d), other architectures none", s->width, MODEL_SMALL_WIDTH_MAX,
                 MODEL_SMALL_WIDTH);
        return -EINVAL;
    }
    if (s->n_classes < 1 || s->n_classes > 100000) {
        snprintf(err, errlen, "n_classes: %d is out of range", s->n_classes);
        return -EINVAL;
    }
    net *n = net_create();
    if (!n) {
        snprintf(err, errlen, "out of memory building %s", s->arch);
        return -ENOMEM;
    }
    n->multi_label = s->multi_label;
    n->label_smoothing = s->label_smoothing;
    int x = net_input(n, s->c_in);
    if (small) {
        x = x < 0 ? x : resnet_small(n, x, s->width ? s->width : MODEL_SMALL_WIDTH, silu);
    } else {
        static const int b18[4] = {2, 2, 2, 2}, b34[4] = {3, 4, 6, 3};
        x = x < 0 ? x : resnet_imagenet(n, x, strcmp(s->arch, "resnet18") == 0 ? b18 : b34);
    }
    int rc = x;
    if (rc >= 0)
        rc = model_add_head(n, x, s, err, errlen);
    else
        snprintf(err, errlen, "building %s failed (%d)", s->arch, rc);
    if (rc >= 0) {
        rc = net_finalize(n, s->seed);
        if (rc < 0)
            snprintf(err, errlen, "out of memory initialising %s", s->arch);
    }
    if (rc < 0) {
        net_destroy(n);
        return rc;
    }
    *out = n;
    return 0;
}
