/* loader.c: a pool of decode/augment threads filling a bounded ring of ready batches, in a
 * fixed order, with per-epoch seeded shuffling and an optional cache of decoded images. */
#include "data.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "internal.h"
#include "rng.h"
#include "errmsg.h"

#define STREAM_SHUFFLE 0x73687566ull /* "shuf" */
#define STREAM_AUGMENT 0x61756700ull /* "aug" */

typedef struct slot {
    batch b;
    int ready;   /* filled for the current epoch, not yet released */
} slot;

struct loader {
    dataset *ds;
    ds_split split;
    loader_config cfg;
    int n_items, n_classes, multi_label;
    int n_threads, n_slots;

    pthread_t *threads;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t work;     /* workers: a batch can be claimed, or quit */
    pthread_cond_t ready;    /* consumer: a slot became ready */
    pthread_cond_t idle;     /* begin_epoch/destroy: no worker is busy */

    /* Guarded by mu. */
    int quit, active, busy, error;
    int error_batch;         /* the earliest batch whose fill failed, when error */
    int n_batches, next_claim, released, held;
    int epoch;
    atomic_int gen;          /* bumped to abandon an epoch; workers poll it per item */
    int sz, c;
    tfm_config tfm;
    tfm_plan plan;           /* the epoch's one plan for every item, when fixed */
    int fixed;
    int *order;              /* (n_items) item index at each position of the epoch */
    slot *slots;             /* (n_slots) */

    /* The cache: decoded images, shrunk to prescale on their shorter side. */
    pthread_mutex_t cache_mu;
    image *cache;            /* (n_items); px NULL when absent */
    size_t cache_used;
    int prescale;            /* shorter side the cached images were shrunk to */
};

/* The shorter side a decoded image is shrunk to before its transforms: as large as the
 * biggest random zoom needs. fast.ai 0.7 did the same on disk with resize(). */
static int prescale_for(const loader *l, int sz)
{
    float z = l->cfg.tfm.max_zoom > 1 ? l->cfg.tfm.max_zoom : 1;
    return (int)(sz * z + 0.999f);
}

static void cache_clear(loader *l)
{
    if (!l->cache)
        return;
    for (int i = 0; i < l->n_items; i++)
        image_free(&l->cache[i]);
    l->cache_used = 0;
}

/* The image of item `item`, shrunk to the prescale size; from the cache when there.
 * Returns 0 with *im owned by the caller unless *borrowed (a view into an in-memory
 * dataset, which the cache skips: it would only hold a second copy), or the decode
 * error. */
static int load_item(loader *l, int item, int prescale, image *im, int *borrowed)
{
    *borrowed = 0;
    image view;
    if (dataset_item_view(l->ds, l->split, item, &view) == 0) {
        int shorter = view.w < view.h ? view.w : view.h;
        if (shorter > prescale)
            return image_scale_min(im, &view, prescale);
        *im = view;
        *borrowed = 1;
        return 0;
    }
    if (l->cache) {
        pthread_mutex_lock(&l->cache_mu);
        image *c = &l->cache[item];
        int hit = c->px != NULL && l->prescale == prescale;
        if (hit) {
            size_t n = (size_t)c->w * c->h * c->c;
            im->px = malloc(n);
            if (im->px) {
                memcpy(im->px, c->px, n);
                im->w = c->w;
                im->h = c->h;
                im->c = c->c;
            }
        }
        pthread_mutex_unlock(&l->cache_mu);
        if (hit)
            return im->px ? 0 : -ENOMEM;
    }
    image raw;
    int rc = dataset_item_image_min(l->ds, l->split, item, prescale, &raw, NULL, 0);
    if (rc)
        return rc;
    int shorter = raw.w < raw.h ? raw.w : raw.h;
    if (shorter > prescale) {
        rc = image_scale_min(im, &raw, prescale);
        image_free(&raw);
        if (rc)
            return rc;
    } else {
        *im = raw;
    }
    if (l->cache) {
        size_t n = (size_t)im->w * im->h * im->c;
        pthread_mutex_lock(&l->cache_mu);
        image *c = &l->cache[item];
        if (!c->px && l->prescale == prescale && l->cache_used + n <= l->cfg.cache_bytes) {
            c->px = malloc(n);
            if (c->px) {
                memcpy(c->px, im->px, n);
                c->w = im->w;
                c->h = im->h;
                c->c = im->c;
                l->cache_used += n;
            }
        }
        pthread_mutex_unlock(&l->cache_mu);
    }
    return 0;
}

/* Fills slot s with batch b of generation g; items that fail to decode are left out (the
 * dataset lists them as unreadable). Returns 0, 1 when the epoch was abandoned, or < 0
 * (-ENODATA: a shard of a world whose every item failed to decode). */
static int fill_batch(loader *l, int b, int g, slot *s, const tfm_config *tfm,
                      const tfm_plan *fixed, int epoch, int prescale)
{
    const int bs = l->cfg.bs;
    int start = b * bs, end = start + bs;
    if (end > l->n_items)
        end = l->n_items;
    if (l->cfg.shard_size > 1) {
        int64_t lo, hi;
        dist_shard(start, end, l->cfg.shard_rank, l->cfg.shard_size, &lo, &hi);
        start = (int)lo;
        end = (int)hi;
    }
    const size_t per = (size_t)tfm->sz * tfm->sz * s->b.c;
    uint64_t epoch_seed = rng_derive(l->cfg.seed ^ STREAM_AUGMENT, (uint64_t)epoch);
    int n = 0;
    for (int p = start; p < end; p++) {
        if (atomic_load(&l->gen) != g)
            return 1;
        int item = l->order[p];
        image im;
        int borrowed;
        int rc = load_item(l, item, prescale, &im, &borrowed);
        if (rc == -ENOMEM)
            return rc;
        if (rc)
            continue;
        uint64_t rng = rng_derive(epoch_seed, (uint64_t)item);
        tfm_plan plan;
        if (fixed)
            plan = *fixed;
        else
            transform_draw(&plan, tfm, &rng);
        rc = transform_apply_plan(s->b.x + n * per, &im, tfm, &plan);
        if (!borrowed)
            image_free(&im);
        if (rc)
            return rc;
        s->b.y[n] = dataset_item_label(l->ds, l->split, item);
        s->b.index[n] = item;
        if (s->b.targets)
            dataset_item_targets(l->ds, l->split, item, s->b.targets + (size_t)n * l->n_classes);
        n++;
    }
    /* One rank of a world cannot skip a batch the others train on (their sums would
     * wait for it): a shard whose every image failed is an error there. */
    if (n == 0 && end > start && l->cfg.shard_size > 1)
        return -ENODATA;
    s->b.n = n;
    s->b.sz = tfm->sz;
    return 0;
}

static void *worker_main(void *arg)
{
    loader *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->quit) {
        if (l->active && !l->error && l->next_claim < l->n_batches &&
            l->next_claim < l->released + l->n_slots) {
            int b = l->next_claim++;
            int g = atomic_load(&l->gen);
            slot *s = &l->slots[b % l->n_slots];
            tfm_config tfm = l->tfm;
            tfm_plan plan = l->plan;
            int fixed = l->fixed, epoch = l->epoch, prescale = l->prescale;
            l->busy++;
            pthread_mutex_unlock(&l->mu);
            int rc = fill_batch(l, b, g, s, &tfm, fixed ? &plan : NULL, epoch, prescale);
            pthread_mutex_lock(&l->mu);
            l->busy--;
            if (rc < 0 && (!l->error || b < l->error_batch)) {
                l->error = rc;
                l->error_batch = b;
            }
            else if (rc == 0 && atomic_load(&l->gen) == g)
                s->ready = 1;
            pthread_cond_broadcast(&l->ready);
            if (l->busy == 0)
                pthread_cond_broadcast(&l->idle);
            continue;
        }
        pthread_cond_wait(&l->work, &l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Abandons the running epoch and waits for every worker to put its batch down. Caller
 * holds mu. */
static void stop_epoch_locked(loader *l)
{
    atomic_fetch_add(&l->gen, 1);
    l->active = 0;
    while (l->busy > 0)
        pthread_cond_wait(&l->idle, &l->mu);
    for (int i = 0; i < l->n_slots; i++)
        l->slots[i].ready = 0;
    l->held = 0;
}

static void free_slots(loader *l)
{
    if (!l->slots)
        return;
    for (int i = 0; i < l->n_slots; i++) {
        free(l->slots[i].b.x);
        free(l->slots[i].b.y);
        free(l->slots[i].b.targets);
        free(l->slots[i].b.index);
    }
}

int loader_create(loader **out, dataset *ds, ds_split split, const loader_config *cfg,
                  char *err, size_t errlen)
{
    *out = NULL;
    const ds_info *info = dataset_info(ds);
    if (cfg->bs <= 0) {
        err_set(err, errlen, "%s", "bs: must be positive");
        return -EINVAL;
    }
    if (cfg->shard_size < 0 || cfg->shard_rank < 0 ||
        (cfg->shard_size > 0 && cfg->shard_rank >= cfg->shard_size)) {
        err_set(err, errlen, "loader: shard %d of %d does not exist", cfg->shard_rank,
                cfg->shard_size);
        return -EINVAL;
    }
    if (cfg->tfm.c_out != 1 && cfg->tfm.c_out != 3) {
        err_set(err, errlen, "%s", "c_out: must be 1 or 3");
        return -EINVAL;
    }
    if ((unsigned)split > SPLIT_TEST || info->count[split] == 0) {
        err_set(err, errlen, "%s", "split: has no images");
        return -EINVAL;
    }
    loader *l = calloc(1, sizeof *l);
    if (!l) {
        err_set(err, errlen, "%s", "out of memory");
        return -ENOMEM;
    }
    l->ds = ds;
    l->split = split;
    l->cfg = *cfg;
    l->tfm = cfg->tfm;
    l->n_items = info->count[split];
    l->n_classes = info->n_classes;
    l->multi_label = info->multi_label;
    l->n_threads = cfg->threads > 0 ? cfg->threads : 2;
    l->n_slots = (cfg->queue_depth > 0 ? cfg->queue_depth : 4) + 1; /* + the one held */
    l->c = cfg->tfm.c_out;
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->cache_mu, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->ready, NULL);
    pthread_cond_init(&l->idle, NULL);
    atomic_init(&l->gen, 0);

    int rc = -ENOMEM;
    l->order = malloc(sizeof(int) * l->n_items);
    l->slots = calloc(l->n_slots, sizeof(slot));
    l->threads = calloc(l->n_threads, sizeof(pthread_t));
    if (cfg->cache_bytes)
        l->cache = calloc(l->n_items, sizeof(image));
    if (!l->order || !l->slots || !l->threads || (cfg->cache_bytes && !l->cache))
        goto out_fail;
    for (int i = 0; i < l->n_slots; i++) {
        batch *b = &l->slots[i].b;
        b->c = l->c;
        b->y = malloc(sizeof(int32_t) * cfg->bs);
        b->index = malloc(sizeof(int32_t) * cfg->bs);
        if (l->multi_label)
            b->targets = malloc(sizeof(float) * cfg->bs * l->n_classes);
        if (!b->y || !b->index || (l->multi_label && !b->targets))
            goto out_fail;
    }
    for (int i = 0; i < l->n_threads; i++) {
        rc = -pthread_create(&l->threads[i], NULL, worker_main, l);
        if (rc)
            goto out_fail;
        l->n_started++;
    }
    *out = l;
    return 0;

out_fail:
    err_set(err, errlen, "%s", rc == -ENOMEM ? "out of memory" : "cannot start loader threads");
    loader_destroy(l);
    return rc;
}

void loader_destroy(loader *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    if (l->slots)
        stop_epoch_locked(l);
    l->quit = 1;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_started; i++)
        pthread_join(l->threads[i], NULL);
    cache_clear(l);
    free(l->cache);
    free_slots(l);
    free(l->slots);
    free(l->order);
    free(l->threads);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->ready);
    pthread_cond_destroy(&l->idle);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->cache_mu);
    free(l);
}

/* loader_begin_epoch and loader_begin_epoch_plan: plan, when not NULL, replaces the
 * random draws. */
static int begin_epoch(loader *l, int epoch, int sz, int augment, const tfm_plan *plan)
{
    if (sz <= 0)
        return -EINVAL;
    pthread_mutex_lock(&l->mu);
    stop_epoch_locked(l);
    int rc = 0;
    /* Workers are idle now: the slots and the cache are ours to resize. */
    if (sz != l->sz) {
        size_t per = (size_t)sz * sz * l->c * l->cfg.bs;
        for (int i = 0; i < l->n_slots; i++) {
            float *x = realloc(l->slots[i].b.x, sizeof(float) * per);
            if (!x) {
                rc = -ENOMEM;
                l->sz = 0;
                goto out_unlock;
            }
            l->slots[i].b.x = x;
        }
        l->sz = sz;
    }
    int prescale = prescale_for(l, sz);
    if (prescale != l->prescale) {
        pthread_mutex_lock(&l->cache_mu);
        cache_clear(l);
        l->prescale = prescale;
        pthread_mutex_unlock(&l->cache_mu);
    }
    l->tfm = l->cfg.tfm;
    l->tfm.sz = sz;
    l->tfm.augment = augment;
    l->fixed = plan != NULL;
    if (plan)
        l->plan = *plan;
    l->epoch = epoch;
    for (int i = 0; i < l->n_items; i++)
        l->order[i] = i;
    if (l->cfg.shuffle) {
        uint64_t rng = rng_derive(l->cfg.seed ^ STREAM_SHUFFLE, (uint64_t)epoch);
        for (int i = l->n_items - 1; i > 0; i--) {
            int j = (int)rng_below(&rng, (uint32_t)i + 1);
            int t = l->order[i];
            l->order[i] = l->order[j];
            l->order[j] = t;
        }
    }
    l->n_batches = loader_n_batches(l);
    l->next_claim = 0;
    l->released = 0;
    l->error = 0;
    l->active = 1;
    pthread_cond_broadcast(&l->work);
out_unlock:
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int loader_begin_epoch(loader *l, int epoch, int sz, int augment)
{
    return begin_epoch(l, epoch, sz, augment, NULL);
}

int loader_begin_epoch_plan(loader *l, int epoch, int sz, const tfm_plan *plan)
{
    if (!plan)
        return -EINVAL;
    return begin_epoch(l, epoch, sz, 1, plan);
}

int loader_next(loader *l, const batch **out)
{
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    int rc;
    if (!l->active) {
        rc = -EINVAL;
        goto out_unlock;
    }
    for (;;) {
        if (l->held) {
            l->slots[l->released % l->n_slots].ready = 0;
            l->released++;
            l->held = 0;
            pthread_cond_broadcast(&l->work);
        }
        if (l->released >= l->n_batches) {
            rc = 0;
            goto out_unlock;
        }
        slot *s = &l->slots[l->released % l->n_slots];
        /* A failed later batch does not cut short the batches before it: they were
         * claimed first and still come, in order, before the error does. */
        while (!s->ready && !(l->error && l->error_batch <= l->released))
            pthread_cond_wait(&l->ready, &l->mu);
        if (!s->ready) {
            rc = l->error;
            goto out_unlock;
        }
        l->held = 1;
        /* A batch whose every image failed to decode is skipped. */
        if (s->b.n > 0) {
            *out = &s->b;
            rc = 1;
            goto out_unlock;
        }
    }
out_unlock:
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int loader_n_batches(const loader *l)
{
    int bs = l->cfg.bs;
    return l->cfg.drop_last ? l->n_items / bs : (l->n_items + bs - 1) / bs;
}

int loader_n_items(const loader *l)
{
    return l->n_items;
}
