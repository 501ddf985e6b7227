/* gate.h: the checks every request passes before its route (gate.c), as hooks of the
 * request life cycle. Each hook that refuses answers the problem itself and returns 1. */
#ifndef SGDRD_API_GATE_H
#define SGDRD_API_GATE_H

#include "api_internal.h"
#include "throttle.h"

/* Builds s's allow-lists (guard.h) from cfg's flags, with the listen address's host, and
 * its session table. Returns 0, or a negative errno with err naming the refused entry. */
int gate_create(api_server *s, const api_config *cfg, char *err, size_t errlen);
/* Frees what gate_create built; fine on a server that has none. */
void gate_destroy(api_server *s);

/* First: the Host allow-list (every path, static files and streams too), an allowed
 * origin's CORS preflight, and the Origin / Sec-Fetch-Site check of a state-changing
 * request. 403 HOST_NOT_ALLOWED / ORIGIN_NOT_ALLOWED, or 204 for a preflight. */
int gate_begin(api_req *r);

/* 1 when the request carries the cookie of an open session (the dashboard's sign-in). */
int gate_session_ok(api_req *r);

/* Before a token is compared (POST /session, a bearer header): 429 with Retry-After when
 * the client (its address, see client_addr) has failed too many sign-ins lately
 * (throttle.h), and 1; else 0, with the address in addr for gate_signin_result. */
int gate_signin_refused(api_req *r, char addr[THROTTLE_ADDR_MAX + 1]);
/* Counts a failed sign-in of addr, or clears its count on a success. */
void gate_signin_result(api_req *r, const char *addr, int ok);

/* 1 for the routes that need no credentials: the sign-in itself. */
int gate_open_route(api_req *r);

/* After routing, for a state-changing method: 415 UNSUPPORTED_MEDIA_TYPE when the
 * Content-Type is not one the route takes, even with an empty body. */
int gate_media(api_req *r);

/* A route that takes no body still accepts "{}" as application/json (what a client that
 * always sends JSON sends): returns 1 and takes the body as JSON of at most a few bytes;
 * 0 for any other type. mt: the lower-cased media type or NULL. */
int gate_take_empty_json(api_req *r, const char *mt);

/* After the body, for a route that takes none: 415 when the JSON taken by
 * gate_take_empty_json is not an empty object. Returns 1 when it answered. */
int gate_body_not_empty(api_req *r);

/* 1 when the client reached the daemon over TLS: --behind-tls, or X-Forwarded-Proto:
 * https from a --trusted-proxy. */
int gate_https(api_req *r);

/* Before an answer leaves: CORS headers for an --allowed-origin, none otherwise. */
void gate_decorate(api_req *r);

#endif
