/* buffer.c: the in-memory buffer of high-rate points (metrics, sweep points, notes, job
 * progress) and the flusher thread that commits it. */
#define _GNU_SOURCE
#include "internal.h"

void store_point_free(store_point *p)
{
    if (p->keys) {
        for (int i = 0; i < p->n; i++)
            free(p->keys[i]);
    }
    free(p->keys);
    free(p->vals);
    free(p->what);
    free(p->why);
}

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

int store_note_push(store *st, int64_t run_id, int64_t job_id, const char *what,
                    const char *why)
{
    store_point p = {.kind = STORE_POINT_NOTE, .run = run_id, .job = job_id,
                     .t = store_now_s()};
    p.what = strdup(what ? what : "");
    p.why = strdup(why ? why : "");
    if (!p.what || !p.why) {
        store_point_free(&p);
        return -ENOMEM;
    }
    return store_buffer_add(st, &p, 1);
}

/* ---- flushing ---------------------------------------------------------------------------- */

/* A metric step: one row per key, and one "metric" event with every value (their
 * summaries are rebuilt once the whole batch is in). */
static int flush_metric(store *st, store_point *p, sqlite3_stmt *ins)
{
    json_t *vals = json_object();
    json_t *data = json_pack("{sI sI so}", "step", (json_int_t)p->step, "job",
                             (json_int_t)p->job, "values", vals);
    if (!data)
        return -ENOMEM;
    int rc = 0;
    for (int i = 0; rc == 0 && i < p->n; i++) {
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, p->run);
        sqlite3_bind_text(ins, 2, p->keys[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 3, p->step);
        if (p->job)
            sqlite3_bind_int64(ins, 4, p->job);
        else
            sqlite3_bind_null(ins, 4);
        if (isfinite(p->vals[i])) {
            sqlite3_bind_double(ins, 5, p->vals[i]);
            json_object_set_new(vals, p->keys[i], json_real(p->vals[i]));
        } else {
            sqlite3_bind_null(ins, 5);
            json_object_set_new(vals, p->keys[i], json_null());
        }
        sqlite3_bind_double(ins, 6, p->t);
        rc = store_wrun(st, ins);
    }
    if (rc == 0)
        rc = store_event_add(st, p->run, p->job, "metric", data, p->t);
    json_decref(data);
    return rc;
}

/* A sweep point: its row and a "sweep_point" event; a non-finite loss is stored as NULL. */
static int flush_sweep(store *st, store_point *p, sqlite3_stmt *ins)
{
    sqlite3_reset(ins);
    sqlite3_bind_int64(ins, 1, p->step);
    sqlite3_bind_int(ins, 2, p->n);
    sqlite3_bind_double(ins, 3, p->vals[0]);
    for (int i = 1; i < 3; i++) {
        if (isfinite(p->vals[i]))
            sqlite3_bind_double(ins, 3 + i, p->vals[i]);
        else
            sqlite3_bind_null(ins, 3 + i);
    }
    int rc = store_wrun(st, ins);
    if (rc)
        return rc;
    json_t *data = json_pack("{sI sI si sf so so}", "lr_find", (json_int_t)p->step, "job",
                             (json_int_t)p->job, "iter", p->n, "lr", p->vals[0], "loss",
                             isfinite(p->vals[1]) ? json_real(p->vals[1]) : json_null(),
                             "smooth_loss",
                             isfinite(p->vals[2]) ? json_real(p->vals[2]) : json_null());
    if (!data)
        return -ENOMEM;
    rc = store_event_add(st, p->run, p->job, "sweep_point", data, p->t);
    json_decref(data);
    return rc;
}

/* A note: only its "note" event. */
static int flush_note(store *st, store_point *p)
{
    json_t *data = json_pack("{sI so so}", "job", (json_int_t)p->job, "what",
                             json_text(p->what), "why", json_text(p->why ? p->why : ""));
    if (!data)
        return -ENOMEM;
    int rc = store_event_add(st, p->run, p->job, "note", data, p->t);
    json_decref(data);
    return rc;
}

/* A job's latest progress, with a "job" event when the job is still running. */
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
    return store_job_event(st, pr->job);
}

/* Commits everything buffered in one transaction (wmu held). A batch that fails is
 * dropped: the database keeps what it had, and the error is returned. */
int store_flush_locked(store *st)
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
    rc = store_prep(st->w, "INSERT OR REPLACE INTO metrics(run_id, key, step, job_id, value, "
                           "time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &ins_m);
    if (rc == 0)
        rc = store_prep(st->w, "INSERT OR REPLACE INTO lr_find_points(lr_find_id, iter, lr, "
                               "loss, smooth_loss) VALUES (?1, ?2, ?3, ?4, ?5)", &ins_p);
    for (int i = 0; rc == 0 && i < n; i++) {
        store_point *p = &items[i];
        if (p->kind == STORE_POINT_METRIC)
            rc = flush_metric(st, p, ins_m);
        else if (p->kind == STORE_POINT_SWEEP)
            rc = flush_sweep(st, p, ins_p);
        else
            rc = flush_note(st, p);
    }
    if (rc == 0)
        rc = store_summaries_update(st, items, n);
    for (int i = 0; rc == 0 && i < n_prog; i++)
        rc = flush_progress(st, &prog[i]);
    sqlite3_finalize(ins_m);
    sqlite3_finalize(ins_p);
    rc = store_wcommit(st, rc);
out_free_items:
    for (int i = 0; i < n; i++)
        store_point_free(&items[i]);
    free(items);
    free(prog);
    return rc;
}

int store_flush(store *st)
{
    pthread_mutex_lock(&st->wmu);
    int rc = store_flush_locked(st);
    store_wunlock_notify(st);
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
