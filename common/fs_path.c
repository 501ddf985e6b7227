/* fs_path.c: fs_mkdir_p. */
#define _POSIX_C_SOURCE 200809L
#include "fs_path.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

static int mkdir_one(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int fs_mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir_one(tmp);
        if (rc)
            return rc;
        *p = '/';
    }
    return mkdir_one(tmp);
}
