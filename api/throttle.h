/* throttle.h: failed sign-ins per client address. A client that fails max_fails times
 * (a wrong token to POST /session, or a wrong bearer header) within window_s seconds of
 * its first failure is refused for window_s seconds from its last one, its guesses no
 * longer compared; a success clears its count. The table holds at most capacity
 * addresses: when it is full a new one takes the slot of the one idle longest (one not
 * refused, when there is one), so a flood of made-up addresses costs no memory.
 * Thread-safe; no HTTP here. */
#ifndef SGDRD_API_THROTTLE_H
#define SGDRD_API_THROTTLE_H

#define THROTTLE_MAX_FAILS 5
#define THROTTLE_WINDOW_S 60
#define THROTTLE_CAPACITY 1024
#define THROTTLE_ADDR_MAX 64     /* an address longer than this is cut (INET6 text fits) */

typedef struct throttle throttle;

/* 0, -EINVAL (a parameter not positive) or -ENOMEM. */
int throttle_create(throttle **out, int capacity, int max_fails, double window_s);
/* throttle_destroy(NULL) is safe. */
void throttle_destroy(throttle *t);

/* 0 when addr may try at now (seconds, any monotonic clock); else the whole seconds it
 * must wait (at least 1). */
int throttle_wait_s(throttle *t, const char *addr, double now);
/* Counts one failure of addr at now. */
void throttle_fail(throttle *t, const char *addr, double now);
/* Forgets addr's failures (it signed in). */
void throttle_clear(throttle *t, const char *addr);
/* Addresses the table holds now (for tests: never over its capacity). */
int throttle_count(throttle *t);

#endif
