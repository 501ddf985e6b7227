/* args.c: parses a subcommand's options from their table and turns the ones that name a
 * JSON field into the request body. */
#include "args.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int find_opt(const args_opt *opts, const char *name, size_t len)
{
    for (int i = 0; opts && opts[i].flag; i++) {
        const char *al = opts[i].alias;
        if ((strlen(opts[i].flag) == len && strncmp(opts[i].flag, name, len) == 0) ||
            (al && strlen(al) == len && strncmp(al, name, len) == 0))
            return i;
    }
    return -1;
}

/* Takes the option at argv[*i] (with its value from `=` or the next word). */
static int take_opt(args *a, int argc, char **argv, int *i, char *err, size_t errlen)
{
    const char *word = argv[*i], *eq = strchr(word, '=');
    size_t len = eq ? (size_t)(eq - word) : strlen(word);
    int k = find_opt(a->opts, word, len);
    if (k < 0) {
        snprintf(err, errlen, "unknown option '%.*s'", (int)len, word);
        return -EINVAL;
    }
    if (a->opts[k].type == ARGS_SWITCH) {
        if (eq) {
            snprintf(err, errlen, "%s takes no value", a->opts[k].flag);
            return -EINVAL;
        }
        a->val[k] = "";
        return 0;
    }
    if (eq) {
        a->val[k] = eq + 1;
    } else if (*i + 1 < argc) {
        a->val[k] = argv[++*i];
    } else {
        snprintf(err, errlen, "%s needs a value", a->opts[k].flag);
        return -EINVAL;
    }
    return 0;
}

int args_parse(args *a, const args_opt *opts, int argc, char **argv, int min_pos,
               int max_pos, char *err, size_t errlen)
{
    int only_pos = 0;
    memset(a, 0, sizeof *a);
    a->opts = opts;
    for (int i = 0; opts && opts[i].flag; i++)
        assert(i < ARGS_MAX_OPTS);
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        if (!only_pos && strcmp(w, "--") == 0) {
            only_pos = 1;
        } else if (!only_pos && (strcmp(w, "--help") == 0 || strcmp(w, "-h") == 0)) {
            a->help = 1;
        } else if (!only_pos && w[0] == '-' && w[1]) {
            if (take_opt(a, argc, argv, &i, err, errlen))
                return -EINVAL;
        } else if (a->n_pos < max_pos && a->n_pos < ARGS_MAX_POS) {
            a->pos[a->n_pos++] = w;
        } else {
            snprintf(err, errlen, "unexpected argument '%s'", w);
            return -EINVAL;
        }
    }
    if (a->n_pos < min_pos && !a->help) {
        snprintf(err, errlen, "missing arguments");
        return -EINVAL;
    }
    return 0;
}

const char *args_get(const args *a, const char *flag)
{
    int k = find_opt(a->opts, flag, strlen(flag));
    return k < 0 ? NULL : a->val[k];
}

int args_id(const char *s, const char *what, long long *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1) {
        snprintf(err, errlen, "%s: '%s' is not an id (a positive integer)", what, s);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* One number or integer of a value, as a new JSON value; NULL when s is not one. */
static json_t *scalar(const char *s, size_t len, int integer)
{
    char buf[64], *end;
    if (len == 0 || len >= sizeof buf)
        return NULL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    if (integer) {
        long long v = strtoll(buf, &end, 10);
        return errno || *end ? NULL : json_integer(v);
    }
    double v = strtod(buf, &end);
    return errno || *end || !isfinite(v) ? NULL : json_real(v);
}

/* A comma-separated list as a JSON array; NULL when an item is not a number. */
static json_t *list(const char *s, int integer)
{
    json_t *arr = json_array();
    while (arr) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        json_t *v = scalar(s, len, integer);
        if (!v || json_array_append_new(arr, v)) {
            json_decref(arr);
            return NULL;
        }
        if (!comma)
            break;
        s = comma + 1;
    }
    return arr;
}

static json_t *boolean(const char *s)
{
    static const char *yes[] = {"true", "on", "yes", "1"}, *no[] = {"false", "off", "no", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcmp(s, yes[i]) == 0)
            return json_true();
        if (strcmp(s, no[i]) == 0)
            return json_false();
    }
    return NULL;
}

/* The value of option o as JSON; NULL when it does not parse as its type. */
static json_t *convert(const args_opt *o, const char *s)
{
    switch (o->type) {
    case ARGS_SWITCH:
        return json_true();
    case ARGS_STR:
        return json_string(s);
    case ARGS_INT:
        return scalar(s, strlen(s), 1);
    case ARGS_NUM:
        return scalar(s, strlen(s), 0);
    case ARGS_NUMS:
        return strchr(s, ',') ? list(s, 0) : scalar(s, strlen(s), 0);
    case ARGS_INTS:
        return list(s, 1);
    case ARGS_BOOL:
        return boolean(s);
    case ARGS_NAME_OR_ID:
        return s[0] && strspn(s, "0123456789") == strlen(s) ? scalar(s, strlen(s), 1)
                                                           : json_string(s);
    }
    return NULL;
}

static const char *type_name(args_type t)
{
    switch (t) {
    case ARGS_INT:
        return "an integer";
    case ARGS_NUM:
        return "a number";
    case ARGS_NUMS:
        return "a number or a comma-separated list of numbers";
    case ARGS_INTS:
        return "a comma-separated list of integers";
    case ARGS_BOOL:
        return "true or false";
    default:
        return "a string";
    }
}

/* Sets key (possibly "a.b") in body to v, taking v's reference. */
static int set_key(json_t *body, const char *key, json_t *v)
{
    const char *dot = strchr(key, '.');
    if (!dot)
        return json_object_set_new(body, key, v) ? -ENOMEM : 0;
    char outer[64];
    snprintf(outer, sizeof outer, "%.*s", (int)(dot - key), key);
    json_t *inner = json_object_get(body, outer);
    if (!json_is_object(inner)) {
        inner = json_object();
        if (!inner || json_object_set_new(body, outer, inner)) {
            json_decref(v);
            return -ENOMEM;
        }
    }
    return set_key(inner, dot + 1, v);
}

int args_body(const args *a, json_t *body, char *err, size_t errlen)
{
    for (int i = 0; a->opts[i].flag; i++) {
        const args_opt *o = &a->opts[i];
        if (!o->key || !a->val[i])
            continue;
        json_t *v = convert(o, a->val[i]);
        if (!v) {
            snprintf(err, errlen, "%s: '%s' is not %s", o->flag, a->val[i], type_name(o->type));
            return -EINVAL;
        }
        if (set_key(body, o->key, v)) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    return 0;
}

void args_usage(FILE *fp, const char *synopsis, const args_opt *opts)
{
    fprintf(fp, "usage: sgdr %s\n", synopsis);
    for (int i = 0; opts && opts[i].flag; i++) {
        char name[64];
        const args_opt *o = &opts[i];
        snprintf(name, sizeof name, "%s%s%s%s", o->flag, o->alias ? ", " : "",
                 o->alias ? o->alias : "", o->type == ARGS_SWITCH ? "" : " V");
        fprintf(fp, "  %-24s %s\n", name, o->help ? o->help : "");
    }
}
