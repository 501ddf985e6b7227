/* http.h: the daemon's REST API over libcurl: one connection kept alive across requests,
 * the bearer token on each, answers collected in memory or streamed into a file. */
#ifndef SGDR_HTTP_H
#define SGDR_HTTP_H

#include <stddef.h>
#include <stdio.h>

#define HTTP_API_PREFIX "/api/v1"

typedef struct http_client http_client;

/* One answer. body is NUL-terminated (len excludes the NUL) and owned by the reply. */
typedef struct {
    long status;
    char *body;
    size_t len;
    char ctype[128]; /* the Content-Type, "" when none */
} http_reply;

/* Creates a client for base_url (scheme, host, port, no /api/v1) that sends token (NULL:
 * none) as `Authorization: Bearer`. Returns 0 or -ENOMEM. */
int http_client_create(const char *base_url, const char *token, http_client **out);

/* Frees the client and its connection; NULL is fine. */
void http_client_destroy(http_client *c);

/* The base URL, and the reason of the last failed transfer ("" when none). */
const char *http_base(const http_client *c);
const char *http_error(const http_client *c);

/* Sends method to base + path (path starts with /api/v1), with body (len bytes, NULL: none)
 * of type ctype (NULL: none). On any HTTP answer fills *out and returns 0; when no answer
 * came (refused, timed out, ...) returns -EIO, the reason in http_error. */
int http_request(http_client *c, const char *method, const char *path, const char *ctype,
                 const void *body, size_t len, http_reply *out);

/* Told how many bytes of an upload have gone out of how many; ud is the caller's. */
typedef void (*http_progress_fn)(void *ud, long long sent, long long total);

/* POSTs size bytes read from in, as ctype, streamed; answers as http_request. progress
 * (NULL: none) hears of the bytes sent, a few times a second. */
int http_upload(http_client *c, const char *path, const char *ctype, FILE *in, long long size,
                http_progress_fn progress, void *ud, http_reply *out);

/* GETs path; a 2xx body is streamed into the file dest ("-": standard output) through
 * DEST.part, renamed to dest when whole; any other answer's body is kept in *out and dest
 * is left alone, as it is when the transfer breaks off. Returns 0 when an answer came (then
 * out->status tells), -EIO as http_request, or the negative errno code of writing dest
 * (the reason in http_error). */
int http_download(http_client *c, const char *path, const char *dest, http_reply *out);

/* A new string: s escaped for a URL's query (owned by the caller, free()), NULL on ENOMEM. */
char *http_escape(http_client *c, const char *s);

/* Frees the body of r; safe on a zeroed reply. */
void http_reply_clear(http_reply *r);

#endif
