/* testutil.c: file writers and temporary folders for the data suite's tests. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

int tu_write_png(const char *path, int w, int h, int color, int depth, int interlace,
                 const uint8_t *samples, const uint8_t *palette, int n_palette)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_bytep *rows = malloc(sizeof(png_bytep) * h);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        fclose(fp);
        return -1;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, w, h, depth, color,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[256];
        for (int i = 0; i < n_palette; i++) {
            pal[i].red = palette[3 * i];
            pal[i].green = palette[3 * i + 1];
            pal[i].blue = palette[3 * i + 2];
        }
        png_set_PLTE(png, info, pal, n_palette);
    }
    png_write_info(png, info);
    int ch = color == PNG_COLOR_TYPE_GRAY ? 1 : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
           : color == PNG_COLOR_TYPE_RGB ? 3 : color == PNG_COLOR_TYPE_RGBA ? 4 : 1;
    size_t stride = ((size_t)w * ch * depth + 7) / 8;
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)samples + y * stride;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return fclose(fp) == 0 ? 0 : -1;
}

int tu_write_jpeg(const char *path, int w, int h, int c, const uint8_t *px, int quality,
                  int progressive)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, fp);
    cinfo.image_width = w;
    cinfo.image_height = h;
    cinfo.input_components = c;
    cinfo.in_color_space = c == 1 ? JCS_GRAYSCALE : c == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    if (progressive)
        jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)px + (size_t)cinfo.next_scanline * w * c;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return fclose(fp) == 0 ? 0 : -1;
}

int tu_write_idx(const char *path, int n_dims, const int *dims, const uint8_t *data, int gz)
{
    uint8_t hdr[16] = {0, 0, 0x08, (uint8_t)n_dims};
    size_t total = 1;
    for (int d = 0; d < n_dims; d++) {
        hdr[4 + 4 * d] = (uint8_t)(dims[d] >> 24);
        hdr[5 + 4 * d] = (uint8_t)(dims[d] >> 16);
        hdr[6 + 4 * d] = (uint8_t)(dims[d] >> 8);
        hdr[7 + 4 * d] = (uint8_t)dims[d];
        total *= (size_t)dims[d];
    }
    size_t hlen = 4 + 4 * (size_t)n_dims;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f)
            return -1;
        int ok = gzwrite(f, hdr, (unsigned)hlen) == (int)hlen &&
                 (total == 0 || gzwrite(f, data, (unsigned)total) == (int)total);
        return gzclose(f) == Z_OK && ok ? 0 : -1;
    }
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    int ok = fwrite(hdr, 1, hlen, fp) == hlen && fwrite(data, 1, total, fp) == total;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/sgdrd-data-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl))
        return NULL;
    return strdup(tmpl);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void tu_rmtree(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_mkdirs(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

int tu_write_file(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    int ok = fwrite(buf, 1, len, fp) == len;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

const char *tu_path(const char *dir, const char *name)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}
