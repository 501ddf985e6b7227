/* page_cache.c: a small LRU of serialised answers keyed by request and store generation. */
#include "page_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_KEY_MAX 160

typedef struct page {
    char key[PAGE_KEY_MAX];
    uint64_t gen;
    uint64_t used;  /* tick of the last get or put: the smallest is replaced first */
    char *text;     /* NULL: empty slot */
    size_t len;
} page;

struct page_cache {
    pthread_mutex_t mu;
    page *pages;
    int n;
    uint64_t tick;
};

int page_cache_create(page_cache **out, int slots)
{
    page_cache *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return -ENOMEM;
    c->pages = calloc((size_t)(slots > 0 ? slots : 1), sizeof *c->pages);
    if (!c->pages) {
        free(c);
        return -ENOMEM;
    }
    c->n = slots > 0 ? slots : 1;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

void page_cache_destroy(page_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        free(c->pages[i].text);
    free(c->pages);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static page *find(page_cache *c, const char *key)
{
    for (int i = 0; i < c->n; i++)
        if (c->pages[i].text && strcmp(c->pages[i].key, key) == 0)
            return &c->pages[i];
    return NULL;
}

char *page_cache_get(page_cache *c, const char *key, uint64_t gen, size_t *len)
{
    char *copy = NULL;
    pthread_mutex_lock(&c->mu);
    page *p = find(c, key);
    if (p && p->gen == gen) {
        copy = malloc(p->len + 1);
        if (copy) {
            memcpy(copy, p->text, p->len + 1);
            *len = p->len;
            p->used = ++c->tick;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return copy;
}

void page_cache_put(page_cache *c, const char *key, uint64_t gen, const char *text,
                    size_t len)
{
    if (strlen(key) >= PAGE_KEY_MAX)
        return;
    char *copy = malloc(len + 1);
    if (!copy)
        return;
    memcpy(copy, text, len);
    copy[len] = '\0';
    pthread_mutex_lock(&c->mu);
    page *p = find(c, key);
    if (p && p->gen > gen) { /* a newer page landed while this one was built */
        pthread_mutex_unlock(&c->mu);
        free(copy);
        return;
    }
    if (!p) {
        p = &c->pages[0];
        for (int i = 1; i < c->n && p->text; i++)
            if (!c->pages[i].text || c->pages[i].used < p->used)
                p = &c->pages[i];
        strcpy(p->key, key);
    }
    free(p->text);
    p->text = copy;
    p->len = len;
    p->gen = gen;
    p->used = ++c->tick;
    pthread_mutex_unlock(&c->mu);
}
