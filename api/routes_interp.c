/* routes_interp.c: a run's interpretation (summary, top losses paged and filtered by cell of
 * the confusion matrix) and the images behind it: thumbnails of validation items and the
 * augmentation preview of a training item. Items are named by index, never by path. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_backend.h"
#include "learner.h"
#include "routes.h"
#include "store.h"

#define TOP_LOSSES_MAX 500
#define THUMB_DEFAULT 128
#define THUMB_MAX 512

/* The run's stored interpretation (*out), or a 404 that says why there is none. */
static int interp_get(api_req *r, int with_items, json_t **out)
{
    json_t *run = NULL;
    char what[48];
    snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
    int rc = store_run_get(r->srv->store, r->ids[0], &run);
    json_decref(run);
    if (rc) {
        reply_store_error(r, rc, what);
        return rc;
    }
    rc = store_interpretation_get(r->srv->store, r->ids[0], with_items, out);
    if (rc == -ENOENT)
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "run %lld has no interpretation yet: "
                      "it is computed after a fit or TTA", (long long)r->ids[0]);
    else if (rc)
        reply_store_error(r, rc, what);
    return rc;
}

void route_run_interpretation(api_req *r)
{
    json_t *out = NULL;
    if (req_need_backend(r) || interp_get(r, 0, &out))
        return;
    reply_json(r, 200, out);
}

/* A class filter from the query: -1 when absent; a 400 naming it when not a class. */
static int class_filter(api_req *r, const char *key, int nc, int multi, int64_t *v)
{
    if (req_query_int(r, key, 0, nc > 0 ? nc - 1 : 0, -1, v))
        return -EINVAL;
    if (*v >= 0 && multi) {
        reply_problem(r, 400, PROBLEM_INVALID, key, "%s: a multi-label run has no confusion "
                      "matrix to filter by", key);
        return -EINVAL;
    }
    return 0;
}

static json_t *item_out(api_req *r, json_t *it, json_t *classes)
{
    json_t *o = json_deep_copy(it);
    char url[128];
    snprintf(url, sizeof url, API_PREFIX "/runs/%lld/thumbnail?item=%lld",
             (long long)r->ids[0], (long long)json_integer_value(json_object_get(it, "item")));
    json_object_set_new(o, "thumbnail", json_string(url));
    json_t *a = json_object_get(it, "actual"), *p = json_object_get(it, "predicted");
    if (json_is_integer(a))
        json_object_set(o, "actual_class", json_array_get(classes, json_integer_value(a)));
    if (json_is_integer(p))
        json_object_set(o, "predicted_class", json_array_get(classes, json_integer_value(p)));
    return o;
}

void route_run_top_losses(api_req *r)
{
    const char *token = req_query(r, "page_token");
    json_t *in = NULL;
    int64_t actual, predicted, lim;
    if (req_need_backend(r) || req_query_int(r, "limit", 1, TOP_LOSSES_MAX, 50, &lim) ||
        interp_get(r, 1, &in))
        return;
    json_t *sum = json_object_get(in, "summary"), *items = json_object_get(in, "items");
    json_t *classes = json_object_get(sum, "classes");
    int nc = (int)json_array_size(classes), multi = json_is_true(json_object_get(sum,
                                                                                  "multi_label"));
    if (class_filter(r, "actual", nc, multi, &actual) ||
        class_filter(r, "predicted", nc, multi, &predicted))
        goto out_free;
    long long skip = 0;
    if (token) {
        char *end;
        errno = 0;
        skip = strtoll(token, &end, 10);
        if (!*token || *end || errno || skip < 0) {
            reply_problem(r, 400, PROBLEM_INVALID, "page_token", "page_token is not valid");
            goto out_free;
        }
    }
    json_t *page = json_array();
    long long total = 0;
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        if ((actual >= 0 && json_integer_value(json_object_get(it, "actual")) != actual) ||
            (predicted >= 0 && json_integer_value(json_object_get(it, "predicted")) != predicted))
            continue;
        if (total >= skip && total < skip + lim)
            json_array_append_new(page, item_out(r, it, classes));
        total++;
    }
    json_t *out = json_pack("{so sI sO sO}", "items", page, "total", (json_int_t)total,
                            "classes", classes, "weights", json_object_get(in, "weights"));
    if (out && skip + lim < total) {
        char next[32];
        snprintf(next, sizeof next, "%lld", skip + lim);
        json_object_set_new(out, "next_page_token", json_string(next));
    }
    reply_json(r, 200, out);
out_free:
    json_decref(in);
}

/* Renders q through the backend and answers the PNG, or the problem its error means. */
static void reply_png(api_req *r, const api_png_req *q)
{
    uint8_t *png = NULL;
    size_t len = 0;
    char err[256] = "";
    if (req_need_backend(r))
        return;
    if (!r->srv->backend.run_png) {
        reply_problem(r, 503, PROBLEM_INTERNAL, NULL, "this server renders no images");
        return;
    }
    int rc = r->srv->backend.run_png(r->srv->backend.ctx, r->ids[0], q, &png, &len, err,
                                     sizeof err);
    if (rc == -ERANGE) {
        reply_problem(r, 400, PROBLEM_INVALID, strncmp(err, "n:", 2) == 0 ? "n" : "item",
                      "%s", err);
    } else if (rc == -ENOENT) {
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "run %lld does not exist",
                      (long long)r->ids[0]);
    } else if (rc == -ESTALE || (rc && rc != -ENOMEM && err[0])) {
        /* the dataset is gone, or its file changed since it was registered */
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL, "run %lld: %s", (long long)r->ids[0],
                      err);
    } else if (rc) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "%s", err[0] ? err : strerror(-rc));
    } else {
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(len, png, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(png);
            reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
            return;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "image/png");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        reply_response(r, 200, resp);
    }
}

void route_run_thumbnail(api_req *r)
{
    int64_t item, size;
    if (!req_query(r, "item")) {
        reply_problem(r, 400, PROBLEM_INVALID, "item", "item: the index of a validation "
                      "item is required");
        return;
    }
    if (req_query_int(r, "item", 0, INT32_MAX, 0, &item) ||
        req_query_int(r, "size", 16, THUMB_MAX, THUMB_DEFAULT, &size))
        return;
    api_png_req q = {.item = (int)item, .max_side = (int)size};
    reply_png(r, &q);
}

void route_run_augmentations(api_req *r)
{
    int64_t item, n, seed;
    if (req_query_int(r, "item", 0, INT32_MAX, 0, &item) ||
        req_query_int(r, "n", 1, LEARNER_AUG_PREVIEW_MAX, 8, &n) ||
        req_query_int(r, "seed", 0, INT64_MAX, 0, &seed))
        return;
    api_png_req q = {.augment = 1, .item = (int)item, .n = (int)n, .seed = (uint64_t)seed};
    reply_png(r, &q);
}
