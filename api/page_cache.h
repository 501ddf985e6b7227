/* page_cache.h: a few serialised JSON answers kept for as long as the store has not
 * committed since they were read, so that many clients polling the same page (a metrics
 * page during training) cost one query and one serialisation per commit, not per request.
 * Thread-safe; owns copies of everything put in it. */
#ifndef SGDRD_PAGE_CACHE_H
#define SGDRD_PAGE_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct page_cache page_cache;

/* A cache of `slots` pages (least recently used one replaced). 0 or -ENOMEM. */
int page_cache_create(page_cache **out, int slots);
/* Frees every page; NULL is fine. */
void page_cache_destroy(page_cache *c);

/* A malloc'd copy of the text cached under key for store generation gen (the caller frees
 * it), with its length in *len; NULL when there is none or on allocation failure. */
char *page_cache_get(page_cache *c, const char *key, uint64_t gen, size_t *len);

/* Keeps a copy of text (len bytes) under key for generation gen, replacing an older page
 * of that key or the least recently used one. Failing to copy only costs the cache. */
void page_cache_put(page_cache *c, const char *key, uint64_t gen, const char *text,
                    size_t len);

#endif
