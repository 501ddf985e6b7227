/* store.h: sgdrd's SQLite store: the only place in the project that speaks SQL.
 *
 * Model of use:
 * - One database file (WAL mode, foreign keys on, busy_timeout set) opened once per process
 *   with store_open; the schema is embedded in the binary and migrated on open
 *   (PRAGMA user_version).
 * - Writes go through ONE writer connection, serialised by a mutex inside the store, each
 *   as one `BEGIN IMMEDIATE` transaction. Synchronous writes (every *_create, *_add,
 *   job transitions, deletes) are committed before the function returns 0: an API answer
 *   of 201/202 given after such a call is durable ("nothing acknowledged is lost").
 * - High-rate points (store_metrics_push, store_lr_find_point_push, store_job_progress)
 *   are only buffered in memory; a flusher thread inside the store commits the buffer
 *   every 250 ms or when it holds STORE_FLUSH_POINTS points, and every synchronous write
 *   flushes it first so rows stay in order. A kill -9 loses at most that buffer.
 * - Reads use a small pool of read-only connections and are safe from any thread
 *   concurrently with the writer.
 * - Every commit that added events (metric steps, sweep points, epochs, job changes)
 *   calls the subscribers (store_subscribe) with those events, in commit order, so SSE
 *   streams can forward them; the same events are kept in the `events` table so a client
 *   can resume from its Last-Event-ID (store_events_after).
 *
 * JSON: read functions return jansson objects (new references: the caller json_decref's
 * them) shaped as the REST API answers them, so the API can send them as they are. Shapes
 * are documented per function. Writes take plain C values; json_t arguments are borrowed.
 *
 * Errors: 0 on success or a negative errno-style code:
 *   -ENOENT   no such row (or a referenced row is missing)
 *   -EEXIST   a unique name is already taken
 *   -EBUSY    the row is in use (a dataset with runs, a run with queued/running jobs)
 *   -EINVAL   bad argument (bad page token, unknown kind/state, out-of-range limit)
 *   -EALREADY a job transition from a state that does not allow it
 *   -EIO      SQLite failed; store_errmsg() says how
 *   -ENOMEM   out of memory
 * A failed write leaves the database as it was before the call.
 */
#ifndef SGDRD_STORE_H
#define SGDRD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct store store;

#define STORE_FLUSH_POINTS 2000   /* buffered points that force a flush */
#define STORE_FLUSH_MS 250        /* the flusher's period */
#define STORE_PAGE_MAX 1000       /* largest `limit` of a list */
#define STORE_PAGE_DEFAULT 50     /* `limit` when 0 is passed */
#define STORE_METRICS_MAX 100000  /* largest `limit` of store_metrics_get */

typedef struct store_options {
    int readers;          /* read-only connections in the pool; 0 means 4 */
    int busy_timeout_ms;  /* 0 means 5000 */
    int flush_ms;         /* flusher period; 0 means STORE_FLUSH_MS */
    int flush_points;     /* 0 means STORE_FLUSH_POINTS */
    int sync_normal;      /* PRAGMA synchronous=NORMAL: survives kill -9 but not power
                           * loss; default FULL (fsync every commit) */
} store_options;

/* Opens (creating when missing) the database at path, migrates it to the current schema
 * and starts the flusher thread. o may be NULL for defaults. On failure *out = NULL and err
 * says why (file, SQLite message). */
int store_open(store **out, const char *path, const store_options *o, char *err,
               size_t errlen);
/* Flushes buffered points, stops the flusher and closes every connection. NULL is fine. */
void store_close(store *st);
/* Commits the buffered points now. */
int store_flush(store *st);

/* How many write transactions have committed so far. A read started after this returns
 * sees every commit it counts, so a result read then and kept with this number stays
 * valid while the number is unchanged (the API caches metric pages by it). */
uint64_t store_generation(store *st);
/* The schema version this binary writes (the number of sections of schema.sql). */
int store_schema_current(void);
/* The last SQLite error seen by this thread's store call (static buffer per thread). */
const char *store_errmsg(void);

/* ---- live events ------------------------------------------------------------------------ */

typedef struct store_event {
    int64_t id;          /* monotonic across the whole database: the SSE `id:` */
    int64_t run_id;
    int64_t job_id;      /* 0 when none */
    const char *kind;    /* "metric", "sweep_point", "epoch", "job", "lr_find", "note" */
    const char *data;    /* compact JSON object text */
    double time;
} store_event;

/* Called after each commit that added events, with those events, in id order, on the
 * committing thread. Must be quick and must not call store write functions (it may read).
 * The array and its strings are valid only during the call. */
typedef void (*store_listener)(void *ctx, const store_event *evs, int n);

/* Registers a listener; *handle identifies it for store_unsubscribe. */
int store_subscribe(store *st, store_listener fn, void *ctx, int *handle);
/* After this returns the listener is not running and will not be called again. */
void store_unsubscribe(store *st, int handle);

/* Events of a run with id > after_id, oldest first, at most limit (1..STORE_PAGE_MAX).
 * *out: [{"id","run","job","kind","data":{...},"time"}]. For SSE resume. */
int store_events_after(store *st, int64_t run_id, int64_t after_id, int limit, json_t **out);

/* Adds a free-text event (a recipe decision and its reason) to a run's stream, committed
 * with the next flush. */
int store_note_push(store *st, int64_t run_id, int64_t job_id, const char *what,
                    const char *why);

/* ---- paging ----------------------------------------------------------------------------- */

/* Lists are newest first. limit 0 means STORE_PAGE_DEFAULT, above STORE_PAGE_MAX is
 * -EINVAL. page_token NULL or "" starts at the top; otherwise it must be a token a previous
 * page returned (-EINVAL if malformed). List results have the shape
 *   {"items":[...], "next_page_token":"..."}     (next_page_token omitted on the last page) */
typedef struct store_page {
    int limit;
    const char *page_token;
} store_page;

/* ---- datasets --------------------------------------------------------------------------- */

typedef struct store_dataset_new {
    const char *name;
    const char *path;       /* absolute path of the dataset root */
    const char *format;     /* "folders", "csv", "idx" */
    json_t *options;        /* {"valid_pct","csv","seed"} as registered, or NULL */
    json_t *info;           /* the scan: classes, counts, sizes, unreadable; or NULL */
    int uploaded;           /* the files live under the data dir (deleted with it) */
    int scanning;           /* stored as "scanning" (info comes with store_dataset_finish),
                             * else "ready" */
} store_dataset_new;

/* -EEXIST when the name is taken, -EINVAL for an unknown format. */
int store_dataset_create(store *st, const store_dataset_new *d, int64_t *id);
/* *out: {"id","name","path","format","options":{...},"info":{...},"uploaded",
 *        "created_at","state","progress","error","runs":n} */
int store_dataset_get(store *st, int64_t id, json_t **out);
/* A dataset by name or by decimal id ("12"); -ENOENT if neither matches. */
int store_dataset_find(store *st, const char *name_or_id, int64_t *id);
/* items as store_dataset_get without "info" (lists stay small). */
int store_dataset_list(store *st, const store_page *pg, json_t **out);
/* -EBUSY while runs use it. *path_out (malloc'd, may be NULL) gets the path if it was
 * uploaded, so the caller can remove the files after the row is gone. */
int store_dataset_delete(store *st, int64_t id, char **uploaded_path_out);
/* A scanning dataset's files seen so far; -ENOENT (row untouched) when it is not scanning. */
int store_dataset_progress(store *st, int64_t id, int64_t files_seen);
/* Ends a scan: "ready" with info, or "failed" with error (exactly one of the two; both
 * borrowed); -ENOENT (row untouched) when it is not scanning. */
int store_dataset_finish(store *st, int64_t id, json_t *info, const char *error);
/* The ids of the rows left "scanning" (*ids malloc'd, *n of them), oldest first. */
int store_dataset_scanning(store *st, int64_t **ids, int *n);

/* ---- models (imported pretrained weights) ------------------------------------------------ */

/* -EEXIST when the name is taken. info: e.g. {"tensors":n}, may be NULL. */
int store_model_create(store *st, const char *name, const char *arch, const char *path,
                       int64_t bytes, json_t *info, int64_t *id);
/* *out: {"id","name","arch","path","bytes","info":{...},"created_at"} */
int store_model_get(store *st, int64_t id, json_t **out);
int store_model_list(store *st, const store_page *pg, json_t **out);
/* -EBUSY while runs use it; *path_out as for datasets (always set on success). */
int store_model_delete(store *st, int64_t id, char **path_out);

/* ---- runs ------------------------------------------------------------------------------- */

/* config: the validated POST /runs body (sz, bs, tfms, max_zoom, pad, width, precompute, ps,
 * xtra_fc, multi_label, seed, ...), stored as given. -ENOENT if the dataset or model is missing. */
int store_run_create(store *st, int64_t dataset_id, int64_t model_id /* 0: none */,
                     const char *arch, json_t *config, int64_t *id);
/* *out: {"id","dataset":id,"model":id|null,"arch","config":{...},"state":{...},
 *        "created_at","current_job":{job}|null,"best":{"valid_loss","accuracy","epoch"}|null,
 *        "epochs":n}
 * "state" is what the daemon last wrote with store_run_set_state (freeze_to, n_groups,
 * precompute, sz, step, ...). current_job: the running job, else the oldest queued. */
int store_run_get(store *st, int64_t id, json_t **out);
/* items: {"id","dataset","model","arch","config","state","created_at"} */
int store_run_list(store *st, const store_page *pg, json_t **out);
/* Replaces the run's learner state object. */
int store_run_set_state(store *st, int64_t id, json_t *state);
/* -EBUSY while it has a queued or running job. Cascades to its jobs, sweeps, metrics,
 * epochs, snapshots, predictions and events. */
int store_run_delete(store *st, int64_t id);

/* ---- jobs ------------------------------------------------------------------------------- */

/* kind: lr_find, fit, freeze, unfreeze, precompute, resize, tta, recipe, predict_test.
 * Inserts a queued job (committed) and a "job" event. resumed_from: 0 or the interrupted
 * job this one continues. -ENOENT without the run, -EINVAL for an unknown kind. */
int store_job_create(store *st, int64_t run_id, const char *kind, json_t *params,
                     int64_t resumed_from, int64_t *id);
/* queued -> running (sets started_at). -EALREADY if not queued. */
int store_job_start(store *st, int64_t id);
/* Buffered: the latest progress (0..1) and ETA (seconds, negative: unknown) of a running
 * job, written with the next flush together with a "job" event. */
int store_job_progress(store *st, int64_t id, double fraction, double eta_s);
/* running -> succeeded|failed|cancelled|interrupted, or queued -> cancelled|failed.
 * error: NULL or a one-line reason; result: NULL or a JSON object (TTA metrics, ...).
 * On success progress is set to 1. -EALREADY if the job is already finished. */
int store_job_finish(store *st, int64_t id, const char *state, const char *error,
                     json_t *result);
/* At start-up: every running job becomes interrupted (the process died under it).
 * *n (may be NULL) = how many. */
int store_jobs_interrupt_running(store *st, int *n);
/* Ids of queued jobs, oldest first (malloc'd array, caller frees; NULL when *n == 0). */
int store_jobs_queued(store *st, int64_t **ids, int *n);

/* Ids of interrupted jobs that no later job resumes (resumed_from), oldest first. */
int store_jobs_resumable(store *st, int64_t **ids, int *n);

typedef struct store_job_row {
    int64_t id, run_id, resumed_from;
    int64_t resumed_by; /* the first job that resumes this one, or 0 */
    char kind[16];
    char state[16];
    json_t *params;   /* new reference; store_job_row_clear drops it */
} store_job_row;
/* Typed read for the daemon. */
int store_job_row_get(store *st, int64_t id, store_job_row *out);
void store_job_row_clear(store_job_row *r);

/* *out: {"id","run","kind","state","params":{...},"progress","eta_s"|null,"error"|null,
 *        "result"|null,"created_at","started_at"|null,"finished_at"|null,
 *        "resumed_from"|null,"lr_find":id (the job's newest sweep, if any),
 *        "predictions":true (when a predictions file exists)} */
int store_job_get(store *st, int64_t id, json_t **out);
/* run_id 0: all runs. state NULL: any. */
int store_job_list(store *st, int64_t run_id, const char *state, const store_page *pg,
                   json_t **out);

/* ---- LR sweeps -------------------------------------------------------------------------- */

int store_lr_find_create(store *st, int64_t run_id, int64_t job_id, double start_lr,
                         double end_lr, int num_it, int64_t *id);
/* Buffered, like metrics; also a "sweep_point" event. */
int store_lr_find_point_push(store *st, int64_t lr_find_id, int64_t run_id, int64_t job_id,
                             int iter, double lr, double loss, double smooth_loss);
/* suggestions: {"min_div10":{"lr","reason"},"steep":...,"valley":...,"slide":...} or NULL
 * (a sweep run inside the recipe, whose suggestions the engine does not report). end_lr > 0
 * and num_it > 0 replace the values given at creation (the LR and iteration count the sweep
 * actually reached). Flushes the points first. */
int store_lr_find_finish(store *st, int64_t id, json_t *suggestions, int stopped_early,
                         double end_lr, int num_it);
/* *out: {"id","run","job","start_lr","end_lr","num_it","stopped_early","created_at",
 *        "finished_at"|null,"suggestions":{...}|null,
 *        "points":[{"iter","lr","loss","smooth_loss"}]} */
int store_lr_find_get(store *st, int64_t id, json_t **out);
/* items as above without "points". */
int store_lr_find_list(store *st, int64_t run_id, const store_page *pg, json_t **out);

/* ---- per-iteration metrics ------------------------------------------------------------- */

/* Buffered: n values of one step (keys like "train_loss", "smooth_loss", "lr_0"..), plus
 * one "metric" event {"step","job","values":{key:value}}. Non-finite values are kept
 * as NULL. */
int store_metrics_push(store *st, int64_t run_id, int64_t job_id, int64_t step, int n,
                       const char *const *keys, const double *values);
/* Points with step > after_step (after_step < 0: from the start), ordered by step then key,
 * at most limit (1..STORE_METRICS_MAX; 0 means 1000). key NULL: every key.
 * *out: {"run","key"|null,"points":[{"step","key","value","time"}],
 *        "next_after_step":n|null}   (null when the page is not full) */
int store_metrics_get(store *st, int64_t run_id, const char *key, int64_t after_step,
                      int limit, json_t **out);
/* store_metrics_get limited to step < before_step as well (before_step < 0: no bound), so a
 * chart can page through a zoomed window at full resolution. */
int store_metrics_range(store *st, int64_t run_id, const char *key, int64_t after_step,
                        int64_t before_step, int limit, json_t **out);
/* The points of key (NULL: every key) with after_step < step < before_step (either bound
 * < 0: none), at most max_points (2..STORE_METRICS_MAX) per key, for a chart that can draw
 * no more. A key with no more points in the window answers all of them; otherwise the
 * window's step range is cut into (max_points - 2) / 2 equal buckets, each keeping its
 * lowest and highest value (a bucket of non-finite values only keeps its first point),
 * and the window's first and last points are always kept: so are its extremes. When each
 * bucket spans at least the steps of a write-time summary (64 at the finest level), the
 * buckets are filled from the summaries of the coarsest level that fits (the extremes of
 * each, placed by their steps), the window's ends from finer ones and from the rows below
 * the finest, so a whole long run is not read row by row.
 * *out: {"run","key"|null,"points":[{"step","key","value","time"}] (by key, then step),
 *        "next_after_step":null,"max_points":n,"downsampled":bool}  (true when a key lost
 * points) */
int store_metrics_downsample(store *st, int64_t run_id, const char *key, int64_t after_step,
                             int64_t before_step, int max_points, json_t **out);
/* Distinct keys of a run: ["lr_0","smooth_loss","train_loss"] */
int store_metric_keys(store *st, int64_t run_id, json_t **out);

/* ---- operator statistics --------------------------------------------------------------- */

#define STORE_JOB_STATES 6
#define STORE_STATS_BUCKETS 16
/* "queued", "running", "succeeded", "failed", "cancelled", "interrupted": the order of
 * store_stats.jobs. */
extern const char *const store_job_states[STORE_JOB_STATES];

typedef struct store_stats {
    int64_t jobs[STORE_JOB_STATES];   /* jobs by state */
    int64_t running_job;              /* 0: none */
    double img_per_s;                 /* of the running job's latest epoch; 0: none yet */
    int64_t epochs;                   /* epochs with a time, of every run */
    double epoch_seconds_sum;
    int64_t epoch_le[STORE_STATS_BUCKETS]; /* epochs that took <= le[i] seconds */
    int64_t db_bytes;                 /* pages of the database file (WAL aside) */
} store_stats;

/* Read in one transaction. le: n_le (0..STORE_STATS_BUCKETS) ascending bounds of the epoch
 * time histogram. */
int store_stats_get(store *st, const double *le, int n_le, store_stats *out);

/* ---- epochs ---------------------------------------------------------------------------- */

typedef struct store_epoch {
    int fit_epoch;        /* 0-based within the job's fit */
    int cycle;
    double train_loss, valid_loss, accuracy, f2;   /* f2 < 0: single-label (stored NULL) */
    double seconds, img_per_s;
    int64_t step;         /* global iteration of the epoch's last batch; <= 0: NULL */
} store_epoch;

/* Committed at once (flushes buffered points first) with an "epoch" event; the run-wide
 * epoch number is the count of the run's earlier epochs. */
int store_epoch_add(store *st, int64_t run_id, int64_t job_id, const store_epoch *e,
                    int *epoch_out);
/* *out: [{"epoch","fit_epoch","cycle","job","train_loss","valid_loss","accuracy","f2"|null,
 *         "seconds","img_per_s","time","step"|null}] oldest first. */
int store_epochs_get(store *st, int64_t run_id, json_t **out);

/* ---- snapshots and checkpoints --------------------------------------------------------- */

/* kind: "snapshot" (end of a cycle), "checkpoint" (end of an epoch, for resume), "best"
 * (early stop), "final" (after a job). cycle/epoch negative: NULL. */
int store_snapshot_add(store *st, int64_t run_id, int64_t job_id, const char *kind,
                       int cycle, int epoch, const char *path, int64_t *id);
/* *out: [{"id","job","kind","cycle","epoch","path","created_at"}] oldest first. */
int store_snapshots_get(store *st, int64_t run_id, json_t **out);
/* The newest snapshot path of the run of this kind (kind NULL: any); -ENOENT if none.
 * *path is malloc'd. */
int store_snapshot_latest(store *st, int64_t run_id, const char *kind, char **path);

/* ---- predictions (predict_test) --------------------------------------------------------- */

int store_prediction_add(store *st, int64_t run_id, int64_t job_id, const char *path,
                         int n_rows);
/* The CSV file of a job; -ENOENT when it has none. *path is malloc'd. */
int store_prediction_path(store *st, int64_t job_id, char **path);

/* ---- interpretations ------------------------------------------------------------------ */

/* Stores the interpretation of run_id's weights (identified by the string `weights`),
 * replacing the run's previous one: summary (an object) and items (an array; both
 * borrowed). job_id: the job that computed it (0: none). -ENOENT: no such run. */
int store_interpretation_put(store *st, int64_t run_id, int64_t job_id, const char *weights,
                             json_t *summary, json_t *items);
/* The weights identity of the stored interpretation (*weights malloc'd); -ENOENT: none. */
int store_interpretation_weights(store *st, int64_t run_id, char **weights);
/* {"run","job"|null,"weights","created_at","summary":{...}} and, with_items, "items":[...];
 * -ENOENT when the run has none. */
int store_interpretation_get(store *st, int64_t run_id, int with_items, json_t **out);

/* ---- tests ------------------------------------------------------------------------------ */

/* Hooks for the store's own tests, compiled only into the store_test library (built with
 * STORE_TEST_HOOKS); the daemon's store has none. */
#ifdef STORE_TEST_HOOKS
/* Makes the n-th SQLite write statement from now (1 = the next one) fail as if the disk
 * had failed; 0 disarms. For fault-injection tests. */
void store_test_fail_write(store *st, int n);
/* Creates a database at path migrated only up to `version` (for migration tests). */
int store_test_create_at_version(const char *path, int version, char *err, size_t errlen);
/* off 1: store_metrics_downsample reads only the metric rows, never their summaries (to
 * compare both answers); 0 restores. */
void store_test_summaries_off(store *st, int off);
#endif

#endif
