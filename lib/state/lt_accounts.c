#include "lt_accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lt_buf.h"

#define LT_ACCOUNT_ID_MAX 128
#define LT_ACCOUNT_REASON_MAX 1000
#define LT_ACCOUNT_CONFIG_MAX (256 * 1024)
#define LT_ACCOUNT_CONFIG_DEPTH 16

struct lt_account_s {
    long long row_id;
    char *tenant;
    char *id;
    char *provider;
    int enabled;
    json_object *config;
    char *classification;
    char *status;
    char *status_reason;
};

#define ACCOUNT_COLUMNS                                                                            \
    "id, tenant_id, account_id, provider, enabled, config_json::text, data_classification, "       \
    "status, status_reason"

static const char *const k_secret_keys[] = {
    "password",      "passwd", "token",   "access_token", "refresh_token",
    "client_secret", "secret", "api_key", "private_key",  NULL,
};

int lt_account_id_valid(const char *s)
{
    if (!s)
        return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= LT_ACCOUNT_ID_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return n > 0;
}

static lt_err_t check_ids(const char *tenant, const char *account_id, char *errstr,
                          size_t errstr_size)
{
    if (!lt_account_id_valid(tenant))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "tenant id must be 1..128 characters of [A-Za-z0-9._:-]");
    if (!lt_account_id_valid(account_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "account id must be 1..128 characters of [A-Za-z0-9._:-]");
    return LT_OK;
}

static lt_err_t check_secrets(json_object *o, int depth, char *errstr, size_t errstr_size)
{
    if (depth > LT_ACCOUNT_CONFIG_DEPTH)
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "config_json is nested too deeply");
    if (json_object_is_type(o, json_type_array)) {
        size_t n = json_object_array_length(o);
        for (size_t i = 0; i < n; i++) {
            lt_err_t err =
                check_secrets(json_object_array_get_idx(o, i), depth + 1, errstr, errstr_size);
            if (err)
                return err;
        }
        return LT_OK;
    }
    if (!json_object_is_type(o, json_type_object))
        return LT_OK;
    json_object_object_foreach(o, key, val)
    {
        for (size_t i = 0; k_secret_keys[i]; i++) {
            if (!strcasecmp(key, k_secret_keys[i]) && json_object_is_type(val, json_type_string) &&
                json_object_get_string_len(val) > 0)
                return lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                                 "config_json holds a secret value under \"%s\": store a "
                                 "reference instead (\"%s_env\" or \"%s_file\")",
                                 key, key, key);
        }
        lt_err_t err = check_secrets(val, depth + 1, errstr, errstr_size);
        if (err)
            return err;
    }
    return LT_OK;
}

lt_err_t lt_account_config_check(json_object *config, char *errstr, size_t errstr_size)
{
    if (!config || !json_object_is_type(config, json_type_object))
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "config_json is not a JSON object");
    return check_secrets(config, 0, errstr, errstr_size);
}

static json_object *parse_json(const char *text, char *errstr, size_t errstr_size)
{
    if (strlen(text) > LT_ACCOUNT_CONFIG_MAX) {
        lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "config_json is larger than %d bytes",
                  LT_ACCOUNT_CONFIG_MAX);
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(LT_ACCOUNT_CONFIG_DEPTH + 1);
    if (!tok) {
        fputs("lattice: out of memory (json-c)\n", stderr);
        abort();
    }
    json_object *o = json_tokener_parse_ex(tok, text, (int)strlen(text));
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (jerr != json_tokener_success || !o || json_tokener_get_parse_end(tok) != strlen(text)) {
        lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "config_json is not valid JSON: %s",
                  json_tokener_error_desc(jerr));
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

/* Build an account from row i of r. The config is parsed; an unparsable
 * config becomes NULL (checked by the caller). */
static lt_account_t *from_row(const PGresult *r, int i, char *errstr, size_t errstr_size)
{
    lt_account_t *a = lt_xcalloc(1, sizeof(*a));
    a->row_id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    a->tenant = lt_xstrdup(PQgetvalue(r, i, 1));
    a->id = lt_xstrdup(PQgetvalue(r, i, 2));
    a->provider = lt_xstrdup(PQgetvalue(r, i, 3));
    a->enabled = !strcmp(PQgetvalue(r, i, 4), "t");
    a->config = parse_json(PQgetvalue(r, i, 5), errstr, errstr_size);
    a->classification = lt_xstrdup(PQgetvalue(r, i, 6));
    a->status = lt_xstrdup(PQgetvalue(r, i, 7));
    a->status_reason = PQgetisnull(r, i, 8) ? NULL : lt_xstrdup(PQgetvalue(r, i, 8));
    return a;
}

void lt_account_destroy(lt_account_t *a)
{
    if (!a)
        return;
    free(a->tenant);
    free(a->id);
    free(a->provider);
    json_object_put(a->config);
    free(a->classification);
    free(a->status);
    free(a->status_reason);
    free(a);
}

lt_err_t lt_account_load(lt_db_t *db, const char *tenant, const char *account_id,
                         lt_account_t **out, char *errstr, size_t errstr_size)
{
    PGresult *r = NULL;
    lt_account_t *a = NULL;
    *out = NULL;
    lt_err_t err = check_ids(tenant, account_id, errstr, errstr_size);
    if (err)
        return err;
    const char *params[] = {tenant, account_id};
    err = lt_db_exec(
        db,
        &(lt_db_query_t){.what = "load account",
                         .sql = "SELECT " ACCOUNT_COLUMNS
                                " FROM mail_accounts WHERE tenant_id = $1 AND account_id = $2",
                         .nparams = 2,
                         .params = params},
        &r, errstr, errstr_size);
    if (err)
        goto out;
    if (PQntuples(r) == 0) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "account %s/%s does not exist",
                        tenant, account_id);
        goto out;
    }
    char jerr[256] = "";
    a = from_row(r, 0, jerr, sizeof(jerr));
    if (!a->enabled) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "account %s/%s is disabled", tenant,
                        account_id);
        goto out;
    }
    if (!a->config) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "account %s/%s: %s", tenant, account_id,
                        jerr);
        goto out;
    }
    if ((err = lt_account_config_check(a->config, jerr, sizeof(jerr))) != LT_OK) {
        lt_seterr(errstr, errstr_size, err, "account %s/%s: %s", tenant, account_id, jerr);
        goto out;
    }
    *out = a;
    a = NULL;
out:
    lt_account_destroy(a);
    PQclear(r);
    return err;
}

long long lt_account_row_id(const lt_account_t *a)
{
    return a->row_id;
}
const char *lt_account_tenant(const lt_account_t *a)
{
    return a->tenant;
}
const char *lt_account_id(const lt_account_t *a)
{
    return a->id;
}
const char *lt_account_provider(const lt_account_t *a)
{
    return a->provider;
}
int lt_account_enabled(const lt_account_t *a)
{
    return a->enabled;
}
json_object *lt_account_config(const lt_account_t *a)
{
    return a->config;
}
const char *lt_account_classification(const lt_account_t *a)
{
    return a->classification;
}
const char *lt_account_status(const lt_account_t *a)
{
    return a->status;
}
const char *lt_account_status_reason(const lt_account_t *a)
{
    return a->status_reason;
}

lt_err_t lt_account_set_status(lt_db_t *db, const char *tenant, const char *account_id,
                               const char *status, const char *reason, char *errstr,
                               size_t errstr_size)
{
    lt_err_t err = check_ids(tenant, account_id, errstr, errstr_size);
    if (err)
        return err;
    if (!status ||
        (strcmp(status, "active") && strcmp(status, "needs_reauth") && strcmp(status, "flagged")))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "account status must be active, needs_reauth or flagged");
    char capped[LT_ACCOUNT_REASON_MAX + 1];
    if (reason)
        lt_db_cap_utf8(capped, sizeof(capped), reason);
    const char *params[] = {tenant, account_id, status, reason ? capped : NULL};
    PGresult *r = NULL;
    err = lt_db_exec(
        db,
        &(lt_db_query_t){.what = "set account status",
                         .sql = "UPDATE mail_accounts SET status = $3, status_reason = $4 "
                                "WHERE tenant_id = $1 AND account_id = $2",
                         .nparams = 4,
                         .params = params},
        &r, errstr, errstr_size);
    if (err)
        return err;
    if (strcmp(PQcmdTuples(r), "1") != 0)
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "account %s/%s does not exist",
                        tenant, account_id);
    PQclear(r);
    return err;
}

lt_err_t lt_accounts_list_enabled(lt_db_t *db, const char *provider, const char *tenant,
                                  lt_account_fn fn, void *opaque, char *errstr, size_t errstr_size)
{
    PGconn *conn = lt_db_conn(db);
    lt_err_t err = LT_OK;
    int stopped = 0;
    const char *params[] = {provider, tenant};

    if (!lt_db_ok(db))
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                         "list accounts: connection is broken");
    /* provider/tenant NULL: `$n IS NULL OR` keeps one plan shape; with a
     * provider the partial index (provider, tenant_id, account_id) WHERE
     * enabled gives the order. */
    if (!PQsendQueryParams(conn,
                           "SELECT " ACCOUNT_COLUMNS " FROM mail_accounts"
                           " WHERE enabled AND ($1::text IS NULL OR provider = $1)"
                           " AND ($2::text IS NULL OR tenant_id = $2)"
                           " ORDER BY provider, tenant_id, account_id",
                           2, NULL, params, NULL, NULL, 0))
        return lt_db_result_error(db, "list accounts", NULL, errstr, errstr_size);
    if (!PQsetSingleRowMode(conn)) {
        err =
            lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "list accounts: single-row mode refused");
        /* fall through to drain */
    }
    PGresult *r;
    while ((r = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !err && !stopped) {
            char jerr[8] = "";
            lt_account_t *a = from_row(r, 0, jerr, sizeof(jerr));
            if (!a->config)
                a->config = json_object_new_object(); /* listed; the worker refuses it */
            if (fn(a, opaque)) {
                stopped = 1;
                /* Stop the server sending the rest; drain what is in flight. */
                PGcancel *c = PQgetCancel(conn);
                if (c) {
                    char cerr[256];
                    PQcancel(c, cerr, sizeof(cerr));
                    PQfreeCancel(c);
                }
            }
            lt_account_destroy(a);
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && !err && !stopped) {
            err = lt_db_result_error(db, "list accounts", r, errstr, errstr_size);
        }
        PQclear(r);
    }
    return err;
}

lt_err_t lt_account_upsert(lt_db_t *db, const lt_account_row_t *row, char *errstr,
                           size_t errstr_size)
{
    const char *tenant = row->tenant, *account_id = row->account_id, *provider = row->provider;
    const char *config_json = row->config_json, *classification = row->classification;
    int enabled = row->enabled;
    lt_err_t err = check_ids(tenant, account_id, errstr, errstr_size);
    if (err)
        return err;
    if (!provider || (strcmp(provider, "gmail") && strcmp(provider, "imap")))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "provider must be gmail or imap");
    const char *cfg = config_json ? config_json : "{}";
    json_object *o = parse_json(cfg, errstr, errstr_size);
    if (!o)
        return LT_ERR_INVALID;
    char cerr[256];
    err = lt_account_config_check(o, cerr, sizeof(cerr));
    json_object_put(o);
    if (err)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s", cerr);
    const char *params[] = {tenant,   account_id,
                            provider, enabled ? "true" : "false",
                            cfg,      classification ? classification : "confidential"};
    return lt_db_exec(
        db,
        &(lt_db_query_t){.what = "upsert account",
                         .sql =
                             "INSERT INTO mail_accounts (tenant_id, account_id, provider, enabled, "
                             "config_json, data_classification) VALUES ($1, $2, $3, $4::boolean, "
                             "$5::jsonb, $6) ON CONFLICT (tenant_id, account_id) DO UPDATE SET "
                             "provider = EXCLUDED.provider, enabled = EXCLUDED.enabled, "
                             "config_json = EXCLUDED.config_json, "
                             "data_classification = EXCLUDED.data_classification",
                         .nparams = 6,
                         .params = params},
        NULL, errstr, errstr_size);
}

lt_err_t lt_account_delete(lt_db_t *db, const char *tenant, const char *account_id, char *errstr,
                           size_t errstr_size)
{
    lt_err_t err = check_ids(tenant, account_id, errstr, errstr_size);
    if (err)
        return err;
    const char *params[] = {tenant, account_id};
    PGresult *r = NULL;
    err =
        lt_db_exec(db,
                   &(lt_db_query_t){
                       .what = "delete account",
                       .sql = "DELETE FROM mail_accounts WHERE tenant_id = $1 AND account_id = $2",
                       .nparams = 2,
                       .params = params},
                   &r, errstr, errstr_size);
    if (err)
        return err;
    if (strcmp(PQcmdTuples(r), "1") != 0)
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "account %s/%s does not exist",
                        tenant, account_id);
    PQclear(r);
    return err;
}
