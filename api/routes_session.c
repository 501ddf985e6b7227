/* routes_session.c: /api/v1/session, the dashboard's sign-in: GET says whether a token is
 * needed and whether this browser holds a session, POST exchanges the token for a session
 * cookie (a client with too many failures lately gets 429, throttle.h), DELETE signs out.
 * Neither the token nor the cookie is ever logged. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "gate.h"
#include "routes.h"
#include "session.h"

void route_session_get(api_req *r)
{
    int need = r->srv->token != NULL;
    reply_json(r, 200, json_pack("{s:b, s:b}", "token_required", need, "signed_in",
                                 need && gate_session_ok(r)));
}

/* Answers 204 carrying the Set-Cookie value for id (NULL: the one that deletes it). */
static void reply_cookie(api_req *r, unsigned status, const char *id)
{
    char cookie[SESSION_COOKIE_MAX];
    struct MHD_Response *resp;
    json_t *body = id ? json_pack("{s:I}", "expires_in",
                                  (json_int_t)session_ttl(r->srv->sessions))
                      : NULL;
    size_t len = 0;
    char *text = body ? api_json_text(body, &len) : NULL;

    json_decref(body);
    if (session_cookie(cookie, sizeof cookie, r->srv->cookie_name, id,
                       session_ttl(r->srv->sessions), gate_https(r))) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "the session cookie does not fit");
        return;
    }
    if (text)
        resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    else
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (resp) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, cookie);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (text)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    }
    explicit_bzero(cookie, sizeof cookie);
    reply_response(r, status, resp);
}

typedef struct session_body {
    const char *token;
} session_body;

static const spec_field session_spec[] = {
    {.name = "token", .type = SPEC_STRING, .required = 1, .min = 1, .max = 1024,
     .offset = offsetof(session_body, token)},
    {0},
};

void route_session_create(api_req *r)
{
    session_body b = {0};
    char id[SESSION_ID_CHARS + 1], addr[THROTTLE_ADDR_MAX + 1];

    if (req_parse(r, session_spec, &b))
        return;
    if (!r->srv->token) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL,
                      "this daemon has no --token-file; no sign-in is needed");
        return;
    }
    if (gate_signin_refused(r, addr))
        return;
    int ok = session_token_equal(r->srv->token, b.token);
    gate_signin_result(r, addr, ok);
    if (!ok) {
        reply_problem(r, 401, PROBLEM_UNAUTHENTICATED, "token", "the token is not valid");
        return;
    }
    if (session_open(r->srv->sessions, clock_mono_s(), id)) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "no randomness for a session id");
        return;
    }
    reply_cookie(r, 201, id);
    explicit_bzero(id, sizeof id);
}

void route_session_delete(api_req *r)
{
    char id[SESSION_ID_CHARS + 1];
    const char *cookie = req_header(r, MHD_HTTP_HEADER_COOKIE);
    if (cookie && session_cookie_find(cookie, r->srv->cookie_name, id, sizeof id) == 0)
        session_close(r->srv->sessions, id);
    reply_cookie(r, 204, NULL);
}
