/* optim.c: SGD and Adam cores with torch's arithmetic, and the per-group optimizer over a
 * net. */
#include "optim.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Element loops split across threads only when the array is large enough to pay for it. */
#define OPTIM_PAR_MIN 32768

void sgd_step(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
              int nesterov, float wd, int decoupled)
{
    const float l2 = decoupled ? 0.0f : wd;
    const float decay = decoupled ? -(wd * lr) : 0.0f;
    const float neg_lr = -lr;
    if (momentum == 0.0f || !buf) {
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float pi = p[i];
            if (decay != 0.0f)
                pi = pi + decay * pi;
            float d = l2 != 0.0f ? g[i] + l2 * pi : g[i];
            p[i] = pi + neg_lr * d;
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float pi = p[i];
        if (decay != 0.0f)
            pi = pi + decay * pi;
        float d = l2 != 0.0f ? g[i] + l2 * pi : g[i];
        float b = buf[i] * momentum + d;
        buf[i] = b;
        if (nesterov)
            d = d + momentum * b;
        else
            d = b;
        p[i] = pi + neg_lr * d;
    }
}

void adam_step(float *p, const float *g, float *m, float *v, size_t n, int64_t step,
               float lr, float beta1, float beta2, float eps, float wd, int decoupled)
{
    /* Scalars in double like torch's Python-side arithmetic, applied as floats. */
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    const float neg_step_size = (float)(-((double)lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float one_m_b1 = (float)(1.0 - (double)beta1);
    const float one_m_b2 = (float)(1.0 - (double)beta2);
    const float l2 = decoupled ? 0.0f : wd;
    const float keep = decoupled ? (float)(1.0 - (double)lr * (double)wd) : 1.0f;
#pragma omp parallel for schedule(static) if (n >= OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float pi = p[i];
        if (decoupled)
            pi = pi * keep;
        float gi = l2 != 0.0f ? g[i] + l2 * pi : g[i];
        float mi = m[i] * beta1 + one_m_b1 * gi;
        float vi = v[i] * beta2 + one_m_b2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + neg_step_size * (mi / denom);
    }
}

void optim_config_defaults(optim_config *c)
{
    memset(c, 0, sizeof *c);
    c->kind = OPTIM_SGD;
    c->momentum = 0.9;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
}

int optim_create(optim **out, net *n, const optim_config *cfg)
{
    *out = NULL;
    if (!n || !cfg || (cfg->kind != OPTIM_SGD && cfg->kind != OPTIM_ADAM))
        return -EINVAL;
    if (cfg->kind == OPTIM_SGD && !(cfg->momentum >= 0.0 && cfg->momentum < 1.0))
        return -EINVAL;
    if (cfg->kind == OPTIM_ADAM &&
        !(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0 && cfg->beta2 >= 0.0 && cfg->beta2 < 1.0 &&
          cfg->eps > 0.0))
        return -EINVAL;
    if (n->n_groups < 1 || n->n_groups > NET_MAX_GROUPS)
        return -EINVAL;
    optim *o = calloc(1, sizeof *o);
    if (!o)
        return -ENOMEM;
    o->cfg = *cfg;
    o->net = n;
    o->n_groups = n->n_groups;
    optim_reset_momentum(o);
    o->n_state = cfg->kind == OPTIM_ADAM ? 2 * n->n_params : n->n_params;
    o->state = calloc(o->n_state ? o->n_state : 1, sizeof *o->state);
    o->steps = calloc(n->n_tensors ? (size_t)n->n_tensors : 1, sizeof *o->steps);
    if (!o->state || !o->steps) {
        optim_destroy(o);
        return -ENOMEM;
    }
    *out = o;
    return 0;
}

void optim_destroy(optim *o)
{
    if (!o)
        return;
    free(o->state);
    free(o->steps);
    free(o);
}

static int set_per_group(double *dst, int n_groups, const double *vals, int n_vals)
{
    if (n_vals != 1 && n_vals != n_groups)
        return -EINVAL;
    for (int i = 0; i < n_vals; i++)
        if (!isfinite(vals[i]) || vals[i] < 0.0)
            return -EINVAL;
    for (int g = 0; g < n_groups; g++)
        dst[g] = vals[n_vals == 1 ? 0 : g];
    return 0;
}

int optim_set_lrs(optim *o, const double *lrs, int n_vals)
{
    return set_per_group(o->lr, o->n_groups, lrs, n_vals);
}

int optim_set_wds(optim *o, const double *wds, int n_vals)
{
    return set_per_group(o->wd, o->n_groups, wds, n_vals);
}

int optim_set_momentum(optim *o, double mom)
{
    if (!(mom >= 0.0 && mom < 1.0))
        return -EINVAL;
    o->mom = mom;
    return 0;
}

void optim_reset_momentum(optim *o)
{
    o->mom = o->cfg.kind == OPTIM_ADAM ? o->cfg.beta1 : o->cfg.momentum;
}

/* The update of parameter tensor i from its gradient g: the one arithmetic of both the
 * step after a backward and the step fused into it. */
static void step_tensor(optim *o, int i, const float *g)
{
    net *n = o->net;
    const net_tensor *t = &n->tensors[i];
    float *p = n->params + t->offset;
    float lr = (float)o->lr[t->group], wd = (float)o->wd[t->group];
    o->steps[i]++;
    if (o->cfg.kind == OPTIM_SGD)
        sgd_step(p, g, o->state + t->offset, t->numel, lr, (float)o->mom, o->cfg.nesterov, wd,
                 o->cfg.decoupled_wd);
    else
        adam_step(p, g, o->state + t->offset, o->state + n->n_params + t->offset, t->numel,
                  o->steps[i], lr, (float)o->mom, (float)o->cfg.beta2, (float)o->cfg.eps, wd,
                  o->cfg.decoupled_wd);
}

void optim_step(optim *o)
{
    net *n = o->net;
    for (int i = 0; i < n->n_tensors; i++) {
        const net_tensor *t = &n->tensors[i];
        if (!t->is_buffer && t->group >= n->freeze_to)
            step_tensor(o, i, n->grads + t->offset);
    }
}

static void fused_step(void *ctx, int t, const float *g) { step_tensor(ctx, t, g); }

void optim_backward_step(optim *o, const int32_t *labels, const float *targets)
{
    net *n = o->net;
    if (net_backward_fused(n, labels, targets, fused_step, o) == 0)
        return;
    net_zero_grad(n);
    net_backward(n, labels, targets);
    optim_step(o);
}

int optim_copy_state(optim *dst, const optim *src)
{
    if (dst->n_state != src->n_state || dst->net->n_tensors != src->net->n_tensors ||
        dst->cfg.kind != src->cfg.kind)
        return -EINVAL;
    memcpy(dst->state, src->state, src->n_state * sizeof *src->state);
    memcpy(dst->steps, src->steps, (size_t)src->net->n_tensors * sizeof *src->steps);
    return 0;
}

/* A parameter (not a buffer) by name. */
static int find_param(const net *n, const char *name)
{
    for (int i = 0; i < n->n_tensors; i++)
        if (!n->tensors[i].is_buffer && strcmp(n->tensors[i].name, name) == 0)
            return i;
    return -1;
}

int optim_transfer(optim *dst, const optim *src)
{
    if (dst->cfg.kind != src->cfg.kind)
        return 0;
    const net *dn = dst->net, *sn = src->net;
    int copied = 0;
    for (int i = 0; i < dn->n_tensors; i++) {
        const net_tensor *t = &dn->tensors[i];
        if (t->is_buffer)
            continue;
        int j = find_param(sn, t->name);
        if (j < 0 || sn->tensors[j].numel != t->numel)
            continue;
        const net_tensor *s = &sn->tensors[j];
        memcpy(dst->state + t->offset, src->state + s->offset, t->numel * sizeof(float));
        if (dst->cfg.kind == OPTIM_ADAM)
            memcpy(dst->state + dn->n_params + t->offset, src->state + sn->n_params + s->offset,
                   t->numel * sizeof(float));
        dst->steps[i] = src->steps[j];
        copied++;
    }
    return copied;
}
