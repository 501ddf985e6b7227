/* cmd_download.c: `sgdr weights RUN -o FILE` and `sgdr predictions JOB -o FILE`: files
 * the daemon serves, streamed to disk. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const args_opt dl_opts[] = {
    {"--output", "-o", ARGS_STR, NULL, "the file to write (\"-\": standard output)"},
    {NULL, NULL, 0, NULL, NULL},
};

/* GETs path into dest; the file is only written when the daemon answers 2xx. */
static int download(cli_ctx *c, const char *path, const char *dest)
{
    http_reply raw = {0};
    struct stat sb;
    int rc = http_download(c->http, path, dest, &raw);
    if (rc == -EIO)
        return cli_report_network(c);
    if (rc)
        return cli_usage_error("%s", http_error(c->http));
    if (raw.status < 200 || raw.status > 299) {
        rc = cli_report_reply(&raw);
        http_reply_clear(&raw);
        return rc;
    }
    http_reply_clear(&raw);
    if (!c->json && strcmp(dest, "-") != 0 && stat(dest, &sb) == 0)
        printf("wrote %s (%lld bytes)\n", dest, (long long)sb.st_size);
    return CLI_OK;
}

/* `NAME ID [-o FILE]`: the default file name is dflt_fmt filled with the id. */
static int download_cmd(cli_ctx *c, int argc, char **argv, const char *synopsis,
                        const char *what, const char *path_fmt, const char *dflt_fmt)
{
    args a;
    long long id;
    char path[128], dflt[64];
    int st;
    if (cli_args(&a, synopsis, dl_opts, argc, argv, 1, 1, &st) ||
        cli_pos_id(&a, 0, what, &id, &st))
        return st;
    snprintf(path, sizeof path, path_fmt, id);
    snprintf(dflt, sizeof dflt, dflt_fmt, id);
    const char *dest = args_get(&a, "--output");
    return download(c, path, dest ? dest : dflt);
}

int cmd_weights(cli_ctx *c, int argc, char **argv)
{
    return download_cmd(c, argc, argv, "weights RUN [-o FILE]", "run",
                        HTTP_API_PREFIX "/runs/%lld/weights", "run-%lld.safetensors");
}

int cmd_predictions(cli_ctx *c, int argc, char **argv)
{
    return download_cmd(c, argc, argv, "predictions JOB [-o FILE]", "job",
                        HTTP_API_PREFIX "/jobs/%lld/predictions.csv", "predictions-%lld.csv");
}
