/* sched_dump.c: prints the schedule of every iteration for the PyTorch parity tests, one
 * iteration per line.
 * Usage: sched_dump lr0 bpe n_cycle cycle_len cycle_mult
 *          the LR of an SGDR plan (warm-up off);
 *        sched_dump 1cycle lr0 bpe cycle_len div pct mom_hi mom_lo
 *          "lr momentum" of a one-cycle 1cycle plan. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lrsched.h"

int main(int argc, char **argv)
{
    int one = argc == 9 && strcmp(argv[1], "1cycle") == 0;
    if (argc != 6 && !one) {
        fprintf(stderr, "usage: %s lr0 batches_per_epoch n_cycle cycle_len cycle_mult\n"
                        "       %s 1cycle lr0 batches_per_epoch cycle_len div pct mom_hi "
                        "mom_lo\n", argv[0], argv[0]);
        return 2;
    }
    double lr0 = atof(argv[1 + one]);
    sched_plan p;
    sched_plan_defaults(&p, atoi(argv[2 + one]));
    if (one) {
        p.kind = SCHED_1CYCLE;
        p.cycle_len = atoi(argv[4]);
        p.div = atof(argv[5]);
        p.pct = atof(argv[6]);
        p.mom_hi = atof(argv[7]);
        p.mom_lo = atof(argv[8]);
    } else {
        p.n_cycle = atoi(argv[3]);
        p.cycle_len = atoi(argv[4]);
        p.cycle_mult = atoi(argv[5]);
        p.warmup = 0;
    }
    char err[128];
    if (sched_plan_check(&p, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    for (int64_t t = 0; t < sched_total_iters(&p); t++) {
        double mom;
        if (one && sched_momentum(&p, t, &mom))
            printf("%.17g %.17g\n", lr0 * sched_factor(&p, t), mom);
        else
            printf("%.17g\n", lr0 * sched_factor(&p, t));
    }
    return 0;
}
