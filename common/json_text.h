/* json_text.h: JSON strings of text that need not be UTF-8.
 *
 * File and folder names are bytes, and so are the parts of a URL a client sends; jansson's
 * json_string refuses what is not UTF-8 and returns NULL, so such a name would vanish from
 * an answer (or take the whole object with it). json_text keeps it, with U+FFFD in place
 * of every byte that does not belong to a UTF-8 character. Everything that builds JSON
 * from such text calls it: problem details, a dataset's classes and unreadable files,
 * predictions' classes, note events, and text columns read back from the store. */
#ifndef SGDRD_JSON_TEXT_H
#define SGDRD_JSON_TEXT_H

#include <jansson.h>

/* A new JSON string of s (RFC 3629 UTF-8, so no overlong forms, surrogates or code points
 * past U+10FFFF); NULL only when out of memory. */
json_t *json_text(const char *s);

#endif
