/* static.c: the dashboard's files from web/ at /, and uPlot's dist/ files (installed by
 * npm under web/node_modules) at /vendor/uplot/. Nothing outside those folders can be
 * reached: dot segments, backslashes and control characters are refused, and the
 * resolved path (links followed) must still lie under the folder. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_internal.h"

#define VENDOR_UPLOT "/vendor/uplot/"

const char *static_content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* Whether rel (the part of the URL after the folder's prefix) is a plain relative path. */
static int rel_path_ok(const char *rel)
{
    const char *seg = rel;
    if (*rel == '\0')
        return 1;
    for (const char *p = rel;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - seg);
            if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            if (*p == '\0')
                return 1;
            seg = p + 1;
            continue;
        }
        if ((unsigned char)*p < 0x20 || *p == '\\' || *p == 0x7f)
            return 0;
    }
}

static int under(const char *path, const char *root)
{
    size_t n = strlen(root);
    return strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

void static_serve(api_req *r)
{
    char base[PATH_MAX], want[PATH_MAX * 2];
    const char *rel;
    char *real;
    int n;

    if (!r->srv->web_dir) {
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "no dashboard is installed");
        return;
    }
    if (strncmp(r->url, VENDOR_UPLOT, strlen(VENDOR_UPLOT)) == 0) {
        n = snprintf(base, sizeof base, "%s/node_modules/uplot/dist", r->srv->web_dir);
        rel = r->url + strlen(VENDOR_UPLOT);
    } else {
        n = snprintf(base, sizeof base, "%s", r->srv->web_dir);
        rel = r->url + 1;
    }
    if (n < 0 || (size_t)n >= sizeof base || r->url[0] != '/' || !rel_path_ok(rel)) {
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "no such file: %s", r->url);
        return;
    }
    if (*rel == '\0')
        rel = "index.html";
    snprintf(want, sizeof want, "%s/%s", base, rel);
    real = realpath(want, NULL);
    if (!real || !under(real, r->srv->web_dir)) {
        free(real);
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "no such file: %s", r->url);
        return;
    }
    reply_file(r, real, static_content_type(real), NULL);
    if (r->status == 200)
        MHD_add_response_header(r->resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    free(real);
}
