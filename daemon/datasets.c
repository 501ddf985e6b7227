/* datasets.c: registering a dataset folder: the checks made at once, the row, and the wait
 * for the registrar's scan. */
#define _GNU_SOURCE
#include "jobs_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json_text.h"
#include "log.h"
#include "upload.h"

/* At most this many unreadable files are listed in a dataset's row (all are counted). */
#define INFO_MAX_UNREADABLE 1000
/* jobs_register_dataset's wait: as long as the scan takes (a year, in effect). */
#define REGISTER_WAIT_ALL_S (365.0 * 86400)

json_t *jq_dataset_info_json(const ds_info *in)
{
    json_t *classes = json_array(), *unreadable = json_array();
    for (int i = 0; classes && i < in->n_classes; i++)
        json_array_append_new(classes, json_text(in->classes[i]));
    for (int i = 0; unreadable && i < in->n_unreadable && i < INFO_MAX_UNREADABLE; i++)
        json_array_append_new(unreadable,
                              json_pack("{s:o, s:o}", "file", json_text(in->unreadable[i].file),
                                        "reason", json_text(in->unreadable[i].reason)));
    return json_pack("{s:o, s:i, s:b, s:{s:i, s:i, s:i}, s:i, s:{s:[i,i], s:[i,i], s:[i,i]}, "
                     "s:[f,f,f], s:[f,f,f], s:i, s:o}",
                     "classes", classes, "n_classes", in->n_classes, "multi_label",
                     in->multi_label, "counts", "train", in->count[SPLIT_TRAIN], "valid",
                     in->count[SPLIT_VALID], "test", in->count[SPLIT_TEST], "channels",
                     in->channels, "image_size", "min", in->min_w, in->min_h, "median",
                     in->median_w, in->median_h, "max", in->max_w, in->max_h, "mean",
                     (double)in->mean[0], (double)in->mean[1], (double)in->mean[2], "std",
                     (double)in->std[0], (double)in->std[1], (double)in->std[2],
                     "n_unreadable", in->n_unreadable, "unreadable", unreadable);
}

/* Fails with field and message. */
static int refuse(int rc, const char **field, const char *which, char *err, size_t errlen,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int refuse(int rc, const char **field, const char *which, char *err, size_t errlen,
                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (field)
        *field = which;
    return rc;
}

/* A scan that ended within the wait: a failed one is the registration's error (its row
 * is removed, so that the name can be used again); a ready one is 0. */
static int scan_outcome(jobs *jq, int64_t id, const char **field, char *err, size_t errlen)
{
    json_t *row = NULL;
    int rc = store_dataset_get(jq->st, id, &row);
    if (rc)
        return refuse(rc, field, NULL, err, errlen, "cannot read the dataset: %s",
                      store_errmsg());
    const char *state = json_string_value(json_object_get(row, "state"));
    if (state && !strcmp(state, "failed")) {
        refuse(-EINVAL, field, "path", err, errlen, "%s",
               json_string_value(json_object_get(row, "error")));
        rc = -EINVAL;
        store_dataset_delete(jq->st, id, NULL);
    }
    json_decref(row);
    return rc;
}

/* What one registration stores and queues: a folder, or (archive set) an upload whose
 * archive is extracted into that folder first. */
typedef struct reg_input {
    const char *name, *path, *format, *csv;
    double valid_pct;
    uint64_t seed;
    int uploaded;
    const char *archive;
    int64_t max_bytes;
} reg_input;

/* An upload's labels file cannot be resolved yet (the archive is not extracted): it must
 * be a relative path without "..", which the extraction, refusing links, keeps inside. */
static int csv_name_inside(const char *csv)
{
    if (!csv || csv[0] == '/')
        return csv == NULL;
    for (const char *seg = csv;; seg++) {
        const char *end = strchrnul(seg, '/');
        if (end - seg == 2 && seg[0] == '.' && seg[1] == '.')
            return 0;
        if (!*end)
            return 1;
        seg = end;
    }
}

/* The labels file is read and quoted in errors like any other: a "../" or a link must not
 * lead it out of the dataset folder r. A missing default labels.csv is the scan's error to
 * report. */
static int csv_inside(const reg_input *in, const char *r)
{
    if (in->archive)
        return csv_name_inside(in->csv);
    char *cp = NULL, *creal = NULL;
    if (asprintf(&cp, "%s/%s", r, in->csv ? in->csv : "labels.csv") >= 0)
        creal = realpath(cp, NULL);
    int e = errno, inside = creal ? path_is_under(creal, r) : !in->csv && e == ENOENT;
    free(cp);
    free(creal);
    return inside;
}

/* The checks made before the row exists: name, format, path under a root, labels file
 * inside the folder. *real (malloc'd) is the resolved path. */
static int check_input(jobs *jq, const reg_input *in, char **real, const char **field,
                       char *err, size_t errlen)
{
    ds_format f;
    *real = NULL;
    if (!in->name || !*in->name)
        return refuse(-EINVAL, field, "name", err, errlen, "name is required");
    if (jq_ds_format_of(in->format, &f))
        return refuse(-EINVAL, field, "format", err, errlen,
                      "format must be folders, csv or idx (got '%s')",
                      in->format ? in->format : "");
    char *r = in->path ? realpath(in->path, NULL) : NULL;
    if (!r)
        return refuse(-EINVAL, field, "path", err, errlen, "%s: %s",
                      in->path ? in->path : "(none)", strerror(errno));
    int ok = 0;
    if (in->uploaded) {
        char *dd = realpath(jq->data_dir, NULL);
        ok = dd && path_is_under(r, dd);
        free(dd);
    } else {
        for (int i = 0; i < jq->n_roots && !ok; i++)
            ok = path_is_under(r, jq->roots[i]);
    }
    if (!ok) {
        free(r);
        return refuse(-EACCES, field, "path", err, errlen,
                      "%s is not under a --dataset-root folder", in->path);
    }
    if (f == DS_CSV && !csv_inside(in, r)) {
        free(r);
        return refuse(-EINVAL, field, in->csv ? "csv" : "path", err, errlen,
                      "csv: %s is not a file inside the dataset folder",
                      in->csv ? in->csv : "labels.csv");
    }
    *real = r;
    return 0;
}

/* Stores the row "scanning", queues its extraction and scan, and waits at most wait_s. */
static int register_wait(jobs *jq, const reg_input *in, double wait_s, int64_t *id,
                         const char **field, char *err, size_t errlen)
{
    char *real = NULL;
    if (field)
        *field = NULL;
    if (!jq->reg)
        return refuse(-ESHUTDOWN, field, NULL, err, errlen, "the daemon is not running");
    int rc = check_input(jq, in, &real, field, err, errlen);
    if (rc)
        return rc;
    json_t *opts = json_pack("{sI}", "seed", (json_int_t)in->seed);
    if (opts && in->valid_pct >= 0)
        json_object_set_new(opts, "valid_pct", json_real(in->valid_pct));
    if (opts && in->csv)
        json_object_set_new(opts, "csv", json_text(in->csv));
    if (!opts) {
        free(real);
        return refuse(-ENOMEM, field, NULL, err, errlen, "out of memory");
    }
    store_dataset_new d = {in->name, real, in->format, opts, NULL, in->uploaded, 1};
    rc = store_dataset_create(jq->st, &d, id);
    json_decref(opts);
    free(real);
    if (rc == -EEXIST)
        return refuse(rc, field, "name", err, errlen, "a dataset named \"%s\" exists",
                      in->name);
    if (rc)
        return refuse(rc, field, NULL, err, errlen, "cannot store the dataset: %s",
                      store_errmsg());
    rc = registrar_add_upload(jq->reg, *id, in->archive, in->max_bytes);
    if (rc) {
        store_dataset_delete(jq->st, *id, NULL);
        return refuse(rc, field, NULL, err, errlen, "cannot queue the scan: %s",
                      strerror(-rc));
    }
    log_msg(LOG_INFO, 0, "dataset %lld '%s' (%s): %s %s", (long long)*id, in->name,
            in->format, in->archive ? "extracting an upload into" : "scanning", in->path);
    rc = registrar_wait(jq->reg, *id, wait_s);
    if (rc == -ETIMEDOUT)
        return 0;
    return scan_outcome(jq, *id, field, err, errlen);
}

int jobs_register_dataset_wait(jobs *jq, const char *name, const char *path,
                               const char *format, double valid_pct, const char *csv,
                               uint64_t seed, int uploaded, double wait_s, int64_t *id,
                               const char **field, char *err, size_t errlen)
{
    reg_input in = {name, path, format, csv, valid_pct, seed, uploaded, NULL, 0};
    return register_wait(jq, &in, wait_s, id, field, err, errlen);
}

int jobs_register_upload_wait(jobs *jq, const api_upload_reg *u, double wait_s, int64_t *id,
                              const char **field, char *err, size_t errlen)
{
    reg_input in = {u->name, u->path, u->format, u->csv, u->valid_pct, u->seed, 1,
                    u->archive, u->max_bytes};
    int rc = register_wait(jq, &in, wait_s, id, field, err, errlen);
    /* A failed registration has no use for either (the registrar, when it had them, is done
     * with them: the wait ended with the scan). */
    if (rc) {
        unlink(u->archive);
        upload_remove_tree(u->path);
    }
    return rc;
}

int jobs_register_dataset(jobs *jq, const char *name, const char *path, const char *format,
                          double valid_pct, const char *csv, uint64_t seed, int uploaded,
                          int64_t *id, const char **field, char *err, size_t errlen)
{
    int rc = jobs_register_dataset_wait(jq, name, path, format, valid_pct, csv, seed, uploaded,
                                        REGISTER_WAIT_ALL_S, id, field, err, errlen);
    if (rc == 0 && registrar_wait(jq->reg, *id, 0) == -ETIMEDOUT)
        return refuse(-ESHUTDOWN, field, NULL, err, errlen,
                      "the daemon stopped before the scan ended");
    return rc;
}
