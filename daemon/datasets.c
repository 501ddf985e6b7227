/* datasets.c: registering a dataset folder from the daemon itself (the --demo seeding). */
#define _GNU_SOURCE
#include "jobs_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_text.h"
#include "log.h"

/* At most this many unreadable files are listed in a dataset's row (all are counted). */
#define INFO_MAX_UNREADABLE 1000

/* The scan as the API shows it (GET /datasets/{id} "info" in api/openapi.json); NULL when out of
 * memory. */
static json_t *info_json(const ds_info *in)
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

int jobs_register_dataset(jobs *jq, const char *name, const char *path, const char *format,
                          double valid_pct, const char *csv, uint64_t seed, int uploaded,
                          int64_t *id, const char **field, char *err, size_t errlen)
{
    ds_options o = {0};
    if (field)
        *field = NULL;
    if (!name || !*name)
        return refuse(-EINVAL, field, "name", err, errlen, "name is required");
    if (jq_ds_format_of(format, &o.format))
        return refuse(-EINVAL, field, "format", err, errlen,
                      "format must be folders, csv or idx (got '%s')", format ? format : "");
    char *real = path ? realpath(path, NULL) : NULL;
    if (!real)
        return refuse(-EINVAL, field, "path", err, errlen, "%s: %s", path ? path : "(none)",
                      strerror(errno));
    int ok = 0;
    if (uploaded) {
        char *dd = realpath(jq->data_dir, NULL);
        ok = dd && path_is_under(real, dd);
        free(dd);
    } else {
        for (int i = 0; i < jq->n_roots && !ok; i++)
            ok = path_is_under(real, jq->roots[i]);
    }
    if (!ok) {
        free(real);
        return refuse(-EACCES, field, "path", err, errlen,
                      "%s is not under a --dataset-root folder", path);
    }
    /* The labels file is read and quoted in errors like any other: a "../" or a link must
     * not lead it out of the dataset folder. A missing default labels.csv is the scan's
     * error to report. */
    if (o.format == DS_CSV) {
        char *cp = NULL, *creal = NULL;
        if (asprintf(&cp, "%s/%s", real, csv ? csv : "labels.csv") >= 0)
            creal = realpath(cp, NULL);
        int e = errno, inside = creal ? path_is_under(creal, real) : !csv && e == ENOENT;
        free(cp);
        free(creal);
        if (!inside) {
            free(real);
            return refuse(-EINVAL, field, csv ? "csv" : "path", err, errlen,
                          "csv: %s is not a file inside the dataset folder",
                          csv ? csv : "labels.csv");
        }
    }
    o.path = real;
    o.valid_pct = valid_pct;
    o.csv = csv;
    o.seed = seed;
    dataset *ds = NULL;
    char why[512] = "";
    int rc = dataset_open(&ds, &o, why, sizeof why);
    if (rc) {
        free(real);
        return refuse(rc == -ENOMEM ? rc : -EINVAL, field, "path", err, errlen,
                      "the dataset cannot be used: %s", why[0] ? why : strerror(-rc));
    }
    json_t *info = info_json(dataset_info(ds));
    json_t *opts = json_pack("{sI}", "seed", (json_int_t)seed);
    if (opts && valid_pct >= 0)
        json_object_set_new(opts, "valid_pct", json_real(valid_pct));
    if (opts && csv)
        json_object_set_new(opts, "csv", json_text(csv));
    if (!info || !opts) {
        rc = refuse(-ENOMEM, field, NULL, err, errlen, "out of memory");
        goto out_free;
    }
    store_dataset_new d = {name, real, format, opts, info, uploaded, 0};
    rc = store_dataset_create(jq->st, &d, id);
    if (rc == -EEXIST)
        refuse(rc, field, "name", err, errlen, "a dataset named \"%s\" exists", name);
    else if (rc)
        refuse(rc, field, NULL, err, errlen, "cannot store the dataset: %s", store_errmsg());
    else
        log_msg(LOG_INFO, 0, "registered dataset %lld '%s' (%s, %d classes)", (long long)*id,
                name, format, dataset_info(ds)->n_classes);
out_free:
    json_decref(info);
    json_decref(opts);
    dataset_destroy(ds);
    free(real);
    return rc;
}
