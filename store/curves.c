/* curves.c: LR sweeps, metrics, epochs, snapshots and predictions (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

/* ---- LR sweeps --------------------------------------------------------------------------- */

#define LRF_COLS "id, run_id AS run, job_id AS job, start_lr, end_lr, num_it, " \
                 "stopped_early AS stopped_early_bool, created_at, finished_at, " \
                 "suggestions AS suggestions_json"

static int lr_find_event(store *st, int64_t id)
{
    sqlite3_stmt *s;
    json_t *o = NULL;
    int rc = store_prep(st->w, "SELECT " LRF_COLS " FROM lr_finds WHERE id = ?1", &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = store_row_one(st->w, s, &o);
    sqlite3_finalize(s);
    if (rc == 0)
        rc = store_event_add(st, json_integer_value(json_object_get(o, "run")),
                    json_integer_value(json_object_get(o, "job")), "lr_find", o, store_now_s());
    json_decref(o);
    return rc;
}

int store_lr_find_create(store *st, int64_t run_id, int64_t job_id, double start_lr,
                         double end_lr, int num_it, int64_t *id)
{
    store_arg a[] = {
        store_arg_int(run_id), store_arg_int(job_id), store_arg_real(start_lr),
        store_arg_real(end_lr), store_arg_int(num_it), store_arg_real(store_now_s()),
    };
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_wstatement(st, "INSERT INTO lr_finds(run_id, job_id, start_lr, end_lr, num_it, "
                              "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                          a, STORE_NARGS(a), id);
    if (rc == 0)
        rc = lr_find_event(st, *id);
    return store_wend(st, rc);
}

int store_lr_find_point_push(store *st, int64_t lr_find_id, int64_t run_id, int64_t job_id,
                             int iter, double lr, double loss, double smooth_loss)
{
    store_point p = {.kind = STORE_POINT_SWEEP, .run = run_id, .job = job_id, .step = lr_find_id,
               .n = iter, .t = store_now_s()};
    p.vals = malloc(3 * sizeof *p.vals);
    if (!p.vals)
        return -ENOMEM;
    p.vals[0] = lr;
    p.vals[1] = loss;
    p.vals[2] = smooth_loss;
    return store_buffer_add(st, &p, 1);
}

int store_lr_find_finish(store *st, int64_t id, json_t *suggestions, int stopped_early,
                         double end_lr, int num_it)
{
    store_arg a[] = {
        store_arg_int(id), store_arg_json(suggestions, NULL), store_arg_int(stopped_early != 0),
        store_arg_real(store_now_s()), end_lr > 0 ? store_arg_real(end_lr) : store_arg_null(),
        num_it > 0 ? store_arg_int(num_it) : store_arg_null(),
    };
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_wstatement(st, "UPDATE lr_finds SET suggestions = ?2, stopped_early = ?3, "
                              "finished_at = ?4, end_lr = coalesce(?5, end_lr), "
                              "num_it = coalesce(?6, num_it) WHERE id = ?1",
                          a, STORE_NARGS(a), NULL);
    if (rc == 0)
        rc = lr_find_event(st, id);
    return store_wend(st, rc);
}

int store_lr_find_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    json_t *o = NULL, *pts = NULL;
    int rc = store_prep(db, "SELECT " LRF_COLS " FROM lr_finds WHERE id = ?1", &s);
    if (rc)
        goto out_put;
    sqlite3_bind_int64(s, 1, id);
    rc = store_row_one(db, s, &o);
    sqlite3_finalize(s);
    if (rc)
        goto out_put;
    rc = store_prep(db, "SELECT iter, lr, loss, smooth_loss FROM lr_find_points "
                  "WHERE lr_find_id = ?1 ORDER BY iter", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        rc = store_rows_array(db, s, &pts);
        sqlite3_finalize(s);
    }
    if (rc == 0) {
        json_object_set_new(o, "points", pts);
        *out = o;
    } else {
        json_decref(o);
    }
out_put:
    store_reader_put(st, db);
    return rc;
}

int store_lr_find_list(store *st, int64_t run_id, const store_page *pg, json_t **out)
{
    return store_page_query(st, "SELECT " LRF_COLS " FROM lr_finds WHERE (?1 = 0 OR id < ?1) "
                          "AND run_id = ?3 ORDER BY id DESC LIMIT ?2", pg, run_id, NULL, out);
}

/* ---- metrics ------------------------------------------------------------------------------ */

int store_metrics_push(store *st, int64_t run_id, int64_t job_id, int64_t step, int n,
                       const char *const *keys, const double *values)
{
    if (n <= 0)
        return -EINVAL;
    store_point p = {.kind = STORE_POINT_METRIC, .run = run_id, .job = job_id, .step = step, .t = store_now_s()};
    p.keys = calloc((size_t)n, sizeof *p.keys);
    p.vals = malloc((size_t)n * sizeof *p.vals);
    if (!p.keys || !p.vals) {
        store_point_free(&p);
        return -ENOMEM;
    }
    p.n = n;
    for (int i = 0; i < n; i++) {
        p.keys[i] = strdup(keys[i]);
        if (!p.keys[i]) {
            store_point_free(&p);
            return -ENOMEM;
        }
        p.vals[i] = values[i];
    }
    return store_buffer_add(st, &p, n);
}

/* The rows of a metrics query (step, key, value, time) as objects. Built by hand rather
 * than with the generic row reader: a page has up to STORE_METRICS_MAX rows, and the key strings are
 * shared between rows instead of copied. */
static int metric_rows(sqlite3 *db, sqlite3_stmt *s, const char *key, json_t **out)
{
    json_t *arr = json_array();
    json_t *kstr = NULL;
    int rc;
    if (!arr)
        return -ENOMEM;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(s, 1);
        if (!kstr || (!key && strcmp(json_string_value(kstr), k) != 0)) {
            json_decref(kstr);
            kstr = json_string(k);
        }
        json_t *o = json_object();
        json_t *v = sqlite3_column_type(s, 2) == SQLITE_NULL
                        ? json_null() : json_real(sqlite3_column_double(s, 2));
        if (!o || !kstr || json_object_set_new_nocheck(o, "step",
                                                       json_integer(sqlite3_column_int64(s, 0))) ||
            json_object_set_nocheck(o, "key", kstr) || json_object_set_new_nocheck(o, "value", v) ||
            json_object_set_new_nocheck(o, "time", json_real(sqlite3_column_double(s, 3))) ||
            json_array_append_new(arr, o)) {
            json_decref(kstr);
            json_decref(arr);
            return -ENOMEM;
        }
    }
    json_decref(kstr);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return store_db_fail(db, rc, "read");
    }
    *out = arr;
    return 0;
}

int store_metrics_get(store *st, int64_t run_id, const char *key, int64_t after_step,
                      int limit, json_t **out)
{
    if (limit == 0)
        limit = 1000;
    if (limit < 0 || limit > STORE_METRICS_MAX) {
        store_set_err("limit must be 1..%d", STORE_METRICS_MAX);
        return -EINVAL;
    }
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    json_t *pts = NULL;
    int rc = store_row_exists(db, "runs", run_id);
    if (rc)
        goto out_put;
    /* Two statements so each uses its index: (run, key, step) or (run, step). */
    if (key)
        rc = store_prep(db, "SELECT step, key, value, time FROM metrics WHERE run_id = ?1 AND "
                      "key = ?4 AND step > ?2 ORDER BY step LIMIT ?3", &s);
    else
        rc = store_prep(db, "SELECT step, key, value, time FROM metrics WHERE run_id = ?1 AND "
                      "step > ?2 ORDER BY step, key LIMIT ?3", &s);
    if (rc)
        goto out_put;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_int64(s, 2, after_step < 0 ? INT64_MIN : after_step);
    sqlite3_bind_int(s, 3, limit);
    if (key)
        sqlite3_bind_text(s, 4, key, -1, SQLITE_STATIC);
    rc = metric_rows(db, s, key, &pts);
    sqlite3_finalize(s);
    if (rc)
        goto out_put;
    size_t n = json_array_size(pts);
    json_t *next = json_null();
    if ((int)n == limit) {
        /* A page may end inside a step (several keys); continue from the last complete
         * step unless the page holds one step only. */
        json_int_t last = json_integer_value(json_object_get(json_array_get(pts, n - 1),
                                                             "step"));
        json_int_t first = json_integer_value(json_object_get(json_array_get(pts, 0),
                                                              "step"));
        if (!key && last != first) {
            while (n > 0 && json_integer_value(json_object_get(json_array_get(pts, n - 1),
                                                               "step")) == last)
                json_array_remove(pts, --n);
            last = json_integer_value(json_object_get(json_array_get(pts, n - 1), "step"));
        }
        next = json_integer(last);
    }
    *out = json_pack("{sI so so so}", "run", (json_int_t)run_id, "key",
                     key ? json_string(key) : json_null(), "points", pts, "next_after_step",
                     next);
    if (!*out)
        rc = -ENOMEM;
out_put:
    store_reader_put(st, db);
    return rc;
}

int store_metric_keys(store *st, int64_t run_id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    json_t *arr = json_array();
    int rc = store_prep(db, "SELECT DISTINCT key FROM metrics WHERE run_id = ?1 ORDER BY key", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW)
            json_array_append_new(arr, json_string((const char *)sqlite3_column_text(s, 0)));
        if (r != SQLITE_DONE)
            rc = store_db_fail(db, r, "read");
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    if (rc)
        json_decref(arr);
    else
        *out = arr;
    return rc;
}

/* ---- epochs ----------------------------------------------------------------------------- */

#define EPOCH_COLS "epoch, fit_epoch, cycle, job_id AS job, train_loss, valid_loss, " \
                   "accuracy, f2, seconds, img_per_s, time, step"

/* Adds the "epoch" event carrying the new row (inside the write transaction). */
static int epoch_event(store *st, int64_t run_id, int64_t job_id, int64_t row)
{
    sqlite3_stmt *s;
    json_t *o = NULL;
    int rc = store_prep(st->w, "SELECT " EPOCH_COLS " FROM epochs WHERE id = ?1", &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, row);
    rc = store_row_one(st->w, s, &o);
    sqlite3_finalize(s);
    if (rc == 0)
        rc = store_event_add(st, run_id, job_id, "epoch", o, store_now_s());
    json_decref(o);
    return rc;
}

int store_epoch_add(store *st, int64_t run_id, int64_t job_id, const store_epoch *e,
                    int *epoch_out)
{
    int64_t n = 0, row = 0;
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_query_i64(st->w, "SELECT count(*) FROM epochs WHERE run_id = ?1", run_id, &n);
    if (rc == 0) {
        store_arg a[] = {
            store_arg_int(run_id), store_arg_int(job_id), store_arg_int(n),
            store_arg_int(e->fit_epoch), store_arg_int(e->cycle),
            store_arg_real_or_null(e->train_loss), store_arg_real_or_null(e->valid_loss),
            store_arg_real_or_null(e->accuracy),
            e->f2 < 0 ? store_arg_null() : store_arg_real_or_null(e->f2),
            store_arg_real_or_null(e->seconds), store_arg_real_or_null(e->img_per_s),
            store_arg_real(store_now_s()),
            e->step > 0 ? store_arg_int(e->step) : store_arg_null(),
        };
        rc = store_wstatement(st, "INSERT INTO epochs(run_id, job_id, epoch, fit_epoch, cycle, "
                                  "train_loss, valid_loss, accuracy, f2, seconds, img_per_s, "
                                  "time, step) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                                  "?11, ?12, ?13)", a, STORE_NARGS(a), &row);
    }
    if (rc == 0)
        rc = epoch_event(st, run_id, job_id, row);
    rc = store_wend(st, rc);
    if (rc == 0 && epoch_out)
        *epoch_out = (int)n;
    return rc;
}

int store_epochs_get(store *st, int64_t run_id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_row_exists(db, "runs", run_id);
    if (rc == 0)
        rc = store_prep(db, "SELECT " EPOCH_COLS " FROM epochs WHERE run_id = ?1 ORDER BY epoch",
                  &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        rc = store_rows_array(db, s, out);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}

/* ---- snapshots -------------------------------------------------------------------------- */

int store_snapshot_add(store *st, int64_t run_id, int64_t job_id, const char *kind,
                       int cycle, int epoch, const char *path, int64_t *id)
{
    if (!kind || !path || (strcmp(kind, "snapshot") && strcmp(kind, "checkpoint") &&
                           strcmp(kind, "best") && strcmp(kind, "final"))) {
        store_set_err("snapshot: unknown kind or no path");
        return -EINVAL;
    }
    store_arg a[] = {
        store_arg_int(run_id), store_arg_id(job_id), store_arg_text(kind),
        cycle >= 0 ? store_arg_int(cycle) : store_arg_null(),
        epoch >= 0 ? store_arg_int(epoch) : store_arg_null(),
        store_arg_text(path), store_arg_real(store_now_s()),
    };
    return store_write(st, "INSERT INTO snapshots(run_id, job_id, kind, cycle, epoch, path, "
                           "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                       a, STORE_NARGS(a), id);
}

int store_snapshots_get(store *st, int64_t run_id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_row_exists(db, "runs", run_id);
    if (rc == 0)
        rc = store_prep(db, "SELECT id, job_id AS job, kind, cycle, epoch, path, created_at "
                      "FROM snapshots WHERE run_id = ?1 ORDER BY id", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        rc = store_rows_array(db, s, out);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}

/* One text column of one row from a reader, malloc'd; -ENOENT when no row. */
static int r_text(store *st, sqlite3_stmt *s, sqlite3 *db, char **out)
{
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        *out = strdup((const char *)sqlite3_column_text(s, 0));
        return *out ? 0 : -ENOMEM;
    }
    (void)st;
    return r == SQLITE_DONE ? -ENOENT : store_db_fail(db, r, "read");
}

int store_snapshot_latest(store *st, int64_t run_id, const char *kind, char **path)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT path FROM snapshots WHERE run_id = ?1 AND "
                      "(?2 IS NULL OR kind = ?2) ORDER BY id DESC LIMIT 1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        if (kind)
            sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
        rc = r_text(st, s, db, path);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}

/* ---- predictions ------------------------------------------------------------------------ */

int store_prediction_add(store *st, int64_t run_id, int64_t job_id, const char *path,
                         int n_rows)
{
    store_arg a[] = {
        store_arg_int(run_id), store_arg_int(job_id), store_arg_text(path),
        store_arg_int(n_rows), store_arg_real(store_now_s()),
    };
    return store_write(st, "INSERT OR REPLACE INTO predictions(run_id, job_id, path, n_rows, "
                           "created_at) VALUES (?1, ?2, ?3, ?4, ?5)", a, STORE_NARGS(a), NULL);
}

int store_prediction_path(store *st, int64_t job_id, char **path)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT path FROM predictions WHERE job_id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, job_id);
        rc = r_text(st, s, db, path);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}
