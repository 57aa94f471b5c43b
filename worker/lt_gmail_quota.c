#include "lt_gmail_quota.h"

#include "lt_secret.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

double lt_gmail_quota_user_default(const lt_settings_t *set)
{
    if (set->gmail.quota_units_per_s > 0)
        return (double)set->gmail.quota_units_per_s * 60.0;
    return (double)set->gmail.user_units_per_min;
}

static lt_err_t limit(json_object *cfg, const char *key, double *out, char *errstr, size_t n)
{
    json_object *v;
    if (!json_object_object_get_ex(cfg, key, &v))
        return LT_OK;
    if ((!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) ||
        json_object_get_double(v) < 0 || json_object_get_double(v) > 1e12)
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: \"%s\" must be a number of units per minute (>= 0)", key);
    *out = json_object_get_double(v);
    return LT_OK;
}

lt_err_t lt_gmail_quota_of(const lt_account_t *a, const lt_settings_t *set, const char *secrets_dir,
                           lt_gmail_quota_t *out, char *errstr, size_t errstr_size)
{
    json_object *cfg = lt_account_config(a), *v;
    memset(out, 0, sizeof(*out));
    out->user_units_per_min = lt_gmail_quota_user_default(set);
    out->project_units_per_min = (double)set->gmail.project_units_per_min;
    lt_err_t err;
    if ((err = limit(cfg, "quota_user_units_per_min", &out->user_units_per_min, errstr,
                     errstr_size)) ||
        (err = limit(cfg, "quota_project_units_per_min", &out->project_units_per_min, errstr,
                     errstr_size)))
        return err;
    if (json_object_object_get_ex(cfg, "quota_project", &v)) {
        if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v) ||
            json_object_get_string_len(v) > LT_GMAIL_PROJECT_MAX)
            return lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                             "account config: \"quota_project\" must be a non-empty string of "
                             "at most %d bytes",
                             LT_GMAIL_PROJECT_MAX);
        snprintf(out->project, sizeof(out->project), "%s", json_object_get_string(v));
        return LT_OK;
    }
    /* an OAuth client belongs to one project: by default the client id names it */
    if (json_object_object_get_ex(cfg, "client_id", &v) &&
        json_object_is_type(v, json_type_string)) {
        snprintf(out->project, sizeof(out->project), "%s", json_object_get_string(v));
        return LT_OK;
    }
    lt_secret_ns_t ns = {lt_account_tenant(a), secrets_dir};
    char id[LT_GMAIL_PROJECT_MAX + 1];
    if (lt_secret_resolve(&ns, cfg, "client_id", id, sizeof(id), errstr, errstr_size) == LT_OK)
        snprintf(out->project, sizeof(out->project), "%s", id);
    else /* the connector reports a bad reference with its own words */
        errstr[0] = 0;
    return LT_OK;
}
