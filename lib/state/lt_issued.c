#include "lt_issued.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"

/* The batch travels as COPY text rows: per row the server only checks the
 * constraints and updates two indexes (no JSON to build, send and take
 * apart: a 100k-account run spent twice as long in the server with
 * jsonb_to_recordset); the accounts are checked once per statement
 * (migrations/0016: a per-row foreign key was most of the server's work). SET LOCAL in the same query string (one implicit
 * transaction, rolled back whole on an error) makes the commit not wait for
 * the WAL flush and leaves the session as it was. A row lost in a server
 * crash only means an account may get a second command (the worker
 * serialises an account's commands; an incremental is idempotent). */
#define COPY_SQL                                                                                   \
    "SET LOCAL synchronous_commit TO off; "                                                        \
    "COPY mail_sync_issued (command_id, tenant_id, account_id, provider, scope) FROM STDIN"

/* The same rows as one JSON parameter, a command id already recorded left
 * as it is: lt_issued_record() after a COPY met one. */
#define UPSERT_SQL                                                                                 \
    "WITH s AS (SELECT set_config('synchronous_commit', 'off', true) AS v) "                       \
    "INSERT INTO mail_sync_issued (command_id, tenant_id, account_id, provider, scope) "           \
    "SELECT x.c, x.t, x.a, x.p, x.s FROM s, jsonb_to_recordset($1::jsonb) "                        \
    "AS x(c text, t text, a text, p text, s text) ON CONFLICT (command_id) DO NOTHING"

static lt_err_t check_rows(const lt_issued_t *rows, size_t n, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < n; i++) {
        const lt_issued_t *r = &rows[i];
        if (!r->command_id || !r->tenant || !r->account_id || !r->provider)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "issued command %zu: command id, tenant, account and provider are "
                             "required",
                             i);
    }
    return LT_OK;
}

/* One COPY text field: backslash, tab, newline and carriage return escaped. */
static void copy_field(lt_buf_t *b, const char *v, char end)
{
    if (!v) {
        lt_buf_append(b, "\\N", 2);
    } else {
        const char *run = v;
        for (const char *p = v;; p++) {
            char c = *p;
            if (c == '\\' || c == '\t' || c == '\n' || c == '\r' || !c) {
                lt_buf_append(b, run, (size_t)(p - run));
                if (!c)
                    break;
                char esc[2] = {'\\', c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n' : 'r'};
                lt_buf_append(b, esc, 2);
                run = p + 1;
            }
        }
    }
    lt_buf_append(b, &end, 1);
}

lt_err_t lt_issued_record_send(lt_db_t *db, const lt_issued_t *rows, size_t n, char *errstr,
                               size_t errstr_size)
{
    lt_err_t err = check_rows(rows, n, errstr, errstr_size);
    if (err)
        return err;
    if (!lt_db_ok(db))
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                         "record issued commands: connection is broken");
    PGconn *conn = lt_db_conn(db);
    if (!PQsendQuery(conn, COPY_SQL))
        return lt_db_result_error(db, "record issued commands", NULL, errstr, errstr_size);
    /* SET's result, then the server's go-ahead for the rows. */
    PGresult *r;
    while ((r = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN) {
            PQclear(r);
            break;
        }
        if (st != PGRES_COMMAND_OK && !err)
            err = lt_db_result_error(db, "record issued commands", r, errstr, errstr_size);
        PQclear(r);
    }
    if (err || !r) {
        while ((r = PQgetResult(conn)) != NULL)
            PQclear(r);
        return err ? err
                   : lt_db_result_error(db, "record issued commands", NULL, errstr, errstr_size);
    }
    lt_buf_t *b = lt_buf_new(SIZE_MAX / 2);
    for (size_t i = 0; i < n; i++) {
        copy_field(b, rows[i].command_id, '\t');
        copy_field(b, rows[i].tenant, '\t');
        copy_field(b, rows[i].account_id, '\t');
        copy_field(b, rows[i].provider, '\t');
        copy_field(b, rows[i].scope, '\n');
    }
    /* The results (the COPY's, then the end of the query) are read by _wait. */
    if (PQputCopyData(conn, (const char *)lt_buf_data(b), (int)lt_buf_len(b)) != 1 ||
        PQputCopyEnd(conn, NULL) != 1)
        err = lt_db_result_error(db, "record issued commands", NULL, errstr, errstr_size);
    lt_buf_destroy(b);
    return err;
}

static lt_err_t record_wait(lt_db_t *db, int *duplicate, char *errstr, size_t errstr_size)
{
    lt_err_t err = LT_OK;
    PGresult *r;
    int results = 0;
    *duplicate = 0;
    while ((r = PQgetResult(lt_db_conn(db))) != NULL) {
        results++;
        if (PQresultStatus(r) != PGRES_COMMAND_OK && !err) {
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            *duplicate = state && !strcmp(state, "23505");
            err = lt_db_result_error(db, "record issued commands", r, errstr, errstr_size);
        }
        PQclear(r);
    }
    if (!results && !err)
        err = lt_db_result_error(db, "record issued commands", NULL, errstr, errstr_size);
    return err;
}

lt_err_t lt_issued_record_wait(lt_db_t *db, char *errstr, size_t errstr_size)
{
    int duplicate;
    return record_wait(db, &duplicate, errstr, errstr_size);
}

static lt_err_t record_upsert(lt_db_t *db, const lt_issued_t *rows, size_t n, char *errstr,
                              size_t errstr_size)
{
    json_object *arr = json_object_new_array_ext((int)n);
    for (size_t i = 0; i < n; i++) {
        const lt_issued_t *r = &rows[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "c", json_object_new_string(r->command_id));
        json_object_object_add(o, "t", json_object_new_string(r->tenant));
        json_object_object_add(o, "a", json_object_new_string(r->account_id));
        json_object_object_add(o, "p", json_object_new_string(r->provider));
        json_object_object_add(o, "s", r->scope ? json_object_new_string(r->scope) : NULL);
        json_object_array_add(arr, o);
    }
    const char *params[] = {json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN)};
    lt_err_t err = lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = "record issued commands", .sql = UPSERT_SQL, .nparams = 1, .params = params},
        NULL, errstr, errstr_size);
    json_object_put(arr);
    return err;
}

lt_err_t lt_issued_record(lt_db_t *db, const lt_issued_t *rows, size_t n, char *errstr,
                          size_t errstr_size)
{
    if (n == 0)
        return LT_OK;
    int duplicate = 0;
    lt_err_t err = lt_issued_record_send(db, rows, n, errstr, errstr_size);
    if (!err)
        err = record_wait(db, &duplicate, errstr, errstr_size);
    if (err && duplicate) /* a command id already recorded: keep it, add the others */
        err = record_upsert(db, rows, n, errstr, errstr_size);
    return err;
}

lt_err_t lt_issued_forget(lt_db_t *db, const char *const *command_ids, size_t n, char *errstr,
                          size_t errstr_size)
{
    if (n == 0)
        return LT_OK;
    json_object *arr = json_object_new_array_ext((int)n);
    for (size_t i = 0; i < n; i++)
        json_object_array_add(arr, json_object_new_string(command_ids[i] ? command_ids[i] : ""));
    const char *params[] = {json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN)};
    lt_err_t err =
        lt_db_exec(db,
                   &(lt_db_query_t){.what = "forget issued commands",
                                    .sql = "DELETE FROM mail_sync_issued WHERE command_id IN "
                                           "(SELECT jsonb_array_elements_text($1::jsonb))",
                                    .nparams = 1,
                                    .params = params},
                   NULL, errstr, errstr_size);
    json_object_put(arr);
    return err;
}

lt_err_t lt_issued_prune(lt_db_t *db, int stale_after_s, long long *deleted, char *errstr,
                         size_t errstr_size)
{
    char secs[16];
    PGresult *r = NULL;
    if (deleted)
        *deleted = 0;
    if (stale_after_s <= 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "stale_after_s must be > 0");
    snprintf(secs, sizeof(secs), "%d", stale_after_s);
    const char *params[] = {secs};
    lt_err_t err =
        lt_db_exec(db,
                   &(lt_db_query_t){.what = "prune issued commands",
                                    .sql = "DELETE FROM mail_sync_issued WHERE issued_at <= "
                                           "now() - make_interval(secs => $1::integer)",
                                    .nparams = 1,
                                    .params = params},
                   &r, errstr, errstr_size);
    if (err)
        return err;
    if (deleted)
        sscanf(PQcmdTuples(r), "%lld", deleted);
    PQclear(r);
    return LT_OK;
}

lt_err_t lt_issued_list_in_flight(lt_db_t *db, const lt_issued_filter_t *filter,
                                  lt_issued_account_fn fn, void *opaque, char *errstr,
                                  size_t errstr_size)
{
    int stale_after_s = filter->stale_after_s;
    const char *provider = filter->provider, *tenant = filter->tenant;
    char secs[16];
    PGresult *r = NULL;
    if (stale_after_s <= 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "stale_after_s must be > 0");
    snprintf(secs, sizeof(secs), "%d", stale_after_s);
    const char *params[] = {secs, provider, tenant};
    /* Bounded by the accounts issued within one threshold: one result. */
    lt_err_t err = lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = "list in-flight accounts",
            .sql =
                "SELECT tenant_id, account_id FROM mail_sync_commands"
                " WHERE status = 'running'"
                " AND heartbeat_at > now() - make_interval(secs => $1::integer)"
                " AND ($2::text IS NULL OR provider = $2) AND ($3::text IS NULL OR tenant_id = $3)"
                " UNION"
                " SELECT i.tenant_id, i.account_id FROM mail_sync_issued i"
                " WHERE i.issued_at > now() - make_interval(secs => $1::integer)"
                " AND ($2::text IS NULL OR i.provider = $2)"
                " AND ($3::text IS NULL OR i.tenant_id = $3)"
                " AND NOT EXISTS (SELECT 1 FROM mail_sync_commands c"
                " WHERE c.command_id = i.command_id)",
            .nparams = 3,
            .params = params},
        &r, errstr, errstr_size);
    if (err)
        return err;
    for (int i = 0; i < PQntuples(r); i++)
        if (fn(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), opaque))
            break;
    PQclear(r);
    return LT_OK;
}

static void run_key(const char *provider, const char *tenant, char out[32])
{
    const char *parts[] = {"lattice.scheduler", provider ? provider : "*", tenant ? tenant : "*"};
    snprintf(out, 32, "%lld", lt_db_lock_key(parts, 3));
}

lt_err_t lt_issued_run_trylock(lt_db_t *db, const char *provider, const char *tenant, int *locked,
                               char *errstr, size_t errstr_size)
{
    char key[32];
    PGresult *r = NULL;
    *locked = 0;
    run_key(provider, tenant, key);
    const char *params[] = {key};
    lt_err_t err = lt_db_exec(db,
                              &(lt_db_query_t){.what = "scheduler trylock",
                                               .sql = "SELECT pg_try_advisory_lock($1::bigint)",
                                               .nparams = 1,
                                               .params = params},
                              &r, errstr, errstr_size);
    if (err)
        return err;
    *locked = !strcmp(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    return LT_OK;
}

lt_err_t lt_issued_run_unlock(lt_db_t *db, const char *provider, const char *tenant, char *errstr,
                              size_t errstr_size)
{
    char key[32];
    PGresult *r = NULL;
    run_key(provider, tenant, key);
    const char *params[] = {key};
    lt_err_t err = lt_db_exec(db,
                              &(lt_db_query_t){.what = "scheduler unlock",
                                               .sql = "SELECT pg_advisory_unlock($1::bigint)",
                                               .nparams = 1,
                                               .params = params},
                              &r, errstr, errstr_size);
    if (err)
        return err;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND,
                        "the scheduler lock was not held by this session");
    PQclear(r);
    return err;
}
