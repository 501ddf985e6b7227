/* ops_harness.c: runs every op of ops.h forward and backward on the cases of a
 * safetensors file and writes outputs and gradients to another, for test_ops_parity.py.
 *
 * `ops_harness --bf16-supported` exits 0 when the CPU runs bf16 natively, 1 otherwise.
 *
 * Each case is a group of tensors "<case>.<field>"; "<case>.cfg" (I64) holds the opcode
 * and its settings. Activations are NHWC, weights OIHW, as in ops.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "safetensors.h"

enum {
    OP_CONV = 1,    /* cfg: stride, pad, has_bias; x, w, [b], dy -> y, dx, dw, [db] */
    OP_BN = 2,      /* cfg: training; x, gamma, beta, rm, rv, dy -> y, dx, dgamma, dbeta, rm, rv */
    OP_RELU = 3,    /* x, dy -> y, dx */
    OP_MAXPOOL = 4, /* cfg: k, stride, pad; x, dy -> y, dx */
    OP_AVG = 5,     /* global average pool: x (N,H,W,C), dy (N,C) -> y, dx */
    OP_GMAX = 6,    /* global max pool */
    OP_CONCAT = 7,  /* AdaptiveConcatPool2d: y (N, 2C) */
    OP_LINEAR = 8,  /* cfg: has_bias; x, w, [b], dy -> y, dx, dw, [db] */
    OP_XENT = 9,    /* logits, labels (I64), eps (1) -> loss, dlogits */
    OP_BCE = 10,    /* logits, targets -> loss, dlogits */
    OP_ADD = 11,    /* a, b, dy -> y, da, db */
    /* bf16 mixed precision (the net's path: linear as a 1x1 convolution); backward runs
     * twice, so the gradients written are twice one backward's: proof that it adds. */
    OP_CONV_BF16 = 12,   /* as OP_CONV */
    OP_LINEAR_BF16 = 13, /* as OP_LINEAR */
    OP_SILU = 14,        /* x, dy -> y, dx */
};

typedef struct outputs {
    st_tensor *t;
    int n, cap;
} outputs;

typedef struct harness {
    const st_file *in;
    outputs out;
    char err[512];
} harness;

/* A float copy of input "<cs>.<field>" (the file's data may be unaligned); its shape in
 * shape/ndim when asked. NULL when absent. */
static float *get(harness *h, const char *cs, const char *field, int64_t *shape, int *ndim)
{
    char name[600];
    snprintf(name, sizeof(name), "%s.%s", cs, field);
    const st_tensor *t = st_find(h->in, name);
    if (!t)
        return NULL;
    size_t n = t->nbytes / (t->dtype == ST_I64 ? 8 : 4);
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p)
        return NULL;
    if (t->dtype == ST_F32) {
        memcpy(p, t->data, t->nbytes);
    } else {
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, (const char *)t->data + 8 * i, 8);
            p[i] = (float)v;
        }
    }
    if (shape)
        memcpy(shape, t->shape, sizeof(t->shape));
    if (ndim)
        *ndim = t->ndim;
    return p;
}

static float *need(harness *h, const char *cs, const char *field, int64_t *shape, int *ndim)
{
    float *p = get(h, cs, field, shape, ndim);
    if (!p) {
        fprintf(stderr, "ops_harness: case %s lacks %s\n", cs, field);
        abort(); /* the script and the harness disagree: a bug in the test */
    }
    return p;
}

static float *zeros(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "ops_harness: out of memory\n");
        abort();
    }
    return p;
}

/* Takes ownership of data. */
static void put(harness *h, const char *cs, const char *field, float *data, int ndim,
                const int64_t *shape)
{
    if (h->out.n == h->out.cap) {
        h->out.cap = h->out.cap ? 2 * h->out.cap : 64;
        h->out.t = realloc(h->out.t, (size_t)h->out.cap * sizeof(st_tensor));
        if (!h->out.t)
            abort();
    }
    st_tensor *t = &h->out.t[h->out.n++];
    memset(t, 0, sizeof(*t));
    char name[600];
    snprintf(name, sizeof(name), "%s.%s", cs, field);
    t->name = strdup(name);
    t->dtype = ST_F32;
    t->ndim = ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    t->nbytes = n * sizeof(float);
    t->data = data;
}

/* A linear layer (x (N, I), w (O, I)) is the 1x1 convolution of N 1x1 images. */
static void run_conv(harness *h, const char *cs, const float *cfg, int op)
{
    int64_t xs[ST_MAX_DIMS], ws[ST_MAX_DIMS];
    int xd, wd;
    float *x = need(h, cs, "x", xs, &xd), *w = need(h, cs, "w", ws, &wd);
    int linear = op == OP_LINEAR_BF16, bf16 = op != OP_CONV;
    float *b = cfg[linear ? 1 : 3] != 0 ? need(h, cs, "b", NULL, NULL) : NULL;
    float *dy = need(h, cs, "dy", NULL, NULL);
    conv2d_shape s;
    if (linear)
        conv2d_shape_init(&s, (int)xs[0], 1, 1, (int)xs[1], (int)ws[0], 1, 1, 0);
    else
        conv2d_shape_init(&s, (int)xs[0], (int)xs[1], (int)xs[2], (int)xs[3], (int)ws[0],
                          (int)ws[2], (int)cfg[1], (int)cfg[2]);
    if (bf16)
        s.precision = PRECISION_BF16;
    size_t nout = (size_t)s.n * s.h_out * s.w_out * s.c_out;
    float *ws_buf = zeros(conv2d_workspace_floats(&s));
    float *y = zeros(nout), *dx = zeros((size_t)s.n * s.h * s.w * s.c_in);
    float *dw = zeros((size_t)s.c_out * s.c_in * s.k * s.k), *db = zeros(s.c_out);
    conv2d_forward(y, x, w, b, ws_buf, &s);
    for (int pass = 0; pass < (bf16 ? 2 : 1); pass++)
        conv2d_backward(dx, dw, b ? db : NULL, dy, x, w, ws_buf, &s, 0);
    int64_t ys[4] = {s.n, s.h_out, s.w_out, s.c_out}, ls[2] = {s.n, s.c_out};
    int64_t bs[1] = {s.c_out};
    put(h, cs, "y", y, linear ? 2 : 4, linear ? ls : ys);
    put(h, cs, "dx", dx, xd, xs);
    put(h, cs, "dw", dw, wd, ws);
    if (b)
        put(h, cs, "db", db, 1, bs);
    else
        free(db);
    free(x);
    free(w);
    free(b);
    free(dy);
    free(ws_buf);
}

static void run_bn(harness *h, const char *cs, const float *cfg)
{
    int64_t xs[ST_MAX_DIMS];
    int nd;
    float *x = need(h, cs, "x", xs, &nd);
    float *g = need(h, cs, "gamma", NULL, NULL), *be = need(h, cs, "beta", NULL, NULL);
    float *rm = need(h, cs, "rm", NULL, NULL), *rv = need(h, cs, "rv", NULL, NULL);
    float *dy = need(h, cs, "dy", NULL, NULL);
    int c = (int)xs[nd - 1];
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)xs[i];
    int m = (int)(n / c), training = cfg[1] != 0;
    float *y = zeros(n), *dx = zeros(n), *dg = zeros(c), *db = zeros(c);
    float *mean = zeros(c), *rstd = zeros(c);
    batchnorm_forward(y, mean, rstd, rm, rv, x, g, be, m, c, training, 0.1f, 1e-5f);
    batchnorm_backward(dx, dg, db, dy, x, mean, rstd, g, m, c, training);
    int64_t cs1[1] = {c};
    put(h, cs, "y", y, nd, xs);
    put(h, cs, "dx", dx, nd, xs);
    put(h, cs, "dgamma", dg, 1, cs1);
    put(h, cs, "dbeta", db, 1, cs1);
    put(h, cs, "rm", rm, 1, cs1);
    put(h, cs, "rv", rv, 1, cs1);
    free(x);
    free(g);
    free(be);
    free(dy);
    free(mean);
    free(rstd);
}

/* ReLU or SiLU. */
static void run_activation(harness *h, const char *cs, int op)
{
    int64_t xs[ST_MAX_DIMS];
    int nd;
    float *x = need(h, cs, "x", xs, &nd), *dy = need(h, cs, "dy", NULL, NULL);
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)xs[i];
    float *y = zeros(n), *dx = zeros(n);
    if (op == OP_SILU) {
        silu_forward(y, x, n);
        silu_backward(dx, dy, x, n);
    } else {
        relu_forward(y, x, n);
        relu_backward(dx, dy, y, n);
    }
    put(h, cs, "y", y, nd, xs);
    put(h, cs, "dx", dx, nd, xs);
    free(x);
    free(dy);
}

static void run_add(harness *h, const char *cs)
{
    int64_t xs[ST_MAX_DIMS];
    int nd;
    float *a = need(h, cs, "a", xs, &nd), *b = need(h, cs, "b", NULL, NULL);
    float *dy = need(h, cs, "dy", NULL, NULL);
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)xs[i];
    float *y = zeros(n), *da = zeros(n), *dbb = zeros(n);
    add_forward(y, a, b, n);
    add_backward(da, dbb, dy, n);
    put(h, cs, "y", y, nd, xs);
    put(h, cs, "da", da, nd, xs);
    put(h, cs, "db", dbb, nd, xs);
    free(a);
    free(b);
    free(dy);
}

static void run_maxpool(harness *h, const char *cs, const float *cfg)
{
    int64_t xs[ST_MAX_DIMS];
    float *x = need(h, cs, "x", xs, NULL), *dy = need(h, cs, "dy", NULL, NULL);
    pool2d_shape s;
    pool2d_shape_init(&s, (int)xs[0], (int)xs[1], (int)xs[2], (int)xs[3], (int)cfg[1],
                      (int)cfg[2], (int)cfg[3]);
    size_t nout = (size_t)s.n * s.h_out * s.w_out * s.c;
    float *y = zeros(nout), *dx = zeros((size_t)s.n * s.h * s.w * s.c);
    int32_t *am = malloc(nout * sizeof(int32_t));
    maxpool2d_forward(y, am, x, &s);
    maxpool2d_backward(dx, dy, am, &s);
    int64_t ys[4] = {s.n, s.h_out, s.w_out, s.c};
    put(h, cs, "y", y, 4, ys);
    put(h, cs, "dx", dx, 4, xs);
    free(am);
    free(x);
    free(dy);
}

static void run_global(harness *h, const char *cs, int op)
{
    int64_t xs[ST_MAX_DIMS];
    float *x = need(h, cs, "x", xs, NULL), *dy = need(h, cs, "dy", NULL, NULL);
    int n = (int)xs[0], hw = (int)(xs[1] * xs[2]), c = (int)xs[3];
    int oc = op == OP_CONCAT ? 2 * c : c;
    float *y = zeros((size_t)n * oc), *dx = zeros((size_t)n * hw * c);
    int32_t *am = malloc((size_t)n * c * sizeof(int32_t));
    if (op == OP_AVG) {
        avgpool_global_forward(y, x, n, hw, c);
        avgpool_global_backward(dx, dy, n, hw, c);
    } else if (op == OP_GMAX) {
        maxpool_global_forward(y, am, x, n, hw, c);
        maxpool_global_backward(dx, dy, am, n, hw, c);
    } else {
        concatpool_forward(y, am, x, n, hw, c);
        concatpool_backward(dx, dy, am, n, hw, c);
    }
    int64_t ys[2] = {n, oc};
    put(h, cs, "y", y, 2, ys);
    put(h, cs, "dx", dx, 4, xs);
    free(am);
    free(x);
    free(dy);
}

static void run_linear(harness *h, const char *cs, const float *cfg)
{
    int64_t xs[ST_MAX_DIMS], ws[ST_MAX_DIMS];
    float *x = need(h, cs, "x", xs, NULL), *w = need(h, cs, "w", ws, NULL);
    float *b = cfg[1] != 0 ? need(h, cs, "b", NULL, NULL) : NULL;
    float *dy = need(h, cs, "dy", NULL, NULL);
    int n = (int)xs[0], in_f = (int)xs[1], out_f = (int)ws[0];
    float *y = zeros((size_t)n * out_f), *dx = zeros((size_t)n * in_f);
    float *dw = zeros((size_t)out_f * in_f), *db = zeros(out_f);
    linear_forward(y, x, w, b, n, in_f, out_f);
    linear_backward(dx, dw, b ? db : NULL, dy, x, w, n, in_f, out_f);
    int64_t ys[2] = {n, out_f}, bs[1] = {out_f};
    put(h, cs, "y", y, 2, ys);
    put(h, cs, "dx", dx, 2, xs);
    put(h, cs, "dw", dw, 2, ws);
    if (b)
        put(h, cs, "db", db, 1, bs);
    else
        free(db);
    free(x);
    free(w);
    free(b);
    free(dy);
}

static void run_loss(harness *h, const char *cs, int op)
{
    int64_t xs[ST_MAX_DIMS];
    float *x = need(h, cs, "logits", xs, NULL);
    int n = (int)xs[0], c = (int)xs[1];
    float *probs = zeros((size_t)n * c), *dx = zeros((size_t)n * c), *loss = zeros(1);
    if (op == OP_XENT) {
        float *lf = need(h, cs, "labels", NULL, NULL);
        int32_t *labels = malloc((size_t)n * sizeof(int32_t));
        for (int i = 0; i < n; i++)
            labels[i] = (int32_t)lf[i];
        float *eps = need(h, cs, "eps", NULL, NULL);
        loss[0] = softmax_xent_forward(probs, x, labels, n, c, eps[0]);
        softmax_xent_backward(dx, probs, labels, n, c, eps[0]);
        free(eps);
        free(labels);
        free(lf);
    } else {
        float *t = need(h, cs, "targets", NULL, NULL);
        loss[0] = bce_logits_forward(probs, x, t, n, c);
        bce_logits_backward(dx, probs, t, n, c);
        free(t);
    }
    put(h, cs, "loss", loss, 0, NULL);
    put(h, cs, "dlogits", dx, 2, xs);
    free(probs);
    free(x);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--bf16-supported") == 0)
        return precision_bf16_supported() ? 0 : 1;
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN.safetensors OUT.safetensors\n", argv[0]);
        return 2;
    }
    st_file in;
    harness h = {.in = &in};
    if (st_read_file(&in, argv[1], h.err, sizeof(h.err)) < 0) {
        fprintf(stderr, "ops_harness: %s\n", h.err);
        return 1;
    }
    for (int i = 0; i < in.n; i++) {
        const char *name = in.tensors[i].name;
        size_t len = strlen(name);
        if (len < 5 || strcmp(name + len - 4, ".cfg") != 0)
            continue;
        char cs[256];
        snprintf(cs, sizeof(cs), "%.*s", (int)(len - 4), name);
        float *cfg = need(&h, cs, "cfg", NULL, NULL);
        switch ((int)cfg[0]) {
        case OP_CONV:
        case OP_CONV_BF16:
        case OP_LINEAR_BF16: run_conv(&h, cs, cfg, (int)cfg[0]); break;
        case OP_BN: run_bn(&h, cs, cfg); break;
        case OP_RELU:
        case OP_SILU: run_activation(&h, cs, (int)cfg[0]); break;
        case OP_MAXPOOL: run_maxpool(&h, cs, cfg); break;
        case OP_AVG:
        case OP_GMAX:
        case OP_CONCAT: run_global(&h, cs, (int)cfg[0]); break;
        case OP_LINEAR: run_linear(&h, cs, cfg); break;
        case OP_XENT:
        case OP_BCE: run_loss(&h, cs, (int)cfg[0]); break;
        case OP_ADD: run_add(&h, cs); break;
        default:
            fprintf(stderr, "ops_harness: case %s: unknown opcode %g\n", cs, cfg[0]);
            return 2;
        }
        free(cfg);
    }
    int rc = st_write_file(argv[2], h.out.t, h.out.n, h.err, sizeof(h.err));
    if (rc < 0)
        fprintf(stderr, "ops_harness: %s\n", h.err);
    for (int i = 0; i < h.out.n; i++) {
        free(h.out.t[i].name);
        free((void *)h.out.t[i].data);
    }
    free(h.out.t);
    st_free(&in);
    return rc < 0 ? 1 : 0;
}
