/* call.c: calling the API: a request with a JSON body and a JSON answer, its failures
 * reported; the query of a list; a file to upload. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "progress.h"

static int is_json(const http_reply *r)
{
    return strncmp(r->ctype, "application/json", 16) == 0;
}

int cli_take_reply(cli_ctx *c, int rc, http_reply *raw, json_t **out)
{
    if (out)
        *out = NULL;
    if (rc)
        return cli_report_network(c);
    if (raw->status < 200 || raw->status > 299) {
        rc = cli_report_reply(raw);
        http_reply_clear(raw);
        return rc;
    }
    if (out && raw->len && is_json(raw)) {
        json_error_t err;
        *out = json_loadb(raw->body, raw->len, 0, &err);
        if (!*out) {
            fprintf(stderr, "sgdr: the daemon's answer is not JSON: %s\n", err.text);
            http_reply_clear(raw);
            return CLI_ESERVER;
        }
    }
    return CLI_OK;
}

int cli_call(cli_ctx *c, const char *method, const char *path, json_t *body, http_reply *raw,
             json_t **out)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (out)
        *out = NULL;
    if (body && !text)
        return cli_usage_error("out of memory");
    int rc = http_request(c->http, method, path, body ? "application/json" : NULL, text,
                          text ? strlen(text) : 0, raw);
    free(text);
    return cli_take_reply(c, rc, raw, out);
}

int cli_show(cli_ctx *c, const char *method, const char *path,
             void (*print)(cli_ctx *c, json_t *v))
{
    http_reply raw = {0};
    json_t *v = NULL;
    int st = cli_call(c, method, path, NULL, &raw, &v);
    if (st)
        return st;
    if (c->json)
        cli_print_raw(&raw);
    else
        print(c, v);
    json_decref(v);
    http_reply_clear(&raw);
    return CLI_OK;
}

void cli_print_raw(const http_reply *raw)
{
    if (!raw->len)
        return;
    fwrite(raw->body, 1, raw->len, stdout);
    if (raw->body[raw->len - 1] != '\n')
        putchar('\n');
}

const args_opt cli_page_opts[] = {
    {"--limit", NULL, ARGS_INT, NULL, "at most this many (1..1000)"},
    {"--page-token", NULL, ARGS_STR, NULL, "the page after the one that named this token"},
    {NULL, NULL, 0, NULL, NULL},
};

int cli_query_add(cli_ctx *c, char *path, size_t len, const char *key, const char *value)
{
    char *v = http_escape(c->http, value);
    size_t n = strlen(path);
    if (!v)
        return cli_usage_error("out of memory");
    int w = snprintf(path + n, len - n, "%c%s=%s", strchr(path, '?') ? '&' : '?', key, v);
    free(v);
    if (w < 0 || (size_t)w >= len - n)
        return cli_usage_error("the query of %.*s is too long", (int)strcspn(path, "?"), path);
    return CLI_OK;
}

int cli_page_path(cli_ctx *c, const args *a, char *path, size_t len)
{
    const char *limit = args_get(a, "--limit"), *token = args_get(a, "--page-token");
    int st = CLI_OK;
    if (limit)
        st = cli_query_add(c, path, len, "limit", limit);
    if (!st && token)
        st = cli_query_add(c, path, len, "page_token", token);
    return st;
}

int cli_open_upload(const char *p, FILE **f, long long *size)
{
    struct stat sb;
    *f = fopen(p, "rb");
    if (!*f)
        return cli_usage_error("cannot read %s: %s", p, strerror(errno));
    const char *why = fstat(fileno(*f), &sb) ? strerror(errno)
                      : !S_ISREG(sb.st_mode) ? "not a regular file"
                                             : NULL;
    if (why) {
        fclose(*f);
        *f = NULL;
        return cli_usage_error("cannot read %s: %s", p, why);
    }
    *size = (long long)sb.st_size;
    return CLI_OK;
}

/* Redraws the upload's bar on standard error. */
static void upload_bar(void *ud, long long sent, long long total)
{
    char line[160];
    progress_bytes(line, sizeof line, "upload", sent, total, 30);
    fprintf(stderr, "\r%s\033[K", line);
}

int cli_upload(cli_ctx *c, const char *path, const char *ctype, FILE *f, long long size,
               http_reply *raw, json_t **out)
{
    int bar = c->tty && !c->json;
    int rc = http_upload(c->http, path, ctype, f, size, bar ? upload_bar : NULL, NULL, raw);
    if (bar)
        fputc('\n', stderr);
    return cli_take_reply(c, rc, raw, out);
}
