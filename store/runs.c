/* runs.c: runs, each a learner on a dataset with its config and state (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

int store_run_create(store *st, int64_t dataset_id, int64_t model_id, const char *arch,
                     json_t *config, int64_t *id)
{
    if (!arch) {
        store_set_err("run: arch is required");
        return -EINVAL;
    }
    store_arg a[] = {
        store_arg_int(dataset_id), store_arg_id(model_id), store_arg_text(arch),
        store_arg_json(config, "{}"), store_arg_real(store_now_s()),
    };
    return store_write(st, "INSERT INTO runs(dataset_id, model_id, arch, config, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)", a, STORE_NARGS(a), id);
}

#define RUN_COLS "id, dataset_id AS dataset, model_id AS model, arch, config AS config_json, " \
                 "state AS state_json, created_at"

/* Adds (name: the single row of sql bound to id, or null) to o. */
static int add_row_or_null(sqlite3 *db, json_t *o, const char *name, const char *sql,
                           int64_t id)
{
    sqlite3_stmt *s;
    json_t *v = NULL;
    int rc = store_prep(db, sql, &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = store_row_one(db, s, &v);
    sqlite3_finalize(s);
    if (rc == -ENOENT) {
        v = json_null();
        rc = 0;
    }
    if (rc == 0)
        json_object_set_new(o, name, v);
    return rc;
}

int store_run_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    json_t *o = NULL;
    int64_t cur = 0, n_ep = 0;
    int rc = store_prep(db, "SELECT " RUN_COLS " FROM runs WHERE id = ?1", &s);
    if (rc)
        goto out_put;
    sqlite3_bind_int64(s, 1, id);
    rc = store_row_one(db, s, &o);
    sqlite3_finalize(s);
    if (rc)
        goto out_put;
    rc = store_query_i64(db, "SELECT id FROM jobs WHERE run_id = ?1 AND state IN ('running', "
                             "'queued') ORDER BY state = 'running' DESC, id LIMIT 1", id, &cur);
    if (rc == 0) {
        json_t *j = store_job_json(db, cur);
        json_object_set_new(o, "current_job", j ? j : json_null());
    } else if (rc == -ENOENT) {
        json_object_set_new(o, "current_job", json_null());
        rc = 0;
    }
    if (rc == 0)
        rc = add_row_or_null(db, o, "best", "SELECT epoch, valid_loss, accuracy, f2 "
                                            "FROM epochs WHERE run_id = ?1 AND "
                                            "valid_loss IS NOT NULL "
                                            "ORDER BY valid_loss, epoch LIMIT 1", id);
    if (rc == 0)
        rc = store_query_i64(db, "SELECT count(*) FROM epochs WHERE run_id = ?1", id, &n_ep);
    if (rc == 0)
        json_object_set_new(o, "epochs", json_integer(n_ep));
    if (rc == 0)
        *out = o;
    else
        json_decref(o);
out_put:
    store_reader_put(st, db);
    return rc;
}

int store_run_list(store *st, const store_page *pg, json_t **out)
{
    return store_page_query(st, "SELECT " RUN_COLS " FROM runs WHERE (?1 = 0 OR id < ?1) "
                                "ORDER BY id DESC LIMIT ?2", pg, 0, NULL, out);
}

int store_run_set_state(store *st, int64_t id, json_t *state)
{
    store_arg a[] = {store_arg_int(id), store_arg_json(state, "{}")};
    return store_write(st, "UPDATE runs SET state = ?2 WHERE id = ?1", a, STORE_NARGS(a), NULL);
}

int store_run_delete(store *st, int64_t id)
{
    int64_t n = 0;
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_row_exists(st->w, "runs", id);
    if (rc == 0)
        rc = store_query_i64(st->w, "SELECT count(*) FROM jobs WHERE run_id = ?1 AND state IN "
                                    "('queued', 'running')", id, &n);
    if (rc == 0 && n > 0) {
        store_set_err("run %" PRId64 " has %" PRId64 " queued or running job(s)", id, n);
        rc = -EBUSY;
    }
    if (rc == 0)
        rc = store_wdelete(st, "runs", id);
    return store_wend(st, rc);
}
