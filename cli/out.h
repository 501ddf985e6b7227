/* out.h: the server's JSON for a person: lists as aligned tables, one object as
 * `key: value` lines. */
#ifndef SGDR_OUT_H
#define SGDR_OUT_H

#include <jansson.h>
#include <stddef.h>

typedef enum {
    OUT_TEXT, /* strings as they are, numbers %g, objects as compact JSON */
    OUT_PCT,  /* a fraction as a percentage */
    OUT_TIME, /* seconds since 1970 as local date and time */
    OUT_ETA,  /* seconds as 3m05s */
} out_kind;

/* A table column: its header, the value's path in an item ("info.counts.train"). */
typedef struct {
    const char *header;
    const char *path;
    out_kind kind;
} out_col;

/* The value at path ("a.b": key b of object a) in v, or NULL. */
json_t *out_path(json_t *v, const char *path);

/* The string at path in v, or "?" when there is none (never NULL, for printf). */
const char *out_str(json_t *v, const char *path);

/* Writes v as kind into buf; "-" for null or missing. */
void out_format(char *buf, size_t len, json_t *v, out_kind kind);

/* Prints the items of page (its "items" array) as a table of cols (a NULL header ends
 * them), then how to get the next page when there is one. */
void out_table(json_t *page, const out_col *cols);

/* Prints each key of obj on its own line as `key: value`. */
void out_object(json_t *obj);

#endif
