/* precision.c: precision names and the CPU's bf16 support, as oneDNN sees it. */
#include "precision.h"

#include <errno.h>
#include <string.h>

#include <dnnl.h>

const char *precision_name(precision p)
{
    return p == PRECISION_BF16 ? "bf16" : "fp32";
}

int precision_bf16_supported(void)
{
    /* The ISA flags are cumulative bit sets: bf16 support means every bit of
     * avx512_core_bf16 is present (avx512_core_amx includes them). oneDNN also runs bf16
     * on plain AVX-512 by emulation, far slower than fp32: that does not count. */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    unsigned need = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return (isa & need) == need;
}

const char *precision_onednn_isa(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
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
