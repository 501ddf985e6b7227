/* main.c: sgdrd's entry point: flags, BLAS start-up, the store, the job queue, the HTTP
 * server, the --demo seeding, and an orderly stop on SIGTERM/SIGINT/SIGHUP. */
#define _GNU_SOURCE
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "blas.h"
#include "config.h"
#include "fs_path.h"
#include "jobs.h"
#include "log.h"
#include "recover.h"
#include "server.h"
#include "store.h"

#ifndef SGDRD_VERSION
#define SGDRD_VERSION "0.0.0"
#endif

#define DEMO_DATASET "/usr/share/datasets/fashion-mnist"
#define STOP_BUDGET_S 7.0   /* of the 10 s a stop may take; the rest stops HTTP and flushes */
#define MALLOC_ARENAS 2     /* glibc malloc arenas, unless MALLOC_ARENA_MAX says otherwise */

/* On a fresh data dir: Fashion-MNIST and a queued recipe run, so the dashboard has live
 * curves within a minute. A data dir that has any dataset is left alone. */
static void seed_demo(store *st, jobs *jq)
{
    json_t *list = NULL;
    store_page pg = {.limit = 1};
    if (store_dataset_list(st, &pg, &list) == 0 &&
        json_array_size(json_object_get(list, "items")) > 0) {
        log_msg(LOG_INFO, 0, "--demo: the data dir already has datasets; nothing added");
        json_decref(list);
        return;
    }
    json_decref(list);
    char err[512] = "";
    int64_t ds = 0, run = 0, job = 0;
    int rc = jobs_register_dataset(jq, "fashion-mnist", DEMO_DATASET, "idx", -1, NULL, 42, 0,
                                   &ds, NULL, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, 0, "--demo: cannot register %s: %s", DEMO_DATASET, err);
        return;
    }
    json_t *cfg = json_pack("{si si ss sf sb sf s[i] sb si}", "sz", 28, "bs", 64, "tfms",
                            "side_on", "max_zoom", 1.1, "precompute", 0, "ps", 0.25,
                            "xtra_fc", 256, "multi_label", 0, "seed", 42);
    rc = store_run_create(st, ds, 0, "resnet_small", cfg, &run);
    json_decref(cfg);
    if (rc == 0) {
        job_params p;
        job_params_defaults(JOB_RECIPE, &p);
        p.recipe.max_epochs = 3;
        rc = jobs_submit(jq, run, &p, &job);
    }
    if (rc)
        log_msg(LOG_ERROR, 0, "--demo: cannot queue the demo run: %s", store_errmsg());
    else
        log_msg(LOG_INFO, job, "--demo: Fashion-MNIST is dataset %lld; run %lld queued the "
                "recipe", (long long)ds, (long long)run);
}

/* The API's request and failure lines, into the daemon's log. */
static void api_log_line(int level, const char *line)
{
    log_msg((log_level)level, 0, "%s", line);
}

/* The flags; 1 when main is to return *status at once (--help, --version, a bad flag). */
static int parse_flags(daemon_config *cfg, int argc, char **argv, int *status)
{
    char err[1024] = "";
    *status = 0;
    if (config_parse(cfg, argc, argv, err, sizeof err)) {
        fprintf(stderr, "sgdrd: %s\n", err);
        *status = 2;
    } else if (cfg->help) {
        config_usage(stdout, argv[0]);
    } else if (cfg->version) {
        printf("sgdrd %s\n", SGDRD_VERSION);
    } else {
        return 0;
    }
    config_free(cfg);
    return 1;
}

/* glibc gives each thread that meets a locked arena a new one, up to 8 per core, and an
 * arena keeps the memory freed into it: with the HTTP thread pool, the loader and the
 * engine's threads the daemon's resident size crept up under load and stayed there. A
 * few arenas keep it flat; the threads that allocate often (the loader's) allocate
 * little per item. A user's MALLOC_ARENA_MAX (read by glibc itself) is left as set. */
static void limit_malloc_arenas(void)
{
    const char *env = getenv("MALLOC_ARENA_MAX");
    const char *tun = getenv("GLIBC_TUNABLES");
    if ((env && *env) || (tun && strstr(tun, "glibc.malloc.arena_max"))) {
        log_msg(LOG_DEBUG, 0, "malloc arenas: as the environment sets them");
        return;
    }
    if (mallopt(M_ARENA_MAX, MALLOC_ARENAS) == 1)
        log_msg(LOG_DEBUG, 0, "malloc arenas: at most %d", MALLOC_ARENAS);
}

/* Every thread started from here on inherits this mask; main takes the signals with
 * sigwait, so no handler runs in the middle of a training step. A closed terminal
 * (SIGHUP) stops the daemon as cleanly as SIGTERM. */
static void block_stop_signals(sigset_t *sigs)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* The data folder, the store (with what a crash left removed) and the running queue. */
static int open_store_and_queue(const daemon_config *cfg, store **st, jobs **jq, char *err,
                                size_t errlen)
{
    char dbpath[PATH_MAX];
    int rc = fs_mkdir_p(cfg->data_dir);
    if (rc) {
        snprintf(err, errlen, "--data-dir: cannot create %.900s: %s", cfg->data_dir,
                 strerror(-rc));
        return rc;
    }
    snprintf(dbpath, sizeof dbpath, "%s/sgdrd.db", cfg->data_dir);
    if ((rc = store_open(st, dbpath, NULL, err, errlen)) != 0)
        return rc;
    recover_leftovers(cfg->data_dir, *st);
    jobs_config jc = {.data_dir = cfg->data_dir, .roots = (const char *const *)cfg->roots,
                      .n_roots = cfg->n_roots, .resume = cfg->resume, .threads = cfg->threads,
                      .memory_limit = cfg->memory_limit, .max_workers = cfg->max_workers,
                      .hostfile = cfg->hostfile, .worker = cfg->worker,
                      .worker_timeout_s = cfg->worker_timeout_s};
    if ((rc = jobs_create(jq, *st, &jc, err, errlen)) == 0)
        rc = jobs_start(*jq, err, errlen);
    return rc;
}

/* The HTTP server's settings from the flags (borrowing from cfg, token, st and be). */
static void api_config_of(const daemon_config *cfg, const char *token, store *st,
                          const api_backend *be, api_config *ac)
{
    *ac = (api_config){
        .listen = cfg->listen,
        .token = token,
        .data_dir = cfg->data_dir,
        .dataset_roots = (const char *const *)cfg->roots,
        .n_dataset_roots = cfg->n_roots,
        .max_upload = cfg->max_upload,
        .allowed_hosts = (const char *const *)cfg->allowed_hosts.v,
        .n_allowed_hosts = cfg->allowed_hosts.n,
        .allowed_origins = (const char *const *)cfg->allowed_origins.v,
        .n_allowed_origins = cfg->allowed_origins.n,
        .trusted_proxies = (const char *const *)cfg->trusted_proxies.v,
        .n_trusted_proxies = cfg->trusted_proxies.n,
        .behind_tls = cfg->behind_tls,
        .session_ttl_s = cfg->session_ttl_s,
        .max_conns = cfg->max_conns,
        .max_conns_per_client = cfg->max_conns_per_client,
        .header_timeout_s = cfg->header_timeout_s,
        .idle_timeout_s = cfg->idle_timeout_s,
        .max_streams = cfg->max_streams,
        .max_streams_per_client = cfg->max_streams_per_client,
        .version = SGDRD_VERSION,
        .store = st,
        .backend = be,
        .log = api_log_line,
    };
}

/* Waits for a stop signal, then stops: the queue first, so no request can add a job, then
 * the running job reaches a batch boundary and is checkpointed, then HTTP closes and the
 * store flushes. Does not return when the running job does not stop in time. */
static void serve_until_stopped(sigset_t *sigs, jobs *jq, api_server *srv, store *st)
{
    int sig = 0;
    sigwait(sigs, &sig);
    log_msg(LOG_INFO, 0, "%s: stopping", sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT"
                                                                                 : "SIGHUP");
    int stuck = jobs_stop(jq, STOP_BUDGET_S) != 0;
    api_server_stop(srv);
    if (stuck) {
        /* The worker is inside the engine and still uses the learner and the store: keep
         * both, make what is buffered durable, and leave. */
        log_msg(LOG_ERROR, jobs_running(jq), "the running job did not reach a batch boundary "
                "in %.0f s; exiting without it", STOP_BUDGET_S);
        store_flush(st);
        _exit(0); /* not exit(): its clean-up would race the still-running worker */
    }
}

int main(int argc, char **argv)
{
    daemon_config cfg;
    char err[1024] = "";
    int status;
    if (parse_flags(&cfg, argc, argv, &status))
        return status;
    blas_startup(argv, cfg.threads);
    log_set_level(cfg.log_level);
    limit_malloc_arenas();
    sigset_t sigs;
    block_stop_signals(&sigs);

    status = 1;
    char *token = NULL;
    store *st = NULL;
    jobs *jq = NULL;
    api_server *srv = NULL;
    if (cfg.token_file && config_read_token(cfg.token_file, &token, err, sizeof err)) {
        log_msg(LOG_ERROR, 0, "%s", err);
        goto out_free;
    }
    if (open_store_and_queue(&cfg, &st, &jq, err, sizeof err)) {
        log_msg(LOG_ERROR, 0, "cannot start: %s", err);
        goto out_free;
    }
    if (cfg.demo)
        seed_demo(st, jq);
    api_backend be;
    api_config ac;
    jobs_backend(jq, &be);
    api_config_of(&cfg, token, st, &be, &ac);
    if (api_server_start(&srv, &ac, err, sizeof err)) {
        log_msg(LOG_ERROR, 0, "cannot serve on %s: %s", cfg.listen, err);
        goto out_free;
    }
    log_msg(LOG_INFO, 0, "sgdrd %s listening on %s:%d (data in %s, BLAS core %s, %d "
            "threads%s)", SGDRD_VERSION, cfg.host, api_server_port(srv), cfg.data_dir,
            blas_core_name(), blas_threads(), token ? ", bearer token required" : "");
    serve_until_stopped(&sigs, jq, srv, st);
    srv = NULL;
    status = 0;
out_free:
    api_server_stop(srv);
    jobs_destroy(jq);
    store_close(st);
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    config_free(&cfg);
    if (status == 0)
        log_msg(LOG_INFO, 0, "stopped");
    return status;
}
