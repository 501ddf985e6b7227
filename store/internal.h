/* internal.h: what the files of store/ share: the store struct, the buffer types, helpers. */
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

#define STORE_JOB_COLS "id, run_id AS run, kind, state, params AS params_json, progress, eta_s, " \
                 "error, result AS result_json, created_at, started_at, finished_at, " \
                 "resumed_from"

typedef enum store_point_kind { STORE_POINT_METRIC, STORE_POINT_SWEEP, STORE_POINT_NOTE } store_point_kind;

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

typedef struct store_progress {
    int64_t job;
    double fraction, eta_s;
} store_progress;

typedef struct store_tx_event {
    store_event ev;
    char *kind, *data;
} store_tx_event;

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
#endif
    store_tx_event *tev;                 /* events of the open write transaction */
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

/* One value bound to a statement parameter by store_write. */
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

/* store.c */
void store_set_err(const char *fmt, ...);
double store_now_s(void);
int store_db_fail(sqlite3 *db, int rc, const char *what);
/* A failed SQLite call's code as ours: -ENOMEM, -ENOSPC for a full disk, else -EIO. */
int store_sqlite_errno(int rc);
void *store_grow(void *p, int *cap, int need, size_t elem);
sqlite3 *store_reader_get(store *st);
void store_reader_put(store *st, sqlite3 *db);
void store_point_free(store_point *p);

/* writer.c */
int store_wexec(store *st, const char *sql);
int store_prep(sqlite3 *db, const char *sql, sqlite3_stmt **s);
int store_wrun(store *st, sqlite3_stmt *s);
/* Inside the open write transaction: prepares sql, binds args[0..n) to ?1..?n and runs it;
 * *id (may be NULL) gets the new row's id. A UNIQUE violation is -EEXIST, an FK violation
 * -ENOENT, and so is a statement that changed no row (an UPDATE of a missing id). */
int store_wstatement(store *st, const char *sql, const store_arg *args, int n, int64_t *id);
/* store_wstatement in a write transaction of its own, committed before it returns. */
int store_write(store *st, const char *sql, const store_arg *args, int n, int64_t *id);
void store_tx_events_clear(store *st);
int store_event_add(store *st, int64_t run, int64_t job, const char *kind, json_t *data,
           double t);
int store_wbegin(store *st);
int store_wend(store *st, int rc);
int store_buffer_add(store *st, store_point *p, int points);
void *store_flusher_main(void *arg);

/* rows.c */
int store_rows_array(sqlite3 *db, sqlite3_stmt *s, json_t **out);
int store_row_one(sqlite3 *db, sqlite3_stmt *s, json_t **out);
int store_query_i64(sqlite3 *db, const char *sql, int64_t a, int64_t *out);
int store_row_exists(sqlite3 *db, const char *table, int64_t id);
int store_page_query(store *st, const char *sql, const store_page *pg, int64_t p3,
               const char *p4, json_t **out);

/* datasets.c */
int store_wdelete(store *st, const char *table, int64_t id);

/* runs.c */
json_t *store_job_json(sqlite3 *db, int64_t id);

#endif
