/* test_memory.c: the memory estimate and admission of learner_memory.h: a run far too big
 * is refused at once naming bs and sz, a normal one admitted, and the estimate measured
 * against the peak resident memory of a real fit in a child process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "learner_memory.h"

/* A field of /proc/self/status in KiB. */
static double status_kb(const char *key)
{
    char line[256];
    double kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0)
            kb = strtod(line + strlen(key) + 1, NULL);
    fclose(f);
    return kb;
}

static lmem_run run_of(const char *arch, int sz, int bs)
{
    lmem_run r;
    memset(&r, 0, sizeof r);
    model_spec_defaults(&r.model);
    r.model.arch = arch;
    r.model.n_classes = 10;
    r.sz = sz;
    r.bs = bs;
    r.n_train = 60000;
    r.n_valid = 10000;
    r.image_bytes = 28 * 28 * 3;
    return r;
}

static void huge_run_refused_naming_bs_and_sz(void **state)
{
    (void)state;
    lmem_run r = run_of("resnet_small", 1024, 4096);
    const char *field = NULL;
    char err[1024] = "";
    double hwm = status_kb("VmHWM:");
    int rc = lmem_admit(&r, 16.0 * (1 << 30), "--memory-limit", &field, err, sizeof err);
    assert_int_equal(rc, -ENOMEM);
    assert_non_null(field);
    assert_string_equal(field, "bs");
    assert_non_null(strstr(err, "bs 4096 at sz 1024"));
    assert_non_null(strstr(err, "lower bs to"));
    assert_non_null(strstr(err, "--memory-limit"));
    /* Judged from the plan: nothing of that size was allocated. */
    assert_true(status_kb("VmHWM:") - hwm < 100 * 1024);
}

static void normal_run_admitted(void **state)
{
    (void)state;
    lmem_run r = run_of("resnet_small", 28, 64);
    const char *field = NULL;
    char err[1024] = "";
    lmem_parts p;
    assert_int_equal(lmem_admit(&r, 4.0 * (1 << 30), "MemAvailable", &field, err, sizeof err),
                     0);
    assert_null(field);
    assert_int_equal(lmem_estimate(&r, &p, err, sizeof err), 0);
    assert_true(p.total > 0 && p.total < 1.0 * (1 << 30));
    assert_true(p.weights > 0 && p.activations > 0 && p.loaders > 0);
    /* Unknown availability admits. */
    assert_int_equal(lmem_admit(&r, 0, "MemAvailable", &field, err, sizeof err), 0);
    const char *src = NULL;
    assert_true(lmem_available(123456, &src) == 123456);
    assert_string_equal(src, "--memory-limit");
    assert_true(lmem_available(0, &src) > 0);
    assert_string_equal(src, "MemAvailable");
}

/* Fits one epoch of c in a child and returns its peak RSS growth in bytes. */
static double measured_fit_bytes(const learner_config *c)
{
    int fd[2];
    double growth = -1;
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];
        double before = status_kb("VmRSS:");
        dataset *ds = fx_open_ds(fx_small);
        learner *l = NULL;
        fit_opts o = {.n_lrs = 1, .lrs = {0.01}, .n_cycle = 1, .schedule = SCHED_CONSTANT};
        double g = -1;
        if (ds && learner_create(&l, c, ds, err, sizeof err) == 0 &&
            learner_fit(l, &o, NULL, err, sizeof err) == 0)
            g = (status_kb("VmHWM:") - before) * 1024;
        if (write(fd[1], &g, sizeof g) != sizeof g)
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    assert_int_equal(read(fd[0], &growth, sizeof growth), sizeof growth);
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return growth;
}

/* The estimate of a learner as a fit holds it (no prediction learner beside it) against
 * what a fit of it really reached, for a few sizes. */
static void estimate_against_measured(void **state)
{
    (void)state;
    static const struct { const char *arch; int sz, bs; } cases[] = {
        {"resnet_small", 64, 64}, {"resnet_small", 128, 32}, {"resnet18", 64, 32}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        learner_config c;
        lmem_run r;
        lmem_parts p;
        char err[256] = "";
        fx_base_config(&c);
        c.model.arch = cases[i].arch;
        c.sz = cases[i].sz;
        c.bs = cases[i].bs;
        memset(&r, 0, sizeof r);
        r.model = c.model;
        r.model.c_in = 1;
        r.model.n_classes = N_CLASSES;
        r.sz = c.sz;
        r.bs = c.bs;
        r.loader_threads = c.loader_threads;
        r.n_train = N_SMALL;
        r.n_valid = N_SMALL / 4;
        r.image_bytes = SZ * SZ;
        assert_int_equal(lmem_estimate(&r, &p, err, sizeof err), 0);
        double est = p.total - p.predict, got = measured_fit_bytes(&c);
        assert_true(got > 0);
        printf("%s sz %d bs %d: estimate %.1f MB, measured peak growth %.1f MB, "
               "ratio %.2f\n", cases[i].arch, c.sz, c.bs, est / 1e6, got / 1e6, est / got);
        /* The stated bound (docs/reliability.md): within a factor of 2 either way. */
        assert_true(est / got > 0.5 && est / got < 2.0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(huge_run_refused_naming_bs_and_sz),
        cmocka_unit_test(normal_run_admitted),
        cmocka_unit_test(estimate_against_measured),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
