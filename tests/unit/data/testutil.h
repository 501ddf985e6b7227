/* testutil.h: helpers for the data suite: writing PNG/JPEG/IDX files with libpng, libjpeg
 * and zlib, temporary folders, and small file utilities. */
#ifndef SGDRD_TEST_DATA_UTIL_H
#define SGDRD_TEST_DATA_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Writes a PNG of colour type `color` (PNG_COLOR_TYPE_*) and bit depth `depth` from raw
 * samples already in that layout (for 16-bit: big-endian pairs). For palette images,
 * palette holds n_palette RGB triples. Returns 0 on success. */
int tu_write_png(const char *path, int w, int h, int color, int depth, int interlace,
                 const uint8_t *samples, const uint8_t *palette, int n_palette);
/* Writes a JPEG from w*h*c bytes (c = 1 gray, 3 RGB, 4 CMYK). */
int tu_write_jpeg(const char *path, int w, int h, int c, const uint8_t *px, int quality,
                  int progressive);
/* Writes an IDX file of unsigned bytes with the given dims, plain or gzip. */
int tu_write_idx(const char *path, int n_dims, const int *dims, const uint8_t *data, int gz);

/* Creates a fresh temporary folder (returned malloc'd); tu_rmtree removes it. */
char *tu_mkdtemp(void);
void tu_rmtree(const char *path);
int tu_mkdirs(const char *path);
/* Reads a whole file (malloc'd) or writes bytes to one. */
uint8_t *tu_read_file(const char *path, size_t *len);
int tu_write_file(const char *path, const void *buf, size_t len);
/* Joins two path parts into a static rotating buffer (enough for a few at once). */
const char *tu_path(const char *dir, const char *name);

#endif
