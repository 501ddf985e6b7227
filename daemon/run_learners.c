/* run_learners.c: the worker's learners built from run rows (model, dataset, saved state),
 * the least-recently-used slots that keep them, saving a run after a job, and the
 * synchronous predictions and weights the HTTP threads ask for. */
#define _GNU_SOURCE
#include "jobs_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "json_text.h"
#include "learner_memory.h"
#include "log.h"
#include "models/models.h"
#include "run_config.h"
#include "weights.h"

/* ---- learners from run rows -------------------------------------------------------------- */

int jq_ds_format_of(const char *s, ds_format *f)
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

/* Opens a run's dataset from its row. path, when not NULL, receives its folder (PATH_MAX
 * bytes) and st what stat said of it just before it was opened. */
static int open_dataset_row(jobs *jq, int64_t dataset_id, dataset **out, char *path,
                            struct stat *st, char *err, size_t errlen)
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
    opt.valid_pct = jq_num(o, "valid_pct", -1);
    opt.csv = json_string_value(json_object_get(o, "csv"));
    opt.seed = (uint64_t)jq_num(o, "seed", 42);
    rc = jq_ds_format_of(json_string_value(json_object_get(d, "format")), &opt.format);
    if (rc == 0 && path) {
        snprintf(path, PATH_MAX, "%s", opt.path ? opt.path : "");
        if (stat(path, st) != 0)
            memset(st, 0, sizeof *st);
    }
    if (rc == 0)
        rc = dataset_open(out, &opt, err, errlen);
    if (rc && rc != -ENOMEM) {
        /* Its folder moved, vanished or changed since it was registered: the run stands,
         * but nothing can use it until the folder is back; say which one. */
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "dataset \"%s\" cannot be opened from %s: %s",
                 json_string_value(json_object_get(d, "name")), opt.path ? opt.path : "?",
                 why);
        rc = -ESTALE;
    }
    json_decref(d);
    return rc;
}

/* Builds a learner for a run from its row with its saved weights and size. for_training:
 * also its freeze point and precompute, and epoch checkpoints (the worker); else for
 * predictions only (serving). */
/* The learner's configuration from the run's config (runcfg_learner, the mapping the
 * ranks of a data-parallel job use too) with the run's arch. */
static void config_of_run(const jobs *jq, json_t *run, const dataset *ds, int for_training,
                          learner_config *lc)
{
    runcfg_learner(json_object_get(run, "config"), dataset_info(ds)->multi_label, lc);
    lc->model.arch = json_string_value(json_object_get(run, "arch"));
    if (!for_training)
        lc->precompute = 0;
    lc->loader_threads = jq->loader_threads;
}

/* The run's pretrained model, when it has one: *model gets its row (the caller frees it;
 * lc->pretrained points into it). */
static int pretrained_of_run(jobs *jq, json_t *run, json_t **model, learner_config *lc,
                             char *err, size_t errlen)
{
    json_t *mid = json_object_get(run, "model");
    if (!json_is_integer(mid))
        return 0;
    int rc = store_model_get(jq->st, json_integer_value(mid), model);
    if (rc) {
        snprintf(err, errlen, "pretrained model %lld: %s", (long long)json_integer_value(mid),
                 store_errmsg());
        return rc;
    }
    lc->pretrained = json_string_value(json_object_get(*model, "path"));
    lc->imagenet_stats = 1;
    return 0;
}

/* Creates the run's folder and, for training, its ckpt/ folder, whose path goes to ckdir. */
static int checkpoint_dir_of(jobs *jq, int64_t run_id, int for_training, char *ckdir,
                             size_t len, char *err, size_t errlen)
{
    jq_run_dir(jq, run_id, ckdir, len);
    int rc = fs_mkdir_p(ckdir);
    if (rc) {
        snprintf(err, errlen, "%s: %s", ckdir, strerror(-rc));
        return rc;
    }
    strncat(ckdir, "/ckpt", len - strlen(ckdir) - 1);
    if (for_training && (rc = fs_mkdir_p(ckdir)) != 0)
        snprintf(err, errlen, "%s: %s", ckdir, strerror(-rc));
    return rc;
}

/* The weights, size, freeze point and precompute the run had when it was saved
 * (predictions need only the weights and the size). */
static int restore_run_state(jobs *jq, int64_t run_id, json_t *run, learner *l, int cfg_sz,
                             int for_training, char *err, size_t errlen)
{
    char cur[PATH_MAX];
    int rc = 0;
    jq_run_file(jq, run_id, "current.ckpt", cur, sizeof cur);
    if (access(cur, R_OK) == 0) {
        rc = learner_load(l, cur, err, errlen);
        if (rc)
            return rc;
    }
    json_t *s = json_object_get(run, "state");
    int sz = (int)jq_num(s, "sz", 0);
    if (sz > 0 && sz != cfg_sz)
        rc = learner_resize(l, sz, err, errlen);
    if (rc || !for_training)
        return rc;
    if (json_is_integer(json_object_get(s, "freeze_to")))
        rc = learner_freeze_to(l, (int)jq_num(s, "freeze_to", 0), err, errlen);
    if (rc == 0 && json_is_boolean(json_object_get(s, "precompute")))
        rc = learner_set_precompute(l, jq_bool(s, "precompute", 0), err, errlen);
    return rc;
}

double jobs_memory_available(jobs *jq, const char **source)
{
    return lmem_available((double)jq->memory_limit, source);
}

/* A training learner is admitted again when it is built: memory may have gone to others
 * since its run was created. -ENOMEM with err saying what it needs and what fits. The run
 * admitted and its estimate go to s, for the jobs that add to it (job_memory.c). */
static int admit_learner(jobs *jq, const learner_config *lc, const dataset *ds, run_slot *s,
                         char *err, size_t errlen)
{
    const char *source, *field;
    char why[768];
    lmem_run *r = &s->mem;
    double avail = jobs_memory_available(jq, &source);
    lmem_run_of(r, lc, dataset_info(ds));
    snprintf(s->mem_arch, sizeof s->mem_arch, "%s", r->model.arch ? r->model.arch : "");
    r->model.arch = s->mem_arch; /* lc's is gone with the run's row */
    int rc = lmem_admit(r, avail, source, &field, why, sizeof why);
    if (rc)
        snprintf(err, errlen, "%s%s", rc == -ENOMEM ? "not enough memory: " : "", why);
    else if (lmem_estimate(r, &s->mem_parts, why, sizeof why) != 0)
        memset(&s->mem_parts, 0, sizeof s->mem_parts); /* not known: no job checks */
    return rc;
}

static int learner_from_run(jobs *jq, int64_t run_id, int for_training, dataset **ds_out,
                            learner **out, char *ds_path, struct stat *ds_st, run_slot *adm,
                            char *err, size_t errlen)
{
    json_t *run = NULL, *model = NULL;
    dataset *ds = NULL;
    learner *l = NULL;
    learner_config lc;
    char ckdir[PATH_MAX];
    int rc = store_run_get(jq->st, run_id, &run);
    if (rc) {
        snprintf(err, errlen, "run %lld: %s", (long long)run_id,
                 rc == -ENOENT ? "no such run" : store_errmsg());
        return rc;
    }
    rc = open_dataset_row(jq, json_integer_value(json_object_get(run, "dataset")), &ds,
                          ds_path, ds_st, err, errlen);
    if (rc)
        goto out_free;
    config_of_run(jq, run, ds, for_training, &lc);
    rc = pretrained_of_run(jq, run, &model, &lc, err, errlen);
    if (rc == 0)
        rc = checkpoint_dir_of(jq, run_id, for_training, ckdir, sizeof ckdir, err, errlen);
    if (rc)
        goto out_free;
    lc.checkpoint_dir = for_training ? ckdir : NULL;
    rc = for_training ? admit_learner(jq, &lc, ds, adm, err, errlen) : 0;
    if (rc == 0)
        rc = learner_create(&l, &lc, ds, err, errlen);
    if (rc == 0)
        rc = restore_run_state(jq, run_id, run, l, lc.sz, for_training, err, errlen);
    if (rc)
        goto out_free;
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

void jq_slot_free(run_slot *s)
{
    learner_destroy(s->l);
    dataset_destroy(s->ds);
    memset(s, 0, sizeof *s);
}

/* Whether the dataset's folder is still the one the slot opened. Its loaders read the
 * images from disk, so a folder deleted, replaced or changed at its top since then would
 * otherwise give jobs empty batches; reopening it either sees the change or fails saying
 * why. Changes deeper down only make some images unreadable (listed as such). */
static int slot_folder_same(const run_slot *s)
{
    struct stat st;
    return stat(s->ds_path, &st) == 0 && st.st_dev == s->ds_st.st_dev &&
           st.st_ino == s->ds_st.st_ino && st.st_mtim.tv_sec == s->ds_st.st_mtim.tv_sec &&
           st.st_mtim.tv_nsec == s->ds_st.st_mtim.tv_nsec;
}

/* The worker's learner for a run, created on first use; the least recently used one is
 * dropped when every slot is taken (its state was saved when its last job ended). */
learner *jq_slot_get(jobs *jq, int64_t run_id, char *err, size_t errlen)
{
    run_slot *victim = &jq->slots[0];
    for (int i = 0; i < MAX_LEARNERS; i++) {
        run_slot *s = &jq->slots[i];
        if (s->l && s->run_id == run_id && !slot_folder_same(s)) {
            jq_slot_free(s);
        } else if (s->l && s->run_id == run_id) {
            s->used = ++jq->clock;
            return s->l;
        }
        if (!s->l || (victim->l && s->used < victim->used))
            victim = s;
    }
    jq_slot_free(victim);
    if (learner_from_run(jq, run_id, 1, &victim->ds, &victim->l, victim->ds_path,
                         &victim->ds_st, victim, err, errlen))
        return NULL;
    victim->run_id = run_id;
    victim->used = ++jq->clock;
    return victim->l;
}

void jq_slot_drop(jobs *jq, int64_t run_id)
{
    for (int i = 0; i < MAX_LEARNERS; i++) {
        if (jq->slots[i].l && jq->slots[i].run_id == run_id)
            jq_slot_free(&jq->slots[i]);
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
int jq_save_run(jobs *jq, int64_t run_id, int64_t job_id, learner *l, char *err,
                    size_t errlen)
{
    char cur[PATH_MAX], w[PATH_MAX];
    jq_run_file(jq, run_id, "current.ckpt", cur, sizeof cur);
    jq_run_file(jq, run_id, "weights.safetensors", w, sizeof w);
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

/* ---- prediction, weights, status ----------------------------------------------------------- */

/* Makes jq->serve the learner of run_id with the weights of the checkpoint last modified
 * at *mtime (zero: a run not trained yet); pmu held. */
static int serve_load(jobs *jq, int64_t run_id, const struct timespec *mtime, char *err,
                      size_t errlen)
{
    serve_slot *s = &jq->serve;
    if (s->l && s->run_id == run_id && s->mtime.tv_sec == mtime->tv_sec &&
        s->mtime.tv_nsec == mtime->tv_nsec)
        return 0;
    learner_destroy(s->l);
    dataset_destroy(s->ds);
    memset(s, 0, sizeof *s);
    int rc = learner_from_run(jq, run_id, 0, &s->ds, &s->l, NULL, NULL, NULL, err, errlen);
    if (rc == 0) {
        s->run_id = run_id;
        s->mtime = *mtime;
    }
    return rc;
}

int jobs_run_png(jobs *jq, int64_t run_id, const api_png_req *q, uint8_t **png, size_t *len,
                 char *err, size_t errlen)
{
    char cur[PATH_MAX];
    struct stat sb;
    struct timespec none = {0};
    json_t *run = NULL;
    int rc = store_run_get(jq->st, run_id, &run);
    json_decref(run);
    if (rc) {
        snprintf(err, errlen, "run %lld: no such run", (long long)run_id);
        return rc;
    }
    jq_run_file(jq, run_id, "current.ckpt", cur, sizeof cur);
    pthread_mutex_lock(&jq->pmu);
    rc = serve_load(jq, run_id, stat(cur, &sb) == 0 ? &sb.st_mtim : &none, err, errlen);
    if (rc == 0 && q->augment)
        rc = learner_augment_png(jq->serve.l, q->item, q->n, q->seed, png, len, err, errlen);
    else if (rc == 0)
        rc = learner_item_png(jq->serve.l, SPLIT_VALID, q->item, q->max_side, png, len, err,
                              errlen);
    pthread_mutex_unlock(&jq->pmu);
    return rc;
}

int jobs_predict_image(jobs *jq, int64_t run_id, const void *buf, size_t len, int tta,
                       json_t **out, char *err, size_t errlen)
{
    char cur[PATH_MAX];
    struct stat sb;
    jq_run_file(jq, run_id, "current.ckpt", cur, sizeof cur);
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
    /* Decoded under pmu like the prediction itself: an upload may hold up to the decoder's
     * 64-Mpx limit (some 360 MB while it decodes), and however many clients post at once
     * only one such image is in memory. */
    image im = {0};
    pthread_mutex_lock(&jq->pmu);
    rc = image_decode_mem(&im, buf, len, 0, err, errlen);
    if (rc) { /* whatever the decoder's code, the client sent a bad image */
        pthread_mutex_unlock(&jq->pmu);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    serve_slot *s = &jq->serve;
    rc = serve_load(jq, run_id, &sb.st_mtim, err, errlen);
    if (rc == 0) {
        const ds_info *in = dataset_info(s->ds);
        float *probs = calloc((size_t)in->n_classes, sizeof *probs);
        rc = probs ? learner_predict_image(s->l, &im, tta, probs, err, errlen) : -ENOMEM;
        if (rc == 0) {
            json_t *cl = json_array(), *pr = json_array();
            int best = 0;
            for (int i = 0; i < in->n_classes; i++) {
                json_array_append_new(cl, json_text(in->classes[i]));
                json_array_append_new(pr, json_real(probs[i]));
                if (probs[i] > probs[best])
                    best = i;
            }
            *out = json_pack("{so so s{so sf} sb}", "classes", cl, "probs", pr, "top",
                             "class", json_text(in->classes[best]), "prob", probs[best],
                             "tta", tta);
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
    jq_run_file(jq, run_id, "weights.safetensors", w, sizeof w);
    if (access(w, R_OK))
        return -ENOENT;
    *path = strdup(w);
    return *path ? 0 : -ENOMEM;
}
