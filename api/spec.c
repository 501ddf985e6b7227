/* spec.c: validation of JSON bodies against declarative field specs. */
#include "spec.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail(char *detail, size_t detaillen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *detail, size_t detaillen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, detaillen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static int range_check(const spec_field *f, double v, const char *name, char *detail,
                       size_t detaillen)
{
    if (v < f->min || v > f->max)
        return fail(detail, detaillen, "%s must be between %g and %g, got %g", name, f->min,
                    f->max, v);
    return 0;
}

static int parse_number(const spec_field *f, const json_t *v, const char *name, double *out,
                        char *detail, size_t detaillen)
{
    if (!json_is_number(v))
        return fail(detail, detaillen, "%s must be a number, got %s", name, type_name(v));
    *out = json_number_value(v);
    if (!isfinite(*out))
        return fail(detail, detaillen, "%s must be finite", name);
    return range_check(f, *out, name, detail, detaillen);
}

static int parse_fields(const spec_field *fields, json_t *obj, void *out, const char *prefix,
                        char *field, size_t fieldlen, char *detail, size_t detaillen);

/* SPEC_INT: an integral JSON number (a real too, as every number of a body holding an
 * integer beyond int64 is read) in [min, max]. */
static int parse_int(const spec_field *f, const json_t *v, const char *name, int64_t *out,
                     char *detail, size_t detaillen)
{
    double d;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if ((double)i < f->min || (double)i > f->max)
            return fail(detail, detaillen, "%s must be between %.0f and %.0f, got %lld", name,
                        f->min, f->max, (long long)i);
        *out = (int64_t)i;
        return 0;
    }
    if (!json_is_real(v))
        return fail(detail, detaillen, "%s must be an integer, got %s", name, type_name(v));
    d = json_real_value(v);
    if (!isfinite(d) || d != floor(d))
        return fail(detail, detaillen, "%s must be an integer, got %g", name, d);
    if (range_check(f, d, name, detail, detaillen))
        return -EINVAL;
    *out = (int64_t)d;
    return 0;
}

static int parse_bool(const json_t *v, const char *name, int *out, char *detail,
                      size_t detaillen)
{
    if (!json_is_boolean(v))
        return fail(detail, detaillen, "%s must be true or false, got %s", name, type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* SPEC_STRING: borrowed from v; no NUL inside, length in [min, max]. */
static int parse_string(const spec_field *f, const json_t *v, const char *name,
                        const char **out, char *detail, size_t detaillen)
{
    size_t len;
    if (!json_is_string(v))
        return fail(detail, detaillen, "%s must be a string, got %s", name, type_name(v));
    len = json_string_length(v);
    if (strlen(json_string_value(v)) != len)
        return fail(detail, detaillen, "%s must not contain NUL characters", name);
    if ((double)len < f->min || (double)len > f->max)
        return fail(detail, detaillen, "%s must be %.0f to %.0f characters long", name, f->min,
                    f->max);
    *out = json_string_value(v);
    return 0;
}

/* SPEC_ENUM: the index of v in f->values; the refusal lists them. */
static int parse_enum(const spec_field *f, const json_t *v, const char *name, int *out,
                      char *detail, size_t detaillen)
{
    char list[256] = "";
    size_t used = 0;
    if (json_is_string(v)) {
        for (int i = 0; f->values[i]; i++)
            if (strcmp(f->values[i], json_string_value(v)) == 0) {
                *out = i;
                return 0;
            }
    }
    for (int i = 0; f->values[i] && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s\"%s\"", i ? ", " : "",
                                 f->values[i]);
    return fail(detail, detaillen, "%s must be one of %s", name, list);
}

/* One item of SPEC_NUMBERS: a number in range, an integer when f->integral. */
static int parse_number_item(const spec_field *f, const json_t *v, const char *name,
                             double *out, char *detail, size_t detaillen)
{
    if (parse_number(f, v, name, out, detail, detaillen))
        return -EINVAL;
    if (f->integral && *out != floor(*out))
        return fail(detail, detaillen, "%s must be an integer", name);
    return 0;
}

/* SPEC_NUMBERS: one number, or an array of min_n..max_n; a bad item is named with its
 * index ("lrs[1]") in field. */
static int parse_numbers(const spec_field *f, json_t *v, const char *name, spec_numbers *nums,
                         char *field, size_t fieldlen, char *detail, size_t detaillen)
{
    size_t i;
    json_t *item;
    if (json_is_number(v)) {
        nums->n = 1;
        nums->was_array = 0;
        return parse_number_item(f, v, name, &nums->v[0], detail, detaillen);
    }
    if (!json_is_array(v))
        return fail(detail, detaillen, "%s must be a number or an array of numbers, got %s",
                    name, type_name(v));
    if (json_array_size(v) < (size_t)f->min_n || json_array_size(v) > (size_t)f->max_n)
        return fail(detail, detaillen, "%s must hold %d to %d numbers", name, f->min_n,
                    f->max_n);
    json_array_foreach(v, i, item) {
        char iname[160];
        if (snprintf(iname, sizeof iname, "%s[%zu]", name, i) >= (int)sizeof iname)
            iname[sizeof iname - 1] = '\0';
        if (parse_number_item(f, item, iname, &nums->v[i], detail, detaillen)) {
            snprintf(field, fieldlen, "%s", iname);
            return -EINVAL;
        }
    }
    nums->n = (int)json_array_size(v);
    nums->was_array = 1;
    return 0;
}

/* SPEC_REF: a positive integer id (an integral real up to 2^53, where reals stop being
 * exact, counts as one, as SPEC_INT takes it), or a name of 1 to 256 bytes. */
static int parse_ref(const json_t *v, const char *name, spec_ref *ref, char *detail,
                     size_t detaillen)
{
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        ref->name = NULL;
        ref->id = (int64_t)json_integer_value(v);
        return 0;
    }
    double d = json_is_real(v) ? json_real_value(v) : 0;
    if (d >= 1 && d <= 9007199254740991.0 && d == floor(d)) {
        ref->name = NULL;
        ref->id = (int64_t)d;
        return 0;
    }
    if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 256 &&
        strlen(json_string_value(v)) == json_string_length(v)) {
        ref->name = json_string_value(v);
        ref->id = 0;
        return 0;
    }
    return fail(detail, detaillen, "%s must be a name or a positive integer id", name);
}

static int parse_one(const spec_field *f, json_t *v, void *out, const char *name,
                     char *field, size_t fieldlen, char *detail, size_t detaillen)
{
    char *dst = (char *)out + f->offset;
    switch (f->type) {
    case SPEC_INT:
        return parse_int(f, v, name, (int64_t *)dst, detail, detaillen);
    case SPEC_NUMBER:
        return parse_number(f, v, name, (double *)dst, detail, detaillen);
    case SPEC_BOOL:
        return parse_bool(v, name, (int *)dst, detail, detaillen);
    case SPEC_STRING:
        return parse_string(f, v, name, (const char **)dst, detail, detaillen);
    case SPEC_ENUM:
        return parse_enum(f, v, name, (int *)dst, detail, detaillen);
    case SPEC_NUMBERS:
        return parse_numbers(f, v, name, (spec_numbers *)dst, field, fieldlen, detail,
                             detaillen);
    case SPEC_OBJECT:
        if (!json_is_object(v))
            return fail(detail, detaillen, "%s must be an object, got %s", name, type_name(v));
        return parse_fields(f->fields, v, out, name, field, fieldlen, detail, detaillen);
    case SPEC_REF:
        return parse_ref(v, name, (spec_ref *)dst, detail, detaillen);
    case SPEC_END:
        break;
    }
    return fail(detail, detaillen, "%s has no type", name);
}

static int parse_fields(const spec_field *fields, json_t *obj, void *out, const char *prefix,
                        char *field, size_t fieldlen, char *detail, size_t detaillen)
{
    const char *key;
    json_t *v;
    char name[128];

    /* Unknown keys first: a misspelt optional field must not silently take its default. */
    json_object_foreach(obj, key, v) {
        const spec_field *f = fields;
        while (f->type != SPEC_END && strcmp(f->name, key) != 0)
            f++;
        if (f->type == SPEC_END) {
            snprintf(field, fieldlen, "%s%s%s", prefix, *prefix ? "." : "", key);
            return fail(detail, detaillen, "unknown field \"%s\"", field);
        }
    }
    for (const spec_field *f = fields; f->type != SPEC_END; f++) {
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", f->name);
        v = json_object_get(obj, f->name);
        if (!v) {
            if (f->required) {
                snprintf(field, fieldlen, "%s", name);
                return fail(detail, detaillen, "%s is required", name);
            }
            continue;
        }
        field[0] = '\0';
        if (parse_one(f, v, out, name, field, fieldlen, detail, detaillen)) {
            if (!field[0])
                snprintf(field, fieldlen, "%s", name);
            return -EINVAL;
        }
        if (f->present)
            *(int *)((char *)out + f->present - 1) = 1;
    }
    return 0;
}

int spec_parse(const spec_field *fields, json_t *body, void *out, char *field,
               size_t fieldlen, char *detail, size_t detaillen)
{
    field[0] = '\0';
    if (!json_is_object(body))
        return fail(detail, detaillen, "the body must be a JSON object");
    return parse_fields(fields, body, out, "", field, fieldlen, detail, detaillen);
}
