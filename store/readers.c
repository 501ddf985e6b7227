/* readers.c: the pool of read-only connections that store reads borrow. */
#define _GNU_SOURCE
#include "internal.h"

int store_readers_open(store *st, const char *path, int n, int busy_ms, char *err,
                       size_t errlen)
{
    st->rd = calloc((size_t)n, sizeof *st->rd);
    st->rd_busy = calloc((size_t)n, 1);
    if (!st->rd || !st->rd_busy) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Counted only once the arrays exist: store_readers_close walks them. */
    st->n_rd = n;
    for (int i = 0; i < n; i++) {
        int rc = store_conn_open(&st->rd[i], path, SQLITE_OPEN_READONLY, busy_ms, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

void store_readers_close(store *st)
{
    for (int i = 0; i < st->n_rd; i++)
        sqlite3_close(st->rd[i]);
    free(st->rd);
    free(st->rd_busy);
    st->rd = NULL;
    st->rd_busy = NULL;
    st->n_rd = 0;
}

sqlite3 *store_reader_get(store *st)
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

void store_reader_put(store *st, sqlite3 *db)
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
