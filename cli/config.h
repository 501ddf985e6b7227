/* config.h: where sgdr finds the daemon and its token. Each setting comes from the first
 * source that has it: the flags, then the environment (SGDR_URL, SGDR_TOKEN,
 * SGDR_TOKEN_FILE, SGDR_CONFIG), then the config file (`key = value` lines: url, token,
 * token_file), then the default (http://127.0.0.1:8080, no token). */
#ifndef SGDR_CONFIG_H
#define SGDR_CONFIG_H

#include <stddef.h>

#define CFG_DEFAULT_URL "http://127.0.0.1:8080"

/* What the command line said; NULL where it said nothing. */
typedef struct {
    const char *url;        /* --url */
    const char *token_file; /* --token-file */
    const char *config;     /* --config: this file instead of the usual one */
} cfg_flags;

/* The resolved settings; both strings owned, freed by cfg_clear. */
typedef struct {
    char *url;   /* without a trailing slash or /api/v1 */
    char *token; /* NULL: send no Authorization header */
} cfg;

/* A getenv-like lookup, so that tests can pass their own environment. */
typedef const char *(*cfg_getenv_fn)(const char *name);

/* Fills *out from flags, env and the config file. The config file is --config, else
 * $SGDR_CONFIG, else $XDG_CONFIG_HOME/sgdr/config, else $HOME/.config/sgdr/config; only a
 * file named by --config or SGDR_CONFIG must exist. A token file's first line is the token;
 * a relative token_file in the config file is relative to the config file's folder.
 * Returns 0, or -EINVAL/-ENOENT/-EACCES/-ENOMEM with a message naming the file, the line or
 * the variable in err; *out is then empty. */
int cfg_resolve(const cfg_flags *flags, cfg_getenv_fn env, cfg *out, char *err, size_t errlen);

/* Frees what cfg_resolve filled; safe on a zeroed or already cleared cfg. */
void cfg_clear(cfg *c);

/* Reads the token from the first line of path into a new string (*out, owned by the
 * caller), trimmed of surrounding white space. Returns 0, or a negative errno code with the
 * reason in err (an empty file is -EINVAL). */
int cfg_read_token_file(const char *path, char **out, char *err, size_t errlen);

#endif
