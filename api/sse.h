/* sse.h: Server-Sent Events for GET /runs/{id}/events: a hub woken by store commits, and
 * one stream per client that replays the store's events after Last-Event-ID, then follows
 * new ones live, with a comment heartbeat every SSE_HEARTBEAT_S seconds. */
#ifndef SGDRD_API_SSE_H
#define SGDRD_API_SSE_H

#include <stddef.h>
#include <stdint.h>

struct store;
struct api_req;

#define SSE_HEARTBEAT_S 15
/* Events read from the store per query. A new subscriber replays the run's whole history,
 * each batch parsed into JSON and formatted on the stream's own thread: with many
 * subscribers at once, large batches made a burst of short-lived allocations that glibc
 * kept as free memory after each burst, so the daemon's resident size grew with every
 * burst of subscribers. Small batches keep that burst small. */
#define SSE_BATCH 64
/* Streams open at once. Each holds a connection (and its thread) for as long as the client
 * stays, so without a cap of their own they could take every connection MHD allows and
 * leave no room for the rest of the API; past it a new stream gets a 503. One client
 * (client.h) may hold SSE_DEFAULT_PER_CLIENT of them (past it: 429), and the last
 * per-client share of the total is kept for the dashboard. */
#define SSE_DEFAULT_MAX_STREAMS 64
#define SSE_DEFAULT_PER_CLIENT 8
/* How long an open stream may fail to deliver a byte before its connection is closed:
 * several heartbeats, whatever the server's idle timeout for other requests. */
#define SSE_STALL_S (4 * SSE_HEARTBEAT_S)

typedef struct sse_hub sse_hub;

/* Creates the hub and subscribes it to st's commits (st may be NULL: streams then only
 * heartbeat). max_streams and per_client bound the streams open at once in all and per
 * client (0: the defaults above). On failure returns a negative code and *out = NULL. */
int sse_hub_create(sse_hub **out, struct store *st, unsigned max_streams,
                   unsigned per_client);
/* Ends every open stream at its next wake-up (at once for blocked ones). */
void sse_hub_shutdown(sse_hub *h);
/* Unsubscribes from the store and frees the hub; every stream must be gone (the HTTP
 * daemon stopped). NULL is fine. */
void sse_hub_destroy(sse_hub *h);
/* Wakes every stream to look at the store again, for changes that add no events (a run
 * deleted: its streams end). */
void sse_hub_wake(sse_hub *h);

/* Streams now open. */
int sse_hub_streams(sse_hub *h);

/* Answers r with an event stream of run_id's events with id > last_id; or with a 429
 * problem when r's client already holds its share of streams, or a 503 when the hub is
 * full (for a client other than the dashboard: all but the reserve of one share). */
void sse_start(struct api_req *r, sse_hub *h, int64_t run_id, int64_t last_id);

/* Writes one SSE message ("id: ..\nevent: ..\ndata: ..\n\n") into buf; data must not hold
 * a newline (compact JSON). Returns the length, or -ENOSPC (nothing usable) when it does
 * not fit, or -EINVAL for a newline in event or data. */
int sse_format(char *buf, size_t len, int64_t id, const char *event, const char *data);

#endif
