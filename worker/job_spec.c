/* job_spec.c: a worker's job spec (job_spec.h): reading it, its dataset and learner. */
#include "job_spec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "run_config.h"

double jspec_num(json_t *o, const char *k, double dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

int jspec_bool(json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

json_t *jspec_read(const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *s = json_load_file(path, 0, &je);
    if (!s) {
        snprintf(err, errlen, "spec %s: line %d: %s", path, je.line, je.text);
        return NULL;
    }
    const char *kind = NULL, *ds_path = NULL, *arch = NULL;
    if (json_unpack_ex(s, &je, 0, "{s:{s:s} s:{s:s} s:{s:s}}", "dataset", "path", &ds_path,
                       "learner", "arch", &arch, "job", "kind", &kind) != 0) {
        snprintf(err, errlen, "spec %s: %s", path, je.text);
        json_decref(s);
        return NULL;
    }
    return s;
}

static int format_of(const char *s, ds_format *f)
{
    if (s && !strcmp(s, "folders"))
        *f = DS_FOLDERS;
    else if (s && !strcmp(s, "csv"))
        *f = DS_CSV;
    else if (s && !strcmp(s, "idx"))
        *f = DS_IDX;
    else
        return -EINVAL;
    return 0;
}

static int open_dataset(json_t *d, dataset **out, char *err, size_t errlen)
{
    ds_options o = {0};
    o.path = json_string_value(json_object_get(d, "path"));
    o.valid_pct = jspec_num(d, "valid_pct", -1);
    o.csv = json_string_value(json_object_get(d, "csv"));
    o.seed = (uint64_t)jspec_num(d, "seed", 42);
    if (format_of(json_string_value(json_object_get(d, "format")), &o.format)) {
        snprintf(err, errlen, "spec: dataset.format must be folders, csv or idx");
        return -EINVAL;
    }
    return dataset_open(out, &o, err, errlen);
}

/* The saved state: weights and optimizer from a checkpoint, then size, freeze point and
 * precompute, as the daemon restores a run. */
static int apply_state(learner *l, json_t *s, int base_sz, char *err, size_t errlen)
{
    const char *load = json_string_value(json_object_get(s, "load"));
    int rc = load ? learner_load(l, load, err, errlen) : 0;
    int sz = (int)jspec_num(s, "sz", 0);
    if (!rc && sz > 0 && sz != base_sz)
        rc = learner_resize(l, sz, err, errlen);
    if (!rc && json_is_integer(json_object_get(s, "freeze_to")))
        rc = learner_freeze_to(l, (int)jspec_num(s, "freeze_to", 0), err, errlen);
    if (!rc && json_is_boolean(json_object_get(s, "precompute")))
        rc = learner_set_precompute(l, jspec_bool(s, "precompute", 0), err, errlen);
    return rc;
}

int jspec_learner(json_t *spec, dist *d, dataset **ds_out, learner **out, char *err,
                 size_t errlen)
{
    dataset *ds = NULL;
    learner *l = NULL;
    *ds_out = NULL;
    *out = NULL;
    int rc = open_dataset(json_object_get(spec, "dataset"), &ds, err, errlen);
    if (rc)
        return rc;
    /* The run's config as the daemon reads it in-process (precision and bf16 kernels
     * included), then what the spec adds for a rank. */
    json_t *c = json_object_get(spec, "learner");
    learner_config lc;
    runcfg_learner(c, dataset_info(ds)->multi_label, &lc);
    lc.model.arch = json_string_value(json_object_get(c, "arch"));
    lc.loader_threads = (int)jspec_num(c, "loader_threads", 0);
    lc.pretrained = json_string_value(json_object_get(c, "pretrained"));
    lc.imagenet_stats = lc.pretrained != NULL;
    lc.checkpoint_dir = json_string_value(json_object_get(spec, "checkpoint_dir"));
    lc.dist = d;
    rc = learner_create(&l, &lc, ds, err, errlen);
    if (!rc)
        rc = apply_state(l, json_object_get(spec, "state"), lc.sz, err, errlen);
    if (rc) {
        learner_destroy(l);
        dataset_destroy(ds);
        return rc;
    }
    *ds_out = ds;
    *out = l;
    return 0;
}

/* FNV-1a over bytes. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t jspec_dataset_hash(const dataset *ds)
{
    const ds_info *in = dataset_info(ds);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int c = 0; c < in->n_classes; c++)
        h = fnv(h, in->classes[c], strlen(in->classes[c]) + 1);
    for (int s = 0; s < 3; s++) {
        h = fnv(h, &in->count[s], sizeof in->count[s]);
        for (int i = 0; i < in->count[s]; i++) {
            const char *name = dataset_item_name(ds, (ds_split)s, i);
            h = fnv(h, name, strlen(name) + 1);
            if (!in->multi_label && s != SPLIT_TEST) {
                int y = dataset_item_label(ds, (ds_split)s, i);
                h = fnv(h, &y, sizeof y);
            }
        }
    }
    return h;
}
