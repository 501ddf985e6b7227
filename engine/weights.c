/* weights.c: a net's parameters and buffers to and from safetensors, all or nothing. */
#include "weights.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_TRACKED ".num_batches_tracked"

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Appends to err without overflowing it. */
static void append(char *err, size_t errlen, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(err + *len, errlen - *len, fmt, ap);
    va_end(ap);
    if (k > 0)
        *len = *len + (size_t)k < errlen ? *len + (size_t)k : errlen - 1;
}

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t used = 0;
    buf[0] = 0;
    append(buf, len, &used, "[");
    for (int i = 0; i < ndim; i++)
        append(buf, len, &used, i ? ", %lld" : "%lld", (long long)shape[i]);
    append(buf, len, &used, "]");
}

static int head_group(const net *n) { return n->n_groups - 1; }

static int in_scope(const net *n, const net_tensor *t, weights_scope scope)
{
    return scope == WEIGHTS_ALL || t->group < head_group(n);
}

/* 1 when the file's tensor s can be loaded into t (F32, the same shape); else 0, and the
 * reason goes into first_bad unless it already holds one. */
static int tensor_fits(const st_tensor *s, const net_tensor *t, char *first_bad, size_t cap)
{
    int shape_ok = s->ndim == t->ndim;
    for (int d = 0; shape_ok && d < t->ndim; d++)
        shape_ok = s->shape[d] == t->shape[d];
    if (s->dtype != ST_F32) {
        if (!first_bad[0])
            snprintf(first_bad, cap, "%s: dtype must be F32", s->name);
        return 0;
    }
    if (!shape_ok) {
        if (!first_bad[0]) {
            char fs[96], ms[96];
            int64_t ts[4];
            for (int d = 0; d < t->ndim; d++)
                ts[d] = t->shape[d];
            shape_str(fs, sizeof(fs), s->ndim, s->shape);
            shape_str(ms, sizeof(ms), t->ndim, ts);
            snprintf(first_bad, cap, "%s: shape %s in the file, %s in the model", s->name, fs,
                     ms);
        }
        return 0;
    }
    return 1;
}

/* Matches f's tensors to n's: map[i] gets the net tensor of file tensor i, or -1 for one
 * skipped. 0, or -EINVAL with err naming the first bad tensor, missing and unexpected keys. */
static int weights_match(const net *n, const st_file *f, weights_scope scope, int *map,
                         char *err, size_t errlen)
{
    char *seen = calloc((size_t)n->n_tensors + 1, 1);
    if (!seen) {
        snprintf(err, errlen, "out of memory loading weights");
        return -ENOMEM;
    }
    char first_bad[NET_NAME_MAX * 2 + 128] = "";
    char missing[1024] = "", unexpected[1024] = "";
    size_t missing_len = 0, unexpected_len = 0;
    int n_missing = 0, n_unexpected = 0;

    for (int i = 0; i < f->n; i++) {
        const st_tensor *s = &f->tensors[i];
        map[i] = -1;
        if (ends_with(s->name, BN_TRACKED)) {
            if (s->dtype != ST_I64 && !first_bad[0])
                snprintf(first_bad, sizeof(first_bad), "%s: dtype must be I64", s->name);
            continue;
        }
        int idx = net_find(n, s->name);
        if (scope == WEIGHTS_BODY && (idx < 0 ? starts_with(s->name, "fc.") ||
                                                    starts_with(s->name, "head.")
                                              : !in_scope(n, &n->tensors[idx], scope)))
            continue; /* the file's own head: replaced by ours */
        if (idx < 0) {
            append(unexpected, sizeof(unexpected), &unexpected_len,
                   n_unexpected++ ? ", %s" : "%s", s->name);
            continue;
        }
        seen[idx] = 1;
        if (tensor_fits(s, &n->tensors[idx], first_bad, sizeof(first_bad)))
            map[i] = idx;
    }
    for (int t = 0; t < n->n_tensors; t++)
        if (!seen[t] && in_scope(n, &n->tensors[t], scope))
            append(missing, sizeof(missing), &missing_len, n_missing++ ? ", %s" : "%s",
                   n->tensors[t].name);

    int rc = 0;
    if (first_bad[0] || n_missing || n_unexpected) {
        size_t len = 0;
        err[0] = 0;
        append(err, errlen, &len, "weights do not match the model");
        if (first_bad[0])
            append(err, errlen, &len, "; first bad tensor %s", first_bad);
        if (n_missing)
            append(err, errlen, &len, "; %d missing keys: %s", n_missing, missing);
        if (n_unexpected)
            append(err, errlen, &len, "; %d unexpected keys: %s", n_unexpected, unexpected);
        rc = -EINVAL;
    }
    free(seen);
    return rc;
}

int weights_check_st(const net *n, const st_file *f, weights_scope scope, char *err,
                     size_t errlen)
{
    int *map = malloc(((size_t)f->n + 1) * sizeof(int));
    if (!map) {
        snprintf(err, errlen, "out of memory checking weights");
        return -ENOMEM;
    }
    int rc = weights_match(n, f, scope, map, err, errlen);
    free(map);
    return rc;
}

int weights_load_st(net *n, const st_file *f, weights_scope scope, char *err, size_t errlen)
{
    int *map = malloc(((size_t)f->n + 1) * sizeof(int));
    if (!map) {
        snprintf(err, errlen, "out of memory loading weights");
        return -ENOMEM;
    }
    int rc = weights_match(n, f, scope, map, err, errlen);
    for (int i = 0; rc == 0 && i < f->n; i++)
        if (map[i] >= 0)
            memcpy(net_tensor_data(n, map[i]), f->tensors[i].data, f->tensors[i].nbytes);
    free(map);
    return rc;
}

int weights_load_file(net *n, const char *path, weights_scope scope, char *err,
                      size_t errlen)
{
    st_file f;
    int rc = st_read_file(&f, path, err, errlen);
    if (rc < 0)
        return rc;
    rc = weights_load_st(n, &f, scope, err, errlen);
    st_free(&f);
    return rc;
}

int weights_views(const net *n, st_tensor *ts, int cap)
{
    if (n->n_tensors > cap)
        return -ENOSPC;
    for (int t = 0; t < n->n_tensors; t++) {
        const net_tensor *nt = &n->tensors[t];
        st_tensor *s = &ts[t];
        memset(s, 0, sizeof(*s));
        s->name = (char *)nt->name;
        s->dtype = ST_F32;
        s->ndim = nt->ndim;
        for (int d = 0; d < nt->ndim; d++)
            s->shape[d] = nt->shape[d];
        s->nbytes = nt->numel * sizeof(float);
        s->data = (nt->is_buffer ? n->buffers : n->params) + nt->offset;
    }
    return n->n_tensors;
}

/* Views of every tensor plus a zero num_batches_tracked per BatchNorm (torch's strict
 * load_state_dict wants them). *names and *zeros own the extra storage. */
static int full_views(const net *n, st_tensor **out, char **names, int64_t **zeros)
{
    int n_bn = 0;
    for (int t = 0; t < n->n_tensors; t++)
        n_bn += ends_with(n->tensors[t].name, ".running_mean");
    int cap = n->n_tensors + n_bn;
    st_tensor *ts = calloc((size_t)cap + 1, sizeof(*ts));
    char *nm = calloc((size_t)n_bn + 1, NET_NAME_MAX + sizeof(BN_TRACKED));
    int64_t *z = calloc((size_t)n_bn + 1, sizeof(int64_t));
    if (!ts || !nm || !z) {
        free(ts);
        free(nm);
        free(z);
        return -ENOMEM;
    }
    int k = weights_views(n, ts, cap);
    int b = 0;
    for (int t = 0; t < n->n_tensors; t++) {
        const char *name = n->tensors[t].name;
        if (!ends_with(name, ".running_mean"))
            continue;
        char *dst = nm + (size_t)b * (NET_NAME_MAX + sizeof(BN_TRACKED));
        snprintf(dst, NET_NAME_MAX + sizeof(BN_TRACKED), "%.*s%s",
                 (int)(strlen(name) - strlen(".running_mean")), name, BN_TRACKED);
        st_tensor *s = &ts[k++];
        s->name = dst;
        s->dtype = ST_I64;
        s->ndim = 0;
        s->nbytes = sizeof(int64_t);
        s->data = &z[b++];
    }
    *out = ts;
    *names = nm;
    *zeros = z;
    return k;
}

/* Writes every tensor of n to path, or to *out when path is NULL. */
static int save(const net *n, const char *path, void **out, size_t *out_len, char *err,
                size_t errlen)
{
    st_tensor *ts;
    char *names;
    int64_t *zeros;
    int k = full_views(n, &ts, &names, &zeros);
    if (k < 0) {
        snprintf(err, errlen, "out of memory saving weights");
        return k;
    }
    int rc = path ? st_write_file(path, ts, k, err, errlen)
                  : st_write_mem(out, out_len, ts, k, err, errlen);
    free(ts);
    free(names);
    free(zeros);
    return rc;
}

int weights_save_file(const net *n, const char *path, char *err, size_t errlen)
{
    return save(n, path, NULL, NULL, err, errlen);
}

int weights_save_mem(const net *n, void **out, size_t *out_len, char *err, size_t errlen)
{
    return save(n, NULL, out, out_len, err, errlen);
}
