/* cmd_datasets.c: `sgdr datasets ls|show|add|upload|rm`: datasets registered on the
 * daemon's disk or uploaded as a tar archive. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "out.h"

#define DS_PATH HTTP_API_PREFIX "/datasets"

static const cli_item ds_item = {"dataset", DS_PATH};

static const out_col ds_cols[] = {
    {"ID", "id", OUT_TEXT},
    {"NAME", "name", OUT_TEXT},
    {"FORMAT", "format", OUT_TEXT},
    {"UPLOADED", "uploaded", OUT_TEXT},
    {"RUNS", "runs", OUT_TEXT},
    {"CREATED", "created_at", OUT_TIME},
    {"PATH", "path", OUT_TEXT},
    {NULL, NULL, 0},
};

/* A dataset in a few lines: what it is, its classes and counts, unreadable files. */
static void describe(cli_ctx *c, json_t *ds)
{
    char cls[4096] = "", buf[64];
    json_t *info = json_object_get(ds, "info"), *v;
    size_t i;
    json_array_foreach(json_object_get(info, "classes"), i, v) {
        size_t n = strlen(cls);
        snprintf(cls + n, sizeof cls - n, "%s%s", i ? ", " : "", out_str(v, ""));
    }
    printf("dataset %lld \"%s\" (%s%s) at %s\n",
           (long long)json_integer_value(json_object_get(ds, "id")),
           out_str(ds, "name"), out_str(ds, "format"),
           json_is_true(json_object_get(ds, "uploaded")) ? ", uploaded" : "", out_str(ds, "path"));
    /* A registration answered before its scan ended: `datasets show` tells how it ends. */
    if (!strcmp(out_str(ds, "state"), "scanning"))
        printf("  scanning: %lld files seen so far (see `sgdr datasets show %lld`)\n",
               (long long)json_integer_value(json_object_get(ds, "progress")),
               (long long)json_integer_value(json_object_get(ds, "id")));
    else if (!strcmp(out_str(ds, "state"), "failed"))
        printf("  failed: %s\n", out_str(ds, "error"));
    printf("  %lld classes: %s\n",
           (long long)json_integer_value(json_object_get(info, "n_classes")), cls);
    printf("  images: train %lld, valid %lld, test %lld; unreadable %lld\n",
           (long long)json_integer_value(out_path(info, "counts.train")),
           (long long)json_integer_value(out_path(info, "counts.valid")),
           (long long)json_integer_value(out_path(info, "counts.test")),
           (long long)json_integer_value(json_object_get(info, "n_unreadable")));
    json_array_foreach(json_object_get(info, "unreadable"), i, v) {
        printf("    %s: %s\n", out_str(v, "file"), out_str(v, "reason"));
    }
    out_format(buf, sizeof buf, json_object_get(ds, "created_at"), OUT_TIME);
    printf("  created %s, used by %lld runs\n", buf,
           (long long)json_integer_value(json_object_get(ds, "runs")));
}

/* Prints an answer that holds one dataset. */
static int print_dataset(cli_ctx *c, http_reply *raw, json_t *ds)
{
    if (c->json)
        cli_print_raw(raw);
    else
        describe(c, ds);
    return CLI_OK;
}

static void ds_table(cli_ctx *c, json_t *page)
{
    out_table(page, ds_cols);
}

static int ds_ls(cli_ctx *c, int argc, char **argv)
{
    return cli_ls_page(c, argc, argv, "datasets ls [--limit N] [--page-token T]", DS_PATH,
                       ds_table);
}

static int ds_show(cli_ctx *c, int argc, char **argv)
{
    return cli_show_id(c, argc, argv, &ds_item, "datasets show ID", "GET", "", describe);
}

static int ds_rm(cli_ctx *c, int argc, char **argv)
{
    return cli_rm_id(c, argc, argv, &ds_item, "datasets rm ID");
}

static const args_opt add_opts[] = {
    {"--format", NULL, ARGS_STR, "format", "folders (the default), csv or idx"},
    {"--valid-pct", NULL, ARGS_NUM, "valid_pct", "hold out this fraction when there is no valid/"},
    {"--csv", NULL, ARGS_STR, "csv", "csv format: the labels file, relative to PATH"},
    {"--seed", NULL, ARGS_INT, "seed", "seed of the validation split"},
    {NULL, NULL, 0, NULL, NULL},
};

/* The daemon wants an absolute path; a relative one that exists here is made absolute
 * (the usual case of a daemon on this machine), anything else goes as it is. */
static json_t *server_path(const char *p)
{
    char abs[PATH_MAX];
    if (p[0] != '/' && realpath(p, abs))
        return json_string(abs);
    return json_string(p);
}

static int ds_add(cli_ctx *c, int argc, char **argv)
{
    args a;
    char err[256];
    http_reply raw = {0};
    json_t *ds = NULL, *body = json_object();
    int st;
    if (cli_args(&a, "datasets add NAME PATH [--format folders|csv|idx] [options]", add_opts,
                 argc, argv, 2, 2, &st))
        goto out;
    json_object_set_new(body, "name", json_string(a.pos[0]));
    json_object_set_new(body, "path", server_path(a.pos[1]));
    json_object_set_new(body, "format", json_string("folders"));
    if (args_body(&a, body, err, sizeof err)) {
        st = cli_usage_error("%s", err);
        goto out;
    }
    if (!(st = cli_call(c, "POST", DS_PATH, body, &raw, &ds)))
        st = print_dataset(c, &raw, ds);
out:
    json_decref(body);
    json_decref(ds);
    http_reply_clear(&raw);
    return st;
}

/* The upload's path: POST /datasets?name=...&format=... from the options. */
static int upload_path(cli_ctx *c, const args *a, char *path, size_t len)
{
    snprintf(path, len, DS_PATH);
    int st = cli_query_add(c, path, len, "name", a->pos[0]);
    for (int i = 0; !st && add_opts[i].flag; i++)
        if (a->val[i])
            st = cli_query_add(c, path, len, add_opts[i].key, a->val[i]);
    return st;
}

/* A gzip'd archive starts with 1f 8b; anything else goes as a plain tar. */
static const char *archive_type(FILE *f)
{
    unsigned char magic[2] = {0, 0};
    size_t n = fread(magic, 1, 2, f);
    rewind(f);
    return n == 2 && magic[0] == 0x1f && magic[1] == 0x8b ? "application/gzip"
                                                            : "application/x-tar";
}

static int ds_upload(cli_ctx *c, int argc, char **argv)
{
    args a;
    char path[1200];
    long long size = 0;
    http_reply raw = {0};
    json_t *ds = NULL;
    FILE *f = NULL;
    int st;
    if (cli_args(&a, "datasets upload NAME FILE.tar[.gz] [--format folders|csv|idx] [options]",
                 add_opts, argc, argv, 2, 2, &st) ||
        (st = upload_path(c, &a, path, sizeof path)) || (st = cli_open_upload(a.pos[1], &f, &size)))
        return st;
    st = cli_upload(c, path, archive_type(f), f, size, &raw, &ds);
    fclose(f);
    if (!st)
        st = print_dataset(c, &raw, ds);
    json_decref(ds);
    http_reply_clear(&raw);
    return st;
}

int cmd_datasets(cli_ctx *c, int argc, char **argv)
{
    static const cli_cmd table[] = {
        {"ls", ds_ls, "list datasets (the default)"},
        {"show", ds_show, "one dataset: classes, counts, unreadable files"},
        {"add", ds_add, "register a dataset on the daemon's disk"},
        {"upload", ds_upload, "upload a dataset as a tar or tar.gz archive"},
        {"rm", ds_rm, "delete a dataset"},
        {NULL, NULL, NULL},
    };
    return cli_dispatch(c, table, "datasets", "ls", argc, argv);
}
