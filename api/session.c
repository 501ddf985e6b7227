/* session.c: sessions of the dashboard's sign-in (session.h). */
#define _GNU_SOURCE
#include "session.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct session_slot {
    char id[SESSION_ID_CHARS + 1];   /* "" when free */
    double expires;                  /* the now of session_open plus the ttl */
} session_slot;

struct session_table {
    pthread_mutex_t mu;
    session_slot *slots;
    int capacity;
    int64_t ttl_s;
};

int session_table_create(session_table **out, int capacity, int64_t ttl_s)
{
    session_table *t;
    *out = NULL;
    if (capacity <= 0 || ttl_s <= 0)
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
    t->ttl_s = ttl_s;
    *out = t;
    return 0;
}

void session_table_destroy(session_table *t)
{
    if (!t)
        return;
    /* The ids are credentials: leave none behind in freed memory. */
    explicit_bzero(t->slots, (size_t)t->capacity * sizeof *t->slots);
    free(t->slots);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int64_t session_ttl(const session_table *t)
{
    return t->ttl_s;
}

int session_token_equal(const char *expected, const char *given)
{
    size_t n, m;
    unsigned char diff = 0;
    if (!expected || !given)
        return 0;
    n = strlen(given);
    m = strlen(expected);
    for (size_t i = 0; i < m; i++)
        diff |= (unsigned char)(expected[i] ^ (i < n ? given[i] : 0));
    return diff == 0 && n == m;
}

int session_open(session_table *t, double now, char id[SESSION_ID_CHARS + 1])
{
    unsigned char raw[SESSION_ID_CHARS / 2];
    static const char hex[] = "0123456789abcdef";
    int victim = 0;

    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return -EIO;
    for (size_t i = 0; i < sizeof raw; i++) {
        id[2 * i] = hex[raw[i] >> 4];
        id[2 * i + 1] = hex[raw[i] & 15];
    }
    id[SESSION_ID_CHARS] = '\0';
    explicit_bzero(raw, sizeof raw);
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < t->capacity; i++) {
        if (!t->slots[i].id[0] || t->slots[i].expires <= now) {
            victim = i;
            break;
        }
        if (t->slots[i].expires < t->slots[victim].expires)
            victim = i;
    }
    memcpy(t->slots[victim].id, id, SESSION_ID_CHARS + 1);
    t->slots[victim].expires = now + (double)t->ttl_s;
    pthread_mutex_unlock(&t->mu);
    return 0;
}

/* The slot holding id, or -1; every slot is compared in full, so the time taken does not
 * depend on where (or whether) id is found. Called with the lock held. */
static int slot_of(const session_table *t, const char *id)
{
    int found = -1;
    if (strlen(id) != SESSION_ID_CHARS)
        return -1;
    for (int i = 0; i < t->capacity; i++)
        if (session_token_equal(t->slots[i].id, id) && t->slots[i].id[0])
            found = i;
    return found;
}

int session_check(session_table *t, const char *id, double now)
{
    int rc = -ENOENT, i;
    pthread_mutex_lock(&t->mu);
    i = slot_of(t, id);
    if (i >= 0 && t->slots[i].expires > now) {
        rc = 0;
    } else if (i >= 0) {
        memset(&t->slots[i], 0, sizeof t->slots[i]);
        rc = -ETIMEDOUT;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int session_close(session_table *t, const char *id)
{
    int i;
    pthread_mutex_lock(&t->mu);
    i = slot_of(t, id);
    if (i >= 0)
        memset(&t->slots[i], 0, sizeof t->slots[i]);
    pthread_mutex_unlock(&t->mu);
    return i >= 0 ? 0 : -ENOENT;
}

int session_cookie_find(const char *header, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = header;
    while (p && *p) {
        size_t len;
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        len = strcspn(p, ";");
        if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            size_t vl = len - nl - 1;
            const char *v = p + nl + 1;
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                v++;
                vl -= 2;
            }
            if (vl + 1 > outlen)
                return -E2BIG;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return 0;
        }
        p += len;
    }
    return -ENOENT;
}

int session_cookie(char *out, size_t len, const char *name, const char *id, int64_t max_age,
                   int secure)
{
    int n = snprintf(out, len, "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s",
                     name, id ? id : "", id ? (long long)max_age : 0ll,
                     secure ? "; Secure" : "");
    return n < 0 || (size_t)n >= len ? -E2BIG : 0;
}
