/* ds_internal.h: what the dataset files of engine/data share (the dataset's layout, the
 * item vectors, the unreadable list, folder listing and file probing); not part of the
 * engine's API. Each format (ds_folders.c, ds_csv.c, ds_idx.c) fills a dataset's splits
 * and classes through these; dataset.c drives them. */
#ifndef SGDRD_DATA_DS_INTERNAL_H
#define SGDRD_DATA_DS_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "errmsg.h"

typedef struct ds_item {
    char *name;           /* relative to the root, owned; NULL for an idx item (px set),
                           * whose name ds_idx_item_name makes when asked */
    int label;            /* first label; -1 when unlabelled */
    int w, h;
    const uint8_t *px;    /* idx: the pixels inside the loaded blob; else NULL */
    uint8_t *targets;     /* multi-label: n_classes flags; else NULL */
} ds_item;

typedef struct item_vec {
    ds_item *v;
    int n, cap;
} item_vec;

/* One IDX pair held in memory. Item names ("<base>#<i>") are made for all n items the
 * first time one is asked for, not at registration: at millions of items they would
 * cost as much as the items themselves, and only some callers need them. */
typedef struct idx_part {
    uint8_t *blob;          /* (n, item_px) pixels */
    size_t item_px;         /* rows * cols */
    int64_t n;
    char *base;             /* the images file's name, without ".gz" */
    char *names;            /* NULL until asked; then n names, name_stride bytes apart */
    size_t name_stride;
} idx_part;

struct dataset {
    char *root;
    char *real_root;        /* realpath of root: where symlinks may lead */
    int64_t max_pixels;
    int64_t max_items;      /* ds_options.max_items, default applied */
    ds_info info;
    int unreadable_cap;
    int *unreadable_set;    /* open-addressing hash set of unreadable files, by index + 1 */
    size_t unreadable_slots;/* its size: 0 or a power of two */
    item_vec split[3];
    idx_part idx[2];        /* idx: the train and t10k (or test) files */
    pthread_mutex_t lock;   /* guards the unreadable list */
    const volatile int *stop;                    /* ds_options.stop */
    void (*progress)(void *ctx, int64_t seen);   /* ds_options.progress */
    void *progress_ctx;
    int64_t files_seen;     /* probed so far by the scan (one thread) */
};

typedef enum entry_kind { ENTRY_BAD, ENTRY_FILE, ENTRY_DIR } entry_kind;

/* ---- ds_common.c ---- */
/* A malloc'd formatted string, or NULL when memory runs out. */
char *ds_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ds_cmp_str(const void *a, const void *b);
int ds_is_dir(const char *path);
void ds_free_names(char **names, int n);
/* Strips surrounding blanks and one pair of double quotes, in place. */
char *ds_trim_field(char *s);
/* Index of name in the sorted classes, or -1. */
int ds_class_index(char **classes, int n, const char *name);
/* Appends *it (the vector takes its name and targets). 0 or -ENOMEM. */
int ds_vec_push(item_vec *v, const ds_item *it);
/* Room for `more` items beyond v->n, allocated at once. 0 or -ENOMEM. */
int ds_vec_reserve(item_vec *v, int64_t more);
/* Frees what an item owns (its name and targets). */
void ds_item_release(ds_item *it);
void ds_vec_free(item_vec *v);
/* Adds (file, reason) to the unreadable list unless the file is already there (constant
 * time). Caller holds ds->lock or is the only thread. 0 or -ENOMEM. */
int ds_add_unreadable_locked(dataset *ds, const char *file, const char *reason);
/* What root/rel is, found without opening it (a FIFO or device blocks an open or a read).
 * A symlink, or any path when resolve is set (it may hold ".."), counts by what its real
 * path is, and only if that stays inside the dataset root. An entry_kind (ENTRY_BAD with
 * the reason), or -ENOMEM. */
int ds_entry_classify(const dataset *ds, const char *rel, int resolve, char *reason,
                      size_t len);
/* Sorted names in root/sub (hidden ones skipped); want picks folders or regular files.
 * Entries that are neither, or that lead out of the root, join the unreadable list. */
int ds_list_dir(dataset *ds, const char *sub, entry_kind want, char ***out, int *n_out,
                char *err, size_t errlen);
/* Counts one file of the scan; every DS_SCAN_EVERY files reports progress and looks at
 * the stop flag (ds_options). -ECANCELED when asked to stop. */
int ds_scan_tick(dataset *ds);
/* Probes root/rel; readable files join `into` (taking rel, freed on failure too), others
 * the unreadable list. *gray is cleared by any colour image. */
int ds_add_file(dataset *ds, item_vec *into, char *rel, int label, int *gray);
/* Items in every split so far. */
int64_t ds_n_items(const dataset *ds);
/* 0 when `more` items from `what` fit under ds->max_items beside those already held;
 * else -EFBIG with the reason in err. */
int ds_check_room(const dataset *ds, int64_t more, const char *what, char *err,
                  size_t errlen);
/* Adds every file of root/sub (sorted) with this label. */
int ds_add_folder(dataset *ds, item_vec *into, const char *sub, int label, int *gray,
                  char *err, size_t errlen);

/* ---- one file per format: fill ds->split and ds->info.classes ---- */
int ds_open_folders(dataset *ds, int *gray, char *err, size_t errlen);
int ds_open_csv(dataset *ds, const ds_options *o, int *gray, char *err, size_t errlen);
int ds_open_idx(dataset *ds, int *has_valid, char *err, size_t errlen);
/* The name of an idx item ("train-images-idx3-ubyte#12"), valid until dataset_destroy;
 * NULL if memory runs out. Takes ds->lock: not for a caller that holds it. */
const char *ds_idx_item_name(const dataset *ds, const ds_item *it);
/* Frees what the idx files hold. */
void ds_idx_free(dataset *ds);

/* ---- ds_stats.c ---- */
/* Min, median and max width and height over every split. */
void ds_size_stats(dataset *ds);
/* Per-channel mean and std (0..1) of the training split, over every idx image or an
 * evenly spaced sample of file images. Sampled images that fail to decode leave the split
 * (and join the unreadable list). */
void ds_pixel_stats(dataset *ds);

#endif
