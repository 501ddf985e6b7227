/* test_jobs.c: the daemon's job queue on the real engine and store: every job kind on a
 * tiny PNG dataset, cancellation (queued and running), stop with a checkpointed
 * interrupted fit and its resume, synchronous prediction, run deletion, and a stored job
 * whose params are wrong failing after a restart instead of running something else. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs.h"
#include "store.h"

static char dir[64], dbpath[128], data_dir[128], ds_dir[128];

/* A 16x16 gray PNG: class 0 dark with a bright square, class 1 bright with a dark one, so
 * the classes are learnable; `i` moves the square. */
static void write_png(const char *path, int cls, int i)
{
    unsigned char px[16 * 16];
    for (int y = 0; y < 16; y++) {
        for (int x = 0; x < 16; x++) {
            int in = x >= (i % 8) && x < (i % 8) + 6 && y >= 4 && y < 10;
            px[y * 16 + x] = (unsigned char)((cls ? 220 : 30) + (in ? (cls ? -150 : 150) : 0));
        }
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = 16;
    im.height = 16;
    im.format = PNG_FORMAT_GRAY;
    assert_true(png_image_write_to_file(&im, path, 0, px, 16, NULL));
}

static void make_dataset(void)
{
    const char *splits[] = {"train", "valid"};
    const char *classes[] = {"dark", "light"};
    char p[256];
    for (int s = 0; s < 2; s++) {
        for (int c = 0; c < 2; c++) {
            snprintf(p, sizeof p, "%s/%s/%s", ds_dir, splits[s], classes[c]);
            char cmd[300];
            snprintf(cmd, sizeof cmd, "mkdir -p '%s'", p);
            assert_int_equal(system(cmd), 0);
            for (int i = 0; i < (s == 0 ? 16 : 4); i++) {
                char f[300];
                snprintf(f, sizeof f, "%s/%d.png", p, i);
                write_png(f, c, i + s * 3);
            }
        }
    }
    snprintf(p, sizeof p, "%s/test", ds_dir);
    assert_int_equal(mkdir(p, 0755), 0);
    for (int i = 0; i < 3; i++) {
        char f[300];
        snprintf(f, sizeof f, "%s/t%d.png", p, i);
        write_png(f, i % 2, i);
    }
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sgdrd-jobs-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(data_dir, sizeof data_dir, "%s/var", dir);
    snprintf(dbpath, sizeof dbpath, "%s/var/sgdrd.db", dir);
    snprintf(ds_dir, sizeof ds_dir, "%s/data/tiny", dir);
    assert_int_equal(mkdir(data_dir, 0755), 0);
    make_dataset();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

typedef struct env {
    store *st;
    jobs *jq;
} env;

static void env_open(env *e, int resume)
{
    char err[512] = "", root[128];
    snprintf(root, sizeof root, "%s/data", dir);
    const char *roots[] = {root};
    store_options so = {.flush_ms = 20};
    assert_int_equal(store_open(&e->st, dbpath, &so, err, sizeof err), 0);
    jobs_config jc = {.data_dir = data_dir, .roots = roots, .n_roots = 1, .loader_threads = 1,
                      .resume = resume};
    if (jobs_create(&e->jq, e->st, &jc, err, sizeof err) || jobs_start(e->jq, err, sizeof err))
        fail_msg("jobs: %s", err);
}

static void env_close(env *e)
{
    jobs_destroy(e->jq);
    store_close(e->st);
}

static const char *state_of(store *st, int64_t job, json_t **keep)
{
    static char s[16];
    json_t *j;
    assert_int_equal(store_job_get(st, job, &j), 0);
    snprintf(s, sizeof s, "%s", json_string_value(json_object_get(j, "state")));
    if (keep)
        *keep = j;
    else
        json_decref(j);
    return s;
}

static int is_final(const char *s)
{
    return strcmp(s, "queued") && strcmp(s, "running");
}

/* Bounded waits: the worker runs on its own thread. */
static const char *wait_final(store *st, int64_t job)
{
    for (int i = 0; i < 6000; i++) {
        const char *s = state_of(st, job, NULL);
        if (is_final(s))
            return s;
        usleep(20000);
    }
    fail_msg("job %lld did not finish", (long long)job);
    return NULL;
}

/* Waits until the job runs and has made progress (min_epochs finished, when > 0). */
static void wait_training(store *st, int64_t run, int64_t job, int min_epochs)
{
    for (int i = 0; i < 6000; i++) {
        json_t *ep;
        assert_int_equal(store_epochs_get(st, run, &ep), 0);
        int n_ep = 0;
        for (size_t e = 0; e < json_array_size(ep); e++)
            n_ep += json_integer_value(json_object_get(json_array_get(ep, e), "job")) == job;
        json_decref(ep);
        json_t *j;
        const char *s = state_of(st, job, &j);
        double progress = json_number_value(json_object_get(j, "progress"));
        if (!strcmp(s, "running") && progress > 0 && n_ep >= min_epochs) {
            json_decref(j);
            return;
        }
        if (is_final(s))
            fail_msg("job %lld ended (%s: %s) before it trained", (long long)job, s,
                     json_string_value(json_object_get(j, "error")));
        json_decref(j);
        store_flush(st);
        usleep(20000);
    }
    fail_msg("job %lld did not start training", (long long)job);
}

/* Submits params (JSON text) as the API does: parsed by job_params_parse first. */
static int64_t submit(jobs *jq, int64_t run, job_kind k, const char *params)
{
    json_t *body = json_loads(params, 0, NULL);
    job_params p;
    char field[64], detail[256];
    assert_non_null(body);
    if (job_params_parse(k, body, &p, field, sizeof field, detail, sizeof detail))
        fail_msg("%s: %s", field, detail);
    json_decref(body);
    int64_t id = 0;
    assert_int_equal(jobs_submit(jq, run, &p, &id), 0);
    return id;
}

static int64_t make_run(env *e, int64_t *ds_out)
{
    char err[512] = "";
    int64_t ds, run;
    int rc = jobs_register_dataset(e->jq, "tiny", ds_dir, "folders", -1, NULL, 1, 0, &ds,
                                   NULL, err, sizeof err);
    if (rc)
        fail_msg("register: %s", err);
    json_t *cfg = json_pack("{si si ss sf sb si}", "sz", 16, "bs", 4, "tfms", "none",
                            "max_zoom", 1.0, "precompute", 0, "seed", 1);
    assert_int_equal(store_run_create(e->st, ds, 0, "resnet_small", cfg, &run), 0);
    json_decref(cfg);
    if (ds_out)
        *ds_out = ds;
    return run;
}

/* Whether run has a checkpoint snapshot written by job. */
static int has_checkpoint(store *st, int64_t run, int64_t job)
{
    json_t *snaps;
    int found = 0;
    assert_int_equal(store_snapshots_get(st, run, &snaps), 0);
    for (size_t i = 0; i < json_array_size(snaps); i++) {
        json_t *sn = json_array_get(snaps, i);
        found |= json_integer_value(json_object_get(sn, "job")) == job &&
                 !strcmp(json_string_value(json_object_get(sn, "kind")), "checkpoint");
    }
    json_decref(snaps);
    return found;
}

/* The id of run's newest job (the one a --resume start queued); *from: the job it resumes. */
static int64_t newest_job(store *st, int64_t run, int64_t *from)
{
    json_t *j;
    assert_int_equal(store_job_list(st, run, NULL, NULL, &j), 0);
    json_t *newest = json_array_get(json_object_get(j, "items"), 0);
    int64_t id = json_integer_value(json_object_get(newest, "id"));
    *from = json_integer_value(json_object_get(newest, "resumed_from"));
    json_decref(j);
    return id;
}

/* Waits until job trains (min_epochs finished), cancels it, and waits until it is cancelled. */
static void cancel_training(env *e, int64_t run, int64_t job, int min_epochs)
{
    wait_training(e->st, run, job, min_epochs);
    assert_int_equal(jobs_cancel(e->jq, job), 0);
    assert_string_equal(wait_final(e->st, job), "cancelled");
}

static void job_kind_names_round_trip(void **state)
{
    (void)state;
    for (int k = 0; k < JOB_KIND_COUNT; k++) {
        job_kind back;
        assert_int_equal(job_kind_parse(job_kind_name((job_kind)k), &back), 0);
        assert_int_equal(back, k);
    }
    job_kind k;
    assert_int_equal(job_kind_parse("predict-test", &k), -EINVAL);
    assert_int_equal(job_kind_parse(NULL, &k), -EINVAL);
}

static void registering_datasets(void **state)
{
    (void)state;
    env e;
    env_open(&e, 0);
    char err[512] = "";
    int64_t id;
    const char *field = NULL;
    assert_int_equal(jobs_register_dataset(e.jq, "etc", "/etc", "folders", -1, NULL, 1, 0, &id,
                                           &field, err, sizeof err), -EACCES);
    assert_string_equal(field, "path");
    assert_non_null(strstr(err, "--dataset-root"));
    char sneaky[256];
    snprintf(sneaky, sizeof sneaky, "%s/data/../var", dir);
    assert_int_equal(jobs_register_dataset(e.jq, "x", sneaky, "folders", -1, NULL, 1, 0, &id,
                                           NULL, err, sizeof err), -EACCES);
    assert_int_equal(jobs_register_dataset(e.jq, "x", ds_dir, "zip", -1, NULL, 1, 0, &id,
                                           &field, err, sizeof err), -EINVAL);
    assert_string_equal(field, "format");
    assert_non_null(strstr(err, "format"));
    assert_int_equal(jobs_register_dataset(e.jq, "tiny", ds_dir, "folders", -1, NULL, 1, 0, &id,
                                           NULL, err, sizeof err), 0);
    assert_int_equal(jobs_register_dataset(e.jq, "tiny", ds_dir, "folders", -1, NULL, 1, 0, &id,
                                           &field, err, sizeof err), -EEXIST);
    assert_string_equal(field, "name");
    json_t *d;
    assert_int_equal(store_dataset_get(e.st, id, &d), 0);
    json_t *info = json_object_get(d, "info");
    assert_int_equal(json_integer_value(json_object_get(info, "n_classes")), 2);
    json_t *counts = json_object_get(info, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "train")), 32);
    assert_int_equal(json_integer_value(json_object_get(counts, "valid")), 8);
    assert_int_equal(json_integer_value(json_object_get(counts, "test")), 3);
    json_decref(d);
    env_close(&e);
}

static void every_kind_runs_and_records(void **state)
{
    (void)state;
    env e;
    env_open(&e, 0);
    int64_t run = make_run(&e, NULL);
    int64_t fr = submit(e.jq, run, JOB_FREEZE, "{\"to\":1}");
    int64_t lf = submit(e.jq, run, JOB_LR_FIND, "{\"start_lr\":1e-4,\"end_lr\":1,\"num_it\":6}");
    int64_t fit = submit(e.jq, run, JOB_FIT, "{\"lrs\":0.01,\"n_cycle\":1,\"cycle_len\":1}");
    int64_t uf = submit(e.jq, run, JOB_UNFREEZE, "{}");
    int64_t rs = submit(e.jq, run, JOB_RESIZE, "{\"sz\":16}");
    int64_t tta = submit(e.jq, run, JOB_TTA, "{\"n_aug\":2}");
    int64_t pt = submit(e.jq, run, JOB_PREDICT_TEST, "{\"tta\":false}");
    int64_t rc = submit(e.jq, run, JOB_RECIPE, "{\"max_epochs\":1,\"n_aug\":2}");
    int64_t all[] = {fr, lf, fit, uf, rs, tta, pt, rc};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        json_t *j;
        const char *s = wait_final(e.st, all[i]);
        if (strcmp(s, "succeeded")) {
            state_of(e.st, all[i], &j);
            fail_msg("job %lld: %s: %s", (long long)all[i], s,
                     json_string_value(json_object_get(j, "error")));
        }
    }
    json_t *j;
    state_of(e.st, lf, &j);
    int64_t lr_find = json_integer_value(json_object_get(j, "lr_find"));
    assert_true(lr_find > 0);
    json_decref(j);
    assert_int_equal(store_lr_find_get(e.st, lr_find, &j), 0);
    assert_true(json_array_size(json_object_get(j, "points")) > 0);
    assert_true(json_is_object(json_object_get(j, "suggestions")));
    json_decref(j);

    assert_int_equal(store_metrics_get(e.st, run, "train_loss", -1, 1000, &j), 0);
    assert_true(json_array_size(json_object_get(j, "points")) >= 8); /* 32 images / bs 4 */
    json_decref(j);
    assert_int_equal(store_epochs_get(e.st, run, &j), 0);
    int fit_epochs = 0, recipe_epochs = 0;
    for (size_t i = 0; i < json_array_size(j); i++) {
        int64_t ej = json_integer_value(json_object_get(json_array_get(j, i), "job"));
        fit_epochs += ej == fit;
        recipe_epochs += ej == rc;
        assert_int_equal(json_integer_value(json_object_get(json_array_get(j, i), "epoch")),
                         (json_int_t)i); /* numbered across the run's jobs */
    }
    assert_int_equal(fit_epochs, 1);
    assert_true(recipe_epochs >= 1);
    json_decref(j);

    state_of(e.st, tta, &j);
    json_t *res = json_object_get(j, "result");
    double acc = json_number_value(json_object_get(res, "tta_accuracy"));
    assert_true(acc >= 0 && acc <= 1);
    /* The centre crop's accuracy by name, the passes run and whether TTA did worse. */
    assert_true(json_number_value(json_object_get(res, "centre_accuracy")) ==
                json_number_value(json_object_get(res, "accuracy")));
    assert_true(json_is_integer(json_object_get(res, "passes_run")));
    assert_true(json_is_boolean(json_object_get(res, "tta_worse")));
    assert_true(json_is_true(json_object_get(res, "tta_worse")) ==
                (acc < json_number_value(json_object_get(res, "accuracy"))));
    json_decref(j);

    /* The recipe's own sweeps are recorded as sweeps of its job, each closed and with
     * the engine's four suggestions. */
    state_of(e.st, rc, &j);
    assert_true(json_is_real(json_object_get(json_object_get(j, "result"), "tta_accuracy")));
    json_decref(j);
    assert_int_equal(store_lr_find_list(e.st, run, NULL, &j), 0);
    int recipe_sweeps = 0;
    for (size_t i = 0; i < json_array_size(json_object_get(j, "items")); i++) {
        json_t *it = json_array_get(json_object_get(j, "items"), i);
        if (json_integer_value(json_object_get(it, "job")) != rc)
            continue;
        recipe_sweeps++;
        assert_true(json_is_real(json_object_get(it, "finished_at")));
        json_t *one;
        assert_int_equal(store_lr_find_get(e.st, json_integer_value(json_object_get(it, "id")),
                                           &one), 0);
        assert_int_equal(json_array_size(json_object_get(one, "points")),
                         json_integer_value(json_object_get(one, "num_it")));
        assert_true(json_array_size(json_object_get(one, "points")) > 0);
        json_t *sug = json_object_get(one, "suggestions");
        const char *names[] = {"min_div10", "steep", "valley", "slide"};
        for (int s = 0; s < 4; s++) {
            json_t *g = json_object_get(sug, names[s]);
            assert_true(json_number_value(json_object_get(g, "lr")) > 0);
            assert_true(strlen(json_string_value(json_object_get(g, "reason"))) > 0);
        }
        json_decref(one);
    }
    json_decref(j);
    assert_true(recipe_sweeps >= 1);

    char *csv = NULL;
    assert_int_equal(store_prediction_path(e.st, pt, &csv), 0);
    FILE *f = fopen(csv, "r");
    assert_non_null(f);
    int lines = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        lines += c == '\n';
    fclose(f);
    assert_int_equal(lines, 4); /* header + 3 test images */
    free(csv);

    /* The run's state and weights were saved after the jobs that change them. */
    assert_int_equal(store_run_get(e.st, run, &j), 0);
    json_t *st = json_object_get(j, "state");
    assert_int_equal(json_integer_value(json_object_get(st, "freeze_to")), 0);
    assert_int_equal(json_integer_value(json_object_get(st, "sz")), 16);
    json_decref(j);
    char *w = NULL;
    assert_int_equal(jobs_weights_path(e.jq, run, &w), 0);
    assert_int_equal(access(w, R_OK), 0);
    free(w);

    /* Synchronous prediction from the saved weights. */
    char png[300];
    snprintf(png, sizeof png, "%s/test/t1.png", ds_dir);
    f = fopen(png, "rb");
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char err[512] = "";
    assert_int_equal(jobs_predict_image(e.jq, run, buf, n, 0, &j, err, sizeof err), 0);
    json_t *probs = json_object_get(j, "probs");
    assert_int_equal(json_array_size(probs), 2);
    double sum = json_number_value(json_array_get(probs, 0)) +
                 json_number_value(json_array_get(probs, 1));
    assert_true(fabs(sum - 1) < 1e-4);
    json_decref(j);
    assert_int_equal(jobs_predict_image(e.jq, run, "not an image", 12, 0, &j, err, sizeof err),
                     -EINVAL);
    assert_int_equal(jobs_predict_image(e.jq, run + 9, buf, n, 0, &j, err, sizeof err), -ENOENT);

    /* A failing job reports why and the queue carries on. */
    /* (A body the parser refuses never reaches the queue: this one is refused by the
     * engine, as the run has no pretrained body to precompute.) */
    int64_t bad = submit(e.jq, run, JOB_PRECOMPUTE, "{\"on\":true}");
    assert_string_equal(wait_final(e.st, bad), "failed");
    state_of(e.st, bad, &j);
    assert_true(strlen(json_string_value(json_object_get(j, "error"))) > 0);
    json_decref(j);
    int64_t after = submit(e.jq, run, JOB_UNFREEZE, "{}");
    assert_string_equal(wait_final(e.st, after), "succeeded");
    job_params tp;
    job_params_defaults(JOB_TTA, &tp);
    assert_int_equal(jobs_submit(e.jq, run + 50, &tp, &after), -ENOENT);
    env_close(&e);
}

static void cancel_queued_and_running(void **state)
{
    (void)state;
    env e;
    env_open(&e, 0);
    int64_t run = make_run(&e, NULL);
    int64_t lng = submit(e.jq, run, JOB_FIT, "{\"lrs\":0.01,\"n_cycle\":50,\"cycle_len\":4}");
    int64_t q = submit(e.jq, run, JOB_TTA, "{\"n_aug\":2}");
    assert_int_equal(jobs_cancel(e.jq, q), 0);
    assert_string_equal(state_of(e.st, q, NULL), "cancelled");
    assert_int_equal(jobs_cancel(e.jq, q), -EALREADY);
    assert_int_equal(jobs_cancel(e.jq, q + 100), -ENOENT);
    wait_training(e.st, run, lng, 0);
    assert_int_equal(jobs_running(e.jq), lng);
    assert_int_equal(jobs_delete_run(e.jq, run), -EBUSY);
    assert_int_equal(jobs_cancel(e.jq, lng), 0);
    assert_string_equal(wait_final(e.st, lng), "cancelled");
    json_t *j;
    assert_int_equal(store_epochs_get(e.st, run, &j), 0);
    assert_true(json_array_size(j) < 200); /* 50 cycles of 4 epochs asked */
    json_decref(j);
    /* The queue still works after a cancellation. */
    int64_t next = submit(e.jq, run, JOB_UNFREEZE, "{}");
    assert_string_equal(wait_final(e.st, next), "succeeded");

    char rdir[200];
    snprintf(rdir, sizeof rdir, "%s/runs/%lld", data_dir, (long long)run);
    assert_int_equal(access(rdir, F_OK), 0);
    assert_int_equal(jobs_delete_run(e.jq, run), 0);
    assert_int_equal(access(rdir, F_OK), -1);
    assert_int_equal(store_run_get(e.st, run, &j), -ENOENT);
    assert_int_equal(jobs_delete_run(e.jq, run), -ENOENT);
    env_close(&e);
}

static void stop_interrupts_and_resume_continues(void **state)
{
    (void)state;
    env e;
    env_open(&e, 0);
    int64_t run = make_run(&e, NULL);
    int64_t fit = submit(e.jq, run, JOB_FIT, "{\"lrs\":0.01,\"n_cycle\":50,\"cycle_len\":4}");
    int64_t waiting = submit(e.jq, run, JOB_TTA, "{\"n_aug\":2}");
    wait_training(e.st, run, fit, 1);
    assert_int_equal(jobs_stop(e.jq, 8), 0);
    assert_string_equal(state_of(e.st, fit, NULL), "interrupted");
    assert_true(has_checkpoint(e.st, run, fit));
    assert_string_equal(state_of(e.st, waiting, NULL), "queued");
    int64_t id;
    job_params tta;
    job_params_defaults(JOB_TTA, &tta);
    assert_int_equal(jobs_submit(e.jq, run, &tta, &id), -ESHUTDOWN);
    assert_int_equal(jobs_stop(e.jq, 8), 0); /* idempotent */
    env_close(&e);

    /* The next start with --resume: the fit continues first, then the queued job. */
    env_open(&e, 1);
    int64_t from;
    int64_t resumed = newest_job(e.st, run, &from);
    assert_int_equal(from, fit);
    /* It runs with the interrupted job's params, defaults filled in. */
    json_t *was, *now;
    assert_int_equal(store_job_get(e.st, fit, &was), 0);
    assert_int_equal(store_job_get(e.st, resumed, &now), 0);
    assert_true(json_equal(json_object_get(was, "params"), json_object_get(now, "params")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(now, "params"),
                                                          "schedule")), "sgdr");
    json_decref(was);
    json_decref(now);
    cancel_training(&e, run, resumed, 0);
    assert_string_equal(wait_final(e.st, waiting), "succeeded");

    /* A fit stopped before its first epoch ended resumes too: it starts over. */
    int64_t early = submit(e.jq, run, JOB_FIT, "{\"lrs\":0.01,\"n_cycle\":50,\"cycle_len\":4}");
    wait_training(e.st, run, early, 0);
    assert_int_equal(jobs_stop(e.jq, 8), 0);
    env_close(&e);
    env_open(&e, 1);
    resumed = newest_job(e.st, run, &from);
    cancel_training(&e, run, resumed, 1);
    /* Only interrupted jobs resume, each once. */
    assert_int_equal(jobs_resume(e.jq, waiting, &id), -EINVAL);
    assert_int_equal(jobs_resume(e.jq, fit + 100, &id), -ENOENT);
    env_close(&e);
}

static void kill_9_mid_fit_then_resume(void **state)
{
    (void)state;
    env e;
    env_open(&e, 0);
    int64_t run = make_run(&e, NULL);
    env_close(&e);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        env_open(&e, 0);
        int64_t id;
        job_params p;
        job_params_defaults(JOB_FIT, &p);
        p.fit.lrs = (spec_numbers){.n = 1, .v = {0.01}};
        p.fit.n_cycle = 50;
        p.fit.cycle_len = 4;
        if (jobs_submit(e.jq, run, &p, &id))
            _exit(3);
        for (;;)
            pause();
    }
    /* Watch from this process until the child's fit has two epochs, then kill it: an epoch
     * is reported before its checkpoint is written, so the second report is what proves
     * that the first epoch's checkpoint is on disk. */
    store *st;
    char err[256];
    assert_int_equal(store_open(&st, dbpath, NULL, err, sizeof err), 0);
    int64_t fit = 0;
    for (int i = 0; i < 6000 && !fit; i++) {
        json_t *ep;
        assert_int_equal(store_epochs_get(st, run, &ep), 0);
        if (json_array_size(ep) > 1)
            fit = json_integer_value(json_object_get(json_array_get(ep, 0), "job"));
        json_decref(ep);
        if (!fit)
            usleep(20000);
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    store_close(st);
    assert_true(fit > 0);
    assert_true(WIFSIGNALED(status));

    env_open(&e, 1);
    assert_string_equal(state_of(e.st, fit, NULL), "interrupted");
    assert_true(has_checkpoint(e.st, run, fit));
    int64_t from;
    int64_t resumed = newest_job(e.st, run, &from);
    assert_int_equal(from, fit);
    cancel_training(&e, run, resumed, 1);
    env_close(&e);
}

/* A job's stored params are read back with the parser that checked them at submit: a
 * queued row whose schedule is unknown (here written straight to the store, as an older
 * version or a hand-edited database could leave it) fails when the restarted queue runs
 * it, naming the field, instead of running another schedule. */
static void stored_params_are_checked_after_restart(void **state)
{
    (void)state;
    env e;
    char err[256];
    env_open(&e, 0);
    int64_t run = make_run(&e, NULL);
    env_close(&e);

    store *st;
    int64_t id = 0;
    assert_int_equal(store_open(&st, dbpath, NULL, err, sizeof err), 0);
    json_t *p = json_pack("{sf si ss}", "lrs", 0.01, "n_cycle", 1, "schedule", "cosine");
    assert_int_equal(store_job_create(st, run, "fit", p, 0, &id), 0);
    json_decref(p);
    store_close(st);

    json_t *j;
    env_open(&e, 0);
    assert_string_equal(wait_final(e.st, id), "failed");
    state_of(e.st, id, &j);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "schedule"));
    json_decref(j);
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(job_kind_names_round_trip),
        cmocka_unit_test_setup_teardown(registering_datasets, setup, teardown),
        cmocka_unit_test_setup_teardown(every_kind_runs_and_records, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_queued_and_running, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_interrupts_and_resume_continues, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_9_mid_fit_then_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(stored_params_are_checked_after_restart, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
