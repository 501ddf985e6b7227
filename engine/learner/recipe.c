/* recipe: the whole recipe (LR sweeps, fits, resizes, TTA) as one operation. */
#include "internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lrsched.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include "weights.h"

/* ---- the recipe --------------------------------------------------------------------------- */

/* The LR a sweep suggests: valley, else min_div10, else the fallback. */
static double pick_lr(const lrfind_result *r, double fallback, const ev_hooks *h,
                      const char *when)
{
    if (r->valley.lr > 0.0) {
        lrn_note(h, "pick_lr", "%s: lr %.3g from the valley suggestion (%s)", when, r->valley.lr,
             r->valley.reason);
        return r->valley.lr;
    }
    if (r->min_div10.lr > 0.0) {
        lrn_note(h, "pick_lr", "%s: lr %.3g from min_div10 (no valley: %s)", when,
             r->min_div10.lr, r->valley.reason);
        return r->min_div10.lr;
    }
    lrn_note(h, "pick_lr", "%s: lr %.3g, the default (the sweep gave no suggestion: %s)", when,
         fallback, r->valley.reason);
    return fallback;
}

int learner_recipe(learner *l, const recipe_opts *o, const ev_hooks *h, tta_result *out,
                   char *err, size_t errlen)
{
    int max_epochs = o && o->max_epochs > 0 ? o->max_epochs : 7;
    int n_aug = o && o->n_aug > 0 ? o->n_aug : 4;
    int close = o && o->close_to_imagenet;
    if (max_epochs > 1000 || n_aug > TTA_MAX_AUG) {
        lrn_set_err(err, errlen, "recipe: max_epochs at most 1000, n_aug at most %d", TTA_MAX_AUG);
        return -EINVAL;
    }
    /* SGDR cycles of 1, 2, 4, ... epochs that fit the budget. */
    int n_cycle = 0, used = 0;
    while (used + (1 << n_cycle) <= max_epochs && n_cycle < 10)
        used += 1 << n_cycle++;
    if (n_cycle < 1)
        n_cycle = 1;
    lrfind_opts lo = {.start_lr = 1e-5, .end_lr = 10.0};
    lrfind_result r;
    fit_opts fo;
    int rc;
    double lr;

    if (!l->pretrained) {
        lrn_note(h, "recipe", "no pretrained body: train from scratch with lr_find, SGDR "
             "(cycle_mult 2, %d cycles = %d epochs) and TTA", n_cycle, used);
        if ((rc = learner_unfreeze(l)))
            return rc;
        rc = learner_lr_find(l, &lo, h, &r, err, errlen);
        if (rc)
            return rc;
        lr = pick_lr(&r, 1e-2, h, "from scratch");
        lrfind_result_free(&r);
        memset(&fo, 0, sizeof fo);
        fo.n_lrs = 1;
        fo.lrs[0] = lr;
        fo.n_cycle = n_cycle;
        fo.cycle_len = 1;
        fo.cycle_mult = 2;
        fo.wd = 1e-4;
        fo.schedule = SCHED_SGDR;
        fo.stop_at_worse_cycle = 1;
        lrn_note(h, "fit", "SGDR with cycle_len 1, cycle_mult 2, %d cycles at lr %.3g, wd 1e-4; "
             "stop at a cycle end when validation loss stops improving", n_cycle, lr);
        rc = learner_fit(l, &fo, h, err, errlen);
        if (rc)
            return rc;
        return learner_tta(l, n_aug, h, out, err, errlen);
    }

    /* 1. precompute on (the body is frozen since creation). */
    if ((rc = learner_freeze_to(l, l->head_group, err, errlen)))
        return rc;
    if ((rc = learner_set_precompute(l, 1, err, errlen)))
        return rc;
    lrn_note(h, "recipe", "step 1: body frozen, precompute on: the head trains from cached "
         "activations, without augmentation");
    /* 2. lr_find and pick. */
    rc = learner_lr_find(l, &lo, h, &r, err, errlen);
    if (rc)
        return rc;
    lr = pick_lr(&r, 1e-2, h, "step 2 (head)");
    lrfind_result_free(&r);
    /* 3. the head from the cache, 2 epochs at a constant LR (fast.ai's learn.fit(lr, 2)). */
    memset(&fo, 0, sizeof fo);
    fo.n_lrs = 1;
    fo.lrs[0] = lr;
    fo.n_cycle = 2;
    fo.wd = 1e-4;
    fo.schedule = SCHED_CONSTANT;
    lrn_note(h, "recipe", "step 3: train the head from precomputed activations for 2 epochs at "
         "lr %.3g (the seed's 1-2; the cache makes them cheap)", lr);
    if ((rc = learner_fit(l, &fo, h, err, errlen)))
        return rc;
    /* 4. augmentation on: precompute off, 2 cycles of cycle_len 1. */
    if ((rc = learner_set_precompute(l, 0, err, errlen)))
        return rc;
    fo.n_cycle = 2;
    fo.cycle_len = 1;
    fo.cycle_mult = 1;
    fo.schedule = SCHED_SGDR;
    lrn_note(h, "recipe", "step 4: precompute off so augmentation applies; 2 SGDR cycles of "
         "cycle_len 1 on the head (the seed's 2-3, the lower end to keep the budget for "
         "the unfrozen phase)");
    if ((rc = learner_fit(l, &fo, h, err, errlen)))
        return rc;
    /* 5. unfreeze. 6. differential LRs. */
    if ((rc = learner_unfreeze(l)))
        return rc;
    double div_lo = close ? 100.0 : 9.0, div_mid = close ? 10.0 : 3.0;
    lrn_note(h, "recipe", "step 5-6: unfreeze; lrs = [lr/%g, lr/%g, lr] (%s)", div_lo, div_mid,
         close ? "the data is close to ImageNet: 10x steps"
               : "the data differs from ImageNet: 3x steps");
    /* 7. lr_find again with those ratios. */
    lo.n_lrs = l->n_groups;
    for (int g = 0; g < l->n_groups; g++)
        lo.lrs[g] = g == l->n_groups - 1 ? 1.0
                    : g == l->n_groups - 2 ? 1.0 / div_mid : 1.0 / div_lo;
    rc = learner_lr_find(l, &lo, h, &r, err, errlen);
    if (rc)
        return rc;
    double lr2 = pick_lr(&r, lr, h, "step 7 (unfrozen)");
    lrfind_result_free(&r);
    if (lr2 > lr) {
        lrn_note(h, "pick_lr", "step 7: keeping lr %.3g: the new suggestion %.3g is higher, and "
             "a higher rate than the head's would damage the pretrained body", lr, lr2);
        lr2 = lr;
    }
    /* 8. cycle_mult 2 until validation loss stops improving. */
    memset(&fo, 0, sizeof fo);
    fo.n_lrs = l->n_groups;
    for (int g = 0; g < l->n_groups; g++)
        fo.lrs[g] = lr2 * lo.lrs[g];
    fo.n_cycle = n_cycle;
    fo.cycle_len = 1;
    fo.cycle_mult = 2;
    fo.wd = 1e-4;
    fo.schedule = SCHED_SGDR;
    fo.stop_at_worse_cycle = 1;
    lrn_note(h, "recipe", "step 8: the whole network, SGDR cycle_len 1, cycle_mult 2, up to %d "
         "cycles (%d epochs), stopping at a cycle end when validation loss stops improving",
         n_cycle, used);
    if ((rc = learner_fit(l, &fo, h, err, errlen)))
        return rc;
    return learner_tta(l, n_aug, h, out, err, errlen);
}
