/* ds_stats.c: a dataset's image sizes and the per-channel pixel statistics that
 * normalise its inputs. */
#include "ds_internal.h"

#include <math.h>
#include <stdlib.h>

/* Training images decoded for the mean/std statistics of a file dataset: enough for
 * three decimals, few enough that registering a large set stays quick. IDX datasets
 * are in memory and use every image. */
#define STATS_SAMPLE_FILES 1000
/* Large JPEGs are decoded shrunk for the statistics: a mean and std do not need detail. */
#define STATS_MIN_SHORTER 64

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

void ds_size_stats(dataset *ds)
{
    ds_info *in = &ds->info;
    int n = 0;
    for (int s = 0; s < 3; s++)
        n += ds->split[s].n;
    if (n == 0)
        return;
    int *w = malloc(sizeof(int) * n), *h = malloc(sizeof(int) * n);
    if (w && h) {
        int k = 0;
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < ds->split[s].n; i++) {
                w[k] = ds->split[s].v[i].w;
                h[k] = ds->split[s].v[i].h;
                k++;
            }
        qsort(w, n, sizeof(int), cmp_int);
        qsort(h, n, sizeof(int), cmp_int);
        in->min_w = w[0];
        in->max_w = w[n - 1];
        in->median_w = w[n / 2];
        in->min_h = h[0];
        in->max_h = h[n - 1];
        in->median_h = h[n / 2];
    }
    free(w);
    free(h);
}

/* Per-channel mean and std (0..1) of the training split, over every idx image or an
 * evenly spaced sample of file images. Sampled images that fail to decode leave the split
 * (and join the unreadable list). */
void ds_pixel_stats(dataset *ds)
{
    ds_info *in = &ds->info;
    item_vec *tr = &ds->split[SPLIT_TRAIN];
    double sum[3] = {0}, sq[3] = {0}, cnt = 0;
    int n = tr->n, take = n;
    int is_idx = n > 0 && tr->v[0].px != NULL;
    if (!is_idx && take > STATS_SAMPLE_FILES)
        take = STATS_SAMPLE_FILES;
    for (int t = 0; t < take; t++) {
        int i = (int)((int64_t)t * n / take);
        image im;
        if (dataset_item_image_min(ds, SPLIT_TRAIN, i, STATS_MIN_SHORTER, &im, NULL, 0) != 0) {
            /* Listed as unreadable by dataset_item_image; marked to leave the split. */
            tr->v[i].w = -1;
            continue;
        }
        size_t np = (size_t)im.w * im.h;
        double s[3] = {0}, q[3] = {0};
        for (size_t p = 0; p < np; p++)
            for (int ch = 0; ch < im.c; ch++) {
                double v = im.px[p * im.c + ch];
                s[ch] += v;
                q[ch] += v * v;
            }
        for (int ch = 0; ch < 3; ch++) {
            int src = im.c == 1 ? 0 : ch;
            sum[ch] += s[src];
            sq[ch] += q[src];
        }
        cnt += (double)np;
        image_free(&im);
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (tr->v[i].w < 0) {
            ds_item_release(&tr->v[i]);
        } else {
            tr->v[k++] = tr->v[i];
        }
    }
    tr->n = k;
    for (int ch = 0; ch < 3; ch++) {
        if (cnt == 0) {
            in->mean[ch] = 0.5f;
            in->std[ch] = 0.25f;
            continue;
        }
        double m = sum[ch] / cnt, var = sq[ch] / cnt - m * m;
        in->mean[ch] = (float)(m / 255.0);
        in->std[ch] = (float)(sqrt(var > 0 ? var : 0) / 255.0);
        if (in->std[ch] <= 0)
            in->std[ch] = 1;
    }
}
