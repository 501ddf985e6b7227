/* test_store.c: the SQLite store: schema and migration, every query, paging, events,
 * batched metric commits, concurrent readers, fault injection and kill -9 recovery. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"

typedef struct fixture {
    char dir[64];
    char path[96];
    store *st;
} fixture;

static void rm_dir(const char *dir)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sgdrd-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/sgdrd.db", f->dir);
    char err[256];
    store_options o = {.sync_normal = 1};
    assert_int_equal(store_open(&f->st, f->path, &o, err, sizeof err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->st);
    rm_dir(f->dir);
    free(f);
    return 0;
}

/* Raw SQLite access for checks the store does not expose (integrity, user_version). */
static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static int integrity_ok(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), 0);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int ok = strcmp((const char *)sqlite3_column_text(s, 0), "ok") == 0;
    sqlite3_finalize(s);
    sqlite3_close(db);
    return ok;
}

static int64_t make_dataset(store *st, const char *name)
{
    int64_t id = 0;
    json_t *info = json_pack("{s[ss] si}", "classes", "a", "b", "n", 2);
    store_dataset_new d = {.name = name, .path = "/data/x", .format = "folders",
                           .info = info};
    assert_int_equal(store_dataset_create(st, &d, &id), 0);
    json_decref(info);
    assert_true(id > 0);
    return id;
}

static int64_t make_run(store *st, int64_t ds)
{
    int64_t id = 0;
    json_t *cfg = json_pack("{si si}", "sz", 28, "bs", 64);
    assert_int_equal(store_run_create(st, ds, 0, "resnet_small", cfg, &id), 0);
    json_decref(cfg);
    return id;
}

static int64_t make_job(store *st, int64_t run, const char *kind)
{
    int64_t id = 0;
    assert_int_equal(store_job_create(st, run, kind, NULL, 0, &id), 0);
    return id;
}

static int64_t jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_non_null(v);
    return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* ---- schema --------------------------------------------------------------------------- */

static void fresh_database_has_current_schema(void **state)
{
    fixture *f = *state;
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), store_schema_current());
    assert_true(store_schema_current() >= 2);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                      "('datasets','runs','jobs','lr_finds','lr_find_points',"
                                      "'metrics','epochs','snapshots','models','events',"
                                      "'predictions','interpretations','metric_summaries')"),
                     13);
    store_close(f->st);
    f->st = NULL;
    char err[256];
    /* Reopening an up-to-date database changes nothing. */
    assert_int_equal(store_open(&f->st, f->path, NULL, err, sizeof err), 0);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), store_schema_current());
}

static void migrates_from_version_1_keeping_rows(void **state)
{
    fixture *f = *state;
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/old.db", f->dir);
    assert_int_equal(store_test_create_at_version(path, 1, err, sizeof err), 0);
    assert_int_equal(sql_int(path, "PRAGMA user_version"), 1);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
        "INSERT INTO datasets(name, path, format, created_at) VALUES ('old', '/d', 'idx', 1);"
        "INSERT INTO runs(dataset_id, arch, config, created_at) VALUES (1, 'resnet18', '{}', 1);"
        "INSERT INTO jobs(run_id, kind, state, created_at) VALUES (1, 'fit', 'queued', 1);"
        "INSERT INTO epochs(run_id, job_id, epoch, fit_epoch, cycle, accuracy, time) "
        "VALUES (1, 1, 0, 0, 0, 0.5, 1);",
        NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    store *st;
    assert_int_equal(store_open(&st, path, NULL, err, sizeof err), 0);
    assert_int_equal(sql_int(path, "PRAGMA user_version"), store_schema_current());
    json_t *j;
    assert_int_equal(store_job_get(st, 1, &j), 0);
    assert_string_equal(jstr(j, "state"), "queued");
    assert_true(json_is_null(json_object_get(j, "resumed_from"))); /* the v2 column */
    json_decref(j);
    assert_int_equal(store_run_get(st, 1, &j), 0);
    assert_string_equal(jstr(j, "arch"), "resnet18");
    json_decref(j);
    /* The v5 columns: a dataset stored before them was scanned already. */
    assert_int_equal(store_dataset_get(st, 1, &j), 0);
    assert_string_equal(jstr(j, "state"), "ready");
    assert_int_equal(jint(j, "progress"), 0);
    json_decref(j);
    /* The v3 column: an epoch recorded before it has no step. */
    assert_int_equal(store_epochs_get(st, 1, &j), 0);
    assert_int_equal(json_array_size(j), 1);
    assert_true(json_is_null(json_object_get(json_array_get(j, 0), "step")));
    json_decref(j);
    /* v2 tables work on the migrated file. */
    assert_int_equal(store_job_start(st, 1), 0);
    assert_int_equal(store_events_after(st, 1, 0, 10, &j), 0);
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    store_close(st);
}

static void newer_schema_is_refused(void **state)
{
    fixture *f = *state;
    char path[128], err[256] = "";
    snprintf(path, sizeof path, "%s/new.db", f->dir);
    assert_int_equal(store_test_create_at_version(path, store_schema_current(), err,
                                                  sizeof err), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), 0);
    sqlite3_close(db);
    store *st = (store *)1;
    assert_int_equal(store_open(&st, path, NULL, err, sizeof err), -EINVAL);
    assert_null(st);
    assert_non_null(strstr(err, "newer"));
}

static void unopenable_path_is_an_error(void **state)
{
    (void)state;
    store *st;
    char err[256] = "";
    assert_true(store_open(&st, "/nonexistent-dir/x/y.db", NULL, err, sizeof err) < 0);
    assert_null(st);
    assert_non_null(strstr(err, "/nonexistent-dir/x/y.db"));
}

/* ---- datasets and models ------------------------------------------------------------------ */

/* A dataset stored as scanning shows its progress, then ends ready with the scan's info or
 * failed with the reason; an ended row is left alone; rows still scanning are listed. */
static void dataset_scan_states(void **state)
{
    fixture *f = *state;
    int64_t a, b, *ids = NULL;
    int n = 0;
    json_t *j, *info = json_pack("{s[s]}", "classes", "x");
    store_dataset_new d = {.name = "big", .path = "/d/big", .format = "csv", .scanning = 1};
    assert_int_equal(store_dataset_create(f->st, &d, &a), 0);
    d.name = "bad";
    assert_int_equal(store_dataset_create(f->st, &d, &b), 0);
    assert_int_equal(store_dataset_get(f->st, a, &j), 0);
    assert_string_equal(jstr(j, "state"), "scanning");
    assert_int_equal(jint(j, "progress"), 0);
    json_decref(j);
    assert_int_equal(store_dataset_scanning(f->st, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], a);
    assert_int_equal(ids[1], b);
    free(ids);

    assert_int_equal(store_dataset_progress(f->st, a, 1234), 0);
    assert_int_equal(store_dataset_finish(f->st, a, info, NULL), 0);
    assert_int_equal(store_dataset_finish(f->st, b, NULL, "labels.csv: line 3: no file"), 0);
    assert_int_equal(store_dataset_finish(f->st, b, info, "both"), -EINVAL);
    assert_int_equal(store_dataset_finish(f->st, b, info, NULL), -ENOENT); /* ended */
    assert_int_equal(store_dataset_progress(f->st, a, 99), -ENOENT);

    assert_int_equal(store_dataset_get(f->st, a, &j), 0);
    assert_string_equal(jstr(j, "state"), "ready");
    assert_int_equal(jint(j, "progress"), 1234);
    assert_true(json_is_null(json_object_get(j, "error")));
    assert_int_equal(json_array_size(json_object_get(json_object_get(j, "info"), "classes")),
                     1);
    json_decref(j);
    assert_int_equal(store_dataset_get(f->st, b, &j), 0);
    assert_string_equal(jstr(j, "state"), "failed");
    assert_string_equal(jstr(j, "error"), "labels.csv: line 3: no file");
    json_decref(j);
    assert_int_equal(store_dataset_scanning(f->st, &ids, &n), 0);
    assert_int_equal(n, 0);
    free(ids);
    json_decref(info);
}

static void datasets_crud(void **state)
{
    fixture *f = *state;
    int64_t a = make_dataset(f->st, "fashion");
    int64_t id;
    store_dataset_new dup = {.name = "fashion", .path = "/p", .format = "idx"};
    assert_int_equal(store_dataset_create(f->st, &dup, &id), -EEXIST);
    store_dataset_new bad = {.name = "x", .path = "/p", .format = "zip"};
    assert_int_equal(store_dataset_create(f->st, &bad, &id), -EINVAL);

    json_t *j;
    assert_int_equal(store_dataset_get(f->st, a, &j), 0);
    assert_string_equal(jstr(j, "name"), "fashion");
    assert_string_equal(jstr(j, "format"), "folders");
    assert_int_equal(json_array_size(json_object_get(json_object_get(j, "info"), "classes")),
                     2);
    assert_true(json_is_false(json_object_get(j, "uploaded")));
    assert_int_equal(jint(j, "runs"), 0);
    json_decref(j);
    assert_int_equal(store_dataset_get(f->st, a + 100, &j), -ENOENT);

    assert_int_equal(store_dataset_find(f->st, "fashion", &id), 0);
    assert_int_equal(id, a);
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)a);
    assert_int_equal(store_dataset_find(f->st, num, &id), 0);
    assert_int_equal(id, a);
    assert_int_equal(store_dataset_find(f->st, "nope", &id), -ENOENT);

    int64_t run = make_run(f->st, a);
    char *path = NULL;
    assert_int_equal(store_dataset_delete(f->st, a, &path), -EBUSY);
    assert_int_equal(store_dataset_get(f->st, a, &j), 0);
    assert_int_equal(jint(j, "runs"), 1);
    json_decref(j);
    assert_int_equal(store_run_delete(f->st, run), 0);
    assert_int_equal(store_dataset_delete(f->st, a, &path), 0);
    assert_null(path); /* not uploaded: the files are not ours to remove */
    assert_int_equal(store_dataset_delete(f->st, a, &path), -ENOENT);

    store_dataset_new up = {.name = "up", .path = "/var/uploads/1", .format = "folders",
                            .uploaded = 1};
    assert_int_equal(store_dataset_create(f->st, &up, &id), 0);
    assert_true(id > a); /* ids are never reused */
    assert_int_equal(store_dataset_delete(f->st, id, &path), 0);
    assert_string_equal(path, "/var/uploads/1");
    free(path);
}

static void models_crud(void **state)
{
    fixture *f = *state;
    int64_t m, m2, ds = make_dataset(f->st, "d");
    json_t *info = json_pack("{si}", "tensors", 122);
    assert_int_equal(store_model_create(f->st, "r34", "resnet34", "/m/1.st", 1234, info, &m),
                     0);
    json_decref(info);
    assert_int_equal(store_model_create(f->st, "r34", "resnet34", "/m/2.st", 1, NULL, &m2),
                     -EEXIST);
    json_t *j;
    assert_int_equal(store_model_get(f->st, m, &j), 0);
    assert_string_equal(jstr(j, "arch"), "resnet34");
    assert_int_equal(jint(j, "bytes"), 1234);
    assert_int_equal(jint(json_object_get(j, "info"), "tensors"), 122);
    json_decref(j);
    assert_int_equal(store_model_list(f->st, NULL, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    json_decref(j);

    int64_t run;
    assert_int_equal(store_run_create(f->st, ds, m, "resnet34", NULL, &run), 0);
    assert_int_equal(store_run_create(f->st, ds, m + 7, "resnet34", NULL, &run), -ENOENT);
    char *path = NULL;
    assert_int_equal(store_model_delete(f->st, m, &path), -EBUSY);
    assert_null(path);
    assert_int_equal(store_run_delete(f->st, run), 0);
    assert_int_equal(store_model_delete(f->st, m, &path), 0);
    assert_string_equal(path, "/m/1.st");
    free(path);
    assert_int_equal(store_model_get(f->st, m, &j), -ENOENT);
}

/* ---- paging ------------------------------------------------------------------------------- */

static void lists_page_through_everything_once(void **state)
{
    fixture *f = *state;
    enum { N = 23 };
    int64_t ids[N];
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "ds%d", i);
        ids[i] = make_dataset(f->st, name);
    }
    int seen = 0;
    char token[64] = "";
    int64_t prev = INT64_MAX;
    for (int page = 0; page < 10; page++) {
        store_page pg = {.limit = 5, .page_token = token};
        json_t *j;
        assert_int_equal(store_dataset_list(f->st, &pg, &j), 0);
        json_t *items = json_object_get(j, "items");
        assert_true(json_array_size(items) <= 5);
        for (size_t i = 0; i < json_array_size(items); i++) {
            int64_t id = jint(json_array_get(items, i), "id");
            assert_true(id < prev); /* newest first, no repeats */
            assert_int_equal(id, ids[N - 1 - seen]);
            prev = id;
            seen++;
        }
        json_t *next = json_object_get(j, "next_page_token");
        if (!next) {
            json_decref(j);
            break;
        }
        snprintf(token, sizeof token, "%s", json_string_value(next));
        json_decref(j);
    }
    assert_int_equal(seen, N);

    json_t *j;
    store_page exact = {.limit = N};
    assert_int_equal(store_dataset_list(f->st, &exact, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "items")), N);
    assert_null(json_object_get(j, "next_page_token"));
    json_decref(j);

    const char *bad[] = {"zz", "c", "c-1", "cxyz", "c0", "c12345678901234567890"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        store_page pg = {.limit = 5, .page_token = bad[i]};
        assert_int_equal(store_dataset_list(f->st, &pg, &j), -EINVAL);
    }
    store_page big = {.limit = STORE_PAGE_MAX + 1};
    assert_int_equal(store_run_list(f->st, &big, &j), -EINVAL);
    store_page neg = {.limit = -1};
    assert_int_equal(store_job_list(f->st, 0, NULL, &neg, &j), -EINVAL);
}

/* ---- runs and jobs ------------------------------------------------------------------------ */

static void runs_crud_and_cascade(void **state)
{
    fixture *f = *state;
    int64_t ds = make_dataset(f->st, "d");
    int64_t run, missing;
    assert_int_equal(store_run_create(f->st, ds + 50, 0, "resnet18", NULL, &missing), -ENOENT);
    run = make_run(f->st, ds);

    json_t *j;
    assert_int_equal(store_run_get(f->st, run, &j), 0);
    assert_int_equal(jint(j, "dataset"), ds);
    assert_true(json_is_null(json_object_get(j, "model")));
    assert_int_equal(jint(json_object_get(j, "config"), "sz"), 28);
    assert_true(json_is_null(json_object_get(j, "current_job")));
    assert_true(json_is_null(json_object_get(j, "best")));
    assert_int_equal(jint(j, "epochs"), 0);
    json_decref(j);

    json_t *stt = json_pack("{si si sb}", "freeze_to", 2, "sz", 28, "precompute", 1);
    assert_int_equal(store_run_set_state(f->st, run, stt), 0);
    assert_int_equal(store_run_set_state(f->st, run + 9, stt), -ENOENT);
    json_decref(stt);

    int64_t j1 = make_job(f->st, run, "fit");
    int64_t j2 = make_job(f->st, run, "tta");
    assert_int_equal(store_run_get(f->st, run, &j), 0);
    assert_int_equal(jint(json_object_get(j, "state"), "freeze_to"), 2);
    assert_int_equal(jint(json_object_get(j, "current_job"), "id"), j1);
    json_decref(j);
    assert_int_equal(store_job_start(f->st, j1), 0);
    store_epoch e = {0, 0, 0.9, 0.7, 0.75, -1, 10, 1000, 0};
    assert_int_equal(store_epoch_add(f->st, run, j1, &e, NULL), 0);
    e.valid_loss = 0.5;
    e.accuracy = 0.8;
    e.fit_epoch = 1;
    assert_int_equal(store_epoch_add(f->st, run, j1, &e, NULL), 0);
    e.valid_loss = 0.6;
    e.fit_epoch = 2;
    assert_int_equal(store_epoch_add(f->st, run, j1, &e, NULL), 0);
    assert_int_equal(store_run_get(f->st, run, &j), 0);
    json_t *best = json_object_get(j, "best");
    assert_int_equal(jint(best, "epoch"), 1);
    assert_true(fabs(json_real_value(json_object_get(best, "valid_loss")) - 0.5) < 1e-9);
    assert_int_equal(jint(j, "epochs"), 3);
    json_decref(j);

    assert_int_equal(store_run_delete(f->st, run), -EBUSY);
    assert_int_equal(store_job_finish(f->st, j1, "succeeded", NULL, NULL), 0);
    assert_int_equal(store_run_delete(f->st, run), -EBUSY); /* j2 still queued */
    assert_int_equal(store_job_finish(f->st, j2, "cancelled", NULL, NULL), 0);
    const char *k[] = {"train_loss"};
    double v[] = {1.0};
    assert_int_equal(store_metrics_push(f->st, run, j1, 1, 1, k, v), 0);
    assert_int_equal(store_run_delete(f->st, run), 0);
    assert_int_equal(store_run_get(f->st, run, &j), -ENOENT);
    assert_int_equal(store_job_get(f->st, j1, &j), -ENOENT);
    assert_int_equal(store_epochs_get(f->st, run, &j), -ENOENT);
    assert_int_equal(store_run_delete(f->st, run), -ENOENT);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM metrics"), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM events"), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM epochs"), 0);
}

static void job_state_machine(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t id;
    assert_int_equal(store_job_create(f->st, run, "dance", NULL, 0, &id), -EINVAL);
    assert_int_equal(store_job_create(f->st, run + 5, "fit", NULL, 0, &id), -ENOENT);
    json_t *params = json_pack("{sf si}", "lrs", 0.01, "n_cycle", 3);
    assert_int_equal(store_job_create(f->st, run, "fit", params, 0, &id), 0);
    json_decref(params);

    json_t *j;
    assert_int_equal(store_job_get(f->st, id, &j), 0);
    assert_string_equal(jstr(j, "state"), "queued");
    assert_string_equal(jstr(j, "kind"), "fit");
    assert_int_equal(jint(json_object_get(j, "params"), "n_cycle"), 3);
    assert_true(json_is_null(json_object_get(j, "started_at")));
    json_decref(j);

    assert_int_equal(store_job_finish(f->st, id, "succeeded", NULL, NULL), -EALREADY);
    assert_int_equal(store_job_finish(f->st, id, "interrupted", NULL, NULL), -EALREADY);
    assert_int_equal(store_job_finish(f->st, id, "queued", NULL, NULL), -EINVAL);
    assert_int_equal(store_job_start(f->st, id), 0);
    assert_int_equal(store_job_start(f->st, id), -EALREADY);
    assert_int_equal(store_job_start(f->st, id + 100), -ENOENT);

    assert_int_equal(store_job_progress(f->st, id, 0.25, 30), 0);
    assert_int_equal(store_job_progress(f->st, id, 0.5, 20), 0);
    assert_int_equal(store_flush(f->st), 0);
    assert_int_equal(store_job_get(f->st, id, &j), 0);
    assert_string_equal(jstr(j, "state"), "running");
    assert_true(fabs(json_real_value(json_object_get(j, "progress")) - 0.5) < 1e-9);
    assert_true(fabs(json_real_value(json_object_get(j, "eta_s")) - 20) < 1e-9);
    json_decref(j);

    json_t *res = json_pack("{sf sf}", "accuracy", 0.9, "tta_accuracy", 0.91);
    assert_int_equal(store_job_finish(f->st, id, "failed", "diverged: loss is NaN", res), 0);
    json_decref(res);
    assert_int_equal(store_job_finish(f->st, id, "cancelled", NULL, NULL), -EALREADY);
    assert_int_equal(store_job_get(f->st, id, &j), 0);
    assert_string_equal(jstr(j, "state"), "failed");
    assert_string_equal(jstr(j, "error"), "diverged: loss is NaN");
    assert_true(json_is_real(json_object_get(json_object_get(j, "result"), "accuracy")));
    assert_true(json_is_null(json_object_get(j, "eta_s")));
    json_decref(j);
    /* Progress of a finished job is not written back. */
    assert_int_equal(store_job_progress(f->st, id, 0.7, 1), 0);
    assert_int_equal(store_flush(f->st), 0);
    assert_int_equal(store_job_get(f->st, id, &j), 0);
    assert_true(fabs(json_real_value(json_object_get(j, "progress")) - 0.5) < 1e-9);
    json_decref(j);

    int64_t ok = make_job(f->st, run, "tta");
    assert_int_equal(store_job_start(f->st, ok), 0);
    assert_int_equal(store_job_finish(f->st, ok, "succeeded", NULL, NULL), 0);
    assert_int_equal(store_job_get(f->st, ok, &j), 0);
    assert_true(fabs(json_real_value(json_object_get(j, "progress")) - 1) < 1e-9);
    assert_non_null(json_object_get(j, "finished_at"));
    json_decref(j);

    store_job_row row;
    assert_int_equal(store_job_row_get(f->st, id, &row), 0);
    assert_int_equal(row.run_id, run);
    assert_string_equal(row.kind, "fit");
    assert_string_equal(row.state, "failed");
    assert_int_equal(json_integer_value(json_object_get(row.params, "n_cycle")), 3);
    store_job_row_clear(&row);
    assert_int_equal(store_job_row_get(f->st, id + 100, &row), -ENOENT);
    store_job_row_clear(&row);
}

static void startup_recovery_queries(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t a = make_job(f->st, run, "fit");
    int64_t b = make_job(f->st, run, "lr_find");
    int64_t c = make_job(f->st, run, "tta");
    assert_int_equal(store_job_start(f->st, a), 0);
    int n = -1;
    assert_int_equal(store_jobs_interrupt_running(f->st, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_jobs_interrupt_running(f->st, &n), 0);
    assert_int_equal(n, 0);
    json_t *j;
    assert_int_equal(store_job_get(f->st, a, &j), 0);
    assert_string_equal(jstr(j, "state"), "interrupted");
    json_decref(j);

    int64_t *ids;
    assert_int_equal(store_jobs_queued(f->st, &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], b);
    assert_int_equal(ids[1], c);
    free(ids);

    assert_int_equal(store_jobs_resumable(f->st, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], a);
    free(ids);
    int64_t r;
    assert_int_equal(store_job_create(f->st, run, "fit", NULL, a, &r), 0);
    assert_int_equal(store_jobs_resumable(f->st, &ids, &n), 0);
    assert_int_equal(n, 0);
    assert_null(ids);
    assert_int_equal(store_job_get(f->st, r, &j), 0);
    assert_int_equal(jint(j, "resumed_from"), a);
    json_decref(j);

    assert_int_equal(store_job_list(f->st, run, "queued", NULL, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 3);
    json_decref(j);
    assert_int_equal(store_job_list(f->st, run, "interrupted", NULL, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    json_decref(j);
    assert_int_equal(store_job_list(f->st, run + 1, NULL, NULL, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
    json_decref(j);
    store_page two = {.limit = 2};
    assert_int_equal(store_job_list(f->st, 0, NULL, &two, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
    assert_int_equal(jint(json_array_get(json_object_get(j, "items"), 0), "id"), r);
    assert_non_null(json_object_get(j, "next_page_token"));
    json_decref(j);
}

static void interpretations_replace_and_cascade(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t job = make_job(f->st, run, "fit");
    json_t *j = NULL;
    char *w = NULL;
    assert_int_equal(store_interpretation_get(f->st, run, 1, &j), -ENOENT);
    assert_int_equal(store_interpretation_weights(f->st, run, &w), -ENOENT);
    json_t *sum = json_pack("{si}", "n", 2), *items = json_pack("[{si}{si}]", "index", 1,
                                                                 "index", 0);
    assert_int_equal(store_interpretation_put(f->st, run, job, "w1", sum, items), 0);
    assert_int_equal(store_interpretation_put(f->st, run + 9, job, "w1", sum, items),
                     -ENOENT);
    assert_int_equal(store_interpretation_weights(f->st, run, &w), 0);
    assert_string_equal(w, "w1");
    free(w);
    assert_int_equal(store_interpretation_get(f->st, run, 0, &j), 0);
    assert_null(json_object_get(j, "items"));
    assert_int_equal(jint(json_object_get(j, "summary"), "n"), 2);
    assert_int_equal(jint(j, "job"), job);
    json_decref(j);
    /* new weights replace the row */
    assert_int_equal(store_interpretation_put(f->st, run, 0, "w2", sum, items), 0);
    assert_int_equal(store_interpretation_get(f->st, run, 1, &j), 0);
    assert_string_equal(json_string_value(json_object_get(j, "weights")), "w2");
    assert_true(json_is_null(json_object_get(j, "job")));
    assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
    json_decref(j);
    json_decref(sum);
    json_decref(items);
    assert_int_equal(store_job_start(f->st, job), 0);
    assert_int_equal(store_job_finish(f->st, job, "cancelled", NULL, NULL), 0);
    assert_int_equal(store_run_delete(f->st, run), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM interpretations"), 0);
}

/* ---- lr finds, metrics, epochs, snapshots, predictions ------------------------------------ */

static void lr_find_with_points(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t job = make_job(f->st, run, "lr_find");
    int64_t lf, lf2;
    json_t *j;
    assert_int_equal(store_lr_find_create(f->st, run, job, 1e-5, 10, 100, &lf), 0);
    for (int i = 0; i < 50; i++)
        assert_int_equal(store_lr_find_point_push(f->st, lf, run, job, i, 1e-5 * pow(1.3, i),
                                                  2.0 - i * 0.01,
                                                  i == 49 ? NAN : 2.0 - i * 0.009), 0);
    json_t *sug = json_pack("{s{sfss}}", "valley", "lr", 3e-3, "reason", "the long valley");
    assert_int_equal(store_lr_find_finish(f->st, lf, sug, 1, 0, 0), 0);
    json_decref(sug);
    assert_int_equal(store_lr_find_finish(f->st, lf + 10, NULL, 0, 0, 0), -ENOENT);
    assert_int_equal(store_lr_find_create(f->st, run, job, 1e-5, 1e-5, 0, &lf2), 0);
    assert_int_equal(store_lr_find_finish(f->st, lf2, NULL, 0, 3.5, 42), 0);
    assert_int_equal(store_lr_find_get(f->st, lf2, &j), 0);
    assert_true(fabs(json_real_value(json_object_get(j, "end_lr")) - 3.5) < 1e-12);
    assert_int_equal(jint(j, "num_it"), 42);
    assert_true(json_is_null(json_object_get(j, "suggestions")));
    assert_non_null(json_object_get(j, "finished_at"));
    json_decref(j);

    assert_int_equal(store_lr_find_get(f->st, lf, &j), 0);
    assert_int_equal(jint(j, "job"), job);
    assert_true(json_is_true(json_object_get(j, "stopped_early")));
    json_t *pts = json_object_get(j, "points");
    assert_int_equal(json_array_size(pts), 50);
    for (int i = 0; i < 50; i++)
        assert_int_equal(jint(json_array_get(pts, (size_t)i), "iter"), i);
    assert_true(fabs(json_real_value(json_object_get(json_array_get(pts, 3), "lr")) -
                     1e-5 * pow(1.3, 3)) < 1e-15);
    assert_true(json_is_null(json_object_get(json_array_get(pts, 49), "smooth_loss")));
    assert_true(fabs(json_real_value(json_object_get(
                     json_object_get(json_object_get(j, "suggestions"), "valley"), "lr")) -
                     3e-3) < 1e-12);
    json_decref(j);

    assert_int_equal(store_job_get(f->st, job, &j), 0);
    assert_int_equal(jint(j, "lr_find"), lf2); /* a job's newest sweep */
    json_decref(j);
    assert_int_equal(store_lr_find_list(f->st, run, NULL, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
    assert_null(json_object_get(json_array_get(json_object_get(j, "items"), 0), "points"));
    json_decref(j);
    assert_int_equal(store_lr_find_get(f->st, lf2 + 1, &j), -ENOENT);
}

static void metrics_by_key_and_step(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t job = make_job(f->st, run, "fit");
    const char *keys[] = {"train_loss", "smooth_loss", "lr_0"};
    for (int s = 0; s < 100; s++) {
        double v[] = {1.0 / (s + 1), s == 7 ? INFINITY : 2.0 / (s + 1), 0.01};
        assert_int_equal(store_metrics_push(f->st, run, job, s, 3, keys, v), 0);
    }
    assert_int_equal(store_metrics_push(f->st, run, job, 0, 0, keys, NULL), -EINVAL);
    assert_int_equal(store_flush(f->st), 0);

    json_t *j;
    assert_int_equal(store_metrics_get(f->st, run, "train_loss", -1, 10, &j), 0);
    json_t *pts = json_object_get(j, "points");
    assert_int_equal(json_array_size(pts), 10);
    assert_int_equal(jint(json_array_get(pts, 0), "step"), 0);
    assert_string_equal(jstr(json_array_get(pts, 0), "key"), "train_loss");
    assert_true(fabs(json_real_value(json_object_get(json_array_get(pts, 4), "value")) - 0.2)
                < 1e-12);
    assert_int_equal(jint(j, "next_after_step"), 9);
    json_decref(j);

    /* Walk every page of one key. */
    int64_t after = -1;
    int total = 0;
    for (;;) {
        assert_int_equal(store_metrics_get(f->st, run, "smooth_loss", after, 30, &j), 0);
        pts = json_object_get(j, "points");
        for (size_t i = 0; i < json_array_size(pts); i++) {
            int64_t s = jint(json_array_get(pts, i), "step");
            assert_int_equal(s, total);
            if (s == 7)
                assert_true(json_is_null(json_object_get(json_array_get(pts, i), "value")));
            total++;
        }
        json_t *next = json_object_get(j, "next_after_step");
        if (json_is_null(next)) {
            json_decref(j);
            break;
        }
        after = json_integer_value(next);
        json_decref(j);
    }
    assert_int_equal(total, 100);

    /* All keys: a page never splits a step, so paging by step loses nothing. */
    after = -1;
    total = 0;
    for (int guard = 0; guard < 100; guard++) {
        assert_int_equal(store_metrics_get(f->st, run, NULL, after, 10, &j), 0);
        pts = json_object_get(j, "points");
        total += (int)json_array_size(pts);
        assert_int_equal(json_array_size(pts) % 3, 0);
        json_t *next = json_object_get(j, "next_after_step");
        if (json_is_null(next)) {
            json_decref(j);
            break;
        }
        after = json_integer_value(next);
        json_decref(j);
    }
    assert_int_equal(total, 300);

    assert_int_equal(store_metrics_get(f->st, run, "train_loss", 95, 0, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 4);
    assert_true(json_is_null(json_object_get(j, "next_after_step")));
    json_decref(j);
    assert_int_equal(store_metrics_get(f->st, run, "train_loss", -1, STORE_METRICS_MAX + 1, &j),
                     -EINVAL);
    assert_int_equal(store_metrics_get(f->st, run + 1, NULL, -1, 10, &j), -ENOENT);
    assert_int_equal(store_metric_keys(f->st, run, &j), 0);
    assert_int_equal(json_array_size(j), 3);
    assert_string_equal(json_string_value(json_array_get(j, 0)), "lr_0");
    json_decref(j);

    /* A resumed fit repeating a step replaces it. */
    double again[] = {9, 9, 9};
    assert_int_equal(store_metrics_push(f->st, run, job, 5, 3, keys, again), 0);
    assert_int_equal(store_flush(f->st), 0);
    assert_int_equal(store_metrics_get(f->st, run, "lr_0", 4, 1, &j), 0);
    assert_true(fabs(json_real_value(json_object_get(json_array_get(json_object_get(j, "points"),
                                                     0), "value")) - 9) < 1e-12);
    json_decref(j);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM metrics"), 300);
}

/* The steps of a metrics answer's points, checking they rise strictly and are of key. */
static int view_steps(json_t *j, const char *key, int64_t *steps, int cap)
{
    json_t *pts = json_object_get(j, "points");
    int n = 0;
    for (size_t i = 0; i < json_array_size(pts); i++) {
        json_t *p = json_array_get(pts, i);
        if (strcmp(jstr(p, "key"), key) != 0)
            continue;
        assert_true(n < cap);
        steps[n] = jint(p, "step");
        if (n > 0)
            assert_true(steps[n] > steps[n - 1]);
        n++;
    }
    return n;
}

static int has_step(const int64_t *steps, int n, int64_t step)
{
    for (int i = 0; i < n; i++)
        if (steps[i] == step)
            return 1;
    return 0;
}

static void metrics_downsample_keeps_first_last_extremes(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t job = make_job(f->st, run, "fit");
    const char *ka[] = {"a", "c"}, *kb[] = {"b"};
    for (int s = 0; s < 10000; s++) {
        double v[] = {sin(s * 0.01), NAN};
        if (s == 4321)
            v[0] = 100;
        if (s == 777)
            v[0] = -100;
        if (s == 5000)
            v[0] = INFINITY;
        assert_int_equal(store_metrics_push(f->st, run, job, s, 2, ka, v), 0);
        if (s < 50) {
            double b = s;
            assert_int_equal(store_metrics_push(f->st, run, job, s, 1, kb, &b), 0);
        }
    }
    assert_int_equal(store_flush(f->st), 0);

    static int64_t steps[20000];
    json_t *j;
    assert_int_equal(store_metrics_downsample(f->st, run, "a", -1, -1, 100, &j), 0);
    int n = view_steps(j, "a", steps, 20000);
    assert_true(n <= 100 && n > 50);
    assert_int_equal(steps[0], 0);
    assert_int_equal(steps[n - 1], 9999);
    assert_true(has_step(steps, n, 4321) && has_step(steps, n, 777));
    assert_true(json_is_true(json_object_get(j, "downsampled")));
    assert_int_equal(jint(j, "max_points"), 100);
    assert_true(json_is_null(json_object_get(j, "next_after_step")));
    json_decref(j);

    /* Every key: each at most max_points, a key that fits answered whole. */
    assert_int_equal(store_metrics_downsample(f->st, run, NULL, -1, -1, 60, &j), 0);
    assert_true(view_steps(j, "a", steps, 20000) <= 60);
    assert_int_equal(view_steps(j, "b", steps, 20000), 50);
    n = view_steps(j, "c", steps, 20000);
    assert_true(n >= 2 && n <= 60);
    assert_int_equal(steps[0], 0);
    assert_int_equal(steps[n - 1], 9999);
    json_decref(j);

    /* Only the first and last. */
    assert_int_equal(store_metrics_downsample(f->st, run, "a", -1, -1, 2, &j), 0);
    n = view_steps(j, "a", steps, 20000);
    assert_int_equal(n, 2);
    assert_int_equal(steps[0], 0);
    assert_int_equal(steps[1], 9999);
    json_decref(j);

    /* A zoomed window that fits is exact: every step strictly inside the bounds. */
    assert_int_equal(store_metrics_downsample(f->st, run, "a", 4300, 4400, 1000, &j), 0);
    n = view_steps(j, "a", steps, 20000);
    assert_int_equal(n, 99);
    for (int i = 0; i < n; i++)
        assert_int_equal(steps[i], 4301 + i);
    assert_true(json_is_false(json_object_get(j, "downsampled")));
    json_decref(j);
    /* A window that does not fit still keeps its bounds' points and its extremes. */
    assert_int_equal(store_metrics_downsample(f->st, run, "a", 700, 4400, 20, &j), 0);
    n = view_steps(j, "a", steps, 20000);
    assert_true(n <= 20);
    assert_int_equal(steps[0], 701);
    assert_int_equal(steps[n - 1], 4399);
    assert_true(has_step(steps, n, 4321) && has_step(steps, n, 777));
    json_decref(j);

    /* The same window paged at full resolution. */
    assert_int_equal(store_metrics_range(f->st, run, "a", 4300, 4400, 1000, &j), 0);
    n = view_steps(j, "a", steps, 20000);
    assert_int_equal(n, 99);
    assert_int_equal(steps[0], 4301);
    assert_true(json_is_null(json_object_get(j, "next_after_step")));
    json_decref(j);
    assert_int_equal(store_metrics_range(f->st, run, NULL, 10, 20, 1000, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 9 * 3);
    json_decref(j);

    assert_int_equal(store_metrics_downsample(f->st, run, "a", 20000, -1, 10, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 0);
    json_decref(j);
    assert_int_equal(store_metrics_downsample(f->st, run, "a", -1, -1, 1, &j), -EINVAL);
    assert_int_equal(store_metrics_downsample(f->st, run, "a", -1, -1, STORE_METRICS_MAX + 1,
                                              &j),
                     -EINVAL);
    assert_int_equal(store_metrics_downsample(f->st, run + 1, NULL, -1, -1, 10, &j), -ENOENT);
}

/* ---- write-time summaries of the metrics ------------------------------------------------ */

/* The summaries' levels (store/internal.h): level l covers step >> (6 + 2 * l), l < 5. */
#define SUMMARY_LEVELS 5

/* Summary rows of one level that disagree with the metric rows they summarise (count, first
 * and last step, lowest and highest value, and the step of each extreme holding that value),
 * plus buckets with rows but no summary and summaries with no rows. 0 when consistent. */
static int64_t summaries_wrong_at(const char *path, int level)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
        "WITH m AS (SELECT run_id, key, step >> %d AS b, count(*) AS n, min(step) AS fs, "
        "max(step) AS ls, min(value) AS lo, max(value) AS hi FROM metrics GROUP BY 1, 2, 3), "
        "ms AS (SELECT * FROM metric_summaries WHERE level = %d) "
        "SELECT (SELECT count(*) FROM m LEFT JOIN ms s ON s.run_id = m.run_id "
        "AND s.key = m.key AND s.bucket = m.b WHERE s.n IS NOT m.n OR s.first_step IS NOT m.fs "
        "OR s.last_step IS NOT m.ls OR s.min_value IS NOT m.lo OR s.max_value IS NOT m.hi) + "
        "(SELECT count(*) FROM ms) - (SELECT count(*) FROM m) + "
        "(SELECT count(*) FROM ms s WHERE (s.min_step IS NOT NULL AND "
        "(SELECT value FROM metrics x WHERE x.run_id = s.run_id AND x.key = s.key AND "
        "x.step = s.min_step) IS NOT s.min_value) OR (s.max_step IS NOT NULL AND "
        "(SELECT value FROM metrics x WHERE x.run_id = s.run_id AND x.key = s.key AND "
        "x.step = s.max_step) IS NOT s.max_value) OR (s.min_step IS NULL) <> "
        "(s.min_value IS NULL))", 6 + 2 * level, level);
    return sql_int(path, sql);
}

/* summaries_wrong_at summed over every level, plus summaries of a level that does not
 * exist. */
static int64_t summaries_wrong(const char *path)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM metric_summaries WHERE level < 0 OR "
             "level >= %d", SUMMARY_LEVELS);
    int64_t wrong = sql_int(path, sql);
    for (int level = 0; level < SUMMARY_LEVELS; level++)
        wrong += summaries_wrong_at(path, level);
    return wrong;
}

/* Steps pushed twice (a resumed fit), NULLs, ties, buckets of NULLs only: the summaries the
 * flushes keep equal those the v6 migration builds from the same rows. */
static void metric_summaries_follow_writes_and_migration(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t job = make_job(f->st, run, "fit");
    const char *k[] = {"loss", "nulls"};
    for (int s = 0; s < 2000; s++) {
        double v[] = {s == 300 ? 50.0 : (double)(s % 7), NAN};
        if (s >= 1024 && s < 1100)
            v[0] = NAN;
        assert_int_equal(store_metrics_push(f->st, run, job, s, 2, k, v), 0);
        if (s % 300 == 0)
            assert_int_equal(store_flush(f->st), 0);
    }
    assert_int_equal(store_flush(f->st), 0);
    /* Level 1 covers 256 steps a bucket, level 0 64, level 4 16,384. */
    assert_int_equal(sql_int(f->path, "SELECT max_value FROM metric_summaries WHERE "
                                      "key = 'loss' AND level = 1 AND bucket = 1"), 50);
    assert_int_equal(sql_int(f->path, "SELECT max_step FROM metric_summaries WHERE "
                                      "key = 'loss' AND level = 1 AND bucket = 1"), 300);
    assert_int_equal(sql_int(f->path, "SELECT max_step FROM metric_summaries WHERE "
                                      "key = 'loss' AND level = 0 AND bucket = 4"), 300);
    assert_int_equal(sql_int(f->path, "SELECT max_step * 10000 + n FROM metric_summaries "
                                      "WHERE key = 'loss' AND level = 4 AND bucket = 0"),
                     3002000);
    /* Ties keep the earliest point. */
    assert_int_equal(sql_int(f->path, "SELECT min_step FROM metric_summaries WHERE "
                                      "key = 'loss' AND level = 1 AND bucket = 0"), 0);
    assert_int_equal(sql_int(f->path, "SELECT min_step FROM metric_summaries WHERE "
                                      "key = 'loss' AND level = 3 AND bucket = 0"), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM metric_summaries WHERE "
                                      "key = 'nulls' AND level = 1 AND min_step IS NULL AND "
                                      "n = 256"), 7);
    /* A resumed fit writes steps 250..330 again: the spike is gone from the summaries. */
    for (int s = 250; s < 330; s++) {
        double v[] = {1.5, 2.0};
        assert_int_equal(store_metrics_push(f->st, run, job, s, 2, k, v), 0);
    }
    assert_int_equal(store_flush(f->st), 0);
    assert_int_equal(sql_int(f->path, "SELECT max_value * 10 FROM metric_summaries WHERE "
                                      "key = 'loss' AND level = 1 AND bucket = 1"), 60);
    assert_int_equal(sql_int(f->path, "SELECT max_value * 10 FROM metric_summaries WHERE "
                                      "key = 'loss' AND level = 4 AND bucket = 0"), 60);
    assert_int_equal(summaries_wrong(f->path), 0);

    /* The same rows in a v5 file: opening it builds the same summaries. */
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/v5.db", f->dir);
    assert_int_equal(store_test_create_at_version(path, 5, err, sizeof err), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char sql[512];
    snprintf(sql, sizeof sql, "ATTACH '%s' AS cur; INSERT INTO datasets SELECT id, name, path, "
             "format, options, info, uploaded, created_at, state, progress, error FROM "
             "cur.datasets; INSERT INTO runs SELECT * FROM cur.runs; INSERT INTO jobs SELECT * "
             "FROM cur.jobs; INSERT INTO metrics "
             "SELECT * FROM cur.metrics; DETACH cur;", f->path);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    store *st;
    assert_int_equal(store_open(&st, path, NULL, err, sizeof err), 0);
    store_close(st);
    assert_int_equal(sql_int(path, "PRAGMA user_version"), store_schema_current());
    assert_int_equal(summaries_wrong(path), 0);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof sql, "ATTACH '%s' AS cur; CREATE TABLE diff AS SELECT * FROM "
             "(SELECT * FROM metric_summaries EXCEPT SELECT * FROM cur.metric_summaries) UNION "
             "ALL SELECT * FROM (SELECT * FROM cur.metric_summaries EXCEPT SELECT * FROM "
             "metric_summaries);", f->path);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(sql_int(path, "SELECT count(*) FROM diff"), 0);
    assert_int_equal(sql_int(path, "SELECT count(*) FROM metric_summaries"),
                     sql_int(f->path, "SELECT count(*) FROM metric_summaries"));

    /* Deleting the run deletes its summaries. */
    assert_int_equal(store_job_finish(f->st, job, "cancelled", NULL, NULL), 0);
    assert_int_equal(store_run_delete(f->st, run), 0);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM metric_summaries"), 0);
}

/* The lowest and highest finite value of key in a view, with their steps. */
static void view_extremes(json_t *j, const char *key, double *lo, int64_t *lo_step,
                          double *hi, int64_t *hi_step)
{
    json_t *pts = json_object_get(j, "points");
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t i = 0; i < json_array_size(pts); i++) {
        json_t *p = json_array_get(pts, i);
        json_t *v = json_object_get(p, "value");
        if (strcmp(jstr(p, "key"), key) != 0 || !json_is_real(v))
            continue;
        double x = json_real_value(v);
        if (x < *lo) {
            *lo = x;
            *lo_step = jint(p, "step");
        }
        if (x > *hi) {
            *hi = x;
            *hi_step = jint(p, "step");
        }
    }
}

/* The values of the summaries' test run: a noisy wave with a spike up and one down. */
static double summary_wave(int64_t s)
{
    if (s == 12345 || s == 40000)
        return s == 12345 ? 9 : -9;
    return sin((double)s * 0.003) + 0.001 * (double)((s * 7919) % 101);
}

/* A view answered from the summaries against the same view from the rows: same shape,
 * same first and last points, same extremes, points that are stored points. */
static void assert_views_agree(store *st, int64_t run, const char *key, const char *k,
                               int64_t after, int64_t before, int max_points)
{
    json_t *a, *b;
    static int64_t sa[20000], sb[20000];
    store_test_summaries_off(st, 1);
    assert_int_equal(store_metrics_downsample(st, run, key, after, before, max_points, &a), 0);
    store_test_summaries_off(st, 0);
    assert_int_equal(store_metrics_downsample(st, run, key, after, before, max_points, &b), 0);
    int na = view_steps(a, k, sa, 20000), nb = view_steps(b, k, sb, 20000);
    assert_true(nb >= 2 && nb <= max_points && na <= max_points);
    assert_int_equal(sa[0], sb[0]);
    assert_int_equal(sa[na - 1], sb[nb - 1]);
    assert_true(json_equal(json_object_get(a, "downsampled"), json_object_get(b, "downsampled")));
    assert_int_equal(json_object_size(a), json_object_size(b));
    double alo, ahi, blo, bhi;
    int64_t alos = -1, ahis = -1, blos = -2, bhis = -2;
    view_extremes(a, k, &alo, &alos, &ahi, &ahis);
    view_extremes(b, k, &blo, &blos, &bhi, &bhis);
    assert_true(alo == blo && ahi == bhi);
    assert_int_equal(alos, blos);
    assert_int_equal(ahis, bhis);
    json_t *pts = json_object_get(b, "points");
    for (size_t i = 0; i < json_array_size(pts); i++) {
        json_t *p = json_array_get(pts, i);
        if (strcmp(jstr(p, "key"), k) == 0 && strcmp(k, "wave") == 0)
            assert_true(json_real_value(json_object_get(p, "value")) ==
                        summary_wave(jint(p, "step")));
    }
    json_decref(a);
    json_decref(b);
}

static void metrics_downsample_from_summaries_matches_rows(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t job = make_job(f->st, run, "fit");
    const char *k[] = {"wave", "nulls"};
    for (int64_t s = 0; s < 60000; s++) {
        double v[] = {summary_wave(s), s % 5000 < 3000 ? NAN : 1.0};
        assert_int_equal(store_metrics_push(f->st, run, job, s, 2, k, v), 0);
    }
    assert_int_equal(store_flush(f->st), 0);
    assert_views_agree(f->st, run, "wave", "wave", -1, -1, 100);
    assert_views_agree(f->st, run, "wave", "wave", -1, -1, 200);
    assert_views_agree(f->st, run, NULL, "wave", -1, -1, 60);
    assert_views_agree(f->st, run, NULL, "nulls", -1, -1, 60);
    assert_views_agree(f->st, run, "wave", "wave", 1000, 50000, 50);
    assert_views_agree(f->st, run, "wave", "wave", 12000, 41000, 30);
    /* Buckets of 120 steps (level 0), and one bucket of the whole run (level 4, its end
     * through every finer level and the rows), and ends cut at odd steps. */
    assert_views_agree(f->st, run, "wave", "wave", -1, -1, 1000);
    assert_views_agree(f->st, run, NULL, "nulls", -1, -1, 1000);
    assert_views_agree(f->st, run, "wave", "wave", -1, -1, 4);
    assert_views_agree(f->st, run, "wave", "wave", 777, 59001, 6);
    assert_views_agree(f->st, run, "wave", "wave", 777, 59001, 333);
    /* Narrow enough to need the rows: answered from them, exactly. */
    assert_views_agree(f->st, run, "wave", "wave", 12000, 13000, 100);

    /* Whole-run views read the summaries, those of 1,000 points too (buckets of fewer steps
     * than a level-1 summary): the summaries of step 25600, changed behind the store's back,
     * show in the views, not in the view from the rows. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE metric_summaries SET max_value = 77 WHERE "
                                      "key = 'wave' AND bucket = 25600 >> (6 + 2 * level)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    json_t *j;
    double lo, hi;
    int64_t los, his;
    const int points[] = {100, 1000};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(store_metrics_downsample(f->st, run, "wave", -1, -1, points[i], &j),
                         0);
        view_extremes(j, "wave", &lo, &los, &hi, &his);
        assert_true(hi == 77);
        json_decref(j);
    }
    store_test_summaries_off(f->st, 1);
    assert_int_equal(store_metrics_downsample(f->st, run, "wave", -1, -1, 100, &j), 0);
    view_extremes(j, "wave", &lo, &los, &hi, &his);
    assert_true(hi == 9 && his == 12345);
    json_decref(j);
}

static void stats_count_jobs_epochs_and_size(void **state)
{
    fixture *f = *state;
    const double le[] = {1, 10, 100};
    store_stats ss;
    assert_int_equal(store_stats_get(f->st, le, 3, &ss), 0);
    assert_int_equal(ss.running_job, 0);
    assert_int_equal(ss.epochs, 0);
    assert_true(ss.db_bytes > 0);

    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t a = make_job(f->st, run, "fit"), b = make_job(f->st, run, "fit");
    make_job(f->st, run, "tta");
    assert_int_equal(store_job_start(f->st, a), 0);
    int ep;
    store_epoch e1 = {0, 0, 1, 1, 0.5, -1, 5.0, 300, 10};
    store_epoch e2 = {1, 1, 1, 1, 0.6, -1, 50.0, 700, 20};
    assert_int_equal(store_epoch_add(f->st, run, a, &e1, &ep), 0);
    assert_int_equal(store_epoch_add(f->st, run, a, &e2, &ep), 0);
    assert_int_equal(store_job_start(f->st, b), 0);
    assert_int_equal(store_job_finish(f->st, b, "failed", "boom", NULL), 0);

    assert_int_equal(store_stats_get(f->st, le, 3, &ss), 0);
    assert_int_equal(ss.jobs[0], 1); /* queued */
    assert_int_equal(ss.jobs[1], 1); /* running */
    assert_int_equal(ss.jobs[3], 1); /* failed */
    assert_int_equal(ss.running_job, a);
    assert_true(fabs(ss.img_per_s - 700) < 1e-9);
    assert_int_equal(ss.epochs, 2);
    assert_true(fabs(ss.epoch_seconds_sum - 55) < 1e-9);
    assert_int_equal(ss.epoch_le[0], 0);
    assert_int_equal(ss.epoch_le[1], 1);
    assert_int_equal(ss.epoch_le[2], 2);
    assert_int_equal(store_stats_get(f->st, le, STORE_STATS_BUCKETS + 1, &ss), -EINVAL);
}

static void epochs_snapshots_predictions(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t j1 = make_job(f->st, run, "fit"), j2 = make_job(f->st, run, "predict_test");
    int ep = -1;
    for (int i = 0; i < 3; i++) {
        /* The first epoch has no step (0): NULL. */
        store_epoch e = {i, i / 2, 1.0 - i * 0.1, 0.9 - i * 0.1, 0.5 + i * 0.1, -1, 12.5, 800,
                         100 * i};
        assert_int_equal(store_epoch_add(f->st, run, i < 2 ? j1 : j2, &e, &ep), 0);
        assert_int_equal(ep, i);
    }
    store_epoch e = {0, 0, 1, 1, 1, 0.7, 1, 1, 0};
    assert_int_equal(store_epoch_add(f->st, run + 4, j1, &e, &ep), -ENOENT);
    json_t *j;
    assert_int_equal(store_epochs_get(f->st, run, &j), 0);
    assert_int_equal(json_array_size(j), 3);
    json_t *last = json_array_get(j, 2);
    assert_int_equal(jint(last, "epoch"), 2);
    assert_int_equal(jint(last, "cycle"), 1);
    assert_int_equal(jint(last, "job"), j2);
    assert_true(json_is_null(json_object_get(last, "f2")));
    assert_true(fabs(json_real_value(json_object_get(last, "accuracy")) - 0.7) < 1e-9);
    assert_int_equal(jint(last, "step"), 200);
    assert_true(json_is_null(json_object_get(json_array_get(j, 0), "step")));
    json_decref(j);

    int64_t s1, s2;
    assert_int_equal(store_snapshot_add(f->st, run, j1, "checkpoint", -1, 0, "/c/0", &s1), 0);
    assert_int_equal(store_snapshot_add(f->st, run, j1, "snapshot", 0, 1, "/c/s0", &s2), 0);
    assert_int_equal(store_snapshot_add(f->st, run, j1, "bogus", 0, 1, "/c/x", &s2), -EINVAL);
    assert_int_equal(store_snapshot_add(f->st, run, j1, "checkpoint", -1, 1, "/c/1", &s2), 0);
    char *path;
    assert_int_equal(store_snapshot_latest(f->st, run, "checkpoint", &path), 0);
    assert_string_equal(path, "/c/1");
    free(path);
    assert_int_equal(store_snapshot_latest(f->st, run, NULL, &path), 0);
    assert_string_equal(path, "/c/1");
    free(path);
    assert_int_equal(store_snapshot_latest(f->st, run, "best", &path), -ENOENT);
    assert_int_equal(store_snapshots_get(f->st, run, &j), 0);
    assert_int_equal(json_array_size(j), 3);
    assert_true(json_is_null(json_object_get(json_array_get(j, 0), "cycle")));
    assert_string_equal(jstr(json_array_get(j, 1), "kind"), "snapshot");
    json_decref(j);

    assert_int_equal(store_prediction_path(f->st, j2, &path), -ENOENT);
    assert_int_equal(store_prediction_add(f->st, run, j2, "/p/2.csv", 10000), 0);
    assert_int_equal(store_prediction_path(f->st, j2, &path), 0);
    assert_string_equal(path, "/p/2.csv");
    free(path);
    assert_int_equal(store_job_get(f->st, j2, &j), 0);
    assert_true(json_is_true(json_object_get(j, "predictions")));
    json_decref(j);
}

/* ---- events ------------------------------------------------------------------------------- */

typedef struct rec {
    pthread_mutex_t mu;
    int n;
    int64_t last_id;
    int out_of_order;
    char kinds[64][16];
} rec;

/* A resumed fit repeats the epochs its checkpoint did not hold: the repeat replaces what
 * the interrupted job (or one it resumed) reported from that fit epoch on; another fit's
 * epochs stay. */
static void a_resumed_fit_replaces_the_epochs_it_repeats(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t a = make_job(f->st, run, "fit"), b, c, other;
    int ep = -1;
    for (int i = 0; i < 3; i++) {
        store_epoch e = {i, 0, 1, 1, 0.5, -1, 1, 1, 10 * (i + 1)};
        assert_int_equal(store_epoch_add(f->st, run, a, &e, &ep), 0);
    }
    /* a's checkpoint held fit epoch 1: b resumes at 2, c (resuming b) at 2 again. */
    assert_int_equal(store_job_create(f->st, run, "fit", NULL, a, &b), 0);
    store_epoch e2 = {2, 0, 1, 1, 0.6, -1, 1, 1, 30};
    assert_int_equal(store_epoch_add(f->st, run, b, &e2, &ep), 0);
    assert_int_equal(ep, 2);
    assert_int_equal(store_job_create(f->st, run, "fit", NULL, b, &c), 0);
    store_epoch e3 = {2, 0, 1, 1, 0.7, -1, 1, 1, 30};
    assert_int_equal(store_epoch_add(f->st, run, c, &e3, &ep), 0);
    assert_int_equal(ep, 2);
    /* A new fit of the run starts at fit epoch 0 and removes nothing. */
    other = make_job(f->st, run, "fit");
    store_epoch e0 = {0, 0, 1, 1, 0.8, -1, 1, 1, 40};
    assert_int_equal(store_epoch_add(f->st, run, other, &e0, &ep), 0);
    assert_int_equal(ep, 3);
    json_t *j;
    assert_int_equal(store_epochs_get(f->st, run, &j), 0);
    assert_int_equal(json_array_size(j), 4);
    int64_t jobs[] = {a, a, c, other};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jint(json_array_get(j, (size_t)i), "epoch"), i);
        assert_int_equal(jint(json_array_get(j, (size_t)i), "job"), jobs[i]);
    }
    json_decref(j);
}

static void on_events(void *ctx, const store_event *evs, int n)
{
    rec *r = ctx;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < n; i++) {
        if (evs[i].id <= r->last_id)
            r->out_of_order++;
        r->last_id = evs[i].id;
        if (r->n < 64)
            snprintf(r->kinds[r->n], sizeof r->kinds[0], "%s", evs[i].kind);
        r->n++;
        json_t *d = json_loads(evs[i].data, 0, NULL);
        assert_non_null(d);
        json_decref(d);
    }
    pthread_mutex_unlock(&r->mu);
}

static void commits_notify_subscribers_and_events_resume(void **state)
{
    fixture *f = *state;
    rec r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    int h;
    assert_int_equal(store_subscribe(f->st, on_events, &r, &h), 0);
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t job = make_job(f->st, run, "fit");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.kinds[0], "job");
    assert_int_equal(store_job_start(f->st, job), 0);
    const char *k[] = {"train_loss"};
    for (int s = 0; s < 5; s++) {
        double v = s;
        assert_int_equal(store_metrics_push(f->st, run, job, s, 1, k, &v), 0);
    }
    assert_int_equal(store_note_push(f->st, run, job, "unfreeze", "the head has converged"),
                     0);
    store_epoch e = {0, 0, 1, 1, 0.5, -1, 1, 1, 0};
    /* The epoch flushes the buffered points first: they come before it. */
    assert_int_equal(store_epoch_add(f->st, run, job, &e, NULL), 0);
    assert_int_equal(r.n, 9);
    assert_string_equal(r.kinds[2], "metric");
    assert_string_equal(r.kinds[7], "note");
    assert_string_equal(r.kinds[8], "epoch");
    assert_int_equal(r.out_of_order, 0);

    json_t *j;
    assert_int_equal(store_events_after(f->st, run, 0, 100, &j), 0);
    assert_int_equal(json_array_size(j), 9);
    int64_t third = jint(json_array_get(j, 2), "id");
    json_t *data = json_object_get(json_array_get(j, 2), "data");
    assert_int_equal(jint(data, "step"), 0);
    assert_true(json_is_object(json_object_get(data, "values")));
    json_decref(j);
    assert_int_equal(store_events_after(f->st, run, third, 100, &j), 0);
    assert_int_equal(json_array_size(j), 6);
    json_decref(j);
    assert_int_equal(store_events_after(f->st, run, 0, 0, &j), -EINVAL);

    store_unsubscribe(f->st, h);
    make_job(f->st, run, "tta");
    assert_int_equal(r.n, 9);
}

/* A job's error and a note can quote file names, which are bytes: read back, each byte
 * that is not UTF-8 is U+FFFD, instead of the whole row failing to become JSON. */
static void text_that_is_not_utf8_reads_back_replaced(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    int64_t job = make_job(f->st, run, "fit");
    assert_int_equal(store_job_start(f->st, job), 0);
    assert_int_equal(store_note_push(f->st, run, job, "skip", "train/r\xff" "d/0.png is gone"), 0);
    assert_int_equal(store_job_finish(f->st, job, "failed", "cannot read train/r\xff" "d/0.png",
                                      NULL),
                     0);
    json_t *j;
    assert_int_equal(store_job_get(f->st, job, &j), 0);
    assert_string_equal(jstr(j, "error"), "cannot read train/r\xef\xbf\xbd" "d/0.png");
    json_decref(j);
    assert_int_equal(store_events_after(f->st, run, 0, 100, &j), 0);
    int notes = 0;
    for (size_t i = 0; i < json_array_size(j); i++) {
        json_t *e = json_array_get(j, i);
        if (strcmp(jstr(e, "kind"), "note") == 0) {
            assert_string_equal(jstr(json_object_get(e, "data"), "why"),
                                "train/r\xef\xbf\xbd" "d/0.png is gone");
            notes++;
        }
    }
    assert_int_equal(notes, 1);
    json_decref(j);
}

static int wait_until_visible(store *st, int64_t run, int want)
{
    /* Bounded poll: the flusher runs on its own thread. */
    for (int i = 0; i < 2000; i++) {
        json_t *j;
        if (store_metrics_get(st, run, "k", -1, 1000, &j))
            return -1;
        int n = (int)json_array_size(json_object_get(j, "points"));
        json_decref(j);
        if (n >= want)
            return n;
        usleep(5000);
    }
    return -1;
}

static void metric_points_commit_in_batches(void **state)
{
    fixture *f = *state;
    store_close(f->st);
    char err[256];
    /* A flush period long enough never to fire here: only the point count triggers. */
    store_options o = {.flush_ms = 3600 * 1000, .flush_points = 10, .sync_normal = 1};
    assert_int_equal(store_open(&f->st, f->path, &o, err, sizeof err), 0);
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    const char *k[] = {"k"};
    for (int s = 0; s < 9; s++) {
        double v = s;
        assert_int_equal(store_metrics_push(f->st, run, 0, s, 1, k, &v), 0);
    }
    json_t *j;
    assert_int_equal(store_metrics_get(f->st, run, "k", -1, 100, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 0);
    json_decref(j);
    double v = 9;
    assert_int_equal(store_metrics_push(f->st, run, 0, 9, 1, k, &v), 0);
    assert_int_equal(wait_until_visible(f->st, run, 10), 10);

    /* A synchronous write commits what is buffered before itself. */
    assert_int_equal(store_metrics_push(f->st, run, 0, 10, 1, k, &v), 0);
    make_job(f->st, run, "fit");
    assert_int_equal(store_metrics_get(f->st, run, "k", -1, 100, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 11);
    json_decref(j);

    /* Close flushes too. */
    assert_int_equal(store_metrics_push(f->st, run, 0, 11, 1, k, &v), 0);
    store_close(f->st);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM metrics"), 12);
    f->st = NULL;
    assert_int_equal(store_open(&f->st, f->path, NULL, err, sizeof err), 0);

    /* The timer alone also commits. */
    store_close(f->st);
    store_options fast = {.flush_ms = 10, .flush_points = 1000000, .sync_normal = 1};
    assert_int_equal(store_open(&f->st, f->path, &fast, err, sizeof err), 0);
    assert_int_equal(store_metrics_push(f->st, run, 0, 12, 1, k, &v), 0);
    assert_int_equal(wait_until_visible(f->st, run, 13), 13);
}

typedef struct reader_arg {
    store *st;
    int64_t run;
    volatile int *stop;
    int errors, reads, went_back;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *a = p;
    int last = 0;
    while (!*a->stop) {
        json_t *j;
        if (store_metrics_get(a->st, a->run, "k", -1, 100000, &j)) {
            a->errors++;
            continue;
        }
        int n = (int)json_array_size(json_object_get(j, "points"));
        json_decref(j);
        if (n < last)
            a->went_back++;
        last = n;
        if (store_run_get(a->st, a->run, &j))
            a->errors++;
        else
            json_decref(j);
        if (store_job_list(a->st, a->run, NULL, NULL, &j))
            a->errors++;
        else
            json_decref(j);
        a->reads++;
    }
    return NULL;
}

static void readers_run_while_the_writer_commits(void **state)
{
    fixture *f = *state;
    store_close(f->st);
    char err[256];
    store_options o = {.readers = 3, .flush_ms = 5, .sync_normal = 1};
    assert_int_equal(store_open(&f->st, f->path, &o, err, sizeof err), 0);
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    volatile int stop = 0;
    enum { NT = 6 }; /* more threads than pooled connections: checkout must wait */
    pthread_t th[NT];
    reader_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (reader_arg){.st = f->st, .run = run, .stop = &stop};
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &args[i]), 0);
    }
    const char *k[] = {"k"};
    for (int s = 0; s < 3000; s++) {
        double v = s;
        assert_int_equal(store_metrics_push(f->st, run, 0, s, 1, k, &v), 0);
        if (s % 300 == 0)
            make_job(f->st, run, "fit");
    }
    assert_int_equal(store_flush(f->st), 0);
    /* Let every reader see the final state at least once. */
    for (int i = 0; i < NT; i++) {
        int seen = args[i].reads;
        for (int g = 0; g < 2000 && args[i].reads < seen + 2; g++)
            usleep(1000);
    }
    stop = 1;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].errors, 0);
        assert_int_equal(args[i].went_back, 0);
        assert_true(args[i].reads > 0);
    }
    json_t *j;
    assert_int_equal(store_metrics_get(f->st, run, "k", -1, 100000, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 3000);
    json_decref(j);
}

/* ---- fault injection -------------------------------------------------------------------- */

static void failing_writes_leave_previous_data_intact(void **state)
{
    fixture *f = *state;
    int64_t ds = make_dataset(f->st, "d");
    int64_t run = make_run(f->st, ds);
    int64_t job = make_job(f->st, run, "fit");
    assert_int_equal(store_job_start(f->st, job), 0);
    const char *k[] = {"k"};
    double v = 1;
    assert_int_equal(store_metrics_push(f->st, run, job, 0, 1, k, &v), 0);
    assert_int_equal(store_flush(f->st), 0);
    int64_t jobs_before = sql_int(f->path, "SELECT count(*) FROM jobs");
    int64_t events_before = sql_int(f->path, "SELECT count(*) FROM events");

    /* Fail each write of a job creation in turn (the insert, the event, the commit). */
    int failed = 0;
    for (int n = 1; n <= 10; n++) {
        store_test_fail_write(f->st, n);
        int64_t id = 0;
        int rc = store_job_create(f->st, run, "tta", NULL, 0, &id);
        store_test_fail_write(f->st, 0);
        if (rc == 0) {
            jobs_before++;
            events_before++;
            continue;
        }
        failed++;
        assert_int_equal(rc, -EIO);
        assert_non_null(strstr(store_errmsg(), "injected"));
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM jobs"), jobs_before);
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM events"), events_before);
    }
    assert_true(failed >= 3);

    /* A failing batch of points is dropped whole; earlier points stay. */
    for (int n = 1; n <= 6; n++) {
        for (int s = 1; s <= 3; s++) {
            v = s;
            assert_int_equal(store_metrics_push(f->st, run, job, 100 * n + s, 1, k, &v), 0);
        }
        int64_t before = sql_int(f->path, "SELECT count(*) FROM metrics");
        store_test_fail_write(f->st, n);
        int rc = store_flush(f->st);
        store_test_fail_write(f->st, 0);
        int64_t after = sql_int(f->path, "SELECT count(*) FROM metrics");
        if (rc == 0)
            assert_int_equal(after, before + 3);
        else
            assert_int_equal(after, before);
    }
    assert_true(sql_int(f->path, "SELECT count(*) FROM metrics WHERE step = 0") == 1);

    /* A failing epoch or transition changes nothing, and the store carries on. */
    store_test_fail_write(f->st, 2);
    store_epoch e = {0, 0, 1, 1, 1, -1, 1, 1, 0};
    assert_int_equal(store_epoch_add(f->st, run, job, &e, NULL), -EIO);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM epochs"), 0);
    store_test_fail_write(f->st, 1);
    assert_int_equal(store_job_finish(f->st, job, "succeeded", NULL, NULL), -EIO);
    json_t *j;
    assert_int_equal(store_job_get(f->st, job, &j), 0);
    assert_string_equal(jstr(j, "state"), "running");
    json_decref(j);
    assert_int_equal(store_job_finish(f->st, job, "cancelled", NULL, NULL), 0);
    assert_int_equal(store_epoch_add(f->st, run, job, &e, NULL), 0);
    assert_true(integrity_ok(f->path));
}

/* ---- I/O fault injection: a VFS shim that fails the n-th write or sync ---------------------- */

typedef struct ffile {
    sqlite3_file base;
    sqlite3_file *real;   /* follows this struct in the same allocation */
} ffile;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs faulty_vfs;
static sqlite3_io_methods faulty_io;
static volatile int io_countdown; /* 0: off */
static volatile int io_failures;
static volatile int io_full;      /* writes fail as the unix VFS answers ENOSPC */

static int io_fails(void)
{
    if (io_countdown > 0 && --io_countdown == 0) {
        io_failures++;
        return 1;
    }
    return 0;
}

#define REAL(f) (((ffile *)(f))->real)
static int f_close(sqlite3_file *f)
{
    int rc = REAL(f)->pMethods->xClose(REAL(f));
    return rc;
}
static int f_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
    return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int f_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
    if (io_full)
        return SQLITE_FULL;
    if (io_fails())
        return SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 n)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), n);
}
static int f_sync(sqlite3_file *f, int flags)
{
    if (io_fails())
        return SQLITE_IOERR_FSYNC;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *n)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), n);
}
static int f_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int f_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int f_check(sqlite3_file *f, int *r)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), r);
}
static int f_fctl(sqlite3_file *f, int op, void *a)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, a);
}
static int f_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int f_dev(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int f_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int f_shmlock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void f_shmbarrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int f_shmunmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int f_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

static int v_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
    (void)v;
    ffile *ff = (ffile *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out);
    f->pMethods = rc == SQLITE_OK && ff->real->pMethods ? &faulty_io : NULL;
    return rc;
}

/* Makes the shim the default VFS, so the store's connections use it. */
static void faulty_vfs_install(void)
{
    if (!real_vfs) {
        real_vfs = sqlite3_vfs_find(NULL);
        faulty_vfs = *real_vfs;
        faulty_vfs.zName = "faulty";
        faulty_vfs.szOsFile = (int)sizeof(ffile) + real_vfs->szOsFile;
        faulty_vfs.xOpen = v_open;
        faulty_io = (sqlite3_io_methods){3, f_close, f_read, f_write, f_truncate, f_sync,
                                         f_size, f_lock, f_unlock, f_check, f_fctl, f_sector,
                                         f_dev, f_shmmap, f_shmlock, f_shmbarrier, f_shmunmap,
                                         f_fetch, f_unfetch};
    }
    assert_int_equal(sqlite3_vfs_register(&faulty_vfs, 1), SQLITE_OK);
}

static void faulty_vfs_remove(void)
{
    io_countdown = 0;
    sqlite3_vfs_unregister(&faulty_vfs);
    sqlite3_vfs_register(real_vfs, 1);
}

static void disk_errors_during_commits_lose_nothing_committed(void **state)
{
    fixture *f = *state;
    store_close(f->st);
    f->st = NULL;
    faulty_vfs_install();
    char err[256];
    store_options o = {.flush_ms = 3600 * 1000, .flush_points = 1000000};
    assert_int_equal(store_open(&f->st, f->path, &o, err, sizeof err), 0);
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    const char *k[] = {"k"};
    int64_t ok_jobs = 0, ok_steps = 0, step = 0;
    io_failures = 0;
    for (int n = 1; n <= 12; n++) {
        /* A job creation (one sync commit) under the n-th I/O failure. */
        io_countdown = n;
        int64_t id;
        int rc = store_job_create(f->st, run, "fit", NULL, 0, &id);
        io_countdown = 0;
        if (rc == 0)
            ok_jobs++;
        else
            assert_true(rc < 0);
        /* A batch of points under the n-th failure. */
        for (int i = 0; i < 5; i++) {
            double v = (double)step;
            assert_int_equal(store_metrics_push(f->st, run, 0, step++, 1, k, &v), 0);
        }
        io_countdown = n;
        rc = store_flush(f->st);
        io_countdown = 0;
        if (rc == 0)
            ok_steps += 5;
        /* The store carries on: the next write succeeds. */
        int64_t probe;
        assert_int_equal(store_job_create(f->st, run, "tta", NULL, 0, &probe), 0);
        ok_jobs++;
    }
    assert_true(io_failures > 0);
    json_t *j;
    assert_int_equal(store_job_list(f->st, run, NULL, &(store_page){.limit = 1000}, &j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "items")), ok_jobs);
    json_decref(j);
    store_close(f->st);
    f->st = NULL;
    faulty_vfs_remove();
    assert_true(integrity_ok(f->path));
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM jobs"), ok_jobs);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM metrics"), ok_steps);
    assert_int_equal(store_open(&f->st, f->path, NULL, err, sizeof err), 0);
}

/* A full disk is told apart from a failing one (-ENOSPC, which the API answers as 507),
 * loses nothing committed, and the store carries on once there is room again. */
static void a_full_disk_is_enospc_and_recoverable(void **state)
{
    fixture *f = *state;
    store_close(f->st);
    f->st = NULL;
    faulty_vfs_install();
    char err[256];
    assert_int_equal(store_open(&f->st, f->path, NULL, err, sizeof err), 0);
    int64_t run = make_run(f->st, make_dataset(f->st, "d")), id;
    assert_int_equal(store_job_create(f->st, run, "fit", NULL, 0, &id), 0);
    io_full = 1;
    int rc = store_job_create(f->st, run, "tta", NULL, 0, &id);
    io_full = 0;
    assert_int_equal(rc, -ENOSPC);
    assert_non_null(strstr(store_errmsg(), "full"));
    assert_int_equal(store_job_create(f->st, run, "tta", NULL, 0, &id), 0);
    store_close(f->st);
    f->st = NULL;
    faulty_vfs_remove();
    assert_true(integrity_ok(f->path));
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM jobs"), 2);
    assert_int_equal(store_open(&f->st, f->path, NULL, err, sizeof err), 0);
}

/* ---- kill -9 ---------------------------------------------------------------------------- */

/* The child creates jobs (each acknowledged through the pipe only after the call returned)
 * and pushes metric points non-stop until it is killed. */
static void crash_child(const char *path, int fd)
{
    store *st;
    char err[256];
    store_options o = {.flush_ms = 2, .flush_points = 50};
    if (store_open(&st, path, &o, err, sizeof err))
        _exit(2);
    int64_t run = 1;
    const char *k[] = {"train_loss", "lr_0"};
    for (int64_t s = 0;; s++) {
        double v[] = {1.0 / (double)(s + 1), 0.1};
        if (store_metrics_push(st, run, 0, s, 2, k, v))
            _exit(3);
        if (s % 20 == 0) {
            int64_t id;
            if (store_job_create(st, run, "fit", NULL, 0, &id))
                _exit(4);
            if (write(fd, &id, sizeof id) != sizeof id)
                _exit(5);
        }
    }
}

static void kill_9_mid_write_loses_nothing_acknowledged(void **state)
{
    fixture *f = *state;
    int64_t run = make_run(f->st, make_dataset(f->st, "d"));
    assert_int_equal(run, 1);
    store_close(f->st);
    f->st = NULL;
    for (int round = 0; round < 3; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(f->path, fds[1]);
        }
        close(fds[1]);
        int64_t acked[64];
        int n = 0;
        while (n < 20 + round * 10) {
            ssize_t r = read(fds[0], &acked[n], sizeof acked[n]);
            assert_int_equal(r, (ssize_t)sizeof acked[n]);
            n++;
        }
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        close(fds[0]);

        char err[256];
        store *st;
        assert_int_equal(store_open(&st, f->path, NULL, err, sizeof err), 0);
        for (int i = 0; i < n; i++) {
            json_t *j;
            assert_int_equal(store_job_get(st, acked[i], &j), 0);
            json_decref(j);
        }
        /* Points survive as whole steps, in order, with no holes before the last one. */
        json_t *j;
        assert_int_equal(store_metrics_get(st, run, "train_loss", -1, STORE_METRICS_MAX, &j),
                         0);
        json_t *pts = json_object_get(j, "points");
        assert_true(json_array_size(pts) > 0);
        for (size_t i = 0; i < json_array_size(pts); i++)
            assert_int_equal(jint(json_array_get(pts, i), "step"), (int64_t)i);
        size_t n_steps = json_array_size(pts);
        json_decref(j);
        assert_int_equal(store_metrics_get(st, run, "lr_0", -1, STORE_METRICS_MAX, &j), 0);
        assert_int_equal(json_array_size(json_object_get(j, "points")), n_steps);
        json_decref(j);
        store_close(st);
        assert_true(integrity_ok(f->path));
        assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
        assert_int_equal(summaries_wrong(f->path), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fresh_database_has_current_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_1_keeping_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused, setup, teardown),
        cmocka_unit_test(unopenable_path_is_an_error),
        cmocka_unit_test_setup_teardown(dataset_scan_states, setup, teardown),
        cmocka_unit_test_setup_teardown(datasets_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(models_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(lists_page_through_everything_once, setup, teardown),
        cmocka_unit_test_setup_teardown(runs_crud_and_cascade, setup, teardown),
        cmocka_unit_test_setup_teardown(a_resumed_fit_replaces_the_epochs_it_repeats, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(job_state_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(startup_recovery_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(lr_find_with_points, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_by_key_and_step, setup, teardown),
        cmocka_unit_test_setup_teardown(metric_summaries_follow_writes_and_migration, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(metrics_downsample_from_summaries_matches_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(metrics_downsample_keeps_first_last_extremes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stats_count_jobs_epochs_and_size, setup, teardown),
        cmocka_unit_test_setup_teardown(epochs_snapshots_predictions, setup, teardown),
        cmocka_unit_test_setup_teardown(interpretations_replace_and_cascade, setup, teardown),
        cmocka_unit_test_setup_teardown(commits_notify_subscribers_and_events_resume, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(text_that_is_not_utf8_reads_back_replaced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(metric_points_commit_in_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(readers_run_while_the_writer_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(failing_writes_leave_previous_data_intact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_full_disk_is_enospc_and_recoverable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(disk_errors_during_commits_lose_nothing_committed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(kill_9_mid_write_loses_nothing_acknowledged, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
