/* internal.h: helpers shared between the files of engine/data, not part of its API. */
#ifndef SGDRD_DATA_INTERNAL_H
#define SGDRD_DATA_INTERNAL_H

#include "data.h"

/* image_probe_file plus the channel count the decoder will produce (1 or 3) and the
 * max_pixels check (<= 0: the default). */
int image_probe_file_c(const char *path, int *w, int *h, int *c, int64_t max_pixels,
                       char *err, size_t errlen);

#endif
