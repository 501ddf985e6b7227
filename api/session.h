/* session.h: the dashboard's sign-in: the bearer token, given once to POST /session, is
 * exchanged for a random session id kept in an HttpOnly, SameSite=Strict cookie. Holds the
 * table of live sessions (in memory: a restart signs everyone out), the constant-time
 * token comparison, and the Cookie / Set-Cookie text. Thread-safe; no HTTP here. */
#ifndef SGDRD_API_SESSION_H
#define SGDRD_API_SESSION_H

#include <stddef.h>
#include <stdint.h>

#define SESSION_ID_CHARS 64          /* hex of 32 random bytes */
#define SESSION_DEFAULT_TTL_S 43200  /* 12 hours */
#define SESSION_COOKIE_MAX 256       /* room for any Set-Cookie value session_cookie writes */

typedef struct session_table session_table;

/* A table of at most capacity sessions, each valid for ttl_s seconds after sign-in.
 * Returns 0 or -ENOMEM / -EINVAL (capacity or ttl_s not positive). */
int session_table_create(session_table **out, int capacity, int64_t ttl_s);
void session_table_destroy(session_table *t);

/* Seconds a session lives (the cookie's Max-Age). */
int64_t session_ttl(const session_table *t);

/* Opens a session at time now (seconds, any monotonic clock) and writes its id (NUL
 * terminated) to id. When the table is full the session closest to expiry makes room.
 * Returns 0, or -EIO when the system has no randomness to give. */
int session_open(session_table *t, double now, char id[SESSION_ID_CHARS + 1]);

/* 0 when id names a session open at now; -ENOENT when unknown, -ETIMEDOUT when expired
 * (it is then forgotten). Compares ids in constant time. */
int session_check(session_table *t, const char *id, double now);

/* Forgets the session id (sign-out). 0, or -ENOENT when there was none. */
int session_close(session_table *t, const char *id);

/* 1 when given equals expected, in time that depends on expected's length only, so that
 * timing tells nothing about how much of a guess was right. NULL never matches. */
int session_token_equal(const char *expected, const char *given);

/* Finds cookie name in a Cookie header ("a=1; name=v") and copies its value to out.
 * 0, -ENOENT when absent, -E2BIG when the value does not fit outlen. */
int session_cookie_find(const char *header, const char *name, char *out, size_t outlen);

/* Writes the Set-Cookie value that stores id under name (HttpOnly, SameSite=Strict,
 * Path=/, Max-Age=max_age, Secure when secure), or, for id NULL, the one that deletes it
 * (Max-Age=0). 0, or -E2BIG when len is too small (SESSION_COOKIE_MAX always fits a
 * name of up to 64 characters). */
int session_cookie(char *out, size_t len, const char *name, const char *id, int64_t max_age,
                   int secure);

#endif
