/* fixture.c: the learner tests' shared dataset, configuration, fixtures and event
 * recorder (see fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fixture.h"
#include "rng.h"

char fx_root[256];
char fx_big[300], fx_small[300];


/* Four shapes at random places with random brightness over noise: a horizontal bar, a
 * vertical bar, a hollow square, a diagonal. */
void fx_draw(uint8_t *px, int cls, uint64_t *r)
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
        fx_draw(px, c, &r);
        fwrite(px, 1, sizeof px, fi);
        fwrite(&c, 1, 1, fl);
    }
    fclose(fi);
    fclose(fl);
}

int fx_group_setup(void **state)
{
    (void)state;
    snprintf(fx_root, sizeof fx_root, "/tmp/sgdrd-learner-XXXXXX");
    if (!mkdtemp(fx_root))
        return -1;
    /* big: for the accuracy tests; small: for the tests that only compare runs. */
    snprintf(fx_big, sizeof fx_big, "%s/big", fx_root);
    snprintf(fx_small, sizeof fx_small, "%s/small", fx_root);
    if (mkdir(fx_big, 0755) || mkdir(fx_small, 0755))
        return -1;
    write_split(fx_big, "train", N_TRAIN, 11);
    write_split(fx_big, "t10k", N_VALID, 12);
    write_split(fx_small, "train", N_SMALL, 13);
    write_split(fx_small, "t10k", N_SMALL / 4, 14);
    return 0;
}

int fx_group_teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx_root);
    return system(cmd) == 0 ? 0 : -1;
}

dataset *fx_open_ds(const char *dir)
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

void fx_base_config(learner_config *c)
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

learner *fx_make(const learner_config *c, dataset *ds)
{
    learner *l;
    char err[256] = "";
    int rc = learner_create(&l, c, ds, err, sizeof err);
    if (rc)
        print_error("learner_create: %s\n", err);
    assert_int_equal(rc, 0);
    return l;
}

/* A fresh case on the dataset in dir: *state owns the case (and its dataset) until
 * fx_case_teardown. */
static int case_setup(void **state, const char *dir)
{
    fx_case *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    ds_options o = {.format = DS_IDX, .path = dir, .valid_pct = -1, .seed = 1};
    char err[256];
    if (dataset_open(&t->ds, &o, err, sizeof err)) {
        print_error("dataset_open: %s\n", err);
        free(t);
        return -1;
    }
    fx_base_config(&t->c);
    *state = t;
    return 0;
}

int fx_small_setup(void **state)
{
    return case_setup(state, fx_small);
}

int fx_big_setup(void **state)
{
    return case_setup(state, fx_big);
}

int fx_case_teardown(void **state)
{
    fx_case *t = *state;
    if (t)
        dataset_destroy(t->ds);
    free(t);
    *state = NULL;
    return 0;
}

static int on_batch(void *ctx, const ev_batch *e)
{
    fx_rec *r = ctx;
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
    fx_rec *r = ctx;
    r->n_epoch++;
    r->last_acc = e->accuracy;
    r->last_valid_loss = e->valid_loss;
    if (e->step != r->last_step)
        r->step_mismatch++;
    return r->cancel_after_epoch >= 0 && e->epoch >= r->cancel_after_epoch;
}

static int on_cycle_end(void *ctx, int cycle, int epoch)
{
    fx_rec *r = ctx;
    r->n_cycle_end++;
    return 0;
}

static int on_sweep(void *ctx, const ev_sweep_point *p)
{
    fx_rec *r = ctx;
    r->n_sweep++;
    return r->cancel_after_sweep >= 0 && p->iter >= r->cancel_after_sweep;
}

static void on_note(void *ctx, const char *what, const char *why)
{
    fx_rec *r = ctx;
    r->n_note++;
    snprintf(r->last_note, sizeof r->last_note, "%s", what);
}

ev_hooks fx_hooks_for(fx_rec *r)
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
void fx_expect_schedule(fx_rec *r, sched_plan *p, sched_kind kind, int64_t bpe, int cycle_len,
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
learner *fx_fit_cut(const learner_config *c, dataset *ds, const fit_opts *o, int epoch)
{
    char err[256] = "";
    learner *l = fx_make(c, ds);
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    r.cancel_after_epoch = epoch;
    assert_int_equal(learner_fit(l, o, &h, err, sizeof err), -ECANCELED);
    return l;
}

/* Bit for bit: parameters and BatchNorm buffers. */
void fx_assert_same_weights(learner *a, learner *b)
{
    net *na = learner_net(a), *nb = learner_net(b);
    assert_memory_equal(na->params, nb->params, na->n_params * sizeof(float));
    assert_memory_equal(na->buffers, nb->buffers, na->n_buffers * sizeof(float));
}
