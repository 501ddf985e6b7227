/* json_text.c: see json_text.h. */
#include "json_text.h"

#include <stdlib.h>
#include <string.h>

/* Length of the UTF-8 character at s (1-4), or 0 when the bytes there are not one: RFC 3629,
 * so no overlong forms, surrogates or code points past U+10FFFF (what jansson refuses). */
static int utf8_char_len(const unsigned char *s)
{
    unsigned char c = s[0];
    int n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

json_t *json_text(const char *s)
{
    size_t len = strlen(s), o = 0;
    char *buf = malloc(3 * len + 1);
    json_t *j;
    if (!buf)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_char_len(p);
        if (n == 0) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        } else {
            memcpy(buf + o, p, (size_t)n);
            o += (size_t)n;
            p += n;
        }
    }
    buf[o] = '\0';
    j = json_stringn(buf, o);
    free(buf);
    return j;
}
