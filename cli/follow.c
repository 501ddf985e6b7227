/* follow.c: follows a job to its end by polling GET /jobs/{id}, drawing its progress on
 * standard error, and turns its final state into the exit status. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "out.h"
#include "progress.h"

#define FOLLOW_POLL_NS 500000000L
/* Polls in a row that may find the daemon unreachable (a restart) before giving up. */
#define FOLLOW_NET_RETRIES 20

typedef struct {
    char state[32];
    char kind[32];
    double progress;
    double eta_s; /* -1: unknown */
} follow_seen;

static int state_exit(const char *state)
{
    if (strcmp(state, "succeeded") == 0)
        return CLI_OK;
    if (strcmp(state, "cancelled") == 0)
        return CLI_JOB_CANCELLED;
    if (strcmp(state, "interrupted") == 0)
        return CLI_JOB_INTERRUPTED;
    return CLI_JOB_FAILED;
}

static int finished(const char *state)
{
    return strcmp(state, "queued") != 0 && strcmp(state, "running") != 0;
}

static void read_job(json_t *job, follow_seen *s)
{
    json_t *eta = json_object_get(job, "eta_s");
    snprintf(s->state, sizeof s->state, "%s", out_str(job, "state"));
    snprintf(s->kind, sizeof s->kind, "%s", out_str(job, "kind"));
    s->progress = json_number_value(json_object_get(job, "progress"));
    s->eta_s = json_is_number(eta) ? json_number_value(eta) : -1;
}

/* Shows s: redraws the bar on a terminal; elsewhere a line when the state or the tenth of
 * the progress changes from last. */
static void show(cli_ctx *c, long long id, const follow_seen *s, follow_seen *last)
{
    char line[256];
    if (c->json)
        return;
    if (c->tty) {
        struct winsize ws;
        int cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 80;
        progress_line(line, sizeof line, id, s->kind, s->state, s->progress, s->eta_s, 30);
        if (cols > 1 && strlen(line) >= (size_t)cols)
            line[cols - 1] = '\0';
        fprintf(stderr, "\r%s\033[K", line);
    } else if (strcmp(s->state, last->state) != 0 ||
               floor(s->progress * 10) != floor(last->progress * 10)) {
        progress_line(line, sizeof line, id, s->kind, s->state, s->progress, s->eta_s, 0);
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
    *last = *s;
}

/* GETs the job into *raw and *job, trying again up to retries times while the daemon
 * cannot be reached. */
static int poll_job(cli_ctx *c, const char *path, int retries, http_reply *raw, json_t **job)
{
    int rc;
    for (int tries = 0;; tries++) {
        rc = http_request(c->http, "GET", path, NULL, NULL, 0, raw);
        if (rc == 0 || tries >= retries)
            break;
        nanosleep(&(struct timespec){0, FOLLOW_POLL_NS}, NULL);
    }
    return cli_take_reply(c, rc, raw, job);
}

/* An LR sweep's suggested learning rates, one a line with the reason. */
static void print_suggestions(json_t *sug)
{
    const char *name;
    json_t *v;
    json_object_foreach(sug, name, v) {
        printf("suggested lr %-10s %-10.3g %s\n", name,
               json_number_value(json_object_get(v, "lr")), out_str(v, "reason"));
    }
}

/* The final word on the job: the server's JSON under --json, else a summary. */
static void summary(cli_ctx *c, long long id, json_t *job, const http_reply *raw)
{
    if (c->json) {
        cli_print_raw(raw);
        return;
    }
    json_t *start = json_object_get(job, "started_at"), *end = json_object_get(job, "finished_at");
    const char *err = json_string_value(json_object_get(job, "error"));
    json_t *result = json_object_get(job, "result");
    printf("job %lld %s %s", id, out_str(job, "kind"), out_str(job, "state"));
    if (json_is_number(start) && json_is_number(end))
        printf(" in %.1f s", json_number_value(end) - json_number_value(start));
    printf("\n");
    if (err)
        printf("error: %s\n", err);
    if (json_is_object(json_object_get(result, "suggestions"))) {
        print_suggestions(json_object_get(result, "suggestions"));
    } else if (result && !json_is_null(result)) {
        char *text = json_dumps(result, JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("result: %s\n", text ? text : "?");
        free(text);
    }
}

int cli_follow_job(cli_ctx *c, long long id)
{
    char path[96];
    follow_seen seen = {0}, last = {.progress = -1};
    http_reply raw = {0};
    json_t *job = NULL;
    int rc;
    snprintf(path, sizeof path, HTTP_API_PREFIX "/jobs/%lld", id);
    for (int polls = 0;; polls++) {
        /* a daemon that answered once may be restarting; one that never did is not there */
        if ((rc = poll_job(c, path, polls ? FOLLOW_NET_RETRIES : 0, &raw, &job))) {
            if (polls && c->tty && !c->json)
                fputc('\n', stderr);
            return rc;
        }
        read_job(job, &seen);
        show(c, id, &seen, &last);
        if (finished(seen.state))
            break;
        json_decref(job);
        http_reply_clear(&raw);
        nanosleep(&(struct timespec){0, FOLLOW_POLL_NS}, NULL);
    }
    if (c->tty && !c->json)
        fputc('\n', stderr);
    summary(c, id, job, &raw);
    rc = state_exit(seen.state);
    json_decref(job);
    http_reply_clear(&raw);
    return rc;
}

int cli_job_queued(cli_ctx *c, http_reply *raw, json_t *job, int wait)
{
    long long id = json_integer_value(json_object_get(job, "id"));
    if (id < 1) {
        fprintf(stderr, "sgdr: the daemon's answer names no job\n");
        return CLI_ESERVER;
    }
    if (c->json && !wait) {
        cli_print_raw(raw);
        return CLI_OK;
    }
    if (!c->json) {
        printf("job %lld queued: %s on run %lld\n", id,
               out_str(job, "kind"),
               (long long)json_integer_value(json_object_get(job, "run")));
        fflush(stdout);
    }
    return wait ? cli_follow_job(c, id) : CLI_OK;
}
