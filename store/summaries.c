/* summaries.c: write-time summaries of the metrics (table metric_summaries): per run, key
 * and bucket of STORE_SUMMARY_STEPS steps, the number of points, the first and last, the
 * lowest and highest. Chart views of long windows read these instead of every row
 * (downsample.c). A summary is rebuilt from its bucket's rows in the transaction that
 * writes them, so a replaced step (a resumed fit) or a kill never leaves it stale. */
#define _GNU_SOURCE
#include "internal.h"

void store_mpoint_extremes(store_mpoint *lo, store_mpoint *hi, const store_mpoint *p)
{
    if (p->has == STORE_MP_NULL) {
        if (lo->has == STORE_MP_EMPTY)
            *lo = *p;
        return;
    }
    if (lo->has != STORE_MP_FINITE || p->value < lo->value)
        *lo = *p;
    if (hi->has != STORE_MP_FINITE || p->value > hi->value)
        *hi = *p;
}

/* A bucket touched by a flush; key borrowed from the flushed point. */
typedef struct sum_ref {
    int64_t run, bucket;
    const char *key;
} sum_ref;

static int sum_ref_cmp(const void *a, const void *b)
{
    const sum_ref *x = a, *y = b;
    if (x->run != y->run)
        return x->run < y->run ? -1 : 1;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

/* Binds p to ?i (step), ?i+1 (value), ?i+2 (time): all NULL for an empty slot. */
static void bind_mpoint(sqlite3_stmt *s, int i, const store_mpoint *p)
{
    if (p->has == STORE_MP_EMPTY) {
        for (int k = 0; k < 3; k++)
            sqlite3_bind_null(s, i + k);
        return;
    }
    sqlite3_bind_int64(s, i, p->step);
    if (p->has == STORE_MP_FINITE)
        sqlite3_bind_double(s, i + 1, p->value);
    else
        sqlite3_bind_null(s, i + 1);
    sqlite3_bind_double(s, i + 2, p->time);
}

/* Rebuilds the summary of r from its rows: sel reads them in step order, put stores it. */
static int sum_rebuild(store *st, sqlite3_stmt *sel, sqlite3_stmt *put, const sum_ref *r)
{
    store_summary s = {.bucket = r->bucket};
    int64_t lo = r->bucket * STORE_SUMMARY_STEPS;
    sqlite3_reset(sel);
    sqlite3_bind_int64(sel, 1, r->run);
    sqlite3_bind_text(sel, 2, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(sel, 3, lo);
    sqlite3_bind_int64(sel, 4, lo + STORE_SUMMARY_STEPS - 1);
    int rc;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        int null = sqlite3_column_type(sel, 1) == SQLITE_NULL;
        store_mpoint p = {.step = sqlite3_column_int64(sel, 0),
                          .value = null ? 0.0 : sqlite3_column_double(sel, 1),
                          .time = sqlite3_column_double(sel, 2),
                          .has = null ? STORE_MP_NULL : STORE_MP_FINITE};
        if (s.n++ == 0)
            s.first = p;
        s.last = p;
        store_mpoint_extremes(&s.lo, &s.hi, &p);
    }
    if (rc != SQLITE_DONE)
        return store_db_fail(st->w, rc, "read");
    if (s.n == 0)
        return 0;
    if (s.lo.has != STORE_MP_FINITE)
        s.lo.has = STORE_MP_EMPTY;   /* a NULL-valued point is no extreme */
    sqlite3_reset(put);
    sqlite3_bind_int64(put, 1, r->run);
    sqlite3_bind_text(put, 2, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(put, 3, s.bucket);
    sqlite3_bind_int64(put, 4, s.n);
    bind_mpoint(put, 5, &s.first);
    bind_mpoint(put, 8, &s.last);
    bind_mpoint(put, 11, &s.lo);
    bind_mpoint(put, 14, &s.hi);
    return store_wrun(st, put);
}

/* The distinct buckets of the metric points of items, sorted; *n_out of them. */
static int sum_refs(const store_point *items, int n, sum_ref **out, int *n_out)
{
    int total = 0, k = 0;
    for (int i = 0; i < n; i++)
        total += items[i].kind == STORE_POINT_METRIC ? items[i].n : 0;
    sum_ref *r = malloc((size_t)(total ? total : 1) * sizeof *r);
    if (!r)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        if (items[i].kind != STORE_POINT_METRIC)
            continue;
        for (int j = 0; j < items[i].n; j++)
            r[k++] = (sum_ref){.run = items[i].run, .key = items[i].keys[j],
                               .bucket = items[i].step >> STORE_SUMMARY_SHIFT};
    }
    qsort(r, (size_t)k, sizeof *r, sum_ref_cmp);
    int u = 0;
    for (int i = 0; i < k; i++)
        if (u == 0 || sum_ref_cmp(&r[u - 1], &r[i]) != 0)
            r[u++] = r[i];
    *out = r;
    *n_out = u;
    return 0;
}

int store_summaries_update(store *st, const store_point *items, int n)
{
    sum_ref *refs;
    int n_refs;
    int rc = sum_refs(items, n, &refs, &n_refs);
    if (rc || n_refs == 0) {
        if (rc == 0)
            free(refs);
        return rc;
    }
    sqlite3_stmt *sel = NULL, *put = NULL;
    rc = store_prep(st->w, "SELECT step, value, time FROM metrics WHERE run_id = ?1 AND "
                           "key = ?2 AND step >= ?3 AND step <= ?4 ORDER BY step", &sel);
    if (rc == 0)
        rc = store_prep(st->w, "INSERT OR REPLACE INTO metric_summaries VALUES (?1, ?2, ?3, "
                               "?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                        &put);
    for (int i = 0; rc == 0 && i < n_refs; i++)
        rc = sum_rebuild(st, sel, put, &refs[i]);
    sqlite3_finalize(sel);
    sqlite3_finalize(put);
    free(refs);
    return rc;
}

/* Column i (step), i+1 (value), i+2 (time) as a point; EMPTY when the step is NULL. */
static store_mpoint column_mpoint(sqlite3_stmt *s, int i)
{
    store_mpoint p = {0};
    if (sqlite3_column_type(s, i) == SQLITE_NULL)
        return p;
    p.step = sqlite3_column_int64(s, i);
    p.has = sqlite3_column_type(s, i + 1) == SQLITE_NULL ? STORE_MP_NULL : STORE_MP_FINITE;
    p.value = p.has == STORE_MP_FINITE ? sqlite3_column_double(s, i + 1) : 0.0;
    p.time = sqlite3_column_double(s, i + 2);
    return p;
}

int store_summaries_read(sqlite3 *db, int64_t run, const char *key, int64_t b0, int64_t b1,
                         int (*fn)(void *ctx, const store_summary *s), void *ctx,
                         int64_t *rows)
{
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT bucket, n, first_step, first_value, first_time, "
                            "last_step, last_value, last_time, min_step, min_value, min_time, "
                            "max_step, max_value, max_time FROM metric_summaries WHERE "
                            "run_id = ?1 AND key = ?2 AND bucket >= ?3 AND bucket <= ?4 "
                            "ORDER BY bucket", &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, b0);
    sqlite3_bind_int64(s, 4, b1);
    *rows = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_summary sm = {.bucket = sqlite3_column_int64(s, 0),
                            .n = sqlite3_column_int64(s, 1),
                            .first = column_mpoint(s, 2), .last = column_mpoint(s, 5),
                            .lo = column_mpoint(s, 8), .hi = column_mpoint(s, 11)};
        ++*rows;
        if ((rc = fn(ctx, &sm)) != 0)
            break;
    }
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc > 0)
        rc = store_db_fail(db, rc, "read");
    sqlite3_finalize(s);
    return rc;
}
