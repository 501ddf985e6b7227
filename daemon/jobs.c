/* jobs.c: the job queue, its one worker thread and the running of one job (see jobs.h);
 * learners come from run_learners.c, store rows from the event sink in sink.c. */
#define _GNU_SOURCE
#include "jobs_internal.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
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

#include "log.h"
#include "models/models.h"
#include "weights.h"

/* ---- small helpers ------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void jq_rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void jq_run_dir(const jobs *jq, int64_t run_id, char *out, size_t len)
{
    snprintf(out, len, "%s/runs/%lld", jq->data_dir, (long long)run_id);
}

void jq_run_file(const jobs *jq, int64_t run_id, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/runs/%lld/%s", jq->data_dir, (long long)run_id, name);
}

double jq_num(json_t *o, const char *k, double dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

int jq_bool(json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* ---- running one job ---------------------------------------------------------------------- */

static json_t *tta_json(const tta_result *r)
{
    json_t *pa = json_array();
    for (int i = 0; i < r->n_aug && i < 16; i++)
        json_array_append_new(pa, json_real(r->pass_accuracy[i]));
    /* accuracy is the centre crop's; centre_accuracy says so by name, and tta_worse flags
     * a mean below it (the job's notes explain). */
    return json_pack("{sf sf sf sf si so sf si sb}", "loss", r->loss, "accuracy",
                     r->accuracy, "tta_loss", r->tta_loss, "tta_accuracy", r->tta_accuracy,
                     "n_aug", r->n_aug, "pass_accuracy", pa, "centre_accuracy", r->accuracy,
                     "passes_run", r->n_run, "tta_worse", r->tta_worse);
}

static json_t *suggestion_json(const lr_suggestion *s)
{
    return json_pack("{sf ss}", "lr", s->lr, "reason", s->reason);
}

static int do_lr_find(jobs *jq, sink *k, learner *l, const job_lr_find *p, json_t **result,
                      char *err, size_t errlen)
{
    lrfind_opts o = {.start_lr = p->start_lr, .end_lr = p->end_lr, .num_it = (int)p->num_it};
    int rc = store_lr_find_create(jq->st, k->run_id, k->job_id, o.start_lr, o.end_lr,
                                  o.num_it, &k->lr_find_id);
    if (rc) {
        snprintf(err, errlen, "cannot record the sweep: %s", store_errmsg());
        return rc;
    }
    ev_hooks h = jq_sink_hooks(k);
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

static int run_kind(jobs *jq, sink *k, const job_params *p, learner *l, int resume,
                    json_t **result, char *err, size_t errlen)
{
    ev_hooks h = jq_sink_hooks(k);
    int rc;
    switch (p->kind) {
    case JOB_LR_FIND:
        return do_lr_find(jq, k, l, &p->lr_find, result, err, errlen);
    case JOB_FIT: {
        fit_opts o;
        job_fit_opts(&p->fit, &o);
        /* A fresh fit must not find an earlier fit's epoch checkpoint; a resumed one whose
         * interruption came before its first epoch ended has none and starts over from the
         * weights saved at the interruption. */
        char ck[PATH_MAX];
        jq_run_file(jq, k->run_id, "ckpt/" LEARNER_LAST_CKPT, ck, sizeof ck);
        if (!resume) {
            unlink(ck);
        } else if (access(ck, R_OK) != 0) {
            resume = 0;
            h.on_note(k, "resume", "the interrupted fit had finished no epoch: it starts "
                      "over from the weights saved when it stopped");
        }
        o.resume = resume;
        for (int c = 0, len = o.cycle_len; c < o.n_cycle; c++, len *= o.cycle_mult)
            k->total_epochs += len;
        return learner_fit(l, &o, &h, err, errlen);
    }
    case JOB_FREEZE:
        return learner_freeze_to(l, (int)p->freeze_to, err, errlen);
    case JOB_UNFREEZE:
        return learner_unfreeze(l);
    case JOB_PRECOMPUTE:
        return learner_set_precompute(l, p->precompute_on, err, errlen);
    case JOB_RESIZE:
        return learner_resize(l, (int)p->resize_sz, err, errlen);
    case JOB_TTA: {
        tta_result r = {0};
        rc = learner_tta(l, (int)p->tta_n_aug, &h, &r, err, errlen);
        if (rc == 0)
            *result = tta_json(&r);
        return rc;
    }
    case JOB_RECIPE: {
        k->own_sweeps = 1;
        recipe_opts o = {.max_epochs = (int)p->recipe.max_epochs,
                         .close_to_imagenet = p->recipe.close_to_imagenet,
                         .n_aug = (int)p->recipe.n_aug,
                         .budget_minutes = p->recipe.budget_minutes,
                         .one_cycle = p->recipe.one_cycle};
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
        rc = learner_predict_test(l, p->predict_tta, csv, &h, err, errlen);
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

/* A job's start or end that the store refused for a full disk is retried every second
 * until there is room or the daemon stops, so that a row never stays "queued" or
 * "running" for a job that is over. 0: try again; -ESHUTDOWN: give up (the next start
 * marks the row interrupted). */
static int wait_for_room(jobs *jq, int64_t job_id, const char *what, int *logged)
{
    if (!*logged)
        log_msg(LOG_ERROR, job_id, "cannot record %s: %s; retrying every second until the "
                "disk has room", what, store_errmsg());
    *logged = 1;
    pthread_mutex_lock(&jq->mu);
    if (!jq->stopping) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 1;
        pthread_cond_timedwait(&jq->cv, &jq->mu, &dl);
    }
    int stop = jq->stopping;
    pthread_mutex_unlock(&jq->mu);
    return stop ? -ESHUTDOWN : 0;
}

/* The job's kind and params as stored, read with the parser that checked them at submit:
 * a value it refuses (a row from an older version, an edited database) fails the job. */
static int job_params_of(const store_job_row *row, job_params *p, char *err, size_t errlen)
{
    job_kind kind;
    char field[128], detail[384];
    if (job_kind_parse(row->kind, &kind)) {
        snprintf(err, errlen, "unknown job kind \"%s\"", row->kind);
        return -EINVAL;
    }
    if (job_params_parse(kind, row->params, p, field, sizeof field, detail, sizeof detail) == 0)
        return 0;
    err_set(err, errlen, "params%s%s: %s", field[0] ? "." : "", field, detail);
    return -EINVAL;
}

/* One job as the worker runs it. */
typedef struct job_run {
    jobs *jq;
    int64_t id;
    store_job_row row;
    job_params p;
    learner *l;          /* the run's in-process learner (NULL for a world, or when none) */
    sink k;
    json_t *result;
    int rc, shutting;
    const char *final;   /* the state it ends in */
    char err[512];
} job_run;

/* Marks the job running, waiting while the disk is full. -1 when it is not to run. */
static int job_begin(job_run *j)
{
    int full = 0, rc;
    if (strcmp(j->row.state, "queued") != 0) /* cancelled while it waited */
        return -1;
    while ((rc = store_job_start(j->jq->st, j->id)) == -ENOSPC &&
           wait_for_room(j->jq, j->id, "the start", &full) == 0)
        ;
    if (rc) {
        log_msg(LOG_ERROR, j->id, "cannot start: %s", store_errmsg());
        return -1;
    }
    log_msg(LOG_INFO, j->id, "started %s on run %lld", j->row.kind, (long long)j->row.run_id);
    return 0;
}

/* Runs the job's work in process, or as a world of workers. */
static void job_execute(job_run *j)
{
    jobs *jq = j->jq;
    int resumed = j->row.resumed_from != 0;
    j->rc = job_params_of(&j->row, &j->p, j->err, sizeof j->err);
    if (j->rc == 0 && j->p.workers <= 1) {
        j->l = jq_slot_get(jq, j->row.run_id, j->err, sizeof j->err);
        if (!j->l)
            j->rc = -EINVAL;
        else
            j->rc = jq_admit_job(jq, j->row.run_id, &j->p, j->err, sizeof j->err);
    }
    j->k = (sink){.jq = jq, .job_id = j->id, .run_id = j->row.run_id, .last_epoch = -1,
                  .t0 = clock_mono_s()};
    if (j->rc == 0 && j->p.workers > 1)
        j->rc = jq_run_world(jq, &j->k, &j->p, resumed, &j->result, j->err, sizeof j->err);
    else if (j->rc == 0)
        j->rc = run_kind(jq, &j->k, &j->p, j->l, resumed, &j->result, j->err, sizeof j->err);
    jq_sweep_close(&j->k);
    store_flush(jq->st);
    pthread_mutex_lock(&jq->mu);
    j->shutting = jq->stopping;
    pthread_mutex_unlock(&jq->mu);
}

/* The state the job ends in, from how its work returned. */
static void job_verdict(job_run *j)
{
    if (j->rc == 0) {
        j->final = "succeeded";
    } else if (j->rc == -ECANCELED) {
        j->final = j->shutting ? "interrupted" : "cancelled";
        snprintf(j->err, sizeof j->err, "%s", j->shutting ? "the daemon stopped during this job"
                                                          : "cancelled at a batch boundary");
    } else if (j->rc == -EPIPE && j->p.kind == JOB_FIT) {
        /* A world that lost a rank: the fit resumes from its last epoch checkpoint. */
        j->final = "interrupted";
    } else {
        j->final = "failed";
        if (!j->err[0])
            snprintf(j->err, sizeof j->err, "%s", strerror(j->rc < 0 ? -j->rc : j->rc));
    }
}

/* Saves the weights the job leaves. A failed job may have left diverged weights: the saved
 * ones stay. A cancelled or interrupted fit keeps what it trained up to the batch boundary.
 * Work whose result is not on disk has not succeeded: a later job or a restart would start
 * from the weights before it. */
static void job_save(job_run *j)
{
    job_kind kind = j->p.kind;
    if (!j->l || !(j->rc == 0 ? changes_weights(kind)
                              : (j->rc == -ECANCELED && (kind == JOB_FIT || kind == JOB_RECIPE))))
        return;
    char serr[256] = "";
    if (jq_save_run(j->jq, j->row.run_id, j->id, j->l, serr, sizeof serr) == 0)
        return;
    log_msg(LOG_ERROR, j->id, "cannot save run %lld: %s", (long long)j->row.run_id, serr);
    if (j->rc == 0) {
        j->rc = -EIO;
        j->final = "failed";
        snprintf(j->err, sizeof j->err, "the job's weights could not be saved: %s", serr);
    }
}

/* Before the job ends, so that a client seeing it succeed finds the interpretation; a
 * failure to compute it does not undo the job's work. Not while the daemon stops: a
 * validation pass must not hold up its exit (the next fit or TTA computes it). A world's
 * job computes it in the daemon, from the weights rank 0 saved. */
static void job_interpret(job_run *j)
{
    job_kind kind = j->p.kind;
    if (j->rc != 0 || j->shutting || !(kind == JOB_FIT || kind == JOB_RECIPE || kind == JOB_TTA))
        return;
    char ierr[256] = "";
    learner *il = j->l ? j->l : jq_slot_get(j->jq, j->row.run_id, ierr, sizeof ierr);
    if (!il || jq_interpret(j->jq, j->row.run_id, j->id, il, ierr, sizeof ierr))
        log_msg(LOG_WARN, j->id, "no interpretation of run %lld: %s", (long long)j->row.run_id,
                ierr);
}

/* A fit that stopped early names its last epoch checkpoint: where a resumed fit continues. */
static void job_keep_checkpoint(job_run *j)
{
    job_kind kind = j->p.kind;
    if (!((j->rc == -ECANCELED && (kind == JOB_FIT || kind == JOB_RECIPE)) ||
          (j->rc == -EPIPE && kind == JOB_FIT)))
        return;
    char ck[PATH_MAX];
    jq_run_file(j->jq, j->row.run_id, "ckpt/" LEARNER_LAST_CKPT, ck, sizeof ck);
    if (access(ck, R_OK) == 0)
        store_snapshot_add(j->jq->st, j->row.run_id, j->id, "checkpoint", j->k.last_cycle,
                           j->k.last_epoch, ck, NULL);
}

/* Records the end, waiting while the disk is full, and logs it. */
static void job_finish(job_run *j)
{
    int frc, full = 0;
    while ((frc = store_job_finish(j->jq->st, j->id, j->final, j->rc ? j->err : NULL,
                                   j->result)) == -ENOSPC &&
           wait_for_room(j->jq, j->id, "the end", &full) == 0)
        ;
    if (frc)
        log_msg(LOG_ERROR, j->id, "cannot record the end (%s): %s", j->final, store_errmsg());
    log_msg(j->rc && strcmp(j->final, "failed") == 0 ? LOG_WARN : LOG_INFO, j->id, "%s%s%s",
            j->final, j->rc ? ": " : "", j->rc ? j->err : "");
}

static void run_job(jobs *jq, int64_t job_id)
{
    job_run j = {.jq = jq, .id = job_id, .p = {.kind = JOB_KIND_COUNT}};
    if (store_job_row_get(jq->st, job_id, &j.row)) {
        log_msg(LOG_ERROR, job_id, "cannot read the job: %s", store_errmsg());
        return;
    }
    if (job_begin(&j) == 0) {
        job_execute(&j);
        job_verdict(&j);
        job_save(&j);
        job_interpret(&j);
        job_keep_checkpoint(&j);
        job_finish(&j);
    }
    json_decref(j.result);
    store_job_row_clear(&j.row);
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
            jq_slot_drop(jq, run);
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

/* sgdrd-worker as the build places it (worker/ beside daemon/), else from PATH. */
static char *worker_beside_daemon(void)
{
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(path, sizeof path, "%s/../worker/sgdrd-worker", self);
            if (access(path, X_OK) == 0)
                return strdup(path);
        }
    }
    return strdup("sgdrd-worker");
}

int jobs_create(jobs **out, store *st, const jobs_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    jobs *jq = calloc(1, sizeof *jq);
    if (!jq)
        goto out_nomem;
    jq->st = st;
    jq->data_dir = strdup(cfg->data_dir ? cfg->data_dir : ".");
    jq->loader_threads = cfg->loader_threads;
    jq->memory_limit = cfg->memory_limit;
    jq->resume = cfg->resume;
    jq->threads = cfg->threads;
    jq->max_workers = cfg->max_workers > 1 ? cfg->max_workers : 1;
    jq->worker_timeout_s = cfg->worker_timeout_s > 0 ? cfg->worker_timeout_s : 300;
    jq->hostfile = cfg->hostfile ? strdup(cfg->hostfile) : NULL;
    jq->worker_exe = cfg->worker ? strdup(cfg->worker) : worker_beside_daemon();
    if (!jq->worker_exe || (cfg->hostfile && !jq->hostfile))
        goto out_nomem;
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
    int rc = fs_mkdir_p(runs);
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
        free(jq->hostfile);
        free(jq->worker_exe);
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
    int64_t *nq = buf_grow(jq->q, &jq->qcap, jq->qn + 1, sizeof *nq);
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
        jq_run_file(jq, run, "ckpt/" LEARNER_LAST_CKPT, ck, sizeof ck);
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
    if (rc) {
        snprintf(err, errlen, "cannot start the worker");
        return rc;
    }
    return registrar_create(&jq->reg, jq->st, err, errlen);
}

int jobs_submit(jobs *jq, int64_t run_id, const job_params *p, int64_t *job_id)
{
    job_kind kind = p->kind;
    if (kind < 0 || kind >= JOB_KIND_COUNT)
        return -EINVAL;
    if (p->workers > jq->max_workers)
        return -E2BIG;
    json_t *params = job_params_json(p);
    if (!params)
        return -ENOMEM;
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
    json_decref(params);
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
    /* Two resumes of one job would run its work twice, each from the same checkpoint. */
    if (row.resumed_by) {
        *new_id = row.resumed_by;
        store_job_row_clear(&row);
        return -EALREADY;
    }
    /* The same parser as every run of a job: the new row holds the canonical params (a row
     * of an older version gains its defaults). Params it refuses are copied as they are,
     * and the resumed job fails naming the field, as the original would have. */
    job_params p;
    char perr[256];
    json_t *canon = job_params_of(&row, &p, perr, sizeof perr) == 0 ? job_params_json(&p) : NULL;
    rc = store_job_create(jq->st, row.run_id, row.kind, canon ? canon : row.params, job_id,
                          new_id);
    json_decref(canon);
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
        int64_t *nd = buf_grow(jq->dropped, &jq->cap_dropped, jq->n_dropped + 1, sizeof *nd);
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
        jq_run_dir(jq, run_id, dir, sizeof dir);
        /* Without a worker, nothing else can hold the learner: free it here. */
        if (!jq->started)
            jq_slot_drop(jq, run_id);
        jq_rm_tree(dir);
        log_msg(LOG_INFO, 0, "deleted run %lld", (long long)run_id);
    }
    return rc;
}

int jobs_queue_length(jobs *jq)
{
    pthread_mutex_lock(&jq->mu);
    int n = jq->qn;
    pthread_mutex_unlock(&jq->mu);
    return n;
}

json_t *jobs_world(jobs *jq)
{
    pthread_mutex_lock(&jq->mu);
    json_t *w = jq->world ? json_deep_copy(jq->world) : json_null();
    pthread_mutex_unlock(&jq->mu);
    return json_pack("{si sb so}", "max_workers", jq->max_workers, "hostfile",
                     jq->hostfile != NULL, "running", w);
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
    pthread_mutex_unlock(&jq->mu);
    registrar_stop(jq->reg);
    pthread_mutex_lock(&jq->mu);
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
    registrar_destroy(jq->reg);
    for (int i = 0; i < MAX_LEARNERS; i++)
        jq_slot_free(&jq->slots[i]);
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
    free(jq->hostfile);
    free(jq->worker_exe);
    json_decref(jq->world);
    free(jq);
}
