/* jobs.h: the daemon's job queue: a FIFO of jobs and ONE worker thread that runs them on
 * per-run learners (engine/learner.h), recording every engine event in the store.
 *
 * Threads: every function here is safe to call from any thread (HTTP threads) and never
 * waits on training: submit/cancel/resume commit a row and signal the worker; the worker
 * alone touches learners. Cancellation and shutdown take effect at the next batch boundary
 * (the engine's ev_hooks return nonzero).
 *
 * Job params: one model, api/job_params.h. A job is submitted as a checked job_params and
 * stored as its canonical JSON (every default filled in); the worker reads that JSON back
 * with the same parser when it runs the job, after a restart and on resume, so a stored
 * value the parser refuses fails the job (naming the field), never runs as a default.
 * A finished job's "result" (store_job_get) holds what it produced: tta metrics, lr-find
 * id and suggestions, the run state after a freeze/resize, ...
 *
 * Errors: 0 or a negative errno-style code, as in store.h, plus:
 *   -ESHUTDOWN  the daemon is stopping and takes no new jobs
 */
#ifndef SGDRD_JOBS_H
#define SGDRD_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api_backend.h"
#include "job_params.h"
#include "store.h"

typedef struct jobs jobs;

typedef struct jobs_config {
    const char *data_dir;   /* checkpoints go to <data_dir>/runs/<id>/ */
    const char *const *roots; /* --dataset-root folders (copied); datasets only under them */
    int n_roots;
    int loader_threads;     /* decode/augment workers per learner; 0: engine default */
    int resume;             /* on start, resume every interrupted job that can (--resume) */
    int64_t memory_limit;   /* bytes a run may take (--memory-limit); 0: MemAvailable */
    int threads;            /* compute threads of this machine (0: every core) */
    int max_workers;        /* most ranks a job may ask for (0 or 1: none beyond the daemon) */
    const char *hostfile;   /* Open MPI hostfile of the workers' machines; NULL: this one */
    const char *worker;     /* sgdrd-worker; NULL: the one built beside the daemon */
    int worker_timeout_s;   /* a silent world counts as hung after this (0: 300) */
} jobs_config;

/* Creates the queue (no thread yet). st is borrowed and must outlive the queue. */
int jobs_create(jobs **out, store *st, const jobs_config *cfg, char *err, size_t errlen);

/* Start-up recovery, then the worker: jobs left `running` by a dead process become
 * `interrupted` (and, with cfg->resume, get a resuming job queued); jobs left `queued` are
 * queued again in their original order. Then starts the worker thread. */
int jobs_start(jobs *jq, char *err, size_t errlen);

/* Queues a job of p->kind (p as job_params_parse filled it; borrowed): the row, with p's
 * canonical JSON, is committed as `queued` before this returns (so the caller may answer
 * 202), then the worker is woken. -ENOENT: no such run; -ESHUTDOWN: stopping; -E2BIG:
 * p->workers is above max_workers (nothing queued). */
int jobs_submit(jobs *jq, int64_t run_id, const job_params *p, int64_t *job_id);

/* Bytes a run may take now: --memory-limit, else MemAvailable (lmem_available). */
double jobs_memory_available(jobs *jq, const char **source);

/* Cancels a job: a queued one becomes `cancelled` at once; a running one stops at its
 * next batch boundary and then becomes `cancelled`. -ENOENT: no such job; -EALREADY: it
 * has already finished. */
int jobs_cancel(jobs *jq, int64_t job_id);

/* Queues a job that takes over an `interrupted` one (its resumed_from): a fit continues
 * from the run's last epoch checkpoint (or starts over when it had finished no epoch); an
 * lr_find, tta, predict_test or state change runs again. A recipe cannot resume (its steps
 * are not checkpointed): queue a new one. -ENOENT: no such job; -EINVAL: it is not
 * interrupted, or a recipe; -EALREADY: a job resumes it already (*new_job_id is that
 * job). */
int jobs_resume(jobs *jq, int64_t job_id, int64_t *new_job_id);

/* Registers a dataset on the server's disk (POST /datasets and --demo): checks that path
 * (after resolving links) lies under a dataset root (-EACCES otherwise) or, when uploaded,
 * under the data dir, and commits the row as "scanning" (-EEXIST when the name is taken).
 * The registrar thread then scans it with the engine (classes, counts per split, image
 * sizes, statistics, unreadable files) and ends the row "ready" or "failed".
 * jobs_register_dataset waits for the scan: a dataset that cannot be used is -EINVAL with
 * err naming the file, and its row is gone. jobs_register_dataset_wait waits at most
 * wait_s: a scan still running then is 0 with the row "scanning" (GET shows its end).
 * format: "folders", "csv" or "idx"; valid_pct < 0 and csv NULL take the engine's
 * defaults. On failure *field (when field is not NULL) names the input to blame ("name",
 * "format", "path") or is NULL, and err says why. -ESHUTDOWN when stopping. */
int jobs_register_dataset(jobs *jq, const char *name, const char *path, const char *format,
                          double valid_pct, const char *csv, uint64_t seed, int uploaded,
                          int64_t *id, const char **field, char *err, size_t errlen);
int jobs_register_dataset_wait(jobs *jq, const char *name, const char *path,
                               const char *format, double valid_pct, const char *csv,
                               uint64_t seed, int uploaded, double wait_s, int64_t *id,
                               const char **field, char *err, size_t errlen);
/* Registers an uploaded archive (api_backend's register_upload): as
 * jobs_register_dataset_wait with uploaded set, the registrar extracting u->archive into
 * u->path before the scan. On failure u->archive and u->path are removed. */
int jobs_register_upload_wait(jobs *jq, const api_upload_reg *u, double wait_s, int64_t *id,
                              const char **field, char *err, size_t errlen);

/* Before a run is deleted: drops its in-memory learner. -EBUSY when it has a queued or
 * running job (nothing changes), -ENOENT when there is no such run. Deletes the run's row
 * (store_run_delete) and its files under the data dir. */
int jobs_delete_run(jobs *jq, int64_t run_id);

/* Class probabilities of one PNG/JPEG image (bytes, any size) for a run, computed on the
 * caller's thread from the run's last saved weights (never the learner being trained).
 * *out: {"classes":[...], "probs":[...], "top":{"class","prob"}, "tta":bool}.
 * -ENOENT: no run; -EINVAL: undecodable image (err says why); -EAGAIN: the run has no
 * weights yet (no job has finished); -ESTALE: the run's dataset can no longer be opened
 * from its folder (err names both). */
int jobs_predict_image(jobs *jq, int64_t run_id, const void *buf, size_t len, int tta,
                       json_t **out, char *err, size_t errlen);

/* A PNG of a run's data (*png malloc'd): items are addressed by index in their split, never
 * by path. Works before any training (the run's settings, initial weights). -ENOENT: no
 * such run; -ERANGE: item or n out of range; -ESTALE: the dataset is gone; err says why. */
int jobs_run_png(jobs *jq, int64_t run_id, const api_png_req *q, uint8_t **png, size_t *len,
                 char *err, size_t errlen);
/* Path of the run's current weights as a safetensors file (malloc'd), written after every
 * job that changed them; -ENOENT when there is none yet. */
int jobs_weights_path(jobs *jq, int64_t run_id, char **path);

/* Jobs waiting (not counting the running one). */
int jobs_queue_length(jobs *jq);
/* The running job's id, or 0. */
int64_t jobs_running(jobs *jq);
/* The data-parallel settings and the running world's last report (see api_backend.h's
 * world); a new object. */
json_t *jobs_world(jobs *jq);

/* Shutdown: refuse new jobs, ask the running job to stop at the next batch boundary,
 * checkpoint its learner, mark it `interrupted` (a fit) so it can resume, leave queued
 * jobs queued for the next start, flush the store and join the worker. Waits at most
 * timeout_s seconds for the worker (returns -ETIMEDOUT after that). Idempotent. */
int jobs_stop(jobs *jq, double timeout_s);

/* The queue as the API's backend (api_backend.h): every entry calls the jobs_ function of
 * the same name with jq as its context. jq must outlive every server given it. */
void jobs_backend(jobs *jq, api_backend *out);

/* Stops (as jobs_stop with 8 s) if needed and frees everything. NULL is fine. */
void jobs_destroy(jobs *jq);

#endif
