/* job_memory.c: a job's own memory on top of its run's learner, admitted before the job
 * runs: the snapshots a fit keeps (one copy of the weights per cycle) and a resize's
 * larger activations, loaders and caches. The learner itself was admitted when it was
 * built (run_learners.c), whose estimate its slot keeps. */
#define _GNU_SOURCE
#include "jobs_internal.h"

#include <errno.h>
#include <stdio.h>

#define GIB(x) ((x) / (1024.0 * 1024 * 1024))

static run_slot *slot_of(jobs *jq, int64_t run_id)
{
    for (int i = 0; i < MAX_LEARNERS; i++)
        if (jq->slots[i].l && jq->slots[i].run_id == run_id)
            return &jq->slots[i];
    return NULL;
}

/* What the job may add: MemAvailable now (the learner is resident, so it is not part of
 * it), or the --memory-limit less the learner's estimate. */
static double room(jobs *jq, const run_slot *s, const char **source)
{
    double avail = jobs_memory_available(jq, source);
    if (jq->memory_limit > 0)
        avail -= s->mem_parts.total;
    return avail;
}

static int admit_snapshots(jobs *jq, const run_slot *s, const job_fit *f, char *err,
                           size_t errlen)
{
    const char *source;
    int held = learner_n_snapshots(s->l);
    double copies = (double)f->n_cycle - held; /* a fit frees the last fit's first */
    double need = copies * s->mem_parts.weights, avail = room(jq, s, &source);
    if (!f->snapshots || need <= 0 || !s->mem_parts.total || need <= avail)
        return 0;
    snprintf(err, errlen,
             "not enough memory: the snapshots of %lld cycles need about %.2f GiB (one copy "
             "of the weights, %.2f GiB, per cycle) but %.2f GiB is available (%s): fit "
             "without snapshots or with fewer cycles",
             (long long)f->n_cycle, GIB(need), GIB(s->mem_parts.weights),
             GIB(avail > 0 ? avail : 0), source);
    return -ENOMEM;
}

/* A resize admitted keeps the estimate at the new size in the slot (a resize that fails
 * after that only makes the next check stricter). */
static int admit_resize(jobs *jq, run_slot *s, int sz, char *err, size_t errlen)
{
    const char *source;
    char why[256];
    lmem_parts p;
    lmem_run r = s->mem;
    r.sz = sz;
    if (!s->mem_parts.total)
        return 0;
    int rc = lmem_estimate(&r, &p, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "%s", why);
        return rc;
    }
    double need = p.total - s->mem_parts.total, avail = room(jq, s, &source);
    if (need > 0 && need > avail) {
        snprintf(err, errlen,
                 "not enough memory: resizing to sz %d needs about %.2f GiB more (%.2f GiB "
                 "in all: activations %.2f, loaders %.2f, precompute cache %.2f) but %.2f "
                 "GiB is available (%s): resize to a smaller sz, or lower the run's bs",
                 sz, GIB(need), GIB(p.total), GIB(p.activations), GIB(p.loaders),
                 GIB(p.precompute), GIB(avail > 0 ? avail : 0), source);
        return -ENOMEM;
    }
    s->mem = r;
    s->mem_parts = p;
    return 0;
}

int jq_admit_job(jobs *jq, int64_t run_id, const job_params *p, char *err, size_t errlen)
{
    run_slot *s = slot_of(jq, run_id);
    if (!s)
        return 0;
    if (p->kind == JOB_FIT)
        return admit_snapshots(jq, s, &p->fit, err, errlen);
    if (p->kind == JOB_RESIZE)
        return admit_resize(jq, s, (int)p->resize_sz, err, errlen);
    return 0;
}
