/* job.h: runs the spec's job on a learner, every rank the same call: lr_find, fit,
 * recipe, tta or predict_test. The parameters are read with the API's job-parameter model
 * (job_params.h), so a job row's stored params pass through unchanged and are checked by
 * the same rules. */
#ifndef SGDRD_WORKER_JOB_H
#define SGDRD_WORKER_JOB_H

#include <jansson.h>

#include "job_params.h"
#include "learner.h"

/* Reads the spec's job: its kind and parameters into *p. 0, or -EINVAL with err set ("params.
 * <field>: why"). Every rank reads the same spec, so they all agree. */
int worker_parse_job(json_t *spec, job_params *p, char *err, size_t errlen);

/* Runs the job p (from worker_parse_job); *result gets the job's result object (NULL when it
 * has none). 0 or a negative code with err set. */
int worker_run_job(learner *l, const job_params *p, json_t *spec, const ev_hooks *h,
                   json_t **result, char *err, size_t errlen);

/* The learner's state as the daemon records it on the run. */
json_t *worker_state_json(learner *l);

#endif
