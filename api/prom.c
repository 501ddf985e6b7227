/* prom.c: request counters and latency histograms by route, and the text writer (prom.h).
 * Series are few and bounded (route patterns x methods x status codes), so they live in one
 * array searched linearly under a mutex. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

static const double http_le[PROM_HTTP_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                  0.05,   0.1,   0.25,   0.5,   1,    5};

static const char *const known_methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                            "OPTIONS"};

typedef struct prom_series {
    const char *route;         /* static */
    const char *method;        /* one of known_methods, or "other" */
    unsigned status;
    uint64_t count;
    double sum;
    uint64_t le[PROM_HTTP_BUCKETS];   /* non-cumulative; summed when written */
} prom_series;

struct prom {
    pthread_mutex_t mu;
    prom_series *s;
    int n, cap;
};

int prom_create(prom **out)
{
    prom *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return 0;
}

void prom_destroy(prom *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p->s);
    free(p);
}

static const char *method_label(const char *method)
{
    for (size_t i = 0; i < sizeof known_methods / sizeof *known_methods; i++)
        if (method && strcmp(method, known_methods[i]) == 0)
            return known_methods[i];
    return "other";
}

/* The series of (route, method, status), added when new; NULL when out of memory. mu held. */
static prom_series *series_of(prom *p, const char *route, const char *method, unsigned status)
{
    for (int i = 0; i < p->n; i++)
        if (p->s[i].route == route && p->s[i].method == method && p->s[i].status == status)
            return &p->s[i];
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        prom_series *s = realloc(p->s, (size_t)cap * sizeof *s);
        if (!s)
            return NULL;
        p->s = s;
        p->cap = cap;
    }
    prom_series *s = &p->s[p->n++];
    memset(s, 0, sizeof *s);
    s->route = route;
    s->method = method;
    s->status = status;
    return s;
}

void prom_http_observe(prom *p, const char *route, const char *method, unsigned status,
                       double seconds)
{
    if (!p)
        return;
    const char *m = method_label(method);
    pthread_mutex_lock(&p->mu);
    prom_series *s = series_of(p, route, m, status);
    if (s) {
        s->count++;
        s->sum += seconds;
        for (int i = 0; i < PROM_HTTP_BUCKETS; i++)
            if (seconds <= http_le[i]) {
                s->le[i]++;
                break;
            }
    }
    pthread_mutex_unlock(&p->mu);
}

/* route="...",method="...",code="..." of a series. */
static void series_labels(prom_text *t, const prom_series *s)
{
    prom_printf(t, "route=");
    prom_label_value(t, s->route);
    prom_printf(t, ",method=\"%s\",code=\"%u\"", s->method, s->status);
}

static void series_write_histogram(prom_text *t, const prom_series *s)
{
    const char *name = "sgdrd_http_request_duration_seconds";
    uint64_t cum = 0;
    for (int i = 0; i < PROM_HTTP_BUCKETS; i++) {
        cum += s->le[i];
        prom_printf(t, "%s_bucket{", name);
        series_labels(t, s);
        prom_printf(t, ",le=\"%g\"} %llu\n", http_le[i], (unsigned long long)cum);
    }
    prom_printf(t, "%s_bucket{", name);
    series_labels(t, s);
    prom_printf(t, ",le=\"+Inf\"} %llu\n%s_sum{", (unsigned long long)s->count, name);
    series_labels(t, s);
    prom_printf(t, "} %.9g\n%s_count{", s->sum, name);
    series_labels(t, s);
    prom_printf(t, "} %llu\n", (unsigned long long)s->count);
}

void prom_http_write(prom *p, prom_text *t)
{
    prom_family(t, "sgdrd_http_requests_total", "counter",
                "HTTP requests answered, by route pattern, method and status code.");
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n; i++) {
        prom_printf(t, "sgdrd_http_requests_total{");
        series_labels(t, &p->s[i]);
        prom_printf(t, "} %llu\n", (unsigned long long)p->s[i].count);
    }
    prom_family(t, "sgdrd_http_request_duration_seconds", "histogram",
                "Time from a request's arrival to its answer being queued, by route "
                "pattern, method and status code.");
    for (int i = 0; i < p->n; i++)
        series_write_histogram(t, &p->s[i]);
    pthread_mutex_unlock(&p->mu);
}

/* ---- text -------------------------------------------------------------------------------- */

static void text_vadd(prom_text *t, const char *fmt, va_list ap)
{
    va_list aq;
    if (t->oom)
        return;
    va_copy(aq, ap);
    int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, aq);
    va_end(aq);
    if (n < 0) {
        t->oom = 1;
        return;
    }
    if (t->buf && (size_t)n < t->cap - t->len) {
        t->len += (size_t)n;
        return;
    }
    size_t cap = t->cap ? t->cap : 4096;
    while (cap - t->len <= (size_t)n)
        cap *= 2;
    char *b = realloc(t->buf, cap);
    if (!b) {
        t->oom = 1;
        return;
    }
    t->buf = b;
    t->cap = cap;
    vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    t->len += (size_t)n;
}

void prom_printf(prom_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    text_vadd(t, fmt, ap);
    va_end(ap);
}

void prom_label_value(prom_text *t, const char *v)
{
    prom_printf(t, "\"");
    for (const char *c = v; *c; c++) {
        if (*c == '\\' || *c == '"')
            prom_printf(t, "\\%c", *c);
        else if (*c == '\n')
            prom_printf(t, "\\n");
        else
            prom_printf(t, "%c", *c);
    }
    prom_printf(t, "\"");
}

void prom_family(prom_text *t, const char *name, const char *type, const char *help)
{
    prom_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_sample(prom_text *t, const char *name, const char *labels, double value)
{
    const char *v = isnan(value) ? "NaN" : isinf(value) ? (value > 0 ? "+Inf" : "-Inf") : NULL;
    if (labels && labels[0])
        prom_printf(t, "%s{%s} ", name, labels);
    else
        prom_printf(t, "%s ", name);
    if (v)
        prom_printf(t, "%s\n", v);
    else
        prom_printf(t, "%.17g\n", value);
}

void prom_text_free(prom_text *t)
{
    free(t->buf);
    t->buf = NULL;
    t->len = t->cap = 0;
}
