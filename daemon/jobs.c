/* jobs.c: the job queue, its one worker thread, per-run learners, and the engine-event
 * sink that turns ev_hooks calls into store rows (see jobs.h). */
#define _GNU_SOURCE
#include "jobs.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "data/data.h"
#include "events.h"
#include "learner.h"
#include "log.h"
#include "models/models.h"
#include "weights.h"

/* The file the learner keeps its last epoch checkpoint in, under checkpoint_dir. */
#define LEARNER_LAST_CKPT "last.ckpt.safetensors"
#define MAX_LEARNERS 2   /* learners kept in memory; older ones are saved and dropped */

static const char *const kind_names[JOB_KIND_COUNT] = {
    "lr_find", "fit", "freeze", "unfreeze", "precompute", "resize", "tta", "recipe",
    "predict_test"};

const char *job_kind_name(job_kind k)
{
    return (k >= 0 && k < JOB_KIND_COUNT) ? kind_names[k] : "?";
}

int job_kind_parse(const char *name, job_kind *k)
{
    for (int i = 0; name && i < JOB_KIND_COUNT; i++) {
        if (!strcmp(name, kind_names[i])) {
            *k = (job_kind)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* A run's learner with the dataset it borrows. Touched by the worker only. */
typedef struct run_slot {
    int64_t run_id;
    dataset *ds;
    learner *l;
    uint64_t used;          /* LRU clock */
} run_slot;

/* A learner for synchronous predictions (HTTP threads, under pmu), loaded from the run's
 * saved weights; reloaded when the file changes. */
typedef struct serve_slot {
    int64_t run_id;
    dataset *ds;
    learner *l;
    struct timespec mtime;
} serve_slot;

struct jobs {
    store *st;
    char *data_dir;
    char **roots;
    int n_roots;
    int loader_threads;
    int resume;

    pthread_mutex_t mu;     /* queue, running, stopping, dropped runs */
    pthread_cond_t cv;
    int64_t *q;
    int qn, qcap;
    int64_t running;
    int stopping;
    int started, joined;
    int worker_done;
    pthread_t worker;
    atomic_int cancel;      /* the running job should stop at the next batch */
    int64_t *dropped;       /* runs deleted: the worker frees their learners */
    int n_dropped, cap_dropped;

    run_slot slots[MAX_LEARNERS];
    uint64_t clock;

    pthread_mutex_t pmu;
    serve_slot serve;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void *grow(void *p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return p;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *q = realloc(p, (size_t)nc * elem);
    if (q)
        *cap = nc;
    return q;
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) && errno != EEXIST)
        return -errno;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void run_dir(const jobs *jq, int64_t run_id, char *out, size_t len)
{
    snprintf(out, len, "%s/runs/%lld", jq->data_dir, (long long)run_id);
}

static void run_file(const jobs *jq, int64_t run_id, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/runs/%lld/%s", jq->data_dir, (long long)run_id, name);
}

static double jnum(json_t *o, const char *k, double dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static int jbool(json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* ---- learners from run rows -------------------------------------------------------------- */

static int ds_format_of(const char *s, ds_format *f)
{
    if (!s)
        return -EINVAL;
    if (!strcmp(s, "folders"))
        *f = DS_FOLDERS;
    else if (!strcmp(s, "csv"))
        *f = DS_CSV;
    else if (!strcmp(s, "idx"))
        *f = DS_IDX;
    else
        return -EINVAL;
    return 0;
}

static int open_dataset_row(jobs *jq, int64_t dataset_id, dataset **out, char *err,
                            size_t errlen)
{
    json_t *d = NULL;
    int rc = store_dataset_get(jq->st, dataset_id, &d);
    if (rc) {
        snprintf(err, errlen, "dataset %lld: %s", (long long)dataset_id,
                 rc == -ENOENT ? "no longer exists" : store_errmsg());
        return rc;
    }
    json_t *o = json_object_get(d, "options");
    ds_options opt = {0};
    opt.path = json_string_value(json_object_get(d, "path"));
    opt.valid_pct = jnum(o, "valid_pct", -1);
    opt.csv = json_string_value(json_object_get(o, "csv"));
    opt.seed = (uint64_t)jnum(o, "seed", 42);
    rc = ds_format_of(json_string_value(json_object_get(d, "format")), &opt.format);
    if (rc == 0)
        rc = dataset_open(out, &opt, err, errlen);
    json_decref(d);
    return rc;
}

static tfm_set tfms_of(const char *s)
{
    if (s && !strcmp(s, "side_on"))
        return TFMS_SIDE_ON;
    if (s && !strcmp(s, "top_down"))
        return TFMS_TOP_DOWN;
    return TFMS_NONE;
}

/* Builds a learner for a run from its row with its saved weights and size. for_training:
 * also its freeze point and precompute, and epoch checkpoints (the worker); else for
 * predictions only (serving). */
static int learner_from_run(jobs *jq, int64_t run_id, int for_training, dataset **ds_out,
                            learner **out, char *err, size_t errlen)
{
    json_t *run = NULL, *model = NULL;
    dataset *ds = NULL;
    learner *l = NULL;
    char ckdir[PATH_MAX], cur[PATH_MAX];
    int rc = store_run_get(jq->st, run_id, &run);
    if (rc) {
        snprintf(err, errlen, "run %lld: %s", (long long)run_id,
                 rc == -ENOENT ? "no such run" : store_errmsg());
        return rc;
    }
    json_t *cfg = json_object_get(run, "config");
    rc = open_dataset_row(jq, json_integer_value(json_object_get(run, "dataset")), &ds, err,
                          errlen);
    if (rc)
        goto out_free;

    learner_config lc = {0};
    model_spec_defaults(&lc.model);
    lc.model.arch = json_string_value(json_object_get(run, "arch"));
    lc.model.multi_label = jbool(cfg, "multi_label", dataset_info(ds)->multi_label);
    lc.model.seed = (uint64_t)jnum(cfg, "seed", 0);
    json_t *ps = json_object_get(cfg, "ps");
    if (json_is_number(ps)) {
        lc.model.ps[0] = lc.model.ps[1] = (float)json_number_value(ps);
    } else if (json_is_array(ps) && json_array_size(ps) == 2) {
        lc.model.ps[0] = (float)json_number_value(json_array_get(ps, 0));
        lc.model.ps[1] = (float)json_number_value(json_array_get(ps, 1));
    }
    json_t *xf = json_object_get(cfg, "xtra_fc");
    if (json_is_array(xf)) {
        lc.model.n_xtra_fc = 0;
        for (size_t i = 0; i < json_array_size(xf) && i < MODEL_MAX_XTRA_FC; i++)
            lc.model.xtra_fc[lc.model.n_xtra_fc++] = (int)json_integer_value(
                json_array_get(xf, i));
    }
    lc.sz = (int)jnum(cfg, "sz", 224);
    lc.bs = (int)jnum(cfg, "bs", 64);
    lc.tfms = tfms_of(json_string_value(json_object_get(cfg, "tfms")));
    lc.max_zoom = (float)jnum(cfg, "max_zoom", 1.1);
    lc.precompute = for_training ? jbool(cfg, "precompute", 0) : 0;
    lc.loader_threads = jq->loader_threads;
    lc.seed = lc.model.seed;
    json_t *mid = json_object_get(run, "model");
    if (json_is_integer(mid)) {
        rc = store_model_get(jq->st, json_integer_value(mid), &model);
        if (rc) {
            snprintf(err, errlen, "pretrained model %lld: %s",
                     (long long)json_integer_value(mid), store_errmsg());
            goto out_free;
        }
        lc.pretrained = json_string_value(json_object_get(model, "path"));
        lc.imagenet_stats = 1;
    }
    run_dir(jq, run_id, ckdir, sizeof ckdir);
    rc = mkdir_p(ckdir);
    if (rc) {
        snprintf(err, errlen, "%s: %s", ckdir, strerror(-rc));
        goto out_free;
    }
    strncat(ckdir, "/ckpt", sizeof ckdir - strlen(ckdir) - 1);
    if (for_training && (rc = mkdir_p(ckdir)) != 0) {
        snprintf(err, errlen, "%s: %s", ckdir, strerror(-rc));
        goto out_free;
    }
    lc.checkpoint_dir = for_training ? ckdir : NULL;
    rc = learner_create(&l, &lc, ds, err, errlen);
    if (rc)
        goto out_free;

    run_file(jq, run_id, "current.ckpt", cur, sizeof cur);
    if (access(cur, R_OK) == 0) {
        rc = learner_load(l, cur, err, errlen);
        if (rc)
            goto out_free;
    }
    /* The size, freeze point and precompute the run had when it was saved (predictions
     * need only the size). */
    json_t *s = json_object_get(run, "state");
    int sz = (int)jnum(s, "sz", 0);
    if (sz > 0 && sz != lc.sz)
        rc = learner_resize(l, sz, err, errlen);
    if (rc)
        goto out_free;
    if (for_training) {
        if (rc == 0 && json_is_integer(json_object_get(s, "freeze_to")))
            rc = learner_freeze_to(l, (int)jnum(s, "freeze_to", 0), err, errlen);
        if (rc == 0 && json_is_boolean(json_object_get(s, "precompute")))
            rc = learner_set_precompute(l, jbool(s, "precompute", 0), err, errlen);
        if (rc)
            goto out_free;
    }
    *ds_out = ds;
    *out = l;
    ds = NULL;
    l = NULL;
out_free:
    learner_destroy(l);
    dataset_destroy(ds);
    json_decref(model);
    json_decref(run);
    return rc;
}

static void slot_free(run_slot *s)
{
    learner_destroy(s->l);
    dataset_destroy(s->ds);
    memset(s, 0, sizeof *s);
}

/* The worker's learner for a run, created on first use; the least recently used one is
 * dropped when every slot is taken (its state was saved when its last job ended). */
static learner *slot_get(jobs *jq, int64_t run_id, char *err, size_t errlen)
{
    run_slot *victim = &jq->slots[0];
    for (int i = 0; i < MAX_LEARNERS; i++) {
        run_slot *s = &jq->slots[i];
        if (s->l && s->run_id == run_id) {
            s->used = ++jq->clock;
            return s->l;
        }
        if (!s->l || (victim->l && s->used < victim->used))
            victim = s;
    }
    slot_free(victim);
    if (learner_from_run(jq, run_id, 1, &victim->ds, &victim->l, err, errlen))
        return NULL;
    victim->run_id = run_id;
    victim->used = ++jq->clock;
    return victim->l;
}

static void slot_drop(jobs *jq, int64_t run_id)
{
    for (int i = 0; i < MAX_LEARNERS; i++) {
        if (jq->slots[i].l && jq->slots[i].run_id == run_id)
            slot_free(&jq->slots[i]);
    }
}

static json_t *state_json(learner *l)
{
    learner_state s;
    learner_get_state(l, &s);
    return json_pack("{si si sb si si sb sI si so so}", "freeze_to", s.freeze_to, "n_groups",
                     s.n_groups, "precompute", s.precompute, "sz", s.sz, "bs", s.bs,
                     "augment", s.augment, "step", (json_int_t)s.step, "epochs_done",
                     s.epochs_done, "best_valid_loss",
                     isfinite(s.best_valid_loss) ? json_real(s.best_valid_loss) : json_null(),
                     "best_accuracy",
                     isfinite(s.best_accuracy) ? json_real(s.best_accuracy) : json_null());
}

/* Saves the learner (checkpoint for the next start, weights for GET /weights) and records
 * its state on the run. */
static int save_run(jobs *jq, int64_t run_id, int64_t job_id, learner *l, char *err,
                    size_t errlen)
{
    char cur[PATH_MAX], w[PATH_MAX];
    run_file(jq, run_id, "current.ckpt", cur, sizeof cur);
    run_file(jq, run_id, "weights.safetensors", w, sizeof w);
    int rc = learner_save(l, cur, err, errlen);
    if (rc == 0)
        rc = weights_save_file(learner_net(l), w, err, errlen);
    if (rc == 0) {
        char *prev = NULL;
        if (store_snapshot_latest(jq->st, run_id, "final", &prev) == -ENOENT)
            store_snapshot_add(jq->st, run_id, job_id, "final", -1, -1, cur, NULL);
        free(prev);
    }
    json_t *s = state_json(l);
    if (s) {
        store_run_set_state(jq->st, run_id, s);
        json_decref(s);
    }
    return rc;
}

/* ---- the event sink ------------------------------------------------------------------------ */

typedef struct sink {
    jobs *jq;
    int64_t job_id, run_id, lr_find_id;
    int own_sweeps;            /* sweeps inside another job (the recipe): rows made here */
    int sweep_n, sweep_last_iter;
    double sweep_last_lr;
    int last_cycle;
    int last_epoch;            /* run-wide number of the last epoch recorded, or -1 */
    int engine_progress;       /* the learner reports progress itself */
    int total_epochs;          /* a fit's epochs, for progress when it does not */
    double t0;
} sink;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int stop_requested(sink *k)
{
    return atomic_load(&k->jq->cancel);
}

/* Ends a sweep row this sink opened: the LR and iteration count it reached. */
static void sweep_close(sink *k)
{
    if (!k->own_sweeps || !k->lr_find_id)
        return;
    store_flush(k->jq->st);
    store_lr_find_finish(k->jq->st, k->lr_find_id, NULL, 0, k->sweep_last_lr, k->sweep_n);
    k->lr_find_id = 0;
}

static json_t *ev_suggestion_json(const ev_suggestion *s)
{
    return json_pack("{sf ss}", "lr", s->lr, "reason", s->reason ? s->reason : "");
}

/* A sweep inside another job (the recipe) ended: its row gets the suggestions. A plain
 * lr-find job records its own in do_lr_find. */
static void on_sweep_end(void *ctx, const ev_sweep_end *e)
{
    sink *k = ctx;
    if (!k->own_sweeps || !k->lr_find_id)
        return;
    json_t *sug = json_pack("{so so so so}", "min_div10", ev_suggestion_json(&e->min_div10),
                            "steep", ev_suggestion_json(&e->steep), "valley",
                            ev_suggestion_json(&e->valley), "slide",
                            ev_suggestion_json(&e->slide));
    store_flush(k->jq->st);
    store_lr_find_finish(k->jq->st, k->lr_find_id, sug, e->stopped_early, k->sweep_last_lr,
                         k->sweep_n);
    json_decref(sug);
    k->lr_find_id = 0;
}

static int on_batch(void *ctx, const ev_batch *e)
{
    sink *k = ctx;
    sweep_close(k);
    const char *keys[2 + 4 + 1];
    char lr_names[4][8];
    double vals[2 + 4 + 1];
    int n = 0;
    keys[n] = "train_loss";
    vals[n++] = e->loss;
    keys[n] = "smooth_loss";
    vals[n++] = e->smooth_loss;
    for (int g = 0; g < e->n_groups && g < 4; g++) {
        snprintf(lr_names[g], sizeof lr_names[g], "lr_%d", g);
        keys[n] = lr_names[g];
        vals[n++] = e->lrs[g];
    }
    store_metrics_push(k->jq->st, k->run_id, k->job_id, e->step, n, keys, vals);
    if (!k->engine_progress && k->total_epochs > 0 && e->n_batches > 0) {
        /* Progress from the batch position when the learner does not report it. */
        double total = (double)k->total_epochs * e->n_batches;
        double done = (double)e->epoch * e->n_batches + e->batch + 1;
        double frac = done / total, el = mono_s() - k->t0;
        store_job_progress(k->jq->st, k->job_id, frac > 1 ? 1 : frac,
                           done > 0 && frac < 1 ? el * (total - done) / done : -1);
    }
    return stop_requested(k);
}

static int on_sweep_point(void *ctx, const ev_sweep_point *e)
{
    sink *k = ctx;
    if (k->own_sweeps && (!k->lr_find_id || e->iter <= k->sweep_last_iter)) {
        /* A sweep the recipe runs: one lr_finds row per sweep, from its first point. */
        sweep_close(k);
        if (store_lr_find_create(k->jq->st, k->run_id, k->job_id, e->lr, e->lr, 0,
                                 &k->lr_find_id))
            k->lr_find_id = 0;
        k->sweep_n = 0;
    }
    if (k->lr_find_id)
        store_lr_find_point_push(k->jq->st, k->lr_find_id, k->run_id, k->job_id, e->iter, e->lr,
                                 e->loss, e->smooth_loss);
    k->sweep_last_iter = e->iter;
    k->sweep_last_lr = e->lr;
    k->sweep_n++;
    return stop_requested(k);
}

static int on_epoch(void *ctx, const ev_epoch *e)
{
    sink *k = ctx;
    sweep_close(k);
    store_epoch se = {e->epoch, e->cycle, e->train_loss, e->valid_loss, e->accuracy, e->f2,
                      e->seconds, e->img_per_s};
    int n = -1;
    if (store_epoch_add(k->jq->st, k->run_id, k->job_id, &se, &n))
        log_msg(LOG_ERROR, k->job_id, "cannot record epoch %d: %s", e->epoch, store_errmsg());
    else
        k->last_epoch = n;
    log_msg(LOG_INFO, k->job_id, "epoch %d (cycle %d): train_loss %.4f valid_loss %.4f "
            "accuracy %.4f, %.1f s, %.0f img/s", e->epoch, e->cycle, e->train_loss,
            e->valid_loss, e->accuracy, e->seconds, e->img_per_s);
    return stop_requested(k);
}

static int on_cycle_end(void *ctx, int cycle, int epoch)
{
    sink *k = ctx;
    k->last_cycle = cycle;
    log_msg(LOG_DEBUG, k->job_id, "cycle %d ended at epoch %d", cycle, epoch);
    return stop_requested(k);
}

static void on_note(void *ctx, const char *what, const char *why)
{
    sink *k = ctx;
    store_note_push(k->jq->st, k->run_id, k->job_id, what, why);
    log_msg(LOG_INFO, k->job_id, "%s: %s", what, why ? why : "");
    /* The learner names the snapshot file at the end of its note: "... to <path>". */
    const char *to = NULL;
    for (const char *p = why; what && !strcmp(what, "snapshot") && p && (p = strstr(p, " to /"));
         p++)
        to = p + 4;
    if (to && access(to, R_OK) == 0)
        store_snapshot_add(k->jq->st, k->run_id, k->job_id, "snapshot", k->last_cycle,
                           k->last_epoch, to, NULL);
}

static void on_progress(void *ctx, double fraction, double eta_s)
{
    sink *k = ctx;
    k->engine_progress = 1;
    store_job_progress(k->jq->st, k->job_id, fraction, eta_s);
}

/* ---- running one job ---------------------------------------------------------------------- */

static json_t *tta_json(const tta_result *r)
{
    json_t *pa = json_array();
    for (int i = 0; i < r->n_aug && i < 16; i++)
        json_array_append_new(pa, json_real(r->pass_accuracy[i]));
    return json_pack("{sf sf sf sf si so}", "loss", r->loss, "accuracy", r->accuracy,
                     "tta_loss", r->tta_loss, "tta_accuracy", r->tta_accuracy, "n_aug",
                     r->n_aug, "pass_accuracy", pa);
}

static json_t *suggestion_json(const lr_suggestion *s)
{
    return json_pack("{sf ss}", "lr", s->lr, "reason", s->reason);
}

static int do_lr_find(jobs *jq, sink *k, learner *l, json_t *p, json_t **result, char *err,
                      size_t errlen)
{
    lrfind_opts o = {0};
    o.start_lr = jnum(p, "start_lr", 1e-5);
    o.end_lr = jnum(p, "end_lr", 10);
    o.num_it = (int)jnum(p, "num_it", 0);
    int rc = store_lr_find_create(jq->st, k->run_id, k->job_id, o.start_lr, o.end_lr,
                                  o.num_it, &k->lr_find_id);
    if (rc) {
        snprintf(err, errlen, "cannot record the sweep: %s", store_errmsg());
        return rc;
    }
    ev_hooks h = {.ctx = k, .on_batch = on_batch, .on_sweep_point = on_sweep_point,
                  .on_epoch = on_epoch, .on_cycle_end = on_cycle_end, .on_note = on_note,
                  .on_progress = on_progress, .on_sweep_end = on_sweep_end};
    lrfind_result r = {0};
    rc = learner_lr_find(l, &o, &h, &r, err, errlen);
    store_flush(jq->st);
    if (rc == 0) {
        json_t *sug = json_pack("{so so so so}", "min_div10", suggestion_json(&r.min_div10),
                                "steep", suggestion_json(&r.steep), "valley",
                                suggestion_json(&r.valley), "slide",
                                suggestion_json(&r.slide));
        store_lr_find_finish(jq->st, k->lr_find_id, sug, r.stopped_early,
                             r.n_points > 0 ? r.points[r.n_points - 1].lr : 0, r.n_points);
        *result = json_pack("{sI sO si sb}", "lr_find", (json_int_t)k->lr_find_id,
                            "suggestions", sug, "n_points", r.n_points, "stopped_early",
                            r.stopped_early);
        json_decref(sug);
    }
    lrfind_result_free(&r);
    return rc;
}

static int fit_opts_of(json_t *p, fit_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    json_t *lrs = json_object_get(p, "lrs");
    if (json_is_number(lrs)) {
        o->n_lrs = 1;
        o->lrs[0] = json_number_value(lrs);
    } else if (json_is_array(lrs) && json_array_size(lrs) >= 1 &&
               json_array_size(lrs) <= LEARNER_MAX_GROUPS) {
        o->n_lrs = (int)json_array_size(lrs);
        for (int i = 0; i < o->n_lrs; i++)
            o->lrs[i] = json_number_value(json_array_get(lrs, (size_t)i));
    } else {
        snprintf(err, errlen, "lrs: a number or 1..%d numbers", LEARNER_MAX_GROUPS);
        return -EINVAL;
    }
    o->n_cycle = (int)jnum(p, "n_cycle", 1);
    o->cycle_len = (int)jnum(p, "cycle_len", 1);
    o->cycle_mult = (int)jnum(p, "cycle_mult", 1);
    o->wd = jnum(p, "wd", 0);
    const char *sched = json_string_value(json_object_get(p, "schedule"));
    o->schedule = !sched || !strcmp(sched, "sgdr") ? SCHED_SGDR
                  : !strcmp(sched, "constant")     ? SCHED_CONSTANT
                                                   : SCHED_1CYCLE;
    o->snapshots = jbool(p, "snapshots", 0);
    o->early_stop_patience = (int)jnum(json_object_get(p, "early_stop"), "patience", 0);
    return 0;
}

static int run_kind(jobs *jq, sink *k, job_kind kind, learner *l, json_t *p, int resume,
                    json_t **result, char *err, size_t errlen)
{
    ev_hooks h = {.ctx = k, .on_batch = on_batch, .on_sweep_point = on_sweep_point,
                  .on_epoch = on_epoch, .on_cycle_end = on_cycle_end, .on_note = on_note,
                  .on_progress = on_progress, .on_sweep_end = on_sweep_end};
    int rc;
    switch (kind) {
    case JOB_LR_FIND:
        return do_lr_find(jq, k, l, p, result, err, errlen);
    case JOB_FIT: {
        fit_opts o;
        rc = fit_opts_of(p, &o, err, errlen);
        if (rc)
            return rc;
        /* A fresh fit must not find an earlier fit's epoch checkpoint; a resumed one whose
         * interruption came before its first epoch ended has none and starts over from the
         * weights saved at the interruption. */
        char ck[PATH_MAX];
        run_file(jq, k->run_id, "ckpt/" LEARNER_LAST_CKPT, ck, sizeof ck);
        if (!resume) {
            unlink(ck);
        } else if (access(ck, R_OK) != 0) {
            resume = 0;
            on_note(k, "resume", "the interrupted fit had finished no epoch: it starts over "
                    "from the weights saved when it stopped");
        }
        o.resume = resume;
        for (int c = 0, len = o.cycle_len; c < o.n_cycle; c++, len *= o.cycle_mult)
            k->total_epochs += len;
        return learner_fit(l, &o, &h, err, errlen);
    }
    case JOB_FREEZE:
        return learner_freeze_to(l, (int)jnum(p, "to", 0), err, errlen);
    case JOB_UNFREEZE:
        return learner_unfreeze(l);
    case JOB_PRECOMPUTE:
        return learner_set_precompute(l, jbool(p, "on", 1), err, errlen);
    case JOB_RESIZE:
        return learner_resize(l, (int)jnum(p, "sz", 0), err, errlen);
    case JOB_TTA: {
        tta_result r = {0};
        rc = learner_tta(l, (int)jnum(p, "n_aug", 4), &h, &r, err, errlen);
        if (rc == 0)
            *result = tta_json(&r);
        return rc;
    }
    case JOB_RECIPE: {
        k->own_sweeps = 1;
        recipe_opts o = {(int)jnum(p, "max_epochs", 0), jbool(p, "close_to_imagenet", 0),
                         (int)jnum(p, "n_aug", 0)};
        tta_result r = {0};
        rc = learner_recipe(l, &o, &h, &r, err, errlen);
        if (rc == 0)
            *result = tta_json(&r);
        return rc;
    }
    case JOB_PREDICT_TEST: {
        char csv[PATH_MAX];
        snprintf(csv, sizeof csv, "%s/runs/%lld/predictions-%lld.csv", jq->data_dir,
                 (long long)k->run_id, (long long)k->job_id);
        rc = learner_predict_test(l, jbool(p, "tta", 0), csv, &h, err, errlen);
        if (rc == 0) {
            int rows = -1; /* the header line is not a row */
            FILE *f = fopen(csv, "r");
            for (int c; f && (c = fgetc(f)) != EOF;)
                rows += c == '\n';
            if (f)
                fclose(f);
            store_prediction_add(jq->st, k->run_id, k->job_id, csv, rows < 0 ? 0 : rows);
            *result = json_pack("{si}", "rows", rows < 0 ? 0 : rows);
        }
        return rc;
    }
    default:
        snprintf(err, errlen, "unknown job kind");
        return -EINVAL;
    }
}

static int changes_weights(job_kind k)
{
    return k == JOB_FIT || k == JOB_RECIPE || k == JOB_FREEZE || k == JOB_UNFREEZE ||
           k == JOB_PRECOMPUTE || k == JOB_RESIZE;
}

static void run_job(jobs *jq, int64_t job_id)
{
    store_job_row row;
    char err[512] = "";
    json_t *result = NULL;
    job_kind kind;
    if (store_job_row_get(jq->st, job_id, &row)) {
        log_msg(LOG_ERROR, job_id, "cannot read the job: %s", store_errmsg());
        return;
    }
    if (strcmp(row.state, "queued") != 0) /* cancelled while it waited */
        goto out_clear;
    if (store_job_start(jq->st, job_id)) {
        log_msg(LOG_ERROR, job_id, "cannot start: %s", store_errmsg());
        goto out_clear;
    }
    log_msg(LOG_INFO, job_id, "started %s on run %lld", row.kind, (long long)row.run_id);
    int rc = job_kind_parse(row.kind, &kind);
    learner *l = NULL;
    if (rc == 0) {
        l = slot_get(jq, row.run_id, err, sizeof err);
        if (!l)
            rc = -EINVAL;
    }
    sink k = {.jq = jq, .job_id = job_id, .run_id = row.run_id, .last_epoch = -1,
              .t0 = mono_s()};
    if (rc == 0)
        rc = run_kind(jq, &k, kind, l, row.params, row.resumed_from != 0, &result, err,
                      sizeof err);
    sweep_close(&k);
    store_flush(jq->st);

    int shutting = 0;
    pthread_mutex_lock(&jq->mu);
    shutting = jq->stopping;
    pthread_mutex_unlock(&jq->mu);
    const char *final;
    if (rc == 0) {
        final = "succeeded";
    } else if (rc == -ECANCELED) {
        final = shutting ? "interrupted" : "cancelled";
        snprintf(err, sizeof err, "%s", shutting ? "the daemon stopped during this job"
                                                 : "cancelled at a batch boundary");
    } else {
        final = "failed";
        if (!err[0])
            snprintf(err, sizeof err, "%s", strerror(rc < 0 ? -rc : rc));
    }
    /* A failed job may have left diverged weights: the saved ones stay. A cancelled or
     * interrupted fit keeps what it trained up to the batch boundary. */
    if (l && (rc == 0 ? changes_weights(kind)
                      : (rc == -ECANCELED && (kind == JOB_FIT || kind == JOB_RECIPE)))) {
        char serr[256] = "";
        if (save_run(jq, row.run_id, job_id, l, serr, sizeof serr))
            log_msg(LOG_ERROR, job_id, "cannot save run %lld: %s", (long long)row.run_id,
                    serr);
    }
    if (rc == -ECANCELED && (kind == JOB_FIT || kind == JOB_RECIPE)) {
        /* The learner's last epoch checkpoint: where a resumed fit continues from. */
        char ck[PATH_MAX];
        run_file(jq, row.run_id, "ckpt/" LEARNER_LAST_CKPT, ck, sizeof ck);
        if (access(ck, R_OK) == 0)
            store_snapshot_add(jq->st, row.run_id, job_id, "checkpoint", k.last_cycle,
                               k.last_epoch, ck, NULL);
    }
    if (store_job_finish(jq->st, job_id, final, rc ? err : NULL, result))
        log_msg(LOG_ERROR, job_id, "cannot record the end (%s): %s", final, store_errmsg());
    log_msg(rc && strcmp(final, "failed") == 0 ? LOG_WARN : LOG_INFO, job_id, "%s%s%s", final,
            rc ? ": " : "", rc ? err : "");
    json_decref(result);
out_clear:
    store_job_row_clear(&row);
}

/* Training runs 5 nice levels below the HTTP threads so a request waits less for a core
 * (Linux: the nice value is per thread, and the OpenMP pool and loader threads this thread
 * starts inherit it). Relative to the current value, so a daemon started under nice still
 * drops below its HTTP threads. Failure only costs latency. */
static void worker_lower_priority(void)
{
    id_t tid = (id_t)syscall(SYS_gettid);
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, tid);
    if (errno != 0 || setpriority(PRIO_PROCESS, tid, cur + 5 > 19 ? 19 : cur + 5) != 0)
        log_msg(LOG_WARN, 0, "cannot lower the worker thread's priority: %s", strerror(errno));
}

static void *worker_main(void *arg)
{
    jobs *jq = arg;
    worker_lower_priority();
    pthread_mutex_lock(&jq->mu);
    for (;;) {
        while (!jq->stopping && jq->qn == 0 && jq->n_dropped == 0)
            pthread_cond_wait(&jq->cv, &jq->mu);
        while (jq->n_dropped > 0) {
            int64_t run = jq->dropped[--jq->n_dropped];
            pthread_mutex_unlock(&jq->mu);
            slot_drop(jq, run);
            pthread_mutex_lock(&jq->mu);
        }
        if (jq->stopping)
            break;
        if (jq->qn == 0)
            continue;
        int64_t id = jq->q[0];
        memmove(jq->q, jq->q + 1, (size_t)(jq->qn - 1) * sizeof *jq->q);
        jq->qn--;
        jq->running = id;
        atomic_store(&jq->cancel, 0);
        pthread_mutex_unlock(&jq->mu);
        run_job(jq, id);
        pthread_mutex_lock(&jq->mu);
        jq->running = 0;
        pthread_cond_broadcast(&jq->cv);
    }
    jq->worker_done = 1;
    pthread_cond_broadcast(&jq->cv);
    pthread_mutex_unlock(&jq->mu);
    return NULL;
}

/* ---- the public side ---------------------------------------------------------------------- */

int jobs_create(jobs **out, store *st, const jobs_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    jobs *jq = calloc(1, sizeof *jq);
    if (!jq)
        goto out_nomem;
    jq->st = st;
    jq->data_dir = strdup(cfg->data_dir ? cfg->data_dir : ".");
    jq->loader_threads = cfg->loader_threads;
    jq->resume = cfg->resume;
    if (cfg->n_roots > 0) {
        jq->roots = calloc((size_t)cfg->n_roots, sizeof *jq->roots);
        if (!jq->roots)
            goto out_nomem;
        for (int i = 0; i < cfg->n_roots; i++) {
            /* Resolved now so that a root given through a link still matches. */
            char *r = realpath(cfg->roots[i], NULL);
            jq->roots[jq->n_roots] = r ? r : strdup(cfg->roots[i]);
            if (!jq->roots[jq->n_roots])
                goto out_nomem;
            jq->n_roots++;
        }
    }
    if (!jq->data_dir)
        goto out_nomem;
    pthread_mutex_init(&jq->mu, NULL);
    pthread_cond_init(&jq->cv, NULL);
    pthread_mutex_init(&jq->pmu, NULL);
    char runs[PATH_MAX];
    snprintf(runs, sizeof runs, "%s/runs", jq->data_dir);
    int rc = mkdir_p(runs);
    if (rc) {
        snprintf(err, errlen, "%s: %s", runs, strerror(-rc));
        jobs_destroy(jq);
        return rc;
    }
    /* Absolute, so that stored paths stay valid whatever the working directory. */
    char *abs = realpath(jq->data_dir, NULL);
    if (abs) {
        free(jq->data_dir);
        jq->data_dir = abs;
    }
    *out = jq;
    return 0;
out_nomem:
    snprintf(err, errlen, "out of memory");
    if (jq) {
        free(jq->data_dir);
        for (int i = 0; i < jq->n_roots; i++)
            free(jq->roots[i]);
        free(jq->roots);
        free(jq);
    }
    return -ENOMEM;
}

/* Appends to the in-memory queue (mu held). */
static int enqueue_locked(jobs *jq, int64_t id)
{
    int64_t *nq = grow(jq->q, &jq->qcap, jq->qn + 1, sizeof *nq);
    if (!nq)
        return -ENOMEM;
    jq->q = nq;
    jq->q[jq->qn++] = id;
    pthread_cond_broadcast(&jq->cv);
    return 0;
}

static int resume_locked(jobs *jq, int64_t job_id, int64_t *new_id);

int jobs_start(jobs *jq, char *err, size_t errlen)
{
    int n = 0;
    json_t *was_running = NULL;
    store_page all = {.limit = STORE_PAGE_MAX};
    if (store_job_list(jq->st, 0, "running", &all, &was_running))
        was_running = NULL;
    int rc = store_jobs_interrupt_running(jq->st, &n);
    /* A fit killed mid-way left its last epoch checkpoint: record it, as a stop would. */
    json_t *items = json_object_get(was_running, "items");
    for (size_t i = 0; rc == 0 && i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        const char *kind = json_string_value(json_object_get(it, "kind"));
        int64_t run = json_integer_value(json_object_get(it, "run"));
        char ck[PATH_MAX];
        run_file(jq, run, "ckpt/" LEARNER_LAST_CKPT, ck, sizeof ck);
        if (kind && (!strcmp(kind, "fit") || !strcmp(kind, "recipe")) && access(ck, R_OK) == 0)
            store_snapshot_add(jq->st, run, json_integer_value(json_object_get(it, "id")),
                               "checkpoint", -1, -1, ck, NULL);
    }
    json_decref(was_running);
    if (rc) {
        snprintf(err, errlen, "cannot mark interrupted jobs: %s", store_errmsg());
        return rc;
    }
    if (n)
        log_msg(LOG_WARN, 0, "%d job(s) were running when the daemon last stopped: marked "
                "interrupted", n);
    int64_t *ids = NULL;
    rc = store_jobs_queued(jq->st, &ids, &n);
    if (rc) {
        snprintf(err, errlen, "cannot list queued jobs: %s", store_errmsg());
        return rc;
    }
    pthread_mutex_lock(&jq->mu);
    /* Resumed jobs go first: they continue work that was already under way. */
    if (jq->resume) {
        int64_t *rs = NULL;
        int nr = 0;
        if (store_jobs_resumable(jq->st, &rs, &nr) == 0) {
            for (int i = 0; i < nr; i++) {
                int64_t nid;
                if (resume_locked(jq, rs[i], &nid) == 0)
                    log_msg(LOG_INFO, nid, "resumes interrupted job %lld", (long long)rs[i]);
            }
            free(rs);
        }
    }
    for (int i = 0; i < n && rc == 0; i++)
        rc = enqueue_locked(jq, ids[i]);
    free(ids);
    if (rc == 0 && pthread_create(&jq->worker, NULL, worker_main, jq) != 0)
        rc = -EAGAIN;
    if (rc == 0)
        jq->started = 1;
    pthread_mutex_unlock(&jq->mu);
    if (rc)
        snprintf(err, errlen, "cannot start the worker");
    return rc;
}

int jobs_submit(jobs *jq, int64_t run_id, job_kind kind, json_t *params, int64_t *job_id)
{
    if (kind < 0 || kind >= JOB_KIND_COUNT)
        return -EINVAL;
    pthread_mutex_lock(&jq->mu);
    int rc = jq->stopping ? -ESHUTDOWN : 0;
    if (rc == 0)
        rc = store_job_create(jq->st, run_id, job_kind_name(kind), params, 0, job_id);
    if (rc == 0) {
        rc = enqueue_locked(jq, *job_id);
        if (rc) /* committed but not queued in memory: it runs after the next start */
            log_msg(LOG_ERROR, *job_id, "out of memory queueing the job");
        rc = 0;
        log_msg(LOG_INFO, *job_id, "queued %s on run %lld", job_kind_name(kind),
                (long long)run_id);
    }
    pthread_mutex_unlock(&jq->mu);
    return rc;
}

int jobs_cancel(jobs *jq, int64_t job_id)
{
    pthread_mutex_lock(&jq->mu);
    int rc = 0;
    if (jq->running == job_id) {
        atomic_store(&jq->cancel, 1);
        log_msg(LOG_INFO, job_id, "cancel requested: stops at the next batch");
    } else {
        rc = store_job_finish(jq->st, job_id, "cancelled", "cancelled before it started",
                              NULL);
        if (rc == 0) {
            for (int i = 0; i < jq->qn; i++) {
                if (jq->q[i] == job_id) {
                    memmove(jq->q + i, jq->q + i + 1, (size_t)(jq->qn - i - 1) * sizeof *jq->q);
                    jq->qn--;
                    break;
                }
            }
            log_msg(LOG_INFO, job_id, "cancelled while queued");
        }
    }
    pthread_mutex_unlock(&jq->mu);
    return rc;
}

static int resume_locked(jobs *jq, int64_t job_id, int64_t *new_id)
{
    store_job_row row;
    int rc = store_job_row_get(jq->st, job_id, &row);
    if (rc)
        return rc;
    if (strcmp(row.state, "interrupted") != 0 || !strcmp(row.kind, "recipe")) {
        store_job_row_clear(&row);
        return -EINVAL;
    }
    rc = store_job_create(jq->st, row.run_id, row.kind, row.params, job_id, new_id);
    if (rc == 0)
        rc = enqueue_locked(jq, *new_id);
    store_job_row_clear(&row);
    return rc;
}

int jobs_resume(jobs *jq, int64_t job_id, int64_t *new_job_id)
{
    pthread_mutex_lock(&jq->mu);
    int rc = jq->stopping ? -ESHUTDOWN : resume_locked(jq, job_id, new_job_id);
    pthread_mutex_unlock(&jq->mu);
    return rc;
}

int jobs_delete_run(jobs *jq, int64_t run_id)
{
    pthread_mutex_lock(&jq->mu);
    int rc = store_run_delete(jq->st, run_id);
    if (rc == 0) {
        int64_t *nd = grow(jq->dropped, &jq->cap_dropped, jq->n_dropped + 1, sizeof *nd);
        if (nd) {
            jq->dropped = nd;
            jq->dropped[jq->n_dropped++] = run_id;
            pthread_cond_broadcast(&jq->cv);
        }
    }
    pthread_mutex_unlock(&jq->mu);
    if (rc == 0) {
        pthread_mutex_lock(&jq->pmu);
        if (jq->serve.l && jq->serve.run_id == run_id) {
            learner_destroy(jq->serve.l);
            dataset_destroy(jq->serve.ds);
            memset(&jq->serve, 0, sizeof jq->serve);
        }
        pthread_mutex_unlock(&jq->pmu);
        char dir[PATH_MAX];
        run_dir(jq, run_id, dir, sizeof dir);
        /* Without a worker, nothing else can hold the learner: free it here. */
        if (!jq->started)
            slot_drop(jq, run_id);
        rm_tree(dir);
        log_msg(LOG_INFO, 0, "deleted run %lld", (long long)run_id);
    }
    return rc;
}

/* ---- datasets ---------------------------------------------------------------------------- */

static int under(const char *path, const char *root)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    return !strncmp(path, root, n) && (path[n] == '/' || path[n] == 0);
}

static json_t *info_json(const ds_info *in)
{
    json_t *classes = json_array(), *unr = json_array();
    for (int i = 0; i < in->n_classes; i++)
        json_array_append_new(classes, json_string(in->classes[i]));
    for (int i = 0; i < in->n_unreadable && i < 100; i++)
        json_array_append_new(unr, json_pack("{ss ss}", "file", in->unreadable[i].file,
                                             "reason", in->unreadable[i].reason));
    return json_pack("{so si sb s{si si si} si s{s[ii] s[ii] s[ii]} s[fff] s[fff] si so}",
                     "classes", classes, "n_classes", in->n_classes, "multi_label",
                     in->multi_label, "counts", "train", in->count[SPLIT_TRAIN], "valid",
                     in->count[SPLIT_VALID], "test", in->count[SPLIT_TEST], "channels",
                     in->channels, "image_size", "min", in->min_w, in->min_h, "median",
                     in->median_w, in->median_h, "max", in->max_w, in->max_h, "mean",
                     in->mean[0], in->mean[1], in->mean[2], "std", in->std[0], in->std[1],
                     in->std[2], "n_unreadable", in->n_unreadable, "unreadable", unr);
}

int jobs_register_dataset(jobs *jq, const char *name, const char *path, const char *format,
                          double valid_pct, const char *csv, uint64_t seed, int uploaded,
                          int64_t *id, char *err, size_t errlen)
{
    ds_options o = {0};
    if (!name || !*name) {
        snprintf(err, errlen, "name: required");
        return -EINVAL;
    }
    if (ds_format_of(format, &o.format)) {
        snprintf(err, errlen, "format: '%s' is not folders, csv or idx",
                 format ? format : "");
        return -EINVAL;
    }
    char *real = path ? realpath(path, NULL) : NULL;
    if (!real) {
        snprintf(err, errlen, "path: %s: %s", path ? path : "(none)", strerror(errno));
        return -EINVAL;
    }
    int ok = 0;
    if (uploaded) {
        char *dd = realpath(jq->data_dir, NULL);
        ok = dd && under(real, dd);
        free(dd);
    } else {
        for (int i = 0; i < jq->n_roots && !ok; i++)
            ok = under(real, jq->roots[i]);
    }
    if (!ok) {
        snprintf(err, errlen, "path: %s is not under a --dataset-root", path);
        free(real);
        return -EACCES;
    }
    o.path = real;
    o.valid_pct = valid_pct;
    o.csv = csv;
    o.seed = seed;
    dataset *ds = NULL;
    int rc = dataset_open(&ds, &o, err, errlen);
    if (rc) {
        free(real);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    json_t *info = info_json(dataset_info(ds));
    json_t *opts = json_pack("{sI}", "seed", (json_int_t)seed);
    if (valid_pct >= 0)
        json_object_set_new(opts, "valid_pct", json_real(valid_pct));
    if (csv)
        json_object_set_new(opts, "csv", json_string(csv));
    store_dataset_new d = {name, real, format, opts, info, uploaded};
    rc = store_dataset_create(jq->st, &d, id);
    if (rc == -EEXIST)
        snprintf(err, errlen, "name: a dataset named '%s' exists", name);
    else if (rc)
        snprintf(err, errlen, "cannot store the dataset: %s", store_errmsg());
    else
        log_msg(LOG_INFO, 0, "registered dataset %lld '%s' (%s, %d classes)", (long long)*id,
                name, format, dataset_info(ds)->n_classes);
    json_decref(info);
    json_decref(opts);
    dataset_destroy(ds);
    free(real);
    return rc;
}

/* ---- prediction, weights, status ----------------------------------------------------------- */

int jobs_predict_image(jobs *jq, int64_t run_id, const void *buf, size_t len, int tta,
                       json_t **out, char *err, size_t errlen)
{
    char cur[PATH_MAX];
    struct stat sb;
    run_file(jq, run_id, "current.ckpt", cur, sizeof cur);
    json_t *run = NULL;
    int rc = store_run_get(jq->st, run_id, &run);
    json_decref(run);
    if (rc) {
        snprintf(err, errlen, "run %lld: no such run", (long long)run_id);
        return rc;
    }
    if (stat(cur, &sb)) {
        snprintf(err, errlen, "run %lld has no trained weights yet", (long long)run_id);
        return -EAGAIN;
    }
    image im = {0};
    rc = image_decode_mem(&im, buf, len, 0, err, errlen);
    if (rc) /* whatever the decoder's code, the client sent a bad image */
        return rc == -ENOMEM ? rc : -EINVAL;
    pthread_mutex_lock(&jq->pmu);
    serve_slot *s = &jq->serve;
    if (!s->l || s->run_id != run_id || s->mtime.tv_sec != sb.st_mtim.tv_sec ||
        s->mtime.tv_nsec != sb.st_mtim.tv_nsec) {
        learner_destroy(s->l);
        dataset_destroy(s->ds);
        memset(s, 0, sizeof *s);
        rc = learner_from_run(jq, run_id, 0, &s->ds, &s->l, err, errlen);
        if (rc == 0) {
            s->run_id = run_id;
            s->mtime = sb.st_mtim;
        }
    }
    if (rc == 0) {
        const ds_info *in = dataset_info(s->ds);
        float *probs = calloc((size_t)in->n_classes, sizeof *probs);
        rc = probs ? learner_predict_image(s->l, &im, tta, probs, err, errlen) : -ENOMEM;
        if (rc == 0) {
            json_t *cl = json_array(), *pr = json_array();
            int best = 0;
            for (int i = 0; i < in->n_classes; i++) {
                json_array_append_new(cl, json_string(in->classes[i]));
                json_array_append_new(pr, json_real(probs[i]));
                if (probs[i] > probs[best])
                    best = i;
            }
            *out = json_pack("{so so s{ss sf} sb}", "classes", cl, "probs", pr, "top",
                             "class", in->classes[best], "prob", probs[best], "tta", tta);
            if (!*out)
                rc = -ENOMEM;
        }
        free(probs);
    }
    pthread_mutex_unlock(&jq->pmu);
    image_free(&im);
    return rc;
}

int jobs_weights_path(jobs *jq, int64_t run_id, char **path)
{
    char w[PATH_MAX];
    run_file(jq, run_id, "weights.safetensors", w, sizeof w);
    if (access(w, R_OK))
        return -ENOENT;
    *path = strdup(w);
    return *path ? 0 : -ENOMEM;
}

int jobs_queue_length(jobs *jq)
{
    pthread_mutex_lock(&jq->mu);
    int n = jq->qn;
    pthread_mutex_unlock(&jq->mu);
    return n;
}

int64_t jobs_running(jobs *jq)
{
    pthread_mutex_lock(&jq->mu);
    int64_t r = jq->running;
    pthread_mutex_unlock(&jq->mu);
    return r;
}

int jobs_stop(jobs *jq, double timeout_s)
{
    pthread_mutex_lock(&jq->mu);
    if (!jq->stopping)
        log_msg(LOG_INFO, jq->running, "stopping: no new jobs; the running one stops at the "
                "next batch");
    jq->stopping = 1;
    atomic_store(&jq->cancel, 1);
    pthread_cond_broadcast(&jq->cv);
    int rc = 0;
    if (jq->started && !jq->joined) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += (time_t)timeout_s;
        dl.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        while (!jq->worker_done && rc == 0)
            rc = pthread_cond_timedwait(&jq->cv, &jq->mu, &dl) == ETIMEDOUT ? -ETIMEDOUT : 0;
        if (jq->worker_done) {
            pthread_mutex_unlock(&jq->mu);
            pthread_join(jq->worker, NULL);
            pthread_mutex_lock(&jq->mu);
            jq->joined = 1;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&jq->mu);
    store_flush(jq->st);
    return rc;
}

void jobs_destroy(jobs *jq)
{
    if (!jq)
        return;
    if (jobs_stop(jq, 8) != 0) {
        /* The worker is stuck inside the engine: leave its memory to the exiting process
         * rather than free what it still uses. */
        log_msg(LOG_ERROR, 0, "the worker did not stop in time");
        return;
    }
    for (int i = 0; i < MAX_LEARNERS; i++)
        slot_free(&jq->slots[i]);
    learner_destroy(jq->serve.l);
    dataset_destroy(jq->serve.ds);
    pthread_mutex_destroy(&jq->mu);
    pthread_mutex_destroy(&jq->pmu);
    pthread_cond_destroy(&jq->cv);
    free(jq->q);
    free(jq->dropped);
    for (int i = 0; i < jq->n_roots; i++)
        free(jq->roots[i]);
    free(jq->roots);
    free(jq->data_dir);
    free(jq);
}
