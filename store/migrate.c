/* migrate.c: the schema embedded from schema.sql, applied version by version. */
#define _GNU_SOURCE
#include "internal.h"
#include "schema_sql.h"

int store_schema_current(void)
{
    return store_schema_version;
}

static int user_version(sqlite3 *db, int *v)
{
    int64_t x = 0;
    int rc = store_query_i64(db, "PRAGMA user_version", 0, &x);
    *v = (int)x;
    return rc;
}

/* Applies the sections above the current user_version up to `target`, each in one
 * transaction that also bumps user_version, so a crash leaves a whole version. */
int store_migrate(sqlite3 *db, const char *path, int target, char *err, size_t errlen)
{
    int v;
    char e[256] = "";
    if (user_version(db, &v)) {
        snprintf(err, errlen, "%s: cannot read user_version: %s", path, sqlite3_errmsg(db));
        return -EIO;
    }
    if (v > store_schema_version) {
        snprintf(err, errlen, "%s: schema version %d is newer than this sgdrd's (%d)", path,
                 v, store_schema_version);
        return -EINVAL;
    }
    for (; v < target; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if (store_conn_exec(db, "BEGIN IMMEDIATE", e, sizeof e) ||
            store_conn_exec(db, store_schema_sections[v], e, sizeof e) ||
            store_conn_exec(db, bump, e, sizeof e) ||
            store_conn_exec(db, "COMMIT", e, sizeof e)) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            snprintf(err, errlen, "%s: migration to version %d failed: %s", path, v + 1, e);
            return -EIO;
        }
    }
    return 0;
}

#ifdef STORE_TEST_HOOKS
int store_test_create_at_version(const char *path, int version, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    if (version < 0 || version > store_schema_version) {
        snprintf(err, errlen, "version %d out of range", version);
        return -EINVAL;
    }
    int rc = store_conn_open(&db, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, 5000, err,
                             errlen);
    if (rc == 0)
        rc = store_conn_exec(db, "PRAGMA journal_mode = WAL", err, errlen);
    if (rc == 0)
        rc = store_migrate(db, path, version, err, errlen);
    sqlite3_close(db);
    return rc;
}
#endif
