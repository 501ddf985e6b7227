/* epochs.c: per-epoch results of runs (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

#define EPOCH_COLS "epoch, fit_epoch, cycle, job_id AS job, train_loss, valid_loss, " \
                   "accuracy, f2, seconds, img_per_s, time, step"

/* Adds the "epoch" event carrying the new row (inside the write transaction). */
static int epoch_event(store *st, int64_t run_id, int64_t job_id, int64_t row)
{
    sqlite3_stmt *s;
    json_t *o = NULL;
    int rc = store_prep(st->w, "SELECT " EPOCH_COLS " FROM epochs WHERE id = ?1", &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, row);
    rc = store_row_one(st->w, s, &o);
    sqlite3_finalize(s);
    if (rc == 0)
        rc = store_event_add(st, run_id, job_id, "epoch", o, store_now_s());
    json_decref(o);
    return rc;
}

/* The epoch's row, numbered n within its run; unknown measurements are stored as NULL. */
static int insert_epoch(store *st, int64_t run_id, int64_t job_id, int64_t n,
                        const store_epoch *e, int64_t *row)
{
    store_arg a[] = {
        store_arg_int(run_id), store_arg_int(job_id), store_arg_int(n),
        store_arg_int(e->fit_epoch), store_arg_int(e->cycle),
        store_arg_real_or_null(e->train_loss), store_arg_real_or_null(e->valid_loss),
        store_arg_real_or_null(e->accuracy),
        e->f2 < 0 ? store_arg_null() : store_arg_real_or_null(e->f2),
        store_arg_real_or_null(e->seconds), store_arg_real_or_null(e->img_per_s),
        store_arg_real(store_now_s()),
        e->step > 0 ? store_arg_int(e->step) : store_arg_null(),
    };
    return store_wstatement(st, "INSERT INTO epochs(run_id, job_id, epoch, fit_epoch, cycle, "
                                "train_loss, valid_loss, accuracy, f2, seconds, img_per_s, "
                                "time, step) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                                "?10, ?11, ?12, ?13)", a, STORE_NARGS(a), row);
}

/* Removes the epochs of the fit that an earlier job of the fit (one this job resumes,
 * transitively) reported at or after this fit epoch: a resumed fit repeats the epochs its
 * checkpoint did not hold, and the repeat replaces them. */
static int rewind_epochs(store *st, int64_t run_id, int64_t job_id, int64_t fit_epoch)
{
    store_arg a[] = {store_arg_int(run_id), store_arg_int(fit_epoch), store_arg_int(job_id)};
    int rc = store_wstatement(st, "WITH RECURSIVE chain(id) AS (SELECT resumed_from FROM jobs "
                                  "WHERE id = ?3 UNION ALL SELECT j.resumed_from FROM jobs j "
                                  "JOIN chain c ON j.id = c.id) "
                                  "DELETE FROM epochs WHERE run_id = ?1 AND fit_epoch >= ?2 AND "
                                  "job_id IN (SELECT id FROM chain)", a, STORE_NARGS(a), NULL);
    return rc == -ENOENT ? 0 : rc; /* nothing to remove */
}

int store_epoch_add(store *st, int64_t run_id, int64_t job_id, const store_epoch *e,
                    int *epoch_out)
{
    int64_t n = 0, row = 0;
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = rewind_epochs(st, run_id, job_id, e->fit_epoch);
    if (rc == 0)
        rc = store_query_i64(st->w, "SELECT count(*) FROM epochs WHERE run_id = ?1", run_id,
                             &n);
    if (rc == 0)
        rc = insert_epoch(st, run_id, job_id, n, e, &row);
    if (rc == 0)
        rc = epoch_event(st, run_id, job_id, row);
    rc = store_wend(st, rc);
    if (rc == 0 && epoch_out)
        *epoch_out = (int)n;
    return rc;
}

int store_epochs_get(store *st, int64_t run_id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_row_exists(db, "runs", run_id);
    if (rc == 0)
        rc = store_prep(db, "SELECT " EPOCH_COLS " FROM epochs WHERE run_id = ?1 "
                            "ORDER BY epoch", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        rc = store_rows_array(db, s, out);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}
