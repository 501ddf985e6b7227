/* args.h: a subcommand's arguments: positionals and `--flag value` options described by a
 * table, and the JSON request body built from the options that name a field. */
#ifndef SGDR_ARGS_H
#define SGDR_ARGS_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

typedef enum {
    ARGS_SWITCH,     /* no value; true when given */
    ARGS_STR,        /* a string */
    ARGS_INT,        /* an integer */
    ARGS_NUM,        /* a number */
    ARGS_NUMS,       /* comma-separated numbers: one is sent as a number, more as an array */
    ARGS_INTS,       /* comma-separated integers, sent as an array */
    ARGS_BOOL,       /* true|false|on|off|yes|no|1|0 */
    ARGS_NAME_OR_ID, /* sent as an integer when it is all digits, else as a string */
} args_type;

/* One option. key: the JSON field its value goes to ("a.b" nests it in object a), or NULL
 * when the command reads it itself. */
typedef struct {
    const char *flag;  /* "--cycle-len" */
    const char *alias; /* "-o", or NULL */
    args_type type;
    const char *key;
    const char *help;
} args_opt;

#define ARGS_MAX_POS 4
#define ARGS_MAX_OPTS 32

/* The parsed arguments; the strings point into argv. */
typedef struct {
    const args_opt *opts; /* ends with an entry whose flag is NULL */
    const char *val[ARGS_MAX_OPTS]; /* per option: its value ("" for a switch), NULL: absent */
    const char *pos[ARGS_MAX_POS];
    int n_pos;
    int help; /* --help or -h was given */
} args;

/* Parses argv[0..argc) against opts, taking between min_pos and max_pos positionals
 * (`--` ends the options). Returns 0, or -EINVAL with the reason in err. */
int args_parse(args *a, const args_opt *opts, int argc, char **argv, int min_pos,
               int max_pos, char *err, size_t errlen);

/* The value of the option named flag, or NULL when it was not given. */
const char *args_get(const args *a, const char *flag);

/* Parses s, named what in messages, as an id (a positive integer) into *out. Returns 0 or
 * -EINVAL with the reason in err. */
int args_id(const char *s, const char *what, long long *out, char *err, size_t errlen);

/* Adds every given option that names a key to body, converted by its type. Returns 0 or
 * -EINVAL naming the flag and the bad value in err. */
int args_body(const args *a, json_t *body, char *err, size_t errlen);

/* Prints "usage: sgdr SYNOPSIS" and the options with their help to fp. */
void args_usage(FILE *fp, const char *synopsis, const args_opt *opts);

#endif
