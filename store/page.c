/* page.c: lists paged newest first by an opaque cursor token (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

static int page_parse(const store_page *pg, int64_t *cursor, int *limit)
{
    *cursor = 0;
    *limit = pg && pg->limit ? pg->limit : STORE_PAGE_DEFAULT;
    if (*limit < 0 || *limit > STORE_PAGE_MAX) {
        store_set_err("limit must be 1..%d", STORE_PAGE_MAX);
        return -EINVAL;
    }
    if (pg && pg->page_token && pg->page_token[0]) {
        const char *t = pg->page_token;
        char *end;
        if (t[0] != 'c' || !t[1] || strlen(t) > 17) {
            store_set_err("malformed page_token");
            return -EINVAL;
        }
        errno = 0;
        unsigned long long v = strtoull(t + 1, &end, 16);
        if (*end || errno || v == 0 || v > INT64_MAX) {
            store_set_err("malformed page_token");
            return -EINVAL;
        }
        *cursor = (int64_t)v;
    }
    return 0;
}

/* Runs a list query whose ?1 is the cursor (0: top), ?2 the limit + 1 and ?3/?4 optional
 * filters (an integer and a text), and wraps the page. */
int store_page_query(store *st, const char *sql, const store_page *pg, int64_t p3,
                     const char *p4, json_t **out)
{
    int64_t cursor;
    int limit;
    int rc = page_parse(pg, &cursor, &limit);
    if (rc)
        return rc;
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    json_t *items = NULL;
    rc = store_prep(db, sql, &s);
    if (rc)
        goto out_put;
    sqlite3_bind_int64(s, 1, cursor);
    sqlite3_bind_int(s, 2, limit + 1);
    if (sqlite3_bind_parameter_count(s) >= 3)
        sqlite3_bind_int64(s, 3, p3);
    if (sqlite3_bind_parameter_count(s) >= 4) {
        if (p4)
            sqlite3_bind_text(s, 4, p4, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 4);
    }
    rc = store_rows_array(db, s, &items);
    sqlite3_finalize(s);
    if (rc)
        goto out_put;
    json_t *page = json_pack("{so}", "items", items);
    if (!page) {
        rc = -ENOMEM;
        goto out_put;
    }
    if ((int)json_array_size(items) > limit) {
        json_array_remove(items, (size_t)limit);
        json_t *last_item = json_array_get(items, (size_t)limit - 1);
        json_int_t last = json_integer_value(json_object_get(last_item, "id"));
        char tok[24];
        snprintf(tok, sizeof tok, "c%" PRIx64, (uint64_t)last);
        json_object_set_new(page, "next_page_token", json_string(tok));
    }
    *out = page;
out_put:
    store_reader_put(st, db);
    return rc;
}
