/* guard.h: the checks that keep a web page the user visits from driving the daemon: the
 * Host allow-list (DNS rebinding), the Origin / Sec-Fetch-Site check of state-changing
 * requests (CSRF) with the optional CORS allow-list, and the Content-Type a route accepts.
 * Plain functions over header values, so they are tested without HTTP. */
#ifndef SGDRD_API_GUARD_H
#define SGDRD_API_GUARD_H

#include <stddef.h>

#define GUARD_HOST_NOT_ALLOWED "HOST_NOT_ALLOWED"
#define GUARD_ORIGIN_NOT_ALLOWED "ORIGIN_NOT_ALLOWED"
#define GUARD_UNSUPPORTED_MEDIA_TYPE "UNSUPPORTED_MEDIA_TYPE"

typedef struct guard_config {
    const char *listen_host;            /* host part of the listen address ("127.0.0.1",
                                         * "0.0.0.0", "box.lan"); NULL: loopback only */
    const char *const *hosts;           /* --allowed-host names; "*" allows every Host */
    int n_hosts;
    const char *const *origins;         /* --allowed-origin ("https://app.example:8443") */
    int n_origins;
    const char *const *proxies;         /* --trusted-proxy addresses ("127.0.0.1") */
    int n_proxies;
} guard_config;

typedef struct guard guard;

/* Copies cfg's lists. Returns 0, -ENOMEM, or -EINVAL with err naming an entry that is
 * not a host name, an origin (scheme://host[:port]) or an IP address. */
int guard_create(guard **out, const guard_config *cfg, char *err, size_t errlen);
void guard_destroy(guard *g);

/* 0 when the Host header names this daemon: a loopback name or address, the listen
 * address (any IP address when that is a wildcard), or an --allowed-host name. -EPERM
 * when it is missing, malformed or another name (a page that rebound its name here). */
int guard_host_ok(const guard *g, const char *host_header);

/* Whether a request with this method may change state (anything but GET, HEAD, OPTIONS). */
int guard_method_changes(const char *method);

/* 0 when a state-changing request comes from this daemon's own origin (host, the
 * request's Host header, with scheme https, or http too unless https says the daemon is
 * reached through TLS), from an --allowed-origin,
 * or from no browser page at all (no Origin, no Sec-Fetch-Site, or Sec-Fetch-Site "none"
 * for what the user typed). -EPERM otherwise, including Origin "null". */
int guard_origin_ok(const guard *g, const char *origin, const char *sec_fetch_site,
                    const char *host, int https);

/* Whether origin is one of the --allowed-origin list (which then gets CORS headers). */
int guard_origin_listed(const guard *g, const char *origin);

/* Whether the peer address (text, as inet_ntop writes it) is a --trusted-proxy, whose
 * X-Forwarded-Proto is believed. */
int guard_proxy_trusted(const guard *g, const char *peer);

/* What a route takes as its body. */
typedef enum guard_body {
    GUARD_BODY_NONE,     /* nothing; application/json allowed as the declared type */
    GUARD_BODY_JSON,     /* application/json */
    GUARD_BODY_DATASET,  /* application/json, application/x-tar, application/gzip */
    GUARD_BODY_IMAGE,    /* image/png, image/jpeg, application/octet-stream */
    GUARD_BODY_FILE,     /* application/octet-stream */
} guard_body;

/* 0 when content_type (the header, parameters allowed; NULL when absent) suits a route
 * taking body. An absent type passes: the route's own rules then refuse an untyped body.
 * A present one must be one of the route's types even for an empty body (has_body 0), so
 * that an HTML form (text/plain, multipart, urlencoded) never gets through. -EPROTO
 * otherwise, with detail saying what the route accepts. */
int guard_media_ok(guard_body body, const char *content_type, int has_body, char *detail,
                   size_t detaillen);

#endif
