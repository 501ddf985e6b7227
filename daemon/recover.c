/* recover.c: removes what a killed daemon left half-written (see recover.h). */
#define _GNU_SOURCE
#include "recover.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0)
        log_msg(LOG_WARN, 0, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Calls drop(path) for each entry of dir (not . or ..) that keep() refuses. */
static int sweep_dir(const char *dir, int (*keep)(const char *name, void *ctx), void *ctx)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || keep(e->d_name, ctx))
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        log_msg(LOG_WARN, 0, "removes %s, left half-written by an earlier stop", path);
        remove_tree(path);
        n++;
    }
    closedir(d);
    return n;
}

static int keep_none(const char *name, void *ctx)
{
    (void)name;
    (void)ctx;
    return 0;
}

static int keep_registered(const char *name, void *ctx)
{
    int64_t id;
    return store_dataset_find(ctx, name, &id) != -ENOENT;
}

/* nftw passes no context; this runs once, before any other thread starts. */
static int tmp_files_removed;

static int remove_tmp_file(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    size_t n = strlen(path);
    (void)sb;
    (void)ftw;
    if (flag == FTW_F && n > 4 && !strcmp(path + n - 4, ".tmp")) {
        log_msg(LOG_WARN, 0, "removes %s, left half-written by an earlier stop", path);
        if (unlink(path) == 0)
            tmp_files_removed++;
    }
    return 0;
}

int recover_leftovers(const char *data_dir, store *st)
{
    char path[PATH_MAX];
    int n = 0;
    snprintf(path, sizeof path, "%s/tmp", data_dir);
    n += sweep_dir(path, keep_none, NULL);
    snprintf(path, sizeof path, "%s/datasets", data_dir);
    n += sweep_dir(path, keep_registered, st);
    snprintf(path, sizeof path, "%s/runs", data_dir);
    tmp_files_removed = 0;
    nftw(path, remove_tmp_file, 16, FTW_PHYS);
    return n + tmp_files_removed;
}
