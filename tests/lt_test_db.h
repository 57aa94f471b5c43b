/* Throwaway Postgres for integration tests: a database per run
 * (lattice_test_<pid>_<tag>) when the role may CREATE DATABASE, else a
 * schema of that name in the DSN's database (reached through search_path).
 * Connection info from LATTICE_PG_DSN / LATTICE_PG_PASSWORD. */
#ifndef LT_TEST_DB_H
#define LT_TEST_DB_H

#include <stddef.h>

#include "lt_db.h"

typedef struct {
    const char *dsn, *password;
    lt_db_t *admin;
    char name[64];
    int is_db; /* 1: a database, 0: a schema in the dsn's database */
} lt_scratch_t;

/* 0 on success; prints why and returns -1 otherwise. */
int lt_scratch_create(lt_scratch_t *s, const char *tag);
/* The libpq keyword/value (NULL-terminated, 2 slots) pointing at the scratch;
 * opt is storage for the value (optn bytes). */
void lt_scratch_kw(const lt_scratch_t *s, const char **kw, const char **val, char *opt,
                   size_t optn);
/* A new connection to the scratch, or NULL (printed). */
lt_db_t *lt_scratch_connect(const lt_scratch_t *s);
/* Drop it (FORCE for a database) and close the admin connection. */
void lt_scratch_drop(lt_scratch_t *s);

#endif
