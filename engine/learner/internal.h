/* internal.h: the learner struct, its private types, and the helpers shared by the files of
 * engine/learner/ (prefixed lrn_: they are global symbols of the engine library). */
#ifndef SGDRD_LEARNER_INTERNAL_H
#define SGDRD_LEARNER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "learner.h"
#include "optim.h"
#include "clock_mono.h"
#include "errmsg.h"

#define CKPT_VERSION 4
#define LOADER_CACHE_BYTES ((size_t)256 << 20)

/* The precompute cache of one split: pooled body activations by item index. */
typedef struct pc_split {
    int n;          /* items */
    float *x;       /* (n, dim) */
    int32_t *y;     /* (n) labels (single-label) */
    float *t;       /* (n, n_classes) targets (multi-label) */
} pc_split;

/* A saved copy of everything an LR sweep or early stop may have to put back. */
typedef struct net_copy {
    float *params, *buffers, *opt_state;
    int64_t *opt_steps;
    uint64_t rng;
} net_copy;

/* Where a fit is, for checkpoints and resume. */
typedef struct fit_pos {
    int active;            /* a fit has started and not finished */
    int next_epoch;        /* the first epoch of the fit not yet done */
    int64_t epoch_base;    /* loader epoch id of the fit's epoch 0 */
    int64_t step_base;     /* learner step at the fit's start */
    sched_plan plan;
    int n_lrs;
    double lrs[NET_MAX_GROUPS];
    double wd;
    int snapshots, patience;
    loss_smoother smooth;
    int n_snapshots;
    /* early stop: what the next epochs compare with, and which weights to go back to */
    int stop_cycle;        /* stop_at_worse_cycle */
    float best_loss;       /* best validation loss so far (patience) */
    int since_best;        /* epochs since it */
    float prev_cycle_loss; /* validation loss at the last cycle end (stop_cycle) */
    float prev_cycle_acc;  /* and its accuracy */
    int64_t best_step;     /* learner step of the kept weights; 0: none */
    int resize_epoch, resize_sz;
} fit_pos;

struct learner {
    learner_config cfg;
    char *pretrained, *ckpt_dir;
    dataset *ds;
    const ds_info *info;
    net *net;
    optim *opt;
    int n_groups, head_group;
    int c_in, sz, bs;
    float mean[3], std[3];
    loader *train_dl;      /* shuffled, augmentation per state */
    loader *valid_dl;      /* in order; augmented only for TTA passes */
    loader *plain_dl;      /* the training split in order without augmentation (precompute) */
    int64_t epoch_id;      /* loader epoch ids handed out so far (data order, augmentation) */
    int64_t step;
    int epochs_done;
    float best_valid_loss, best_accuracy;
    uint64_t weights_version; /* bumped whenever the body's weights change */

    /* precompute */
    int precompute;
    int pool_node, pc_dim;
    int pc_valid;          /* the cache matches weights_version and pc_sz */
    int pc_sz;
    uint64_t pc_version;
    pc_split pc_train, pc_valid_split;
    float *pc_xbuf, *pc_tbuf;
    int32_t *pc_ybuf, *pc_perm;

    /* snapshots (in memory; also files when there is a checkpoint folder) */
    int n_snapshots;
    float **snapshots;     /* params then buffers */

    fit_pos fit;
};

typedef struct batch_src {
    learner *l;
    int cached;
    loader *dl;
    const pc_split *cs;
    int pos, n_batches, batch_i;
    int shuffle, drop_last;
} batch_src;

typedef struct batch_view {
    int n;
    const float *x;
    const int32_t *y;
    const float *t;
    const int32_t *index; /* NULL for cached batches */
} batch_view;

typedef struct metric_acc {
    double loss_sum;
    int64_t n, correct;
    double cell_correct; /* multi-label: (prob > 0.5) == target, over samples x classes */
    double f2_sum;       /* multi-label: per-sample F2 at 0.2 */
} metric_acc;

/* core.c */
/* Whether this process writes the learner's files: rank 0 of a world (every process of a
 * world of one). */
int lrn_writes_files(const learner *l);
/* Rank 0's value of v on every rank (v in a world of one): what a decision that rests on
 * measured time uses, so that every rank takes it the same way. A collective: every rank
 * calls it at the same point. */
double lrn_agree(const learner *l, double v);
void lrn_note(const ev_hooks *h, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void lrn_progress(const ev_hooks *h, double frac, double t0);
void lrn_net_copy_free(net_copy *c);
int lrn_net_copy_save(net_copy *c, const learner *l);
void lrn_net_copy_restore(const net_copy *c, learner *l);
int lrn_src_begin(batch_src *s, learner *l, ds_split split, int augment, int cached);
int lrn_src_next(batch_src *s, batch_view *v);
/* Fills err with why the loader failed (rc, from lrn_src_begin or lrn_src_next) for `what`
 * ("fit", "lr_find"), naming the last unreadable file when a shard had nothing readable.
 * Returns rc. */
int lrn_loader_failed(learner *l, const char *what, int rc, char *err, size_t errlen);
void lrn_acc_add_probs(metric_acc *a, const float *probs, const int32_t *y, const float *t,
                   int n, int nc, int multi);
void lrn_acc_result(const metric_acc *a, int multi, float *loss, float *accuracy, float *f2);
void lrn_logits_to_probs(float *p, const float *z, int n, int nc, int multi);
double lrn_probs_loss(const float *p, const int32_t *y, const float *t, int n, int nc,
                  int multi);
/* The mean loss of the batch just forwarded, as validation and TTA report it: the plain
 * cross-entropy even when training smooths the labels, so that runs with and without
 * smoothing compare. Writes m->probs as net_loss does. */
float lrn_eval_loss(net *m, const int32_t *y, const float *t);
int lrn_validate(learner *l, float *loss, float *accuracy, float *f2);
void lrn_tfm_fill(const learner *l, tfm_config *t, int augment);
int lrn_make_loader(learner *l, loader **out, ds_split split, int shuffle, int drop_last,
                int augment, char *err, size_t errlen);
float lrn_train_step(learner *l, int cached, const batch_view *v, const double *lrs,
                 int *rc);
int lrn_check_lrs(const learner *l, int n_lrs, const double *lrs, const char *field,
              char *err, size_t errlen);
void lrn_expand_lrs(double *dst, int n_groups, int n_lrs, const double *lrs, double f);

/* tta_plans.c: what the plans do, in words, for notes. */
void lrn_tta_describe(const learner *l, const tfm_plan *plans, int n, char *buf, size_t cap);

/* precompute.c */
int lrn_pc_setup(learner *l, char *err, size_t errlen);
void lrn_pc_drop(learner *l);
int lrn_pc_ensure(learner *l, const ev_hooks *h, char *err, size_t errlen);
/* The batches of a training epoch as a fit or sweep runs it: from the cache while
 * precompute is on (building it first when it is stale), else from the loader. */
int lrn_train_batches(learner *l, const ev_hooks *h, int64_t *bpe, char *err, size_t errlen);

/* checkpoint.c */
int lrn_ckpt_path(const learner *l, char *buf, size_t cap, const char *name);
int lrn_snapshot_take(learner *l, int cycle, const ev_hooks *h, char *err, size_t errlen);
/* The weights an early stop goes back to, as best_<step>.safetensors in the checkpoint
 * folder (parameters, buffers, optimizer state, dropout stream), written atomically. */
int lrn_best_save(const learner *l, const net_copy *c, int64_t step, char *err,
                  size_t errlen);
/* Reads best_<step>.safetensors into *c (allocated; free with lrn_net_copy_free). A file
 * of another shape is -EINVAL with err naming it. */
int lrn_best_load(const learner *l, net_copy *c, int64_t step, char *err, size_t errlen);
void lrn_best_remove(const learner *l, int64_t step);

#endif
