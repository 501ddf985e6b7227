/* cmd_health.c: `sgdr health`: whether the daemon answers, and how it runs. */
#include <stdio.h>

#include "cli.h"
#include "out.h"

static void health_line(cli_ctx *c, json_t *h)
{
    char up[32];
    out_format(up, sizeof up, json_object_get(h, "uptime_s"), OUT_ETA);
    printf("sgdrd %s at %s: %s, up %s, BLAS core %s with %lld threads, %lld queued, "
           "running job %lld\n",
           out_str(h, "version"), http_base(c->http), out_str(h, "status"), up,
           out_str(h, "blas.core"), (long long)json_integer_value(out_path(h, "blas.threads")),
           (long long)json_integer_value(json_object_get(h, "queue_length")),
           (long long)json_integer_value(json_object_get(h, "running_job")));
}

int cmd_health(cli_ctx *c, int argc, char **argv)
{
    args a;
    int st;
    if (cli_args(&a, "health", NULL, argc, argv, 0, 0, &st))
        return st;
    return cli_show(c, "GET", HTTP_API_PREFIX "/health", health_line);
}
