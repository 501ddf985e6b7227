/* cmd_jobs.c: `sgdr jobs ls|show|cancel|resume|wait`: the daemon's queued, running and
 * finished jobs. */
#include <stdio.h>

#include "cli.h"
#include "out.h"

#define JOBS_PATH HTTP_API_PREFIX "/jobs"

static const cli_item job_item = {"job", JOBS_PATH};

static const out_col job_cols[] = {
    {"ID", "id", OUT_TEXT},
    {"RUN", "run", OUT_TEXT},
    {"KIND", "kind", OUT_TEXT},
    {"STATE", "state", OUT_TEXT},
    {"PROGRESS", "progress", OUT_PCT},
    {"ETA", "eta_s", OUT_ETA},
    {"CREATED", "created_at", OUT_TIME},
    {"ERROR", "error", OUT_TEXT},
    {NULL, NULL, 0},
};

static const args_opt ls_opts[] = {
    {"--run", NULL, ARGS_INT, NULL, "only this run's jobs"},
    {"--state", NULL, ARGS_STR, NULL, "only jobs in this state (queued, running, ...)"},
    {"--limit", NULL, ARGS_INT, NULL, "at most this many (1..1000)"},
    {"--page-token", NULL, ARGS_STR, NULL, "the page after the one that named this token"},
    {NULL, NULL, 0, NULL, NULL},
};

static void jobs_table(cli_ctx *c, json_t *page)
{
    out_table(page, job_cols);
}

static void job_lines(cli_ctx *c, json_t *job)
{
    out_object(job);
}

static int jobs_ls(cli_ctx *c, int argc, char **argv)
{
    args a;
    char path[512] = JOBS_PATH;
    const char *run, *state;
    int st;
    if (cli_args(&a, "jobs ls [--run ID] [--state STATE] [--limit N] [--page-token T]",
                 ls_opts, argc, argv, 0, 0, &st))
        return st;
    run = args_get(&a, "--run");
    state = args_get(&a, "--state");
    if ((run && (st = cli_query_add(c, path, sizeof path, "run", run))) ||
        (state && (st = cli_query_add(c, path, sizeof path, "state", state))) ||
        (st = cli_page_path(c, &a, path, sizeof path)))
        return st;
    return cli_show(c, "GET", path, jobs_table);
}

static int jobs_show(cli_ctx *c, int argc, char **argv)
{
    return cli_show_id(c, argc, argv, &job_item, "jobs show ID", "GET", "", job_lines);
}

static int jobs_cancel(cli_ctx *c, int argc, char **argv)
{
    return cli_show_id(c, argc, argv, &job_item, "jobs cancel ID", "POST", "/cancel", job_lines);
}

static const args_opt wait_opts[] = {
    {"--wait", NULL, ARGS_SWITCH, NULL, "follow the new job to its end"},
    {NULL, NULL, 0, NULL, NULL},
};

static int jobs_resume(cli_ctx *c, int argc, char **argv)
{
    args a;
    long long id;
    char path[128];
    http_reply raw = {0};
    json_t *job = NULL;
    int st;
    if (cli_args(&a, "jobs resume ID [--wait]", wait_opts, argc, argv, 1, 1, &st) ||
        cli_pos_id(&a, 0, "job", &id, &st))
        return st;
    snprintf(path, sizeof path, JOBS_PATH "/%lld/resume", id);
    if ((st = cli_call(c, "POST", path, NULL, &raw, &job)))
        return st;
    st = cli_job_queued(c, &raw, job, args_get(&a, "--wait") != NULL);
    json_decref(job);
    http_reply_clear(&raw);
    return st;
}

static int jobs_wait(cli_ctx *c, int argc, char **argv)
{
    args a;
    long long id;
    int st;
    if (cli_args(&a, "jobs wait ID", NULL, argc, argv, 1, 1, &st) ||
        cli_pos_id(&a, 0, "job", &id, &st))
        return st;
    return cli_follow_job(c, id);
}

int cmd_jobs(cli_ctx *c, int argc, char **argv)
{
    static const cli_cmd table[] = {
        {"ls", jobs_ls, "list jobs (the default)"},
        {"show", jobs_show, "one job: state, progress, ETA, error, result"},
        {"cancel", jobs_cancel, "cancel a queued job or stop a running one"},
        {"resume", jobs_resume, "resume an interrupted fit from its last checkpoint"},
        {"wait", jobs_wait, "follow a job to its end (exit 0 when it succeeded)"},
        {NULL, NULL, NULL},
    };
    return cli_dispatch(c, table, "jobs", "ls", argc, argv);
}
