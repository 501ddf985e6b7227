/* job_kind.c: job kinds' names. */
#include "job_kind.h"

#include <errno.h>
#include <string.h>

static const char *const kind_names[JOB_KIND_COUNT] = {
    "lr_find", "fit", "freeze", "unfreeze", "precompute", "resize", "tta", "recipe",
    "predict_test"};

const char *job_kind_name(job_kind k)
{
    return (k >= 0 && k < JOB_KIND_COUNT) ? kind_names[k] : "?";
}

int job_kind_parse(const char *name, job_kind *k)
{
    for (int i = 0; name && i < JOB_KIND_COUNT; i++) {
        if (!strcmp(name, kind_names[i])) {
            *k = (job_kind)i;
            return 0;
        }
    }
    return -EINVAL;
}
