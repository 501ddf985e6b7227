/* test_prom.c: the request counters and the Prometheus text writer (api/prom.c): buckets
 * are cumulative, series are per (route, method, code) with unusual methods folded, label
 * values are escaped, non-finite samples are written as Prometheus spells them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "prom.h"

static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, prefix, len) == 0)
            n++;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return n;
}

static void histogram_is_cumulative(void **state)
{
    prom *p = NULL;
    prom_text t = {0};
    assert_int_equal(prom_create(&p), 0);
    prom_http_observe(p, "/api/v1/runs/{id}", "GET", 200, 0.0001);
    prom_http_observe(p, "/api/v1/runs/{id}", "GET", 200, 0.02);
    prom_http_observe(p, "/api/v1/runs/{id}", "GET", 200, 30.0);
    prom_http_write(p, &t);
    assert_false(t.oom);
    const char *pre = "sgdrd_http_request_duration_seconds_bucket{route=\"/api/v1/runs/{id}\","
                      "method=\"GET\",code=\"200\",";
    char want[512];
    snprintf(want, sizeof want, "%sle=\"0.0005\"} 1\n", pre);
    assert_non_null(strstr(t.buf, want));
    snprintf(want, sizeof want, "%sle=\"0.025\"} 2\n", pre);
    assert_non_null(strstr(t.buf, want));
    snprintf(want, sizeof want, "%sle=\"5\"} 2\n", pre);
    assert_non_null(strstr(t.buf, want));
    snprintf(want, sizeof want, "%sle=\"+Inf\"} 3\n", pre);
    assert_non_null(strstr(t.buf, want));
    assert_non_null(strstr(t.buf, "sgdrd_http_requests_total{route=\"/api/v1/runs/{id}\","
                                  "method=\"GET\",code=\"200\"} 3\n"));
    assert_int_equal(count_lines(t.buf, "# TYPE "), 2);
    prom_text_free(&t);
    prom_destroy(p);
    prom_destroy(NULL);
}

static void series_are_bounded(void **state)
{
    prom *p = NULL;
    prom_text t = {0};
    char method[32];
    assert_int_equal(prom_create(&p), 0);
    /* Methods a client makes up all count as "other". */
    for (int i = 0; i < 100; i++) {
        snprintf(method, sizeof method, "M%d", i);
        prom_http_observe(p, "static", method, 405, 0.001);
    }
    prom_http_observe(p, "static", "GET", 404, 0.001);
    prom_http_observe(p, "static", "GET", 200, 0.001);
    prom_http_write(p, &t);
    assert_int_equal(count_lines(t.buf, "sgdrd_http_requests_total{"), 3);
    assert_non_null(strstr(t.buf, "sgdrd_http_requests_total{route=\"static\","
                                  "method=\"other\",code=\"405\"} 100\n"));
    prom_text_free(&t);
    prom_destroy(p);
}

static void text_escapes_and_spells_non_finite(void **state)
{
    prom_text t = {0};
    prom_family(&t, "x_bytes", "gauge", "Help.");
    prom_sample(&t, "x_bytes", NULL, 12345678901.0);
    prom_sample(&t, "x_bytes", "a=\"b\"", 0.5);
    prom_sample(&t, "x_bytes", "", 1.0 / 0.0);
    prom_sample(&t, "x_bytes", NULL, -1.0 / 0.0);
    prom_printf(&t, "v=");
    prom_label_value(&t, "a\"b\\c\nd");
    assert_false(t.oom);
    assert_string_equal(t.buf, "# HELP x_bytes Help.\n# TYPE x_bytes gauge\n"
                               "x_bytes 12345678901\nx_bytes{a=\"b\"} 0.5\nx_bytes +Inf\n"
                               "x_bytes -Inf\nv=\"a\\\"b\\\\c\\nd\"");
    /* Growing past the first buffer keeps every byte. */
    for (int i = 0; i < 2000; i++)
        prom_printf(&t, "%04d\n", i);
    assert_false(t.oom);
    assert_non_null(strstr(t.buf, "1999\n"));
    assert_int_equal(t.len, strlen(t.buf));
    prom_text_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(histogram_is_cumulative),
        cmocka_unit_test(series_are_bounded),
        cmocka_unit_test(text_escapes_and_spells_non_finite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
