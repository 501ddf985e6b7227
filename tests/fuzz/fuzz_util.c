/* fuzz_util.c: scratch folder, files and input splitting for the harnesses. */
#define _GNU_SOURCE
#include "fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch[4096];

void fuzz_check(int ok, const char *what, const char *file, int line)
{
    if (ok)
        return;
    fprintf(stderr, "fuzz check failed at %s:%d: %s\n", file, line, what);
    abort();
}

static void scratch_remove(void)
{
    if (scratch[0])
        fuzz_rmtree(scratch);
}

const char *fuzz_scratch(void)
{
    if (scratch[0])
        return scratch;
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/sgdrd-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(scratch) != NULL);
    atexit(scratch_remove);
    return scratch;
}

void fuzz_path(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    FUZZ_CHECK(len >= 0 && (size_t)len < n);
}

int fuzz_write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        p += w;
        n -= (size_t)w;
    }
    return close(fd) ? -errno : 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT ? -1 : 0;
}

int fuzz_rmtree(const char *path)
{
    if (nftw(path, remove_one, 32, FTW_DEPTH | FTW_PHYS) != 0)
        return errno == ENOENT ? 0 : errno ? -errno : -EIO;
    return 0;
}

int fuzz_split(const uint8_t *data, size_t size, const char *sep, size_t *start, size_t *len,
               int max)
{
    size_t seplen = strlen(sep), at = 0;
    int n = 0;
    while (n < max - 1) {
        const uint8_t *hit = seplen && size > at ? memmem(data + at, size - at, sep, seplen)
                                                 : NULL;
        if (!hit)
            break;
        start[n] = at;
        len[n] = (size_t)(hit - data) - at;
        n++;
        at = (size_t)(hit - data) + seplen;
    }
    start[n] = at;
    len[n] = size - at;
    return n + 1;
}
