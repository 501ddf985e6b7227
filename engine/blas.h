/* blas.h: OpenBLAS start-up. Debian's OpenBLAS 0.3.21 does not know newer CPUs and falls
 * back to its Prescott (SSE3) kernels, several times slower (`bench_engine sgemm` measures
 * it; see bench/README.md); the core type is read when the library loads, so the fix is to
 * re-exec with OPENBLAS_CORETYPE set. */
#ifndef SGDRD_BLAS_H
#define SGDRD_BLAS_H

/* Call first thing in main(). If OpenBLAS runs a generic core (Prescott, Core2, Katmai,
 * ...) on a CPU with AVX-512F or AVX2, and the user has not set OPENBLAS_CORETYPE, sets it
 * (SkylakeX or Haswell); if OMP_WAIT_POLICY is unset, sets it to passive (see blas.c);
 * with threads > 0, sets OMP_NUM_THREADS to it; and then re-executes the program once with
 * the same argv. Returns only when no re-exec was needed or it failed; with argv NULL it
 * never re-executes. threads > 0 sets the thread count of both OpenBLAS and the engine's
 * OpenMP loops in every thread (0 keeps the core count). */
void blas_startup(char **argv, int threads);

/* The OpenBLAS core in use ("Zen", "Haswell", ...) and thread count, for logs and health. */
const char *blas_core_name(void);
int blas_threads(void);

/* Which core type blas_startup would choose for this CPU and OpenBLAS core, or NULL when
 * the current one is fine. Exposed for tests. */
const char *blas_better_core(const char *current_core, int has_avx512f, int has_avx2);

#endif
