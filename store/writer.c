/* writer.c: writer statements, transactions and events; the point buffer and its flusher. */
#define _GNU_SOURCE
#include "internal.h"

/* ---- writer: statements, transactions, events --------------------------------------------- */

#ifdef STORE_TEST_HOOKS
/* Whether the fault-injection countdown makes this write fail (wmu held). */
static int fault_fires(store *st)
{
    if (st->fail_write > 0 && --st->fail_write == 0) {
        store_set_err("injected write failure");
        return 1;
    }
    return 0;
}
#else
static int fault_fires(store *st)
{
    (void)st;
    return 0;
}
#endif

int store_wexec(store *st, const char *sql)
{
    if (fault_fires(st))
        return -EIO;
    char *msg = NULL;
    int rc = sqlite3_exec(st->w, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        store_set_err("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return store_sqlite_errno(rc);
    }
    return 0;
}

int store_prep(sqlite3 *db, const char *sql, sqlite3_stmt **s)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, s, NULL);
    if (rc != SQLITE_OK) {
        *s = NULL;
        return store_db_fail(db, rc, "prepare");
    }
    return 0;
}

/* Runs a bound writer statement to completion. */
int store_wrun(store *st, sqlite3_stmt *s)
{
    if (fault_fires(st))
        return -EIO;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return store_db_fail(st->w, rc, "write");
    return 0;
}

/* Steps a bound writer statement to completion, mapping a UNIQUE violation to -EEXIST and
 * an FK violation to -ENOENT. */
static int wstep_checked(store *st, sqlite3_stmt *s)
{
    if (fault_fires(st))
        return -EIO;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        store_set_err("name already taken");
        return -EEXIST;
    }
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        store_set_err("referenced row does not exist");
        return -ENOENT;
    }
    return store_db_fail(st->w, rc, "write");
}

/* Binds a JSON value as its compact text; NULL binds dflt (NULL: SQL NULL). */
static int bind_json(sqlite3_stmt *s, int i, json_t *j, const char *dflt)
{
    if (!j) {
        if (dflt)
            sqlite3_bind_text(s, i, dflt, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, i);
        return 0;
    }
    char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
    if (!t)
        return -ENOMEM;
    sqlite3_bind_text(s, i, t, -1, free);
    return 0;
}

static int bind_arg(sqlite3_stmt *s, int i, const store_arg *a)
{
    switch (a->type) {
    case STORE_ARG_INT: sqlite3_bind_int64(s, i, a->i); return 0;
    case STORE_ARG_REAL: sqlite3_bind_double(s, i, a->d); return 0;
    case STORE_ARG_TEXT: sqlite3_bind_text(s, i, a->text, -1, SQLITE_STATIC); return 0;
    case STORE_ARG_JSON: return bind_json(s, i, a->json, a->text);
    default: sqlite3_bind_null(s, i); return 0;
    }
}

int store_wstatement(store *st, const char *sql, const store_arg *args, int n, int64_t *id)
{
    sqlite3_stmt *s;
    int rc = store_prep(st->w, sql, &s);
    if (rc)
        return rc;
    for (int i = 0; rc == 0 && i < n; i++)
        rc = bind_arg(s, i + 1, &args[i]);
    if (rc == 0)
        rc = wstep_checked(st, s);
    if (rc == 0 && sqlite3_changes(st->w) == 0) {
        store_set_err("no such row");
        rc = -ENOENT;
    }
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(st->w);
    sqlite3_finalize(s);
    return rc;
}

int store_write(store *st, const char *sql, const store_arg *args, int n, int64_t *id)
{
    int rc = store_wbegin(st);
    if (rc)
        return rc;
    return store_wend(st, store_wstatement(st, sql, args, n, id));
}

void store_tx_events_clear(store *st)
{
    for (int i = 0; i < st->n_tev; i++) {
        free(st->tev[i].kind);
        free(st->tev[i].data);
    }
    st->n_tev = 0;
}

/* Inserts an event row in the open transaction and remembers it for the notification. */
int store_event_add(store *st, int64_t run, int64_t job, const char *kind, json_t *data,
           double t)
{
    char *text = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (!text)
        return -ENOMEM;
    sqlite3_stmt *s = st->ins_event;
    int rc = 0;
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, run);
    if (job)
        sqlite3_bind_int64(s, 2, job);
    else
        sqlite3_bind_null(s, 2);
    sqlite3_bind_text(s, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, text, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 5, t);
    rc = store_wrun(st, s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc)
        goto out_free_text;
    store_tx_event *nt = store_grow(st->tev, &st->cap_tev, st->n_tev + 1, sizeof *nt);
    if (!nt) {
        rc = -ENOMEM;
        goto out_free_text;
    }
    st->tev = nt;
    store_tx_event *e = &st->tev[st->n_tev];
    e->kind = strdup(kind);
    if (!e->kind) {
        rc = -ENOMEM;
        goto out_free_text;
    }
    e->data = text;
    e->ev.id = sqlite3_last_insert_rowid(st->w);
    e->ev.run_id = run;
    e->ev.job_id = job;
    e->ev.time = t;
    st->n_tev++;
    return 0;

out_free_text:
    free(text);
    return rc;
}

/* Calls the listeners with the committed events. Entered with wmu held; takes nmu before
 * releasing wmu so notifications keep commit order without holding up the next writer. */
static void wunlock_notify(store *st)
{
    if (st->n_tev == 0) {
        pthread_mutex_unlock(&st->wmu);
        return;
    }
    store_tx_event *evs = st->tev;
    int n = st->n_tev;
    st->tev = NULL;
    st->n_tev = st->cap_tev = 0;
    pthread_mutex_lock(&st->nmu);
    pthread_mutex_unlock(&st->wmu);
    store_event *arr = malloc((size_t)n * sizeof *arr);
    if (arr) {
        for (int i = 0; i < n; i++) {
            arr[i] = evs[i].ev;
            arr[i].kind = evs[i].kind;
            arr[i].data = evs[i].data;
        }
        for (int i = 0; i < st->n_subs; i++)
            st->subs[i].fn(st->subs[i].ctx, arr, n);
        free(arr);
    }
    pthread_mutex_unlock(&st->nmu);
    for (int i = 0; i < n; i++) {
        free(evs[i].kind);
        free(evs[i].data);
    }
    free(evs);
}

static int flush_locked(store *st);

/* Rolls back the open write transaction, if any, and drops its events; the error message
 * of the failure that caused it stays for store_errmsg. */
static void store_wrollback(store *st)
{
    if (!sqlite3_get_autocommit(st->w)) {
        char keep[512];
        snprintf(keep, sizeof keep, "%s", store_errmsg());
        sqlite3_exec(st->w, "ROLLBACK", NULL, NULL, NULL);
        store_set_err("%s", keep);
    }
    store_tx_events_clear(st);
}

/* Takes the writer, commits buffered points (so rows keep their order), opens a write
 * transaction. On failure the writer is released. */
int store_wbegin(store *st)
{
    pthread_mutex_lock(&st->wmu);
    flush_locked(st);
    int rc = store_wexec(st, "BEGIN IMMEDIATE");
    if (rc) {
        wunlock_notify(st);
        return rc;
    }
    return 0;
}

/* Commits when rc == 0 (a failing commit turns into its error), else rolls back; then
 * releases the writer and notifies. Returns the final code. */
int store_wend(store *st, int rc)
{
    if (rc == 0)
        rc = store_wexec(st, "COMMIT");
    if (rc == 0)
        __atomic_add_fetch(&st->generation, 1, __ATOMIC_RELEASE);
    if (rc) {
        store_wrollback(st);
    }
    wunlock_notify(st);
    return rc;
}

/* ---- the point buffer and its flusher ------------------------------------------------------ */

int store_buffer_add(store *st, store_point *p, int points)
{
    pthread_mutex_lock(&st->bmu);
    store_point *nb = store_grow(st->buf, &st->cap_buf, st->n_buf + 1, sizeof *nb);
    if (!nb) {
        pthread_mutex_unlock(&st->bmu);
        store_point_free(p);
        return -ENOMEM;
    }
    st->buf = nb;
    st->buf[st->n_buf++] = *p;
    st->buf_points += points;
    if (st->buf_points >= st->flush_points)
        pthread_cond_signal(&st->fcv);
    pthread_mutex_unlock(&st->bmu);
    return 0;
}

static int flush_item(store *st, store_point *p, sqlite3_stmt *ins_m, sqlite3_stmt *ins_p)
{
    int rc = 0;
    json_t *data = NULL;
    if (p->kind == STORE_POINT_METRIC) {
        json_t *vals = json_object();
        data = json_pack("{sI sI so}", "step", (json_int_t)p->step, "job", (json_int_t)p->job,
                         "values", vals);
        if (!data)
            return -ENOMEM;
        for (int i = 0; i < p->n; i++) {
            sqlite3_reset(ins_m);
            sqlite3_bind_int64(ins_m, 1, p->run);
            sqlite3_bind_text(ins_m, 2, p->keys[i], -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins_m, 3, p->step);
            if (p->job)
                sqlite3_bind_int64(ins_m, 4, p->job);
            else
                sqlite3_bind_null(ins_m, 4);
            if (isfinite(p->vals[i])) {
                sqlite3_bind_double(ins_m, 5, p->vals[i]);
                json_object_set_new(vals, p->keys[i], json_real(p->vals[i]));
            } else {
                sqlite3_bind_null(ins_m, 5);
                json_object_set_new(vals, p->keys[i], json_null());
            }
            sqlite3_bind_double(ins_m, 6, p->t);
            rc = store_wrun(st, ins_m);
            if (rc)
                goto out_free_data;
        }
        rc = store_event_add(st, p->run, p->job, "metric", data, p->t);
    } else if (p->kind == STORE_POINT_SWEEP) {
        sqlite3_reset(ins_p);
        sqlite3_bind_int64(ins_p, 1, p->step);
        sqlite3_bind_int(ins_p, 2, p->n);
        sqlite3_bind_double(ins_p, 3, p->vals[0]);
        for (int i = 1; i < 3; i++) {
            if (isfinite(p->vals[i]))
                sqlite3_bind_double(ins_p, 3 + i, p->vals[i]);
            else
                sqlite3_bind_null(ins_p, 3 + i);
        }
        rc = store_wrun(st, ins_p);
        if (rc)
            return rc;
        data = json_pack("{sI sI si sf so so}", "lr_find", (json_int_t)p->step, "job",
                         (json_int_t)p->job, "iter", p->n, "lr", p->vals[0], "loss",
                         isfinite(p->vals[1]) ? json_real(p->vals[1]) : json_null(),
                         "smooth_loss",
                         isfinite(p->vals[2]) ? json_real(p->vals[2]) : json_null());
        if (!data)
            return -ENOMEM;
        rc = store_event_add(st, p->run, p->job, "sweep_point", data, p->t);
    } else {
        data = json_pack("{sI so so}", "job", (json_int_t)p->job, "what", json_text(p->what),
                         "why", json_text(p->why ? p->why : ""));
        if (!data)
            return -ENOMEM;
        rc = store_event_add(st, p->run, p->job, "note", data, p->t);
    }
out_free_data:
    json_decref(data);
    return rc;
}

static int flush_progress(store *st, store_progress *pr)
{
    sqlite3_stmt *s;
    int rc = store_prep(st->w, "UPDATE jobs SET progress = ?2, eta_s = ?3 "
                         "WHERE id = ?1 AND state = 'running'", &s);
    if (rc)
        return rc;
    sqlite3_bind_int64(s, 1, pr->job);
    sqlite3_bind_double(s, 2, pr->fraction);
    if (pr->eta_s >= 0 && isfinite(pr->eta_s))
        sqlite3_bind_double(s, 3, pr->eta_s);
    rc = store_wrun(st, s);
    int changed = sqlite3_changes(st->w);
    sqlite3_finalize(s);
    if (rc || !changed)
        return rc;
    json_t *j = store_job_json(st->w, pr->job);
    if (!j)
        return -ENOMEM;
    int64_t run = json_integer_value(json_object_get(j, "run"));
    rc = store_event_add(st, run, pr->job, "job", j, store_now_s());
    json_decref(j);
    return rc;
}

/* Commits everything buffered in one transaction (wmu held). A batch that fails is
 * dropped: the database keeps what it had, and the error is returned. */
static int flush_locked(store *st)
{
    pthread_mutex_lock(&st->bmu);
    store_point *items = st->buf;
    int n = st->n_buf;
    store_progress *prog = st->prog;
    int n_prog = st->n_prog;
    st->buf = NULL;
    st->n_buf = st->cap_buf = st->buf_points = 0;
    st->prog = NULL;
    st->n_prog = st->cap_prog = 0;
    pthread_mutex_unlock(&st->bmu);
    if (n == 0 && n_prog == 0)
        return 0;

    sqlite3_stmt *ins_m = NULL, *ins_p = NULL;
    int rc = store_wexec(st, "BEGIN IMMEDIATE");
    if (rc)
        goto out_free_items;
    rc = store_prep(st->w, "INSERT OR REPLACE INTO metrics(run_id, key, step, job_id, value, time) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &ins_m);
    if (rc == 0)
        rc = store_prep(st->w, "INSERT OR REPLACE INTO lr_find_points(lr_find_id, iter, lr, loss, "
                         "smooth_loss) VALUES (?1, ?2, ?3, ?4, ?5)", &ins_p);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = flush_item(st, &items[i], ins_m, ins_p);
    for (int i = 0; rc == 0 && i < n_prog; i++)
        rc = flush_progress(st, &prog[i]);
    sqlite3_finalize(ins_m);
    sqlite3_finalize(ins_p);
    if (rc == 0)
        rc = store_wexec(st, "COMMIT");
    if (rc == 0)
        __atomic_add_fetch(&st->generation, 1, __ATOMIC_RELEASE);
    if (rc) {
        store_wrollback(st);
    }
out_free_items:
    for (int i = 0; i < n; i++)
        store_point_free(&items[i]);
    free(items);
    free(prog);
    return rc;
}

uint64_t store_generation(store *st)
{
    return __atomic_load_n(&st->generation, __ATOMIC_ACQUIRE);
}

int store_flush(store *st)
{
    pthread_mutex_lock(&st->wmu);
    int rc = flush_locked(st);
    wunlock_notify(st);
    return rc;
}

void *store_flusher_main(void *arg)
{
    store *st = arg;
    pthread_mutex_lock(&st->bmu);
    while (!st->stopping) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_nsec += (long)st->flush_ms * 1000000L;
        dl.tv_sec += dl.tv_nsec / 1000000000L;
        dl.tv_nsec %= 1000000000L;
        while (!st->stopping && st->buf_points < st->flush_points) {
            if (pthread_cond_timedwait(&st->fcv, &st->bmu, &dl) == ETIMEDOUT)
                break;
        }
        if (st->stopping)
            break;
        int pending = st->n_buf + st->n_prog;
        pthread_mutex_unlock(&st->bmu);
        if (pending)
            store_flush(st);
        pthread_mutex_lock(&st->bmu);
    }
    pthread_mutex_unlock(&st->bmu);
    return NULL;
}

/* ---- events ------------------------------------------------------------------------------ */

int store_events_after(store *st, int64_t run_id, int64_t after_id, int limit, json_t **out)
{
    if (limit <= 0 || limit > STORE_PAGE_MAX)
        return -EINVAL;
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT id, run_id AS run, job_id AS job, kind, data AS data_json, time "
                      "FROM events WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3", &s);
    if (rc == 0) {
        sqlite3_bind_int64(s, 1, run_id);
        sqlite3_bind_int64(s, 2, after_id);
        sqlite3_bind_int(s, 3, limit);
        rc = store_rows_array(db, s, out);
        sqlite3_finalize(s);
    }
    store_reader_put(st, db);
    return rc;
}

int store_note_push(store *st, int64_t run_id, int64_t job_id, const char *what,
                    const char *why)
{
    store_point p = {.kind = STORE_POINT_NOTE, .run = run_id, .job = job_id, .t = store_now_s()};
    p.what = strdup(what ? what : "");
    p.why = strdup(why ? why : "");
    if (!p.what || !p.why) {
        store_point_free(&p);
        return -ENOMEM;
    }
    return store_buffer_add(st, &p, 1);
}
