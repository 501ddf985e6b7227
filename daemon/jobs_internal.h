/* jobs_internal.h: what the daemon's job files share (jobs.c: the queue and its worker;
 * run_learners.c: learners built from run rows; sink.c: engine events into store rows;
 * datasets.c: registration by path). Not for use outside daemon/. */
#ifndef SGDRD_JOBS_INTERNAL_H
#define SGDRD_JOBS_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "errmsg.h"
#include "clock_mono.h"
#include "data/data.h"
#include "fs_path.h"
#include "events.h"
#include "jobs.h"
#include "learner.h"
#include "learner_memory.h"
#include "registrar.h"

/* The file the learner keeps its last epoch checkpoint in, under checkpoint_dir. */
#define LEARNER_LAST_CKPT "last.ckpt.safetensors"
#define MAX_LEARNERS 2   /* learners kept in memory; older ones are saved and dropped */

/* A run's learner with the dataset it borrows. Touched by the worker only. */
typedef struct run_slot {
    int64_t run_id;
    dataset *ds;
    learner *l;
    uint64_t used;          /* LRU clock */
    char ds_path[PATH_MAX]; /* the dataset's folder, and what stat said of it when opened */
    struct stat ds_st;
    lmem_run mem;           /* what the learner was admitted as (its arch in mem_arch), and */
    lmem_parts mem_parts;   /* its estimate (total 0: not known) */
    char mem_arch[32];
} run_slot;

/* A learner for synchronous predictions (HTTP threads, under pmu), loaded from the run's
 * saved weights; reloaded when the file changes. */
typedef struct serve_slot {
    int64_t run_id;
    dataset *ds;
    learner *l;
    struct timespec mtime;
} serve_slot;

struct jobs {
    store *st;
    char *data_dir;
    char **roots;
    int n_roots;
    int loader_threads;
    int64_t memory_limit;   /* jobs_config.memory_limit */
    int resume;

    pthread_mutex_t mu;     /* queue, running, stopping, dropped runs */
    pthread_cond_t cv;
    int64_t *q;
    int qn, qcap;
    int64_t running;
    int stopping;
    int started, joined;
    int worker_done;
    pthread_t worker;
    atomic_int cancel;      /* the running job should stop at the next batch */
    int64_t *dropped;       /* runs deleted: the worker frees their learners */
    int n_dropped, cap_dropped;

    run_slot slots[MAX_LEARNERS];
    uint64_t clock;

    pthread_mutex_t pmu;
    serve_slot serve;

    /* data-parallel jobs (world.c) */
    int threads, max_workers, worker_timeout_s;
    char *hostfile, *worker_exe; /* worker_exe: sgdrd-worker */
    json_t *world;          /* the running world's last report, under mu; NULL: none */

    registrar *reg;         /* scans registered datasets; NULL until jobs_start */
};

typedef struct sink {
    jobs *jq;
    int64_t job_id, run_id, lr_find_id;
    int own_sweeps;            /* sweeps inside another job (the recipe): rows made here */
    int sweep_n, sweep_last_iter;
    double sweep_last_lr;
    int last_cycle;
    int last_epoch;            /* run-wide number of the last epoch recorded, or -1 */
    int engine_progress;       /* the learner reports progress itself */
    int total_epochs;          /* a fit's epochs, for progress when it does not */
    double t0;
} sink;

/* ---- jobs.c: small helpers ------------------------------------------------------------- */

/* data_dir/runs/<id> and a file in it. */
void jq_run_dir(const jobs *jq, int64_t run_id, char *out, size_t len);
void jq_run_file(const jobs *jq, int64_t run_id, const char *name, char *out, size_t len);
/* A number or boolean member of a JSON object, or dflt. */
double jq_num(json_t *o, const char *k, double dflt);
int jq_bool(json_t *o, const char *k, int dflt);

/* ---- run_learners.c ------------------------------------------------------------------- */

/* "folders" | "csv" | "idx"; -EINVAL otherwise. */
int jq_ds_format_of(const char *s, ds_format *f);
/* Removes a folder with everything under it (links are removed, not followed). */
void jq_rm_tree(const char *path);
/* A scan as the API shows it (GET /datasets/{id} "info"); NULL when out of memory. */
json_t *jq_dataset_info_json(const ds_info *in);
/* The worker's learner for a run (see run_learners.c); NULL with err on failure. */
learner *jq_slot_get(jobs *jq, int64_t run_id, char *err, size_t errlen);
void jq_slot_free(run_slot *s);
/* Before a job runs on its run's resident learner: what the job adds beyond it (a fit's
 * snapshots, a resize's new size) must fit in the memory available (job_memory.c).
 * -ENOMEM with err saying what it needs, what there is and what to change. */
int jq_admit_job(jobs *jq, int64_t run_id, const job_params *p, char *err, size_t errlen);
void jq_slot_drop(jobs *jq, int64_t run_id);
/* Saves a run's weights and learner state after a job that changed them. */
int jq_save_run(jobs *jq, int64_t run_id, int64_t job_id, learner *l, char *err,
                size_t errlen);

/* ---- world.c -------------------------------------------------------------------------- */

/* Runs a job with p->workers > 1 as an mpirun world of sgdrd-worker ranks, its events into
 * k's hooks; *result as run_kind's. 0, -ECANCELED, -EPIPE when the world itself failed (a
 * rank died, or hung past the timeout), or another negative code (the job's own error,
 * mpirun that could not start); err says why. */
int jq_run_world(jobs *jq, sink *k, const job_params *p, int resume, json_t **result,
                 char *err, size_t errlen);

/* ---- sink.c --------------------------------------------------------------------------- */

/* The engine hooks that record into k's job and run. */
ev_hooks jq_sink_hooks(sink *k);
/* Ends a sweep row the sink opened inside another job (the recipe). */
void jq_sweep_close(sink *k);

/* ---- interp.c ------------------------------------------------------------------------- */

/* Computes and stores the interpretation of l (run_id's learner, just saved) unless the
 * stored one is of the same weights. job_id: the job it follows. 0 or an error with err. */
int jq_interpret(jobs *jq, int64_t run_id, int64_t job_id, learner *l, char *err,
                 size_t errlen);

#endif
