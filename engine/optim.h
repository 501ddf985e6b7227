/* optim.h: optimizers. The cores are pure functions over raw float arrays with exactly
 * torch.optim.SGD's and torch.optim.Adam's update (torch 1.13, float32 arithmetic); the
 * optim object applies them to a net's parameter slab per layer group, with per-group LR
 * and weight decay, touching only trainable groups (net->freeze_to) while keeping state
 * for every parameter, so that state survives freeze changes.
 */
#ifndef SGDRD_OPTIM_H
#define SGDRD_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"

/* ---- pure cores --------------------------------------------------------------------------- */

/* torch.optim.SGD (dampening 0) on n floats:
 *   d = g + wd p (L2; skipped when decoupled) ; buf = momentum buf + d ; d = nesterov ?
 *   d + momentum buf : buf ; p -= lr d.
 * decoupled: p -= lr wd p first, then the step without L2 (fast.ai 0.7's Stepper with
 * use_wd_sched, and AdamW's form). buf starts as zeros, which equals torch's clone of
 * the first d since dampening is 0. buf may be NULL when momentum is 0. */
void sgd_step(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
              int nesterov, float wd, int decoupled);

/* torch.optim.Adam (amsgrad off) on n floats; step is the 1-based count of this update
 * (bias correction). decoupled: p *= 1 - lr wd first (AdamW) instead of L2. m, v start
 * as zeros. */
void adam_step(float *p, const float *g, float *m, float *v, size_t n, int64_t step,
               float lr, float beta1, float beta2, float eps, float wd, int decoupled);

/* ---- over a net ------------------------------------------------------------------------- */

typedef enum optim_kind { OPTIM_SGD, OPTIM_ADAM } optim_kind;

typedef struct optim_config {
    optim_kind kind;
    double momentum;     /* SGD; default 0.9 */
    int nesterov;
    int decoupled_wd;    /* decay the weights directly instead of L2 in the gradient */
    double beta1, beta2, eps; /* Adam; defaults 0.9, 0.999, 1e-8 */
} optim_config;

/* SGD, momentum 0.9, no Nesterov, L2 weight decay; Adam betas 0.9/0.999, eps 1e-8. */
void optim_config_defaults(optim_config *c);

typedef struct optim {
    optim_config cfg;
    net *net;                    /* borrowed */
    int n_groups;
    double lr[NET_MAX_GROUPS];   /* per layer group */
    double wd[NET_MAX_GROUPS];
    size_t n_state;              /* floats in state: n_params (SGD) or 2 n_params (Adam) */
    float *state;                /* SGD: momentum buffers; Adam: m then v; params layout */
    int64_t *steps;              /* (net->n_tensors) updates applied to each parameter */
    double mom;                  /* SGD's momentum or Adam's beta1 of the next steps: cfg's
                                  * unless a schedule moves it (optim_set_momentum) */
} optim;

/* Creates an optimizer over n's parameters with zeroed state, every group's lr 0 and
 * wd 0. The net is borrowed and must outlive the optimizer. -EINVAL for a bad config,
 * -ENOMEM. */
int optim_create(optim **out, net *n, const optim_config *cfg);
/* NULL is fine. */
void optim_destroy(optim *o);

/* n_vals is 1 (the same value for every group) or exactly n_groups; anything else is
 * -EINVAL and changes nothing. */
int optim_set_lrs(optim *o, const double *lrs, int n_vals);
int optim_set_wds(optim *o, const double *wds, int n_vals);

/* Momentum (SGD) or beta1 (Adam) of the following steps, for schedules that move it
 * (1cycle, as torch's OneCycleLR writes momentum or betas[0] into the param groups).
 * -EINVAL outside [0, 1), changing nothing. */
int optim_set_momentum(optim *o, double mom);
/* Back to the configured momentum or beta1. */
void optim_reset_momentum(optim *o);

/* One update of every parameter of the trainable groups (group >= net->freeze_to) from
 * net->grads, with each group's lr and wd. BatchNorm buffers are not parameters and are
 * never touched; frozen groups keep their state unchanged. */
void optim_step(optim *o);

/* The backward of the net's last loss (net_backward) and one optim_step, with the same
 * results bit for bit, the update fused into the backward where the net's plan allows
 * (net_backward_fusable: one process, every trainable node reached): each tensor is
 * updated right after its node's backward, from gradients in the slab, and net->grads
 * is neither zeroed nor written, so it holds no memory. Elsewhere (a data-parallel world,
 * whose gradient sum needs the whole of net->grads) it zeroes net->grads, runs
 * net_backward, then optim_step. The LRs and WDs must be set before. */
void optim_backward_step(optim *o, const int32_t *labels, const float *targets);

/* Copies the whole state (buffers and step counts) to or from another optimizer over a
 * net with the same parameters (learner snapshots, LR-finder restore). -EINVAL when the
 * shapes differ. */
int optim_copy_state(optim *dst, const optim *src);

/* Copies the state of every parameter that src's net has under the same name and size
 * (a head-only net built for precompute and the full net it mirrors). Returns the number
 * of parameters copied. */
int optim_transfer(optim *dst, const optim *src);

#endif
