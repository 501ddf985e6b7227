/* safetensors.h: the safetensors file format (8-byte little-endian header length, JSON
 * header {name: {dtype, shape, data_offsets}}, then the raw little-endian data), read with
 * every offset, dtype and shape checked against the file before anything is used. Knows
 * nothing of networks: weights.h maps files onto a net by name. */
#ifndef SGDRD_SAFETENSORS_H
#define SGDRD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum st_dtype { ST_F32, ST_I64 } st_dtype;

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    /* Into the file's blob (reading) or the caller's memory (writing). The reader starts
     * the data section on an 8-byte boundary, so a tensor is aligned for its dtype when
     * its offset is a multiple of the element size; otherwise copy it out with memcpy. */
    const void *data;
} st_tensor;

typedef struct st_file {
    int n;
    st_tensor *tensors; /* in header order */
    void *blob;         /* owns the file's bytes (data section moved to an 8-byte boundary) */
    size_t blob_len;
} st_file;

/* Parses and validates a whole file held in memory (copied) or on disk. A truncated file,
 * a header that is not JSON or lies about offsets (overlap, gaps, out of range), a dtype
 * other than F32/I64, or a shape whose element count does not match its byte range is
 * refused: negative return, *out left empty, err names the first bad tensor. */
int st_read_mem(st_file *out, const void *buf, size_t len, char *err, size_t errlen);
int st_read_file(st_file *out, const char *path, char *err, size_t errlen);
/* The header alone, for checking a file before its tensors are read: head holds the
 * file's first head_len bytes and file_len is its whole size. Checks what st_read_* check
 * (offsets tile exactly the file_len - 8 - header bytes after the header) and fills out
 * with every tensor's name, dtype and shape; data pointers are NULL and blob is empty.
 * -EAGAIN while head_len is too short for the header (8 bytes, then 8 + its length);
 * -EINVAL with err on a bad header; nothing is left to free on failure. */
int st_parse_header(st_file *out, const void *head, size_t head_len, uint64_t file_len,
                    char *err, size_t errlen);
/* st_parse_header on the file at path, reading only its header. */
int st_read_header_file(st_file *out, const char *path, char *err, size_t errlen);
/* Frees what st_read_* allocated; an empty or NULL file is fine. */
void st_free(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);

/* Writes tensors to path atomically: path.tmp, fsync, rename. */
int st_write_file(const char *path, const st_tensor *ts, int n, char *err, size_t errlen);
/* Same bytes into a malloc'd buffer (for HTTP responses). */
int st_write_mem(void **out, size_t *out_len, const st_tensor *ts, int n, char *err,
                 size_t errlen);

#endif
