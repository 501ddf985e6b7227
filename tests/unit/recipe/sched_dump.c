/* sched_dump.c: prints the LR of every iteration of an SGDR plan (warm-up off), one per
 * line, for the PyTorch parity test. Usage: sched_dump lr0 bpe n_cycle cycle_len cycle_mult */
#include <stdio.h>
#include <stdlib.h>

#include "lrsched.h"

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s lr0 batches_per_epoch n_cycle cycle_len cycle_mult\n",
                argv[0]);
        return 2;
    }
    double lr0 = atof(argv[1]);
    sched_plan p;
    sched_plan_defaults(&p, atoi(argv[2]));
    p.n_cycle = atoi(argv[3]);
    p.cycle_len = atoi(argv[4]);
    p.cycle_mult = atoi(argv[5]);
    p.warmup = 0;
    char err[128];
    if (sched_plan_check(&p, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    for (int64_t t = 0; t < sched_total_iters(&p); t++)
        printf("%.17g\n", lr0 * sched_factor(&p, t));
    return 0;
}
