/* cmd_runs.c: `sgdr runs ls|show|create|rm`: learners on a dataset. */
#include <stdio.h>

#include "cli.h"
#include "out.h"

#define RUNS_PATH HTTP_API_PREFIX "/runs"

static const cli_item run_item = {"run", RUNS_PATH};

static const out_col run_cols[] = {
    {"ID", "id", OUT_TEXT},
    {"DATASET", "dataset", OUT_TEXT},
    {"ARCH", "arch", OUT_TEXT},
    {"SZ", "config.sz", OUT_TEXT},
    {"BS", "config.bs", OUT_TEXT},
    {"EPOCHS", "state.epochs_done", OUT_TEXT},
    {"BEST_ACCURACY", "state.best_accuracy", OUT_TEXT},
    {"BEST_VALID_LOSS", "state.best_valid_loss", OUT_TEXT},
    {"CREATED", "created_at", OUT_TIME},
    {NULL, NULL, 0},
};

static const args_opt create_opts[] = {
    {"--dataset", NULL, ARGS_NAME_OR_ID, "dataset", "the dataset's name or id (required)"},
    {"--arch", NULL, ARGS_STR, "arch",
     "resnet18, resnet34, resnet_small or resnet_small_silu (required)"},
    {"--pretrained", NULL, ARGS_INT, "pretrained", "id of an imported model of that arch"},
    {"--sz", NULL, ARGS_INT, "sz", "input size in pixels"},
    {"--bs", NULL, ARGS_INT, "bs", "batch size"},
    {"--tfms", NULL, ARGS_STR, "tfms", "side_on, top_down, flip or none"},
    {"--head", NULL, ARGS_STR, "head", "fastai or plain"},
    {"--opt", NULL, ARGS_STR, "opt", "sgd or adamw"},
    {"--max-zoom", NULL, ARGS_NUM, "max_zoom", "largest random zoom"},
    {"--pad", NULL, ARGS_INT, "pad", "reflect padding for random shifts, pixels (0 to sz/2)"},
    {"--width", NULL, ARGS_INT, "width",
     "first-stage channels of resnet_small(_silu) (default 32)"},
    {"--precompute", NULL, ARGS_SWITCH, "precompute", "start with the precompute cache on"},
    {"--ps", NULL, ARGS_NUMS, "ps", "head dropout: p or p1,p2"},
    {"--xtra-fc", NULL, ARGS_INTS, "xtra_fc", "head hidden layer sizes: n[,n...]"},
    {"--multi-label", NULL, ARGS_BOOL, "multi_label", "true or false (default: the dataset's)"},
    {"--label-smoothing", NULL, ARGS_NUM, "label_smoothing", "0 to 0.99"},
    {"--seed", NULL, ARGS_INT, "seed", "random seed"},
    {NULL, NULL, 0, NULL, NULL},
};

static const out_col epoch_cols[] = {
    {"EPOCH", "epoch", OUT_TEXT},
    {"CYCLE", "cycle", OUT_TEXT},
    {"JOB", "job", OUT_TEXT},
    {"TRAIN_LOSS", "train_loss", OUT_TEXT},
    {"VALID_LOSS", "valid_loss", OUT_TEXT},
    {"ACCURACY", "accuracy", OUT_TEXT},
    {"F2", "f2", OUT_TEXT},
    {"SECONDS", "seconds", OUT_TEXT},
    {"IMG/S", "img_per_s", OUT_TEXT},
    {NULL, NULL, 0},
};

static void epochs_table(cli_ctx *c, json_t *page)
{
    out_table(page, epoch_cols);
}

static void runs_table(cli_ctx *c, json_t *page)
{
    out_table(page, run_cols);
}

static void run_lines(cli_ctx *c, json_t *run)
{
    out_object(run);
}

static int runs_ls(cli_ctx *c, int argc, char **argv)
{
    return cli_ls_page(c, argc, argv, "runs ls [--limit N] [--page-token T]", RUNS_PATH,
                       runs_table);
}

static int runs_show(cli_ctx *c, int argc, char **argv)
{
    return cli_show_id(c, argc, argv, &run_item, "runs show ID", "GET", "", run_lines);
}

static int runs_epochs(cli_ctx *c, int argc, char **argv)
{
    return cli_show_id(c, argc, argv, &run_item, "runs epochs ID", "GET", "/epochs",
                       epochs_table);
}

static int runs_rm(cli_ctx *c, int argc, char **argv)
{
    return cli_rm_id(c, argc, argv, &run_item, "runs rm ID");
}

static int runs_create(cli_ctx *c, int argc, char **argv)
{
    args a;
    char err[256];
    http_reply raw = {0};
    json_t *run = NULL, *body = json_object();
    int st;
    if (cli_args(&a, "runs create --dataset NAME|ID --arch ARCH [options]", create_opts, argc,
                 argv, 0, 0, &st))
        goto out;
    if (args_body(&a, body, err, sizeof err)) {
        st = cli_usage_error("%s", err);
        goto out;
    }
    if ((st = cli_call(c, "POST", RUNS_PATH, body, &raw, &run)))
        goto out;
    if (c->json)
        cli_print_raw(&raw);
    else
        printf("run %lld created: %s on dataset %lld, sz %lld, bs %lld\n",
               (long long)json_integer_value(json_object_get(run, "id")),
               out_str(run, "arch"),
               (long long)json_integer_value(json_object_get(run, "dataset")),
               (long long)json_integer_value(out_path(run, "config.sz")),
               (long long)json_integer_value(out_path(run, "config.bs")));
out:
    json_decref(body);
    json_decref(run);
    http_reply_clear(&raw);
    return st;
}

int cmd_runs(cli_ctx *c, int argc, char **argv)
{
    static const cli_cmd table[] = {
        {"ls", runs_ls, "list runs (the default)"},
        {"show", runs_show, "one run: config, state, current job, best metrics"},
        {"epochs", runs_epochs, "a run's per-epoch losses, accuracy and speed"},
        {"create", runs_create, "create a run (a learner) on a dataset"},
        {"rm", runs_rm, "delete a run and everything it recorded"},
        {NULL, NULL, NULL},
    };
    return cli_dispatch(c, table, "runs", "ls", argc, argv);
}
