#include "lt_quota_day.h"

#include <stdio.h>
#include <stdlib.h>

#define TODAY "(now() AT TIME ZONE 'UTC')::date"

lt_err_t lt_quota_day_add(lt_db_t *db, const char *project, int64_t units, int64_t *total,
                          char *errstr, size_t errstr_size)
{
    char n[32];
    snprintf(n, sizeof(n), "%lld", (long long)(units > 0 ? units : 0));
    const char *params[] = {project, n};
    PGresult *r = NULL;
    lt_err_t err = lt_db_exec(
        db,
        &(lt_db_query_t){.what = "count gmail project units",
                         .sql = "INSERT INTO gmail_project_units AS g (project, day, units)"
                                " VALUES ($1, " TODAY ", $2::bigint)"
                                " ON CONFLICT (project, day) DO UPDATE"
                                " SET units = g.units + EXCLUDED.units, updated_at = now()"
                                " RETURNING units",
                         .nparams = 2,
                         .params = params},
        &r, errstr, errstr_size);
    if (err)
        return err;
    if (total)
        *total = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return LT_OK;
}

lt_err_t lt_quota_day_get(lt_db_t *db, const char *project, int64_t *total, int64_t *seconds_left,
                          char *errstr, size_t errstr_size)
{
    const char *params[] = {project};
    PGresult *r = NULL;
    lt_err_t err =
        lt_db_exec(db,
                   &(lt_db_query_t){.what = "read gmail project units",
                                    .sql = "SELECT coalesce((SELECT units FROM gmail_project_units"
                                           " WHERE project = $1 AND day = " TODAY "), 0),"
                                           " ceil(extract(epoch FROM ((" TODAY " + 1)::timestamp"
                                           " - (now() AT TIME ZONE 'UTC'))))::bigint",
                                    .nparams = 1,
                                    .params = params},
                   &r, errstr, errstr_size);
    if (err)
        return err;
    if (total)
        *total = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    if (seconds_left)
        *seconds_left = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    return LT_OK;
}
