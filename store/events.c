/* events.c: live events: recorded with the write transaction that makes them, handed to
 * the subscribers after its commit, and read back for a client that resumes. */
#define _GNU_SOURCE
#include "internal.h"

/* ---- events of the open write transaction ------------------------------------------------ */

void store_tx_events_clear(store *st)
{
    for (int i = 0; i < st->n_tev; i++) {
        free(st->tev[i].kind);
        free(st->tev[i].data);
    }
    st->n_tev = 0;
}

/* Inserts an event row in the open transaction and remembers it for the notification. */
int store_event_add(store *st, int64_t run, int64_t job, const char *kind,
                    json_t *data, double t)
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

/* ---- subscribers ------------------------------------------------------------------------- */

/* Calls the listeners with the committed events. Entered with wmu held; takes nmu before
 * releasing wmu so notifications keep commit order without holding up the next writer. */
void store_wunlock_notify(store *st)
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

int store_subscribe(store *st, store_listener fn, void *ctx, int *handle)
{
    pthread_mutex_lock(&st->nmu);
    store_sub *ns = store_grow(st->subs, &st->cap_subs, st->n_subs + 1, sizeof *ns);
    if (!ns) {
        pthread_mutex_unlock(&st->nmu);
        return -ENOMEM;
    }
    st->subs = ns;
    st->subs[st->n_subs] = (store_sub){st->next_handle++, fn, ctx};
    *handle = st->subs[st->n_subs].handle;
    st->n_subs++;
    pthread_mutex_unlock(&st->nmu);
    return 0;
}

void store_unsubscribe(store *st, int handle)
{
    pthread_mutex_lock(&st->nmu);
    for (int i = 0; i < st->n_subs; i++) {
        if (st->subs[i].handle == handle) {
            memmove(&st->subs[i], &st->subs[i + 1],
                    (size_t)(st->n_subs - i - 1) * sizeof *st->subs);
            st->n_subs--;
            break;
        }
    }
    pthread_mutex_unlock(&st->nmu);
}

/* ---- reading them back ------------------------------------------------------------------- */

int store_events_after(store *st, int64_t run_id, int64_t after_id, int limit, json_t **out)
{
    if (limit <= 0 || limit > STORE_PAGE_MAX)
        return -EINVAL;
    sqlite3 *db = store_reader_get(st);
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT id, run_id AS run, job_id AS job, kind, "
                            "data AS data_json, time FROM events "
                            "WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3", &s);
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
