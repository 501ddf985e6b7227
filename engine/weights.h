/* weights.h: a net's parameters and BatchNorm buffers to and from safetensors, by
 * torchvision state-dict name. Loading is all or nothing: every name and shape is checked
 * before a single float is copied. */
#ifndef SGDRD_WEIGHTS_H
#define SGDRD_WEIGHTS_H

#include <stddef.h>

#include "net.h"
#include "safetensors.h"

/* Which tensors a load must cover. */
typedef enum weights_scope {
    WEIGHTS_ALL,      /* every parameter and buffer of the net; nothing unexpected */
    WEIGHTS_BODY,     /* the body only (groups below the head): a pretrained backbone whose
                       * own head ("fc.*") is ignored; keys the net lacks are refused */
} weights_scope;

/* Loads f into n. On any mismatch returns -EINVAL with err naming the first bad tensor
 * (shape or dtype) and listing missing and unexpected keys; n is unchanged.
 * num_batches_tracked (I64) entries are accepted and ignored. */
int weights_load_st(net *n, const st_file *f, weights_scope scope, char *err, size_t errlen);
/* The same checks without copying anything: f may be a header alone (st_parse_header). */
int weights_check_st(const net *n, const st_file *f, weights_scope scope, char *err,
                     size_t errlen);
int weights_load_file(net *n, const char *path, weights_scope scope, char *err,
                      size_t errlen);

/* Saves every parameter and buffer (plus I64 num_batches_tracked = 0 for each BatchNorm,
 * so torch's load_state_dict(strict=True) accepts the file). Atomic. */
int weights_save_file(const net *n, const char *path, char *err, size_t errlen);
int weights_save_mem(const net *n, void **out, size_t *out_len, char *err, size_t errlen);

/* Fills ts (capacity cap) with views of every parameter and buffer of n; returns the count
 * or -ENOSPC. Names point into n. For callers that add their own tensors (checkpoints). */
int weights_views(const net *n, st_tensor *ts, int cap);

#endif
