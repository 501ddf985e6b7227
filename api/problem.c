/* problem.c: RFC 9457 problem bodies. */
#include "problem.h"

#include "json_text.h"

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

json_t *problem_new(unsigned status, const char *error_code, const char *field,
                    const char *detail)
{
    /* "about:blank" keeps the RFC's rule that the title is the status phrase; the
     * machine-readable distinction lives in error_code. */
    json_t *p = json_pack("{s:s, s:s, s:i, s:o, s:s}", "type", "about:blank", "title",
                          problem_title(status), "status", (int)status, "detail",
                          json_text(detail ? detail : problem_title(status)), "error_code",
                          error_code ? error_code : PROBLEM_INTERNAL);
    if (p && field && json_object_set_new(p, "field", json_text(field)) != 0) {
        json_decref(p);
        return NULL;
    }
    return p;
}
