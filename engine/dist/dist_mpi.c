/* dist_mpi.c: dist.h's sums on Open MPI (see dist_mpi.h). */
#include "dist_mpi.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct mpi_ctx {
    MPI_Comm small;     /* blocking sums */
    MPI_Comm grads;     /* gradient buckets, so their requests never meet the small sums */
    MPI_Request *reqs;  /* started and not yet waited for */
    int n_reqs, cap_reqs;
} mpi_ctx;

static int mpi_sum_f64(void *ctx, double *v, size_t n)
{
    mpi_ctx *c = ctx;
    if (n > (size_t)INT32_MAX)
        return -EINVAL;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, c->small);
    return rc == MPI_SUCCESS ? 0 : -EIO;
}

static int mpi_isum_f32(void *ctx, float *v, size_t n)
{
    mpi_ctx *c = ctx;
    if (n > (size_t)INT32_MAX)
        return -EINVAL;
    if (c->n_reqs == c->cap_reqs) {
        /* Grows during the first backward only: later ones start as many buckets. */
        int cap = c->cap_reqs ? 2 * c->cap_reqs : 32;
        MPI_Request *r = realloc(c->reqs, sizeof *r * (size_t)cap);
        if (!r)
            return -ENOMEM;
        c->reqs = r;
        c->cap_reqs = cap;
    }
    int rc = MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, c->grads,
                            &c->reqs[c->n_reqs]);
    if (rc != MPI_SUCCESS)
        return -EIO;
    c->n_reqs++;
    return 0;
}

static int mpi_progress(void *ctx)
{
    mpi_ctx *c = ctx;
    int done = 0;
    if (c->n_reqs == 0)
        return 0;
    int rc = MPI_Testall(c->n_reqs, c->reqs, &done, MPI_STATUSES_IGNORE);
    return rc == MPI_SUCCESS ? 0 : -EIO;
}

static int mpi_wait_all(void *ctx)
{
    mpi_ctx *c = ctx;
    int rc = c->n_reqs ? MPI_Waitall(c->n_reqs, c->reqs, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
    c->n_reqs = 0;
    return rc == MPI_SUCCESS ? 0 : -EIO;
}

static const dist_ops mpi_ops = {
    .sum_f64 = mpi_sum_f64,
    .isum_f32 = mpi_isum_f32,
    .progress = mpi_progress,
    .wait_all = mpi_wait_all,
};

int dist_mpi_create(dist **out, MPI_Comm comm)
{
    *out = NULL;
    dist *d = calloc(1, sizeof *d);
    mpi_ctx *c = calloc(1, sizeof *c);
    if (!d || !c) {
        free(d);
        free(c);
        return -ENOMEM;
    }
    c->small = c->grads = MPI_COMM_NULL;
    if (MPI_Comm_dup(comm, &c->small) != MPI_SUCCESS ||
        MPI_Comm_dup(comm, &c->grads) != MPI_SUCCESS ||
        MPI_Comm_rank(comm, &d->rank) != MPI_SUCCESS ||
        MPI_Comm_size(comm, &d->size) != MPI_SUCCESS) {
        d->ops = &mpi_ops;
        d->ctx = c;
        dist_mpi_destroy(d);
        return -EIO;
    }
    d->ops = &mpi_ops;
    d->ctx = c;
    d->overlap = 1;
    *out = d;
    return 0;
}

void dist_mpi_destroy(dist *d)
{
    if (!d)
        return;
    mpi_ctx *c = d->ctx;
    if (c) {
        if (c->small != MPI_COMM_NULL)
            MPI_Comm_free(&c->small);
        if (c->grads != MPI_COMM_NULL)
            MPI_Comm_free(&c->grads);
        free(c->reqs);
        free(c);
    }
    free(d);
}
