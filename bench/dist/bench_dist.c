/* bench_dist.c: one rank of the data-parallel training benchmark (run_bench.py starts it
 * under mpirun). Every rank trains a model on its shard of synthetic global batches; rank
 * 0 prints one JSON line per case with the world's img/s, the step time, the gradient
 * bytes summed per step, what one blocking sum of them takes alone (allreduce_s), the
 * time waited for the sums after backward less the ranks' skew (exposed_s: a barrier
 * before the wait measures how long the slowest rank kept the others, which on a shared
 * host is noise of the host, not of the sums), and the share of allreduce_s hidden behind
 * backward (1 - exposed_s / allreduce_s, within 0..1). Cases: the buckets started during
 * backward (overlap) and all after it, alternating in rounds.
 *
 * usage: bench_dist ARCH SZ C_IN BATCH STEPS ROUNDS */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"
#include "dist/dist_mpi.h"
#include "models/models.h"
#include "net.h"
#include "optim.h"
#include "rng.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The transport's wait_all behind a timed barrier (see the top of the file). */
static const dist_ops *real_ops;
static dist_ops timed_ops;
static double skew_s;

static int timed_wait_all(void *ctx)
{
    double t = now_s();
    MPI_Barrier(MPI_COMM_WORLD);
    skew_s += now_s() - t;
    return real_ops->wait_all(ctx);
}

/* One blocking sum of the whole gradient slab, alone: seconds, the mean of 10. */
static double allreduce_alone(net *n)
{
    float *g = malloc(n->n_params * sizeof(float));
    memcpy(g, n->grads, n->n_params * sizeof(float));
    MPI_Allreduce(MPI_IN_PLACE, g, (int)n->n_params, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double t = now_s();
    for (int i = 0; i < 10; i++)
        MPI_Allreduce(MPI_IN_PLACE, g, (int)n->n_params, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    t = (now_s() - t) / 10;
    free(g);
    return t;
}

/* Trains `steps` steps; returns the seconds they took (after MPI_Barrier on both ends). */
static double train(net *n, optim *opt, const float *x, const int32_t *y, int steps)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now_s();
    for (int s = 0; s < steps; s++) {
        net_zero_grad(n);
        net_forward(n, x, 1);
        net_loss(n, y, NULL);
        net_backward(n, y, NULL);
        optim_step(opt);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: bench_dist ARCH SZ C_IN BATCH STEPS ROUNDS\n");
        return 2;
    }
    blas_startup(argv, 0);
    MPI_Init(&argc, &argv);
    int sz = atoi(argv[2]), c_in = atoi(argv[3]), batch = atoi(argv[4]);
    int steps = atoi(argv[5]), rounds = atoi(argv[6]);
    dist *d = NULL;
    net *n = NULL;
    optim *opt = NULL;
    char err[256] = "";
    model_spec s;
    model_spec_defaults(&s);
    s.arch = argv[1];
    s.c_in = c_in;
    s.n_classes = 10;
    s.seed = 1;
    optim_config oc;
    optim_config_defaults(&oc);
    const double lr[1] = {1e-3}, wd[1] = {1e-4};
    if (dist_mpi_create(&d, MPI_COMM_WORLD) || model_create(&n, &s, err, sizeof err) ||
        optim_create(&opt, n, &oc) || optim_set_lrs(opt, lr, 1) || optim_set_wds(opt, wd, 1)) {
        fprintf(stderr, "bench_dist: setup failed %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int64_t lo, hi;
    dist_shard(0, batch, dist_rank(d), dist_size(d), &lo, &hi);
    int local = (int)(hi - lo);
    float *x = malloc((size_t)local * sz * sz * c_in * sizeof(float));
    int32_t *y = malloc((size_t)local * sizeof(int32_t));
    uint64_t r = rng_derive(7, (uint64_t)dist_rank(d));
    for (size_t i = 0; i < (size_t)local * sz * sz * c_in; i++)
        x[i] = rng_normal(&r);
    for (int i = 0; i < local; i++)
        y[i] = (int32_t)rng_below(&r, 10);
    net_set_batch(n, local, sz, sz);
    real_ops = d->ops;
    timed_ops = *d->ops;
    timed_ops.wait_all = timed_wait_all;
    d->ops = &timed_ops;
    net_set_dist(n, d);
    train(n, opt, x, y, 2); /* warm-up: plans, pages, buckets */
    double secs[2] = {0, 0}, skew[2] = {0, 0};
    dist_stats st[2];
    memset(st, 0, sizeof st);
    for (int round = 0; round < rounds; round++) {
        for (int ov = 1; ov >= 0; ov--) {
            if (d->size > 1)
                d->overlap = ov;
            dist_stats before = d->stats;
            double skew0 = skew_s;
            secs[ov] += train(n, opt, x, y, steps);
            skew[ov] += skew_s - skew0;
            st[ov].steps += d->stats.steps - before.steps;
            st[ov].bytes += d->stats.bytes - before.bytes;
            st[ov].sum_s += d->stats.sum_s - before.sum_s;
            st[ov].wait_s += d->stats.wait_s - before.wait_s;
        }
    }
    double alone = dist_size(d) > 1 ? allreduce_alone(n) : 0.0;
    for (int ov = 1; ov >= 0 && dist_rank(d) == 0; ov--) {
        double total = (double)steps * rounds;
        double per = st[ov].steps ? 1.0 / (double)st[ov].steps : 0.0;
        double exposed = (st[ov].wait_s - skew[ov]) * per;
        double hidden = alone > 0 ? 1.0 - exposed / alone : 0.0;
        hidden = hidden < 0 ? 0 : hidden > 1 ? 1 : hidden;
        printf("{\"arch\":\"%s\",\"sz\":%d,\"batch\":%d,\"ranks\":%d,\"overlap\":%d,"
               "\"img_per_s\":%.2f,\"step_s\":%.5f,\"allreduce_bytes_per_step\":%.0f,"
               "\"allreduce_s\":%.5f,\"exposed_s\":%.5f,\"skew_s\":%.5f,"
               "\"hidden\":%.3f,\"params\":%zu}\n",
               argv[1], sz, batch, dist_size(d), ov, total * batch / secs[ov],
               secs[ov] / total, (double)st[ov].bytes * per, alone, exposed,
               skew[ov] * per, hidden, n->n_params);
    }
    free(x);
    free(y);
    optim_destroy(opt);
    net_destroy(n);
    dist_mpi_destroy(d);
    MPI_Finalize();
    return 0;
}
