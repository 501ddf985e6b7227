/* clock_mono.h: seconds on the monotonic clock, for durations and deadlines. */
#ifndef SGDRD_CLOCK_MONO_H
#define SGDRD_CLOCK_MONO_H

/* Seconds since an arbitrary fixed point; never goes back when the wall clock is set. */
double clock_mono_s(void);

#endif
