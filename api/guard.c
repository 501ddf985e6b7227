/* guard.c: Host allow-list, Origin check, CORS allow-list and Content-Type rules (guard.h). */
#define _GNU_SOURCE
#include "guard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct guard {
    char *listen_host;        /* lower-case, no brackets; NULL: none */
    int listen_wildcard;      /* 0.0.0.0 or :: : every address of the machine */
    char **hosts;             /* lower-case */
    int n_hosts;
    int any_host;             /* "*" was given */
    char **origins;           /* lower-case, no trailing slash */
    int n_origins;
    char **proxies;
    int n_proxies;
};

static void free_list(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void guard_destroy(guard *g)
{
    if (!g)
        return;
    free(g->listen_host);
    free_list(g->hosts, g->n_hosts);
    free_list(g->origins, g->n_origins);
    free_list(g->proxies, g->n_proxies);
    free(g);
}

static char *lower_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = (char)tolower((unsigned char)s[i]);
    d[n] = '\0';
    return d;
}

static int is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* A DNS name: letters, digits, '-' and '.', not empty, or an IP address. */
static int valid_name(const char *s)
{
    if (!*s || strlen(s) > 253)
        return 0;
    if (is_ip(s))
        return 1;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return 0;
    return 1;
}

/* scheme://host[:port], with no path; the form browsers send in Origin. */
static int valid_origin(const char *s)
{
    const char *rest;
    if (!strncasecmp(s, "http://", 7))
        rest = s + 7;
    else if (!strncasecmp(s, "https://", 8))
        rest = s + 8;
    else
        return 0;
    if (!*rest || strchr(rest, '/') || strchr(rest, '?') || strchr(rest, '#'))
        return 0;
    for (const char *p = rest; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-.:[]", *p))
            return 0;
    return 1;
}

/* Copies n strings into *out after check; err names the first refused. */
static int copy_list(char ***out, const char *const *in, int n, int (*check)(const char *),
                     const char *flag, char *err, size_t errlen)
{
    *out = calloc((size_t)n + 1, sizeof **out);
    if (!*out)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(in[i]);
        while (len > 0 && in[i][len - 1] == '/')
            len--;
        (*out)[i] = lower_dup(in[i], len);
        if (!(*out)[i])
            return -ENOMEM;
        if (check && !check((*out)[i])) {
            snprintf(err, errlen, "%s '%s' is not valid", flag, in[i]);
            return -EINVAL;
        }
    }
    return 0;
}

static int host_or_star(const char *s)
{
    return strcmp(s, "*") == 0 || valid_name(s);
}

int guard_create(guard **out, const guard_config *cfg, char *err, size_t errlen)
{
    guard *g = calloc(1, sizeof *g);
    int rc = -ENOMEM;

    *out = NULL;
    if (!g)
        return -ENOMEM;
    if (cfg->listen_host && cfg->listen_host[0]) {
        g->listen_host = lower_dup(cfg->listen_host, strlen(cfg->listen_host));
        if (!g->listen_host)
            goto out_free;
        g->listen_wildcard = !strcmp(g->listen_host, "0.0.0.0") ||
                             !strcmp(g->listen_host, "::");
    }
    rc = copy_list(&g->hosts, cfg->hosts, cfg->n_hosts, host_or_star, "--allowed-host",
                   err, errlen);
    g->n_hosts = cfg->n_hosts;
    if (rc)
        goto out_free;
    for (int i = 0; i < g->n_hosts; i++)
        g->any_host |= strcmp(g->hosts[i], "*") == 0;
    rc = copy_list(&g->origins, cfg->origins, cfg->n_origins, valid_origin,
                   "--allowed-origin", err, errlen);
    g->n_origins = cfg->n_origins;
    if (rc)
        goto out_free;
    rc = copy_list(&g->proxies, cfg->proxies, cfg->n_proxies, is_ip, "--trusted-proxy", err,
                   errlen);
    g->n_proxies = cfg->n_proxies;
    if (rc)
        goto out_free;
    *out = g;
    return 0;

out_free:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    guard_destroy(g);
    return rc;
}

/* Splits a Host header into its lower-case name (brackets of an IPv6 literal removed,
 * a trailing dot dropped) in buf. -EINVAL when malformed. */
static int host_name(const char *h, char *buf, size_t len)
{
    const char *end, *port;
    size_t n;

    if (h[0] == '[') {
        end = strchr(h, ']');
        if (!end)
            return -EINVAL;
        h++;
        port = end + 1;
    } else {
        end = strchr(h, ':');
        if (!end)
            end = h + strlen(h);
        port = end;
    }
    if (*port == ':') {
        port++;
        if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
            return -EINVAL;
    } else if (*port) {
        return -EINVAL;
    }
    n = (size_t)(end - h);
    if (n > 0 && h[n - 1] == '.')
        n--;
    if (n == 0 || n >= len)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)tolower((unsigned char)h[i]);
    buf[n] = '\0';
    return valid_name(buf) ? 0 : -EINVAL;
}

static int is_loopback(const char *name)
{
    struct in6_addr a6;
    size_t n = strlen(name);
    if (!strcmp(name, "localhost") || (n > 10 && !strcmp(name + n - 10, ".localhost")))
        return 1;
    if (!strncmp(name, "127.", 4) && is_ip(name))
        return 1;
    return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

int guard_host_ok(const guard *g, const char *host_header)
{
    char name[256];
    if (!host_header || host_name(host_header, name, sizeof name))
        return -EPERM;
    if (g->any_host || is_loopback(name))
        return 0;
    if (g->listen_host && (!strcmp(name, g->listen_host) || (g->listen_wildcard && is_ip(name))))
        return 0;
    for (int i = 0; i < g->n_hosts; i++)
        if (!strcmp(name, g->hosts[i]))
            return 0;
    return -EPERM;
}

int guard_method_changes(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
           strcmp(method, "OPTIONS") != 0;
}

int guard_origin_listed(const guard *g, const char *origin)
{
    if (!origin)
        return 0;
    for (int i = 0; i < g->n_origins; i++)
        if (!strcasecmp(origin, g->origins[i]))
            return 1;
    return 0;
}

int guard_origin_ok(const guard *g, const char *origin, const char *sec_fetch_site,
                    const char *host, int https)
{
    if (origin && *origin) {
        const char *rest = NULL;
        if (!strncasecmp(origin, "https://", 8))
            rest = origin + 8;
        else if (!https && !strncasecmp(origin, "http://", 7))
            rest = origin + 7;
        /* One port serves one scheme, so without a known scheme host:port decides. */
        if (rest && host && *host && !strcasecmp(rest, host))
            return 0;
        return guard_origin_listed(g, origin) ? 0 : -EPERM;
    }
    /* A browser that sends no Origin still says where the request came from here. */
    if (sec_fetch_site && strcasecmp(sec_fetch_site, "same-origin") != 0 &&
        strcasecmp(sec_fetch_site, "none") != 0)
        return -EPERM;
    return 0;
}

int guard_proxy_trusted(const guard *g, const char *peer)
{
    if (!peer)
        return 0;
    for (int i = 0; i < g->n_proxies; i++)
        if (!strcasecmp(peer, g->proxies[i]))
            return 1;
    return 0;
}

static const char *const body_types[][4] = {
    [GUARD_BODY_NONE] = {"application/json"},
    [GUARD_BODY_JSON] = {"application/json"},
    [GUARD_BODY_DATASET] = {"application/json", "application/x-tar", "application/gzip",
                            "application/x-gzip"},
    [GUARD_BODY_IMAGE] = {"image/png", "image/jpeg", "application/octet-stream"},
    [GUARD_BODY_FILE] = {"application/octet-stream"},
};

int guard_media_ok(guard_body body, const char *content_type, int has_body, char *detail,
                   size_t detaillen)
{
    char mt[96];
    size_t i = 0, used = 0;
    const char *const *types = body_types[body];

    (void)has_body;
    if (!content_type)
        return 0;
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    for (; content_type[i] && content_type[i] != ';' && content_type[i] != ' ' &&
           i + 1 < sizeof mt; i++)
        mt[i] = (char)tolower((unsigned char)content_type[i]);
    mt[i] = '\0';
    for (int k = 0; k < 4 && types[k]; k++)
        if (!strcmp(mt, types[k]))
            return 0;
    used = (size_t)snprintf(detail, detaillen, "Content-Type %.64s is not accepted here; ",
                            mt[0] ? mt : "(empty)");
    for (int k = 0; k < 4 && types[k] && used < detaillen; k++)
        used += (size_t)snprintf(detail + used, detaillen - used, "%s%s", k ? ", " : "send ",
                                 types[k]);
    return -EPROTO;
}
