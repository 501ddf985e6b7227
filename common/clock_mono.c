/* clock_mono.c: clock_mono_s. */
#define _POSIX_C_SOURCE 200809L
#include "clock_mono.h"

#include <time.h>

double clock_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
