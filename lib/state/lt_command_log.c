#include "lt_command_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LT_COMMAND_ERROR_MAX 2000

const char *lt_command_status_name(lt_command_status_t st)
{
    switch (st) {
    case LT_COMMAND_NONE:
        return "none";
    case LT_COMMAND_RUNNING:
        return "running";
    case LT_COMMAND_SUCCEEDED:
        return "succeeded";
    case LT_COMMAND_FAILED:
        return "failed";
    case LT_COMMAND_DEAD_LETTERED:
        return "dead_lettered";
    }
    return "unknown";
}

static lt_command_status_t parse_status(const char *s)
{
    if (!strcmp(s, "running"))
        return LT_COMMAND_RUNNING;
    if (!strcmp(s, "succeeded"))
        return LT_COMMAND_SUCCEEDED;
    if (!strcmp(s, "failed"))
        return LT_COMMAND_FAILED;
    if (!strcmp(s, "dead_lettered"))
        return LT_COMMAND_DEAD_LETTERED;
    return LT_COMMAND_NONE;
}

static int id_ok(const char *id)
{
    return id && *id && strlen(id) <= 256;
}

lt_err_t lt_command_start(lt_db_t *db, const lt_command_info_t *c, int *attempt,
                          lt_command_status_t *previous, char *errstr, size_t errstr_size)
{
    PGresult *r = NULL;
    if (attempt)
        *attempt = 0;
    if (previous)
        *previous = LT_COMMAND_NONE;
    if (!id_ok(c->command_id) || !c->tenant || !c->account_id || !c->provider || !c->kind)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "command start needs command id (1..256 bytes), tenant, account, "
                         "provider and kind");
    char min_att[16], own_att[16];
    snprintf(min_att, sizeof(min_att), "%d", c->min_attempt > 1 ? c->min_attempt : 1);
    snprintf(own_att, sizeof(own_att), "%d", c->own_attempt > 0 ? c->own_attempt : 0);
    const char *params[] = {c->command_id, c->tenant,    c->account_id, c->provider, c->kind,
                            c->scope,      c->worker_id, min_att,       own_att};
    /* `prev` reads the row before the upsert (the statement's snapshot);
     * the upsert itself serialises on the key. A command that succeeded or
     * was dead-lettered is not restarted: its row stays as it is. Nor is a
     * row of another tenant or account that has the same id. */
    lt_err_t err = lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = "command start",
            .sql =
                "WITH prev AS (SELECT status, attempt, tenant_id = $2 AND account_id = $3 AS own "
                "FROM mail_sync_commands WHERE command_id = $1), "
                "up AS (INSERT INTO mail_sync_commands AS c (command_id, tenant_id, account_id, "
                "provider, kind, scope, status, attempt, worker_id, started_at, heartbeat_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, 'running', $8::integer, $7, now(), now()) "
                "ON CONFLICT (command_id) DO UPDATE SET status = 'running', "
                "attempt = GREATEST(c.attempt + 1, $8::integer), "
                "stalled_runs = CASE WHEN c.messages > 0 THEN 0 "
                "WHEN c.status = 'running' AND c.attempt <> $9::integer "
                "THEN c.stalled_runs + 1 ELSE c.stalled_runs END, "
                "worker_id = EXCLUDED.worker_id, started_at = now(), heartbeat_at = now(), "
                "finished_at = NULL, error_class = NULL, error = NULL, messages = 0, bytes = 0, "
                "progress_done = NULL, progress_total = NULL "
                "WHERE c.status NOT IN ('succeeded', 'dead_lettered') "
                "AND c.tenant_id = EXCLUDED.tenant_id AND c.account_id = EXCLUDED.account_id "
                "RETURNING c.attempt) "
                "SELECT COALESCE((SELECT attempt FROM up), (SELECT attempt FROM prev)), "
                "(SELECT status FROM prev), (SELECT count(*) FROM up), (SELECT own FROM prev)",
            .nparams = 9,
            .params = params},
        &r, errstr, errstr_size);
    if (err)
        return err;
    if (!PQgetisnull(r, 0, 3) && strcmp(PQgetvalue(r, 0, 3), "t") != 0) {
        PQclear(r);
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                         "command id %s is already used by another account", c->command_id);
    }
    if (attempt)
        *attempt = PQgetisnull(r, 0, 0) ? 0 : atoi(PQgetvalue(r, 0, 0));
    if (previous && !PQgetisnull(r, 0, 1))
        *previous = parse_status(PQgetvalue(r, 0, 1));
    if (strcmp(PQgetvalue(r, 0, 2), "1") != 0 && PQgetisnull(r, 0, 1))
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "command start: %s was neither inserted nor found (concurrent finish?)",
                        c->command_id);
    PQclear(r);
    return err;
}

/* Text of a counter, NULL when negative (unknown). */
static const char *num_or_null(int64_t v, char buf[32])
{
    if (v < 0)
        return NULL;
    snprintf(buf, 32, "%" PRId64, v);
    return buf;
}

/* Run q, which updates the row of command_id: LT_ERR_NOT_FOUND ("command
 * <id> <missing>") unless exactly one row changed. */
static lt_err_t update_one(lt_db_t *db, const lt_db_query_t *q, const char *command_id,
                           const char *missing, char *errstr, size_t errstr_size)
{
    PGresult *r = NULL;
    lt_err_t err = lt_db_exec(db, q, &r, errstr, errstr_size);
    if (err)
        return err;
    if (strcmp(PQcmdTuples(r), "1") != 0)
        err =
            lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "command %s %s", command_id, missing);
    PQclear(r);
    return err;
}

lt_err_t lt_command_heartbeat(lt_db_t *db, const char *command_id,
                              const lt_command_progress_t *progress, char *errstr,
                              size_t errstr_size)
{
    char m[32], b[32], d[32], t[32];
    if (!id_ok(command_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad command id");
    const lt_command_progress_t none = {-1, -1, -1, -1};
    const lt_command_progress_t *p = progress ? progress : &none;
    const char *params[] = {command_id, num_or_null(p->messages, m), num_or_null(p->bytes, b),
                            num_or_null(p->progress_done, d), num_or_null(p->progress_total, t)};
    return update_one(db,
                      &(lt_db_query_t){.what = "command heartbeat",
                                       .sql =
                                           "UPDATE mail_sync_commands SET heartbeat_at = now(), "
                                           "messages = COALESCE($2::integer, messages), "
                                           "bytes = COALESCE($3::bigint, bytes), "
                                           "progress_done = COALESCE($4::bigint, progress_done), "
                                           "progress_total = COALESCE($5::bigint, progress_total) "
                                           "WHERE command_id = $1 AND status = 'running'",
                                       .nparams = 5,
                                       .params = params},
                      command_id, "is not running", errstr, errstr_size);
}

lt_err_t lt_command_progressed(lt_db_t *db, const char *command_id, char *errstr,
                               size_t errstr_size)
{
    if (!command_id || !*command_id)
        return LT_OK;
    const char *params[] = {command_id};
    return lt_db_exec(db,
                      &(lt_db_query_t){.what = "command progressed",
                                       .sql = "UPDATE mail_sync_commands SET stalled_runs = 0 "
                                              "WHERE command_id = $1 AND stalled_runs <> 0",
                                       .nparams = 1,
                                       .params = params},
                      NULL, errstr, errstr_size);
}

lt_err_t lt_command_finish(lt_db_t *db, const char *command_id, const lt_command_outcome_t *outcome,
                           char *errstr, size_t errstr_size)
{
    lt_command_status_t status = outcome->status;
    const char *error_class = outcome->error_class, *error = outcome->error;
    char m[32], b[32], d[32], t[32];
    char capped[LT_COMMAND_ERROR_MAX + 1];
    if (!id_ok(command_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad command id");
    if (status != LT_COMMAND_SUCCEEDED && status != LT_COMMAND_FAILED &&
        status != LT_COMMAND_DEAD_LETTERED)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "a command finishes as succeeded, failed or dead_lettered");
    if (error)
        lt_db_cap_utf8(capped, sizeof(capped), error);
    const lt_command_progress_t none = {-1, -1, -1, -1};
    const lt_command_progress_t *p = outcome->counts ? outcome->counts : &none;
    const char *params[] = {command_id,
                            lt_command_status_name(status),
                            num_or_null(p->messages, m),
                            num_or_null(p->bytes, b),
                            num_or_null(p->progress_done, d),
                            num_or_null(p->progress_total, t),
                            error_class,
                            error ? capped : NULL};
    return update_one(
        db,
        &(lt_db_query_t){.what = "command finish",
                         .sql = "UPDATE mail_sync_commands SET status = $2, finished_at = now(), "
                                "heartbeat_at = now(), "
                                "messages = COALESCE($3::integer, messages), "
                                "bytes = COALESCE($4::bigint, bytes), "
                                "progress_done = COALESCE($5::bigint, progress_done), "
                                "progress_total = COALESCE($6::bigint, progress_total), "
                                "error_class = $7, error = $8 WHERE command_id = $1",
                         .nparams = 8,
                         .params = params},
        command_id, "has no record", errstr, errstr_size);
}

lt_err_t lt_command_abandon(lt_db_t *db, const char *command_id, int attempt, char *errstr,
                            size_t errstr_size)
{
    char att[16];
    if (!id_ok(command_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad command id");
    snprintf(att, sizeof(att), "%d", attempt);
    const char *params[] = {command_id, att};
    return update_one(
        db,
        &(lt_db_query_t){.what = "command abandon",
                         .sql = "UPDATE mail_sync_commands SET status = 'failed', "
                                "attempt = GREATEST(attempt - 1, 1), finished_at = now(), "
                                "heartbeat_at = now(), error_class = 'cancelled', "
                                "error = 'given up cleanly; run again' "
                                "WHERE command_id = $1 AND status = 'running' AND attempt = $2",
                         .nparams = 2,
                         .params = params},
        command_id, "is not running", errstr, errstr_size);
}

lt_err_t lt_command_get_status(lt_db_t *db, const char *command_id, const char *tenant,
                               const char *account_id, lt_command_state_t *out, char *errstr,
                               size_t errstr_size)
{
    PGresult *r = NULL;
    if (!id_ok(command_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad command id");
    const char *params[] = {command_id, tenant, account_id};
    lt_err_t err = lt_db_exec(
        db,
        &(lt_db_query_t){.what = "command status",
                         .sql = "SELECT status, attempt, ($2::text IS NULL OR tenant_id = $2) AND "
                                "($3::text IS NULL OR account_id = $3), stalled_runs, messages "
                                "FROM mail_sync_commands WHERE command_id = $1",
                         .nparams = 3,
                         .params = params},
        &r, errstr, errstr_size);
    if (err)
        return err;
    if (PQntuples(r) == 0) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "command %s has no record",
                        command_id);
    } else if (strcmp(PQgetvalue(r, 0, 2), "t") != 0) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                        "command id %s is already used by another account", command_id);
    } else {
        out->status = parse_status(PQgetvalue(r, 0, 0));
        out->attempt = atoi(PQgetvalue(r, 0, 1));
        out->stalled_runs = atoi(PQgetvalue(r, 0, 3));
        out->messages = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
    }
    PQclear(r);
    return err;
}
