/* image.c: PNG (libpng) and JPEG (libjpeg-turbo) decoding and header probing, with every
 * refusal (empty, truncated, corrupt, zero-sized, CMYK, too large) reported as a reason. */
#include "data.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include "errmsg.h"

/* Anything bigger than this on disk is no image we want to hold in memory at once. */
#define IMAGE_MAX_FILE_BYTES (1ll << 30)

typedef enum img_kind { KIND_UNKNOWN, KIND_PNG, KIND_JPEG } img_kind;

static img_kind sniff(const uint8_t *b, size_t n)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(b, png_sig, 8) == 0)
        return KIND_PNG;
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return KIND_JPEG;
    return KIND_UNKNOWN;
}

static int check_size(int64_t w, int64_t h, int64_t max_pixels, char *err, size_t errlen)
{
    if (max_pixels <= 0)
        max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    if (w <= 0 || h <= 0) {
        err_set(err, errlen, "zero-sized image (%lldx%lld)", (long long)w, (long long)h);
        return -EINVAL;
    }
    if (w * h > max_pixels) {
        err_set(err, errlen, "image too large: %lldx%lld is over %lld pixels", (long long)w,
                (long long)h, (long long)max_pixels);
        return -EFBIG;
    }
    return 0;
}

/* ---- PNG ------------------------------------------------------------------------------ */

typedef struct png_ctx {
    const uint8_t *buf;  /* memory source, or NULL when reading from fp */
    size_t len, pos;
    char msg[200];
} png_ctx;

static void png_err_fn(png_structp png, png_const_charp msg)
{
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* libpng prints warnings to stderr by default; a daemon log has no use for them. */
static void png_warn_fn(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void png_mem_read(png_structp png, png_bytep out, png_size_t n)
{
    png_ctx *ctx = png_get_io_ptr(png);
    if (n > ctx->len - ctx->pos)
        png_error(png, "truncated file (unexpected end of data)");
    memcpy(out, ctx->buf + ctx->pos, n);
    ctx->pos += n;
}

static void png_file_read(png_structp png, png_bytep out, png_size_t n)
{
    FILE *fp = png_get_io_ptr(png);
    if (fread(out, 1, n, fp) != n)
        png_error(png, "truncated file (unexpected end of data)");
}

/* Decodes (or, with header_only, probes) a PNG from memory (buf) or from fp. */
static int png_decode(image *out, const uint8_t *buf, size_t len, FILE *fp, int header_only,
                      int64_t max_pixels, char *err, size_t errlen)
{
    png_ctx ctx = {.buf = buf, .len = len};
    /* Written between setjmp and a possible longjmp: volatile so the cleanup sees them. */
    uint8_t *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    png_infop info = NULL;
    int rc = 0;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_err_fn,
                                             png_warn_fn);
    if (!png) {
        err_set(err, errlen, "out of memory");
        return -ENOMEM;
    }
    info = png_create_info_struct(png);
    if (!info) {
        err_set(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out_destroy;
    }
    if (setjmp(png_jmpbuf(png))) {
        err_set(err, errlen, "corrupt PNG: %s", ctx.msg);
        rc = -EINVAL;
        goto out_free_px;
    }
    if (fp)
        png_set_read_fn(png, fp, png_file_read);
    else
        png_set_read_fn(png, &ctx, png_mem_read);

    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    int c = (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) ? 1 : 3;
    rc = check_size(w, h, max_pixels, err, errlen);
    if (rc)
        goto out_free_px;
    if (header_only) {
        out->w = (int)w;
        out->h = (int)h;
        out->c = c;
        out->px = NULL;
        goto out_destroy;
    }

    if (depth == 16)
        png_set_scale_16(png);
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (color & PNG_COLOR_MASK_ALPHA)
        png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if ((int)png_get_channels(png, info) != c || png_get_bit_depth(png, info) != 8) {
        err_set(err, errlen, "unsupported PNG layout (colour type %d, depth %d)", color, depth);
        rc = -EINVAL;
        goto out_free_px;
    }

    size_t stride = (size_t)w * c;
    px = malloc(stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!px || !rows) {
        err_set(err, errlen, "out of memory for a %ux%u image", (unsigned)w, (unsigned)h);
        rc = -ENOMEM;
        goto out_free_px;
    }
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = px + y * stride;
    png_read_image(png, rows);
    /* Reading up to IEND catches files cut after their last pixel row. */
    png_read_end(png, NULL);
    out->w = (int)w;
    out->h = (int)h;
    out->c = c;
    out->px = px;
    px = NULL;

out_free_px:
    free(rows);
    free(px);
out_destroy:
    png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    return rc;
}

/* ---- JPEG ----------------------------------------------------------------------------- */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr mgr;  /* first: libjpeg hands us a pointer to it */
    jmp_buf jmp;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} jpeg_ctx;

static void jpeg_error_exit_fn(j_common_ptr cinfo)
{
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    cinfo->err->format_message(cinfo, ctx->msg);
    longjmp(ctx->jmp, 1);
}

/* libjpeg only warns about a premature end and pads with grey; we refuse such files.
 * Other warnings (extraneous bytes and the like) are common in real files and harmless. */
static void jpeg_emit_fn(j_common_ptr cinfo, int level)
{
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF)
        ctx->truncated = 1;
}

/* min_shorter > 0 lets libjpeg scale by 1/2, 1/4 or 1/8 in the DCT while the shorter side
 * stays at least min_shorter: a large photo bound for 224 px decodes many times faster. */
static int jpeg_decode(image *out, const uint8_t *buf, size_t len, FILE *fp, int header_only,
                       int min_shorter, int64_t max_pixels, char *err, size_t errlen)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_ctx ctx;
    uint8_t *volatile px = NULL;
    volatile int rc = 0;

    memset(&ctx, 0, sizeof ctx);
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&ctx.mgr);
    ctx.mgr.error_exit = jpeg_error_exit_fn;
    ctx.mgr.emit_message = jpeg_emit_fn;
    if (setjmp(ctx.jmp)) {
        err_set(err, errlen, "corrupt JPEG: %s", ctx.msg);
        rc = -EINVAL;
        goto out_destroy;
    }
    jpeg_create_decompress(&cinfo);
    if (fp)
        jpeg_stdio_src(&cinfo, fp);
    else
        jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    if (ctx.truncated) {
        err_set(err, errlen, "truncated JPEG (premature end of file)");
        rc = -EINVAL;
        goto out_destroy;
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        err_set(err, errlen, "CMYK JPEG is not supported (convert it to RGB)");
        rc = -ENOTSUP;
        goto out_destroy;
    }
    int c = cinfo.num_components == 1 ? 1 : 3;
    rc = check_size(cinfo.image_width, cinfo.image_height, max_pixels, err, errlen);
    if (rc)
        goto out_destroy;
    if (header_only) {
        out->w = (int)cinfo.image_width;
        out->h = (int)cinfo.image_height;
        out->c = c;
        out->px = NULL;
        goto out_destroy;
    }

    cinfo.out_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    if (min_shorter > 0) {
        unsigned shorter = cinfo.image_width < cinfo.image_height ? cinfo.image_width
                                                                  : cinfo.image_height;
        for (unsigned denom = 8; denom > 1; denom /= 2)
            if ((shorter + denom - 1) / denom >= (unsigned)min_shorter) {
                cinfo.scale_num = 1;
                cinfo.scale_denom = denom;
                break;
            }
    }
    jpeg_start_decompress(&cinfo);
    if ((int)cinfo.output_components != c) {
        err_set(err, errlen, "unsupported JPEG layout (%d components)", cinfo.output_components);
        rc = -EINVAL;
        goto out_destroy;
    }
    size_t stride = (size_t)cinfo.output_width * c;
    px = malloc(stride * cinfo.output_height);
    if (!px) {
        err_set(err, errlen, "out of memory for a %ux%u image", cinfo.output_width,
                cinfo.output_height);
        rc = -ENOMEM;
        goto out_destroy;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = px + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
        if (ctx.truncated)
            break;
    }
    if (ctx.truncated) {
        err_set(err, errlen, "truncated JPEG (premature end of file)");
        rc = -EINVAL;
        goto out_destroy;
    }
    jpeg_finish_decompress(&cinfo);
    if (ctx.truncated) {
        err_set(err, errlen, "truncated JPEG (premature end of file)");
        rc = -EINVAL;
        goto out_destroy;
    }
    out->w = (int)cinfo.output_width;
    out->h = (int)cinfo.output_height;
    out->c = c;
    out->px = px;
    px = NULL;

out_destroy:
    /* Safe even when jpeg_create_decompress failed part-way: cinfo was zeroed first. */
    jpeg_destroy_decompress(&cinfo);
    free(px);
    return rc;
}

/* ---- public --------------------------------------------------------------------------- */

int image_decode_mem(image *out, const void *buf, size_t len, int64_t max_pixels, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!buf || len == 0) {
        err_set(err, errlen, "empty file");
        return -EINVAL;
    }
    switch (sniff(buf, len)) {
    case KIND_PNG:
        return png_decode(out, buf, len, NULL, 0, max_pixels, err, errlen);
    case KIND_JPEG:
        return jpeg_decode(out, buf, len, NULL, 0, 0, max_pixels, err, errlen);
    default:
        err_set(err, errlen, "not a PNG or JPEG image (unrecognised signature)");
        return -EINVAL;
    }
}

/* Internal (dataset.c too): O_NONBLOCK because opening a FIFO for reading blocks until a
 * writer comes, which may be never; the type is checked on the open descriptor so that a
 * file swapped after a scan cannot slip through. */
int data_open_regular(const char *path, long long *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        err_set(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (size)
        *size = (long long)st.st_size;
    return fd;
}

int data_fopen_regular(const char *path, const char *mode, FILE **out, long long *size,
                       char *err, size_t errlen)
{
    *out = NULL;
    int fd = data_open_regular(path, size, err, errlen);
    if (fd < 0)
        return fd;
    if (!(*out = fdopen(fd, mode))) {
        close(fd);
        err_set(err, errlen, "out of memory opening %s", path);
        return -ENOMEM;
    }
    return 0;
}

/* Opens path and sniffs its kind from the first bytes, leaving fp at offset 0. */
static int open_sniff(const char *path, FILE **fpo, img_kind *kind, long long *size, char *err,
                      size_t errlen)
{
    FILE *fp;
    int rc = data_fopen_regular(path, "rb", &fp, size, err, errlen);
    if (rc)
        return rc;
    uint8_t sig[8];
    size_t n = fread(sig, 1, sizeof sig, fp);
    if (n == 0) {
        err_set(err, errlen, "empty file");
        fclose(fp);
        return -EINVAL;
    }
    *kind = sniff(sig, n);
    if (*kind == KIND_UNKNOWN) {
        err_set(err, errlen, "not a PNG or JPEG image (unrecognised signature)");
        fclose(fp);
        return -EINVAL;
    }
    rewind(fp);
    *fpo = fp;
    return 0;
}

int image_decode_file(image *out, const char *path, int64_t max_pixels, char *err,
                      size_t errlen)
{
    return image_decode_file_min(out, path, 0, max_pixels, err, errlen);
}

int image_decode_file_min(image *out, const char *path, int min_shorter, int64_t max_pixels,
                          char *err, size_t errlen)
{
    FILE *fp;
    img_kind kind;
    long long size;
    memset(out, 0, sizeof *out);
    int rc = open_sniff(path, &fp, &kind, &size, err, errlen);
    if (rc)
        return rc;
    if (size > IMAGE_MAX_FILE_BYTES) {
        err_set(err, errlen, "file too large (%lld bytes)", size);
        fclose(fp);
        return -EFBIG;
    }
    /* Reading the whole file first lets both decoders run from memory, which is faster
     * than stdio callbacks and keeps one decode path per format. */
    uint8_t *buf = malloc((size_t)size);
    if (!buf) {
        err_set(err, errlen, "out of memory reading %s", path);
        fclose(fp);
        return -ENOMEM;
    }
    size_t got = fread(buf, 1, (size_t)size, fp);
    fclose(fp);
    if (kind == KIND_PNG)
        rc = png_decode(out, buf, got, NULL, 0, max_pixels, err, errlen);
    else
        rc = jpeg_decode(out, buf, got, NULL, 0, min_shorter, max_pixels, err, errlen);
    free(buf);
    return rc;
}

/* Internal (dataset.c): probes width, height and channels from the header. */
int image_probe_file_c(const char *path, int *w, int *h, int *c, int64_t max_pixels, char *err,
                       size_t errlen)
{
    FILE *fp;
    img_kind kind;
    long long size;
    int rc = open_sniff(path, &fp, &kind, &size, err, errlen);
    if (rc)
        return rc;
    image im = {0};
    if (kind == KIND_PNG)
        rc = png_decode(&im, NULL, 0, fp, 1, max_pixels, err, errlen);
    else
        rc = jpeg_decode(&im, NULL, 0, fp, 1, 0, max_pixels, err, errlen);
    fclose(fp);
    if (rc == 0) {
        *w = im.w;
        *h = im.h;
        if (c)
            *c = im.c;
    }
    return rc;
}

int image_probe_file(const char *path, int *w, int *h, char *err, size_t errlen)
{
    return image_probe_file_c(path, w, h, NULL, INT64_MAX, err, errlen);
}

void image_free(image *im)
{
    if (!im)
        return;
    free(im->px);
    im->px = NULL;
    im->w = im->h = im->c = 0;
}
