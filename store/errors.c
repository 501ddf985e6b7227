/* errors.c: the per-thread error message of store calls, and SQLite codes as ours. */
#define _GNU_SOURCE
#include "internal.h"

/* The message store_errmsg returns: the last failure of this thread's store call. */
static _Thread_local char errbuf[STORE_ERR_MAX];

const char *store_errmsg(void)
{
    return errbuf;
}

void store_set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
}

int store_db_fail(sqlite3 *db, int rc, const char *what)
{
    store_set_err("%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (rc == SQLITE_NOMEM)
        return -ENOMEM;
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return -EINVAL;
    return store_sqlite_errno(rc);
}

int store_sqlite_errno(int rc)
{
    if (rc == SQLITE_NOMEM)
        return -ENOMEM;
    if (rc == SQLITE_FULL)
        return -ENOSPC; /* the unix VFS's answer to ENOSPC */
    return -EIO;
}
