/* dataset_path.c: the relative paths a receiving rank accepts (dataset_path.h). */
#include "dataset_path.h"

#include <limits.h>
#include <string.h>

int dpath_ok(const char *rel)
{
    if (!rel || !*rel || *rel == '/' || strlen(rel) >= PATH_MAX / 2)
        return 0;
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += n;
        if (*p == '/' && !*++p)
            return 0;
    }
    return 1;
}
