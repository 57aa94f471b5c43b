/* lattice-migrate: apply the numbered SQL migrations to Postgres.
 *
 *   lattice-migrate [--dir DIR]           apply what is pending
 *   lattice-migrate --status [--dir DIR]  list applied / pending / changed
 *
 * Connects with LATTICE_PG_DSN + LATTICE_PG_PASSWORD (the password goes to
 * libpq as a keyword, never printed). The engine is lib/state/lt_migrate. */
#include <stdio.h>
#include <string.h>

#include "lt_config.h"
#include "lt_db.h"
#include "lt_log.h"
#include "lt_migrate.h"

static void usage(FILE *out)
{
    fputs("usage: lattice-migrate [--dir DIR] [--status]\n"
          "  Apply the numbered migrations NNNN_name.sql of DIR to the database of\n"
          "  LATTICE_PG_DSN, each in its own transaction, recording them in\n"
          "  schema_migrations. Running it again changes nothing; an applied file that\n"
          "  was changed afterwards is refused (checksum mismatch). Concurrent runs wait\n"
          "  for each other (advisory lock).\n"
          "  --dir DIR   migrations directory (default: LATTICE_MIGRATIONS_DIR)\n"
          "  --status    list every migration as applied, pending, changed or missing;\n"
          "              apply nothing (exit 1 if any is changed)\n"
          "  --help      this text and the settings\n"
          "exit status: 0 ok, 1 failed, 2 usage\n\n",
          out);
}

typedef struct {
    int changed;
} status_ctx_t;

static void print_status(const lt_migration_info_t *m, void *opaque)
{
    status_ctx_t *c = opaque;
    if (m->state == LT_MIGRATION_CHANGED)
        c->changed++;
    printf("%04d  %-8s  %-40s  %s\n", m->version, lt_migration_state_name(m->state), m->name,
           m->applied_at ? m->applied_at : "-");
}

static void log_applied(const lt_migration_info_t *m, void *opaque)
{
    (void)opaque;
    lt_info(NULL, "applied migration %s (sha256 %.12s)", m->name, m->sha256);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int status = 0, rc = 1;
    char err[1024];
    lt_config_t *cfg = NULL;
    lt_db_t *db = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            lt_config_print_help(stdout, LT_PROG_TOOLS);
            return 0;
        } else if (!strcmp(argv[i], "--status")) {
            status = 1;
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strncmp(argv[i], "--dir=", 6)) {
            dir = argv[i] + 6;
        } else {
            fprintf(stderr, "lattice-migrate: unknown argument %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    cfg = lt_config_load(LT_PROG_TOOLS, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "lattice-migrate: %s\n", err);
        return 1;
    }
    const lt_settings_t *set = lt_config_settings(cfg);
    if (lt_log_setup("lattice-migrate", set->log.level, set->log.format, err, sizeof(err))) {
        fprintf(stderr, "lattice-migrate: %s\n", err);
        goto out;
    }
    if (!dir)
        dir = set->pg.migrations_dir;

    db = lt_db_connect(set->pg.dsn, set->pg.password, err, sizeof(err));
    if (!db) {
        lt_error(NULL, "%s", err);
        goto out;
    }
    if (status) {
        status_ctx_t c = {0};
        lt_err_t e = lt_migrate_status(db, dir, print_status, &c, err, sizeof(err));
        if (e) {
            lt_error(NULL, "migration status: %s", err);
            goto out;
        }
        rc = c.changed ? 1 : 0;
        goto out;
    }
    int applied = 0;
    lt_err_t e = lt_migrate_apply(db, dir, log_applied, NULL, &applied, err, sizeof(err));
    if (e) {
        lt_error(NULL, "migrations failed after %d applied: %s", applied, err);
        goto out;
    }
    lt_info(NULL, "migrations up to date (%d applied now) from %s", applied, dir);
    rc = 0;
out:
    lt_db_destroy(db);
    lt_config_destroy(cfg);
    return rc;
}
