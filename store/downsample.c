/* downsample.c: chart views of a run's metrics, at most max_points per key, that keep the
 * first, last and extreme points of the window (see store_metrics_downsample in store.h).
 * One scan of the window per key in step order, in memory bounded by max_points; a window
 * whose buckets are wide enough is scanned through its write-time summaries (summaries.c). */
#define _GNU_SOURCE
#include "internal.h"

/* The scan of one key. The first max_points points are kept whole so that a window that
 * fits is answered exactly; past that, the buckets decide. */
typedef struct ds_scan {
    int max_points;
    store_mpoint *all;       /* max_points slots */
    int64_t n;               /* points seen */
    store_mpoint first, last;
    int nb;                  /* buckets */
    store_mpoint *lo, *hi;   /* nb slots each */
    int64_t s0;              /* the window's first step */
    double span;             /* its last step - s0 + 1 */
} ds_scan;

static void ds_scan_free(ds_scan *sc)
{
    free(sc->all);
    free(sc->lo);
    free(sc->hi);
}

static int ds_scan_init(ds_scan *sc, int max_points, int64_t s0, int64_t s1)
{
    memset(sc, 0, sizeof *sc);
    sc->max_points = max_points;
    sc->nb = (max_points - 2) / 2;
    sc->s0 = s0;
    sc->span = (double)s1 - (double)s0 + 1.0;
    sc->all = malloc((size_t)max_points * sizeof *sc->all);
    sc->lo = calloc((size_t)sc->nb + 1, sizeof *sc->lo);
    sc->hi = calloc((size_t)sc->nb + 1, sizeof *sc->hi);
    if (!sc->all || !sc->lo || !sc->hi) {
        ds_scan_free(sc);
        return -ENOMEM;
    }
    return 0;
}

/* Puts p in its bucket: lowest and highest finite value, ties keeping the earlier point; a
 * non-finite value holds the low slot only while the bucket has nothing finite. Points come
 * in step order. */
static void ds_bucket_add(ds_scan *sc, const store_mpoint *p)
{
    if (sc->nb == 0)
        return;
    int b = (int)((double)(p->step - sc->s0) / sc->span * sc->nb);
    if (b < 0)
        b = 0;
    if (b >= sc->nb)
        b = sc->nb - 1;
    store_mpoint_extremes(&sc->lo[b], &sc->hi[b], p);
}

static void ds_scan_add(ds_scan *sc, const store_mpoint *p)
{
    if (sc->n < sc->max_points)
        sc->all[sc->n] = *p;
    if (sc->n == 0)
        sc->first = *p;
    sc->last = *p;
    sc->n++;
    ds_bucket_add(sc, p);
}

/* A point as the API answers it, sharing the key string kstr. */
static json_t *ds_point_json(const store_mpoint *p, json_t *kstr)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (json_object_set_new_nocheck(o, "step", json_integer(p->step)) ||
        json_object_set_nocheck(o, "key", kstr) ||
        json_object_set_new_nocheck(o, "value",
                                    p->has == STORE_MP_FINITE ? json_real(p->value)
                                                              : json_null()) ||
        json_object_set_new_nocheck(o, "time", json_real(p->time))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int ds_append(json_t *arr, const store_mpoint *p, json_t *kstr)
{
    json_t *o = ds_point_json(p, kstr);
    return o && json_array_append_new(arr, o) == 0 ? 0 : -ENOMEM;
}

/* A bucket's point unless it is the window's first or last (answered anyway) or the
 * bucket's other point. */
static int ds_append_slot(json_t *arr, const ds_scan *sc, const store_mpoint *p,
                          const store_mpoint *other, json_t *kstr)
{
    if (p->has == STORE_MP_EMPTY || p->step == sc->first.step || p->step == sc->last.step)
        return 0;
    if (other && other->has != STORE_MP_EMPTY && other->step == p->step)
        return 0;
    return ds_append(arr, p, kstr);
}

/* Appends the scan's answer to arr in step order; *lost is set when points were left out. */
static int ds_scan_emit(const ds_scan *sc, json_t *arr, json_t *kstr, int *lost)
{
    int rc = 0;
    if (sc->n <= sc->max_points) {
        for (int64_t i = 0; i < sc->n && rc == 0; i++)
            rc = ds_append(arr, &sc->all[i], kstr);
        return rc;
    }
    *lost = 1;
    rc = ds_append(arr, &sc->first, kstr);
    for (int b = 0; b < sc->nb && rc == 0; b++) {
        const store_mpoint *lo = &sc->lo[b], *hi = &sc->hi[b];
        const store_mpoint *a = lo, *z = hi;
        if (hi->has != STORE_MP_EMPTY && (lo->has == STORE_MP_EMPTY || hi->step < lo->step)) {
            a = hi;
            z = lo;
        }
        rc = ds_append_slot(arr, sc, a, NULL, kstr);
        if (rc == 0)
            rc = ds_append_slot(arr, sc, z, a, kstr);
    }
    if (rc == 0)
        rc = ds_append(arr, &sc->last, kstr);
    return rc;
}

/* The first (desc 0) or last (desc 1) step of key in the window; -ENOENT when it is
 * empty. */
static int ds_bound(sqlite3 *db, int64_t run, const char *key, int64_t after, int64_t before,
                    int desc, int64_t *step)
{
    sqlite3_stmt *s;
    int rc = store_prep(db, desc ? "SELECT step FROM metrics WHERE run_id = ?1 AND key = ?2 "
                                   "AND step > ?3 AND step < ?4 ORDER BY step DESC LIMIT 1"
                                 : "SELECT step FROM metrics WHERE run_id = ?1 AND key = ?2 "
                                   "AND step > ?3 AND step < ?4 ORDER BY step LIMIT 1",
                        &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, after);
    sqlite3_bind_int64(s, 4, before);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *step = sqlite3_column_int64(s, 0);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : store_db_fail(db, rc, "read");
    }
    sqlite3_finalize(s);
    return rc;
}

/* Feeds the points of key with after < step < before to the scan, at most limit of them
 * (-1: all). */
static int ds_scan_rows(sqlite3 *db, ds_scan *sc, int64_t run, const char *key, int64_t after,
                        int64_t before, int64_t limit)
{
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT step, value, time FROM metrics WHERE run_id = ?1 AND "
                            "key = ?2 AND step > ?3 AND step < ?4 ORDER BY step LIMIT ?5",
                        &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, after);
    sqlite3_bind_int64(s, 4, before);
    sqlite3_bind_int64(s, 5, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int null = sqlite3_column_type(s, 1) == SQLITE_NULL;
        store_mpoint p = {.step = sqlite3_column_int64(s, 0),
                          .value = null ? 0.0 : sqlite3_column_double(s, 1),
                          .time = sqlite3_column_double(s, 2),
                          .has = null ? STORE_MP_NULL : STORE_MP_FINITE};
        ds_scan_add(sc, &p);
    }
    rc = rc == SQLITE_DONE ? 0 : store_db_fail(db, rc, "read");
    sqlite3_finalize(s);
    return rc;
}

/* Fills the scan without reading the whole window when it keeps only the first and last
 * points (no buckets): the first max_points + 1 points, then the last one. */
static int ds_scan_window(sqlite3 *db, ds_scan *sc, int64_t run, const char *key,
                          int64_t after, int64_t before, int64_t last)
{
    if (sc->nb > 0)
        return ds_scan_rows(db, sc, run, key, after, before, -1);
    int rc = ds_scan_rows(db, sc, run, key, after, before, sc->max_points + 1);
    if (rc || sc->n <= sc->max_points || sc->last.step == last)
        return rc;
    ds_scan tail = {.max_points = 0};   /* keeps nothing but its first and last */
    rc = ds_scan_rows(db, &tail, run, key, last - 1, before, 1);
    sc->last = tail.last;
    return rc;
}

/* ---- from the summaries ------------------------------------------------------------------ */

static int ds_mpoint_cmp(const void *a, const void *b)
{
    const store_mpoint *x = *(const store_mpoint *const *)a;
    const store_mpoint *y = *(const store_mpoint *const *)b;
    return x->step < y->step ? -1 : x->step > y->step;
}

/* Feeds a summary to the scan as if its n points had come: its first, extremes and last
 * in step order (the buckets of the view only see those). The slots of `all` are not
 * filled: a window that fits max_points is read from its rows instead. */
static int ds_feed_summary(void *ctx, const store_summary *s)
{
    ds_scan *sc = ctx;
    const store_mpoint *p[4];
    int k = 0;
    const store_mpoint *cand[4] = {&s->first, &s->lo, &s->hi, &s->last};
    for (int i = 0; i < 4; i++)
        if (cand[i]->has != STORE_MP_EMPTY)
            p[k++] = cand[i];
    qsort(p, (size_t)k, sizeof *p, ds_mpoint_cmp);
    for (int i = 0; i < k; i++) {
        if (i > 0 && p[i]->step == p[i - 1]->step)
            continue;
        if (sc->n == 0 && i == 0)
            sc->first = *p[i];
        ds_bucket_add(sc, p[i]);
    }
    sc->last = s->last;
    sc->n += s->n;
    return 0;
}

/* Fills the scan with the points of key with lo <= step <= hi: the buckets of level wholly
 * inside the range from their summaries, the ends it cuts from the level below, and so on
 * down to the rows below level 0, so a range costs a few summaries per level besides the
 * ones it is made of. *used counts the summaries read. */
static int ds_scan_level(sqlite3 *db, ds_scan *sc, int64_t run, const char *key, int level,
                         int64_t lo, int64_t hi, int64_t *used)
{
    if (lo > hi)
        return 0;
    if (level < 0)
        return ds_scan_rows(db, sc, run, key, lo - 1, hi + 1, -1);
    int shift = store_summary_shift(level);
    int64_t width = (int64_t)1 << shift, rows = 0;
    int64_t b0 = (lo + width - 1) >> shift, b1 = ((hi + 1) >> shift) - 1;
    if (b0 > b1)
        return ds_scan_level(db, sc, run, key, level - 1, lo, hi, used);
    int rc = ds_scan_level(db, sc, run, key, level - 1, lo, b0 * width - 1, used);
    if (rc == 0)
        rc = store_summaries_read(db, run, key, level, b0, b1, ds_feed_summary, sc, &rows);
    *used += rows;
    if (rc == 0)
        rc = ds_scan_level(db, sc, run, key, level - 1, (b1 + 1) * width, hi, used);
    return rc;
}

/* The highest level of summaries whose buckets each span no more steps than one of the
 * view's, so that they can fill the view's buckets; -1 when none (or the view keeps no
 * buckets). */
static int ds_summary_level(const ds_scan *sc)
{
    int level = -1;
    if (sc->nb == 0)
        return -1;
    double per = sc->span / sc->nb;
    while (level + 1 < STORE_SUMMARY_LEVELS &&
           per >= (double)((int64_t)1 << store_summary_shift(level + 1)))
        level++;
    return level;
}

/* ---- one key, every key ------------------------------------------------------------------- */

/* Fills the scan of the window [s0, s1] of key: from the summaries when they fit and the
 * window holds more than max_points points, else from the rows. */
static int ds_scan_fill(sqlite3 *db, ds_scan *sc, int summaries, int64_t run, const char *key,
                        int64_t after, int64_t before, int64_t s0, int64_t s1)
{
    int max_points = sc->max_points, level = summaries ? ds_summary_level(sc) : -1;
    if (level >= 0) {
        int64_t used = 0;
        int rc = ds_scan_level(db, sc, run, key, level, s0, s1, &used);
        if (rc == 0 && used == 0)
            rc = -ENOENT;   /* none stored (a database written by other means) */
        if (rc != -ENOENT && (rc || sc->n > max_points))
            return rc;
        ds_scan_free(sc);
        if ((rc = ds_scan_init(sc, max_points, s0, s1)))
            return rc;
    }
    return ds_scan_window(db, sc, run, key, after, before, s1);
}

/* Appends the view of one key to arr. */
static int ds_key_view(sqlite3 *db, int summaries, int64_t run, const char *key,
                       int64_t after, int64_t before, int max_points, json_t *arr, int *lost)
{
    int64_t s0, s1;
    ds_scan sc;
    int rc = ds_bound(db, run, key, after, before, 0, &s0);
    if (rc == 0)
        rc = ds_bound(db, run, key, after, before, 1, &s1);
    if (rc == -ENOENT)
        return 0;
    if (rc || (rc = ds_scan_init(&sc, max_points, s0, s1)))
        return rc;
    rc = ds_scan_fill(db, &sc, summaries, run, key, after, before, s0, s1);
    json_t *kstr = rc ? NULL : json_string(key);
    if (rc == 0)
        rc = kstr ? ds_scan_emit(&sc, arr, kstr, lost) : -ENOMEM;
    json_decref(kstr);
    ds_scan_free(&sc);
    return rc;
}

/* The run's key after prev in order (prev "" for the first), malloc'd in *key; -ENOENT past
 * the last. One index seek per key, where DISTINCT would read every row. */
static int ds_next_key(sqlite3 *db, int64_t run, const char *prev, char **key)
{
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT key FROM metrics WHERE run_id = ?1 AND key > ?2 "
                            "ORDER BY key LIMIT 1",
                        &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_text(s, 2, prev, -1, SQLITE_STATIC);
    rc = store_row_text(db, s, key);
    sqlite3_finalize(s);
    return rc;
}

static int ds_every_key(sqlite3 *db, int summaries, int64_t run, int64_t after,
                        int64_t before, int max_points, json_t *arr, int *lost)
{
    char *prev = strdup(""), *key = NULL;
    int rc = prev ? 0 : -ENOMEM;
    while (rc == 0 && (rc = ds_next_key(db, run, prev, &key)) == 0) {
        free(prev);
        prev = key;
        rc = key ? ds_key_view(db, summaries, run, key, after, before, max_points, arr, lost)
                 : -EIO;
    }
    free(prev);
    return rc == -ENOENT ? 0 : rc;
}

int store_metrics_downsample(store *st, int64_t run_id, const char *key, int64_t after_step,
                             int64_t before_step, int max_points, json_t **out)
{
    if (max_points < 2 || max_points > STORE_METRICS_MAX) {
        store_set_err("max_points must be 2..%d", STORE_METRICS_MAX);
        return -EINVAL;
    }
    int64_t after = after_step < 0 ? INT64_MIN : after_step;
    int64_t before = before_step < 0 ? INT64_MAX : before_step;
    int lost = 0, summaries = 1;
#ifdef STORE_TEST_HOOKS
    summaries = !__atomic_load_n(&st->summaries_off, __ATOMIC_RELAXED);
#endif
    json_t *pts = json_array();
    if (!pts)
        return -ENOMEM;
    sqlite3 *db = store_reader_get(st);
    int rc = store_row_exists(db, "runs", run_id);
    if (rc == 0)
        rc = key ? ds_key_view(db, summaries, run_id, key, after, before, max_points, pts,
                               &lost)
                 : ds_every_key(db, summaries, run_id, after, before, max_points, pts, &lost);
    store_reader_put(st, db);
    if (rc) {
        json_decref(pts);
        return rc;
    }
    *out = json_pack("{sI so so sn si sb}", "run", (json_int_t)run_id, "key",
                     key ? json_string(key) : json_null(), "points", pts, "next_after_step",
                     "max_points", max_points, "downsampled", lost);
    return *out ? 0 : -ENOMEM;
}

#ifdef STORE_TEST_HOOKS
void store_test_summaries_off(store *st, int off)
{
    __atomic_store_n(&st->summaries_off, off, __ATOMIC_RELAXED);
}
#endif
