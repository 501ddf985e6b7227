/* cmd_train.c: the commands that queue a job on a run (lr-find, fit, recipe, tta, freeze,
 * unfreeze, resize, precompute, predict-test): each a table of options that become the
 * request's fields, and --wait to follow the job. */
#include <stdio.h>

#include "cli.h"

#define WAIT_OPT {"--wait", NULL, ARGS_SWITCH, NULL, "follow the job to its end"}
#define END_OPT {NULL, NULL, 0, NULL, NULL}

typedef struct {
    const char *synopsis;
    const char *action; /* the path after /runs/ID/ */
    const args_opt *opts;
} train_cmd;

/* POST /runs/RUN/ACTION with the options as its body; prints or follows the job. */
static int queue_job(cli_ctx *c, const train_cmd *t, int argc, char **argv)
{
    args a;
    long long id;
    char path[128], err[256];
    http_reply raw = {0};
    json_t *job = NULL, *body = json_object();
    int st;
    if (cli_args(&a, t->synopsis, t->opts, argc, argv, 1, 1, &st) ||
        cli_pos_id(&a, 0, "run", &id, &st))
        goto out;
    if (!body || args_body(&a, body, err, sizeof err)) {
        st = cli_usage_error("%s", body ? err : "out of memory");
        goto out;
    }
    snprintf(path, sizeof path, HTTP_API_PREFIX "/runs/%lld/%s", id, t->action);
    if (!(st = cli_call(c, "POST", path, body, &raw, &job)))
        st = cli_job_queued(c, &raw, job, args_get(&a, "--wait") != NULL);
out:
    json_decref(body);
    json_decref(job);
    http_reply_clear(&raw);
    return st;
}

int cmd_lr_find(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--start-lr", NULL, ARGS_NUM, "start_lr", "lowest LR of the sweep"},
        {"--end-lr", NULL, ARGS_NUM, "end_lr", "highest LR of the sweep"},
        {"--num-it", NULL, ARGS_INT, "num_it", "iterations (0: one epoch, at most 200)"},
        WAIT_OPT,
        END_OPT,
    };
    static const train_cmd t = {"lr-find RUN [--start-lr X] [--end-lr X] [--num-it N] [--wait]",
                                "lr-find", opts};
    return queue_job(c, &t, argc, argv);
}

int cmd_fit(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--lrs", NULL, ARGS_NUMS, "lrs", "one LR, or one per layer group: a,b,c"},
        {"--cycles", "--n-cycle", ARGS_INT, "n_cycle", "cycles (epochs for constant)"},
        {"--cycle-len", NULL, ARGS_INT, "cycle_len", "epochs of the first cycle"},
        {"--cycle-mult", NULL, ARGS_INT, "cycle_mult", "each cycle this many times longer"},
        {"--wd", NULL, ARGS_NUM, "wd", "weight decay"},
        {"--schedule", NULL, ARGS_STR, "schedule", "sgdr, constant or 1cycle"},
        {"--snapshots", NULL, ARGS_SWITCH, "snapshots", "keep the weights of each cycle end"},
        {"--stop-at-worse-cycle", NULL, ARGS_SWITCH, "stop_at_worse_cycle",
         "stop at a cycle end that did not improve"},
        {"--time-limit", NULL, ARGS_NUM, "time_limit_minutes", "aim to end within minutes"},
        {"--early-stop", NULL, ARGS_INT, "early_stop.patience",
         "stop after this many epochs without a better validation loss"},
        WAIT_OPT,
        END_OPT,
    };
    static const train_cmd t = {
        "fit RUN --lrs LR[,LR,LR] --cycles N [--cycle-len L] [--cycle-mult M] [options] [--wait]",
        "fit", opts};
    return queue_job(c, &t, argc, argv);
}

int cmd_recipe(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--max-epochs", NULL, ARGS_INT, "max_epochs", "epochs of the final fit at most"},
        {"--n-aug", NULL, ARGS_INT, "n_aug", "TTA augmentations"},
        {"--budget", NULL, ARGS_NUM, "budget_minutes", "aim to finish within minutes"},
        {"--schedule", NULL, ARGS_STR, "schedule", "sgdr or 1cycle"},
        {"--close-to-imagenet", NULL, ARGS_SWITCH, "close_to_imagenet",
         "images like ImageNet's: body LRs /100, /10 instead of /9, /3"},
        WAIT_OPT,
        END_OPT,
    };
    static const train_cmd t = {"recipe RUN [options] [--wait]", "recipe", opts};
    return queue_job(c, &t, argc, argv);
}

int cmd_tta(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--n-aug", NULL, ARGS_INT, "n_aug", "augmentations per image"},
        WAIT_OPT,
        END_OPT,
    };
    static const train_cmd t = {"tta RUN [--n-aug N] [--wait]", "tta", opts};
    return queue_job(c, &t, argc, argv);
}

int cmd_freeze(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--to", NULL, ARGS_INT, "to", "train only layer groups >= this"},
        WAIT_OPT,
        END_OPT,
    };
    static const train_cmd t = {"freeze RUN --to N [--wait]", "freeze", opts};
    return queue_job(c, &t, argc, argv);
}

int cmd_unfreeze(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {WAIT_OPT, END_OPT};
    static const train_cmd t = {"unfreeze RUN [--wait]", "unfreeze", opts};
    return queue_job(c, &t, argc, argv);
}

int cmd_resize(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--sz", NULL, ARGS_INT, "sz", "the new input size in pixels"},
        WAIT_OPT,
        END_OPT,
    };
    static const train_cmd t = {"resize RUN --sz N [--wait]", "resize", opts};
    return queue_job(c, &t, argc, argv);
}

int cmd_precompute(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--on", NULL, ARGS_BOOL, "on", "true or false"},
        WAIT_OPT,
        END_OPT,
    };
    static const train_cmd t = {"precompute RUN --on true|false [--wait]", "precompute", opts};
    return queue_job(c, &t, argc, argv);
}

int cmd_predict_test(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--tta", NULL, ARGS_SWITCH, "tta", "with test-time augmentation"},
        WAIT_OPT,
        END_OPT,
    };
    static const train_cmd t = {"predict-test RUN [--tta] [--wait]", "predict-test", opts};
    return queue_job(c, &t, argc, argv);
}
