/* client.h: who sent a request, for per-client limits. On loopback every client has the
 * address 127.0.0.1 and behind a reverse proxy every client has the proxy's, so the key
 * joins the client's address (X-Forwarded-For's last entry when the peer is a trusted
 * proxy, else the peer address) with what the request carries: its sign-in session, or
 * the dashboard's own-origin marker (Sec-Fetch-Site: same-origin, sent by browsers). */
#ifndef SGDRD_API_CLIENT_H
#define SGDRD_API_CLIENT_H

#include <stddef.h>

#include "api_internal.h"

#define CLIENT_KEY_MAX 96

/* Writes r's client key (NUL terminated, at most CLIENT_KEY_MAX bytes with the NUL) and
 * returns 1 when the request is the dashboard's (a valid session, or a same-origin browser
 * request): those may use the reserve a limit keeps back from other clients; else 0. */
int client_key(api_req *r, char key[CLIENT_KEY_MAX]);

/* Writes r's client address: X-Forwarded-For's last entry when the peer is a trusted
 * proxy, else the peer address ("?" when not known). */
void client_addr(api_req *r, char *out, size_t len);

#endif
