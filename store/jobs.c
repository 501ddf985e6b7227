/* jobs.c: jobs (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

/* ---- jobs --------------------------------------------------------------------------------- */

static const char *const job_kinds[] = {"lr_find", "fit", "freeze", "unfreeze", "precompute",
                                        "resize", "tta", "recipe", "predict_test"};

static int kind_known(const char *k)
{
    for (size_t i = 0; k && i < sizeof job_kinds / sizeof *job_kinds; i++) {
        if (!strcmp(k, job_kinds[i]))
            return 1;
    }
    return 0;
}

/* Adds a "job" event carrying the job's current row (inside the write transaction). */
static int job_event(store *st, int64_t id)
{
    json_t *j = job_json_db(st->w, id);
    if (!j)
        return -ENOMEM;
    int rc = ev_add(st, json_integer_value(json_object_get(j, "run")), id, "job", j, store_now_s());
    json_decref(j);
    return rc;
}

int store_job_create(store *st, int64_t run_id, const char *kind, json_t *params,
                     int64_t resumed_from, int64_t *id)
{
    if (!kind_known(kind)) {
        store_set_err("unknown job kind '%s'", kind ? kind : "(null)");
        return -EINVAL;
    }
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "INSERT INTO jobs(run_id, kind, state, params, created_at, resumed_from) "
                     "VALUES (?1, ?2, 'queued', ?3, ?4, ?5)", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
        rc = bind_json(s, 3, params, "{}");
        sqlite3_bind_double(s, 4, store_now_s());
        if (resumed_from)
            sqlite3_bind_int64(s, 5, resumed_from);
        if (rc == 0)
            rc = wrun_insert(st, s, id);
        sqlite3_finalize(s);
    }
    if (rc == 0)
        rc = job_event(st, *id);
    return wend(st, rc);
}

/* Moves a job from one of the states in `from` (SQL list) to `to`. */
static int job_move(store *st, int64_t id, const char *from_sql, const char *set_sql,
                    const char *to, const char *error, json_t *result)
{
    char sql[512];
    snprintf(sql, sizeof sql, "UPDATE jobs SET state = ?2, error = ?3, result = ?4%s "
                              "WHERE id = ?1 AND state IN (%s)", set_sql, from_sql);
    int rc = wbegin(st);
    if (rc)
        return rc;
    rc = exists(st->w, "jobs", id);
    sqlite3_stmt *s = NULL;
    if (rc == 0)
        rc = prep(st->w, sql, &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_text(s, 2, to, -1, SQLITE_STATIC);
        if (error)
            sqlite3_bind_text(s, 3, error, -1, SQLITE_STATIC);
        rc = bind_json(s, 4, result, NULL);
        if (rc == 0)
            rc = wrun(st, s);
        if (rc == 0 && sqlite3_changes(st->w) == 0) {
            store_set_err("job %" PRId64 " cannot become %s from its state", id, to);
            rc = -EALREADY;
        }
    }
    sqlite3_finalize(s);
    if (rc == 0)
        rc = job_event(st, id);
    return wend(st, rc);
}

int store_job_start(store *st, int64_t id)
{
    char set[64];
    snprintf(set, sizeof set, ", started_at = %.6f, progress = 0", store_now_s());
    return job_move(st, id, "'queued'", set, "running", NULL, NULL);
}

int store_job_progress(store *st, int64_t id, double fraction, double eta_s)
{
    pthread_mutex_lock(&st->bmu);
    for (int i = 0; i < st->n_prog; i++) {
        if (st->prog[i].job == id) {
            st->prog[i].fraction = fraction;
            st->prog[i].eta_s = eta_s;
            pthread_mutex_unlock(&st->bmu);
            return 0;
        }
    }
    pprogress *np = grow(st->prog, &st->cap_prog, st->n_prog + 1, sizeof *np);
    if (!np) {
        pthread_mutex_unlock(&st->bmu);
        return -ENOMEM;
    }
    st->prog = np;
    st->prog[st->n_prog++] = (pprogress){id, fraction, eta_s};
    pthread_mutex_unlock(&st->bmu);
    return 0;
}

int store_job_finish(store *st, int64_t id, const char *state, const char *error,
                     json_t *result)
{
    char set[96];
    const char *from;
    if (!state)
        return -EINVAL;
    if (!strcmp(state, "succeeded")) {
        from = "'running'";
        snprintf(set, sizeof set, ", finished_at = %.6f, progress = 1, eta_s = NULL",
                 store_now_s());
    } else if (!strcmp(state, "failed") || !strcmp(state, "cancelled")) {
        from = "'running', 'queued'";
        snprintf(set, sizeof set, ", finished_at = %.6f, eta_s = NULL", store_now_s());
    } else if (!strcmp(state, "interrupted")) {
        from = "'running'";
        snprintf(set, sizeof set, ", finished_at = %.6f, eta_s = NULL", store_now_s());
    } else {
        store_set_err("'%s' is not a final job state", state);
        return -EINVAL;
    }
    return job_move(st, id, from, set, state, error, result);
}

int store_jobs_interrupt_running(store *st, int *n)
{
    int64_t *ids = NULL;
    int count = 0, cap = 0;
    int rc = wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = prep(st->w, "SELECT id FROM jobs WHERE state = 'running' ORDER BY id", &s);
    if (rc == 0) {
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t *ni = grow(ids, &cap, count + 1, sizeof *ni);
            if (!ni) {
                rc = -ENOMEM;
                break;
            }
            ids = ni;
            ids[count++] = sqlite3_column_int64(s, 0);
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = db_fail(st->w, r, "read");
        sqlite3_finalize(s);
    }
    if (rc == 0)
        rc = wexec(st, "UPDATE jobs SET state = 'interrupted', eta_s = NULL, "
                       "error = 'the daemon stopped while this job ran' "
                       "WHERE state = 'running'");
    for (int i = 0; rc == 0 && i < count; i++)
        rc = job_event(st, ids[i]);
    free(ids);
    rc = wend(st, rc);
    if (rc == 0 && n)
        *n = count;
    return rc;
}

static int ids_query(store *st, const char *sql, int64_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    int cap = 0;
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, sql, &s);
    if (rc == 0) {
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t *ni = grow(*ids, &cap, *n + 1, sizeof *ni);
            if (!ni) {
                rc = -ENOMEM;
                break;
            }
            *ids = ni;
            (*ids)[(*n)++] = sqlite3_column_int64(s, 0);
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = db_fail(db, r, "read");
        sqlite3_finalize(s);
    }
    rput(st, db);
    if (rc) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

int store_jobs_queued(store *st, int64_t **ids, int *n)
{
    return ids_query(st, "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id", ids, n);
}

int store_jobs_resumable(store *st, int64_t **ids, int *n)
{
    return ids_query(st, "SELECT id FROM jobs j WHERE state = 'interrupted' AND NOT EXISTS "
                         "(SELECT 1 FROM jobs r WHERE r.resumed_from = j.id) ORDER BY id",
                     ids, n);
}

int store_job_row_get(store *st, int64_t id, store_job_row *out)
{
    memset(out, 0, sizeof *out);
    sqlite3 *db = rget(st);
    sqlite3_stmt *s;
    int rc = prep(db, "SELECT id, run_id, coalesce(resumed_from, 0), kind, state, params, "
                      "(SELECT coalesce(min(r.id), 0) FROM jobs r WHERE r.resumed_from = j.id) "
                      "FROM jobs j WHERE id = ?1", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, id);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            out->id = sqlite3_column_int64(s, 0);
            out->run_id = sqlite3_column_int64(s, 1);
            out->resumed_from = sqlite3_column_int64(s, 2);
            snprintf(out->kind, sizeof out->kind, "%s", sqlite3_column_text(s, 3));
            snprintf(out->state, sizeof out->state, "%s", sqlite3_column_text(s, 4));
            out->params = json_loads((const char *)sqlite3_column_text(s, 5), 0, NULL);
            if (!out->params)
                out->params = json_object();
            out->resumed_by = sqlite3_column_int64(s, 6);
        } else {
            rc = r == SQLITE_DONE ? -ENOENT : db_fail(db, r, "read");
        }
        sqlite3_finalize(s);
    }
    rput(st, db);
    return rc;
}

void store_job_row_clear(store_job_row *r)
{
    if (!r)
        return;
    json_decref(r->params);
    r->params = NULL;
}

int store_job_get(store *st, int64_t id, json_t **out)
{
    sqlite3 *db = rget(st);
    int rc = exists(db, "jobs", id);
    if (rc == 0) {
        *out = job_json_db(db, id);
        if (!*out)
            rc = -ENOMEM;
    }
    rput(st, db);
    return rc;
}

int store_job_list(store *st, int64_t run_id, const char *state, const store_page *pg,
                   json_t **out)
{
    return page_query(st, "SELECT " JOB_COLS " FROM jobs WHERE (?1 = 0 OR id < ?1) "
                          "AND (?3 = 0 OR run_id = ?3) AND (?4 IS NULL OR state = ?4) "
                          "ORDER BY id DESC LIMIT ?2", pg, run_id, state, out);
}
