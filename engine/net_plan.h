/* net_plan.h: internal to net.c: the liveness plan that places a net's activations, their
 * recomputed copies, activation gradients and convolution scratch in one slab.
 *
 * Time runs over the forward (node i at step i) and then the backward (node i at step
 * 2N - i, the loss at N). Every buffer is live over an interval of steps; buffers whose
 * intervals do not meet share memory, placed largest first into the best-fitting gap. A
 * plan depends on (training, freeze_to, start_node, keep_values): in eval mode and in
 * frozen groups nothing is kept for backward, and in training a BatchNorm(+ReLU) output is
 * dropped after its forward readers and recomputed from the BatchNorm input just before
 * its first backward reader, as is the output of a convolution of the net's input (the
 * stem) from that input. A BatchNorm's input gradient shares its output gradient's
 * buffer where the backward writes one over the other. Where the backward runs fused with
 * the optimizer (net_set_fused_backward, no data-parallel world), each node with trainable
 * parameters gets scratch for their gradients, live during its backward (and the update
 * after it). The net caches a few plans and activates one per forward. */
#ifndef SGDRD_NET_PLAN_H
#define SGDRD_NET_PLAN_H

#include <stddef.h>

#include "net.h"

/* Fresh anonymous zero pages: resident only once written. NULL on failure. */
float *net_pages_alloc(size_t floats);
/* Frees what net_pages_alloc returned (NULL is fine). */
void net_pages_free(float *p, size_t floats);

/* Drops every cached plan (the batch shape, freeze_to or keep_values changed). */
void net_plan_reset(net *n);
/* Frees the plan cache. */
void net_plan_free(net *n);
/* Floats of slab the plan for (training, n->freeze_to, start_node 0, fusing) needs,
 * computing and caching it; 0 with -ENOMEM in *rc when the planner's own arrays cannot
 * be allocated. */
size_t net_plan_size(net *n, int training, int *rc);
/* Makes the plan for (training, n->freeze_to, n->start_node, n->keep_values, fusing:
 * n->fused_backward without n->dist) current: plans it if not cached, grows the slab if
 * it needs more, points n->values, n->dvalues and every node's scratch and
 * zero_dv/recompute into the slab, and sets n->plan_backward and n->plan_fused. Returns
 * 0 or -ENOMEM (the slab then is unchanged). */
int net_plan_use(net *n, int training);
/* Floats of node d's parameter-gradient scratch in a fused backward: the weight's, then
 * the bias's gradient, each starting at the same offset modulo 64 bytes as in n->grads
 * (which is page-aligned), so that the kernels writing them see the same alignment
 * either way. 0 for a node without parameters. */
size_t net_plan_grad_floats(const net *n, const node *d);
/* The gradients of d's weight and bias in s (net_plan_grad_floats(n, d) floats); NULL
 * for a parameter d does not have. */
void net_plan_grad_views(const net *n, const node *d, float *s, float **gw, float **gb);
/* Before node i's backward: recomputes the value the plan dropped after its forward
 * readers, if node i is its first backward reader. */
void net_plan_recompute(net *n, int i);

#endif
