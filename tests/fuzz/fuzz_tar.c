/* fuzz_tar.c: upload extraction (api/upload.c) of an arbitrary archive, plain or gzip.
 * Whatever it accepts or refuses, the destination may afterwards hold only plain files and
 * folders, nothing may appear beside it, and the bytes written stay under the cap. */
#define _GNU_SOURCE
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"
#include "upload.h"

#define FUZZ_MAX_BYTES (1 << 20)

static int64_t written;
static int bad_entries;

/* Sums the bytes the regular files below dest hold on disk (a sparse entry's apparent size
 * may exceed what was written) and counts entries that are neither files nor folders. */
static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F && S_ISREG(st->st_mode))
        written += (int64_t)st->st_blocks * 512 < st->st_size ? (int64_t)st->st_blocks * 512
                                                              : st->st_size;
    else if (flag != FTW_D && flag != FTW_DP)
        bad_entries++;
    return 0;
}

/* Counts what sits in folder other than the one entry `only`. */
static int others_in(const char *folder, const char *only)
{
    int n = 0;
    DIR *d = opendir(folder);
    FUZZ_CHECK(d != NULL);
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, only))
            n++;
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char tar[4200], box[4200], dest[4300], err[512];
    const char *scratch = fuzz_scratch();
    fuzz_path(tar, sizeof tar, "%s/upload.tar", scratch);
    fuzz_path(box, sizeof box, "%s/box", scratch);
    fuzz_path(dest, sizeof dest, "%s/dest", box);
    FUZZ_CHECK(fuzz_rmtree(box) == 0 && mkdir(box, 0755) == 0 && mkdir(dest, 0755) == 0);
    FUZZ_CHECK(fuzz_write_file(tar, data, size) == 0);

    err[0] = '\0';
    int rc = upload_extract_tar(tar, dest, FUZZ_MAX_BYTES, err, sizeof err);
    if (rc != 0)
        FUZZ_CHECK(rc < 0 && err[0] != '\0');

    written = 0;
    bad_entries = 0;
    FUZZ_CHECK(nftw(dest, visit, 16, FTW_PHYS) == 0);
    FUZZ_CHECK(bad_entries == 0);
    FUZZ_CHECK(written <= FUZZ_MAX_BYTES);
    FUZZ_CHECK(others_in(box, "dest") == 0);
    FUZZ_CHECK(others_in(scratch, "box") == 1); /* upload.tar */
    FUZZ_CHECK(upload_remove_tree(dest) == 0);
    return 0;
}
