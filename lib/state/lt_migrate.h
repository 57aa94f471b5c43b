/* lt_migrate: the schema migration engine (used by tools/lattice-migrate and
 * the tests).
 *
 * Migrations are plain SQL files NNNN_name.sql (NNNN: a decimal version,
 * name: [A-Za-z0-9_-]) in one directory, applied in version order, each in
 * its own transaction, and recorded in
 *   schema_migrations(version int primary key, name text, sha256 text,
 *                     applied_at timestamptz)
 * (created on first use, in the first schema of search_path). A file must
 * not contain BEGIN/COMMIT. Applying is idempotent: already-applied versions
 * are skipped after their sha256 is checked; a changed applied file, or a
 * new file numbered below an applied one, refuses the whole run (LT_ERR_FINAL)
 * before anything is applied. Concurrent runs are serialised by a session
 * advisory lock, so the second finds nothing to do.
 *
 * A file's SQL is sent as one simple query (it is read from the directory,
 * never built from input). */
#ifndef LT_MIGRATE_H
#define LT_MIGRATE_H

#include <stddef.h>

#include "lt_db.h"
#include "lt_err.h"

typedef enum {
    LT_MIGRATION_PENDING, /* in the directory, not applied */
    LT_MIGRATION_APPLIED, /* applied, file unchanged */
    LT_MIGRATION_CHANGED, /* applied, but the file's sha256 differs */
    LT_MIGRATION_MISSING, /* applied, but no such file in the directory */
} lt_migration_state_t;

/* A plain value carrier; its strings are borrowed for the callback only. */
typedef struct {
    int version;
    const char *name; /* file name, e.g. "0001_mail_accounts.sql" */
    lt_migration_state_t state;
    const char *sha256;     /* hex of the file (or, if MISSING, as recorded) */
    const char *applied_at; /* server's text form, NULL when not applied */
} lt_migration_info_t;

typedef void (*lt_migration_fn)(const lt_migration_info_t *m, void *opaque);

/* Name of a state: "pending", "applied", "changed", "missing". */
const char *lt_migration_state_name(lt_migration_state_t st);

/* Apply every pending migration of `dir`. `on_applied` (may be NULL) is
 * called after each one committed. *applied (may be NULL) receives how many
 * were applied (also on failure: those before the failing one stay). */
lt_err_t lt_migrate_apply(lt_db_t *db, const char *dir, lt_migration_fn on_applied, void *opaque,
                          int *applied, char *errstr, size_t errstr_size);

/* Report every migration (directory and database, version order) to fn;
 * changes nothing. */
lt_err_t lt_migrate_status(lt_db_t *db, const char *dir, lt_migration_fn fn, void *opaque,
                           char *errstr, size_t errstr_size);

#endif
