/* buf.c: buf_grow, buf_grow_bytes. */
#include "buf.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

void *buf_grow(void *p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return p;
    int nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > INT_MAX / 2)
            return NULL;
        nc *= 2;
    }
    if ((size_t)nc > SIZE_MAX / elem)
        return NULL;
    void *q = realloc(p, (size_t)nc * elem);
    if (q)
        *cap = nc;
    return q;
}

void *buf_grow_bytes(void *p, size_t *cap, size_t need, size_t first, size_t limit)
{
    if (need <= *cap)
        return p;
    if (limit && need > limit)
        return NULL;
    size_t nc = *cap ? *cap : first;
    while (nc < need) {
        if (nc > SIZE_MAX / 2)
            return NULL;
        nc *= 2;
    }
    if (limit && nc > limit)
        nc = limit;
    void *q = realloc(p, nc);
    if (q)
        *cap = nc;
    return q;
}
