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

#define JOB_COLS "id, run_id AS run, kind, state, params AS params_json, progress, eta_s, " \
                 "error, result AS result_json, created_at, started_at, finished_at, " \
                 "resumed_from"

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
#ifdef STORE_TEST_HOOKS
    int fail_write;             /* fault injection countdown, under wmu */
#endif
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

    uint64_t generation;        /* committed write transactions (__atomic; store_generation) */

    pthread_mutex_t nmu;        /* subscribers; held while listeners run */
    sub *subs;
    int n_subs, cap_subs, next_handle;
};

/* store.c */
extern _Thread_local char errbuf[512];
void store_set_err(const char *fmt, ...);
double store_now_s(void);
int db_fail(sqlite3 *db, int rc, const char *what);
/* A failed SQLite call's code as ours: -ENOMEM, -ENOSPC for a full disk, else -EIO. */
int sqlite_errno(int rc);
char *xstrdup(const char *s);
void *grow(void *p, int *cap, int need, size_t elem);
sqlite3 *rget(store *st);
void rput(store *st, sqlite3 *db);
void pitem_free(pitem *p);

/* writer.c */
int wexec(store *st, const char *sql);
int prep(sqlite3 *db, const char *sql, sqlite3_stmt **s);
int wrun(store *st, sqlite3_stmt *s);
int wrun_insert(store *st, sqlite3_stmt *s, int64_t *id);
void tev_clear(store *st);
int ev_add(store *st, int64_t run, int64_t job, const char *kind, json_t *data,
           double t);
int wbegin(store *st);
int wend(store *st, int rc);
int buf_add(store *st, pitem *p, int points);
void *flusher_main(void *arg);

/* rows.c */
json_t *row_obj(sqlite3_stmt *s);
int rows_array(sqlite3 *db, sqlite3_stmt *s, json_t **out);
int row_one(sqlite3 *db, sqlite3_stmt *s, json_t **out);
int query_i64(sqlite3 *db, const char *sql, int64_t a, int64_t *out);
int exists(sqlite3 *db, const char *table, int64_t id);
int page_query(store *st, const char *sql, const store_page *pg, int64_t p3,
               const char *p4, json_t **out);

/* datasets.c */
int bind_json(sqlite3_stmt *s, int i, json_t *j, const char *dflt);
int w_delete(store *st, const char *table, int64_t id);

/* runs.c */
json_t *job_json_db(sqlite3 *db, int64_t id);

#endif
