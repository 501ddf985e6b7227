/* log.c: stderr event log (see log.h). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int level = LOG_INFO;

void log_set_level(log_level l)
{
    atomic_store(&level, (int)l);
}

int log_level_parse(const char *s, log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; s && i < 4; i++) {
        if (!strcmp(s, names[i])) {
            *out = (log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void log_msg(log_level l, int64_t job, const char *fmt, ...)
{
    static const char *const tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};
    if ((int)l > atomic_load(&level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    if (job > 0)
        n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ %s job=%lld ",
                      ts.tv_nsec / 1000000, tags[l], (long long)job);
    else
        n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ %s job=- ",
                      ts.tv_nsec / 1000000, tags[l]);
    int start = n;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    /* Messages quote clients' URLs: no control byte may break the line or steer a
     * terminal (an escape sequence). */
    for (int i = start; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f)
            line[i] = ' ';
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
