/* backend_onednn.c: bf16 mixed-precision convolutions on oneDNN.
 *
 * Forward: the NHWC float32 input is rounded to bfloat16 (round to nearest even, as
 * PyTorch's .to(torch.bfloat16)), the OIHW weights are reordered to bf16 in the layout the
 * primitive asks for, and the output comes back in float32 NHWC with the bias added, the
 * products accumulated in float32. Backward: the output gradient is rounded to bf16; the
 * weight gradient comes back in float32 and is added to dw by a reorder with a sum
 * post-op; the input gradient comes back in float32 into scratch and is added to din.
 *
 * Primitive descriptors and primitives are made once per shape and kept in a process-wide
 * table (a mutex guards lookups; executing a primitive is thread-safe). Every buffer,
 * oneDNN's own scratchpad included, lives in the caller's workspace, so a net's memory plan
 * accounts for all of it. oneDNN failures here mean a shape or build it cannot handle:
 * they end the process with a message rather than compute garbage. */
#include "backend.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>

#define ONEDNN_CACHE_MAX 256
#define ONEDNN_ALIGN 64
#define ONEDNN_PAR_MIN 32768

typedef struct onednn_conv {
    int n, h, w, c_in, c_out, k, stride, pad; /* the key */
    dnnl_primitive_desc_t fwd_pd, bwdd_pd, bwdw_pd;
    dnnl_primitive_t fwd, bwdd, bwdw;
    dnnl_primitive_t w_to_fwd, w_to_bwdd; /* f32 OIHW weights -> bf16, each primitive's layout */
    dnnl_primitive_t dw_add;              /* f32 diff weights (primitive layout) += into OIHW */
    dnnl_memory_desc_t src_f32, src_bf16, dst_f32, dst_bf16, w_oihw, bias;
    size_t src_bytes, dst_bytes, wf_bytes, wb_bytes, dw_bytes, din_bytes;
    size_t scratch_fwd, scratch_bwd;
} onednn_conv;

static pthread_once_t onednn_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t onednn_engine;
static pthread_mutex_t onednn_lock = PTHREAD_MUTEX_INITIALIZER;
static onednn_conv *onednn_cache[ONEDNN_CACHE_MAX];
static int onednn_cached;

static void onednn_check(dnnl_status_t st, const char *what)
{
    if (st != dnnl_success) {
        fprintf(stderr, "sgdrd: oneDNN %s failed (status %d)\n", what, (int)st);
        abort();
    }
}

static void onednn_init(void)
{
    onednn_check(dnnl_engine_create(&onednn_engine, dnnl_cpu, 0), "engine_create");
}

static size_t align_up(size_t b)
{
    return (b + ONEDNN_ALIGN - 1) / ONEDNN_ALIGN * ONEDNN_ALIGN;
}

static dnnl_memory_desc_t md_of(int nd, const dnnl_dims_t dims, dnnl_data_type_t dt,
                                dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    onednn_check(dnnl_memory_desc_init_by_tag(&md, nd, dims, dt, tag), "memory_desc");
    return md;
}

static const dnnl_memory_desc_t *pd_md(const_dnnl_primitive_desc_t pd, dnnl_query_t q)
{
    return dnnl_primitive_desc_query_md(pd, q, 0);
}

static size_t pd_scratch(const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = pd_md(pd, dnnl_query_scratchpad_md);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

static dnnl_primitive_t make_prim(const_dnnl_primitive_desc_t pd, const char *what)
{
    dnnl_primitive_t p;
    onednn_check(dnnl_primitive_create(&p, pd), what);
    return p;
}

/* A reorder from src to dst; with sum != 0 it adds into dst (dst = dst + src). */
static dnnl_primitive_t make_reorder(const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                                     int sum)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if (sum) {
        onednn_check(dnnl_primitive_attr_create(&attr), "attr_create");
        onednn_check(dnnl_post_ops_create(&po), "post_ops_create");
        onednn_check(dnnl_post_ops_append_sum(po, 1.0f), "post_ops_append_sum");
        onednn_check(dnnl_primitive_attr_set_post_ops(attr, po), "set_post_ops");
    }
    dnnl_primitive_desc_t pd;
    onednn_check(dnnl_reorder_primitive_desc_create(&pd, src, onednn_engine, dst,
                                                    onednn_engine, attr), "reorder_pd");
    dnnl_primitive_t p = make_prim(pd, "reorder");
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return p;
}

static dnnl_primitive_attr_t user_scratch_attr(void)
{
    dnnl_primitive_attr_t attr;
    onednn_check(dnnl_primitive_attr_create(&attr), "attr_create");
    onednn_check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
                 "set_scratchpad_mode");
    return attr;
}

/* The three convolution primitive descriptors: bf16 activations and weights in, float32
 * out, NHWC activations, weights in whatever layout each kernel prefers. */
static void make_pds(onednn_conv *c)
{
    dnnl_dims_t st = {c->stride, c->stride}, pl = {c->pad, c->pad};
    int ho = (c->h + 2 * c->pad - c->k) / c->stride + 1;
    int wo = (c->w + 2 * c->pad - c->k) / c->stride + 1;
    /* oneDNN wants the right padding that makes the output size exact. */
    dnnl_dims_t pr = {(ho - 1) * c->stride + c->k - c->h - c->pad,
                      (wo - 1) * c->stride + c->k - c->w - c->pad};
    dnnl_dims_t sd = {c->n, c->c_in, c->h, c->w}, dd = {c->n, c->c_out, ho, wo};
    dnnl_dims_t wd = {c->c_out, c->c_in, c->k, c->k}, bd = {c->c_out};
    c->src_f32 = md_of(4, sd, dnnl_f32, dnnl_nhwc);
    c->src_bf16 = md_of(4, sd, dnnl_bf16, dnnl_nhwc);
    c->dst_f32 = md_of(4, dd, dnnl_f32, dnnl_nhwc);
    c->dst_bf16 = md_of(4, dd, dnnl_bf16, dnnl_nhwc);
    c->w_oihw = md_of(4, wd, dnnl_f32, dnnl_oihw);
    c->bias = md_of(1, bd, dnnl_f32, dnnl_a);
    dnnl_memory_desc_t w_any = md_of(4, wd, dnnl_bf16, dnnl_format_tag_any);
    dnnl_memory_desc_t dw_any = md_of(4, wd, dnnl_f32, dnnl_format_tag_any);
    dnnl_primitive_attr_t attr = user_scratch_attr();
    dnnl_convolution_desc_t fd, bdd, bwd;
    onednn_check(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training,
                                                    dnnl_convolution_direct, &c->src_bf16,
                                                    &w_any, &c->bias, &c->dst_f32, st, pl, pr),
                 "conv_fwd_desc");
    onednn_check(dnnl_primitive_desc_create(&c->fwd_pd, &fd, attr, onednn_engine, NULL),
                 "conv_fwd_pd");
    onednn_check(dnnl_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct,
                                                          &c->src_f32, &w_any, &c->dst_bf16,
                                                          st, pl, pr),
                 "conv_bwd_data_desc");
    onednn_check(dnnl_primitive_desc_create(&c->bwdd_pd, &bdd, attr, onednn_engine,
                                            c->fwd_pd), "conv_bwd_data_pd");
    onednn_check(dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct,
                                                             &c->src_bf16, &dw_any, NULL,
                                                             &c->dst_bf16, st, pl, pr),
                 "conv_bwd_weights_desc");
    onednn_check(dnnl_primitive_desc_create(&c->bwdw_pd, &bwd, attr, onednn_engine,
                                            c->fwd_pd), "conv_bwd_weights_pd");
    dnnl_primitive_attr_destroy(attr);
}

static onednn_conv *conv_make(const conv2d_shape *s)
{
    onednn_conv *c = calloc(1, sizeof(*c));
    if (!c) {
        fprintf(stderr, "sgdrd: out of memory for a oneDNN convolution\n");
        abort();
    }
    c->n = s->n, c->h = s->h, c->w = s->w, c->c_in = s->c_in;
    c->c_out = s->c_out, c->k = s->k, c->stride = s->stride, c->pad = s->pad;
    make_pds(c);
    c->fwd = make_prim(c->fwd_pd, "conv_fwd");
    c->bwdd = make_prim(c->bwdd_pd, "conv_bwd_data");
    c->bwdw = make_prim(c->bwdw_pd, "conv_bwd_weights");
    const dnnl_memory_desc_t *wf = pd_md(c->fwd_pd, dnnl_query_weights_md);
    const dnnl_memory_desc_t *wb = pd_md(c->bwdd_pd, dnnl_query_weights_md);
    const dnnl_memory_desc_t *dw = pd_md(c->bwdw_pd, dnnl_query_diff_weights_md);
    c->w_to_fwd = make_reorder(&c->w_oihw, wf, 0);
    c->w_to_bwdd = make_reorder(&c->w_oihw, wb, 0);
    c->dw_add = make_reorder(dw, &c->w_oihw, 1);
    c->src_bytes = align_up(dnnl_memory_desc_get_size(&c->src_bf16));
    c->dst_bytes = align_up(dnnl_memory_desc_get_size(&c->dst_bf16));
    c->din_bytes = align_up(dnnl_memory_desc_get_size(&c->src_f32));
    c->wf_bytes = align_up(dnnl_memory_desc_get_size(wf));
    c->wb_bytes = align_up(dnnl_memory_desc_get_size(wb));
    c->dw_bytes = align_up(dnnl_memory_desc_get_size(dw));
    c->scratch_fwd = align_up(pd_scratch(c->fwd_pd));
    size_t sd = pd_scratch(c->bwdd_pd), sw = pd_scratch(c->bwdw_pd);
    c->scratch_bwd = align_up(sd > sw ? sd : sw);
    return c;
}

static int same_shape(const onednn_conv *c, const conv2d_shape *s)
{
    return c->n == s->n && c->h == s->h && c->w == s->w && c->c_in == s->c_in &&
           c->c_out == s->c_out && c->k == s->k && c->stride == s->stride && c->pad == s->pad;
}

/* The cached primitives of shape s, made on first use. Entries live as long as the
 * process; past ONEDNN_CACHE_MAX shapes the table stops growing and *owned is set: the
 * caller then destroys the entry after use. */
static onednn_conv *conv_get(const conv2d_shape *s, int *owned)
{
    pthread_once(&onednn_once, onednn_init);
    *owned = 0;
    pthread_mutex_lock(&onednn_lock);
    for (int i = 0; i < onednn_cached; i++) {
        if (same_shape(onednn_cache[i], s)) {
            onednn_conv *c = onednn_cache[i];
            pthread_mutex_unlock(&onednn_lock);
            return c;
        }
    }
    onednn_conv *c = conv_make(s);
    if (onednn_cached < ONEDNN_CACHE_MAX)
        onednn_cache[onednn_cached++] = c;
    else
        *owned = 1;
    pthread_mutex_unlock(&onednn_lock);
    return c;
}

static void conv_free(onednn_conv *c)
{
    dnnl_primitive_destroy(c->fwd);
    dnnl_primitive_destroy(c->bwdd);
    dnnl_primitive_destroy(c->bwdw);
    dnnl_primitive_destroy(c->w_to_fwd);
    dnnl_primitive_destroy(c->w_to_bwdd);
    dnnl_primitive_destroy(c->dw_add);
    dnnl_primitive_desc_destroy(c->fwd_pd);
    dnnl_primitive_desc_destroy(c->bwdd_pd);
    dnnl_primitive_desc_destroy(c->bwdw_pd);
    free(c);
}

/* ---- execution ------------------------------------------------------------------------ */

typedef struct exec_args {
    int n;
    dnnl_exec_arg_t a[8];
} exec_args;

static void arg_add(exec_args *e, int kind, const dnnl_memory_desc_t *md, const void *p)
{
    dnnl_memory_t m;
    onednn_check(dnnl_memory_create(&m, md, onednn_engine, (void *)p), "memory_create");
    e->a[e->n].arg = kind;
    e->a[e->n].memory = m;
    e->n++;
}

static void run(dnnl_primitive_t p, exec_args *e, const char *what)
{
    dnnl_stream_t st;
    onednn_check(dnnl_stream_create(&st, onednn_engine, dnnl_stream_default_flags),
                 "stream_create");
    onednn_check(dnnl_primitive_execute(p, st, e->n, e->a), what);
    onednn_check(dnnl_stream_wait(st), "stream_wait");
    dnnl_stream_destroy(st);
    for (int i = 0; i < e->n; i++)
        dnnl_memory_destroy(e->a[i].memory);
    e->n = 0;
}

static void reorder(dnnl_primitive_t p, const dnnl_memory_desc_t *src_md, const void *src,
                    const dnnl_memory_desc_t *dst_md, void *dst)
{
    exec_args e = {0};
    arg_add(&e, DNNL_ARG_FROM, src_md, src);
    arg_add(&e, DNNL_ARG_TO, dst_md, dst);
    run(p, &e, "reorder");
}

/* dst (bf16 bits) <- src rounded to nearest even; NaNs stay NaNs. */
static void to_bf16(uint16_t *dst, const float *src, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= ONEDNN_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof(u));
        if ((u & 0x7fffffffu) > 0x7f800000u)
            dst[i] = (uint16_t)((u >> 16) | 0x40u);
        else
            dst[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

static void add_into(float *dst, const float *src, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= ONEDNN_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

static size_t numel(const dnnl_memory_desc_t *md, size_t elem)
{
    return dnnl_memory_desc_get_size(md) / elem;
}

static size_t onednn_workspace_floats(const conv2d_shape *s)
{
    int owned;
    onednn_conv *c = conv_get(s, &owned);
    size_t fwd = c->src_bytes + c->wf_bytes + align_up((size_t)c->c_out * sizeof(float)) +
                 c->scratch_fwd;
    size_t bwd = c->src_bytes + c->dst_bytes + c->wb_bytes + c->din_bytes + c->dw_bytes +
                 c->scratch_bwd;
    if (owned)
        conv_free(c);
    return ((fwd > bwd ? fwd : bwd) + sizeof(float) - 1) / sizeof(float);
}

static void onednn_forward(float *out, const float *in, const float *w, const float *b,
                           float *ws, const conv2d_shape *s)
{
    int owned;
    onednn_conv *c = conv_get(s, &owned);
    char *p = (char *)ws;
    uint16_t *src = (uint16_t *)p;
    char *wk = p + c->src_bytes;
    float *zero_bias = (float *)(wk + c->wf_bytes);
    char *scratch = (char *)zero_bias + align_up((size_t)c->c_out * sizeof(float));
    const dnnl_memory_desc_t *wf = pd_md(c->fwd_pd, dnnl_query_weights_md);
    to_bf16(src, in, numel(&c->src_f32, sizeof(float)));
    reorder(c->w_to_fwd, &c->w_oihw, w, wf, wk);
    if (!b) {
        memset(zero_bias, 0, (size_t)c->c_out * sizeof(float));
        b = zero_bias;
    }
    exec_args e = {0};
    arg_add(&e, DNNL_ARG_SRC, &c->src_bf16, src);
    arg_add(&e, DNNL_ARG_WEIGHTS, wf, wk);
    arg_add(&e, DNNL_ARG_BIAS, &c->bias, b);
    arg_add(&e, DNNL_ARG_DST, &c->dst_f32, out);
    arg_add(&e, DNNL_ARG_SCRATCHPAD, pd_md(c->fwd_pd, dnnl_query_scratchpad_md), scratch);
    run(c->fwd, &e, "conv_fwd");
    if (owned)
        conv_free(c);
}

static void onednn_backward(float *din, float *dw, const float *dout, const float *in,
                            const float *w, float *ws, const conv2d_shape *s)
{
    int owned;
    onednn_conv *c = conv_get(s, &owned);
    char *p = (char *)ws;
    uint16_t *src = (uint16_t *)p, *dst = (uint16_t *)(p + c->src_bytes);
    char *wk = (char *)dst + c->dst_bytes;
    float *dtmp = (float *)(wk + c->wb_bytes);
    char *dwtmp = (char *)dtmp + c->din_bytes;
    char *scratch = dwtmp + c->dw_bytes;
    to_bf16(dst, dout, numel(&c->dst_f32, sizeof(float)));
    exec_args e = {0};
    if (dw) {
        const dnnl_memory_desc_t *dwmd = pd_md(c->bwdw_pd, dnnl_query_diff_weights_md);
        to_bf16(src, in, numel(&c->src_f32, sizeof(float)));
        arg_add(&e, DNNL_ARG_SRC, &c->src_bf16, src);
        arg_add(&e, DNNL_ARG_DIFF_DST, &c->dst_bf16, dst);
        arg_add(&e, DNNL_ARG_DIFF_WEIGHTS, dwmd, dwtmp);
        arg_add(&e, DNNL_ARG_SCRATCHPAD, pd_md(c->bwdw_pd, dnnl_query_scratchpad_md),
                scratch);
        run(c->bwdw, &e, "conv_bwd_weights");
        reorder(c->dw_add, dwmd, dwtmp, &c->w_oihw, dw);
    }
    if (din) {
        const dnnl_memory_desc_t *wb = pd_md(c->bwdd_pd, dnnl_query_weights_md);
        reorder(c->w_to_bwdd, &c->w_oihw, w, wb, wk);
        arg_add(&e, DNNL_ARG_DIFF_DST, &c->dst_bf16, dst);
        arg_add(&e, DNNL_ARG_WEIGHTS, wb, wk);
        arg_add(&e, DNNL_ARG_DIFF_SRC, &c->src_f32, dtmp);
        arg_add(&e, DNNL_ARG_SCRATCHPAD, pd_md(c->bwdd_pd, dnnl_query_scratchpad_md),
                scratch);
        run(c->bwdd, &e, "conv_bwd_data");
        add_into(din, dtmp, numel(&c->src_f32, sizeof(float)));
    }
    if (owned)
        conv_free(c);
}

const conv_backend conv_backend_onednn_bf16 = {
    .name = "onednn-bf16",
    .workspace_floats = onednn_workspace_floats,
    .forward = onednn_forward,
    .backward = onednn_backward,
};
