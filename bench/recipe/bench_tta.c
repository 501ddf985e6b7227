/* bench_tta.c: TTA against the centre crop on Fashion-MNIST after a short fit. One SGDR
 * cycle of --epochs, then on the same weights: the centre crop; learner_tta's fixed passes
 * (which follow the run's tfms and max_zoom); and, for comparison, passes drawn at random
 * the way training draws (a zoom up to max_zoom, a random crop, the tfms), which is what
 * TTA ran before. Prints each pass's accuracy, each mean's, and the change in error against
 * the centre crop.
 *
 * Usage: bench_tta [--data DIR] [--epochs N] [--lr LR] [--sz N] [--bs N] [--threads N]
 *                  [--tfms side_on|flip|none] [--zoom Z] [--n-aug N] [--head fastai|plain]
 * A run takes minutes: start it by hand with `nice`, never from the test suites. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "blas.h"
#include "learner.h"

typedef struct tta_bench {
    const char *data;
    int epochs, sz, bs, threads, n_aug, plain_head;
    tfm_set tfms;
    double lr, zoom;
} tta_bench;

static learner *make(const tta_bench *b, dataset *ds)
{
    learner_config c;
    memset(&c, 0, sizeof c);
    model_spec_defaults(&c.model);
    c.model.arch = "resnet_small";
    if (b->plain_head)
        c.model.head = HEAD_PLAIN;
    c.sz = b->sz;
    c.bs = b->bs;
    c.tfms = b->tfms;
    c.max_zoom = (float)b->zoom;
    c.loader_threads = b->threads;
    c.seed = 42;
    learner *l;
    char err[256];
    if (learner_create(&l, &c, ds, err, sizeof err) != 0) {
        fprintf(stderr, "learner_create: %s\n", err);
        return NULL;
    }
    return l;
}

/* Accuracy of probs (n x nc) against the validation labels. */
static float accuracy(dataset *ds, const float *probs, int n, int nc)
{
    int right = 0;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < nc; c++)
            if (probs[(size_t)i * nc + c] > probs[(size_t)i * nc + best])
                best = c;
        right += best == dataset_item_label(ds, SPLIT_VALID, i);
    }
    return (float)right / (float)n;
}

/* Softmax probabilities of the validation split for one epoch of dl (random draws when
 * augment, else the centre crop), placed by item index. */
static int pass_probs(learner *l, loader *dl, int epoch, int sz, int augment, float *probs,
                      int nc)
{
    net *m = learner_net(l);
    int rc = loader_begin_epoch(dl, epoch, sz, augment);
    const batch *bt;
    while (rc == 0 && (rc = loader_next(dl, &bt)) > 0) {
        rc = net_set_batch(m, bt->n, sz, sz);
        if (rc)
            break;
        const float *z = net_forward(m, bt->x, 0);
        for (int i = 0; i < bt->n; i++) {
            const float *zi = z + (size_t)i * nc;
            float *p = probs + (size_t)bt->index[i] * nc, top = zi[0], sum = 0;
            for (int c = 1; c < nc; c++)
                top = zi[c] > top ? zi[c] : top;
            for (int c = 0; c < nc; c++)
                sum += p[c] = expf(zi[c] - top);
            for (int c = 0; c < nc; c++)
                p[c] /= sum;
        }
        rc = 0;
    }
    return rc < 0 ? rc : 0;
}

static void row(const char *name, float acc, float centre, const char *passes)
{
    printf("| %-40s | %7.2f%% | %+6.1f%% | %s\n", name, 100.0 * acc,
           centre < 1 ? 100.0 * ((1 - acc) - (1 - centre)) / (1 - centre) : 0.0, passes);
}

/* The earlier TTA on the same weights: the centre crop and n_aug passes drawn at random
 * as training draws, averaged. */
static int random_tta(learner *l, dataset *ds, const tta_bench *b, float centre_acc)
{
    const ds_info *in = dataset_info(ds);
    int n = in->count[SPLIT_VALID], nc = in->n_classes;
    loader_config lc;
    memset(&lc, 0, sizeof lc);
    lc.bs = b->bs;
    lc.threads = b->threads;
    lc.seed = 42;
    lc.tfm = (tfm_config){.sz = b->sz, .c_out = 1, .tfms = b->tfms, .max_zoom = (float)b->zoom};
    /* the learner's normalisation of a gray image: the training split's statistics */
    for (int c = 0; c < 3; c++) {
        lc.tfm.mean[c] = in->mean[0];
        lc.tfm.std[c] = in->std[0] > 1e-6f ? in->std[0] : 1.0f;
    }
    loader *dl;
    char err[256];
    int rc = loader_create(&dl, ds, SPLIT_VALID, &lc, err, sizeof err);
    if (rc) {
        fprintf(stderr, "loader: %s\n", err);
        return rc;
    }
    float *p = calloc((size_t)n * nc, sizeof(float)), *avg = calloc((size_t)n * nc, sizeof(float));
    char passes[256] = "";
    size_t len = 0;
    rc = p && avg ? 0 : -ENOMEM;
    for (int pass = 0; pass <= b->n_aug && !rc; pass++) {
        rc = pass_probs(l, dl, 1000 + pass, b->sz, pass > 0, p, nc);
        for (size_t k = 0; k < (size_t)n * nc && !rc; k++)
            avg[k] += p[k] / (float)(b->n_aug + 1);
        float acc = rc ? 0 : accuracy(ds, p, n, nc);
        if (pass == 0 && fabsf(acc - centre_acc) > 1e-6f)
            fprintf(stderr, "note: the centre crop here gives %.4f, learner_tta %.4f\n", acc,
                    centre_acc);
        if (pass > 0 && len < sizeof passes)
            len += (size_t)snprintf(passes + len, sizeof passes - len, "%s%.2f",
                                    pass > 1 ? ", " : "", 100.0 * acc);
    }
    if (!rc)
        row("random passes as training draws (before)", accuracy(ds, avg, n, nc), centre_acc,
            passes);
    free(p);
    free(avg);
    loader_destroy(dl);
    return rc;
}

static int parse(int argc, char **argv, tta_bench *b)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return -1;
        i++;
        if (!strcmp(a, "--data"))
            b->data = v;
        else if (!strcmp(a, "--epochs"))
            b->epochs = atoi(v);
        else if (!strcmp(a, "--lr"))
            b->lr = atof(v);
        else if (!strcmp(a, "--sz"))
            b->sz = atoi(v);
        else if (!strcmp(a, "--bs"))
            b->bs = atoi(v);
        else if (!strcmp(a, "--threads"))
            b->threads = atoi(v);
        else if (!strcmp(a, "--zoom"))
            b->zoom = atof(v);
        else if (!strcmp(a, "--n-aug"))
            b->n_aug = atoi(v);
        else if (!strcmp(a, "--head") && (!strcmp(v, "plain") || !strcmp(v, "fastai")))
            b->plain_head = !strcmp(v, "plain");
        else if (!strcmp(a, "--tfms") &&
                 (!strcmp(v, "none") || !strcmp(v, "side_on") || !strcmp(v, "flip")))
            b->tfms = !strcmp(v, "none") ? TFMS_NONE : !strcmp(v, "flip") ? TFMS_FLIP
                                                                          : TFMS_SIDE_ON;
        else
            return -1;
    }
    return b->epochs >= 1 && b->sz >= 8 && b->bs >= 1 && b->n_aug >= 0 &&
                   b->n_aug <= TTA_MAX_AUG ? 0 : -1;
}

int main(int argc, char **argv)
{
    tta_bench b = {.data = "/usr/share/datasets/fashion-mnist", .epochs = 1, .sz = 28,
                   .bs = 128, .threads = 2, .n_aug = 4, .lr = 0.03, .tfms = TFMS_NONE,
                   .zoom = 1.1};
    if (parse(argc, argv, &b)) {
        fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--lr LR] [--sz N] [--bs N] "
                "[--threads N] [--tfms side_on|flip|none] [--zoom Z] [--n-aug 0..%d] "
                "[--head fastai|plain]\n", argv[0], TTA_MAX_AUG);
        return 2;
    }
    blas_startup(argv, 2);
    dataset *ds = bench_open_idx(b.data);
    if (!ds)
        return 1;
    const ds_info *in = dataset_info(ds);
    if (in->channels != 1) {
        fprintf(stderr, "%s: bench_tta takes gray images (IDX)\n", b.data);
        dataset_destroy(ds);
        return 1;
    }
    printf("%s: %d train / %d valid, resnet_small (%s head), sz %d, bs %d, transforms %s, "
           "max_zoom %g, SGDR one cycle of %d epoch(s) at lr %g, n_aug %d, BLAS %s x%d\n\n",
           b.data, in->count[0], in->count[1], b.plain_head ? "plain" : "fastai", b.sz, b.bs,
           b.tfms == TFMS_NONE ? "none" : b.tfms == TFMS_FLIP ? "flip" : "side_on", b.zoom,
           b.epochs, b.lr, b.n_aug, blas_core_name(), blas_threads());
    learner *l = make(&b, ds);
    char err[256];
    int rc = l ? 0 : 1;
    ev_hooks h = {.on_note = bench_on_note};
    fit_opts o = {.n_lrs = 1, .lrs = {b.lr}, .wd = 1e-4, .schedule = SCHED_SGDR, .n_cycle = 1,
                  .cycle_len = b.epochs, .cycle_mult = 1};
    double t0 = bench_now_s();
    if (!rc && (rc = learner_fit(l, &o, &h, err, sizeof err)) != 0)
        fprintf(stderr, "fit: %s\n", err);
    double fit_min = (bench_now_s() - t0) / 60.0;
    tta_result t;
    t0 = bench_now_s();
    if (!rc && (rc = learner_tta(l, b.n_aug, &h, &t, err, sizeof err)) != 0)
        fprintf(stderr, "tta: %s\n", err);
    if (!rc) {
        printf("fit %.2f min, TTA %.2f min\n\n", fit_min, (bench_now_s() - t0) / 60.0);
        printf("| %-40s | %8s | %7s | %s\n", "prediction", "accuracy", "error", "per pass");
        printf("|------------------------------------------|----------|---------|---------\n");
        char passes[256] = "";
        size_t len = 0;
        for (int k = 0; k < t.n_run && len < sizeof passes; k++)
            len += (size_t)snprintf(passes + len, sizeof passes - len, "%s%.2f", k ? ", " : "",
                                    100.0 * t.pass_accuracy[k]);
        row("centre crop", t.accuracy, t.accuracy, "");
        row("learner_tta: fixed passes as trained", t.tta_accuracy, t.accuracy,
            t.n_run ? passes : "(no pass differs from the centre crop)");
        rc = random_tta(l, ds, &b, t.accuracy);
    }
    learner_destroy(l);
    dataset_destroy(ds);
    return rc ? 1 : 0;
}
