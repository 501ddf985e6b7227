/* cmdline.c: finding a subcommand by name and parsing its arguments, with usage on
 * --help and on mistakes. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void group_usage(FILE *fp, const cli_cmd *table, const char *what)
{
    fprintf(fp, "usage: sgdr %s%sCOMMAND ...\n", what ? what : "", what ? " " : "");
    for (int i = 0; table[i].name; i++)
        fprintf(fp, "  %-14s %s\n", table[i].name, table[i].summary);
}

int cli_dispatch(cli_ctx *c, const cli_cmd *table, const char *what, const char *dflt,
                 int argc, char **argv)
{
    const char *name = argc > 0 ? argv[0] : dflt;
    int skip = argc > 0;
    if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
                     strcmp(argv[0], "help") == 0)) {
        group_usage(stdout, table, what);
        return CLI_OK;
    }
    if (argc > 0 && argv[0][0] == '-' && dflt) {
        name = dflt;
        skip = 0;
    }
    if (!name) {
        group_usage(stderr, table, what);
        return CLI_EUSAGE;
    }
    for (int i = 0; table[i].name; i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].fn(c, argc - skip, argv + skip);
    cli_usage_error("unknown command '%s%s%s'", what ? what : "", what ? " " : "", name);
    group_usage(stderr, table, what);
    return CLI_EUSAGE;
}

int cli_args(args *a, const char *synopsis, const args_opt *opts, int argc, char **argv,
             int min_pos, int max_pos, int *status)
{
    char err[256];
    if (args_parse(a, opts, argc, argv, min_pos, max_pos, err, sizeof err)) {
        *status = cli_usage_error("%s", err);
        args_usage(stderr, synopsis, opts);
        return 1;
    }
    if (a->help) {
        args_usage(stdout, synopsis, opts);
        *status = CLI_OK;
        return 1;
    }
    return 0;
}

int cli_pos_id(const args *a, int i, const char *what, long long *out, int *status)
{
    char err[256];
    if (!args_id(a->pos[i], what, out, err, sizeof err))
        return 0;
    *status = cli_usage_error("%s", err);
    return 1;
}
