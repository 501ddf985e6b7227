/* conn.c: connection accounting (conn.h). One record per open connection in a list under
 * one mutex; a watchdog thread shuts the socket of a connection that waited past the header
 * deadline. Shutting (not closing) the socket wakes the connection's own thread, which then
 * closes it through MHD; the record is removed by MHD's "closed" notification, which comes
 * before MHD closes the descriptor, so the watchdog never touches a reused one. */
#define _GNU_SOURCE
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <microhttpd.h>

#include "clock_mono.h"

typedef struct conn_rec {
    struct conn_rec *prev, *next;
    int fd;
    char addr[INET6_ADDRSTRLEN];
    int limited;               /* counts toward the per-address limit */
    int busy;                  /* a request is in progress */
    int shut;                  /* its socket was shut by the deadline or an eviction */
    double waiting_since;      /* monotonic seconds: opened, or its last answer done */
} conn_rec;

struct conn_table {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    conn_rec *head;
    unsigned max_conns, per_client, header_timeout_s;
    char **proxies;
    int n_proxies;
    int open, waiting;
    int64_t timed_out, evicted, refused;
    int stopping;
    int watching;              /* the watchdog thread runs */
    pthread_t watchdog;
};

static void addr_text(const struct sockaddr *sa, char *out, size_t len)
{
    out[0] = '\0';
    if (!sa)
        return;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        /* An IPv4 client of a dual-stack socket is the same client as over IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)len);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)len);
    }
}

/* Whether the per-address limit applies to addr: not to loopback (the local user's own
 * clients, the dashboard among them, all share it) nor to a trusted proxy (every client
 * behind it shares its address; the proxy limits them itself). */
static int addr_limited(const conn_table *t, const char *addr)
{
    if (!addr[0] || !strncmp(addr, "127.", 4) || !strcmp(addr, "::1"))
        return 0;
    for (int i = 0; i < t->n_proxies; i++)
        if (!strcasecmp(addr, t->proxies[i]))
            return 0;
    return 1;
}

static void rec_shut(conn_table *t, conn_rec *r)
{
    r->shut = 1;
    t->waiting--;
    shutdown(r->fd, SHUT_RDWR);
}

static void *watchdog_main(void *arg)
{
    conn_table *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stopping) {
        struct timespec ts;
        double now = clock_mono_s();
        for (conn_rec *r = t->head; r; r = r->next)
            if (!r->busy && !r->shut && r->fd >= 0 &&
                now - r->waiting_since >= (double)t->header_timeout_s) {
                rec_shut(t, r);
                t->timed_out++;
            }
        /* A quarter second past the deadline at most. */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 250 * 1000 * 1000;
        if (ts.tv_nsec >= 1000 * 1000 * 1000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000 * 1000 * 1000;
        }
        pthread_cond_timedwait(&t->cv, &t->mu, &ts);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int conn_table_create(conn_table **out, const conn_limits *lim)
{
    pthread_condattr_t ca;
    conn_table *t = calloc(1, sizeof *t);
    int rc;

    *out = NULL;
    if (!t)
        return -ENOMEM;
    t->max_conns = lim->max_conns ? lim->max_conns : CONN_DEFAULT_MAX;
    t->per_client = lim->per_client ? lim->per_client : CONN_DEFAULT_PER_CLIENT;
    t->header_timeout_s =
        lim->header_timeout_s ? lim->header_timeout_s : CONN_DEFAULT_HEADER_TIMEOUT_S;
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    t->proxies = calloc((size_t)lim->n_proxies + 1, sizeof *t->proxies);
    if (!t->proxies) {
        conn_table_destroy(t);
        return -ENOMEM;
    }
    for (; t->n_proxies < lim->n_proxies; t->n_proxies++) {
        t->proxies[t->n_proxies] = strdup(lim->proxies[t->n_proxies]);
        if (!t->proxies[t->n_proxies]) {
            conn_table_destroy(t);
            return -ENOMEM;
        }
    }
    rc = pthread_create(&t->watchdog, NULL, watchdog_main, t);
    if (rc) {
        conn_table_destroy(t);
        return -rc;
    }
    t->watching = 1;
    *out = t;
    return 0;
}

void conn_table_destroy(conn_table *t)
{
    if (!t)
        return;
    if (t->watching) {
        pthread_mutex_lock(&t->mu);
        t->stopping = 1;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->watchdog, NULL);
    }
    while (t->head) {
        conn_rec *r = t->head;
        t->head = r->next;
        free(r);
    }
    for (int i = 0; i < t->n_proxies; i++)
        free(t->proxies[i]);
    free(t->proxies);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

unsigned conn_table_hard_limit(const conn_table *t)
{
    return t->max_conns + CONN_EVICT_MARGIN;
}

/* Shuts the connection that has waited longest without a request; 0 when there is none. */
static int evict_oldest(conn_table *t)
{
    conn_rec *oldest = NULL;
    for (conn_rec *r = t->head; r; r = r->next)
        if (!r->busy && !r->shut && r->fd >= 0 &&
            (!oldest || r->waiting_since < oldest->waiting_since))
            oldest = r;
    if (!oldest)
        return 0;
    rec_shut(t, oldest);
    t->evicted++;
    return 1;
}

int conn_accept(conn_table *t, const struct sockaddr *addr, socklen_t len)
{
    char text[INET6_ADDRSTRLEN];
    int ok = 1;

    (void)len;
    addr_text(addr, text, sizeof text);
    pthread_mutex_lock(&t->mu);
    if (addr_limited(t, text)) {
        unsigned n = 0;
        for (conn_rec *r = t->head; r; r = r->next)
            if (r->limited && !r->shut && !strcmp(r->addr, text))
                n++;
        ok = n < t->per_client;
    }
    /* A shut connection counts until MHD has closed it, a few milliseconds later; the
     * hard limit leaves room for those. */
    if (ok && (unsigned)t->open >= t->max_conns)
        ok = evict_oldest(t);
    if (!ok)
        t->refused++;
    pthread_mutex_unlock(&t->mu);
    return ok;
}

void conn_opened(conn_table *t, struct MHD_Connection *c, void **ctx)
{
    const union MHD_ConnectionInfo *ci;
    conn_rec *r = calloc(1, sizeof *r);

    *ctx = r;
    if (!r)
        return; /* untracked: it cannot be timed out or evicted, but it still works */
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->fd = ci ? ci->connect_fd : -1;
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    addr_text(ci ? ci->client_addr : NULL, r->addr, sizeof r->addr);
    r->waiting_since = clock_mono_s();
    pthread_mutex_lock(&t->mu);
    r->limited = addr_limited(t, r->addr);
    r->next = t->head;
    if (t->head)
        t->head->prev = r;
    t->head = r;
    t->open++;
    t->waiting++;
    pthread_mutex_unlock(&t->mu);
}

void conn_closed(conn_table *t, void **ctx)
{
    conn_rec *r = *ctx;
    if (!r)
        return;
    pthread_mutex_lock(&t->mu);
    if (r->prev)
        r->prev->next = r->next;
    else
        t->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    t->open--;
    if (!r->busy && !r->shut)
        t->waiting--;
    pthread_mutex_unlock(&t->mu);
    free(r);
    *ctx = NULL;
}

void conn_set_busy(conn_table *t, struct MHD_Connection *c, int busy)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_rec *r = ci ? ci->socket_context : NULL;
    if (!r)
        return;
    pthread_mutex_lock(&t->mu);
    if (!r->shut && r->busy != !!busy) {
        r->busy = !!busy;
        t->waiting += busy ? -1 : 1;
    }
    r->waiting_since = clock_mono_s();
    pthread_mutex_unlock(&t->mu);
}

void conn_table_stats(conn_table *t, conn_stats *out)
{
    pthread_mutex_lock(&t->mu);
    out->open = t->open;
    out->waiting = t->waiting;
    out->timed_out = t->timed_out;
    out->evicted = t->evicted;
    out->refused = t->refused;
    pthread_mutex_unlock(&t->mu);
}
