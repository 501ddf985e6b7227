/* recipe: the whole recipe (LR sweeps, fits, resizes, TTA) as one operation. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lrsched.h"
#include "optim.h"

/* The sweep's length under a time budget: fast.ai 2's lr_find default, half of the
 * one-epoch (at most 200) default, leaving the time to training. */
#define RECIPE_BUDGET_SWEEP 100
/* Progressive resizing stops below this size: at 12 pixels resnet_small's last stage
 * already sees 3x3 maps. */
#define RECIPE_SMALLEST 12
/* A budgeted 1cycle's plan takes the speeds the sweeps measured as this many times
 * faster. The fit's pacing trims every epoch after the first to the time left, but it
 * cannot add epochs to a 1cycle that has started, and a shared host's speed moves by tens
 * of percent within minutes: a sweep that caught a slow moment would leave minutes
 * unused. Planned too fast, the epochs train on fewer batches each and the time is used.
 * TTA's share is planned at the measured speed; the pacing then keeps it back at the
 * validation speed it measures (fit_opts.after_passes). */
#define RECIPE_PACE_HEADROOM 1.25
/* Batches of the short sweep at low rates that times the small size. */
#define RECIPE_PROBE_IT 20
/* How close to its lowest the smoothed loss must come to count as the flat bottom, as a
 * share of the sweep's drop (pick_lr). */
#define RECIPE_FLAT_BAND 0.02

/* ---- the recipe --------------------------------------------------------------------------- */

/* The seed's rule for a sweep: "the highest learning rate where the loss is still clearly
 * improving", which fast.ai's lessons read as an order of magnitude below the minimum:
 * min_div10, else valley, else the fallback. valley (fast.ai 2's default) lands several
 * times lower on both of the recipe's sweeps: below where a net from scratch trains best,
 * and too low for a head that gets only a few batches from the cache and a few augmented
 * ones (bench_recipe and the transfer test measure both; see bench/README.md).
 * With AdamW training a whole net (from scratch) the pick is a tenth of where the smoothed
 * loss's flat bottom starts (lrfind_flat_start, within RECIPE_FLAT_BAND of the sweep's drop
 * of its lowest). Adam moves every weight by about the LR whatever its gradient, and
 * BatchNorm makes a convolution's output blind to its weights' scale, so a sweep's loss
 * stays near its lowest for a decade of rates whose steps are too big: where along that
 * bottom the minimum falls changes with the sgemm kernel, so a tenth of min_div10 moves
 * with it, while where the bottom starts does not (bench_recipe --opt adamw, see
 * bench/README.md). */
static double pick_lr(const lrfind_result *r, int adamw_body, double fallback,
                      const ev_hooks *h, const char *when)
{
    double flat_loss = 0.0, flat = adamw_body ? lrfind_flat_start(r, RECIPE_FLAT_BAND,
                                                                  &flat_loss) : 0.0;
    if (flat > 0.0) {
        lrn_note(h, "pick_lr", "%s: lr %.3g, a tenth of where the smoothed loss's flat bottom "
                 "starts (%.4g at lr %.3g, within %.0f%% of the sweep's drop of its lowest): "
                 "AdamW's sweep stays near its lowest long past the rates it trains well at, "
                 "and where along that bottom the minimum falls is noise (min_div10 %.3g: %s); "
                 "valley would give %.3g", when, flat / 10.0, flat_loss, flat,
                 100.0 * RECIPE_FLAT_BAND, r->min_div10.lr, r->min_div10.reason, r->valley.lr);
        return flat / 10.0;
    }
    if (r->min_div10.lr > 0.0) {
        lrn_note(h, "pick_lr", "%s: lr %.3g from min_div10, an order of magnitude below the "
                 "minimum (%s); valley would give %.3g", when, r->min_div10.lr,
                 r->min_div10.reason, r->valley.lr);
        return r->min_div10.lr;
    }
    if (r->valley.lr > 0.0) {
        lrn_note(h, "pick_lr", "%s: lr %.3g from the valley suggestion (no min_div10: %s)",
                 when, r->valley.lr, r->valley.reason);
        return r->valley.lr;
    }
    lrn_note(h, "pick_lr", "%s: lr %.3g, the default (the sweep gave no suggestion: %s)", when,
         fallback, r->min_div10.reason);
    return fallback;
}

/* Step 7's pick. The lessons keep the head's LR for the top group once unfrozen
 * (lrs = [lr/9, lr/3, lr]), and so does this, with the second sweep as the check that the
 * unfrozen network still trains at it: only when the sweep diverged below that LR does the
 * pick drop to the sweep's min_div10. Its valley is no guide here: from a trained head the
 * curve is flat until it diverges, and on the transfer test valley landed more than an
 * order of magnitude below the head's LR, where the body's BatchNorm statistics move to
 * the new data faster than the weights can follow and the trained head's accuracy fell. A
 * higher LR than the head's would damage the pretrained body. */
static double unfrozen_lr(const lrfind_result *r, double head_lr, const ev_hooks *h)
{
    double reached = r->n_points > 0 ? r->points[r->n_points - 1].lr : 0.0;
    if (r->stopped_early && reached < head_lr && r->min_div10.lr > 0.0) {
        lrn_note(h, "pick_lr", "step 7 (unfrozen): lr %.3g from min_div10: the unfrozen sweep "
                 "diverged at %.3g, below the head's lr %.3g", r->min_div10.lr, reached,
                 head_lr);
        return r->min_div10.lr < head_lr ? r->min_div10.lr : head_lr;
    }
    lrn_note(h, "pick_lr", "step 7 (unfrozen): keeping the head's lr %.3g for the top group, "
             "as the lessons do: the unfrozen sweep still trains there (it ran to %.3g%s; "
             "valley %.3g, min_div10 %.3g)", head_lr, reached,
             r->stopped_early ? " before diverging" : "", r->valley.lr, r->min_div10.lr);
    return head_lr;
}

/* The recipe's weight decay: fast.ai 0.7's 1e-4 as L2 for SGD; 0.01 for AdamW, whose
 * decay is decoupled and scaled by the LR (later fast.ai's default), so 1e-4 would be
 * next to none. */
static double recipe_wd(const learner *l)
{
    return l->opt->cfg.kind == OPTIM_ADAM ? 1e-2 : 1e-4;
}

/* recipe_opts.wd where it is set, else the recipe's own. */
static double scratch_wd(const learner *l, const recipe_opts *o)
{
    return o && o->wd > 0 ? o->wd : recipe_wd(l);
}

/* recipe_opts.small_sz as a size: 0 for none, the recipe's rule where it is unset. */
static int scratch_small(const learner *l, const recipe_opts *o)
{
    if (o && o->small_sz < 0)
        return 0;
    return o && o->small_sz > 0 ? o->small_sz : recipe_small_size(l->sz);
}

/* The SGDR fit the recipe ends with: cycle_mult 2 from cycle_len, weight decay wd,
 * stopping at a cycle end whose validation loss is not better than the previous one's. */
static void sgdr_opts(fit_opts *fo, double wd, int n_lrs, const double *lrs, int n_cycle,
                      int cycle_len)
{
    memset(fo, 0, sizeof *fo);
    fo->n_lrs = n_lrs;
    memcpy(fo->lrs, lrs, (size_t)n_lrs * sizeof *lrs);
    fo->n_cycle = n_cycle;
    fo->cycle_len = cycle_len;
    fo->cycle_mult = 2;
    fo->wd = wd;
    fo->schedule = SCHED_SGDR;
    fo->stop_at_worse_cycle = 1;
}

void recipe_plan_cycles(int epochs, int *n_cycle, int *cycle_len)
{
    int best_used = 0;
    *n_cycle = *cycle_len = 1;
    for (int n = 1; n <= 10; n++) {
        int per = (1 << n) - 1, c = epochs / per;
        if (c >= 1 && c * per >= best_used) {
            best_used = c * per;
            *n_cycle = n;
            *cycle_len = c;
        }
    }
}

int recipe_small_size(int sz)
{
    int small = (sz * 4 + 3) / 7;
    return small >= RECIPE_SMALLEST ? small : 0;
}

int recipe_small_epochs(int epochs)
{
    if (epochs < 2)
        return 0;
    int k = (epochs + 1) / 2;
    return k < epochs ? k : epochs - 1;
}

/* Seconds of e epochs, each training on the share f of its batches. */
static double plan_cost(int e, double f, const double *train_s, const double *valid_s)
{
    int k = recipe_small_epochs(e);
    return k * (f * train_s[0] + valid_s[0]) + (e - k) * (f * train_s[1] + valid_s[1]);
}

int recipe_plan_progressive(double avail_s, const double train_s[2], const double valid_s[2],
                            int max_epochs, int part_epochs, double *frac)
{
    *frac = 1.0;
    if (!(train_s[0] + valid_s[0] > 0) || !(train_s[1] + valid_s[1] > 0))
        return max_epochs;
    int e = 1;
    while (e < max_epochs && plan_cost(e + 1, 1.0, train_s, valid_s) <= avail_s)
        e++;
    double whole = plan_cost(e, 1.0, train_s, valid_s);
    if (!part_epochs || !(train_s[0] > 0 && train_s[1] > 0) ||
        (whole <= avail_s && (e == max_epochs || whole == avail_s)))
        return e;
    if (whole <= avail_s)
        e++;
    double validating = plan_cost(e, 0.0, train_s, valid_s);
    double f = (avail_s - validating) / (plan_cost(e, 1.0, train_s, valid_s) - validating);
    *frac = f > 1.0 ? 1.0 : f < 0.05 ? 0.05 : f;
    return e;
}

int recipe_plan_budget(double avail_s, double train_s, double valid_s, int max_epochs,
                       int part_epochs, double *frac)
{
    const double t[2] = {train_s, train_s}, v[2] = {valid_s, valid_s};
    return recipe_plan_progressive(avail_s, t, v, max_epochs, part_epochs, frac);
}

/* The seconds an epoch's training, its validation and the final TTA take at the training
 * speed the sweep measured. A forward pass costs about a third of a training step
 * (backward computes two products per forward one). Returns TTA's validation passes, the
 * centre crop's among them. */
static int budget_costs(const learner *l, double train_img_s, int n_aug, double *train_s,
                        double *valid_s, double *tta_s)
{
    tfm_plan plans[TTA_MAX_AUG];
    /* the passes learner_tta will run */
    n_aug = learner_tta_plans(l, plans, n_aug < TTA_MAX_AUG ? n_aug : TTA_MAX_AUG);
    double n_train = l->info->count[SPLIT_TRAIN], n_valid = l->info->count[SPLIT_VALID];
    double eval_img_s = 3.0 * train_img_s;
    *train_s = n_train / train_img_s;
    *valid_s = n_valid / eval_img_s;
    *tta_s = (1 + n_aug) * *valid_s;
    return 1 + n_aug;
}

/* The from-scratch recipe's plan as it is made: what it was given, what the sweeps
 * measured, and the fit it settles on. */
typedef struct scratch_plan {
    double t0, budget_s;       /* the recipe's start and budget (0: none) */
    int max_epochs, n_aug, one_cycle;
    double lr, sweep_img_s, small_img_s; /* speeds measured at the full and small size */
    int full, small;           /* image sizes; small 0: no progressive resizing */
    double wd;                 /* the fit's weight decay */
    int epochs;
    double frac, fit_limit_s;  /* fit_opts.epoch_frac and time_limit_s */
    int tta_passes;            /* validation passes TTA runs (with the centre crop's) */
    double tta_s;              /* and their time at the measured speed */
} scratch_plan;

/* The images per second a sweep trained at: over its steps after the warm-up, which is
 * what the fit's epochs see, or over all of total_s when it had none. Every rank agrees. */
static double sweep_speed(const learner *l, const lrfind_result *r, double total_s)
{
    int steady = r->steady_it > 0 && r->steady_s > 0;
    double s = lrn_agree(l, steady ? r->steady_s : total_s);
    int it = steady ? r->steady_it : r->n_points;
    return s > 0 ? (double)it * l->bs / s : 0.0;
}

/* The LR sweep over the whole net, and the LR picked from it. */
static int scratch_sweep(learner *l, scratch_plan *sp, const ev_hooks *h, char *err,
                         size_t errlen)
{
    lrfind_opts lo = {.start_lr = 1e-5, .end_lr = 10.0};
    int default_it = lrfind_default_iters(
        ((int64_t)l->info->count[SPLIT_TRAIN] + l->bs - 1) / l->bs);
    if (sp->budget_s > 0 && default_it > RECIPE_BUDGET_SWEEP) {
        lo.num_it = RECIPE_BUDGET_SWEEP;
        lrn_note(h, "budget", "a budget is set: the sweep takes %d iterations (fast.ai 2's "
                 "default) instead of up to an epoch's %d", RECIPE_BUDGET_SWEEP, default_it);
    }
    lrfind_result r;
    int rc = learner_lr_find(l, &lo, h, &r, err, errlen);
    if (rc)
        return rc;
    sp->sweep_img_s = sweep_speed(l, &r, clock_mono_s() - sp->t0);
    sp->lr = pick_lr(&r, l->opt->cfg.kind == OPTIM_ADAM, 1e-2, h, "from scratch");
    lrfind_result_free(&r);
    return 0;
}

/* The sweep timed the full size; a short sweep at rates too low to move anything times
 * the small one (it puts back all it changes, like every sweep). */
static int scratch_time_small(learner *l, scratch_plan *sp, const ev_hooks *h, char *err,
                              size_t errlen)
{
    lrfind_opts po = {.start_lr = 1e-7, .end_lr = 1e-6, .num_it = RECIPE_PROBE_IT};
    lrfind_result pr;
    double tp = clock_mono_s();
    learner_resize(l, sp->small, NULL, 0);
    int rc = learner_lr_find(l, &po, NULL, &pr, err, errlen);
    learner_resize(l, sp->full, NULL, 0);
    if (rc)
        return rc;
    sp->small_img_s = sweep_speed(l, &pr, clock_mono_s() - tp);
    lrfind_result_free(&pr);
    lrn_note(h, "budget", "%d batches at %d pixels, the progressive resizing's small size, "
             "trained at %.0f img/s", RECIPE_PROBE_IT, sp->small, sp->small_img_s);
    return 0;
}

/* The epochs (and part epoch) the budget allows at the measured speeds. The plan rests on
 * the speeds measured now; the fit then checks them: SGDR at every cycle end, the 1cycle
 * by pacing every epoch after the first to the time left (fit_opts.time_limit_s). */
static void scratch_plan_budget(const learner *l, scratch_plan *sp, const ev_hooks *h)
{
    double sweep_img_s = sp->sweep_img_s, k = sp->one_cycle ? RECIPE_PACE_HEADROOM : 1.0;
    double left_s = lrn_agree(l, sp->budget_s - (clock_mono_s() - sp->t0)), ts[2] = {0, 0},
           vs[2] = {0, 0},
           tta_s = 0, unused, unused_v;
    if (sweep_img_s > 0) {
        /* TTA at the measured speed, the epochs at the speed the plan allows for */
        sp->tta_passes = budget_costs(l, sweep_img_s, sp->n_aug, &unused, &unused_v, &tta_s);
        budget_costs(l, k * sweep_img_s, sp->n_aug, &ts[1], &vs[1], &unused);
        ts[0] = ts[1];
        vs[0] = vs[1];
        if (sp->small_img_s > 0)
            budget_costs(l, k * sp->small_img_s, sp->n_aug, &ts[0], &vs[0], &unused);
        sp->epochs = recipe_plan_progressive(left_s - tta_s, ts, vs, sp->max_epochs,
                                             sp->one_cycle, &sp->frac);
    } else {
        sp->epochs = 1;
    }
    sp->fit_limit_s = left_s - tta_s > 1e-3 ? left_s - tta_s : 1e-3;
    sp->tta_s = tta_s;
    /* frac fills the time exactly, give or take rounding */
    int over = plan_cost(sp->epochs, sp->frac, ts, vs) > left_s - tta_s + 1e-3;
    char check[256], speed[160] = "";
    if (sp->one_cycle) {
        snprintf(check, sizeof check, "one 1cycle runs them all, the first epoch on "
                 "%.0f%% of its batches, every later one on as many as the time left allows "
                 "at its measured speed", 100.0 * sp->frac);
        snprintf(speed, sizeof speed, "; a 1cycle cannot add epochs once started and the "
                 "host's speed drifts, so the plan allows for up to %.0f",
                 k * sweep_img_s);
    } else {
        snprintf(check, sizeof check, "at every cycle end the fit checks that the next "
                 "cycle ends within %.1f minutes at its measured speed",
                 sp->fit_limit_s / 60.0);
    }
    char at_small[64] = "";
    if (sp->small_img_s > 0)
        snprintf(at_small, sizeof at_small, " (%.1f at %d pixels)", (ts[0] + vs[0]) / 60.0,
                 sp->small);
    lrn_note(h, "budget", "%.1f of %.1f minutes left after the sweep; it trained %.0f "
             "img/s%s: an epoch with validation takes about %.1f minutes%s and %d "
             "epoch%s fit%s before TTA; %s", left_s / 60.0, sp->budget_s / 60.0, sweep_img_s,
             speed, (ts[1] + vs[1]) / 60.0, at_small, sp->epochs, sp->epochs == 1 ? "" : "s",
             over ? " (at least one runs, past the budget)" : "", check);
}

/* One 1cycle over every planned epoch (the first ones small with progressive resizing),
 * then TTA. */
static int scratch_one_cycle(learner *l, const scratch_plan *sp, const ev_hooks *h,
                             tta_result *out, char *err, size_t errlen)
{
    fit_opts fo;
    memset(&fo, 0, sizeof fo);
    fo.n_lrs = 1;
    fo.lrs[0] = sp->lr;
    fo.n_cycle = 1;
    fo.cycle_len = sp->epochs;
    fo.cycle_mult = 1;
    fo.wd = sp->wd;
    fo.schedule = SCHED_1CYCLE;
    fo.epoch_frac = sp->frac;
    /* The pacing holds TTA's passes back at the validation speed it measures, which
     * follows the host better than the sweep's estimate the plan used. */
    fo.time_limit_s = sp->budget_s > 0 ? sp->fit_limit_s + sp->tta_s : 0.0;
    fo.after_passes = sp->budget_s > 0 ? sp->tta_passes : 0;
    int k = sp->small ? recipe_small_epochs(sp->epochs) : 0;
    char grow[160] = "";
    if (k > 0) {
        fo.resize_epoch = k;
        fo.resize_sz = sp->full;
        learner_resize(l, sp->small, NULL, 0);
        snprintf(grow, sizeof grow, "; progressive resizing: the first %d epoch%s at %d "
                 "pixels, the rest at %d", k, k == 1 ? "" : "s", sp->small, sp->full);
    }
    lrn_note(h, "recipe", "no pretrained body: train from scratch with lr_find, one "
             "1cycle over all %d epochs (lr %.3g/10 up to %.3g and down, momentum against "
             "it, then annealing towards lr/1000), wd %g (%s), and TTA%s", sp->epochs, sp->lr,
             sp->lr, fo.wd, l->opt->cfg.kind == OPTIM_ADAM ? "AdamW" : "SGD with momentum",
             grow);
    int rc = learner_fit(l, &fo, h, err, errlen);
    if (rc) {
        learner_resize(l, sp->full, NULL, 0); /* a fit stopped at the small size */
        return rc;
    }
    return learner_tta(l, sp->n_aug, h, out, err, errlen);
}

/* SGDR with cycle_mult 2 over the most planned epochs that whole cycles fill, then TTA. */
static int scratch_sgdr(learner *l, const scratch_plan *sp, const ev_hooks *h,
                        tta_result *out, char *err, size_t errlen)
{
    int n_cycle, cycle_len;
    recipe_plan_cycles(sp->epochs, &n_cycle, &cycle_len);
    int used = cycle_len * ((1 << n_cycle) - 1);
    lrn_note(h, "recipe", "no pretrained body: train from scratch with lr_find, SGDR "
             "(cycle_len %d, cycle_mult 2, %d cycle%s = %d of the %d epochs allowed: the most "
             "epochs, then the most cycles) and TTA", cycle_len, n_cycle,
             n_cycle == 1 ? "" : "s", used, sp->epochs);
    fit_opts fo;
    sgdr_opts(&fo, sp->wd, 1, &sp->lr, n_cycle, cycle_len);
    fo.time_limit_s = sp->fit_limit_s;
    lrn_note(h, "fit", "SGDR with cycle_len %d, cycle_mult 2, %d cycle%s at lr %.3g, wd %g "
             "(%s); stop at a cycle end when validation loss stops improving", cycle_len,
             n_cycle, n_cycle == 1 ? "" : "s", sp->lr, fo.wd,
             l->opt->cfg.kind == OPTIM_ADAM ? "AdamW" : "SGD with momentum");
    int rc = learner_fit(l, &fo, h, err, errlen);
    if (rc)
        return rc;
    return learner_tta(l, sp->n_aug, h, out, err, errlen);
}

/* Without a pretrained body: lr_find, SGDR with cycle_mult 2 (or one 1cycle), TTA. */
static int recipe_scratch(learner *l, int max_epochs, double budget_s, int n_aug,
                          const recipe_opts *o, const ev_hooks *h, tta_result *out, char *err,
                          size_t errlen)
{
    int one_cycle = o && o->one_cycle;
    scratch_plan sp = {.t0 = clock_mono_s(), .budget_s = budget_s, .max_epochs = max_epochs,
                       .n_aug = n_aug, .one_cycle = one_cycle, .epochs = max_epochs,
                       .full = l->sz, .frac = 1.0, .wd = scratch_wd(l, o)};
    int rc = learner_unfreeze(l);
    if (!rc)
        rc = scratch_sweep(l, &sp, h, err, errlen);
    if (rc)
        return rc;
    sp.small = one_cycle ? scratch_small(l, o) : 0;
    if (sp.small && budget_s > 0 && (rc = scratch_time_small(l, &sp, h, err, errlen)))
        return rc;
    if (budget_s > 0)
        scratch_plan_budget(l, &sp, h);
    if (one_cycle)
        return scratch_one_cycle(l, &sp, h, out, err, errlen);
    return scratch_sgdr(l, &sp, h, out, err, errlen);
}

/* With a pretrained body: the seed's eight steps. Under a budget, steps 1-7 run in full
 * and step 8 gets the time left before TTA as its time limit; TTA's time is estimated from
 * step 4, whose two epochs run the frozen body forward over both splits (the head's
 * backward pass is negligible next to it). */
/* Steps 1-4: the head, from the cache and then with augmentation. *lr gets the head's LR,
 * *step4_s the seconds of step 4. */
static int pretrained_head(learner *l, const ev_hooks *h, double *lr, double *step4_s,
                           char *err, size_t errlen)
{
    lrfind_opts lo = {.start_lr = 1e-5, .end_lr = 10.0};
    lrfind_result r;
    fit_opts fo;
    int rc;
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
    *lr = pick_lr(&r, 0, 1e-2, h, "step 2 (head)");
    lrfind_result_free(&r);
    /* 3. the head from the cache, 2 epochs at a constant LR (fast.ai's learn.fit(lr, 2)). */
    memset(&fo, 0, sizeof fo);
    fo.n_lrs = 1;
    fo.lrs[0] = *lr;
    fo.n_cycle = 2;
    fo.wd = recipe_wd(l);
    fo.schedule = SCHED_CONSTANT;
    lrn_note(h, "recipe", "step 3: train the head from precomputed activations for 2 epochs at "
         "lr %.3g (the seed's 1-2; the cache makes them cheap)", *lr);
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
    double t4 = clock_mono_s();
    if ((rc = learner_fit(l, &fo, h, err, errlen)))
        return rc;
    *step4_s = clock_mono_s() - t4;
    return 0;
}

/* Steps 5-7: unfreeze, differential LRs, and the second sweep at their ratios. lrs gets
 * step 8's LR per layer group. */
static int pretrained_unfreeze(learner *l, int close, double lr, const ev_hooks *h,
                               double *lrs, char *err, size_t errlen)
{
    /* 5. unfreeze. 6. differential LRs. */
    int rc = learner_unfreeze(l);
    if (rc)
        return rc;
    double div_lo = close ? 100.0 : 9.0, div_mid = close ? 10.0 : 3.0;
    lrn_note(h, "recipe", "step 5-6: unfreeze; lrs = [lr/%g, lr/%g, lr] (%s)", div_lo, div_mid,
         close ? "the data is close to ImageNet: 10x steps"
               : "the data differs from ImageNet: 3x steps");
    /* 7. lr_find again with those ratios. */
    lrfind_opts lo = {.start_lr = 1e-5, .end_lr = 10.0};
    lo.n_lrs = l->n_groups;
    for (int g = 0; g < l->n_groups; g++)
        lo.lrs[g] = g == l->n_groups - 1 ? 1.0
                    : g == l->n_groups - 2 ? 1.0 / div_mid : 1.0 / div_lo;
    lrfind_result r;
    rc = learner_lr_find(l, &lo, h, &r, err, errlen);
    if (rc)
        return rc;
    double lr2 = unfrozen_lr(&r, lr, h);
    lrfind_result_free(&r);
    for (int g = 0; g < l->n_groups; g++)
        lrs[g] = lr2 * lo.lrs[g];
    return 0;
}

/* Step 8's time limit under a budget: the time left since t0 less TTA's, which is
 * estimated from step 4 (its two epochs ran the frozen body forward over both splits; the
 * head's backward pass is negligible next to it). */
static void pretrained_budget(const learner *l, fit_opts *fo, double budget_s, double t0,
                              double step4_s, int n_aug, const ev_hooks *h)
{
    double n_seen = 2.0 * (l->info->count[SPLIT_TRAIN] + l->info->count[SPLIT_VALID]);
    double tta_s = step4_s > 0 ? (1 + n_aug) * l->info->count[SPLIT_VALID] * step4_s / n_seen
                               : 0.0;
    double left_s = budget_s - (clock_mono_s() - t0);
    fo->time_limit_s = left_s - tta_s > 1e-3 ? left_s - tta_s : 1e-3;
    lrn_note(h, "budget", "%.1f of %.1f minutes left before step 8; TTA takes about %.1f "
             "(from step 4's speed), so step 8 stops at a cycle end whose next cycle "
             "would end past %.1f minutes (its first cycle always runs)", left_s / 60.0,
             budget_s / 60.0, tta_s / 60.0, fo->time_limit_s / 60.0);
}

static int recipe_pretrained(learner *l, int max_epochs, int close, double budget_s, int n_aug,
                             const ev_hooks *h, tta_result *out, char *err, size_t errlen)
{
    double t0 = clock_mono_s();
    /* SGDR cycles of 1, 2, 4, ... epochs that fit max_epochs. */
    int n_cycle = 0, used = 0;
    while (used + (1 << n_cycle) <= max_epochs && n_cycle < 10)
        used += 1 << n_cycle++;
    if (n_cycle < 1)
        n_cycle = 1;
    double lr, step4_s, lrs8[NET_MAX_GROUPS];
    int rc = pretrained_head(l, h, &lr, &step4_s, err, errlen);
    if (!rc)
        rc = pretrained_unfreeze(l, close, lr, h, lrs8, err, errlen);
    if (rc)
        return rc;
    /* 8. cycle_mult 2 until validation loss stops improving. */
    fit_opts fo;
    sgdr_opts(&fo, recipe_wd(l), l->n_groups, lrs8, n_cycle, 1);
    lrn_note(h, "recipe", "step 8: the whole network, SGDR cycle_len 1, cycle_mult 2, up to %d "
         "cycles (%d epochs), stopping at a cycle end when validation loss stops improving",
         n_cycle, used);
    if (budget_s > 0)
        pretrained_budget(l, &fo, budget_s, t0, step4_s, n_aug, h);
    if ((rc = learner_fit(l, &fo, h, err, errlen)))
        return rc;
    return learner_tta(l, n_aug, h, out, err, errlen);
}

int learner_recipe(learner *l, const recipe_opts *o, const ev_hooks *h, tta_result *out,
                   char *err, size_t errlen)
{
    int max_epochs = o && o->max_epochs > 0 ? o->max_epochs : 7;
    int n_aug = o && o->n_aug > 0 ? o->n_aug : 4;
    int close = o && o->close_to_imagenet;
    double budget_s = o && o->budget_minutes > 0 ? o->budget_minutes * 60.0 : 0.0;
    if (max_epochs > 1000 || n_aug > TTA_MAX_AUG) {
        err_set(err, errlen, "recipe: max_epochs at most 1000, n_aug at most %d", TTA_MAX_AUG);
        return -EINVAL;
    }
    if (o && !(o->budget_minutes >= 0 && o->budget_minutes <= 1e6)) {
        err_set(err, errlen, "budget_minutes: must be between 0 (none) and 1e6");
        return -EINVAL;
    }
    if (o && (o->small_sz < -1 || (o->small_sz > 0 && (o->small_sz < RECIPE_SMALLEST ||
                                                         o->small_sz >= l->sz)))) {
        err_set(err, errlen, "small_sz: %d; -1 (none), 0 (the recipe's) or %d to %d (below "
                "sz)", o->small_sz, RECIPE_SMALLEST, l->sz - 1);
        return -EINVAL;
    }
    if (o && !(o->wd >= 0 && o->wd <= 1)) {
        err_set(err, errlen, "wd: %g; 0 (the recipe's) or up to 1", o->wd);
        return -EINVAL;
    }
    if (!l->pretrained)
        return recipe_scratch(l, max_epochs, budget_s, n_aug, o, h, out, err, errlen);
    return recipe_pretrained(l, max_epochs, close, budget_s, n_aug, h, out, err, errlen);
}
