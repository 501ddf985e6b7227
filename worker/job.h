/* job.h: runs the spec's job on a learner, every rank the same call: lr_find, fit,
 * recipe, tta or predict_test. The parameters are read with the API's job-parameter model
 * (job_params.h), so a job row's stored params pass through unchanged and are checked by
 * the same rules. */
#ifndef SGDRD_WORKER_JOB_H
#define SGDRD_WORKER_JOB_H

#include <jansson.h>

#include "learner.h"

/* Runs it; *result gets the job's result object (NULL when it has none). 0 or a negative
 * code with err set (a bad parameter: "params.<field>: why"). */
int worker_run_job(learner *l, json_t *spec, const ev_hooks *h, json_t **result, char *err,
                   size_t errlen);

/* The learner's state as the daemon records it on the run. */
json_t *worker_state_json(learner *l);

#endif
