/* bench_open.c: what registering one dataset costs: dataset_open's wall time, and (run
 * under /usr/bin/time -v) its peak memory. For hostile inputs: an IDX file declaring
 * millions of 1x1 images, a labels.csv naming many missing files.
 *
 * Usage: bench_open folders|csv|idx PATH */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/data.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s folders|csv|idx PATH\n", argv[0]);
        return 2;
    }
    ds_options o = {.path = argv[2], .valid_pct = -1, .seed = 1};
    if (strcmp(argv[1], "csv") == 0)
        o.format = DS_CSV;
    else if (strcmp(argv[1], "idx") == 0)
        o.format = DS_IDX;
    else
        o.format = DS_FOLDERS;
    char err[512] = "";
    dataset *ds = NULL;
    double t0 = now();
    int rc = dataset_open(&ds, &o, err, sizeof err);
    double t = now() - t0;
    if (rc) {
        printf("open: %.2f s, refused (%d): %s\n", t, rc, err);
        return 1;
    }
    const ds_info *in = dataset_info(ds);
    printf("open: %.2f s, train %d, valid %d, test %d, unreadable %d\n", t, in->count[0],
           in->count[1], in->count[2], in->n_unreadable);
    dataset_destroy(ds);
    return 0;
}
