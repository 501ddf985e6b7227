/* onednn_lib.c: dlopens oneDNN on first use and resolves its functions (see onednn_lib.h). */
#include "onednn_lib.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static onednn_fns lib_fns;
static int lib_rc = -ENOENT;
static char lib_err[512];

/* dlsym of "dnnl_" NAME into the table's field NAME; on a miss, the error and a return. */
#define ONEDNN_SYM(name)                                                                      \
    do {                                                                                      \
        *(void **)&f->name = dlsym(h, "dnnl_" #name);                                         \
        if (!f->name) {                                                                       \
            snprintf(lib_err, sizeof(lib_err), "%s has no dnnl_%s", ONEDNN_LIB_SONAME, #name); \
            return -ENOENT;                                                                   \
        }                                                                                     \
    } while (0)

static int resolve(void *h, onednn_fns *f)
{
    ONEDNN_SYM(get_effective_cpu_isa);
    ONEDNN_SYM(set_verbose);
    ONEDNN_SYM(engine_create);
    ONEDNN_SYM(engine_destroy);
    ONEDNN_SYM(stream_create);
    ONEDNN_SYM(stream_wait);
    ONEDNN_SYM(stream_destroy);
    ONEDNN_SYM(memory_desc_init_by_tag);
    ONEDNN_SYM(memory_desc_get_size);
    ONEDNN_SYM(memory_create);
    ONEDNN_SYM(memory_destroy);
    ONEDNN_SYM(primitive_attr_create);
    ONEDNN_SYM(primitive_attr_destroy);
    ONEDNN_SYM(primitive_attr_set_post_ops);
    ONEDNN_SYM(primitive_attr_set_scratchpad_mode);
    ONEDNN_SYM(post_ops_create);
    ONEDNN_SYM(post_ops_destroy);
    ONEDNN_SYM(post_ops_append_sum);
    ONEDNN_SYM(convolution_forward_desc_init);
    ONEDNN_SYM(convolution_backward_data_desc_init);
    ONEDNN_SYM(convolution_backward_weights_desc_init);
    ONEDNN_SYM(matmul_desc_init);
    ONEDNN_SYM(reorder_primitive_desc_create);
    ONEDNN_SYM(primitive_desc_create);
    ONEDNN_SYM(primitive_desc_query);
    ONEDNN_SYM(primitive_desc_query_md);
    ONEDNN_SYM(primitive_desc_destroy);
    ONEDNN_SYM(primitive_create);
    ONEDNN_SYM(primitive_execute);
    ONEDNN_SYM(primitive_destroy);
    return 0;
}

#undef ONEDNN_SYM

static void load(void)
{
    /* RTLD_LOCAL: its symbols stay out of the global namespace; RTLD_NOW: a missing
     * dependency shows here, not mid-run. */
    void *h = dlopen(ONEDNN_LIB_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(lib_err, sizeof(lib_err), "%s", e ? e : ONEDNN_LIB_SONAME " not found");
        return;
    }
    /* A library short of a function stays mapped (it could not be unloaded) but unused. */
    int rc = resolve(h, &lib_fns);
    __atomic_store_n(&lib_rc, rc, __ATOMIC_RELEASE); /* after the table: see _loaded */
}

int onednn_lib_load(const onednn_fns **out)
{
    pthread_once(&lib_once, load);
    *out = lib_rc == 0 ? &lib_fns : NULL;
    return lib_rc;
}

const onednn_fns *onednn_lib_loaded(void)
{
    /* lib_rc turns 0 only after the table is filled (release), so a 0 read here (acquire)
     * sees the whole table. */
    return __atomic_load_n(&lib_rc, __ATOMIC_ACQUIRE) == 0 ? &lib_fns : NULL;
}

const char *onednn_lib_error(void)
{
    return lib_err;
}
