/* problem.c: RFC 9457 problem bodies. */
#include "problem.h"

#include <stdlib.h>
#include <string.h>

const char *problem_title(unsigned status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Error";
    }
}

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

/* A JSON string of s with every byte that is not part of a UTF-8 character replaced by
 * U+FFFD: details quote the client's URL, query names and file names, which need not be
 * UTF-8, and a vsnprintf'd detail can end in half a character. */
static json_t *text_json(const char *s)
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

json_t *problem_new(unsigned status, const char *error_code, const char *field,
                    const char *detail)
{
    /* "about:blank" keeps the RFC's rule that the title is the status phrase; the
     * machine-readable distinction lives in error_code. */
    json_t *p = json_pack("{s:s, s:s, s:i, s:o, s:s}", "type", "about:blank", "title",
                          problem_title(status), "status", (int)status, "detail",
                          text_json(detail ? detail : problem_title(status)), "error_code",
                          error_code ? error_code : PROBLEM_INTERNAL);
    if (p && field && json_object_set_new(p, "field", text_json(field)) != 0) {
        json_decref(p);
        return NULL;
    }
    return p;
}
