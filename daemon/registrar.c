/* registrar.c: the thread that scans registered datasets (see registrar.h). */
#define _GNU_SOURCE
#include "registrar.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/data.h"
#include "jobs_internal.h"
#include "log.h"

struct registrar {
    store *st;
    pthread_mutex_t mu;     /* everything below but stop */
    pthread_cond_t cv;      /* work queued, a scan ended, or stopping */
    int64_t *q;             /* ids waiting, oldest first */
    int qn, qcap;
    int64_t current;        /* the id being scanned, 0: none */
    int started, joined;
    volatile int stop;      /* read by the scan every DS_SCAN_EVERY files */
    pthread_t thread;
};

static int row_options(json_t *row, ds_options *o)
{
    json_t *opts = json_object_get(row, "options");
    json_t *vp = json_object_get(opts, "valid_pct");
    if (jq_ds_format_of(json_string_value(json_object_get(row, "format")), &o->format))
        return -EINVAL;
    o->path = json_string_value(json_object_get(row, "path"));
    o->valid_pct = json_is_number(vp) ? json_number_value(vp) : -1;
    o->csv = json_string_value(json_object_get(opts, "csv"));
    o->seed = (uint64_t)json_integer_value(json_object_get(opts, "seed"));
    return o->path ? 0 : -EINVAL;
}

typedef struct scan_ctx {
    registrar *rg;
    int64_t id;
} scan_ctx;

static void on_progress(void *ctx, int64_t seen)
{
    scan_ctx *c = ctx;
    store_dataset_progress(c->rg->st, c->id, seen);
}

/* Scans dataset id and ends its row ready or failed (an uploaded folder that cannot be
 * used is removed first); a stopped scan leaves the row scanning. */
static void scan_one(registrar *rg, int64_t id)
{
    json_t *row = NULL;
    ds_options o = {0};
    dataset *ds = NULL;
    char why[512] = "", msg[640];
    scan_ctx c = {rg, id};
    if (store_dataset_get(rg->st, id, &row))
        return;
    int rc = row_options(row, &o);
    if (rc == 0) {
        o.stop = &rg->stop;
        o.progress = on_progress;
        o.progress_ctx = &c;
        rc = dataset_open(&ds, &o, why, sizeof why);
    }
    if (rc == -ECANCELED) {
        log_msg(LOG_INFO, 0, "dataset %lld: scan stopped; it is scanned again at the next start",
                (long long)id);
    } else if (rc) {
        snprintf(msg, sizeof msg, "the dataset cannot be used: %s",
                 why[0] ? why : strerror(-rc));
        if (json_is_true(json_object_get(row, "uploaded")) && o.path)
            jq_rm_tree(o.path);
        store_dataset_finish(rg->st, id, NULL, msg);
        log_msg(LOG_INFO, 0, "dataset %lld: %s", (long long)id, msg);
    } else {
        json_t *info = jq_dataset_info_json(dataset_info(ds));
        if (info)
            store_dataset_finish(rg->st, id, info, NULL);
        else
            store_dataset_finish(rg->st, id, NULL, "out of memory");
        json_decref(info);
        log_msg(LOG_INFO, 0, "registered dataset %lld (%d classes)", (long long)id,
                dataset_info(ds)->n_classes);
    }
    dataset_destroy(ds);
    json_decref(row);
}

static void *reg_main(void *arg)
{
    registrar *rg = arg;
    pthread_mutex_lock(&rg->mu);
    for (;;) {
        while (!rg->stop && rg->qn == 0)
            pthread_cond_wait(&rg->cv, &rg->mu);
        if (rg->stop)
            break;
        int64_t id = rg->current = rg->q[0];
        memmove(rg->q, rg->q + 1, (size_t)--rg->qn * sizeof *rg->q);
        pthread_mutex_unlock(&rg->mu);
        scan_one(rg, id);
        pthread_mutex_lock(&rg->mu);
        rg->current = 0;
        pthread_cond_broadcast(&rg->cv);
    }
    pthread_mutex_unlock(&rg->mu);
    return NULL;
}

int registrar_add(registrar *rg, int64_t id)
{
    int rc = 0;
    pthread_mutex_lock(&rg->mu);
    if (rg->stop) {
        rc = -ESHUTDOWN;
    } else if (rg->qn == rg->qcap) {
        int cap = rg->qcap ? 2 * rg->qcap : 16;
        int64_t *q = realloc(rg->q, (size_t)cap * sizeof *q);
        if (q) {
            rg->q = q;
            rg->qcap = cap;
        } else {
            rc = -ENOMEM;
        }
    }
    if (rc == 0) {
        rg->q[rg->qn++] = id;
        pthread_cond_broadcast(&rg->cv);
    }
    pthread_mutex_unlock(&rg->mu);
    return rc;
}

static int queued(const registrar *rg, int64_t id)
{
    if (rg->current == id)
        return 1;
    for (int i = 0; i < rg->qn; i++)
        if (rg->q[i] == id)
            return 1;
    return 0;
}

int registrar_wait(registrar *rg, int64_t id, double timeout_s)
{
    struct timespec dl;
    int rc = 0;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)timeout_s;
    dl.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&rg->mu);
    while (rc == 0 && !rg->stop && queued(rg, id))
        rc = pthread_cond_timedwait(&rg->cv, &rg->mu, &dl) == ETIMEDOUT ? -ETIMEDOUT : 0;
    if (rc == -ETIMEDOUT && !queued(rg, id))
        rc = 0;
    if (rg->stop && queued(rg, id))
        rc = -ETIMEDOUT;
    pthread_mutex_unlock(&rg->mu);
    return rc;
}

int registrar_create(registrar **out, store *st, char *err, size_t errlen)
{
    int64_t *ids = NULL;
    int n = 0;
    registrar *rg = calloc(1, sizeof *rg);
    *out = NULL;
    if (!rg) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rg->st = st;
    pthread_mutex_init(&rg->mu, NULL);
    pthread_cond_init(&rg->cv, NULL);
    int rc = store_dataset_scanning(st, &ids, &n);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = registrar_add(rg, ids[i]);
    free(ids);
    if (rc == 0 && n)
        log_msg(LOG_INFO, 0, "%d dataset(s) left scanning: scanned again", n);
    if (rc == 0 && (rc = -pthread_create(&rg->thread, NULL, reg_main, rg)) == 0)
        rg->started = 1;
    if (rc) {
        snprintf(err, errlen, "cannot start the dataset registrar: %s", strerror(-rc));
        registrar_destroy(rg);
        return rc;
    }
    *out = rg;
    return 0;
}

void registrar_stop(registrar *rg)
{
    if (!rg)
        return;
    pthread_mutex_lock(&rg->mu);
    rg->stop = 1;
    pthread_cond_broadcast(&rg->cv);
    int join = rg->started && !rg->joined;
    rg->joined = 1;
    pthread_mutex_unlock(&rg->mu);
    if (join)
        pthread_join(rg->thread, NULL);
}

void registrar_destroy(registrar *rg)
{
    if (!rg)
        return;
    registrar_stop(rg);
    pthread_mutex_destroy(&rg->mu);
    pthread_cond_destroy(&rg->cv);
    free(rg->q);
    free(rg);
}
