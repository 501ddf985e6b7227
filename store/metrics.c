/* metrics.c: per-iteration metrics of runs (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

int store_metrics_push(store *st, int64_t run_id, int64_t job_id, int64_t step, int n,
                       const char *const *keys, const double *values)
{
    if (n <= 0)
        return -EINVAL;
    store_point p = {.kind = STORE_POINT_METRIC, .run = run_id, .job = job_id, .step = step,
                     .t = store_now_s()};
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

/* A REAL column, or null. */
static json_t *column_real(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? json_null()
                                                    : json_real(sqlite3_column_double(s, i));
}

/* One metrics row (step, key, value, time) as an object sharing the key string kstr. */
static json_t *metric_point(sqlite3_stmt *s, json_t *kstr)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    /* Each value is made only when the previous set succeeded; a failing set frees it. */
    if (json_object_set_new_nocheck(o, "step", json_integer(sqlite3_column_int64(s, 0))) ||
        json_object_set_nocheck(o, "key", kstr) ||
        json_object_set_new_nocheck(o, "value", column_real(s, 2)) ||
        json_object_set_new_nocheck(o, "time", column_real(s, 3))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The rows of a metrics query as objects. Built by hand rather than with the generic row
 * reader: a page has up to STORE_METRICS_MAX rows, and the key strings are shared between
 * rows instead of copied. */
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
        json_t *o = kstr ? metric_point(s, kstr) : NULL;
        if (!o || json_array_append_new(arr, o)) {
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
static json_int_t point_step(json_t *pts, size_t i)
{
    return json_integer_value(json_object_get(json_array_get(pts, i), "step"));
}

/* next_after_step of a page: null when the page is not full. A full page of every key may
 * end inside a step; it is cut back to the last complete step, unless it holds one step
 * only, and continues from there. */
static json_t *page_next_step(json_t *pts, const char *key, int limit)
{
    size_t n = json_array_size(pts);
    if ((int)n != limit)
        return json_null();
    json_int_t last = point_step(pts, n - 1);
    if (!key && last != point_step(pts, 0)) {
        while (n > 0 && point_step(pts, n - 1) == last)
            json_array_remove(pts, --n);
        last = point_step(pts, n - 1);
    }
    return json_integer(last);
}

int store_metrics_get(store *st, int64_t run_id, const char *key, int64_t after_step,
                      int limit, json_t **out)
{
    return store_metrics_range(st, run_id, key, after_step, -1, limit, out);
}

int store_metrics_range(store *st, int64_t run_id, const char *key, int64_t after_step,
                        int64_t before_step, int limit, json_t **out)
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
                            "key = ?4 AND step > ?2 AND step < ?5 ORDER BY step LIMIT ?3", &s);
    else
        rc = store_prep(db, "SELECT step, key, value, time FROM metrics WHERE run_id = ?1 AND "
                            "step > ?2 AND step < ?5 ORDER BY step, key LIMIT ?3", &s);
    if (rc)
        goto out_put;
    sqlite3_bind_int64(s, 1, run_id);
    sqlite3_bind_int64(s, 2, after_step < 0 ? INT64_MIN : after_step);
    sqlite3_bind_int(s, 3, limit);
    sqlite3_bind_int64(s, 5, before_step < 0 ? INT64_MAX : before_step);
    if (key)
        sqlite3_bind_text(s, 4, key, -1, SQLITE_STATIC);
    rc = metric_rows(db, s, key, &pts);
    sqlite3_finalize(s);
    if (rc)
        goto out_put;
    json_t *next = page_next_step(pts, key, limit);
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
    int rc = store_prep(db, "SELECT DISTINCT key FROM metrics WHERE run_id = ?1 ORDER BY key",
                        &s);
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
