/* body.c: a request's body: how it is taken (by route and Content-Type), collected under
 * its cap in memory or streamed to a temporary file, and checked at its end. */
#define _GNU_SOURCE
#include "api_internal.h"
#include "gate.h"
#include "buf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The media type of the request without parameters, lower-cased, in buf. */
static const char *media_type(api_req *r, char *buf, size_t len)
{
    const char *ct = req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t i = 0;
    if (!ct)
        return NULL;
    while (*ct == ' ')
        ct++;
    for (; ct[i] && ct[i] != ';' && ct[i] != ' ' && i + 1 < len; i++)
        buf[i] = (char)tolower((unsigned char)ct[i]);
    buf[i] = '\0';
    return buf;
}

int body_announced(api_req *r, int64_t *declared)
{
    const char *cl = req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    *declared = -1;
    if (cl) {
        *declared = strtoll(cl, NULL, 10);
        return *declared > 0;
    }
    return te && strcasestr(te, "chunked") != NULL;
}

static int open_tmp(api_req *r)
{
    snprintf(r->tmp_path, sizeof r->tmp_path, "%s/tmp/upload-XXXXXX", r->srv->data_dir);
    r->fd = mkostemp(r->tmp_path, O_CLOEXEC);
    if (r->fd < 0) {
        int e = errno;
        r->tmp_path[0] = '\0';
        return -e;
    }
    return 0;
}

int body_begin(api_req *r)
{
    char mtbuf[96];
    const char *mt = media_type(r, mtbuf, sizeof mtbuf);
    int64_t declared;
    int body = body_announced(r, &declared);
    body_kind k = r->route->body;

    r->kind = k;
    if (k == BODY_DATASET) {
        if (mt && (strcmp(mt, "application/x-tar") == 0 || strcmp(mt, "application/gzip") == 0 ||
                   strcmp(mt, "application/x-gzip") == 0)) {
            r->kind = BODY_FILE;
            r->upload_gzip = strcmp(mt, "application/x-tar") != 0;
        } else {
            r->kind = BODY_JSON;
        }
    }
    if (!body) {
        if (r->kind == BODY_JSON || r->kind == BODY_NONE)
            return 0;
        reply_problem(r, 400, PROBLEM_INVALID, NULL, "this request needs a body");
        return 1;
    }
    switch (r->kind) {
    case BODY_NONE:
        if (gate_take_empty_json(r, mt))
            break;
        reply_problem(r, 415, PROBLEM_INVALID, NULL, "%s %s takes no body", r->method,
                      r->route->pattern);
        return 1;
    case BODY_JSON:
        if (!mt || strcmp(mt, "application/json") != 0) {
            reply_problem(r, 415, PROBLEM_INVALID, NULL,
                          "the body must be application/json%s, not %s",
                          r->route->body == BODY_DATASET ? " (or application/x-tar, "
                                                           "application/gzip)" : "",
                          mt ? mt : "untyped");
            return 1;
        }
        r->limit = API_JSON_MAX;
        break;
    case BODY_IMAGE:
        if (!mt || (strcmp(mt, "image/png") != 0 && strcmp(mt, "image/jpeg") != 0 &&
                    strcmp(mt, "application/octet-stream") != 0)) {
            reply_problem(r, 415, PROBLEM_INVALID, NULL,
                          "the body must be image/png or image/jpeg, not %s",
                          mt ? mt : "untyped");
            return 1;
        }
        r->limit = API_IMAGE_MAX;
        break;
    case BODY_FILE:
        if (r->route->body == BODY_FILE &&
            (!mt || strcmp(mt, "application/octet-stream") != 0)) {
            reply_problem(r, 415, PROBLEM_INVALID, NULL,
                          "the body must be application/octet-stream, not %s",
                          mt ? mt : "untyped");
            return 1;
        }
        r->limit = (size_t)r->srv->max_upload;
        break;
    case BODY_DATASET:
        break;
    }
    if (declared > 0 && (uint64_t)declared > r->limit) {
        reply_problem(r, 413, PROBLEM_LIMIT, NULL, "the body is %lld bytes; the limit is %zu",
                      (long long)declared, r->limit);
        return 1;
    }
    if (r->kind == BODY_FILE) {
        int rc = open_tmp(r);
        if (rc) {
            reply_problem(r, 500, PROBLEM_INTERNAL, NULL,
                          "cannot create a temporary file under %s/tmp: %s", r->srv->data_dir,
                          strerror(-rc));
            return 1;
        }
    }
    return 0;
}

void body_append(api_req *r, const char *data, size_t size)
{
    if (r->too_big || r->write_errno)
        return;
    if (r->len + size > r->limit) {
        r->too_big = 1;
        return;
    }
    if (r->kind == BODY_FILE) {
        while (size > 0) {
            ssize_t n = write(r->fd, data, size);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                r->write_errno = errno;
                return;
            }
            data += n;
            size -= (size_t)n;
            r->len += (size_t)n;
        }
        return;
    }
    char *nb = buf_grow_bytes(r->buf, &r->cap, r->len + size, 4096, r->limit);
    if (!nb) {
        r->write_errno = ENOMEM;
        return;
    }
    r->buf = nb;
    memcpy(r->buf + r->len, data, size);
    r->len += size;
}

int body_end(api_req *r)
{
    if (r->too_big) {
        reply_problem(r, 413, PROBLEM_LIMIT, NULL, "the body is over the limit of %zu bytes",
                      r->limit);
        return 1;
    }
    if (r->write_errno) {
        reply_problem(r, r->write_errno == ENOSPC ? 507 : 500, PROBLEM_INTERNAL, NULL,
                      "cannot store the body: %s", strerror(r->write_errno));
        return 1;
    }
    if (r->kind == BODY_FILE && fsync(r->fd) != 0) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "cannot store the body: %s",
                      strerror(errno));
        return 1;
    }
    if (r->kind == BODY_JSON) {
        json_error_t e;
        if (r->len == 0) {
            r->json = json_object();
        } else {
            r->json = json_loadb(r->buf, r->len, JSON_REJECT_DUPLICATES, &e);
            /* JSON allows integers beyond int64, which jansson refuses as a whole document.
             * Read as reals they reach the field specs, whose ranges all lie far inside
             * int64, so the 400 names the field; only a refused body is read this way. */
            if (!r->json && (strstr(e.text, "too big integer") ||
                              strstr(e.text, "too big negative integer")))
                r->json = json_loadb(r->buf, r->len,
                                     JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &e);
            if (!r->json) {
                reply_problem(r, 400, PROBLEM_INVALID, NULL,
                              "malformed JSON at line %d, column %d: %s", e.line, e.column,
                              e.text);
                return 1;
            }
        }
        if (!json_is_object(r->json)) {
            reply_problem(r, 400, PROBLEM_INVALID, NULL, "the body must be a JSON object");
            return 1;
        }
    }
    return 0;
}
