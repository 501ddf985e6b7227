/* gate.c: what every request passes before its route: the Host allow-list on every path,
 * CORS preflights for --allowed-origin, the Origin check of state-changing requests, the
 * session cookie as an alternative to the bearer header, and the route's Content-Type.
 * The decisions are guard.c's and session.c's; this file reads headers and answers. */
#define _GNU_SOURCE
#include "gate.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "guard.h"
#include "session.h"

/* Sign-ins held at once; past it the one closest to expiry makes room. */
#define GATE_SESSIONS 256

int gate_create(api_server *s, const api_config *cfg, char *err, size_t errlen)
{
    char host[256] = "";
    const char *l = cfg->listen ? cfg->listen : "127.0.0.1:8080";
    const char *colon = l[0] == '[' ? strchr(l, ']') : strrchr(l, ':');
    size_t n = colon ? (size_t)(colon - l) - (l[0] == '[') : 0;
    guard_config gc = {
        .listen_host = host,
        .hosts = cfg->allowed_hosts, .n_hosts = cfg->n_allowed_hosts,
        .origins = cfg->allowed_origins, .n_origins = cfg->n_allowed_origins,
        .proxies = cfg->trusted_proxies, .n_proxies = cfg->n_trusted_proxies,
    };
    int rc;

    if (n < sizeof host) {
        memcpy(host, l + (l[0] == '['), n);
        host[n] = '\0';
    }
    rc = guard_create(&s->guard, &gc, err, errlen);
    if (rc)
        return rc;
    s->behind_tls = cfg->behind_tls;
    rc = session_table_create(&s->sessions, GATE_SESSIONS,
                              cfg->session_ttl_s > 0 ? cfg->session_ttl_s
                                                     : SESSION_DEFAULT_TTL_S);
    if (rc == 0)
        rc = throttle_create(&s->signins, THROTTLE_CAPACITY, THROTTLE_MAX_FAILS,
                             THROTTLE_WINDOW_S);
    if (rc)
        snprintf(err, errlen, "out of memory");
    return rc;
}

void gate_destroy(api_server *s)
{
    guard_destroy(s->guard);
    session_table_destroy(s->sessions);
    throttle_destroy(s->signins);
    s->guard = NULL;
    s->sessions = NULL;
    s->signins = NULL;
}

int gate_signin_refused(api_req *r, char addr[THROTTLE_ADDR_MAX + 1])
{
    char after[16];
    client_addr(r, addr, THROTTLE_ADDR_MAX + 1);
    int wait = throttle_wait_s(r->srv->signins, addr, clock_mono_s());
    if (!wait)
        return 0;
    reply_problem(r, 429, PROBLEM_LIMIT, NULL,
                  "too many failed sign-ins from this client (%d within %d s); retry in %d s",
                  THROTTLE_MAX_FAILS, THROTTLE_WINDOW_S, wait);
    snprintf(after, sizeof after, "%d", wait);
    if (r->status == 429)
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_RETRY_AFTER, after);
    return 1;
}

void gate_signin_result(api_req *r, const char *addr, int ok)
{
    if (ok)
        throttle_clear(r->srv->signins, addr);
    else
        throttle_fail(r->srv->signins, addr, clock_mono_s());
}

int gate_https(api_req *r)
{
    const union MHD_ConnectionInfo *ci;
    const char *proto = req_header(r, "X-Forwarded-Proto");
    char peer[INET6_ADDRSTRLEN] = "";

    if (r->srv->behind_tls)
        return 1;
    if (!proto || strcasecmp(proto, "https") != 0)
        return 0;
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return 0;
    if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, peer,
                  sizeof peer);
    else if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, peer,
                  sizeof peer);
    return guard_proxy_trusted(r->srv->guard, peer);
}

/* Answers an allowed origin's CORS preflight: 204 with what it may send. */
static void preflight(api_req *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (resp) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                                "GET, HEAD, POST, DELETE");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, Last-Event-ID");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    reply_response(r, 204, resp);
}

int gate_begin(api_req *r)
{
    const char *origin = req_header(r, "Origin");
    const char *host = req_header(r, MHD_HTTP_HEADER_HOST);

    if (guard_host_ok(r->srv->guard, host)) {
        reply_problem(r, 403, GUARD_HOST_NOT_ALLOWED, "Host",
                      "Host '%.100s' is not a name of this daemon; start it with "
                      "--allowed-host NAME to serve that name",
                      host ? host : "(none)");
        return 1;
    }
    if (!strcmp(r->method, "OPTIONS") && guard_origin_listed(r->srv->guard, origin) &&
        req_header(r, "Access-Control-Request-Method")) {
        preflight(r);
        return 1;
    }
    if (guard_method_changes(r->method) &&
        guard_origin_ok(r->srv->guard, origin, req_header(r, "Sec-Fetch-Site"), host,
                        gate_https(r))) {
        reply_problem(r, 403, GUARD_ORIGIN_NOT_ALLOWED, "Origin",
                      "%s from another origin (%.100s) is refused; start the daemon with "
                      "--allowed-origin ORIGIN to allow one",
                      r->method, origin && *origin ? origin : "a cross-site page");
        return 1;
    }
    return 0;
}

int gate_session_ok(api_req *r)
{
    char id[SESSION_ID_CHARS + 1];
    const char *cookie = req_header(r, MHD_HTTP_HEADER_COOKIE);
    if (!cookie || session_cookie_find(cookie, r->srv->cookie_name, id, sizeof id))
        return 0;
    return session_check(r->srv->sessions, id, clock_mono_s()) == 0;
}

int gate_open_route(api_req *r)
{
    return strcmp(r->url, API_PREFIX "/session") == 0;
}

static guard_body guard_body_of(body_kind k)
{
    switch (k) {
    case BODY_JSON: return GUARD_BODY_JSON;
    case BODY_DATASET: return GUARD_BODY_DATASET;
    case BODY_IMAGE: return GUARD_BODY_IMAGE;
    case BODY_FILE: return GUARD_BODY_FILE;
    case BODY_NONE: break;
    }
    return GUARD_BODY_NONE;
}

int gate_media(api_req *r)
{
    char detail[256];
    const char *cl = req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int has_body = (cl && strcmp(cl, "0") != 0) ||
                   req_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
    if (!guard_method_changes(r->method) ||
        guard_media_ok(guard_body_of(r->route->body),
                       req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE), has_body, detail,
                       sizeof detail) == 0)
        return 0;
    reply_problem(r, 415, GUARD_UNSUPPORTED_MEDIA_TYPE, "Content-Type", "%s", detail);
    return 1;
}

/* Room for "{}" with a little whitespace around it. */
#define GATE_EMPTY_JSON_MAX 16

int gate_take_empty_json(api_req *r, const char *mt)
{
    if (!mt || strcmp(mt, "application/json") != 0)
        return 0;
    r->kind = BODY_JSON;
    r->limit = GATE_EMPTY_JSON_MAX;
    return 1;
}

int gate_body_not_empty(api_req *r)
{
    if (r->route->body != BODY_NONE || !r->json || json_object_size(r->json) == 0)
        return 0;
    reply_problem(r, 415, PROBLEM_INVALID, NULL, "%s %s takes no body (or {})", r->method,
                  r->route->pattern);
    return 1;
}

void gate_decorate(api_req *r)
{
    const char *origin = req_header(r, "Origin");
    if (!r->resp || !guard_origin_listed(r->srv->guard, origin))
        return;
    MHD_add_response_header(r->resp, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(r->resp, "Access-Control-Expose-Headers", "Location");
    MHD_add_response_header(r->resp, "Vary", "Origin");
}
