/* reply.c: the answers handlers give: JSON, cached pages, problem+json, files and
 * responses built elsewhere (api_internal.h's reply_ functions). */
#define _GNU_SOURCE
#include "api_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
