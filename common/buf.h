/* buf.h: growable arrays: the one doubling rule for every list that grows by appending. */
#ifndef SGDRD_BUF_H
#define SGDRD_BUF_H

#include <stddef.h>

/* Makes room for need elements of elem bytes in p, whose capacity is *cap elements.
 * Returns p itself when it is big enough, else the reallocated array (capacity doubled
 * from 16 until it fits, written to *cap). On failure returns NULL and leaves p and *cap
 * as they were: the caller still owns p and frees it. */
void *buf_grow(void *p, int *cap, int need, size_t elem);

/* The same for a byte buffer of *cap bytes that must hold need bytes, doubling from
 * first; never past limit (0: no limit), and NULL when need is over limit. */
void *buf_grow_bytes(void *p, size_t *cap, size_t need, size_t first, size_t limit);

#endif
