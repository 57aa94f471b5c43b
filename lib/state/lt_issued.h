/* lt_issued: the scheduler's state in Postgres (migrations/0006).
 *
 *  - mail_sync_issued: the commands lattice-scheduler produced. The worker
 *    records a command (mail_sync_commands) only when it starts it; a
 *    command still queued in Kafka is known only here.
 *  - "In flight": an account with a running command whose heartbeat is
 *    newer than stale_after_s, or with an issued command newer than
 *    stale_after_s that has not started (no mail_sync_commands row). Such an
 *    account gets no new command (no pile-up); once stale it does.
 *  - A run lock (session advisory lock) so that two schedulers with the
 *    same filters do not both issue commands.
 *
 * All strings are borrowed for the call. */
#ifndef LT_ISSUED_H
#define LT_ISSUED_H

#include <stddef.h>

#include "lt_db.h"
#include "lt_err.h"

/* A plain value carrier: one issued command. scope NULL = all scopes. */
typedef struct {
    const char *command_id;
    const char *tenant;
    const char *account_id;
    const char *provider;
    const char *scope;
} lt_issued_t;

/* Record n issued commands in one statement (a command id already recorded
 * is left as it is). LT_ERR_INVALID when an account does not exist (checked
 * once per statement, migrations/0016) or a value breaks a constraint; then
 * nothing is recorded. */
lt_err_t lt_issued_record(lt_db_t *db, const lt_issued_t *rows, size_t n, char *errstr,
                          size_t errstr_size);

/* The same in two steps, so the caller can work while the server writes:
 * _send() starts a COPY and sends the rows (n >= 1); exactly one _wait()
 * must follow, before db is used for anything else. Here a command id
 * already recorded fails the batch (the scheduler's ids are fresh). */
lt_err_t lt_issued_record_send(lt_db_t *db, const lt_issued_t *rows, size_t n, char *errstr,
                               size_t errstr_size);
lt_err_t lt_issued_record_wait(lt_db_t *db, char *errstr, size_t errstr_size);

/* Forget issued commands (their delivery failed: they never reached Kafka).
 * Unknown ids are ignored. */
lt_err_t lt_issued_forget(lt_db_t *db, const char *const *command_ids, size_t n, char *errstr,
                          size_t errstr_size);

/* Delete the rows that no longer count (issued stale_after_s or more ago).
 * *deleted (may be NULL) = how many. */
lt_err_t lt_issued_prune(lt_db_t *db, int stale_after_s, long long *deleted, char *errstr,
                         size_t errstr_size);

/* Which accounts in flight to list. A plain value carrier. */
typedef struct {
    int stale_after_s;    /* > 0 (see above) */
    const char *provider; /* NULL: all */
    const char *tenant;   /* NULL: all */
} lt_issued_filter_t;

/* fn(tenant, account_id, opaque) once for every account in flight (see
 * above) that passes the filter. fn must not use db; non-zero stops. */
typedef int (*lt_issued_account_fn)(const char *tenant, const char *account_id, void *opaque);
lt_err_t lt_issued_list_in_flight(lt_db_t *db, const lt_issued_filter_t *filter,
                                  lt_issued_account_fn fn, void *opaque, char *errstr,
                                  size_t errstr_size);

/* The run lock, keyed by the filters (NULL = all): *locked = 1 when taken,
 * 0 when another session holds it. Released by lt_issued_run_unlock() or
 * when the connection ends. */
lt_err_t lt_issued_run_trylock(lt_db_t *db, const char *provider, const char *tenant, int *locked,
                               char *errstr, size_t errstr_size);
lt_err_t lt_issued_run_unlock(lt_db_t *db, const char *provider, const char *tenant, char *errstr,
                              size_t errstr_size);

#endif
