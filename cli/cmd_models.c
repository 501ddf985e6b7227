/* cmd_models.c: `sgdr models ls|show|import|rm`: pretrained weights (safetensors with
 * torchvision's names) that runs start from with --pretrained. */
#include <stdio.h>

#include "cli.h"
#include "out.h"

#define MODELS_PATH HTTP_API_PREFIX "/models"

static const cli_item model_item = {"model", MODELS_PATH};

static const out_col model_cols[] = {
    {"ID", "id", OUT_TEXT},
    {"NAME", "name", OUT_TEXT},
    {"ARCH", "arch", OUT_TEXT},
    {"BYTES", "bytes", OUT_TEXT},
    {"CREATED", "created_at", OUT_TIME},
    {NULL, NULL, 0},
};

static void models_table(cli_ctx *c, json_t *page)
{
    out_table(page, model_cols);
}

static void model_lines(cli_ctx *c, json_t *m)
{
    out_object(m);
}

static int models_ls(cli_ctx *c, int argc, char **argv)
{
    return cli_ls_page(c, argc, argv, "models ls [--limit N] [--page-token T]", MODELS_PATH,
                       models_table);
}

static int models_show(cli_ctx *c, int argc, char **argv)
{
    return cli_show_id(c, argc, argv, &model_item, "models show ID", "GET", "", model_lines);
}

static int models_rm(cli_ctx *c, int argc, char **argv)
{
    return cli_rm_id(c, argc, argv, &model_item, "models rm ID");
}

static int models_import(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--arch", NULL, ARGS_STR, NULL,
         "resnet18, resnet34, resnet_small or resnet_small_silu (required)"},
        {NULL, NULL, 0, NULL, NULL},
    };
    args a;
    char path[512] = MODELS_PATH;
    long long size = 0;
    http_reply raw = {0};
    json_t *m = NULL;
    FILE *f = NULL;
    int st;
    if (cli_args(&a, "models import NAME FILE.safetensors --arch ARCH", opts, argc, argv, 2, 2,
                 &st))
        return st;
    if (!args_get(&a, "--arch"))
        return cli_usage_error("models import: --arch is required");
    if ((st = cli_query_add(c, path, sizeof path, "name", a.pos[0])) ||
        (st = cli_query_add(c, path, sizeof path, "arch", args_get(&a, "--arch"))) ||
        (st = cli_open_upload(a.pos[1], &f, &size)))
        return st;
    st = cli_upload(c, path, "application/octet-stream", f, size, &raw, &m);
    fclose(f);
    if (st)
        return st;
    if (c->json)
        cli_print_raw(&raw);
    else
        printf("model %lld \"%s\" imported (%s, %lld bytes)\n",
               (long long)json_integer_value(json_object_get(m, "id")), out_str(m, "name"),
               out_str(m, "arch"), (long long)json_integer_value(json_object_get(m, "bytes")));
    json_decref(m);
    http_reply_clear(&raw);
    return CLI_OK;
}

int cmd_models(cli_ctx *c, int argc, char **argv)
{
    static const cli_cmd table[] = {
        {"ls", models_ls, "list imported models (the default)"},
        {"show", models_show, "one model"},
        {"import", models_import, "import pretrained weights (safetensors)"},
        {"rm", models_rm, "delete a model"},
        {NULL, NULL, NULL},
    };
    return cli_dispatch(c, table, "models", "ls", argc, argv);
}
