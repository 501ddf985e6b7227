/* backend.c: the job queue seen through the API's backend interface (api_backend.h). */
#include "jobs.h"

/* How long a registration request waits for its scan: most datasets are ready by then and
 * answer 201 as before; a longer scan goes on after the 202. */
#define REGISTER_WAIT_S 1.5

static int be_submit(void *ctx, int64_t run_id, const job_params *params, int64_t *job_id)
{
    return jobs_submit(ctx, run_id, params, job_id);
}

static int be_cancel(void *ctx, int64_t job_id)
{
    return jobs_cancel(ctx, job_id);
}

static int be_resume(void *ctx, int64_t job_id, int64_t *new_job_id)
{
    return jobs_resume(ctx, job_id, new_job_id);
}

static int be_delete_run(void *ctx, int64_t run_id)
{
    return jobs_delete_run(ctx, run_id);
}

static int be_predict_image(void *ctx, int64_t run_id, const void *buf, size_t len, int tta,
                            json_t **out, char *err, size_t errlen)
{
    return jobs_predict_image(ctx, run_id, buf, len, tta, out, err, errlen);
}

static int be_run_png(void *ctx, int64_t run_id, const api_png_req *q, uint8_t **png,
                      size_t *len, char *err, size_t errlen)
{
    return jobs_run_png(ctx, run_id, q, png, len, err, errlen);
}

static int be_weights_path(void *ctx, int64_t run_id, char **path)
{
    return jobs_weights_path(ctx, run_id, path);
}

static int be_queue_length(void *ctx)
{
    return jobs_queue_length(ctx);
}

static json_t *be_world(void *ctx)
{
    return jobs_world(ctx);
}

static int64_t be_running(void *ctx)
{
    return jobs_running(ctx);
}

static int be_register_dataset(void *ctx, const char *name, const char *path,
                               const char *format, double valid_pct, const char *csv,
                               uint64_t seed, int uploaded, int64_t *id, const char **field,
                               char *err, size_t errlen)
{
    return jobs_register_dataset_wait(ctx, name, path, format, valid_pct, csv, seed, uploaded,
                                      REGISTER_WAIT_S, id, field, err, errlen);
}

static int be_register_upload(void *ctx, const api_upload_reg *u, int64_t *id,
                              const char **field, char *err, size_t errlen)
{
    return jobs_register_upload_wait(ctx, u, REGISTER_WAIT_S, id, field, err, errlen);
}

static double be_memory_available(void *ctx, const char **source)
{
    return jobs_memory_available(ctx, source);
}

void jobs_backend(jobs *jq, api_backend *out)
{
    *out = (api_backend){
        .ctx = jq,
        .submit = be_submit,
        .cancel = be_cancel,
        .resume = be_resume,
        .memory_available = be_memory_available,
        .delete_run = be_delete_run,
        .predict_image = be_predict_image,
        .weights_path = be_weights_path,
        .run_png = be_run_png,
        .queue_length = be_queue_length,
        .running = be_running,
        .world = be_world,
        .register_dataset = be_register_dataset,
        .register_upload = be_register_upload,
    };
}
