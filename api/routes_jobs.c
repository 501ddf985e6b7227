/* routes_jobs.c: /jobs (list, read, cancel, resume, predictions.csv), /lr-finds/{id}, and
 * /models (import pretrained safetensors weights, list, read, delete). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_backend.h"
#include "learner.h"
#include "routes.h"
#include "safetensors.h"
#include "store.h"
#include "upload.h"

int req_page(api_req *r, int *limit, const char **token)
{
    int64_t l;
    if (req_query_int(r, "limit", 1, STORE_PAGE_MAX, STORE_PAGE_DEFAULT, &l))
        return -EINVAL;
    *limit = (int)l;
    *token = req_query(r, "page_token");
    if (*token && strlen(*token) > 256) {
        reply_problem(r, 400, PROBLEM_INVALID, "page_token", "page_token is not valid");
        return -EINVAL;
    }
    return 0;
}

static void what_job(char *buf, size_t len, int64_t id)
{
    snprintf(buf, len, "job %lld", (long long)id);
}

void route_job_list(api_req *r)
{
    static const char *const states[] = {"queued", "running", "succeeded", "failed",
                                         "cancelled", "interrupted"};
    int limit;
    const char *token, *state = req_query(r, "state");
    int64_t run;
    store_page pg;
    json_t *out = NULL;
    int rc, ok = 0;

    if (req_need_backend(r) || req_page(r, &limit, &token) ||
        req_query_int(r, "run", 1, INT64_MAX / 2, 0, &run))
        return;
    if (state) {
        for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
            ok |= strcmp(state, states[i]) == 0;
        if (!ok) {
            reply_problem(r, 400, PROBLEM_INVALID, "state",
                          "state must be queued, running, succeeded, failed, cancelled or "
                          "interrupted");
            return;
        }
    }
    pg.limit = limit;
    pg.page_token = token;
    rc = store_job_list(r->srv->store, run, state, &pg, &out);
    if (rc == -EINVAL) {
        reply_problem(r, 400, PROBLEM_INVALID, "page_token", "page_token is not valid");
        return;
    }
    if (rc) {
        reply_store_error(r, rc, "jobs");
        return;
    }
    reply_json(r, 200, out);
}

void route_job_get(api_req *r)
{
    reply_store_row(r, store_job_get, "job");
}

void route_job_cancel(api_req *r)
{
    json_t *out = NULL;
    char what[48];
    int rc;
    if (req_need_backend(r))
        return;
    what_job(what, sizeof what, r->ids[0]);
    rc = r->srv->backend.cancel(r->srv->backend.ctx, r->ids[0]);
    if (rc) {
        reply_store_error(r, rc, what);
        return;
    }
    rc = store_job_get(r->srv->store, r->ids[0], &out);
    if (rc) {
        reply_store_error(r, rc, what);
        return;
    }
    reply_json(r, 202, out);
}

void route_job_resume(api_req *r)
{
    json_t *out = NULL;
    int64_t new_id;
    char what[48], loc[96];
    int rc;
    if (req_need_backend(r))
        return;
    what_job(what, sizeof what, r->ids[0]);
    rc = r->srv->backend.resume(r->srv->backend.ctx, r->ids[0], &new_id);
    if (rc == -EINVAL) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL,
                      "job %lld is not an interrupted fit or recipe", (long long)r->ids[0]);
        return;
    }
    if (rc == -EALREADY) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL, "job %lld was already resumed by job %lld",
                      (long long)r->ids[0], (long long)new_id);
        return;
    }
    if (rc) {
        reply_store_error(r, rc, what);
        return;
    }
    rc = store_job_get(r->srv->store, new_id, &out);
    if (rc) {
        reply_store_error(r, rc, "job");
        return;
    }
    snprintf(loc, sizeof loc, API_PREFIX "/jobs/%lld", (long long)new_id);
    reply_created(r, 202, loc, out);
}

void route_job_predictions(api_req *r)
{
    char *path = NULL, what[48], disp[96];
    json_t *job = NULL;
    int rc;
    if (req_need_backend(r))
        return;
    what_job(what, sizeof what, r->ids[0]);
    rc = store_job_get(r->srv->store, r->ids[0], &job);
    json_decref(job);
    if (rc) {
        reply_store_error(r, rc, what);
        return;
    }
    rc = store_prediction_path(r->srv->store, r->ids[0], &path);
    if (rc == -ENOENT) {
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "job %lld has no predictions file",
                      (long long)r->ids[0]);
        return;
    }
    if (rc) {
        reply_store_error(r, rc, "predictions");
        return;
    }
    snprintf(disp, sizeof disp, "attachment; filename=\"predictions-%lld.csv\"",
             (long long)r->ids[0]);
    reply_file(r, path, "text/csv; charset=utf-8", disp);
    free(path);
}

void route_lr_find_get(api_req *r)
{
    reply_store_row(r, store_lr_find_get, "lr-find");
}

/* ---- models ------------------------------------------------------------------------------ */

void route_model_create(api_req *r)
{
    static const char *const archs[] = {"resnet18", "resnet34", "resnet_small"};
    const char *name = req_query(r, "name"), *arch = req_query(r, "arch");
    char dir[PATH_MAX], dest[PATH_MAX], err[256], loc[96];
    st_file f = {0};
    json_t *info = NULL, *model = NULL;
    int64_t id;
    int rc, ok = 0;

    if (req_need_backend(r))
        return;
    if (upload_name_check(name, err, sizeof err)) {
        reply_problem(r, 400, PROBLEM_INVALID, "name", "%s", err);
        return;
    }
    for (size_t i = 0; arch && i < sizeof archs / sizeof archs[0]; i++)
        ok |= strcmp(arch, archs[i]) == 0;
    if (!ok) {
        reply_problem(r, 400, PROBLEM_INVALID, "arch",
                      "arch must be resnet18, resnet34 or resnet_small");
        return;
    }
    rc = st_read_file(&f, r->tmp_path, err, sizeof err);
    if (rc) {
        reply_problem(r, 400, PROBLEM_INVALID, NULL, "not a usable safetensors file: %s", err);
        return;
    }
    /* A file a run could not start from is refused now, not when its first job fails. */
    rc = learner_check_pretrained(arch, &f, err, sizeof err);
    if (rc) {
        st_free(&f);
        reply_problem(r, 400, PROBLEM_INVALID, NULL, "the uploaded file is not a %s body: %s",
                      arch, err);
        return;
    }
    info = json_pack("{s:i}", "tensors", f.n);
    st_free(&f);
    snprintf(dir, sizeof dir, "%s/models", r->srv->data_dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "cannot create %s: %s", dir,
                      strerror(errno));
        goto out;
    }
    if (snprintf(dest, sizeof dest, "%s/%s.safetensors", dir, name) >= (int)sizeof dest) {
        reply_problem(r, 400, PROBLEM_INVALID, "name", "name is too long for %s", dir);
        goto out;
    }
    /* link() fails on an existing name, so two uploads of one name cannot overwrite. */
    if (link(r->tmp_path, dest) != 0) {
        if (errno == EEXIST)
            reply_problem(r, 409, PROBLEM_CONFLICT, "name", "a model named \"%s\" exists",
                          name);
        else
            reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "cannot store %s: %s", dest,
                          strerror(errno));
        goto out;
    }
    rc = store_model_create(r->srv->store, name, arch, dest, (int64_t)r->len, info, &id);
    if (rc) {
        unlink(dest);
        if (rc == -EEXIST)
            reply_problem(r, 409, PROBLEM_CONFLICT, "name", "a model named \"%s\" exists",
                          name);
        else
            reply_store_error(r, rc, "model");
        goto out;
    }
    rc = store_model_get(r->srv->store, id, &model);
    if (rc) {
        reply_store_error(r, rc, "model");
        goto out;
    }
    snprintf(loc, sizeof loc, API_PREFIX "/models/%lld", (long long)id);
    reply_created(r, 201, loc, model);
out:
    json_decref(info);
}

void route_model_list(api_req *r)
{
    reply_store_page(r, store_model_list, "models");
}

void route_model_get(api_req *r)
{
    reply_store_row(r, store_model_get, "model");
}

void route_model_delete(api_req *r)
{
    reply_store_delete(r, store_model_delete, "model", unlink);
}
