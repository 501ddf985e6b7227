/* jobs.c: the jobs queued on runs and their state transitions (see store.h). */
#define _GNU_SOURCE
#include "internal.h"

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

json_t *store_job_json(sqlite3 *db, int64_t id)
{
    sqlite3_stmt *s;
    json_t *j = NULL;
    if (store_prep(db, "SELECT " STORE_JOB_COLS ", "
                       "(SELECT max(l.id) FROM lr_finds l WHERE l.job_id = jobs.id) "
                       "AS lr_find, "
                       "EXISTS (SELECT 1 FROM predictions p WHERE p.job_id = jobs.id) "
                       "AS predictions_bool FROM jobs WHERE id = ?1", &s))
        return NULL;
    sqlite3_bind_int64(s, 1, id);
    if (store_row_one(db, s, &j))
        j = NULL;
    sqlite3_finalize(s);
    if (j) {
        if (json_is_null(json_object_get(j, "lr_find")))
            json_object_del(j, "lr_find");
        if (!json_is_true(json_object_get(j, "predictions")))
            json_object_del(j, "predictions");
    }
    return j;
}

int store_job_event(store *st, int64_t id)
{
    json_t *j = store_job_json(st->w, id);
    if (!j)
        return -ENOMEM;
    int64_t run = json_integer_value(json_object_get(j, "run"));
    int rc = store_event_add(st, run, id, "job", j, store_now_s());
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
    store_arg a[] = {
        store_arg_int(run_id), store_arg_text(kind), store_arg_json(params, "{}"),
        store_arg_real(store_now_s()), store_arg_id(resumed_from),
    };
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_wstatement(st, "INSERT INTO jobs(run_id, kind, state, params, created_at, "
                              "resumed_from) VALUES (?1, ?2, 'queued', ?3, ?4, ?5)",
                          a, STORE_NARGS(a), id);
    if (rc == 0)
        rc = store_job_event(st, *id);
    return store_wend(st, rc);
}

/* Moves a job from one of the states in `from` (SQL list) to `to`. */
static int job_move(store *st, int64_t id, const char *from_sql, const char *set_sql,
                    const char *to, const char *error, json_t *result)
{
    char sql[512];
    snprintf(sql, sizeof sql, "UPDATE jobs SET state = ?2, error = ?3, result = ?4%s "
                              "WHERE id = ?1 AND state IN (%s)", set_sql, from_sql);
    store_arg a[] = {
        store_arg_int(id), store_arg_text(to), store_arg_text(error),
        store_arg_json(result, NULL),
    };
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    rc = store_row_exists(st->w, "jobs", id);
    if (rc == 0) {
        rc = store_wstatement(st, sql, a, STORE_NARGS(a), NULL);
        if (rc == -ENOENT) {
            /* The row exists: its state forbids the move. */
            store_set_err("job %" PRId64 " cannot become %s from its state", id, to);
            rc = -EALREADY;
        }
    }
    if (rc == 0)
        rc = store_job_event(st, id);
    return store_wend(st, rc);
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
    store_progress *np = store_grow(st->prog, &st->cap_prog, st->n_prog + 1, sizeof *np);
    if (!np) {
        pthread_mutex_unlock(&st->bmu);
        return -ENOMEM;
    }
    st->prog = np;
    st->prog[st->n_prog++] = (store_progress){id, fraction, eta_s};
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
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    sqlite3_stmt *s;
    rc = store_prep(st->w, "SELECT id FROM jobs WHERE state = 'running' ORDER BY id", &s);
    if (rc == 0) {
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t *ni = store_grow(ids, &cap, count + 1, sizeof *ni);
            if (!ni) {
                rc = -ENOMEM;
                break;
            }
            ids = ni;
            ids[count++] = sqlite3_column_int64(s, 0);
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = store_db_fail(st->w, r, "read");
        sqlite3_finalize(s);
    }
    if (rc == 0)
        rc = store_wexec(st, "UPDATE jobs SET state = 'interrupted', eta_s = NULL, "
                             "error = 'the daemon stopped while this job ran' "
                             "WHERE state = 'running'");
    for (int i = 0; rc == 0 && i < count; i++)
        rc = store_job_event(st, ids[i]);
    free(ids);
    rc = store_wend(st, rc);
    if (rc == 0 && n)
        *n = count;
    return rc;
}

static int ids_query(store *st, const char *sql, int64_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    int cap = 0;
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, sql, &s);
    if (rc == 0) {
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            int64_t *ni = store_grow(*ids, &cap, *n + 1, sizeof *ni);
            if (!ni) {
                rc = -ENOMEM;
                break;
            }
            *ids = ni;
            (*ids)[(*n)++] = sqlite3_column_int64(s, 0);
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = store_db_fail(db, r, "read");
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
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
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT id, run_id, coalesce(resumed_from, 0), kind, state, params, "
                            "(SELECT coalesce(min(r.id), 0) FROM jobs r "
                            "WHERE r.resumed_from = j.id) FROM jobs j WHERE id = ?1", &s);
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
            rc = r == SQLITE_DONE ? -ENOENT : store_db_fail(db, r, "read");
        }
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
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
    sqlite3 *db = store_reader_get(st);
    int rc = store_row_exists(db, "jobs", id);
    if (rc == 0) {
        *out = store_job_json(db, id);
        if (!*out)
            rc = -ENOMEM;
    }
    store_reader_put(st, db);
    return rc;
}

int store_job_list(store *st, int64_t run_id, const char *state, const store_page *pg,
                   json_t **out)
{
    return store_page_query(st, "SELECT " STORE_JOB_COLS " FROM jobs WHERE (?1 = 0 OR id < ?1) "
                                "AND (?3 = 0 OR run_id = ?3) AND (?4 IS NULL OR state = ?4) "
                                "ORDER BY id DESC LIMIT ?2", pg, run_id, state, out);
}
