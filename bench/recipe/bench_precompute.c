/* bench_precompute.c: issue 4's claim for precompute on Fashion-MNIST: training the head
 * from the cached activations of a frozen body must be at least an order of magnitude
 * faster per epoch than running the body. Prints the minutes and img/s of a head-only
 * epoch (training and validation) with the body run on every batch and from the cache,
 * the one-off caching pass, and the ratio against the 10x target.
 *
 * The body is resnet_small's own initialisation saved as a "pretrained" file: speed does
 * not depend on what the weights learned. Augmentation is off on both sides (the cache
 * has none), so both epochs see the same images.
 *
 * Usage: bench_precompute [--data DIR] [--arch NAME] [--sz N] [--bs N] [--threads N]
 *                         [--epochs N]
 * Start it by hand with `nice`; it takes a few minutes at the defaults. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "blas.h"
#include "learner.h"
#include "weights.h"

typedef struct epochs_seen {
    int n;
    double seconds; /* of the epochs recorded, training and validation */
} epochs_seen;

static int on_epoch(void *ctx, const ev_epoch *e)
{
    epochs_seen *s = ctx;
    s->n++;
    s->seconds += e->seconds;
    fprintf(stderr, "  epoch %d: train %.4f valid %.4f acc %.4f  %.2f s\n", e->epoch,
            e->train_loss, e->valid_loss, e->accuracy, e->seconds);
    return 0;
}

typedef struct bench_cfg {
    const char *data, *arch;
    int sz, bs, threads, epochs;
} bench_cfg;

static learner *make(const bench_cfg *b, dataset *ds, const char *pretrained, int precompute)
{
    learner_config c;
    memset(&c, 0, sizeof c);
    model_spec_defaults(&c.model);
    c.model.arch = b->arch;
    c.sz = b->sz;
    c.bs = b->bs;
    c.tfms = TFMS_NONE;
    c.max_zoom = 1.0f;
    c.loader_threads = b->threads;
    c.pretrained = pretrained;
    c.precompute = precompute;
    c.seed = 42;
    learner *l;
    char err[256];
    if (learner_create(&l, &c, ds, err, sizeof err) != 0) {
        fprintf(stderr, "learner_create: %s\n", err);
        return NULL;
    }
    return l;
}

/* n head-only epochs at a constant LR, recorded in *s. */
static int head_epochs(learner *l, int n, epochs_seen *s)
{
    fit_opts fo = {.n_lrs = 1, .lrs = {0.01}, .n_cycle = n, .wd = 1e-4,
                   .schedule = SCHED_CONSTANT};
    ev_hooks h = {.ctx = s, .on_epoch = on_epoch, .on_note = bench_on_note};
    char err[256];
    int rc = learner_fit(l, &fo, &h, err, sizeof err);
    if (rc)
        fprintf(stderr, "fit: %s\n", err);
    return rc;
}

static void row(const char *name, double minutes, double img_s)
{
    printf("| %-44s | %9.4f | %9.0f |\n", name, minutes, img_s);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    bench_cfg b = {.data = "/usr/share/datasets/fashion-mnist", .arch = "resnet_small",
                   .sz = 28, .bs = 128, .threads = 2, .epochs = 3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !strcmp(a, "--data") && ++i)
            b.data = v;
        else if (v && !strcmp(a, "--arch") && ++i)
            b.arch = v;
        else if (v && !strcmp(a, "--sz") && ++i)
            b.sz = atoi(v);
        else if (v && !strcmp(a, "--bs") && ++i)
            b.bs = atoi(v);
        else if (v && !strcmp(a, "--threads") && ++i)
            b.threads = atoi(v);
        else if (v && !strcmp(a, "--epochs") && ++i && atoi(v) >= 1)
            b.epochs = atoi(v);
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--arch NAME] [--sz N] [--bs N] "
                    "[--threads N] [--epochs N]\n", argv[0]);
            return 2;
        }
    }
    blas_startup(argv, 2);
    dataset *ds = bench_open_idx(b.data);
    char err[256];
    if (!ds)
        return 1;
    const ds_info *in = dataset_info(ds);
    double n_imgs = (double)in->count[0] + in->count[1];

    /* The body: the architecture's initialisation, saved as a pretrained file. */
    char body[] = "/tmp/sgdrd-bench-precompute-XXXXXX";
    int fd = mkstemp(body);
    learner *init = fd >= 0 ? make(&b, ds, NULL, 0) : NULL;
    if (!init || weights_save_file(learner_net(init), body, err, sizeof err) != 0) {
        fprintf(stderr, "saving the body to %s: %s\n", body, init ? err : "failed");
        return 1;
    }
    learner_destroy(init);
    close(fd);

    printf("Fashion-MNIST: %d train / %d valid, %s body frozen, sz %d, bs %d, no "
           "augmentation, BLAS %s x%d; an epoch is training plus validation\n\n",
           in->count[0], in->count[1], b.arch, b.sz, b.bs, blas_core_name(), blas_threads());
    printf("| %-44s | %9s | %9s |\n", "head-only epoch", "minutes", "img/s");
    printf("|----------------------------------------------|-----------|-----------|\n");
    int rc = 1;
    learner *full = make(&b, ds, body, 0), *cached = full ? make(&b, ds, body, 1) : NULL;
    epochs_seen sf = {0}, sc1 = {0}, sc = {0};
    if (cached && head_epochs(full, 1, &sf) == 0) {
        row("the frozen body run on every batch", sf.seconds / 60.0, n_imgs / sf.seconds);
        /* The first cached fit builds the cache (both splits, one forward pass each). */
        double t0 = bench_now_s();
        if (head_epochs(cached, 1, &sc1) == 0) {
            double first_s = bench_now_s() - t0;
            if (head_epochs(cached, b.epochs, &sc) == 0) {
                double epoch_s = sc.seconds / sc.n, cache_s = first_s - sc1.seconds;
                char name[64];
                snprintf(name, sizeof name, "from the cache (mean of %d)", sc.n);
                row(name, epoch_s / 60.0, n_imgs / epoch_s);
                row("building the cache (once per weights and sz)", cache_s / 60.0,
                    n_imgs / cache_s);
                double ratio = sf.seconds / epoch_s;
                printf("\nan epoch from the cache is %.0fx faster than running the body "
                       "(target >= 10x: %s); the cache pays for itself after %.1f epochs\n",
                       ratio, ratio >= 10.0 ? "MET" : "NOT MET",
                       cache_s / (sf.seconds - epoch_s));
                rc = 0;
            }
        }
    }
    learner_destroy(full);
    learner_destroy(cached);
    dataset_destroy(ds);
    unlink(body);
    return rc;
}
