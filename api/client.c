/* client.c: a request's client key (client.h). */
#define _GNU_SOURCE
#include "client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "guard.h"
#include "session.h"

static void peer_text(api_req *r, char *out, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    snprintf(out, len, "?");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
                  (socklen_t)len);
}

/* X-Forwarded-For's last entry: the address the proxy itself saw (nginx's
 * $proxy_add_x_forwarded_for appends it); earlier entries are the client's own claims. */
static int forwarded_for(api_req *r, char *out, size_t len)
{
    const char *xff = req_header(r, "X-Forwarded-For");
    const char *last;
    size_t n;
    if (!xff)
        return 0;
    last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    last += strspn(last, " \t");
    n = strcspn(last, " \t");
    if (n == 0 || n >= len)
        return 0;
    memcpy(out, last, n);
    out[n] = '\0';
    return 1;
}

void client_addr(api_req *r, char *out, size_t len)
{
    peer_text(r, out, len);
    if (guard_proxy_trusted(r->srv->guard, out))
        forwarded_for(r, out, len);
}

int client_key(api_req *r, char key[CLIENT_KEY_MAX])
{
    char addr[INET6_ADDRSTRLEN], sid[SESSION_ID_CHARS + 1];
    const char *cookie = req_header(r, MHD_HTTP_HEADER_COOKIE);
    const char *site = req_header(r, "Sec-Fetch-Site");

    client_addr(r, addr, sizeof addr);
    if (r->srv->sessions && cookie &&
        !session_cookie_find(cookie, r->srv->cookie_name, sid, sizeof sid) &&
        session_check(r->srv->sessions, sid, clock_mono_s()) == 0) {
        /* A prefix names the session well enough and keeps the secret out of the key. */
        snprintf(key, CLIENT_KEY_MAX, "%s session %.16s", addr, sid);
        return 1;
    }
    if (site && !strcasecmp(site, "same-origin")) {
        snprintf(key, CLIENT_KEY_MAX, "%s dashboard", addr);
        return 1;
    }
    snprintf(key, CLIENT_KEY_MAX, "%s", addr);
    return 0;
}
