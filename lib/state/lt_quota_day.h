/* lt_quota_day: Gmail quota units per Google Cloud project and UTC day, in
 * Postgres (migrations/0015). The day is the database's (UTC), so every
 * worker of a pool counts into the same row. */
#ifndef LT_QUOTA_DAY_H
#define LT_QUOTA_DAY_H

#include <stddef.h>
#include <stdint.h>

#include "lt_db.h"
#include "lt_err.h"

/* Add `units` (>= 0) to today's row of `project`; *total: today's sum after
 * it (may be NULL). */
lt_err_t lt_quota_day_add(lt_db_t *db, const char *project, int64_t units, int64_t *total,
                          char *errstr, size_t errstr_size);
/* Today's sum of `project` (0 when none); *seconds_left: seconds until the
 * next UTC day (may be NULL). */
lt_err_t lt_quota_day_get(lt_db_t *db, const char *project, int64_t *total, int64_t *seconds_left,
                          char *errstr, size_t errstr_size);

#endif
