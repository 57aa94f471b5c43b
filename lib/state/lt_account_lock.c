#include "lt_account_lock.h"

#include <stdio.h>
#include <string.h>

#include "lt_accounts.h"

long long lt_account_lock_key(const char *tenant, const char *account_id)
{
    const char *parts[] = {"lattice.account", tenant, account_id};
    return lt_db_lock_key(parts, 3);
}

static void key_text(const char *tenant, const char *account_id, char out[32])
{
    snprintf(out, 32, "%lld", lt_account_lock_key(tenant, account_id));
}

lt_err_t lt_account_lock(lt_db_t *db, const char *tenant, const char *account_id, char *errstr,
                         size_t errstr_size)
{
    char key[32];
    if (!lt_account_id_valid(tenant) || !lt_account_id_valid(account_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad tenant or account id");
    key_text(tenant, account_id, key);
    const char *params[] = {key};
    return lt_db_exec(db,
                      &(lt_db_query_t){.what = "account lock",
                                       .sql = "SELECT pg_advisory_lock($1::bigint)",
                                       .nparams = 1,
                                       .params = params},
                      NULL, errstr, errstr_size);
}

lt_err_t lt_account_lock_timeout(lt_db_t *db, const char *tenant, const char *account_id,
                                 int timeout_ms, char *errstr, size_t errstr_size)
{
    char key[32], ms[32];
    if (!lt_account_id_valid(tenant) || !lt_account_id_valid(account_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad tenant or account id");
    if (timeout_ms <= 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "lock timeout must be > 0 ms");
    if (PQtransactionStatus(lt_db_conn(db)) != PQTRANS_IDLE)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "account lock with timeout: not inside a transaction");
    key_text(tenant, account_id, key);
    snprintf(ms, sizeof(ms), "%d", timeout_ms);
    /* lock_timeout bounds the wait; SET LOCAL ends with the transaction
     * while the session-level lock stays. */
    lt_err_t err = lt_db_begin(db, errstr, errstr_size);
    if (err)
        return err;
    const char *p1[] = {ms};
    err = lt_db_exec(db,
                     &(lt_db_query_t){.what = "account lock",
                                      .sql = "SELECT set_config('lock_timeout', $1, true)",
                                      .nparams = 1,
                                      .params = p1},
                     NULL, errstr, errstr_size);
    const char *p2[] = {key};
    if (!err)
        err = lt_db_exec(db,
                         &(lt_db_query_t){.what = "account lock",
                                          .sql = "SELECT pg_advisory_lock($1::bigint)",
                                          .nparams = 1,
                                          .params = p2},
                         NULL, errstr, errstr_size);
    if (!err)
        return lt_db_commit(db, errstr, errstr_size);
    lt_db_rollback(db);
    if (err == LT_ERR_TEMPORARY && lt_db_ok(db))
        lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                  "account %s/%s is locked by another session (waited %d ms)", tenant, account_id,
                  timeout_ms);
    return err;
}

lt_err_t lt_account_trylock(lt_db_t *db, const char *tenant, const char *account_id, int *locked,
                            char *errstr, size_t errstr_size)
{
    char key[32];
    PGresult *r = NULL;
    *locked = 0;
    if (!lt_account_id_valid(tenant) || !lt_account_id_valid(account_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad tenant or account id");
    key_text(tenant, account_id, key);
    const char *params[] = {key};
    lt_err_t err = lt_db_exec(db,
                              &(lt_db_query_t){.what = "account trylock",
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

lt_err_t lt_account_unlock(lt_db_t *db, const char *tenant, const char *account_id, char *errstr,
                           size_t errstr_size)
{
    char key[32];
    PGresult *r = NULL;
    if (!lt_account_id_valid(tenant) || !lt_account_id_valid(account_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad tenant or account id");
    key_text(tenant, account_id, key);
    const char *params[] = {key};
    lt_err_t err = lt_db_exec(db,
                              &(lt_db_query_t){.what = "account unlock",
                                               .sql = "SELECT pg_advisory_unlock($1::bigint)",
                                               .nparams = 1,
                                               .params = params},
                              &r, errstr, errstr_size);
    if (err)
        return err;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND,
                        "account %s/%s was not locked by this session", tenant, account_id);
    PQclear(r);
    return err;
}
