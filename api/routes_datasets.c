/* routes_datasets.c: /datasets: register a folder on the server's disk (under a dataset
 * root) or an uploaded tar, scanned synchronously with the engine's dataset_open so that a
 * dataset that cannot train is refused at once; list, read, delete. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "routes.h"
#include "store.h"
#include "upload.h"

#define INFO_MAX_UNREADABLE 1000

static const char *const format_names[] = {"folders", "csv", "idx", NULL};

typedef struct dataset_body {
    const char *name, *path, *csv;
    int format;
    double valid_pct;
    int64_t seed;
    int has_valid_pct, has_seed;
} dataset_body;

static const spec_field dataset_spec[] = {
    {.name = "name", .type = SPEC_STRING, .required = 1, .min = 1, .max = 128,
     .offset = offsetof(dataset_body, name)},
    {.name = "path", .type = SPEC_STRING, .required = 1, .min = 1, .max = PATH_MAX - 1,
     .offset = offsetof(dataset_body, path)},
    {.name = "format", .type = SPEC_ENUM, .required = 1, .values = format_names,
     .offset = offsetof(dataset_body, format)},
    {.name = "valid_pct", .type = SPEC_NUMBER, .min = 0, .max = 0.9,
     .offset = offsetof(dataset_body, valid_pct),
     .present = SPEC_PRESENT(dataset_body, has_valid_pct)},
    {.name = "csv", .type = SPEC_STRING, .min = 1, .max = 1024,
     .offset = offsetof(dataset_body, csv)},
    {.name = "seed", .type = SPEC_INT, .min = 0, .max = 9007199254740991.0,
     .offset = offsetof(dataset_body, seed), .present = SPEC_PRESENT(dataset_body, has_seed)},
    {0},
};

/* The scan as the API shows it. */
static json_t *info_json(const ds_info *in)
{
    json_t *classes = json_array(), *unreadable = json_array(), *out;
    for (int i = 0; classes && i < in->n_classes; i++)
        json_array_append_new(classes, json_string(in->classes[i]));
    for (int i = 0; unreadable && i < in->n_unreadable && i < INFO_MAX_UNREADABLE; i++)
        json_array_append_new(unreadable,
                              json_pack("{s:s, s:s}", "file", in->unreadable[i].file, "reason",
                                        in->unreadable[i].reason));
    out = json_pack("{s:o, s:i, s:b, s:{s:i, s:i, s:i}, s:i, s:{s:[i,i], s:[i,i], s:[i,i]}, "
                    "s:[f,f,f], s:[f,f,f], s:i, s:o}",
                    "classes", classes, "n_classes", in->n_classes, "multi_label",
                    in->multi_label, "counts", "train", in->count[SPLIT_TRAIN], "valid",
                    in->count[SPLIT_VALID], "test", in->count[SPLIT_TEST], "channels",
                    in->channels, "image_size", "min", in->min_w, in->min_h, "median",
                    in->median_w, in->median_h, "max", in->max_w, in->max_h, "mean",
                    (double)in->mean[0], (double)in->mean[1], (double)in->mean[2], "std",
                    (double)in->std[0], (double)in->std[1], (double)in->std[2],
                    "n_unreadable", in->n_unreadable, "unreadable", unreadable);
    return out;
}

static int under_root(const api_server *s, const char *real)
{
    for (int i = 0; i < s->n_dataset_roots; i++) {
        size_t n = strlen(s->dataset_roots[i]);
        if (strncmp(real, s->dataset_roots[i], n) == 0 &&
            (real[n] == '/' || real[n] == '\0' || (n == 1 && s->dataset_roots[i][0] == '/')))
            return 1;
    }
    return 0;
}

/* Scans root with the engine; on success *info is the scan as the API shows it. On a
 * refusal answers 400 blaming field ("path" for a registration, NULL for an upload). */
static int scan(api_req *r, const dataset_body *b, const char *root, const char *field,
                json_t **info)
{
    ds_options o = {.format = (ds_format)b->format,
                    .path = root,
                    .valid_pct = b->has_valid_pct ? b->valid_pct : -1,
                    .csv = b->csv,
                    .seed = (uint64_t)b->seed};
    dataset *ds = NULL;
    char err[512] = "";
    int rc = dataset_open(&ds, &o, err, sizeof err);

    *info = NULL;
    if (rc) {
        reply_problem(r, 400, PROBLEM_INVALID, field, "the dataset cannot be used: %s",
                      err[0] ? err : strerror(-rc));
        return rc;
    }
    *info = info_json(dataset_info(ds));
    dataset_destroy(ds);
    if (!*info) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* Registers the dataset at path with its scan and answers 201. */
static int register_scanned(api_req *r, const dataset_body *b, const char *path, json_t *info,
                            int uploaded)
{
    json_t *options = json_object(), *out = NULL;
    char loc[96];
    int64_t id;
    int rc;

    if (!options) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
        return -ENOMEM;
    }
    if (b->has_valid_pct)
        json_object_set_new(options, "valid_pct", json_real(b->valid_pct));
    if (b->csv)
        json_object_set_new(options, "csv", json_string(b->csv));
    if (b->has_seed)
        json_object_set_new(options, "seed", json_integer((json_int_t)b->seed));
    {
        store_dataset_new d = {.name = b->name, .path = path, .format = format_names[b->format],
                               .options = options, .info = info, .uploaded = uploaded};
        rc = store_dataset_create(r->srv->store, &d, &id);
    }
    if (rc == -EEXIST) {
        reply_problem(r, 409, PROBLEM_CONFLICT, "name", "a dataset named \"%s\" exists",
                      b->name);
        goto out;
    }
    if (rc) {
        reply_store_error(r, rc, "dataset");
        goto out;
    }
    rc = store_dataset_get(r->srv->store, id, &out);
    if (rc) {
        reply_store_error(r, rc, "dataset");
        goto out;
    }
    snprintf(loc, sizeof loc, API_PREFIX "/datasets/%lld", (long long)id);
    reply_created(r, 201, loc, out);
out:
    json_decref(options);
    return rc;
}

static int name_taken(api_req *r, const char *name)
{
    int64_t id;
    if (store_dataset_find(r->srv->store, name, &id) == 0) {
        reply_problem(r, 409, PROBLEM_CONFLICT, "name", "a dataset named \"%s\" exists", name);
        return 1;
    }
    return 0;
}

static void register_path(api_req *r)
{
    dataset_body b = {0};
    char err[256];
    char *real;

    if (req_parse(r, dataset_spec, &b))
        return;
    if (upload_name_check(b.name, err, sizeof err)) {
        reply_problem(r, 400, PROBLEM_INVALID, "name", "%s", err);
        return;
    }
    if (b.path[0] != '/') {
        reply_problem(r, 400, PROBLEM_INVALID, "path", "path must be absolute");
        return;
    }
    real = realpath(b.path, NULL);
    if (!real) {
        reply_problem(r, 400, PROBLEM_INVALID, "path", "%s: %s", b.path, strerror(errno));
        return;
    }
    if (!under_root(r->srv, real)) {
        reply_problem(r, 400, PROBLEM_INVALID, "path",
                      "%s is not under a --dataset-root folder", b.path);
        free(real);
        return;
    }
    if (!name_taken(r, b.name)) {
        json_t *info = NULL;
        if (scan(r, &b, real, "path", &info) == 0)
            register_scanned(r, &b, real, info, 0);
        json_decref(info);
    }
    free(real);
}

/* The folder an upload's data lives in: the extraction folder, or its only entry when that
 * is a folder (an archive made with `tar czf x.tgz mydata/`). */
static void upload_root(const char *stage, char *out, size_t len)
{
    DIR *d = opendir(stage);
    struct dirent *de;
    char only[NAME_MAX + 1] = "";
    int n = 0, only_dir = 0;

    snprintf(out, len, "%s", stage);
    if (!d)
        return;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        snprintf(only, sizeof only, "%s", de->d_name);
        only_dir = de->d_type == DT_DIR;
    }
    closedir(d);
    if (n == 1 && only_dir && snprintf(out, len, "%s/%s", stage, only) >= (int)len)
        snprintf(out, len, "%s", stage);
}

static void register_upload(api_req *r)
{
    dataset_body b = {0};
    const char *fmt = req_query(r, "format");
    const char *vp = req_query(r, "valid_pct");
    char err[512], stage[PATH_MAX], root[PATH_MAX], dest[PATH_MAX + 16], dir[PATH_MAX];
    json_t *info = NULL;
    int rc;

    b.name = req_query(r, "name");
    if (upload_name_check(b.name, err, sizeof err)) {
        reply_problem(r, 400, PROBLEM_INVALID, "name", "%s", err);
        return;
    }
    b.format = -1;
    for (int i = 0; format_names[i]; i++)
        if (strcmp(fmt ? fmt : "folders", format_names[i]) == 0)
            b.format = i;
    if (b.format < 0) {
        reply_problem(r, 400, PROBLEM_INVALID, "format", "format must be folders, csv or idx");
        return;
    }
    if (req_query_int(r, "seed", 0, INT64_MAX / 2, 0, &b.seed))
        return;
    b.has_seed = req_query(r, "seed") != NULL;
    if (vp) {
        char *end;
        b.valid_pct = strtod(vp, &end);
        if (!*vp || *end || !(b.valid_pct >= 0 && b.valid_pct <= 0.9)) {
            reply_problem(r, 400, PROBLEM_INVALID, "valid_pct",
                          "valid_pct must be a number between 0 and 0.9");
            return;
        }
        b.has_valid_pct = 1;
    }
    b.csv = req_query(r, "csv");
    if (name_taken(r, b.name))
        return;
    snprintf(dir, sizeof dir, "%s/datasets", r->srv->data_dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "cannot create %s: %s", dir,
                      strerror(errno));
        return;
    }
    snprintf(dest, sizeof dest, "%s/%s", dir, b.name);
    if (access(dest, F_OK) == 0) {
        reply_problem(r, 409, PROBLEM_CONFLICT, "name", "%s already exists", dest);
        return;
    }
    snprintf(stage, sizeof stage, "%s/tmp/extract-XXXXXX", r->srv->data_dir);
    if (!mkdtemp(stage)) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "cannot create a folder under %s/tmp: %s",
                      r->srv->data_dir, strerror(errno));
        return;
    }
    rc = upload_extract_tar(r->tmp_path, stage, 4 * r->srv->max_upload, err, sizeof err);
    if (rc) {
        if (rc == -EINVAL || rc == -EFBIG)
            reply_problem(r, rc == -EFBIG ? 413 : 400,
                          rc == -EFBIG ? PROBLEM_LIMIT : PROBLEM_INVALID, NULL,
                          "the archive was refused: %s", err);
        else
            reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "cannot extract the archive: %s",
                          err);
        goto out_stage;
    }
    upload_root(stage, root, sizeof root);
    /* Scanned in place first, then moved: a folder under datasets/ is always complete. */
    if (scan(r, &b, root, NULL, &info))
        goto out_stage;
    if (rename(root, dest) != 0) {
        if (errno == EEXIST || errno == ENOTEMPTY)
            reply_problem(r, 409, PROBLEM_CONFLICT, "name", "%s already exists", dest);
        else
            reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "cannot move the dataset to %s: %s",
                          dest, strerror(errno));
        goto out_stage;
    }
    if (register_scanned(r, &b, dest, info, 1) != 0)
        upload_remove_tree(dest);
out_stage:
    upload_remove_tree(stage);
    json_decref(info);
}

void route_dataset_create(api_req *r)
{
    if (req_need_backend(r))
        return;
    if (r->kind == BODY_FILE)
        register_upload(r);
    else
        register_path(r);
}

void route_dataset_list(api_req *r)
{
    reply_store_page(r, store_dataset_list, "datasets");
}

void route_dataset_get(api_req *r)
{
    reply_store_row(r, store_dataset_get, "dataset");
}

void route_dataset_delete(api_req *r)
{
    char *path = NULL, what[48];
    int rc;
    if (req_need_backend(r))
        return;
    snprintf(what, sizeof what, "dataset %lld", (long long)r->ids[0]);
    rc = store_dataset_delete(r->srv->store, r->ids[0], &path);
    if (rc == -EBUSY) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL, "%s is used by runs; delete them first",
                      what);
        return;
    }
    if (rc) {
        reply_store_error(r, rc, what);
        return;
    }
    if (path)
        upload_remove_tree(path);
    free(path);
    reply_response(r, 204, MHD_create_response_from_buffer(0, (void *)"",
                                                            MHD_RESPMEM_PERSISTENT));
}
