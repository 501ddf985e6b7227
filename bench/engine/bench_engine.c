/* bench_engine.c: training and evaluation throughput of the engine on one model case, with
 * peak resident memory and achieved GFLOP/s, and a cblas_sgemm peak for comparison.
 * Prints one JSON object; bench/engine/run_bench.py runs every case and PyTorch beside it.
 * A bf16 case on oneDNN's kernels runs its first warm-up step with oneDNN's verbose output
 * on (lines before the JSON), so the script can tell which kernels ran.
 *
 * usage: bench_engine ARCH plain|fastai C_IN SIZE BATCH train|eval|head ITERS [fp32|bf16]
 *        bench_engine sgemm N
 *        bench_engine gemm-bf16 N   (oneDNN's bf16 matmul with fp32 output: the bf16 peak)
 *        bench_engine sgemm-check COUNT
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cblas.h>

#include "blas.h"
#include "models/models.h"
#include "net.h"
#include "ops/onednn_lib.h"
#include "optim.h"
#include "rng.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (all threads): on a shared host wall-clock speed moves
 * with the load, CPU time much less. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Multiply-adds of convolutions and linear layers in one step, times 2 for FLOPs: the
 * forward of every layer, plus, for trainable layers, the weight gradient and (unless the
 * layer's input needs no gradient) the input gradient. */
static double step_flops(const net *n, int training)
{
    double total = 0;
    for (int i = 1; i < n->n_nodes; i++) {
        const node *d = &n->nodes[i];
        const node *src = &n->nodes[d->in[0]];
        double macs;
        if (d->kind == NODE_CONV)
            macs = (double)n->batch * d->h * d->w * d->c * src->c * d->k * d->k;
        else if (d->kind == NODE_LINEAR)
            macs = (double)n->batch * d->c * src->c;
        else
            continue;
        double passes = 1;
        if (training && d->group >= n->freeze_to) {
            passes += 1; /* weight gradient */
            if (src->kind != NODE_INPUT && src->group >= n->freeze_to)
                passes += 1; /* input gradient */
        }
        total += 2 * macs * passes;
    }
    return total;
}

static int bench_sgemm(int n)
{
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n);
    float *c = malloc(sizeof(float) * n * n);
    uint64_t r = 1;
    for (int i = 0; i < n * n; i++) {
        a[i] = rng_uniform(&r);
        b[i] = rng_uniform(&r);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    int reps = 3;
    double t0 = now();
    for (int i = 0; i < reps; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c,
                    n);
    double dt = now() - t0;
    printf("{\"sgemm_n\": %d, \"gflops\": %.1f, \"blas_core\": \"%s\", \"threads\": %d}\n", n,
           2.0 * n * n * (double)n * reps / dt * 1e-9, blas_core_name(), blas_threads());
    free(a);
    free(b);
    free(c);
    return 0;
}

/* oneDNN's functions, once loaded (onednn_lib.h): only the bf16 cases on its kernels and
 * gemm-bf16 load it, so that the fp32 cases measure a process without it. */
static const onednn_fns *dn;

static void dnnl_ok(dnnl_status_t st, const char *what)
{
    if (st != dnnl_success) {
        fprintf(stderr, "bench_engine: oneDNN %s failed (%d)\n", what, (int)st);
        exit(1);
    }
}

static dnnl_memory_t dnnl_mem(dnnl_engine_t eng, const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m;
    dnnl_ok(dn->memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE), "memory_create");
    return m;
}

/* C (N x N, fp32) = A (N x N, bf16) * B (N x N, bf16) on oneDNN's matmul: the bf16 peak,
 * as cblas_sgemm's is the fp32 one. The operands hold zeros (speed does not depend on
 * values). */
static int bench_gemm_bf16(int n)
{
    if (onednn_lib_load(&dn) < 0) {
        fprintf(stderr, "bench_engine: no oneDNN: %s\n", onednn_lib_error());
        return 1;
    }
    dnnl_engine_t eng;
    dnnl_stream_t st;
    dnnl_ok(dn->engine_create(&eng, dnnl_cpu, 0), "engine_create");
    dnnl_ok(dn->stream_create(&st, eng, dnnl_stream_default_flags), "stream_create");
    dnnl_dims_t d = {n, n};
    dnnl_memory_desc_t a, c;
    dnnl_ok(dn->memory_desc_init_by_tag(&a, 2, d, dnnl_bf16, dnnl_ab), "md");
    dnnl_ok(dn->memory_desc_init_by_tag(&c, 2, d, dnnl_f32, dnnl_ab), "md");
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    dnnl_ok(dn->matmul_desc_init(&md, &a, &a, NULL, &c), "matmul_desc");
    dnnl_ok(dn->primitive_desc_create(&pd, &md, NULL, eng, NULL), "matmul_pd");
    dnnl_ok(dn->primitive_create(&p, pd), "matmul");
    const char *impl = "";
    dn->primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, dnnl_mem(eng, &a)},
                               {DNNL_ARG_WEIGHTS, dnnl_mem(eng, &a)},
                               {DNNL_ARG_DST, dnnl_mem(eng, &c)}};
    int reps = 3;
    double t0 = 0;
    for (int i = -1; i < reps; i++) {
        if (i == 0)
            t0 = now();
        dnnl_ok(dn->primitive_execute(p, st, 3, args), "execute");
    }
    dnnl_ok(dn->stream_wait(st), "stream_wait");
    double dt = now() - t0;
    printf("{\"gemm_bf16_n\": %d, \"gflops\": %.1f, \"impl\": \"%s\", \"onednn_isa\": "
           "\"%s\", \"threads\": %d}\n", n, 2.0 * n * n * (double)n * reps / dt * 1e-9, impl,
           precision_onednn_isa(), blas_threads());
    for (int i = 0; i < 3; i++)
        dn->memory_destroy(args[i].memory);
    dn->primitive_destroy(p);
    dn->primitive_desc_destroy(pd);
    dn->stream_destroy(st);
    dn->engine_destroy(eng);
    return 0;
}

/* COUNT random products (sizes up to 2048 x 300 x 600, either operand transposed, beta 0
 * or 0.5) against a double-precision reference: whether the OpenBLAS core in use computes
 * right on this CPU before its speed is worth anything (OPENBLAS_CORETYPE picks the core).
 * An element is wrong when it is off by more than 1e-5 sqrt(K); exits 1 on the first. */
static int sgemm_check(int count)
{
    uint64_t r = 11;
    double worst = 0.0;
    for (int it = 0; it < count; it++) {
        int m = 1 + (int)rng_below(&r, it % 3 == 0 ? 2048 : 300);
        int n = 1 + (int)rng_below(&r, 300), k = 1 + (int)rng_below(&r, 600);
        int ta = (int)rng_below(&r, 2), tb = (int)rng_below(&r, 2);
        float beta = rng_below(&r, 2) ? 0.5f : 0.0f;
        float *a = malloc(sizeof(float) * (size_t)m * k);
        float *b = malloc(sizeof(float) * (size_t)k * n);
        float *c = malloc(sizeof(float) * (size_t)m * n);
        double *ref = malloc(sizeof(double) * (size_t)m * n);
        if (!a || !b || !c || !ref) {
            fprintf(stderr, "sgemm-check: out of memory\n");
            free(a);
            free(b);
            free(c);
            free(ref);
            return 1;
        }
        for (size_t i = 0; i < (size_t)m * k; i++)
            a[i] = rng_normal(&r);
        for (size_t i = 0; i < (size_t)k * n; i++)
            b[i] = rng_normal(&r);
        for (size_t i = 0; i < (size_t)m * n; i++) {
            c[i] = rng_normal(&r);
            ref[i] = (double)beta * c[i];
        }
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++) {
                double av = ta ? a[(size_t)p * m + i] : a[(size_t)i * k + p];
                for (int j = 0; j < n; j++)
                    ref[(size_t)i * n + j] +=
                        av * (tb ? b[(size_t)j * k + p] : b[(size_t)p * n + j]);
            }
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                    tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, ta ? m : k, b,
                    tb ? k : n, beta, c, n);
        int bad = -1;
        for (size_t i = 0; i < (size_t)m * n && bad < 0; i++) {
            double e = fabs(c[i] - ref[i]) / sqrt((double)k);
            if (!(e <= 1e-5))
                bad = (int)i;
            else if (e > worst)
                worst = e;
        }
        if (bad >= 0)
            fprintf(stderr, "sgemm-check: %dx%dx%d (trans %d %d, beta %g): %g where %g is "
                    "right\n", m, n, k, ta, tb, (double)beta, (double)c[bad], ref[bad]);
        free(a);
        free(b);
        free(c);
        free(ref);
        if (bad >= 0)
            return 1;
    }
    printf("{\"sgemm_check\": %d, \"worst_error_per_sqrt_k\": %.3g, \"blas_core\": \"%s\", "
           "\"threads\": %d}\n", count, worst, blas_core_name(), blas_threads());
    return 0;
}

int main(int argc, char **argv)
{
    blas_startup(argv, 2);
    if (argc == 3 && strcmp(argv[1], "sgemm") == 0)
        return bench_sgemm(atoi(argv[2]));
    if (argc == 3 && strcmp(argv[1], "gemm-bf16") == 0)
        return bench_gemm_bf16(atoi(argv[2]));
    if (argc == 3 && strcmp(argv[1], "sgemm-check") == 0)
        return sgemm_check(atoi(argv[2]));
    if (argc != 8 && argc != 9) {
        fprintf(stderr, "usage: bench_engine ARCH plain|fastai C_IN SIZE BATCH "
                        "train|eval|head ITERS [fp32|bf16] | bench_engine sgemm|gemm-bf16 N | "
                        "bench_engine "
                        "sgemm-check COUNT\n");
        return 2;
    }
    model_spec s;
    model_spec_defaults(&s);
    s.arch = argv[1];
    s.head = strcmp(argv[2], "plain") == 0 ? HEAD_PLAIN : HEAD_FASTAI;
    s.c_in = atoi(argv[3]);
    s.n_classes = 10;
    s.seed = 1;
    int size = atoi(argv[4]), bs = atoi(argv[5]), iters = atoi(argv[7]);
    const char *mode = argv[6];
    int training = strcmp(mode, "eval") != 0;
    char err[256];
    net *n = NULL;
    optim *opt = NULL;
    optim_config oc;
    optim_config_defaults(&oc);
    precision prec = PRECISION_FP32;
    if (argc == 9 && precision_parse(argv[8], &prec) < 0) {
        fprintf(stderr, "bench_engine: precision '%s' is not fp32 or bf16 on this CPU\n",
                argv[8]);
        return 2;
    }
    if (model_create(&n, &s, err, sizeof(err)) < 0 || net_set_precision(n, prec) < 0 ||
        net_set_batch(n, bs, size, size) < 0 || optim_create(&opt, n, &oc) < 0 ||
        net_set_fused_backward(n, 1) < 0) { /* the learner's step (lrn_train_step) */
        fprintf(stderr, "bench_engine: cannot build %s: %s\n", s.arch, err);
        return 1;
    }
    const double lr = 0.01, wd = 1e-4;
    optim_set_lrs(opt, &lr, 1);
    optim_set_wds(opt, &wd, 1);
    if (strcmp(mode, "head") == 0)
        net_freeze_to(n, n->n_groups - 1);
    size_t nx = (size_t)bs * size * size * s.c_in;
    float *x = malloc(nx * sizeof(float));
    int32_t *y = malloc((size_t)bs * sizeof(int32_t));
    uint64_t r = 7;
    for (size_t i = 0; i < nx; i++)
        x[i] = rng_normal(&r);
    for (int i = 0; i < bs; i++)
        y[i] = (int32_t)rng_below(&r, 10);

    /* oneDNN's verbose lines of the first step tell run_bench.py which kernels ran; the
     * fp32 kernels need no oneDNN, so their cases never load it. */
    if (prec == PRECISION_BF16 && n->bf16_kernels == BF16_KERNELS_ONEDNN &&
        onednn_lib_load(&dn) < 0)
        dn = NULL;
    double t0 = 0, c0 = 0, loss = 0;
    for (int it = -2; it < iters; it++) { /* two warm-up steps */
        if (it == 0) {
            t0 = now();
            c0 = cpu_now();
        }
        if (dn)
            dn->set_verbose(it == -2 ? 1 : 0);
        if (training) {
            net_forward(n, x, 1);
            loss = net_loss(n, y, NULL);
            optim_backward_step(opt, y, NULL);
        } else {
            net_forward(n, x, 0);
            loss = net_loss(n, y, NULL);
        }
    }
    double dt = now() - t0, cpu = cpu_now() - c0;
    double flops = step_flops(n, training) * iters;
    /* The peak before the ISA query: asking oneDNN must not count in it (it runs in a child
     * process unless oneDNN is loaded here anyway). */
    double peak_mb = peak_rss_mb();
    printf("{\"arch\": \"%s\", \"mode\": \"%s\", \"precision\": \"%s\", \"img_per_s\": %.1f, "
           "\"img_per_cpu_s\": %.1f, \"gflops\": %.1f, \"peak_rss_mb\": %.1f, \"loss\": %.4f, \"params\": %zu, "
           "\"onednn_isa\": \"%s\", \"bf16_kernels\": \"%s\"}\n",
           s.arch, mode, precision_name(prec), bs * iters / dt, bs * iters / cpu,
           flops / dt * 1e-9,
           peak_mb, loss, n->n_params, precision_onednn_isa(),
           prec == PRECISION_BF16 ? bf16_kernels_name(n->bf16_kernels) : "none");
    free(x);
    free(y);
    optim_destroy(opt);
    net_destroy(n);
    return 0;
}
