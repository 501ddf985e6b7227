/* routes.h: the handlers of the route table (routes.c), grouped by resource, and the
 * helpers they share. Each answers through the reply_* helpers of api_internal.h. */
#ifndef SGDRD_API_ROUTES_H
#define SGDRD_API_ROUTES_H

#include "api_internal.h"
#include "store.h"

/* Answers the problem that matches a store.h / api_backend.h error code; what names the
 * resource ("run 3"). */
void reply_store_error(api_req *r, int rc, const char *what);
/* 0 when the server has a store and a job queue; else answers 503 and returns nonzero. */
int req_need_backend(api_req *r);
/* Reads limit and page_token into pg (answering 400 on a bad one). */
int req_page(api_req *r, int *limit, const char **token);

typedef int (*store_list_fn)(store *st, const store_page *pg, json_t **out);
typedef int (*store_get_fn)(store *st, int64_t id, json_t **out);
/* GET of a collection: one page from list (limit, page_token from the query), 400 naming
 * page_token when the store refuses it; what names the collection ("runs"). */
void reply_store_page(api_req *r, store_list_fn list, const char *what);
/* GET of one row by the path's id; kind names it in a 404 ("run" gives "run 3"). */
void reply_store_row(api_req *r, store_get_fn get, const char *kind);
typedef int (*store_delete_fn)(store *st, int64_t id, char **path_out);
/* DELETE of a row that owns files on disk: the row goes first (its transaction), then
 * remove_files on the path the store gave back, then 204. A row that runs still use is a
 * 409 saying so; kind names it as above. */
void reply_store_delete(api_req *r, store_delete_fn del, const char *kind,
                        int (*remove_files)(const char *path));

/* Handlers. Each reads r (ids from the path, parsed JSON body or streamed body, query) and
 * answers through reply_*: the resource (200/201/202 + Location), or a problem naming the
 * field at fault (4xx) or the server's failure (5xx). They borrow everything in r; what a
 * store or queue call returns is theirs to free. None of them blocks on training. */

/* /datasets (routes_datasets.c) */
void route_dataset_create(api_req *r);
void route_dataset_delete(api_req *r);
void route_dataset_get(api_req *r);
void route_dataset_list(api_req *r);
/* /jobs, /lr-finds/{id}, /models (routes_jobs.c) */
void route_job_cancel(api_req *r);
void route_job_get(api_req *r);
void route_job_list(api_req *r);
void route_job_predictions(api_req *r);
void route_job_resume(api_req *r);
void route_lr_find_get(api_req *r);
void route_model_create(api_req *r);
void route_model_delete(api_req *r);
void route_model_get(api_req *r);
void route_model_list(api_req *r);
/* /session, the dashboard's sign-in (routes_session.c) */
void route_session_create(api_req *r);
void route_session_delete(api_req *r);
void route_session_get(api_req *r);
/* /runs and everything under a run (routes_runs.c) */
void route_run_create(api_req *r);
void route_run_delete(api_req *r);
void route_run_epochs(api_req *r);
void route_run_events(api_req *r);
void route_run_fit(api_req *r);
void route_run_freeze(api_req *r);
void route_run_get(api_req *r);
void route_run_list(api_req *r);
void route_run_lr_find(api_req *r);
void route_run_lr_finds(api_req *r);
void route_run_metrics(api_req *r);
void route_run_precompute(api_req *r);
void route_run_predict(api_req *r);
void route_run_predict_test(api_req *r);
void route_run_recipe(api_req *r);
void route_run_resize(api_req *r);
void route_run_snapshots(api_req *r);
void route_run_tta(api_req *r);
void route_run_unfreeze(api_req *r);
void route_run_weights(api_req *r);
/* /runs/{id}/interpretation, thumbnails and the augmentation preview (routes_interp.c) */
void route_run_augmentations(api_req *r);
void route_run_interpretation(api_req *r);
void route_run_thumbnail(api_req *r);
void route_run_top_losses(api_req *r);

#endif
