#include "lt_watermark.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_accounts.h"
#include "lt_known.h"

#define LT_WATERMARK_JSON_IN_MAX 4096

static lt_err_t check_key(const char *tenant, const char *account_id, const char *scope,
                          const char *provider, char *errstr, size_t errstr_size)
{
    if (!lt_account_id_valid(tenant) || !lt_account_id_valid(account_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "tenant and account ids must be 1..128 characters of [A-Za-z0-9._:-]");
    if (!scope || !*scope)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "watermark scope is empty");
    if (!provider || (strcmp(provider, "gmail") && strcmp(provider, "imap")))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "provider must be gmail or imap");
    return LT_OK;
}

lt_err_t lt_watermark_to_json(const char *provider, const lt_watermark_t *wm,
                              char out[LT_WATERMARK_JSON_MAX], char *errstr, size_t errstr_size)
{
    if (provider && !strcmp(provider, "gmail")) {
        snprintf(out, LT_WATERMARK_JSON_MAX, "{\"historyId\": \"%" PRIu64 "\"}", wm->history_id);
        return LT_OK;
    }
    if (provider && !strcmp(provider, "imap")) {
        if (wm->uidvalidity == 0)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "imap uidvalidity must be >= 1");
        if (wm->highestmodseq > INT64_MAX || wm->flags_scanned_at < 0)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "imap highestmodseq or flags_scanned_at out of range");
        int o = snprintf(out, LT_WATERMARK_JSON_MAX,
                         "{\"uidvalidity\": %" PRIu32 ", \"last_uid\": %" PRIu32, wm->uidvalidity,
                         wm->last_uid);
        if (wm->highestmodseq)
            o += snprintf(out + o, LT_WATERMARK_JSON_MAX - (size_t)o,
                          ", \"highestmodseq\": \"%" PRIu64 "\"", wm->highestmodseq);
        if (wm->flags_scanned_at)
            o += snprintf(out + o, LT_WATERMARK_JSON_MAX - (size_t)o,
                          ", \"flags_scanned_at\": %" PRId64, wm->flags_scanned_at);
        snprintf(out + o, LT_WATERMARK_JSON_MAX - (size_t)o, "}");
        return LT_OK;
    }
    return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "provider must be gmail or imap");
}

/* A JSON integer (or an integral double) in [min, max]. */
static int get_u32(json_object *o, const char *key, uint32_t min, uint32_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return -1;
    if (json_object_is_type(v, json_type_int)) {
        errno = 0;
        int64_t x = json_object_get_int64(v);
        if (errno || x < (int64_t)min || x > (int64_t)UINT32_MAX)
            return -1;
        *out = (uint32_t)x;
        return 0;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!(d >= (double)min && d <= (double)UINT32_MAX) || d != floor(d))
            return -1;
        *out = (uint32_t)d;
        return 0;
    }
    return -1;
}

lt_err_t lt_watermark_from_json(const char *provider, const char *json, lt_watermark_t *wm,
                                char *errstr, size_t errstr_size)
{
    lt_err_t err = LT_OK;
    json_object *o = NULL;
    memset(wm, 0, sizeof(*wm));
    if (!json || strlen(json) > LT_WATERMARK_JSON_IN_MAX)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "watermark_json missing or too long");
    json_tokener *tok = json_tokener_new_ex(4);
    if (!tok) {
        fputs("lattice: out of memory (json-c)\n", stderr);
        abort();
    }
    size_t len = strlen(json);
    o = json_tokener_parse_ex(tok, json, (int)len);
    if (json_tokener_get_error(tok) != json_tokener_success || !o ||
        json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "watermark_json is not a JSON object");
        goto out;
    }
    if (provider && !strcmp(provider, "gmail")) {
        json_object *v;
        const char *s;
        if (!json_object_object_get_ex(o, "historyId", &v) ||
            !json_object_is_type(v, json_type_string) || !(s = json_object_get_string(v))) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                            "gmail watermark needs \"historyId\" as a string");
            goto out;
        }
        size_t n = strlen(s);
        int digits = n >= 1 && n <= 20;
        for (size_t i = 0; digits && i < n; i++)
            digits = s[i] >= '0' && s[i] <= '9';
        errno = 0;
        unsigned long long x = digits ? strtoull(s, NULL, 10) : 0;
        if (!digits || errno) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                            "gmail historyId must be a decimal uint64");
            goto out;
        }
        wm->history_id = (uint64_t)x;
    } else if (provider && !strcmp(provider, "imap")) {
        if (get_u32(o, "uidvalidity", 1, &wm->uidvalidity) ||
            get_u32(o, "last_uid", 0, &wm->last_uid)) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                            "imap watermark needs \"uidvalidity\" (1..2^32-1) and \"last_uid\" "
                            "(0..2^32-1) as numbers");
            goto out;
        }
        json_object *v;
        if (json_object_object_get_ex(o, "highestmodseq", &v)) {
            const char *t = json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                     : NULL;
            size_t n = t ? strlen(t) : 0;
            int digits = n >= 1 && n <= 19;
            for (size_t i = 0; digits && i < n; i++)
                digits = t[i] >= '0' && t[i] <= '9';
            errno = 0;
            unsigned long long x = digits ? strtoull(t, NULL, 10) : 0;
            if (!digits || errno || x > INT64_MAX) {
                err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                "imap highestmodseq must be a decimal string (0..2^63-1)");
                goto out;
            }
            wm->highestmodseq = (uint64_t)x;
        }
        if (json_object_object_get_ex(o, "flags_scanned_at", &v)) {
            errno = 0;
            int64_t x = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
            if (errno || x < 0) {
                err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                "imap flags_scanned_at must be a non-negative integer");
                goto out;
            }
            wm->flags_scanned_at = x;
        }
    } else {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "provider must be gmail or imap");
    }
out:
    json_object_put(o);
    json_tokener_free(tok);
    return err;
}

lt_err_t lt_watermark_get(lt_db_t *db, const lt_watermark_key_t *key, lt_watermark_t *out,
                          char *errstr, size_t errstr_size)
{
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    PGresult *r = NULL;
    lt_err_t err = check_key(tenant, account_id, scope, provider, errstr, errstr_size);
    if (err)
        return err;
    const char *params[] = {tenant, account_id, scope, provider};
    err = lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = "get watermark",
            .sql = "SELECT watermark_json::text FROM mail_watermarks WHERE tenant_id = $1 AND "
                   "account_id = $2 AND scope = $3 AND provider = $4",
            .nparams = 4,
            .params = params},
        &r, errstr, errstr_size);
    if (err)
        return err;
    if (PQntuples(r) == 0) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "no watermark yet");
        goto out;
    }
    char e[256];
    if (lt_watermark_from_json(provider, PQgetvalue(r, 0, 0), out, e, sizeof(e)))
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "stored watermark is malformed: %s", e);
out:
    PQclear(r);
    return err;
}

/* The guarded upsert shared by _set and _apply. */
static const char *k_upsert_sql =
    "INSERT INTO mail_watermarks (tenant_id, account_id, scope, provider, watermark_json) "
    "VALUES ($1, $2, $3, $4, $5::jsonb) "
    "ON CONFLICT (tenant_id, account_id, scope, provider) DO UPDATE "
    "SET watermark_json = EXCLUDED.watermark_json "
    "WHERE $6::boolean OR lt_watermark_advances(mail_watermarks.provider, "
    "mail_watermarks.watermark_json, EXCLUDED.watermark_json) "
    "RETURNING 1";

static lt_err_t upsert(lt_db_t *db, const lt_watermark_key_t *key, const char *json, int resync,
                       int *stored, char *errstr, size_t errstr_size)
{
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    PGresult *r = NULL;
    const char *params[] = {tenant, account_id, scope, provider, json, resync ? "true" : "false"};
    /* (no result wanted: in a pipelined transaction it is only sent) */
    lt_err_t err = lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = "set watermark", .sql = k_upsert_sql, .nparams = 6, .params = params},
        stored ? &r : NULL, errstr, errstr_size);
    if (err)
        return err;
    if (stored)
        *stored = PQntuples(r) == 1;
    PQclear(r);
    return LT_OK;
}

lt_err_t lt_watermark_set(lt_db_t *db, const lt_watermark_key_t *key, const lt_watermark_t *wm,
                          int resync, int *stored, char *errstr, size_t errstr_size)
{
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    char json[LT_WATERMARK_JSON_MAX];
    if (stored)
        *stored = 0;
    lt_err_t err = check_key(tenant, account_id, scope, provider, errstr, errstr_size);
    if (!err)
        err = lt_watermark_to_json(provider, wm, json, errstr, errstr_size);
    if (!err)
        err = upsert(db, key, json, resync, stored, errstr, errstr_size);
    return err;
}

static const char *home_name(lt_cursor_home_t h)
{
    return h == LT_CURSOR_COMMAND ? "command" : h == LT_CURSOR_SCOPE ? "scope" : NULL;
}

static lt_cursor_home_t home_parse(const char *s)
{
    return !strcmp(s, "command") ? LT_CURSOR_COMMAND
           : !strcmp(s, "scope") ? LT_CURSOR_SCOPE
                                 : LT_CURSOR_NONE;
}

lt_err_t lt_watermark_pending_put(lt_db_t *db, const lt_watermark_key_t *key,
                                  const lt_watermark_pending_t *p, char *errstr, size_t errstr_size)
{
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    char json[LT_WATERMARK_JSON_MAX], part[16], off[32];
    lt_err_t err = check_key(tenant, account_id, scope, provider, errstr, errstr_size);
    if (err)
        return err;
    if (!p->command_id[0] || !p->marker_topic[0] || p->marker_partition < 0 ||
        p->marker_offset < 0 || !memchr(p->command_id, 0, sizeof(p->command_id)) ||
        !memchr(p->marker_topic, 0, sizeof(p->marker_topic)) ||
        !memchr(p->cursor, 0, sizeof(p->cursor)))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "pending watermark needs a command id, a marker topic and a "
                         "non-negative partition and offset");
    if (p->no_wm && p->cursor_home == LT_CURSOR_NONE)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "pending row without a watermark needs a cursor");
    if (!p->no_wm && (err = lt_watermark_to_json(provider, &p->wm, json, errstr, errstr_size)))
        return err;
    snprintf(part, sizeof(part), "%" PRId32, p->marker_partition);
    snprintf(off, sizeof(off), "%" PRId64, p->marker_offset);
    const char *params[] = {tenant,
                            account_id,
                            scope,
                            provider,
                            p->no_wm ? NULL : json,
                            p->resync ? "true" : "false",
                            p->command_id,
                            p->marker_topic,
                            part,
                            off,
                            home_name(p->cursor_home),
                            p->cursor_home && p->cursor[0] ? p->cursor : NULL};
    return lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = "put pending watermark",
            .sql = "INSERT INTO mail_watermark_pending (tenant_id, account_id, scope, provider, "
                   "watermark_json, resync, command_id, marker_topic, marker_partition, "
                   "marker_offset, cursor_home, cursor_json) "
                   "VALUES ($1, $2, $3, $4, $5::jsonb, $6::boolean, $7, $8, $9::integer, "
                   "$10::bigint, $11, $12::jsonb) "
                   "ON CONFLICT (tenant_id, account_id, scope, provider) DO UPDATE SET "
                   "watermark_json = EXCLUDED.watermark_json, resync = EXCLUDED.resync, "
                   "command_id = EXCLUDED.command_id, marker_topic = EXCLUDED.marker_topic, "
                   "marker_partition = EXCLUDED.marker_partition, "
                   "marker_offset = EXCLUDED.marker_offset, "
                   "cursor_home = EXCLUDED.cursor_home, cursor_json = EXCLUDED.cursor_json, "
                   "created_at = now()",
            .nparams = 12,
            .params = params},
        NULL, errstr, errstr_size);
}

lt_err_t lt_watermark_cursor_set(lt_db_t *db, const lt_watermark_key_t *key, lt_cursor_home_t home,
                                 const char *command_id, const char *cursor, char *errstr,
                                 size_t errstr_size)
{
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    lt_err_t err = check_key(tenant, account_id, scope, provider, errstr, errstr_size);
    if (err)
        return err;
    if (!command_id || !*command_id || home == LT_CURSOR_NONE)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "a cursor needs a home and a command id");
    if (cursor && !*cursor)
        cursor = NULL;
    if (home == LT_CURSOR_COMMAND) {
        /* 0007 may re-key the row by (tenant, account, command id): all three match */
        const char *params[] = {tenant, account_id, scope, cursor, command_id};
        return lt_db_exec(
            db,
            &(lt_db_query_t){
                .what = "set command cursor",
                .sql = "UPDATE mail_sync_commands SET cursor_json = CASE WHEN $4::jsonb IS NULL "
                       "THEN COALESCE(cursor_json, '{}'::jsonb) - $3::text "
                       "ELSE COALESCE(cursor_json, '{}'::jsonb) || "
                       "jsonb_build_object($3::text, $4::jsonb) END "
                       "WHERE command_id = $5 AND tenant_id = $1 AND account_id = $2",
                .nparams = 5,
                .params = params},
            NULL, errstr, errstr_size);
    }
    if (!cursor) {
        const char *params[] = {tenant, account_id, scope, provider};
        return lt_db_exec(
            db,
            &(lt_db_query_t){
                .what = "delete scope cursor",
                .sql = "DELETE FROM mail_sync_cursors WHERE tenant_id = $1 AND account_id = $2 "
                       "AND scope = $3 AND provider = $4",
                .nparams = 4,
                .params = params},
            NULL, errstr, errstr_size);
    }
    const char *params[] = {tenant, account_id, scope, provider, cursor, command_id};
    return lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = "set scope cursor",
            .sql = "INSERT INTO mail_sync_cursors (tenant_id, account_id, scope, provider, "
                   "cursor_json, command_id) VALUES ($1, $2, $3, $4, $5::jsonb, $6) "
                   "ON CONFLICT (tenant_id, account_id, scope, provider) DO UPDATE SET "
                   "cursor_json = EXCLUDED.cursor_json, command_id = EXCLUDED.command_id",
            .nparams = 6,
            .params = params},
        NULL, errstr, errstr_size);
}

lt_err_t lt_watermark_cursor_get(lt_db_t *db, const lt_watermark_key_t *key, lt_cursor_home_t home,
                                 const char *command_id, char out[LT_WATERMARK_CURSOR_MAX],
                                 char *errstr, size_t errstr_size)
{
    const size_t outsz = LT_WATERMARK_CURSOR_MAX;
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    PGresult *r = NULL;
    out[0] = 0;
    lt_err_t err = check_key(tenant, account_id, scope, provider, errstr, errstr_size);
    if (err)
        return err;
    if (home == LT_CURSOR_COMMAND) {
        if (!command_id || !*command_id)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "command cursor: no command id");
        const char *params[] = {tenant, account_id, scope, command_id};
        err =
            lt_db_exec(db,
                       &(lt_db_query_t){
                           .what = "get command cursor",
                           .sql = "SELECT (cursor_json -> $3::text)::text FROM mail_sync_commands "
                                  "WHERE command_id = $4 AND tenant_id = $1 AND account_id = $2",
                           .nparams = 4,
                           .params = params},
                       &r, errstr, errstr_size);
    } else {
        const char *params[] = {tenant, account_id, scope, provider};
        err = lt_db_exec(
            db,
            &(lt_db_query_t){
                .what = "get scope cursor",
                .sql = "SELECT cursor_json::text FROM mail_sync_cursors WHERE tenant_id = $1 "
                       "AND account_id = $2 AND scope = $3 AND provider = $4",
                .nparams = 4,
                .params = params},
            &r, errstr, errstr_size);
    }
    if (err)
        return err;
    if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0))
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "no cursor");
    else if ((size_t)PQgetlength(r, 0, 0) >= outsz)
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "stored cursor is too long (%d bytes)",
                        PQgetlength(r, 0, 0));
    else
        snprintf(out, outsz, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return err;
}

#define PENDING_COLUMNS                                                                            \
    "watermark_json::text, resync, command_id, marker_topic, marker_partition, marker_offset, "    \
    "cursor_home, cursor_json::text"

static lt_err_t pending_from_row(const PGresult *r, int i, int col0, const char *provider,
                                 lt_watermark_pending_t *out, char *errstr, size_t errstr_size)
{
    char e[256];
    memset(out, 0, sizeof(*out));
    if (PQgetisnull(r, i, col0))
        out->no_wm = 1;
    else if (lt_watermark_from_json(provider, PQgetvalue(r, i, col0), &out->wm, e, sizeof(e)))
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "stored pending watermark: %s", e);
    if (!PQgetisnull(r, i, col0 + 6))
        out->cursor_home = home_parse(PQgetvalue(r, i, col0 + 6));
    if (!PQgetisnull(r, i, col0 + 7)) {
        if ((size_t)PQgetlength(r, i, col0 + 7) >= sizeof(out->cursor))
            return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "stored pending cursor too long");
        snprintf(out->cursor, sizeof(out->cursor), "%s", PQgetvalue(r, i, col0 + 7));
    }
    out->resync = !strcmp(PQgetvalue(r, i, col0 + 1), "t");
    snprintf(out->command_id, sizeof(out->command_id), "%s", PQgetvalue(r, i, col0 + 2));
    snprintf(out->marker_topic, sizeof(out->marker_topic), "%s", PQgetvalue(r, i, col0 + 3));
    out->marker_partition = (int32_t)strtol(PQgetvalue(r, i, col0 + 4), NULL, 10);
    out->marker_offset = (int64_t)strtoll(PQgetvalue(r, i, col0 + 5), NULL, 10);
    return LT_OK;
}

lt_err_t lt_watermark_pending_get(lt_db_t *db, const lt_watermark_key_t *key,
                                  lt_watermark_pending_t *out, char *errstr, size_t errstr_size)
{
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    PGresult *r = NULL;
    lt_err_t err = check_key(tenant, account_id, scope, provider, errstr, errstr_size);
    if (err)
        return err;
    const char *params[] = {tenant, account_id, scope, provider};
    err = lt_db_exec(db,
                     &(lt_db_query_t){.what = "get pending watermark",
                                      .sql = "SELECT " PENDING_COLUMNS
                                             " FROM mail_watermark_pending WHERE tenant_id = $1 "
                                             "AND account_id = $2 AND scope = $3 AND provider = $4",
                                      .nparams = 4,
                                      .params = params},
                     &r, errstr, errstr_size);
    if (err)
        return err;
    if (PQntuples(r) == 0)
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "no pending watermark");
    else
        err = pending_from_row(r, 0, 0, provider, out, errstr, errstr_size);
    PQclear(r);
    return err;
}

/* DELETE the pending row (matching `expect` if given), returning it. */
static lt_err_t pending_delete(lt_db_t *db, const char *what, const lt_watermark_key_t *key,
                               const lt_watermark_pending_t *expect, PGresult **res, char *errstr,
                               size_t errstr_size)
{
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    char part[16] = "", off[32] = "";
    if (expect) {
        snprintf(part, sizeof(part), "%" PRId32, expect->marker_partition);
        snprintf(off, sizeof(off), "%" PRId64, expect->marker_offset);
    }
    const char *params[] = {tenant,
                            account_id,
                            scope,
                            provider,
                            expect ? expect->command_id : NULL,
                            expect ? expect->marker_topic : NULL,
                            expect ? part : NULL,
                            expect ? off : NULL};
    lt_err_t err = lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = what,
            .sql =
                "DELETE FROM mail_watermark_pending WHERE tenant_id = $1 AND account_id = $2 AND "
                "scope = $3 AND provider = $4 AND ($5::text IS NULL OR (command_id = $5 AND "
                "marker_topic = $6 AND marker_partition = $7::integer "
                "AND marker_offset = $8::bigint)) "
                "RETURNING watermark_json::text, resync, cursor_home, cursor_json::text, "
                "command_id",
            .nparams = 8,
            .params = params},
        res, errstr, errstr_size);
    if (err)
        return err;
    if (PQntuples(*res) == 0) {
        PQclear(*res);
        *res = NULL;
        return lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND,
                         expect ? "no pending watermark with that command and marker"
                                : "no pending watermark");
    }
    return LT_OK;
}

lt_err_t lt_watermark_pending_apply(lt_db_t *db, const lt_watermark_key_t *key,
                                    const lt_watermark_pending_t *expect, int *stored, char *errstr,
                                    size_t errstr_size)
{
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    PGresult *r = NULL;
    int began = 0;
    if (stored)
        *stored = 0;
    lt_err_t err = check_key(tenant, account_id, scope, provider, errstr, errstr_size);
    if (err)
        return err;
    /* Pipelined: BEGIN and the delete in one round trip, the rest (what
     * needs no answer) with the COMMIT in a second one. */
    if ((err = lt_db_begin_pipelined(db, errstr, errstr_size)) != LT_OK)
        goto out;
    began = 1;
    err = pending_delete(db, "apply pending watermark", key, expect, &r, errstr, errstr_size);
    if (err)
        goto out;
    if (!PQgetisnull(r, 0, 0))
        err = upsert(db, key, PQgetvalue(r, 0, 0), !strcmp(PQgetvalue(r, 0, 1), "t"), stored,
                     errstr, errstr_size);
    if (!err && !PQgetisnull(r, 0, 2))
        err = lt_watermark_cursor_set(db, key, home_parse(PQgetvalue(r, 0, 2)), PQgetvalue(r, 0, 4),
                                      PQgetisnull(r, 0, 3) ? NULL : PQgetvalue(r, 0, 3), errstr,
                                      errstr_size);
    if (!err)
        err = lt_known_apply_staged(db, key, errstr, errstr_size);
    if (err)
        goto out;
    err = lt_db_commit(db, errstr, errstr_size);
    began = 0;
out:
    if (began)
        lt_db_rollback(db);
    if (err && stored)
        *stored = 0;
    PQclear(r);
    return err;
}

lt_err_t lt_watermark_pending_discard(lt_db_t *db, const lt_watermark_key_t *key,
                                      const lt_watermark_pending_t *expect, char *errstr,
                                      size_t errstr_size)
{
    const char *tenant = key->tenant, *account_id = key->account_id, *scope = key->scope,
               *provider = key->provider;
    PGresult *r = NULL;
    lt_err_t err = check_key(tenant, account_id, scope, provider, errstr, errstr_size);
    if (err)
        return err;
    if ((err = lt_db_begin(db, errstr, errstr_size)) != LT_OK)
        return err;
    err = pending_delete(db, "discard pending watermark", key, expect, &r, errstr, errstr_size);
    if (!err)
        err = lt_known_drop_staged(db, key, errstr, errstr_size);
    if (!err)
        err = lt_db_commit(db, errstr, errstr_size);
    else
        lt_db_rollback(db);
    PQclear(r);
    return err;
}

lt_err_t lt_watermark_pending_list(lt_db_t *db, const char *tenant, const char *account_id,
                                   lt_watermark_pending_fn fn, void *opaque, char *errstr,
                                   size_t errstr_size)
{
    PGresult *r = NULL;
    if (!lt_account_id_valid(tenant) || !lt_account_id_valid(account_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "tenant and account ids must be 1..128 characters of [A-Za-z0-9._:-]");
    const char *params[] = {tenant, account_id};
    /* One in-doubt row per scope: a handful per account, no streaming. */
    lt_err_t err =
        lt_db_exec(db,
                   &(lt_db_query_t){.what = "list pending watermarks",
                                    .sql = "SELECT scope, provider, " PENDING_COLUMNS
                                           " FROM mail_watermark_pending WHERE tenant_id = $1 AND "
                                           "account_id = $2 ORDER BY scope, provider",
                                    .nparams = 2,
                                    .params = params},
                   &r, errstr, errstr_size);
    if (err)
        return err;
    for (int i = 0; i < PQntuples(r); i++) {
        lt_watermark_pending_t p;
        err = pending_from_row(r, i, 2, PQgetvalue(r, i, 1), &p, errstr, errstr_size);
        if (err)
            break;
        if (fn(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), &p, opaque))
            break;
    }
    PQclear(r);
    return err;
}
