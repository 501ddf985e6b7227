/* internal.h: what the files of store/ share: the store struct, the buffered point types, the
 * bound-value type of writes, and the helpers each file offers the others. */
#ifndef SGDRD_STORE_INTERNAL_H
#define SGDRD_STORE_INTERNAL_H

#include "store.h"
#include "json_text.h"

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

/* Size of the store_errmsg text, terminating NUL included. */
#define STORE_ERR_MAX 512

/* The columns of a job row as store_job_get answers them. */
#define STORE_JOB_COLS "id, run_id AS run, kind, state, params AS params_json, progress, " \
                       "eta_s, error, result AS result_json, created_at, started_at, " \
                       "finished_at, resumed_from"

typedef enum store_point_kind {
    STORE_POINT_METRIC,
    STORE_POINT_SWEEP,
    STORE_POINT_NOTE,
} store_point_kind;

/* One buffered item; its arrays and strings are owned by the buffer. */
typedef struct store_point {
    store_point_kind kind;
    int64_t run, job;
    int64_t step;          /* metric: step; sweep: lr_find id */
    double t;
    int n;                 /* metric: values; sweep: iter */
    char **keys;
    double *vals;          /* metric values; sweep: lr, loss, smooth_loss */
    char *what, *why;      /* note */
} store_point;

/* The latest progress of a running job, buffered. */
typedef struct store_progress {
    int64_t job;
    double fraction, eta_s;
} store_progress;

/* An event of the open write transaction, notified after it commits. */
typedef struct store_tx_event {
    store_event ev;
    char *kind, *data;
} store_tx_event;

/* A subscriber (store_subscribe). */
typedef struct store_sub {
    int handle;
    store_listener fn;
    void *ctx;
} store_sub;

struct store {
    sqlite3 *w;                 /* the one writer connection, under wmu */
    sqlite3_stmt *ins_event;    /* prepared once: every commit adds events */
    pthread_mutex_t wmu;
#ifdef STORE_TEST_HOOKS
    int fail_write;             /* fault injection countdown, under wmu */
    int summaries_off;          /* chart views ignore the summaries (__atomic) */
#endif
    store_tx_event *tev;        /* events of the open write transaction */
    int n_tev, cap_tev;

    sqlite3 **rd;               /* read-only pool */
    char *rd_busy;
    int n_rd;
    pthread_mutex_t rmu;
    pthread_cond_t rcv;

    pthread_mutex_t bmu;        /* the point buffer */
    store_point *buf;
    int n_buf, cap_buf;
    int buf_points;
    store_progress *prog;
    int n_prog, cap_prog;

    pthread_t flusher;
    int flusher_started;
    int stopping;               /* under bmu */
    pthread_cond_t fcv;
    int flush_ms, flush_points;

    uint64_t generation;        /* committed write transactions (__atomic; store_generation) */

    pthread_mutex_t nmu;        /* subscribers; held while listeners run */
    store_sub *subs;
    int n_subs, cap_subs, next_handle;
};

/* ---- bound values of store_write --------------------------------------------------------- */

/* One value bound to a statement parameter by store_write / store_wstatement. */
typedef enum store_arg_type {
    STORE_ARG_NULL,
    STORE_ARG_INT,
    STORE_ARG_REAL,
    STORE_ARG_TEXT,
    STORE_ARG_JSON,
} store_arg_type;

typedef struct store_arg {
    store_arg_type type;
    int64_t i;
    double d;
    const char *text;   /* TEXT: borrowed; JSON: what NULL json binds (NULL: SQL NULL) */
    json_t *json;       /* borrowed; bound as its compact text */
} store_arg;

static inline store_arg store_arg_null(void)
{
    return (store_arg){.type = STORE_ARG_NULL};
}

static inline store_arg store_arg_int(int64_t v)
{
    return (store_arg){.type = STORE_ARG_INT, .i = v};
}

/* An id where 0 means none: SQL NULL. */
static inline store_arg store_arg_id(int64_t v)
{
    return v ? store_arg_int(v) : store_arg_null();
}

static inline store_arg store_arg_real(double v)
{
    return (store_arg){.type = STORE_ARG_REAL, .d = v};
}

/* A measurement where a non-finite value means unknown: SQL NULL. */
static inline store_arg store_arg_real_or_null(double v)
{
    return isfinite(v) ? store_arg_real(v) : store_arg_null();
}

static inline store_arg store_arg_text(const char *v)
{
    return (store_arg){.type = STORE_ARG_TEXT, .text = v};
}

static inline store_arg store_arg_json(json_t *j, const char *dflt)
{
    return (store_arg){.type = STORE_ARG_JSON, .json = j, .text = dflt};
}

#define STORE_NARGS(a) ((int)(sizeof(a) / sizeof *(a)))

/* ---- errors.c ---------------------------------------------------------------------------- */

/* Sets this thread's store_errmsg text. */
void store_set_err(const char *fmt, ...);
/* A failed SQLite call as our code (constraint: -EINVAL), its message recorded with what. */
int store_db_fail(sqlite3 *db, int rc, const char *what);
/* A failed SQLite call's code as ours: -ENOMEM, -ENOSPC for a full disk, else -EIO. */
int store_sqlite_errno(int rc);

/* ---- util.c ------------------------------------------------------------------------------ */

/* Wall-clock time in seconds since the epoch. */
double store_now_s(void);
/* p resized to hold at least need elements (capacity doubling, *cap updated); NULL when out
 * of memory, p then untouched. */
void *store_grow(void *p, int *cap, int need, size_t elem);

/* ---- connection.c, migrate.c, readers.c -------------------------------------------------- */

/* Opens one connection (busy timeout, extended codes, foreign keys on); err says why not. */
int store_conn_open(sqlite3 **db, const char *path, int flags, int busy_ms, char *err,
                    size_t errlen);
/* Runs set-up SQL; its error message goes to err. -EIO on failure. */
int store_conn_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);
/* Migrates db up to schema version target, one transaction per version. */
int store_migrate(sqlite3 *db, const char *path, int target, char *err, size_t errlen);
/* Opens the n read-only connections of the pool; store_readers_close closes what opened. */
int store_readers_open(store *st, const char *path, int n, int busy_ms, char *err,
                       size_t errlen);
void store_readers_close(store *st);
/* Borrows a reader (waiting for a free one) inside one read transaction; give it back with
 * store_reader_put. */
sqlite3 *store_reader_get(store *st);
void store_reader_put(store *st, sqlite3 *db);

/* ---- writer.c ---------------------------------------------------------------------------- */

/* Every w* call but store_wbegin runs with the writer held: between store_wbegin and
 * store_wend, or (store_flush_locked) under wmu. */

/* Runs SQL without results on the writer. */
int store_wexec(store *st, const char *sql);
/* Runs a bound writer statement to completion. */
int store_wrun(store *st, sqlite3_stmt *s);
/* Inside the open write transaction: prepares sql, binds args[0..n) to ?1..?n and runs it;
 * *id (may be NULL) gets the new row's id. A UNIQUE violation is -EEXIST, an FK violation
 * -ENOENT, and so is a statement that changed no row (an UPDATE of a missing id). */
int store_wstatement(store *st, const char *sql, const store_arg *args, int n, int64_t *id);
/* store_wstatement in a write transaction of its own, committed before it returns. */
int store_write(store *st, const char *sql, const store_arg *args, int n, int64_t *id);
/* Deletes the row id of table inside the open write transaction. */
int store_wdelete(store *st, const char *table, int64_t id);
/* Takes the writer, commits buffered points (so rows keep their order), opens a write
 * transaction. On failure the writer is released. */
int store_wbegin(store *st);
/* Commits when rc == 0 (a failing commit turns into its error), else rolls back and drops
 * the transaction's events. Returns the final code; the writer stays held. */
int store_wcommit(store *st, int rc);
/* store_wcommit, then releases the writer and notifies the subscribers. */
int store_wend(store *st, int rc);

/* ---- events.c ---------------------------------------------------------------------------- */

/* Inserts an event row in the open write transaction and keeps it for the notification. */
int store_event_add(store *st, int64_t run, int64_t job, const char *kind, json_t *data,
                    double t);
/* Drops the kept events of a transaction that did not commit. */
void store_tx_events_clear(store *st);
/* Releases wmu and hands the committed transaction's events to the subscribers. */
void store_wunlock_notify(store *st);

/* ---- buffer.c ---------------------------------------------------------------------------- */

/* Takes p (its arrays are owned by the buffer from now on, freed on failure too); points
 * counts towards the flush threshold. */
int store_buffer_add(store *st, store_point *p, int points);
void store_point_free(store_point *p);
/* Commits the buffer in one transaction; wmu held. */
int store_flush_locked(store *st);
void *store_flusher_main(void *arg);

/* ---- summaries.c ------------------------------------------------------------------------- */

/* The summaries have STORE_SUMMARY_LEVELS levels: one of level l covers the steps of one
 * bucket, step >> store_summary_shift(l), 64 steps at level 0 and 4 times more at each level
 * up (up to 16,384), so a view reads at most about four summaries per bucket of its own
 * whatever the window's length. Level 0 is built from the rows, the others from level 0.
 * schema.sql's migration to version 6 spells these numbers out too. */
#define STORE_SUMMARY_LEVELS 5
#define STORE_SUMMARY_SHIFT0 6
#define STORE_SUMMARY_FANOUT_SHIFT 2

static inline int store_summary_shift(int level)
{
    return STORE_SUMMARY_SHIFT0 + STORE_SUMMARY_FANOUT_SHIFT * level;
}

/* How much of a point slot is filled. */
enum { STORE_MP_EMPTY, STORE_MP_NULL, STORE_MP_FINITE };

/* A metric point; has: STORE_MP_EMPTY (no point), STORE_MP_NULL (the value is SQL NULL),
 * STORE_MP_FINITE. */
typedef struct store_mpoint {
    int64_t step;
    double value, time;
    int has;
} store_mpoint;

/* One row of metric_summaries: lo and hi are EMPTY when the bucket has no finite value. */
typedef struct store_summary {
    int64_t bucket, n;
    store_mpoint first, last, lo, hi;
} store_summary;

/* Puts p in the slots lo and hi: the lowest and highest finite value, ties keeping the
 * point seen first; a NULL-valued point holds lo only while nothing else does. */
void store_mpoint_extremes(store_mpoint *lo, store_mpoint *hi, const store_mpoint *p);
/* Rebuilds the summaries, at every level, of every bucket the metric points of items[0..n)
 * fall in, inside the open write transaction (wmu held): level 0 from its rows, each level
 * above from the summaries of the level below. */
int store_summaries_update(store *st, const store_point *items, int n);
/* Calls fn on each summary of (run, key) at level with b0 <= bucket <= b1, in bucket order;
 * stops at the first nonzero (negative errno) return of fn and returns it. *rows: how many
 * were read. */
int store_summaries_read(sqlite3 *db, int64_t run, const char *key, int level, int64_t b0,
                         int64_t b1, int (*fn)(void *ctx, const store_summary *s), void *ctx,
                         int64_t *rows);

/* ---- rows.c, page.c ---------------------------------------------------------------------- */

int store_prep(sqlite3 *db, const char *sql, sqlite3_stmt **s);
/* Every row of a bound statement as an object (columns *_json parsed, *_bool booleans). */
int store_rows_array(sqlite3 *db, sqlite3_stmt *s, json_t **out);
/* The single row of a bound statement as an object; -ENOENT when none. */
int store_row_one(sqlite3 *db, sqlite3_stmt *s, json_t **out);
/* The first column of the one row of sql bound to ?1 = a; -ENOENT when no row. */
int store_query_i64(sqlite3 *db, const char *sql, int64_t a, int64_t *out);
/* The text first column of a bound statement's row, malloc'd (NULL for SQL NULL); -ENOENT
 * when no row. */
int store_row_text(sqlite3 *db, sqlite3_stmt *s, char **out);
/* store_row_text of sql bound to ?1 = a. */
int store_query_text(sqlite3 *db, const char *sql, int64_t a, char **out);
/* 0 when table has a row id, -ENOENT when not. */
int store_row_exists(sqlite3 *db, const char *table, int64_t id);
/* A list page of sql, see page.c. */
int store_page_query(store *st, const char *sql, const store_page *pg, int64_t p3,
                     const char *p4, json_t **out);

/* ---- jobs.c ------------------------------------------------------------------------------ */

/* A job as store_job_get answers it, read on db; NULL when missing or out of memory. */
json_t *store_job_json(sqlite3 *db, int64_t id);
/* Adds a "job" event carrying the job's current row, inside the open write transaction. */
int store_job_event(store *st, int64_t id);

#endif
