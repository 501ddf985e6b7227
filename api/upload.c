/* upload.c: tar extraction with libarchive, checking every entry before anything of it is
 * written, and tree removal with nftw. */
#define _GNU_SOURCE
#include "upload.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int upload_name_check(const char *name, char *err, size_t errlen)
{
    size_t n;
    if (!name || !*name) {
        snprintf(err, errlen, "name is required");
        return -EINVAL;
    }
    n = strlen(name);
    if (n > 128) {
        snprintf(err, errlen, "name must be at most 128 characters");
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
            snprintf(err, errlen,
                     "name must be letters, digits, '.', '_' or '-', starting with a letter "
                     "or digit");
            return -EINVAL;
        }
    }
    return 0;
}

/* Checks an entry's path and rewrites it relative ("./a/b/" -> "a/b"). */
static int entry_path_ok(const char *in, char *out, size_t outlen, char *err, size_t errlen)
{
    const char *seg;
    size_t n = 0;

    if (!in || !*in) {
        snprintf(err, errlen, "an entry has an empty name");
        return -EINVAL;
    }
    if (in[0] == '/') {
        snprintf(err, errlen, "entry \"%s\" has an absolute path", in);
        return -EINVAL;
    }
    seg = in;
    for (const char *p = in;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        size_t len = (size_t)(p - seg);
        if (len == 2 && seg[0] == '.' && seg[1] == '.') {
            snprintf(err, errlen, "entry \"%s\" has a \"..\" component", in);
            return -EINVAL;
        }
        if (len > 0 && !(len == 1 && seg[0] == '.')) {
            /* Caught here, the file system's ENAMETOOLONG would read as our fault. */
            if (len > NAME_MAX) {
                snprintf(err, errlen, "entry \"%.64s...\" has too long a name (over %d "
                         "bytes in one component)", in, NAME_MAX);
                return -EINVAL;
            }
            if (n + len + 2 > outlen) {
                snprintf(err, errlen, "entry \"%.64s...\" has too long a path", in);
                return -EINVAL;
            }
            if (n)
                out[n++] = '/';
            memcpy(out + n, seg, len);
            n += len;
        }
        if (*p == '\0')
            break;
        seg = p + 1;
    }
    out[n] = '\0';
    return 0;
}

/* Creates the parents of rel under dirfd. */
static int make_parents(int dirfd, char *rel)
{
    for (char *p = rel; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdirat(dirfd, rel, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -errno;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t size, const char *name, char *err,
                     size_t errlen)
{
    while (size > 0) {
        ssize_t n = write(fd, buf, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            snprintf(err, errlen, "cannot write \"%s\": %s", name, strerror(e));
            return -e;
        }
        buf = (const char *)buf + n;
        size -= (size_t)n;
    }
    return 0;
}

/* Writes the entry's data blocks into fd at their offsets. A sparse member's blocks leave
 * holes between them; what counts against max_bytes is the file's extent (its size once
 * extracted, holes included), charged before anything is written there, so a few bytes
 * of data cannot make a file of a terabyte. */
static int copy_data(struct archive *a, int fd, int64_t *total, int64_t max_bytes,
                     const volatile int *stop, const char *name, char *err, size_t errlen)
{
    const void *buf;
    size_t size;
    la_int64_t off, extent = 0;
    for (;;) {
        if (stop && *stop) {
            snprintf(err, errlen, "the extraction was stopped");
            return -ECANCELED;
        }
        int rc = archive_read_data_block(a, &buf, &size, &off);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc != ARCHIVE_OK) {
            snprintf(err, errlen, "entry \"%s\": %s", name, archive_error_string(a));
            return -EINVAL;
        }
        if (off < 0 || (la_int64_t)size > INT64_MAX - off) {
            snprintf(err, errlen, "entry \"%s\" has a block at a bad offset", name);
            return -EINVAL;
        }
        if (off + (la_int64_t)size > extent) {
            *total += off + (la_int64_t)size - extent;
            extent = off + (la_int64_t)size;
        }
        if (*total > max_bytes) {
            snprintf(err, errlen, "the archive holds more than %lld bytes",
                     (long long)max_bytes);
            return -EFBIG;
        }
        if (lseek(fd, (off_t)off, SEEK_SET) < 0) {
            int e = errno;
            snprintf(err, errlen, "cannot write \"%s\" at offset %lld: %s", name,
                     (long long)off, strerror(e));
            return e == EINVAL || e == EFBIG ? -EFBIG : -e;
        }
        rc = write_all(fd, buf, size, name, err, errlen);
        if (rc)
            return rc;
    }
    /* A trailing hole has no block to write: the size makes it. */
    if (ftruncate(fd, (off_t)extent) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot write \"%s\": %s", name, strerror(e));
        return -e;
    }
    return 0;
}

/* Refuses anything but a plain file or folder. */
static int entry_type_ok(struct archive_entry *e, const char *name, char *err, size_t errlen)
{
    mode_t type = archive_entry_filetype(e);
    if (archive_entry_hardlink(e) || type == AE_IFLNK || archive_entry_symlink(e)) {
        snprintf(err, errlen, "entry \"%s\" is a link; only files and folders are allowed",
                 name ? name : "?");
        return -EINVAL;
    }
    if (type != AE_IFREG && type != AE_IFDIR) {
        snprintf(err, errlen,
                 "entry \"%s\" is a device, FIFO or socket; only files and folders are "
                 "allowed",
                 name ? name : "?");
        return -EINVAL;
    }
    return 0;
}

/* Checks the entry just read and writes it below dirfd (a new file must not exist yet). */
static int extract_entry(struct archive *a, struct archive_entry *e, int dirfd,
                         int64_t *total, int64_t max_bytes, const volatile int *stop,
                         char *err, size_t errlen)
{
    char rel[PATH_MAX];
    const char *name = archive_entry_pathname(e);
    int rc = entry_type_ok(e, name, err, errlen);
    if (rc || (rc = entry_path_ok(name, rel, sizeof rel, err, errlen)))
        return rc;
    if (rel[0] == '\0')
        return 0; /* "./" itself */
    rc = make_parents(dirfd, rel);
    if (rc) {
        snprintf(err, errlen, "cannot create the folders of \"%s\": %s", name,
                 strerror(-rc));
        return rc;
    }
    if (archive_entry_filetype(e) == AE_IFDIR) {
        if (mkdirat(dirfd, rel, 0755) != 0 && errno != EEXIST) {
            rc = -errno;
            snprintf(err, errlen, "cannot create \"%s\": %s", name, strerror(errno));
        }
        return rc;
    }
    int fd = openat(dirfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = errno == EEXIST ? -EINVAL : -errno;
        snprintf(err, errlen, "cannot create \"%s\": %s", name,
                 errno == EEXIST ? "it appears twice" : strerror(errno));
        return rc;
    }
    rc = copy_data(a, fd, total, max_bytes, stop, name, err, errlen);
    if (close(fd) != 0 && !rc) {
        rc = -errno;
        snprintf(err, errlen, "cannot write \"%s\": %s", name, strerror(errno));
    }
    return rc;
}

int upload_extract_tar(const char *tar_path, const char *dest, int64_t max_bytes, char *err,
                       size_t errlen)
{
    return upload_extract_tar_until(tar_path, dest, max_bytes, NULL, err, errlen);
}

int upload_extract_tar_until(const char *tar_path, const char *dest, int64_t max_bytes,
                             const volatile int *stop, char *err, size_t errlen)
{
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    int64_t total = 0;
    long entries = 0;
    int dirfd = -1, rc = 0;

    if (errlen)
        err[0] = '\0';
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    archive_read_support_filter_gzip(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, tar_path, 64 * 1024) != ARCHIVE_OK) {
        snprintf(err, errlen, "not a tar archive: %s", archive_error_string(a));
        rc = -EINVAL;
        goto out_archive;
    }
    dirfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open %s: %s", dest, strerror(errno));
        goto out_archive;
    }
    while (rc == 0) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (stop && *stop) {
            snprintf(err, errlen, "the extraction was stopped");
            rc = -ECANCELED;
        } else if (r != ARCHIVE_OK) {
            snprintf(err, errlen, "the archive is corrupt or truncated: %s",
                     archive_error_string(a));
            rc = -EINVAL;
        } else if (++entries > UPLOAD_MAX_ENTRIES) {
            snprintf(err, errlen, "the archive holds more than %d entries",
                     UPLOAD_MAX_ENTRIES);
            rc = -EFBIG;
        } else {
            rc = extract_entry(a, e, dirfd, &total, max_bytes, stop, err, errlen);
        }
    }
    close(dirfd);
out_archive:
    archive_read_free(a);
    return rc;
}

void upload_data_root(const char *stage, char *out, size_t len)
{
    DIR *d = opendir(stage);
    struct dirent *de;
    char only[NAME_MAX + 1] = "";
    int n = 0, only_dir = 0;

    snprintf(out, len, "%s", stage);
    if (!d)
        return;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        snprintf(only, sizeof only, "%s", de->d_name);
        only_dir = de->d_type == DT_DIR;
    }
    closedir(d);
    if (n == 1 && only_dir && snprintf(out, len, "%s/%s", stage, only) >= (int)len)
        snprintf(out, len, "%s", stage);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 && errno != ENOENT ? -1 : 0;
}

int upload_remove_tree(const char *path)
{
    if (nftw(path, remove_one, 32, FTW_DEPTH | FTW_PHYS) != 0)
        return errno ? -errno : -EIO;
    return 0;
}
