#include "lt_known.h"

#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"

/* One staged operation: 'a' add, 's' add with a state, 'd' remove, 'r'
 * forget the scope. */
typedef struct {
    char op;
    char *id;    /* NULL for 'r' */
    char *state; /* 's' only */
} op_t;

struct lt_known_delta_s {
    op_t *ops;
    size_t n, cap;
};

lt_known_delta_t *lt_known_delta_new(void)
{
    lt_known_delta_t *d = calloc(1, sizeof(*d));
    if (!d)
        abort();
    return d;
}

void lt_known_delta_reset(lt_known_delta_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->ops[i].id);
        free(d->ops[i].state);
    }
    d->n = 0;
}

void lt_known_delta_destroy(lt_known_delta_t *d)
{
    if (!d)
        return;
    lt_known_delta_reset(d);
    free(d->ops);
    free(d);
}

static void push(lt_known_delta_t *d, char op, const char *id, const char *state)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->ops = realloc(d->ops, d->cap * sizeof(*d->ops));
        if (!d->ops)
            abort();
    }
    char *copy = NULL, *st = NULL;
    if ((id && !(copy = strdup(id))) || (state && !(st = strdup(state))))
        abort();
    d->ops[d->n++] = (op_t){op, copy, st};
}

void lt_known_delta_add(lt_known_delta_t *d, const char *provider_message_id)
{
    push(d, 'a', provider_message_id, NULL);
}

void lt_known_delta_del(lt_known_delta_t *d, const char *provider_message_id)
{
    push(d, 'd', provider_message_id, NULL);
}

void lt_known_delta_set(lt_known_delta_t *d, const char *provider_message_id, const char *state)
{
    push(d, 's', provider_message_id, state ? state : "");
}

void lt_known_delta_forget(lt_known_delta_t *d)
{
    push(d, 'r', NULL, NULL);
}

size_t lt_known_delta_count(const lt_known_delta_t *d)
{
    return d ? d->n : 0;
}

/* One element of a Postgres array literal: NULL, or "..." with " and \
 * escaped. */
static void array_elem(lt_buf_t *b, size_t i, const char *v)
{
    if (i)
        (void)lt_buf_append(b, ",", 1);
    if (!v) {
        (void)lt_buf_append(b, "NULL", 4);
        return;
    }
    (void)lt_buf_append(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\')
            (void)lt_buf_append(b, "\\", 1);
        (void)lt_buf_append(b, p, 1);
    }
    (void)lt_buf_append(b, "\"", 1);
}

/* Array literals of the ops, ids and states. */
static void array_literals(const lt_known_delta_t *d, lt_buf_t *ops, lt_buf_t *ids,
                           lt_buf_t *states)
{
    (void)lt_buf_append(ops, "{", 1);
    (void)lt_buf_append(ids, "{", 1);
    (void)lt_buf_append(states, "{", 1);
    for (size_t i = 0; i < d->n; i++) {
        char op[2] = {d->ops[i].op, 0};
        array_elem(ops, i, op);
        array_elem(ids, i, d->ops[i].id);
        array_elem(states, i, d->ops[i].state);
    }
    (void)lt_buf_append(ops, "}", 2); /* with the NUL */
    (void)lt_buf_append(ids, "}", 2);
    (void)lt_buf_append(states, "}", 2);
}

/* A statement on key ($1..$4) with up to three more parameters. */
static lt_err_t exec_key(lt_db_t *db, const char *what, const char *sql,
                         const lt_watermark_key_t *key, const char *const *more, PGresult **res,
                         char *errstr, size_t errstr_size)
{
    const char *params[] = {key->tenant, key->account_id, key->scope, key->provider,
                            more ? more[0] : NULL, more ? more[1] : NULL, more ? more[2] : NULL};
    return lt_db_exec(db,
                      &(lt_db_query_t){.what = what,
                                       .sql = sql,
                                       .nparams = more ? 7 : 4,
                                       .params = params},
                      res, errstr, errstr_size);
}

#define KEY_WHERE "tenant_id = $1 AND account_id = $2 AND scope = $3 AND provider = $4"

lt_err_t lt_known_drop_staged(lt_db_t *db, const lt_watermark_key_t *key, char *errstr,
                              size_t errstr_size)
{
    return exec_key(db, "drop staged known messages",
                    "DELETE FROM mail_known_pending WHERE " KEY_WHERE, key, NULL, NULL, errstr,
                    errstr_size);
}

lt_err_t lt_known_stage(lt_db_t *db, const lt_watermark_key_t *key, const lt_known_delta_t *d,
                        char *errstr, size_t errstr_size)
{
    lt_err_t err = lt_known_drop_staged(db, key, errstr, errstr_size);
    if (err || !d || !d->n)
        return err;
    lt_buf_t *ops = lt_buf_new((size_t)1 << 30), *ids = lt_buf_new((size_t)1 << 30),
             *states = lt_buf_new((size_t)1 << 30);
    array_literals(d, ops, ids, states);
    err = exec_key(db, "stage known messages",
                   "INSERT INTO mail_known_pending (tenant_id, account_id, scope, provider, seq, "
                   "op, provider_message_id, state) SELECT $1, $2, $3, $4, o.seq, o.op, o.id, "
                   "o.state FROM unnest($5::text[], $6::text[], $7::text[]) WITH ORDINALITY "
                   "AS o(op, id, state, seq)",
                   key, (const char *[]){lt_buf_str(ops), lt_buf_str(ids), lt_buf_str(states)},
                   NULL, errstr, errstr_size);
    lt_buf_destroy(ops);
    lt_buf_destroy(ids);
    lt_buf_destroy(states);
    return err;
}

lt_err_t lt_known_apply_staged(lt_db_t *db, const lt_watermark_key_t *key, char *errstr,
                               size_t errstr_size)
{
    /* Only the operations after the last 'r' count, and of those the last
     * one of each message decides (added then deleted: absent); its state
     * is the last one set since the message's last delete, so an add that
     * follows a set (a new message whose event was produced after its
     * flags were recorded) keeps it. One grouping per message (a join of
     * the operations with their states was planned as a nested loop:
     * quadratic in the batch, ~70 ms per 200-message batch on a busy host).
     * The deletes are looked up by key, from an array of the batch's 'd'
     * messages: a join of `last` with the scope's known messages was
     * planned, on a new account's stale statistics, as a nested loop over
     * every known message of the scope (9,800 x 200 comparisons, ~300 ms
     * per batch late in a 10,000-message sync: quadratic in the folder). */
    lt_err_t err = exec_key(
        db, "apply staged known messages (forget)",
        "DELETE FROM mail_known_messages WHERE " KEY_WHERE " AND EXISTS (SELECT 1 FROM "
        "mail_known_pending WHERE " KEY_WHERE " AND op = 'r')",
        key, NULL, NULL, errstr, errstr_size);
    if (!err)
        err = exec_key(
            db, "apply staged known messages",
            "WITH ops AS (SELECT provider_message_id, op, state, seq, max(seq) FILTER "
            "(WHERE op = 'd') OVER (PARTITION BY provider_message_id) AS del "
            "FROM mail_known_pending WHERE " KEY_WHERE " AND op <> 'r' AND seq > "
            "COALESCE((SELECT max(seq) FROM mail_known_pending WHERE " KEY_WHERE
            " AND op = 'r'), 0)), "
            "last AS (SELECT provider_message_id, (array_agg(op ORDER BY seq DESC))[1] AS op, "
            "(array_agg(state ORDER BY seq DESC) FILTER (WHERE op = 's' AND seq > "
            "COALESCE(del, 0)))[1] AS state FROM ops GROUP BY provider_message_id), "
            "ins AS (INSERT INTO mail_known_messages (tenant_id, account_id, scope, provider, "
            "provider_message_id, state) SELECT $1, $2, $3, $4, provider_message_id, state "
            "FROM last WHERE op IN ('a', 's') ON CONFLICT (tenant_id, account_id, scope, "
            "provider, provider_message_id) DO UPDATE SET state = CASE WHEN "
            "EXCLUDED.state IS NULL THEN mail_known_messages.state ELSE EXCLUDED.state END) "
            "DELETE FROM mail_known_messages k WHERE k.tenant_id = $1 AND "
            "k.account_id = $2 AND k.scope = $3 AND k.provider = $4 AND "
            "k.provider_message_id = ANY (ARRAY(SELECT provider_message_id FROM last WHERE "
            "op = 'd'))",
            key, NULL, NULL, errstr, errstr_size);
    if (!err)
        err = lt_known_drop_staged(db, key, errstr, errstr_size);
    return err;
}

lt_err_t lt_known_apply_now(lt_db_t *db, const lt_watermark_key_t *key, const lt_known_delta_t *d,
                            char *errstr, size_t errstr_size)
{
    if (!d || !d->n)
        return LT_OK;
    lt_err_t err = lt_db_begin(db, errstr, errstr_size);
    if (err)
        return err;
    err = lt_known_stage(db, key, d, errstr, errstr_size);
    if (!err)
        err = lt_known_apply_staged(db, key, errstr, errstr_size);
    if (!err)
        return lt_db_commit(db, errstr, errstr_size);
    lt_db_rollback(db);
    return err;
}

lt_err_t lt_known_each(lt_db_t *db, const lt_watermark_key_t *key, lt_known_fn fn, void *opaque,
                       char *errstr, size_t errstr_size)
{
    PGresult *r = NULL;
    lt_err_t err = exec_key(db, "list known messages",
                            "SELECT provider_message_id, state FROM mail_known_messages WHERE "
                            KEY_WHERE,
                            key, NULL, &r, errstr, errstr_size);
    if (err)
        return err;
    for (int i = 0, n = PQntuples(r); i < n; i++)
        if (fn(PQgetvalue(r, i, 0), PQgetisnull(r, i, 1) ? NULL : PQgetvalue(r, i, 1), opaque))
            break;
    PQclear(r);
    return LT_OK;
}

lt_err_t lt_known_count(lt_db_t *db, const lt_watermark_key_t *key, long long *out, char *errstr,
                        size_t errstr_size)
{
    PGresult *r = NULL;
    lt_err_t err = exec_key(db, "count known messages",
                            "SELECT count(*) FROM mail_known_messages WHERE " KEY_WHERE, key, NULL,
                            &r, errstr, errstr_size);
    if (err)
        return err;
    *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return LT_OK;
}

lt_err_t lt_known_which(lt_db_t *db, const lt_watermark_key_t *key, const char *const *ids,
                        size_t n, unsigned char *present, char *errstr, size_t errstr_size)
{
    if (n)
        memset(present, 0, n);
    if (!n)
        return LT_OK;
    lt_buf_t *arr = lt_buf_new((size_t)1 << 30);
    (void)lt_buf_append(arr, "{", 1);
    for (size_t i = 0; i < n; i++)
        array_elem(arr, i, ids[i]);
    (void)lt_buf_append(arr, "}", 2);
    const char *params[] = {key->tenant, key->account_id, key->scope, key->provider,
                            lt_buf_str(arr)};
    PGresult *r = NULL;
    lt_err_t err = lt_db_exec(db,
                              &(lt_db_query_t){.what = "look up known messages",
                                               .sql = "SELECT provider_message_id FROM "
                                                      "mail_known_messages WHERE " KEY_WHERE
                                                      " AND provider_message_id = ANY($5::text[])",
                                               .nparams = 5,
                                               .params = params},
                              &r, errstr, errstr_size);
    lt_buf_destroy(arr);
    if (err)
        return err;
    /* a page of ids against its known ones: both a few hundred at most */
    for (int k = 0, rows = PQntuples(r); k < rows; k++) {
        const char *id = PQgetvalue(r, k, 0);
        for (size_t i = 0; i < n; i++)
            if (!present[i] && !strcmp(ids[i], id))
                present[i] = 1;
    }
    PQclear(r);
    return LT_OK;
}
