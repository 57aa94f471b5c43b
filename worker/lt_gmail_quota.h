/* lt_gmail_quota: the Gmail quotas one account's commands count against.
 *
 * From the settings (LATTICE_GMAIL_USER_UNITS_PER_MIN,
 * LATTICE_GMAIL_PROJECT_UNITS_PER_MIN, the deprecated
 * LATTICE_GMAIL_QUOTA_UNITS_PER_S), overridden by the account's config_json
 * (docs/gmail.md):
 *   "quota_project": "my-gcp-project",        (default: the OAuth client id)
 *   "quota_user_units_per_min": 15000,        (an older project's limit)
 *   "quota_project_units_per_min": 1200000
 * The project name keys the pacer's project bucket and the daily count. */
#ifndef LT_GMAIL_QUOTA_H
#define LT_GMAIL_QUOTA_H

#include <stddef.h>

#include "lt_accounts.h"
#include "lt_err.h"
#include "lt_settings.h"

#define LT_GMAIL_PROJECT_MAX 255

typedef struct {
    char project[LT_GMAIL_PROJECT_MAX + 1];
    double user_units_per_min;
    double project_units_per_min;
} lt_gmail_quota_t;

/* The user limit of the settings: LATTICE_GMAIL_QUOTA_UNITS_PER_S x 60 when
 * that deprecated variable is set, else LATTICE_GMAIL_USER_UNITS_PER_MIN. */
double lt_gmail_quota_user_default(const lt_settings_t *set);

/* LT_ERR_FINAL on a bad key value (dead configuration). secrets_dir: to
 * resolve a client id given by reference (the default project name). */
lt_err_t lt_gmail_quota_of(const lt_account_t *a, const lt_settings_t *set, const char *secrets_dir,
                           lt_gmail_quota_t *out, char *errstr, size_t errstr_size);

#endif
