/* http.c: requests to the daemon through one libcurl easy handle (its connection is kept
 * between requests, so following a job polls over one socket). */
#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SGDR_VERSION
#define SGDR_VERSION "dev"
#endif

/* An answer held in memory beyond this is cut off: no API answer comes near it. */
#define HTTP_MEMORY_MAX (256u << 20)

struct http_client {
    CURL *curl;
    char *base;        /* owned */
    char *auth_header; /* owned; NULL without a token */
    int global;        /* curl_global_init succeeded: cleaned up with the client */
    char errbuf[CURL_ERROR_SIZE + PATH_MAX]; /* libcurl's (at least CURL_ERROR_SIZE) or ours */
};

/* Where one answer's body goes: into a file (a download's 2xx body) or into reply. The
 * file is written as DEST.part and renamed to DEST at the end, so that a broken transfer
 * leaves an older DEST as it was. */
typedef struct {
    http_client *c;
    http_reply *reply;
    const char *dest; /* NULL: keep every body in memory; "-": standard output */
    char part[PATH_MAX + 8];
    FILE *fp;      /* part (or stdout), opened at the first byte of a 2xx body */
    int err;       /* negative errno of writing the file */
    char msg[CURL_ERROR_SIZE + PATH_MAX]; /* what err was about */
} http_sink;

int http_client_create(const char *base_url, const char *token, http_client **out)
{
    http_client *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return -ENOMEM;
    c->global = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    c->curl = curl_easy_init();
    c->base = strdup(base_url);
    if (token) {
        size_t n = strlen(token) + 32;
        c->auth_header = malloc(n);
        if (c->auth_header)
            snprintf(c->auth_header, n, "Authorization: Bearer %s", token);
    }
    if (!c->global || !c->curl || !c->base || (token && !c->auth_header)) {
        http_client_destroy(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

void http_client_destroy(http_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    if (c->global)
        curl_global_cleanup();
    free(c->base);
    free(c->auth_header);
    free(c);
}

const char *http_base(const http_client *c)
{
    return c->base;
}

const char *http_error(const http_client *c)
{
    return c->errbuf;
}

void http_reply_clear(http_reply *r)
{
    if (!r)
        return;
    free(r->body);
    memset(r, 0, sizeof *r);
}

char *http_escape(http_client *c, const char *s)
{
    char *e = curl_easy_escape(c->curl, s, 0);
    char *copy = e ? strdup(e) : NULL;
    curl_free(e);
    return copy;
}

static int keep(http_reply *r, const char *p, size_t n)
{
    if (r->len + n > HTTP_MEMORY_MAX)
        return -EFBIG;
    char *b = realloc(r->body, r->len + n + 1);
    if (!b)
        return -ENOMEM;
    memcpy(b + r->len, p, n);
    r->body = b;
    r->len += n;
    b[r->len] = '\0';
    return 0;
}

/* Records the failure of what (on path) with errno's code. */
static int sink_fail(http_sink *s, const char *what, const char *path)
{
    s->err = errno ? -errno : -EIO;
    snprintf(s->msg, sizeof s->msg, "cannot %s %s: %s", what, path, strerror(-s->err));
    return s->err;
}

static int sink_open(http_sink *s)
{
    if (s->fp || s->err)
        return s->err;
    if (strcmp(s->dest, "-") == 0) {
        s->fp = stdout;
        return 0;
    }
    if (snprintf(s->part, sizeof s->part, "%s.part", s->dest) >= (int)sizeof s->part) {
        errno = ENAMETOOLONG;
        return sink_fail(s, "create", s->dest);
    }
    s->fp = fopen(s->part, "wb");
    return s->fp ? 0 : sink_fail(s, "create", s->part);
}

/* libcurl's write callback: returns n to go on, anything else to stop the transfer. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    http_sink *s = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(s->c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (!s->dest || status < 200 || status > 299)
        return keep(s->reply, p, n) ? 0 : n;
    if (sink_open(s))
        return 0;
    if (fwrite(p, 1, n, s->fp) != n) {
        sink_fail(s, "write", s->fp == stdout ? "standard output" : s->part);
        return 0;
    }
    return n;
}

/* Resets the handle to the options every request shares. */
static void begin(http_client *c)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    c->errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "sgdr/" SGDR_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
}

/* Closes a download's file: renamed into place after a whole 2xx answer (an empty one
 * too), removed when the transfer broke off. The reason of a failure goes to errbuf. */
static int sink_close(http_sink *s, int failed)
{
    long st = s->reply->status;
    if (!s->dest)
        return 0;
    if (!failed && !s->fp && st >= 200 && st <= 299)
        sink_open(s);
    if (s->fp == stdout) {
        if (fflush(stdout) && !s->err)
            sink_fail(s, "write", "standard output");
    } else if (s->fp) {
        if (fclose(s->fp) && !s->err)
            sink_fail(s, "write", s->part);
        if (!failed && !s->err && rename(s->part, s->dest))
            sink_fail(s, "rename into place", s->dest);
        if (failed || s->err)
            unlink(s->part);
    }
    s->fp = NULL;
    if (s->err)
        snprintf(s->c->errbuf, sizeof s->c->errbuf, "%s", s->msg);
    return s->err;
}

/* Sends the request the handle is set up for to base + path and collects the answer. */
static int finish(http_client *c, const char *path, const char *ctype, http_sink *s)
{
    CURL *h = c->curl;
    struct curl_slist *hdrs = NULL, *t;
    char ct[160], *url = malloc(strlen(c->base) + strlen(path) + 1);
    int rc = -ENOMEM;
    memset(s->reply, 0, sizeof *s->reply);
    snprintf(ct, sizeof ct, "Content-Type:%s%s", ctype ? " " : "", ctype ? ctype : "");
    if (!url || !(hdrs = curl_slist_append(NULL, ct)))
        goto out;
    if (c->auth_header && !(t = curl_slist_append(hdrs, c->auth_header)))
        goto out;
    strcpy(url, c->base);
    strcat(url, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s->reply->status);
    char *got = NULL;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &got) == CURLE_OK && got)
        snprintf(s->reply->ctype, sizeof s->reply->ctype, "%s", got);
    rc = sink_close(s, cc != CURLE_OK);
    if (!rc && cc != CURLE_OK) {
        if (!c->errbuf[0])
            snprintf(c->errbuf, sizeof c->errbuf, "%s", curl_easy_strerror(cc));
        rc = -EIO;
    }
out:
    curl_slist_free_all(hdrs);
    free(url);
    if (rc)
        http_reply_clear(s->reply);
    return rc;
}

int http_request(http_client *c, const char *method, const char *path, const char *ctype,
                 const void *body, size_t len, http_reply *out)
{
    http_sink s = {.c = c, .reply = out};
    begin(c);
    if (body || strcmp(method, "POST") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body ? body : "");
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    return finish(c, path, ctype, &s);
}

static size_t on_read(char *p, size_t size, size_t nmemb, void *ud)
{
    FILE *in = ud;
    size_t n = fread(p, size, nmemb, in);
    return n == 0 && ferror(in) ? CURL_READFUNC_ABORT : n;
}

/* The caller's progress function and its data, for libcurl's transfer callback. */
typedef struct {
    http_progress_fn fn;
    void *ud;
} http_progress;

static int on_transfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    http_progress *p = ud;
    if (ultotal > 0)
        p->fn(p->ud, (long long)ulnow, (long long)ultotal);
    return 0;
}

int http_upload(http_client *c, const char *path, const char *ctype, FILE *in, long long size,
                http_progress_fn progress, void *ud, http_reply *out)
{
    http_sink s = {.c = c, .reply = out};
    http_progress p = {progress, ud};
    begin(c);
    if (progress) {
        curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_transfer);
        curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, &p);
        curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
    }
    curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
    curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c->curl, CURLOPT_READDATA, in);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
    return finish(c, path, ctype, &s);
}

int http_download(http_client *c, const char *path, const char *dest, http_reply *out)
{
    http_sink s = {.c = c, .reply = out, .dest = dest};
    begin(c);
    return finish(c, path, NULL, &s);
}
