/* onednn_lib.h: oneDNN, loaded into the process on first use instead of linked.
 *
 * libdnnl is a C++ library of tens of megabytes; mapping it (and the libstdc++ and OpenCL
 * loader it pulls in) keeps megabytes of relocated data resident in every process, though
 * only the bf16 mode on oneDNN's kernels computes with it. So nothing links it: the first
 * onednn_lib_load() dlopens ONEDNN_LIB_SONAME and resolves the functions below into a table.
 * It is never unloaded (glibc cannot: the library defines STB_GNU_UNIQUE symbols, which mark
 * it not deletable), which is why the queries that only need an answer from oneDNN run it
 * in a child process (onednn_aside.h). dnnl.h is still needed, for the types. */
#ifndef SGDRD_ONEDNN_LIB_H
#define SGDRD_ONEDNN_LIB_H

#include <dnnl.h>

#ifndef ONEDNN_LIB_SONAME
#define ONEDNN_LIB_SONAME "libdnnl.so.2"
#endif

#define ONEDNN_FN(name) __typeof__(dnnl_##name) *name

/* The oneDNN functions the engine and its benchmark call, by their names less "dnnl_". */
typedef struct onednn_fns {
    ONEDNN_FN(get_effective_cpu_isa);
    ONEDNN_FN(set_verbose);
    ONEDNN_FN(engine_create);
    ONEDNN_FN(engine_destroy);
    ONEDNN_FN(stream_create);
    ONEDNN_FN(stream_wait);
    ONEDNN_FN(stream_destroy);
    ONEDNN_FN(memory_desc_init_by_tag);
    ONEDNN_FN(memory_desc_get_size);
    ONEDNN_FN(memory_create);
    ONEDNN_FN(memory_destroy);
    ONEDNN_FN(primitive_attr_create);
    ONEDNN_FN(primitive_attr_destroy);
    ONEDNN_FN(primitive_attr_set_post_ops);
    ONEDNN_FN(primitive_attr_set_scratchpad_mode);
    ONEDNN_FN(post_ops_create);
    ONEDNN_FN(post_ops_destroy);
    ONEDNN_FN(post_ops_append_sum);
    ONEDNN_FN(convolution_forward_desc_init);
    ONEDNN_FN(convolution_backward_data_desc_init);
    ONEDNN_FN(convolution_backward_weights_desc_init);
    ONEDNN_FN(matmul_desc_init);
    ONEDNN_FN(reorder_primitive_desc_create);
    ONEDNN_FN(primitive_desc_create);
    ONEDNN_FN(primitive_desc_query);
    ONEDNN_FN(primitive_desc_query_md);
    ONEDNN_FN(primitive_desc_destroy);
    ONEDNN_FN(primitive_create);
    ONEDNN_FN(primitive_execute);
    ONEDNN_FN(primitive_destroy);
} onednn_fns;

#undef ONEDNN_FN

/* Loads oneDNN into this process (the first call; later calls return the same table) and
 * sets *out to its functions. Returns 0, or -ENOENT when the library cannot be loaded or
 * lacks one of the functions: onednn_lib_error() then says why. Thread-safe. */
int onednn_lib_load(const onednn_fns **out);

/* The table when oneDNN is already loaded in this process, else NULL (loads nothing). */
const onednn_fns *onednn_lib_loaded(void);

/* Why loading failed ("" when it did not, or was not tried). */
const char *onednn_lib_error(void);

#endif
