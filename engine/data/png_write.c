/* png_write.c: encoding an 8-bit image as a PNG in memory (libpng), for thumbnails and
 * augmentation previews that the daemon serves. */
#include "data.h"

#include <errno.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

typedef struct png_buf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} png_buf;

static void buf_write(png_structp png, png_bytep data, png_size_t n)
{
    png_buf *b = png_get_io_ptr(png);
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_flush(png_structp png)
{
    (void)png;
}

int image_encode_png(const image *im, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!im || !im->px || im->w < 1 || im->h < 1 || (im->c != 1 && im->c != 3))
        return -EINVAL;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_buf b = {0};
    /* volatile: read after longjmp */
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return -ENOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        free(b.p);
        return -EIO;
    }
    rows = malloc((size_t)im->h * sizeof *rows);
    if (!rows)
        png_error(png, "out of memory");
    for (int y = 0; y < im->h; y++)
        rows[y] = im->px + (size_t)y * im->w * im->c;
    png_set_write_fn(png, &b, buf_write, buf_flush);
    png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, 8,
                 im->c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    if (b.oom) {
        free(b.p);
        return -ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
