/* throttle.c: the failed sign-in table (throttle.h). */
#define _GNU_SOURCE
#include "throttle.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct throttle_slot {
    char addr[THROTTLE_ADDR_MAX + 1]; /* "" when free */
    int fails;                        /* within the window that began at first */
    double first, last;               /* the window's first failure, and the latest */
} throttle_slot;

struct throttle {
    pthread_mutex_t mu;
    throttle_slot *slots;
    int capacity, max_fails;
    double window_s;
};

int throttle_create(throttle **out, int capacity, int max_fails, double window_s)
{
    throttle *t;
    *out = NULL;
    if (capacity <= 0 || max_fails <= 0 || !(window_s > 0))
        return -EINVAL;
    t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->slots = calloc((size_t)capacity, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return -ENOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->capacity = capacity;
    t->max_fails = max_fails;
    t->window_s = window_s;
    *out = t;
    return 0;
}

void throttle_destroy(throttle *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->slots);
    free(t);
}

static int refused(const throttle *t, const throttle_slot *s, double now)
{
    return s->fails >= t->max_fails && now - s->last < t->window_s;
}

/* addr's slot, or NULL. Called under mu. */
static throttle_slot *find(throttle *t, const char *addr)
{
    for (int i = 0; i < t->capacity; i++)
        if (t->slots[i].addr[0] && !strncmp(t->slots[i].addr, addr, THROTTLE_ADDR_MAX))
            return &t->slots[i];
    return NULL;
}

/* A slot for a new address: a free one, else the one idle longest among those not
 * refused, else the one idle longest. Called under mu. */
static throttle_slot *take(throttle *t, double now)
{
    throttle_slot *best = NULL;
    int best_refused = 1;
    for (int i = 0; i < t->capacity; i++) {
        throttle_slot *s = &t->slots[i];
        if (!s->addr[0])
            return s;
        int r = refused(t, s, now);
        if (!best || r < best_refused || (r == best_refused && s->last < best->last)) {
            best = s;
            best_refused = r;
        }
    }
    return best;
}

int throttle_wait_s(throttle *t, const char *addr, double now)
{
    int wait = 0;
    pthread_mutex_lock(&t->mu);
    throttle_slot *s = find(t, addr);
    if (s && refused(t, s, now)) {
        wait = (int)ceil(s->last + t->window_s - now);
        wait = wait < 1 ? 1 : wait;
    }
    pthread_mutex_unlock(&t->mu);
    return wait;
}

void throttle_fail(throttle *t, const char *addr, double now)
{
    pthread_mutex_lock(&t->mu);
    throttle_slot *s = find(t, addr);
    if (!s) {
        s = take(t, now);
        memset(s, 0, sizeof *s);
        strncpy(s->addr, addr, THROTTLE_ADDR_MAX);
    }
    /* A window long past, or a refusal served out, starts the count again. */
    if (s->fails && now - s->first >= t->window_s && !refused(t, s, now))
        s->fails = 0;
    if (s->fails == 0)
        s->first = now;
    if (s->fails < t->max_fails)
        s->fails++;
    s->last = now;
    pthread_mutex_unlock(&t->mu);
}

void throttle_clear(throttle *t, const char *addr)
{
    pthread_mutex_lock(&t->mu);
    throttle_slot *s = find(t, addr);
    if (s)
        memset(s, 0, sizeof *s);
    pthread_mutex_unlock(&t->mu);
}

int throttle_count(throttle *t)
{
    int n = 0;
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < t->capacity; i++)
        n += t->slots[i].addr[0] != 0;
    pthread_mutex_unlock(&t->mu);
    return n;
}
