/* report.c: the daemon's errors for a person: a problem+json body read out on one line of
 * standard error, any other failed answer summed up. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("sgdr: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_EUSAGE;
}

static int status_exit(long status)
{
    return status >= 400 && status <= 499 ? CLI_EUSAGE : CLI_ESERVER;
}

/* "sgdr: 400 INVALID_PARAMETER_VALUE (field lrs): detail"; 0 when body is no problem. */
static int report_problem(long status, const char *body)
{
    json_t *p = json_loads(body, 0, NULL);
    const char *code = json_string_value(json_object_get(p, "error_code"));
    const char *detail = json_string_value(json_object_get(p, "detail"));
    const char *field = json_string_value(json_object_get(p, "field"));
    const char *title = json_string_value(json_object_get(p, "title"));
    int ok = code || detail || title;
    if (ok) {
        fprintf(stderr, "sgdr: %ld %s", status, code ? code : title ? title : "");
        if (field)
            fprintf(stderr, " (field %s)", field);
        fprintf(stderr, ": %s\n", detail ? detail : title ? title : "(no detail)");
    }
    json_decref(p);
    return ok;
}

int cli_report_reply(const http_reply *r)
{
    if (r->body && strncmp(r->ctype, "application/problem+json", 24) == 0 &&
        report_problem(r->status, r->body))
        return status_exit(r->status);
    if (r->body && strncmp(r->ctype, "application/json", 16) == 0 &&
        report_problem(r->status, r->body))
        return status_exit(r->status);
    const char *b = r->body ? r->body : "";
    size_t n = strcspn(b, "\r\n");
    fprintf(stderr, "sgdr: HTTP %ld: %.*s%s\n", r->status, (int)(n > 200 ? 200 : n),
            n ? b : "(no body)", n > 200 ? "..." : "");
    return status_exit(r->status);
}

int cli_report_network(cli_ctx *c)
{
    fprintf(stderr, "sgdr: cannot reach %s: %s\n", http_base(c->http), http_error(c->http));
    return CLI_ESERVER;
}
