/* lt_sync: the results of the scopes a command runs (lt_sync.h). */
#include "lt_sync_internal.h"

const char *lt_sync_scope_result_name(lt_sync_scope_result_t r)
{
    return r == LT_SYNC_SCOPE_OK ? "ok" : r == LT_SYNC_SCOPE_MISSING ? "missing" : "failed";
}

void lt_sync_scope_done(lt_sync_t *s, const char *scope, lt_sync_scope_result_t result,
                        lt_err_t err, const char *error)
{
    s->scopes = lt_xrealloc(s->scopes, (s->nscopes + 1) * sizeof(*s->scopes));
    lt_sync_scope_t *r = &s->scopes[s->nscopes++];
    r->scope = lt_xstrdup(scope);
    r->result = result;
    r->err = result == LT_SYNC_SCOPE_OK ? LT_OK : err;
    r->error = result != LT_SYNC_SCOPE_OK && error && *error ? lt_xstrdup(error) : NULL;
    r->messages = s->messages > s->scope_messages0 ? s->messages - s->scope_messages0 : 0;
    s->scope_messages0 = s->messages;
}

const lt_sync_scope_t *lt_sync_scopes(const lt_sync_t *s, size_t *n)
{
    *n = s->nscopes;
    return s->scopes;
}

size_t lt_sync_scopes_ok(const lt_sync_t *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->nscopes; i++)
        k += s->scopes[i].result == LT_SYNC_SCOPE_OK;
    return k;
}

lt_err_t lt_sync_scopes_result(const lt_sync_t *s, char *errstr, size_t errstr_size)
{
    size_t failed = 0;
    lt_err_t err = LT_OK;
    const lt_sync_scope_t *first = NULL;
    for (size_t i = 0; i < s->nscopes; i++) {
        const lt_sync_scope_t *r = &s->scopes[i];
        if (r->result == LT_SYNC_SCOPE_OK)
            continue;
        failed++;
        if (!first)
            first = r;
        if (r->err == LT_ERR_TEMPORARY)
            err = LT_ERR_TEMPORARY;
        else if (!err)
            err = r->err ? r->err : LT_ERR_FINAL;
    }
    if (!failed)
        return LT_OK;
    if (s->nscopes == 1)
        return lt_seterr(errstr, errstr_size, err, "%s", first->error ? first->error : "failed");
    lt_buf_t *b = lt_buf_new(errstr_size ? errstr_size : 1);
    lt_buf_appendf(b, "%zu of %zu scopes not synced:", failed, s->nscopes);
    for (size_t i = 0; i < s->nscopes; i++) {
        const lt_sync_scope_t *r = &s->scopes[i];
        if (r->result != LT_SYNC_SCOPE_OK)
            (void)lt_buf_appendf(b, " %s %s (%s: %s);", r->scope,
                                 lt_sync_scope_result_name(r->result), lt_err_name(r->err),
                                 r->error ? r->error : "");
    }
    lt_seterr(errstr, errstr_size, err, "%s", lt_buf_str(b));
    lt_buf_destroy(b);
    return err;
}
