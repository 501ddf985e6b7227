/* config.c: resolves the daemon's address and token from flags, environment and the
 * config file (see config.h for the order). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The config file's settings; every string owned, NULL where the file says nothing. */
typedef struct {
    char *path; /* the file read, NULL when there was none */
    char *url;
    char *token;
    char *token_file;
} cfg_file;

static void file_clear(cfg_file *f)
{
    free(f->path);
    free(f->url);
    free(f->token);
    free(f->token_file);
    memset(f, 0, sizeof *f);
}

static const char *env_get(cfg_getenv_fn env, const char *name)
{
    const char *v = env ? env(name) : NULL;
    return v && v[0] ? v : NULL;
}

static char *trim(char *s)
{
    char *end = s + strlen(s);
    while (*s && isspace((unsigned char)*s))
        s++;
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* Where the config file is, in a new string (*out); *required says whether it must exist.
 * Returns 0 with *out NULL when no folder for it is known. */
static int file_path(const cfg_flags *flags, cfg_getenv_fn env, char **out, int *required)
{
    const char *p = flags->config ? flags->config : env_get(env, "SGDR_CONFIG");
    const char *base;
    *required = p != NULL;
    *out = NULL;
    if (p) {
        *out = strdup(p);
        return *out ? 0 : -ENOMEM;
    }
    base = env_get(env, "XDG_CONFIG_HOME");
    const char *fmt = "%s/sgdr/config";
    if (!base) {
        base = env_get(env, "HOME");
        fmt = "%s/.config/sgdr/config";
    }
    if (!base)
        return 0;
    size_t n = strlen(base) + strlen(fmt);
    *out = malloc(n);
    if (!*out)
        return -ENOMEM;
    snprintf(*out, n, fmt, base);
    return 0;
}

/* Stores one `key = value` line's value in f; returns -EINVAL for an unknown key. */
static int file_set(cfg_file *f, const char *key, const char *value)
{
    char **slot = strcmp(key, "url") == 0          ? &f->url
                  : strcmp(key, "token") == 0      ? &f->token
                  : strcmp(key, "token_file") == 0 ? &f->token_file
                                                   : NULL;
    if (!slot)
        return -EINVAL;
    free(*slot);
    *slot = strdup(value);
    return *slot ? 0 : -ENOMEM;
}

/* Parses the lines of the open file fp (named f->path) into f. Blank lines and lines
 * starting with # are skipped; a value may be wrapped in double quotes. */
static int file_parse(cfg_file *f, FILE *fp, char *err, size_t errlen)
{
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        char *s = trim(line), *eq = strchr(s, '=');
        if (!*s || *s == '#')
            continue;
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected key = value", f->path, lineno);
            return -EINVAL;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        size_t n = strlen(value);
        if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
            value[n - 1] = '\0';
            value++;
        }
        int rc = file_set(f, key, value);
        if (rc == -EINVAL)
            snprintf(err, errlen, "%s:%d: unknown key '%s' (known: url, token, token_file)",
                     f->path, lineno, key);
        if (rc)
            return rc;
    }
    if (ferror(fp)) {
        snprintf(err, errlen, "cannot read %s: %s", f->path, strerror(EIO));
        return -EIO;
    }
    return 0;
}

static int file_load(const cfg_flags *flags, cfg_getenv_fn env, cfg_file *f, char *err,
                     size_t errlen)
{
    int required, rc = file_path(flags, env, &f->path, &required);
    if (rc || !f->path)
        return rc;
    FILE *fp = fopen(f->path, "r");
    if (!fp) {
        rc = -errno;
        if (rc == -ENOENT && !required) {
            free(f->path);
            f->path = NULL;
            return 0;
        }
        snprintf(err, errlen, "cannot open config file %s: %s", f->path, strerror(-rc));
        return rc;
    }
    rc = file_parse(f, fp, err, errlen);
    fclose(fp);
    return rc;
}

int cfg_read_token_file(const char *path, char **out, char *err, size_t errlen)
{
    char line[4096];
    FILE *fp = fopen(path, "r");
    *out = NULL;
    if (!fp) {
        int rc = -errno;
        snprintf(err, errlen, "cannot read token file %s: %s", path, strerror(-rc));
        return rc;
    }
    char *got = fgets(line, sizeof line, fp);
    fclose(fp);
    char *tok = got ? trim(line) : NULL;
    if (!tok || !*tok) {
        snprintf(err, errlen, "token file %s is empty", path);
        return -EINVAL;
    }
    *out = strdup(tok);
    return *out ? 0 : -ENOMEM;
}

/* The config file's token_file, relative to the config file's folder unless absolute. */
static int file_token(const cfg_file *f, char **out, char *err, size_t errlen)
{
    const char *slash = strrchr(f->path, '/');
    if (f->token_file[0] == '/' || !slash)
        return cfg_read_token_file(f->token_file, out, err, errlen);
    size_t n = (size_t)(slash - f->path) + 2 + strlen(f->token_file);
    char *p = malloc(n);
    if (!p)
        return -ENOMEM;
    snprintf(p, n, "%.*s/%s", (int)(slash - f->path), f->path, f->token_file);
    int rc = cfg_read_token_file(p, out, err, errlen);
    free(p);
    return rc;
}

static int dup_token(const char *v, char **out)
{
    *out = strdup(v);
    return *out ? 0 : -ENOMEM;
}

static int pick_token(const cfg_flags *flags, cfg_getenv_fn env, const cfg_file *f,
                      char **out, char *err, size_t errlen)
{
    const char *v;
    *out = NULL;
    if (flags->token_file)
        return cfg_read_token_file(flags->token_file, out, err, errlen);
    if ((v = env_get(env, "SGDR_TOKEN")))
        return dup_token(v, out);
    if ((v = env_get(env, "SGDR_TOKEN_FILE")))
        return cfg_read_token_file(v, out, err, errlen);
    if (f->token)
        return dup_token(f->token, out);
    if (f->token_file)
        return file_token(f, out, err, errlen);
    return 0;
}

/* The URL without trailing slashes or /api/v1, in a new string; -EINVAL unless http(s). */
static int pick_url(const char *url, const char *from, char **out, char *err, size_t errlen)
{
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "%s: '%s' is not an http:// or https:// address", from, url);
        return -EINVAL;
    }
    char *u = strdup(url);
    if (!u)
        return -ENOMEM;
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/')
        u[--n] = '\0';
    if (n >= 7 && strcmp(u + n - 7, "/api/v1") == 0)
        u[n - 7] = '\0';
    *out = u;
    return 0;
}

int cfg_resolve(const cfg_flags *flags, cfg_getenv_fn env, cfg *out, char *err, size_t errlen)
{
    cfg_file f = {0};
    const char *url = flags->url, *from = "--url";
    memset(out, 0, sizeof *out);
    int rc = file_load(flags, env, &f, err, errlen);
    if (!rc && !url && (url = env_get(env, "SGDR_URL")))
        from = "SGDR_URL";
    if (!rc && !url && (url = f.url))
        from = f.path;
    if (!rc)
        rc = pick_url(url ? url : CFG_DEFAULT_URL, from, &out->url, err, errlen);
    if (!rc)
        rc = pick_token(flags, env, &f, &out->token, err, errlen);
    for (const char *t = out->token; !rc && t && *t; t++) {
        if ((unsigned char)*t < 0x20 || *t == 0x7f) {
            snprintf(err, errlen, "the token holds a control character");
            rc = -EINVAL;
        }
    }
    file_clear(&f);
    if (rc)
        cfg_clear(out);
    return rc;
}

void cfg_clear(cfg *c)
{
    if (!c)
        return;
    free(c->url);
    free(c->token);
    c->url = NULL;
    c->token = NULL;
}
