/* problem.h: RFC 9457 application/problem+json bodies with sgdrd's error codes
 * (docs/architecture.md, openapi.json). One shape for every error the API answers. */
#ifndef SGDRD_API_PROBLEM_H
#define SGDRD_API_PROBLEM_H

#include <jansson.h>

#define PROBLEM_INVALID "INVALID_PARAMETER_VALUE"
#define PROBLEM_NOT_FOUND "RESOURCE_DOES_NOT_EXIST"
#define PROBLEM_CONFLICT "RESOURCE_CONFLICT"
#define PROBLEM_LIMIT "REQUEST_LIMIT_EXCEEDED"
#define PROBLEM_UNAUTHENTICATED "UNAUTHENTICATED"
#define PROBLEM_INTERNAL "INTERNAL_ERROR"

#define PROBLEM_CONTENT_TYPE "application/problem+json"

/* The HTTP reason phrase of status ("Bad Request"), or "Error" for one it does not know. */
const char *problem_title(unsigned status);

/* Builds {"type","title","status","detail","error_code"[,"field"]}. field may be NULL.
 * Bytes of detail and field that are not UTF-8 become U+FFFD. Returns a new reference,
 * or NULL when out of memory. */
json_t *problem_new(unsigned status, const char *error_code, const char *field,
                    const char *detail);

#endif
