/* rows.c: preparing statements, and reading their result rows as JSON or plain values. */
#define _GNU_SOURCE
#include "internal.h"

int store_prep(sqlite3 *db, const char *sql, sqlite3_stmt **s)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, s, NULL);
    if (rc != SQLITE_OK) {
        *s = NULL;
        return store_db_fail(db, rc, "prepare");
    }
    return 0;
}

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

int store_row_text(sqlite3 *db, sqlite3_stmt *s, char **out)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return -ENOENT;
    if (rc != SQLITE_ROW)
        return store_db_fail(db, rc, "read");
    const char *t = (const char *)sqlite3_column_text(s, 0);
    *out = t ? strdup(t) : NULL;
    return t && !*out ? -ENOMEM : 0;
}

int store_query_text(sqlite3 *db, const char *sql, int64_t a, char **out)
{
    sqlite3_stmt *s;
    int rc = store_prep(db, sql, &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, a);
    rc = store_row_text(db, s, out);
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
