#include "lt_migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "lt_buf.h"
#include "lt_log.h"

#define LT_MIGRATION_FILE_MAX (4 * 1024 * 1024)
#define LT_MIGRATION_COUNT_MAX 10000
#define LT_MIGRATION_VERSION_MAX 999999999

typedef struct {
    int version;
    char *name;
    char *sql; /* NULL for a database-only row */
    char sha256[65];
    char *applied_at;   /* database rows only */
    char db_sha256[65]; /* database rows only */
    int in_dir, in_db;
} migration_t;

typedef struct {
    migration_t *v;
    size_t n, alloc;
} migration_list_t;

static void list_free(migration_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].sql);
        free(l->v[i].applied_at);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static migration_t *list_find(migration_list_t *l, int version)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].version == version)
            return &l->v[i];
    return NULL;
}

static migration_t *list_add(migration_list_t *l, int version)
{
    if (l->n == l->alloc) {
        l->alloc = l->alloc ? l->alloc * 2 : 16;
        l->v = lt_xrealloc(l->v, l->alloc * sizeof(*l->v));
    }
    migration_t *m = &l->v[l->n++];
    memset(m, 0, sizeof(*m));
    m->version = version;
    return m;
}

static int cmp_version(const void *a, const void *b)
{
    const migration_t *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

const char *lt_migration_state_name(lt_migration_state_t st)
{
    switch (st) {
    case LT_MIGRATION_PENDING:
        return "pending";
    case LT_MIGRATION_APPLIED:
        return "applied";
    case LT_MIGRATION_CHANGED:
        return "changed";
    case LT_MIGRATION_MISSING:
        return "missing";
    }
    return "unknown";
}

/* "NNNN_name.sql" -> version; -1 when the name is not a migration. A name
 * ending in .sql that does not fit the pattern is an error (-2). */
static int parse_name(const char *name)
{
    size_t len = strlen(name);
    if (len < 4 || strcmp(name + len - 4, ".sql") != 0)
        return -1;
    size_t i = 0;
    long v = 0;
    while (name[i] >= '0' && name[i] <= '9') {
        v = v * 10 + (name[i] - '0');
        if (v > LT_MIGRATION_VERSION_MAX)
            return -2;
        i++;
    }
    if (i == 0 || name[i] != '_' || i + 1 >= len - 4)
        return -2;
    for (size_t j = i + 1; j < len - 4; j++) {
        char c = name[j];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return -2;
    }
    return (int)v;
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        fputs("lattice: sha256 failed\n", stderr);
        abort();
    }
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static lt_err_t read_file(const char *path, char **out, char *errstr, size_t errstr_size)
{
    lt_err_t err = LT_OK;
    lt_buf_t *b = lt_buf_new(LT_MIGRATION_FILE_MAX);
    FILE *f = fopen(path, "rb");
    if (!f) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "cannot read %s: %s", path,
                        strerror(errno));
        goto out;
    }
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (lt_buf_append(b, chunk, r)) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG, "%s is larger than %d bytes", path,
                            LT_MIGRATION_FILE_MAX);
            goto out;
        }
    }
    if (ferror(f)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "cannot read %s", path);
        goto out;
    }
    if (memchr(lt_buf_data(b), 0, lt_buf_len(b))) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "%s contains a NUL byte", path);
        goto out;
    }
    *out = (char *)lt_buf_steal(b, NULL);
out:
    if (f)
        fclose(f);
    lt_buf_destroy(b);
    return err;
}

static lt_err_t load_dir(const char *dir, migration_list_t *l, char *errstr, size_t errstr_size)
{
    lt_err_t err = LT_OK;
    char *path = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                         "cannot open migrations directory %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int v = parse_name(e->d_name);
        if (v == -1)
            continue;
        if (v == -2) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                            "%s/%s: a migration is named NNNN_name.sql (name: letters, digits, "
                            "'_', '-')",
                            dir, e->d_name);
            goto out;
        }
        migration_t *dup = list_find(l, v);
        if (dup) {
            err =
                lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                          "%s: version %d is used by both %s and %s", dir, v, dup->name, e->d_name);
            goto out;
        }
        if (l->n >= LT_MIGRATION_COUNT_MAX) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG, "%s: more than %d migrations", dir,
                            LT_MIGRATION_COUNT_MAX);
            goto out;
        }
        size_t plen = strlen(dir) + strlen(e->d_name) + 2;
        path = lt_xmalloc(plen);
        snprintf(path, plen, "%s/%s", dir, e->d_name);
        migration_t *m = list_add(l, v);
        m->name = lt_xstrdup(e->d_name);
        m->in_dir = 1;
        err = read_file(path, &m->sql, errstr, errstr_size);
        if (err)
            goto out;
        sha256_hex(m->sql, strlen(m->sql), m->sha256);
        free(path);
        path = NULL;
    }
out:
    free(path);
    closedir(d);
    return err;
}

/* Merge the rows of schema_migrations (if the table exists) into l. */
static lt_err_t load_applied(lt_db_t *db, migration_list_t *l, char *errstr, size_t errstr_size)
{
    PGresult *r = NULL;
    lt_err_t err =
        lt_db_exec(db,
                   &(lt_db_query_t){.what = "schema_migrations",
                                    .sql = "SELECT to_regclass('schema_migrations') IS NOT NULL",
                                    .nparams = 0},
                   &r, errstr, errstr_size);
    if (err)
        return err;
    int exists = !strcmp(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    if (!exists)
        return LT_OK;
    err = lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = "schema_migrations",
            .sql = "SELECT version, name, sha256, applied_at::text FROM schema_migrations "
                   "ORDER BY version",
            .nparams = 0},
        &r, errstr, errstr_size);
    if (err)
        return err;
    for (int i = 0; i < PQntuples(r); i++) {
        int v = atoi(PQgetvalue(r, i, 0));
        migration_t *m = list_find(l, v);
        if (!m) {
            m = list_add(l, v);
            m->name = lt_xstrdup(PQgetvalue(r, i, 1));
        }
        m->in_db = 1;
        snprintf(m->db_sha256, sizeof(m->db_sha256), "%s", PQgetvalue(r, i, 2));
        m->applied_at = lt_xstrdup(PQgetvalue(r, i, 3));
    }
    PQclear(r);
    return LT_OK;
}

static lt_migration_state_t state_of(const migration_t *m)
{
    if (!m->in_db)
        return LT_MIGRATION_PENDING;
    if (!m->in_dir)
        return LT_MIGRATION_MISSING;
    return strcmp(m->sha256, m->db_sha256) ? LT_MIGRATION_CHANGED : LT_MIGRATION_APPLIED;
}

static void report(const migration_t *m, lt_migration_fn fn, void *opaque)
{
    if (!fn)
        return;
    lt_migration_info_t info = {
        .version = m->version,
        .name = m->name,
        .state = state_of(m),
        .sha256 = m->in_dir ? m->sha256 : m->db_sha256,
        .applied_at = m->applied_at,
    };
    fn(&info, opaque);
}

static lt_err_t load_all(lt_db_t *db, const char *dir, migration_list_t *l, char *errstr,
                         size_t errstr_size)
{
    lt_err_t err = load_dir(dir, l, errstr, errstr_size);
    if (!err)
        err = load_applied(db, l, errstr, errstr_size);
    if (!err && l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), cmp_version);
    return err;
}

lt_err_t lt_migrate_status(lt_db_t *db, const char *dir, lt_migration_fn fn, void *opaque,
                           char *errstr, size_t errstr_size)
{
    migration_list_t l = {0};
    lt_err_t err = load_all(db, dir, &l, errstr, errstr_size);
    if (!err)
        for (size_t i = 0; i < l.n; i++)
            report(&l.v[i], fn, opaque);
    list_free(&l);
    return err;
}

static lt_err_t apply_one(lt_db_t *db, const char *dir, migration_t *m, char *errstr,
                          size_t errstr_size)
{
    char what[300];
    snprintf(what, sizeof(what), "%s/%s", dir, m->name);
    lt_err_t err = lt_db_begin(db, errstr, errstr_size);
    if (err)
        return err;
    /* The file's SQL is one simple query (several statements, no
     * parameters); it comes from the migrations directory, not from input. */
    PGresult *r = PQexec(lt_db_conn(db), m->sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        err = lt_db_result_error(db, what, r, errstr, errstr_size);
        PQclear(r);
        goto out;
    }
    PQclear(r);
    if (PQtransactionStatus(lt_db_conn(db)) != PQTRANS_INTRANS) {
        err =
            lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                      "%s ended the transaction: a migration must not contain BEGIN/COMMIT", what);
        goto out;
    }
    char version[16];
    snprintf(version, sizeof(version), "%d", m->version);
    const char *params[] = {version, m->name, m->sha256};
    err = lt_db_exec(
        db,
        &(lt_db_query_t){.what = what,
                         .sql = "INSERT INTO schema_migrations (version, name, sha256, applied_at) "
                                "VALUES ($1::int, $2, $3, now())",
                         .nparams = 3,
                         .params = params},
        NULL, errstr, errstr_size);
    if (err)
        goto out;
    err = lt_db_commit(db, errstr, errstr_size);
    if (err)
        goto out;
    m->in_db = 1;
    memcpy(m->db_sha256, m->sha256, sizeof(m->db_sha256));
out:
    if (err)
        lt_db_rollback(db);
    return err;
}

lt_err_t lt_migrate_apply(lt_db_t *db, const char *dir, lt_migration_fn on_applied, void *opaque,
                          int *applied, char *errstr, size_t errstr_size)
{
    migration_list_t l = {0};
    int locked = 0, n = 0;
    char key[32];
    const char *ns[] = {"lattice.migrate"};
    snprintf(key, sizeof(key), "%lld", lt_db_lock_key(ns, 1));
    const char *kp[] = {key};

    if (applied)
        *applied = 0;
    lt_err_t err = lt_db_exec(db,
                              &(lt_db_query_t){.what = "migration lock",
                                               .sql = "SELECT pg_advisory_lock($1::bigint)",
                                               .nparams = 1,
                                               .params = kp},
                              NULL, errstr, errstr_size);
    if (err)
        goto out;
    locked = 1;
    err = lt_db_exec(db,
                     &(lt_db_query_t){.what = "schema_migrations",
                                      .sql = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                             " version integer PRIMARY KEY,"
                                             " name text NOT NULL,"
                                             " sha256 text NOT NULL,"
                                             " applied_at timestamptz NOT NULL DEFAULT now())",
                                      .nparams = 0},
                     NULL, errstr, errstr_size);
    if (err)
        goto out;
    err = load_all(db, dir, &l, errstr, errstr_size);
    if (err)
        goto out;

    /* Refuse before applying anything. */
    int max_applied = -1;
    for (size_t i = 0; i < l.n; i++) {
        migration_t *m = &l.v[i];
        if (state_of(m) == LT_MIGRATION_CHANGED) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                            "checksum mismatch: %s/%s was changed after it was applied "
                            "(sha256 recorded %.12s..., file %.12s...); never edit an applied "
                            "migration, add a new one",
                            dir, m->name, m->db_sha256, m->sha256);
            goto out;
        }
        if (state_of(m) == LT_MIGRATION_MISSING)
            lt_warn(NULL, "migration %d (%s) is applied but not in %s", m->version, m->name, dir);
        if (m->in_db && m->version > max_applied)
            max_applied = m->version;
    }
    for (size_t i = 0; i < l.n; i++) {
        migration_t *m = &l.v[i];
        if (!m->in_db && m->version < max_applied) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                            "%s/%s is numbered below the applied version %d: renumber it above",
                            dir, m->name, max_applied);
            goto out;
        }
    }
    for (size_t i = 0; i < l.n; i++) {
        migration_t *m = &l.v[i];
        if (m->in_db)
            continue;
        err = apply_one(db, dir, m, errstr, errstr_size);
        if (err)
            goto out;
        n++;
        report(m, on_applied, opaque);
    }
out:
    if (locked && lt_db_ok(db))
        lt_db_exec(db,
                   &(lt_db_query_t){.what = "migration unlock",
                                    .sql = "SELECT pg_advisory_unlock($1::bigint)",
                                    .nparams = 1,
                                    .params = kp},
                   NULL, NULL, 0);
    if (applied)
        *applied = n;
    list_free(&l);
    return err;
}
