/* memory.c: a learner's memory, estimated from its parts before it is built, and the
 * admission that refuses a run whose estimate does not fit (learner_memory.h). */
#define _GNU_SOURCE
#include "learner_memory.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dist.h"
#include "errmsg.h"
#include "internal.h"
#include "net.h"

/* The loader keeps this many ready batches plus the one held, as loader_create does. */
#define LMEM_LOADER_SLOTS 5
/* Loaders a learner keeps: training, validation, and the plain one of a precompute. */
#define LMEM_LOADERS 3

void lmem_run_of(lmem_run *r, const learner_config *lc, const ds_info *in)
{
    memset(r, 0, sizeof *r);
    r->model = lc->model;
    r->model.c_in = in->channels == 1 ? 1 : 3;
    r->model.n_classes = in->n_classes;
    r->sz = lc->sz;
    r->bs = lc->bs;
    r->opt = lc->opt;
    r->pretrained = lc->pretrained != NULL;
    r->loader_threads = lc->loader_threads;
    r->dist = dist_active(lc->dist);
    r->n_train = in->count[SPLIT_TRAIN];
    r->n_valid = in->count[SPLIT_VALID];
    r->image_bytes = (int64_t)in->median_w * in->median_h * r->model.c_in;
}

static double min_d(double a, double b) { return a < b ? a : b; }

/* What does not depend on the net's plan: loaders and caches. */
static void data_parts(const lmem_run *r, double pc_dim, lmem_parts *p)
{
    int loaders = r->pretrained ? LMEM_LOADERS : LMEM_LOADERS - 1;
    double batch = (double)r->bs * r->model.c_in * r->sz * r->sz * sizeof(float);
    double ring = batch * LMEM_LOADER_SLOTS;
    double decoded = (double)r->image_bytes * (r->n_train + r->n_valid);
    /* Each loader caches decoded images up to its cap; training and the plain pass
     * read the same split, validation its own. */
    p->loaders = ring * loaders + min_d(decoded, (double)LOADER_CACHE_BYTES * loaders);
    p->precompute = r->pretrained
                        ? (double)(r->n_train + r->n_valid) * (pc_dim + 1) * sizeof(float)
                        : 0;
}

/* Parts of r at (bs, sz) on the net n (fresh from model_create, no batch set). */
static int parts_at(net *n, const lmem_run *r, int bs, int sz, lmem_parts *p)
{
    lmem_run at = *r;
    double act, eval1;
    int rc;
    at.bs = bs;
    at.sz = sz;
    memset(p, 0, sizeof *p);
    rc = net_set_fused_backward(n, !r->dist); /* as create_training sets it */
    if (rc == 0)
        rc = net_memory_need(n, bs, sz, sz, 1, &act);
    if (rc == 0)
        rc = net_memory_need(n, 1, sz, sz, 0, &eval1);
    if (rc)
        return rc;
    double params = (double)n->n_params * sizeof(float);
    double buffers = (double)n->n_buffers * sizeof(float);
    int pool = net_pool_node(n);
    p->weights = params + buffers;
    /* One process updates each node's parameters from their gradients in the activation
     * slab, where the plan counts them (optim_backward_step), and never writes the full
     * buffer; a rank of a data-parallel world holds it all for the sum. */
    p->grads = r->dist ? params : 0;
    p->optim = params * (r->opt == OPTIM_ADAM ? 2 : 1);
    p->activations = act;
    data_parts(&at, pool >= 0 ? net_node_features(n, pool) : 0, p);
    /* The serving learner of the same run: its weights and a one-image eval plan. */
    p->predict = params + buffers + eval1;
    p->total = p->weights + p->grads + p->optim + p->activations + p->loaders +
               p->precompute + p->predict;
    return 0;
}

int lmem_estimate(const lmem_run *r, lmem_parts *out, char *err, size_t errlen)
{
    net *n = NULL;
    int rc = model_create(&n, &r->model, err, errlen);
    if (rc)
        return rc;
    rc = parts_at(n, r, r->bs, r->sz, out);
    if (rc == -EINVAL)
        err_set(err, errlen, "sz: %d is too small for %s", r->sz, r->model.arch);
    else if (rc)
        err_set(err, errlen, "out of memory estimating the run's memory");
    net_destroy(n);
    return rc;
}

double lmem_available(double limit, const char **source)
{
    char line[256];
    double kb = 0;
    FILE *f;
    if (limit > 0) {
        *source = "--memory-limit";
        return limit;
    }
    *source = "MemAvailable";
    f = fopen("/proc/meminfo", "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

/* The largest of bs, bs/2, ... (>= 1) that fits at sz, or 0. */
static int fitting_bs(net *n, const lmem_run *r, int sz, double avail)
{
    lmem_parts p;
    for (int bs = r->bs; bs >= 1; bs /= 2)
        if (parts_at(n, r, bs, sz, &p) == 0 && p.total <= avail)
            return bs;
    return 0;
}

/* The largest of sz, sz - 32, ... (and the arch's smallest sizes) that fits at bs, or 0. */
static int fitting_sz(net *n, const lmem_run *r, int bs, double avail)
{
    lmem_parts p;
    for (int sz = r->sz; sz >= 8; sz -= sz > 64 ? 32 : 8) {
        int rc = parts_at(n, r, bs, sz, &p);
        if (rc == -EINVAL)
            return 0;
        if (rc == 0 && p.total <= avail)
            return sz;
    }
    return 0;
}

#define GIB(x) ((x) / (1024.0 * 1024 * 1024))

int lmem_admit(const lmem_run *r, double avail, const char *source, const char **field,
               char *err, size_t errlen)
{
    lmem_parts p;
    net *n = NULL;
    int rc;

    *field = NULL;
    rc = model_create(&n, &r->model, err, errlen);
    if (rc)
        return rc;
    rc = parts_at(n, r, r->bs, r->sz, &p);
    if (rc) {
        err_set(err, errlen, rc == -EINVAL ? "sz: %d is too small for %s"
                                           : "out of memory estimating a run of sz %d (%s)",
                r->sz, r->model.arch);
        *field = rc == -EINVAL ? "sz" : NULL;
        goto out;
    }
    if (avail <= 0 || p.total <= avail)
        goto out;
    int bs = fitting_bs(n, r, r->sz, avail), sz = fitting_sz(n, r, r->bs, avail);
    char hint[160];
    if (bs && sz)
        snprintf(hint, sizeof hint, "lower bs to %d (at sz %d) or sz to %d (at bs %d)", bs,
                 r->sz, sz, r->bs);
    else if (bs)
        snprintf(hint, sizeof hint, "lower bs to %d (at sz %d)", bs, r->sz);
    else if (sz)
        snprintf(hint, sizeof hint, "lower sz to %d (at bs %d)", sz, r->bs);
    else
        snprintf(hint, sizeof hint, "lower both bs and sz, or free memory");
    err_set(err, errlen,
            "bs %d at sz %d needs about %.2f GiB (weights %.2f, gradients %.2f, optimizer "
            "state %.2f, activations %.2f, loaders %.2f, precompute cache %.2f, prediction "
            "%.2f) but %.2f GiB is available (%s): %s",
            r->bs, r->sz, GIB(p.total), GIB(p.weights), GIB(p.grads), GIB(p.optim),
            GIB(p.activations), GIB(p.loaders), GIB(p.precompute), GIB(p.predict),
            GIB(avail), source, hint);
    *field = bs || !sz ? "bs" : "sz";
    rc = -ENOMEM;
out:
    net_destroy(n);
    return rc;
}
