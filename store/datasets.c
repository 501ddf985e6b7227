/* datasets.c: registered datasets (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

static int fmt_known(const char *f)
{
    return f && (!strcmp(f, "folders") || !strcmp(f, "csv") || !strcmp(f, "idx"));
}

int store_dataset_create(store *st, const store_dataset_new *d, int64_t *id)
{
    if (!d->name || !d->path || !fmt_known(d->format)) {
        store_set_err("dataset: name, path and a known format are required");
        return -EINVAL;
    }
    store_arg a[] = {
        store_arg_text(d->name), store_arg_text(d->path), store_arg_text(d->format),
        store_arg_json(d->options, "{}"), store_arg_json(d->info, "{}"),
        store_arg_int(d->uploaded != 0), store_arg_real(store_now_s()),
        store_arg_text(d->scanning ? "scanning" : "ready"),
    };
    return store_write(st, "INSERT INTO datasets(name, path, format, options, info, uploaded, "
                           "created_at, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                       a, STORE_NARGS(a), id);
}

#define DATASET_COLS "id, name, path, format, options AS options_json, " \
                     "uploaded AS uploaded_bool, created_at, state, progress, error, " \
                     "(SELECT count(*) FROM runs r WHERE r.dataset_id = datasets.id) AS runs"

int store_dataset_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT " DATASET_COLS ", info AS info_json FROM datasets "
                            "WHERE id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        rc = store_row_one(db, s, out);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}

int store_dataset_find(store *st, const char *name_or_id, int64_t *id)
{
    if (!name_or_id || !*name_or_id)
        return -ENOENT;
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT id FROM datasets WHERE name = ?1 "
                            "UNION ALL SELECT id FROM datasets WHERE CAST(id AS TEXT) = ?1 "
                            "LIMIT 1", &s);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, name_or_id, -1, SQLITE_STATIC);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW)
            *id = sqlite3_column_int64(s, 0);
        else
            rc = r == SQLITE_DONE ? -ENOENT : store_db_fail(db, r, "read");
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}

int store_dataset_list(store *st, const store_page *pg, json_t **out)
{
    return store_page_query(st, "SELECT " DATASET_COLS " FROM datasets "
                                "WHERE (?1 = 0 OR id < ?1) ORDER BY id DESC LIMIT ?2",
                            pg, 0, NULL, out);
}

int store_dataset_delete(store *st, int64_t id, char **uploaded_path_out)
{
    char *path = NULL;
    int64_t n = 0, uploaded = 0;
    if (uploaded_path_out)
        *uploaded_path_out = NULL;
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_query_i64(st->w, "SELECT uploaded FROM datasets WHERE id = ?1", id, &uploaded);
    if (rc == 0)
        rc = store_query_i64(st->w, "SELECT count(*) FROM runs WHERE dataset_id = ?1", id, &n);
    if (rc == 0 && n > 0) {
        store_set_err("dataset %" PRId64 " is used by %" PRId64 " run(s)", id, n);
        rc = -EBUSY;
    }
    if (rc == 0 && uploaded)
        rc = store_query_text(st->w, "SELECT path FROM datasets WHERE id = ?1", id, &path);
    if (rc == 0)
        rc = store_wdelete(st, "datasets", id);
    rc = store_wend(st, rc);
    if (rc == 0 && uploaded_path_out)
        *uploaded_path_out = path;
    else
        free(path);
    return rc;
}

int store_dataset_progress(store *st, int64_t id, int64_t files_seen)
{
    store_arg a[] = {store_arg_int(id), store_arg_int(files_seen)};
    return store_write(st, "UPDATE datasets SET progress = ?2 WHERE id = ?1 AND state = 'scanning'",
                       a, STORE_NARGS(a), NULL);
}

int store_dataset_finish(store *st, int64_t id, json_t *info, const char *error)
{
    if (!info == !error) {
        store_set_err("dataset: a scan ends with info or with an error, not both");
        return -EINVAL;
    }
    store_arg a[] = {store_arg_int(id), store_arg_text(info ? "ready" : "failed"),
                     store_arg_json(info, "{}"), error ? store_arg_text(error) : store_arg_null()};
    return store_write(st, "UPDATE datasets SET state = ?2, info = ?3, error = ?4 "
                           "WHERE id = ?1 AND state = 'scanning'",
                       a, STORE_NARGS(a), NULL);
}

int store_dataset_scanning(store *st, int64_t **ids, int *n)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int cap = 0, rc;
    *ids = NULL;
    *n = 0;
    rc = store_prep(db, "SELECT id FROM datasets WHERE state = 'scanning' ORDER BY id", &s);
    while (rc == 0) {
        int r = sqlite3_step(s);
        if (r == SQLITE_DONE)
            break;
        if (r != SQLITE_ROW) {
            rc = store_db_fail(db, r, "read");
            break;
        }
        int64_t *p = store_grow(*ids, &cap, *n + 1, sizeof **ids);
        if (!p) {
            rc = -ENOMEM;
            break;
        }
        *ids = p;
        (*ids)[(*n)++] = sqlite3_column_int64(s, 0);
    }
    if (s)
        sqlite3_finalize(s);
    store_reader_put(st, db);
    if (rc) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}
