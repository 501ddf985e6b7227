/* routes_datasets.c: /datasets: register a folder on the server's disk (under a dataset
 * root) or an uploaded tar through the backend's registration: the archive's extraction
 * and the scan run off the request thread; one that ends within its short wait answers 201
 * with the ready row, or the 400 of a dataset that cannot train (an archive entry refused
 * included); a longer one answers 202 with the row "scanning", and GET shows how it ends;
 * list, read, delete. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_backend.h"
#include "routes.h"
#include "store.h"
#include "upload.h"

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

/* Answers a registration: 201 with the ready row, 202 with one still scanning, or the
 * problem. An upload's scan failure blames no field (the archive is the body). Returns rc. */
static int reply_registration(api_req *r, int rc, int64_t id, const char *field,
                              const char *err, int uploaded)
{
    char loc[96];
    json_t *out = NULL;
    if (rc == -EEXIST) {
        reply_problem(r, 409, PROBLEM_CONFLICT, "name", "%s", err);
        return rc;
    }
    if (rc == -EINVAL || rc == -EACCES) {
        reply_problem(r, 400, PROBLEM_INVALID,
                      uploaded && field && !strcmp(field, "path") ? NULL : field, "%s", err);
        return rc;
    }
    if (rc == -ESHUTDOWN) {
        reply_store_error(r, rc, "dataset");
        return rc;
    }
    if (rc) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "%s", err);
        return rc;
    }
    rc = store_dataset_get(r->srv->store, id, &out);
    if (rc) {
        reply_store_error(r, rc, "dataset");
        return rc;
    }
    snprintf(loc, sizeof loc, API_PREFIX "/datasets/%lld", (long long)id);
    reply_created(r, strcmp(json_string_value(json_object_get(out, "state")), "scanning") ? 201
                                                                                         : 202,
                  loc, out);
    return 0;
}

/* Registers the folder at path through the job queue's registration (the one --demo uses
 * too: root check, row, scan). */
static void register_folder(api_req *r, const dataset_body *b, const char *path)
{
    const char *field = NULL;
    char err[768] = "";
    int64_t id = 0;
    const api_backend *be = &r->srv->backend;
    int rc = be->register_dataset(be->ctx, b->name, path, format_names[b->format],
                                  b->has_valid_pct ? b->valid_pct : -1, b->csv,
                                  (uint64_t)b->seed, 0, &id, &field, err, sizeof err);
    reply_registration(r, rc, id, field, err, 0);
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
    if (!name_taken(r, b.name))
        register_folder(r, &b, b.path);
}

static void register_upload(api_req *r)
{
    dataset_body b = {0};
    const char *fmt = req_query(r, "format");
    const char *vp = req_query(r, "valid_pct");
    char err[768], dest[PATH_MAX + 16], dir[PATH_MAX];
    const char *field = NULL;
    int64_t id = 0;
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
    /* The folder is made here, empty, so that the name is held on disk too; the archive
     * is extracted into it off this thread (see register_upload in api_backend.h). */
    if (mkdir(dest, 0755) != 0) {
        if (errno == EEXIST)
            reply_problem(r, 409, PROBLEM_CONFLICT, "name", "%s already exists", dest);
        else
            reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "cannot create %s: %s", dest,
                          strerror(errno));
        return;
    }
    api_upload_reg u = {.name = b.name, .format = format_names[b.format], .csv = b.csv,
                        .path = dest, .archive = r->tmp_path,
                        .valid_pct = b.has_valid_pct ? b.valid_pct : -1,
                        .seed = (uint64_t)b.seed, .max_bytes = 4 * r->srv->max_upload};
    const api_backend *be = &r->srv->backend;
    rc = be->register_upload(be->ctx, &u, &id, &field, err, sizeof err);
    r->tmp_path[0] = '\0'; /* the backend's now */
    reply_registration(r, rc, id, field, err, 1);
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
    reply_store_delete(r, store_dataset_delete, "dataset", upload_remove_tree);
}
