/* prom.h: the HTTP server's request counters and latency histograms, and a writer of the
 * Prometheus text exposition format (version 0.0.4) for GET /metrics. */
#ifndef SGDRD_API_PROM_H
#define SGDRD_API_PROM_H

#include <stddef.h>
#include <stdint.h>

typedef struct prom prom;

/* A growing text buffer; a failed allocation sets oom and drops what follows. */
typedef struct prom_text {
    char *buf;                 /* malloc'd, NUL-terminated; owned by the writer */
    size_t len, cap;
    int oom;
} prom_text;

/* Upper bounds (seconds) of the request latency histogram, +Inf aside. */
#define PROM_HTTP_BUCKETS 12

int prom_create(prom **out);
void prom_destroy(prom *p);

/* Counts one answered request. route: a route pattern of the table, or a fixed word for
 * what matched none (static strings: kept as pointers); method: any text (methods other
 * than the usual ones count as "other"). Safe from any thread. */
void prom_http_observe(prom *p, const char *route, const char *method, unsigned status,
                       double seconds);
/* Appends the families sgdrd_http_requests_total and sgdrd_http_request_duration_seconds. */
void prom_http_write(prom *p, prom_text *t);

/* Appends "# HELP" and "# TYPE" lines of a family. */
void prom_family(prom_text *t, const char *name, const char *type, const char *help);
/* Appends one sample: name{labels} value; labels (may be NULL or "") are already
 * formatted, e.g. state="queued". */
void prom_sample(prom_text *t, const char *name, const char *labels, double value);
/* Appends printf-formatted text. */
void prom_printf(prom_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends v as a label value: backslash, double quote and newline escaped. */
void prom_label_value(prom_text *t, const char *v);
void prom_text_free(prom_text *t);

#endif
