/* dataset.c: the dataset interface: opening one of fast.ai's three layouts (class folders,
 * a labels csv, MNIST IDX files; one file each), the seeded validation split, and item
 * access. */
#include "data.h"
#include "ds_internal.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define STREAM_SPLIT 0x73706c6974ull /* "split" */

/* Moves round(n * pct) items of train, chosen by a seeded permutation, to valid; both keep
 * their original order so the split is stable for a seed. Train is compacted in place:
 * beside the items, the split needs only the valid share and a permutation. */
static int split_valid(dataset *ds, double pct, uint64_t seed)
{
    item_vec *tr = &ds->split[SPLIT_TRAIN], *va = &ds->split[SPLIT_VALID];
    int n = tr->n, n_valid = (int)(n * pct + 0.5);
    if (n_valid <= 0)
        return 0;
    if (n_valid >= n)
        n_valid = n - 1;
    int *perm = malloc(sizeof(int) * n);
    uint8_t *is_valid = calloc(n, 1);
    ds_item *vv = malloc(sizeof(ds_item) * n_valid);
    int rc = -ENOMEM;
    if (!perm || !is_valid || !vv)
        goto out_free;
    uint64_t rng = rng_derive(seed, STREAM_SPLIT);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(&rng, (uint32_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < n_valid; i++)
        is_valid[perm[i]] = 1;
    int nk = 0, nv = 0;
    for (int i = 0; i < n; i++) {
        if (is_valid[i])
            vv[nv++] = tr->v[i];
        else
            tr->v[nk++] = tr->v[i];
    }
    tr->n = nk;
    free(va->v);
    va->v = vv;
    va->n = va->cap = nv;
    vv = NULL;
    rc = 0;
out_free:
    free(perm);
    free(is_valid);
    free(vv);
    return rc;
}

/* A new dataset for o->path with its root, real root and limits; NULL on failure with
 * *rc set (and err, except for -ENOMEM, which the caller words). */
static dataset *ds_create(const ds_options *o, int *rc, char *err, size_t errlen)
{
    dataset *ds = calloc(1, sizeof *ds);
    *rc = -ENOMEM;
    if (!ds)
        return NULL;
    pthread_mutex_init(&ds->lock, NULL);
    ds->max_pixels = o->max_pixels > 0 ? o->max_pixels : IMAGE_DEFAULT_MAX_PIXELS;
    ds->max_items = o->max_items > 0 ? o->max_items : DS_DEFAULT_MAX_ITEMS;
    ds->stop = o->stop;
    ds->progress = o->progress;
    ds->progress_ctx = o->progress_ctx;
    ds->root = strdup(o->path);
    if (!ds->root)
        goto out_fail;
    ds->real_root = realpath(o->path, NULL);
    if (!ds->real_root) {
        int e = errno;
        err_set(err, errlen, "%s: %s", o->path, strerror(e));
        *rc = -e;
        goto out_fail;
    }
    size_t rl = strlen(ds->root);
    while (rl > 1 && ds->root[rl - 1] == '/')
        ds->root[--rl] = 0;
    *rc = 0;
    return ds;
out_fail:
    dataset_destroy(ds);
    return NULL;
}

/* Fills the splits and classes from the layout o->format names; *has_valid tells whether
 * the layout brought its own validation split. */
static int ds_scan(dataset *ds, const ds_options *o, int *gray, int *has_valid, char *err,
                   size_t errlen)
{
    switch (o->format) {
    case DS_FOLDERS: {
        char *v = ds_asprintf("%s/valid", ds->root);
        if (!v)
            return -ENOMEM;
        *has_valid = ds_is_dir(v);
        free(v);
        return ds_open_folders(ds, gray, err, errlen);
    }
    case DS_CSV:
        return ds_open_csv(ds, o, gray, err, errlen);
    case DS_IDX:
        return ds_open_idx(ds, has_valid, err, errlen);
    default:
        err_set(err, errlen, "format: unknown (%d)", (int)o->format);
        return -EINVAL;
    }
}

/* The unlabelled test/ folder of a file dataset, when there is one. */
static int ds_scan_test(dataset *ds, int *gray, char *err, size_t errlen)
{
    char *t = ds_asprintf("%s/test", ds->root);
    if (!t)
        return -ENOMEM;
    int has_test = ds_is_dir(t);
    free(t);
    if (!has_test)
        return 0;
    return ds_add_folder(ds, &ds->split[SPLIT_TEST], "test", -1, gray, err, errlen);
}

int dataset_open(dataset **out, const ds_options *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!o || !o->path || !*o->path) {
        err_set(err, errlen, "path: missing");
        return -EINVAL;
    }
    double pct = o->valid_pct < 0 ? 0.2 : o->valid_pct;
    if (pct >= 1) {
        err_set(err, errlen, "valid_pct: %g is not below 1", o->valid_pct);
        return -EINVAL;
    }
    if (!ds_is_dir(o->path)) {
        err_set(err, errlen, "path: %s is not a folder", o->path);
        return -ENOENT;
    }
    int rc, gray = 1, has_valid = 0;
    dataset *ds = ds_create(o, &rc, err, errlen);
    if (!ds) {
        if (rc == -ENOMEM)
            err_set(err, errlen, "out of memory opening %s", o->path);
        return rc;
    }
    if (err && errlen)
        err[0] = 0;
    if ((rc = ds_scan(ds, o, &gray, &has_valid, err, errlen)))
        goto out_fail;
    if (!has_valid && (rc = split_valid(ds, pct, o->seed)))
        goto out_fail;
    if (o->format != DS_IDX && (rc = ds_scan_test(ds, &gray, err, errlen)))
        goto out_fail;
    if (ds->split[SPLIT_TRAIN].n == 0) {
        err_set(err, errlen, "%s: no readable training images (%d unreadable%s%s)",
                ds->root, ds->info.n_unreadable, ds->info.n_unreadable ? ", first: " : "",
                ds->info.n_unreadable ? ds->info.unreadable[0].reason : "");
        rc = -EINVAL;
        goto out_fail;
    }
    ds->info.channels = gray ? 1 : 3;
    ds_pixel_stats(ds);
    ds_size_stats(ds);
    for (int s = 0; s < 3; s++)
        ds->info.count[s] = ds->split[s].n;
    if (ds->split[SPLIT_TRAIN].n == 0) {
        err_set(err, errlen, "%s: no decodable training images", ds->root);
        rc = -EINVAL;
        goto out_fail;
    }
    *out = ds;
    return 0;

out_fail:
    if (rc == -ENOMEM && err && errlen && !err[0])
        err_set(err, errlen, "out of memory opening %s", o->path);
    dataset_destroy(ds);
    return rc;
}

void dataset_destroy(dataset *ds)
{
    if (!ds)
        return;
    for (int s = 0; s < 3; s++)
        ds_vec_free(&ds->split[s]);
    ds_idx_free(ds);
    if (ds->info.classes)
        ds_free_names(ds->info.classes, ds->info.n_classes);
    for (int i = 0; i < ds->info.n_unreadable; i++) {
        free(ds->info.unreadable[i].file);
        free(ds->info.unreadable[i].reason);
    }
    free(ds->info.unreadable);
    free(ds->unreadable_set);
    free(ds->root);
    free(ds->real_root);
    pthread_mutex_destroy(&ds->lock);
    free(ds);
}

const ds_info *dataset_info(const dataset *ds)
{
    return &ds->info;
}

static const ds_item *item_at(const dataset *ds, ds_split split, int i)
{
    if ((unsigned)split > SPLIT_TEST || i < 0 || i >= ds->split[split].n)
        return NULL;
    return &ds->split[split].v[i];
}

const char *dataset_item_name(const dataset *ds, ds_split split, int i)
{
    const ds_item *it = item_at(ds, split, i);
    if (!it)
        return NULL;
    return it->px ? ds_idx_item_name(ds, it) : it->name;
}

int dataset_item_label(const dataset *ds, ds_split split, int i)
{
    const ds_item *it = item_at(ds, split, i);
    return it ? it->label : -1;
}

void dataset_item_targets(const dataset *ds, ds_split split, int i, float *targets)
{
    const ds_item *it = item_at(ds, split, i);
    for (int k = 0; k < ds->info.n_classes; k++)
        targets[k] = 0;
    if (!it)
        return;
    if (it->targets) {
        for (int k = 0; k < ds->info.n_classes; k++)
            targets[k] = it->targets[k];
    } else if (it->label >= 0) {
        targets[it->label] = 1;
    }
}

int dataset_item_image(dataset *ds, ds_split split, int i, image *out, char *err,
                       size_t errlen)
{
    return dataset_item_image_min(ds, split, i, 0, out, err, errlen);
}

int dataset_item_view(const dataset *ds, ds_split split, int i, image *view)
{
    const ds_item *it = item_at(ds, split, i);
    if (!it || !it->px)
        return -ENOENT;
    view->w = it->w;
    view->h = it->h;
    view->c = 1;
    view->px = (uint8_t *)it->px;
    return 0;
}

int dataset_unreadable_copy(dataset *ds, ds_unreadable **out, int *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&ds->lock);
    int k = ds->info.n_unreadable, rc = 0;
    ds_unreadable *c = calloc(k ? k : 1, sizeof *c);
    if (!c) {
        rc = -ENOMEM;
        goto out_unlock;
    }
    for (int i = 0; i < k; i++) {
        c[i].file = strdup(ds->info.unreadable[i].file);
        c[i].reason = strdup(ds->info.unreadable[i].reason);
        if (!c[i].file || !c[i].reason) {
            ds_unreadable_free(c, i + 1);
            rc = -ENOMEM;
            goto out_unlock;
        }
    }
    *out = c;
    *n = k;
out_unlock:
    pthread_mutex_unlock(&ds->lock);
    return rc;
}

void ds_unreadable_free(ds_unreadable *list, int n)
{
    if (!list)
        return;
    for (int i = 0; i < n; i++) {
        free(list[i].file);
        free(list[i].reason);
    }
    free(list);
}

int dataset_item_image_min(dataset *ds, ds_split split, int i, int min_shorter, image *out,
                           char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const ds_item *it = item_at(ds, split, i);
    if (!it) {
        err_set(err, errlen, "item %d of split %d: out of range", i, (int)split);
        return -EINVAL;
    }
    if (it->px) {
        size_t n = (size_t)it->w * it->h;
        out->px = malloc(n);
        if (!out->px) {
            err_set(err, errlen, "out of memory");
            return -ENOMEM;
        }
        memcpy(out->px, it->px, n);
        out->w = it->w;
        out->h = it->h;
        out->c = 1;
        return 0;
    }
    char reason[256];
    char *full = ds_asprintf("%s/%s", ds->root, it->name);
    if (!full) {
        err_set(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = image_decode_file_min(out, full, min_shorter, ds->max_pixels, reason, sizeof reason);
    free(full);
    if (rc) {
        err_set(err, errlen, "%s: %s", it->name, reason);
        if (rc != -ENOMEM) {
            pthread_mutex_lock(&ds->lock);
            (void)ds_add_unreadable_locked(ds, it->name, reason);
            pthread_mutex_unlock(&ds->lock);
        }
    }
    return rc;
}
