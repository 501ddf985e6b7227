/* out.c: tables and key-value lines on standard output. */
#include "out.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "progress.h"

#define OUT_CELL 64

json_t *out_path(json_t *v, const char *path)
{
    char key[64];
    while (v && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        v = json_object_get(v, key);
        path += n + (path[n] == '.');
    }
    return v;
}

const char *out_str(json_t *v, const char *path)
{
    const char *s = json_string_value(out_path(v, path));
    return s ? s : "?";
}

static void format_time(char *buf, size_t len, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (!localtime_r(&s, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, len, "%.0f", t);
}

void out_format(char *buf, size_t len, json_t *v, out_kind kind)
{
    if (!v || json_is_null(v)) {
        snprintf(buf, len, "-");
    } else if (json_is_number(v) && kind != OUT_TEXT) {
        double x = json_number_value(v);
        if (kind == OUT_PCT)
            snprintf(buf, len, "%.0f%%", x * 100);
        else if (kind == OUT_TIME)
            format_time(buf, len, x);
        else
            progress_eta(buf, len, x);
    } else if (json_is_string(v)) {
        snprintf(buf, len, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(buf, len, "%.6g", json_real_value(v));
    } else {
        char *t = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(6) | JSON_ENCODE_ANY);
        snprintf(buf, len, "%s", t ? t : "?");
        free(t);
    }
}

static void print_row(char (*cells)[OUT_CELL], const int *width, int n)
{
    for (int i = 0; i + 1 < n; i++)
        printf("%-*s  ", width[i], cells[i]);
    printf("%s\n", n > 0 ? cells[n - 1] : "");
}

void out_table(json_t *page, const out_col *cols)
{
    json_t *items = json_object_get(page, "items");
    size_t rows = json_array_size(items);
    int n = 0, width[16] = {0};
    while (cols[n].header && n < 16)
        n++;
    char (*cells)[OUT_CELL] = calloc((rows + 1) * (size_t)n, OUT_CELL);
    if (!cells)
        return;
    for (int j = 0; j < n; j++) {
        snprintf(cells[j], OUT_CELL, "%s", cols[j].header);
        for (size_t i = 0; i < rows; i++)
            out_format(cells[(i + 1) * (size_t)n + (size_t)j], OUT_CELL,
                       out_path(json_array_get(items, i), cols[j].path), cols[j].kind);
        for (size_t i = 0; i <= rows; i++) {
            int w = (int)strlen(cells[i * (size_t)n + (size_t)j]);
            width[j] = w > width[j] ? w : width[j];
        }
    }
    for (size_t i = 0; i <= rows; i++)
        print_row(cells + i * (size_t)n, width, n);
    free(cells);
    const char *next = json_string_value(json_object_get(page, "next_page_token"));
    if (next)
        printf("(more: --page-token %s)\n", next);
}

void out_object(json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        char buf[4096];
        size_t n = strlen(key);
        int is_time = n > 3 && strcmp(key + n - 3, "_at") == 0;
        out_format(buf, sizeof buf, v, is_time ? OUT_TIME : OUT_TEXT);
        printf("%-13s %s\n", key, buf);
    }
}
