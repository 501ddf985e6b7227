/* test_transfer.c: the recipe's transfer claim on Fashion-MNIST. resnet_small is trained
 * from scratch on classes 0-4 (T-shirt, trouser, pullover, dress, coat); its body then
 * starts the pretrained recipe on classes 5-9 (sandal, shirt, sneaker, bag, ankle boot):
 * precompute, the head alone, unfreeze, differential LRs, cycle_mult 2, TTA. That must
 * beat training from scratch on 5-9 for as many epochs as the transfer run takes in all
 * (the head-only ones counted as full epochs, so scratch gets more compute, not less), at
 * the best of three LRs chosen on the validation set (a stronger baseline than the
 * recipe's own pick, whose 20-iteration sweep on 7 batches an epoch is noise: its
 * min_div10 ranged from 2e-6 to 8e-3 over seeds). The scratch fit has no stop at a worse
 * cycle end, so it gets every epoch.
 *
 * Subsets keep it to a few CPU minutes: 9000 random images of 0-4 for pretraining (2
 * epochs, about 0.87 accuracy on 0-4), 100 of 5-9 (20 a class) as the target, and 1500 of
 * t10k's 5-9 for validation, drawn from the seed. The claim is about scarce target data,
 * where a pretrained body should matter: with 500 target images scratch wins, the new
 * classes being easy to learn from scratch (bench/README.md, "Transfer test").
 * Augmentation is the zoom and crop only (TFMS_NONE): Fashion-MNIST's footwear all faces
 * left, so flips do not suit it.
 *
 * Each seed must win by at least `margin` and by two standard errors of the difference of
 * the two accuracies on n_val images (taken as independent, an upper bound: both runs see
 * the same images); at 1500 images and accuracies near 0.8 that is 0.0146, so 2 SE = 0.029.
 * bench/README.md's "Transfer test" has each seed's accuracies. A seed lost while the
 * recipe picked too low a rate for the head (valley instead of min_div10) and kept the
 * head's rate after unfreezing.
 *
 * Skipped under AddressSanitizer and when the data set is absent. SGDRD_TRANSFER_SEEDS=
 * "7,8,9" runs several seeds (to check the margin's robustness by hand; the default is
 * seed 7), SGDRD_TRANSFER_VERBOSE=1 prints every epoch and recipe decision, and
 * SGDRD_TRANSFER_KEEP=<folder> keeps the pretrained weights there for later runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "learner.h"
#include "rng.h"
#include "weights.h"

#define FASHION "/usr/share/datasets/fashion-mnist"

#ifdef __SANITIZE_ADDRESS__
#define UNDER_ASAN 1
#else
#define UNDER_ASAN 0
#endif

typedef struct sizes {
    int n_pre, n_tgt, n_val; /* training images of 0-4 and of 5-9; validation of 5-9 */
    int pre_epochs;          /* pretraining on 0-4 (SGDR, one cycle) */
    double pre_lr;
    int max_epochs;          /* the transfer recipe's final phase */
    int n_aug;
    int sz, bs_pre, bs;
    float margin;            /* transfer minus scratch, TTA accuracy */
} sizes;

static const sizes SZS = {.n_pre = 9000, .n_tgt = 100, .n_val = 1500, .pre_epochs = 2,
                          .pre_lr = 0.05, .max_epochs = 3, .n_aug = 2, .sz = 28,
                          .bs_pre = 32, .bs = 16, .margin = 0.03f};

/* The from-scratch baseline's LRs (bs 16): around the picks of a longer sweep on 500
 * images (0.005-0.012). */
static const double SCRATCH_LRS[] = {0.003, 0.01, 0.03};
#define N_SCRATCH_LRS 3

static char root[256];
static dataset *fashion;

static void be32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

/* n random images of split whose labels are lo..lo+4, relabelled 0..4, as
 * dir/<prefix>-{images-idx3,labels-idx1}-ubyte. */
static void write_subset(const char *dir, const char *prefix, ds_split split, int lo, int n,
                         uint64_t seed)
{
    const ds_info *in = dataset_info(fashion);
    int total = in->count[split], m = 0;
    int *idx = malloc((size_t)total * sizeof *idx);
    assert_non_null(idx);
    for (int i = 0; i < total; i++) {
        int y = dataset_item_label(fashion, split, i);
        if (y >= lo && y < lo + 5)
            idx[m++] = i;
    }
    assert_true(m >= n);
    uint64_t r = rng_derive(seed, (uint64_t)lo * 3 + (uint64_t)split);
    for (int i = 0; i < n; i++) {
        int j = i + (int)rng_below(&r, (uint32_t)(m - i));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    char p[512];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, prefix);
    FILE *fl = fopen(p, "wb");
    assert_non_null(fi);
    assert_non_null(fl);
    be32(fi, 0x803);
    be32(fi, (uint32_t)n);
    be32(fi, 28);
    be32(fi, 28);
    be32(fl, 0x801);
    be32(fl, (uint32_t)n);
    char err[256];
    for (int i = 0; i < n; i++) {
        image im;
        assert_int_equal(dataset_item_image(fashion, split, idx[i], &im, err, sizeof err), 0);
        assert_true(im.w == 28 && im.h == 28 && im.c == 1);
        fwrite(im.px, 1, 28 * 28, fi);
        uint8_t y = (uint8_t)(dataset_item_label(fashion, split, idx[i]) - lo);
        fwrite(&y, 1, 1, fl);
        image_free(&im);
    }
    assert_int_equal(fclose(fi), 0);
    assert_int_equal(fclose(fl), 0);
    free(idx);
}

static dataset *open_idx(const char *dir)
{
    ds_options o = {.format = DS_IDX, .path = dir, .valid_pct = -1, .seed = 1};
    dataset *ds;
    char err[256];
    int rc = dataset_open(&ds, &o, err, sizeof err);
    if (rc)
        print_error("dataset_open %s: %s\n", dir, err);
    assert_int_equal(rc, 0);
    return ds;
}

static void config(learner_config *c, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    model_spec_defaults(&c->model);
    c->model.arch = "resnet_small";
    c->sz = SZS.sz;
    c->bs = SZS.bs;
    c->tfms = TFMS_NONE; /* zoom and crop: no flips of left-facing shoes */
    c->max_zoom = 1.1f;
    c->loader_threads = 1;
    c->seed = seed;
}

static learner *make(const learner_config *c, dataset *ds)
{
    learner *l;
    char err[256] = "";
    int rc = learner_create(&l, c, ds, err, sizeof err);
    if (rc)
        print_error("learner_create: %s\n", err);
    assert_int_equal(rc, 0);
    return l;
}

typedef struct seen {
    int lr_find, unfrozen_fit, epochs;
    int n_lrs_max;            /* most distinct group LRs in one batch */
} seen;

static int on_batch(void *ctx, const ev_batch *e)
{
    seen *s = ctx;
    int distinct = 1;
    for (int g = 1; g < e->n_groups && g < 4; g++)
        distinct += e->lrs[g] != e->lrs[g - 1];
    if (distinct > s->n_lrs_max)
        s->n_lrs_max = distinct;
    return 0;
}

static int verbose; /* SGDRD_TRANSFER_VERBOSE: print every epoch and recipe decision */

static int on_epoch(void *ctx, const ev_epoch *e)
{
    ((seen *)ctx)->epochs++;
    if (verbose)
        print_message("  epoch %d: train %.3f valid %.3f acc %.4f (%.1f s, %.0f img/s)\n",
                      e->epoch, e->train_loss, e->valid_loss, e->accuracy, e->seconds,
                      e->img_per_s);
    return 0;
}

static void on_note(void *ctx, const char *what, const char *why)
{
    if (verbose)
        print_message("  %s: %s\n", what, why);
    if (strcmp(what, "lr_find") == 0)
        ((seen *)ctx)->lr_find++;
}

/* One seed: pretrain on 0-4, then the transfer and the scratch recipes on 5-9. */
static void run_seed(uint64_t seed, float *acc_transfer, float *acc_scratch)
{
    char pre_dir[400], tgt_dir[400], pre_w[400], err[256] = "";
    snprintf(pre_dir, sizeof pre_dir, "%s/pre_%llu", root, (unsigned long long)seed);
    snprintf(tgt_dir, sizeof tgt_dir, "%s/tgt_%llu", root, (unsigned long long)seed);
    const char *keep = getenv("SGDRD_TRANSFER_KEEP");
    snprintf(pre_w, sizeof pre_w, "%s/pre_%llu_%d.safetensors", keep && *keep ? keep : root,
             (unsigned long long)seed, SZS.n_pre);
    assert_int_equal(mkdir(pre_dir, 0755), 0);
    assert_int_equal(mkdir(tgt_dir, 0755), 0);
    write_subset(pre_dir, "train", SPLIT_TRAIN, 0, SZS.n_pre, seed);
    write_subset(pre_dir, "t10k", SPLIT_VALID, 0, SZS.n_val, seed);
    write_subset(tgt_dir, "train", SPLIT_TRAIN, 5, SZS.n_tgt, seed);
    write_subset(tgt_dir, "t10k", SPLIT_VALID, 5, SZS.n_val, seed);

    /* Pretraining on 0-4: plain SGDR, one cycle. */
    learner_config c;
    if (keep && *keep && access(pre_w, R_OK) == 0) {
        print_message("seed %llu: pretrained weights kept from an earlier run: %s\n",
                      (unsigned long long)seed, pre_w);
        goto target;
    }
    dataset *pre = open_idx(pre_dir);
    config(&c, seed);
    c.bs = SZS.bs_pre;
    learner *l = make(&c, pre);
    fit_opts fo = {.n_lrs = 1, .lrs = {SZS.pre_lr}, .n_cycle = 1, .cycle_len = SZS.pre_epochs,
                   .cycle_mult = 1, .wd = 1e-4, .schedule = SCHED_SGDR};
    seen sp = {0};
    ev_hooks hp = {.ctx = &sp, .on_epoch = on_epoch};
    int rc = learner_fit(l, &fo, &hp, err, sizeof err);
    if (rc)
        print_error("pretraining: %s\n", err);
    assert_int_equal(rc, 0);
    learner_state st;
    learner_get_state(l, &st);
    print_message("seed %llu: pretrained on classes 0-4 (%d images, %d epochs): validation "
                  "loss %.3f, accuracy %.3f\n", (unsigned long long)seed, SZS.n_pre,
                  SZS.pre_epochs, st.best_valid_loss, st.best_accuracy);
    assert_int_equal(weights_save_file(learner_net(l), pre_w, err, sizeof err), 0);
    learner_destroy(l);
    dataset_destroy(pre);

target:;
    /* The recipe on 5-9 from the 0-4 body: a new head (5 classes of other things). */
    dataset *tgt = open_idx(tgt_dir);
    config(&c, seed + 1000);
    c.pretrained = pre_w;
    c.precompute = 1;
    l = make(&c, tgt);
    seen s = {0};
    ev_hooks h = {.ctx = &s, .on_batch = on_batch, .on_epoch = on_epoch, .on_note = on_note};
    recipe_opts ro = {.max_epochs = SZS.max_epochs, .n_aug = SZS.n_aug};
    tta_result tt, ts = {0};
    rc = learner_recipe(l, &ro, &h, &tt, err, sizeof err);
    if (rc)
        print_error("transfer recipe: %s\n", err);
    assert_int_equal(rc, 0);
    learner_get_state(l, &st);
    assert_true(s.lr_find >= 2);         /* head, then unfrozen with the group ratios */
    assert_true(s.n_lrs_max >= 3);       /* differential LRs reached the optimizer */
    assert_int_equal(st.freeze_to, 0);   /* ended unfrozen */
    assert_int_equal(st.precompute, 0);
    int budget = s.epochs;
    learner_destroy(l);

    /* The same number of epochs over 5-9 from scratch: SGDR cycles planned for them as the
     * recipe plans them, then TTA, at each of SCRATCH_LRS, keeping the best TTA accuracy.
     * The best of three chosen on the validation set is a stronger baseline than the
     * recipe's own pick, whose 20-iteration sweep on 7 batches an epoch is noise (its
     * min_div10 ranged from 2e-6 to 8e-3 over seeds). No stop at a worse cycle end: the
     * baseline gets every epoch. */
    float best = -1.0f;
    double best_lr = 0;
    seen s2 = {0};
    for (int k = 0; k < N_SCRATCH_LRS; k++) {
        config(&c, seed + 1000);
        l = make(&c, tgt);
        s2 = (seen){0};
        h.ctx = &s2;
        fit_opts fs = {.n_lrs = 1, .lrs = {SCRATCH_LRS[k]}, .cycle_mult = 2, .wd = 1e-4,
                       .schedule = SCHED_SGDR};
        recipe_plan_cycles(budget, &fs.n_cycle, &fs.cycle_len);
        tta_result tk;
        rc = learner_fit(l, &fs, &h, err, sizeof err);
        if (!rc)
            rc = learner_tta(l, SZS.n_aug, &h, &tk, err, sizeof err);
        if (rc)
            print_error("scratch at lr %g: %s\n", SCRATCH_LRS[k], err);
        assert_int_equal(rc, 0);
        print_message("seed %llu: from scratch at lr %g: TTA accuracy %.4f\n",
                      (unsigned long long)seed, SCRATCH_LRS[k], tk.tta_accuracy);
        if (tk.tta_accuracy > best) {
            best = tk.tta_accuracy;
            best_lr = SCRATCH_LRS[k];
            ts = tk;
        }
        learner_destroy(l);
    }
    double lr = best_lr;
    dataset_destroy(tgt);
    print_message("seed %llu: classes 5-9 (%d images), TTA accuracy: transfer %.4f in %d "
                  "epochs (4 head-only), scratch %.4f in %d epochs at lr %.3g; margin "
                  "%+.4f\n", (unsigned long long)seed, SZS.n_tgt, tt.tta_accuracy, budget,
                  ts.tta_accuracy, s2.epochs, lr, tt.tta_accuracy - ts.tta_accuracy);
    assert_true(s2.epochs <= budget);
    assert_true(isfinite(tt.tta_loss) && isfinite(ts.tta_loss));
    *acc_transfer = tt.tta_accuracy;
    *acc_scratch = ts.tta_accuracy;
}

static void transfer_beats_scratch(void **state)
{
    (void)state;
    uint64_t seeds[16] = {7};
    int n_seeds = 1;
    const char *env = getenv("SGDRD_TRANSFER_SEEDS");
    if (env && *env) {
        n_seeds = 0;
        char *end;
        for (const char *p = env; *p && n_seeds < 16; p = *end ? end + 1 : end) {
            seeds[n_seeds++] = strtoull(p, &end, 10);
            if (end == p)
                fail_msg("SGDRD_TRANSFER_SEEDS: comma-separated numbers (got %s)", env);
        }
    }
    verbose = getenv("SGDRD_TRANSFER_VERBOSE") != NULL;
    int failed = 0;
    for (int i = 0; i < n_seeds; i++) {
        float a, b;
        run_seed(seeds[i], &a, &b);
        /* Standard error of the difference of two accuracies on n_val images, taken as
         * independent: an upper bound, since both runs see the same images. */
        double se = sqrt((a * (1.0 - a) + b * (1.0 - b)) / SZS.n_val);
        double need = fmax(SZS.margin, 2.0 * se);
        print_message("seed %llu: margin %+.4f, validation noise (one standard error) %.4f; "
                      "required at least %+.4f: %s\n", (unsigned long long)seeds[i], a - b,
                      se, need, a - b >= need ? "ok" : "FAILED");
        failed += !(a - b >= need);
    }
    assert_int_equal(failed, 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/sgdrd-transfer-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    ds_options o = {.format = DS_IDX, .path = FASHION, .valid_pct = -1, .seed = 1};
    char err[256];
    if (dataset_open(&fashion, &o, err, sizeof err) != 0) {
        print_error("%s: %s\n", FASHION, err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dataset_destroy(fashion);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    /* Exit status 77 is meson's "skipped": the test did not run, so it must not count as
     * passed. Under ASan it would take hours; the recipe's code paths run under ASan in
     * the learner suite already. */
    if (UNDER_ASAN || access(FASHION, R_OK) != 0) {
        printf("skipped: %s\n", UNDER_ASAN ? "too slow under AddressSanitizer"
                                           : FASHION " is absent");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transfer_beats_scratch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
