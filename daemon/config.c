/* config.c: flags and config file (see config.h). */
#define _GNU_SOURCE
#include "config.h"

#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum opt_kind { OPT_VALUE, OPT_FLAG } opt_kind;

typedef struct opt {
    const char *name;
    opt_kind kind;
    const char *help;
} opt;

static const opt opts[] = {
    {"listen", OPT_VALUE, "HOST:PORT to serve on (default " CONFIG_DEFAULT_LISTEN "); a "
                          "non-loopback address needs --token-file"},
    {"data-dir", OPT_VALUE, "SQLite file, checkpoints and uploads (default "
                            CONFIG_DEFAULT_DATA_DIR ")"},
    {"dataset-root", OPT_VALUE, "folder datasets may be registered from (repeatable; "
                                "default the data dir and " CONFIG_DEFAULT_DATASETS ")"},
    {"token-file", OPT_VALUE, "file holding the token every API request needs (bearer "
                              "header, or the dashboard's sign-in)"},
    {"allowed-host", OPT_VALUE, "a Host name to answer beside loopback names and the listen "
                                "address (repeatable; * allows any)"},
    {"allowed-origin", OPT_VALUE, "an origin (https://host:port) whose pages may change "
                                  "state and read answers over CORS (repeatable)"},
    {"trusted-proxy", OPT_VALUE, "address of a reverse proxy whose X-Forwarded-Proto is "
                                 "believed (repeatable)"},
    {"behind-tls", OPT_FLAG, "clients reach the daemon through TLS: Secure cookies, https "
                             "origin"},
    {"session-ttl", OPT_VALUE, "seconds a dashboard sign-in lasts (default 43200)"},
    {"threads", OPT_VALUE, "compute threads (default: every core)"},
    {"max-workers", OPT_VALUE, "most processes a job may run on data-parallel (its "
                               "\"workers\"; default 1: in the daemon only)"},
    {"hostfile", OPT_VALUE, "Open MPI hostfile of the machines data-parallel jobs run on "
                            "(default: this machine)"},
    {"worker", OPT_VALUE, "the sgdrd-worker program (default: the one built beside sgdrd)"},
    {"worker-timeout", OPT_VALUE, "seconds a data-parallel job may go without an event "
                                  "before it counts as hung (default 300)"},
    {"max-upload", OPT_VALUE, "largest dataset or model upload, bytes or with K/M/G "
                              "(default 2G)"},
    {"memory-limit", OPT_VALUE, "memory runs may take, bytes or with K/M/G (default: "
                                "MemAvailable when the run is admitted)"},
    {"max-connections", OPT_VALUE, "open connections in all (default 512)"},
    {"max-connections-per-client", OPT_VALUE, "open connections from one remote address; "
                                              "loopback and proxies excepted (default 64)"},
    {"header-timeout", OPT_VALUE, "seconds a connection may wait without sending a "
                                  "complete request (default 10)"},
    {"idle-timeout", OPT_VALUE, "seconds a request may stall (nothing sent or read) before "
                                "it is closed (default 60)"},
    {"max-streams", OPT_VALUE, "event streams open at once (default 64)"},
    {"max-streams-per-client", OPT_VALUE, "event streams one client may hold (default 8)"},
    {"log-level", OPT_VALUE, "error, warn, info or debug (default info)"},
    {"config", OPT_VALUE, "file with the same keys, one \"key = value\" per line"},
    {"resume", OPT_FLAG, "resume interrupted jobs at start (a fit continues from its last "
                         "epoch checkpoint)"},
    {"demo", OPT_FLAG, "on a fresh data dir, register Fashion-MNIST and queue the recipe"},
    {"help", OPT_FLAG, "show this help"},
    {"version", OPT_FLAG, "show the version"},
};

void config_usage(void *file, const char *argv0)
{
    FILE *f = file;
    fprintf(f, "usage: %s [options]\n\nsgdrd: a training daemon for the fast.ai image "
               "classifier recipe, driven over a REST API.\n\noptions:\n", argv0);
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        char left[40];
        snprintf(left, sizeof left, "--%s%s", opts[i].name,
                 opts[i].kind == OPT_VALUE ? " X" : "");
        fprintf(f, "  %-18s %s\n", left, opts[i].help);
    }
}

int config_host_is_loopback(const char *host)
{
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

static int parse_int(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return -EINVAL;
    *out = x;
    return 0;
}

static int parse_size(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!isdigit((unsigned char)*v) || errno)
        return -EINVAL;
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1ull << 10;
    else if (*end == 'M' || *end == 'm')
        mul = 1ull << 20;
    else if (*end == 'G' || *end == 'g')
        mul = 1ull << 30;
    else if (*end)
        return -EINVAL;
    if (*end && end[1])
        return -EINVAL;
    if (x == 0 || x > (unsigned long long)INT64_MAX / mul)
        return -EINVAL;
    *out = (int64_t)(x * mul);
    return 0;
}

/* The connection and event-stream limits: unsigned fields of daemon_config. */
typedef struct conn_key {
    const char *name, *what;
    size_t offset;
    long lo, hi;
} conn_key;

static const conn_key conn_keys[] = {
    {"max-connections", "a connection count", offsetof(daemon_config, max_conns), 16, 65536},
    {"max-connections-per-client", "a connection count",
     offsetof(daemon_config, max_conns_per_client), 1, 65536},
    {"header-timeout", "a number of seconds", offsetof(daemon_config, header_timeout_s), 1,
     3600},
    {"idle-timeout", "a number of seconds", offsetof(daemon_config, idle_timeout_s), 1, 3600},
    {"max-streams", "a stream count", offsetof(daemon_config, max_streams), 1, 4096},
    {"max-streams-per-client", "a stream count",
     offsetof(daemon_config, max_streams_per_client), 1, 4096},
};

static const conn_key *conn_limit_of(const daemon_config *c, const char *key)
{
    (void)c;
    for (size_t i = 0; i < sizeof conn_keys / sizeof *conn_keys; i++)
        if (!strcmp(key, conn_keys[i].name))
            return &conn_keys[i];
    return NULL;
}

static int parse_listen(daemon_config *c, const char *v)
{
    const char *colon;
    size_t hl;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        hl = (size_t)(close - v - 1);
        memcpy(c->host, v + 1, hl < sizeof c->host ? hl : 0);
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon || strchr(v, ':') != colon)
            return -EINVAL;
        hl = (size_t)(colon - v);
        memcpy(c->host, v, hl < sizeof c->host ? hl : 0);
    }
    if (hl == 0 || hl >= sizeof c->host)
        return -EINVAL;
    c->host[hl] = 0;
    long port;
    if (parse_int(colon + 1, 1, 65535, &port))
        return -EINVAL;
    c->port = (int)port;
    snprintf(c->listen, sizeof c->listen, "%s", v);
    c->loopback = config_host_is_loopback(c->host);
    return 0;
}

static int set_str(char **dst, const char *v)
{
    char *d = strdup(v);
    if (!d)
        return -ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

static config_list *list_of(daemon_config *c, const char *key)
{
    if (!strcmp(key, "allowed-host"))
        return &c->allowed_hosts;
    return !strcmp(key, "allowed-origin") ? &c->allowed_origins : &c->trusted_proxies;
}

/* Appends v; the values are checked when the server starts, where their rules live. */
static int list_add(config_list *l, const char *v, const char *where, char *err,
                    size_t errlen)
{
    if (!*v || strchr(v, ' ')) {
        snprintf(err, errlen, "%s: '%s' is empty or holds a space", where, v);
        return -EINVAL;
    }
    if (l->n == CONFIG_MAX_LIST) {
        snprintf(err, errlen, "%s: more than %d entries", where, CONFIG_MAX_LIST);
        return -EINVAL;
    }
    l->v[l->n] = strdup(v);
    if (!l->v[l->n])
        return -ENOMEM;
    l->n++;
    return 0;
}

/* Applies one key. `where` names the source for errors ("--threads", "cfg:3"). */
static int config_set(daemon_config *c, const char *key, const char *v, const char *where,
                      char *err, size_t errlen)
{
    long x;
    if (!strcmp(key, "listen")) {
        if (parse_listen(c, v) == 0)
            return 0;
        snprintf(err, errlen, "%s: '%s' is not HOST:PORT (port 1..65535)", where, v);
    } else if (!strcmp(key, "data-dir")) {
        if (*v)
            return set_str(&c->data_dir, v);
        snprintf(err, errlen, "%s: empty path", where);
    } else if (!strcmp(key, "dataset-root")) {
        if (!*v) {
            snprintf(err, errlen, "%s: empty path", where);
        } else if (c->n_roots == CONFIG_MAX_ROOTS) {
            snprintf(err, errlen, "%s: more than %d dataset roots", where, CONFIG_MAX_ROOTS);
        } else {
            c->roots[c->n_roots] = strdup(v);
            if (!c->roots[c->n_roots])
                return -ENOMEM;
            c->n_roots++;
            return 0;
        }
    } else if (!strcmp(key, "token-file")) {
        if (*v)
            return set_str(&c->token_file, v);
        snprintf(err, errlen, "%s: empty path", where);
    } else if (!strcmp(key, "threads")) {
        if (parse_int(v, 0, 1024, &x) == 0) {
            c->threads = (int)x;
            return 0;
        }
        snprintf(err, errlen, "%s: '%s' is not a thread count (0..1024)", where, v);
    } else if (!strcmp(key, "max-workers") || !strcmp(key, "worker-timeout")) {
        int workers = !strcmp(key, "max-workers");
        if (parse_int(v, 1, workers ? 1024 : 86400, &x) == 0) {
            *(workers ? &c->max_workers : &c->worker_timeout_s) = (int)x;
            return 0;
        }
        snprintf(err, errlen, "%s: '%s' is not a %s", where, v,
                 workers ? "number of workers (1..1024)" : "number of seconds (1..86400)");
    } else if (!strcmp(key, "hostfile") || !strcmp(key, "worker")) {
        if (*v)
            return set_str(!strcmp(key, "hostfile") ? &c->hostfile : &c->worker, v);
        snprintf(err, errlen, "%s: empty path", where);
    } else if (!strcmp(key, "max-upload")) {
        if (parse_size(v, &c->max_upload) == 0)
            return 0;
        snprintf(err, errlen, "%s: '%s' is not a size (bytes, or a number with K, M or G)",
                 where, v);
    } else if (!strcmp(key, "memory-limit")) {
        if (parse_size(v, &c->memory_limit) == 0)
            return 0;
        snprintf(err, errlen, "%s: '%s' is not a size (bytes, or a number with K, M or G)",
                 where, v);
    } else if (!strcmp(key, "log-level")) {
        if (log_level_parse(v, &c->log_level) == 0)
            return 0;
        snprintf(err, errlen, "%s: '%s' is not one of error, warn, info, debug", where, v);
    } else if (!strcmp(key, "allowed-host") || !strcmp(key, "allowed-origin") ||
               !strcmp(key, "trusted-proxy")) {
        return list_add(list_of(c, key), v, where, err, errlen);
    } else if (conn_limit_of(c, key)) {
        const conn_key *k = conn_limit_of(c, key);
        if (parse_int(v, k->lo, k->hi, &x) == 0) {
            *(unsigned *)((char *)c + k->offset) = (unsigned)x;
            return 0;
        }
        snprintf(err, errlen, "%s: '%s' is not %s (%ld..%ld)", where, v, k->what, k->lo,
                 k->hi);
    } else if (!strcmp(key, "session-ttl")) {
        if (parse_int(v, 60, 365l * 86400, &x) == 0) {
            c->session_ttl_s = x;
            return 0;
        }
        snprintf(err, errlen, "%s: '%s' is not a number of seconds (60..31536000)", where, v);
    } else if (!strcmp(key, "resume") || !strcmp(key, "demo") || !strcmp(key, "behind-tls")) {
        int *flag = !strcmp(key, "resume") ? &c->resume
                    : !strcmp(key, "demo") ? &c->demo : &c->behind_tls;
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) {
            *flag = 1;
            return 0;
        }
        if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) {
            *flag = 0;
            return 0;
        }
        snprintf(err, errlen, "%s: '%s' is not true or false", where, v);
    } else {
        snprintf(err, errlen, "%s: unknown setting '%s' (see --help)", where, key);
    }
    return -EINVAL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

static int read_file(daemon_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "--config: cannot open %s: %s", path, strerror(errno));
        return -EINVAL;
    }
    char line[4096];
    int rc = 0;
    for (int ln = 1; rc == 0 && fgets(line, sizeof line, f); ln++) {
        char where[300];
        snprintf(where, sizeof where, "%s:%d", path, ln);
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s: line too long", where);
            rc = -EINVAL;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s: expected 'key = value'", where);
            rc = -EINVAL;
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        if (!strcmp(key, "config") || !strcmp(key, "help") || !strcmp(key, "version")) {
            snprintf(err, errlen, "%s: '%s' is only a command-line flag", where, key);
            rc = -EINVAL;
            break;
        }
        rc = config_set(c, key, val, where, err, errlen);
    }
    fclose(f);
    return rc;
}

static const opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len))
            return &opts[i];
    }
    return NULL;
}

/* Walks argv. pass 0 only looks for --config; pass 1 applies everything else. */
static int walk_args(daemon_config *c, int argc, char **argv, int pass, char *err,
                     size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return -EINVAL;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const opt *o = find_opt(name, len);
        if (!o) {
            snprintf(err, errlen, "unknown flag '--%.*s' (see --help)", (int)len, name);
            return -EINVAL;
        }
        const char *val = NULL;
        if (o->kind == OPT_VALUE) {
            if (eq) {
                val = eq + 1;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                snprintf(err, errlen, "--%s needs a value", o->name);
                return -EINVAL;
            }
        } else if (eq) {
            snprintf(err, errlen, "--%s takes no value", o->name);
            return -EINVAL;
        }
        char where[64];
        snprintf(where, sizeof where, "--%s", o->name);
        int rc = 0;
        if (!strcmp(o->name, "config")) {
            if (pass == 0)
                rc = set_str(&c->config_file, val);
        } else if (pass == 0) {
            continue;
        } else if (!strcmp(o->name, "help")) {
            c->help = 1;
        } else if (!strcmp(o->name, "version")) {
            c->version = 1;
        } else {
            rc = config_set(c, o->name, val ? val : "true", where, err, errlen);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int config_parse(daemon_config *c, int argc, char **argv, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->max_upload = CONFIG_DEFAULT_MAX_UPLOAD;
    c->log_level = LOG_INFO;
    c->session_ttl_s = CONFIG_DEFAULT_SESSION_TTL;
    c->max_workers = 1;
    c->worker_timeout_s = CONFIG_DEFAULT_WORKER_TIMEOUT;
    if (parse_listen(c, CONFIG_DEFAULT_LISTEN))
        return -EINVAL;
    int rc = walk_args(c, argc, argv, 0, err, errlen);
    if (rc == 0 && c->config_file)
        rc = read_file(c, c->config_file, err, errlen);
    if (rc == 0)
        rc = walk_args(c, argc, argv, 1, err, errlen);
    if (rc)
        return rc;
    if (c->help || c->version)
        return 0;
    if (!c->data_dir && set_str(&c->data_dir, CONFIG_DEFAULT_DATA_DIR))
        return -ENOMEM;
    if (c->n_roots == 0) {
        c->roots[0] = strdup(c->data_dir);
        c->roots[1] = strdup(CONFIG_DEFAULT_DATASETS);
        c->n_roots = 2;
        if (!c->roots[0] || !c->roots[1])
            return -ENOMEM;
    }
    if (!c->loopback && !c->token_file) {
        snprintf(err, errlen, "refusing to listen on %s without --token-file: a non-loopback "
                              "address would let anyone who can reach it run jobs and read "
                              "data; give --token-file FILE or listen on 127.0.0.1",
                 c->listen);
        return -EINVAL;
    }
    return 0;
}

void config_free(daemon_config *c)
{
    if (!c)
        return;
    free(c->data_dir);
    for (int i = 0; i < c->n_roots; i++)
        free(c->roots[i]);
    free(c->token_file);
    free(c->config_file);
    free(c->hostfile);
    free(c->worker);
    for (int i = 0; i < c->allowed_hosts.n; i++)
        free(c->allowed_hosts.v[i]);
    for (int i = 0; i < c->allowed_origins.n; i++)
        free(c->allowed_origins.v[i]);
    for (int i = 0; i < c->trusted_proxies.n; i++)
        free(c->trusted_proxies.v[i]);
    memset(c, 0, sizeof *c);
}

int config_read_token(const char *path, char **token, char *err, size_t errlen)
{
    *token = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "--token-file: cannot open %s: %s", path, strerror(errno));
        return -EINVAL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & (S_IROTH | S_IWOTH))) {
        fclose(f);
        snprintf(err, errlen, "--token-file: %s is readable or writable by others; "
                              "chmod 600 it", path);
        return -EINVAL;
    }
    char line[1024];
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    char *t = got ? trim(line) : NULL;
    if (!t || strlen(t) < 8) {
        snprintf(err, errlen, "--token-file: %s holds no token of 8 characters or more",
                 path);
        return -EINVAL;
    }
    *token = strdup(t);
    return *token ? 0 : -ENOMEM;
}
