/* datasets.c: registering a dataset folder from the daemon itself (the --demo seeding). */
#define _GNU_SOURCE
#include "jobs_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int jq_path_under(const char *path, const char *root)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    return !strncmp(path, root, n) && (path[n] == '/' || path[n] == 0);
}

static json_t *info_json(const ds_info *in)
{
    json_t *classes = json_array(), *unr = json_array();
    for (int i = 0; i < in->n_classes; i++)
        json_array_append_new(classes, json_string(in->classes[i]));
    for (int i = 0; i < in->n_unreadable && i < 100; i++)
        json_array_append_new(unr, json_pack("{ss ss}", "file", in->unreadable[i].file,
                                             "reason", in->unreadable[i].reason));
    return json_pack("{so si sb s{si si si} si s{s[ii] s[ii] s[ii]} s[fff] s[fff] si so}",
                     "classes", classes, "n_classes", in->n_classes, "multi_label",
                     in->multi_label, "counts", "train", in->count[SPLIT_TRAIN], "valid",
                     in->count[SPLIT_VALID], "test", in->count[SPLIT_TEST], "channels",
                     in->channels, "image_size", "min", in->min_w, in->min_h, "median",
                     in->median_w, in->median_h, "max", in->max_w, in->max_h, "mean",
                     in->mean[0], in->mean[1], in->mean[2], "std", in->std[0], in->std[1],
                     in->std[2], "n_unreadable", in->n_unreadable, "unreadable", unr);
}

int jobs_register_dataset(jobs *jq, const char *name, const char *path, const char *format,
                          double valid_pct, const char *csv, uint64_t seed, int uploaded,
                          int64_t *id, char *err, size_t errlen)
{
    ds_options o = {0};
    if (!name || !*name) {
        snprintf(err, errlen, "name: required");
        return -EINVAL;
    }
    if (jq_ds_format_of(format, &o.format)) {
        snprintf(err, errlen, "format: '%s' is not folders, csv or idx",
                 format ? format : "");
        return -EINVAL;
    }
    char *real = path ? realpath(path, NULL) : NULL;
    if (!real) {
        snprintf(err, errlen, "path: %s: %s", path ? path : "(none)", strerror(errno));
        return -EINVAL;
    }
    int ok = 0;
    if (uploaded) {
        char *dd = realpath(jq->data_dir, NULL);
        ok = dd && jq_path_under(real, dd);
        free(dd);
    } else {
        for (int i = 0; i < jq->n_roots && !ok; i++)
            ok = jq_path_under(real, jq->roots[i]);
    }
    if (!ok) {
        snprintf(err, errlen, "path: %s is not under a --dataset-root", path);
        free(real);
        return -EACCES;
    }
    o.path = real;
    o.valid_pct = valid_pct;
    o.csv = csv;
    o.seed = seed;
    dataset *ds = NULL;
    int rc = dataset_open(&ds, &o, err, errlen);
    if (rc) {
        free(real);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    json_t *info = info_json(dataset_info(ds));
    json_t *opts = json_pack("{sI}", "seed", (json_int_t)seed);
    if (valid_pct >= 0)
        json_object_set_new(opts, "valid_pct", json_real(valid_pct));
    if (csv)
        json_object_set_new(opts, "csv", json_string(csv));
    store_dataset_new d = {name, real, format, opts, info, uploaded};
    rc = store_dataset_create(jq->st, &d, id);
    if (rc == -EEXIST)
        snprintf(err, errlen, "name: a dataset named '%s' exists", name);
    else if (rc)
        snprintf(err, errlen, "cannot store the dataset: %s", store_errmsg());
    else
        log_msg(LOG_INFO, 0, "registered dataset %lld '%s' (%s, %d classes)", (long long)*id,
                name, format, dataset_info(ds)->n_classes);
    json_decref(info);
    json_decref(opts);
    dataset_destroy(ds);
    free(real);
    return rc;
}
