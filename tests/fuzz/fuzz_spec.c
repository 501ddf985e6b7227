/* fuzz_spec.c: request bodies through the JSON field specs (api/spec.c), read the way the
 * server reads them (duplicate keys refused; integers beyond int64 read as reals). The
 * tables have the shapes of the routes' (every spec type, nested objects, presence flags,
 * integer ranges up to 2^53 - 1); every value a successful parse writes is
 * checked against its field, and a failure must give a NUL-terminated reason (and, for an
 * object, the field at fault). A key "" is refused with an empty field name, which the
 * server answers as a problem naming no field. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include <jansson.h>

#include "fuzz_util.h"
#include "spec.h"

typedef struct body {
    spec_ref dataset;
    int arch, tfms, precompute, multi_label, has_multi_label, has_sz, has_seed;
    int64_t sz, bs, seed, patience;
    double max_zoom, wd;
    spec_numbers ps, xtra_fc, lrs;
    const char *name, *path;
} body;

static const char *const arch_names[] = {"resnet18", "resnet34", "resnet_small", NULL};
static const char *const tfms_names[] = {"side_on", "top_down", "none", "flip", NULL};

static const spec_field nested_spec[] = {
    {.name = "patience", .type = SPEC_INT, .required = 1, .min = 1, .max = 1000,
     .offset = offsetof(body, patience)},
    {.name = "wd", .type = SPEC_NUMBER, .min = 0, .max = 1, .offset = offsetof(body, wd)},
    {0},
};

static const spec_field top_spec[] = {
    {.name = "dataset", .type = SPEC_REF, .offset = offsetof(body, dataset)},
    {.name = "arch", .type = SPEC_ENUM, .values = arch_names, .offset = offsetof(body, arch)},
    {.name = "sz", .type = SPEC_INT, .min = 8, .max = 1024, .offset = offsetof(body, sz),
     .present = SPEC_PRESENT(body, has_sz)},
    {.name = "bs", .type = SPEC_INT, .min = 1, .max = 4096, .offset = offsetof(body, bs)},
    {.name = "seed", .type = SPEC_INT, .min = 0, .max = 9007199254740991.0,
     .offset = offsetof(body, seed), .present = SPEC_PRESENT(body, has_seed)},
    {.name = "tfms", .type = SPEC_ENUM, .values = tfms_names, .offset = offsetof(body, tfms)},
    {.name = "max_zoom", .type = SPEC_NUMBER, .min = 1, .max = 4,
     .offset = offsetof(body, max_zoom)},
    {.name = "precompute", .type = SPEC_BOOL, .offset = offsetof(body, precompute)},
    {.name = "ps", .type = SPEC_NUMBERS, .min = 0, .max = 0.99, .min_n = 1, .max_n = 2,
     .offset = offsetof(body, ps)},
    {.name = "xtra_fc", .type = SPEC_NUMBERS, .min = 1, .max = 8192, .min_n = 0, .max_n = 4,
     .integral = 1, .offset = offsetof(body, xtra_fc)},
    {.name = "lrs", .type = SPEC_NUMBERS, .min = 1e-12, .max = 100, .min_n = 1,
     .max_n = SPEC_MAX_NUMBERS, .offset = offsetof(body, lrs)},
    {.name = "multi_label", .type = SPEC_BOOL, .offset = offsetof(body, multi_label),
     .present = SPEC_PRESENT(body, has_multi_label)},
    {.name = "early_stop", .type = SPEC_OBJECT, .fields = nested_spec},
    {.name = "name", .type = SPEC_STRING, .min = 1, .max = 128, .offset = offsetof(body, name)},
    {.name = "path", .type = SPEC_STRING, .min = 1, .max = 4095, .offset = offsetof(body, path)},
    {0},
};

/* A table whose fields are all required: the "is required" path. */
static const spec_field required_spec[] = {
    {.name = "dataset", .type = SPEC_REF, .required = 1, .offset = offsetof(body, dataset)},
    {.name = "arch", .type = SPEC_ENUM, .required = 1, .values = arch_names,
     .offset = offsetof(body, arch)},
    {.name = "lrs", .type = SPEC_NUMBERS, .required = 1, .min = 1e-12, .max = 100,
     .min_n = 1, .max_n = 3, .offset = offsetof(body, lrs)},
    {.name = "early_stop", .type = SPEC_OBJECT, .required = 1, .fields = nested_spec},
    {0},
};

static const spec_field empty_spec[] = {{0}};

static void check_numbers(const spec_field *f, const spec_numbers *v)
{
    FUZZ_CHECK(v->n >= 0 && v->n <= SPEC_MAX_NUMBERS);
    if (v->was_array)
        FUZZ_CHECK(v->n >= f->min_n && v->n <= f->max_n);
    else
        FUZZ_CHECK(v->n == 1);
    for (int i = 0; i < v->n; i++) {
        FUZZ_CHECK(isfinite(v->v[i]) && v->v[i] >= f->min && v->v[i] <= f->max);
        if (f->integral)
            FUZZ_CHECK(v->v[i] == floor(v->v[i]));
    }
}

/* Every field the body gave holds a value its spec allows. */
static void check_values(const spec_field *fields, json_t *obj, const body *b)
{
    for (const spec_field *f = fields; f->type != SPEC_END; f++) {
        json_t *v = json_object_get(obj, f->name);
        const char *dst = (const char *)b + f->offset;
        if (!v) {
            FUZZ_CHECK(!f->required);
            continue;
        }
        if (f->present)
            FUZZ_CHECK(*(const int *)((const char *)b + f->present - 1) == 1);
        switch (f->type) {
        case SPEC_INT: {
            int64_t i = *(const int64_t *)dst;
            FUZZ_CHECK((double)i >= f->min && (double)i <= f->max);
            break;
        }
        case SPEC_NUMBER: {
            double d = *(const double *)dst;
            FUZZ_CHECK(isfinite(d) && d >= f->min && d <= f->max);
            break;
        }
        case SPEC_BOOL:
            FUZZ_CHECK(*(const int *)dst == json_is_true(v));
            break;
        case SPEC_STRING: {
            const char *s = *(const char *const *)dst;
            FUZZ_CHECK(s == json_string_value(v));
            FUZZ_CHECK(strlen(s) >= f->min && strlen(s) <= f->max);
            break;
        }
        case SPEC_ENUM: {
            int k = *(const int *)dst, n = 0;
            while (f->values[n])
                n++;
            FUZZ_CHECK(k >= 0 && k < n && strcmp(f->values[k], json_string_value(v)) == 0);
            break;
        }
        case SPEC_NUMBERS:
            check_numbers(f, (const spec_numbers *)dst);
            break;
        case SPEC_OBJECT:
            check_values(f->fields, v, b);
            break;
        case SPEC_REF: {
            const spec_ref *r = (const spec_ref *)dst;
            if (r->name)
                FUZZ_CHECK(r->id == 0 && strlen(r->name) >= 1 && strlen(r->name) <= 256);
            else
                FUZZ_CHECK(r->id >= 1);
            break;
        }
        case SPEC_END:
            break;
        }
    }
}

static void parse_with(const spec_field *fields, json_t *json)
{
    body b;
    char field[128], detail[512];
    memset(&b, 0, sizeof b);
    memset(field, 'x', sizeof field);
    memset(detail, 'x', sizeof detail);
    int rc = spec_parse(fields, json, &b, field, sizeof field, detail, sizeof detail);
    FUZZ_CHECK(memchr(field, 0, sizeof field) != NULL);
    if (rc == 0) {
        FUZZ_CHECK(json_is_object(json));
        check_values(fields, json, &b);
        return;
    }
    FUZZ_CHECK(rc == -EINVAL);
    FUZZ_CHECK(memchr(detail, 0, sizeof detail) != NULL && detail[0] != '\0');
    /* A body that is an object is refused for one of its fields (whose name is empty only
     * when the body has a key "", which no table knows). */
    if (json_is_object(json))
        FUZZ_CHECK(field[0] != '\0' || json_object_get(json, "") != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t e;
    json_t *json = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e);
    if (!json && (strstr(e.text, "too big integer") ||
                  strstr(e.text, "too big negative integer")))
        json = json_loadb((const char *)data, size,
                          JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &e);
    if (!json)
        return 0;
    parse_with(top_spec, json);
    parse_with(required_spec, json);
    parse_with(empty_spec, json);
    json_decref(json);
    return 0;
}
