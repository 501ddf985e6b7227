/* main.c: sgdr, the daemon's command-line client: the global flags, the daemon's address
 * and token, and the table of commands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

#ifndef SGDR_VERSION
#define SGDR_VERSION "dev"
#endif

static const cli_cmd commands[] = {
    {"health", cmd_health, "whether the daemon answers, its version, queue and BLAS"},
    {"datasets", cmd_datasets, "ls | show ID | add NAME PATH | upload NAME FILE | rm ID"},
    {"runs", cmd_runs, "ls | show ID | create --dataset D --arch A ... | rm ID"},
    {"jobs", cmd_jobs, "ls | show ID | cancel ID | resume ID | wait ID"},
    {"models", cmd_models, "ls | show ID | import NAME FILE --arch A | rm ID"},
    {"lr-find", cmd_lr_find, "RUN: queue an LR sweep"},
    {"fit", cmd_fit, "RUN --lrs ... --cycles N: queue training with SGDR"},
    {"recipe", cmd_recipe, "RUN: queue the whole recipe in one job"},
    {"tta", cmd_tta, "RUN: queue validation with test-time augmentation"},
    {"freeze", cmd_freeze, "RUN --to N: train only layer groups >= N"},
    {"unfreeze", cmd_unfreeze, "RUN: train every layer group"},
    {"resize", cmd_resize, "RUN --sz N: change the input size"},
    {"precompute", cmd_precompute, "RUN --on true|false: the precomputed activations"},
    {"predict-test", cmd_predict_test, "RUN: queue predictions for the dataset's test/"},
    {"predict", cmd_predict, "RUN IMAGE [--tta]: one image's class probabilities"},
    {"weights", cmd_weights, "RUN -o FILE: download the run's weights (safetensors)"},
    {"predictions", cmd_predictions, "JOB -o FILE: download a predict-test job's CSV"},
    {NULL, NULL, NULL},
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: sgdr [--url URL] [--token-file FILE] [--config FILE] [--json] "
                "COMMAND ...\n"
                "The daemon's address and token come from the flags, else SGDR_URL and\n"
                "SGDR_TOKEN or SGDR_TOKEN_FILE, else ~/.config/sgdr/config (url, token,\n"
                "token_file), else " CFG_DEFAULT_URL ". Commands that queue a job take\n"
                "--wait to follow it; exit status: 0 done, 1 daemon or network error,\n"
                "2 refused request or bad command line, 3 job failed, 4 job cancelled,\n"
                "5 job interrupted.\n");
    for (int i = 0; commands[i].name; i++)
        fprintf(fp, "  %-13s %s\n", commands[i].name, commands[i].summary);
}

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

/* The global flags, taken out of argv wherever they stand before `--`. */
typedef struct {
    cfg_flags cfg;
    int json, help, version;
} main_flags;

/* Which of the valued global flags w is (-1: none); *inline_val is its `=value` part. */
static int valued_flag(const char *w, const char **inline_val)
{
    static const char *names[] = {"--url", "--token-file", "--config"};
    for (int j = 0; j < 3; j++) {
        size_t n = strlen(names[j]);
        if (strncmp(w, names[j], n) == 0 && (w[n] == '\0' || w[n] == '=')) {
            *inline_val = w[n] == '=' ? w + n + 1 : NULL;
            return j;
        }
    }
    return -1;
}

static int take_globals(int *argc, char **argv, main_flags *f)
{
    const char **slots[] = {&f->cfg.url, &f->cfg.token_file, &f->cfg.config};
    int out = 1, seen_cmd = 0, rest = 0;
    for (int i = 1; i < *argc; i++) {
        const char *w = argv[i], *val = NULL;
        int k = rest ? -1 : valued_flag(w, &val);
        if (k >= 0 && !val && i + 1 >= *argc)
            return cli_usage_error("%s needs a value", w);
        if (k >= 0)
            *slots[k] = val ? val : argv[++i];
        else if (!rest && strcmp(w, "--json") == 0)
            f->json = 1;
        else if (!rest && !seen_cmd && (strcmp(w, "--help") == 0 || strcmp(w, "-h") == 0))
            f->help = 1;
        else if (!rest && !seen_cmd && strcmp(w, "--version") == 0)
            f->version = 1;
        else {
            rest |= strcmp(w, "--") == 0;
            seen_cmd = 1;
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    main_flags f;
    cfg conf = {0};
    cli_ctx c = {0};
    char err[512];
    memset(&f, 0, sizeof f);
    int st = take_globals(&argc, argv, &f);
    if (st)
        return st;
    if (f.version || f.help || argc < 2) {
        if (f.version)
            printf("sgdr %s\n", SGDR_VERSION);
        else
            usage(f.help ? stdout : stderr);
        return f.version || f.help ? CLI_OK : CLI_EUSAGE;
    }
    if (cfg_resolve(&f.cfg, env_lookup, &conf, err, sizeof err))
        return cli_usage_error("%s", err);
    if (http_client_create(conf.url, conf.token, &c.http)) {
        cfg_clear(&conf);
        return cli_usage_error("out of memory");
    }
    c.json = f.json;
    c.tty = isatty(STDERR_FILENO);
    st = cli_dispatch(&c, commands, NULL, NULL, argc - 1, argv + 1);
    http_client_destroy(c.http);
    cfg_clear(&conf);
    return st;
}
