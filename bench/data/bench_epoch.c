/* bench_epoch.c: does the loader slow training? The same resnet_small training steps on
 * Fashion-MNIST fed (a) from batches already in memory and (b) live from the loader with
 * side_on augmentation on its worker threads, which share the two cores with training;
 * in alternating rounds of equal length.
 *
 * Usage: bench_epoch [batches]   (default 40 batches of 128 at 28 px) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"
#include "data/data.h"
#include "models/models.h"
#include "net.h"
#include "optim.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"
#define BS 128
#define SZ 28

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void step(net *n, optim *o, const float *x, const int32_t *y, int count)
{
    if (net_set_batch(n, count, SZ, SZ) < 0)
        abort();
    net_forward(n, x, 1);
    net_loss(n, y, NULL);
    optim_backward_step(o, y, NULL);
}

int main(int argc, char **argv)
{
    blas_startup(argv, 2);
    int n_batches = argc > 1 ? atoi(argv[1]) : 40;
    char err[512];
    dataset *ds = NULL;
    ds_options dopt = {.format = DS_IDX, .path = FASHION_DIR, .valid_pct = -1, .seed = 1};
    if (dataset_open(&ds, &dopt, err, sizeof err) < 0) {
        fprintf(stderr, "bench_epoch: %s\n", err);
        return 77;
    }
    const ds_info *info = dataset_info(ds);
    loader_config lc = {.bs = BS, .shuffle = 1, .drop_last = 1, .threads = 2, .seed = 3};
    lc.tfm = (tfm_config){.sz = SZ, .c_out = 1, .tfms = TFMS_SIDE_ON, .max_zoom = 1.1f};
    memcpy(lc.tfm.mean, info->mean, sizeof lc.tfm.mean);
    memcpy(lc.tfm.std, info->std, sizeof lc.tfm.std);
    loader *ld = NULL;
    if (loader_create(&ld, ds, SPLIT_TRAIN, &lc, err, sizeof err) < 0) {
        fprintf(stderr, "bench_epoch: %s\n", err);
        return 1;
    }
    model_spec ms;
    model_spec_defaults(&ms);
    ms.c_in = 1;
    ms.n_classes = info->n_classes;
    ms.seed = 1;
    net *n = NULL;
    optim *o = NULL;
    optim_config oc;
    optim_config_defaults(&oc);
    const double lr = 0.05, wd = 1e-4;
    if (model_create(&n, &ms, err, sizeof err) < 0 || optim_create(&o, n, &oc) < 0 ||
        net_set_fused_backward(n, 1) < 0) { /* the learner's step */
        fprintf(stderr, "bench_epoch: cannot build the model\n");
        return 1;
    }
    optim_set_lrs(o, &lr, 1);
    optim_set_wds(o, &wd, 1);

    /* (a) batches drawn once, with augmentation, then trained on from memory. */
    size_t per = (size_t)BS * SZ * SZ;
    float *xs = malloc(per * n_batches * sizeof(float));
    int32_t *ys = malloc((size_t)BS * n_batches * sizeof(int32_t));
    loader_begin_epoch(ld, 0, SZ, 1);
    const batch *b;
    for (int i = 0; i < n_batches; i++) {
        if (loader_next(ld, &b) != 1 || b->n != BS)
            abort();
        memcpy(xs + per * i, b->x, per * sizeof(float));
        memcpy(ys + (size_t)BS * i, b->y, BS * sizeof(int32_t));
    }
    /* Alternate the two feeds in rounds, so that drift in the machine's speed (other
     * tenants, clocks) falls on both alike. */
    step(n, o, xs, ys, BS); /* warm-up */
    const int rounds = 4, per_round = n_batches / rounds;
    double mem_s = 0, live_s = 0;
    loader_begin_epoch(ld, 1, SZ, 1);
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (int i = r * per_round; i < (r + 1) * per_round; i++)
            step(n, o, xs + per * i, ys + (size_t)BS * i, BS);
        mem_s += now() - t0;
        t0 = now();
        for (int i = 0; i < per_round; i++) {
            if (loader_next(ld, &b) != 1)
                abort();
            step(n, o, b->x, b->y, b->n);
        }
        live_s += now() - t0;
    }
    n_batches = rounds * per_round;
    double mem_ips = BS * n_batches / mem_s, live_ips = BS * n_batches / live_s;
    printf("resnet_small on Fashion-MNIST, %d batches of %d at %d px, side_on, 2 threads\n",
           n_batches, BS, SZ);
    printf("  fed from memory:          %7.1f img/s (%.1f s)\n", mem_ips, mem_s);
    printf("  fed live by the loader:   %7.1f img/s (%.1f s)\n", live_ips, live_s);
    printf("  slowdown: %.1f%% (target: at most 5%%) -> %s\n", 100 * (mem_ips / live_ips - 1),
           mem_ips / live_ips - 1 <= 0.05 ? "met" : "NOT met");
    free(xs);
    free(ys);
    optim_destroy(o);
    net_destroy(n);
    loader_destroy(ld);
    dataset_destroy(ds);
    return 0;
}
