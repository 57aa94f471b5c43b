/* lt_account_lock: per-account serialisation. One worker at a time syncs
 * an account (and writes its watermarks), whichever worker the command
 * reaches: docs/data-model.md, "Per-account serialisation". */
#ifndef LT_ACCOUNT_LOCK_H
#define LT_ACCOUNT_LOCK_H

#include <stddef.h>

#include "lt_db.h"
#include "lt_err.h"

/* Per-account serialisation: a session-level pg_advisory_lock on a 64-bit
 * hash of ("lattice.account", tenant, account_id). Held until unlocked or
 * the connection ends (a crashed worker releases it). Re-entrant per
 * connection: lock twice, unlock twice. */
long long lt_account_lock_key(const char *tenant, const char *account_id);
/* Wait until locked. */
lt_err_t lt_account_lock(lt_db_t *db, const char *tenant, const char *account_id, char *errstr,
                         size_t errstr_size);
/* Wait at most timeout_ms; LT_ERR_TEMPORARY when another session holds it. */
lt_err_t lt_account_lock_timeout(lt_db_t *db, const char *tenant, const char *account_id,
                                 int timeout_ms, char *errstr, size_t errstr_size);
/* Do not wait: *locked = 1 when acquired, 0 when another session holds it. */
lt_err_t lt_account_trylock(lt_db_t *db, const char *tenant, const char *account_id, int *locked,
                            char *errstr, size_t errstr_size);
/* LT_ERR_NOT_FOUND when this connection did not hold it. */
lt_err_t lt_account_unlock(lt_db_t *db, const char *tenant, const char *account_id, char *errstr,
                           size_t errstr_size);

#endif
