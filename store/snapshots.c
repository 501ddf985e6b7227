/* snapshots.c: saved weights of runs: snapshots, checkpoints, best and final (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

int store_snapshot_add(store *st, int64_t run_id, int64_t job_id, const char *kind,
                       int cycle, int epoch, const char *path, int64_t *id)
{
    if (!kind || !path || (strcmp(kind, "snapshot") && strcmp(kind, "checkpoint") &&
                           strcmp(kind, "best") && strcmp(kind, "final"))) {
        store_set_err("snapshot: unknown kind or no path");
        return -EINVAL;
    }
    store_arg a[] = {
        store_arg_int(run_id), store_arg_id(job_id), store_arg_text(kind),
        cycle >= 0 ? store_arg_int(cycle) : store_arg_null(),
        epoch >= 0 ? store_arg_int(epoch) : store_arg_null(),
        store_arg_text(path), store_arg_real(store_now_s()),
    };
    return store_write(st, "INSERT INTO snapshots(run_id, job_id, kind, cycle, epoch, path, "
                           "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                       a, STORE_NARGS(a), id);
}

int store_snapshots_get(store *st, int64_t run_id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_row_exists(db, "runs", run_id);
    if (rc == 0)
        rc = store_prep(db, "SELECT id, job_id AS job, kind, cycle, epoch, path, created_at "
                            "FROM snapshots WHERE run_id = ?1 ORDER BY id", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        rc = store_rows_array(db, s, out);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}

int store_snapshot_latest(store *st, int64_t run_id, const char *kind, char **path)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT path FROM snapshots WHERE run_id = ?1 AND "
                            "(?2 IS NULL OR kind = ?2) ORDER BY id DESC LIMIT 1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        if (kind)
            sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
        rc = store_row_text(db, s, path);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}
