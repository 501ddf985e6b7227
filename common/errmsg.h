/* errmsg.h: filling a caller's error buffer, the one way every module does it. */
#ifndef SGDRD_ERRMSG_H
#define SGDRD_ERRMSG_H

#include <stddef.h>

/* Formats a message into err (at most errlen bytes, always terminated). A NULL err or a
 * zero errlen is allowed and does nothing, so callers may pass what they were given. */
void err_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
