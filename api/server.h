/* server.h: the HTTP front of sgdrd: libmicrohttpd, the /api/v1 routes (api/openapi.json),
 * Server-Sent Events, the static dashboard of web/ and /openapi.json. */
#ifndef SGDRD_API_SERVER_H
#define SGDRD_API_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct store;
struct api_backend;

typedef struct api_config {
    const char *listen;          /* "host:port" or "[v6]:port"; port 0 picks a free one */
    const char *token;           /* bearer token every request must carry, or NULL: none */
    const char *data_dir;        /* uploads, datasets and models are written under it */
    const char *const *dataset_roots; /* folders POST /datasets may register from */
    int n_dataset_roots;
    int64_t max_upload;          /* bytes; <= 0 means 2 GiB */
    const char *web_dir;         /* served at /; NULL: $SGDRD_WEB_DIR, else the source
                                  * tree's web/ */
    const char *version;         /* reported by /health; NULL: the project version */
    /* Connections and event streams (docs/reliability.md); 0 takes the default. */
    unsigned max_conns;          /* open connections; 0: 512 */
    unsigned max_conns_per_client; /* from one remote address, except loopback and
                                  * trusted proxies; 0: 64 */
    unsigned header_timeout_s;   /* a connection without a request in progress is closed
                                  * after this; 0: 10 */
    unsigned idle_timeout_s;     /* a request whose client sends or reads nothing for this
                                  * long (a stalled body) is closed; 0: 60 */
    unsigned max_streams;        /* event streams open at once; 0: 64 */
    unsigned max_streams_per_client; /* for one client (see api/client.h); 0: 8 */
    struct store *store;         /* borrowed; must outlive the server. The server
                                  * subscribes to its commits to feed event streams. */
    const struct api_backend *backend; /* copied; its ctx must outlive the server. NULL:
                                  * routes that queue or run anything answer 503 */
    /* Web safety (docs/security.md): names the Host header may give beside
     * loopback names and the listen address ("*": any); origins allowed to make
     * state-changing and CORS requests; proxies whose X-Forwarded-Proto is believed. */
    const char *const *allowed_hosts;
    int n_allowed_hosts;
    const char *const *allowed_origins;
    int n_allowed_origins;
    const char *const *trusted_proxies;
    int n_trusted_proxies;
    int behind_tls;              /* reached through TLS: Secure cookies, https origin */
    int64_t session_ttl_s;       /* sign-in lifetime; <= 0: 12 hours */
    /* Optional, NULL: silent. Gets one line per answered request (level 3, debug) and one
     * per server-side failure (level 0, error), levels as daemon/log.h's log_level; called
     * from connection threads. Lines never hold the token or a request body. */
    void (*log)(int level, const char *line);
} api_config;

typedef struct api_server api_server;

/* Starts listening on cfg->listen with libmicrohttpd's own threads (one per connection)
 * and serves until api_server_stop. cfg's strings and backend are copied; store and the
 * backend's ctx are borrowed. On failure returns a negative errno-style code, *out = NULL,
 * and err says why (bad address, port in use, missing web dir, ...). */
int api_server_start(api_server **out, const api_config *cfg, char *err, size_t errlen);

/* The port actually bound (useful when cfg->listen asked for port 0). */
int api_server_port(const api_server *s);

/* Ends every open event stream, stops accepting connections, waits for the connection
 * threads and frees everything. NULL is fine. */
void api_server_stop(api_server *s);

#endif
