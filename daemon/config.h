/* config.h: the daemon's settings: command-line flags and the same keys in an optional
 * config file (--config FILE: one "key = value" per line, '#' comments). Flags given on the
 * command line win over the file; --dataset-root adds to the list from either source. */
#ifndef SGDRD_CONFIG_H
#define SGDRD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONFIG_MAX_ROOTS 16
#define CONFIG_MAX_LIST 16     /* entries of --allowed-host, --allowed-origin, --trusted-proxy */

/* A repeatable flag's values, in the order given. */
typedef struct config_list {
    char *v[CONFIG_MAX_LIST];
    int n;
} config_list;

typedef struct daemon_config {
    char listen[280];          /* as given: "127.0.0.1:8080" */
    char host[256];            /* "127.0.0.1", "::1", "0.0.0.0", "localhost" */
    int port;
    int loopback;              /* host is a loopback address */
    char *data_dir;            /* default "./var" */
    char *roots[CONFIG_MAX_ROOTS]; /* --dataset-root; default data dir + /usr/share/datasets */
    int n_roots;
    char *token_file;          /* NULL: no authentication (loopback only) */
    int threads;               /* 0: every core */
    int64_t max_upload;        /* bytes; default 2 GiB; accepts K/M/G suffixes */
    int64_t memory_limit;      /* bytes runs may take (admission); 0: MemAvailable */
    log_level log_level;
    int resume;                /* resume interrupted jobs at start */
    int demo;                  /* on a fresh data dir: Fashion-MNIST + the recipe */
    config_list allowed_hosts; /* Host names served beside loopback and the listen address */
    config_list allowed_origins; /* origins allowed to change state and to use CORS */
    config_list trusted_proxies; /* addresses whose X-Forwarded-Proto is believed */
    int behind_tls;            /* reached through a TLS proxy: Secure cookie, https origin */
    int64_t session_ttl_s;     /* dashboard sign-in lifetime; default 12 hours */
    /* Connections and event streams; 0: the server's defaults (api/server.h). */
    unsigned max_conns, max_conns_per_client, header_timeout_s, idle_timeout_s;
    unsigned max_streams, max_streams_per_client;
    int max_workers;           /* most ranks a job may ask for (workers); default 1 */
    char *hostfile;            /* Open MPI hostfile for data-parallel jobs; NULL: this host */
    char *worker;              /* sgdrd-worker; NULL: the one built beside the daemon */
    int worker_timeout_s;      /* a world silent this long has hung: it is stopped */
    int help, version;         /* print and exit 0 */
    char *config_file;
} daemon_config;

#define CONFIG_DEFAULT_LISTEN "127.0.0.1:8080"
#define CONFIG_DEFAULT_DATA_DIR "./var"
#define CONFIG_DEFAULT_DATASETS "/usr/share/datasets"
#define CONFIG_DEFAULT_MAX_UPLOAD (2ll << 30)
#define CONFIG_DEFAULT_SESSION_TTL 43200
#define CONFIG_DEFAULT_WORKER_TIMEOUT 300

/* Parses argv (argv[0] skipped) and, when --config is given, that file first. Fills c
 * (call config_free afterwards, also on failure). Returns 0, or -EINVAL with err naming
 * the flag, the file and line, or the rule broken (a non-loopback --listen without
 * --token-file is refused here, with the reason). */
int config_parse(daemon_config *c, int argc, char **argv, char *err, size_t errlen);
void config_free(daemon_config *c);
/* Writes the --help text. */
void config_usage(void *file /* FILE * */, const char *argv0);
/* Whether host is loopback ("127.x.y.z", "::1", "localhost"). */
int config_host_is_loopback(const char *host);
/* Reads the bearer token from path (first line, surrounding blanks stripped). The token
 * is malloc'd; -EINVAL with err (naming the file, never the token) when unreadable, empty
 * or readable by others. */
int config_read_token(const char *path, char **token, char *err, size_t errlen);

#endif
