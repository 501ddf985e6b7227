/* server.c: libmicrohttpd set-up, the request life cycle (per-request state created on the
 * first callback, body collected under a cap, answered on the last), routing, bearer
 * authentication, and the reply helpers. */
#define _GNU_SOURCE
#include "api_internal.h"
#include "gate.h"
#include "prom.h"
#include "sse.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef SGDRD_VERSION
#define SGDRD_VERSION "0.0.0"
#endif
#ifndef SGDRD_WEB_DIR
#define SGDRD_WEB_DIR "web"
#endif

/* A body refused at the first callback is still read and dropped up to this size, so that
 * the client, which is still sending, reads the answer instead of a reset connection. */
#define DISCARD_MAX (64ll * 1024 * 1024)

double api_now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void api_log(const api_server *s, int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    if (!s || !s->log)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->log(level, line);
}

/* ---- replies ------------------------------------------------------------------------------ */

static void set_response(api_req *r, unsigned status, struct MHD_Response *resp)
{
    if (r->resp)
        MHD_destroy_response(r->resp);
    r->resp = resp;
    r->status = status;
}

/* A response owning text (freed with it, also on failure). */
static struct MHD_Response *text_response(char *text, size_t len, const char *ctype)
{
    struct MHD_Response *resp;
    if (!text)
        return NULL;
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return resp;
}

char *api_json_text(json_t *body, size_t *len)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (text)
        *len = strlen(text);
    return text;
}

static struct MHD_Response *json_response(json_t *body, const char *ctype)
{
    size_t len = 0;
    char *text = api_json_text(body, &len);
    return text_response(text, len, ctype);
}

/* The answer of last resort when even building a problem body fails. */
static void reply_oom(api_req *r)
{
    static const char body[] = "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\","
                               "\"status\":500,\"detail\":\"out of memory\","
                               "\"error_code\":\"INTERNAL_ERROR\"}";
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, PROBLEM_CONTENT_TYPE);
    set_response(r, 500, resp);
}

void reply_json(api_req *r, unsigned status, json_t *body)
{
    struct MHD_Response *resp = body ? json_response(body, "application/json") : NULL;
    json_decref(body);
    if (!resp) {
        reply_oom(r);
        return;
    }
    set_response(r, status, resp);
}

void reply_json_text(api_req *r, unsigned status, char *text, size_t len)
{
    struct MHD_Response *resp = text_response(text, len, "application/json");
    if (!resp) {
        reply_oom(r);
        return;
    }
    set_response(r, status, resp);
}

int reply_cached(api_req *r, const char *key, uint64_t gen)
{
    size_t len = 0;
    char *text = page_cache_get(r->srv->pages, key, gen, &len);
    if (!text)
        return 0;
    reply_json_text(r, 200, text, len);
    return 1;
}

void reply_json_caching(api_req *r, const char *key, uint64_t gen, json_t *body)
{
    size_t len = 0;
    char *text = api_json_text(body, &len);
    json_decref(body);
    if (text)
        page_cache_put(r->srv->pages, key, gen, text, len);
    reply_json_text(r, 200, text, len);
}

void reply_created(api_req *r, unsigned status, const char *location, json_t *body)
{
    reply_json(r, status, body);
    if (r->status == status && location)
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_LOCATION, location);
}

void reply_problem(api_req *r, unsigned status, const char *code, const char *field,
                   const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    json_t *p;
    struct MHD_Response *resp;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (status >= 500)
        api_log(r->srv, 0, "%s %s: %u %s", r->method, r->url, status, detail);
    p = problem_new(status, code, field, detail);
    resp = p ? json_response(p, PROBLEM_CONTENT_TYPE) : NULL;
    json_decref(p);
    if (!resp) {
        reply_oom(r);
        return;
    }
    if (status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    set_response(r, status, resp);
}

void reply_file(api_req *r, const char *path, const char *ctype, const char *disposition)
{
    struct stat st;
    struct MHD_Response *resp;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "%s does not exist", r->url);
        return;
    }
    resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
        reply_oom(r);
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (disposition)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disposition);
    set_response(r, 200, resp);
}

void reply_response(api_req *r, unsigned status, struct MHD_Response *resp)
{
    if (!resp) {
        reply_oom(r);
        return;
    }
    set_response(r, status, resp);
}

/* ---- request helpers --------------------------------------------------------------------- */

const char *req_query(api_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *req_header(api_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, key);
}

int req_query_int(api_req *r, const char *key, int64_t min, int64_t max, int64_t def,
                  int64_t *out)
{
    const char *s = req_query(r, key);
    char *end;
    long long v;

    if (!s) {
        *out = def;
        return 0;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (!*s || *end || errno || isspace((unsigned char)*s)) {
        reply_problem(r, 400, PROBLEM_INVALID, key, "%s must be an integer", key);
        return -EINVAL;
    }
    if (v < min || v > max) {
        reply_problem(r, 400, PROBLEM_INVALID, key, "%s must be between %lld and %lld", key,
                      (long long)min, (long long)max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int req_parse(api_req *r, const spec_field *fields, void *out)
{
    char field[128], detail[512];
    if (spec_parse(fields, r->json, out, field, sizeof field, detail, sizeof detail) == 0)
        return 0;
    reply_problem(r, 400, PROBLEM_INVALID, field[0] ? field : NULL, "%s", detail);
    return -EINVAL;
}

/* ---- routing ----------------------------------------------------------------------------- */

/* Matches path against pattern, collecting {id} segments (positive decimal integers). */
static int route_match(const char *pattern, const char *path, int64_t *ids, int *n_ids)
{
    int n = 0;
    while (*pattern && *path) {
        if (strncmp(pattern, "{id}", 4) == 0) {
            long long v = 0;
            int digits = 0;
            while (*path >= '0' && *path <= '9' && digits < 18) {
                v = v * 10 + (*path - '0');
                path++;
                digits++;
            }
            if (digits == 0 || v <= 0 || (*path && *path != '/') || n >= API_MAX_IDS)
                return 0;
            ids[n++] = v;
            pattern += 4;
            continue;
        }
        if (*pattern != *path)
            return 0;
        pattern++;
        path++;
    }
    if (*pattern || *path)
        return 0;
    *n_ids = n;
    return 1;
}

static int method_is(const char *a, const char *b)
{
    return strcmp(a, b) == 0 || (strcmp(a, "HEAD") == 0 && strcmp(b, "GET") == 0);
}

/* Finds the route of (method, url). Returns 0 with r->route set; 404 when no pattern
 * matches; 405 when patterns match but not the method (allow lists the methods). */
static int route_find(api_req *r, char *allow, size_t allowlen)
{
    int path_matched = 0;
    size_t used = 0;
    allow[0] = '\0';
    for (const api_route *rt = api_routes; rt->method; rt++) {
        int64_t ids[API_MAX_IDS];
        int n_ids;
        if (!route_match(rt->pattern, r->url, ids, &n_ids))
            continue;
        if (method_is(r->method, rt->method)) {
            r->route = rt;
            memcpy(r->ids, ids, sizeof ids);
            r->n_ids = n_ids;
            return 0;
        }
        path_matched = 1;
        if (used < allowlen)
            used += (size_t)snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "",
                                     rt->method);
    }
    return path_matched ? 405 : 404;
}

/* ---- query parameters -------------------------------------------------------------------- */

#define QUERY_MAX_SEEN 8

typedef struct query_scan {
    const char *allowed;       /* the route's list, space-separated */
    const char *bad;           /* the first name refused */
    int twice;                 /* refused because it repeats, not because it is unknown */
    const char *seen[QUERY_MAX_SEEN];
    int n_seen;
} query_scan;

static int word_in(const char *list, const char *w)
{
    size_t n = strlen(w);
    while (list && *list) {
        size_t len = strcspn(list, " ");
        if (len == n && n > 0 && strncmp(list, w, n) == 0)
            return 1;
        list += len;
        list += strspn(list, " ");
    }
    return 0;
}

static enum MHD_Result query_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    query_scan *q = cls;
    (void)kind;
    (void)value;
    if (!key[0])
        return MHD_YES; /* "?&" or a trailing '&' names nothing */
    if (!word_in(q->allowed, key)) {
        q->bad = key;
        return MHD_NO;
    }
    for (int i = 0; i < q->n_seen; i++)
        if (strcmp(q->seen[i], key) == 0) {
            q->bad = key;
            q->twice = 1;
            return MHD_NO;
        }
    if (q->n_seen < QUERY_MAX_SEEN)
        q->seen[q->n_seen++] = key;
    return MHD_YES;
}

/* DESIGN §4 refuses an unknown field; a query parameter is a field of its request, so a
 * misspelt ?limt=5 is a 400 naming it rather than a silently ignored default. A repeated
 * one is refused too: which copy wins would otherwise be libmicrohttpd's choice. */
static int query_check(api_req *r)
{
    query_scan q = {.allowed = r->route->query};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_visit, &q);
    if (!q.bad)
        return 0;
    if (q.twice)
        reply_problem(r, 400, PROBLEM_INVALID, q.bad, "query parameter '%.64s' is given twice",
                      q.bad);
    else
        reply_problem(r, 400, PROBLEM_INVALID, q.bad,
                      "unknown query parameter '%.64s'; %s %s takes %s", q.bad, r->method,
                      r->route->pattern, r->route->query ? r->route->query : "none");
    return -EINVAL;
}

/* ---- bodies ------------------------------------------------------------------------------ */

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

/* Whether the request announces a body: a nonzero Content-Length or chunked encoding. */
static int has_body(api_req *r, int64_t *declared)
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

/* Chooses how to take the body from the route and the Content-Type; on a refusal answers
 * (415, 413, 500) and returns nonzero. */
static int body_begin(api_req *r)
{
    char mtbuf[96];
    const char *mt = media_type(r, mtbuf, sizeof mtbuf);
    int64_t declared;
    int body = has_body(r, &declared);
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

static void body_append(api_req *r, const char *data, size_t size)
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
    if (r->len + size > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        char *nb;
        while (cap < r->len + size)
            cap *= 2;
        if (cap > r->limit)
            cap = r->limit;
        nb = realloc(r->buf, cap);
        if (!nb) {
            r->write_errno = ENOMEM;
            return;
        }
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, size);
    r->len += size;
}

/* After the last byte: answers 413 / 500 / 400 (bad JSON) or leaves r->json ready. */
static int body_end(api_req *r)
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

/* ---- the request life cycle -------------------------------------------------------------- */

static int token_ok(const api_server *s, const char *auth)
{
    size_t n, m;
    unsigned char diff = 0;
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return 0;
    auth += 7;
    while (*auth == ' ')
        auth++;
    n = strlen(auth);
    m = strlen(s->token);
    /* Constant time in the token's content, so that timing does not reveal a prefix. */
    for (size_t i = 0; i < m; i++)
        diff |= (unsigned char)(s->token[i] ^ (i < n ? auth[i] : 0));
    return diff == 0 && n == m;
}

/* The first callback: route, authenticate, and decide how to take the body. Returns 1 when
 * the request is already answered (r->resp set). */
static int req_begin(api_req *r)
{
    char allow[64];
    int rc;

    if (gate_begin(r))
        return 1;
    if (r->srv->token &&
        (strncmp(r->url, "/api/", 5) == 0 || strcmp(r->url, "/metrics") == 0) &&
        !gate_open_route(r) &&
        !token_ok(r->srv, req_header(r, MHD_HTTP_HEADER_AUTHORIZATION)) &&
        !gate_session_ok(r)) {
        reply_problem(r, 401, PROBLEM_UNAUTHENTICATED, NULL,
                      "sign in (POST " API_PREFIX "/session) or send a valid "
                      "\"Authorization: Bearer <token>\" header");
        return 1;
    }
    rc = route_find(r, allow, sizeof allow);
    if (rc == 405) {
        reply_problem(r, 405, PROBLEM_INVALID, NULL, "%s is not allowed on %s; allowed: %s",
                      r->method, r->url, allow);
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_ALLOW, allow);
        return 1;
    }
    if (rc == 404) {
        if (strncmp(r->url, "/api/", 5) != 0 &&
            (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0))
            return 0; /* a static file, answered on the last callback */
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "no such resource: %s %s", r->method,
                      r->url);
        return 1;
    }
    if (query_check(r) || gate_media(r))
        return 1;
    return body_begin(r);
}

static enum MHD_Result req_queue(api_req *r)
{
    enum MHD_Result ret;
    if (!r->resp)
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "the handler gave no answer");
    if (!r->resp)
        return MHD_NO;
    gate_decorate(r);
    prom_http_observe(r->srv->prom, route_prom_label(r), r->method, r->status,
                      api_now_monotonic() - r->t0);
    api_log(r->srv, 3, "%s %s -> %u (%.1f ms)", r->method, r->url, r->status,
            (api_now_monotonic() - r->t0) * 1e3);
    ret = MHD_queue_response(r->conn, r->status, r->resp);
    MHD_destroy_response(r->resp);
    r->resp = NULL;
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    api_req *r = *con_cls;

    if (!r) {
        int64_t declared;
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->srv = cls;
        r->conn = conn;
        r->url = url;
        r->method = method;
        r->fd = -1;
        r->t0 = api_now_monotonic();
        *con_cls = r;
        if (!req_begin(r))
            return MHD_YES;
        /* Refused before the body: drop a small one and answer at its end. */
        if (has_body(r, &declared) && declared <= DISCARD_MAX) {
            r->kind = BODY_NONE;
            r->limit = 0;
            return MHD_YES;
        }
        return req_queue(r);
    }
    if (*upload_data_size) {
        if (!r->resp)
            body_append(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->resp)
        return req_queue(r);
    if (!r->route)
        static_serve(r);
    else if (!body_end(r) && !gate_body_not_empty(r))
        r->route->fn(r);
    /* Handlers have moved what they keep; drop the rest before the client hears back. */
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
    if (r->tmp_path[0]) {
        unlink(r->tmp_path);
        r->tmp_path[0] = '\0';
    }
    return req_queue(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    api_req *r = *con_cls;
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    if (r->tmp_path[0])
        unlink(r->tmp_path);
    if (r->resp)
        MHD_destroy_response(r->resp);
    json_decref(r->json);
    free(r->buf);
    free(r);
    *con_cls = NULL;
}

/* ---- start and stop ---------------------------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sslen,
                        char *err, size_t errlen)
{
    char host[256];
    const char *port, *colon;
    struct addrinfo hints = {0}, *res = NULL;
    int rc;

    if (listen[0] == '[') {
        const char *close_br = strchr(listen, ']');
        if (!close_br || close_br[1] != ':' || (size_t)(close_br - listen) >= sizeof host) {
            snprintf(err, errlen, "--listen %s: expected [address]:port", listen);
            return -EINVAL;
        }
        memcpy(host, listen + 1, (size_t)(close_br - listen - 1));
        host[close_br - listen - 1] = '\0';
        port = close_br + 2;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof host) {
            snprintf(err, errlen, "--listen %s: expected host:port", listen);
            return -EINVAL;
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port = colon + 1;
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "--listen %s: %s", listen, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return -ENAMETOOLONG;
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void server_free(api_server *s)
{
    if (!s)
        return;
    sse_hub_destroy(s->hub);
    page_cache_destroy(s->pages);
    prom_destroy(s->prom);
    gate_destroy(s);
    for (int i = 0; i < s->n_dataset_roots; i++)
        free(s->dataset_roots[i]);
    free(s->dataset_roots);
    free(s->token);
    free(s->data_dir);
    free(s->web_dir);
    free(s->version);
    free(s);
}

int api_server_start(api_server **out, const api_config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    api_server *s;
    char tmpdir[PATH_MAX];
    const union MHD_DaemonInfo *info;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG;
    int rc;

    *out = NULL;
    rc = parse_listen(cfg->listen ? cfg->listen : "127.0.0.1:8080", &ss, &sslen, err, errlen);
    if (rc)
        return rc;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (!cfg->data_dir) {
        snprintf(err, errlen, "no data dir");
        return -EINVAL;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        goto out_nomem;
    s->token = xstrdup(cfg->token && cfg->token[0] ? cfg->token : NULL);
    s->data_dir = xstrdup(cfg->data_dir);
    s->version = xstrdup(cfg->version ? cfg->version : SGDRD_VERSION);
    s->max_upload = cfg->max_upload > 0 ? cfg->max_upload : 2ll * 1024 * 1024 * 1024;
    s->store = cfg->store;
    s->jobs = cfg->jobs;
    s->log = cfg->log;
    s->started = api_now_monotonic();
    if (!s->data_dir || !s->version || (cfg->token && cfg->token[0] && !s->token))
        goto out_nomem;
    {
        /* SGDRD_WEB_DIR in the environment serves another dashboard without a rebuild. */
        const char *web = cfg->web_dir ? cfg->web_dir : getenv("SGDRD_WEB_DIR");
        s->web_dir = realpath(web && *web ? web : SGDRD_WEB_DIR, NULL);
    }
    /* A missing web/ only costs the dashboard; the API still serves. */
    s->dataset_roots = calloc((size_t)(cfg->n_dataset_roots + 1), sizeof *s->dataset_roots);
    if (!s->dataset_roots)
        goto out_nomem;
    for (int i = 0; i < cfg->n_dataset_roots; i++) {
        char *p = realpath(cfg->dataset_roots[i], NULL);
        if (p)
            s->dataset_roots[s->n_dataset_roots++] = p;
    }
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", s->data_dir);
    rc = mkdir_p(tmpdir);
    if (rc) {
        snprintf(err, errlen, "cannot create %s: %s", tmpdir, strerror(-rc));
        goto out_free;
    }
    rc = gate_create(s, cfg, err, errlen);
    if (rc)
        goto out_free;
    rc = sse_hub_create(&s->hub, s->store);
    if (rc || page_cache_create(&s->pages, API_PAGE_CACHE_SLOTS) || prom_create(&s->prom))
        goto out_nomem;

    /* The connection limits leave room for SSE_MAX_STREAMS event streams and the rest of
     * the API beside them. MHD has no deadline for a request's headers or body, only the
     * idle timeout below: a client that sends a byte now and then (slowloris) keeps its
     * connection, and enough of them from one address fill the per-address limit. A
     * daemon reachable by untrusted clients belongs behind a proxy that enforces one. */
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg->conn_limit ? cfg->conn_limit : 256),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(cfg->per_ip_limit ? cfg->per_ip_limit : 64),
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(cfg->conn_timeout_s ? cfg->conn_timeout_s : 60),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_END);
    if (!s->mhd) {
        rc = -EADDRINUSE;
        snprintf(err, errlen, "cannot listen on %s (address in use or not available)",
                 cfg->listen ? cfg->listen : "127.0.0.1:8080");
        goto out_free;
    }
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? (int)info->port : 0;
    snprintf(s->cookie_name, sizeof s->cookie_name, "sgdrd_session_%d", s->port);
    *out = s;
    return 0;

out_nomem:
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
out_free:
    server_free(s);
    return rc;
}

int api_server_port(const api_server *s)
{
    return s ? s->port : 0;
}

void api_server_stop(api_server *s)
{
    if (!s)
        return;
    /* Streams block in their reader; wake them first or MHD_stop_daemon would wait for
     * their next heartbeat. */
    sse_hub_shutdown(s->hub);
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    server_free(s);
}
