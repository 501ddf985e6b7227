/* learner.h: a model + dataset + settings, and the recipe's operations on them (LR sweep,
 * SGDR fit, freeze/unfreeze, precompute, resize, TTA, prediction, snapshots, checkpoints).
 *
 * Every long operation runs on the caller's thread, reports through ev_hooks (events.h),
 * stops at the next batch boundary when a hook returns nonzero (returning -ECANCELED),
 * and leaves the learner consistent whatever happens. Errors: negative code plus a
 * one-line reason in err.
 *
 * A learner is not thread-safe: one call at a time (the daemon serialises a run's jobs
 * and its synchronous predictions).
 */
#ifndef SGDRD_LEARNER_H
#define SGDRD_LEARNER_H

#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "dist.h"
#include "events.h"
#include "lrfind.h"
#include "models/models.h"
#include "safetensors.h"
#include "net.h"
#include "lrsched.h"
#include "optim.h"

/* The API's name for the layer groups a learner can have (one definition: net.h). */
#define LEARNER_MAX_GROUPS NET_MAX_GROUPS
/* Augmented passes learner_tta (and the recipe's TTA) take at most, besides the centre
 * crop; the API validates against it. */
#define TTA_MAX_AUG 15

typedef struct learner_config {
    model_spec model;          /* n_classes and c_in are taken from the dataset */
    int sz, bs;
    tfm_set tfms;
    float max_zoom;
    int pad;                   /* AddPadding (fast.ai's pad), pixels at sz, 0 to sz / 2; the
                                * smaller sizes of progressive resizing pad by the same share */
    int precompute;            /* start with the precompute cache on (needs a frozen body) */
    const char *pretrained;    /* safetensors of the body (torchvision names), or NULL */
    int imagenet_stats;        /* normalise with ImageNet statistics (pretrained body) */
    const char *checkpoint_dir;/* where epoch checkpoints and snapshots go, or NULL */
    int loader_threads;
    uint64_t seed;
    optim_kind opt;            /* OPTIM_SGD (0): momentum 0.9 with L2 weight decay, fast.ai
                                * 0.7's default. OPTIM_ADAM: AdamW, betas 0.9 and 0.99 with
                                * decoupled weight decay, the later fast.ai's default; its wd
                                * is a fraction of the weights per unit of LR (0.01 is
                                * typical, against SGD's 1e-4) */
    precision precision;       /* of the convolutions and linear layers (ops/precision.h);
                                * PRECISION_FP32 (0) or PRECISION_BF16, which needs a CPU
                                * with native bf16 (learner_create refuses it elsewhere) */
    bf16_kernels bf16_kernels; /* what runs bf16 (ops/precision.h): BF16_KERNELS_AUTO (0)
                                * takes the process's bf16_kernels_choice(); a run passes
                                * the kernels its config recorded, so it keeps them */
    struct dist *dist;         /* data parallelism (dist.h): not owned, outlives the
                                * learner; NULL is a world of one. Every rank creates its
                                * learner with the same config and makes the same calls:
                                * batches are sharded (bs stays the global batch), SyncBN,
                                * gradients and metrics are summed, and only rank 0 writes
                                * checkpoints, snapshots and prediction files */
} learner_config;

typedef struct learner learner;

/* The dataset is borrowed and must outlive the learner. */
int learner_create(learner **out, const learner_config *cfg, dataset *ds, char *err,
                   size_t errlen);
void learner_destroy(learner *l);
net *learner_net(learner *l);

/* Whether f can be a pretrained body of arch, as learner_create will judge it: conv1.weight
 * takes 1 or 3 channels and the body's tensors are all there with their shapes
 * (weights_load_st's WEIGHTS_BODY rules). For refusing a file when it is imported rather
 * than when a run first uses it; f may be a header alone (st_parse_header), as nothing is
 * copied. 0 or -EINVAL (or -ENOMEM) with err saying why. */
int learner_check_pretrained(const char *arch, const st_file *f, char *err, size_t errlen);

/* ---- state changes (cheap, synchronous) ------------------------------------------------- */

int learner_freeze_to(learner *l, int group, char *err, size_t errlen);
int learner_unfreeze(learner *l);                /* freeze_to(0), precompute off */
int learner_set_precompute(learner *l, int on, char *err, size_t errlen);
int learner_resize(learner *l, int sz, char *err, size_t errlen);

typedef struct learner_state {
    int freeze_to, n_groups, precompute, sz, bs;
    int augment;               /* 0 while precompute is on */
    int64_t step;              /* iterations trained so far */
    int epochs_done;
    float best_valid_loss, best_accuracy;
} learner_state;
void learner_get_state(const learner *l, learner_state *st);

/* ---- LR sweep ------------------------------------------------------------------------- */

typedef struct lrfind_opts {
    double start_lr, end_lr;   /* defaults 1e-5, 10 */
    int num_it;                /* 0: one epoch of batches capped at 200, at least 20 */
    int n_lrs;                 /* 0: one LR for every group; else one per group (ratios) */
    double lrs[LEARNER_MAX_GROUPS];
    double wd;
} lrfind_opts;

/* The result (points and suggestions, lrfind_result) is declared in lrfind.h.
 * Weights, BatchNorm statistics and optimizer state are restored afterwards, also on
 * cancellation and failure. */
int learner_lr_find(learner *l, const lrfind_opts *o, const ev_hooks *h, lrfind_result *out,
                    char *err, size_t errlen);

/* ---- fit ------------------------------------------------------------------------------- */

typedef struct fit_opts {
    int n_lrs;                 /* 1 (every group) or one per layer group */
    double lrs[LEARNER_MAX_GROUPS];
    int n_cycle, cycle_len, cycle_mult;
    double wd;
    sched_kind schedule;
    int snapshots;             /* save weights at the end of every cycle */
    int early_stop_patience;   /* 0: off */
    int stop_at_worse_cycle;   /* the recipe's "until validation loss stops improving": stop
                                * at a cycle end that is worse than the previous one (see
                                * learner_cycle_worse) and go back to that one's weights */
    double time_limit_s;       /* 0: none. Else the fit aims to end within this many seconds
                                * after this call started (the recipe's budget). SGDR and
                                * constant: stop at a cycle end when the next cycle, at the
                                * mean epoch time so far, would end past it; the weights of
                                * that cycle end are kept. 1cycle, which cannot stop early
                                * without losing its annealing: every epoch after this call's
                                * first trains on as many of its batches (at least 5%, at
                                * most all) as let the epochs left end within the limit at
                                * the last epoch's speed, scaled by pixels for a size not yet
                                * run; an epoch keeps its slice of the schedule, so batch b
                                * of n runs at the planned step b * P / n of the epoch's P
                                * (epoch_frac's batches). A "time_limit" note gives each new
                                * count */
    int after_passes;          /* a paced 1cycle's time_limit_s also holds this many passes
                                * over the validation set at the fit's last size after it
                                * (the recipe's TTA): the pacing keeps them back at the
                                * last validation's measured speed, as the host drifts. 0:
                                * none */
    int resume;                /* continue from this learner's last epoch checkpoint */
    double epoch_frac;         /* 0 or 1: whole epochs. In (0, 1): every epoch trains on this
                                * share of its shuffled batches (rounded up, at least one),
                                * then validates; the schedule spans those batches. How the
                                * recipe fits one 1cycle to a budget between whole epochs */
    int resize_epoch;          /* 0: off. Progressive resizing inside one schedule: from this
                                * epoch of the fit on, images are resize_sz pixels for training
                                * and validation (learner_resize); the learner keeps that size */
    int resize_sz;
} fit_opts;

/* With a checkpoint folder, the weights an early stop (patience or stop_at_worse_cycle)
 * would go back to are kept as a file beside the epoch checkpoint, so that a resumed fit
 * stops where, and with the weights, the uninterrupted one would have. */
int learner_fit(learner *l, const fit_opts *o, const ev_hooks *h, char *err, size_t errlen);

/* stop_at_worse_cycle's rule: a cycle end is worse than the previous one when its validation
 * loss is not below the previous one's and its accuracy not above it (a NaN counts as
 * worse). Accuracy guards the loss on small data: with a few batches an epoch BatchNorm's
 * running statistics are unsettled, and validation loss can jump tenfold between cycle ends
 * while accuracy climbs. */
int learner_cycle_worse(float loss, float accuracy, float prev_loss, float prev_accuracy);

/* ---- evaluation and prediction ------------------------------------------------------------ */

typedef struct tta_result {
    float loss, accuracy;          /* centre crop only */
    float tta_loss, tta_accuracy;  /* averaged probabilities of centre + n_run passes */
    int n_aug;                     /* passes asked for */
    float pass_accuracy[16];       /* per augmented pass; a pass not run (see n_run) holds
                                    * the centre crop's */
    int n_run;                     /* augmented passes run: at most the distinct passes
                                    * learner_tta_plans offers */
    int tta_worse;                 /* 1 when the averaged prediction's accuracy is below
                                    * the centre crop's (a note says so too) */
} tta_result;

/* The augmented passes TTA takes for l at its current size, besides the centre crop: up to
 * max fixed plans, each a view training drew (its flips, and crops shifted within the room
 * its random zoom, padding and crop had, at half its zoom or halfway into its padding),
 * none repeating another or the centre crop. Returns how many (0 when training drew
 * nothing but the centre crop). */
int learner_tta_plans(const learner *l, tfm_plan *plans, int max);

int learner_tta(learner *l, int n_aug, const ev_hooks *h, tta_result *out, char *err,
                size_t errlen);
/* probs: n_classes floats. */
int learner_predict_image(learner *l, const image *im, int tta, float *probs, char *err,
                          size_t errlen);
/* Writes "file,<class>..." rows for the dataset's test split to csv_path. */
int learner_predict_test(learner *l, int tta, const char *csv_path, const ev_hooks *h,
                         char *err, size_t errlen);

/* Snapshots taken by the last fit with `snapshots` on. */
int learner_n_snapshots(const learner *l);
/* Validation loss and accuracy of the mean probabilities of the snapshots (centre crop);
 * the current weights are kept. -ENOENT without snapshots. */
int learner_snapshot_ensemble(learner *l, float *loss, float *accuracy, char *err,
                              size_t errlen);

/* ---- interpretation --------------------------------------------------------------------- */

/* Multi-label: a class is predicted when its probability is above this, the threshold of
 * the F2 every epoch reports (fast.ai's planet metric). */
#define INTERP_ML_THRESHOLD 0.2f
/* Tiles an augmentation preview may ask for. */
#define LEARNER_AUG_PREVIEW_MAX 32

typedef struct interp_item {
    int index;          /* item of the validation split */
    int actual;         /* true class; -1 multi-label */
    int predicted;      /* arg max (lowest class on ties); -1 multi-label */
    float p_predicted;  /* probability of the predicted class (single-label) */
    float p_actual;     /* probability given to the true class (single-label) */
    float loss;         /* as validation computes it: cross-entropy, or the mean binary
                         * cross-entropy over classes (multi-label) */
} interp_item;

typedef struct interp_class {
    int64_t support;    /* items of the class (multi-label: items with it among targets) */
    int64_t predicted;  /* items predicted to be of it */
    int64_t tp;         /* both */
    float precision, recall;
    float accuracy;     /* one against the rest: (tp + tn) / n */
    float f2;           /* F-beta with beta 2 of precision and recall */
} interp_class;

typedef struct interp_pair {
    int actual, predicted;
    int64_t count;
} interp_pair;

typedef struct interp_result {
    int n;                  /* items judged (unreadable ones are left out) */
    int n_classes, multi_label;
    float threshold;        /* multi-label: INTERP_ML_THRESHOLD; else 0 */
    float loss, accuracy;   /* mean loss; accuracy single-label only */
    int64_t *confusion;     /* (n_classes, n_classes): rows actual, columns predicted;
                             * NULL multi-label */
    interp_class *classes;  /* (n_classes) */
    interp_pair *pairs;     /* the nonzero off-diagonal cells, most first; none multi-label */
    int n_pairs;
    interp_item *items;     /* (n) highest loss first, equal losses in item order */
} interp_result;

/* The interpretation of given probabilities: probs (n, nc) by item; y (n) labels
 * (single-label) or t (n, nc) targets (multi-label); seen (n) marks the items to judge
 * (NULL: all). Owns what it fills (interp_result_free, also safe on a zeroed result).
 * 0, -EINVAL (a label out of range, missing truth) or -ENOMEM. */
int interp_compute(interp_result *out, const float *probs, const int32_t *y, const float *t,
                   const uint8_t *seen, int n, int nc, int multi, float threshold);
void interp_result_free(interp_result *r);

/* The dataset's description (class names and counts) as the learner sees it. */
const ds_info *learner_info(const learner *l);
/* The interpretation of the current weights on the validation split, centre crop (the
 * pass validation runs). -ENOENT without validation images. */
int learner_interpret(learner *l, interp_result *out, char *err, size_t errlen);
/* Item i of a split as a PNG, scaled down so that its longer side is at most max_side (0:
 * as stored); *png malloc'd. -ERANGE when i is not an item of the split; decoding errors
 * as dataset_item_image. IDX items are rendered from their decoded pixels. */
int learner_item_png(learner *l, ds_split split, int i, int max_side, uint8_t **png,
                     size_t *len, char *err, size_t errlen);
/* n (1..LEARNER_AUG_PREVIEW_MAX) draws of the run's training transforms (size, tfms,
 * max_zoom) on training item `item`, as one PNG strip of n tiles of sz x sz side by side,
 * left to right; the same seed gives the same strip. -ERANGE for an item or n out of
 * range. */
int learner_augment_png(learner *l, int item, int n, uint64_t seed, uint8_t **png,
                        size_t *len, char *err, size_t errlen);

/* ---- the recipe ----------------------------------------------------------------------- */

typedef struct recipe_opts {
    int max_epochs;            /* budget of the final cycle_mult=2 phase; 0: 7 */
    int close_to_imagenet;     /* lrs /100, /10 instead of /9, /3 */
    int n_aug;                 /* TTA passes; 0: 4 */
    double budget_minutes;     /* 0: none. Else the whole recipe, TTA included, aims to
                                * finish within this many minutes. From scratch it plans its
                                * epochs from the training speed its LR sweep measures; with
                                * a pretrained body steps 1-7 run in full. Either way the
                                * final fit gets the time left before TTA as its
                                * fit_opts.time_limit_s: SGDR stops at a cycle end whose next
                                * cycle would end past it (its first cycle always runs) */
    int one_cycle;             /* from scratch only: the fit is one 1cycle over every epoch
                                * planned instead of SGDR with cycle_mult 2 (with a budget the
                                * plan fills the time with part epochs, recipe_plan_budget,
                                * and the fit paces every epoch after the first to the time
                                * left). With a pretrained body the seed's steps keep SGDR */
    int small_sz;              /* from scratch with one_cycle: the progressive resizing's
                                * first size; 0: recipe_small_size(sz), -1: none (every epoch
                                * at sz), else 12 to sz - 1 */
    double wd;                 /* from scratch: the fit's weight decay; 0: the recipe's own
                                * (L2 1e-4 for SGD, decoupled 0.01 for AdamW), else up to 1 */
} recipe_opts;

/* The recipe's SGDR plan for at most `epochs` epochs with cycle_mult 2: n_cycle cycles of
 * cycle_len, cycle_len * (2^n_cycle - 1) epochs, the most epochs that fit and among
 * those the most cycles (3 -> 1+2, 4 -> one of 4, 6 -> 2+4, 7 -> 1+2+4, 8 -> one of 8). */
void recipe_plan_cycles(int epochs, int *n_cycle, int *cycle_len);

/* The fit a budget allows: avail_s seconds (TTA already taken off), an epoch's training
 * taking train_s and its validation valid_s. Whole epochs (*frac 1): as many as fit, at
 * least one, at most max_epochs. With part_epochs, what is left between whole epochs is
 * spent too: the fewest epochs that hold the allowance (at most max_epochs), each training
 * on the share *frac of its batches (fit_opts.epoch_frac; at least 0.05) and validating in
 * full. Returns the epochs (max_epochs when the times are 0: nothing measured). */
int recipe_plan_budget(double avail_s, double train_s, double valid_s, int max_epochs,
                       int part_epochs, double *frac);

/* Progressive resizing in the from-scratch 1cycle (fast.ai's DAWNBench runs trained on
 * small images first, at 128 of 224 pixels): the first recipe_small_epochs(e) of e
 * epochs, half rounded up and at least one fewer than e, train at recipe_small_size(sz),
 * 4/7 of the size (28 -> 16; 0 below 12: no resizing), the rest at sz. A small epoch
 * costs a fraction of a full one, and this split was chosen over larger small sizes and
 * other splits by validation accuracy at the same cost (bench_recipe --one-cycle measures
 * it; see bench/README.md). */
int recipe_small_size(int sz);
int recipe_small_epochs(int epochs);
/* recipe_plan_budget for such a fit: a small epoch trains in train_s[0] and validates in
 * valid_s[0], an epoch at full size in train_s[1] and valid_s[1]. */
int recipe_plan_progressive(double avail_s, const double train_s[2], const double valid_s[2],
                            int max_epochs, int part_epochs, double *frac);

int learner_recipe(learner *l, const recipe_opts *o, const ev_hooks *h, tta_result *out,
                   char *err, size_t errlen);

/* ---- checkpoints ------------------------------------------------------------------------ */

/* Weights + optimizer state + schedule position, written atomically (tmp, fsync, rename). */
int learner_save(learner *l, const char *path, char *err, size_t errlen);
int learner_load(learner *l, const char *path, char *err, size_t errlen);

#endif
