/* net_dist.c: a net as one rank of a data-parallel world (net_dist.h, dist.h). */
#include "net_dist.h"

#include <time.h>

#include "rng.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bn_sum(void *ctx, double *v, size_t n) { return dist_sum_f64(ctx, v, n); }

void net_set_dist(net *n, dist *d)
{
    n->dist = dist_active(d) ? d : NULL;
    n->dist_bn.sum = bn_sum;
    n->dist_bn.ctx = n->dist;
    n->dist_total = n->batch;
    n->dist_before = 0;
}

int net_dist_forward_begin(net *n)
{
    return dist_batch_layout(n->dist, n->batch, &n->dist_total, &n->dist_before);
}

const bn_sync *net_dist_bn_sync(const net *n, int bn_training)
{
    return n->dist && bn_training ? &n->dist_bn : NULL;
}

void net_dist_dropout(net *n, node *d, float *out, const float *in, size_t per_sample)
{
    size_t cnt = (size_t)n->batch * per_sample;
    if (!n->dist) {
        dropout_forward(out, d->mask, in, cnt, d->p, &n->rng);
        return;
    }
    /* One draw per element, samples in global batch order: skip the lower ranks' rows,
     * draw ours, skip the higher ranks' rows. */
    int64_t after = n->dist_total - n->dist_before - n->batch;
    rng_skip(&n->rng, (uint64_t)n->dist_before * per_sample);
    dropout_forward(out, d->mask, in, cnt, d->p, &n->rng);
    rng_skip(&n->rng, (uint64_t)after * per_sample);
}

void net_dist_loss_grad(const net *n, float *g)
{
    if (!n->dist || n->dist_total <= 0)
        return;
    const float share = (float)((double)n->batch / (double)n->dist_total);
    size_t cnt = (size_t)n->batch * n->n_out;
    for (size_t i = 0; i < cnt; i++)
        g[i] *= share;
}

void net_dist_bwd_begin(net *n, net_dist_bwd *b)
{
    b->ready = b->sent = n->n_params;
    b->started = 0;
    b->t_start = 0.0;
}

static void bucket_start(net *n, net_dist_bwd *b, size_t from, size_t to)
{
    dist *d = n->dist;
    if (to <= from)
        return;
    if (!b->started) {
        b->started = 1;
        b->t_start = now_s();
    }
    d->ops->isum_f32(d->ctx, n->grads + from, to - from);
    d->stats.bytes += (to - from) * sizeof(float);
    d->stats.buckets++;
}

void net_dist_bwd_node(net *n, net_dist_bwd *b, int i)
{
    dist *d = n->dist;
    if (!d)
        return;
    const node *nd = &n->nodes[i];
    /* Parameters are laid out in node order, so everything from this node's first
     * parameter to the end of the slab is final now. */
    int t = nd->p_w >= 0 ? nd->p_w : nd->p_b;
    if (t >= 0 && n->tensors[t].offset < b->ready)
        b->ready = n->tensors[t].offset;
    size_t bucket = d->bucket_floats ? d->bucket_floats : DIST_BUCKET_FLOATS;
    if (d->overlap && b->sent - b->ready >= bucket) {
        bucket_start(n, b, b->ready, b->sent);
        b->sent = b->ready;
    }
    if (b->started)
        d->ops->progress(d->ctx);
}

int net_dist_bwd_end(net *n, net_dist_bwd *b)
{
    dist *d = n->dist;
    if (!d)
        return 0;
    bucket_start(n, b, b->ready, b->sent);
    b->sent = b->ready;
    double t0 = now_s();
    int rc = d->ops->wait_all(d->ctx);
    double t1 = now_s();
    d->stats.steps++;
    d->stats.wait_s += t1 - t0;
    if (b->started)
        d->stats.sum_s += t1 - b->t_start;
    return rc;
}
