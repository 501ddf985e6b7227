/* net.c: the layer graph: building, initialisation, batch shapes, forward, backward,
 * freezing. Owns every buffer a net points to; where activations live is net_plan.c's. */
#include "net.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_dist.h"
#include "net_plan.h"
#include "rng.h"

#define ALIGN 64

static void *aligned_floats(size_t n)
{
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    return aligned_alloc(ALIGN, bytes);
}

net *net_create(void)
{
    net *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->bn_momentum = 0.1f;
    n->bn_eps = 1e-5f;
    return n;
}

static void free_batch_state(net *n)
{
    free(n->values);
    free(n->value_numel);
    free(n->dvalues);
    net_pages_free(n->slab, n->slab_floats);
    net_plan_reset(n);
    free(n->probs);
    n->values = NULL;
    n->value_numel = NULL;
    n->dvalues = NULL;
    n->slab = NULL;
    n->slab_floats = 0;
    n->probs = NULL;
    for (int i = 0; i < n->n_nodes; i++) {
        free(n->nodes[i].argmax);
        free(n->nodes[i].mask);
        n->nodes[i].argmax = NULL;
        n->nodes[i].mask = NULL;
    }
    n->batch = n->in_h = n->in_w = 0;
}

void net_destroy(net *n)
{
    if (!n)
        return;
    free_batch_state(n);
    for (int i = 0; i < n->n_nodes; i++) {
        free(n->nodes[i].save_mean);
        free(n->nodes[i].save_rstd);
    }
    free(n->nodes);
    free(n->tensors);
    free(n->value_creator);
    free(n->params);
    net_plan_free(n);
    net_pages_free(n->grads, n->n_params);
    free(n->buffers);
    free(n);
}

/* ---- building ------------------------------------------------------------------------- */

static int add_node(net *n, node_kind kind, int in0, int in1, int group)
{
    if (n->params)
        return -EBUSY; /* finalized */
    if (in0 >= n->n_nodes || in1 >= n->n_nodes || group < 0 || group >= NET_MAX_GROUPS)
        return -EINVAL;
    if (kind != NODE_INPUT && in0 < 0)
        return -EINVAL;
    if (n->n_nodes == n->cap_nodes) {
        int cap = n->cap_nodes ? n->cap_nodes * 2 : 64;
        node *nn = realloc(n->nodes, (size_t)cap * sizeof(*nn));
        if (!nn)
            return -ENOMEM;
        n->nodes = nn;
        n->cap_nodes = cap;
    }
    int id = n->n_nodes++;
    node *d = &n->nodes[id];
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    d->in[0] = in0;
    d->in[1] = in1;
    d->group = group;
    d->p_w = d->p_b = d->b_mean = d->b_var = -1;
    d->zero_dv[0] = d->zero_dv[1] = -1;
    if (in0 >= 0) {
        d->c = n->nodes[in0].c;
        n->nodes[in0].n_consumers++;
    }
    if (in1 >= 0)
        n->nodes[in1].n_consumers++;
    if (group + 1 > n->n_groups)
        n->n_groups = group + 1;
    return id;
}

static int add_tensor(net *n, const char *module, const char *suffix, int ndim,
                      const int *shape, int group, int is_buffer, tensor_init init)
{
    if (n->n_tensors == n->cap_tensors) {
        int cap = n->cap_tensors ? n->cap_tensors * 2 : 64;
        net_tensor *nt = realloc(n->tensors, (size_t)cap * sizeof(*nt));
        if (!nt)
            return -ENOMEM;
        n->tensors = nt;
        n->cap_tensors = cap;
    }
    net_tensor *t = &n->tensors[n->n_tensors];
    memset(t, 0, sizeof(*t));
    int len = snprintf(t->name, sizeof(t->name), "%s.%s", module, suffix);
    if (len < 0 || (size_t)len >= sizeof(t->name))
        return -ENAMETOOLONG;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    t->group = group;
    t->is_buffer = is_buffer;
    t->init = init;
    if (is_buffer) {
        t->offset = n->n_buffers;
        n->n_buffers += t->numel;
    } else {
        t->offset = n->n_params;
        n->n_params += t->numel;
    }
    return n->n_tensors++;
}

int net_input(net *n, int c)
{
    if (n->n_nodes != 0 || c <= 0)
        return -EINVAL;
    int id = add_node(n, NODE_INPUT, -1, -1, 0);
    if (id >= 0)
        n->nodes[id].c = c;
    return id;
}

int net_conv(net *n, int in, const char *name, int c_out, int k, int stride, int pad,
             int bias, int group)
{
    if (c_out <= 0 || k <= 0 || stride <= 0 || pad < 0)
        return -EINVAL;
    int id = add_node(n, NODE_CONV, in, -1, group);
    if (id < 0)
        return id;
    node *d = &n->nodes[id];
    int c_in = d->c;
    d->c = c_out;
    d->k = k;
    d->stride = stride;
    d->pad = pad;
    int ws[4] = {c_out, c_in, k, k};
    int r = add_tensor(n, name, "weight", 4, ws, group, 0, INIT_KAIMING_FAN_OUT);
    if (r < 0)
        return r;
    n->tensors[r].fan_in = c_in * k * k;
    n->tensors[r].fan_out = c_out * k * k;
    n->nodes[id].p_w = r;
    if (bias) {
        int bs[1] = {c_out};
        r = add_tensor(n, name, "bias", 1, bs, group, 0, INIT_ZERO);
        if (r < 0)
            return r;
        n->nodes[id].p_b = r;
    }
    return id;
}

int net_bn(net *n, int in, const char *name, int group)
{
    int id = add_node(n, NODE_BN, in, -1, group);
    if (id < 0)
        return id;
    int c = n->nodes[id].c;
    int cs[1] = {c};
    int w = add_tensor(n, name, "weight", 1, cs, group, 0, INIT_ONE);
    int b = w < 0 ? w : add_tensor(n, name, "bias", 1, cs, group, 0, INIT_ZERO);
    int m = b < 0 ? b : add_tensor(n, name, "running_mean", 1, cs, group, 1, INIT_ZERO);
    int v = m < 0 ? m : add_tensor(n, name, "running_var", 1, cs, group, 1, INIT_ONE);
    if (v < 0)
        return v;
    n->tensors[w].is_bn = n->tensors[b].is_bn = 1;
    node *d = &n->nodes[id];
    d->p_w = w;
    d->p_b = b;
    d->b_mean = m;
    d->b_var = v;
    d->save_mean = malloc((size_t)c * sizeof(float));
    d->save_rstd = malloc((size_t)c * sizeof(float));
    if (!d->save_mean || !d->save_rstd)
        return -ENOMEM;
    return id;
}

int net_relu(net *n, int in, int group) { return add_node(n, NODE_RELU, in, -1, group); }

int net_silu(net *n, int in, int group) { return add_node(n, NODE_SILU, in, -1, group); }

int net_maxpool(net *n, int in, int k, int stride, int pad, int group)
{
    if (k <= 0 || stride <= 0 || pad < 0 || 2 * pad > k)
        return -EINVAL;
    int id = add_node(n, NODE_MAXPOOL, in, -1, group);
    if (id >= 0) {
        n->nodes[id].k = k;
        n->nodes[id].stride = stride;
        n->nodes[id].pad = pad;
    }
    return id;
}

int net_add(net *n, int a, int b, int group)
{
    if (b < 0 || b >= n->n_nodes || a < 0 || a >= n->n_nodes ||
        n->nodes[a].c != n->nodes[b].c)
        return -EINVAL;
    return add_node(n, NODE_ADD, a, b, group);
}

int net_avgpool(net *n, int in, int group) { return add_node(n, NODE_AVGPOOL, in, -1, group); }

int net_concatpool(net *n, int in, int group)
{
    int id = add_node(n, NODE_CONCATPOOL, in, -1, group);
    if (id >= 0)
        n->nodes[id].c *= 2;
    return id;
}

int net_dropout(net *n, int in, float p, int group)
{
    if (!(p >= 0.0f && p < 1.0f))
        return -EINVAL;
    int id = add_node(n, NODE_DROPOUT, in, -1, group);
    if (id >= 0)
        n->nodes[id].p = p;
    return id;
}

int net_linear(net *n, int in, const char *name, int out_f, int group)
{
    if (out_f <= 0)
        return -EINVAL;
    int id = add_node(n, NODE_LINEAR, in, -1, group);
    if (id < 0)
        return id;
    int in_f = n->nodes[id].c;
    n->nodes[id].c = out_f;
    int ws[2] = {out_f, in_f};
    int w = add_tensor(n, name, "weight", 2, ws, group, 0, INIT_KAIMING_FAN_IN);
    if (w < 0)
        return w;
    n->tensors[w].fan_in = in_f;
    n->tensors[w].fan_out = out_f;
    int bs[1] = {out_f};
    int b = add_tensor(n, name, "bias", 1, bs, group, 0, INIT_ZERO);
    if (b < 0)
        return b;
    n->tensors[b].fan_in = in_f;
    n->nodes[id].p_w = w;
    n->nodes[id].p_b = b;
    return id;
}

/* In-place nodes write into their (first) input's buffer. Allowed only when the input has
 * no other reader and its own backward does not read its output (ReLU's does). */
static int is_inplace_kind(node_kind k)
{
    return k == NODE_RELU || k == NODE_ADD || k == NODE_DROPOUT;
}

/* A max pool right after an in-place ReLU that only it reads, whose own output nothing
 * rewrites, does the ReLU's backward in its own (maxpool2d_backward_relu): the ReLU's
 * output then needs no keeping (nor rebuilding) for backward. */
static void mark_relu_in_pool(net *n)
{
    for (int i = 2; i < n->n_nodes; i++) {
        node *d = &n->nodes[i];
        const node *r = &n->nodes[i - 1];
        d->relu_in_pool = 0;
        if (d->kind != NODE_MAXPOOL || d->in[0] != i - 1 || r->kind != NODE_RELU ||
            r->n_consumers != 1 || r->value != n->nodes[r->in[0]].value)
            continue;
        int rewritten = 0;
        for (int k = i + 1; k < n->n_nodes; k++)
            rewritten |= n->nodes[k].value == d->value;
        d->relu_in_pool = !rewritten;
    }
}

static void init_tensor(net *n, net_tensor *t, uint64_t *rng)
{
    float *p = (t->is_buffer ? n->buffers : n->params) + t->offset;
    switch (t->init) {
    case INIT_ZERO:
        memset(p, 0, t->numel * sizeof(float));
        break;
    case INIT_ONE:
        for (size_t i = 0; i < t->numel; i++)
            p[i] = 1.0f;
        break;
    case INIT_KAIMING_FAN_OUT:
    case INIT_KAIMING_FAN_IN: {
        int fan = t->init == INIT_KAIMING_FAN_OUT ? t->fan_out : t->fan_in;
        float std = sqrtf(2.0f / (float)(fan > 0 ? fan : 1));
        for (size_t i = 0; i < t->numel; i++)
            p[i] = std * rng_normal(rng);
        break;
    }
    case INIT_UNIFORM_FAN_IN: {
        float bound = 1.0f / sqrtf((float)(t->fan_in > 0 ? t->fan_in : 1));
        for (size_t i = 0; i < t->numel; i++)
            p[i] = (2.0f * rng_uniform(rng) - 1.0f) * bound;
        break;
    }
    }
}

/* Whether every parameter is the weight or bias of exactly one node, the only writer of
 * its gradient (net_backward_fused updates it after that node's backward). The adders
 * build nets so; this keeps it so. */
static int params_owned_once(const net *n)
{
    for (int t = 0; t < n->n_tensors; t++) {
        int owners = 0;
        for (int i = 0; i < n->n_nodes; i++)
            owners += (n->nodes[i].p_w == t) + (n->nodes[i].p_b == t);
        if (owners != (n->tensors[t].is_buffer ? 0 : 1))
            return 0;
    }
    return 1;
}

int net_finalize(net *n, uint64_t seed)
{
    if (n->params || n->n_nodes < 2 || !params_owned_once(n))
        return -EINVAL;
    /* Groups must not decrease along the forward order: backward stops at the first
     * frozen node. */
    for (int i = 1; i < n->n_nodes; i++)
        if (n->nodes[i].group < n->nodes[i - 1].group)
            return -EINVAL;
    n->value_creator = malloc((size_t)n->n_nodes * sizeof(int));
    if (!n->value_creator)
        return -ENOMEM;
    n->n_values = 0;
    for (int i = 0; i < n->n_nodes; i++) {
        node *d = &n->nodes[i];
        const node *src = d->in[0] >= 0 ? &n->nodes[d->in[0]] : NULL;
        if (is_inplace_kind(d->kind) && src && src->n_consumers == 1 &&
            src->kind != NODE_RELU && src->kind != NODE_INPUT) {
            d->value = src->value;
        } else {
            d->value = n->n_values;
            n->value_creator[n->n_values++] = i;
        }
    }
    mark_relu_in_pool(n);
    n->n_out = n->nodes[n->n_nodes - 1].c;
    n->params = aligned_floats(n->n_params);
    n->grads = net_pages_alloc(n->n_params); /* zero pages, resident once written */
    n->buffers = aligned_floats(n->n_buffers);
    if (!n->params || !n->grads || !n->buffers)
        return -ENOMEM;
    uint64_t rng = rng_derive(seed, 1);
    for (int t = 0; t < n->n_tensors; t++)
        init_tensor(n, &n->tensors[t], &rng);
    n->rng = rng_derive(seed, 2);
    return 0;
}

/* ---- memory planning -------------------------------------------------------------------- */

double net_memory_limit(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0)
        return 1e18;
    return 0.75 * (double)pages * (double)page;
}

static int needs_grad(const net *n, int j)
{
    return j >= 0 && j > n->start_node && n->nodes[j].kind != NODE_INPUT &&
           n->nodes[j].group >= n->freeze_to;
}

/* Plans (or takes from the cache) training and eval for the current shape and freezing,
 * and sizes the slab for the larger, so that switching between them allocates nothing. */
static int plan_both(net *n)
{
    int rc_t, rc_e;
    size_t need = net_plan_size(n, 1, &rc_t), e = net_plan_size(n, 0, &rc_e);
    if (rc_t < 0 || rc_e < 0)
        return -ENOMEM;
    if (e > need)
        need = e;
    if (need > n->slab_floats) {
        net_pages_free(n->slab, n->slab_floats);
        n->slab_floats = 0;
        n->slab = net_pages_alloc(need);
        if (!n->slab)
            return -ENOMEM;
        n->slab_floats = need;
    }
    return 0;
}

/* The per-value arrays, allocated once for the net's values. */
static int batch_arrays_alloc(net *n)
{
    int nv = n->n_values;
    if (n->values)
        return 0;
    n->values = calloc((size_t)nv, sizeof(float *));
    n->value_numel = calloc((size_t)nv, sizeof(size_t));
    n->dvalues = calloc((size_t)nv, sizeof(float *));
    return n->values && n->value_numel && n->dvalues ? 0 : -ENOMEM;
}

/* Node d's output size (and its conv or pool shape) for a batch of input h x w; -EINVAL
 * when the size does not fit the network. */
static int node_shape(const net *n, node *d, int batch, int h, int w)
{
    const node *src = d->in[0] >= 0 ? &n->nodes[d->in[0]] : NULL;
    switch (d->kind) {
    case NODE_INPUT:
        d->h = h;
        d->w = w;
        break;
    case NODE_CONV:
        conv2d_shape_init(&d->conv, batch, src->h, src->w, src->c, d->c, d->k, d->stride,
                          d->pad);
        d->conv.precision = n->precision;
        d->conv.bf16_kernels = n->bf16_kernels;
        d->h = d->conv.h_out;
        d->w = d->conv.w_out;
        break;
    case NODE_MAXPOOL:
        pool2d_shape_init(&d->pool, batch, src->h, src->w, src->c, d->k, d->stride, d->pad);
        d->h = d->pool.h_out;
        d->w = d->pool.w_out;
        break;
    case NODE_ADD:
        if (n->nodes[d->in[1]].h != src->h || n->nodes[d->in[1]].w != src->w)
            return -EINVAL;
        d->h = src->h;
        d->w = src->w;
        break;
    case NODE_AVGPOOL:
    case NODE_CONCATPOOL:
        d->h = d->w = 1;
        break;
    case NODE_LINEAR:
        if (src->h != 1 || src->w != 1)
            return -EINVAL;
        /* Outside fp32 a linear layer runs as a 1x1 convolution on 1x1 images: the
         * same product with (out, in) weights, on the precision's backend. */
        conv2d_shape_init(&d->conv, batch, 1, 1, src->c, d->c, 1, 1, 0);
        d->conv.precision = n->precision;
        d->conv.bf16_kernels = n->bf16_kernels;
        d->h = d->w = 1;
        break;
    default:
        d->h = src->h;
        d->w = src->w;
        break;
    }
    return d->h <= 0 || d->w <= 0 ? -EINVAL : 0;
}

/* Every node's shape, and the floats of each value (the largest of the nodes writing it)
 * into n->value_numel. */
static int batch_shapes(net *n, int batch, int h, int w)
{
    int nv = n->n_values;
    size_t *numel = calloc((size_t)nv, sizeof(size_t));
    if (!numel)
        return -ENOMEM;
    for (int i = 0; i < n->n_nodes; i++) {
        node *d = &n->nodes[i];
        if (node_shape(n, d, batch, h, w) < 0) {
            free(numel);
            return -EINVAL;
        }
        size_t cnt = (size_t)batch * d->h * d->w * d->c;
        if (cnt > numel[d->value])
            numel[d->value] = cnt;
    }
    memcpy(n->value_numel, numel, (size_t)nv * sizeof(size_t));
    free(numel);
    return 0;
}

/* *fits: whether the memory plans of the new shapes fit net_memory_limit(). -ENOMEM when
 * a plan cannot be made. */
static int batch_plan_fits(net *n, int *fits)
{
    int rc_t, rc_e;
    net_plan_reset(n);
    double need = (double)net_plan_size(n, 1, &rc_t);
    double e = (double)net_plan_size(n, 0, &rc_e);
    if (rc_t < 0 || rc_e < 0)
        return -ENOMEM;
    *fits = (e > need ? e : need) * sizeof(float) <= net_memory_limit();
    return 0;
}

int net_memory_need(net *n, int batch, int h, int w, int training, double *bytes)
{
    int rc, rc_p = 0, saved = n->freeze_to;
    double extra = 0;
    size_t plan = 0;

    *bytes = 0;
    if (n->batch || batch <= 0 || h <= 0 || w <= 0)
        return -EINVAL;
    rc = batch_arrays_alloc(n);
    if (rc == 0)
        rc = batch_shapes(n, batch, h, w);
    if (rc == 0) {
        /* Training is planned with every group trainable: an unfreeze may come later. */
        n->freeze_to = training ? 0 : saved;
        net_plan_reset(n);
        plan = net_plan_size(n, training, &rc_p);
        n->freeze_to = saved;
        rc = rc_p < 0 ? -ENOMEM : 0;
    }
    for (int i = 0; rc == 0 && i < n->n_nodes; i++) {
        const node *d = &n->nodes[i];
        double cnt = (double)batch * d->h * d->w * d->c;
        if (d->kind == NODE_MAXPOOL || d->kind == NODE_CONCATPOOL)
            extra += cnt * sizeof(int32_t);
        else if (d->kind == NODE_DROPOUT)
            extra += cnt * sizeof(float);
    }
    extra += (double)batch * n->n_out * sizeof(float);
    free_batch_state(n);
    if (rc == 0)
        *bytes = (double)plan * sizeof(float) + extra;
    return rc;
}

/* The per-batch buffers of the nodes (pool indices, dropout masks) and of the loss. */
static int batch_buffers_alloc(net *n, int batch)
{
    for (int i = 0; i < n->n_nodes; i++) {
        node *d = &n->nodes[i];
        size_t cnt = (size_t)batch * d->h * d->w * d->c;
        if (d->kind == NODE_MAXPOOL || d->kind == NODE_CONCATPOOL) {
            free(d->argmax);
            d->argmax = malloc((cnt ? cnt : 1) * sizeof(int32_t));
            if (!d->argmax)
                return -ENOMEM;
        } else if (d->kind == NODE_DROPOUT) {
            free(d->mask);
            d->mask = aligned_floats(cnt);
            if (!d->mask)
                return -ENOMEM;
        }
    }
    free(n->probs);
    n->probs = aligned_floats((size_t)batch * n->n_out);
    return n->probs ? 0 : -ENOMEM;
}

/* The same batch shape again: redo the shapes and plans (scratch sizes change). */
static int replan(net *n)
{
    int batch = n->batch, h = n->in_h, w = n->in_w;
    if (batch <= 0)
        return 0;
    n->batch = 0;
    return net_set_batch(n, batch, h, w);
}

int net_set_precision(net *n, precision p)
{
    if (p == PRECISION_BF16 && !precision_bf16_supported())
        return -ENOTSUP;
    if (p == PRECISION_BF16 && n->bf16_kernels == BF16_KERNELS_AUTO)
        n->bf16_kernels = bf16_kernels_choice();
    if (p == n->precision)
        return 0;
    n->precision = p;
    return replan(n);
}

int net_set_bf16_kernels(net *n, bf16_kernels k)
{
    if (k != BF16_KERNELS_ONEDNN && k != BF16_KERNELS_FP32)
        return -EINVAL;
    if (k == n->bf16_kernels)
        return 0;
    n->bf16_kernels = k;
    return n->precision == PRECISION_BF16 ? replan(n) : 0;
}

int net_set_batch(net *n, int batch, int h, int w)
{
    if (!n->params || batch <= 0 || h <= 0 || w <= 0)
        return -EINVAL;
    if (n->batch == batch && n->in_h == h && n->in_w == w)
        return 0;
    if (batch_arrays_alloc(n) < 0)
        goto out_nomem;
    int rc = batch_shapes(n, batch, h, w);
    if (rc == -ENOMEM)
        goto out_nomem;
    if (rc < 0) {
        n->batch = n->in_h = n->in_w = 0; /* node shapes now describe the refused one */
        return -EINVAL;
    }
    /* Refuse a batch shape whose memory plan cannot fit, before touching any memory:
     * with overcommit the allocations would succeed and the OOM killer end the process
     * on first use. */
    int fits;
    if (batch_plan_fits(n, &fits) < 0)
        goto out_nomem;
    if (!fits) {
        net_plan_reset(n);
        n->batch = n->in_h = n->in_w = 0; /* node shapes now describe the refused one */
        return -ENOMEM;
    }
    if (batch_buffers_alloc(n, batch) < 0)
        goto out_nomem;
    n->batch = batch;
    n->in_h = h;
    n->in_w = w;
    n->start_node = 0;
    if (plan_both(n) < 0)
        goto out_nomem;
    return 0;
out_nomem:
    free_batch_state(n);
    return -ENOMEM;
}

/* ---- forward ---------------------------------------------------------------------------- */

static size_t node_numel(const net *n, const node *d)
{
    return (size_t)n->batch * d->h * d->w * d->c;
}

static float *pdata(const net *n, int t) { return t >= 0 ? n->params + n->tensors[t].offset : NULL; }
static float *bdata(const net *n, int t) { return n->buffers + n->tensors[t].offset; }
static float *gdata(const net *n, int t)
{
    return t >= 0 && n->tensors[t].group >= n->freeze_to ? n->grads + n->tensors[t].offset
                                                         : NULL;
}

/* The in-place nodes after BatchNorm node i (up to last) that its normalisation pass can
 * compute as well: a ReLU, or a residual add (into *res) optionally followed by a ReLU.
 * Returns how many (0 to 2); batchnorm_apply gives their results bit for bit. */
static int bn_fused(const net *n, int i, int last, const float **res, int *relu)
{
    const node *d = &n->nodes[i];
    *res = NULL;
    *relu = 0;
    if (i + 1 > last || n->nodes[i + 1].value != d->value)
        return 0;
    const node *e = &n->nodes[i + 1];
    if (e->kind == NODE_RELU) {
        *relu = 1;
        return 1;
    }
    if (e->kind != NODE_ADD || n->nodes[e->in[1]].value == d->value)
        return 0;
    *res = n->values[n->nodes[e->in[1]].value];
    if (i + 2 <= last && n->nodes[i + 2].value == d->value &&
        n->nodes[i + 2].kind == NODE_RELU) {
        *relu = 1;
        return 2;
    }
    return 1;
}

/* Runs node i's forward; returns how many of the following nodes it ran as well (fused). */
static int forward_node(net *n, int i, int training, int last)
{
    int fused = 0;
    node *d = &n->nodes[i];
    float *out = n->values[d->value];
    const node *src = d->in[0] >= 0 ? &n->nodes[d->in[0]] : NULL;
    const float *in = src ? n->values[src->value] : NULL;
    int hw = src ? src->h * src->w : 0;
    switch (d->kind) {
    case NODE_INPUT:
        break;
    case NODE_CONV:
        conv2d_forward(out, in, pdata(n, d->p_w), pdata(n, d->p_b), d->scratch_fwd, &d->conv);
        break;
    case NODE_BN: {
        const float *res;
        int relu, m = n->batch * d->h * d->w;
        d->bn_training = training && d->group >= n->freeze_to;
        batchnorm_stats_sync(d->save_mean, d->save_rstd, bdata(n, d->b_mean),
                             bdata(n, d->b_var), in, m, d->c, d->bn_training, n->bn_momentum,
                             n->bn_eps, net_dist_bn_sync(n, d->bn_training));
        fused = bn_fused(n, i, last, &res, &relu);
        batchnorm_apply(out, in, d->save_mean, d->save_rstd, pdata(n, d->p_w),
                        pdata(n, d->p_b), res, relu, m, d->c);
        for (int k = 1; k <= fused; k++)
            n->nodes[i + k].bn_training = training;
        break;
    }
    case NODE_RELU:
        relu_forward(out, in, node_numel(n, d));
        break;
    case NODE_SILU:
        silu_forward(out, in, node_numel(n, d));
        break;
    case NODE_MAXPOOL:
        /* Only a backward reads the argmax (frozen groups, and a plan without backward,
         * have none), and the parity harness, which keeps every value. */
        maxpool2d_forward(out,
                          n->keep_values || (n->plan_backward && d->group >= n->freeze_to)
                              ? d->argmax
                              : NULL,
                          in, &d->pool);
        break;
    case NODE_ADD:
        add_forward(out, in, n->values[n->nodes[d->in[1]].value], node_numel(n, d));
        break;
    case NODE_AVGPOOL:
        avgpool_global_forward(out, in, n->batch, hw, src->c);
        break;
    case NODE_CONCATPOOL:
        concatpool_forward(out, d->argmax, in, n->batch, hw, src->c);
        break;
    case NODE_DROPOUT:
        if (training && d->p > 0.0f)
            net_dist_dropout(n, d, out, in, (size_t)d->h * d->w * d->c);
        else if (out != in)
            memcpy(out, in, node_numel(n, d) * sizeof(float));
        break;
    case NODE_LINEAR:
        if (d->conv.precision != PRECISION_FP32)
            conv2d_forward(out, in, pdata(n, d->p_w), pdata(n, d->p_b), d->scratch_fwd,
                           &d->conv);
        else
            linear_forward(out, in, pdata(n, d->p_w), pdata(n, d->p_b), n->batch, src->c,
                           d->c);
        break;
    }
    d->bn_training = d->kind == NODE_BN ? d->bn_training : training;
    return fused;
}

const float *net_forward_to(net *n, const float *x, int training, int last)
{
    assert(n->batch > 0 && last >= 0 && last < n->n_nodes);
    n->start_node = 0;
    if (net_plan_use(n, training) < 0)
        return NULL;
    if (training && net_dist_forward_begin(n) < 0)
        return NULL;
    memcpy(n->values[n->nodes[0].value], x, node_numel(n, &n->nodes[0]) * sizeof(float));
    for (int i = 1; i <= last; i++)
        i += forward_node(n, i, training, last);
    return n->values[n->nodes[last].value];
}

const float *net_forward(net *n, const float *x, int training)
{
    return net_forward_to(n, x, training, n->n_nodes - 1);
}

const float *net_forward_from(net *n, int first, const float *act, int training)
{
    assert(n->batch > 0 && first >= 0 && first < n->n_nodes);
    n->start_node = first;
    if (net_plan_use(n, training) < 0)
        return NULL;
    if (training && net_dist_forward_begin(n) < 0)
        return NULL;
    node *d = &n->nodes[first];
    memcpy(n->values[d->value], act, node_numel(n, d) * sizeof(float));
    for (int i = first + 1; i < n->n_nodes; i++)
        i += forward_node(n, i, training, n->n_nodes - 1);
    return n->values[n->nodes[n->n_nodes - 1].value];
}

const float *net_output(const net *n) { return n->values[n->nodes[n->n_nodes - 1].value]; }

float net_loss(net *n, const int32_t *labels, const float *targets)
{
    const float *logits = net_output(n);
    if (n->multi_label)
        return bce_logits_forward(n->probs, logits, targets, n->batch, n->n_out);
    return softmax_xent_forward(n->probs, logits, labels, n->batch, n->n_out,
                                n->label_smoothing);
}

/* ---- backward --------------------------------------------------------------------------- */

/* Whether node d's backward runs conv2d_backward: a convolution, or a linear layer outside
 * fp32 (which runs as a 1x1 convolution). */
static int runs_conv(const node *d)
{
    return d->kind == NODE_CONV ||
           (d->kind == NODE_LINEAR && d->conv.precision != PRECISION_FP32);
}

/* Runs node i's backward; its parameters' gradients accumulate into gw and gb. */
static void backward_node(net *n, int i, float *gw, float *gb)
{
    net_plan_recompute(n, i); /* before reading any activation */
    node *d = &n->nodes[i];
    const float *dout = n->dvalues[d->value];
    const node *src = d->in[0] >= 0 ? &n->nodes[d->in[0]] : NULL;
    const float *in = src ? n->values[src->value] : NULL;
    float *din = needs_grad(n, d->in[0]) ? n->dvalues[src->value] : NULL;
    /* A BatchNorm that writes its input's gradient first assigns it instead (no zeroing
     * pass; the plan may then put it in place of its output's gradient). */
    const int bn_assign = d->kind == NODE_BN && din && d->zero_dv[0] >= 0;
    /* Likewise a residual add that writes its second input's gradient first copies it, and
     * a convolution that writes its input's gradient first assigns it. */
    const int add_assign =
        d->kind == NODE_ADD && d->zero_dv[1] >= 0 && needs_grad(n, d->in[1]);
    const int conv_assign = runs_conv(d) && din && d->zero_dv[0] >= 0;
    for (int k = bn_assign || conv_assign ? 1 : 0; k < (add_assign ? 1 : 2); k++)
        if (d->zero_dv[k] >= 0)
            memset(n->dvalues[d->zero_dv[k]], 0,
                   n->value_numel[d->zero_dv[k]] * sizeof(float));
    int hw = src ? src->h * src->w : 0;
    size_t cnt = node_numel(n, d);
    switch (d->kind) {
    case NODE_INPUT:
        break;
    case NODE_CONV:
        conv2d_backward(din, gw, gb, dout, in, pdata(n, d->p_w), d->scratch_bwd, &d->conv,
                        conv_assign);
        break;
    case NODE_BN:
        batchnorm_backward_sync(din, gw, gb, dout, in, d->save_mean, d->save_rstd,
                                pdata(n, d->p_w), n->batch * d->h * d->w, d->c,
                                d->bn_training, bn_assign, net_dist_bn_sync(n, d->bn_training));
        break;
    case NODE_RELU:
        if (din && !(i + 1 < n->n_nodes && n->nodes[i + 1].relu_in_pool))
            relu_backward(din, dout, n->values[d->value], cnt);
        break;
    case NODE_SILU:
        if (din)
            silu_backward(din, dout, in, cnt);
        break;
    case NODE_MAXPOOL:
        if (din && d->relu_in_pool)
            maxpool2d_backward_relu(din, dout, d->argmax, n->values[d->value], &d->pool);
        else if (din)
            maxpool2d_backward(din, dout, d->argmax, &d->pool);
        break;
    case NODE_ADD: {
        if (din && din != dout)
            add_backward(din, NULL, dout, cnt);
        int b = d->in[1];
        if (add_assign)
            add_backward_assign(n->dvalues[n->nodes[b].value], dout, cnt);
        else if (needs_grad(n, b))
            add_backward(NULL, n->dvalues[n->nodes[b].value], dout, cnt);
        break;
    }
    case NODE_AVGPOOL:
        if (din)
            avgpool_global_backward(din, dout, n->batch, hw, src->c);
        break;
    case NODE_CONCATPOOL:
        if (din)
            concatpool_backward(din, dout, d->argmax, n->batch, hw, src->c);
        break;
    case NODE_DROPOUT:
        if (!din)
            break;
        if (d->bn_training && d->p > 0.0f) {
            if (din == dout) {
                float *g = din;
                for (size_t e = 0; e < cnt; e++)
                    g[e] *= d->mask[e];
            } else {
                dropout_backward(din, dout, d->mask, cnt);
            }
        } else if (din != dout) {
            add_backward(din, NULL, dout, cnt);
        }
        break;
    case NODE_LINEAR:
        if (d->conv.precision != PRECISION_FP32)
            conv2d_backward(din, gw, gb, dout, in, pdata(n, d->p_w), d->scratch_bwd,
                            &d->conv, conv_assign);
        else
            linear_backward(din, gw, gb, dout, in, pdata(n, d->p_w), n->batch, src->c, d->c);
        break;
    }
}

/* Runs backward from the last node down to the first frozen one (or the start node).
 * With fn (a fused plan), each node's parameter gradients go to its zeroed slab scratch
 * and then to fn; returns how many tensors went to fn. Without, they go to n->grads. */
static int backward_nodes(net *n, net_grad_fn fn, void *ctx)
{
    assert(n->plan_backward); /* a training forward (or keep_values) came first */
    int handed = 0;
    net_dist_bwd b;
    net_dist_bwd_begin(n, &b);
    for (int i = n->n_nodes - 1; i > n->start_node; i--) {
        const node *d = &n->nodes[i];
        if (d->group < n->freeze_to)
            break;
        float *gw = gdata(n, d->p_w), *gb = gdata(n, d->p_b);
        if (fn && (gw || gb)) {
            assert(d->scratch_grad); /* a fused plan gives every such node its scratch */
            /* The ops accumulate: start from zeros, as net_zero_grad leaves n->grads. */
            memset(d->scratch_grad, 0, net_plan_grad_floats(n, d) * sizeof(float));
            net_plan_grad_views(n, d, d->scratch_grad, &gw, &gb);
        }
        backward_node(n, i, gw, gb);
        if (fn && gw) {
            fn(ctx, d->p_w, gw);
            handed++;
        }
        if (fn && gb) {
            fn(ctx, d->p_b, gb);
            handed++;
        }
        net_dist_bwd_node(n, &b, i);
    }
    net_dist_bwd_end(n, &b);
    return handed;
}

/* The loss gradient into the output's gradient buffer. */
static void loss_backward(net *n, const int32_t *labels, const float *targets)
{
    int last = n->n_nodes - 1;
    float *g = n->dvalues[n->nodes[last].value];
    memset(g, 0, (size_t)n->batch * n->n_out * sizeof(float));
    if (n->multi_label)
        bce_logits_backward(g, n->probs, targets, n->batch, n->n_out);
    else
        softmax_xent_backward(g, n->probs, labels, n->batch, n->n_out, n->label_smoothing);
    net_dist_loss_grad(n, g);
}

void net_backward(net *n, const int32_t *labels, const float *targets)
{
    loss_backward(n, labels, targets);
    backward_nodes(n, NULL, NULL);
}

/* Parameters of the trainable groups. */
static int trainable_tensors(const net *n)
{
    int k = 0;
    for (int t = 0; t < n->n_tensors; t++)
        k += !n->tensors[t].is_buffer && n->tensors[t].group >= n->freeze_to;
    return k;
}

int net_backward_fusable(const net *n) { return n->plan_backward && n->plan_fused; }

int net_backward_fused(net *n, const int32_t *labels, const float *targets, net_grad_fn fn,
                       void *ctx)
{
    if (!net_backward_fusable(n) || !fn)
        return -EOPNOTSUPP;
    loss_backward(n, labels, targets);
    int handed = backward_nodes(n, fn, ctx);
    /* Each trainable parameter went to fn exactly once: each has one node (net_finalize),
     * and the plan is fused only when all those nodes run backward. */
    assert(handed == trainable_tensors(n));
    (void)handed;
    return 0;
}

void net_zero_grad(net *n)
{
    for (int t = 0; t < n->n_tensors; t++) {
        const net_tensor *tt = &n->tensors[t];
        if (!tt->is_buffer && tt->group >= n->freeze_to) {
            memset(n->grads + tt->offset, 0, (n->n_params - tt->offset) * sizeof(float));
            return; /* parameters are laid out in forward order: trainable ones are a suffix */
        }
    }
}

int net_freeze_to(net *n, int g)
{
    if (g < 0 || g > n->n_groups)
        return -EINVAL;
    n->freeze_to = g;
    net_plan_reset(n);
    return n->batch > 0 ? plan_both(n) : 0;
}

int net_set_fused_backward(net *n, int on)
{
    n->fused_backward = on != 0;
    net_plan_reset(n);
    return n->batch > 0 ? plan_both(n) : 0;
}

int net_keep_values(net *n, int keep)
{
    n->keep_values = keep != 0;
    net_plan_reset(n);
    return n->batch > 0 ? plan_both(n) : 0;
}

/* ---- lookup ----------------------------------------------------------------------------- */

int net_find(const net *n, const char *name)
{
    for (int t = 0; t < n->n_tensors; t++)
        if (strcmp(n->tensors[t].name, name) == 0)
            return t;
    return -1;
}

float *net_tensor_data(const net *n, int idx)
{
    const net_tensor *t = &n->tensors[idx];
    return (t->is_buffer ? n->buffers : n->params) + t->offset;
}

int net_pool_node(const net *n)
{
    for (int i = 0; i < n->n_nodes; i++)
        if (n->nodes[i].kind == NODE_AVGPOOL || n->nodes[i].kind == NODE_CONCATPOOL)
            return i;
    return -1;
}

int net_node_features(const net *n, int i)
{
    const node *d = &n->nodes[i];
    return d->h * d->w * d->c;
}
