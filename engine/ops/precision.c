/* precision.c: precision names and the CPU's bf16 support, as oneDNN sees it.
 *
 * oneDNN's answer (its effective ISA, which ONEDNN_MAX_CPU_ISA can cap) is asked once per
 * process, in a child process unless oneDNN is already loaded here: a process that never
 * runs oneDNN's kernels does not map it (onednn_lib.h). Where the library cannot be loaded
 * the CPU's own flags decide bf16 support, and the bf16 mode runs on the fp32 kernels. */
#include "precision.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "onednn_aside.h"
#include "onednn_lib.h"

#define ISA_NONE (-1) /* oneDNN cannot be loaded */

static pthread_once_t isa_once = PTHREAD_ONCE_INIT;
static int isa_value = ISA_NONE;

const char *precision_name(precision p)
{
    return p == PRECISION_BF16 ? "bf16" : "fp32";
}

/* oneDNN's effective ISA, or ISA_NONE: loads oneDNN where it runs. */
static void isa_ask(void *out, size_t size)
{
    const onednn_fns *f;
    int v = onednn_lib_load(&f) == 0 ? (int)f->get_effective_cpu_isa() : ISA_NONE;
    memcpy(out, &v, size);
}

static void isa_query(void)
{
    const onednn_fns *f = onednn_lib_loaded();
    if (f)
        isa_value = (int)f->get_effective_cpu_isa();
    else if (onednn_aside_run(isa_ask, &isa_value, sizeof(isa_value)) < 0)
        isa_ask(&isa_value, sizeof(isa_value)); /* no child: ask here, at the cost of the map */
}

static int isa(void)
{
    pthread_once(&isa_once, isa_query);
    return isa_value;
}

int precision_onednn_loadable(void)
{
    return isa() != ISA_NONE;
}

int precision_bf16_supported(void)
{
    int v = isa();
    if (v == ISA_NONE)
        return __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    /* The ISA flags are cumulative bit sets: bf16 support means every bit of
     * avx512_core_bf16 is present (avx512_core_amx includes them). oneDNN also runs bf16
     * on plain AVX-512 by emulation, far slower than fp32: that does not count. */
    unsigned need = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return ((unsigned)v & need) == need;
}

const char *precision_onednn_isa(void)
{
    int v = isa();
    if (v == ISA_NONE)
        return "unavailable";
    switch ((dnnl_cpu_isa_t)v) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
    }
}

int precision_parse(const char *s, precision *out)
{
    if (!s)
        return -EINVAL;
    if (strcmp(s, "fp32") == 0) {
        *out = PRECISION_FP32;
        return 0;
    }
    if (strcmp(s, "auto") == 0) {
        *out = precision_bf16_supported() ? PRECISION_BF16 : PRECISION_FP32;
        return 0;
    }
    if (strcmp(s, "bf16") == 0) {
        if (!precision_bf16_supported())
            return -ENOTSUP;
        *out = PRECISION_BF16;
        return 0;
    }
    return -EINVAL;
}
