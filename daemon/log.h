/* log.h: one line per event on stderr: time, level, job, message. Never log a secret
 * (the bearer token, request bodies). */
#ifndef SGDRD_LOG_H
#define SGDRD_LOG_H

#include <stdint.h>

typedef enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level;

/* Lines above this level are dropped. Default LOG_INFO. */
void log_set_level(log_level l);
/* "error", "warn", "info", "debug" -> 0 and *out; -EINVAL otherwise. */
int log_level_parse(const char *s, log_level *out);

/* Writes "2026-11-28T16:20:01.123Z INFO  job=12 message\n" in one write(2), so lines from
 * different threads never interleave. job 0: no job ("job=-"). Newlines and other control
 * bytes in the message are replaced by spaces to keep one event per line. */
void log_msg(log_level l, int64_t job, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
