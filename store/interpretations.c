/* interpretations.c: the stored interpretation of a run's weights (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

int store_interpretation_put(store *st, int64_t run_id, int64_t job_id, const char *weights,
                             json_t *summary, json_t *items)
{
    store_arg a[] = {
        store_arg_int(run_id), job_id > 0 ? store_arg_int(job_id) : store_arg_null(),
        store_arg_text(weights), store_arg_json(summary, "{}"), store_arg_json(items, "[]"),
        store_arg_real(store_now_s()),
    };
    return store_write(st, "INSERT OR REPLACE INTO interpretations(run_id, job_id, weights, "
                           "summary, items, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       a, STORE_NARGS(a), NULL);
}

int store_interpretation_weights(store *st, int64_t run_id, char **weights)
{
    sqlite3 *db = store_reader_get(st);
    int rc = store_query_text(db, "SELECT weights FROM interpretations WHERE run_id = ?1",
                              run_id, weights);
    store_reader_put(st, db);
    return rc;
}

int store_interpretation_get(store *st, int64_t run_id, int with_items, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, with_items
                                ? "SELECT run_id AS run, job_id AS job, weights, created_at, "
                                  "summary AS summary_json, items AS items_json FROM "
                                  "interpretations WHERE run_id = ?1"
                                : "SELECT run_id AS run, job_id AS job, weights, created_at, "
                                  "summary AS summary_json FROM interpretations WHERE "
                                  "run_id = ?1",
                        &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        rc = store_row_one(db, s, out);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}
