/* main.c: sgdrd-worker, one rank of a data-parallel job. The daemon starts it with mpirun
 * (one process per rank, possibly on several hosts) and a spec file (spec.h); every rank
 * builds the same learner and runs the same job on its shard of every batch (engine's
 * dist.h over Open MPI); rank 0 writes the events, the result and the learner's files.
 *
 * usage: sgdrd-worker SPEC.json
 * Exit status: 0 when the job succeeded, 1 when it failed (an "error" event says why),
 * 2 on bad usage. A rank that dies takes the world down with it (MPI's default error
 * handler); the daemon sees mpirun fail. A rank whose job fails (a data error, say) does
 * the same with MPI_Abort after its error event, since the others may wait in a sum. */
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "dataset_sync.h"
#include "dist/dist_mpi.h"
#include "emit.h"
#include "job.h"
#include "job_spec.h"
#include "weights.h"

#define MSG_MAX 512

/* Every rank says whether it failed (rc) and why; 1 on every rank when any failed, with
 * rank 0 emitting one error event listing each failed rank, its host and its reason. */
static int any_failed(emitter *e, int rc, const char *why, const char *stage)
{
    int mine = rc != 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!any)
        return 0;
    int rank = dist_rank(e->d), size = dist_size(e->d), len = 0;
    char msg[MSG_MAX] = "", host[MPI_MAX_PROCESSOR_NAME] = "";
    MPI_Get_processor_name(host, &len);
    if (rc)
        snprintf(msg, sizeof msg, "rank %d on %s: %s", rank, host, why);
    char *all = rank == 0 ? calloc((size_t)size, MSG_MAX) : NULL;
    MPI_Gather(msg, MSG_MAX, MPI_CHAR, all, MSG_MAX, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0 && all) {
        json_t *ranks = json_array();
        for (int r = 0; r < size; r++)
            if (all[(size_t)r * MSG_MAX])
                json_array_append_new(ranks, json_string(all + (size_t)r * MSG_MAX));
        const char *first = json_string_value(json_array_get(ranks, 0));
        emit(e, "error", json_pack("{ss ss so}", "stage", stage, "message",
                                   first ? first : "failed", "ranks", ranks));
    }
    free(all);
    return 1;
}

/* A rank whose job failed while the others may be waiting in a sum it will never join:
 * it says why itself (every rank's stdout reaches mpirun's, as rank 0's events do) and takes
 * the world down, so that the job fails now rather than at the daemon's --worker-timeout. */
static void abort_world(emitter *e, const char *why, const char *stage)
{
    char msg[MSG_MAX], host[MPI_MAX_PROCESSOR_NAME] = "";
    int len = 0;
    MPI_Get_processor_name(host, &len);
    snprintf(msg, sizeof msg, "rank %d on %s: %s", dist_rank(e->d), host, why);
    emitter mine = {.out = stdout, .d = e->d};
    emit(&mine, "error", json_pack("{ss ss s[s]}", "stage", stage, "message", msg, "ranks",
                                   msg));
    fprintf(stderr, "sgdrd-worker: %s\n", msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Whether every rank sees the dataset rank 0 sees (the same index hash). */
static int dataset_differs(emitter *e, const dataset *ds, json_t *spec)
{
    unsigned long long h = jspec_dataset_hash(ds), h0 = h;
    MPI_Bcast(&h0, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    char why[MSG_MAX] = "";
    if (h != h0)
        snprintf(why, sizeof why, "the dataset at %s is not the one rank 0 has (index hash "
                 "%016llx, rank 0: %016llx): every host must hold the same files",
                 json_string_value(json_object_get(json_object_get(spec, "dataset"), "path")),
                 h, h0);
    return any_failed(e, h != h0 ? -EINVAL : 0, why, "dataset");
}

/* Rank 0: the learner's checkpoint and weights where the spec asks for them. */
static int save_files(learner *l, json_t *spec, char *err, size_t errlen)
{
    json_t *s = json_object_get(spec, "save");
    const char *ck = json_string_value(json_object_get(s, "checkpoint"));
    const char *w = json_string_value(json_object_get(s, "weights"));
    int rc = ck ? learner_save(l, ck, err, errlen) : 0;
    if (!rc && w)
        rc = weights_save_file(learner_net(l), w, err, errlen);
    return rc;
}

static int run(emitter *e, json_t *spec)
{
    char err[MSG_MAX] = "";
    dataset *ds = NULL;
    learner *l = NULL;
    job_params p;
    int rc = worker_parse_job(spec, &p, err, sizeof err);
    if (any_failed(e, rc, err, "params"))
        return 1;
    rc = dsync_ensure(json_object_get(spec, "dataset"), MPI_COMM_WORLD, err, sizeof err);
    if (any_failed(e, rc, err, "dataset"))
        return 1;
    rc = jspec_learner(spec, e->d, &ds, &l, err, sizeof err);
    if (any_failed(e, rc, err, "setup"))
        goto out;
    if (dataset_differs(e, ds, spec)) {
        rc = -EINVAL;
        goto out;
    }
    e->n = learner_net(l);
    emit_world(e, 0.0);
    ev_hooks h = emit_hooks(e);
    json_t *result = NULL;
    rc = worker_run_job(l, &p, spec, &h, &result, err, sizeof err);
    if (rc && dist_active(e->d))
        abort_world(e, err, "job");
    if (any_failed(e, rc, err, "job")) {
        json_decref(result);
        goto out;
    }
    if (dist_rank(e->d) == 0)
        rc = save_files(l, spec, err, sizeof err);
    if (any_failed(e, rc, err, "save")) {
        json_decref(result);
        goto out;
    }
    emit(e, "done", json_pack("{so so}", "result", result ? result : json_null(), "state",
                              worker_state_json(l)));
out:
    e->n = NULL;
    learner_destroy(l);
    dataset_destroy(ds);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: sgdrd-worker SPEC.json (run by mpirun)\n");
        return 2;
    }
    blas_startup(argv, 0);
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    dist *d = NULL;
    char err[MSG_MAX] = "";
    int rc = dist_mpi_create(&d, MPI_COMM_WORLD);
    if (rc) {
        fprintf(stderr, "sgdrd-worker: cannot set up the world: %s\n", strerror(-rc));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int rank = dist_rank(d);
    emitter e = {.out = rank == 0 ? stdout : NULL, .d = d};
    json_t *spec = jspec_read(argv[1], err, sizeof err);
    int status = 1;
    if (!any_failed(&e, spec ? 0 : -EINVAL, err, "spec"))
        status = run(&e, spec);
    json_decref(spec);
    dist_mpi_destroy(d);
    MPI_Finalize();
    return status;
}
