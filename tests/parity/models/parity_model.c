/* parity_model.c: runs a model for the PyTorch parity script: loads weights and a batch
 * from safetensors, runs forward (+ loss and backward when training), then `steps` SGD
 * steps (momentum 0.9, weight decay, one LR per layer group) each after a fresh forward
 * and backward, and writes logits, loss and gradients of the first pass, the ReLU and
 * max-pool decisions of every pass, and the parameters and BatchNorm statistics after. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "models/models.h"
#include "net.h"
#include "optim.h"
#include "safetensors.h"
#include "weights.h"

/* Output tensors, each with its own copy of the data and name. */
typedef struct outbox {
    st_tensor t[4096];
    int n;
} outbox;

static void put(outbox *o, const char *name, st_dtype dt, int ndim, const int64_t *shape,
                const void *data, size_t nbytes)
{
    if (o->n == (int)(sizeof(o->t) / sizeof(o->t[0])))
        abort();
    st_tensor *t = &o->t[o->n++];
    t->name = strdup(name);
    t->dtype = dt;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof(int64_t));
    t->nbytes = nbytes;
    void *copy = malloc(nbytes ? nbytes : 1);
    memcpy(copy, data, nbytes);
    t->data = copy;
}

static void outbox_free(outbox *o)
{
    for (int i = 0; i < o->n; i++) {
        free(o->t[i].name);
        free((void *)o->t[i].data);
    }
}

/* The ReLU outputs and max-pool choices of the last forward, prefixed "f<pass>.": the
 * script gives PyTorch the same decisions, so that an activation within rounding of a
 * kink (zero, or a neighbour's value) cannot fall on different sides of it in the two
 * implementations. */
static void put_choices(outbox *o, const net *n, int pass)
{
    char name[64];
    int r = 0, m = 0;
    for (int i = 0; i < n->n_nodes; i++) {
        const node *d = &n->nodes[i];
        size_t cnt = (size_t)n->batch * d->h * d->w * d->c;
        if (d->kind == NODE_RELU) {
            int64_t shape[4] = {n->batch, d->h, d->w, d->c};
            snprintf(name, sizeof(name), "f%d.relu.%d", pass, r++);
            put(o, name, ST_F32, 4, shape, n->values[d->value], cnt * sizeof(float));
        } else if (d->kind == NODE_MAXPOOL || d->kind == NODE_CONCATPOOL) {
            /* maxpool: flat NHWC input index per output; concat pool: the spatial
             * position of each (sample, channel) maximum. */
            size_t na = d->kind == NODE_MAXPOOL ? cnt : cnt / 2;
            int64_t *idx = malloc(na * sizeof(int64_t));
            for (size_t e = 0; e < na; e++)
                idx[e] = d->argmax[e];
            int64_t shape[1] = {(int64_t)na};
            snprintf(name, sizeof(name), "f%d.argmax.%d", pass, m++);
            put(o, name, ST_I64, 1, shape, idx, na * sizeof(int64_t));
            free(idx);
        }
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: parity_model ARCH fastai|plain C_IN N_CLASSES FREEZE_TO "
                    "train|eval STEPS WEIGHTS.st BATCH.st OUT.st\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc != 11)
        return usage();
    blas_startup(argv, 2);
    model_spec s;
    model_spec_defaults(&s);
    s.arch = argv[1];
    s.head = strcmp(argv[2], "plain") == 0 ? HEAD_PLAIN : HEAD_FASTAI;
    s.ps[0] = s.ps[1] = 0.0f; /* dropout masks cannot match torch's RNG */
    s.c_in = atoi(argv[3]);
    s.n_classes = atoi(argv[4]);
    int freeze_to = atoi(argv[5]);
    int training = strcmp(argv[6], "train") == 0;
    int steps = training ? atoi(argv[7]) : 0;
    char err[4096];
    net *n = NULL;
    optim *opt = NULL;
    st_file bf = {0};
    int rc = model_create(&n, &s, err, sizeof(err));
    if (rc == 0)
        rc = weights_load_file(n, argv[8], WEIGHTS_ALL, err, sizeof(err));
    if (rc == 0)
        rc = st_read_file(&bf, argv[9], err, sizeof(err));
    const st_tensor *x = rc == 0 ? st_find(&bf, "x") : NULL;
    const st_tensor *y = rc == 0 ? st_find(&bf, "y") : NULL;
    if (rc == 0 && (!x || !y || x->ndim != 4 || x->dtype != ST_F32 || y->dtype != ST_I64)) {
        snprintf(err, sizeof(err), "batch file needs x (N,H,W,C) F32 and y (N) I64");
        rc = -EINVAL;
    }
    optim_config oc;
    optim_config_defaults(&oc);
    if (rc == 0)
        rc = optim_create(&opt, n, &oc);
    const double lrs[3] = {0.01, 0.03, 0.1}, wds[1] = {1e-3};
    if (rc == 0 && (optim_set_lrs(opt, lrs, 3) < 0 || optim_set_wds(opt, wds, 1) < 0)) {
        snprintf(err, sizeof(err), "optimizer refused the learning rates");
        rc = -EINVAL;
    }
    if (rc != 0) {
        fprintf(stderr, "parity_model: %s\n", err);
        optim_destroy(opt);
        net_destroy(n);
        st_free(&bf);
        return 1;
    }
    int batch = (int)x->shape[0];
    int32_t *labels = malloc((size_t)batch * sizeof(int32_t));
    for (int i = 0; i < batch; i++)
        labels[i] = (int32_t)((const int64_t *)y->data)[i];
    net_set_batch(n, batch, (int)x->shape[1], (int)x->shape[2]);
    net_freeze_to(n, freeze_to);
    /* put_choices reads every ReLU output after backward: keep them all unshared (the
     * memory plan gives the same bits, tests/unit/engine/test_net_plan.c). */
    net_keep_values(n, 1);

    static outbox out;
    char name[NET_NAME_MAX + 16];
    for (int pass = 0; pass < (steps > 0 ? steps : 1); pass++) {
        net_zero_grad(n);
        const float *logits = net_forward(n, x->data, training);
        float loss = net_loss(n, labels, NULL);
        if (training)
            net_backward(n, labels, NULL);
        put_choices(&out, n, pass);
        if (pass == 0) { /* logits, loss, gradients and BN statistics of pass 0 */
            int64_t lshape[2] = {batch, n->n_out}, one[1] = {1};
            put(&out, "logits", ST_F32, 2, lshape, logits, (size_t)batch * n->n_out * 4);
            put(&out, "loss", ST_F32, 1, one, &loss, sizeof(float));
            for (int t = 0; training && t < n->n_tensors; t++) {
                const net_tensor *nt = &n->tensors[t];
                if (nt->is_buffer || nt->group < n->freeze_to)
                    continue;
                int64_t shape[4];
                for (int d = 0; d < nt->ndim; d++)
                    shape[d] = nt->shape[d];
                snprintf(name, sizeof(name), "grad.%s", nt->name);
                put(&out, name, ST_F32, nt->ndim, shape, n->grads + nt->offset,
                    nt->numel * sizeof(float));
            }
            /* BatchNorm statistics after the first forward. */
            for (int t = 0; t < n->n_tensors; t++) {
                const net_tensor *nt = &n->tensors[t];
                if (!nt->is_buffer)
                    continue;
                int64_t shape[1] = {(int64_t)nt->numel};
                put(&out, nt->name, ST_F32, 1, shape, net_tensor_data(n, t),
                    nt->numel * sizeof(float));
            }
        }
        if (pass < steps)
            optim_step(opt); /* after the gradients were copied out */
    }
    if (steps > 0) {
        for (int t = 0; t < n->n_tensors; t++) {
            const net_tensor *nt = &n->tensors[t];
            int64_t shape[4];
            for (int d = 0; d < nt->ndim; d++)
                shape[d] = nt->shape[d];
            snprintf(name, sizeof(name), "after.%s", nt->name);
            put(&out, name, ST_F32, nt->ndim, shape, net_tensor_data(n, t),
                nt->numel * sizeof(float));
        }
    }
    rc = st_write_file(argv[10], out.t, out.n, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "parity_model: %s\n", err);
    outbox_free(&out);
    free(labels);
    st_free(&bf);
    optim_destroy(opt);
    net_destroy(n);
    return rc ? 1 : 0;
}
