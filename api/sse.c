/* sse.c: the event hub and per-client event streams. A stream's reader runs on the
 * connection's own thread (thread-per-connection), so it may block: it sleeps on the hub's
 * condition variable until a store commit, the heartbeat deadline, shutdown, or the client
 * hanging up (polled once a second). */
#define _GNU_SOURCE
#include "sse.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "buf.h"
#include "client.h"
#include "store.h"

/* A client holding streams; a free slot has n == 0. */
typedef struct sse_client {
    char key[CLIENT_KEY_MAX];
    int n;
} sse_client;

struct sse_hub {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen;          /* bumped by every commit that added events */
    int shutdown;
    int n_streams;
    int max_streams, per_client;
    sse_client *clients;   /* max_streams slots: never more clients than streams */
    store *st;
    int handle;
    int subscribed;
};

typedef struct sse_stream {
    sse_hub *h;
    char client[CLIENT_KEY_MAX];
    struct MHD_Connection *conn;
    int64_t run_id, last_id;
    int said_hello;
    char *buf;
    size_t len, pos, cap;
} sse_stream;

void sse_hub_wake(sse_hub *h)
{
    pthread_mutex_lock(&h->mu);
    h->gen++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void on_commit(void *ctx, const store_event *evs, int n)
{
    (void)evs;
    if (n > 0)
        sse_hub_wake(ctx);
}

int sse_hub_create(sse_hub **out, store *st, unsigned max_streams, unsigned per_client)
{
    pthread_condattr_t ca;
    sse_hub *h = calloc(1, sizeof *h);
    int rc;

    *out = NULL;
    if (!h)
        return -ENOMEM;
    h->max_streams = (int)(max_streams ? max_streams : SSE_DEFAULT_MAX_STREAMS);
    h->per_client = (int)(per_client ? per_client : SSE_DEFAULT_PER_CLIENT);
    if (h->per_client > h->max_streams)
        h->per_client = h->max_streams;
    h->clients = calloc((size_t)h->max_streams, sizeof *h->clients);
    if (!h->clients) {
        free(h);
        return -ENOMEM;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    h->st = st;
    if (st) {
        rc = store_subscribe(st, on_commit, h, &h->handle);
        if (rc) {
            sse_hub_destroy(h);
            return rc;
        }
        h->subscribed = 1;
    }
    *out = h;
    return 0;
}

void sse_hub_shutdown(sse_hub *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->shutdown = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void sse_hub_destroy(sse_hub *h)
{
    if (!h)
        return;
    if (h->subscribed)
        store_unsubscribe(h->st, h->handle);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h->clients);
    free(h);
}

int sse_hub_streams(sse_hub *h)
{
    int n;
    if (!h)
        return 0;
    pthread_mutex_lock(&h->mu);
    n = h->n_streams;
    pthread_mutex_unlock(&h->mu);
    return n;
}

int sse_format(char *buf, size_t len, int64_t id, const char *event, const char *data)
{
    int n;
    if (strchr(event, '\n') || strchr(event, '\r') || strchr(data, '\n') || strchr(data, '\r'))
        return -EINVAL;
    n = snprintf(buf, len, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)id, event, data);
    if (n < 0 || (size_t)n >= len)
        return -ENOSPC;
    return n;
}

/* ---- streams ----------------------------------------------------------------------------- */

static int stream_reserve(sse_stream *s, size_t more)
{
    char *nb = buf_grow_bytes(s->buf, &s->cap, s->len + more, 8192, 0);
    if (!nb)
        return -ENOMEM;
    s->buf = nb;
    return 0;
}

static int stream_append(sse_stream *s, const char *text)
{
    size_t n = strlen(text);
    if (stream_reserve(s, n + 1))
        return -ENOMEM;
    memcpy(s->buf + s->len, text, n + 1);
    s->len += n;
    return 0;
}

/* Appends the store's events after s->last_id; returns how many, or a negative code. */
static int stream_fetch(sse_stream *s)
{
    json_t *evs = NULL, *ev;
    size_t i;
    int rc;

    if (!s->h->st)
        return 0;
    rc = store_events_after(s->h->st, s->run_id, s->last_id, SSE_BATCH, &evs);
    if (rc)
        return rc;
    json_array_foreach(evs, i, ev) {
        char *data = json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII);
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        int64_t id = (int64_t)json_integer_value(json_object_get(ev, "id"));
        size_t need;
        int n;
        if (!data) {
            rc = -ENOMEM;
            break;
        }
        need = strlen(data) + strlen(kind ? kind : "message") + 64;
        rc = stream_reserve(s, need);
        n = rc ? rc : sse_format(s->buf + s->len, s->cap - s->len, id,
                                 kind ? kind : "message", data);
        free(data);
        if (n < 0) {
            rc = n;
            break;
        }
        s->len += (size_t)n;
        if (id > s->last_id)
            s->last_id = id;
    }
    rc = rc ? rc : (int)json_array_size(evs);
    json_decref(evs);
    return rc;
}

/* Whether the stream's run was deleted since it opened: its events are gone with it and
 * no new ones can come, so the stream ends (a reconnect then gets the route's 404). */
static int run_deleted(sse_stream *s)
{
    json_t *run = NULL;
    int rc = s->h->st ? store_run_get(s->h->st, s->run_id, &run) : 0;
    json_decref(run);
    return rc == -ENOENT;
}

static int client_gone(sse_stream *s)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd p;
    if (!ci)
        return 0;
    p.fd = ci->connect_fd;
    p.events = POLLRDHUP;
    p.revents = 0;
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Blocks until new events may exist (1), the heartbeat is due (0), or the stream must end
 * (-1: shutdown or client gone). */
static int stream_wait(sse_stream *s, uint64_t seen_gen)
{
    sse_hub *h = s->h;
    double deadline = clock_mono_s() + SSE_HEARTBEAT_S;
    int ret = 0;

    pthread_mutex_lock(&h->mu);
    for (;;) {
        struct timespec ts;
        double now;
        if (h->shutdown) {
            ret = -1;
            break;
        }
        if (h->gen != seen_gen) {
            ret = 1;
            break;
        }
        now = clock_mono_s();
        if (now >= deadline)
            break;
        pthread_mutex_unlock(&h->mu);
        if (client_gone(s)) {
            pthread_mutex_lock(&h->mu);
            ret = -1;
            break;
        }
        pthread_mutex_lock(&h->mu);
        if (h->shutdown || h->gen != seen_gen)
            continue;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    }
    pthread_mutex_unlock(&h->mu);
    return ret;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    sse_stream *s = cls;
    (void)pos;
    for (;;) {
        uint64_t gen;
        int rc;
        if (s->pos < s->len) {
            size_t n = s->len - s->pos < max ? s->len - s->pos : max;
            memcpy(out, s->buf + s->pos, n);
            s->pos += n;
            return (ssize_t)n;
        }
        s->pos = s->len = 0;
        if (!s->said_hello) {
            char hello[96];
            s->said_hello = 1;
            snprintf(hello, sizeof hello, "retry: 2000\n: events of run %lld\n\n",
                     (long long)s->run_id);
            if (stream_append(s, hello))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        pthread_mutex_lock(&s->h->mu);
        gen = s->h->gen;
        rc = s->h->shutdown;
        pthread_mutex_unlock(&s->h->mu);
        if (rc)
            return MHD_CONTENT_READER_END_OF_STREAM;
        /* Read after noting the generation: a commit in between bumps it and the wait
         * below returns at once instead of missing it. */
        rc = stream_fetch(s);
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc > 0)
            continue;
        if (run_deleted(s))
            return MHD_CONTENT_READER_END_OF_STREAM;
        rc = stream_wait(s, gen);
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc == 0 && stream_append(s, ": heartbeat\n\n"))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

/* The slot of client key, or with make, a free one for it; NULL when there is none. */
static sse_client *client_slot(sse_hub *h, const char *key, int make)
{
    sse_client *free_slot = NULL;
    for (int i = 0; i < h->max_streams; i++) {
        if (h->clients[i].n > 0 && !strcmp(h->clients[i].key, key))
            return &h->clients[i];
        if (h->clients[i].n == 0 && !free_slot)
            free_slot = &h->clients[i];
    }
    if (!make || !free_slot)
        return NULL;
    snprintf(free_slot->key, sizeof free_slot->key, "%s", key);
    return free_slot;
}

static void sse_release(sse_hub *h, const char *key)
{
    sse_client *c;
    pthread_mutex_lock(&h->mu);
    h->n_streams--;
    c = client_slot(h, key, 0);
    if (c)
        c->n--;
    pthread_mutex_unlock(&h->mu);
}

static void stream_free(void *cls)
{
    sse_stream *s = cls;
    sse_release(s->h, s->client);
    free(s->buf);
    free(s);
}

/* Counts a stream for client key before it exists, so two requests racing for the last
 * place cannot both take it; sse_release gives it back. 0, or the status that refuses it:
 * 429 past the client's share, 503 when the hub is full for this client. */
static unsigned sse_take(sse_hub *h, const char *key, int dashboard)
{
    sse_client *c;
    int room = dashboard ? h->max_streams : h->max_streams - h->per_client;
    unsigned status = 0;

    pthread_mutex_lock(&h->mu);
    c = client_slot(h, key, 0);
    if (c && c->n >= h->per_client)
        status = 429;
    else if (h->n_streams >= room)
        status = 503;
    else if (!c)
        c = client_slot(h, key, 1);
    if (!status && c) {
        c->n++;
        h->n_streams++;
    } else if (!status) {
        status = 503;
    }
    pthread_mutex_unlock(&h->mu);
    return status;
}

static void refuse(api_req *r, sse_hub *h, unsigned status)
{
    if (status == 429)
        reply_problem(r, 429, PROBLEM_LIMIT, NULL,
                      "this client already has %d event streams open, the most one client "
                      "may keep; close one or retry later", h->per_client);
    else
        reply_problem(r, 503, PROBLEM_LIMIT, NULL,
                      "every event stream this server keeps for such clients is open (%d in "
                      "all, %d of them for the dashboard); close one or retry later",
                      h->max_streams, h->per_client);
    if (r->status == status)
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_RETRY_AFTER, "5");
}

void sse_start(api_req *r, sse_hub *h, int64_t run_id, int64_t last_id)
{
    struct MHD_Response *resp;
    char key[CLIENT_KEY_MAX];
    int dashboard = client_key(r, key);
    unsigned status = sse_take(h, key, dashboard);
    sse_stream *s;

    if (status) {
        refuse(r, h, status);
        return;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        sse_release(h, key);
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
        return;
    }
    memcpy(s->client, key, sizeof key);
    s->h = h;
    s->conn = r->conn;
    s->run_id = run_id;
    s->last_id = last_id;
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s,
                                             stream_free);
    if (!resp) {
        free(s);
        sse_release(h, key);
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
        return;
    }
    /* An open stream is quiet between heartbeats: the server's idle timeout, meant for
     * requests that stall, must not close it. */
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)SSE_STALL_S);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    reply_response(r, 200, resp);
}
