/* internal.h: helpers shared between the files of engine/data, not part of its API. */
#ifndef SGDRD_DATA_INTERNAL_H
#define SGDRD_DATA_INTERNAL_H

#include <stdio.h>

#include "data.h"

/* image_probe_file plus the channel count the decoder will produce (1 or 3) and the
 * max_pixels check (<= 0: the default). */
int image_probe_file_c(const char *path, int *w, int *h, int *c, int64_t max_pixels,
                       char *err, size_t errlen);

/* Opens path for reading only if it is a regular file, without ever blocking on a FIFO or
 * device: a descriptor (blocking again), or -errno with the reason in err. *size: its
 * length (may be NULL). */
int data_open_regular(const char *path, long long *size, char *err, size_t errlen);
/* data_open_regular as a stdio stream opened with mode: 0 and *out, or -errno with err set
 * and *out NULL. */
int data_fopen_regular(const char *path, const char *mode, FILE **out, long long *size,
                       char *err, size_t errlen);

/* Item i's pixels when the dataset holds them in memory (idx): a view into the dataset,
 * valid until dataset_destroy, not to be freed. 0, or -ENOENT for a file-backed item. */
int dataset_item_view(const dataset *ds, ds_split split, int i, image *view);

#endif
