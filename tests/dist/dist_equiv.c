/* dist_equiv.c: one rank of the data-parallel equivalence test (run_equiv.py runs it under
 * mpirun -np 1, 2 and 3). Every rank builds the same model from the same seed, draws the
 * same global batches and trains on its shard of each (dist_shard) for `steps` SGD steps
 * (momentum, weight decay, one LR per layer group). At every step rank 0 also runs the
 * step's forward and backward in a world of one on the whole global batch, from the same
 * parameters, statistics and dropout stream, and compares: the global mean loss, every
 * gradient (summed over the ranks), the BatchNorm statistics after the forward. Each step
 * is compared from the same starting point because over several steps the two runs
 * drift apart chaotically (an activation within rounding of a ReLU or max kink takes the
 * other side in one of them), which would say nothing about the step itself. Every rank
 * also checks that its parameters are bit for bit rank 0's after the last step.
 *
 * usage: dist_equiv ARCH SZ BATCH STEPS FREEZE_TO
 * Prints, on rank 0, one line per step: "step S loss L grad G stat T grad_max M
 * worst_tensor NAME E": differences relative to the largest magnitude of the one-process
 * values, the largest for loss, stat and grad_max, the 99.9th percentile for grad
 * (rel_err_p999), and the parameter whose gradient differs most. */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "dist.h"
#include "dist/dist_mpi.h"
#include "models/models.h"
#include "net.h"
#include "optim.h"
#include "rng.h"

#define N_CLASSES 10

/* Sample i of the whole run (every step's batch is the next `batch` samples). */
static void sample(float *x, int32_t *y, int64_t i, int sz)
{
    uint64_t r = rng_derive(0x5eed, (uint64_t)i);
    for (int k = 0; k < sz * sz * 3; k++)
        x[k] = rng_normal(&r);
    *y = (int32_t)rng_below(&r, N_CLASSES);
}

/* The largest |a - b| relative to the largest |a|. */
static double rel_err(const float *a, const float *b, size_t n)
{
    double scale = 0.0, err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]), m = fabs((double)a[i]);
        err = d > err ? d : err;
        scale = m > scale ? m : scale;
    }
    return scale > 0.0 ? err / scale : err;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The 99.9th percentile of |a - b| relative to the largest |a|: what a few hundred
 * entries moved by a kink flip (see the top of the file) leave alone, and any error of
 * the computation itself (a wrong share, a missing sum) does not. -1 without memory. */
static double rel_err_p999(const float *a, const float *b, size_t n)
{
    double *e = malloc(n * sizeof(double)), scale = 0.0;
    if (!e)
        return -1.0;
    for (size_t i = 0; i < n; i++) {
        double m = fabs((double)a[i]);
        e[i] = fabs((double)a[i] - (double)b[i]);
        scale = m > scale ? m : scale;
    }
    qsort(e, n, sizeof(double), cmp_double);
    double v = e[(size_t)(0.999 * (double)(n - 1))];
    free(e);
    return scale > 0.0 ? v / scale : v;
}

/* The one-process reference of a step: ref takes n's parameters, statistics and dropout
 * stream, runs the whole batch (x, y), and is compared with n after its step. */
typedef struct ref_run {
    net *ref;
    float *buffers_before; /* n's statistics before the step */
    float *x;              /* (batch, sz, sz, 3) */
    int32_t *y;
} ref_run;

static int ref_step(ref_run *r, const net *n, int s, int batch, int sz, double loss)
{
    net *m = r->ref;
    memcpy(m->params, n->params, n->n_params * sizeof(float));
    memcpy(m->buffers, r->buffers_before, n->n_buffers * sizeof(float));
    for (int i = 0; i < batch; i++)
        sample(r->x + (size_t)i * sz * sz * 3, r->y + i, (int64_t)s * batch + i, sz);
    net_zero_grad(m);
    if (!net_forward(m, r->x, 1))
        return -ENOMEM;
    float lr = net_loss(m, r->y, NULL);
    net_backward(m, r->y, NULL);
    float lf = (float)loss;
    /* The worst parameter's gradient, by name, for the log. */
    double worst = 0.0;
    const char *worst_name = "-";
    for (int t = 0; t < n->n_tensors; t++) {
        const net_tensor *nt = &n->tensors[t];
        if (nt->is_buffer)
            continue;
        double e = rel_err(m->grads + nt->offset, n->grads + nt->offset, nt->numel);
        if (e > worst) {
            worst = e;
            worst_name = nt->name;
        }
    }
    printf("step %d loss %.3e grad %.3e stat %.3e grad_max %.3e worst_tensor %s %.3e\n", s,
           rel_err(&lr, &lf, 1), rel_err_p999(m->grads, n->grads, n->n_params),
           rel_err(m->buffers, n->buffers, n->n_buffers),
           rel_err(m->grads, n->grads, n->n_params), worst_name, worst);
    return 0;
}

/* Parameters that differ from rank 0's, summed over the world. */
static long long params_differing(const net *n)
{
    float *ref = malloc(n->n_params * sizeof(float));
    if (!ref)
        return -1;
    memcpy(ref, n->params, n->n_params * sizeof(float));
    MPI_Bcast(ref, (int)n->n_params, MPI_FLOAT, 0, MPI_COMM_WORLD);
    long long bad = 0, all = 0;
    for (size_t i = 0; i < n->n_params; i++)
        bad += memcmp(&ref[i], &n->params[i], sizeof(float)) != 0;
    free(ref);
    MPI_Allreduce(&bad, &all, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    return all;
}

static int train(net *n, optim *opt, dist *d, ref_run *r, int sz, int batch, int steps)
{
    float *x = malloc((size_t)batch * sz * sz * 3 * sizeof(float));
    int32_t *y = malloc((size_t)batch * sizeof(int32_t));
    if (!x || !y) {
        free(x);
        free(y);
        return -ENOMEM;
    }
    int64_t lo, hi;
    dist_shard(0, batch, dist_rank(d), dist_size(d), &lo, &hi);
    int rc = net_set_batch(n, (int)(hi - lo), sz, sz);
    for (int s = 0; s < steps && !rc; s++) {
        for (int64_t i = lo; i < hi; i++)
            sample(x + (i - lo) * sz * sz * 3, y + (i - lo), (int64_t)s * batch + i, sz);
        uint64_t rng_before = n->rng;
        if (r)
            memcpy(r->buffers_before, n->buffers, n->n_buffers * sizeof(float));
        net_zero_grad(n);
        if (!net_forward(n, x, 1)) {
            rc = -ENOMEM;
            break;
        }
        double loss = (double)net_loss(n, y, NULL) * (double)(hi - lo);
        net_backward(n, y, NULL);
        rc = dist_sum_f64(d, &loss, 1);
        if (!rc && r) {
            r->ref->rng = rng_before;
            rc = ref_step(r, n, s, batch, sz, loss / batch);
        }
        optim_step(opt);
    }
    free(x);
    free(y);
    return rc;
}

static int ref_create(ref_run *r, const model_spec *s, const net *n, int freeze_to,
                      int batch, int sz, char *err, size_t errlen)
{
    int rc = model_create(&r->ref, s, err, errlen);
    if (!rc)
        rc = net_freeze_to(r->ref, freeze_to);
    if (!rc)
        rc = net_set_batch(r->ref, batch, sz, sz);
    r->buffers_before = malloc(n->n_buffers * sizeof(float));
    r->x = malloc((size_t)batch * sz * sz * 3 * sizeof(float));
    r->y = malloc((size_t)batch * sizeof(int32_t));
    if (!rc && (!r->buffers_before || !r->x || !r->y))
        rc = -ENOMEM;
    return rc;
}

static void ref_free(ref_run *r)
{
    net_destroy(r->ref);
    free(r->buffers_before);
    free(r->x);
    free(r->y);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: dist_equiv ARCH SZ BATCH STEPS FREEZE_TO\n");
        return 2;
    }
    blas_startup(argv, 0);
    MPI_Init(&argc, &argv);
    int sz = atoi(argv[2]), batch = atoi(argv[3]), steps = atoi(argv[4]);
    int freeze_to = atoi(argv[5]);
    char err[512] = "";
    model_spec s;
    model_spec_defaults(&s);
    s.arch = argv[1];
    s.c_in = 3;
    s.n_classes = N_CLASSES;
    s.seed = 7;
    dist *d = NULL;
    net *n = NULL;
    optim *opt = NULL;
    ref_run ref = {0};
    optim_config oc;
    optim_config_defaults(&oc);
    int rc = dist_mpi_create(&d, MPI_COMM_WORLD);
    if (!rc)
        rc = model_create(&n, &s, err, sizeof err);
    if (!rc)
        rc = net_freeze_to(n, freeze_to);
    if (!rc)
        rc = optim_create(&opt, n, &oc);
    const double lrs[3] = {0.01, 0.03, 0.1}, wds[1] = {1e-3};
    if (!rc && (optim_set_lrs(opt, lrs, 3) < 0 || optim_set_wds(opt, wds, 1) < 0))
        rc = -EINVAL;
    if (!rc && dist_rank(d) == 0)
        rc = ref_create(&ref, &s, n, freeze_to, batch, sz, err, sizeof err);
    if (!rc) {
        net_set_dist(n, d);
        rc = train(n, opt, d, dist_rank(d) == 0 ? &ref : NULL, sz, batch, steps);
    }
    long long differing = rc ? 0 : params_differing(n);
    if (!rc && differing) {
        snprintf(err, sizeof err, "%lld parameters differ from rank 0's", differing);
        rc = -EDOM;
    }
    if (rc)
        fprintf(stderr, "dist_equiv rank %d: %s (%s)\n", dist_rank(d), err, strerror(-rc));
    ref_free(&ref);
    optim_destroy(opt);
    net_destroy(n);
    dist_mpi_destroy(d);
    MPI_Finalize();
    return rc ? 1 : 0;
}
