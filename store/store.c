/* store.c: the store object: small helpers, opening and migrations, readers, subscribers. */
#define _GNU_SOURCE
#include "internal.h"
#include "schema_sql.h"

/* ---- small helpers ---------------------------------------------------------------------- */

_Thread_local char errbuf[512];

const char *store_errmsg(void)
{
    return errbuf;
}

void store_set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
}

double store_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* SQLite result code -> our error code; records the message for store_errmsg. */
int db_fail(sqlite3 *db, int rc, const char *what)
{
    store_set_err("%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (rc == SQLITE_NOMEM)
        return -ENOMEM;
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return -EINVAL;
    return sqlite_errno(rc);
}

int sqlite_errno(int rc)
{
    if (rc == SQLITE_NOMEM)
        return -ENOMEM;
    if (rc == SQLITE_FULL)
        return -ENOSPC; /* the unix VFS's answer to ENOSPC */
    return -EIO;
}

char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- the store object ------------------------------------------------------------------- */

int store_schema_current(void)
{
    return store_schema_version;
}

void *grow(void *p, int *cap, int need, size_t elem)
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

/* ---- readers ------------------------------------------------------------------------------ */

sqlite3 *rget(store *st)
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

void rput(store *st, sqlite3 *db)
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

/* quick_check and foreign_key_check report what they find as rows, not as an error code:
 * each row is read. A store that fails either is refused, naming the first finding. */
static int check_pragmas(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL) != SQLITE_OK)
        goto out_fail;
    if (sqlite3_step(s) != SQLITE_ROW)
        goto out_fail;
    if (strcmp((const char *)sqlite3_column_text(s, 0), "ok") != 0) {
        snprintf(err, errlen, "quick_check: %s", sqlite3_column_text(s, 0));
        rc = -EIO;
        goto out;
    }
    sqlite3_finalize(s);
    if (sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &s, NULL) != SQLITE_OK)
        goto out_fail;
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        snprintf(err, errlen, "foreign_key_check: row %lld of %s refers to a missing row of %s",
                 (long long)sqlite3_column_int64(s, 1), sqlite3_column_text(s, 0),
                 sqlite3_column_text(s, 2));
        rc = -EIO;
    } else if (r != SQLITE_DONE) {
        goto out_fail;
    }
    goto out;
out_fail:
    snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    rc = -EIO;
out:
    sqlite3_finalize(s);
    return rc;
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
    if (check_pragmas(st->w, e2, sizeof e2)) {
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

void pitem_free(pitem *p)
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
