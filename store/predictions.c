/* predictions.c: the CSV files of predict_test jobs (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

int store_prediction_add(store *st, int64_t run_id, int64_t job_id, const char *path,
                         int n_rows)
{
    store_arg a[] = {
        store_arg_int(run_id), store_arg_int(job_id), store_arg_text(path),
        store_arg_int(n_rows), store_arg_real(store_now_s()),
    };
    return store_write(st, "INSERT OR REPLACE INTO predictions(run_id, job_id, path, n_rows, "
                           "created_at) VALUES (?1, ?2, ?3, ?4, ?5)", a, STORE_NARGS(a), NULL);
}

int store_prediction_path(store *st, int64_t job_id, char **path)
{
    sqlite3 *db = store_reader_get(st);
    int rc = store_query_text(db, "SELECT path FROM predictions WHERE job_id = ?1", job_id,
                              path);
    store_reader_put(st, db);
    return rc;
}
