/* lt_accounts: the mail_accounts table (account configuration).
 *
 * config_json holds provider details and REFERENCES to secrets (names of
 * environment variables or files, keys ending in _env / _file), never the
 * secrets: a config with an inline secret key ("password", "token",
 * "access_token", "refresh_token", "client_secret", "secret", "api_key")
 * is refused on load and on upsert. */
#ifndef LT_ACCOUNTS_H
#define LT_ACCOUNTS_H

#include <stddef.h>

#include <json-c/json.h>

#include "lt_db.h"
#include "lt_err.h"

typedef struct lt_account_s lt_account_t;

/* Load one account. *out receives a new account (lt_account_destroy()).
 *   LT_ERR_NOT_FOUND  no such tenant/account
 *   LT_ERR_FINAL      disabled, or config_json unusable (reason in errstr;
 *                     the caller dead-letters the command); *out is NULL
 *   LT_ERR_INVALID    tenant/account id not of [A-Za-z0-9._:-]{1,128}
 *   LT_ERR_TEMPORARY  database unavailable */
lt_err_t lt_account_load(lt_db_t *db, const char *tenant, const char *account_id,
                         lt_account_t **out, char *errstr, size_t errstr_size);
void lt_account_destroy(lt_account_t *a);

/* Getters; strings and the config object are owned by the account. */
long long lt_account_row_id(const lt_account_t *a);
const char *lt_account_tenant(const lt_account_t *a);
const char *lt_account_id(const lt_account_t *a);
const char *lt_account_provider(const lt_account_t *a); /* "gmail" | "imap" */
int lt_account_enabled(const lt_account_t *a);
json_object *lt_account_config(const lt_account_t *a); /* a JSON object; borrowed */
const char *lt_account_classification(const lt_account_t *a);
const char *lt_account_status(const lt_account_t *a);        /* active|needs_reauth|flagged */
const char *lt_account_status_reason(const lt_account_t *a); /* NULL when none */

/* 1 when s is a valid tenant or account id ([A-Za-z0-9._:-], 1..128). */
int lt_account_id_valid(const char *s);

/* Check a config object: must be an object without inline secrets. */
lt_err_t lt_account_config_check(json_object *config, char *errstr, size_t errstr_size);

/* Set status ("active", "needs_reauth", "flagged") and its reason (NULL to
 * clear; capped at 1000 bytes; must not contain secrets). NOT_FOUND if no
 * such account. */
lt_err_t lt_account_set_status(lt_db_t *db, const char *tenant, const char *account_id,
                               const char *status, const char *reason, char *errstr,
                               size_t errstr_size);

/* Stream the enabled accounts (provider and/or tenant filter: NULL = all),
 * ordered by provider, tenant, account id, in single-row mode (constant
 * memory for any number of accounts). fn gets each account, borrowed for
 * the call only; fn must not use db. fn returns 0 to go on, non-zero to
 * stop early (then the list returns LT_OK). Accounts whose config fails
 * lt_account_config_check() are still listed (the worker refuses them). */
typedef int (*lt_account_fn)(const lt_account_t *a, void *opaque);
lt_err_t lt_accounts_list_enabled(lt_db_t *db, const char *provider, const char *tenant,
                                  lt_account_fn fn, void *opaque, char *errstr, size_t errstr_size);

/* An account row to write. A plain value carrier; strings borrowed. */
typedef struct {
    const char *tenant;
    const char *account_id;
    const char *provider; /* "gmail" or "imap" */
    int enabled;
    const char *config_json;    /* a JSON object as text; NULL: "{}" */
    const char *classification; /* NULL: "confidential" */
} lt_account_row_t;

/* Insert or update an account (for seeding and tests). Status is left as
 * is on update (new accounts are "active"). */
lt_err_t lt_account_upsert(lt_db_t *db, const lt_account_row_t *row, char *errstr,
                           size_t errstr_size);

/* Delete an account (its watermarks and pending rows go with it).
 * NOT_FOUND if none. */
lt_err_t lt_account_delete(lt_db_t *db, const char *tenant, const char *account_id, char *errstr,
                           size_t errstr_size);

#endif
