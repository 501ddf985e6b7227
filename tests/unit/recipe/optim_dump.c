/* optim_dump.c: runs sgd_step or adam_step for the PyTorch parity test. Reads from stdin
 * the initial parameters (n float32) then one gradient per step (steps x n float32);
 * writes the parameters after every step (steps x n float32) to stdout.
 * Usage: optim_dump sgd|adam lr momentum|beta1 nesterov|beta2 wd decoupled steps n */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: %s sgd|adam lr momentum|beta1 nesterov|beta2 wd decoupled "
                        "steps n\n", argv[0]);
        return 2;
    }
    int adam = strcmp(argv[1], "adam") == 0;
    float lr = (float)atof(argv[2]), a = (float)atof(argv[3]), b = (float)atof(argv[4]);
    float wd = (float)atof(argv[5]);
    int decoupled = atoi(argv[6]), steps = atoi(argv[7]);
    size_t n = (size_t)atol(argv[8]);
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g);
    float *s1 = calloc(n, sizeof *s1), *s2 = calloc(n, sizeof *s2);
    int rc = 1;
    if (!p || !g || !s1 || !s2 || fread(p, sizeof *p, n, stdin) != n)
        goto out;
    for (int k = 1; k <= steps; k++) {
        if (fread(g, sizeof *g, n, stdin) != n)
            goto out;
        if (adam)
            adam_step(p, g, s1, s2, n, k, lr, a, b, 1e-8f, wd, decoupled);
        else
            sgd_step(p, g, s1, n, lr, a, (int)b, wd, decoupled);
        if (fwrite(p, sizeof *p, n, stdout) != n)
            goto out;
    }
    rc = 0;
out:
    free(p);
    free(g);
    free(s1);
    free(s2);
    return rc;
}
