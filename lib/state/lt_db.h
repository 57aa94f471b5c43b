/* lt_db: one Postgres connection (libpq) and the helpers every state module
 * uses: parameterised queries only (PQexecParams; SQL is never built from
 * strings), failure classification, transactions.
 *
 * Ownership: lt_db_t owns its PGconn. lt_db_conn() lends it to the modules
 * in lib/state only; nothing else includes libpq. One lt_db_t is used by one
 * thread at a time.
 *
 * The password is handed to libpq as the `password` keyword (never put into
 * the connection string, never logged). Session-level state (advisory locks,
 * SET) is lost by lt_db_reset(): callers re-take their locks. */
#ifndef LT_DB_H
#define LT_DB_H

#include <stddef.h>

#include <libpq-fe.h>

#include "lt_err.h"

typedef struct lt_db_s lt_db_t;

/* Connect with a libpq connection string or URI (`dsn`, without password)
 * and `password` (NULL or "" = libpq's own lookup: PGPASSWORD, .pgpass).
 * Returns NULL with errstr filled on failure. */
lt_db_t *lt_db_connect(const char *dsn, const char *password, char *errstr, size_t errstr_size);

/* The same with extra libpq keywords that override the dsn, e.g.
 * {"dbname", "other"} or {"options", "-csearch_path=s1"}: NULL-terminated
 * parallel arrays (either may be NULL for none). */
lt_db_t *lt_db_connect_params(const char *dsn, const char *password, const char *const *keywords,
                              const char *const *values, char *errstr, size_t errstr_size);

void lt_db_destroy(lt_db_t *db);

/* 1 while the connection is usable. */
int lt_db_ok(const lt_db_t *db);

/* Re-establish a broken connection (PQreset). LT_OK when connected again,
 * LT_ERR_TEMPORARY otherwise. Locks and session settings are gone. */
lt_err_t lt_db_reset(lt_db_t *db, char *errstr, size_t errstr_size);

/* For lib/state modules only. Borrowed; valid until lt_db_destroy(). */
PGconn *lt_db_conn(lt_db_t *db);

/* Map a SQLSTATE to the project's error codes:
 *   08*** connection, 40001 serialization, 40P01 deadlock, 53*** resources,
 *   55P03 lock not available, 57014 cancel/timeout, 57P0x shutdown -> TEMPORARY
 *   23*** constraint violation, 22*** bad data                    -> INVALID
 *   anything else (42*** schema/syntax: not migrated, a bug)        -> FINAL
 * NULL or empty -> TEMPORARY (no server answer: the connection broke). */
lt_err_t lt_db_classify_sqlstate(const char *sqlstate);

/* One statement and its text parameters (NULL element = SQL NULL). A plain
 * value carrier; nothing owned. */
typedef struct {
    const char *what; /* names the operation in error messages */
    const char *sql;
    int nparams;
    const char *const *params;
} lt_db_query_t;

/* Run one statement. On success, *res (if res != NULL) receives the result:
 * the caller PQclear()s it. On failure *res is NULL, errstr holds "<what>:
 * <server message> (SQLSTATE xxxxx)" and the code is classified as above (a
 * broken connection is TEMPORARY). */
lt_err_t lt_db_exec(lt_db_t *db, const lt_db_query_t *q, PGresult **res, char *errstr,
                    size_t errstr_size);

/* Transactions. lt_db_rollback() is safe to call when no transaction is
 * open and on a broken connection (then it does nothing). */
lt_err_t lt_db_begin(lt_db_t *db, char *errstr, size_t errstr_size);
/* A transaction in one round trip where the statements allow it (libpq's
 * pipeline mode): BEGIN and every lt_db_exec() without a result pointer
 * are only sent; they are read with the next lt_db_exec() that wants its
 * result, or by lt_db_commit(). So the error of a statement sent that way
 * is returned by a later call (with that statement's "what"); the caller
 * rolls back on any error as usual. lt_db_commit() / lt_db_rollback() end
 * the mode. The connection must be idle (no transaction open). */
lt_err_t lt_db_begin_pipelined(lt_db_t *db, char *errstr, size_t errstr_size);
lt_err_t lt_db_commit(lt_db_t *db, char *errstr, size_t errstr_size);
void lt_db_rollback(lt_db_t *db);

/* Fill errstr from a failed result (or the connection) and classify it;
 * for modules streaming with PQsendQueryParams. */
lt_err_t lt_db_result_error(lt_db_t *db, const char *what, const PGresult *res, char *errstr,
                            size_t errstr_size);

/* Copy src into dst (dst_size bytes incl. NUL), cut at a UTF-8 character
 * boundary when too long: for free-text columns (reasons, errors). */
void lt_db_cap_utf8(char *dst, size_t dst_size, const char *src);

/* 64-bit FNV-1a over the parts, each followed by a 0 byte: stable keys for
 * pg_advisory_lock (namespace first, e.g. "lattice.account", tenant, id). */
long long lt_db_lock_key(const char *const *parts, size_t nparts);

#endif
