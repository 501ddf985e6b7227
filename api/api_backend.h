/* api_backend.h: what the API asks of whoever runs the jobs. The daemon hands the server one
 * api_backend at start (api_config.backend); the API never links against the daemon, so
 * it can be built and tested alone with a backend of the test's own.
 *
 * Every function takes ctx first and returns 0 or a negative errno-style code, as
 * store.h's functions do, plus -ESHUTDOWN when the backend is stopping. Each may be called
 * from any connection thread at once and must not wait on training. */
#ifndef SGDRD_API_API_BACKEND_H
#define SGDRD_API_API_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "job_params.h"

/* What run_png renders: a validation item's thumbnail (its longer side at most max_side),
 * or (augment) n draws of the run's training transforms on training item `item`, as one
 * strip of n tiles, the same for the same seed. */
typedef struct api_png_req {
    int augment;
    int item, n, max_side;
    uint64_t seed;
} api_png_req;

/* An uploaded tar archive to register as a dataset (register_upload). */
typedef struct api_upload_reg {
    const char *name, *format, *csv; /* as register_dataset's; csv NULL: the default */
    const char *path;     /* the dataset's folder: an empty folder under the data dir that
                             the caller made; the archive's data is moved into it */
    const char *archive;  /* the archive's file under the data dir's tmp/: from the call on
                             the backend's, removed once extracted or refused */
    double valid_pct;     /* < 0: the default */
    uint64_t seed;
    int64_t max_bytes;    /* what the extraction may write */
} api_upload_reg;

typedef struct api_backend {
    void *ctx;

    /* Queues a job of params->kind on run run_id (params checked by job_params_parse;
     * borrowed): the job's row, with the canonical params, is committed as `queued` before
     * it returns. -ENOENT: no such run. */
    int (*submit)(void *ctx, int64_t run_id, const job_params *params, int64_t *job_id);
    /* Cancels a queued or running job. -ENOENT: no such job; -EALREADY: it has ended. */
    int (*cancel)(void *ctx, int64_t job_id);
    /* Queues a job that takes over an `interrupted` one. -ENOENT: no such job; -EINVAL:
     * it is not interrupted, or cannot resume; -EALREADY: a job resumes it already
     * (*new_job_id is that job). */
    int (*resume)(void *ctx, int64_t job_id, int64_t *new_job_id);
    /* Deletes a run with its files. -EBUSY: it has a queued or running job. */
    int (*delete_run)(void *ctx, int64_t run_id);
    /* Class probabilities of one image for a run (*out: a new object). -ENOENT: no run;
     * -EINVAL: undecodable image; -EAGAIN: no weights yet; -ESTALE: the dataset is gone.
     * err says why. */
    int (*predict_image)(void *ctx, int64_t run_id, const void *buf, size_t len, int tta,
                         json_t **out, char *err, size_t errlen);
    /* A PNG of a run's data (*png malloc'd, *len bytes), items addressed by index in their
     * split, never by path; before any training too. -ENOENT: no run; -ERANGE: item or n
     * out of range; -ESTALE: the dataset is gone; err says why. */
    int (*run_png)(void *ctx, int64_t run_id, const api_png_req *q, uint8_t **png,
                   size_t *len, char *err, size_t errlen);
    /* The run's current weights file (*path malloc'd). -ENOENT: none yet. */
    int (*weights_path)(void *ctx, int64_t run_id, char **path);
    /* Jobs waiting, and the running job's id (0: none). */
    int (*queue_length)(void *ctx);
    int64_t (*running)(void *ctx);
    /* The data-parallel side, for /health (a new object; NULL when out of memory):
     * {"max_workers", "hostfile", "running": the running world's last report (size, ranks
     * with host, pid, img/s and gradient-sum seconds per step, bytes summed) or null}. */
    json_t *(*world)(void *ctx);
    /* Registers a dataset on the server's disk: path must lie under a dataset root (or,
     * when uploaded, under the data dir); -EACCES otherwise, -EEXIST when the name is
     * taken. The row is stored "scanning" and scanned off this thread; the call waits a
     * short while for the scan: -EINVAL when it failed (the row is gone), 0 when it is
     * ready, or 0 with the row still "scanning" (it ends "ready" or "failed" later, an
     * uploaded folder that cannot be used then removed). On failure *field names the
     * input to blame ("name", "format", "path") or is NULL, and err says why.
     * valid_pct < 0 and csv NULL take the defaults. */
    int (*register_dataset)(void *ctx, const char *name, const char *path,
                            const char *format, double valid_pct, const char *csv,
                            uint64_t seed, int uploaded, int64_t *id, const char **field,
                            char *err, size_t errlen);
    /* Registers an uploaded archive as register_dataset registers a folder: the row is
     * stored "scanning", and the extraction (every entry checked, see upload.h) and the
     * scan both run off this thread, with the same short wait. An archive refused while
     * extracting is a failed registration like an unusable folder, err naming the entry;
     * when it ends after the wait, the row reads "failed" with that reason. u->path and
     * u->archive are removed whenever the registration fails. */
    int (*register_upload)(void *ctx, const api_upload_reg *u, int64_t *id,
                           const char **field, char *err, size_t errlen);
    /* Bytes a new run may take (--memory-limit, else MemAvailable; 0: not known), and in
     * *source where the figure comes from. */
    double (*memory_available)(void *ctx, const char **source);
} api_backend;

#endif
