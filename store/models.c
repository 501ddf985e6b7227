/* models.c: imported pretrained weights (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

int store_model_create(store *st, const char *name, const char *arch, const char *path,
                       int64_t bytes, json_t *info, int64_t *id)
{
    if (!name || !arch || !path) {
        store_set_err("model: name, arch and path are required");
        return -EINVAL;
    }
    store_arg a[] = {
        store_arg_text(name), store_arg_text(arch), store_arg_text(path), store_arg_int(bytes),
        store_arg_json(info, "{}"), store_arg_real(store_now_s()),
    };
    return store_write(st, "INSERT INTO models(name, arch, path, bytes, info, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6)", a, STORE_NARGS(a), id);
}

#define MODEL_COLS "id, name, arch, path, bytes, info AS info_json, created_at"

int store_model_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT " MODEL_COLS " FROM models WHERE id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        rc = store_row_one(db, s, out);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}

int store_model_list(store *st, const store_page *pg, json_t **out)
{
    return store_page_query(st, "SELECT " MODEL_COLS " FROM models WHERE (?1 = 0 OR id < ?1) "
                                "ORDER BY id DESC LIMIT ?2", pg, 0, NULL, out);
}

int store_model_delete(store *st, int64_t id, char **path_out)
{
    char *path = NULL;
    int64_t n = 0;
    *path_out = NULL;
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_query_text(st->w, "SELECT path FROM models WHERE id = ?1", id, &path);
    if (rc == 0)
        rc = store_query_i64(st->w, "SELECT count(*) FROM runs WHERE model_id = ?1", id, &n);
    if (rc == 0 && n > 0) {
        store_set_err("model %" PRId64 " is used by %" PRId64 " run(s)", id, n);
        rc = -EBUSY;
    }
    if (rc == 0)
        rc = store_wdelete(st, "models", id);
    rc = store_wend(st, rc);
    if (rc == 0)
        *path_out = path;
    else
        free(path);
    return rc;
}
