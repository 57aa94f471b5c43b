#include "lt_test_db.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "lt_test.h"

int lt_scratch_create(lt_scratch_t *s, const char *tag)
{
    char err[512];
    memset(s, 0, sizeof(*s));
    s->dsn = lt_test_env("LATTICE_PG_DSN");
    s->password = lt_test_env("LATTICE_PG_PASSWORD");
    /* pid and time: a recycled pid must not meet a crashed run's leftover */
    snprintf(s->name, sizeof(s->name), "lattice_test_%ld_%ld_%s", (long)getpid(), (long)time(NULL),
             tag);
    s->admin = lt_db_connect(s->dsn, s->password, err, sizeof(err));
    if (!s->admin) {
        fprintf(stderr, "cannot connect to Postgres: %s\n", err);
        return -1;
    }
    PGconn *c = lt_db_conn(s->admin);
    char *ident = PQescapeIdentifier(c, s->name, strlen(s->name));
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", ident);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        s->is_db = 1;
    } else {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (!st || strcmp(st, "42501") != 0) {
            fprintf(stderr, "CREATE DATABASE failed: %s", PQresultErrorMessage(r));
            PQclear(r);
            PQfreemem(ident);
            return -1;
        }
        PQclear(r);
        snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", ident);
        r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "CREATE SCHEMA failed: %s", PQresultErrorMessage(r));
            PQclear(r);
            PQfreemem(ident);
            return -1;
        }
    }
    PQclear(r);
    PQfreemem(ident);
    printf("scratch %s: %s\n", s->is_db ? "database" : "schema", s->name);
    return 0;
}

/* The libpq keyword that points a connection at the scratch. */
void lt_scratch_kw(const lt_scratch_t *s, const char **kw, const char **val, char *opt, size_t optn)
{
    if (s->is_db) {
        kw[0] = "dbname";
        val[0] = s->name;
    } else {
        snprintf(opt, optn, "-csearch_path=%s", s->name);
        kw[0] = "options";
        val[0] = opt;
    }
    kw[1] = val[1] = NULL;
}

lt_db_t *lt_scratch_connect(const lt_scratch_t *s)
{
    const char *kw[2], *val[2];
    char opt[128], err[512];
    lt_scratch_kw(s, kw, val, opt, sizeof(opt));
    lt_db_t *db = lt_db_connect_params(s->dsn, s->password, kw, val, err, sizeof(err));
    if (!db)
        fprintf(stderr, "cannot connect to scratch %s: %s\n", s->name, err);
    return db;
}

void lt_scratch_drop(lt_scratch_t *s)
{
    if (!s->admin)
        return;
    PGconn *c = lt_db_conn(s->admin);
    char *ident = PQescapeIdentifier(c, s->name, strlen(s->name));
    char sql[256];
    if (s->is_db)
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
    else
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", ident);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fprintf(stderr, "cleanup of %s failed: %s", s->name, PQresultErrorMessage(r));
    PQclear(r);
    PQfreemem(ident);
    lt_db_destroy(s->admin);
    s->admin = NULL;
}
