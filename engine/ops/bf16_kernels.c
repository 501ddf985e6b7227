/* bf16_kernels.c: which kernels run the bf16 mode in this process, chosen once.
 *
 * The bf16 contract (operands rounded to bf16, products accumulated in float32) can be
 * computed by oneDNN's bf16 kernels or by the fp32 kernels on rounded operands. Which one
 * is faster depends on the CPU: where bf16 dot products outrun float32 FMAs (AMX, or
 * AVX512_BF16 units of full width) oneDNN wins; where they do not, the fp32 path wins, the
 * more so as its 3x3 convolutions use Winograd. So the choice is measured: one GEMM of a
 * typical convolution's shape in each, single-threaded (the ratio of the per-core rates;
 * both libraries scale alike over threads), the fastest of a few repeats each. The result
 * holds for the life of the process; a net keeps the kernels it started with
 * (net_set_precision), so its runs repeat bit for bit.
 *
 * The probe runs in a child process (onednn_aside.h) unless oneDNN is already loaded here:
 * loading it costs megabytes of resident pages for the rest of the process, which a process
 * that then trains on the fp32 kernels would pay for nothing. */
#include "precision.h"

#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errmsg.h"
#include "onednn_aside.h"
#include "onednn_lib.h"

/* A mid-network 3x3 convolution as a GEMM: (pixels, K*K*C_in) x (K*K*C_in, C_out). */
#define PROBE_M 512
#define PROBE_K 1152
#define PROBE_N 256
#define PROBE_REPEATS 5

static pthread_once_t choice_once = PTHREAD_ONCE_INIT;
static bf16_kernels choice;

const char *bf16_kernels_name(bf16_kernels k)
{
    switch (k) {
    case BF16_KERNELS_ONEDNN: return "onednn";
    case BF16_KERNELS_FP32: return "fp32";
    default: return "auto";
    }
}

int bf16_kernels_parse(const char *s, bf16_kernels *out)
{
    if (s && strcmp(s, "onednn") == 0) {
        *out = BF16_KERNELS_ONEDNN;
        return 0;
    }
    if (s && strcmp(s, "fp32") == 0) {
        *out = BF16_KERNELS_FP32;
        return 0;
    }
    return -EINVAL;
}

/* CPU time of the calling thread: unlike wall time it does not count the moments other
 * processes hold the core, so a loaded host still measures the kernels themselves. */
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One sgemm of the probe's shape: its CPU time. */
static double run_sgemm(const float *a, const float *b, float *c)
{
    double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, PROBE_M, PROBE_N, PROBE_K, 1.0f, a,
                PROBE_K, b, PROBE_N, 0.0f, c, PROBE_N);
    return now_s() - t0;
}

/* The oneDNN side of the probe: a bf16 matmul of the same shape, float32 output. */
typedef struct probe_dnnl {
    const onednn_fns *f;
    dnnl_engine_t eng;
    dnnl_stream_t st;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_t ma, mb, mc;
} probe_dnnl;

static void probe_close(probe_dnnl *p)
{
    if (!p->f)
        return;
    p->f->memory_destroy(p->ma);
    p->f->memory_destroy(p->mb);
    p->f->memory_destroy(p->mc);
    p->f->primitive_destroy(p->prim);
    p->f->primitive_desc_destroy(p->pd);
    p->f->stream_destroy(p->st);
    p->f->engine_destroy(p->eng);
}

/* 0, or -ENOTSUP when oneDNN cannot be loaded or cannot make the matmul (p is then
 * closed). a16 and b16 hold the bf16 bits of the operands. */
static int probe_open(probe_dnnl *p, const uint16_t *a16, const uint16_t *b16, float *c)
{
    dnnl_memory_desc_t da, db, dc;
    dnnl_matmul_desc_t md;
    dnnl_dims_t ad = {PROBE_M, PROBE_K}, bd = {PROBE_K, PROBE_N}, cd = {PROBE_M, PROBE_N};
    memset(p, 0, sizeof(*p));
    if (onednn_lib_load(&p->f) < 0)
        return -ENOTSUP;
    const onednn_fns *f = p->f;
    if (f->engine_create(&p->eng, dnnl_cpu, 0) ||
        f->stream_create(&p->st, p->eng, dnnl_stream_default_flags) ||
        f->memory_desc_init_by_tag(&da, 2, ad, dnnl_bf16, dnnl_ab) ||
        f->memory_desc_init_by_tag(&db, 2, bd, dnnl_bf16, dnnl_ab) ||
        f->memory_desc_init_by_tag(&dc, 2, cd, dnnl_f32, dnnl_ab) ||
        f->matmul_desc_init(&md, &da, &db, NULL, &dc) ||
        f->primitive_desc_create(&p->pd, &md, NULL, p->eng, NULL) ||
        f->primitive_create(&p->prim, p->pd) ||
        f->memory_create(&p->ma, &da, p->eng, (void *)a16) ||
        f->memory_create(&p->mb, &db, p->eng, (void *)b16) ||
        f->memory_create(&p->mc, &dc, p->eng, c)) {
        probe_close(p);
        return -ENOTSUP;
    }
    return 0;
}

/* One matmul: its CPU time, or a negative value when it fails. */
static double run_dnnl(probe_dnnl *p)
{
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, p->ma}, {DNNL_ARG_WEIGHTS, p->mb}, {DNNL_ARG_DST, p->mc}};
    double t0 = now_s();
    if (p->f->primitive_execute(p->prim, p->st, 3, args) || p->f->stream_wait(p->st))
        return -1.0;
    return now_s() - t0;
}

/* The fastest of PROBE_REPEATS runs of each, alternating so that a burst of load from
 * other processes hits both alike; the first pair warms up. Called where OpenBLAS and
 * oneDNN both run single-threaded (one thread of a parallel region, or a child process set
 * to one thread): the per-core rates decide, timed in the calling thread's CPU time. */
static bf16_kernels compare(const float *a, const float *b, const uint16_t *a16,
                            const uint16_t *b16, float *c)
{
    probe_dnnl p;
    if (probe_open(&p, a16, b16, c))
        return BF16_KERNELS_FP32;
    double best32 = 1e30, best16 = 1e30;
    for (int r = 0; r <= PROBE_REPEATS; r++) {
        double t32 = run_sgemm(a, b, c), t16 = run_dnnl(&p);
        if (t16 < 0) {
            best16 = 1e30;
            break;
        }
        if (r > 0 && t32 < best32)
            best32 = t32;
        if (r > 0 && t16 < best16)
            best16 = t16;
    }
    probe_close(&p);
    return best16 < best32 ? BF16_KERNELS_ONEDNN : BF16_KERNELS_FP32;
}

/* The upper half of f: its bf16 value when f is exactly representable, as here. */
static uint16_t bf16_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return (uint16_t)(u >> 16);
}

/* FP32 unless oneDNN's bf16 matmul is measured faster than sgemm (a tie goes to fp32: its
 * convolutions also save multiplications with Winograd). With team 0 the libraries are
 * already single-threaded (the child of measure_aside); else they are made so by a team. */
static bf16_kernels measure(int team)
{
    size_t na = (size_t)PROBE_M * PROBE_K, nb = (size_t)PROBE_K * PROBE_N;
    size_t nc = (size_t)PROBE_M * PROBE_N;
    float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float));
    float *c = malloc(nc * sizeof(float));
    uint16_t *a16 = malloc(na * sizeof(uint16_t)), *b16 = malloc(nb * sizeof(uint16_t));
    bf16_kernels k = BF16_KERNELS_FP32;
    if (a && b && c && a16 && b16) {
        /* Small values exactly representable in bf16: the same numbers in both. */
        for (size_t i = 0; i < na; i++) {
            a[i] = (float)((int)(i % 17) - 8) * 0.125f;
            a16[i] = bf16_bits(a[i]);
        }
        for (size_t i = 0; i < nb; i++) {
            b[i] = (float)((int)(i % 13) - 6) * 0.25f;
            b16[i] = bf16_bits(b[i]);
        }
        if (!team) {
            k = compare(a, b, a16, b16, c);
        } else {
            /* A team of two: a team of one is no active parallel region, and the libraries
             * would thread their GEMMs; the second thread only waits at the barrier. */
#pragma omp parallel num_threads(2)
            {
                if (omp_get_thread_num() == 0)
                    k = compare(a, b, a16, b16, c);
            }
        }
    }
    free(a);
    free(b);
    free(c);
    free(a16);
    free(b16);
    return k;
}

/* The child's side: no OpenMP team may start after fork, so one thread by setting. */
static void measure_child(void *out, size_t size)
{
    omp_set_num_threads(1);
    openblas_set_num_threads(1);
    bf16_kernels k = measure(0);
    memcpy(out, &k, size);
}

/* measure() in a child process, so that oneDNN stays out of this one; here when oneDNN is
 * loaded already (nothing to save) or no child can run. */
static bf16_kernels measure_aside(void)
{
    bf16_kernels k;
    if (!onednn_lib_loaded() && onednn_aside_run(measure_child, &k, sizeof(k)) == 0)
        return k;
    return measure(1);
}

static void choose(void)
{
    const char *env = getenv("SGDRD_BF16_KERNELS");
    if (env && *env) {
        int ok = bf16_kernels_parse(env, &choice) == 0;
        if (ok && choice == BF16_KERNELS_ONEDNN && !precision_onednn_loadable())
            fprintf(stderr, "sgdrd: SGDRD_BF16_KERNELS=onednn ignored: oneDNN (%s) cannot be "
                    "loaded here; the fp32 kernels run bf16\n", ONEDNN_LIB_SONAME);
        else if (ok)
            return;
        else
            fprintf(stderr, "sgdrd: SGDRD_BF16_KERNELS=%s ignored (onednn or fp32); "
                    "measuring\n", env);
    }
    choice = precision_onednn_loadable() ? measure_aside() : BF16_KERNELS_FP32;
}

bf16_kernels bf16_kernels_choice(void)
{
    pthread_once(&choice_once, choose);
    return choice;
}

int bf16_kernels_check(bf16_kernels k, char *err, size_t errlen)
{
    if (k != BF16_KERNELS_ONEDNN || precision_onednn_loadable())
        return 0;
    err_set(err, errlen, "bf16_kernels: onednn needs oneDNN (%s), which cannot be loaded here "
            "(use fp32 kernels, or auto)", ONEDNN_LIB_SONAME);
    return -ENOTSUP;
}
