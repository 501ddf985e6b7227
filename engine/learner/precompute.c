/* precompute: the cache of pooled body activations for head-only training. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


/* ---- precompute set-up -------------------------------------------------------------------- */

/* Finds the head's pooling node, whose output the cache holds. */
int lrn_pc_setup(learner *l, char *err, size_t errlen)
{
    int pid = net_pool_node(l->net);
    if (pid < 0) {
        err_set(err, errlen, "precompute: the model has no pooling between body and head");
        return -EINVAL;
    }
    /* Node shapes are known once a batch shape is set. */
    int rc = net_set_batch(l->net, l->bs, l->sz, l->sz);
    if (rc) {
        err_set(err, errlen, "precompute: size %d does not fit the network", l->sz);
        return rc;
    }
    l->pool_node = pid;
    l->pc_dim = net_node_features(l->net, pid);
    return l->pc_dim > 0 ? 0 : -EINVAL;
}

static void pc_split_free(pc_split *s)
{
    free(s->x);
    free(s->y);
    free(s->t);
    memset(s, 0, sizeof *s);
}

void lrn_pc_drop(learner *l)
{
    pc_split_free(&l->pc_train);
    pc_split_free(&l->pc_valid_split);
    l->pc_valid = 0;
}

/* ---- precompute --------------------------------------------------------------------------- */

static int pc_fill(learner *l, ds_split split, loader *dl, pc_split *out, const ev_hooks *h,
                   char *err, size_t errlen)
{
    int n_items = loader_n_items(dl), dim = l->pc_dim, nc = l->info->n_classes;
    memset(out, 0, sizeof *out);
    out->n = n_items;
    out->x = malloc((size_t)(n_items ? n_items : 1) * dim * sizeof(float));
    if (l->info->multi_label)
        out->t = malloc((size_t)(n_items ? n_items : 1) * nc * sizeof(float));
    else
        out->y = malloc((size_t)(n_items ? n_items : 1) * sizeof(int32_t));
    if (!out->x || (!out->t && !out->y)) {
        pc_split_free(out);
        err_set(err, errlen, "precompute: out of memory for %d cached activations", n_items);
        return -ENOMEM;
    }
    /* Data parallelism: each rank computes its shard's rows, zeros elsewhere, and the sum
     * gathers them. */
    dist *d = l->cfg.dist;
    if (dist_active(d)) {
        memset(out->x, 0, (size_t)n_items * dim * sizeof(float));
        if (out->t)
            memset(out->t, 0, (size_t)n_items * nc * sizeof(float));
        else
            memset(out->y, 0, (size_t)n_items * sizeof(int32_t));
    }
    int rc = loader_begin_epoch(dl, (int)l->epoch_id++, l->sz, 0);
    const batch *b;
    while (rc == 0 && (rc = loader_next(dl, &b)) > 0) {
        rc = net_set_batch(l->net, b->n, l->sz, l->sz);
        if (rc)
            break;
        const float *pooled = net_forward_to(l->net, b->x, 0, l->pool_node);
        if (!pooled) {
            rc = -ENOMEM;
            break;
        }
        for (int i = 0; i < b->n; i++) {
            int k = b->index[i];
            memcpy(out->x + (size_t)k * dim, pooled + (size_t)i * dim, dim * sizeof(float));
            if (out->y)
                out->y[k] = b->y[i];
            else
                memcpy(out->t + (size_t)k * nc, b->targets + (size_t)i * nc,
                       nc * sizeof(float));
        }
        rc = 0;
    }
    if (rc == 0 && dist_active(d)) {
        rc = dist_sum_f32(d, out->x, (size_t)n_items * dim);
        if (!rc)
            rc = out->t ? dist_sum_f32(d, out->t, (size_t)n_items * nc)
                        : dist_sum_i32(d, out->y, (size_t)n_items);
    }
    if (rc < 0) {
        pc_split_free(out);
        err_set(err, errlen, "precompute: reading the %s split failed (%d)",
                split == SPLIT_TRAIN ? "training" : "validation", rc);
        return rc;
    }
    return 0;
}

/* Makes sure the cache matches the current weights and size. */
int lrn_pc_ensure(learner *l, const ev_hooks *h, char *err, size_t errlen)
{
    if (l->pc_valid && l->pc_sz == l->sz && l->pc_version == l->weights_version)
        return 0;
    lrn_pc_drop(l);
    double t0 = clock_mono_s();
    if (!l->plain_dl) {
        int rc = lrn_make_loader(l, &l->plain_dl, SPLIT_TRAIN, 0, 0, 0, err, errlen);
        if (rc)
            return rc;
    }
    int rc = pc_fill(l, SPLIT_TRAIN, l->plain_dl, &l->pc_train, h, err, errlen);
    if (!rc)
        rc = pc_fill(l, SPLIT_VALID, l->valid_dl, &l->pc_valid_split, h, err, errlen);
    if (rc) {
        lrn_pc_drop(l);
        return rc;
    }
    l->pc_valid = 1;
    l->pc_sz = l->sz;
    l->pc_version = l->weights_version;
    lrn_note(h, "precompute",
         "cached the frozen body's pooled activations (%d floats each) of %d training and %d "
         "validation images at size %d in %.1f s; the head trains from them without "
         "augmentation", l->pc_dim, l->pc_train.n, l->pc_valid_split.n, l->sz,
         clock_mono_s() - t0);
    return 0;
}

int lrn_train_batches(learner *l, const ev_hooks *h, int64_t *bpe, char *err, size_t errlen)
{
    if (!l->precompute) {
        *bpe = loader_n_batches(l->train_dl);
        return 0;
    }
    int rc = lrn_pc_ensure(l, h, err, errlen);
    if (rc)
        return rc;
    *bpe = l->pc_train.n >= l->bs ? l->pc_train.n / l->bs : (l->pc_train.n > 0);
    return 0;
}
