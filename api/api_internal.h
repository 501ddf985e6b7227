/* api_internal.h: what the api/ files share: the server object, per-request state, the
 * route table's shape, and the reply helpers every handler answers through. */
#ifndef SGDRD_API_INTERNAL_H
#define SGDRD_API_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <microhttpd.h>

#include "api_backend.h"
#include "clock_mono.h"
#include "page_cache.h"
#include "problem.h"
#include "server.h"
#include "spec.h"

#define API_PREFIX "/api/v1"
#define API_JSON_MAX (1024 * 1024)        /* JSON bodies */
#define API_IMAGE_MAX (32 * 1024 * 1024)  /* predict: one image */
#define API_MAX_IDS 2
#define API_PAGE_CACHE_SLOTS 16      /* serialised pages kept (metrics) */

typedef struct sse_hub sse_hub;

struct api_server {
    struct MHD_Daemon *mhd;
    int port;
    char *token;
    char *data_dir;
    char **dataset_roots;      /* realpath'd */
    int n_dataset_roots;
    int64_t max_upload;
    char *web_dir;             /* realpath'd */
    char *version;
    struct store *store;
    api_backend backend;       /* copied from api_config; all NULL when none was given */
    double started;            /* CLOCK_MONOTONIC seconds */
    void (*log)(int level, const char *line);
    sse_hub *hub;
    struct conn_table *conns;  /* open connections and their deadlines (conn.h) */
    page_cache *pages;         /* serialised read answers, valid per store generation */
    struct prom *prom;         /* request counters and latency histograms (prom.h) */
    struct guard *guard;       /* Host, Origin and CORS allow-lists (guard.h) */
    struct session_table *sessions; /* the dashboard's sign-ins (session.h) */
    struct throttle *signins;  /* failed sign-ins per client address (throttle.h) */
    char cookie_name[64];      /* "sgdrd_session_<port>": daemons on one host keep apart */
    int behind_tls;            /* --behind-tls: Secure cookies, https origin */
};

/* How a route takes its body. */
typedef enum body_kind {
    BODY_NONE,     /* none expected; a non-empty body is refused (415) */
    BODY_JSON,     /* application/json, up to API_JSON_MAX; empty means {} */
    BODY_DATASET,  /* application/json, or an application/x-tar | application/gzip upload */
    BODY_IMAGE,    /* image/png | image/jpeg | application/octet-stream, up to API_IMAGE_MAX */
    BODY_FILE,     /* application/octet-stream streamed to a temporary file (max_upload) */
} body_kind;

typedef struct api_req api_req;
typedef void (*api_handler)(api_req *r);

typedef struct api_route {
    const char *method;
    const char *pattern;       /* "/api/v1/runs/{id}/fit": {id} is a positive integer */
    api_handler fn;
    body_kind body;
    const char *query;         /* the query parameters it takes, space-separated, or NULL;
                                * any other, or one given twice, is a 400 naming it */
} api_route;

/* Every route the server answers, ending with a {NULL} entry (routes.c). */
extern const api_route api_routes[];

struct api_req {
    api_server *srv;
    struct MHD_Connection *conn;
    const api_route *route;
    const char *method;
    const char *url;
    int64_t ids[API_MAX_IDS];
    int n_ids;

    /* body */
    body_kind kind;            /* what this request's body turned out to be */
    int upload_gzip;           /* BODY_DATASET upload: gzip rather than plain tar */
    char *buf;                 /* in-memory body (JSON, image) */
    size_t len, cap, limit;
    int fd;                    /* streamed body, or -1 */
    char tmp_path[PATH_MAX];
    int64_t written;
    int too_big;
    int write_errno;
    size_t head_len;           /* POST /models: header bytes kept in buf so far */
    int head_done;             /* POST /models: the header was checked (or cannot be yet) */
    json_t *json;              /* parsed JSON body (BODY_JSON, BODY_DATASET json) */

    double t0;                 /* when the request arrived (monotonic seconds) */

    /* answer */
    unsigned status;
    struct MHD_Response *resp;
};

/* ---- replies (reply.c): each sets r->status and r->resp; the last one wins ----------- */

/* Answers body (a stolen reference) as application/json. */
void reply_json(api_req *r, unsigned status, json_t *body);
/* Answers text (len bytes of serialised JSON, malloc'd; ownership passes) as
 * application/json. */
void reply_json_text(api_req *r, unsigned status, char *text, size_t len);
/* body serialised as every answer is (compact, ASCII); malloc'd, NULL on failure. */
char *api_json_text(json_t *body, size_t *len);
/* Answers 200 with the page cached under key for store generation gen and returns 1;
 * 0 (nothing answered) when there is none. gen must be read before the data the page
 * would be built from. */
int reply_cached(api_req *r, const char *key, uint64_t gen);
/* Answers body (a stolen reference) with 200 and keeps its text under key for gen. */
void reply_json_caching(api_req *r, const char *key, uint64_t gen, json_t *body);
/* Same, with a Location header pointing at location. */
void reply_created(api_req *r, unsigned status, const char *location, json_t *body);
/* Answers a problem+json body. field may be NULL. */
void reply_problem(api_req *r, unsigned status, const char *code, const char *field,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Answers the file at path (opened here) with content type ctype; 404 if it is gone. */
void reply_file(api_req *r, const char *path, const char *ctype, const char *disposition);
/* Takes an MHD response built elsewhere (SSE). */
void reply_response(api_req *r, unsigned status, struct MHD_Response *resp);

/* ---- request helpers (request.c) --------------------------------------------------------- */

/* A query argument or NULL. */
const char *req_query(api_req *r, const char *key);
/* A header or NULL. */
const char *req_header(api_req *r, const char *key);
/* Reads an integer query argument in [min, max]; absent gives def. On a bad value answers
 * 400 naming key and returns -EINVAL. */
int req_query_int(api_req *r, const char *key, int64_t min, int64_t max, int64_t def,
                  int64_t *out);
/* Parses r->json against fields into out; answers 400 naming the field on failure and
 * returns -EINVAL. */
int req_parse(api_req *r, const spec_field *fields, void *out);
/* Finds the route of (method, url). Returns 0 with r->route set; 404 when no pattern
 * matches; 405 when patterns match but not the method (allow lists the methods). */
int req_route(api_req *r, char *allow, size_t allowlen);
/* Checks the query against the route's list of parameters; answers 400 naming an unknown
 * or repeated one and returns nonzero. */
int req_check_query(api_req *r);

/* ---- bodies (body.c) --------------------------------------------------------------------- */

/* Whether the request announces a body: a nonzero Content-Length or chunked encoding;
 * *declared is the Content-Length, or -1 when none was given. */
int body_announced(api_req *r, int64_t *declared);
/* Chooses how to take the body from the route and the Content-Type; on a refusal answers
 * (415, 413, 500) and returns nonzero. */
int body_begin(api_req *r);
/* Takes the next bytes of the body: kept in memory or written to the temporary file; past
 * the limit or after a write error they are dropped and body_end answers. */
void body_append(api_req *r, const char *data, size_t size);
/* After the last byte: answers 413 / 500 / 400 (bad JSON) and returns nonzero, or leaves
 * r->json ready and returns 0. */
int body_end(api_req *r);

/* ---- handlers (routes_*.c) --------------------------------------------------------------- */

void route_health(api_req *r);
void route_openapi(api_req *r);
void route_prom_metrics(api_req *r);
/* The route label of r in the request metrics (routes_metrics.c). */
const char *route_prom_label(const api_req *r);

/* ---- static files (static.c) ------------------------------------------------------------- */

/* Answers GET url from the web folder (and uPlot under /vendor/uplot/) or 404; never
 * outside those folders. */
void static_serve(api_req *r);
/* The content type of a file name by its extension. */
const char *static_content_type(const char *path);

/* ---- embedded OpenAPI document (generated from openapi.json) ----------------------------- */

extern const char api_openapi_json[];
extern const size_t api_openapi_json_len;


/* Logs a line through the daemon's logger when it gave one (server.h). */
void api_log(const api_server *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
