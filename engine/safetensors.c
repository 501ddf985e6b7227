/* safetensors.c: reading (fully validated) and atomic writing of safetensors files. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* The reference implementation refuses headers above 100 MB; so do we, before parsing. */
#define ST_MAX_HEADER (100u * 1000 * 1000)

static size_t dtype_size(st_dtype d)
{
    return d == ST_I64 ? 8 : 4;
}

static const char *dtype_name(st_dtype d)
{
    return d == ST_I64 ? "I64" : "F32";
}

void st_free(st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->blob);
    memset(f, 0, sizeof(*f));
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

/* Fills t (name excluded) from one header entry; begin/end are offsets into the data
 * section of length data_len. */
static int parse_entry(st_tensor *t, size_t *begin, size_t *end, const char *name,
                       json_t *e, size_t data_len, char *err, size_t errlen)
{
    if (!json_is_object(e)) {
        err_set(err, errlen, "tensor '%s': header entry is not a JSON object", name);
        return -EINVAL;
    }
    json_t *jd = json_object_get(e, "dtype");
    json_t *js = json_object_get(e, "shape");
    json_t *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd)) {
        err_set(err, errlen, "tensor '%s': missing or non-string dtype", name);
        return -EINVAL;
    }
    const char *ds = json_string_value(jd);
    if (strcmp(ds, "F32") == 0) {
        t->dtype = ST_F32;
    } else if (strcmp(ds, "I64") == 0) {
        t->dtype = ST_I64;
    } else {
        err_set(err, errlen, "tensor '%s': dtype %s not supported (only F32 and I64)", name,
                ds);
        return -EINVAL;
    }
    if (!json_is_array(js)) {
        err_set(err, errlen, "tensor '%s': missing or non-array shape", name);
        return -EINVAL;
    }
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS) {
        err_set(err, errlen, "tensor '%s': %zu dimensions (at most %d)", name, nd,
                ST_MAX_DIMS);
        return -EINVAL;
    }
    t->ndim = (int)nd;
    uint64_t count = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *v = json_array_get(js, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            err_set(err, errlen, "tensor '%s': shape[%zu] is not a non-negative integer",
                    name, i);
            return -EINVAL;
        }
        t->shape[i] = json_integer_value(v);
        if (__builtin_mul_overflow(count, (uint64_t)t->shape[i], &count))
            overflow = 1;
    }
    if (!overflow && __builtin_mul_overflow(count, (uint64_t)dtype_size(t->dtype), &count))
        overflow = 1;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1))) {
        err_set(err, errlen, "tensor '%s': data_offsets is not a pair of integers", name);
        return -EINVAL;
    }
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b || (uint64_t)en > data_len) {
        err_set(err, errlen,
                "tensor '%s': data_offsets [%lld, %lld] outside the data section of %zu "
                "bytes",
                name, (long long)b, (long long)en, data_len);
        return -EINVAL;
    }
    if (overflow) {
        err_set(err, errlen,
                "tensor '%s': shape holds too many bytes of %s (data_offsets span %lld)",
                name, ds, (long long)(en - b));
        return -EINVAL;
    }
    if (count != (uint64_t)(en - b)) {
        err_set(err, errlen, "tensor '%s': shape needs %llu bytes of %s but data_offsets span "
                "%lld bytes", name, (unsigned long long)count, ds, (long long)(en - b));
        return -EINVAL;
    }
    *begin = (size_t)b;
    *end = (size_t)en;
    t->nbytes = (size_t)(en - b);
    return 0;
}

typedef struct span {
    size_t begin, end;
    int idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

/* Checks that the tensors tile the data section exactly: no overlap, no gap, no tail. */
static int check_coverage(const st_file *f, span *sp, size_t data_len, char *err,
                          size_t errlen)
{
    qsort(sp, (size_t)f->n, sizeof(*sp), span_cmp);
    size_t pos = 0;
    for (int i = 0; i < f->n; i++) {
        const char *name = f->tensors[sp[i].idx].name;
        if (sp[i].begin < pos) {
            err_set(err, errlen, "tensor '%s': data_offsets overlap tensor '%s'", name,
                    f->tensors[sp[i - 1].idx].name);
            return -EINVAL;
        }
        if (sp[i].begin > pos) {
            err_set(err, errlen,
                    "tensor '%s': gap of %zu unreferenced bytes before its data_offsets",
                    name, sp[i].begin - pos);
            return -EINVAL;
        }
        pos = sp[i].end;
    }
    if (pos != data_len) {
        if (f->n > 0)
            err_set(err, errlen, "%zu unreferenced bytes after tensor '%s'", data_len - pos,
                    f->tensors[sp[f->n - 1].idx].name);
        else
            err_set(err, errlen, "%zu data bytes but no tensors", data_len);
        return -EINVAL;
    }
    return 0;
}

/* Checks the header length of f's blob, and moves the data section of a header that
 * leaves it unaligned to an 8-byte boundary (f->blob and blob_len change then; *pad gets
 * the bytes added). The format does not pad its header, but tensor data is read as float
 * and int64: after the move every tensor whose offsets are multiples of its element size
 * is aligned. */
static int blob_header(st_file *f, uint64_t *hlen, size_t *pad, char *err, size_t errlen)
{
    size_t len = f->blob_len;
    *pad = 0;
    if (len < 8) {
        err_set(err, errlen, "file of %zu bytes is too short for the 8-byte header length",
                len);
        return -EINVAL;
    }
    memcpy(hlen, f->blob, 8);
    if (*hlen > len - 8) {
        err_set(err, errlen, "header length %llu is beyond the file size of %zu bytes",
                (unsigned long long)*hlen, len);
        return -EINVAL;
    }
    if (*hlen > ST_MAX_HEADER) {
        err_set(err, errlen, "header length %llu exceeds the %u-byte limit",
                (unsigned long long)*hlen, ST_MAX_HEADER);
        return -EINVAL;
    }
    if ((8 + *hlen) % 8 == 0)
        return 0;
    size_t add = 8 - (size_t)((8 + *hlen) % 8);
    void *moved = malloc(len + add);
    if (!moved) {
        err_set(err, errlen, "out of memory reading %zu bytes", len);
        return -ENOMEM;
    }
    memcpy(moved, f->blob, 8 + (size_t)*hlen);
    memcpy((char *)moved + 8 + *hlen + add, (char *)f->blob + 8 + *hlen,
           len - 8 - (size_t)*hlen);
    free(f->blob);
    f->blob = moved;
    f->blob_len = len + add;
    *pad = add;
    return 0;
}

/* The tensor entries of header root into f, their data in data (data_len bytes), which
 * they must tile exactly. */
static int parse_entries(st_file *f, json_t *root, const unsigned char *data,
                         size_t data_len, char *err, size_t errlen)
{
    size_t nkeys = json_object_size(root);
    if (json_object_get(root, "__metadata__"))
        nkeys--;
    if (nkeys > INT_MAX / 2) {
        err_set(err, errlen, "header lists too many tensors (%zu)", nkeys);
        return -EINVAL;
    }
    f->tensors = calloc(nkeys ? nkeys : 1, sizeof(*f->tensors));
    span *sp = calloc(nkeys ? nkeys : 1, sizeof(*sp));
    if (!f->tensors || !sp) {
        err_set(err, errlen, "out of memory for %zu tensor entries", nkeys);
        free(sp);
        return -ENOMEM;
    }
    int rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        st_tensor *t = &f->tensors[f->n];
        t->name = strdup(key);
        if (!t->name) {
            err_set(err, errlen, "out of memory for tensor name '%s'", key);
            rc = -ENOMEM;
            break;
        }
        f->n++;
        size_t b, e;
        rc = parse_entry(t, &b, &e, key, val, data_len, err, errlen);
        if (rc < 0)
            break;
        t->data = data + b;
        sp[f->n - 1] = (span){b, e, f->n - 1};
    }
    if (rc >= 0 && check_coverage(f, sp, data_len, err, errlen) < 0)
        rc = -EINVAL;
    free(sp);
    return rc < 0 ? rc : 0;
}

/* Parses blob (ownership taken, freed on failure) into out. */
static int parse_blob(st_file *out, void *blob, size_t len, char *err, size_t errlen)
{
    st_file f = {.blob = blob, .blob_len = len};
    uint64_t hlen;
    size_t hlen_pad;
    int rc = blob_header(&f, &hlen, &hlen_pad, err, errlen);
    if (rc < 0) {
        st_free(&f);
        return rc;
    }
    const char *hdr = (const char *)f.blob + 8;
    const unsigned char *data = (const unsigned char *)f.blob + 8 + hlen + hlen_pad;
    size_t data_len = len - 8 - (size_t)hlen;
    json_error_t jerr;
    json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    rc = -EINVAL;
    if (!root)
        err_set(err, errlen, "header is not valid JSON: %s (at byte %d)", jerr.text,
                jerr.position);
    else if (!json_is_object(root))
        err_set(err, errlen, "header is not a JSON object");
    else
        rc = parse_entries(&f, root, data, data_len, err, errlen);
    json_decref(root);
    if (rc < 0) {
        st_free(&f);
        return rc;
    }
    *out = f;
    return 0;
}

int st_read_mem(st_file *out, const void *buf, size_t len, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    void *blob = malloc(len ? len : 1);
    if (!blob) {
        err_set(err, errlen, "out of memory for %zu bytes", len);
        return -ENOMEM;
    }
    if (len)
        memcpy(blob, buf, len);
    return parse_blob(out, blob, len, err, errlen);
}

int st_read_file(st_file *out, const char *path, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    int rc;
    void *blob = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    struct stat stt;
    if (fstat(fd, &stt) < 0) {
        rc = -errno;
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(stt.st_mode)) {
        rc = -EINVAL;
        err_set(err, errlen, "%s: not a regular file", path);
        goto out_close;
    }
    size_t len = (size_t)stt.st_size;
    blob = malloc(len ? len : 1);
    if (!blob) {
        rc = -ENOMEM;
        err_set(err, errlen, "%s: out of memory for %zu bytes", path, len);
        goto out_close;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)blob + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            err_set(err, errlen, "%s: %s", path, strerror(errno));
            goto out_free_blob;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    fd = -1;
    rc = parse_blob(out, blob, got, err, errlen);
    if (rc < 0 && err && errlen) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s: %s", path, err);
        err_set(err, errlen, "%s", tmp);
    }
    return rc;

out_free_blob:
    free(blob);
out_close:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Builds the header JSON, padded with spaces so that 8 + header length is a multiple of
 * 8 (the data then starts aligned). *hdr is malloc'd; *data_len gets the data bytes. */
static int build_header(char **hdr, size_t *hlen, size_t *data_len, const st_tensor *ts,
                        int n, char *err, size_t errlen)
{
    int rc = -EINVAL;
    json_t *root = json_object();
    char *text = NULL;
    if (!root) {
        err_set(err, errlen, "out of memory building the header");
        return -ENOMEM;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = &ts[i];
        const char *name = t->name ? t->name : "(null)";
        if (!t->name || strcmp(t->name, "__metadata__") == 0) {
            err_set(err, errlen, "tensor %d: invalid name '%s'", i, name);
            goto out_free_root;
        }
        if (json_object_get(root, t->name)) {
            err_set(err, errlen, "tensor '%s': name appears twice", name);
            goto out_free_root;
        }
        if ((t->dtype != ST_F32 && t->dtype != ST_I64) || t->ndim < 0 ||
            t->ndim > ST_MAX_DIMS) {
            err_set(err, errlen, "tensor '%s': invalid dtype or dimension count", name);
            goto out_free_root;
        }
        uint64_t count = dtype_size(t->dtype);
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 ||
                __builtin_mul_overflow(count, (uint64_t)t->shape[d], &count)) {
                json_decref(shape);
                err_set(err, errlen, "tensor '%s': invalid shape[%d]", name, d);
                goto out_free_root;
            }
            json_array_append_new(shape, json_integer(t->shape[d]));
        }
        if (count != t->nbytes || (t->nbytes && !t->data)) {
            json_decref(shape);
            err_set(err, errlen, "tensor '%s': nbytes %zu does not match its shape", name,
                    t->nbytes);
            goto out_free_root;
        }
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dtype_name(t->dtype), "shape",
                              shape, "data_offsets", (json_int_t)off,
                              (json_int_t)(off + t->nbytes));
        if (!e || json_object_set_new(root, t->name, e) < 0) {
            err_set(err, errlen, "tensor '%s': out of memory building the header", name);
            rc = -ENOMEM;
            goto out_free_root;
        }
        off += t->nbytes;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) {
        err_set(err, errlen, "out of memory building the header");
        rc = -ENOMEM;
        goto out_free_root;
    }
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    char *h = realloc(text, padded + 1);
    if (!h) {
        err_set(err, errlen, "out of memory building the header");
        rc = -ENOMEM;
        free(text);
        goto out_free_root;
    }
    memset(h + len, ' ', padded - len);
    h[padded] = '\0';
    *hdr = h;
    *hlen = padded;
    *data_len = off;
    rc = 0;
out_free_root:
    json_decref(root);
    return rc;
}

int st_write_mem(void **out, size_t *out_len, const st_tensor *ts, int n, char *err,
                 size_t errlen)
{
    char *hdr;
    size_t hlen, dlen;
    *out = NULL;
    *out_len = 0;
    int rc = build_header(&hdr, &hlen, &dlen, ts, n, err, errlen);
    if (rc < 0)
        return rc;
    size_t total = 8 + hlen + dlen;
    unsigned char *buf = malloc(total);
    if (!buf) {
        free(hdr);
        err_set(err, errlen, "out of memory for %zu bytes", total);
        return -ENOMEM;
    }
    uint64_t h64 = hlen;
    memcpy(buf, &h64, 8);
    memcpy(buf + 8, hdr, hlen);
    size_t pos = 8 + hlen;
    for (int i = 0; i < n; i++) {
        if (ts[i].nbytes)
            memcpy(buf + pos, ts[i].data, ts[i].nbytes);
        pos += ts[i].nbytes;
    }
    free(hdr);
    *out = buf;
    *out_len = total;
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int st_write_file(const char *path, const st_tensor *ts, int n, char *err, size_t errlen)
{
    char *hdr;
    size_t hlen, dlen;
    int rc = build_header(&hdr, &hlen, &dlen, ts, n, err, errlen);
    if (rc < 0)
        return rc;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        rc = -ENOMEM;
        err_set(err, errlen, "%s: out of memory", path);
        goto out_free_hdr;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        err_set(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out_free_tmp;
    }
    uint64_t h64 = hlen;
    rc = write_all(fd, &h64, 8);
    if (rc == 0)
        rc = write_all(fd, hdr, hlen);
    for (int i = 0; i < n && rc == 0; i++)
        if (ts[i].nbytes)
            rc = write_all(fd, ts[i].data, ts[i].nbytes);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        err_set(err, errlen, "%s: %s", path, strerror(-rc));
        unlink(tmp);
        goto out_free_tmp;
    }
    /* Make the rename itself durable. */
    char *slash = strrchr(tmp, '/');
    if (slash) {
        *slash = '\0';
        int dfd = open(slash == tmp ? "/" : tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    } else {
        int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
out_free_tmp:
    free(tmp);
out_free_hdr:
    free(hdr);
    return rc;
}
