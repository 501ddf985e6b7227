/* conn.h: connection accounting: every open connection, whether a request is in progress
 * on it, and the rules that keep a few clients from holding every connection: a global
 * limit, a per-address limit for direct remote peers, a deadline for a connection that
 * holds a slot without sending a complete request, and, when the table is full, the
 * eviction of the connection that has waited longest without a request. Thread-safe. */
#ifndef SGDRD_API_CONN_H
#define SGDRD_API_CONN_H

#include <stdint.h>
#include <sys/socket.h>

struct MHD_Connection;

#define CONN_DEFAULT_MAX 512
#define CONN_DEFAULT_PER_CLIENT 64
#define CONN_DEFAULT_HEADER_TIMEOUT_S 10
/* Connections MHD may hold beyond the table's limit: an evicted connection keeps its slot
 * until its thread has seen the socket shut, a few milliseconds later. */
#define CONN_EVICT_MARGIN 64

typedef struct conn_limits {
    unsigned max_conns;        /* open connections; 0: CONN_DEFAULT_MAX */
    unsigned per_client;       /* open connections from one remote address that is neither
                                * loopback nor a trusted proxy; 0: CONN_DEFAULT_PER_CLIENT */
    unsigned header_timeout_s; /* seconds a connection may wait without a request in
                                * progress (a new one, or keep-alive between requests);
                                * 0: CONN_DEFAULT_HEADER_TIMEOUT_S */
    /* Peers the per-address limit does not apply to, beside loopback: reverse proxies
     * (every client behind one shares its address). Copied. */
    const char *const *proxies;
    int n_proxies;
} conn_limits;

typedef struct conn_table conn_table;

/* Creates the table and starts its watchdog thread, which closes connections past the
 * header deadline. Returns 0, or -ENOMEM / a pthread error (negated). */
int conn_table_create(conn_table **out, const conn_limits *lim);
/* Stops the watchdog and frees the table; every connection must be gone (the HTTP daemon
 * stopped). NULL is fine. */
void conn_table_destroy(conn_table *t);

/* The limit MHD itself enforces: the table's limit plus CONN_EVICT_MARGIN. */
unsigned conn_table_hard_limit(const conn_table *t);

/* Whether to accept a connection from addr (MHD's accept policy): refused past the
 * per-address limit, or when the table is full and no waiting connection can be evicted.
 * Returns 1 to accept. */
int conn_accept(conn_table *t, const struct sockaddr *addr, socklen_t len);

/* MHD's connection notifications: a new connection (*ctx gets its record) and a closed one
 * (*ctx is freed and cleared; called before MHD closes the socket). */
void conn_opened(conn_table *t, struct MHD_Connection *c, void **ctx);
void conn_closed(conn_table *t, void **ctx);

/* A request's headers are complete (busy 1) or its answer is done (busy 0): a busy
 * connection is never closed by the deadline nor evicted. */
void conn_set_busy(conn_table *t, struct MHD_Connection *c, int busy);

/* Counters for /health and /metrics: connections open now, open without a request in
 * progress, and closed by the deadline or evicted since start. */
typedef struct conn_stats {
    int open, waiting;
    int64_t timed_out, evicted, refused;
} conn_stats;
void conn_table_stats(conn_table *t, conn_stats *out);

#endif
