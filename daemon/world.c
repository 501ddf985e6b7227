/* world.c: data-parallel jobs. A job whose params ask for workers > 1 runs as an mpirun
 * world of sgdrd-worker ranks, a child process group of its own: the daemon writes the
 * job's spec (the run's settings, dataset, saved state, the job's canonical params), reads
 * rank 0's event lines from mpirun's stdout and hands them to the same sink an in-process
 * job uses, so the store, SSE and the dashboard see no difference. The daemon stays the
 * only writer of the store; the ranks write the run's checkpoint and weights files (rank 0).
 * A world that exits without its done event, or stays silent past --worker-timeout, fails
 * the job with the reason; cancel stops the whole group. mpirun's stderr goes to
 * runs/<id>/world-<job>.log. */
#define _GNU_SOURCE
#include "jobs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "log.h"

/* ---- the spec ------------------------------------------------------------------------------ */

static int changes_weights(job_kind k) { return k == JOB_FIT || k == JOB_RECIPE; }

/* The dataset part of a spec from its row; an uploaded one is marked so, since the ranks
 * that lack it receive it from rank 0 (one registered by path must be on every host). */
static json_t *dataset_spec(json_t *d)
{
    json_t *o = json_object_get(d, "options");
    json_t *s = json_pack("{sO sO}", "path", json_object_get(d, "path"), "format",
                          json_object_get(d, "format"));
    if (s && json_is_object(o))
        json_object_update(s, o);
    if (s && json_is_true(json_object_get(d, "uploaded")))
        json_object_set_new(s, "uploaded", json_true());
    return s;
}

/* The learner part: the run's config (the keys run_learners.c reads) with its arch and
 * pretrained body. */
static int learner_spec(jobs *jq, json_t *run, json_t **out, char *err, size_t errlen)
{
    json_t *c = json_deep_copy(json_object_get(run, "config"));
    if (!c)
        c = json_object();
    json_object_set(c, "arch", json_object_get(run, "arch"));
    json_object_set_new(c, "loader_threads", json_integer(1));
    json_t *mid = json_object_get(run, "model");
    if (json_is_integer(mid)) {
        json_t *model = NULL;
        if (store_model_get(jq->st, json_integer_value(mid), &model)) {
            err_set(err, errlen, "pretrained model %lld: %s",
                    (long long)json_integer_value(mid), store_errmsg());
            json_decref(c);
            return -ENOENT;
        }
        json_object_set(c, "pretrained", json_object_get(model, "path"));
        json_decref(model);
    }
    *out = c;
    return 0;
}

/* The state part: the weights saved after the run's last job, and its size, freeze point
 * and precompute. */
static json_t *state_spec(jobs *jq, int64_t run_id, json_t *run)
{
    char cur[PATH_MAX];
    jq_run_file(jq, run_id, "current.ckpt", cur, sizeof cur);
    json_t *s = json_deep_copy(json_object_get(run, "state"));
    json_t *o = json_object();
    if (access(cur, R_OK) == 0)
        json_object_set_new(o, "load", json_string(cur));
    const char *keep[] = {"sz", "freeze_to", "precompute"};
    for (int i = 0; i < 3; i++)
        if (json_object_get(s, keep[i]))
            json_object_set(o, keep[i], json_object_get(s, keep[i]));
    json_decref(s);
    return o;
}

/* Writes the job's spec to path. */
static int write_spec(jobs *jq, const sink *k, const job_params *p, int resume,
                      const char *path, char *err, size_t errlen)
{
    json_t *run = NULL, *d = NULL, *learner = NULL;
    int rc = store_run_get(jq->st, k->run_id, &run);
    if (!rc)
        rc = store_dataset_get(jq->st, json_integer_value(json_object_get(run, "dataset")), &d);
    if (rc) {
        err_set(err, errlen, "run %lld: %s", (long long)k->run_id, store_errmsg());
        goto out;
    }
    if ((rc = learner_spec(jq, run, &learner, err, errlen)))
        goto out;
    char ck[PATH_MAX], cur[PATH_MAX], w[PATH_MAX], csv[PATH_MAX];
    jq_run_file(jq, k->run_id, "ckpt", ck, sizeof ck);
    jq_run_file(jq, k->run_id, "current.ckpt", cur, sizeof cur);
    jq_run_file(jq, k->run_id, "weights.safetensors", w, sizeof w);
    snprintf(csv, sizeof csv, "%s/runs/%lld/predictions-%lld.csv", jq->data_dir,
             (long long)k->run_id, (long long)k->job_id);
    fs_mkdir_p(ck);
    json_t *spec = json_pack(
        "{so so so ss s{ss so sb} ss}", "dataset", dataset_spec(d), "learner", learner,
        "state", state_spec(jq, k->run_id, run), "checkpoint_dir", ck, "job", "kind",
        job_kind_name(p->kind), "params", job_params_json(p), "resume", resume,
        "predictions_csv", csv);
    learner = NULL;
    if (spec && changes_weights(p->kind))
        json_object_set_new(spec, "save", json_pack("{ss ss}", "checkpoint", cur, "weights", w));
    rc = spec && json_dump_file(spec, path, JSON_INDENT(1)) == 0 ? 0 : -EIO;
    if (rc)
        err_set(err, errlen, "cannot write the workers' spec %s", path);
    json_decref(spec);
out:
    json_decref(learner);
    json_decref(d);
    json_decref(run);
    return rc;
}

/* ---- the world -------------------------------------------------------------------------- */

/* Starts mpirun for n ranks of the worker on spec, in a process group of its own, its
 * stdout on *fd, its stderr into log. */
static int spawn(jobs *jq, int n, const char *spec, const char *log, pid_t *pid, int *fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC))
        return -errno;
    char np[16], threads[16];
    snprintf(np, sizeof np, "%d", n);
    /* One machine: the cores shared among the ranks; a hostfile's hosts: as many each. */
    long cores = jq->threads > 0 ? jq->threads : sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(threads, sizeof threads, "%ld",
             jq->hostfile || cores / n < 1 ? (jq->hostfile ? cores : 1) : cores / n);
    const char *argv[20];
    int a = 0;
    argv[a++] = "mpirun";
    argv[a++] = "-np";
    argv[a++] = np;
    argv[a++] = "--bind-to";
    argv[a++] = "none";
    argv[a++] = "-x";
    argv[a++] = "OMP_NUM_THREADS";
    if (jq->hostfile) {
        argv[a++] = "--hostfile";
        argv[a++] = jq->hostfile;
    }
    argv[a++] = jq->worker_exe;
    argv[a++] = spec;
    argv[a] = NULL;
    *pid = fork();
    if (*pid < 0) {
        close(p[0]);
        close(p[1]);
        return -errno;
    }
    if (*pid == 0) {
        setpgid(0, 0);
        /* The daemon's threads block its stop signals (main takes them with sigwait) and
         * ignore SIGPIPE; exec keeps both, and mpirun stops its ranks with SIGTERM when one
         * of them aborts: a world must start with the default dispositions. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int lf = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        dup2(p[1], 1);
        if (lf >= 0)
            dup2(lf, 2);
        setenv("OMP_NUM_THREADS", threads, 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        if (!jq->hostfile)
            setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
        setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
        execvp("mpirun", (char *const *)argv);
        _exit(127);
    }
    setpgid(*pid, *pid);
    close(p[1]);
    *fd = p[0];
    return 0;
}

/* What the world said about itself: its last error, and its done event's result and
 * state. */
typedef struct world_end {
    json_t *done;
    char error[512];
    int stop;          /* a hook asked to stop (cancel) */
} world_end;

static double num(json_t *o, const char *k) { return jq_num(o, k, 0.0); }

static void suggestion_of(json_t *o, ev_suggestion *s)
{
    s->lr = num(o, "lr");
    s->reason = json_string_value(json_object_get(o, "reason"));
}

/* One event line into the sink's hooks. */
static void dispatch(sink *k, const ev_hooks *h, json_t *e, world_end *we)
{
    const char *ev = json_string_value(json_object_get(e, "ev"));
    if (!ev)
        return;
    if (!strcmp(ev, "batch")) {
        ev_batch b = {.step = (int64_t)num(e, "step"), .epoch = (int)num(e, "epoch"),
                      .batch = (int)num(e, "batch"), .n_batches = (int)num(e, "n_batches"),
                      .loss = (float)num(e, "loss"), .smooth_loss = (float)num(e, "smooth_loss"),
                      .img_per_s = num(e, "img_per_s"), .momentum = (float)num(e, "momentum")};
        json_t *lrs = json_object_get(e, "lrs");
        for (size_t g = 0; g < json_array_size(lrs) && g < NET_MAX_GROUPS; g++)
            b.lrs[b.n_groups++] = (float)json_number_value(json_array_get(lrs, g));
        we->stop |= h->on_batch(h->ctx, &b);
    } else if (!strcmp(ev, "sweep_point")) {
        ev_sweep_point s = {.iter = (int)num(e, "iter"), .lr = num(e, "lr"),
                            .loss = (float)num(e, "loss"),
                            .smooth_loss = (float)num(e, "smooth_loss"),
                            .start_lr = num(e, "start_lr"), .end_lr = num(e, "end_lr"),
                            .num_it = (int)num(e, "num_it")};
        we->stop |= h->on_sweep_point(h->ctx, &s);
    } else if (!strcmp(ev, "sweep_end")) {
        ev_sweep_end s = {.n_points = (int)num(e, "n_points"),
                          .stopped_early = jq_bool(e, "stopped_early", 0)};
        suggestion_of(json_object_get(e, "min_div10"), &s.min_div10);
        suggestion_of(json_object_get(e, "steep"), &s.steep);
        suggestion_of(json_object_get(e, "valley"), &s.valley);
        suggestion_of(json_object_get(e, "slide"), &s.slide);
        h->on_sweep_end(h->ctx, &s);
    } else if (!strcmp(ev, "epoch")) {
        ev_epoch p = {.epoch = (int)num(e, "epoch"), .step = (int64_t)num(e, "step"),
                      .cycle = (int)num(e, "cycle"), .train_loss = (float)num(e, "train_loss"),
                      .valid_loss = (float)num(e, "valid_loss"),
                      .accuracy = (float)num(e, "accuracy"), .f2 = (float)jq_num(e, "f2", -1),
                      .seconds = num(e, "seconds"), .img_per_s = num(e, "img_per_s")};
        we->stop |= h->on_epoch(h->ctx, &p);
    } else if (!strcmp(ev, "cycle_end")) {
        we->stop |= h->on_cycle_end(h->ctx, (int)num(e, "cycle"), (int)num(e, "epoch"));
    } else if (!strcmp(ev, "note")) {
        h->on_note(h->ctx, json_string_value(json_object_get(e, "what")),
                   json_string_value(json_object_get(e, "why")));
    } else if (!strcmp(ev, "progress")) {
        h->on_progress(h->ctx, num(e, "fraction"), jq_num(e, "eta_s", -1));
    } else if (!strcmp(ev, "world")) {
        char *s = json_dumps(e, JSON_COMPACT);
        log_msg(LOG_INFO, k->job_id, "world: %s", s ? s : "?");
        free(s);
        json_object_del(e, "ev");
        json_object_set_new(e, "job", json_integer(k->job_id));
        pthread_mutex_lock(&k->jq->mu);
        json_decref(k->jq->world);
        k->jq->world = json_incref(e);
        pthread_mutex_unlock(&k->jq->mu);
    } else if (!strcmp(ev, "error")) {
        snprintf(we->error, sizeof we->error, "%s",
                 json_string_value(json_object_get(e, "message")));
    } else if (!strcmp(ev, "done")) {
        json_decref(we->done);
        we->done = json_incref(e);
    }
}

/* Stops the world's process group: TERM, then KILL if it is still there after 5 s. */
static void stop_world(pid_t pid)
{
    kill(-pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (waitpid(pid, NULL, WNOHANG) != 0)
            return;
        usleep(100000);
    }
    kill(-pid, SIGKILL);
}

/* Reads event lines until the world closes its stdout; stops it on cancel or when it
 * stays silent past the timeout. Returns the wait status, or -ECANCELED / -ETIMEDOUT. */
static int follow(jobs *jq, sink *k, pid_t pid, int fd, world_end *we)
{
    ev_hooks h = jq_sink_hooks(k);
    char buf[1 << 16];
    size_t used = 0;
    double last = clock_mono_s();
    int outcome = 0;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, 1000);
        if (atomic_load(&jq->cancel) || we->stop) {
            outcome = -ECANCELED;
            break;
        }
        if (pr == 0 && clock_mono_s() - last > jq->worker_timeout_s) {
            outcome = -ETIMEDOUT;
            break;
        }
        if (pr <= 0)
            continue;
        ssize_t got = read(fd, buf + used, sizeof buf - 1 - used);
        if (got <= 0)
            break; /* every rank is gone */
        used += (size_t)got;
        last = clock_mono_s();
        char *start = buf, *nl;
        buf[used] = '\0';
        while ((nl = strchr(start, '\n'))) {
            *nl = '\0';
            json_t *e = start[0] == '{' ? json_loads(start, 0, NULL) : NULL;
            if (e)
                dispatch(k, &h, e, we);
            json_decref(e);
            start = nl + 1;
        }
        used -= (size_t)(start - buf);
        memmove(buf, start, used);
        if (used == sizeof buf - 1)
            used = 0; /* a line longer than the buffer is no event */
    }
    if (outcome)
        stop_world(pid);
    int status = 0;
    waitpid(pid, &status, 0);
    return outcome ? outcome : status;
}

/* The run's state and final snapshot after a world changed its weights (rank 0 wrote
 * current.ckpt and the weights). */
static void record_state(jobs *jq, const sink *k, json_t *done)
{
    char cur[PATH_MAX], *prev = NULL;
    jq_run_file(jq, k->run_id, "current.ckpt", cur, sizeof cur);
    if (store_snapshot_latest(jq->st, k->run_id, "final", &prev) == -ENOENT)
        store_snapshot_add(jq->st, k->run_id, k->job_id, "final", -1, -1, cur, NULL);
    free(prev);
    json_t *state = json_object_get(done, "state");
    if (json_is_object(state))
        store_run_set_state(jq->st, k->run_id, state);
}

/* What a finished world leaves in the store besides its events: an LR sweep's row, the
 * predictions file's row, the run's state. */
static void record_result(jobs *jq, sink *k, const job_params *p, json_t *result)
{
    if (p->kind == JOB_LR_FIND && k->lr_find_id) {
        json_t *sug = json_object_get(result, "suggestions");
        store_lr_find_finish(jq->st, k->lr_find_id, sug, jq_bool(result, "stopped_early", 0),
                             k->sweep_last_lr, (int)jq_num(result, "n_points", 0));
        json_object_set_new(result, "lr_find", json_integer(k->lr_find_id));
    }
    if (p->kind == JOB_PREDICT_TEST) {
        char csv[PATH_MAX];
        snprintf(csv, sizeof csv, "%s/runs/%lld/predictions-%lld.csv", jq->data_dir,
                 (long long)k->run_id, (long long)k->job_id);
        int rows = -1;
        FILE *f = fopen(csv, "r");
        for (int c; f && (c = fgetc(f)) != EOF;)
            rows += c == '\n';
        if (f)
            fclose(f);
        store_prediction_add(jq->st, k->run_id, k->job_id, csv, rows < 0 ? 0 : rows);
        json_object_set_new(result, "rows", json_integer(rows < 0 ? 0 : rows));
    }
}

int jq_run_world(jobs *jq, sink *k, const job_params *p, int resume, json_t **result,
                 char *err, size_t errlen)
{
    char spec[PATH_MAX], log[PATH_MAX], name[64];
    snprintf(name, sizeof name, "world-%lld.json", (long long)k->job_id);
    jq_run_file(jq, k->run_id, name, spec, sizeof spec);
    snprintf(name, sizeof name, "world-%lld.log", (long long)k->job_id);
    jq_run_file(jq, k->run_id, name, log, sizeof log);
    /* The ranks load the run from its files: the in-process learner (saved after its
     * last job) goes, and comes back from what the world saves. */
    jq_slot_drop(jq, k->run_id);
    if (p->kind == JOB_FIT && !resume) {
        char ck[PATH_MAX];
        jq_run_file(jq, k->run_id, "ckpt/" LEARNER_LAST_CKPT, ck, sizeof ck);
        unlink(ck);
    }
    if (p->kind == JOB_LR_FIND &&
        store_lr_find_create(jq->st, k->run_id, k->job_id, p->lr_find.start_lr,
                             p->lr_find.end_lr, (int)p->lr_find.num_it, &k->lr_find_id)) {
        err_set(err, errlen, "cannot record the sweep: %s", store_errmsg());
        return -EIO;
    }
    if (p->kind == JOB_RECIPE)
        k->own_sweeps = 1;
    int rc = write_spec(jq, k, p, resume, spec, err, errlen);
    pid_t pid = -1;
    int fd = -1;
    if (!rc && (rc = spawn(jq, (int)p->workers, spec, log, &pid, &fd)))
        err_set(err, errlen, "cannot start mpirun: %s", strerror(-rc));
    if (rc)
        return rc;
    log_msg(LOG_INFO, k->job_id, "started %lld workers with mpirun (log %s)",
            (long long)p->workers, log);
    world_end we = {0};
    int st = follow(jq, k, pid, fd, &we);
    close(fd);
    pthread_mutex_lock(&jq->mu);
    json_decref(jq->world);
    jq->world = NULL;
    pthread_mutex_unlock(&jq->mu);
    store_flush(jq->st);
    if (st == -ECANCELED) {
        rc = -ECANCELED;
    } else if (st == -ETIMEDOUT) {
        err_set(err, errlen, "the workers sent no event for %d s (a rank hung?); the world "
                "was stopped", jq->worker_timeout_s);
        rc = -EPIPE;
    } else if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0 && we.done)) {
        /* The job's own failure (an error event), or the world's (-EPIPE). */
        rc = we.error[0] ? -EIO : -EPIPE;
        if (we.error[0])
            err_set(err, errlen, "workers: %s", we.error);
        else if (WIFEXITED(st))
            err_set(err, errlen, "the workers' mpirun exited with status %d (a rank died or "
                    "could not start; see %s)", WEXITSTATUS(st), log);
        else
            err_set(err, errlen, "the workers' mpirun was killed by signal %d (see %s)",
                    WIFSIGNALED(st) ? WTERMSIG(st) : 0, log);
    } else {
        json_t *res = json_object_get(we.done, "result");
        *result = json_is_object(res) ? json_deep_copy(res) : json_object();
        record_result(jq, k, p, *result);
        if (changes_weights(p->kind))
            record_state(jq, k, we.done);
    }
    json_decref(we.done);
    return rc;
}
