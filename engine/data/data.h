/* data.h: the input side of the engine: datasets (folders, csv, idx), image decoding
 * (libpng, libjpeg-turbo), fast.ai 0.7 transforms, and a prefetching batch loader.
 *
 * Batches are NHWC float32 like every activation in the engine (see ops/ops.h): the
 * engine's convolutions run on NHWC because one im2col row per output pixel makes each
 * layer a single large GEMM.
 *
 * Errors: functions return 0 or a negative errno-style code and, where they take an
 * err buffer, write a one-line reason that names the file or field at fault.
 */
#ifndef SGDRD_DATA_H
#define SGDRD_DATA_H

#include <stddef.h>
#include <stdint.h>

/* ---- images ----------------------------------------------------------------------------- */

/* A decoded image: 8-bit, h rows of w pixels of c channels (1 = gray, 3 = RGB), HWC. */
typedef struct image {
    int w, h, c;
    uint8_t *px;
} image;

#define IMAGE_DEFAULT_MAX_PIXELS (64ll * 1000 * 1000)

/* Decodes a PNG or JPEG (sniffed from the bytes, not the name) into *out: alpha dropped,
 * 16-bit reduced to 8, palette expanded, gray kept as 1 channel. Refuses empty, truncated,
 * corrupt, zero-sized, CMYK, and over max_pixels images with a reason in err; leaks
 * nothing on any path. out->px is malloc'd; free with image_free. */
int image_decode_mem(image *out, const void *buf, size_t len, int64_t max_pixels, char *err,
                     size_t errlen);
int image_decode_file(image *out, const char *path, int64_t max_pixels, char *err,
                      size_t errlen);
/* image_decode_file, allowing a smaller result whose shorter side is still at least
 * min_shorter when the format can shrink while decoding (JPEG: by 1/2, 1/4 or 1/8 in the
 * DCT, much faster for large photos); PNG decodes at full size. 0: full size. */
int image_decode_file_min(image *out, const char *path, int min_shorter, int64_t max_pixels,
                          char *err, size_t errlen);
/* Reads only the header: width and height. */
int image_probe_file(const char *path, int *w, int *h, char *err, size_t errlen);
void image_free(image *im);
/* Encodes im (1 or 3 channels) as a PNG: *out malloc'd (the caller frees it), *len its
 * bytes. 0, -EINVAL (no pixels, other channel counts), -ENOMEM or -EIO (libpng failed). */
int image_encode_png(const image *im, uint8_t **out, size_t *len);

/* ---- datasets ----------------------------------------------------------------------------- */

typedef enum ds_format { DS_FOLDERS, DS_CSV, DS_IDX } ds_format;

/* Items a dataset may list when ds_options.max_items is 0: every item costs memory for
 * as long as the dataset is open (its name, label and size; an IDX item its pixels too),
 * so a small archive declaring millions of tiny images must not register. */
#define DS_DEFAULT_MAX_ITEMS 10000000ll

typedef enum ds_split { SPLIT_TRAIN = 0, SPLIT_VALID = 1, SPLIT_TEST = 2 } ds_split;

typedef struct ds_options {
    ds_format format;
    const char *path;     /* root folder of the dataset */
    double valid_pct;     /* held-out share of train when there is no valid split;
                           * negative means the default 0.2 */
    const char *csv;      /* csv: the labels file, relative to path (default "labels.csv") */
    const char *csv_dir;  /* csv: folder of the images, relative to path (default "train") */
    uint64_t seed;        /* the valid_pct split */
    int64_t max_pixels;   /* 0 means IMAGE_DEFAULT_MAX_PIXELS */
    int64_t max_items;    /* images over every split (and entries of one folder, rows of
                           * the csv) a dataset may hold, else dataset_open refuses it
                           * naming the file; 0 means DS_DEFAULT_MAX_ITEMS */
    /* Every DS_SCAN_EVERY files probed (for idx: every 16 MiB of images read, counting
     * the images): progress (when set) is told how many so far, and a set *stop (when
     * given) ends dataset_open with -ECANCELED. Both borrowed. */
    const volatile int *stop;
    void (*progress)(void *ctx, int64_t files_seen);
    void *progress_ctx;
} ds_options;

/* How many files a scan probes between looks at ds_options.stop and progress. */
#define DS_SCAN_EVERY 256

typedef struct ds_unreadable {
    char *file;   /* path relative to the dataset root */
    char *reason;
} ds_unreadable;

typedef struct ds_info {
    int n_classes;
    char **classes;       /* sorted, stable */
    int multi_label;
    int count[3];         /* images per split (readable ones) */
    int channels;         /* 1 when every image is gray (idx), else 3 */
    int min_w, min_h, median_w, median_h, max_w, max_h;
    float mean[3], std[3];/* per-channel statistics of the training split, 0..1 scale */
    int n_unreadable;
    ds_unreadable *unreadable;
} ds_info;

typedef struct dataset dataset;

/* Scans and opens a dataset; on failure *out = NULL and err says why. Entries that are not
 * regular files, and symlinks that are dangling, loop, or lead out of the dataset's folder
 * (its real path), are never opened: they join the unreadable list with the reason. */
int dataset_open(dataset **out, const ds_options *o, char *err, size_t errlen);
void dataset_destroy(dataset *ds);
const ds_info *dataset_info(const dataset *ds);
/* Item i of a split: its file name (relative to the root; "train-images-idx3-ubyte#12"
 * for idx), its label (single-label), or its multi-hot targets (n_classes floats). */
const char *dataset_item_name(const dataset *ds, ds_split split, int i);
int dataset_item_label(const dataset *ds, ds_split split, int i);
void dataset_item_targets(const dataset *ds, ds_split split, int i, float *targets);
/* Decodes item i. A file that fails is added to the unreadable list (thread-safe). */
int dataset_item_image(dataset *ds, ds_split split, int i, image *out, char *err,
                       size_t errlen);
/* dataset_item_image through image_decode_file_min: the shorter side may come out smaller
 * than stored, but never below min_shorter. */
int dataset_item_image_min(dataset *ds, ds_split split, int i, int min_shorter, image *out,
                           char *err, size_t errlen);
/* dataset_info()->unreadable grows while loaders run (files that fail to decode), so a
 * thread other than the loader's caller reads it through this deep copy, taken under the
 * dataset's lock: *out (free with ds_unreadable_free) and *n. 0 or -ENOMEM. */
int dataset_unreadable_copy(dataset *ds, ds_unreadable **out, int *n);
void ds_unreadable_free(ds_unreadable *list, int n);
/* Whether the real path `path` is root (a real path too) or inside it. */
int path_is_under(const char *path, const char *root);

/* ---- transforms (fast.ai 0.7) ------------------------------------------------------------- */

/* side_on: rotate, lighting and left-right flips (fast.ai's transforms_side_on); top_down:
 * the same with all eight dihedral turns; flip: left-right flips alone (RandomFlip), for
 * objects photographed upright whose training is too short to profit from rotations. */
typedef enum tfm_set { TFMS_NONE, TFMS_SIDE_ON, TFMS_TOP_DOWN, TFMS_FLIP } tfm_set;

typedef struct tfm_config {
    int sz;           /* output is sz x sz */
    int c_out;        /* channels the model takes: gray replicated, RGB averaged */
    tfm_set tfms;
    float max_zoom;   /* RandomScale upper bound; <= 1 disables it */
    int augment;      /* training: random scale, crop and tfms; else centre crop only */
    float mean[3], std[3];
    /* AddPadding (fast.ai's pad, e.g. sz // 8): after the scaling, reflect-pad the image
     * by pad pixels on every side (OpenCV's BORDER_REFLECT), so that the random crop
     * shifts the content by up to pad pixels each way. The centre crop is unchanged by it.
     * pad is in pixels at size pad_sz; at another size sz it is round(pad * sz / pad_sz),
     * so a progressively resized run shifts by the same share of the image (pad_sz 0: pad
     * pixels at every size). */
    int pad, pad_sz;
} tfm_config;

/* Writes the transformed, normalised image as (sz, sz, c_out) floats to out, drawing every
 * random choice from *rng. Same image, config and rng state: same output, bit for bit.
 * Order (fast.ai 0.7): Scale or RandomScale, AddPadding, RandomRotate, RandomLighting,
 * RandomFlip or RandomDihedral, RandomCrop (augment) or CenterCrop, normalise. Two
 * departures: a rotation of a padded image reflects the unpadded image where it reaches
 * past the padding (OpenCV reflects the padded one), and the
 * image mean in RandomLighting is taken before the rotation, not after (the rotation then
 * only computes the pixels the crop keeps; reflect padding keeps the means within a
 * fraction of a percent). If memory runs out the output is all zeros
 * (transform_apply_plan reports it). */
void transform_apply(float *out, const image *in, const tfm_config *cfg, uint64_t *rng);

/* The random choices of one transform. transform_draw fills it from *rng the way
 * transform_apply does; tests and test-time augmentation may also fill one by hand. */
typedef struct tfm_plan {
    float zoom;        /* RandomScale: shorter side becomes floor(sz * zoom); 1 = plain Scale */
    float rotate_deg;  /* RandomRotate, counter-clockwise, reflect padding; 0 = none */
    float brightness;  /* RandomLighting b; 0 = none */
    float contrast;    /* RandomLighting c': factor 1+c' if c' >= 0, else 1/(1-c') */
    int dihedral;      /* 0..7: rotate 90 deg counter-clockwise (dihedral & 3) times, then
                        * flip left-right if (dihedral & 4); RandomFlip is 0 or 4 */
    float crop_x, crop_y; /* RandomCrop: offset = floor(crop * slack); negative: centre */
} tfm_plan;

/* The padding cfg gives at its size sz, in pixels (tfm_config's pad and pad_sz). */
int transform_pad_at(const tfm_config *cfg);
/* The identity plan: Scale(sz) and CenterCrop only (validation, prediction). */
void transform_plan_identity(tfm_plan *p);
void transform_draw(tfm_plan *p, const tfm_config *cfg, uint64_t *rng);
/* transform_apply with the choices given: 0, or -ENOMEM (out then all zeros). */
int transform_apply_plan(float *out, const image *in, const tfm_config *cfg,
                         const tfm_plan *p);

/* Resizes in so that its shorter side is `shorter` (area-averaging when shrinking, bilinear
 * when enlarging), into a new malloc'd 8-bit image *out. 0, -EINVAL or -ENOMEM. */
int image_scale_min(image *out, const image *in, int shorter);

/* ---- loader ----------------------------------------------------------------------------- */

typedef struct batch {
    int n;              /* images in this batch (the last may be short) */
    int sz, c;
    float *x;           /* (n, sz, sz, c) */
    int32_t *y;         /* (n) labels, single-label */
    float *targets;     /* (n, n_classes) multi-hot, multi-label only (else NULL) */
    int32_t *index;     /* (n) item indices in the split */
} batch;

typedef struct loader_config {
    int bs;
    tfm_config tfm;
    int shuffle;          /* reshuffle every epoch from seed and epoch number */
    int drop_last;
    int threads;          /* decode/augment workers; 0 means 2 */
    int queue_depth;      /* ready batches held; 0 means 4 */
    uint64_t seed;
    size_t cache_bytes;   /* cache decoded images in memory under this cap; 0 = off */
    /* Data parallelism: with shard_size > 1, every batch holds only shard shard_rank of
     * the items the whole batch would hold (dist_shard's split, in order); the epoch's
     * order and the batches are those of one process. 0 and 0: the whole batch. */
    int shard_rank, shard_size;
} loader_config;

typedef struct loader loader;

int loader_create(loader **out, dataset *ds, ds_split split, const loader_config *cfg,
                  char *err, size_t errlen);
/* Stops the workers (cleanly, also mid-epoch) and frees everything; NULL is fine. */
void loader_destroy(loader *l);
/* Starts epoch `epoch` at size sz (progressive resizing: sz may change between epochs),
 * with augmentation on or off. Abandons whatever the previous epoch had left. */
int loader_begin_epoch(loader *l, int epoch, int sz, int augment);
/* Starts epoch `epoch` with every item transformed by the same plan (test-time
 * augmentation's fixed passes) instead of random draws. 0 or -EINVAL. */
int loader_begin_epoch_plan(loader *l, int epoch, int sz, const tfm_plan *plan);
/* The next batch of the epoch: 1 with *out set (owned by the loader, valid until the next
 * call, loader_begin_epoch or loader_destroy), 0 at the end of the epoch, negative on
 * error (-EINVAL before any loader_begin_epoch). Batches come in a fixed order and their
 * contents depend only on (seed, epoch, item), never on thread timing: item i's random
 * transform draws from rng_derive(rng_derive(seed ^ "aug", epoch), i). An item that fails
 * to decode is left out of its batch (which comes out shorter; an empty one is skipped)
 * and joins the dataset's unreadable list. A sharded loader (shard_size > 1) skips nothing:
 * a shard whose every item failed is -ENODATA, since the world's other ranks train on that
 * batch and wait for this one's sums. One consumer thread per loader. */
int loader_next(loader *l, const batch **out);
int loader_n_batches(const loader *l);
int loader_n_items(const loader *l);

#endif
