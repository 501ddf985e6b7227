/* collection.c: the subcommands every collection of the API has in the same shape: `ls` of
 * one page, `show` (or another call) of one item by id, and `rm` of one item by id. */
#include "cli.h"

#include <stdio.h>

int cli_ls_page(cli_ctx *c, int argc, char **argv, const char *synopsis, const char *base,
                void (*print)(cli_ctx *c, json_t *v))
{
    args a;
    char path[512];
    int st;
    snprintf(path, sizeof path, "%s", base);
    if (cli_args(&a, synopsis, cli_page_opts, argc, argv, 0, 0, &st) ||
        (st = cli_page_path(c, &a, path, sizeof path)))
        return st;
    return cli_show(c, "GET", path, print);
}

/* Parses the one positional ID (of a `what`) into *id and base/ID/suffix into path. Returns
 * 0, or nonzero with the exit status in *st. */
static int id_path(const char *synopsis, const char *what, const char *base, const char *suffix,
                   int argc, char **argv, char *path, size_t len, long long *id, int *st)
{
    args a;
    if (cli_args(&a, synopsis, NULL, argc, argv, 1, 1, st) || cli_pos_id(&a, 0, what, id, st))
        return 1;
    snprintf(path, len, "%s/%lld%s", base, *id, suffix);
    return 0;
}

int cli_show_id(cli_ctx *c, int argc, char **argv, const cli_item *item, const char *synopsis,
                const char *method, const char *suffix, void (*print)(cli_ctx *c, json_t *v))
{
    long long id;
    char path[128];
    int st;
    if (id_path(synopsis, item->what, item->base, suffix, argc, argv, path, sizeof path, &id,
                &st))
        return st;
    return cli_show(c, method, path, print);
}

int cli_rm_id(cli_ctx *c, int argc, char **argv, const cli_item *item, const char *synopsis)
{
    long long id;
    char path[128];
    http_reply raw = {0};
    int st;
    if (id_path(synopsis, item->what, item->base, "", argc, argv, path, sizeof path, &id, &st))
        return st;
    if ((st = cli_call(c, "DELETE", path, NULL, &raw, NULL)))
        return st;
    if (!c->json)
        printf("%s %lld deleted\n", item->what, id);
    http_reply_clear(&raw);
    return CLI_OK;
}
