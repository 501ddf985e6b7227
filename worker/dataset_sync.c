/* dataset_sync.c: sending an uploaded dataset to the ranks that lack it (dataset_sync.h).
 *
 * The ranks that lack it and rank 0 form a communicator of their own; rank 0 broadcasts on
 * it a manifest (every folder and regular file, relative to the dataset's root, with its
 * size), the index hash of its copy, then each file in chunks. Each chunk has a header: its
 * length, 0 at the end of a file, -1 when rank 0 cannot go on. A receiver that fails
 * locally (a refused path, a full disk) keeps taking part in the broadcasts without writing,
 * so that no rank waits for it, and reports its reason at the end. */
#define _GNU_SOURCE
#include "dataset_sync.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset_path.h"
#include "fs_path.h"
#include "job_spec.h"
#include "upload.h"

#define DSYNC_CHUNK (4 << 20)

/* The dataset the spec describes, opened at path (the target or a receiver's copy), with the
 * options job_spec.c reads (which refuses an unknown format before training). */
static int open_at(json_t *dspec, const char *path, dataset **out, char *err, size_t errlen)
{
    ds_options o = {0};
    const char *f = json_string_value(json_object_get(dspec, "format"));
    o.path = path;
    o.valid_pct = jspec_num(dspec, "valid_pct", -1);
    o.csv = json_string_value(json_object_get(dspec, "csv"));
    o.seed = (uint64_t)jspec_num(dspec, "seed", 42);
    o.format = f && !strcmp(f, "csv") ? DS_CSV : f && !strcmp(f, "idx") ? DS_IDX : DS_FOLDERS;
    return dataset_open(out, &o, err, errlen);
}

static int index_hash(json_t *dspec, const char *path, unsigned long long *h, char *err,
                      size_t errlen)
{
    dataset *ds = NULL;
    int rc = open_at(dspec, path, &ds, err, errlen);
    if (!rc)
        *h = jspec_dataset_hash(ds);
    dataset_destroy(ds);
    return rc;
}

/* a/b into out (a alone when b is empty); -ENAMETOOLONG when it does not fit. */
static int join(char *out, size_t len, const char *a, const char *b)
{
    int n = snprintf(out, len, "%s%s%s", a, *a && *b ? "/" : "", b);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Rank 0: appends [rel, size] for every entry below root/rel (size -1 for a folder), parents
 * before their children; a link or special file is refused. */
static int list_tree(const char *root, const char *rel, json_t *entries, long long *bytes,
                     char *err, size_t errlen)
{
    char dir[PATH_MAX];
    int rc = join(dir, sizeof dir, root, rel);
    DIR *d = rc ? NULL : opendir(dir);
    if (!d) {
        int e = rc ? -rc : errno;
        snprintf(err, errlen, "cannot read %s/%s: %s", root, rel, strerror(e));
        return -e;
    }
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char sub[PATH_MAX], full[PATH_MAX];
        struct stat st;
        if (join(sub, sizeof sub, rel, de->d_name) || join(full, sizeof full, root, sub)) {
            snprintf(err, errlen, "a name below %s is too long to send", root);
            rc = -ENAMETOOLONG;
        } else if (lstat(full, &st) != 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot read %s: %s", full, strerror(-rc));
        } else if (S_ISDIR(st.st_mode)) {
            json_array_append_new(entries, json_pack("[sI]", sub, (json_int_t)-1));
            rc = list_tree(root, sub, entries, bytes, err, errlen);
        } else if (S_ISREG(st.st_mode)) {
            json_array_append_new(entries, json_pack("[sI]", sub, (json_int_t)st.st_size));
            *bytes += st.st_size;
        } else {
            snprintf(err, errlen, "%s is a link or a special file: only folders and regular "
                     "files are sent to the ranks that lack the dataset", full);
            rc = -EINVAL;
        }
    }
    closedir(d);
    return rc;
}

/* Rank 0: one file in chunks, no more than the size the manifest announced. */
static int send_file(const char *path, long long size, char *buf, MPI_Comm c, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    long long sent = 0, hdr = 0;
    int rc = fd < 0 ? -errno : 0;
    while (!rc && sent < size) {
        long long want = size - sent < DSYNC_CHUNK ? size - sent : DSYNC_CHUNK;
        ssize_t n = read(fd, buf, (size_t)want);
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            break;
        }
        hdr = n;
        MPI_Bcast(&hdr, 1, MPI_LONG_LONG, 0, c);
        MPI_Bcast(buf, (int)n, MPI_BYTE, 0, c);
        sent += n;
    }
    if (fd >= 0)
        close(fd);
    hdr = rc ? -1 : 0;
    MPI_Bcast(&hdr, 1, MPI_LONG_LONG, 0, c);
    if (rc)
        snprintf(err, errlen, "cannot send %s to the ranks that lack the dataset: %s", path,
                 rc == -EIO ? "it shrank while being sent" : strerror(-rc));
    return rc;
}

/* A receiver: one file's chunks, written to fd while ok (fd < 0: only taken in). Returns 1
 * when rank 0 stopped sending, else 0; *bad is set with err on a local failure. */
static int recv_file(int fd, const char *rel, long long size, char *buf, MPI_Comm c, int *bad,
                     char *err, size_t errlen)
{
    long long got = 0, hdr = 0;
    for (;;) {
        MPI_Bcast(&hdr, 1, MPI_LONG_LONG, 0, c);
        if (hdr < 0)
            return 1;
        if (hdr == 0)
            break;
        if (hdr > DSYNC_CHUNK) {
            fprintf(stderr, "sgdrd-worker: dataset chunk of %lld bytes, above %d\n", hdr,
                    DSYNC_CHUNK);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        MPI_Bcast(buf, (int)hdr, MPI_BYTE, 0, c);
        got += hdr;
        if (*bad || fd < 0)
            continue;
        if (got > size) {
            snprintf(err, errlen, "rank 0 sent more of %s than its %lld bytes", rel, size);
            *bad = 1;
        } else {
            ssize_t w = write(fd, buf, (size_t)hdr);
            if (w != (ssize_t)hdr) {
                snprintf(err, errlen, "cannot write %s: %s", rel,
                         w < 0 ? strerror(errno) : "the disk is full");
                *bad = 1;
            }
        }
    }
    if (!*bad && got != size) {
        snprintf(err, errlen, "received %lld bytes of %s, not %lld", got, rel, size);
        *bad = 1;
    }
    return 0;
}

/* A receiver: one manifest entry into the folder tmp (dirfd). 1 when rank 0 stopped. */
static int recv_entry(int dirfd, json_t *ent, char *buf, MPI_Comm c, int *bad, char *err,
                      size_t errlen)
{
    const char *rel = json_string_value(json_array_get(ent, 0));
    long long size = (long long)json_integer_value(json_array_get(ent, 1));
    if (!*bad && !dpath_ok(rel)) {
        snprintf(err, errlen, "rank 0 sent a refused path: %s", rel ? rel : "(none)");
        *bad = 1;
    }
    if (size < 0) {
        if (!*bad && mkdirat(dirfd, rel, 0755) != 0) {
            snprintf(err, errlen, "cannot create %s: %s", rel, strerror(errno));
            *bad = 1;
        }
        return 0;
    }
    int fd = -1;
    if (!*bad) {
        fd = openat(dirfd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "cannot create %s: %s", rel, strerror(errno));
            *bad = 1;
        }
    }
    int stopped = recv_file(fd, rel, size, buf, c, bad, err, errlen);
    if (fd >= 0 && close(fd) != 0 && !*bad) {
        snprintf(err, errlen, "cannot write %s: %s", rel, strerror(errno));
        *bad = 1;
    }
    return stopped;
}

/* Rank 0: the manifest, the index hash, then every file. */
static int send_all(json_t *dspec, const char *path, MPI_Comm c, char *err, size_t errlen)
{
    json_t *entries = json_array();
    long long bytes = 0, len = -1;
    unsigned long long h = 0;
    char *buf = malloc(DSYNC_CHUNK), *man = NULL;
    int rc = buf && entries ? 0 : -ENOMEM;
    if (rc)
        snprintf(err, errlen, "out of memory sending the dataset %s", path);
    if (!rc)
        rc = index_hash(dspec, path, &h, err, errlen);
    if (!rc)
        rc = list_tree(path, "", entries, &bytes, err, errlen);
    if (!rc && !(man = json_dumps(entries, JSON_COMPACT))) {
        snprintf(err, errlen, "out of memory sending the dataset %s", path);
        rc = -ENOMEM;
    }
    if (!rc && strlen(man) >= INT_MAX) {
        snprintf(err, errlen, "the dataset %s has too many files to send", path);
        rc = -EFBIG;
    }
    len = rc ? -1 : (long long)strlen(man) + 1;
    MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, c);
    if (!rc) {
        int peers = 0;
        MPI_Comm_size(c, &peers);
        fprintf(stderr, "sgdrd-worker: sending the dataset %s (%zu entries, %lld bytes) to "
                "%d rank(s) that lack it\n", path, json_array_size(entries), bytes, peers - 1);
        MPI_Bcast(man, (int)len, MPI_CHAR, 0, c);
        MPI_Bcast(&h, 1, MPI_UNSIGNED_LONG_LONG, 0, c);
    }
    for (size_t i = 0; !rc && i < json_array_size(entries); i++) {
        json_t *ent = json_array_get(entries, i);
        long long size = (long long)json_integer_value(json_array_get(ent, 1));
        char full[PATH_MAX];
        if (size >= 0) {
            join(full, sizeof full, path, json_string_value(json_array_get(ent, 0)));
            rc = send_file(full, size, buf, c, err, errlen);
        }
    }
    free(man);
    free(buf);
    json_decref(entries);
    return rc;
}

/* A receiver: path's parent folders, then an empty temporary folder beside path (tmp, or
 * "" when none was made); its descriptor, or -1 with err. */
static int make_tmp(const char *path, char *tmp, size_t len, char *err, size_t errlen)
{
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        int rc = fs_mkdir_p(parent);
        if (rc) {
            snprintf(err, errlen, "cannot create %s: %s", parent, strerror(-rc));
            return -1;
        }
    }
    snprintf(tmp, len, "%s.part-XXXXXX", path);
    if (!mkdtemp(tmp)) {
        snprintf(err, errlen, "cannot create a folder beside %s: %s", path, strerror(errno));
        tmp[0] = '\0';
        return -1;
    }
    int fd = chmod(tmp, 0755) == 0 ? open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0)
        snprintf(err, errlen, "cannot open %s: %s", tmp, strerror(errno));
    return fd;
}

/* A receiver whose copy in tmp is complete: its index hash must be rank 0's (h0), then it
 * goes into place whole. Another rank on this host may have put its own there first. */
static int finish(json_t *dspec, const char *tmp, const char *path, unsigned long long h0,
                  char *err, size_t errlen)
{
    unsigned long long h = 0;
    char why[256] = "";
    struct stat st;
    if (index_hash(dspec, tmp, &h, why, sizeof why)) {
        snprintf(err, errlen, "the copy of %s received from rank 0 cannot be opened: %s", path,
                 why);
        return -EIO;
    }
    if (h != h0) {
        snprintf(err, errlen, "the copy of %s received from rank 0 has index hash %016llx, not "
                 "rank 0's %016llx", path, h, h0);
        return -EIO;
    }
    if (rename(tmp, path) == 0)
        return 0;
    if ((errno == EEXIST || errno == ENOTEMPTY) && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 1;
    int e = errno;
    snprintf(err, errlen, "cannot move the received dataset to %s: %s", path, strerror(e));
    return -e;
}

/* A receiver: the manifest and hash, then every entry; the copy replaces nothing. */
static int recv_all(json_t *dspec, const char *path, MPI_Comm c, char *err, size_t errlen)
{
    long long len = 0;
    unsigned long long h0 = 0;
    MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, c);
    if (len < 0) {
        snprintf(err, errlen, "the dataset %s is absent here and rank 0 could not send it",
                 path);
        return -EIO;
    }
    char *man = malloc((size_t)len), *buf = malloc(DSYNC_CHUNK), tmp[PATH_MAX] = "";
    if (!man || !buf) {
        fprintf(stderr, "sgdrd-worker: out of memory receiving the dataset %s\n", path);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Bcast(man, (int)len, MPI_CHAR, 0, c);
    MPI_Bcast(&h0, 1, MPI_UNSIGNED_LONG_LONG, 0, c);
    json_t *entries = json_loads(man, 0, NULL);
    free(man);
    if (!json_is_array(entries)) {
        fprintf(stderr, "sgdrd-worker: rank 0 sent an unreadable manifest for %s\n", path);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int dirfd = make_tmp(path, tmp, sizeof tmp, err, errlen), bad = dirfd < 0, stopped = 0;
    for (size_t i = 0; !stopped && i < json_array_size(entries); i++)
        stopped = recv_entry(dirfd, json_array_get(entries, i), buf, c, &bad, err, errlen);
    if (stopped && !bad) {
        snprintf(err, errlen, "rank 0 stopped sending the dataset %s", path);
        bad = 1;
    }
    if (dirfd >= 0)
        close(dirfd);
    int rc = bad ? -EIO : finish(dspec, tmp, path, h0, err, errlen);
    if (rc && tmp[0])
        upload_remove_tree(tmp);
    json_decref(entries);
    free(buf);
    return rc < 0 ? rc : 0;
}

int dsync_ensure(json_t *dspec, MPI_Comm world, char *err, size_t errlen)
{
    const char *path = json_string_value(json_object_get(dspec, "path"));
    int uploaded = jspec_bool(dspec, "uploaded", 0), rank = 0, lack = 0, n_lack = 0, has0;
    struct stat st;
    MPI_Comm_rank(world, &rank);
    lack = !path || stat(path, &st) != 0;
    has0 = !lack;
    MPI_Allreduce(&lack, &n_lack, 1, MPI_INT, MPI_SUM, world);
    MPI_Bcast(&has0, 1, MPI_INT, 0, world);
    if (n_lack == 0)
        return 0;
    if (!uploaded) {
        if (lack)
            snprintf(err, errlen, "the dataset %s, registered by path, is absent on this host: "
                     "such a dataset must be at the same path on every host (only uploaded "
                     "datasets are sent to the hosts that lack them)", path ? path : "");
        return lack ? -ENOENT : 0;
    }
    if (!has0) {
        if (rank == 0)
            snprintf(err, errlen, "the uploaded dataset %s is absent on rank 0's host, which "
                     "sends it to the ranks that lack it", path ? path : "");
        return rank == 0 ? -ENOENT : 0;
    }
    MPI_Comm c = MPI_COMM_NULL;
    MPI_Comm_split(world, rank == 0 || lack ? 0 : MPI_UNDEFINED, rank, &c);
    int rc = 0;
    if (rank == 0)
        rc = send_all(dspec, path, c, err, errlen);
    else if (lack)
        rc = recv_all(dspec, path, c, err, errlen);
    if (c != MPI_COMM_NULL)
        MPI_Comm_free(&c);
    return rc;
}
