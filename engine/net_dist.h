/* net_dist.h: what net.c does differently on a data-parallel world (dist.h): the global
 * batch layout of a training forward, SyncBN, each rank's slice of the dropout stream,
 * the loss gradient's share, and the bucketed gradient sum during backward. Private to
 * net.c and net_dist.c. */
#ifndef SGDRD_NET_DIST_H
#define SGDRD_NET_DIST_H

#include <stddef.h>

#include "dist.h"
#include "net.h"

/* The gradient buckets of one backward: [ready, n_params) is final, [sent, n_params) is
 * being summed. */
typedef struct net_dist_bwd {
    size_t ready, sent;
    double t_start;
    int started;
} net_dist_bwd;

/* A training forward's start: learns the global batch and this rank's place in it. */
int net_dist_forward_begin(net *n);
/* The SyncBN hook of a training BatchNorm, or NULL (world of one, or eval). */
const bn_sync *net_dist_bn_sync(const net *n, int bn_training);
/* Draws node d's dropout mask as the rank's slice of the whole batch's stream. */
void net_dist_dropout(net *n, node *d, float *out, const float *in, size_t per_sample);
/* Scales the loss gradient g (batch, n_out) by this rank's share of the global batch. */
void net_dist_loss_grad(const net *n, float *g);
void net_dist_bwd_begin(net *n, net_dist_bwd *b);
/* After node i's backward: its parameters' gradients are final; starts full buckets. */
void net_dist_bwd_node(net *n, net_dist_bwd *b, int i);
/* After the last node: starts the rest and waits for every sum. */
int net_dist_bwd_end(net *n, net_dist_bwd *b);

#endif
