/* test_tta.c: test-time augmentation follows what the run was trained with. On images
 * whose label sits in their outermost pixels, the old random passes (a zoom up to max_zoom
 * and a random crop) cut the label off, while TTA's fixed passes (the flip training drew)
 * keep it and do not lower accuracy against the centre crop; when the passes do lower it,
 * a note and the result say so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fixture.h"
#include "rng.h"

#define N_FRAME_TRAIN 256
#define N_FRAME_VALID 64

static char frame_dir[320], sides_dir[320];

/* "frame": four classes told apart only by the image's outermost pixels, each the same
 * under a left-right flip: a stripe along the top row, along the bottom row, along both
 * side columns, or none. A blob of the same brightness somewhere inside is a distractor.
 * "sides": two classes, a stripe along the left column or the right one, which a flip
 * swaps. */
static void draw_border(uint8_t *px, int sides, int cls, uint64_t *r)
{
    for (int i = 0; i < SZ * SZ; i++)
        px[i] = (uint8_t)rng_below(r, 40);
    int v = 190 + (int)rng_below(r, 60);
    int bx = 4 + (int)rng_below(r, 5), by = 4 + (int)rng_below(r, 5);
    for (int y = by; y < by + 3; y++)
        for (int x = bx; x < bx + 3; x++)
            px[y * SZ + x] = (uint8_t)v;
    for (int k = 0; k < SZ; k++) {
        if (sides) {
            px[k * SZ + (cls ? SZ - 1 : 0)] = (uint8_t)v;
            continue;
        }
        if (cls == 0)
            px[k] = (uint8_t)v;
        else if (cls == 1)
            px[(SZ - 1) * SZ + k] = (uint8_t)v;
        else if (cls == 2)
            px[k * SZ] = px[k * SZ + SZ - 1] = (uint8_t)v;
    }
}

static void be32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

static void write_border_split(const char *dir, const char *prefix, int sides, int n,
                               uint64_t seed)
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
        uint8_t c = (uint8_t)(i % (sides ? 2 : 4));
        draw_border(px, sides, c, &r);
        fwrite(px, 1, sizeof px, fi);
        fwrite(&c, 1, 1, fl);
    }
    fclose(fi);
    fclose(fl);
}

static int group_setup(void **state)
{
    if (fx_group_setup(state))
        return -1;
    snprintf(frame_dir, sizeof frame_dir, "%s/frame", fx_root);
    snprintf(sides_dir, sizeof sides_dir, "%s/sides", fx_root);
    if (mkdir(frame_dir, 0755) || mkdir(sides_dir, 0755))
        return -1;
    write_border_split(frame_dir, "train", 0, N_FRAME_TRAIN, 21);
    write_border_split(frame_dir, "t10k", 0, N_FRAME_VALID, 22);
    write_border_split(sides_dir, "train", 1, N_FRAME_TRAIN, 23);
    write_border_split(sides_dir, "t10k", 1, N_FRAME_VALID, 24);
    return 0;
}

/* Whether the transformed image o (SZ x SZ, values in [0, 1]) still shows class cls's
 * stripe of the frame set. */
static int frame_label_kept(const float *o, int cls)
{
    double top = 0, bottom = 0, left = 0, right = 0;
    for (int k = 0; k < SZ; k++) {
        top += o[k];
        bottom += o[(SZ - 1) * SZ + k];
        left += o[k * SZ];
        right += o[k * SZ + SZ - 1];
    }
    double h = 0.5 * SZ;
    switch (cls) {
    case 0:
        return top > h;
    case 1:
        return bottom > h;
    case 2:
        return left > h && right > h;
    default:
        return 1;
    }
}

static learner_config frame_config(tfm_set tfms, float max_zoom)
{
    learner_config c;
    fx_base_config(&c);
    c.tfms = tfms;
    c.max_zoom = max_zoom;
    return c;
}

/* With flips and the default max_zoom 1.1 at 16 pixels, training's random zoom (up to 17
 * pixels) and crop cut a row or column off; the old passes drew the same and lost the
 * stripe on some images. The fixed passes are the flip alone (half of the zoom range is
 * less than a pixel), and keep every stripe. Without flips there is no pass at all. */
static void old_passes_cut_the_label_new_ones_keep_it(void **state)
{
    (void)state;
    dataset *ds = fx_open_ds(frame_dir);
    learner_config c = frame_config(TFMS_FLIP, 1.1f);
    learner *l = fx_make(&c, ds);
    tfm_plan plans[TTA_MAX_AUG];
    int n = learner_tta_plans(l, plans, TTA_MAX_AUG);
    assert_int_equal(n, 1);
    assert_int_equal(plans[0].dihedral, 4);
    assert_true(plans[0].zoom == 1.0f && plans[0].crop_x < 0 && plans[0].crop_y < 0);

    tfm_config tc = {.sz = SZ, .c_out = 1, .tfms = TFMS_FLIP, .max_zoom = 1.1f,
                     .augment = 1, .mean = {0, 0, 0}, .std = {1, 1, 1}};
    float out[SZ * SZ];
    uint64_t r = 77;
    int old_lost = 0, new_lost = 0, views = 0;
    for (int i = 0; i < N_FRAME_VALID; i++) {
        image im;
        char err[256];
        assert_int_equal(dataset_item_image(ds, SPLIT_VALID, i, &im, err, sizeof err), 0);
        int cls = dataset_item_label(ds, SPLIT_VALID, i);
        for (int k = 0; k < 8; k++) {
            transform_apply(out, &im, &tc, &r);
            old_lost += !frame_label_kept(out, cls);
            views++;
        }
        for (int k = 0; k < n; k++) {
            assert_int_equal(transform_apply_plan(out, &im, &tc, &plans[k]), 0);
            new_lost += !frame_label_kept(out, cls);
        }
        image_free(&im);
    }
    print_message("tta: old random passes lost the label in %d of %d views, the fixed "
                  "passes in %d\n", old_lost, views, new_lost);
    assert_true(old_lost > 0);
    assert_int_equal(new_lost, 0);
    learner_destroy(l);

    c = frame_config(TFMS_NONE, 1.1f);
    l = fx_make(&c, ds);
    assert_int_equal(learner_tta_plans(l, plans, TTA_MAX_AUG), 0);
    learner_destroy(l);
    /* A zoom range wide enough for a pixel of room at half of it: four corner crops. */
    c = frame_config(TFMS_NONE, 1.3f);
    l = fx_make(&c, ds);
    assert_int_equal(learner_tta_plans(l, plans, TTA_MAX_AUG), 4);
    for (int k = 0; k < 4; k++)
        assert_int_equal((int)floorf(plans[k].zoom * SZ), 18);
    learner_destroy(l);
    dataset_destroy(ds);
}

/* A run trained with pad shifts its TTA crops about half the pad each way, symmetrically:
 * four crops halfway from the centre to the padded room's corners, with and without the
 * flip (pad 3 at SZ: room 6, centre offset 3, crops at 1 and 5). Its smaller sizes pad by
 * the same share. */
static void padded_runs_take_shifted_passes(void **state)
{
    (void)state;
    dataset *ds = fx_open_ds(frame_dir);
    learner_config c = frame_config(TFMS_FLIP, 1.0f);
    c.pad = 3;
    learner *l = fx_make(&c, ds);
    tfm_plan plans[TTA_MAX_AUG];
    assert_int_equal(learner_tta_plans(l, plans, TTA_MAX_AUG), 9);
    assert_int_equal(plans[0].dihedral, 4);
    assert_true(plans[0].crop_x < 0);
    const int want[4][2] = {{1, 1}, {5, 5}, {5, 1}, {1, 5}};
    for (int k = 1; k < 9; k++) {
        const int *w = want[(k - 1) / 2];
        assert_int_equal(plans[k].dihedral, (k - 1) % 2 ? 4 : 0);
        assert_int_equal((int)floorf(plans[k].crop_x * 6), w[0]);
        assert_int_equal((int)floorf(plans[k].crop_y * 6), w[1]);
    }
    learner_destroy(l);
    /* pad 1: room 2, crops at 0 and 2, the padded room's corners. */
    c = frame_config(TFMS_NONE, 1.0f);
    c.pad = 1;
    l = fx_make(&c, ds);
    assert_int_equal(learner_tta_plans(l, plans, TTA_MAX_AUG), 4);
    assert_int_equal((int)floorf(plans[0].crop_x * 2), 0);
    assert_int_equal((int)floorf(plans[1].crop_x * 2), 2);
    learner_destroy(l);
    dataset_destroy(ds);
}

static learner *fit_border(dataset *ds, tfm_set tfms, float max_zoom)
{
    learner_config c = frame_config(tfms, max_zoom);
    c.bs = 16;
    learner *l = fx_make(&c, ds);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 4, .cycle_mult = 1,
                  .wd = 1e-4, .schedule = SCHED_SGDR};
    char err[256] = "";
    int rc = learner_fit(l, &o, NULL, err, sizeof err);
    if (rc)
        print_error("fit: %s\n", err);
    assert_int_equal(rc, 0);
    return l;
}

/* Trained with flips and max_zoom 1.1 on the frame set, TTA runs the flip pass only and
 * its mean is no worse than the centre crop, whose accuracy the result carries. */
static void tta_does_not_lower_accuracy_on_frame_filling_labels(void **state)
{
    (void)state;
    dataset *ds = fx_open_ds(frame_dir);
    learner *l = fit_border(ds, TFMS_FLIP, 1.1f);
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    tta_result t;
    char err[256] = "";
    assert_int_equal(learner_tta(l, 4, &h, &t, err, sizeof err), 0);
    print_message("tta: centre %.4f, flip pass %.4f, mean %.4f\n", t.accuracy,
                  t.pass_accuracy[0], t.tta_accuracy);
    assert_int_equal(t.n_aug, 4);
    assert_int_equal(t.n_run, 1);
    assert_true(t.accuracy >= 0.9f);
    assert_true(t.tta_accuracy >= t.accuracy);
    assert_int_equal(t.tta_worse, 0);
    for (int k = 1; k < 4; k++)
        assert_true(t.pass_accuracy[k] == t.accuracy); /* not run */
    assert_string_equal(r.last_note, "tta");
    learner_destroy(l);
    dataset_destroy(ds);
}

/* Weights trained without flips on the sides set, in a learner that claims flips: the
 * flip pass swaps the classes, the mean falls below the centre crop, and the result and
 * a "tta_worse" note say so. */
static void tta_below_the_centre_crop_is_noted(void **state)
{
    (void)state;
    dataset *ds = fx_open_ds(sides_dir);
    learner *trained = fit_border(ds, TFMS_NONE, 1.0f);
    learner_config c = frame_config(TFMS_FLIP, 1.0f);
    learner *l = fx_make(&c, ds);
    net *a = learner_net(trained), *b = learner_net(l);
    assert_true(a->n_params == b->n_params && a->n_buffers == b->n_buffers);
    memcpy(b->params, a->params, a->n_params * sizeof(float));
    memcpy(b->buffers, a->buffers, a->n_buffers * sizeof(float));
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    tta_result t;
    char err[256] = "";
    assert_int_equal(learner_tta(l, 4, &h, &t, err, sizeof err), 0);
    print_message("tta: centre %.4f, flip pass %.4f, mean %.4f\n", t.accuracy,
                  t.pass_accuracy[0], t.tta_accuracy);
    assert_int_equal(t.n_run, 1);
    assert_true(t.accuracy >= 0.9f);
    assert_true(t.pass_accuracy[0] <= 0.1f);
    assert_true(t.tta_accuracy < t.accuracy);
    assert_int_equal(t.tta_worse, 1);
    assert_string_equal(r.last_note, "tta_worse");
    learner_destroy(l);
    learner_destroy(trained);
    dataset_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(old_passes_cut_the_label_new_ones_keep_it),
        cmocka_unit_test(padded_runs_take_shifted_passes),
        cmocka_unit_test(tta_does_not_lower_accuracy_on_frame_filling_labels),
        cmocka_unit_test(tta_below_the_centre_crop_is_noted),
    };
    return cmocka_run_group_tests(tests, group_setup, fx_group_teardown);
}
