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
#define SSE_BATCH 500     /* events read from the store per query */
/* Streams open at once. Each holds a connection (and its thread) for as long as the client
 * stays, so without a cap of their own they could take every connection MHD allows and
 * leave no room for the rest of the API; past it a new stream gets a 503. */
#define SSE_MAX_STREAMS 32

typedef struct sse_hub sse_hub;

/* Creates the hub and subscribes it to st's commits (st may be NULL: streams then only
 * heartbeat). On failure returns a negative code and *out = NULL. */
int sse_hub_create(sse_hub **out, struct store *st);
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

/* Answers r with an event stream of run_id's events with id > last_id, or with a 503
 * problem when SSE_MAX_STREAMS streams are open. */
void sse_start(struct api_req *r, sse_hub *h, int64_t run_id, int64_t last_id);

/* Writes one SSE message ("id: ..\nevent: ..\ndata: ..\n\n") into buf; data must not hold
 * a newline (compact JSON). Returns the length, or -ENOSPC (nothing usable) when it does
 * not fit, or -EINVAL for a newline in event or data. */
int sse_format(char *buf, size_t len, int64_t id, const char *event, const char *data);

#endif
