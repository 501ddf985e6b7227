/* job_kind.h: the kinds of job a run's operations queue, and their names. */
#ifndef SGDRD_API_JOB_KIND_H
#define SGDRD_API_JOB_KIND_H

typedef enum job_kind {
    JOB_LR_FIND,
    JOB_FIT,
    JOB_FREEZE,
    JOB_UNFREEZE,
    JOB_PRECOMPUTE,
    JOB_RESIZE,
    JOB_TTA,
    JOB_RECIPE,
    JOB_PREDICT_TEST,
    JOB_KIND_COUNT
} job_kind;

/* "lr_find", "fit", ... (the store's and the API's spelling); "?" for no kind. */
const char *job_kind_name(job_kind k);
/* 0 and *k set, or -EINVAL for an unknown name (or NULL). */
int job_kind_parse(const char *name, job_kind *k);

#endif
