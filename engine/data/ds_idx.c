/* ds_idx.c: the MNIST IDX layout: train-{images,labels} and t10k- (or test-) files,
 * plain or gzip, held in memory; class names from classes.txt or Fashion-MNIST's. */
#include "ds_internal.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#define IDX_MAX_ITEMS 100000000ll

static const char *const fashion_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};

/* Reads an IDX header of want_dims dimensions from gz into dim (n, rows, cols). */
static int idx_header(gzFile gz, const char *path, int want_dims, uint32_t dim[3],
                      int64_t max_pixels, char *err, size_t errlen)
{
    uint8_t hdr[16];
    int hlen = 4 + 4 * want_dims;
    if (gzread(gz, hdr, hlen) != hlen) {
        err_set(err, errlen, "%s: truncated IDX header", path);
        return -EINVAL;
    }
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != want_dims) {
        err_set(err, errlen, "%s: not an IDX file of unsigned bytes with %d dimension(s)",
                path, want_dims);
        return -EINVAL;
    }
    dim[0] = 0;
    dim[1] = dim[2] = 1;
    for (int d = 0; d < want_dims; d++)
        dim[d] = (uint32_t)hdr[4 + 4 * d] << 24 | (uint32_t)hdr[5 + 4 * d] << 16 |
                 (uint32_t)hdr[6 + 4 * d] << 8 | hdr[7 + 4 * d];
    if (dim[0] == 0 || dim[0] > IDX_MAX_ITEMS || dim[1] == 0 || dim[2] == 0 ||
        (uint64_t)dim[1] * dim[2] > (uint64_t)max_pixels) {
        err_set(err, errlen, "%s: bad IDX dimensions %u x %u x %u", path, dim[0], dim[1],
                dim[2]);
        return -EINVAL;
    }
    return 0;
}

/* Bytes read between looks at the stop flag: a big IDX file stops within a chunk. */
#define IDX_CHUNK ((size_t)16 << 20)

/* Between chunks of an IDX file: the items read so far (item_bytes 0: a labels file, not
 * counted) go to the progress as the files of a folder do, and a stop asked ends the
 * read. */
static int idx_tick(dataset *ds, size_t got, size_t *counted, size_t item_bytes,
                    const char *path, char *err, size_t errlen)
{
    if (item_bytes && ds->progress && got / item_bytes > *counted) {
        ds->files_seen += (int64_t)(got / item_bytes - *counted);
        *counted = got / item_bytes;
        ds->progress(ds->progress_ctx, ds->files_seen);
    }
    if (ds->stop && *ds->stop) {
        err_set(err, errlen, "the scan of %s was stopped", path);
        return -ECANCELED;
    }
    return 0;
}

/* Reads total bytes of data from gz into a new *out, IDX_CHUNK at a time. The buffer
 * grows with the data that actually arrives, so a header declaring far more than the
 * file holds (a gzip can say anything) costs only what the file holds before it is
 * refused. */
static int idx_read_data(dataset *ds, gzFile gz, const char *path, size_t total,
                         size_t item_bytes, uint8_t **out, char *err, size_t errlen)
{
    size_t got = 0, cap = 0, counted = 0;
    uint8_t *buf = NULL;
    int rc = 0;
    *out = NULL;
    for (;;) {
        if (got == cap) {
            if (cap == total)
                break;
            size_t ncap = cap ? cap * 2 : (size_t)1 << 20;
            ncap = ncap < total ? ncap : total;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                err_set(err, errlen, "%s: out of memory", path);
                return -ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        size_t chunk = cap - got > IDX_CHUNK ? IDX_CHUNK : cap - got;
        int r = gzread(gz, buf + got, (unsigned)chunk);
        if (r <= 0)
            break;
        got += (size_t)r;
        if ((rc = idx_tick(ds, got, &counted, item_bytes, path, err, errlen)) != 0) {
            free(buf);
            return rc;
        }
    }
    if (got != total) {
        err_set(err, errlen, "%s: truncated IDX data (%zu of %zu bytes)", path, got, total);
        free(buf);
        return -EINVAL;
    }
    *out = buf;
    return 0;
}

/* One IDX file (images idx3 or labels idx1), plain or gzip (zlib reads both). Items
 * beyond what ds may still hold are -EFBIG, refused from the header before any data is
 * read; a stop asked while reading is -ECANCELED. */
static int idx_read(dataset *ds, const char *path, int want_dims, uint8_t **data,
                    int64_t *n, int *rows, int *cols, int64_t max_pixels, char *err,
                    size_t errlen)
{
    *data = NULL;
    long long size = 0;
    int fd = data_open_regular(path, &size, err, errlen);
    if (fd < 0)
        return fd;
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        err_set(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    uint32_t dim[3];
    int rc = idx_header(gz, path, want_dims, dim, max_pixels, err, errlen);
    if (rc)
        goto out_close;
    rc = ds_check_room(ds, dim[0], path, err, errlen);
    if (rc)
        goto out_close;
    size_t total = (size_t)dim[0] * dim[1] * dim[2];
    /* A plain file's size says at once whether it holds what its header declares. */
    if (gzdirect(gz) && size - (4 + 4 * want_dims) < (long long)total) {
        err_set(err, errlen, "%s: truncated IDX data (%lld of %zu bytes)", path,
                size - (4 + 4 * want_dims), total);
        rc = -EINVAL;
        goto out_close;
    }
    rc = idx_read_data(ds, gz, path, total, want_dims == 3 ? (size_t)dim[1] * dim[2] : 0,
                       data, err, errlen);
    if (rc)
        goto out_close;
    *n = dim[0];
    *rows = (int)dim[1];
    *cols = (int)dim[2];
out_close:
    gzclose(gz);
    return rc;
}

/* Finds <prefix>-<kind>-idxN-ubyte[.gz] (or with a dot before idx); NULL if none. A
 * candidate that is not a regular file inside the dataset's folder (ds_entry_classify's rule
 * for images) is passed over, and the first such one is put in why as "name: reason". */
static char *idx_find(const dataset *ds, const char *prefix, const char *kind, int dims,
                      char *why, size_t whylen)
{
    static const char *const forms[] = {"%s-%s-idx%d-ubyte", "%s-%s-idx%d-ubyte.gz",
                                        "%s-%s.idx%d-ubyte", "%s-%s.idx%d-ubyte.gz"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char rel[128], reason[256];
        snprintf(rel, sizeof rel, forms[i], prefix, kind, dims);
        char *p = ds_asprintf("%s/%s", ds->root, rel);
        if (!p)
            return NULL;
        struct stat st;
        if (lstat(p, &st) == 0) {
            int k = ds_entry_classify(ds, rel, 0, reason, sizeof reason);
            if (k == ENTRY_FILE)
                return p;
            if (why && !why[0])
                err_set(why, whylen, "%s: %s", rel, k < 0 ? strerror(-k) : reason);
        }
        free(p);
    }
    return NULL;
}

/* The items of one split, their pixels views into ds->idx[which]; their names come from
 * ds_idx_item_name. */
static int idx_add_items(dataset *ds, int which, const uint8_t *labels, int rows, int cols,
                         int *max_label, const char *ip)
{
    idx_part *part = &ds->idx[which];
    const char *base = strrchr(ip, '/') + 1;
    size_t blen = strlen(base);
    if (blen > 3 && strcmp(base + blen - 3, ".gz") == 0)
        blen -= 3;
    part->base = strndup(base, blen);
    item_vec *v = &ds->split[which == 0 ? SPLIT_TRAIN : SPLIT_VALID];
    if (!part->base || ds_vec_reserve(v, part->n))
        return -ENOMEM;
    for (int64_t i = 0; i < part->n; i++) {
        ds_item it = {.label = labels[i], .w = cols, .h = rows,
                      .px = part->blob + (size_t)i * part->item_px};
        v->v[v->n++] = it;
        if (labels[i] > *max_label)
            *max_label = labels[i];
    }
    return 0;
}

static int idx_load_split(dataset *ds, const char *prefix, int which, int *max_label,
                          char *err, size_t errlen)
{
    char why[512] = "";
    char *ip = idx_find(ds, prefix, "images", 3, why, sizeof why);
    char *lp = idx_find(ds, prefix, "labels", 1, why, sizeof why);
    idx_part *part = &ds->idx[which];
    uint8_t *labels = NULL;
    int64_t nl = 0;
    int rows, cols, one, rc;
    if (!ip || !lp) {
        if (why[0])
            err_set(err, errlen, "%s/%s", ds->root, why);
        else
            err_set(err, errlen, "%s: no %s-%s-idx%d-ubyte[.gz] file", ds->root, prefix,
                    ip ? "labels" : "images", ip ? 1 : 3);
        rc = -ENOENT;
        goto out_free;
    }
    rc = idx_read(ds, ip, 3, &part->blob, &part->n, &rows, &cols, ds->max_pixels, err,
                  errlen);
    if (rc)
        goto out_free;
    part->item_px = (size_t)rows * cols;
    rc = idx_read(ds, lp, 1, &labels, &nl, &one, &one, INT64_MAX, err, errlen);
    if (rc)
        goto out_free;
    if (nl != part->n) {
        err_set(err, errlen, "%s: %lld labels for %lld images", lp, (long long)nl,
                (long long)part->n);
        rc = -EINVAL;
        goto out_free;
    }
    rc = idx_add_items(ds, which, labels, rows, cols, max_label, ip);
    if (rc)
        err_set(err, errlen, "out of memory loading %s", ip);
out_free:
    free(labels);
    free(ip);
    free(lp);
    return rc;
}

/* Makes the names of every item of part, "<base>#<i>", each in name_stride bytes. */
static int idx_make_names(idx_part *part)
{
    size_t stride = strlen(part->base) + (size_t)snprintf(NULL, 0, "#%lld",
                                                          (long long)part->n - 1) + 1;
    char *names = malloc(part->n * stride);
    if (!names)
        return -ENOMEM;
    for (int64_t i = 0; i < part->n; i++)
        snprintf(names + i * stride, stride, "%s#%lld", part->base, (long long)i);
    part->names = names;
    part->name_stride = stride;
    return 0;
}

const char *ds_idx_item_name(const dataset *ds, const ds_item *it)
{
    dataset *mds = (dataset *)ds; /* the names are made once, under the lock */
    const char *name = NULL;
    pthread_mutex_lock(&mds->lock);
    for (int k = 0; k < 2 && !name; k++) {
        idx_part *part = &mds->idx[k];
        uintptr_t p = (uintptr_t)it->px, b = (uintptr_t)part->blob;
        if (!part->blob || p < b || p - b >= (size_t)part->n * part->item_px)
            continue;
        if (!part->names && idx_make_names(part))
            break;
        name = part->names + (p - b) / part->item_px * part->name_stride;
    }
    pthread_mutex_unlock(&mds->lock);
    return name;
}

void ds_idx_free(dataset *ds)
{
    for (int k = 0; k < 2; k++) {
        free(ds->idx[k].blob);
        free(ds->idx[k].base);
        free(ds->idx[k].names);
    }
}

/* Class names of an idx set: classes.txt beside the files, the Fashion-MNIST names for a
 * folder that says fashion, else the label numbers. */
static int idx_classes(dataset *ds, int n_classes)
{
    char **cl = calloc(n_classes, sizeof(char *));
    if (!cl)
        return -ENOMEM;
    ds->info.classes = cl;
    ds->info.n_classes = n_classes;
    FILE *fp = NULL;
    char reason[256], *path = ds_asprintf("%s/classes.txt", ds->root);
    struct stat st;
    if (!path)
        return -ENOMEM;
    if (lstat(path, &st) == 0) {
        int k = ds_entry_classify(ds, "classes.txt", 0, reason, sizeof reason);
        if (k == ENTRY_FILE)
            data_fopen_regular(path, "r", &fp, NULL, NULL, 0);
        else if (k < 0 || ds_add_unreadable_locked(ds, "classes.txt", reason)) {
            free(path);
            return -ENOMEM;
        }
    }
    free(path);
    if (fp) {
        char line[256];
        int i = 0;
        while (i < n_classes && fgets(line, sizeof line, fp)) {
            char *s = ds_trim_field(line);
            if (*s && !(cl[i++] = strdup(s))) {
                fclose(fp);
                return -ENOMEM;
            }
        }
        fclose(fp);
    }
    int fashion = 0;
    for (const char *p = ds->root; *p && !fashion; p++)
        fashion = strncasecmp(p, "fashion", 7) == 0;
    for (int i = 0; i < n_classes; i++) {
        if (cl[i])
            continue;
        cl[i] = fashion && n_classes == 10 ? strdup(fashion_names[i]) : ds_asprintf("%d", i);
        if (!cl[i])
            return -ENOMEM;
    }
    return 0;
}

int ds_open_idx(dataset *ds, int *has_valid, char *err, size_t errlen)
{
    int max_label = -1;
    int rc = idx_load_split(ds, "train", 0, &max_label, err, errlen);
    if (rc)
        return rc;
    /* The validation split: MNIST's t10k files, or test-* in some redistributions. */
    const char *vp = "t10k";
    char why[512] = "";
    char *tp = idx_find(ds, vp, "images", 3, why, sizeof why);
    if (!tp && !why[0]) {
        vp = "test";
        tp = idx_find(ds, vp, "images", 3, why, sizeof why);
    }
    *has_valid = tp != NULL;
    free(tp);
    if (why[0] && !*has_valid) {
        err_set(err, errlen, "%s/%s", ds->root, why);
        return -EINVAL;
    }
    if (*has_valid && (rc = idx_load_split(ds, vp, 1, &max_label, err, errlen)))
        return rc;
    rc = idx_classes(ds, max_label + 1);
    if (rc)
        err_set(err, errlen, "out of memory naming classes");
    return rc;
}
