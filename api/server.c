/* server.c: libmicrohttpd set-up and the request life cycle: per-request state created on
 * the first callback (bearer authentication, route, body taken as body.c decides),
 * collected on the next ones, answered on the last (reply.c). */
#define _GNU_SOURCE
#include "api_internal.h"
#include "conn.h"
#include "gate.h"
#include "fs_path.h"
#include "prom.h"
#include "sse.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
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
/* Longer than the slowest synchronous handler: libmicrohttpd measures idleness by bytes
 * moved, so the time a handler works may count too. */
#define API_IDLE_TIMEOUT_S 60

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

/* With a token: a session, or the bearer header, whose guesses count as sign-ins
 * (gate_signin_refused: a client with too many failures is not compared). Returns 1 when
 * the request is answered (401 or 429). */
static int req_authenticate(api_req *r)
{
    char addr[THROTTLE_ADDR_MAX + 1];
    const char *auth = req_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!r->srv->token ||
        (strncmp(r->url, "/api/", 5) != 0 && strcmp(r->url, "/metrics") != 0) ||
        gate_open_route(r) || gate_session_ok(r))
        return 0;
    if (auth) {
        if (gate_signin_refused(r, addr))
            return 1;
        int ok = token_ok(r->srv, auth);
        gate_signin_result(r, addr, ok);
        if (ok)
            return 0;
    }
    reply_problem(r, 401, PROBLEM_UNAUTHENTICATED, NULL,
                  "sign in (POST " API_PREFIX "/session) or send a valid "
                  "\"Authorization: Bearer <token>\" header");
    return 1;
}

/* The first callback: route, authenticate, and decide how to take the body. Returns 1 when
 * the request is already answered (r->resp set). */
static int req_begin(api_req *r)
{
    char allow[64];
    int rc;

    if (gate_begin(r))
        return 1;
    if (req_authenticate(r))
        return 1;
    rc = req_route(r, allow, sizeof allow);
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
    if (req_check_query(r) || gate_media(r))
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
                      clock_mono_s() - r->t0);
    api_log(r->srv, 3, "%s %s -> %u (%.1f ms)", r->method, r->url, r->status,
            (clock_mono_s() - r->t0) * 1e3);
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
        r->t0 = clock_mono_s();
        *con_cls = r;
        conn_set_busy(r->srv->conns, conn, 1);
        if (!req_begin(r))
            return MHD_YES;
        /* Refused before the body: drop a small one and answer at its end. */
        if (body_announced(r, &declared) && declared <= DISCARD_MAX) {
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

/* cls is the server's connection table. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    api_req *r = *con_cls;
    (void)toe;
    conn_set_busy(cls, conn, 0);
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

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    return conn_accept(cls, addr, len) ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        conn_opened(cls, conn, socket_context);
    else
        conn_closed(cls, socket_context);
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

static int conn_create(api_server *s, const api_config *cfg)
{
    conn_limits lim = {
        .max_conns = cfg->max_conns,
        .per_client = cfg->max_conns_per_client,
        .header_timeout_s = cfg->header_timeout_s,
        .proxies = cfg->trusted_proxies,
        .n_proxies = cfg->n_trusted_proxies,
    };
    return conn_table_create(&s->conns, &lim);
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void server_free(api_server *s)
{
    if (!s)
        return;
    sse_hub_destroy(s->hub);
    conn_table_destroy(s->conns);
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

/* The settings the server keeps a copy of: token, folders, limits, the web folder and the
 * dataset roots (resolved; a missing web/ only costs the dashboard). -ENOMEM. */
static int server_settings(api_server *s, const api_config *cfg)
{
    s->token = xstrdup(cfg->token && cfg->token[0] ? cfg->token : NULL);
    s->data_dir = xstrdup(cfg->data_dir);
    s->version = xstrdup(cfg->version ? cfg->version : SGDRD_VERSION);
    s->max_upload = cfg->max_upload > 0 ? cfg->max_upload : 2ll * 1024 * 1024 * 1024;
    s->store = cfg->store;
    if (cfg->backend)
        s->backend = *cfg->backend;
    s->log = cfg->log;
    s->started = clock_mono_s();
    if (!s->data_dir || !s->version || (cfg->token && cfg->token[0] && !s->token))
        return -ENOMEM;
    /* SGDRD_WEB_DIR in the environment serves another dashboard without a rebuild. */
    const char *web = cfg->web_dir ? cfg->web_dir : getenv("SGDRD_WEB_DIR");
    s->web_dir = realpath(web && *web ? web : SGDRD_WEB_DIR, NULL);
    s->dataset_roots = calloc((size_t)(cfg->n_dataset_roots + 1), sizeof *s->dataset_roots);
    if (!s->dataset_roots)
        return -ENOMEM;
    for (int i = 0; i < cfg->n_dataset_roots; i++) {
        char *p = realpath(cfg->dataset_roots[i], NULL);
        if (p)
            s->dataset_roots[s->n_dataset_roots++] = p;
    }
    return 0;
}

/* The uploads' tmp/ folder, the request gate, event streams, page cache, counters and the
 * connection records. */
static int server_parts(api_server *s, const api_config *cfg, char *err, size_t errlen)
{
    char tmpdir[PATH_MAX];
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", s->data_dir);
    int rc = fs_mkdir_p(tmpdir);
    if (rc) {
        snprintf(err, errlen, "cannot create %s: %s", tmpdir, strerror(-rc));
        return rc;
    }
    if ((rc = gate_create(s, cfg, err, errlen)) != 0)
        return rc;
    if (sse_hub_create(&s->hub, s->store, cfg->max_streams, cfg->max_streams_per_client) ||
        page_cache_create(&s->pages, API_PAGE_CACHE_SLOTS) || prom_create(&s->prom) ||
        conn_create(s, cfg)) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* Starts libmicrohttpd on ss. MHD's own per-address limit is left off: on loopback and
 * behind a proxy every client shares one address. conn.c counts remote peers itself and
 * keeps the slots of connections that hold one without a request in progress short-lived. */
static int server_listen(api_server *s, const api_config *cfg, struct sockaddr_storage *ss,
                         char *err, size_t errlen)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG;
    if (ss->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->mhd = MHD_start_daemon(
        flags, 0, on_accept, s->conns, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)ss,
        MHD_OPTION_CONNECTION_LIMIT, conn_table_hard_limit(s->conns),
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(cfg->idle_timeout_s ? cfg->idle_timeout_s : API_IDLE_TIMEOUT_S),
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s->conns,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s->conns,
        MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not available)",
                 cfg->listen ? cfg->listen : "127.0.0.1:8080");
        return -EADDRINUSE;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? (int)info->port : 0;
    snprintf(s->cookie_name, sizeof s->cookie_name, "sgdrd_session_%d", s->port);
    return 0;
}

int api_server_start(api_server **out, const api_config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    *out = NULL;
    int rc = parse_listen(cfg->listen ? cfg->listen : "127.0.0.1:8080", &ss, &sslen, err,
                          errlen);
    if (rc)
        return rc;
    if (!cfg->data_dir) {
        snprintf(err, errlen, "no data dir");
        return -EINVAL;
    }
    api_server *s = calloc(1, sizeof *s);
    if (!s || server_settings(s, cfg) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    } else {
        rc = server_parts(s, cfg, err, errlen);
    }
    if (rc == 0)
        rc = server_listen(s, cfg, &ss, err, errlen);
    if (rc) {
        server_free(s);
        return rc;
    }
    *out = s;
    return 0;
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
