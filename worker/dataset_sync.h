/* dataset_sync.h: before a world trains, the ranks whose host lacks the job's dataset receive
 * it from rank 0 over MPI, when it is an uploaded one (it lives under the daemon's data dir,
 * which only the daemon's host is sure to have). A dataset registered by path belongs to the
 * user and must be on every host already: one absent there is an error, never filled in.
 *
 * The spec's dataset part (job_spec.h) says which with "uploaded": true. */
#ifndef SGDRD_WORKER_DATASET_SYNC_H
#define SGDRD_WORKER_DATASET_SYNC_H

#include <jansson.h>
#include <mpi.h>
#include <stddef.h>

/* Collective over world (every rank calls it): each rank looks for the dataset's folder; if
 * some lack it and it is uploaded, rank 0 sends its files (regular files and folders only)
 * to those ranks, which write them into a temporary folder beside the path and rename it
 * into place once complete and its index hash is rank 0's. A folder that exists is never
 * touched, whatever it holds (the index hash check that follows judges it).
 * Returns 0, or a negative code with err saying why on the ranks that have a reason (rank 0
 * lacking the dataset, an absent dataset registered by path, a failed copy); the caller
 * gathers the reasons of every rank. */
int dsync_ensure(json_t *dspec, MPI_Comm world, char *err, size_t errlen);

#endif
