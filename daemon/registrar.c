/* registrar.c: the thread that scans registered datasets (see registrar.h). */
#define _GNU_SOURCE
#include "registrar.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/data.h"
#include "jobs_internal.h"
#include "log.h"
#include "upload.h"

/* One queued registration: a folder to scan, or an upload's archive to extract first. */
typedef struct reg_item {
    int64_t id;
    char *archive;          /* owned; NULL: the folder is there already */
    int64_t max_bytes;
} reg_item;

struct registrar {
    store *st;
    pthread_mutex_t mu;     /* everything below but stop */
    pthread_cond_t cv;      /* work queued, a scan ended, or stopping */
    reg_item *q;            /* waiting, oldest first */
    int qn, qcap;
    int64_t current;        /* the id being scanned, 0: none */
    int started, joined;
    volatile int stop;      /* read by the scan every DS_SCAN_EVERY files, and by the
                               extraction at every entry */
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

/* 1 when the folder at path is missing or holds nothing. */
static int folder_empty(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    int empty = 1;
    if (!d)
        return errno == ENOENT;
    while (empty && (de = readdir(d)))
        empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
    closedir(d);
    return empty;
}

/* 1 while dataset id's row is there and scanning: a row deleted meanwhile no longer owns
 * its folder's name (a new dataset may have taken it). */
static int still_scanning(registrar *rg, int64_t id)
{
    json_t *row = NULL;
    int ok = store_dataset_get(rg->st, id, &row) == 0 &&
             !strcmp(json_string_value(json_object_get(row, "state")) ?: "", "scanning");
    json_decref(row);
    return ok;
}

/* Extracts an upload's archive into dest (the row's empty folder): into a folder beside
 * the archive under tmp/ first, moved into place whole once every entry has passed, so
 * that a dataset folder is never half-written. The archive is removed either way. On
 * failure *lead and why say what happened. */
static int extract_upload(registrar *rg, const reg_item *it, const char *dest,
                          const char **lead, char *why, size_t len)
{
    char stage[PATH_MAX], root[PATH_MAX];
    int rc;
    *lead = "cannot extract the archive";
    if (snprintf(stage, sizeof stage, "%s.d", it->archive) >= (int)sizeof stage) {
        snprintf(why, len, "%.300s: name too long", it->archive);
        rc = -ENAMETOOLONG;
    } else if (mkdir(stage, 0700) != 0) {
        rc = -errno;
        snprintf(why, len, "cannot create %.300s: %s", stage, strerror(errno));
    } else {
        rc = upload_extract_tar_until(it->archive, stage, it->max_bytes, &rg->stop, why, len);
        if (rc == -EINVAL || rc == -EFBIG)
            *lead = "the archive was refused";
        if (rc == 0 && !still_scanning(rg, it->id)) {
            rc = -ENOENT;
            snprintf(why, len, "the dataset was deleted during its extraction");
        }
        if (rc == 0) {
            upload_data_root(stage, root, sizeof root);
            if (rename(root, dest) != 0) {
                rc = -errno;
                snprintf(why, len, "cannot move the dataset to %s: %s", dest,
                         strerror(errno));
            }
        }
        /* A stop leaves what it had written for the next start's sweep of tmp/: a big
         * tree takes long to remove, and the stop must not wait for it. */
        if (rc != -ECANCELED)
            upload_remove_tree(stage);
    }
    if (rc == -ECANCELED) {
        *lead = "the upload was interrupted";
        snprintf(why, len, "the daemon stopped before its archive was extracted; upload it "
                           "again");
    }
    unlink(it->archive);
    return rc;
}

/* What an uploaded row needs before its scan: its archive extracted, or (queued again at a
 * start, its archive gone with tmp/) a folder that an earlier start did extract. */
static int prepare_upload(registrar *rg, const reg_item *it, const char *dest,
                          const char **lead, char *why, size_t len)
{
    if (it->archive)
        return extract_upload(rg, it, dest, lead, why, len);
    if (!folder_empty(dest))
        return 0;
    *lead = "the upload was interrupted";
    snprintf(why, len, "the daemon stopped before its archive was extracted; upload it again");
    return -ECANCELED;
}

/* Ends the row failed with lead: why, and removes an uploaded folder, unless the row was
 * deleted meanwhile (the folder's name is no longer its own). */
static void fail_row(registrar *rg, int64_t id, json_t *row, const char *path,
                     const char *lead, const char *why)
{
    char msg[640];
    snprintf(msg, sizeof msg, "%s: %s", lead, why);
    if (!still_scanning(rg, id))
        return;
    if (json_is_true(json_object_get(row, "uploaded")) && path)
        jq_rm_tree(path);
    store_dataset_finish(rg->st, id, NULL, msg);
    log_msg(LOG_INFO, 0, "dataset %lld: %s", (long long)id, msg);
}

/* Scans dataset it->id (extracting its archive first) and ends its row ready or failed;
 * a stopped scan leaves the row scanning, a stopped extraction ends it failed (the archive
 * is gone). */
static void scan_one(registrar *rg, const reg_item *it)
{
    json_t *row = NULL;
    ds_options o = {0};
    dataset *ds = NULL;
    char why[512] = "";
    const char *lead = "the dataset cannot be used";
    scan_ctx c = {rg, it->id};
    if (store_dataset_get(rg->st, it->id, &row))
        return;
    int rc = row_options(row, &o);
    if (rc == 0 && json_is_true(json_object_get(row, "uploaded"))) {
        rc = prepare_upload(rg, it, o.path, &lead, why, sizeof why);
        if (rc) {
            fail_row(rg, it->id, row, o.path, lead, why);
            json_decref(row);
            return;
        }
    }
    if (rc == 0) {
        o.stop = &rg->stop;
        o.progress = on_progress;
        o.progress_ctx = &c;
        rc = dataset_open(&ds, &o, why, sizeof why);
    }
    if (rc == -ECANCELED) {
        log_msg(LOG_INFO, 0, "dataset %lld: scan stopped; it is scanned again at the next start",
                (long long)it->id);
    } else if (rc) {
        fail_row(rg, it->id, row, o.path, lead, why[0] ? why : strerror(-rc));
    } else {
        json_t *info = jq_dataset_info_json(dataset_info(ds));
        if (info)
            store_dataset_finish(rg->st, it->id, info, NULL);
        else
            store_dataset_finish(rg->st, it->id, NULL, "out of memory");
        json_decref(info);
        log_msg(LOG_INFO, 0, "registered dataset %lld (%d classes)", (long long)it->id,
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
        reg_item it = rg->q[0];
        rg->current = it.id;
        memmove(rg->q, rg->q + 1, (size_t)--rg->qn * sizeof *rg->q);
        pthread_mutex_unlock(&rg->mu);
        scan_one(rg, &it);
        free(it.archive);
        pthread_mutex_lock(&rg->mu);
        rg->current = 0;
        pthread_cond_broadcast(&rg->cv);
    }
    pthread_mutex_unlock(&rg->mu);
    return NULL;
}

int registrar_add(registrar *rg, int64_t id)
{
    return registrar_add_upload(rg, id, NULL, 0);
}

int registrar_add_upload(registrar *rg, int64_t id, const char *archive, int64_t max_bytes)
{
    int rc = 0;
    char *copy = archive ? strdup(archive) : NULL;
    if (archive && !copy)
        return -ENOMEM;
    pthread_mutex_lock(&rg->mu);
    if (rg->stop) {
        rc = -ESHUTDOWN;
    } else if (rg->qn == rg->qcap) {
        int cap = rg->qcap ? 2 * rg->qcap : 16;
        reg_item *q = realloc(rg->q, (size_t)cap * sizeof *q);
        if (q) {
            rg->q = q;
            rg->qcap = cap;
        } else {
            rc = -ENOMEM;
        }
    }
    if (rc == 0) {
        rg->q[rg->qn++] = (reg_item){id, copy, max_bytes};
        pthread_cond_broadcast(&rg->cv);
    }
    pthread_mutex_unlock(&rg->mu);
    if (rc)
        free(copy);
    return rc;
}

static int queued(const registrar *rg, int64_t id)
{
    if (rg->current == id)
        return 1;
    for (int i = 0; i < rg->qn; i++)
        if (rg->q[i].id == id)
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
    /* Uploads never started: their rows are failed at the next start, and tmp/ is
     * cleaned then too; their archives go now. */
    for (int i = 0; i < rg->qn; i++) {
        if (rg->q[i].archive)
            unlink(rg->q[i].archive);
        free(rg->q[i].archive);
    }
    free(rg->q);
    free(rg);
}
