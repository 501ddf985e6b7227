/* dataset.c: datasets in fast.ai's three layouts (class folders, a labels csv, MNIST IDX
 * files): scanning, the seeded validation split, statistics, and item access. */
#include "data.h"
#include "internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "rng.h"

/* Training images decoded for the mean/std statistics of a file dataset: enough for
 * three decimals, few enough that registering a large set stays quick. IDX datasets
 * are in memory and use every image. */
#define STATS_SAMPLE_FILES 1000
/* Large JPEGs are decoded shrunk for the statistics: a mean and std do not need detail. */
#define STATS_MIN_SHORTER 64
#define IDX_MAX_ITEMS 100000000ll
#define STREAM_SPLIT 0x73706c6974ull /* "split" */

typedef struct ds_item {
    char *name;           /* relative to the root */
    int label;            /* first label; -1 when unlabelled */
    int w, h;
    const uint8_t *px;    /* idx: the pixels inside the loaded blob; else NULL */
    uint8_t *targets;     /* multi-label: n_classes flags; else NULL */
} ds_item;

typedef struct item_vec {
    ds_item *v;
    int n, cap;
} item_vec;

struct dataset {
    char *root;
    char *real_root;        /* realpath of root: where symlinks may lead */
    int64_t max_pixels;
    ds_info info;
    int unreadable_cap;
    item_vec split[3];
    uint8_t *idx_blob[2];   /* idx: train and t10k pixels */
    pthread_mutex_t lock;   /* guards the unreadable list */
};

static const char *const fashion_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int vec_push(item_vec *v, const ds_item *it)
{
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 64;
        ds_item *nv = realloc(v->v, sizeof(ds_item) * cap);
        if (!nv)
            return -ENOMEM;
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = *it;
    return 0;
}

static void vec_free(item_vec *v)
{
    for (int i = 0; i < v->n; i++) {
        free(v->v[i].name);
        free(v->v[i].targets);
    }
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}

/* Adds (file, reason) to the unreadable list unless the file is already there.
 * Caller holds ds->lock or is the only thread. */
static int add_unreadable_locked(dataset *ds, const char *file, const char *reason)
{
    ds_info *in = &ds->info;
    for (int i = 0; i < in->n_unreadable; i++)
        if (strcmp(in->unreadable[i].file, file) == 0)
            return 0;
    if (in->n_unreadable == ds->unreadable_cap) {
        int cap = ds->unreadable_cap ? ds->unreadable_cap * 2 : 16;
        ds_unreadable *nu = realloc(in->unreadable, sizeof(ds_unreadable) * cap);
        if (!nu)
            return -ENOMEM;
        in->unreadable = nu;
        ds->unreadable_cap = cap;
    }
    char *f = strdup(file), *r = strdup(reason);
    if (!f || !r) {
        free(f);
        free(r);
        return -ENOMEM;
    }
    in->unreadable[in->n_unreadable].file = f;
    in->unreadable[in->n_unreadable].reason = r;
    in->n_unreadable++;
    return 0;
}

/* ---- listing folders ------------------------------------------------------------------ */

int path_is_under(const char *path, const char *root)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    return !strncmp(path, root, n) && (path[n] == '/' || path[n] == 0);
}

typedef enum entry_kind { ENTRY_BAD, ENTRY_FILE, ENTRY_DIR } entry_kind;

static entry_kind kind_of(mode_t m, char *reason, size_t len)
{
    if (S_ISREG(m))
        return ENTRY_FILE;
    if (S_ISDIR(m))
        return ENTRY_DIR;
    set_err(reason, len, "not a regular file");
    return ENTRY_BAD;
}

/* What root/rel is, found without opening it (a FIFO or device blocks an open or a read).
 * A symlink, or any path when resolve is set (it may hold ".."), counts by what its real
 * path is, and only if that stays inside the dataset root; plain entries cost one lstat
 * and no realpath, which matters for folders of 70,000 images. ENTRY_BAD with the reason,
 * or -ENOMEM. */
static int entry_classify(const dataset *ds, const char *rel, int resolve, char *reason,
                          size_t len)
{
    char *full = xasprintf("%s/%s", ds->root, rel);
    if (!full)
        return -ENOMEM;
    struct stat st;
    int rc = ENTRY_BAD;
    if (lstat(full, &st) != 0) {
        set_err(reason, len, "%s", strerror(errno));
    } else if (S_ISLNK(st.st_mode) || resolve) {
        int link = S_ISLNK(st.st_mode);
        char *real = realpath(full, NULL);
        if (!real) {
            int e = errno;
            if (e == ENOMEM)
                rc = -ENOMEM;
            else if (e == ELOOP)
                set_err(reason, len, "symbolic link loop");
            else if (e == ENOENT && link)
                set_err(reason, len, "dangling symbolic link");
            else
                set_err(reason, len, "%s", strerror(e));
        } else if (!path_is_under(real, ds->real_root)) {
            set_err(reason, len, "outside the dataset root");
        } else if (stat(real, &st) != 0) {
            set_err(reason, len, "%s", strerror(errno));
        } else {
            rc = kind_of(st.st_mode, reason, len);
        }
        free(real);
    } else {
        rc = kind_of(st.st_mode, reason, len);
    }
    free(full);
    return rc;
}

/* Sorted names in root/sub (hidden ones skipped); want picks folders or regular files.
 * Entries that are neither, or that lead out of the root, join the unreadable list. */
static int list_dir(dataset *ds, const char *sub, entry_kind want, char ***out, int *n_out,
                    char *err, size_t errlen)
{
    *out = NULL;
    *n_out = 0;
    char reason[256];
    int k = entry_classify(ds, sub, 0, reason, sizeof reason);
    if (k < 0)
        return k;
    if (k != ENTRY_DIR) {
        set_err(err, errlen, "%s: %s", sub, k == ENTRY_BAD ? reason : strerror(ENOTDIR));
        return -EINVAL;
    }
    char *dir = xasprintf("%s/%s", ds->root, sub);
    if (!dir)
        return -ENOMEM;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        set_err(err, errlen, "%s: %s", dir, strerror(e));
        free(dir);
        return -e;
    }
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *rel = xasprintf("%s/%s", sub, de->d_name);
        if (!rel) {
            rc = -ENOMEM;
            break;
        }
        k = entry_classify(ds, rel, 0, reason, sizeof reason);
        if (k == ENTRY_BAD)
            k = add_unreadable_locked(ds, rel, reason);
        free(rel);
        if (k < 0) {
            rc = k;
            break;
        }
        if (k != (int)want)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, sizeof(char *) * cap);
            if (!nn) {
                rc = -ENOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) {
        for (int i = 0; i < n; i++)
            free(names[i]);
        free(names);
        set_err(err, errlen, "out of memory listing %s", dir);
        free(dir);
        return rc;
    }
    free(dir);
    if (n)
        qsort(names, n, sizeof(char *), cmp_str);
    *out = names;
    *n_out = n;
    return 0;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Probes root/rel; readable files join `into` (taking rel), others the unreadable list.
 * *gray is cleared by any colour image. */
static int add_file(dataset *ds, item_vec *into, char *rel, int label, int *gray)
{
    char reason[256];
    char *full = xasprintf("%s/%s", ds->root, rel);
    if (!full) {
        free(rel);
        return -ENOMEM;
    }
    int w, h, c;
    int rc = image_probe_file_c(full, &w, &h, &c, ds->max_pixels, reason, sizeof reason);
    free(full);
    if (rc) {
        rc = add_unreadable_locked(ds, rel, reason);
        free(rel);
        return rc;
    }
    if (c != 1)
        *gray = 0;
    ds_item it = {.name = rel, .label = label, .w = w, .h = h};
    rc = vec_push(into, &it);
    if (rc)
        free(rel);
    return rc;
}

/* Adds every file of root/sub (sorted) with this label. */
static int add_folder(dataset *ds, item_vec *into, const char *sub, int label, int *gray,
                      char *err, size_t errlen)
{
    char **files;
    int n;
    int rc = list_dir(ds, sub, ENTRY_FILE, &files, &n, err, errlen);
    if (rc)
        return rc;
    for (int i = 0; i < n && rc == 0; i++) {
        char *rel = xasprintf("%s/%s", sub, files[i]);
        rc = rel ? add_file(ds, into, rel, label, gray) : -ENOMEM;
    }
    free_names(files, n);
    if (rc)
        set_err(err, errlen, "out of memory scanning %s", sub);
    return rc;
}

static int class_index(char **classes, int n, const char *name)
{
    char *const *hit = bsearch(&name, classes, n, sizeof(char *), cmp_str);
    return hit ? (int)(hit - classes) : -1;
}

/* ---- the validation split ------------------------------------------------------------- */

/* Moves round(n * pct) items of train, chosen by a seeded permutation, to valid; both keep
 * their original order so the split is stable for a seed. */
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
    ds_item *keep = malloc(sizeof(ds_item) * n);
    ds_item *vv = malloc(sizeof(ds_item) * n_valid);
    int rc = -ENOMEM;
    if (!perm || !is_valid || !keep || !vv)
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
            keep[nk++] = tr->v[i];
    }
    free(tr->v);
    tr->v = keep;
    tr->n = tr->cap = nk;
    keep = NULL;
    free(va->v);
    va->v = vv;
    va->n = va->cap = nv;
    vv = NULL;
    rc = 0;
out_free:
    free(perm);
    free(is_valid);
    free(keep);
    free(vv);
    return rc;
}

/* ---- formats ------------------------------------------------------------------------- */

static int open_folders(dataset *ds, int *gray, char *err, size_t errlen)
{
    char *train = xasprintf("%s/train", ds->root), *valid = xasprintf("%s/valid", ds->root);
    char **tc = NULL, **vc = NULL, **all = NULL;
    int ntc = 0, nvc = 0, rc = -ENOMEM;
    if (!train || !valid)
        goto out_free;
    rc = list_dir(ds, "train", ENTRY_DIR, &tc, &ntc, err, errlen);
    if (rc)
        goto out_free;
    if (is_dir(valid) && (rc = list_dir(ds, "valid", ENTRY_DIR, &vc, &nvc, err, errlen)))
        goto out_free;
    if (ntc == 0) {
        set_err(err, errlen, "%s has no class folders", train);
        rc = -EINVAL;
        goto out_free;
    }
    /* Classes: the sorted union of train's and valid's class folders. */
    rc = -ENOMEM;
    all = malloc(sizeof(char *) * (ntc + nvc));
    if (!all)
        goto out_free;
    int n = 0;
    for (int i = 0; i < ntc; i++)
        all[n++] = tc[i];
    for (int i = 0; i < nvc; i++)
        if (!bsearch(&vc[i], tc, ntc, sizeof(char *), cmp_str))
            all[n++] = vc[i];
    qsort(all, n, sizeof(char *), cmp_str);
    ds->info.classes = calloc(n, sizeof(char *));
    if (!ds->info.classes)
        goto out_free;
    for (int i = 0; i < n; i++)
        if (!(ds->info.classes[ds->info.n_classes++] = strdup(all[i])))
            goto out_free;

    for (int i = 0; i < ntc; i++) {
        char *sub = xasprintf("train/%s", tc[i]);
        if (!sub)
            goto out_free;
        rc = add_folder(ds, &ds->split[SPLIT_TRAIN], sub,
                        class_index(ds->info.classes, n, tc[i]), gray, err, errlen);
        free(sub);
        if (rc)
            goto out_free;
    }
    for (int i = 0; i < nvc; i++) {
        char *sub = xasprintf("valid/%s", vc[i]);
        rc = -ENOMEM;
        if (!sub)
            goto out_free;
        rc = add_folder(ds, &ds->split[SPLIT_VALID], sub,
                        class_index(ds->info.classes, n, vc[i]), gray, err, errlen);
        free(sub);
        if (rc)
            goto out_free;
    }
    rc = 0;
out_free:
    free(all);
    free_names(tc, ntc);
    free_names(vc, nvc);
    free(train);
    free(valid);
    return rc;
}

/* Strips surrounding blanks and one pair of double quotes, in place. */
static char *trim_field(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    if (e - s >= 2 && s[0] == '"' && e[-1] == '"') {
        e[-1] = 0;
        s++;
    }
    return s;
}

typedef struct csv_row {
    char *file;
    char **labels;
    int n_labels;
} csv_row;

static void csv_rows_free(csv_row *rows, int n)
{
    for (int i = 0; i < n; i++) {
        free(rows[i].file);
        free_names(rows[i].labels, rows[i].n_labels);
    }
    free(rows);
}

/* Reads `file,labels` rows (after a header line); labels are separated by spaces. */
static int csv_read(const char *path, csv_row **out, int *n_out, char *err, size_t errlen)
{
    FILE *fp;
    int frc = data_fopen_regular(path, "r", &fp, NULL, err, errlen);
    if (frc)
        return frc;
    csv_row *rows = NULL;
    int n = 0, cap = 0, rc = 0, line_no = 0;
    char *line = NULL;
    size_t linecap = 0;
    while (getline(&line, &linecap, fp) >= 0) {
        line_no++;
        if (line_no == 1)
            continue; /* header */
        char *comma = strchr(line, ',');
        char *file = trim_field(comma ? (*comma = 0, line) : line);
        if (*file == 0 && !comma)
            continue; /* blank line */
        if (!comma || *file == 0) {
            set_err(err, errlen, "%s line %d: expected file,labels", path, line_no);
            rc = -EINVAL;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            csv_row *nr = realloc(rows, sizeof(csv_row) * cap);
            if (!nr) {
                rc = -ENOMEM;
                break;
            }
            rows = nr;
        }
        csv_row *r = &rows[n];
        memset(r, 0, sizeof *r);
        n++;
        if (!(r->file = strdup(file))) {
            rc = -ENOMEM;
            break;
        }
        char *save = NULL;
        for (char *tok = strtok_r(trim_field(comma + 1), " \t", &save); tok;
             tok = strtok_r(NULL, " \t", &save)) {
            char **nl = realloc(r->labels, sizeof(char *) * (r->n_labels + 1));
            if (!nl) {
                rc = -ENOMEM;
                break;
            }
            r->labels = nl;
            if (!(r->labels[r->n_labels] = strdup(tok))) {
                rc = -ENOMEM;
                break;
            }
            r->n_labels++;
        }
        if (rc)
            break;
    }
    free(line);
    fclose(fp);
    if (rc) {
        if (rc == -ENOMEM)
            set_err(err, errlen, "out of memory reading %s", path);
        csv_rows_free(rows, n);
        return rc;
    }
    *out = rows;
    *n_out = n;
    return 0;
}

/* The csv may name files without their extension (Kaggle's planet set does). */
static char *csv_resolve(const dataset *ds, const char *dir, const char *file)
{
    static const char *const exts[] = {"", ".jpg", ".png", ".jpeg", ".JPG", ".PNG"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        char *full = xasprintf("%s/%s/%s%s", ds->root, dir, file, exts[i]);
        if (!full)
            return NULL;
        struct stat st;
        int ok = stat(full, &st) == 0 && S_ISREG(st.st_mode);
        free(full);
        if (ok)
            return xasprintf("%s/%s%s", dir, file, exts[i]);
    }
    return xasprintf("%s/%s", dir, file);
}

static int open_csv(dataset *ds, const ds_options *o, int *gray, char *err, size_t errlen)
{
    const char *csv_name = o->csv && *o->csv ? o->csv : "labels.csv";
    const char *dir = o->csv_dir && *o->csv_dir ? o->csv_dir : "train";
    char *csv_path = xasprintf("%s/%s", ds->root, csv_name);
    if (!csv_path)
        return -ENOMEM;
    csv_row *rows = NULL;
    int n = 0;
    char **uniq = NULL;
    int rc = csv_read(csv_path, &rows, &n, err, errlen);
    free(csv_path);
    if (rc)
        return rc;
    if (n == 0) {
        set_err(err, errlen, "%s: no rows after the header", csv_name);
        rc = -EINVAL;
        goto out_free;
    }
    int total = 0, multi = 0;
    for (int i = 0; i < n; i++) {
        total += rows[i].n_labels;
        if (rows[i].n_labels > 1)
            multi = 1;
    }
    rc = -ENOMEM;
    uniq = malloc(sizeof(char *) * (total ? total : 1));
    if (!uniq)
        goto out_free;
    int nu = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < rows[i].n_labels; k++)
            uniq[nu++] = rows[i].labels[k];
    qsort(uniq, nu, sizeof(char *), cmp_str);
    int nc = 0;
    for (int i = 0; i < nu; i++)
        if (nc == 0 || strcmp(uniq[nc - 1], uniq[i]) != 0)
            uniq[nc++] = uniq[i];
    if (nc == 0) {
        set_err(err, errlen, "%s: no labels", csv_name);
        rc = -EINVAL;
        goto out_free;
    }
    ds->info.classes = calloc(nc, sizeof(char *));
    if (!ds->info.classes)
        goto out_free;
    for (int i = 0; i < nc; i++)
        if (!(ds->info.classes[ds->info.n_classes++] = strdup(uniq[i])))
            goto out_free;
    ds->info.multi_label = multi;

    /* A row can name any path; only one with a "/" (it may climb out with "..") or below
     * a folder that is not plainly root/dir (a link) needs a realpath. */
    char *dir_full = xasprintf("%s/%s", ds->root, dir);
    char *dir_want = xasprintf("%s/%s", ds->real_root, dir);
    char *dir_real = dir_full ? realpath(dir_full, NULL) : NULL;
    int dir_plain = dir_real && dir_want && strcmp(dir_real, dir_want) == 0;
    free(dir_full);
    free(dir_want);
    free(dir_real);
    for (int i = 0; i < n; i++) {
        csv_row *r = &rows[i];
        char *rel = csv_resolve(ds, dir, r->file);
        if (!rel)
            goto out_free;
        const char *why = NULL;
        char reason[256];
        if (r->n_labels == 0 && !multi) {
            why = "no label in the csv";
        } else {
            int k = entry_classify(ds, rel, !dir_plain || strchr(r->file, '/'), reason,
                                   sizeof reason);
            if (k < 0) {
                free(rel);
                goto out_free;
            }
            if (k != ENTRY_FILE)
                why = k == ENTRY_BAD ? reason : "not a regular file";
        }
        if (why) {
            rc = add_unreadable_locked(ds, rel, why);
            free(rel);
            if (rc)
                goto out_free;
            rc = -ENOMEM;
            continue;
        }
        int before = ds->split[SPLIT_TRAIN].n;
        int label = r->n_labels ? class_index(ds->info.classes, nc, r->labels[0]) : -1;
        rc = add_file(ds, &ds->split[SPLIT_TRAIN], rel, label, gray);
        if (rc)
            goto out_free;
        rc = -ENOMEM;
        if (multi && ds->split[SPLIT_TRAIN].n > before) {
            uint8_t *t = calloc(nc, 1);
            if (!t)
                goto out_free;
            for (int k = 0; k < r->n_labels; k++) {
                int ci = class_index(ds->info.classes, nc, r->labels[k]);
                if (ci >= 0)
                    t[ci] = 1;
            }
            ds->split[SPLIT_TRAIN].v[before].targets = t;
        }
    }
    rc = 0;
out_free:
    free(uniq);
    csv_rows_free(rows, n);
    return rc;
}

/* One IDX file (images idx3 or labels idx1), plain or gzip (zlib reads both). */
static int idx_read(const char *path, int want_dims, uint8_t **data, int64_t *n, int *rows,
                    int *cols, int64_t max_pixels, char *err, size_t errlen)
{
    *data = NULL;
    int fd = data_open_regular(path, NULL, err, errlen);
    if (fd < 0)
        return fd;
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        set_err(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    int rc = -EINVAL;
    uint8_t hdr[16];
    int hlen = 4 + 4 * want_dims;
    if (gzread(gz, hdr, hlen) != hlen) {
        set_err(err, errlen, "%s: truncated IDX header", path);
        goto out_close;
    }
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != want_dims) {
        set_err(err, errlen, "%s: not an IDX file of unsigned bytes with %d dimension(s)", path,
                want_dims);
        goto out_close;
    }
    uint32_t dim[3] = {0, 1, 1};
    for (int d = 0; d < want_dims; d++)
        dim[d] = (uint32_t)hdr[4 + 4 * d] << 24 | (uint32_t)hdr[5 + 4 * d] << 16 |
                 (uint32_t)hdr[6 + 4 * d] << 8 | hdr[7 + 4 * d];
    if (dim[0] == 0 || dim[0] > IDX_MAX_ITEMS || dim[1] == 0 || dim[2] == 0 ||
        (uint64_t)dim[1] * dim[2] > (uint64_t)max_pixels) {
        set_err(err, errlen, "%s: bad IDX dimensions %u x %u x %u", path, dim[0], dim[1],
                dim[2]);
        goto out_close;
    }
    size_t total = (size_t)dim[0] * dim[1] * dim[2], got = 0, cap = 0;
    /* The buffer grows with the data rather than trusting the header: a file of a few bytes
     * that claims terabytes is truncated, not a reason to allocate them. */
    uint8_t *buf = NULL;
    while (got < total) {
        if (got == cap) {
            size_t grow = cap ? cap : (size_t)1 << 20;
            cap = total - cap > grow ? cap + grow : total;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                set_err(err, errlen, "%s: out of memory", path);
                free(buf);
                rc = -ENOMEM;
                goto out_close;
            }
            buf = nb;
        }
        size_t chunk = cap - got > (1u << 30) ? (1u << 30) : cap - got;
        int r = gzread(gz, buf + got, (unsigned)chunk);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got != total) {
        set_err(err, errlen, "%s: truncated IDX data (%zu of %zu bytes)", path, got, total);
        free(buf);
        goto out_close;
    }
    *data = buf;
    *n = dim[0];
    *rows = (int)dim[1];
    *cols = (int)dim[2];
    rc = 0;
out_close:
    gzclose(gz);
    return rc;
}

/* Finds <prefix>-<kind>-idxN-ubyte[.gz] (or with a dot before idx); NULL if none. A
 * candidate that is not a regular file inside the dataset's folder (entry_classify's rule
 * for images) is passed over, and the first such one is put in why as "name: reason". */
static char *idx_find(const dataset *ds, const char *prefix, const char *kind, int dims,
                      char *why, size_t whylen)
{
    static const char *const forms[] = {"%s-%s-idx%d-ubyte", "%s-%s-idx%d-ubyte.gz",
                                        "%s-%s.idx%d-ubyte", "%s-%s.idx%d-ubyte.gz"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char rel[128], reason[256];
        snprintf(rel, sizeof rel, forms[i], prefix, kind, dims);
        char *p = xasprintf("%s/%s", ds->root, rel);
        if (!p)
            return NULL;
        struct stat st;
        if (lstat(p, &st) == 0) {
            int k = entry_classify(ds, rel, 0, reason, sizeof reason);
            if (k == ENTRY_FILE)
                return p;
            if (why && !why[0])
                set_err(why, whylen, "%s: %s", rel, k < 0 ? strerror(-k) : reason);
        }
        free(p);
    }
    return NULL;
}

static int idx_load_split(dataset *ds, const char *prefix, int which, int *max_label,
                          char *err, size_t errlen)
{
    char why[512] = "";
    char *ip = idx_find(ds, prefix, "images", 3, why, sizeof why);
    char *lp = idx_find(ds, prefix, "labels", 1, why, sizeof why);
    uint8_t *labels = NULL;
    int64_t n = 0, nl = 0;
    int rows, cols, one, rc;
    if (!ip || !lp) {
        if (why[0])
            set_err(err, errlen, "%s/%s", ds->root, why);
        else
            set_err(err, errlen, "%s: no %s-%s-idx%d-ubyte[.gz] file", ds->root, prefix,
                    ip ? "labels" : "images", ip ? 1 : 3);
        rc = -ENOENT;
        goto out_free;
    }
    rc = idx_read(ip, 3, &ds->idx_blob[which], &n, &rows, &cols, ds->max_pixels, err, errlen);
    if (rc)
        goto out_free;
    rc = idx_read(lp, 1, &labels, &nl, &one, &one, INT64_MAX, err, errlen);
    if (rc)
        goto out_free;
    if (nl != n) {
        set_err(err, errlen, "%s: %lld labels for %lld images", lp, (long long)nl, (long long)n);
        rc = -EINVAL;
        goto out_free;
    }
    const char *base = strrchr(ip, '/') + 1;
    size_t blen = strlen(base);
    if (blen > 3 && strcmp(base + blen - 3, ".gz") == 0)
        blen -= 3;
    item_vec *v = &ds->split[which == 0 ? SPLIT_TRAIN : SPLIT_VALID];
    for (int64_t i = 0; i < n; i++) {
        ds_item it = {.label = labels[i], .w = cols, .h = rows,
                      .px = ds->idx_blob[which] + (size_t)i * rows * cols};
        it.name = xasprintf("%.*s#%lld", (int)blen, base, (long long)i);
        if (!it.name || vec_push(v, &it)) {
            free(it.name);
            set_err(err, errlen, "out of memory loading %s", ip);
            rc = -ENOMEM;
            goto out_free;
        }
        if (labels[i] > *max_label)
            *max_label = labels[i];
    }
out_free:
    free(labels);
    free(ip);
    free(lp);
    return rc;
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
    char reason[256], *path = xasprintf("%s/classes.txt", ds->root);
    struct stat st;
    if (!path)
        return -ENOMEM;
    if (lstat(path, &st) == 0) {
        int k = entry_classify(ds, "classes.txt", 0, reason, sizeof reason);
        if (k == ENTRY_FILE)
            data_fopen_regular(path, "r", &fp, NULL, NULL, 0);
        else if (k < 0 || add_unreadable_locked(ds, "classes.txt", reason)) {
            free(path);
            return -ENOMEM;
        }
    }
    free(path);
    if (fp) {
        char line[256];
        int i = 0;
        while (i < n_classes && fgets(line, sizeof line, fp)) {
            char *s = trim_field(line);
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
        cl[i] = fashion && n_classes == 10 ? strdup(fashion_names[i]) : xasprintf("%d", i);
        if (!cl[i])
            return -ENOMEM;
    }
    return 0;
}

static int open_idx(dataset *ds, int *has_valid, char *err, size_t errlen)
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
        set_err(err, errlen, "%s/%s", ds->root, why);
        return -EINVAL;
    }
    if (*has_valid && (rc = idx_load_split(ds, vp, 1, &max_label, err, errlen)))
        return rc;
    rc = idx_classes(ds, max_label + 1);
    if (rc)
        set_err(err, errlen, "out of memory naming classes");
    return rc;
}

/* ---- statistics ---------------------------------------------------------------------- */

static void size_stats(dataset *ds)
{
    ds_info *in = &ds->info;
    int n = 0;
    for (int s = 0; s < 3; s++)
        n += ds->split[s].n;
    if (n == 0)
        return;
    int *w = malloc(sizeof(int) * n), *h = malloc(sizeof(int) * n);
    if (w && h) {
        int k = 0;
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < ds->split[s].n; i++) {
                w[k] = ds->split[s].v[i].w;
                h[k] = ds->split[s].v[i].h;
                k++;
            }
        qsort(w, n, sizeof(int), cmp_int);
        qsort(h, n, sizeof(int), cmp_int);
        in->min_w = w[0];
        in->max_w = w[n - 1];
        in->median_w = w[n / 2];
        in->min_h = h[0];
        in->max_h = h[n - 1];
        in->median_h = h[n / 2];
    }
    free(w);
    free(h);
}

/* Per-channel mean and std (0..1) of the training split, over every idx image or an
 * evenly spaced sample of file images. Sampled images that fail to decode leave the split
 * (and join the unreadable list). */
static void pixel_stats(dataset *ds)
{
    ds_info *in = &ds->info;
    item_vec *tr = &ds->split[SPLIT_TRAIN];
    double sum[3] = {0}, sq[3] = {0}, cnt = 0;
    int n = tr->n, take = n;
    int is_idx = n > 0 && tr->v[0].px != NULL;
    if (!is_idx && take > STATS_SAMPLE_FILES)
        take = STATS_SAMPLE_FILES;
    for (int t = 0; t < take; t++) {
        int i = (int)((int64_t)t * n / take);
        image im;
        if (dataset_item_image_min(ds, SPLIT_TRAIN, i, STATS_MIN_SHORTER, &im, NULL, 0) != 0) {
            /* Listed as unreadable by dataset_item_image; marked to leave the split. */
            tr->v[i].w = -1;
            continue;
        }
        size_t np = (size_t)im.w * im.h;
        double s[3] = {0}, q[3] = {0};
        for (size_t p = 0; p < np; p++)
            for (int ch = 0; ch < im.c; ch++) {
                double v = im.px[p * im.c + ch];
                s[ch] += v;
                q[ch] += v * v;
            }
        for (int ch = 0; ch < 3; ch++) {
            int src = im.c == 1 ? 0 : ch;
            sum[ch] += s[src];
            sq[ch] += q[src];
        }
        cnt += (double)np;
        image_free(&im);
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (tr->v[i].w < 0) {
            free(tr->v[i].name);
            free(tr->v[i].targets);
        } else {
            tr->v[k++] = tr->v[i];
        }
    }
    tr->n = k;
    for (int ch = 0; ch < 3; ch++) {
        if (cnt == 0) {
            in->mean[ch] = 0.5f;
            in->std[ch] = 0.25f;
            continue;
        }
        double m = sum[ch] / cnt, var = sq[ch] / cnt - m * m;
        in->mean[ch] = (float)(m / 255.0);
        in->std[ch] = (float)(sqrt(var > 0 ? var : 0) / 255.0);
        if (in->std[ch] <= 0)
            in->std[ch] = 1;
    }
}

/* ---- public -------------------------------------------------------------------------- */

int dataset_open(dataset **out, const ds_options *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!o || !o->path || !*o->path) {
        set_err(err, errlen, "path: missing");
        return -EINVAL;
    }
    double pct = o->valid_pct < 0 ? 0.2 : o->valid_pct;
    if (pct >= 1) {
        set_err(err, errlen, "valid_pct: %g is not below 1", o->valid_pct);
        return -EINVAL;
    }
    if (!is_dir(o->path)) {
        set_err(err, errlen, "path: %s is not a folder", o->path);
        return -ENOENT;
    }
    dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&ds->lock, NULL);
    ds->max_pixels = o->max_pixels > 0 ? o->max_pixels : IMAGE_DEFAULT_MAX_PIXELS;
    ds->root = strdup(o->path);
    int rc = -ENOMEM, gray = 1, has_valid = 0;
    if (!ds->root)
        goto out_fail;
    ds->real_root = realpath(o->path, NULL);
    if (!ds->real_root) {
        int e = errno;
        set_err(err, errlen, "%s: %s", o->path, strerror(e));
        rc = -e;
        goto out_fail;
    }
    size_t rl = strlen(ds->root);
    while (rl > 1 && ds->root[rl - 1] == '/')
        ds->root[--rl] = 0;

    if (err && errlen)
        err[0] = 0;
    switch (o->format) {
    case DS_FOLDERS: {
        char *v = xasprintf("%s/valid", ds->root);
        if (!v)
            goto out_fail;
        has_valid = is_dir(v);
        free(v);
        rc = open_folders(ds, &gray, err, errlen);
        break;
    }
    case DS_CSV:
        rc = open_csv(ds, o, &gray, err, errlen);
        break;
    case DS_IDX:
        rc = open_idx(ds, &has_valid, err, errlen);
        break;
    default:
        set_err(err, errlen, "format: unknown (%d)", (int)o->format);
        rc = -EINVAL;
    }
    if (rc)
        goto out_fail;
    if (!has_valid && (rc = split_valid(ds, pct, o->seed)))
        goto out_fail;
    if (o->format != DS_IDX) {
        char *t = xasprintf("%s/test", ds->root);
        rc = -ENOMEM;
        if (!t)
            goto out_fail;
        int has_test = is_dir(t);
        free(t);
        if (has_test && (rc = add_folder(ds, &ds->split[SPLIT_TEST], "test", -1, &gray, err,
                                         errlen)))
            goto out_fail;
    }
    if (ds->split[SPLIT_TRAIN].n == 0) {
        set_err(err, errlen, "%s: no readable training images (%d unreadable%s%s)", ds->root,
                ds->info.n_unreadable, ds->info.n_unreadable ? ", first: " : "",
                ds->info.n_unreadable ? ds->info.unreadable[0].reason : "");
        rc = -EINVAL;
        goto out_fail;
    }
    ds->info.channels = gray ? 1 : 3;
    pixel_stats(ds);
    size_stats(ds);
    for (int s = 0; s < 3; s++)
        ds->info.count[s] = ds->split[s].n;
    if (ds->split[SPLIT_TRAIN].n == 0) {
        set_err(err, errlen, "%s: no decodable training images", ds->root);
        rc = -EINVAL;
        goto out_fail;
    }
    *out = ds;
    return 0;

out_fail:
    if (rc == -ENOMEM && err && errlen && !err[0])
        set_err(err, errlen, "out of memory opening %s", o->path);
    dataset_destroy(ds);
    return rc;
}

void dataset_destroy(dataset *ds)
{
    if (!ds)
        return;
    for (int s = 0; s < 3; s++)
        vec_free(&ds->split[s]);
    free(ds->idx_blob[0]);
    free(ds->idx_blob[1]);
    if (ds->info.classes)
        free_names(ds->info.classes, ds->info.n_classes);
    for (int i = 0; i < ds->info.n_unreadable; i++) {
        free(ds->info.unreadable[i].file);
        free(ds->info.unreadable[i].reason);
    }
    free(ds->info.unreadable);
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
    return it ? it->name : NULL;
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
        set_err(err, errlen, "item %d of split %d: out of range", i, (int)split);
        return -EINVAL;
    }
    if (it->px) {
        size_t n = (size_t)it->w * it->h;
        out->px = malloc(n);
        if (!out->px) {
            set_err(err, errlen, "out of memory");
            return -ENOMEM;
        }
        memcpy(out->px, it->px, n);
        out->w = it->w;
        out->h = it->h;
        out->c = 1;
        return 0;
    }
    char reason[256];
    char *full = xasprintf("%s/%s", ds->root, it->name);
    if (!full) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = image_decode_file_min(out, full, min_shorter, ds->max_pixels, reason, sizeof reason);
    free(full);
    if (rc) {
        set_err(err, errlen, "%s: %s", it->name, reason);
        if (rc != -ENOMEM) {
            pthread_mutex_lock(&ds->lock);
            (void)add_unreadable_locked(ds, it->name, reason);
            pthread_mutex_unlock(&ds->lock);
        }
    }
    return rc;
}
