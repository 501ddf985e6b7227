/* stats.c: what operators watch (the API's Prometheus /metrics): jobs by state, the running
 * job and its speed, the distribution of epoch times, the size of the database. */
#define _GNU_SOURCE
#include "internal.h"

const char *const store_job_states[STORE_JOB_STATES] = {
    "queued", "running", "succeeded", "failed", "cancelled", "interrupted",
};

static int stats_jobs(sqlite3 *db, store_stats *out)
{
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT state, count(*) FROM jobs GROUP BY state", &s);
    if (rc)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(s, 0);
        for (int i = 0; i < STORE_JOB_STATES; i++)
            if (state && strcmp(state, store_job_states[i]) == 0)
                out->jobs[i] = sqlite3_column_int64(s, 1);
    }
    rc = rc == SQLITE_DONE ? 0 : store_db_fail(db, rc, "read");
    sqlite3_finalize(s);
    return rc;
}

/* The running job (the oldest one started, should there be several) and the images per
 * second of its latest epoch. */
static int stats_running(sqlite3 *db, store_stats *out)
{
    sqlite3_stmt *s;
    int rc = store_prep(db, "SELECT j.id, (SELECT e.img_per_s FROM epochs e WHERE "
                            "e.job_id = j.id ORDER BY e.id DESC LIMIT 1) FROM jobs j "
                            "WHERE j.state = 'running' ORDER BY j.started_at, j.id LIMIT 1",
                        &s);
    if (rc)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->running_job = sqlite3_column_int64(s, 0);
        out->img_per_s = sqlite3_column_double(s, 1);
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_db_fail(db, rc, "read");
    sqlite3_finalize(s);
    return rc;
}

/* Cumulative counts of epoch times <= each of le[0..n) (ascending), their number and sum,
 * in one pass over the epochs. */
static int stats_epoch_times(sqlite3 *db, const double *le, int n, store_stats *out)
{
    char sql[64 + STORE_STATS_BUCKETS * 48];
    size_t used = (size_t)snprintf(sql, sizeof sql, "SELECT count(*), total(seconds)");
    for (int i = 0; i < n; i++)
        used += (size_t)snprintf(sql + used, sizeof sql - used, ", total(seconds <= ?%d)",
                                 i + 1);
    snprintf(sql + used, sizeof sql - used, " FROM epochs WHERE seconds IS NOT NULL");
    sqlite3_stmt *s;
    int rc = store_prep(db, sql, &s);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++)
        sqlite3_bind_double(s, i + 1, le[i]);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->epochs = sqlite3_column_int64(s, 0);
        out->epoch_seconds_sum = sqlite3_column_double(s, 1);
        for (int i = 0; i < n; i++)
            out->epoch_le[i] = (int64_t)sqlite3_column_double(s, i + 2);
        rc = 0;
    } else {
        rc = store_db_fail(db, rc, "read");
    }
    sqlite3_finalize(s);
    return rc;
}

static int stats_size(sqlite3 *db, store_stats *out)
{
    int64_t pages, size;
    int rc = store_query_i64(db, "SELECT page_count FROM pragma_page_count() WHERE ?1 = ?1",
                             0, &pages);
    if (rc == 0)
        rc = store_query_i64(db, "SELECT page_size FROM pragma_page_size() WHERE ?1 = ?1", 0,
                             &size);
    if (rc == 0)
        out->db_bytes = pages * size;
    return rc;
}

int store_stats_get(store *st, const double *le, int n_le, store_stats *out)
{
    if (n_le < 0 || n_le > STORE_STATS_BUCKETS)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    sqlite3 *db = store_reader_get(st);
    int rc = stats_jobs(db, out);
    if (rc == 0)
        rc = stats_running(db, out);
    if (rc == 0)
        rc = stats_epoch_times(db, le, n_le, out);
    if (rc == 0)
        rc = stats_size(db, out);
    store_reader_put(st, db);
    return rc;
}
