/* optim_dump.c: runs sgd_step or adam_step for the PyTorch parity test. Reads from stdin
 * the initial parameters (n float32) then one gradient per step (steps x n float32);
 * writes the parameters after every step (steps x n float32) to stdout.
 * Usage: optim_dump sgd|adam lr momentum|beta1 nesterov|beta2 wd decoupled steps n
 * momentum|beta1 is one value, or one per step separated by commas: then the steps go
 * through the optim object over a one-tensor net, with optim_set_momentum before each
 * (what a 1cycle fit does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"

/* The per-step momentums of a comma list; NULL when it is not one value per step. */
static double *parse_moms(const char *s, int steps)
{
    double *m = malloc((size_t)steps * sizeof *m);
    char *end;
    for (int k = 0; m && k < steps; k++) {
        m[k] = strtod(s, &end);
        if (end == s || (k + 1 < steps ? *end != ',' : *end != '\0')) {
            free(m);
            return NULL;
        }
        s = end + 1;
    }
    return m;
}

/* Through the optim object: a net of one parameter tensor of n floats in group 0. */
static int run_optim(int adam, float *p, float *g, size_t n, int steps, double lr,
                     const double *moms, double b, double wd, int decoupled)
{
    net_tensor t = {.name = "w", .ndim = 1, .shape = {(int)n}, .numel = n};
    net nt = {.n_tensors = 1, .tensors = &t, .n_groups = 1, .n_params = n, .params = p,
              .grads = g};
    optim_config c;
    optim_config_defaults(&c);
    c.kind = adam ? OPTIM_ADAM : OPTIM_SGD;
    if (adam)
        c.beta2 = b;
    else
        c.nesterov = (int)b;
    c.decoupled_wd = decoupled;
    optim *o;
    if (optim_create(&o, &nt, &c) || optim_set_lrs(o, &lr, 1) || optim_set_wds(o, &wd, 1))
        return 1;
    int rc = 1;
    for (int k = 0; k < steps; k++) {
        if (fread(g, sizeof *g, n, stdin) != n || optim_set_momentum(o, moms[k]))
            goto out;
        optim_step(o);
        if (fwrite(p, sizeof *p, n, stdout) != n)
            goto out;
    }
    rc = 0;
out:
    optim_destroy(o);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: %s sgd|adam lr momentum|beta1[,...] nesterov|beta2 wd "
                        "decoupled steps n\n", argv[0]);
        return 2;
    }
    int adam = strcmp(argv[1], "adam") == 0;
    float lr = (float)atof(argv[2]), a = (float)atof(argv[3]), b = (float)atof(argv[4]);
    float wd = (float)atof(argv[5]);
    int decoupled = atoi(argv[6]), steps = atoi(argv[7]);
    size_t n = (size_t)atol(argv[8]);
    double *moms = NULL;
    if (strchr(argv[3], ',') && !(moms = parse_moms(argv[3], steps))) {
        fprintf(stderr, "momentum: give one value or one per step (%d)\n", steps);
        return 2;
    }
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g);
    float *s1 = calloc(n, sizeof *s1), *s2 = calloc(n, sizeof *s2);
    int rc = 1;
    if (!p || !g || !s1 || !s2 || fread(p, sizeof *p, n, stdin) != n)
        goto out;
    if (moms) {
        rc = run_optim(adam, p, g, n, steps, atof(argv[2]), moms, atof(argv[4]),
                       atof(argv[5]), decoupled);
        goto out;
    }
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
    free(moms);
    free(p);
    free(g);
    free(s1);
    free(s2);
    return rc;
}
