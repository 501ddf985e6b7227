/* cli.h: what sgdr's commands share: the session, exit statuses, calling the API and
 * reporting its errors. Every cmd_* function takes the words after its name and returns
 * the process's exit status. */
#ifndef SGDR_CLI_H
#define SGDR_CLI_H

#include <jansson.h>

#include "args.h"
#include "http.h"

/* Exit statuses. */
enum {
    CLI_OK = 0,
    CLI_ESERVER = 1,        /* the daemon failed (5xx) or could not be reached */
    CLI_EUSAGE = 2,         /* the request was refused (4xx) or the command line is wrong */
    CLI_JOB_FAILED = 3,     /* a followed job ended failed */
    CLI_JOB_CANCELLED = 4,  /* ... cancelled */
    CLI_JOB_INTERRUPTED = 5 /* ... interrupted (the daemon stopped under it) */
};

typedef struct {
    http_client *http;
    int json; /* --json: print the server's JSON as it came */
    int tty;  /* standard error is a terminal: draw a progress bar */
} cli_ctx;

/* A subcommand: its name, its function, one line of help. */
typedef struct {
    const char *name;
    int (*fn)(cli_ctx *c, int argc, char **argv);
    const char *summary;
} cli_cmd;

/* Runs the subcommand of table named argv[0] (or dflt when argc is 0) with the rest;
 * what names the group in messages. */
int cli_dispatch(cli_ctx *c, const cli_cmd *table, const char *what, const char *dflt,
                 int argc, char **argv);

/* Parses argv for a command. On --help prints the usage, on a bad command line the error
 * and the usage; both return nonzero with the exit status in *status. Returns 0 to go on. */
int cli_args(args *a, const char *synopsis, const args_opt *opts, int argc, char **argv,
             int min_pos, int max_pos, int *status);

/* Parses positional i of a as an id into *out; on failure reports it and returns nonzero
 * with the exit status in *status. */
int cli_pos_id(const args *a, int i, const char *what, long long *out, int *status);

/* "sgdr: MESSAGE" on standard error; returns CLI_EUSAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reports a non-2xx reply (problem+json read out, anything else summed up) on standard
 * error; returns CLI_EUSAGE for 4xx, CLI_ESERVER otherwise. */
int cli_report_reply(const http_reply *r);

/* Reports that the daemon could not be reached; returns CLI_ESERVER. */
int cli_report_network(cli_ctx *c);

/* Sends method path with body (a JSON value, NULL: none; not consumed). On a 2xx answer
 * keeps it in *raw (cleared by the caller) and, when it is JSON, parses it into *out (NULL
 * for no body; owned by the caller); returns CLI_OK. Otherwise reports the failure and
 * returns its exit status, with *raw cleared and *out NULL. out may be NULL. */
int cli_call(cli_ctx *c, const char *method, const char *path, json_t *body, http_reply *raw,
             json_t **out);

/* Turns the outcome of an http_* call (its return rc and *raw) into cli_call's. */
int cli_take_reply(cli_ctx *c, int rc, http_reply *raw, json_t **out);

/* Sends method path (no body) and prints the JSON answer: as it came under --json, else
 * through print. Returns the exit status. */
int cli_show(cli_ctx *c, const char *method, const char *path,
             void (*print)(cli_ctx *c, json_t *v));

/* Opens the regular file at p for an upload into *f, its size in *size. Returns CLI_OK or
 * the exit status after reporting why not. */
int cli_open_upload(const char *p, FILE **f, long long *size);

/* POSTs the open file f (size bytes) to path as ctype, with a bar on a terminal; then as
 * cli_call. */
int cli_upload(cli_ctx *c, const char *path, const char *ctype, FILE *f, long long size,
               http_reply *raw, json_t **out);

/* Prints the reply's body to standard output as it came, ending the line. */
void cli_print_raw(const http_reply *raw);

/* The options of a list: --limit, --page-token. */
extern const args_opt cli_page_opts[];

/* Appends key=value (value escaped) to the query of the path in path[len]. Returns
 * CLI_OK, or the exit status after reporting a path too long. */
int cli_query_add(cli_ctx *c, char *path, size_t len, const char *key, const char *value);

/* Appends the list options of a (--limit, --page-token) to the query of path[len]; as
 * cli_query_add. */
int cli_page_path(cli_ctx *c, const args *a, char *path, size_t len);

/* One collection of the API: what its items are called ("run") and its path. */
typedef struct {
    const char *what;
    const char *base;
} cli_item;

/* `X ls [--limit N] [--page-token T]`: GETs one page of base and prints it through print
 * (as cli_show). Returns the exit status. */
int cli_ls_page(cli_ctx *c, int argc, char **argv, const char *synopsis, const char *base,
                void (*print)(cli_ctx *c, json_t *v));

/* `X show ID` and the like: sends method to item's base/ID followed by suffix ("" for none)
 * and prints the answer (as cli_show). Returns the exit status. */
int cli_show_id(cli_ctx *c, int argc, char **argv, const cli_item *item, const char *synopsis,
                const char *method, const char *suffix, void (*print)(cli_ctx *c, json_t *v));

/* `X rm ID`: DELETEs item's base/ID and says so ("run 3 deleted") unless --json. Returns the
 * exit status. */
int cli_rm_id(cli_ctx *c, int argc, char **argv, const cli_item *item, const char *synopsis);

/* After a 2xx answer that queued a job (*raw, *job): prints it (the server's JSON under
 * --json), then with wait follows it. Returns the exit status. */
int cli_job_queued(cli_ctx *c, http_reply *raw, json_t *job, int wait);

/* Follows job id until it ends (see follow.c); returns its exit status. */
int cli_follow_job(cli_ctx *c, long long id);

/* The commands. */
int cmd_health(cli_ctx *c, int argc, char **argv);
int cmd_datasets(cli_ctx *c, int argc, char **argv);
int cmd_runs(cli_ctx *c, int argc, char **argv);
int cmd_jobs(cli_ctx *c, int argc, char **argv);
int cmd_models(cli_ctx *c, int argc, char **argv);
int cmd_lr_find(cli_ctx *c, int argc, char **argv);
int cmd_fit(cli_ctx *c, int argc, char **argv);
int cmd_recipe(cli_ctx *c, int argc, char **argv);
int cmd_tta(cli_ctx *c, int argc, char **argv);
int cmd_freeze(cli_ctx *c, int argc, char **argv);
int cmd_unfreeze(cli_ctx *c, int argc, char **argv);
int cmd_resize(cli_ctx *c, int argc, char **argv);
int cmd_precompute(cli_ctx *c, int argc, char **argv);
int cmd_predict_test(cli_ctx *c, int argc, char **argv);
int cmd_predict(cli_ctx *c, int argc, char **argv);
int cmd_weights(cli_ctx *c, int argc, char **argv);
int cmd_predictions(cli_ctx *c, int argc, char **argv);

#endif
