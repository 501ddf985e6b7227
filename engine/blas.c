/* blas.c: OpenBLAS core-type detection and re-exec, thread settings. */
#include "blas.h"

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);

/* OpenBLAS's names for cores older than Haswell: what it picks when it does not
 * recognise a CPU. */
static const char *const generic_cores[] = {
    "prescott", "core2", "katmai", "coppermine", "northwood", "atom", "nehalem",
    "penryn", "dunnington", "sandybridge", "banias", "athlon", "opteron",
    "barcelona", "unknown", NULL,
};

static int is_generic(const char *core)
{
    for (int i = 0; generic_cores[i]; i++)
        if (strcasecmp(core, generic_cores[i]) == 0)
            return 1;
    return 0;
}

const char *blas_better_core(const char *current_core, int has_avx512f, int has_avx2)
{
    if (!current_core || !is_generic(current_core))
        return NULL;
    if (has_avx512f)
        return "SkylakeX";
    if (has_avx2)
        return "Haswell";
    return NULL;
}

void blas_startup(char **argv, int threads)
{
    if (!getenv("SGDRD_BLAS_REEXEC") && argv && argv[0]) {
        int reexec = 0;
        if (!getenv("OPENBLAS_CORETYPE")) {
            __builtin_cpu_init();
            const char *want = blas_better_core(openblas_get_corename(),
                                                __builtin_cpu_supports("avx512f"),
                                                __builtin_cpu_supports("avx2"));
            if (want) {
                fprintf(stderr, "sgdrd: OpenBLAS chose generic core %s; re-executing with "
                                "OPENBLAS_CORETYPE=%s\n", openblas_get_corename(), want);
                setenv("OPENBLAS_CORETYPE", want, 1);
                reexec = 1;
            }
        }
        /* libgomp's default lets idle threads spin before sleeping. Training shares the
         * cores with the loader's threads and the HTTP threads, and a thread that spins
         * while its partner is descheduled turns every one of the hundreds of parallel
         * regions of a step into a scheduler quantum: forwards many times slower on a
         * loaded machine (bench_epoch trains beside the loader's threads; see
         * bench/README.md). The policy is read when libgomp loads, hence the re-exec; a
         * user's own setting wins. */
        if (!getenv("OMP_WAIT_POLICY")) {
            setenv("OMP_WAIT_POLICY", "passive", 1);
            reexec = 1;
        }
        /* omp_set_num_threads below holds for the calling thread only: every thread
         * created later (the job worker, the HTTP threads that predict) starts from
         * libgomp's initial value, the core count, and OpenBLAS's OpenMP build follows
         * whichever thread calls it last. Only the environment read at load sets it for
         * every thread. */
        char want_threads[16];
        snprintf(want_threads, sizeof want_threads, "%d", threads);
        const char *omp_threads = getenv("OMP_NUM_THREADS");
        if (threads > 0 && (!omp_threads || strcmp(omp_threads, want_threads) != 0)) {
            setenv("OMP_NUM_THREADS", want_threads, 1);
            reexec = 1;
        }
        if (reexec) {
            setenv("SGDRD_BLAS_REEXEC", "1", 1); /* never loop */
            execv("/proc/self/exe", argv);
            fprintf(stderr, "sgdrd: re-exec failed (%s); continuing\n", strerror(errno));
        }
    }
    if (threads > 0) {
        openblas_set_num_threads(threads);
        omp_set_num_threads(threads);
    }
}

const char *blas_core_name(void) { return openblas_get_corename(); }
int blas_threads(void) { return openblas_get_num_threads(); }
