/* routes_metrics.c: GET /metrics, what operators scrape with Prometheus: the queue, the
 * running job and its speed, jobs by state and epoch times (read from the store, as
 * committed), event-stream subscribers, the store's size, and the server's own request
 * counters and latency histograms by route pattern (prom.c). */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "conn.h"
#include "prom.h"
#include "routes.h"
#include "sse.h"
#include "store.h"

#define PROM_CTYPE "text/plain; version=0.0.4; charset=utf-8"

/* Upper bounds (seconds) of the epoch time histogram. */
static const double epoch_le[] = {1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200};
#define N_EPOCH_LE ((int)(sizeof epoch_le / sizeof *epoch_le))

static void write_jobs(prom_text *t, const store_stats *ss)
{
    prom_family(t, "sgdrd_queue_length", "gauge", "Jobs waiting in the queue.");
    prom_sample(t, "sgdrd_queue_length", NULL, (double)ss->jobs[0]);
    prom_family(t, "sgdrd_running_job", "gauge", "Id of the running job; 0 when none runs.");
    prom_sample(t, "sgdrd_running_job", NULL, (double)ss->running_job);
    prom_family(t, "sgdrd_jobs", "gauge", "Jobs in the store, by state.");
    for (int i = 0; i < STORE_JOB_STATES; i++) {
        char labels[48];
        snprintf(labels, sizeof labels, "state=\"%s\"", store_job_states[i]);
        prom_sample(t, "sgdrd_jobs", labels, (double)ss->jobs[i]);
    }
    prom_family(t, "sgdrd_training_images_per_second", "gauge",
                "Training speed of the running job's latest epoch; 0 when no job runs or it "
                "has finished no epoch yet.");
    prom_sample(t, "sgdrd_training_images_per_second", NULL, ss->img_per_s);
}

static void write_epochs(prom_text *t, const store_stats *ss)
{
    const char *name = "sgdrd_epoch_duration_seconds";
    prom_family(t, name, "histogram", "Wall time of the training epochs of every run.");
    for (int i = 0; i < N_EPOCH_LE; i++)
        prom_printf(t, "%s_bucket{le=\"%g\"} %lld\n", name, epoch_le[i],
                    (long long)ss->epoch_le[i]);
    prom_printf(t, "%s_bucket{le=\"+Inf\"} %lld\n", name, (long long)ss->epochs);
    prom_printf(t, "%s_sum %.17g\n%s_count %lld\n", name, ss->epoch_seconds_sum, name,
                (long long)ss->epochs);
}

/* By route pattern, never the raw URL, so that the series stay few whatever clients ask:
 * "unrouted" for API paths that matched no route or were refused before routing (a 401, a
 * refused Host), "static" for the dashboard's files and other paths. */
const char *route_prom_label(const api_req *r)
{
    if (r->route)
        return r->route->pattern;
    if (strncmp(r->url, "/api/", 5) == 0 || strcmp(r->url, "/metrics") == 0)
        return "unrouted";
    return "static";
}

static void write_connections(prom_text *t, struct conn_table *conns)
{
    conn_stats cs;
    conn_table_stats(conns, &cs);
    prom_family(t, "sgdrd_http_connections", "gauge",
                "Open HTTP connections, and those without a request in progress.");
    prom_sample(t, "sgdrd_http_connections", "state=\"open\"", cs.open);
    prom_sample(t, "sgdrd_http_connections", "state=\"waiting\"", cs.waiting);
    prom_family(t, "sgdrd_http_connections_dropped_total", "counter",
                "Connections closed by the header deadline, evicted to make room, or "
                "refused at accept.");
    prom_sample(t, "sgdrd_http_connections_dropped_total", "reason=\"deadline\"",
                (double)cs.timed_out);
    prom_sample(t, "sgdrd_http_connections_dropped_total", "reason=\"evicted\"",
                (double)cs.evicted);
    prom_sample(t, "sgdrd_http_connections_dropped_total", "reason=\"refused\"",
                (double)cs.refused);
}

void route_prom_metrics(api_req *r)
{
    store_stats ss;
    prom_text t = {0};
    if (!r->srv->store) {
        reply_problem(r, 503, PROBLEM_INTERNAL, NULL, "the daemon has no store");
        return;
    }
    int rc = store_stats_get(r->srv->store, epoch_le, N_EPOCH_LE, &ss);
    if (rc) {
        reply_store_error(r, rc, "store statistics");
        return;
    }
    write_jobs(&t, &ss);
    write_epochs(&t, &ss);
    prom_family(&t, "sgdrd_event_stream_subscribers", "gauge", "Open event streams (SSE).");
    prom_sample(&t, "sgdrd_event_stream_subscribers", NULL, sse_hub_streams(r->srv->hub));
    write_connections(&t, r->srv->conns);
    prom_family(&t, "sgdrd_store_bytes", "gauge",
                "Size of the SQLite database (its pages; the write-ahead log aside).");
    prom_sample(&t, "sgdrd_store_bytes", NULL, (double)ss.db_bytes);
    prom_family(&t, "sgdrd_uptime_seconds", "gauge", "Seconds since the server started.");
    prom_sample(&t, "sgdrd_uptime_seconds", NULL, clock_mono_s() - r->srv->started);
    prom_http_write(r->srv->prom, &t);
    if (t.oom) {
        prom_text_free(&t);
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(t.len, t.buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        prom_text_free(&t);
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, PROM_CTYPE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    reply_response(r, 200, resp);
}
