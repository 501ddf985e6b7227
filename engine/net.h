/* net.h: a network as a graph of layer nodes in forward order, with its parameters,
 * buffers and gradients each in one slab, layer groups, freezing, and forward/backward.
 *
 * Ownership: a net owns every buffer it points to. Parameters, gradients and BatchNorm
 * buffers are allocated once by net_finalize; the gradients as untouched zero pages, so
 * that only the ones ever written (trainable groups) become resident, and none where the
 * optimizer's update runs inside the backward (net_backward_fused). Activations,
 * activation gradients and convolution scratch live in one slab, placed by a liveness
 * plan (net_plan.c): buffers whose lifetimes do not meet share memory, so after a forward
 * only the activations some backward still reads are intact (and the output). The slab
 * is allocated by net_set_batch and net_freeze_to for both training and eval plans, and
 * grows inside net_forward* only the first time a larger plan is used (a forward from
 * another start node); never inside a training step after that. Activations are NHWC
 * (see ops/ops.h).
 *
 * Parameter and buffer names are torchvision state-dict names ("conv1.weight",
 * "layer2.0.downsample.1.running_var", "fc.bias"), so a state dict saved as safetensors
 * maps one to one (see weights.h).
 */
#ifndef SGDRD_NET_H
#define SGDRD_NET_H

#include <stddef.h>
#include <stdint.h>

#include "ops/ops.h"

#define NET_NAME_MAX 96
#define NET_MAX_GROUPS 4

typedef enum node_kind {
    NODE_INPUT,
    NODE_CONV,
    NODE_BN,        /* 2d on an (N,H,W,C) input, 1d on an (N,C) input */
    NODE_RELU,      /* in place */
    NODE_SILU,      /* x * sigmoid(x), into a value of its own: its backward reads x */
    NODE_MAXPOOL,
    NODE_ADD,       /* in place into its first input */
    NODE_AVGPOOL,   /* adaptive average pool to 1x1, then flatten: (N, C) */
    NODE_CONCATPOOL,/* fastai AdaptiveConcatPool2d + flatten: (N, 2C), max then average */
    NODE_DROPOUT,   /* in place */
    NODE_LINEAR,
} node_kind;

/* How net_finalize initialises a tensor (models may change it before finalize). */
typedef enum tensor_init {
    INIT_KAIMING_FAN_OUT, /* normal, std sqrt(2 / fan_out): torchvision ResNet convs */
    INIT_KAIMING_FAN_IN,  /* normal, std sqrt(2 / fan_in): fastai head linears */
    INIT_UNIFORM_FAN_IN,  /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Linear default */
    INIT_ONE,
    INIT_ZERO,
} tensor_init;

/* A named parameter or buffer: a view into a slab. */
typedef struct net_tensor {
    char name[NET_NAME_MAX];
    int ndim;
    int shape[4];
    size_t offset; /* into net->params (parameters) or net->buffers (buffers) */
    size_t numel;
    int group;     /* layer group of the node that owns it */
    int is_buffer; /* running_mean / running_var (num_batches_tracked is not stored) */
    int is_bn;     /* a BatchNorm weight or bias */
    tensor_init init;
    int fan_in, fan_out;
} net_tensor;

typedef struct node {
    node_kind kind;
    int in[2];          /* producer node ids; -1 when unused */
    int group;          /* layer group */
    int value;          /* index of the activation buffer this node writes (aliases in place) */
    int h, w, c;        /* output shape per sample (h = w = 1 for 2-D outputs) */
    int p_w, p_b;       /* parameter indices (net->tensors) of weight and bias, -1 if none */
    int b_mean, b_var;  /* buffer indices for BatchNorm, -1 otherwise */
    int k, stride, pad; /* conv / maxpool */
    float p;            /* dropout probability */
    conv2d_shape conv;  /* set by net_set_batch */
    pool2d_shape pool;  /* set by net_set_batch */
    float *save_mean;   /* (C) BatchNorm batch statistics kept for backward */
    float *save_rstd;   /* (C) */
    int32_t *argmax;    /* maxpool / concatpool indices (per batch) */
    float *mask;        /* dropout mask (N*H*W*C, per batch) */
    int bn_training;    /* whether the last forward used batch statistics */
    int n_consumers;    /* nodes reading this node's output */
    int relu_in_pool;   /* max pool whose backward does that of the in-place ReLU before it */
    /* Set by the current memory plan: */
    int zero_dv[2];     /* values whose gradient buffer this node's backward zeroes first */
    float *scratch_fwd; /* conv scratch of the forward / backward (in the slab) */
    float *scratch_bwd;
    float *scratch_grad; /* gradients of its parameters in a fused backward (in the slab;
                          * NULL when the plan has none, see net_backward_fused) */
} node;

typedef struct net {
    node *nodes;
    int n_nodes, cap_nodes;
    net_tensor *tensors; /* parameters and buffers in creation order */
    int n_tensors, cap_tensors;
    int n_groups;        /* layer groups 0..n_groups-1, in forward order */
    int freeze_to;       /* groups < freeze_to are frozen */

    float *params;  /* all parameters */
    float *grads;   /* same layout as params; mmap'd, resident only where written */
    float *buffers; /* BatchNorm running statistics */
    size_t n_params, n_buffers;

    /* Batch-shape-dependent state (net_set_batch). */
    int batch, in_h, in_w;
    int n_values;
    float **values;      /* activation buffer per value, into the slab (current plan) */
    size_t *value_numel; /* floats per value for the current batch */
    int *value_creator;  /* node that first writes each value (in-place nodes reuse it) */
    float **dvalues;     /* gradient buffer per value, into the slab; NULL when none */
    float *slab;         /* activations, gradients and scratch (mmap'd, see net_plan.h) */
    size_t slab_floats;
    struct net_plans *plans; /* cached memory plans (net_plan.c) */
    int keep_values;     /* every value keeps its own buffer (net_keep_values) */
    int plan_backward;   /* the current plan keeps what backward reads */
    int fused_backward;  /* training plans give trainable nodes gradient scratch
                          * (net_set_fused_backward) */
    int plan_fused;      /* the current plan can run net_backward_fused */
    float *probs;        /* (N, n_out) softmax or sigmoid outputs of the last loss */
    int n_out;           /* output features of the last node */

    int start_node;      /* first node the last forward computed (backward stops there) */
    int multi_label;     /* loss is sigmoid BCE instead of softmax cross-entropy */
    float label_smoothing; /* the softmax cross-entropy's eps (0: none) */
    uint64_t rng;        /* dropout stream */
    float bn_momentum, bn_eps;
    precision precision; /* of the convolutions and linear layers (net_set_precision) */
    bf16_kernels bf16_kernels; /* what runs bf16: chosen at the first switch to bf16 (or
                                * net_set_bf16_kernels), then fixed for the net's life */

    /* Data parallelism (dist.h, net_dist.c): not owned; NULL for a world of one. */
    struct dist *dist;
    int64_t dist_total;  /* the global batch of the last training forward */
    int64_t dist_before; /* rows of lower ranks in it */
    bn_sync dist_bn;     /* SyncBN over dist */
} net;

/* ---- building (used by models/) ------------------------------------------------------ */

/* An empty net. NULL on allocation failure. */
net *net_create(void);
/* Frees everything; NULL is fine. */
void net_destroy(net *n);

/* Each adder returns the new node id, or a negative error code (allocation failure or a
 * shape that does not fit). name is the torchvision module path ("layer1.0.conv1"); the
 * adder appends ".weight", ".bias", ".running_mean", ".running_var". */
int net_input(net *n, int c);
int net_conv(net *n, int in, const char *name, int c_out, int k, int stride, int pad,
             int bias, int group);
int net_bn(net *n, int in, const char *name, int group);
int net_relu(net *n, int in, int group);
int net_silu(net *n, int in, int group);
int net_maxpool(net *n, int in, int k, int stride, int pad, int group);
int net_add(net *n, int a, int b, int group);
int net_avgpool(net *n, int in, int group);
int net_concatpool(net *n, int in, int group);
int net_dropout(net *n, int in, float p, int group);
int net_linear(net *n, int in, const char *name, int out_f, int group);

/* Allocates the parameter, gradient and buffer slabs and initialises them from seed:
 * conv weights Kaiming-normal (fan_out, ReLU gain) as torchvision's ResNet, linear weights
 * Kaiming-normal (fan_in) with zero bias, BatchNorm weight 1, bias 0, running mean 0,
 * var 1. Returns 0 or -ENOMEM. */
int net_finalize(net *n, uint64_t seed);

/* ---- running ---------------------------------------------------------------------------- */

/* Prepares activations for input (batch, h, w, C_in). Reallocates only when the shape
 * grows or changes; returns 0, -EINVAL when the size is too small for the network (a
 * spatial dimension would reach 0), or -ENOMEM, also without allocating anything when
 * the activations alone would pass net_memory_limit(). After -ENOMEM the net keeps its
 * parameters; the next successful net_set_batch makes it usable again. */
int net_set_batch(net *n, int batch, int h, int w);
/* Bytes net_set_batch(n, batch, h, w) would allocate for activations, their gradients,
 * scratch and per-batch buffers: the training plan with every group trainable when
 * training, else the eval plan. Allocates only the planner's arrays, for a net that has
 * no batch set yet (fresh from model_create), and leaves it so. 0; -EINVAL when the size
 * does not fit the network (or the net has a batch); -ENOMEM. */
int net_memory_need(net *n, int batch, int h, int w, int training, double *bytes);
/* Bytes of activations a net may plan for: three quarters of physical memory. */
double net_memory_limit(void);

/* The arithmetic of the convolutions and linear layers (see ops/precision.h); a new net
 * is PRECISION_FP32. Returns 0, -ENOTSUP for bf16 on a CPU without it, or what
 * net_set_batch returns when the batch shape is set already (scratch sizes change). */
int net_set_precision(net *n, precision p);

/* The kernels of the net's bf16 mode (ONEDNN or FP32, see ops/precision.h), before or
 * after net_set_precision; without a call the net takes bf16_kernels_choice() when it
 * first switches to bf16. Returns 0, -EINVAL for AUTO or an unknown value, or what
 * net_set_batch returns when a bf16 net's batch shape is set already. */
int net_set_bf16_kernels(net *n, bf16_kernels k);

/* Runs the network on x (batch, h, w, C_in) as set by net_set_batch. training != 0 uses
 * batch statistics in BatchNorm (except in frozen groups, which always run in eval mode)
 * and active dropout, and keeps what backward needs; training == 0 keeps nothing but the
 * output (no backward may follow unless net_keep_values is on). Returns the output
 * (batch, n_out), owned by the net; NULL only when a new memory plan could not be
 * allocated. */
const float *net_forward(net *n, const float *x, int training);

/* Loss of the last forward: softmax cross-entropy with labels (batch), label-smoothed by
 * label_smoothing, or, when multi_label, BCE with targets (batch, n_out). Writes n->probs;
 * returns the mean loss. */
float net_loss(net *n, const int32_t *labels, const float *targets);

/* Backward of net_loss through the whole net: parameter gradients accumulate into
 * n->grads for trainable groups only; stops at the first frozen node. Needs the last
 * forward to be a training one, or net_keep_values on. */
void net_backward(net *n, const int32_t *labels, const float *targets);

/* Zeroes the parameter gradients of trainable groups. */
void net_zero_grad(net *n);

/* Receives the final gradient g of parameter tensor t (t's numel floats, valid only during
 * the call) in net_backward_fused, right after the backward of t's node. */
typedef void (*net_grad_fn)(void *ctx, int t, const float *g);

/* on != 0: plans that keep what backward reads also give each node with trainable
 * parameters slab scratch for their gradients during its backward, so that
 * net_backward_fused can run, except on a data-parallel world (net_set_dist), whose
 * gradient sum needs n->grads whole. net_backward works either way. Off for a new net.
 * Returns 0, or -ENOMEM when the larger slab cannot be allocated (the net is then
 * unusable until the next successful net_set_batch). */
int net_set_fused_backward(net *n, int on);

/* Whether the last forward's plan can run net_backward_fused: it kept what backward reads,
 * net_set_fused_backward is on, no data-parallel world is set, and every trainable
 * parameter belongs to a node the backward runs (none at or before the start node of
 * net_forward_from). */
int net_backward_fusable(const net *n);

/* net_backward with each trainable parameter's gradient handed to fn right after its
 * node's backward (an optimizer's update, optim_backward_step) instead of accumulated
 * into n->grads: the gradients of one node at a time live in slab scratch the memory
 * plan places like convolution scratch, and n->grads is neither read nor written, so its
 * pages stay untouched. The gradients are bit for bit those net_backward leaves in a
 * zeroed n->grads. Each parameter's node's backward runs before fn updates it, and no
 * later backward reads it. 0, or -EOPNOTSUPP (nothing run) when !net_backward_fusable. */
int net_backward_fused(net *n, const int32_t *labels, const float *targets, net_grad_fn fn,
                       void *ctx);

/* Trains only groups >= g (0 <= g <= n_groups; -EINVAL otherwise). Frozen groups get no
 * gradients and their BatchNorm layers use running statistics. -ENOMEM when the larger
 * gradient plan of an unfreeze cannot be allocated (the net is then unusable until the
 * next successful net_set_batch). */
int net_freeze_to(net *n, int g);

/* keep != 0: every activation keeps its own buffer through forward and backward (no
 * sharing, no recomputation), so all of them can be read after backward and a backward
 * may follow an eval-mode forward, and every max pool records its argmax, frozen or not
 * (otherwise only where a backward reads it); for tests and the parity harness, at the
 * unshared memory cost. Results are bit for bit the same either way. Returns 0, or
 * -ENOMEM when the larger slab cannot be allocated (the net is then unusable until the
 * next successful net_set_batch). */
int net_keep_values(net *n, int keep);

/* Makes n one rank of the data-parallel world d (not owned, must outlive its use; NULL:
 * a world of one, exactly as without). Every rank then runs the same calls on its shard
 * of each batch: a training forward uses SyncBN and the rank's part of the dropout
 * stream, and net_backward leaves in n->grads the gradient of the mean loss over the
 * global batch, summed over the ranks (dist.h). */
void net_set_dist(net *n, struct dist *d);

/* Finds a parameter or buffer by name; -1 if absent. */
int net_find(const net *n, const char *name);
/* Pointer to a tensor's data (params or buffers slab). */
float *net_tensor_data(const net *n, int idx);

/* The output node's value after the last forward. */
const float *net_output(const net *n);

/* For the precompute cache: the id of the pooling node that starts the head (the first
 * AVGPOOL or CONCATPOOL node), -1 if none; and the floats per sample it outputs. */
int net_pool_node(const net *n);
int net_node_features(const net *n, int node);
/* Runs nodes 0..last only; returns last's output (batch, features) as set_batch shaped,
 * intact until the next forward. */
const float *net_forward_to(net *n, const float *x, int training, int last);
/* Sets node `first`'s output to act (batch, features of first; not memory of this net)
 * and runs the nodes after it; backward then stops at `first` (nothing before it is
 * touched). */
const float *net_forward_from(net *n, int first, const float *act, int training);

#endif
