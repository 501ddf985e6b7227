/* test_learner.c: the learner on a small generated dataset (16x16 gray shapes in IDX
 * files): fit reaches a stated accuracy with the scheduled LR of every batch, lr_find puts
 * weights, BatchNorm statistics and optimizer state back bit for bit (also when cancelled),
 * a head trained from the precompute cache equals one trained through the frozen body,
 * resuming an interrupted fit gives the weights of an uninterrupted one, snapshots, TTA,
 * 1cycle's scheduled momentum, early stops that survive an interruption, and refusals. */
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
#include <png.h>

#include "learner.h"
#include "lrsched.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include "weights.h"

#define SZ 16
#define N_CLASSES 4
#define N_TRAIN 256
#define N_VALID 48
#define BS 8
#define N_SMALL 64

static char root[256];
static char big[300], small[300];

/* Four shapes at random places with random brightness over noise: a horizontal bar, a
 * vertical bar, a hollow square, a diagonal. */
static void draw(uint8_t *px, int cls, uint64_t *r)
{
    for (int i = 0; i < SZ * SZ; i++)
        px[i] = (uint8_t)(rng_below(r, 40));
    int v = 160 + (int)rng_below(r, 90);
    int x0 = 2 + (int)rng_below(r, 5), y0 = 2 + (int)rng_below(r, 5);
    int len = 7 + (int)rng_below(r, 3);
    for (int k = 0; k < len; k++) {
        switch (cls) {
        case 0:
            px[y0 * SZ + x0 + k] = (uint8_t)v;
            px[(y0 + 1) * SZ + x0 + k] = (uint8_t)v;
            break;
        case 1:
            px[(y0 + k) * SZ + x0] = (uint8_t)v;
            px[(y0 + k) * SZ + x0 + 1] = (uint8_t)v;
            break;
        case 2:
            if (k < 6) {
                px[y0 * SZ + x0 + k] = (uint8_t)v;
                px[(y0 + 5) * SZ + x0 + k] = (uint8_t)v;
                px[(y0 + k) * SZ + x0] = (uint8_t)v;
                px[(y0 + k) * SZ + x0 + 5] = (uint8_t)v;
            }
            break;
        default:
            px[(y0 + k) * SZ + x0 + k] = (uint8_t)v;
            if (x0 + k + 1 < SZ)
                px[(y0 + k) * SZ + x0 + k + 1] = (uint8_t)v;
            break;
        }
    }
}

static void be32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

static void write_split(const char *dir, const char *prefix, int n, uint64_t seed)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, prefix);
    FILE *fl = fopen(p, "wb");
    assert_non_null(fi);
    assert_non_null(fl);
    be32(fi, 0x803);
    be32(fi, (uint32_t)n);
    be32(fi, SZ);
    be32(fi, SZ);
    be32(fl, 0x801);
    be32(fl, (uint32_t)n);
    uint64_t r = seed;
    uint8_t px[SZ * SZ];
    for (int i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(i % N_CLASSES);
        draw(px, c, &r);
        fwrite(px, 1, sizeof px, fi);
        fwrite(&c, 1, 1, fl);
    }
    fclose(fi);
    fclose(fl);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/sgdrd-learner-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    /* big: for the accuracy test; small: for the tests that only compare runs. */
    snprintf(big, sizeof big, "%s/big", root);
    snprintf(small, sizeof small, "%s/small", root);
    if (mkdir(big, 0755) || mkdir(small, 0755))
        return -1;
    write_split(big, "train", N_TRAIN, 11);
    write_split(big, "t10k", N_VALID, 12);
    write_split(small, "train", N_SMALL, 13);
    write_split(small, "t10k", N_SMALL / 4, 14);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static dataset *open_ds(const char *dir)
{
    ds_options o = {.format = DS_IDX, .path = dir, .valid_pct = -1, .seed = 1};
    dataset *ds;
    char err[256];
    int rc = dataset_open(&ds, &o, err, sizeof err);
    if (rc)
        print_error("dataset_open: %s\n", err);
    assert_int_equal(rc, 0);
    return ds;
}

static void base_config(learner_config *c)
{
    memset(c, 0, sizeof *c);
    model_spec_defaults(&c->model);
    c->model.arch = "resnet_small";
    c->model.n_xtra_fc = 1;
    c->model.xtra_fc[0] = 32;
    c->sz = SZ;
    c->bs = BS; /* small batches: enough steps for BatchNorm's running statistics */
    c->tfms = TFMS_NONE;
    c->max_zoom = 1.0f;
    c->loader_threads = 1;
    c->seed = 5;
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

/* ---- event recording ------------------------------------------------------------------ */

typedef struct rec {
    int n_batch, n_epoch, n_cycle_end, n_sweep, n_note;
    int cancel_after_epoch;   /* -1: never */
    int cancel_after_sweep;   /* -1: never */
    int64_t last_step;
    char last_note[32];
    int lr_mismatch, mom_mismatch;
    int step_mismatch;        /* epochs whose step is not their last batch's */
    float mom_min;
    const sched_plan *plan;
    double lr0[4];
    float last_acc, last_valid_loss;
    float min_loss;           /* lowest raw training loss of a batch */
    int epoch_batches[8];     /* batches seen per epoch of the fit */
} rec;

static int on_batch(void *ctx, const ev_batch *e)
{
    rec *r = ctx;
    if (e->step != r->last_step + 1)
        r->lr_mismatch++;
    if (e->epoch >= 0 && e->epoch < 8)
        r->epoch_batches[e->epoch]++;
    if (r->plan) {
        /* An epoch of n batches fills its slice of the plan's P per epoch (n == P but under
         * a 1cycle's time limit). */
        int64_t P = r->plan->batches_per_epoch,
                t = (int64_t)e->epoch * P + (int64_t)e->batch * P / e->n_batches;
        for (int g = 0; g < e->n_groups; g++)
            if (e->lrs[g] != (float)(r->lr0[g] * sched_factor(r->plan, t)))
                r->lr_mismatch++;
        double mom = 0.9; /* the optimizer's own, unless the schedule moves it */
        sched_momentum(r->plan, t, &mom);
        if (e->momentum != (float)mom)
            r->mom_mismatch++;
        r->mom_min = r->n_batch == 0 || e->momentum < r->mom_min ? e->momentum : r->mom_min;
    }
    r->last_step = e->step;
    r->min_loss = r->n_batch == 0 || e->loss < r->min_loss ? e->loss : r->min_loss;
    r->n_batch++;
    return 0;
}

static int on_epoch(void *ctx, const ev_epoch *e)
{
    rec *r = ctx;
    r->n_epoch++;
    r->last_acc = e->accuracy;
    r->last_valid_loss = e->valid_loss;
    if (e->step != r->last_step)
        r->step_mismatch++;
    return r->cancel_after_epoch >= 0 && e->epoch >= r->cancel_after_epoch;
}

static int on_cycle_end(void *ctx, int cycle, int epoch)
{
    rec *r = ctx;
    r->n_cycle_end++;
    return 0;
}

static int on_sweep(void *ctx, const ev_sweep_point *p)
{
    rec *r = ctx;
    r->n_sweep++;
    return r->cancel_after_sweep >= 0 && p->iter >= r->cancel_after_sweep;
}

static void on_note(void *ctx, const char *what, const char *why)
{
    rec *r = ctx;
    r->n_note++;
    snprintf(r->last_note, sizeof r->last_note, "%s", what);
}

static ev_hooks hooks_for(rec *r)
{
    ev_hooks h = {.ctx = r, .on_batch = on_batch, .on_epoch = on_epoch,
                  .on_cycle_end = on_cycle_end, .on_sweep_point = on_sweep,
                  .on_note = on_note};
    r->cancel_after_epoch = -1;
    r->cancel_after_sweep = -1;
    return h;
}

/* Makes r check every batch's LRs and momentum against a plan of one cycle of `kind`
 * (cycle_len epochs of bpe batches) at lr0 for every group. */
static void expect_schedule(rec *r, sched_plan *p, sched_kind kind, int64_t bpe, int cycle_len,
                            double lr0)
{
    sched_plan_defaults(p, bpe);
    p->kind = kind;
    p->cycle_len = cycle_len;
    r->plan = p;
    for (int g = 0; g < 4; g++)
        r->lr0[g] = lr0;
}

/* A learner on c (with its checkpoint folder) whose fit o is cancelled after `epoch`. */
static learner *fit_cut(const learner_config *c, dataset *ds, const fit_opts *o, int epoch)
{
    char err[256] = "";
    learner *l = make(c, ds);
    rec r = {0};
    ev_hooks h = hooks_for(&r);
    r.cancel_after_epoch = epoch;
    assert_int_equal(learner_fit(l, o, &h, err, sizeof err), -ECANCELED);
    return l;
}

/* Bit for bit: parameters and BatchNorm buffers. */
static void assert_same_weights(learner *a, learner *b)
{
    net *na = learner_net(a), *nb = learner_net(b);
    assert_memory_equal(na->params, nb->params, na->n_params * sizeof(float));
    assert_memory_equal(na->buffers, nb->buffers, na->n_buffers * sizeof(float));
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void fit_learns_the_shapes(void **state)
{
    (void)state;
    dataset *ds = open_ds(big);
    learner_config c;
    base_config(&c);
    c.bs = 16;
    learner *l = make(&c, ds);
    rec r = {0};
    ev_hooks h = hooks_for(&r);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 4, .cycle_mult = 1,
                  .wd = 1e-4, .schedule = SCHED_SGDR, .snapshots = 1};
    sched_plan plan;
    expect_schedule(&r, &plan, SCHED_SGDR, N_TRAIN / 16, 4, 0.05);
    char err[256] = "";
    int rc = learner_fit(l, &o, &h, err, sizeof err);
    if (rc)
        print_error("fit: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(r.n_epoch, 4);
    assert_int_equal(r.n_batch, 4 * (N_TRAIN / 16));
    assert_int_equal(r.n_cycle_end, 1);
    assert_int_equal(r.lr_mismatch, 0);
    assert_int_equal(r.mom_mismatch, 0);
    assert_int_equal(r.step_mismatch, 0);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.step, 4 * (N_TRAIN / 16));
    assert_int_equal(st.epochs_done, 4);
    print_message("fit: validation accuracy %.3f after 4 epochs\n", r.last_acc);
    assert_true(r.last_acc >= 0.9f);
    /* The one snapshot is taken after the cycle's last batch: its "ensemble" is exactly
     * the final weights. */
    assert_int_equal(learner_n_snapshots(l), 1);
    float el, ea;
    assert_int_equal(learner_snapshot_ensemble(l, &el, &ea, err, sizeof err), 0);
    assert_true(ea == r.last_acc && isfinite(el));

    tta_result t;
    assert_int_equal(learner_tta(l, 2, &h, &t, err, sizeof err), 0);
    assert_int_equal(t.n_aug, 2);
    assert_true(fabsf(t.accuracy - r.last_acc) < 1e-6f); /* the centre pass is validation */
    assert_true(t.tta_accuracy >= 0.8f);

    float probs[N_CLASSES];
    image im = {.w = SZ, .h = SZ, .c = 1, .px = malloc(SZ * SZ)};
    uint64_t rr = 99;
    draw(im.px, 1, &rr);
    assert_int_equal(learner_predict_image(l, &im, 1, probs, err, sizeof err), 0);
    float sum = 0;
    for (int k = 0; k < N_CLASSES; k++)
        sum += probs[k];
    assert_true(fabsf(sum - 1.0f) < 1e-4f);
    free(im.px);
    learner_destroy(l);
    dataset_destroy(ds);
}

static void lr_find_restores_everything(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    learner *l = make(&c, ds);
    net *n = learner_net(l);
    char err[256] = "";
    /* Some optimizer state first, so that there is momentum to restore. */
    fit_opts o = {.n_lrs = 1, .lrs = {0.02}, .n_cycle = 1, .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), 0);
    size_t np = n->n_params * sizeof(float), nb = n->n_buffers * sizeof(float);
    float *p0 = malloc(np), *b0 = malloc(nb);
    memcpy(p0, n->params, np);
    memcpy(b0, n->buffers, nb);
    uint64_t rng0 = n->rng;
    learner_state s0, s1;
    learner_get_state(l, &s0);

    rec r = {0};
    ev_hooks h = hooks_for(&r);
    lrfind_opts lo = {.start_lr = 1e-4, .end_lr = 10, .num_it = 20};
    lrfind_result res;
    int rc = learner_lr_find(l, &lo, &h, &res, err, sizeof err);
    if (rc)
        print_error("lr_find: %s\n", err);
    assert_int_equal(rc, 0);
    assert_true(res.n_points >= 12 && res.n_points <= 20);
    assert_int_equal(r.n_sweep, res.n_points);
    for (int i = 0; i < res.n_points; i++) {
        assert_int_equal(res.points[i].iter, i);
        assert_true(fabs(res.points[i].lr - sched_exp_sweep(1e-4, 10, i, 20)) <
                    1e-12 * res.points[i].lr);
        assert_true(res.points[i].start_lr == 1e-4 && res.points[i].end_lr == 10 &&
                    res.points[i].num_it == 20);
    }
    assert_true(res.valley.lr > 0 && strlen(res.valley.reason) > 0);
    assert_memory_equal(n->params, p0, np);
    assert_memory_equal(n->buffers, b0, nb);
    assert_true(n->rng == rng0);
    learner_get_state(l, &s1);
    assert_int_equal(s1.step, s0.step);
    lrfind_result_free(&res);

    /* Cancelled at iteration 5: still restored, and the points so far are kept. */
    r.cancel_after_sweep = 5;
    rc = learner_lr_find(l, &lo, &h, &res, err, sizeof err);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(res.n_points, 6);
    assert_memory_equal(n->params, p0, np);
    assert_memory_equal(n->buffers, b0, nb);
    lrfind_result_free(&res);

    /* The fit after a sweep is the fit without one. */
    learner *l2 = make(&c, ds);
    assert_int_equal(learner_fit(l2, &o, NULL, err, sizeof err), 0);
    assert_memory_equal(learner_net(l2)->params, p0, np);
    free(p0);
    free(b0);
    learner_destroy(l2);
    learner_destroy(l);
    dataset_destroy(ds);
}

static void precompute_head_equals_full_head(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    c.model.ps[0] = c.model.ps[1] = 0.0f;
    c.bs = N_SMALL; /* one batch an epoch: the data order inside it changes nothing */
    char err[256] = "", pre[512];
    /* A "pretrained" body: a briefly trained learner's weights. */
    learner *base = make(&c, ds);
    fit_opts o1 = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 2, .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(base, &o1, NULL, err, sizeof err), 0);
    snprintf(pre, sizeof pre, "%s/pre.safetensors", root);
    assert_int_equal(weights_save_file(learner_net(base), pre, err, sizeof err), 0);
    learner_destroy(base);

    c.pretrained = pre;
    c.precompute = 1;
    learner *a = make(&c, ds);
    c.precompute = 0;
    learner *b = make(&c, ds);
    learner_state sa, sb;
    learner_get_state(a, &sa);
    learner_get_state(b, &sb);
    assert_int_equal(sa.precompute, 1);
    assert_int_equal(sa.augment, 0);
    assert_int_equal(sb.precompute, 0);
    assert_int_equal(sa.freeze_to, sa.n_groups - 1);
    fit_opts o = {.n_lrs = 1, .lrs = {0.1}, .n_cycle = 3, .wd = 1e-3,
                  .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), 0);
    assert_int_equal(learner_fit(b, &o, NULL, err, sizeof err), 0);
    net *na = learner_net(a), *nb = learner_net(b);
    double worst = 0.0, moved = 0.0;
    for (size_t i = 0; i < na->n_params; i++) {
        double d = fabs((double)na->params[i] - nb->params[i]);
        worst = d > worst ? d : worst;
    }
    net *n0 = NULL;
    model_spec ms = c.model;
    ms.c_in = 1;
    ms.n_classes = N_CLASSES;
    ms.seed = c.seed;
    assert_int_equal(model_create(&n0, &ms, err, sizeof err), 0);
    assert_int_equal(weights_load_file(n0, pre, WEIGHTS_BODY, err, sizeof err), 0);
    for (int t = 0; t < na->n_tensors; t++) {
        const net_tensor *nt = &na->tensors[t];
        if (nt->is_buffer || nt->group != sa.n_groups - 1)
            continue;
        for (size_t i = 0; i < nt->numel; i++)
            moved += fabs((double)na->params[nt->offset + i] - n0->params[nt->offset + i]);
    }
    net_destroy(n0);
    print_message("precompute vs full: max parameter difference %.3g (head moved %.3g)\n",
                  worst, moved);
    assert_true(worst < 1e-4);
    assert_true(moved > 1e-2); /* the head did train */
    /* The body is untouched in both. */
    learner_destroy(a);
    learner_destroy(b);
    dataset_destroy(ds);
}

static void resume_equals_uninterrupted(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    char dir_a[512], dir_b[512], err[256] = "";
    snprintf(dir_a, sizeof dir_a, "%s/ck_a", root);
    snprintf(dir_b, sizeof dir_b, "%s/ck_b", root);
    mkdir(dir_a, 0755);
    mkdir(dir_b, 0755);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 2, .cycle_len = 1, .cycle_mult = 1,
                  .wd = 1e-4, .schedule = SCHED_SGDR, .snapshots = 1};

    c.checkpoint_dir = dir_a;
    learner *a = make(&c, ds);
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), 0);

    c.checkpoint_dir = dir_b;
    learner_destroy(fit_cut(&c, ds, &o, 0));

    learner *b2 = make(&c, ds);
    fit_opts ro = o;
    ro.resume = 1;
    rec r2 = {0};
    ev_hooks h2 = hooks_for(&r2);
    int rc = learner_fit(b2, &ro, &h2, err, sizeof err);
    if (rc)
        print_error("resume: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(r2.n_epoch, 1); /* epoch 1 only */
    assert_int_equal(learner_n_snapshots(b2), 2); /* cycle 0's reloaded from its file */
    assert_same_weights(a, b2);
    learner_state sa, sb;
    learner_get_state(a, &sa);
    learner_get_state(b2, &sb);
    assert_int_equal(sa.step, sb.step);

    /* The checkpointed fit has finished: resuming it again does nothing. Without a
     * checkpoint folder there is nothing to resume. */
    assert_int_equal(learner_fit(b2, &ro, NULL, err, sizeof err), 0);
    assert_memory_equal(learner_net(a)->params, learner_net(b2)->params,
                        learner_net(a)->n_params * sizeof(float));
    learner_destroy(a);
    learner_destroy(b2);
    c.checkpoint_dir = NULL;
    learner *n = make(&c, ds);
    assert_int_equal(learner_fit(n, &ro, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "resume"));
    learner_destroy(n);
    dataset_destroy(ds);
}

/* An AdamW learner (opt = OPTIM_ADAM) learns the shapes, and its checkpoints (twice the
 * optimizer state: m and v) resume bit for bit; an SGD learner refuses them. */
static void adamw_learns_and_resumes(void **state)
{
    (void)state;
    dataset *ds = open_ds(big);
    learner_config c;
    base_config(&c);
    c.bs = 16;
    c.opt = OPTIM_ADAM;
    char dir_a[512], dir_b[512], err[256] = "";
    snprintf(dir_a, sizeof dir_a, "%s/adam_a", root);
    snprintf(dir_b, sizeof dir_b, "%s/adam_b", root);
    mkdir(dir_a, 0755);
    mkdir(dir_b, 0755);
    fit_opts o = {.n_lrs = 1, .lrs = {3e-3}, .n_cycle = 1, .cycle_len = 3, .cycle_mult = 1,
                  .wd = 1e-2, .schedule = SCHED_1CYCLE};
    c.checkpoint_dir = dir_a;
    learner *a = make(&c, ds);
    rec r = {0};
    ev_hooks h = hooks_for(&r);
    int rc = learner_fit(a, &o, &h, err, sizeof err);
    if (rc)
        print_error("fit: %s\n", err);
    assert_int_equal(rc, 0);
    print_message("adamw: validation accuracy %.3f after 3 epochs\n", r.last_acc);
    assert_true(r.last_acc >= 0.9f);

    c.checkpoint_dir = dir_b;
    learner_destroy(fit_cut(&c, ds, &o, 0));
    fit_opts ro = o;
    ro.resume = 1;
    learner *b2 = make(&c, ds);
    assert_int_equal(learner_fit(b2, &ro, NULL, err, sizeof err), 0);
    assert_same_weights(a, b2);
    learner_destroy(b2);

    c.opt = OPTIM_SGD;
    learner *s = make(&c, ds);
    assert_int_equal(learner_fit(s, &ro, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "optim.state"));
    learner_destroy(s);
    c.opt = (optim_kind)7;
    learner *bad;
    assert_int_equal(learner_create(&bad, &c, ds, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "opt"));
    learner_destroy(a);
    dataset_destroy(ds);
}

typedef struct notes {
    int n;
    char what[64][32];
} notes;

static void keep_note(void *ctx, const char *what, const char *why)
{
    notes *n = ctx;
    if (n->n < 64)
        snprintf(n->what[n->n++], sizeof n->what[0], "%s", what);
    assert_true(strlen(why) > 10); /* every choice comes with its reason */
}

static int count_notes(const notes *n, const char *what)
{
    int k = 0;
    for (int i = 0; i < n->n; i++)
        k += strcmp(n->what[i], what) == 0;
    return k;
}

/* Runs the recipe, which must succeed. */
static void recipe_ok(learner *l, const recipe_opts *o, const ev_hooks *h, tta_result *t)
{
    char err[256] = "";
    int rc = learner_recipe(l, o, h, t, err, sizeof err);
    if (rc)
        print_error("recipe: %s\n", err);
    assert_int_equal(rc, 0);
}

static void recipe_from_scratch(void **state)
{
    (void)state;
    dataset *ds = open_ds(big);
    learner_config c;
    base_config(&c);
    c.bs = 16;
    learner *l = make(&c, ds);
    notes nt = {0};
    ev_hooks h = {.ctx = &nt, .on_note = keep_note};
    recipe_opts o = {.max_epochs = 3, .n_aug = 2};
    tta_result t;
    recipe_ok(l, &o, &h, &t);
    print_message("recipe from scratch: accuracy %.3f, with TTA %.3f\n", t.accuracy,
                  t.tta_accuracy);
    assert_int_equal(count_notes(&nt, "pick_lr"), 1);
    assert_int_equal(count_notes(&nt, "lr_find"), 1);
    assert_int_equal(count_notes(&nt, "tta"), 1);
    learner_state st;
    learner_get_state(l, &st);
    assert_true(st.epochs_done >= 1 && st.epochs_done <= 3);
    assert_true(t.tta_accuracy >= 0.85f);
    learner_destroy(l);
    dataset_destroy(ds);
}

typedef struct lr_trace {
    int n;
    double first, peak, last;
    int peak_at;
} lr_trace;

static int trace_lr(void *ctx, const ev_batch *e)
{
    lr_trace *t = ctx;
    double lr = e->lrs[e->n_groups - 1];
    if (t->n == 0)
        t->first = lr;
    if (lr > t->peak) {
        t->peak = lr;
        t->peak_at = t->n;
    }
    t->last = lr;
    t->n++;
    return 0;
}

/* recipe_opts.one_cycle: the from-scratch fit is one 1cycle over every planned epoch (from
 * lr/10 up to the picked lr and down, then annealing), here with AdamW. */
static void recipe_from_scratch_one_cycle(void **state)
{
    (void)state;
    dataset *ds = open_ds(big);
    learner_config c;
    base_config(&c);
    c.bs = 16;
    c.opt = OPTIM_ADAM;
    learner *l = make(&c, ds);
    lr_trace tr = {0};
    ev_hooks h = {.ctx = &tr, .on_batch = trace_lr};
    recipe_opts o = {.max_epochs = 3, .n_aug = 2, .one_cycle = 1};
    tta_result t;
    recipe_ok(l, &o, &h, &t);
    print_message("recipe from scratch, one 1cycle with AdamW: accuracy %.3f, with TTA %.3f\n",
                  t.accuracy, t.tta_accuracy);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.epochs_done, 3);
    int n_fit = 3 * (N_TRAIN / 16);
    assert_int_equal(tr.n, n_fit); /* the sweep reports points, not batches */
    /* lr/10 first; the last batch is most of the way from lr/10 down to lr/1000 */
    assert_true(fabs(tr.first * 10 - tr.peak) < 1e-9 && tr.last < tr.peak / 20);
    assert_true(tr.peak_at > n_fit / 3 && tr.peak_at < n_fit / 2);
    assert_true(t.tta_accuracy >= 0.85f);
    learner_destroy(l);
    dataset_destroy(ds);
}

/* The SGDR plan for an epoch allowance: the most epochs with cycle_mult 2, then the most
 * cycles. */
static void recipe_plans_cycles(void **state)
{
    (void)state;
    static const int want[][3] = {{1, 1, 1}, {2, 1, 2}, {3, 2, 1}, {4, 1, 4}, {5, 1, 5},
                                  {6, 2, 2}, {7, 3, 1}, {8, 1, 8}, {14, 3, 2}, {15, 4, 1}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int n, c;
        recipe_plan_cycles(want[i][0], &n, &c);
        assert_int_equal(n, want[i][1]);
        assert_int_equal(c, want[i][2]);
    }
}

/* The fit a budget allows: whole epochs for SGDR; for one 1cycle, the fewest epochs that
 * hold the time, each on a share of its batches (validation always runs in full). */
static void recipe_plans_the_budget(void **state)
{
    (void)state;
    /* avail, train, valid, max, part -> epochs, frac */
    static const struct {
        double avail, train, valid;
        int max, part, epochs;
        double frac;
    } want[] = {
        {100, 30, 5, 7, 0, 2, 1.0},           /* room for 2.86 epochs */
        {100, 30, 5, 7, 1, 3, (100.0 / 3 - 5) / 30},
        {100, 30, 5, 2, 1, 2, 1.0},           /* max_epochs first */
        {70, 30, 5, 7, 1, 2, 1.0},            /* exactly two */
        {20, 30, 5, 7, 0, 1, 1.0},            /* less than one: one runs */
        {20, 30, 5, 7, 1, 1, 0.5},
        {3, 30, 5, 7, 1, 1, 0.05},            /* not even the validation: the least share */
        {100, 0, 0, 7, 1, 7, 1.0},            /* no speed measured */
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        double frac = -1;
        int e = recipe_plan_budget(want[i].avail, want[i].train, want[i].valid, want[i].max,
                                   want[i].part, &frac);
        assert_int_equal(e, want[i].epochs);
        assert_true(fabs(frac - want[i].frac) < 1e-12);
    }
}

/* Progressive resizing's plan: 4/7 of the size (none below 12 pixels), half of the epochs
 * rounded up and never all of them; a budget counts small epochs at their own cost. */
static void recipe_plans_progressive_resizing(void **state)
{
    (void)state;
    assert_int_equal(recipe_small_size(28), 16);
    assert_int_equal(recipe_small_size(21), 12);
    assert_int_equal(recipe_small_size(20), 0);
    assert_int_equal(recipe_small_size(224), 128);
    static const int small_of[][2] = {{1, 0}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {6, 3}, {7, 4},
                                      {10, 5}};
    for (size_t i = 0; i < sizeof small_of / sizeof small_of[0]; i++)
        assert_int_equal(recipe_small_epochs(small_of[i][0]), small_of[i][1]);
    /* Small epochs 10 + 2, full ones 30 + 5: 5 epochs (3 small) take 36 + 70 = 106. */
    const double ts[2] = {10, 30}, vs[2] = {2, 5};
    double frac = -1;
    assert_int_equal(recipe_plan_progressive(106, ts, vs, 7, 0, &frac), 5);
    assert_true(frac == 1.0);
    assert_int_equal(recipe_plan_progressive(106, ts, vs, 7, 1, &frac), 5);
    assert_true(frac == 1.0);
    assert_int_equal(recipe_plan_progressive(105, ts, vs, 7, 0, &frac), 4);
    /* 4 epochs (2 small) take 94; 105 holds 5 at (105 - 6 - 10) / (30 + 60) of the batches */
    assert_int_equal(recipe_plan_progressive(105, ts, vs, 7, 1, &frac), 5);
    assert_true(fabs(frac - 89.0 / 90.0) < 1e-12);
    assert_int_equal(recipe_plan_progressive(1000, ts, vs, 7, 1, &frac), 7);
    assert_true(frac == 1.0);
}

/* The from-scratch 1cycle at a size with a small one trains its first epochs small and
 * ends at the learner's size, also under a budget (which times the small size first). */
static void recipe_resizes_progressively(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    c.sz = 24;
    c.opt = OPTIM_ADAM;
    tta_result t;
    for (int budget = 0; budget <= 1; budget++) {
        learner *l = make(&c, ds);
        notes nt = {0};
        ev_hooks h = {.ctx = &nt, .on_note = keep_note};
        recipe_opts o = {.max_epochs = 3, .n_aug = 1, .one_cycle = 1,
                         .budget_minutes = budget ? 1000.0 : 0.0};
        recipe_ok(l, &o, &h, &t);
        assert_int_equal(count_notes(&nt, "resize"), 1);
        assert_int_equal(count_notes(&nt, "budget"), budget ? 2 : 0);
        learner_state st;
        learner_get_state(l, &st);
        assert_int_equal(st.sz, 24);
        assert_int_equal(st.epochs_done, 3);
        learner_destroy(l);
    }
    dataset_destroy(ds);
}

/* A budget too small for one epoch still trains one (and says so); a budget that is no
 * constraint leaves max_epochs to plan the fit. */
static void recipe_budget_plans_the_epochs(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    char err[256] = "";
    tta_result t;
    for (int big_budget = 0; big_budget <= 1; big_budget++) {
        learner *l = make(&c, ds);
        notes nt = {0};
        ev_hooks h = {.ctx = &nt, .on_note = keep_note};
        recipe_opts o = {.max_epochs = 3, .n_aug = 1,
                         .budget_minutes = big_budget ? 1000.0 : 1e-4};
        recipe_ok(l, &o, &h, &t);
        assert_true(count_notes(&nt, "budget") >= 1);
        learner_state st;
        learner_get_state(l, &st);
        assert_int_equal(st.epochs_done, big_budget ? 3 : 1);
        learner_destroy(l);
    }
    /* The fit's own check at cycle ends: a limit that the first cycle already passes
     * stops there, with that cycle end's weights; a negative one is refused. */
    learner *lt = make(&c, ds);
    notes nt = {0};
    ev_hooks h = {.ctx = &nt, .on_note = keep_note};
    fit_opts fo = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 3, .cycle_len = 1, .cycle_mult = 2,
                   .wd = 1e-4, .schedule = SCHED_SGDR, .time_limit_s = 1e-3};
    assert_int_equal(learner_fit(lt, &fo, &h, err, sizeof err), 0);
    learner_state st;
    learner_get_state(lt, &st);
    assert_int_equal(st.epochs_done, 1);
    assert_int_equal(count_notes(&nt, "time_limit"), 1);
    fo.time_limit_s = -1;
    assert_int_equal(learner_fit(lt, &fo, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "time_limit_s"));
    learner_destroy(lt);
    recipe_opts bad = {.budget_minutes = -1};
    learner *l = make(&c, ds);
    assert_int_equal(learner_recipe(l, &bad, NULL, &t, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "budget_minutes"));
    learner_destroy(l);
    dataset_destroy(ds);
}

static void recipe_with_a_pretrained_body(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    char err[256] = "", pre[512];
    learner *base = make(&c, ds);
    fit_opts o1 = {.n_lrs = 1, .lrs = {0.02}, .n_cycle = 1, .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(base, &o1, NULL, err, sizeof err), 0);
    snprintf(pre, sizeof pre, "%s/pre2.safetensors", root);
    assert_int_equal(weights_save_file(learner_net(base), pre, err, sizeof err), 0);
    learner_destroy(base);

    c.pretrained = pre;
    c.precompute = 1;
    learner *l = make(&c, ds);
    notes nt = {0};
    ev_hooks h = {.ctx = &nt, .on_note = keep_note};
    recipe_opts o = {.max_epochs = 1, .n_aug = 1};
    tta_result t;
    recipe_ok(l, &o, &h, &t);
    /* precompute, both sweeps, the head from the cache, then unfrozen with 3 groups' LRs. */
    assert_int_equal(count_notes(&nt, "lr_find"), 2);
    assert_int_equal(count_notes(&nt, "precompute"), 1);
    assert_true(count_notes(&nt, "recipe") >= 4);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.freeze_to, 0);
    assert_int_equal(st.precompute, 0);
    assert_int_equal(st.epochs_done, 2 + 2 + 1);
    assert_true(isfinite(t.tta_loss) && t.tta_accuracy > 0.0f);
    learner_destroy(l);

    /* A budget the first steps use up: step 8 runs its first cycle only and says why. */
    l = make(&c, ds);
    notes nb = {0};
    h.ctx = &nb;
    recipe_opts ob = {.max_epochs = 3, .n_aug = 1, .budget_minutes = 1e-4};
    recipe_ok(l, &ob, &h, &t);
    assert_int_equal(count_notes(&nb, "budget"), 1);
    assert_int_equal(count_notes(&nb, "time_limit"), 1);
    learner_get_state(l, &st);
    assert_int_equal(st.epochs_done, 2 + 2 + 1);
    learner_destroy(l);
    dataset_destroy(ds);
}

static void write_png(const char *path, const uint8_t *px)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    assert_false(setjmp(png_jmpbuf(p)));
    png_init_io(p, f);
    png_set_IHDR(p, info, SZ, SZ, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < SZ; y++)
        png_write_row(p, (png_bytep)(px + y * SZ));
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    fclose(f);
}

/* More classes than fixed buffers hold: 1025 class folders, one of them with a 255-byte
 * name. predict_image's probabilities still sum to 1, with and without TTA, and every row
 * of predict_test's CSV is whole: a file name and one probability per class. */
static void predict_with_many_classes(void **state)
{
    (void)state;
    enum { NC = 1025 };
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/many", root);
    uint64_t r = 9;
    uint8_t px[SZ * SZ];
    const char *top[] = {"", "/train", "/valid", "/test"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", dir, top[i]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    char longname[251];
    memset(longname, 'n', 250);
    longname[250] = '\0';
    for (int k = 0; k < NC; k++) {
        for (int v = 0; v < (k < 2 ? 2 : 1); v++) {
            char cls[310];
            snprintf(cls, sizeof cls, "c%04d%s", k, k == 7 ? longname : "");
            char d[700], f[720];
            snprintf(d, sizeof d, "%s/%s/%s", dir, v ? "valid" : "train", cls);
            assert_int_equal(mkdir(d, 0755), 0);
            draw(px, k % 3, &r);
            snprintf(f, sizeof f, "%s/0.png", d);
            write_png(f, px);
        }
    }
    for (int i = 0; i < 3; i++) {
        draw(px, i, &r);
        snprintf(p, sizeof p, "%s/test/t,%d.png", dir, i);
        write_png(p, px);
    }
    ds_options o = {.format = DS_FOLDERS, .path = dir, .valid_pct = -1, .seed = 1};
    dataset *ds;
    char err[256] = "";
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    assert_int_equal(dataset_info(ds)->n_classes, NC);
    learner_config c;
    base_config(&c);
    learner *l = make(&c, ds);
    float *probs = malloc(NC * sizeof *probs);
    image im = {.w = SZ, .h = SZ, .c = 1, .px = px};
    for (int tta = 0; tta <= 1; tta++) {
        assert_int_equal(learner_predict_image(l, &im, tta, probs, err, sizeof err), 0);
        double sum = 0;
        for (int k = 0; k < NC; k++)
            sum += probs[k];
        assert_true(fabs(sum - 1.0) < 1e-3);
    }
    free(probs);

    snprintf(p, sizeof p, "%s/preds.csv", root);
    assert_int_equal(learner_predict_test(l, 0, p, NULL, err, sizeof err), 0);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    int rows = 0, ch, commas = 0, saw_long = 0;
    char cell[400];
    size_t k = 0;
    while ((ch = fgetc(f)) != EOF) {
        if (ch == '\n') {
            assert_int_equal(commas, NC + (rows > 0)); /* "t,0.png" is quoted: one more */
            rows++;
            commas = 0;
        } else {
            commas += ch == ',';
        }
        if (ch == ',' || ch == '\n') {
            cell[k < sizeof cell ? k : sizeof cell - 1] = '\0';
            saw_long |= strlen(cell) == 255 && strncmp(cell, "c0007n", 6) == 0;
            k = 0;
        } else if (k < sizeof cell) {
            cell[k++] = (char)ch;
        }
    }
    fclose(f);
    assert_int_equal(rows, 1 + 3);
    assert_true(saw_long);
    learner_destroy(l);
    dataset_destroy(ds);
}

static void predict_test_writes_csv(void **state)
{
    (void)state;
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/folders", root);
    const char *sub[] = {"", "/train", "/train/bar", "/train/box", "/valid", "/valid/bar",
                         "/valid/box", "/test"};
    for (int i = 0; i < 8; i++) {
        snprintf(p, sizeof p, "%s%s", dir, sub[i]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    uint64_t r = 3;
    uint8_t px[SZ * SZ];
    for (int i = 0; i < 24; i++) {
        int cls = i % 2 ? 2 : 0;
        draw(px, cls, &r);
        snprintf(p, sizeof p, "%s/%s/%s/%d.png", dir, i < 16 ? "train" : "valid",
                 cls ? "box" : "bar", i);
        write_png(p, px);
    }
    for (int i = 0; i < 3; i++) {
        draw(px, 0, &r);
        snprintf(p, sizeof p, "%s/test/t%d.png", dir, i);
        write_png(p, px);
    }
    ds_options o = {.format = DS_FOLDERS, .path = dir, .valid_pct = -1, .seed = 1};
    dataset *ds;
    char err[256] = "";
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    learner_config c;
    base_config(&c);
    learner *l = make(&c, ds);
    for (int tta = 0; tta < 2; tta++) {
        snprintf(p, sizeof p, "%s/pred%d.csv", root, tta);
        int rc = learner_predict_test(l, tta, p, NULL, err, sizeof err);
        if (rc)
            print_error("predict_test: %s\n", err);
        assert_int_equal(rc, 0);
        FILE *f = fopen(p, "r");
        assert_non_null(f);
        char line[512];
        assert_non_null(fgets(line, sizeof line, f));
        assert_string_equal(line, "file,bar,box\n");
        int rows = 0;
        while (fgets(line, sizeof line, f)) {
            char name[128];
            float a, b;
            assert_int_equal(sscanf(line, "%127[^,],%f,%f", name, &a, &b), 3);
            assert_non_null(strstr(name, "test/t"));
            assert_true(fabsf(a + b - 1.0f) < 1e-4f);
            rows++;
        }
        fclose(f);
        assert_int_equal(rows, 3);
        snprintf(p, sizeof p, "%s/pred%d.csv.tmp", root, tta);
        assert_int_equal(access(p, F_OK), -1); /* renamed into place */
    }
    learner_destroy(l);
    dataset_destroy(ds);
}

/* With every group frozen nothing changes, so the validation loss never improves after
 * the first epoch: patience 2 stops the fit after epoch 2 of 10. */
static void early_stop_after_patience(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    learner *l = make(&c, ds);
    char err[256] = "";
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(learner_freeze_to(l, st.n_groups, err, sizeof err), 0);
    rec r = {0};
    ev_hooks h = hooks_for(&r);
    fit_opts o = {.n_lrs = 1, .lrs = {0.1}, .n_cycle = 10, .schedule = SCHED_CONSTANT,
                  .early_stop_patience = 2};
    assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
    assert_int_equal(r.n_epoch, 3);
    learner_get_state(l, &st);
    assert_int_equal(st.epochs_done, 3);
    learner_destroy(l);
    dataset_destroy(ds);
}

/* 1cycle moves the optimizer's momentum every batch (0.95 down to 0.85 and back); the
 * next fit with another schedule is back at the configured 0.9. */
static void onecycle_moves_the_momentum(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    learner *l = make(&c, ds);
    char err[256] = "";
    rec r = {0};
    ev_hooks h = hooks_for(&r);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 2,
                  .schedule = SCHED_1CYCLE};
    sched_plan plan;
    expect_schedule(&r, &plan, SCHED_1CYCLE, N_SMALL / BS, 2, 0.05);
    assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
    assert_int_equal(r.n_batch, 2 * N_SMALL / BS);
    assert_int_equal(r.lr_mismatch, 0);
    assert_int_equal(r.mom_mismatch, 0);
    assert_true(r.mom_min == 0.85f); /* T = 16: the LR peaks at iteration 7 */

    rec r2 = {0};
    ev_hooks h2 = hooks_for(&r2);
    fit_opts oc = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .schedule = SCHED_CONSTANT};
    sched_plan pc;
    expect_schedule(&r2, &pc, SCHED_CONSTANT, N_SMALL / BS, 1, 0.05);
    r2.last_step = r.last_step;
    assert_int_equal(learner_fit(l, &oc, &h2, err, sizeof err), 0);
    assert_int_equal(r2.mom_mismatch, 0);
    assert_true(r2.mom_min == 0.9f);
    learner_destroy(l);
    dataset_destroy(ds);
}

/* fit_opts.epoch_frac: every epoch trains on that share of its batches (rounded up) and
 * validates; the 1cycle spans the batches that run. */
static void fit_trains_part_epochs(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    learner *l = make(&c, ds);
    char err[256] = "";
    rec r = {0};
    ev_hooks h = hooks_for(&r);
    const int bpe = N_SMALL / BS, part = (bpe * 3 + 4) / 5;
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 2,
                  .schedule = SCHED_1CYCLE, .epoch_frac = 0.6};
    sched_plan plan;
    expect_schedule(&r, &plan, SCHED_1CYCLE, part, 2, 0.05);
    assert_true(part < bpe);
    assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
    assert_int_equal(r.n_batch, 2 * part);
    assert_int_equal(r.n_epoch, 2);
    assert_int_equal(r.step_mismatch, 0);
    assert_int_equal(r.lr_mismatch, 0);
    assert_int_equal(r.mom_mismatch, 0);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.epochs_done, 2);
    for (int i = 0; i < 3; i++) {
        o.epoch_frac = (double[]){-0.5, 1.5, NAN}[i];
        assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "epoch_frac"));
    }
    learner_destroy(l);
    dataset_destroy(ds);
}

/* A 1cycle under a time limit paces itself: epochs after the first train on as many
 * batches as the time left allows, between 5% (at least one) and all of them, and each
 * fills its own slice of the schedule. */
static void fit_paces_a_1cycle_to_its_time_limit(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    char err[256] = "";
    const int bpe = N_SMALL / BS, half = bpe / 2;
    for (int roomy = 0; roomy <= 1; roomy++) {
        learner *l = make(&c, ds);
        rec r = {0};
        ev_hooks h = hooks_for(&r);
        fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 3,
                      .schedule = SCHED_1CYCLE, .epoch_frac = 0.5,
                      .time_limit_s = roomy ? 1e6 : 1e-3};
        sched_plan plan;
        expect_schedule(&r, &plan, SCHED_1CYCLE, half, 3, 0.05);
        assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
        assert_int_equal(r.n_epoch, 3);
        assert_int_equal(r.epoch_batches[0], half);
        for (int e = 1; e < 3; e++)
            assert_int_equal(r.epoch_batches[e], roomy ? bpe : 1);
        assert_int_equal(r.lr_mismatch, 0);
        assert_int_equal(r.mom_mismatch, 0);
        assert_int_equal(r.step_mismatch, 0);
        /* One note when the count changes at epoch 1; none when it stays. */
        assert_int_equal(r.n_note, 1);
        assert_string_equal(r.last_note, "time_limit");
        learner_destroy(l);
    }
    dataset_destroy(ds);
}

/* Progressive resizing inside one schedule: epoch 0 at 8 pixels, epoch 1 at SZ on the same
 * 1cycle; the learner keeps the new size, and a fit cut at the old size resumes to the same
 * weights. */
static void fit_resizes_inside_one_schedule(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    c.sz = 8;
    char dir_a[512], dir_b[512], err[256] = "";
    snprintf(dir_a, sizeof dir_a, "%s/rs_a", root);
    snprintf(dir_b, sizeof dir_b, "%s/rs_b", root);
    mkdir(dir_a, 0755);
    mkdir(dir_b, 0755);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 2,
                  .schedule = SCHED_1CYCLE, .resize_epoch = 1, .resize_sz = SZ};
    c.checkpoint_dir = dir_a;
    learner *a = make(&c, ds);
    rec r = {0};
    ev_hooks h = hooks_for(&r);
    sched_plan plan;
    expect_schedule(&r, &plan, SCHED_1CYCLE, N_SMALL / BS, 2, 0.05);
    assert_int_equal(learner_fit(a, &o, &h, err, sizeof err), 0);
    assert_int_equal(r.n_epoch, 2);
    assert_int_equal(r.lr_mismatch, 0);
    assert_string_equal(r.last_note, "resize");
    learner_state st;
    learner_get_state(a, &st);
    assert_int_equal(st.sz, SZ);

    c.checkpoint_dir = dir_b;
    learner *b = fit_cut(&c, ds, &o, 0);
    learner_get_state(b, &st);
    assert_int_equal(st.sz, 8);
    learner_destroy(b);
    learner *b2 = make(&c, ds);
    fit_opts ro = o;
    ro.resume = 1;
    ro.resize_sz = 12; /* another resize plan is another fit */
    assert_int_equal(learner_fit(b2, &ro, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "other settings"));
    ro.resize_sz = SZ;
    int rc = learner_fit(b2, &ro, NULL, err, sizeof err);
    if (rc)
        print_error("resume: %s\n", err);
    assert_int_equal(rc, 0);
    learner_get_state(b2, &st);
    assert_int_equal(st.sz, SZ);
    assert_same_weights(a, b2);
    learner_destroy(b2);

    o.resize_sz = 4;
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "resize_sz"));
    o.resize_sz = SZ;
    o.resize_epoch = -1;
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "resize_epoch"));
    o.resize_epoch = 1;
    assert_int_equal(learner_freeze_to(a, 2, err, sizeof err), 0);
    assert_int_equal(learner_set_precompute(a, 1, err, sizeof err), 0);
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "precompute"));
    learner_destroy(a);
    dataset_destroy(ds);
}

static void count_progress(void *ctx, double fraction, double eta_s)
{
    (*(int *)ctx)++;
}

/* Label smoothing trains on the smoothed cross-entropy (its loss stays above the
 * smoothing's floor) and still learns; validation reports the plain cross-entropy, the
 * same as TTA's centre pass computes from the probabilities. */
static void label_smoothing_trains_and_validates_plain(void **state)
{
    (void)state;
    dataset *ds = open_ds(big);
    learner_config c;
    base_config(&c);
    c.bs = 16;
    c.model.label_smoothing = 0.2f;
    learner *l = make(&c, ds);
    rec r = {0};
    ev_hooks h = hooks_for(&r);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 3,
                  .schedule = SCHED_1CYCLE};
    char err[256] = "";
    assert_int_equal(learner_fit(l, &o, &h, err, sizeof err), 0);
    print_message("label smoothing: validation accuracy %.3f, loss %.4f after 3 epochs\n",
                  r.last_acc, r.last_valid_loss);
    assert_true(r.last_acc >= 0.9f);
    tta_result t;
    assert_int_equal(learner_tta(l, 0, NULL, &t, err, sizeof err), 0);
    assert_true(fabsf(t.loss - r.last_valid_loss) < 1e-4f * (1.0f + t.loss));
    /* The smoothed objective of a batch cannot go below the entropy of its target; the
     * plain one of a net this accurate would. */
    const int nc = N_CLASSES;
    double eps = 0.2, on = 1.0 - eps + eps / nc, off = eps / nc;
    double floor_h = -on * log(on) - (nc - 1) * off * log(off);
    print_message("label smoothing: lowest batch loss %.4f, floor %.4f\n", r.min_loss, floor_h);
    assert_true(r.min_loss >= floor_h - 1e-4);
    assert_true(r.last_valid_loss < floor_h);
    learner_destroy(l);
    c.model.label_smoothing = 1.0f;
    learner *bad = NULL;
    assert_int_not_equal(learner_create(&bad, &c, ds, err, sizeof err), 0);
    assert_non_null(strstr(err, "label_smoothing"));
    dataset_destroy(ds);
}

/* TTA's augmented passes run when they can differ from the centre crop (a zoom here), and
 * are skipped when they cannot: no transforms, no zoom, every image the same square. */
static void tta_skips_passes_that_repeat_the_centre(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    char err[256] = "";
    for (int zoom = 0; zoom <= 1; zoom++) {
        learner_config c;
        base_config(&c);
        c.max_zoom = zoom ? 1.3f : 1.0f;
        learner *l = make(&c, ds);
        int passes = 0;
        ev_hooks h = {.ctx = &passes, .on_progress = count_progress};
        tta_result t;
        assert_int_equal(learner_tta(l, 3, &h, &t, err, sizeof err), 0);
        assert_int_equal(t.n_aug, 3);
        assert_int_equal(passes, zoom ? 4 : 1);
        if (!zoom) {
            assert_true(t.tta_accuracy == t.accuracy);
            for (int k = 0; k < 3; k++)
                assert_true(t.pass_accuracy[k] == t.accuracy);
        }
        learner_destroy(l);
    }
    dataset_destroy(ds);
}

static int count_best_files(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '^best_' > /dev/null", dir);
    return system(cmd) == 0; /* grep -c exits 0 when it counted at least one */
}

/* An early stop that goes back to earlier weights, interrupted after the best epoch and
 * before the stop: the resumed fit stops at the same epoch with the same weights as the
 * uninterrupted one (the kept weights and the counters are in the checkpoint folder). */
static void early_stop_survives_resume(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    c.sz = 8; /* a quarter of the pixels: the many short fits stay cheap under ASan */
    char err[256] = "";
    /* patience 2 at a constant rate; the recipe's stop at a worse cycle end over SGDR
     * cycles of one epoch. */
    fit_opts modes[2] = {
        {.n_lrs = 1, .lrs = {0.3}, .n_cycle = 12, .wd = 1e-4, .schedule = SCHED_CONSTANT,
         .early_stop_patience = 2},
        {.n_lrs = 1, .lrs = {0.3}, .n_cycle = 12, .cycle_len = 1, .cycle_mult = 1,
         .wd = 1e-4, .schedule = SCHED_SGDR, .stop_at_worse_cycle = 1},
    };
    const char *note[2] = {"early_stop", "stop"};
    for (int m = 0; m < 2; m++) {
        char dir_a[512], dir_b[512];
        snprintf(dir_a, sizeof dir_a, "%s/es_a%d", root, m);
        snprintf(dir_b, sizeof dir_b, "%s/es_b%d", root, m);
        assert_int_equal(mkdir(dir_a, 0755), 0);
        assert_int_equal(mkdir(dir_b, 0755), 0);

        c.checkpoint_dir = dir_a;
        learner *a = make(&c, ds);
        rec ra = {0};
        ev_hooks ha = hooks_for(&ra);
        int rc = learner_fit(a, &modes[m], &ha, err, sizeof err);
        if (rc)
            print_error("fit: %s\n", err);
        assert_int_equal(rc, 0);
        int stop_epoch = ra.n_epoch - 1;
        print_message("%s: the uninterrupted fit stopped after epoch %d of 12\n", note[m],
                      stop_epoch);
        assert_string_equal(ra.last_note, note[m]);
        /* Interrupted after the epoch before the stop: the kept weights are older. */
        int cut = stop_epoch - 1;
        assert_true(cut >= 1);
        assert_false(count_best_files(dir_a)); /* a finished fit leaves no best file */

        c.checkpoint_dir = dir_b;
        learner *b = fit_cut(&c, ds, &modes[m], cut);
        assert_true(count_best_files(dir_b));
        size_t np = learner_net(b)->n_params * sizeof(float);
        float *at_cut = malloc(np);
        assert_non_null(at_cut);
        memcpy(at_cut, learner_net(b)->params, np);
        learner_destroy(b);

        learner *b2 = make(&c, ds);
        fit_opts ro = modes[m];
        ro.resume = 1;
        rec r2 = {0};
        ev_hooks h2 = hooks_for(&r2);
        rc = learner_fit(b2, &ro, &h2, err, sizeof err);
        if (rc)
            print_error("resume: %s\n", err);
        assert_int_equal(rc, 0);
        assert_int_equal(r2.n_epoch, 1); /* the stop epoch only */
        assert_string_equal(r2.last_note, note[m]);
        assert_same_weights(a, b2);
        assert_false(count_best_files(dir_b));
        /* Patience went back to the epoch before the cut, older than the checkpoint the
         * resume started from; the cycle rule to the previous cycle end, the cut itself. */
        if (m == 0)
            assert_memory_not_equal(learner_net(a)->params, at_cut, np);
        else
            assert_memory_equal(learner_net(a)->params, at_cut, np);
        free(at_cut);
        learner_destroy(a);
        learner_destroy(b2);
    }
    dataset_destroy(ds);
}

/* Writes src's checkpoint again with learner.meta cut to n_meta entries and version v: a
 * checkpoint as an older release wrote it. */
static void rewrite_meta(const char *src, const char *dst, int n_meta, int64_t v)
{
    st_file f;
    char err[256];
    assert_int_equal(st_read_file(&f, src, err, sizeof err), 0);
    st_tensor *ts = calloc((size_t)f.n, sizeof *ts);
    int64_t *meta = calloc((size_t)n_meta, sizeof *meta);
    assert_non_null(ts);
    assert_non_null(meta);
    for (int i = 0; i < f.n; i++) {
        ts[i] = f.tensors[i];
        if (strcmp(ts[i].name, "learner.meta") == 0) {
            memcpy(meta, ts[i].data, (size_t)n_meta * sizeof *meta);
            meta[0] = v;
            ts[i].data = meta;
            ts[i].shape[0] = n_meta;
            ts[i].nbytes = (size_t)n_meta * sizeof *meta;
        }
    }
    assert_int_equal(st_write_file(dst, ts, f.n, err, sizeof err), 0);
    free(meta);
    free(ts);
    st_free(&f);
}

/* Checkpoints of versions 1 (no early-stop state), 2 (no cycle-end accuracy) and 3 (no
 * resize inside a fit) still load; a meta of any other length is refused. */
static void older_checkpoints_load(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    c.sz = 8;
    char err[256] = "", p4[512], p3[512], p2[512], p1[512], pbad[512];
    learner *l = make(&c, ds);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), 0);
    snprintf(p4, sizeof p4, "%s/v4.safetensors", root);
    snprintf(p3, sizeof p3, "%s/v3.safetensors", root);
    snprintf(p2, sizeof p2, "%s/v2.safetensors", root);
    snprintf(p1, sizeof p1, "%s/v1.safetensors", root);
    snprintf(pbad, sizeof pbad, "%s/vbad.safetensors", root);
    assert_int_equal(learner_save(l, p4, err, sizeof err), 0);
    st_file f;
    assert_int_equal(st_read_file(&f, p4, err, sizeof err), 0);
    int n4 = (int)(st_find(&f, "learner.meta")->nbytes / sizeof(int64_t));
    st_free(&f);
    /* Version 3 lacked the last two entries (the resize plan); version 2 also the one
     * before them (the cycle end's accuracy); version 1 also the five before that (the
     * early stops' state). */
    rewrite_meta(p4, p3, n4 - 2, 3);
    rewrite_meta(p4, p2, n4 - 3, 2);
    rewrite_meta(p4, p1, n4 - 8, 1);
    rewrite_meta(p4, pbad, n4 - 4, 2);
    learner *m = make(&c, ds);
    assert_int_equal(learner_load(m, p4, err, sizeof err), 0);
    assert_int_equal(learner_load(m, p3, err, sizeof err), 0);
    assert_int_equal(learner_load(m, p2, err, sizeof err), 0);
    assert_int_equal(learner_load(m, p1, err, sizeof err), 0);
    assert_memory_equal(learner_net(m)->params, learner_net(l)->params,
                        learner_net(l)->n_params * sizeof(float));
    assert_int_equal(learner_load(m, pbad, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "learner.meta"));
    learner_destroy(m);
    learner_destroy(l);
    dataset_destroy(ds);
}

/* The cycle rule: worse only when the loss did not fall and the accuracy did not rise. */
static void cycle_worse_needs_loss_and_accuracy(void **state)
{
    (void)state;
    assert_false(learner_cycle_worse(0.5f, 0.80f, 0.6f, 0.70f)); /* both better */
    assert_false(learner_cycle_worse(0.5f, 0.60f, 0.6f, 0.70f)); /* loss fell */
    /* BatchNorm on a few batches: the loss jumps while the accuracy climbs */
    assert_false(learner_cycle_worse(60.0f, 0.74f, 4.6f, 0.28f));
    assert_true(learner_cycle_worse(0.7f, 0.70f, 0.6f, 0.70f));  /* loss up, accuracy level */
    assert_true(learner_cycle_worse(0.6f, 0.65f, 0.6f, 0.70f));  /* loss level, accuracy down */
    assert_true(learner_cycle_worse(NAN, NAN, 0.6f, 0.70f));
    assert_false(learner_cycle_worse(9.0f, 0.1f, INFINITY, -INFINITY)); /* the first cycle */
}

static void bad_requests_are_refused(void **state)
{
    (void)state;
    dataset *ds = open_ds(small);
    learner_config c;
    base_config(&c);
    char err[256] = "";
    learner *l = NULL;
    c.sz = 2;
    assert_int_equal(learner_create(&l, &c, ds, err, sizeof err), -EINVAL);
    assert_null(l);
    assert_non_null(strstr(err, "sz"));
    base_config(&c);
    c.model.arch = "vgg";
    assert_int_equal(learner_create(&l, &c, ds, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "arch"));
    base_config(&c);
    c.precompute = 1;
    assert_int_equal(learner_create(&l, &c, ds, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "precompute"));
    base_config(&c);
    l = make(&c, ds);
    fit_opts o = {.n_lrs = 2, .lrs = {0.1, 0.1}, .n_cycle = 1, .schedule = SCHED_SGDR};
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "lrs"));
    o.n_lrs = 1;
    o.n_cycle = 0;
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "n_cycle"));
    assert_int_equal(learner_set_precompute(l, 1, err, sizeof err), -EINVAL);
    assert_int_equal(learner_freeze_to(l, 9, err, sizeof err), -EINVAL);
    assert_int_equal(learner_resize(l, 3, err, sizeof err), -EINVAL);
    assert_int_equal(learner_predict_test(l, 0, "/tmp/x.csv", NULL, err, sizeof err),
                     -ENOENT);
    learner_state st;
    learner_get_state(l, &st);
    assert_int_equal(st.step, 0);
    learner_destroy(l);
    learner_destroy(NULL);
    dataset_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fit_learns_the_shapes),
        cmocka_unit_test(lr_find_restores_everything),
        cmocka_unit_test(precompute_head_equals_full_head),
        cmocka_unit_test(resume_equals_uninterrupted),
        cmocka_unit_test(adamw_learns_and_resumes),
        cmocka_unit_test(recipe_from_scratch),
        cmocka_unit_test(recipe_from_scratch_one_cycle),
        cmocka_unit_test(recipe_plans_cycles),
        cmocka_unit_test(recipe_plans_the_budget),
        cmocka_unit_test(recipe_plans_progressive_resizing),
        cmocka_unit_test(recipe_resizes_progressively),
        cmocka_unit_test(recipe_budget_plans_the_epochs),
        cmocka_unit_test(recipe_with_a_pretrained_body),
        cmocka_unit_test(predict_test_writes_csv),
        cmocka_unit_test(predict_with_many_classes),
        cmocka_unit_test(early_stop_after_patience),
        cmocka_unit_test(onecycle_moves_the_momentum),
        cmocka_unit_test(fit_trains_part_epochs),
        cmocka_unit_test(fit_paces_a_1cycle_to_its_time_limit),
        cmocka_unit_test(label_smoothing_trains_and_validates_plain),
        cmocka_unit_test(fit_resizes_inside_one_schedule),
        cmocka_unit_test(tta_skips_passes_that_repeat_the_centre),
        cmocka_unit_test(early_stop_survives_resume),
        cmocka_unit_test(cycle_worse_needs_loss_and_accuracy),
        cmocka_unit_test(older_checkpoints_load),
        cmocka_unit_test(bad_requests_are_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
