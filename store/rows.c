/* rows.c: result rows to JSON, and paging (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

/* ---- rows to JSON ------------------------------------------------------------------------ */

/* One result row as an object. Column names ending in _json hold JSON text (parsed; the
 * suffix dropped); names ending in _bool are integers shown as booleans. */
static json_t *row_object(sqlite3_stmt *s)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int nc = sqlite3_column_count(s);
    for (int i = 0; i < nc; i++) {
        const char *name = sqlite3_column_name(s, i);
        size_t len = strlen(name);
        char key[64];
        json_t *v = NULL;
        int type = sqlite3_column_type(s, i);
        if (len > 5 && strcmp(name + len - 5, "_json") == 0) {
            snprintf(key, sizeof key, "%.*s", (int)(len - 5), name);
            if (type == SQLITE_NULL) {
                v = json_null();
            } else {
                const char *t = (const char *)sqlite3_column_text(s, i);
                v = json_loads(t, JSON_DECODE_ANY, NULL);
                if (!v)
                    v = json_text(t);
            }
        } else if (len > 5 && strcmp(name + len - 5, "_bool") == 0) {
            snprintf(key, sizeof key, "%.*s", (int)(len - 5), name);
            v = type == SQLITE_NULL ? json_null() : json_boolean(sqlite3_column_int(s, i));
        } else {
            snprintf(key, sizeof key, "%s", name);
            switch (type) {
            case SQLITE_INTEGER: v = json_integer(sqlite3_column_int64(s, i)); break;
            case SQLITE_FLOAT: v = json_real(sqlite3_column_double(s, i)); break;
            case SQLITE_TEXT: v = json_text((const char *)sqlite3_column_text(s, i)); break;
            default: v = json_null(); break;
            }
        }
        if (!v || json_object_set_new(o, key, v)) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* Runs a query and collects its rows as an array of objects. */
int store_rows_array(sqlite3 *db, sqlite3_stmt *s, json_t **out)
{
    json_t *arr = json_array();
    if (!arr)
        return -ENOMEM;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *o = row_object(s);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return store_db_fail(db, rc, "read");
    }
    *out = arr;
    return 0;
}

/* The single row of a query as an object, -ENOENT when none. */
int store_row_one(sqlite3 *db, sqlite3_stmt *s, json_t **out)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        store_set_err("no such row");
        return -ENOENT;
    }
    if (rc != SQLITE_ROW)
        return store_db_fail(db, rc, "read");
    *out = row_object(s);
    return *out ? 0 : -ENOMEM;
}

/* An integer from the first column of a one-row query; -ENOENT when no row. */
int store_query_i64(sqlite3 *db, const char *sql, int64_t a, int64_t *out)
{
    sqlite3_stmt *s;
    int rc = store_prep(db, sql, &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, a);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    } else {
        rc = store_db_fail(db, rc, "read");
    }
    sqlite3_finalize(s);
    return rc;
}

int store_row_exists(sqlite3 *db, const char *table, int64_t id)
{
    char sql[96];
    int64_t one;
    snprintf(sql, sizeof sql, "SELECT 1 FROM %s WHERE id = ?1", table);
    return store_query_i64(db, sql, id, &one);
}

/* ---- paging ------------------------------------------------------------------------------ */

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
        json_int_t last = json_integer_value(json_object_get(json_array_get(items,
                                                             (size_t)limit - 1), "id"));
        char tok[24];
        snprintf(tok, sizeof tok, "c%" PRIx64, (uint64_t)last);
        json_object_set_new(page, "next_page_token", json_string(tok));
    }
    *out = page;
out_put:
    store_reader_put(st, db);
    return rc;
}
