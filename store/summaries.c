/* summaries.c: write-time summaries of the metrics (table metric_summaries): per run, key,
 * level and bucket (see STORE_SUMMARY_LEVELS), the number of points, the first and last,
 * the lowest and highest. Chart views of long windows read these instead of every row
 * (downsample.c). A summary is rebuilt in the transaction that writes its bucket's rows (at
 * level 0 from them, above from the level below), so a replaced step (a resumed fit) or a
 * kill never leaves it stale. */
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

/* The summaries' columns after run_id, key and level, as read and written. */
#define SUM_COLUMNS "bucket, n, first_step, first_value, first_time, last_step, last_value, " \
                    "last_time, min_step, min_value, min_time, max_step, max_value, max_time"

static const char sum_select[] =
    "SELECT " SUM_COLUMNS " FROM metric_summaries WHERE run_id = ?1 AND key = ?2 AND "
    "level = ?3 AND bucket >= ?4 AND bucket <= ?5 ORDER BY bucket";

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

/* Steps s, a bound sum_select, calling fn on each summary (see store_summaries_read). */
static int sum_step(sqlite3 *db, sqlite3_stmt *s, int (*fn)(void *ctx, const store_summary *s),
                    void *ctx, int64_t *rows)
{
    int rc;
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
        return 0;
    return rc > 0 ? store_db_fail(db, rc, "read") : rc;
}

/* Adds to s a stretch of n points that follows those it has: the stretch's first and last
 * point and its lowest and highest (only finite ones count, so a summary of nothing but
 * NULL values has EMPTY extremes). */
static void sum_add(store_summary *s, int64_t n, const store_mpoint *first,
                    const store_mpoint *last, const store_mpoint *lo, const store_mpoint *hi)
{
    if (s->n == 0)
        s->first = *first;
    s->last = *last;
    s->n += n;
    if (lo->has == STORE_MP_FINITE)
        store_mpoint_extremes(&s->lo, &s->hi, lo);
    if (hi->has == STORE_MP_FINITE)
        store_mpoint_extremes(&s->lo, &s->hi, hi);
}

static int sum_add_child(void *ctx, const store_summary *c)
{
    sum_add(ctx, c->n, &c->first, &c->last, &c->lo, &c->hi);
    return 0;
}

/* Summarises into s the rows of r's level-0 bucket; sel reads them in step order. */
static int sum_rows(store *st, sqlite3_stmt *sel, const sum_ref *r, store_summary *s)
{
    int64_t lo = r->bucket << STORE_SUMMARY_SHIFT0;
    sqlite3_reset(sel);
    sqlite3_bind_int64(sel, 1, r->run);
    sqlite3_bind_text(sel, 2, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(sel, 3, lo);
    sqlite3_bind_int64(sel, 4, lo + ((int64_t)1 << STORE_SUMMARY_SHIFT0) - 1);
    int rc;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        int null = sqlite3_column_type(sel, 1) == SQLITE_NULL;
        store_mpoint p = {.step = sqlite3_column_int64(sel, 0),
                          .value = null ? 0.0 : sqlite3_column_double(sel, 1),
                          .time = sqlite3_column_double(sel, 2),
                          .has = null ? STORE_MP_NULL : STORE_MP_FINITE};
        sum_add(s, 1, &p, &p, &p, &p);
    }
    return rc == SQLITE_DONE ? 0 : store_db_fail(st->w, rc, "read");
}

/* The statements of a rebuild: the rows of a level-0 bucket, the summaries of a level, and
 * the summary's replacement. */
typedef struct sum_stmts {
    sqlite3_stmt *rows, *children, *put;
} sum_stmts;

/* Rebuilds the summary of r at level: level 0 from its rows, the others from the summaries
 * of the level below. */
static int sum_rebuild(store *st, const sum_stmts *q, const sum_ref *r, int level)
{
    store_summary s = {.bucket = r->bucket};
    int64_t rows;
    int rc;
    if (level == 0) {
        rc = sum_rows(st, q->rows, r, &s);
    } else {
        sqlite3_reset(q->children);
        sqlite3_bind_int64(q->children, 1, r->run);
        sqlite3_bind_text(q->children, 2, r->key, -1, SQLITE_STATIC);
        sqlite3_bind_int(q->children, 3, level - 1);
        sqlite3_bind_int64(q->children, 4, r->bucket << STORE_SUMMARY_FANOUT_SHIFT);
        sqlite3_bind_int64(q->children, 5,
                           ((r->bucket + 1) << STORE_SUMMARY_FANOUT_SHIFT) - 1);
        rc = sum_step(st->w, q->children, sum_add_child, &s, &rows);
    }
    if (rc || s.n == 0)
        return rc;
    sqlite3_reset(q->put);
    sqlite3_bind_int64(q->put, 1, r->run);
    sqlite3_bind_text(q->put, 2, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_int(q->put, 3, level);
    sqlite3_bind_int64(q->put, 4, s.bucket);
    sqlite3_bind_int64(q->put, 5, s.n);
    bind_mpoint(q->put, 6, &s.first);
    bind_mpoint(q->put, 9, &s.last);
    bind_mpoint(q->put, 12, &s.lo);
    bind_mpoint(q->put, 15, &s.hi);
    return store_wrun(st, q->put);
}

/* Drops the repeats of the sorted r[0..k); returns how many are left. */
static int sum_refs_unique(sum_ref *r, int k)
{
    int u = 0;
    for (int i = 0; i < k; i++)
        if (u == 0 || sum_ref_cmp(&r[u - 1], &r[i]) != 0)
            r[u++] = r[i];
    return u;
}

/* The distinct level-0 buckets of the metric points of items, sorted; *n_out of them. */
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
                               .bucket = items[i].step >> STORE_SUMMARY_SHIFT0};
    }
    qsort(r, (size_t)k, sizeof *r, sum_ref_cmp);
    *out = r;
    *n_out = sum_refs_unique(r, k);
    return 0;
}

/* The buckets one level up of the sorted, distinct refs: still sorted, made distinct. */
static int sum_refs_up(sum_ref *r, int k)
{
    for (int i = 0; i < k; i++)
        r[i].bucket >>= STORE_SUMMARY_FANOUT_SHIFT;
    return sum_refs_unique(r, k);
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
    sum_stmts q = {NULL, NULL, NULL};
    rc = store_prep(st->w, "SELECT step, value, time FROM metrics WHERE run_id = ?1 AND "
                           "key = ?2 AND step >= ?3 AND step <= ?4 ORDER BY step", &q.rows);
    if (rc == 0)
        rc = store_prep(st->w, sum_select, &q.children);
    if (rc == 0)
        rc = store_prep(st->w, "INSERT OR REPLACE INTO metric_summaries (run_id, key, level, "
                               SUM_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                               "?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                        &q.put);
    for (int level = 0; rc == 0 && level < STORE_SUMMARY_LEVELS; level++) {
        if (level > 0)
            n_refs = sum_refs_up(refs, n_refs);
        for (int i = 0; rc == 0 && i < n_refs; i++)
            rc = sum_rebuild(st, &q, &refs[i], level);
    }
    sqlite3_finalize(q.rows);
    sqlite3_finalize(q.children);
    sqlite3_finalize(q.put);
    free(refs);
    return rc;
}

int store_summaries_read(sqlite3 *db, int64_t run, const char *key, int level, int64_t b0,
                         int64_t b1, int (*fn)(void *ctx, const store_summary *s), void *ctx,
                         int64_t *rows)
{
    sqlite3_stmt *s;
    *rows = 0;
    int rc = store_prep(db, sum_select, &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, level);
    sqlite3_bind_int64(s, 4, b0);
    sqlite3_bind_int64(s, 5, b1);
    rc = sum_step(db, s, fn, ctx, rows);
    sqlite3_finalize(s);
    return rc;
}
