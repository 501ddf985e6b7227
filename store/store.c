/* store.c: the SQLite store: connections, migrations, the point buffer and its flusher,
 * commit notifications, and every query of the project (see store.h). */
#define _GNU_SOURCE
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "schema_sql.h"

/* ---- small helpers ---------------------------------------------------------------------- */

static _Thread_local char errbuf[512];

const char *store_errmsg(void)
{
    return errbuf;
}

static void set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* SQLite result code -> our error code; records the message for store_errmsg. */
static int db_fail(sqlite3 *db, int rc, const char *what)
{
    set_err("%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (rc == SQLITE_NOMEM)
        return -ENOMEM;
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return -EINVAL;
    return -EIO;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- the store object ------------------------------------------------------------------- */

typedef enum pkind { P_METRIC, P_SWEEP, P_NOTE } pkind;

typedef struct pitem {
    pkind kind;
    int64_t run, job;
    int64_t step;          /* metric: step; sweep: lr_find id */
    double t;
    int n;                 /* metric: values; sweep: iter */
    char **keys;
    double *vals;          /* metric values; sweep: lr, loss, smooth_loss */
    char *what, *why;      /* note */
} pitem;

typedef struct pprogress {
    int64_t job;
    double fraction, eta_s;
} pprogress;

typedef struct evrec {
    store_event ev;
    char *kind, *data;
} evrec;

typedef struct sub {
    int handle;
    store_listener fn;
    void *ctx;
} sub;

struct store {
    sqlite3 *w;                 /* the one writer connection, under wmu */
    sqlite3_stmt *ins_event;    /* prepared once: every commit adds events */
    pthread_mutex_t wmu;
    int fail_write;             /* fault injection countdown, under wmu */
    evrec *tev;                 /* events of the open write transaction */
    int n_tev, cap_tev;

    sqlite3 **rd;               /* read-only pool */
    char *rd_busy;
    int n_rd;
    pthread_mutex_t rmu;
    pthread_cond_t rcv;

    pthread_mutex_t bmu;        /* the point buffer */
    pitem *buf;
    int n_buf, cap_buf;
    int buf_points;
    pprogress *prog;
    int n_prog, cap_prog;

    pthread_t flusher;
    int flusher_started;
    int stopping;               /* under bmu */
    pthread_cond_t fcv;
    int flush_ms, flush_points;

    pthread_mutex_t nmu;        /* subscribers; held while listeners run */
    sub *subs;
    int n_subs, cap_subs, next_handle;
};

int store_schema_current(void)
{
    return store_schema_version;
}

static void *grow(void *p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return p;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *q = realloc(p, (size_t)nc * elem);
    if (q)
        *cap = nc;
    return q;
}

/* ---- writer: statements, transactions, events --------------------------------------------- */

/* A result code no SQLite call returns: the fault injection fired. */
#define INJECTED_FAILURE 0x7ff00

/* Steps a writer statement; the fault-injection countdown makes the n-th one fail. */
static int wstep(store *st, sqlite3_stmt *s)
{
    if (st->fail_write > 0 && --st->fail_write == 0) {
        set_err("injected write failure");
        return INJECTED_FAILURE;
    }
    return sqlite3_step(s);
}

static int wexec(store *st, const char *sql)
{
    if (st->fail_write > 0 && --st->fail_write == 0) {
        set_err("injected write failure");
        return -EIO;
    }
    char *msg = NULL;
    int rc = sqlite3_exec(st->w, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        set_err("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
    }
    return 0;
}

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **s)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, s, NULL);
    if (rc != SQLITE_OK) {
        *s = NULL;
        return db_fail(db, rc, "prepare");
    }
    return 0;
}

/* Runs a bound writer statement to completion. */
static int wrun(store *st, sqlite3_stmt *s)
{
    int rc = wstep(st, s);
    if (rc == INJECTED_FAILURE)
        return -EIO;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return db_fail(st->w, rc, "write");
    return 0;
}

static void tev_clear(store *st)
{
    for (int i = 0; i < st->n_tev; i++) {
        free(st->tev[i].kind);
        free(st->tev[i].data);
    }
    st->n_tev = 0;
}

/* Inserts an event row in the open transaction and remembers it for the notification. */
static int ev_add(store *st, int64_t run, int64_t job, const char *kind, json_t *data,
                  double t)
{
    char *text = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (!text)
        return -ENOMEM;
    sqlite3_stmt *s = st->ins_event;
    int rc = 0;
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, run);
    if (job)
        sqlite3_bind_int64(s, 2, job);
    else
        sqlite3_bind_null(s, 2);
    sqlite3_bind_text(s, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, text, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 5, t);
    rc = wrun(st, s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc)
        goto out_free_text;
    evrec *nt = grow(st->tev, &st->cap_tev, st->n_tev + 1, sizeof *nt);
    if (!nt) {
        rc = -ENOMEM;
        goto out_free_text;
    }
    st->tev = nt;
    evrec *e = &st->tev[st->n_tev];
    e->kind = strdup(kind);
    if (!e->kind) {
        rc = -ENOMEM;
        goto out_free_text;
    }
    e->data = text;
    e->ev.id = sqlite3_last_insert_rowid(st->w);
    e->ev.run_id = run;
    e->ev.job_id = job;
    e->ev.time = t;
    st->n_tev++;
    return 0;

out_free_text:
    free(text);
    return rc;
}

/* Calls the listeners with the committed events. Entered with wmu held; takes nmu before
 * releasing wmu so notifications keep commit order without holding up the next writer. */
static void wunlock_notify(store *st)
{
    if (st->n_tev == 0) {
        pthread_mutex_unlock(&st->wmu);
        return;
    }
    evrec *evs = st->tev;
    int n = st->n_tev;
    st->tev = NULL;
    st->n_tev = st->cap_tev = 0;
    pthread_mutex_lock(&st->nmu);
    pthread_mutex_unlock(&st->wmu);
    store_event *arr = malloc((size_t)n * sizeof *arr);
    if (arr) {
        for (int i = 0; i < n; i++) {
            arr[i] = evs[i].ev;
            arr[i].kind = evs[i].kind;
            arr[i].data = evs[i].data;
        }
        for (int i = 0; i < st->n_subs; i++)
            st->subs[i].fn(st->subs[i].ctx, arr, n);
        free(arr);
    }
    pthread_mutex_unlock(&st->nmu);
    for (int i = 0; i < n; i++) {
        free(evs[i].kind);
        free(evs[i].data);
    }
    free(evs);
}

static int flush_locked(store *st);

/* Takes the writer, commits buffered points (so rows keep their order), opens a write
 * transaction. On failure the writer is released. */
static int wbegin(store *st)
{
    pthread_mutex_lock(&st->wmu);
    flush_locked(st);
    int rc = wexec(st, "BEGIN IMMEDIATE");
    if (rc) {
        wunlock_notify(st);
        return rc;
    }
    return 0;
}

/* Commits when rc == 0 (a failing commit turns into its error), else rolls back; then
 * releases the writer and notifies. Returns the final code. */
static int wend(store *st, int rc)
{
    if (rc == 0)
        rc = wexec(st, "COMMIT");
    if (rc) {
        if (!sqlite3_get_autocommit(st->w)) {
            char keep[sizeof errbuf];
            memcpy(keep, errbuf, sizeof keep);
            sqlite3_exec(st->w, "ROLLBACK", NULL, NULL, NULL);
            memcpy(errbuf, keep, sizeof keep);
        }
        tev_clear(st);
    }
    wunlock_notify(st);
    return rc;
}

/* ---- rows to JSON ------------------------------------------------------------------------ */

/* One result row as an object. Column names ending in _json hold JSON text (parsed; the
 * suffix dropped); names ending in _bool are integers shown as booleans. */
static json_t *row_obj(sqlite3_stmt *s)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int nc = sqlite3_column_count(s);
    for (int i = 0; i < nc; i++) {
        const char *name = sqlite3_column_name(s, i);
        size_t len = strlen(name);
        char key[64];
        json_t *v = NULL;
        int type = sqlite3_column_type(s, i);
        if (len > 5 && strcmp(name + len - 5, "_json") == 0) {
            snprintf(key, sizeof key, "%.*s", (int)(len - 5), name);
            if (type == SQLITE_NULL) {
                v = json_null();
            } else {
                const char *t = (const char *)sqlite3_column_text(s, i);
                v = json_loads(t, JSON_DECODE_ANY, NULL);
                if (!v)
                    v = json_string(t);
            }
        } else if (len > 5 && strcmp(name + len - 5, "_bool") == 0) {
            snprintf(key, sizeof key, "%.*s", (int)(len - 5), name);
            v = type == SQLITE_NULL ? json_null() : json_boolean(sqlite3_column_int(s, i));
        } else {
            snprintf(key, sizeof key, "%s", name);
            switch (type) {
            case SQLITE_INTEGER: v = json_integer(sqlite3_column_int64(s, i)); break;
            case SQLITE_FLOAT: v = json_real(sqlite3_column_double(s, i)); break;
            case SQLITE_TEXT: v = json_string((const char *)sqlite3_column_text(s, i)); break;
            default: v = json_null(); break;
            }
        }
        if (!v || json_object_set_new(o, key, v)) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* Runs a query and collects its rows as an array of objects. */
static int rows_array(sqlite3 *db, sqlite3_stmt *s, json_t **out)
{
    json_t *arr = json_array();
    if (!arr)
        return -ENOMEM;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *o = row_obj(s);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return db_fail(db, rc, "read");
    }
    *out = arr;
    return 0;
}

/* The single row of a query as an object, -ENOENT when none. */
static int row_one(sqlite3 *db, sqlite3_stmt *s, json_t **out)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        set_err("no such row");
        return -ENOENT;
    }
    if (rc != SQLITE_ROW)
        return db_fail(db, rc, "read");
    *out = row_obj(s);
    return *out ? 0 : -ENOMEM;
}

/* An integer from the first column of a one-row query; -ENOENT when no row. */
static int query_i64(sqlite3 *db, const char *sql, int64_t a, int64_t *out)
{
    sqlite3_stmt *s;
    int rc = prep(db, sql, &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, a);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    } else {
        rc = db_fail(db, rc, "read");
    }
    sqlite3_finalize(s);
    return rc;
}

static int exists(sqlite3 *db, const char *table, int64_t id)
{
    char sql[96];
    int64_t one;
    snprintf(sql, sizeof sql, "SELECT 1 FROM %s WHERE id = ?1", table);
    return query_i64(db, sql, id, &one);
}

/* ---- readers ------------------------------------------------------------------------------ */

static sqlite3 *rget(store *st)
{
    pthread_mutex_lock(&st->rmu);
    for (;;) {
        for (int i = 0; i < st->n_rd; i++) {
            if (!st->rd_busy[i]) {
                st->rd_busy[i] = 1;
                pthread_mutex_unlock(&st->rmu);
                /* One read transaction per call: multi-query answers see one snapshot. */
                sqlite3_exec(st->rd[i], "BEGIN", NULL, NULL, NULL);
                return st->rd[i];
            }
        }
        pthread_cond_wait(&st->rcv, &st->rmu);
    }
}

static void rput(store *st, sqlite3 *db)
{
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_lock(&st->rmu);
    for (int i = 0; i < st->n_rd; i++) {
        if (st->rd[i] == db)
            st->rd_busy[i] = 0;
    }
    pthread_cond_signal(&st->rcv);
    pthread_mutex_unlock(&st->rmu);
}

/* ---- opening and migrations --------------------------------------------------------------- */

static int exec_simple(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static int user_version(sqlite3 *db, int *v)
{
    int64_t x = 0;
    int rc = query_i64(db, "PRAGMA user_version", 0, &x);
    *v = (int)x;
    return rc;
}

/* Applies the sections above the current user_version up to `target`, each in one
 * transaction that also bumps user_version, so a crash leaves a whole version. */
static int migrate(sqlite3 *db, const char *path, int target, char *err, size_t errlen)
{
    int v;
    char e[256] = "";
    if (user_version(db, &v)) {
        snprintf(err, errlen, "%s: cannot read user_version: %s", path, sqlite3_errmsg(db));
        return -EIO;
    }
    if (v > store_schema_version) {
        snprintf(err, errlen, "%s: schema version %d is newer than this sgdrd's (%d)", path,
                 v, store_schema_version);
        return -EINVAL;
    }
    for (; v < target; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if (exec_simple(db, "BEGIN IMMEDIATE", e, sizeof e) ||
            exec_simple(db, store_schema_sections[v], e, sizeof e) ||
            exec_simple(db, bump, e, sizeof e) || exec_simple(db, "COMMIT", e, sizeof e)) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            snprintf(err, errlen, "%s: migration to version %d failed: %s", path, v + 1, e);
            return -EIO;
        }
    }
    return 0;
}

static int open_conn(sqlite3 **db, const char *path, int flags, int busy_ms, char *err,
                     size_t errlen)
{
    int rc = sqlite3_open_v2(path, db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        sqlite3_close(*db);
        *db = NULL;
        return -EIO;
    }
    sqlite3_busy_timeout(*db, busy_ms);
    sqlite3_extended_result_codes(*db, 1);
    return exec_simple(*db, "PRAGMA foreign_keys = ON", err, errlen);
}

int store_test_create_at_version(const char *path, int version, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    if (version < 0 || version > store_schema_version) {
        snprintf(err, errlen, "version %d out of range", version);
        return -EINVAL;
    }
    int rc = open_conn(&db, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, 5000, err,
                       errlen);
    if (rc == 0)
        rc = exec_simple(db, "PRAGMA journal_mode = WAL", err, errlen);
    if (rc == 0)
        rc = migrate(db, path, version, err, errlen);
    sqlite3_close(db);
    return rc;
}

static void *flusher_main(void *arg);

int store_open(store **out, const char *path, const store_options *o, char *err,
               size_t errlen)
{
    store_options def = {0};
    if (!o)
        o = &def;
    *out = NULL;
    store *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&st->wmu, NULL);
    pthread_mutex_init(&st->rmu, NULL);
    pthread_mutex_init(&st->bmu, NULL);
    pthread_mutex_init(&st->nmu, NULL);
    pthread_cond_init(&st->rcv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->fcv, &ca);
    pthread_condattr_destroy(&ca);
    st->flush_ms = o->flush_ms > 0 ? o->flush_ms : STORE_FLUSH_MS;
    st->flush_points = o->flush_points > 0 ? o->flush_points : STORE_FLUSH_POINTS;
    st->next_handle = 1;
    int busy = o->busy_timeout_ms > 0 ? o->busy_timeout_ms : 5000;

    int rc = open_conn(&st->w, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, busy, err,
                       errlen);
    if (rc)
        goto out_close;
    rc = exec_simple(st->w, "PRAGMA journal_mode = WAL", err, errlen);
    if (rc == 0)
        rc = exec_simple(st->w, o->sync_normal ? "PRAGMA synchronous = NORMAL"
                                               : "PRAGMA synchronous = FULL", err, errlen);
    if (rc == 0)
        rc = migrate(st->w, path, store_schema_version, err, errlen);
    if (rc)
        goto out_close;
    if (sqlite3_prepare_v3(st->w, "INSERT INTO events(run_id, job_id, kind, data, time) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5)", -1,
                           SQLITE_PREPARE_PERSISTENT, &st->ins_event, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(st->w));
        rc = -EIO;
        goto out_close;
    }
    char e2[256] = "";
    if (exec_simple(st->w, "PRAGMA foreign_key_check", e2, sizeof e2)) {
        snprintf(err, errlen, "%s: %s", path, e2);
        rc = -EIO;
        goto out_close;
    }

    st->n_rd = o->readers > 0 ? o->readers : 4;
    st->rd = calloc((size_t)st->n_rd, sizeof *st->rd);
    st->rd_busy = calloc((size_t)st->n_rd, 1);
    if (!st->rd || !st->rd_busy) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out_close;
    }
    for (int i = 0; i < st->n_rd; i++) {
        rc = open_conn(&st->rd[i], path, SQLITE_OPEN_READONLY, busy, err, errlen);
        if (rc)
            goto out_close;
    }
    if (pthread_create(&st->flusher, NULL, flusher_main, st)) {
        snprintf(err, errlen, "cannot start the store's flusher thread");
        rc = -EAGAIN;
        goto out_close;
    }
    st->flusher_started = 1;
    *out = st;
    return 0;

out_close:
    store_close(st);
    return rc;
}

static void pitem_free(pitem *p)
{
    if (p->keys) {
        for (int i = 0; i < p->n; i++)
            free(p->keys[i]);
    }
    free(p->keys);
    free(p->vals);
    free(p->what);
    free(p->why);
}

void store_close(store *st)
{
    if (!st)
        return;
    if (st->flusher_started) {
        pthread_mutex_lock(&st->bmu);
        st->stopping = 1;
        pthread_cond_signal(&st->fcv);
        pthread_mutex_unlock(&st->bmu);
        pthread_join(st->flusher, NULL);
        store_flush(st);
    }
    for (int i = 0; i < st->n_rd; i++)
        sqlite3_close(st->rd[i]);
    free(st->rd);
    free(st->rd_busy);
    sqlite3_finalize(st->ins_event);
    if (st->w) {
        /* Folds the WAL into the main file so a closed database is one file. */
        sqlite3_exec(st->w, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        sqlite3_close(st->w);
    }
    for (int i = 0; i < st->n_buf; i++)
        pitem_free(&st->buf[i]);
    free(st->buf);
    free(st->prog);
    tev_clear(st);
    free(st->tev);
    free(st->subs);
    pthread_mutex_destroy(&st->wmu);
    pthread_mutex_destroy(&st->rmu);
    pthread_mutex_destroy(&st->bmu);
    pthread_mutex_destroy(&st->nmu);
    pthread_cond_destroy(&st->rcv);
    pthread_cond_destroy(&st->fcv);
    free(st);
}

void store_test_fail_write(store *st, int n)
{
    pthread_mutex_lock(&st->wmu);
    st->fail_write = n;
    pthread_mutex_unlock(&st->wmu);
}

/* ---- subscribers ------------------------------------------------------------------------- */

int store_subscribe(store *st, store_listener fn, void *ctx, int *handle)
{
    pthread_mutex_lock(&st->nmu);
    sub *ns = grow(st->subs, &st->cap_subs, st->n_subs + 1, sizeof *ns);
    if (!ns) {
        pthread_mutex_unlock(&st->nmu);
        return -ENOMEM;
    }
    st->subs = ns;
    st->subs[st->n_subs] = (sub){st->next_handle++, fn, ctx};
    *handle = st->subs[st->n_subs].handle;
    st->n_subs++;
    pthread_mutex_unlock(&st->nmu);
    return 0;
}

void store_unsubscribe(store *st, int handle)
{
    pthread_mutex_lock(&st->nmu);
    for (int i = 0; i < st->n_subs; i++) {
        if (st->subs[i].handle == handle) {
            memmove(&st->subs[i], &st->subs[i + 1], (size_t)(st->n_subs - i - 1) * sizeof(sub));
            st->n_subs--;
            break;
        }
    }
    pthread_mutex_unlock(&st->nmu);
}

/* ---- the point buffer and its flusher ------------------------------------------------------ */

static int buf_add(store *st, pitem *p, int points)
{
    pthread_mutex_lock(&st->bmu);
    pitem *nb = grow(st->buf, &st->cap_buf, st->n_buf + 1, sizeof *nb);
    if (!nb) {
        pthread_mutex_unlock(&st->bmu);
        pitem_free(p);
        return -ENOMEM;
    }
    st->buf = nb;
    st->buf[st->n_buf++] = *p;
    st->buf_points += points;
    if (st->buf_points >= st->flush_points)
        pthread_cond_signal(&st->fcv);
    pthread_mutex_unlock(&st->bmu);
    return 0;
}

static json_t *job_json_db(sqlite3 *db, int64_t id);

static int flush_item(store *st, pitem *p, sqlite3_stmt *ins_m, sqlite3_stmt *ins_p)
{
    int rc = 0;
    json_t *data = NULL;
    if (p->kind == P_METRIC) {
        json_t *vals = json_object();
        data = json_pack("{sI sI so}", "step", (json_int_t)p->step, "job", (json_int_t)p->job,
                         "values", vals);
        if (!data)
            return -ENOMEM;
        for (int i = 0; i < p->n; i++) {
            sqlite3_reset(ins_m);
            sqlite3_bind_int64(ins_m, 1, p->run);
            sqlite3_bind_text(ins_m, 2, p->keys[i], -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins_m, 3, p->step);
            if (p->job)
                sqlite3_bind_int64(ins_m, 4, p->job);
            else
                sqlite3_bind_null(ins_m, 4);
            if (isfinite(p->vals[i])) {
                sqlite3_bind_double(ins_m, 5, p->vals[i]);
                json_object_set_new(vals, p->keys[i], json_real(p->vals[i]));
            } else {
                sqlite3_bind_null(ins_m, 5);
                json_object_set_new(vals, p->keys[i], json_null());
            }
            sqlite3_bind_double(ins_m, 6, p->t);
            rc = wrun(st, ins_m);
            if (rc)
                goto out_free_data;
        }
        rc = ev_add(st, p->run, p->job, "metric", data, p->t);
    } else if (p->kind == P_SWEEP) {
        sqlite3_reset(ins_p);
        sqlite3_bind_int64(ins_p, 1, p->step);
        sqlite3_bind_int(ins_p, 2, p->n);
        sqlite3_bind_double(ins_p, 3, p->vals[0]);
        for (int i = 1; i < 3; i++) {
            if (isfinite(p->vals[i]))
                sqlite3_bind_double(ins_p, 3 + i, p->vals[i]);
            else
                sqlite3_bind_null(ins_p, 3 + i);
        }
        rc = wrun(st, ins_p);
        if (rc)
            return rc;
        data = json_pack("{sI sI si sf so so}", "lr_find", (json_int_t)p->step, "job",
                         (json_int_t)p->job, "iter", p->n, "lr", p->vals[0], "loss",
                         isfinite(p->vals[1]) ? json_real(p->vals[1]) : json_null(),
                         "smooth_loss",
                         isfinite(p->vals[2]) ? json_real(p->vals[2]) : json_null());
        if (!data)
            return -ENOMEM;
        rc = ev_add(st, p->run, p->job, "sweep_point", data, p->t);
    } else {
        data = json_pack("{sI ss ss}", "job", (json_int_t)p->job, "what", p->what, "why",
                         p->why ? p->why : "");
        if (!data)
            return -ENOMEM;
        rc = ev_add(st, p->run, p->job, "note", data, p->t);
    }
out_free_data:
    json_decref(data);
    return rc;
}

static int flush_progress(store *st, pprogress *pr)
{
    sqlite3_stmt *s;
    int rc = prep(st->w, "UPDATE jobs SET progress = ?2, eta_s = ?3 "
                         "WHERE id = ?1 AND state = 'running'", &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, pr->job);
    sqlite3_bind_double(s, 2, pr->fraction);
    if (pr->eta_s >= 0 && isfinite(pr->eta_s))
        sqlite3_bind_double(s, 3, pr->eta_s);
    rc = wrun(st, s);
    int changed = sqlite3_changes(st->w);
    sqlite3_finalize(s);
    if (rc || !changed)
        return rc;
    json_t *j = job_json_db(st->w, pr->job);
    if (!j)
        return -ENOMEM;
    int64_t run = json_integer_value(json_object_get(j, "run"));
    rc = ev_add(st, run, pr->job, "job", j, now_s());
    json_decref(j);
    return rc;
}

/* Commits everything buffered in one transaction (wmu held). A batch that fails is
 * dropped: the database keeps what it had, and the error is returned. */
static int flush_locked(store *st)
{
    pthread_mutex_lock(&st->bmu);
    pitem *items = st->buf;
    int n = st->n_buf;
    pprogress *prog = st->prog;
    int n_prog = st->n_prog;
    st->buf = NULL;
    st->n_buf = st->cap_buf = st->buf_points = 0;
    st->prog = NULL;
    st->n_prog = st->cap_prog = 0;
    pthread_mutex_unlock(&st->bmu);
    if (n == 0 && n_prog == 0)
        return 0;

    sqlite3_stmt *ins_m = NULL, *ins_p = NULL;
    int rc = wexec(st, "BEGIN IMMEDIATE");
    if (rc)
        goto out_free_items;
    rc = prep(st->w, "INSERT OR REPLACE INTO metrics(run_id, key, step, job_id, value, time) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &ins_m);
    if (rc == 0)
        rc = prep(st->w, "INSERT OR REPLACE INTO lr_find_points(lr_find_id, iter, lr, loss, "
                         "smooth_loss) VALUES (?1, ?2, ?3, ?4, ?5)", &ins_p);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = flush_item(st, &items[i], ins_m, ins_p);
    for (int i = 0; rc == 0 && i < n_prog; i++)
        rc = flush_progress(st, &prog[i]);
    sqlite3_finalize(ins_m);
    sqlite3_finalize(ins_p);
    if (rc == 0)
        rc = wexec(st, "COMMIT");
    if (rc) {
        char keep[sizeof errbuf];
        memcpy(keep, errbuf, sizeof keep);
        if (!sqlite3_get_autocommit(st->w))
            sqlite3_exec(st->w, "ROLLBACK", NULL, NULL, NULL);
        memcpy(errbuf, keep, sizeof keep);
        tev_clear(st);
    }
out_free_items:
    for (int i = 0; i < n; i++)
        pitem_free(&items[i]);
    free(items);
    free(prog);
    return rc;
}

int store_flush(store *st)
{
    pthread_mutex_lock(&st->wmu);
    int rc = flush_locked(st);
    wunlock_notify(st);
    return rc;
}

static void *flusher_main(void *arg)
{
    store *st = arg;
    pthread_mutex_lock(&st->bmu);
    while (!st->stopping) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_nsec += (long)st->flush_ms * 1000000L;
        dl.tv_sec += dl.tv_nsec / 1000000000L;
        dl.tv_nsec %= 1000000000L;
        while (!st->stopping && st->buf_points < st->flush_points) {
            if (pthread_cond_timedwait(&st->fcv, &st->bmu, &dl) == ETIMEDOUT)
                break;
        }
        if (st->stopping)
            break;
        int pending = st->n_buf + st->n_prog;
        pthread_mutex_unlock(&st->bmu);
        if (pending)
            store_flush(st);
        pthread_mutex_lock(&st->bmu);
    }
    pthread_mutex_unlock(&st->bmu);
    return NULL;
}

/* ---- events ------------------------------------------------------------------------------ */

int store_events_after(store *st, int64_t run_id, int64_t after_id, int limit, json_t **out)
{
    if (limit <= 0 || limit > STORE_PAGE_MAX)
        return -EINVAL;
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, "SELECT id, run_id AS run, job_id AS job, kind, data AS data_json, time "
                      "FROM events WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_int64(s, 2, after_id);
        sqlite3_bind_int(s, 3, limit);
        rc = rows_array(db, s, out);
        sqlite3_finalize(s);
    }
    rput(st, db);
    return rc;
}

int store_note_push(store *st, int64_t run_id, int64_t job_id, const char *what,
                    const char *why)
{
    pitem p = {.kind = P_NOTE, .run = run_id, .job = job_id, .t = now_s()};
    p.what = xstrdup(what ? what : "");
    p.why = xstrdup(why ? why : "");
    if (!p.what || !p.why) {
        pitem_free(&p);
        return -ENOMEM;
    }
    return buf_add(st, &p, 1);
}

/* ---- paging ------------------------------------------------------------------------------ */

static int page_parse(const store_page *pg, int64_t *cursor, int *limit)
{
    *cursor = 0;
    *limit = pg && pg->limit ? pg->limit : STORE_PAGE_DEFAULT;
    if (*limit < 0 || *limit > STORE_PAGE_MAX) {
        set_err("limit must be 1..%d", STORE_PAGE_MAX);
        return -EINVAL;
    }
    if (pg && pg->page_token && pg->page_token[0]) {
        const char *t = pg->page_token;
        char *end;
        if (t[0] != 'c' || !t[1] || strlen(t) > 17) {
            set_err("malformed page_token");
            return -EINVAL;
        }
        errno = 0;
        unsigned long long v = strtoull(t + 1, &end, 16);
        if (*end || errno || v == 0 || v > INT64_MAX) {
            set_err("malformed page_token");
            return -EINVAL;
        }
        *cursor = (int64_t)v;
    }
    return 0;
}

/* Runs a list query whose ?1 is the cursor (0: top), ?2 the limit + 1 and ?3/?4 optional
 * filters (an integer and a text), and wraps the page. */
static int page_query(store *st, const char *sql, const store_page *pg, int64_t p3,
                      const char *p4, json_t **out)
{
    int64_t cursor;
    int limit;
    int rc = page_parse(pg, &cursor, &limit);
    if (rc)
        return rc;
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    json_t *items = NULL;
    rc = prep(db, sql, &s);
    if (rc)
        goto out_put;
    sqlite3_bind_int64(s, 1, cursor);
    sqlite3_bind_int(s, 2, limit + 1);
    if (sqlite3_bind_parameter_count(s) >= 3)
        sqlite3_bind_int64(s, 3, p3);
    if (sqlite3_bind_parameter_count(s) >= 4) {
        if (p4)
            sqlite3_bind_text(s, 4, p4, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 4);
    }
    rc = rows_array(db, s, &items);
    sqlite3_finalize(s);
    if (rc)
        goto out_put;
    json_t *page = json_pack("{so}", "items", items);
    if (!page) {
        rc = -ENOMEM;
        goto out_put;
    }
    if ((int)json_array_size(items) > limit) {
        json_array_remove(items, (size_t)limit);
        json_int_t last = json_integer_value(json_object_get(json_array_get(items,
                                                             (size_t)limit - 1), "id"));
        char tok[24];
        snprintf(tok, sizeof tok, "c%" PRIx64, (uint64_t)last);
        json_object_set_new(page, "next_page_token", json_string(tok));
    }
    *out = page;
out_put:
    rput(st, db);
    return rc;
}

/* ---- datasets ------------------------------------------------------------------------------ */

static int fmt_known(const char *f)
{
    return f && (!strcmp(f, "folders") || !strcmp(f, "csv") || !strcmp(f, "idx"));
}

static int bind_json(sqlite3_stmt *s, int i, json_t *j, const char *dflt)
{
    if (!j) {
        if (dflt)
            sqlite3_bind_text(s, i, dflt, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, i);
        return 0;
    }
    char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
    if (!t)
        return -ENOMEM;
    sqlite3_bind_text(s, i, t, -1, free);
    return 0;
}

/* Insert helper: binds nothing, runs, maps a UNIQUE violation to -EEXIST and an FK
 * violation to -ENOENT. */
static int wrun_insert(store *st, sqlite3_stmt *s, int64_t *id)
{
    int rc = wstep(st, s);
    if (rc == SQLITE_DONE) {
        if (id)
            *id = sqlite3_last_insert_rowid(st->w);
        return 0;
    }
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        set_err("name already taken");
        return -EEXIST;
    }
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        set_err("referenced row does not exist");
        return -ENOENT;
    }
    if (rc == INJECTED_FAILURE)
        return -EIO;
    return db_fail(st->w, rc, "insert");
}

int store_dataset_create(store *st, const store_dataset_new *d, int64_t *id)
{
    if (!d->name || !d->path || !fmt_known(d->format)) {
        set_err("dataset: name, path and a known format are required");
        return -EINVAL;
    }
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "INSERT INTO datasets(name, path, format, options, info, uploaded, "
                     "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", &s);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, d->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, d->path, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, d->format, -1, SQLITE_STATIC);
        rc = bind_json(s, 4, d->options, "{}");
        if (rc == 0)
            rc = bind_json(s, 5, d->info, "{}");
        sqlite3_bind_int(s, 6, d->uploaded != 0);
        sqlite3_bind_double(s, 7, now_s());
        if (rc == 0)
            rc = wrun_insert(st, s, id);
        sqlite3_finalize(s);
    }
    return wend(st, rc);
}

#define DATASET_COLS "id, name, path, format, options AS options_json, " \
                     "uploaded AS uploaded_bool, created_at, " \
                     "(SELECT count(*) FROM runs r WHERE r.dataset_id = datasets.id) AS runs"

int store_dataset_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, "SELECT " DATASET_COLS ", info AS info_json FROM datasets WHERE id = ?1",
                  &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        rc = row_one(db, s, out);
        sqlite3_finalize(s);
    }
    rput(st, db);
    return rc;
}

int store_dataset_find(store *st, const char *name_or_id, int64_t *id)
{
    if (!name_or_id || !*name_or_id)
        return -ENOENT;
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, "SELECT id FROM datasets WHERE name = ?1 "
                      "UNION ALL SELECT id FROM datasets WHERE CAST(id AS TEXT) = ?1 LIMIT 1",
                  &s);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, name_or_id, -1, SQLITE_STATIC);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW)
            *id = sqlite3_column_int64(s, 0);
        else
            rc = r == SQLITE_DONE ? -ENOENT : db_fail(db, r, "read");
        sqlite3_finalize(s);
    }
    rput(st, db);
    return rc;
}

int store_dataset_list(store *st, const store_page *pg, json_t **out)
{
    return page_query(st, "SELECT " DATASET_COLS " FROM datasets WHERE (?1 = 0 OR id < ?1) "
                          "ORDER BY id DESC LIMIT ?2", pg, 0, NULL, out);
}

/* Reads a text column of one row into a malloc'd string (writer connection). */
static int w_text(store *st, const char *sql, int64_t id, char **out)
{
    sqlite3_stmt *s;
    int rc = prep(st->w, sql, &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        *out = t ? strdup(t) : NULL;
        rc = (t && !*out) ? -ENOMEM : 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : db_fail(st->w, rc, "read");
    }
    sqlite3_finalize(s);
    return rc;
}

static int w_delete(store *st, const char *table, int64_t id)
{
    char sql[64];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id = ?1", table);
    sqlite3_stmt *s;
    int rc = prep(st->w, sql, &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = wrun(st, s);
    sqlite3_finalize(s);
    return rc;
}

int store_dataset_delete(store *st, int64_t id, char **uploaded_path_out)
{
    char *path = NULL;
    int64_t n = 0, uploaded = 0;
    if (uploaded_path_out)
        *uploaded_path_out = NULL;
    int rc = wbegin(st);
    if (rc)
        return rc;
    rc = query_i64(st->w, "SELECT uploaded FROM datasets WHERE id = ?1", id, &uploaded);
    if (rc == 0)
        rc = query_i64(st->w, "SELECT count(*) FROM runs WHERE dataset_id = ?1", id, &n);
    if (rc == 0 && n > 0) {
        set_err("dataset %" PRId64 " is used by %" PRId64 " run(s)", id, n);
        rc = -EBUSY;
    }
    if (rc == 0 && uploaded)
        rc = w_text(st, "SELECT path FROM datasets WHERE id = ?1", id, &path);
    if (rc == 0)
        rc = w_delete(st, "datasets", id);
    rc = wend(st, rc);
    if (rc == 0 && uploaded_path_out)
        *uploaded_path_out = path;
    else
        free(path);
    return rc;
}

/* ---- models ------------------------------------------------------------------------------- */

int store_model_create(store *st, const char *name, const char *arch, const char *path,
                       int64_t bytes, json_t *info, int64_t *id)
{
    if (!name || !arch || !path) {
        set_err("model: name, arch and path are required");
        return -EINVAL;
    }
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "INSERT INTO models(name, arch, path, bytes, info, created_at) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &s);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, arch, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, bytes);
        rc = bind_json(s, 5, info, "{}");
        sqlite3_bind_double(s, 6, now_s());
        if (rc == 0)
            rc = wrun_insert(st, s, id);
        sqlite3_finalize(s);
    }
    return wend(st, rc);
}

#define MODEL_COLS "id, name, arch, path, bytes, info AS info_json, created_at"

int store_model_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, "SELECT " MODEL_COLS " FROM models WHERE id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        rc = row_one(db, s, out);
        sqlite3_finalize(s);
    }
    rput(st, db);
    return rc;
}

int store_model_list(store *st, const store_page *pg, json_t **out)
{
    return page_query(st, "SELECT " MODEL_COLS " FROM models WHERE (?1 = 0 OR id < ?1) "
                          "ORDER BY id DESC LIMIT ?2", pg, 0, NULL, out);
}

int store_model_delete(store *st, int64_t id, char **path_out)
{
    char *path = NULL;
    int64_t n = 0;
    *path_out = NULL;
    int rc = wbegin(st);
    if (rc)
        return rc;
    rc = w_text(st, "SELECT path FROM models WHERE id = ?1", id, &path);
    if (rc == 0)
        rc = query_i64(st->w, "SELECT count(*) FROM runs WHERE model_id = ?1", id, &n);
    if (rc == 0 && n > 0) {
        set_err("model %" PRId64 " is used by %" PRId64 " run(s)", id, n);
        rc = -EBUSY;
    }
    if (rc == 0)
        rc = w_delete(st, "models", id);
    rc = wend(st, rc);
    if (rc == 0)
        *path_out = path;
    else
        free(path);
    return rc;
}

/* ---- runs --------------------------------------------------------------------------------- */

int store_run_create(store *st, int64_t dataset_id, int64_t model_id, const char *arch,
                     json_t *config, int64_t *id)
{
    if (!arch) {
        set_err("run: arch is required");
        return -EINVAL;
    }
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "INSERT INTO runs(dataset_id, model_id, arch, config, created_at) "
                     "VALUES (?1, ?2, ?3, ?4, ?5)", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, dataset_id);
        if (model_id)
            sqlite3_bind_int64(s, 2, model_id);
        sqlite3_bind_text(s, 3, arch, -1, SQLITE_STATIC);
        rc = bind_json(s, 4, config, "{}");
        sqlite3_bind_double(s, 5, now_s());
        if (rc == 0)
            rc = wrun_insert(st, s, id);
        sqlite3_finalize(s);
    }
    return wend(st, rc);
}

#define RUN_COLS "id, dataset_id AS dataset, model_id AS model, arch, config AS config_json, " \
                 "state AS state_json, created_at"
#define JOB_COLS "id, run_id AS run, kind, state, params AS params_json, progress, eta_s, " \
                 "error, result AS result_json, created_at, started_at, finished_at, " \
                 "resumed_from"

static json_t *job_json_db(sqlite3 *db, int64_t id)
{
    sqlite3_stmt *s;
    json_t *j = NULL;
    if (prep(db, "SELECT " JOB_COLS ", (SELECT max(l.id) FROM lr_finds l WHERE l.job_id = jobs.id)"
                 " AS lr_find, EXISTS (SELECT 1 FROM predictions p WHERE p.job_id = jobs.id)"
                 " AS predictions_bool FROM jobs WHERE id = ?1", &s))
        return NULL;
    sqlite3_bind_int64(s, 1, id);
    if (row_one(db, s, &j))
        j = NULL;
    sqlite3_finalize(s);
    if (j) {
        if (json_is_null(json_object_get(j, "lr_find")))
            json_object_del(j, "lr_find");
        if (!json_is_true(json_object_get(j, "predictions")))
            json_object_del(j, "predictions");
    }
    return j;
}

/* Adds (name: the single row of sql bound to id, or null) to o. */
static int add_row_or_null(sqlite3 *db, json_t *o, const char *name, const char *sql,
                           int64_t id)
{
    sqlite3_stmt *s;
    json_t *v = NULL;
    int rc = prep(db, sql, &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = row_one(db, s, &v);
    sqlite3_finalize(s);
    if (rc == -ENOENT) {
        v = json_null();
        rc = 0;
    }
    if (rc == 0)
        json_object_set_new(o, name, v);
    return rc;
}

int store_run_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    json_t *o = NULL;
    int64_t cur = 0, n_ep = 0;
    int rc = prep(db, "SELECT " RUN_COLS " FROM runs WHERE id = ?1", &s);
    if (rc)
        goto out_put;
    sqlite3_bind_int64(s, 1, id);
    rc = row_one(db, s, &o);
    sqlite3_finalize(s);
    if (rc)
        goto out_put;
    rc = query_i64(db, "SELECT id FROM jobs WHERE run_id = ?1 AND state IN ('running', "
                       "'queued') ORDER BY state = 'running' DESC, id LIMIT 1", id, &cur);
    if (rc == 0) {
        json_t *j = job_json_db(db, cur);
        json_object_set_new(o, "current_job", j ? j : json_null());
    } else if (rc == -ENOENT) {
        json_object_set_new(o, "current_job", json_null());
        rc = 0;
    }
    if (rc == 0)
        rc = add_row_or_null(db, o, "best", "SELECT epoch, valid_loss, accuracy, f2 "
                             "FROM epochs WHERE run_id = ?1 AND valid_loss IS NOT NULL "
                             "ORDER BY valid_loss, epoch LIMIT 1", id);
    if (rc == 0)
        rc = query_i64(db, "SELECT count(*) FROM epochs WHERE run_id = ?1", id, &n_ep);
    if (rc == 0)
        json_object_set_new(o, "epochs", json_integer(n_ep));
    if (rc == 0)
        *out = o;
    else
        json_decref(o);
out_put:
    rput(st, db);
    return rc;
}

int store_run_list(store *st, const store_page *pg, json_t **out)
{
    return page_query(st, "SELECT " RUN_COLS " FROM runs WHERE (?1 = 0 OR id < ?1) "
                          "ORDER BY id DESC LIMIT ?2", pg, 0, NULL, out);
}

int store_run_set_state(store *st, int64_t id, json_t *state)
{
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "UPDATE runs SET state = ?2 WHERE id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        rc = bind_json(s, 2, state, "{}");
        if (rc == 0)
            rc = wrun(st, s);
        if (rc == 0 && sqlite3_changes(st->w) == 0)
            rc = -ENOENT;
        sqlite3_finalize(s);
    }
    return wend(st, rc);
}

int store_run_delete(store *st, int64_t id)
{
    int64_t n = 0;
    int rc = wbegin(st);
    if (rc)
        return rc;
    rc = exists(st->w, "runs", id);
    if (rc == 0)
        rc = query_i64(st->w, "SELECT count(*) FROM jobs WHERE run_id = ?1 AND state IN "
                              "('queued', 'running')", id, &n);
    if (rc == 0 && n > 0) {
        set_err("run %" PRId64 " has %" PRId64 " queued or running job(s)", id, n);
        rc = -EBUSY;
    }
    if (rc == 0)
        rc = w_delete(st, "runs", id);
    return wend(st, rc);
}

/* ---- jobs --------------------------------------------------------------------------------- */

static const char *const job_kinds[] = {"lr_find", "fit", "freeze", "unfreeze", "precompute",
                                        "resize", "tta", "recipe", "predict_test"};

static int kind_known(const char *k)
{
    for (size_t i = 0; k && i < sizeof job_kinds / sizeof *job_kinds; i++) {
        if (!strcmp(k, job_kinds[i]))
            return 1;
    }
    return 0;
}

/* Adds a "job" event carrying the job's current row (inside the write transaction). */
static int job_event(store *st, int64_t id)
{
    json_t *j = job_json_db(st->w, id);
    if (!j)
        return -ENOMEM;
    int rc = ev_add(st, json_integer_value(json_object_get(j, "run")), id, "job", j, now_s());
    json_decref(j);
    return rc;
}

int store_job_create(store *st, int64_t run_id, const char *kind, json_t *params,
                     int64_t resumed_from, int64_t *id)
{
    if (!kind_known(kind)) {
        set_err("unknown job kind '%s'", kind ? kind : "(null)");
        return -EINVAL;
    }
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "INSERT INTO jobs(run_id, kind, state, params, created_at, resumed_from) "
                     "VALUES (?1, ?2, 'queued', ?3, ?4, ?5)", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
        rc = bind_json(s, 3, params, "{}");
        sqlite3_bind_double(s, 4, now_s());
        if (resumed_from)
            sqlite3_bind_int64(s, 5, resumed_from);
        if (rc == 0)
            rc = wrun_insert(st, s, id);
        sqlite3_finalize(s);
    }
    if (rc == 0)
        rc = job_event(st, *id);
    return wend(st, rc);
}

/* Moves a job from one of the states in `from` (SQL list) to `to`. */
static int job_move(store *st, int64_t id, const char *from_sql, const char *set_sql,
                    const char *to, const char *error, json_t *result)
{
    char sql[512];
    snprintf(sql, sizeof sql, "UPDATE jobs SET state = ?2, error = ?3, result = ?4%s "
                              "WHERE id = ?1 AND state IN (%s)", set_sql, from_sql);
    int rc = wbegin(st);
    if (rc)
        return rc;
    rc = exists(st->w, "jobs", id);
    sqlite3_stmt *s = NULL;
    if (rc == 0)
        rc = prep(st->w, sql, &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_text(s, 2, to, -1, SQLITE_STATIC);
        if (error)
            sqlite3_bind_text(s, 3, error, -1, SQLITE_STATIC);
        rc = bind_json(s, 4, result, NULL);
        if (rc == 0)
            rc = wrun(st, s);
        if (rc == 0 && sqlite3_changes(st->w) == 0) {
            set_err("job %" PRId64 " cannot become %s from its state", id, to);
            rc = -EALREADY;
        }
    }
    sqlite3_finalize(s);
    if (rc == 0)
        rc = job_event(st, id);
    return wend(st, rc);
}

int store_job_start(store *st, int64_t id)
{
    char set[64];
    snprintf(set, sizeof set, ", started_at = %.6f, progress = 0", now_s());
    return job_move(st, id, "'queued'", set, "running", NULL, NULL);
}

int store_job_progress(store *st, int64_t id, double fraction, double eta_s)
{
    pthread_mutex_lock(&st->bmu);
    for (int i = 0; i < st->n_prog; i++) {
        if (st->prog[i].job == id) {
            st->prog[i].fraction = fraction;
            st->prog[i].eta_s = eta_s;
            pthread_mutex_unlock(&st->bmu);
            return 0;
        }
    }
    pprogress *np = grow(st->prog, &st->cap_prog, st->n_prog + 1, sizeof *np);
    if (!np) {
        pthread_mutex_unlock(&st->bmu);
        return -ENOMEM;
    }
    st->prog = np;
    st->prog[st->n_prog++] = (pprogress){id, fraction, eta_s};
    pthread_mutex_unlock(&st->bmu);
    return 0;
}

int store_job_finish(store *st, int64_t id, const char *state, const char *error,
                     json_t *result)
{
    char set[96];
    const char *from;
    if (!state)
        return -EINVAL;
    if (!strcmp(state, "succeeded")) {
        from = "'running'";
        snprintf(set, sizeof set, ", finished_at = %.6f, progress = 1, eta_s = NULL", now_s());
    } else if (!strcmp(state, "failed") || !strcmp(state, "cancelled")) {
        from = "'running', 'queued'";
        snprintf(set, sizeof set, ", finished_at = %.6f, eta_s = NULL", now_s());
    } else if (!strcmp(state, "interrupted")) {
        from = "'running'";
        snprintf(set, sizeof set, ", finished_at = %.6f, eta_s = NULL", now_s());
    } else {
        set_err("'%s' is not a final job state", state);
        return -EINVAL;
    }
    return job_move(st, id, from, set, state, error, result);
}

int store_jobs_interrupt_running(store *st, int *n)
{
    int64_t *ids = NULL;
    int count = 0, cap = 0;
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "SELECT id FROM jobs WHERE state = 'running' ORDER BY id", &s);
    if (rc == 0) {
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t *ni = grow(ids, &cap, count + 1, sizeof *ni);
            if (!ni) {
                rc = -ENOMEM;
                break;
            }
            ids = ni;
            ids[count++] = sqlite3_column_int64(s, 0);
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = db_fail(st->w, r, "read");
        sqlite3_finalize(s);
    }
    if (rc == 0)
        rc = wexec(st, "UPDATE jobs SET state = 'interrupted', eta_s = NULL, "
                       "error = 'the daemon stopped while this job ran' "
                       "WHERE state = 'running'");
    for (int i = 0; rc == 0 && i < count; i++)
        rc = job_event(st, ids[i]);
    free(ids);
    rc = wend(st, rc);
    if (rc == 0 && n)
        *n = count;
    return rc;
}

static int ids_query(store *st, const char *sql, int64_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    int cap = 0;
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, sql, &s);
    if (rc == 0) {
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t *ni = grow(*ids, &cap, *n + 1, sizeof *ni);
            if (!ni) {
                rc = -ENOMEM;
                break;
            }
            *ids = ni;
            (*ids)[(*n)++] = sqlite3_column_int64(s, 0);
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = db_fail(db, r, "read");
        sqlite3_finalize(s);
    }
    rput(st, db);
    if (rc) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

int store_jobs_queued(store *st, int64_t **ids, int *n)
{
    return ids_query(st, "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id", ids, n);
}

int store_jobs_resumable(store *st, int64_t **ids, int *n)
{
    return ids_query(st, "SELECT id FROM jobs j WHERE state = 'interrupted' AND NOT EXISTS "
                         "(SELECT 1 FROM jobs r WHERE r.resumed_from = j.id) ORDER BY id",
                     ids, n);
}

int store_job_row_get(store *st, int64_t id, store_job_row *out)
{
    memset(out, 0, sizeof *out);
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, "SELECT id, run_id, coalesce(resumed_from, 0), kind, state, params "
                      "FROM jobs WHERE id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            out->id = sqlite3_column_int64(s, 0);
            out->run_id = sqlite3_column_int64(s, 1);
            out->resumed_from = sqlite3_column_int64(s, 2);
            snprintf(out->kind, sizeof out->kind, "%s", sqlite3_column_text(s, 3));
            snprintf(out->state, sizeof out->state, "%s", sqlite3_column_text(s, 4));
            out->params = json_loads((const char *)sqlite3_column_text(s, 5), 0, NULL);
            if (!out->params)
                out->params = json_object();
        } else {
            rc = r == SQLITE_DONE ? -ENOENT : db_fail(db, r, "read");
        }
        sqlite3_finalize(s);
    }
    rput(st, db);
    return rc;
}

void store_job_row_clear(store_job_row *r)
{
    if (!r)
        return;
    json_decref(r->params);
    r->params = NULL;
}

int store_job_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = rget(st);
    int rc = exists(db, "jobs", id);
    if (rc == 0) {
        *out = job_json_db(db, id);
        if (!*out)
            rc = -ENOMEM;
    }
    rput(st, db);
    return rc;
}

int store_job_list(store *st, int64_t run_id, const char *state, const store_page *pg,
                   json_t **out)
{
    return page_query(st, "SELECT " JOB_COLS " FROM jobs WHERE (?1 = 0 OR id < ?1) "
                          "AND (?3 = 0 OR run_id = ?3) AND (?4 IS NULL OR state = ?4) "
                          "ORDER BY id DESC LIMIT ?2", pg, run_id, state, out);
}

/* ---- LR sweeps --------------------------------------------------------------------------- */

#define LRF_COLS "id, run_id AS run, job_id AS job, start_lr, end_lr, num_it, " \
                 "stopped_early AS stopped_early_bool, created_at, finished_at, " \
                 "suggestions AS suggestions_json"

static int lr_find_event(store *st, int64_t id)
{
    sqlite3_stmt *s;
    json_t *o = NULL;
    int rc = prep(st->w, "SELECT " LRF_COLS " FROM lr_finds WHERE id = ?1", &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = row_one(st->w, s, &o);
    sqlite3_finalize(s);
    if (rc == 0)
        rc = ev_add(st, json_integer_value(json_object_get(o, "run")),
                    json_integer_value(json_object_get(o, "job")), "lr_find", o, now_s());
    json_decref(o);
    return rc;
}

int store_lr_find_create(store *st, int64_t run_id, int64_t job_id, double start_lr,
                         double end_lr, int num_it, int64_t *id)
{
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "INSERT INTO lr_finds(run_id, job_id, start_lr, end_lr, num_it, "
                     "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_int64(s, 2, job_id);
        sqlite3_bind_double(s, 3, start_lr);
        sqlite3_bind_double(s, 4, end_lr);
        sqlite3_bind_int(s, 5, num_it);
        sqlite3_bind_double(s, 6, now_s());
        rc = wrun_insert(st, s, id);
        sqlite3_finalize(s);
    }
    if (rc == 0)
        rc = lr_find_event(st, *id);
    return wend(st, rc);
}

int store_lr_find_point_push(store *st, int64_t lr_find_id, int64_t run_id, int64_t job_id,
                             int iter, double lr, double loss, double smooth_loss)
{
    pitem p = {.kind = P_SWEEP, .run = run_id, .job = job_id, .step = lr_find_id,
               .n = iter, .t = now_s()};
    p.vals = malloc(3 * sizeof *p.vals);
    if (!p.vals)
        return -ENOMEM;
    p.vals[0] = lr;
    p.vals[1] = loss;
    p.vals[2] = smooth_loss;
    return buf_add(st, &p, 1);
}

int store_lr_find_finish(store *st, int64_t id, json_t *suggestions, int stopped_early,
                         double end_lr, int num_it)
{
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "UPDATE lr_finds SET suggestions = ?2, stopped_early = ?3, "
                     "finished_at = ?4, end_lr = coalesce(?5, end_lr), "
                     "num_it = coalesce(?6, num_it) WHERE id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        rc = bind_json(s, 2, suggestions, NULL);
        sqlite3_bind_int(s, 3, stopped_early != 0);
        sqlite3_bind_double(s, 4, now_s());
        if (end_lr > 0)
            sqlite3_bind_double(s, 5, end_lr);
        if (num_it > 0)
            sqlite3_bind_int(s, 6, num_it);
        if (rc == 0)
            rc = wrun(st, s);
        if (rc == 0 && sqlite3_changes(st->w) == 0)
            rc = -ENOENT;
        sqlite3_finalize(s);
    }
    if (rc == 0)
        rc = lr_find_event(st, id);
    return wend(st, rc);
}

int store_lr_find_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    json_t *o = NULL, *pts = NULL;
    int rc = prep(db, "SELECT " LRF_COLS " FROM lr_finds WHERE id = ?1", &s);
    if (rc)
        goto out_put;
    sqlite3_bind_int64(s, 1, id);
    rc = row_one(db, s, &o);
    sqlite3_finalize(s);
    if (rc)
        goto out_put;
    rc = prep(db, "SELECT iter, lr, loss, smooth_loss FROM lr_find_points "
                  "WHERE lr_find_id = ?1 ORDER BY iter", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        rc = rows_array(db, s, &pts);
        sqlite3_finalize(s);
    }
    if (rc == 0) {
        json_object_set_new(o, "points", pts);
        *out = o;
    } else {
        json_decref(o);
    }
out_put:
    rput(st, db);
    return rc;
}

int store_lr_find_list(store *st, int64_t run_id, const store_page *pg, json_t **out)
{
    return page_query(st, "SELECT " LRF_COLS " FROM lr_finds WHERE (?1 = 0 OR id < ?1) "
                          "AND run_id = ?3 ORDER BY id DESC LIMIT ?2", pg, run_id, NULL, out);
}

/* ---- metrics ------------------------------------------------------------------------------ */

int store_metrics_push(store *st, int64_t run_id, int64_t job_id, int64_t step, int n,
                       const char *const *keys, const double *values)
{
    if (n <= 0)
        return -EINVAL;
    pitem p = {.kind = P_METRIC, .run = run_id, .job = job_id, .step = step, .t = now_s()};
    p.keys = calloc((size_t)n, sizeof *p.keys);
    p.vals = malloc((size_t)n * sizeof *p.vals);
    if (!p.keys || !p.vals) {
        pitem_free(&p);
        return -ENOMEM;
    }
    p.n = n;
    for (int i = 0; i < n; i++) {
        p.keys[i] = strdup(keys[i]);
        if (!p.keys[i]) {
            pitem_free(&p);
            return -ENOMEM;
        }
        p.vals[i] = values[i];
    }
    return buf_add(st, &p, n);
}

/* The rows of a metrics query (step, key, value, time) as objects. Built by hand rather
 * than with row_obj: a page has up to STORE_METRICS_MAX rows, and the key strings are
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
        return db_fail(db, rc, "read");
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
        set_err("limit must be 1..%d", STORE_METRICS_MAX);
        return -EINVAL;
    }
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    json_t *pts = NULL;
    int rc = exists(db, "runs", run_id);
    if (rc)
        goto out_put;
    /* Two statements so each uses its index: (run, key, step) or (run, step). */
    if (key)
        rc = prep(db, "SELECT step, key, value, time FROM metrics WHERE run_id = ?1 AND "
                      "key = ?4 AND step > ?2 ORDER BY step LIMIT ?3", &s);
    else
        rc = prep(db, "SELECT step, key, value, time FROM metrics WHERE run_id = ?1 AND "
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
    rput(st, db);
    return rc;
}

int store_metric_keys(store *st, int64_t run_id, json_t **out)
{
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    json_t *arr = json_array();
    int rc = prep(db, "SELECT DISTINCT key FROM metrics WHERE run_id = ?1 ORDER BY key", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW)
            json_array_append_new(arr, json_string((const char *)sqlite3_column_text(s, 0)));
        if (r != SQLITE_DONE)
            rc = db_fail(db, r, "read");
        sqlite3_finalize(s);
    }
    rput(st, db);
    if (rc)
        json_decref(arr);
    else
        *out = arr;
    return rc;
}

/* ---- epochs ----------------------------------------------------------------------------- */

static void bind_real_or_null(sqlite3_stmt *s, int i, double v)
{
    if (isfinite(v))
        sqlite3_bind_double(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

#define EPOCH_COLS "epoch, fit_epoch, cycle, job_id AS job, train_loss, valid_loss, " \
                   "accuracy, f2, seconds, img_per_s, time"

int store_epoch_add(store *st, int64_t run_id, int64_t job_id, const store_epoch *e,
                    int *epoch_out)
{
    int64_t n = 0;
    int rc = wbegin(st);
    if (rc)
        return rc;
    rc = query_i64(st->w, "SELECT count(*) FROM epochs WHERE run_id = ?1", run_id, &n);
    sqlite3_stmt *s = NULL;
    int64_t row = 0;
    if (rc == 0)
        rc = prep(st->w, "INSERT INTO epochs(run_id, job_id, epoch, fit_epoch, cycle, "
                         "train_loss, valid_loss, accuracy, f2, seconds, img_per_s, time) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_int64(s, 2, job_id);
        sqlite3_bind_int64(s, 3, n);
        sqlite3_bind_int(s, 4, e->fit_epoch);
        sqlite3_bind_int(s, 5, e->cycle);
        bind_real_or_null(s, 6, e->train_loss);
        bind_real_or_null(s, 7, e->valid_loss);
        bind_real_or_null(s, 8, e->accuracy);
        bind_real_or_null(s, 9, e->f2 < 0 ? NAN : e->f2);
        bind_real_or_null(s, 10, e->seconds);
        bind_real_or_null(s, 11, e->img_per_s);
        sqlite3_bind_double(s, 12, now_s());
        rc = wrun_insert(st, s, &row);
        sqlite3_finalize(s);
    }
    json_t *o = NULL;
    if (rc == 0)
        rc = prep(st->w, "SELECT " EPOCH_COLS " FROM epochs WHERE id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, row);
        rc = row_one(st->w, s, &o);
        sqlite3_finalize(s);
    }
    if (rc == 0)
        rc = ev_add(st, run_id, job_id, "epoch", o, now_s());
    json_decref(o);
    rc = wend(st, rc);
    if (rc == 0 && epoch_out)
        *epoch_out = (int)n;
    return rc;
}

int store_epochs_get(store *st, int64_t run_id, json_t **out)
{
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = exists(db, "runs", run_id);
    if (rc == 0)
        rc = prep(db, "SELECT " EPOCH_COLS " FROM epochs WHERE run_id = ?1 ORDER BY epoch",
                  &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        rc = rows_array(db, s, out);
        sqlite3_finalize(s);
    }
    rput(st, db);
    return rc;
}

/* ---- snapshots -------------------------------------------------------------------------- */

int store_snapshot_add(store *st, int64_t run_id, int64_t job_id, const char *kind,
                       int cycle, int epoch, const char *path, int64_t *id)
{
    if (!kind || !path || (strcmp(kind, "snapshot") && strcmp(kind, "checkpoint") &&
                           strcmp(kind, "best") && strcmp(kind, "final"))) {
        set_err("snapshot: unknown kind or no path");
        return -EINVAL;
    }
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "INSERT INTO snapshots(run_id, job_id, kind, cycle, epoch, path, "
                     "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        if (job_id)
            sqlite3_bind_int64(s, 2, job_id);
        sqlite3_bind_text(s, 3, kind, -1, SQLITE_STATIC);
        if (cycle >= 0)
            sqlite3_bind_int(s, 4, cycle);
        if (epoch >= 0)
            sqlite3_bind_int(s, 5, epoch);
        sqlite3_bind_text(s, 6, path, -1, SQLITE_STATIC);
        sqlite3_bind_double(s, 7, now_s());
        rc = wrun_insert(st, s, id);
        sqlite3_finalize(s);
    }
    return wend(st, rc);
}

int store_snapshots_get(store *st, int64_t run_id, json_t **out)
{
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = exists(db, "runs", run_id);
    if (rc == 0)
        rc = prep(db, "SELECT id, job_id AS job, kind, cycle, epoch, path, created_at "
                      "FROM snapshots WHERE run_id = ?1 ORDER BY id", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        rc = rows_array(db, s, out);
        sqlite3_finalize(s);
    }
    rput(st, db);
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
    return r == SQLITE_DONE ? -ENOENT : db_fail(db, r, "read");
}

int store_snapshot_latest(store *st, int64_t run_id, const char *kind, char **path)
{
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, "SELECT path FROM snapshots WHERE run_id = ?1 AND "
                      "(?2 IS NULL OR kind = ?2) ORDER BY id DESC LIMIT 1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        if (kind)
            sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
        rc = r_text(st, s, db, path);
        sqlite3_finalize(s);
    }
    rput(st, db);
    return rc;
}

/* ---- predictions ------------------------------------------------------------------------ */

int store_prediction_add(store *st, int64_t run_id, int64_t job_id, const char *path,
                         int n_rows)
{
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "INSERT OR REPLACE INTO predictions(run_id, job_id, path, n_rows, "
                     "created_at) VALUES (?1, ?2, ?3, ?4, ?5)", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_int64(s, 2, job_id);
        sqlite3_bind_text(s, 3, path, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 4, n_rows);
        sqlite3_bind_double(s, 5, now_s());
        rc = wrun_insert(st, s, NULL);
        sqlite3_finalize(s);
    }
    return wend(st, rc);
}

int store_prediction_path(store *st, int64_t job_id, char **path)
{
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, "SELECT path FROM predictions WHERE job_id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, job_id);
        rc = r_text(st, s, db, path);
        sqlite3_finalize(s);
    }
    rput(st, db);
    return rc;
}
