/* spec.h: declarative field specs for JSON request bodies. A spec table lists every field
 * an endpoint accepts, its type, whether it is required, its range and where it goes in a
 * C struct; spec_parse rejects unknown keys, wrong types and out-of-range values and names
 * the offending field, so handlers only ever see valid input. */
#ifndef SGDRD_API_SPEC_H
#define SGDRD_API_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define SPEC_MAX_NUMBERS 8

typedef enum spec_type {
    SPEC_END = 0,   /* terminates a table */
    SPEC_INT,       /* int64_t; an integral JSON number */
    SPEC_NUMBER,    /* double; any finite JSON number */
    SPEC_BOOL,      /* int 0/1; JSON true/false only */
    SPEC_STRING,    /* const char *, borrowed from the parsed JSON; length in [min, max] */
    SPEC_ENUM,      /* int: index into values */
    SPEC_NUMBERS,   /* spec_numbers: one number or an array of min_n..max_n numbers */
    SPEC_OBJECT,    /* a nested object described by fields (same output struct) */
    SPEC_REF,       /* spec_ref: a resource's name (string) or id (positive integer) */
} spec_type;

typedef struct spec_ref {
    const char *name;  /* borrowed from the parsed JSON, or NULL when given an id */
    int64_t id;        /* 0 when given a name */
} spec_ref;

typedef struct spec_numbers {
    int n;
    int was_array;
    double v[SPEC_MAX_NUMBERS];
} spec_numbers;

typedef struct spec_field {
    const char *name;
    spec_type type;
    int required;
    double min, max;              /* inclusive; for strings the length, for arrays each item */
    size_t offset;                /* of the value in the output struct */
    const char *const *values;    /* SPEC_ENUM: NULL-terminated */
    const struct spec_field *fields; /* SPEC_OBJECT */
    int min_n, max_n;             /* SPEC_NUMBERS: array length bounds (max <= SPEC_MAX_NUMBERS);
                                   * a lone number counts as one */
    int integral;                 /* SPEC_NUMBERS: every item must be an integer */
    size_t present;               /* SPEC_PRESENT(type, member) of an int set to 1 when the
                                   * field is given; 0: not tracked */
} spec_field;

#define SPEC_PRESENT(type, member) (offsetof(type, member) + 1)

/* Checks body (a JSON object) against fields and writes each given value into out. Fields
 * not given keep what out held (the caller's defaults). Returns 0, or -EINVAL with the
 * field's dotted name ("early_stop.patience", "lrs[1]") in field (empty when the body
 * itself is wrong) and a one-line reason in detail. */
int spec_parse(const spec_field *fields, json_t *body, void *out, char *field,
               size_t fieldlen, char *detail, size_t detaillen);

#endif
