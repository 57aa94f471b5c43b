/* lt_command_log: the mail_sync_commands table, the worker's record of the
 * commands it runs (one row per command id) and the scheduler's
 * "still in flight?" check.
 *
 * Lifecycle: lt_command_start() (status running; a redelivered command id
 * is restarted with attempt + 1), lt_command_heartbeat() while it runs,
 * lt_command_finish() with the outcome. A running command whose heartbeat
 * is older than the scheduler's stale_after_s counts as dead (its worker
 * crashed); the scheduler may then emit a new command. */
#ifndef LT_COMMAND_LOG_H
#define LT_COMMAND_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "lt_db.h"
#include "lt_err.h"

typedef enum {
    LT_COMMAND_NONE = 0, /* no row (start: a new command id) */
    LT_COMMAND_RUNNING,
    LT_COMMAND_SUCCEEDED,
    LT_COMMAND_FAILED,
    LT_COMMAND_DEAD_LETTERED,
} lt_command_status_t;

/* "running", "succeeded", "failed", "dead_lettered" ("none" for NONE). */
const char *lt_command_status_name(lt_command_status_t st);

/* A plain value carrier; strings borrowed. */
typedef struct {
    const char *command_id; /* 1..256 bytes */
    const char *tenant;
    const char *account_id;
    const char *provider;
    const char *kind;  /* e.g. "incremental", "backfill" */
    const char *scope; /* NULL when the command has none */
    const char *worker_id;
    /* lt_command_start(): the attempt is at least min_attempt (the runs this
     * process counted, some of which may not have reached the row while
     * Postgres was down); own_attempt is the row attempt this process
     * started last (0: none): a row still running that attempt is not a
     * run that took its worker down. */
    int min_attempt;
    int own_attempt;
} lt_command_info_t;

/* Counters; a negative progress value is stored as NULL (unknown). */
typedef struct {
    int64_t messages;
    int64_t bytes;
    int64_t progress_done;
    int64_t progress_total;
} lt_command_progress_t;

/* Record the start. *previous (may be NULL) = the row's status before
 * (LT_COMMAND_NONE for a new command id). A redelivered command that
 * SUCCEEDED or was DEAD_LETTERED is not restarted: the row is left as it
 * is, *attempt is its attempt, and the caller must not run it again.
 * Otherwise the row becomes running and *attempt (may be NULL) is 1 for a
 * new command id, else the previous attempt + 1; at least c->min_attempt.
 * stalled_runs: 0 when the previous run counted messages (a heartbeat after
 * a checkpoint), + 1 when it is still running (never finished) and is not
 * c->own_attempt, else unchanged.
 * A command id is one (tenant, account)'s: LT_ERR_FINAL, the row untouched,
 * when the id's row belongs to another tenant or account (the command is to
 * be dead-lettered, not run, and not taken for that row's outcome). */
lt_err_t lt_command_start(lt_db_t *db, const lt_command_info_t *c, int *attempt,
                          lt_command_status_t *previous, char *errstr, size_t errstr_size);

/* Heartbeat + progress of a running command. LT_ERR_NOT_FOUND when the
 * command is not running (finished, or unknown). */
lt_err_t lt_command_heartbeat(lt_db_t *db, const char *command_id,
                              const lt_command_progress_t *progress, char *errstr,
                              size_t errstr_size);

/* A batch of command_id's was found committed after its run ended (in-doubt
 * recovery applied its watermark): that run made durable progress, so the
 * command's runs in a row without progress (stalled_runs) start again from
 * 0. A command id without a row (an empty id: a batch of no command) is not
 * an error. */
lt_err_t lt_command_progressed(lt_db_t *db, const char *command_id, char *errstr,
                               size_t errstr_size);

/* How a command ended. A plain value carrier; strings borrowed. */
typedef struct {
    lt_command_status_t status;          /* SUCCEEDED, FAILED or DEAD_LETTERED */
    const lt_command_progress_t *counts; /* NULL: the stored counters are kept */
    const char *error_class;             /* lt_err_name() of the failure; NULL on success */
    const char *error; /* capped at 2000 bytes; never a secret or message content */
} lt_command_outcome_t;

/* Finish with the outcome. LT_ERR_NOT_FOUND when the command id has no
 * row; LT_ERR_INVALID for another status. */
lt_err_t lt_command_finish(lt_db_t *db, const char *command_id, const lt_command_outcome_t *outcome,
                           char *errstr, size_t errstr_size);

/* A running command given up cleanly (its partition revoked, the worker
 * stopping): status failed, error_class "cancelled", and the attempt is
 * not counted (attempts count the runs that failed or never finished: a
 * worker killed during each). `attempt` is the run's (lt_command_start):
 * LT_ERR_NOT_FOUND, nothing changed, when the command is not running that
 * attempt (another worker has started it since). */
lt_err_t lt_command_abandon(lt_db_t *db, const char *command_id, int attempt, char *errstr,
                            size_t errstr_size);

/* A row's state as lt_command_get_status() reads it. */
typedef struct {
    lt_command_status_t status;
    int attempt;
    int stalled_runs; /* earlier runs in a row without a finish or progress */
    int64_t messages; /* counted by the last run's heartbeats (0: no progress seen) */
} lt_command_state_t;

/* The row's status and attempt (LT_ERR_NOT_FOUND when none). With tenant
 * and account_id (each may be NULL: any), LT_ERR_FINAL when the id's row is
 * another tenant's or account's. */
lt_err_t lt_command_get_status(lt_db_t *db, const char *command_id, const char *tenant,
                               const char *account_id, lt_command_state_t *out, char *errstr,
                               size_t errstr_size);

#endif
