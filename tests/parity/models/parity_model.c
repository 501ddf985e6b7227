/* parity_model.c: runs one model step for the PyTorch parity script: loads weights and a
 * batch from safetensors, runs forward (+ loss and backward when training), optionally
 * SGD steps, and writes logits, loss, gradients, BatchNorm statistics and parameters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "models/models.h"
#include "net.h"
#include "safetensors.h"
#include "weights.h"

static int usage(void)
{
    fprintf(stderr, "usage: parity_model ARCH fastai|plain C_IN N_CLASSES FREEZE_TO "
                    "train|eval WEIGHTS.st BATCH.st OUT.st\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc != 10)
        return usage();
    blas_startup(argv, getenv("PARITY_THREADS") ? atoi(getenv("PARITY_THREADS")) : 2);
    model_spec s;
    model_spec_defaults(&s);
    s.arch = argv[1];
    s.head = strcmp(argv[2], "plain") == 0 ? HEAD_PLAIN : HEAD_FASTAI;
    s.ps[0] = s.ps[1] = 0.0f; /* dropout masks cannot match torch's RNG */
    s.c_in = atoi(argv[3]);
    s.n_classes = atoi(argv[4]);
    int freeze_to = atoi(argv[5]);
    int training = strcmp(argv[6], "train") == 0;
    char err[4096];
    net *n = NULL;
    st_file wf = {0}, bf = {0};
    int rc = model_create(&n, &s, err, sizeof(err));
    if (rc == 0)
        rc = weights_load_file(n, argv[7], WEIGHTS_ALL, err, sizeof(err));
    if (rc == 0)
        rc = st_read_file(&bf, argv[8], err, sizeof(err));
    const st_tensor *x = rc == 0 ? st_find(&bf, "x") : NULL;
    const st_tensor *y = rc == 0 ? st_find(&bf, "y") : NULL;
    if (rc == 0 && (!x || !y || x->ndim != 4 || x->dtype != ST_F32 || y->dtype != ST_I64)) {
        snprintf(err, sizeof(err), "batch file needs x (N,H,W,C) F32 and y (N) I64");
        rc = -EINVAL;
    }
    if (rc != 0) {
        fprintf(stderr, "parity_model: %s\n", err);
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
    net_zero_grad(n);
    const float *logits = net_forward(n, x->data, training);
    float loss = net_loss(n, labels, NULL);
    if (training)
        net_backward(n, labels, NULL);

    int cap = 2 * n->n_tensors + n->n_nodes + 4;
    st_tensor *out = calloc((size_t)cap, sizeof(*out));
    char (*names)[NET_NAME_MAX + 8] = calloc((size_t)n->n_tensors, sizeof(*names));
    int k = 0;
    out[k++] = (st_tensor){.name = "logits", .dtype = ST_F32, .ndim = 2,
                           .shape = {batch, n->n_out},
                           .nbytes = (size_t)batch * n->n_out * sizeof(float), .data = logits};
    out[k++] = (st_tensor){.name = "loss", .dtype = ST_F32, .ndim = 1, .shape = {1},
                           .nbytes = sizeof(float), .data = &loss};
    k += weights_views(n, out + k, cap - k);
    for (int t = 0; training && t < n->n_tensors; t++) {
        const net_tensor *nt = &n->tensors[t];
        if (nt->is_buffer || nt->group < n->freeze_to)
            continue;
        snprintf(names[t], sizeof(names[t]), "grad.%s", nt->name);
        st_tensor *o = &out[k++];
        o->name = names[t];
        o->dtype = ST_F32;
        o->ndim = nt->ndim;
        for (int d = 0; d < nt->ndim; d++)
            o->shape[d] = nt->shape[d];
        o->nbytes = nt->numel * sizeof(float);
        o->data = n->grads + nt->offset;
    }
    /* Every ReLU's output, in forward order: the script gives PyTorch the same ReLU
     * masks, so that an activation within rounding of zero cannot take a different side
     * of the kink in the two implementations. */
    char (*relu_names)[32] = calloc((size_t)n->n_nodes, sizeof(*relu_names));
    for (int i = 0, r = 0; i < n->n_nodes; i++) {
        const node *d = &n->nodes[i];
        if (d->kind != NODE_RELU)
            continue;
        snprintf(relu_names[i], sizeof(relu_names[i]), "relu.%d", r++);
        out[k++] = (st_tensor){.name = relu_names[i], .dtype = ST_F32, .ndim = 4,
                               .shape = {batch, d->h, d->w, d->c},
                               .nbytes = (size_t)batch * d->h * d->w * d->c * sizeof(float),
                               .data = n->values[d->value]};
    }
    rc = st_write_file(argv[9], out, k, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "parity_model: %s\n", err);
    free(out);
    free(names);
    free(relu_names);
    free(labels);
    st_free(&bf);
    st_free(&wf);
    net_destroy(n);
    return rc ? 1 : 0;
}
