#include "lt_db.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"
#include "lt_log.h"

/* Statements of a pipelined transaction sent but not yet read. */
#define LT_DB_PIPE_MAX 32

struct lt_db_s {
    PGconn *conn;
    /* lt_db_begin_pipelined(): in libpq's pipeline mode; the "what" of each
     * statement whose result is not read yet (BEGIN first). */
    int pipelined;
    const char *pipe_what[LT_DB_PIPE_MAX];
    int npipe;
};

#define LT_DB_MAX_KEYWORDS 16

/* Server notices ("relation exists, skipping") go to the debug log instead
 * of libpq's default stderr printer. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    if (lt_log_enabled(LT_LOG_DEBUG)) {
        char m[512];
        snprintf(m, sizeof(m), "%s", message);
        m[strcspn(m, "\n")] = 0;
        lt_debug(NULL, "postgres: %s", m);
    }
}

/* Copy a libpq message into errstr without its trailing newline(s). */
static void copy_msg(char *dst, size_t n, const char *what, const char *msg)
{
    if (!dst || !n)
        return;
    snprintf(dst, n, "%s: %s", what, msg && *msg ? msg : "unknown error");
    size_t l = strlen(dst);
    while (l > 0 && (dst[l - 1] == '\n' || dst[l - 1] == '\r' || dst[l - 1] == ' '))
        dst[--l] = 0;
}

lt_db_t *lt_db_connect_params(const char *dsn, const char *password, const char *const *keywords,
                              const char *const *values, char *errstr, size_t errstr_size)
{
    const char *kw[LT_DB_MAX_KEYWORDS + 4];
    const char *val[LT_DB_MAX_KEYWORDS + 4];
    size_t n = 0;

    if (!dsn) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "postgres: no connection string");
        return NULL;
    }
    /* dbname first: expand_dbname turns it into its parts; later keywords
     * override them. */
    kw[n] = "dbname";
    val[n++] = dsn;
    kw[n] = "fallback_application_name";
    val[n++] = "lattice";
    if (password && *password) {
        kw[n] = "password";
        val[n++] = password;
    }
    for (size_t i = 0; keywords && values && keywords[i]; i++) {
        if (i >= LT_DB_MAX_KEYWORDS) {
            lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "postgres: too many keywords");
            return NULL;
        }
        kw[n] = keywords[i];
        val[n++] = values[i];
    }
    kw[n] = NULL;
    val[n] = NULL;

    PGconn *conn = PQconnectdbParams(kw, val, 1);
    if (!conn) {
        /* libpq could not even allocate: treat as out of memory. */
        fputs("lattice: out of memory (libpq)\n", stderr);
        abort();
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        copy_msg(errstr, errstr_size, "postgres connect", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, on_notice, NULL);
    lt_db_t *db = lt_xcalloc(1, sizeof(*db));
    db->conn = conn;
    return db;
}

lt_db_t *lt_db_connect(const char *dsn, const char *password, char *errstr, size_t errstr_size)
{
    return lt_db_connect_params(dsn, password, NULL, NULL, errstr, errstr_size);
}

void lt_db_destroy(lt_db_t *db)
{
    if (!db)
        return;
    PQfinish(db->conn);
    free(db);
}

int lt_db_ok(const lt_db_t *db)
{
    return db && db->conn && PQstatus(db->conn) == CONNECTION_OK;
}

lt_err_t lt_db_reset(lt_db_t *db, char *errstr, size_t errstr_size)
{
    PQreset(db->conn);
    if (PQstatus(db->conn) != CONNECTION_OK) {
        copy_msg(errstr, errstr_size, "postgres reconnect", PQerrorMessage(db->conn));
        return LT_ERR_TEMPORARY;
    }
    return LT_OK;
}

PGconn *lt_db_conn(lt_db_t *db)
{
    return db->conn;
}

lt_err_t lt_db_classify_sqlstate(const char *s)
{
    if (!s || strlen(s) != 5)
        return LT_ERR_TEMPORARY;
    if (!strncmp(s, "08", 2) || !strcmp(s, "40001") || !strcmp(s, "40P01") ||
        !strncmp(s, "53", 2) || !strcmp(s, "55P03") || !strcmp(s, "57014") || !strcmp(s, "57P01") ||
        !strcmp(s, "57P02") || !strcmp(s, "57P03") || !strcmp(s, "57P04"))
        return LT_ERR_TEMPORARY;
    if (!strncmp(s, "23", 2) || !strncmp(s, "22", 2))
        return LT_ERR_INVALID;
    return LT_ERR_FINAL;
}

lt_err_t lt_db_result_error(lt_db_t *db, const char *what, const PGresult *res, char *errstr,
                            size_t errstr_size)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state || PQstatus(db->conn) != CONNECTION_OK) {
        /* No server answer: the connection is gone (or never answered). */
        copy_msg(errstr, errstr_size, what, PQerrorMessage(db->conn));
        return LT_ERR_TEMPORARY;
    }
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    char msg[512];
    if (constraint)
        snprintf(msg, sizeof(msg), "%s (SQLSTATE %s, constraint %s)", primary ? primary : "?",
                 state, constraint);
    else
        snprintf(msg, sizeof(msg), "%s (SQLSTATE %s)", primary ? primary : "?", state);
    copy_msg(errstr, errstr_size, what, msg);
    return lt_db_classify_sqlstate(state);
}

/* Pipelined transaction: sync, then read every result sent so far. The
 * last one goes to *last (when last != NULL and it succeeded); the first
 * failure is the answer. */
static lt_err_t pipe_drain(lt_db_t *db, PGresult **last, char *errstr, size_t errstr_size)
{
    lt_err_t err = LT_OK;
    int n = db->npipe;
    db->npipe = 0;
    if (last)
        *last = NULL;
    if (PQpipelineSync(db->conn) != 1) {
        copy_msg(errstr, errstr_size, n ? db->pipe_what[n - 1] : "pipeline",
                 PQerrorMessage(db->conn));
        return LT_ERR_TEMPORARY;
    }
    for (int i = 0; i < n; i++) {
        PGresult *r = PQgetResult(db->conn);
        if (!r) { /* no answer: the connection is gone */
            if (!err)
                err = lt_db_result_error(db, db->pipe_what[i], NULL, errstr, errstr_size);
            break;
        }
        ExecStatusType st = PQresultStatus(r);
        /* (PGRES_PIPELINE_ABORTED only follows an earlier failure) */
        if (!err && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            err = lt_db_result_error(db, db->pipe_what[i], r, errstr, errstr_size);
        if (!err && last && i == n - 1)
            *last = r;
        else
            PQclear(r);
        /* each statement's results end with a NULL */
        while ((r = PQgetResult(db->conn)) != NULL)
            PQclear(r);
    }
    /* the sync point */
    PGresult *r;
    while (PQstatus(db->conn) == CONNECTION_OK && (r = PQgetResult(db->conn)) != NULL) {
        int sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (sync)
            break;
    }
    if (err && last && *last) {
        PQclear(*last);
        *last = NULL;
    }
    return err;
}

/* Leave pipeline mode (results read first); the connection is as after
 * the statements, a transaction possibly still open (or failed). */
static void pipe_leave(lt_db_t *db)
{
    if (!db->pipelined)
        return;
    if (db->npipe)
        (void)pipe_drain(db, NULL, NULL, 0);
    if (PQexitPipelineMode(db->conn) != 1 && PQstatus(db->conn) == CONNECTION_OK)
        lt_warn(NULL, "postgres: pipeline mode not left: %s", PQerrorMessage(db->conn));
    db->pipelined = 0;
}

lt_err_t lt_db_begin_pipelined(lt_db_t *db, char *errstr, size_t errstr_size)
{
    if (db->pipelined || PQstatus(db->conn) != CONNECTION_OK ||
        PQtransactionStatus(db->conn) != PQTRANS_IDLE) {
        copy_msg(errstr, errstr_size, "begin",
                 db->pipelined ? "a pipelined transaction is open" : "connection is not idle");
        return db->pipelined ? LT_ERR_INVALID : LT_ERR_TEMPORARY;
    }
    if (PQenterPipelineMode(db->conn) != 1) {
        copy_msg(errstr, errstr_size, "begin", PQerrorMessage(db->conn));
        return LT_ERR_TEMPORARY;
    }
    db->pipelined = 1;
    db->npipe = 0;
    if (!PQsendQueryParams(db->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) {
        copy_msg(errstr, errstr_size, "begin", PQerrorMessage(db->conn));
        pipe_leave(db);
        return LT_ERR_TEMPORARY;
    }
    db->pipe_what[db->npipe++] = "begin";
    return LT_OK;
}

static lt_err_t pipe_exec(lt_db_t *db, const lt_db_query_t *q, PGresult **res, char *errstr,
                          size_t errstr_size)
{
    if (db->npipe == LT_DB_PIPE_MAX) {
        lt_err_t err = pipe_drain(db, NULL, errstr, errstr_size);
        if (err)
            return err;
    }
    if (!PQsendQueryParams(db->conn, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0)) {
        copy_msg(errstr, errstr_size, q->what, PQerrorMessage(db->conn));
        return LT_ERR_TEMPORARY;
    }
    db->pipe_what[db->npipe++] = q->what;
    if (!res)
        return LT_OK; /* read with the next statement that wants its result, or the commit */
    return pipe_drain(db, res, errstr, errstr_size);
}

lt_err_t lt_db_exec(lt_db_t *db, const lt_db_query_t *q, PGresult **res, char *errstr,
                    size_t errstr_size)
{
    const char *what = q->what, *sql = q->sql;
    int nparams = q->nparams;
    const char *const *params = q->params;
    if (res)
        *res = NULL;
    if (PQstatus(db->conn) != CONNECTION_OK) {
        copy_msg(errstr, errstr_size, what, "connection is broken");
        return LT_ERR_TEMPORARY;
    }
    if (db->pipelined)
        return pipe_exec(db, q, res, errstr, errstr_size);
    PGresult *r = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        lt_err_t err = lt_db_result_error(db, what, r, errstr, errstr_size);
        PQclear(r);
        return err;
    }
    if (res)
        *res = r;
    else
        PQclear(r);
    return LT_OK;
}

lt_err_t lt_db_begin(lt_db_t *db, char *errstr, size_t errstr_size)
{
    return lt_db_exec(db, &(lt_db_query_t){.what = "begin", .sql = "BEGIN", .nparams = 0}, NULL,
                      errstr, errstr_size);
}

lt_err_t lt_db_commit(lt_db_t *db, char *errstr, size_t errstr_size)
{
    PGresult *r = NULL;
    lt_err_t err = lt_db_exec(db, &(lt_db_query_t){.what = "commit", .sql = "COMMIT", .nparams = 0},
                              &r, errstr, errstr_size);
    pipe_leave(db);
    if (err)
        return err;
    /* COMMIT of a failed transaction "succeeds" as ROLLBACK. */
    const char *tag = PQcmdStatus(r);
    if (strcmp(tag, "COMMIT") != 0)
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "commit: transaction was rolled back");
    PQclear(r);
    return err;
}

void lt_db_rollback(lt_db_t *db)
{
    if (db)
        pipe_leave(db);
    if (!db || PQstatus(db->conn) != CONNECTION_OK)
        return;
    if (PQtransactionStatus(db->conn) == PQTRANS_IDLE)
        return;
    PGresult *r = PQexec(db->conn, "ROLLBACK");
    PQclear(r);
}

long long lt_db_lock_key(const char *const *parts, size_t nparts)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < nparts; i++) {
        const unsigned char *p = (const unsigned char *)(parts[i] ? parts[i] : "");
        for (; *p; p++) {
            h ^= *p;
            h *= 0x100000001b3ULL;
        }
        h ^= 0; /* separator byte */
        h *= 0x100000001b3ULL;
    }
    /* Reinterpret as the signed bigint pg_advisory_lock takes. */
    long long k;
    memcpy(&k, &h, sizeof(k));
    return k;
}

void lt_db_cap_utf8(char *dst, size_t dst_size, const char *src)
{
    if (!dst_size)
        return;
    size_t l = strlen(src);
    if (l < dst_size) {
        memcpy(dst, src, l + 1);
        return;
    }
    l = dst_size - 1;
    /* src[l] is the first byte left out: if it continues a sequence, drop
     * the partial sequence before it. */
    if (((unsigned char)src[l] & 0xC0) == 0x80) {
        while (l > 0 && ((unsigned char)src[l - 1] & 0xC0) == 0x80)
            l--;
        if (l > 0 && ((unsigned char)src[l - 1] & 0xC0) == 0xC0)
            l--;
    }
    memcpy(dst, src, l);
    dst[l] = 0;
}
