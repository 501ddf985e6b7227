/* store.c: the store object: opening (connections, schema, flusher) and closing. */
#define _GNU_SOURCE
#include "internal.h"

/* Locks, condition variables and settings of a new store. */
static void init_store(store *st, const store_options *o)
{
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
}

/* quick_check and foreign_key_check report what they find as rows, not as an error code:
 * each row is read. A store that fails either is refused, naming the first finding. */
static int check_pragmas(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW)
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

/* The writer connection: WAL, the sync mode, the schema migrated to this binary's version,
 * the event insert prepared once, and the integrity and foreign-key checks of what is on
 * disk. */
static int open_writer(store *st, const char *path, const store_options *o, int busy_ms,
                       char *err, size_t errlen)
{
    int rc = store_conn_open(&st->w, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             busy_ms, err, errlen);
    if (rc == 0)
        rc = store_conn_exec(st->w, "PRAGMA journal_mode = WAL", err, errlen);
    if (rc == 0)
        rc = store_conn_exec(st->w, o->sync_normal ? "PRAGMA synchronous = NORMAL"
                                                   : "PRAGMA synchronous = FULL", err, errlen);
    if (rc == 0)
        rc = store_migrate(st->w, path, store_schema_current(), err, errlen);
    if (rc)
        return rc;
    if (sqlite3_prepare_v3(st->w, "INSERT INTO events(run_id, job_id, kind, data, time) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5)", -1,
                           SQLITE_PREPARE_PERSISTENT, &st->ins_event, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(st->w));
        return -EIO;
    }
    char e2[256] = "";
    if (check_pragmas(st->w, e2, sizeof e2)) {
        snprintf(err, errlen, "%s: %s", path, e2);
        return -EIO;
    }
    return 0;
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
    init_store(st, o);
    int busy_ms = o->busy_timeout_ms > 0 ? o->busy_timeout_ms : 5000;
    int rc = open_writer(st, path, o, busy_ms, err, errlen);
    if (rc == 0)
        rc = store_readers_open(st, path, o->readers > 0 ? o->readers : 4, busy_ms, err,
                                errlen);
    if (rc)
        goto out_close;
    if (pthread_create(&st->flusher, NULL, store_flusher_main, st)) {
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
    store_readers_close(st);
    sqlite3_finalize(st->ins_event);
    if (st->w) {
        /* Folds the WAL into the main file so a closed database is one file. */
        sqlite3_exec(st->w, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        sqlite3_close(st->w);
    }
    for (int i = 0; i < st->n_buf; i++)
        store_point_free(&st->buf[i]);
    free(st->buf);
    free(st->prog);
    store_tx_events_clear(st);
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
