/* job.h: runs the spec's job on a learner, every rank the same call: lr_find, fit, recipe,
 * tta or predict_test, with the parameters as the API takes them (see the daemon's job
 * runner, which this mirrors for a world of several ranks). */
#ifndef SGDRD_WORKER_JOB_H
#define SGDRD_WORKER_JOB_H

#include <jansson.h>

#include "learner.h"

/* Runs it; *result gets the job's result object (NULL when it has none). 0 or a negative
 * code with err set. */
int job_run(learner *l, json_t *spec, const ev_hooks *h, json_t **result, char *err,
            size_t errlen);

/* The learner's state as the daemon records it on the run. */
json_t *job_state_json(learner *l);

#endif
