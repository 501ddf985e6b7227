/* ds_common.c: what the dataset formats share: errors and strings, item vectors, the
 * unreadable list, and listing and probing files without leaving the dataset's folder. */
#include "ds_internal.h"
#include "internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *ds_asprintf(const char *fmt, ...)
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

int ds_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Strips surrounding blanks and one pair of double quotes, in place. */
char *ds_trim_field(char *s)
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

int ds_vec_push(item_vec *v, const ds_item *it)
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

int ds_vec_reserve(item_vec *v, int64_t more)
{
    if (more > INT32_MAX - v->n)
        return -ENOMEM;
    if (v->n + more <= v->cap)
        return 0;
    int cap = v->n + (int)more;
    ds_item *nv = realloc(v->v, sizeof(ds_item) * cap);
    if (!nv)
        return -ENOMEM;
    v->v = nv;
    v->cap = cap;
    return 0;
}

void ds_item_release(ds_item *it)
{
    free(it->name);
    free(it->targets);
}

void ds_vec_free(item_vec *v)
{
    for (int i = 0; i < v->n; i++)
        ds_item_release(&v->v[i]);
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The slot of file in the unreadable set: where it is, or the empty slot where it
 * would go. The set holds indices + 1 into info.unreadable (0: empty). */
static size_t unreadable_slot(const dataset *ds, const char *file)
{
    size_t mask = ds->unreadable_slots - 1, i = name_hash(file) & mask;
    while (ds->unreadable_set[i] &&
           strcmp(ds->info.unreadable[ds->unreadable_set[i] - 1].file, file) != 0)
        i = (i + 1) & mask;
    return i;
}

/* Keeps the set at most half full, so that a lookup stays a few probes whatever the
 * number of unreadable files (a csv may name hundreds of thousands of missing ones). */
static int unreadable_set_grow(dataset *ds)
{
    if ((size_t)ds->info.n_unreadable * 2 < ds->unreadable_slots)
        return 0;
    size_t slots = ds->unreadable_slots ? ds->unreadable_slots * 2 : 64;
    int *set = calloc(slots, sizeof(int));
    if (!set)
        return -ENOMEM;
    free(ds->unreadable_set);
    ds->unreadable_set = set;
    ds->unreadable_slots = slots;
    for (int k = 0; k < ds->info.n_unreadable; k++)
        set[unreadable_slot(ds, ds->info.unreadable[k].file)] = k + 1;
    return 0;
}

/* Adds (file, reason) to the unreadable list unless the file is already there, in
 * constant time (a hash set beside the list). Caller holds ds->lock or is the only
 * thread. */
int ds_add_unreadable_locked(dataset *ds, const char *file, const char *reason)
{
    ds_info *in = &ds->info;
    if (unreadable_set_grow(ds))
        return -ENOMEM;
    size_t slot = unreadable_slot(ds, file);
    if (ds->unreadable_set[slot])
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
    ds->unreadable_set[slot] = in->n_unreadable;
    return 0;
}

int path_is_under(const char *path, const char *root)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    return !strncmp(path, root, n) && (path[n] == '/' || path[n] == 0);
}

static entry_kind kind_of(mode_t m, char *reason, size_t len)
{
    if (S_ISREG(m))
        return ENTRY_FILE;
    if (S_ISDIR(m))
        return ENTRY_DIR;
    err_set(reason, len, "not a regular file");
    return ENTRY_BAD;
}

/* What root/rel is, found without opening it (a FIFO or device blocks an open or a read).
 * A symlink, or any path when resolve is set (it may hold ".."), counts by what its real
 * path is, and only if that stays inside the dataset root; plain entries cost one lstat
 * and no realpath, which matters for folders of 70,000 images. ENTRY_BAD with the reason,
 * or -ENOMEM. */
int ds_entry_classify(const dataset *ds, const char *rel, int resolve, char *reason,
                      size_t len)
{
    char *full = ds_asprintf("%s/%s", ds->root, rel);
    if (!full)
        return -ENOMEM;
    struct stat st;
    int rc = ENTRY_BAD;
    if (lstat(full, &st) != 0) {
        err_set(reason, len, "%s", strerror(errno));
    } else if (S_ISLNK(st.st_mode) || resolve) {
        int link = S_ISLNK(st.st_mode);
        char *real = realpath(full, NULL);
        if (!real) {
            int e = errno;
            if (e == ENOMEM)
                rc = -ENOMEM;
            else if (e == ELOOP)
                err_set(reason, len, "symbolic link loop");
            else if (e == ENOENT && link)
                err_set(reason, len, "dangling symbolic link");
            else
                err_set(reason, len, "%s", strerror(e));
        } else if (!path_is_under(real, ds->real_root)) {
            err_set(reason, len, "outside the dataset root");
        } else if (stat(real, &st) != 0) {
            err_set(reason, len, "%s", strerror(errno));
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

/* Appends a copy of name to names (n of cap). 0 or -ENOMEM. */
static int names_push(char ***names, int *n, int *cap, const char *name)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 64;
        char **nn = realloc(*names, sizeof(char *) * c);
        if (!nn)
            return -ENOMEM;
        *names = nn;
        *cap = c;
    }
    if (!((*names)[*n] = strdup(name)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* Sorted names in root/sub (hidden ones skipped); want picks folders or regular files.
 * Entries that are neither, or that lead out of the root, join the unreadable list. */
int ds_list_dir(dataset *ds, const char *sub, entry_kind want, char ***out, int *n_out,
                char *err, size_t errlen)
{
    *out = NULL;
    *n_out = 0;
    char reason[256];
    int k = ds_entry_classify(ds, sub, 0, reason, sizeof reason);
    if (k < 0)
        return k;
    if (k != ENTRY_DIR) {
        err_set(err, errlen, "%s: %s", sub, k == ENTRY_BAD ? reason : strerror(ENOTDIR));
        return -EINVAL;
    }
    char *dir = ds_asprintf("%s/%s", ds->root, sub);
    if (!dir)
        return -ENOMEM;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        err_set(err, errlen, "%s: %s", dir, strerror(e));
        free(dir);
        return -e;
    }
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    int64_t entries = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        /* Every entry costs a name (here or in the unreadable list): a folder of more
         * than a dataset may hold is refused before it takes the memory. */
        if (++entries > ds->max_items) {
            rc = -EFBIG;
            break;
        }
        char *rel = ds_asprintf("%s/%s", sub, de->d_name);
        if (!rel) {
            rc = -ENOMEM;
            break;
        }
        k = ds_entry_classify(ds, rel, 0, reason, sizeof reason);
        if (k == ENTRY_BAD)
            k = ds_add_unreadable_locked(ds, rel, reason);
        free(rel);
        if (k < 0) {
            rc = k;
            break;
        }
        if (k == (int)want && (rc = names_push(&names, &n, &cap, de->d_name)))
            break;
    }
    closedir(d);
    if (rc) {
        for (int i = 0; i < n; i++)
            free(names[i]);
        free(names);
        if (rc == -EFBIG)
            err_set(err, errlen, "%s: more than %lld entries, the most a dataset may hold",
                    sub, (long long)ds->max_items);
        else
            err_set(err, errlen, "out of memory listing %s", dir);
        free(dir);
        return rc;
    }
    free(dir);
    if (n)
        qsort(names, n, sizeof(char *), ds_cmp_str);
    *out = names;
    *n_out = n;
    return 0;
}

void ds_free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int ds_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ds_scan_tick(dataset *ds)
{
    if (++ds->files_seen % DS_SCAN_EVERY)
        return 0;
    if (ds->progress)
        ds->progress(ds->progress_ctx, ds->files_seen);
    return ds->stop && *ds->stop ? -ECANCELED : 0;
}

/* Probes root/rel; readable files join `into` (taking rel), others the unreadable list.
 * *gray is cleared by any colour image. */
int ds_add_file(dataset *ds, item_vec *into, char *rel, int label, int *gray)
{
    char reason[256];
    char *full = ds_asprintf("%s/%s", ds->root, rel);
    if (!full) {
        free(rel);
        return -ENOMEM;
    }
    int w, h, c;
    int rc = image_probe_file_c(full, &w, &h, &c, ds->max_pixels, reason, sizeof reason);
    free(full);
    if (rc) {
        rc = ds_add_unreadable_locked(ds, rel, reason);
        free(rel);
        return rc;
    }
    if (c != 1)
        *gray = 0;
    ds_item it = {.name = rel, .label = label, .w = w, .h = h};
    rc = ds_vec_push(into, &it);
    if (rc)
        free(rel);
    return rc;
}

int64_t ds_n_items(const dataset *ds)
{
    return (int64_t)ds->split[0].n + ds->split[1].n + ds->split[2].n;
}

int ds_check_room(const dataset *ds, int64_t more, const char *what, char *err,
                  size_t errlen)
{
    int64_t have = ds_n_items(ds);
    if (more <= ds->max_items - have)
        return 0;
    err_set(err, errlen, "%s: %lld more items would exceed the %lld a dataset may hold",
            what, (long long)more, (long long)ds->max_items);
    return -EFBIG;
}

/* Adds every file of root/sub (sorted) with this label. */
int ds_add_folder(dataset *ds, item_vec *into, const char *sub, int label, int *gray,
                  char *err, size_t errlen)
{
    char **files;
    int n;
    int rc = ds_list_dir(ds, sub, ENTRY_FILE, &files, &n, err, errlen);
    if (rc)
        return rc;
    rc = ds_check_room(ds, n, sub, err, errlen);
    if (rc) {
        ds_free_names(files, n);
        return rc;
    }
    for (int i = 0; i < n && rc == 0 && (rc = ds_scan_tick(ds)) == 0; i++) {
        char *rel = ds_asprintf("%s/%s", sub, files[i]);
        rc = rel ? ds_add_file(ds, into, rel, label, gray) : -ENOMEM;
    }
    ds_free_names(files, n);
    if (rc == -ECANCELED)
        err_set(err, errlen, "the scan of %s was stopped", sub);
    else if (rc)
        err_set(err, errlen, "out of memory scanning %s", sub);
    return rc;
}

int ds_class_index(char **classes, int n, const char *name)
{
    char *const *hit = bsearch(&name, classes, n, sizeof(char *), ds_cmp_str);
    return hit ? (int)(hit - classes) : -1;
}
