/* routes.c: the one static route table (method + path pattern -> handler, body kind), and
 * the handlers that need neither store nor queue: health and the OpenAPI document. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "conn.h"
#include "blas.h"
#include "api_backend.h"
#include "ops/precision.h"
#include "routes.h"
#include "sse.h"

#define V API_PREFIX
#define PAGED "limit page_token"
#define UPLOAD "name format valid_pct seed csv"

const api_route api_routes[] = {
    {"GET", V "/health", route_health, BODY_NONE, NULL},
    {"GET", V "/openapi.json", route_openapi, BODY_NONE, NULL},

    {"GET", V "/session", route_session_get, BODY_NONE, NULL},
    {"POST", V "/session", route_session_create, BODY_JSON, NULL},
    {"DELETE", V "/session", route_session_delete, BODY_NONE, NULL},

    {"POST", V "/datasets", route_dataset_create, BODY_DATASET, UPLOAD},
    {"GET", V "/datasets", route_dataset_list, BODY_NONE, PAGED},
    {"GET", V "/datasets/{id}", route_dataset_get, BODY_NONE, NULL},
    {"DELETE", V "/datasets/{id}", route_dataset_delete, BODY_NONE, NULL},

    {"POST", V "/runs", route_run_create, BODY_JSON, NULL},
    {"GET", V "/runs", route_run_list, BODY_NONE, PAGED},
    {"GET", V "/runs/{id}", route_run_get, BODY_NONE, NULL},
    {"DELETE", V "/runs/{id}", route_run_delete, BODY_NONE, NULL},
    {"POST", V "/runs/{id}/lr-find", route_run_lr_find, BODY_JSON, NULL},
    {"POST", V "/runs/{id}/fit", route_run_fit, BODY_JSON, NULL},
    {"POST", V "/runs/{id}/freeze", route_run_freeze, BODY_JSON, NULL},
    {"POST", V "/runs/{id}/unfreeze", route_run_unfreeze, BODY_JSON, NULL},
    {"POST", V "/runs/{id}/precompute", route_run_precompute, BODY_JSON, NULL},
    {"POST", V "/runs/{id}/resize", route_run_resize, BODY_JSON, NULL},
    {"POST", V "/runs/{id}/tta", route_run_tta, BODY_JSON, NULL},
    {"POST", V "/runs/{id}/recipe", route_run_recipe, BODY_JSON, NULL},
    {"POST", V "/runs/{id}/predict", route_run_predict, BODY_IMAGE, "tta"},
    {"POST", V "/runs/{id}/predict-test", route_run_predict_test, BODY_JSON, NULL},
    {"GET", V "/runs/{id}/lr-finds", route_run_lr_finds, BODY_NONE, PAGED},
    {"GET", V "/runs/{id}/metrics", route_run_metrics, BODY_NONE,
     "key after_step before_step limit max_points"},
    {"GET", V "/runs/{id}/epochs", route_run_epochs, BODY_NONE, NULL},
    {"GET", V "/runs/{id}/snapshots", route_run_snapshots, BODY_NONE, NULL},
    {"GET", V "/runs/{id}/weights", route_run_weights, BODY_NONE, NULL},
    {"GET", V "/runs/{id}/events", route_run_events, BODY_NONE, "last_event_id"},
    {"GET", V "/runs/{id}/interpretation", route_run_interpretation, BODY_NONE, NULL},
    {"GET", V "/runs/{id}/interpretation/top-losses", route_run_top_losses, BODY_NONE,
     "limit page_token actual predicted"},
    {"GET", V "/runs/{id}/thumbnail", route_run_thumbnail, BODY_NONE, "item size"},
    {"GET", V "/runs/{id}/augmentations", route_run_augmentations, BODY_NONE, "item n seed"},

    {"GET", V "/jobs", route_job_list, BODY_NONE, "limit page_token state run"},
    {"GET", V "/jobs/{id}", route_job_get, BODY_NONE, NULL},
    {"POST", V "/jobs/{id}/cancel", route_job_cancel, BODY_NONE, NULL},
    {"POST", V "/jobs/{id}/resume", route_job_resume, BODY_NONE, NULL},
    {"GET", V "/jobs/{id}/predictions.csv", route_job_predictions, BODY_NONE, NULL},

    {"GET", V "/lr-finds/{id}", route_lr_find_get, BODY_NONE, NULL},

    {"POST", V "/models", route_model_create, BODY_FILE, "name arch"},
    {"GET", V "/models", route_model_list, BODY_NONE, PAGED},
    {"GET", V "/models/{id}", route_model_get, BODY_NONE, NULL},
    {"DELETE", V "/models/{id}", route_model_delete, BODY_NONE, NULL},

    {"GET", "/metrics", route_prom_metrics, BODY_NONE, NULL},

    {NULL, NULL, NULL, BODY_NONE, NULL},
};

void reply_store_error(api_req *r, int rc, const char *what)
{
    switch (rc) {
    case -ENOENT:
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "%s does not exist", what);
        return;
    case -EEXIST:
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL, "%s already exists", what);
        return;
    case -EBUSY:
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL, "%s is in use", what);
        return;
    case -EALREADY:
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL, "%s has already finished", what);
        return;
    case -EINVAL:
        reply_problem(r, 400, PROBLEM_INVALID, NULL, "invalid argument for %s", what);
        return;
    case -E2BIG:
        reply_problem(r, 400, PROBLEM_INVALID, "workers",
                      "workers is above the daemon's --max-workers");
        return;
    case -ESHUTDOWN:
        reply_problem(r, 503, PROBLEM_LIMIT, NULL, "the daemon is stopping");
        return;
    case -ENOMEM:
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
        return;
    case -ENOSPC:
        reply_problem(r, 507, PROBLEM_INTERNAL, NULL,
                      "%s: the disk of the data folder is full; nothing was changed", what);
        return;
    default:
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "%s: %s (%s)", what, strerror(-rc),
                      store_errmsg());
    }
}

int req_need_backend(api_req *r)
{
    if (r->srv->store && r->srv->backend.submit)
        return 0;
    reply_problem(r, 503, PROBLEM_INTERNAL, NULL, "the daemon has no store or job queue");
    return -ENODEV;
}

void reply_store_page(api_req *r, store_list_fn list, const char *what)
{
    int limit;
    const char *token;
    json_t *out = NULL;
    if (req_need_backend(r) || req_page(r, &limit, &token))
        return;
    store_page pg = {.limit = limit, .page_token = token};
    int rc = list(r->srv->store, &pg, &out);
    if (rc == -EINVAL)
        reply_problem(r, 400, PROBLEM_INVALID, "page_token", "page_token is not valid");
    else if (rc)
        reply_store_error(r, rc, what);
    else
        reply_json(r, 200, out);
}

void reply_store_row(api_req *r, store_get_fn get, const char *kind)
{
    json_t *out = NULL;
    char what[64];
    if (req_need_backend(r))
        return;
    /* Rows are read from committed data only, so an answer stays right until the next
     * commit: a client polling a job's progress costs one read per commit. */
    uint64_t gen = store_generation(r->srv->store);
    snprintf(what, sizeof what, "%s %lld", kind, (long long)r->ids[0]);
    if (reply_cached(r, what, gen))
        return;
    int rc = get(r->srv->store, r->ids[0], &out);
    if (rc) {
        reply_store_error(r, rc, what);
        return;
    }
    reply_json_caching(r, what, gen, out);
}

void reply_store_delete(api_req *r, store_delete_fn del, const char *kind,
                        int (*remove_files)(const char *path))
{
    char *path = NULL, what[64];
    int rc;
    if (req_need_backend(r))
        return;
    snprintf(what, sizeof what, "%s %lld", kind, (long long)r->ids[0]);
    rc = del(r->srv->store, r->ids[0], &path);
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
        remove_files(path);
    free(path);
    reply_response(r, 204, MHD_create_response_from_buffer(0, (void *)"",
                                                            MHD_RESPMEM_PERSISTENT));
}

void route_health(api_req *r)
{
    const api_backend *be = &r->srv->backend;
    json_t *body = json_pack("{s:s, s:s, s:f, s:{s:s, s:i}, s:i, s:I, s:i}", "status", "ok",
                             "version", r->srv->version, "uptime_s",
                             clock_mono_s() - r->srv->started, "blas", "core",
                             blas_core_name() ? blas_core_name() : "unknown", "threads",
                             blas_threads(), "queue_length",
                             be->queue_length ? be->queue_length(be->ctx) : 0,
                             "running_job", (json_int_t)(be->running ? be->running(be->ctx) : 0),
                             "event_streams", sse_hub_streams(r->srv->hub));
    /* kernels: what a bf16 run started now would run on (null where bf16 is refused). */
    int bf16 = precision_bf16_supported();
    if (body)
        json_object_set_new(body, "bf16",
                            json_pack("{s:b, s:s, s:s?}", "supported", bf16, "onednn_isa",
                                      precision_onednn_isa(), "kernels",
                                      bf16 ? bf16_kernels_name(bf16_kernels_choice()) : NULL));
    conn_stats cs;
    conn_table_stats(r->srv->conns, &cs);
    if (body)
        json_object_set_new(body, "connections",
                            json_pack("{s:i, s:i, s:I, s:I, s:I}", "open", cs.open, "waiting",
                                      cs.waiting, "timed_out", (json_int_t)cs.timed_out,
                                      "evicted", (json_int_t)cs.evicted, "refused",
                                      (json_int_t)cs.refused));
    if (body && be->world)
        json_object_set_new(body, "world", be->world(be->ctx));
    reply_json(r, 200, body);
}

void route_openapi(api_req *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        api_openapi_json_len, (void *)api_openapi_json, MHD_RESPMEM_PERSISTENT);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    reply_response(r, 200, resp);
}
