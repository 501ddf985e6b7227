/* upload.h: safe handling of uploaded archives: names, and tar (plain or gzip) extraction
 * that refuses anything but plain files and folders below the destination. */
#ifndef SGDRD_API_UPLOAD_H
#define SGDRD_API_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#define UPLOAD_MAX_ENTRIES 2000000

/* 0 when name is a usable resource/folder name: 1..128 of [A-Za-z0-9._-], starting with a
 * letter or digit. Else -EINVAL and err says why (NULL name: "name is required"). */
int upload_name_check(const char *name, char *err, size_t errlen);

/* Extracts the tar archive at tar_path (plain or gzip, recognised by its bytes) into dest,
 * an existing empty folder. Refuses, naming the entry: absolute paths, ".." segments,
 * a name component over NAME_MAX bytes, symbolic and hard links, devices, FIFOs, sockets,
 * duplicate files, more than max_bytes of extracted data (a sparse member counts by its
 * size once extracted, holes included) or UPLOAD_MAX_ENTRIES entries, and a corrupt or
 * truncated archive. Returns 0 or a negative code with err set (-EINVAL, -EFBIG: the
 * archive's fault); on failure dest may hold part of the files (the caller removes it). */
int upload_extract_tar(const char *tar_path, const char *dest, int64_t max_bytes, char *err,
                       size_t errlen);
/* upload_extract_tar that also ends when *stop (NULL: never) turns nonzero, read before
 * every entry and every data block: -ECANCELED, so that a stop of the daemon does not wait
 * for a big archive. */
int upload_extract_tar_until(const char *tar_path, const char *dest, int64_t max_bytes,
                             const volatile int *stop, char *err, size_t errlen);

/* The folder an extracted upload's data lives in: stage itself, or its only entry when
 * that is a folder (an archive made with `tar czf x.tgz mydata/`). */
void upload_data_root(const char *stage, char *out, size_t len);

/* Removes path and everything below it without following links. 0 or a negative code. */
int upload_remove_tree(const char *path);

#endif
