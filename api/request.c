/* request.c: what a request carries and where it goes: query and header lookups, body
 * parsing against a field spec, the route table's matching, and the check of query
 * parameters against the route's list. */
#define _GNU_SOURCE
#include "api_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

int req_route(api_req *r, char *allow, size_t allowlen)
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

/* An unknown field is refused; a query parameter is a field of its request, so a misspelt
 * ?limt=5 is a 400 naming it rather than a silently ignored default. A repeated one is
 * refused too: which copy wins would otherwise be libmicrohttpd's choice. */
int req_check_query(api_req *r)
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
