/* lr_finds.c: LR sweeps and their points (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

#define LRF_COLS "id, run_id AS run, job_id AS job, start_lr, end_lr, num_it, " \
                 "stopped_early AS stopped_early_bool, created_at, finished_at, " \
                 "suggestions AS suggestions_json"

/* Adds an "lr_find" event carrying the sweep's row (inside the write transaction). */
static int lr_find_event(store *st, int64_t id)
{
    sqlite3_stmt *s;
    json_t *o = NULL;
    int rc = store_prep(st->w, "SELECT " LRF_COLS " FROM lr_finds WHERE id = ?1", &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    rc = store_row_one(st->w, s, &o);
    sqlite3_finalize(s);
    if (rc == 0) {
        int64_t run = json_integer_value(json_object_get(o, "run"));
        int64_t job = json_integer_value(json_object_get(o, "job"));
        rc = store_event_add(st, run, job, "lr_find", o, store_now_s());
    }
    json_decref(o);
    return rc;
}

int store_lr_find_create(store *st, int64_t run_id, int64_t job_id, double start_lr,
                         double end_lr, int num_it, int64_t *id)
{
    store_arg a[] = {
        store_arg_int(run_id), store_arg_int(job_id), store_arg_real(start_lr),
        store_arg_real(end_lr), store_arg_int(num_it), store_arg_real(store_now_s()),
    };
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_wstatement(st, "INSERT INTO lr_finds(run_id, job_id, start_lr, end_lr, num_it, "
                              "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                          a, STORE_NARGS(a), id);
    if (rc == 0)
        rc = lr_find_event(st, *id);
    return store_wend(st, rc);
}

int store_lr_find_point_push(store *st, int64_t lr_find_id, int64_t run_id, int64_t job_id,
                             int iter, double lr, double loss, double smooth_loss)
{
    store_point p = {.kind = STORE_POINT_SWEEP, .run = run_id, .job = job_id,
                     .step = lr_find_id, .n = iter, .t = store_now_s()};
    p.vals = malloc(3 * sizeof *p.vals);
    if (!p.vals)
        return -ENOMEM;
    p.vals[0] = lr;
    p.vals[1] = loss;
    p.vals[2] = smooth_loss;
    return store_buffer_add(st, &p, 1);
}

int store_lr_find_finish(store *st, int64_t id, json_t *suggestions, int stopped_early,
                         double end_lr, int num_it)
{
    store_arg a[] = {
        store_arg_int(id), store_arg_json(suggestions, NULL), store_arg_int(stopped_early != 0),
        store_arg_real(store_now_s()), end_lr > 0 ? store_arg_real(end_lr) : store_arg_null(),
        num_it > 0 ? store_arg_int(num_it) : store_arg_null(),
    };
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_wstatement(st, "UPDATE lr_finds SET suggestions = ?2, stopped_early = ?3, "
                              "finished_at = ?4, end_lr = coalesce(?5, end_lr), "
                              "num_it = coalesce(?6, num_it) WHERE id = ?1",
                          a, STORE_NARGS(a), NULL);
    if (rc == 0)
        rc = lr_find_event(st, id);
    return store_wend(st, rc);
}

int store_lr_find_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    json_t *o = NULL, *pts = NULL;
    int rc = store_prep(db, "SELECT " LRF_COLS " FROM lr_finds WHERE id = ?1", &s);
    if (rc)
        goto out_put;
    sqlite3_bind_int64(s, 1, id);
    rc = store_row_one(db, s, &o);
    sqlite3_finalize(s);
    if (rc)
        goto out_put;
    rc = store_prep(db, "SELECT iter, lr, loss, smooth_loss FROM lr_find_points "
                        "WHERE lr_find_id = ?1 ORDER BY iter", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        rc = store_rows_array(db, s, &pts);
        sqlite3_finalize(s);
    }
    if (rc == 0) {
        json_object_set_new(o, "points", pts);
        *out = o;
    } else {
        json_decref(o);
    }
out_put:
    store_reader_put(st, db);
    return rc;
}

int store_lr_find_list(store *st, int64_t run_id, const store_page *pg, json_t **out)
{
    return store_page_query(st, "SELECT " LRF_COLS " FROM lr_finds WHERE (?1 = 0 OR id < ?1) "
                                "AND run_id = ?3 ORDER BY id DESC LIMIT ?2",
                            pg, run_id, NULL, out);
}
