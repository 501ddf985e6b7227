/* backend_onednn.c: bf16 mixed-precision convolutions on oneDNN.
 *
 * Forward: the NHWC float32 input is rounded to bfloat16 (round to nearest even, as
 * PyTorch's .to(torch.bfloat16)), the OIHW weights are reordered to bf16 in the layout the
 * primitive asks for, and the output comes back in float32 NHWC with the bias added, the
 * products accumulated in float32. Backward: the output gradient is rounded to bf16; the
 * input gradient comes back in float32, straight into din where the caller assigns it,
 * else into scratch, a chunk of images at a time, and then added to din. The weight
 * gradient is mostly a matmul,
 * dW (C_out, K*K*C_in) += dY^T (C_out, P) * columns (P, K*K*C_in), over chunks of whole
 * images whose bf16 im2col columns fit COL_BYTES, accumulated in float32 in scratch
 * (which the input gradient reuses after it) and then added to dw (OIHW): on an Intel
 * host with AVX512_BF16, oneDNN 2.6's own bf16 backward-weights convolution (jit_bf16) ran
 * several times slower than its matmul on the ResNets' shapes, late stages on small images
 * worst. Where the bf16 units are fast (AMX, AMD's AVX512_BF16) it wins on stride-1
 * convolutions of larger images, where the columns cost more than the products: those run
 * it on the input rounded to bf16 (native_weight_grad; docs/performance.md).
 *
 * Primitive descriptors and primitives are made once per shape and kept in a process-wide
 * table (a mutex guards lookups; executing a primitive is thread-safe). Every buffer,
 * oneDNN's own scratchpad included, lives in the caller's workspace, so a net's memory plan
 * accounts for all of it. oneDNN failures here mean a shape or build it cannot handle:
 * they end the process with a message rather than compute garbage. oneDNN is loaded on the
 * first convolution (onednn_lib.h). */
#include "backend.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16_round.h"
#include "onednn_lib.h"

#define ONEDNN_CACHE_MAX 256
#define ONEDNN_ALIGN 64
#define ONEDNN_PAR_MIN 32768
/* bf16 im2col columns per chunk of the weight gradient (at least one image). */
#define COL_BYTES (8u << 20)
/* float32 input gradient per chunk where it is added rather than assigned (at least one
 * image). */
#define DGRAD_BYTES (2u << 20)
/* Output pixels per image from which the bf16 backward-weights convolution wins. */
#define WG_NATIVE_MIN_PIXELS 100

/* The weight-gradient matmul of a chunk of `imgs` images. */
typedef struct onednn_mm {
    int imgs;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a, b, c; /* dY^T (C_out, P) bf16, columns (P, KKC) bf16, dW f32 */
} onednn_mm;

/* The backward-data convolution of a chunk of `imgs` images, into scratch to be added. */
typedef struct onednn_dgrad {
    int imgs;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t din, dy; /* dX f32, dY bf16 (NHWC) */
} onednn_dgrad;

typedef struct onednn_conv {
    int n, h, w, c_in, c_out, k, stride, pad; /* the key */
    int h_out, w_out;
    dnnl_primitive_desc_t fwd_pd, bwdd_pd, bwdw_pd;
    dnnl_primitive_t fwd, bwdd;
    dnnl_primitive_t w_to_fwd, w_to_bwdd; /* f32 OIHW weights -> bf16, each primitive's layout */
    int native_dw;                        /* the weight gradient on bwdw, not the matmuls */
    dnnl_primitive_t bwdw, dw_add;        /* native_dw: the convolution, and dw += its output */
    onednn_mm mm_full, mm_tail;           /* tail: the last, smaller chunk (imgs 0: none) */
    onednn_dgrad dg_full, dg_tail;        /* an added dX in chunks (dg_full.imgs 0: whole) */
    dnnl_memory_desc_t src_f32, src_bf16, dst_f32, dst_bf16, w_oihw, bias;
    size_t src_bytes, dst_bytes, wf_bytes, wb_bytes, dw_bytes, din_bytes, col_bytes;
    size_t dchunk_bytes;                            /* an added dX's scratch */
    size_t scratch_fwd, scratch_bwdd, scratch_bwdw; /* oneDNN's scratchpads */
    size_t scratch_dchunk;                          /* of dg_full and dg_tail */
} onednn_conv;

static pthread_once_t onednn_once = PTHREAD_ONCE_INIT;
static const onednn_fns *dn; /* loaded by onednn_init */
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

/* Requests for these kernels where oneDNN cannot be loaded are refused before they get
 * here (bf16_kernels_check, bf16_kernels_choice); one that gets here still ends with why. */
static void onednn_init(void)
{
    if (onednn_lib_load(&dn) < 0) {
        fprintf(stderr, "sgdrd: the onednn bf16 kernels need oneDNN: %s\n", onednn_lib_error());
        abort();
    }
    onednn_check(dn->engine_create(&onednn_engine, dnnl_cpu, 0), "engine_create");
}

static size_t align_up(size_t b)
{
    return (b + ONEDNN_ALIGN - 1) / ONEDNN_ALIGN * ONEDNN_ALIGN;
}

static dnnl_memory_desc_t md_of(int nd, const dnnl_dims_t dims, dnnl_data_type_t dt,
                                dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    onednn_check(dn->memory_desc_init_by_tag(&md, nd, dims, dt, tag), "memory_desc");
    return md;
}

static const dnnl_memory_desc_t *pd_md(const_dnnl_primitive_desc_t pd, dnnl_query_t q)
{
    return dn->primitive_desc_query_md(pd, q, 0);
}

static size_t pd_scratch(const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = pd_md(pd, dnnl_query_scratchpad_md);
    return md ? dn->memory_desc_get_size(md) : 0;
}

static dnnl_primitive_t make_prim(const_dnnl_primitive_desc_t pd, const char *what)
{
    dnnl_primitive_t p;
    onednn_check(dn->primitive_create(&p, pd), what);
    return p;
}

/* A reorder from src to dst; with sum != 0 it adds into dst (dst = dst + src). */
static dnnl_primitive_t make_reorder(const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                                     int sum)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if (sum) {
        onednn_check(dn->primitive_attr_create(&attr), "attr_create");
        onednn_check(dn->post_ops_create(&po), "post_ops_create");
        onednn_check(dn->post_ops_append_sum(po, 1.0f), "post_ops_append_sum");
        onednn_check(dn->primitive_attr_set_post_ops(attr, po), "set_post_ops");
    }
    dnnl_primitive_desc_t pd;
    onednn_check(dn->reorder_primitive_desc_create(&pd, src, onednn_engine, dst,
                                                   onednn_engine, attr), "reorder_pd");
    dnnl_primitive_t p = make_prim(pd, "reorder");
    dn->primitive_desc_destroy(pd);
    dn->post_ops_destroy(po);
    dn->primitive_attr_destroy(attr);
    return p;
}

static dnnl_primitive_attr_t user_scratch_attr(void)
{
    dnnl_primitive_attr_t attr;
    onednn_check(dn->primitive_attr_create(&attr), "attr_create");
    onednn_check(dn->primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
                 "set_scratchpad_mode");
    return attr;
}

/* oneDNN wants the right padding that makes the output size exact. */
static void right_pad(const onednn_conv *c, dnnl_dims_t pr)
{
    pr[0] = (c->h_out - 1) * c->stride + c->k - c->h - c->pad;
    pr[1] = (c->w_out - 1) * c->stride + c->k - c->w - c->pad;
}

/* The four convolution primitive descriptors: bf16 activations and weights in, float32
 * out, NHWC activations, weights in whatever layout each kernel prefers. */
static void make_pds(onednn_conv *c)
{
    dnnl_dims_t st = {c->stride, c->stride}, pl = {c->pad, c->pad}, pr;
    int ho = c->h_out, wo = c->w_out;
    right_pad(c, pr);
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
    onednn_check(dn->convolution_forward_desc_init(&fd, dnnl_forward_training,
                                                   dnnl_convolution_direct, &c->src_bf16,
                                                   &w_any, &c->bias, &c->dst_f32, st, pl, pr),
                 "conv_fwd_desc");
    onednn_check(dn->primitive_desc_create(&c->fwd_pd, &fd, attr, onednn_engine, NULL),
                 "conv_fwd_pd");
    onednn_check(dn->convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct,
                                                         &c->src_f32, &w_any, &c->dst_bf16,
                                                         st, pl, pr),
                 "conv_bwd_data_desc");
    onednn_check(dn->primitive_desc_create(&c->bwdd_pd, &bdd, attr, onednn_engine,
                                           c->fwd_pd), "conv_bwd_data_pd");
    /* Optional: without it (no kernel for the shape) the weight gradient stays a matmul. */
    if (dn->convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &c->src_bf16,
                                                   &dw_any, NULL, &c->dst_bf16, st, pl,
                                                   pr) != dnnl_success ||
        dn->primitive_desc_create(&c->bwdw_pd, &bwd, attr, onednn_engine, c->fwd_pd) !=
            dnnl_success)
        c->bwdw_pd = NULL;
    dn->primitive_attr_destroy(attr);
}

/* Whether the weight gradient runs oneDNN's backward-weights convolution: its AMX or
 * AVX512_BF16 kernel on stride-1 KxK convolutions (K > 1) with at least
 * WG_NATIVE_MIN_PIXELS outputs per image, where the matmul's columns are K*K copies of
 * every pixel; elsewhere the matmul is as fast or faster. SGDRD_ONEDNN_WEIGHT_GRAD=
 * native|matmul forces one (native where oneDNN has that convolution for the shape; tests
 * run both). */
static int native_weight_grad(const onednn_conv *c)
{
    if (!c->bwdw_pd)
        return 0;
    const char *env = getenv("SGDRD_ONEDNN_WEIGHT_GRAD");
    if (env && strcmp(env, "native") == 0)
        return 1;
    if (env && strcmp(env, "matmul") == 0)
        return 0;
    const char *impl = NULL;
    if (dn->primitive_desc_query(c->bwdw_pd, dnnl_query_impl_info_str, 0, &impl) !=
            dnnl_success || !impl)
        return 0;
    if (!strstr(impl, "amx") && !strstr(impl, "avx512_core_bf16"))
        return 0;
    return c->stride == 1 && c->k > 1 && c->h_out * c->w_out >= WG_NATIVE_MIN_PIXELS;
}

static int is_direct(const onednn_conv *c)
{
    return c->k == 1 && c->stride == 1 && c->pad == 0;
}

static size_t kkc(const onednn_conv *c)
{
    return (size_t)c->k * c->k * c->c_in;
}

/* dW (C_out, KKC) += dY^T * columns over `imgs` images: the sum post-op accumulates. */
static void make_mm(onednn_mm *m, const onednn_conv *c, int imgs)
{
    m->imgs = imgs;
    if (imgs == 0)
        return;
    dnnl_dims_t ad = {c->c_out, (dnnl_dim_t)imgs * c->h_out * c->w_out};
    dnnl_dims_t bd = {ad[1], (dnnl_dim_t)kkc(c)}, cd = {c->c_out, bd[1]};
    m->a = md_of(2, ad, dnnl_bf16, dnnl_ba); /* dY is (P, C_out) row-major */
    m->b = md_of(2, bd, dnnl_bf16, dnnl_ab);
    m->c = md_of(2, cd, dnnl_f32, dnnl_ab);
    dnnl_primitive_attr_t attr = user_scratch_attr();
    dnnl_post_ops_t po;
    onednn_check(dn->post_ops_create(&po), "post_ops_create");
    onednn_check(dn->post_ops_append_sum(po, 1.0f), "post_ops_append_sum");
    onednn_check(dn->primitive_attr_set_post_ops(attr, po), "set_post_ops");
    dnnl_matmul_desc_t md;
    onednn_check(dn->matmul_desc_init(&md, &m->a, &m->b, NULL, &m->c), "matmul_desc");
    onednn_check(dn->primitive_desc_create(&m->pd, &md, attr, onednn_engine, NULL),
                 "matmul_pd");
    m->prim = make_prim(m->pd, "matmul");
    dn->post_ops_destroy(po);
    dn->primitive_attr_destroy(attr);
}

static void free_mm(onednn_mm *m)
{
    if (m->imgs == 0)
        return;
    dn->primitive_destroy(m->prim);
    dn->primitive_desc_destroy(m->pd);
}

/* The backward-data convolution of `imgs` images, reading the weights in wb, the whole
 * batch's layout, so that one reorder serves both. 0, or -1 (g->imgs 0) where oneDNN has
 * no such convolution. */
static int make_dgrad(onednn_dgrad *g, const onednn_conv *c, int imgs,
                      const dnnl_memory_desc_t *wb)
{
    g->imgs = imgs;
    if (imgs == 0)
        return 0;
    dnnl_dims_t st = {c->stride, c->stride}, pl = {c->pad, c->pad}, pr;
    right_pad(c, pr);
    dnnl_dims_t sd = {imgs, c->c_in, c->h, c->w}, dd = {imgs, c->c_out, c->h_out, c->w_out};
    dnnl_dims_t wd = {c->c_out, c->c_in, c->k, c->k};
    g->din = md_of(4, sd, dnnl_f32, dnnl_nhwc);
    g->dy = md_of(4, dd, dnnl_bf16, dnnl_nhwc);
    dnnl_memory_desc_t x = md_of(4, sd, dnnl_bf16, dnnl_nhwc);
    dnnl_memory_desc_t y = md_of(4, dd, dnnl_f32, dnnl_nhwc);
    dnnl_memory_desc_t w_any = md_of(4, wd, dnnl_bf16, dnnl_format_tag_any);
    dnnl_primitive_attr_t attr = user_scratch_attr();
    dnnl_convolution_desc_t fd, bd;
    dnnl_primitive_desc_t hint = NULL; /* oneDNN's backward asks for its forward's */
    int ok = dn->convolution_forward_desc_init(&fd, dnnl_forward_training,
                                               dnnl_convolution_direct, &x, &w_any,
                                               &c->bias, &y, st, pl, pr) == dnnl_success &&
             dn->primitive_desc_create(&hint, &fd, attr, onednn_engine, NULL) ==
                 dnnl_success &&
             dn->convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &g->din,
                                                     wb, &g->dy, st, pl, pr) ==
                 dnnl_success &&
             dn->primitive_desc_create(&g->pd, &bd, attr, onednn_engine, hint) ==
                 dnnl_success;
    if (hint)
        dn->primitive_desc_destroy(hint);
    dn->primitive_attr_destroy(attr);
    if (!ok) {
        g->imgs = 0;
        return -1;
    }
    g->prim = make_prim(g->pd, "conv_bwd_data");
    return 0;
}

static void free_dgrad(onednn_dgrad *g)
{
    if (g->imgs == 0)
        return;
    dn->primitive_destroy(g->prim);
    dn->primitive_desc_destroy(g->pd);
    g->imgs = 0;
}

/* An input gradient that is added goes through scratch: in chunks of images where the
 * whole would pass DGRAD_BYTES (the scratch would otherwise be the size of the input,
 * often the largest item of a net's plan), else whole through the batch's primitive. */
static void dgrad_chunks_make(onednn_conv *c, const dnnl_memory_desc_t *wb)
{
    const size_t img = (size_t)c->h * c->w * c->c_in * sizeof(float);
    int imgs = (int)(DGRAD_BYTES / img);
    imgs = imgs < 1 ? 1 : imgs;
    c->dchunk_bytes = c->din_bytes;
    c->scratch_dchunk = c->scratch_bwdd;
    if (imgs >= c->n || make_dgrad(&c->dg_full, c, imgs, wb) < 0)
        return;
    if (make_dgrad(&c->dg_tail, c, c->n % imgs, wb) < 0) {
        free_dgrad(&c->dg_full);
        return;
    }
    size_t sp = pd_scratch(c->dg_full.pd);
    if (c->dg_tail.imgs && pd_scratch(c->dg_tail.pd) > sp)
        sp = pd_scratch(c->dg_tail.pd);
    c->dchunk_bytes = align_up((size_t)imgs * img);
    c->scratch_dchunk = align_up(sp);
}

/* The matmuls of the weight gradient and their buffers: dw_bytes of float32 gradient in
 * OHWI, col_bytes of columns. Returns their scratchpad's bytes. */
static size_t weight_grad_mm_make(onednn_conv *c)
{
    size_t img_col = (size_t)c->h_out * c->w_out * kkc(c) * 2;
    int imgs = is_direct(c) ? c->n : (int)(COL_BYTES / img_col);
    if (imgs < 1)
        imgs = 1;
    if (imgs > c->n)
        imgs = c->n;
    make_mm(&c->mm_full, c, imgs);
    make_mm(&c->mm_tail, c, c->n % imgs);
    c->dw_bytes = align_up((size_t)c->c_out * kkc(c) * sizeof(float));
    c->col_bytes = is_direct(c) ? c->src_bytes : align_up((size_t)imgs * img_col);
    size_t sm = pd_scratch(c->mm_full.pd);
    if (c->mm_tail.imgs && pd_scratch(c->mm_tail.pd) > sm)
        sm = pd_scratch(c->mm_tail.pd);
    return sm;
}

/* The backward-weights convolution, and the reorder that adds its output (in its own
 * layout, dw_bytes) to dw (OIHW); col_bytes hold the input rounded to bf16. Returns the
 * convolution's scratchpad's bytes. */
static size_t weight_grad_native_make(onednn_conv *c)
{
    const dnnl_memory_desc_t *dwm = pd_md(c->bwdw_pd, dnnl_query_diff_weights_md);
    c->bwdw = make_prim(c->bwdw_pd, "conv_bwd_weights");
    c->dw_add = make_reorder(dwm, &c->w_oihw, 1);
    c->dw_bytes = align_up(dn->memory_desc_get_size(dwm));
    c->col_bytes = c->src_bytes;
    return pd_scratch(c->bwdw_pd);
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
    c->h_out = s->h_out, c->w_out = s->w_out;
    make_pds(c);
    c->fwd = make_prim(c->fwd_pd, "conv_fwd");
    c->bwdd = make_prim(c->bwdd_pd, "conv_bwd_data");
    const dnnl_memory_desc_t *wf = pd_md(c->fwd_pd, dnnl_query_weights_md);
    const dnnl_memory_desc_t *wb = pd_md(c->bwdd_pd, dnnl_query_weights_md);
    c->w_to_fwd = make_reorder(&c->w_oihw, wf, 0);
    c->w_to_bwdd = make_reorder(&c->w_oihw, wb, 0);
    c->src_bytes = align_up(dn->memory_desc_get_size(&c->src_bf16));
    c->dst_bytes = align_up(dn->memory_desc_get_size(&c->dst_bf16));
    c->din_bytes = align_up(dn->memory_desc_get_size(&c->src_f32));
    c->wf_bytes = align_up(dn->memory_desc_get_size(wf));
    c->wb_bytes = align_up(dn->memory_desc_get_size(wb));
    c->scratch_fwd = align_up(pd_scratch(c->fwd_pd));
    c->native_dw = native_weight_grad(c);
    c->scratch_bwdd = align_up(pd_scratch(c->bwdd_pd));
    dgrad_chunks_make(c, wb);
    c->scratch_bwdw =
        align_up(c->native_dw ? weight_grad_native_make(c) : weight_grad_mm_make(c));
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
    dn->primitive_destroy(c->fwd);
    dn->primitive_destroy(c->bwdd);
    dn->primitive_destroy(c->w_to_fwd);
    dn->primitive_destroy(c->w_to_bwdd);
    dn->primitive_desc_destroy(c->fwd_pd);
    dn->primitive_desc_destroy(c->bwdd_pd);
    if (c->native_dw) {
        dn->primitive_destroy(c->bwdw);
        dn->primitive_destroy(c->dw_add);
    }
    if (c->bwdw_pd)
        dn->primitive_desc_destroy(c->bwdw_pd);
    free_mm(&c->mm_full);
    free_mm(&c->mm_tail);
    free_dgrad(&c->dg_full);
    free_dgrad(&c->dg_tail);
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
    onednn_check(dn->memory_create(&m, md, onednn_engine, (void *)p), "memory_create");
    e->a[e->n].arg = kind;
    e->a[e->n].memory = m;
    e->n++;
}

static void run(dnnl_primitive_t p, exec_args *e, const char *what)
{
    dnnl_stream_t st;
    onednn_check(dn->stream_create(&st, onednn_engine, dnnl_stream_default_flags),
                 "stream_create");
    onednn_check(dn->primitive_execute(p, st, e->n, e->a), what);
    onednn_check(dn->stream_wait(st), "stream_wait");
    dn->stream_destroy(st);
    for (int i = 0; i < e->n; i++)
        dn->memory_destroy(e->a[i].memory);
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


/* dst (bf16 bits) <- src rounded to nearest even; NaNs stay NaNs. Split into blocks over
 * threads, each block rounded by bf16_round.h's vectorised loop. */
static void to_bf16(uint16_t *dst, const float *src, size_t n)
{
    const size_t blk = 16384, nb = (n + blk - 1) / blk;
#pragma omp parallel for schedule(static) if (n >= ONEDNN_PAR_MIN)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * blk;
        bf16_pack_span(dst + i0, src + i0, n - i0 < blk ? n - i0 : blk);
    }
}

/* d[0..cin) <- s rounded: the vectorised loop where a pixel's channels fill a vector,
 * inline for the stem's one or three channels, where a call would cost more. */
static inline void pixel_to_bf16(uint16_t *d, const float *s, int cin)
{
    if (cin >= 8) {
        bf16_pack_span(d, s, (size_t)cin);
        return;
    }
    for (int ci = 0; ci < cin; ci++)
        d[ci] = bf16_bits(s[ci]);
}

/* bf16 columns of images [n0, n0 + imgs): row (n, oy, ox), columns (ky, kx, ci), zero
 * where the kernel overhangs the padding. */
static void im2col_bf16(uint16_t *col, const float *in, int n0, int imgs, const onednn_conv *c)
{
    const int k = c->k, cin = c->c_in, ho = c->h_out, wo = c->w_out;
    const size_t q = kkc(c);
    const int rows = imgs * ho;
#pragma omp parallel for schedule(static) if ((size_t)rows * wo * q >= ONEDNN_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        int n = n0 + r / ho, oy = r % ho;
        for (int ox = 0; ox < wo; ox++) {
            uint16_t *d = col + ((size_t)r * wo + ox) * q;
            for (int ky = 0; ky < k; ky++) {
                int iy = oy * c->stride - c->pad + ky;
                for (int kx = 0; kx < k; kx++, d += cin) {
                    int ix = ox * c->stride - c->pad + kx;
                    if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) {
                        memset(d, 0, (size_t)cin * sizeof(uint16_t));
                        continue;
                    }
                    pixel_to_bf16(d, in + (((size_t)n * c->h + iy) * c->w + ix) * cin, cin);
                }
            }
        }
    }
}

/* dw (C_out, C_in, K, K) += g (C_out, K, K, C_in). */
static void add_ohwi_to_oihw(float *dw, const float *g, const onednn_conv *c)
{
    const int kk = c->k * c->k, cin = c->c_in;
#pragma omp parallel for schedule(static) if ((size_t)c->c_out * kk * cin >= ONEDNN_PAR_MIN)
    for (int o = 0; o < c->c_out; o++) {
        const float *go = g + (size_t)o * kk * cin;
        float *d = dw + (size_t)o * kk * cin;
        for (int ci = 0; ci < cin; ci++)
            for (int q = 0; q < kk; q++)
                d[(size_t)ci * kk + q] += go[(size_t)q * cin + ci];
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
    return dn->memory_desc_get_size(md) / elem;
}

static size_t forward_bytes(const onednn_conv *c)
{
    return c->src_bytes + c->wf_bytes + align_up((size_t)c->c_out * sizeof(float)) +
           c->scratch_fwd;
}

static size_t bytes_to_floats(size_t b)
{
    return (b + sizeof(float) - 1) / sizeof(float);
}

static size_t onednn_forward_workspace_floats(const conv2d_shape *s)
{
    int owned;
    onednn_conv *c = conv_get(s, &owned);
    size_t fwd = forward_bytes(c);
    if (owned)
        conv_free(c);
    return bytes_to_floats(fwd);
}

static size_t onednn_workspace_floats(const conv2d_shape *s)
{
    int owned;
    onednn_conv *c = conv_get(s, &owned);
    size_t fwd = forward_bytes(c);
    /* Backward: dY in bf16 and the weights for the input gradient, then the weight
     * gradient's buffers, whose space the input gradient's (a chunk of it where added)
     * reuses after it. */
    size_t wgrad = c->dw_bytes + c->col_bytes + c->scratch_bwdw;
    size_t dgrad = c->dchunk_bytes + c->scratch_dchunk;
    if (c->scratch_bwdd > dgrad) /* an assigned dX: oneDNN writes din itself */
        dgrad = c->scratch_bwdd;
    size_t bwd = c->dst_bytes + c->wb_bytes + (wgrad > dgrad ? wgrad : dgrad);
    if (owned)
        conv_free(c);
    return bytes_to_floats(fwd > bwd ? fwd : bwd);
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

/* dw += the weight gradient of oneDNN's backward-weights convolution (dst: dY in bf16). */
static void weight_grad_native(float *dw, const uint16_t *dst, const float *in, char *p,
                               const onednn_conv *c)
{
    const dnnl_memory_desc_t *dwm = pd_md(c->bwdw_pd, dnnl_query_diff_weights_md);
    float *g = (float *)p;
    uint16_t *src = (uint16_t *)(p + c->dw_bytes);
    char *scratch = (char *)src + c->col_bytes;
    to_bf16(src, in, numel(&c->src_f32, sizeof(float)));
    exec_args e = {0};
    arg_add(&e, DNNL_ARG_SRC, &c->src_bf16, src);
    arg_add(&e, DNNL_ARG_DIFF_DST, &c->dst_bf16, dst);
    arg_add(&e, DNNL_ARG_DIFF_WEIGHTS, dwm, g);
    arg_add(&e, DNNL_ARG_SCRATCHPAD, pd_md(c->bwdw_pd, dnnl_query_scratchpad_md), scratch);
    run(c->bwdw, &e, "conv_bwd_weights");
    reorder(c->dw_add, dwm, g, &c->w_oihw, dw);
}

/* dw += the weight gradient, chunk by chunk of images (dst: dY in bf16). */
static void weight_grad(float *dw, const uint16_t *dst, const float *in, char *p,
                        const onednn_conv *c)
{
    if (c->native_dw) {
        weight_grad_native(dw, dst, in, p, c);
        return;
    }
    float *g = (float *)p;
    uint16_t *col = (uint16_t *)(p + c->dw_bytes);
    char *scratch = (char *)col + c->col_bytes;
    const size_t img_p = (size_t)c->h_out * c->w_out;
    memset(g, 0, (size_t)c->c_out * kkc(c) * sizeof(float));
    for (int n0 = 0; n0 < c->n; n0 += c->mm_full.imgs) {
        const onednn_mm *m = c->n - n0 >= c->mm_full.imgs ? &c->mm_full : &c->mm_tail;
        if (is_direct(c))
            to_bf16(col, in + (size_t)n0 * img_p * c->c_in, (size_t)m->imgs * img_p * c->c_in);
        else
            im2col_bf16(col, in, n0, m->imgs, c);
        exec_args e = {0};
        arg_add(&e, DNNL_ARG_SRC, &m->a, dst + (size_t)n0 * img_p * c->c_out);
        arg_add(&e, DNNL_ARG_WEIGHTS, &m->b, col);
        arg_add(&e, DNNL_ARG_DST, &m->c, g);
        arg_add(&e, DNNL_ARG_SCRATCHPAD, pd_md(m->pd, dnnl_query_scratchpad_md), scratch);
        run(m->prim, &e, "matmul");
    }
    if (c->k == 1)
        add_into(dw, g, (size_t)c->c_out * c->c_in);
    else
        add_ohwi_to_oihw(dw, g, c);
}

/* The whole batch's backward-data convolution, as a chunk of all its images. */
static onednn_dgrad whole_dgrad(const onednn_conv *c)
{
    return (onednn_dgrad){.imgs = c->n, .pd = c->bwdd_pd, .prim = c->bwdd,
                          .din = c->src_f32, .dy = c->dst_bf16};
}

/* out = the input gradient of g's images of dy (bf16), the weights wk in the batch's
 * layout (every chunk's primitive reads that layout). */
static void run_dgrad(const onednn_dgrad *g, const onednn_conv *c, const uint16_t *dy,
                      const char *wk, float *out, char *scratch)
{
    exec_args e = {0};
    arg_add(&e, DNNL_ARG_DIFF_DST, &g->dy, dy);
    arg_add(&e, DNNL_ARG_WEIGHTS, pd_md(c->bwdd_pd, dnnl_query_weights_md), wk);
    arg_add(&e, DNNL_ARG_DIFF_SRC, &g->din, out);
    arg_add(&e, DNNL_ARG_SCRATCHPAD, pd_md(g->pd, dnnl_query_scratchpad_md), scratch);
    run(g->prim, &e, "conv_bwd_data");
}

/* din += the input gradient, through scratch at p: whole, or a chunk of images at a time
 * (dgrad_chunks_make). */
static void dgrad_added(float *din, const uint16_t *dst, const char *wk, char *p,
                        const onednn_conv *c)
{
    const onednn_dgrad whole = whole_dgrad(c);
    const onednn_dgrad *full = c->dg_full.imgs ? &c->dg_full : &whole;
    const size_t img_in = (size_t)c->h * c->w * c->c_in;
    const size_t img_out = (size_t)c->h_out * c->w_out * c->c_out;
    float *dtmp = (float *)p;
    for (int n0 = 0; n0 < c->n; n0 += full->imgs) {
        const onednn_dgrad *g = c->n - n0 >= full->imgs ? full : &c->dg_tail;
        run_dgrad(g, c, dst + (size_t)n0 * img_out, wk, dtmp, p + c->dchunk_bytes);
        add_into(din + (size_t)n0 * img_in, dtmp, (size_t)g->imgs * img_in);
    }
}

static void onednn_backward(float *din, float *dw, const float *dout, const float *in,
                            const float *w, float *ws, const conv2d_shape *s, int assign_din)
{
    int owned;
    onednn_conv *c = conv_get(s, &owned);
    char *p = (char *)ws;
    uint16_t *dst = (uint16_t *)p;
    char *wk = p + c->dst_bytes;
    char *rest = wk + c->wb_bytes; /* weight_grad's buffers, then the input gradient's */
    to_bf16(dst, dout, numel(&c->dst_f32, sizeof(float)));
    if (dw)
        weight_grad(dw, dst, in, rest, c);
    if (din) {
        const dnnl_memory_desc_t *wb = pd_md(c->bwdd_pd, dnnl_query_weights_md);
        reorder(c->w_to_bwdd, &c->w_oihw, w, wb, wk);
        const onednn_dgrad whole = whole_dgrad(c);
        if (assign_din) /* oneDNN overwrites its output: straight into din */
            run_dgrad(&whole, c, dst, wk, din, rest);
        else
            dgrad_added(din, dst, wk, rest, c);
    }
    if (owned)
        conv_free(c);
}

const conv_backend conv_backend_onednn_bf16 = {
    .name = "onednn-bf16",
    .workspace_floats = onednn_workspace_floats,
    .forward_workspace_floats = onednn_forward_workspace_floats,
    .forward = onednn_forward,
    .backward = onednn_backward,
};
