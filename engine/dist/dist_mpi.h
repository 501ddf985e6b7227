/* dist_mpi.h: the dist.h seam over Open MPI: blocking MPI_Allreduce for the small sums
 * (SyncBN, metrics), MPI_Iallreduce on a duplicate communicator for the gradient buckets,
 * all fp32/fp64 sums. Built as its own library (engine_mpi); only programs that run as MPI
 * ranks link it. The caller initialises MPI (MPI_THREAD_FUNNELED is enough: only the
 * thread that calls the engine makes MPI calls) and finalises it after dist_mpi_destroy. */
#ifndef SGDRD_DIST_MPI_H
#define SGDRD_DIST_MPI_H

#include <mpi.h>

#include "../dist.h"

/* A dist over comm (duplicated; the caller keeps its own). 0, -ENOMEM or -EIO. */
int dist_mpi_create(dist **out, MPI_Comm comm);
/* Waits for nothing: call it with no sum in flight. NULL is fine. */
void dist_mpi_destroy(dist *d);

#endif
