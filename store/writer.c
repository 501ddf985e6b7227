/* writer.c: the one writer connection: its statements and its transactions. */
#define _GNU_SOURCE
#include "internal.h"

/* ---- fault injection (tests only) -------------------------------------------------------- */

#ifdef STORE_TEST_HOOKS
/* Whether the fault-injection countdown makes this write fail (wmu held). */
static int fault_fires(store *st)
{
    if (st->fail_write > 0 && --st->fail_write == 0) {
        store_set_err("injected write failure");
        return 1;
    }
    return 0;
}

void store_test_fail_write(store *st, int n)
{
    pthread_mutex_lock(&st->wmu);
    st->fail_write = n;
    pthread_mutex_unlock(&st->wmu);
}
#else
static int fault_fires(store *st)
{
    (void)st;
    return 0;
}
#endif

/* ---- statements -------------------------------------------------------------------------- */

int store_wexec(store *st, const char *sql)
{
    if (fault_fires(st))
        return -EIO;
    char *msg = NULL;
    int rc = sqlite3_exec(st->w, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        store_set_err("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return store_sqlite_errno(rc);
    }
    return 0;
}

int store_wrun(store *st, sqlite3_stmt *s)
{
    if (fault_fires(st))
        return -EIO;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_db_fail(st->w, rc, "write");
    return 0;
}

/* Steps a bound writer statement to completion, mapping a UNIQUE violation to -EEXIST and
 * an FK violation to -ENOENT. */
static int wstep_checked(store *st, sqlite3_stmt *s)
{
    if (fault_fires(st))
        return -EIO;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        store_set_err("name already taken");
        return -EEXIST;
    }
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        store_set_err("referenced row does not exist");
        return -ENOENT;
    }
    return store_db_fail(st->w, rc, "write");
}

/* Binds a JSON value as its compact text; NULL binds dflt (NULL: SQL NULL). */
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

static int bind_arg(sqlite3_stmt *s, int i, const store_arg *a)
{
    switch (a->type) {
    case STORE_ARG_INT: sqlite3_bind_int64(s, i, a->i); return 0;
    case STORE_ARG_REAL: sqlite3_bind_double(s, i, a->d); return 0;
    case STORE_ARG_TEXT: sqlite3_bind_text(s, i, a->text, -1, SQLITE_STATIC); return 0;
    case STORE_ARG_JSON: return bind_json(s, i, a->json, a->text);
    default: sqlite3_bind_null(s, i); return 0;
    }
}

int store_wstatement(store *st, const char *sql, const store_arg *args, int n, int64_t *id)
{
    sqlite3_stmt *s;
    int rc = store_prep(st->w, sql, &s);
    if (rc)
        return rc;
    for (int i = 0; rc == 0 && i < n; i++)
        rc = bind_arg(s, i + 1, &args[i]);
    if (rc == 0)
        rc = wstep_checked(st, s);
    if (rc == 0 && sqlite3_changes(st->w) == 0) {
        store_set_err("no such row");
        rc = -ENOENT;
    }
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(st->w);
    sqlite3_finalize(s);
    return rc;
}

int store_write(store *st, const char *sql, const store_arg *args, int n, int64_t *id)
{
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    return store_wend(st, store_wstatement(st, sql, args, n, id));
}

int store_wdelete(store *st, const char *table, int64_t id)
{
    char sql[64];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id = ?1", table);
    sqlite3_stmt *s;
    int rc = store_prep(st->w, sql, &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = store_wrun(st, s);
    sqlite3_finalize(s);
    return rc;
}

/* ---- transactions ------------------------------------------------------------------------ */

/* Rolls back the open write transaction, if any, and drops its events; the error message
 * of the failure that caused it stays for store_errmsg. */
static void wrollback(store *st)
{
    if (!sqlite3_get_autocommit(st->w)) {
        char keep[STORE_ERR_MAX];
        snprintf(keep, sizeof keep, "%s", store_errmsg());
        sqlite3_exec(st->w, "ROLLBACK", NULL, NULL, NULL);
        store_set_err("%s", keep);
    }
    store_tx_events_clear(st);
}

/* Takes the writer, commits buffered points (so rows keep their order), opens a write
 * transaction. On failure the writer is released. */
int store_wbegin(store *st)
{
    pthread_mutex_lock(&st->wmu);
    store_flush_locked(st);
    int rc = store_wexec(st, "BEGIN IMMEDIATE");
    if (rc) {
        store_wunlock_notify(st);
        return rc;
    }
    return 0;
}

/* Commits when rc == 0 (a failing commit turns into its error), else rolls back and drops
 * the transaction's events. Returns the final code. */
int store_wcommit(store *st, int rc)
{
    if (rc == 0)
        rc = store_wexec(st, "COMMIT");
    if (rc == 0)
        __atomic_add_fetch(&st->generation, 1, __ATOMIC_RELEASE);
    else
        wrollback(st);
    return rc;
}

/* store_wcommit, then releases the writer and notifies. */
int store_wend(store *st, int rc)
{
    rc = store_wcommit(st, rc);
    store_wunlock_notify(st);
    return rc;
}

uint64_t store_generation(store *st)
{
    return __atomic_load_n(&st->generation, __ATOMIC_ACQUIRE);
}
