/* schema_sql.h: the schema migrations of schema.sql, embedded at build time. */
#ifndef SGDRD_SCHEMA_SQL_H
#define SGDRD_SCHEMA_SQL_H

/* Number of sections; section i (0-based) migrates user_version i to i + 1. */
extern const int store_schema_version;
extern const char *const store_schema_sections[];

#endif
