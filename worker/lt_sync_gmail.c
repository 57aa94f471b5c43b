#include "lt_sync_gmail.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_command_log.h"
#include "lt_gmail_client.h"
#include "lt_known.h"
#include "lt_secret.h"

#define SECRET_MAX 4096

static const char *const k_system_labels[] = {
    "INBOX",
    "SENT",
    "DRAFT",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "CHAT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
    NULL,
};

typedef struct {
    char user[320];
    char client_id[512];
    char client_secret[SECRET_MAX];
    char refresh_token[SECRET_MAX];
    char **scopes;
    size_t nscopes;
} gmail_conf_t;

static void conf_free(gmail_conf_t *c)
{
    for (size_t i = 0; i < c->nscopes; i++)
        free(c->scopes[i]);
    free(c->scopes);
    lt_secret_wipe(c->client_secret, sizeof(c->client_secret));
    lt_secret_wipe(c->refresh_token, sizeof(c->refresh_token));
}

static void add_scope(gmail_conf_t *c, const char *s)
{
    c->scopes = lt_xrealloc(c->scopes, (c->nscopes + 1) * sizeof(char *));
    c->scopes[c->nscopes++] = lt_xstrdup(s);
}

static lt_err_t string_list(json_object *v, const char *key, const char *prefix, gmail_conf_t *c,
                            char *errstr, size_t n)
{
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: \"%s\" must be a non-empty array", key);
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_string) || !json_object_get_string_len(e) ||
            json_object_get_string_len(e) > 1000)
            return lt_seterr(errstr, n, LT_ERR_FINAL,
                             "account config: %s[%zu] is not a string of 1..1000 characters", key,
                             i);
        char buf[1100];
        snprintf(buf, sizeof(buf), "%s%s", prefix, json_object_get_string(e));
        add_scope(c, buf);
    }
    return LT_OK;
}

static lt_err_t parse_conf(const lt_account_t *a, const char *secrets_dir, gmail_conf_t *c,
                           char *errstr, size_t n)
{
    json_object *cfg = lt_account_config(a), *v;
    lt_err_t err;
    memset(c, 0, sizeof(*c));
    snprintf(c->user, sizeof(c->user), "me");
    if (json_object_object_get_ex(cfg, "user", &v)) {
        if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
            return lt_seterr(errstr, n, LT_ERR_FINAL, "account config: \"user\" must be a string");
        snprintf(c->user, sizeof(c->user), "%s", json_object_get_string(v));
    }
    /* client_id is no secret: given plainly, or by reference like the
     * secrets (client_id_env, client_id_file) */
    lt_secret_ns_t ns = {lt_account_tenant(a), secrets_dir};
    int by_ref = json_object_object_get_ex(cfg, "client_id_env", NULL) ||
                 json_object_object_get_ex(cfg, "client_id_file", NULL);
    if (json_object_object_get_ex(cfg, "client_id", &v)) {
        if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
            return lt_seterr(errstr, n, LT_ERR_FINAL,
                             "account config: \"client_id\" must be a non-empty string");
        if (by_ref)
            return lt_seterr(errstr, n, LT_ERR_FINAL,
                             "account config: both client_id and client_id_env/client_id_file "
                             "given; use one");
        snprintf(c->client_id, sizeof(c->client_id), "%s", json_object_get_string(v));
    } else if (!by_ref) {
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: \"client_id\" (string), client_id_env or "
                         "client_id_file is required");
    } else if ((err = lt_secret_resolve(&ns, cfg, "client_id", c->client_id, sizeof(c->client_id),
                                        errstr, n))) {
        return err;
    }
    if (json_object_object_get_ex(cfg, "scopes", &v) &&
        (err = string_list(v, "scopes", "", c, errstr, n)))
        return err;
    if (json_object_object_get_ex(cfg, "label_ids", &v) &&
        (err = string_list(v, "label_ids", "label:", c, errstr, n)))
        return err;
    if (json_object_object_get_ex(cfg, "query", &v)) {
        if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v) ||
            json_object_get_string_len(v) > 1024)
            return lt_seterr(errstr, n, LT_ERR_FINAL,
                             "account config: \"query\" must be a string of 1..1024 characters");
        add_scope(c, json_object_get_string(v));
    }
    if (!c->nscopes)
        add_scope(c, "label:INBOX");
    if ((err = lt_secret_resolve(&ns, cfg, "client_secret", c->client_secret,
                                 sizeof(c->client_secret), errstr, n)))
        return err;
    return lt_secret_resolve(&ns, cfg, "refresh_token", c->refresh_token, sizeof(c->refresh_token),
                             errstr, n);
}

int lt_sync_gmail_scope_label(const char *scope, char *label_out, int *system)
{
    *system = 0;
    label_out[0] = 0;
    const char *v = NULL;
    int in = 0;
    if (!strncasecmp(scope, "label:", 6))
        v = scope + 6;
    else if (!strncasecmp(scope, "in:", 3)) {
        v = scope + 3;
        in = 1;
    }
    if (!v || !*v || strlen(v) > LT_GMAIL_ID_MAX)
        return 0;
    for (const char *p = v; *p; p++)
        if (isspace((unsigned char)*p) || *p == '(' || *p == ')' || *p == '{' || *p == '"')
            return 0;
    char up[LT_GMAIL_ID_MAX + 1];
    size_t i;
    for (i = 0; v[i]; i++)
        up[i] = (char)toupper((unsigned char)(v[i] == '-' ? '_' : v[i]));
    up[i] = 0;
    for (size_t k = 0; k_system_labels[k]; k++) {
        if (!strcmp(up, k_system_labels[k])) {
            snprintf(label_out, LT_GMAIL_ID_MAX + 1, "%s", up);
            *system = 1;
            return 1;
        }
    }
    if (in || !lt_gmail_id_valid(v, strlen(v)))
        return 0; /* in:anywhere, label names with other characters: a query */
    snprintf(label_out, LT_GMAIL_ID_MAX + 1, "%s", v);
    return 1;
}

static lt_err_t parse_date(const char *d, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int y, m, day;
    char tail;
    if (!d || sscanf(d, "%4d-%2d-%2d%c", &y, &m, &day, &tail) != 3)
        return LT_ERR_INVALID;
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = day;
    *out = timegm(&tm);
    return *out == (time_t)-1 ? LT_ERR_INVALID : LT_OK;
}

lt_err_t lt_sync_gmail_date_query(const char *start_date, const char *end_date, char *out,
                                  size_t outsz, char *errstr, size_t errstr_size)
{
    time_t a, b;
    if (parse_date(start_date, &a) || parse_date(end_date, &b))
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "backfill: bad date");
    if (b < a)
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "backfill: end_date before start_date");
    snprintf(out, outsz, "after:%lld before:%lld", (long long)a, (long long)b + 86400);
    return LT_OK;
}

/* --- one scope ------------------------------------------------------------- */

typedef struct {
    lt_sync_t *s;
    lt_gmail_t *g;
    const char *scope;
    char label[LT_GMAIL_ID_MAX + 1]; /* label scope: its id */
    const char *query;               /* search scope */
    int is_label;

    /* per fetch */
    char err[512];
    lt_err_t err_code;
    uint64_t skipped, gone;
    lt_buf_t *skipped_ids;
    const char *const *cur_ids; /* of the running lt_gmail_get_many */
    /* resync filter */
    uint64_t old_history_id;
    char **keep;
    size_t nkeep;
    char **keep_labels; /* and their labelIds (NULL: absent), historyIds */
    uint64_t *keep_hid;
    /* progress: messages expected after the list being fetched (listing:
     * resultSizeEstimate less what was listed; 0 on the last page) */
    int64_t est_after;
    /* durable progress of a listing (full sync: scope home; backfill:
     * command home); LT_CURSOR_NONE: none (incremental) */
    lt_cursor_home_t cur_home;
    char *cur_page_token;    /* the token that listed the page being fetched; NULL: first */
    uint64_t cur_history_id; /* full sync: the position taken before listing */
    int cur_resync;
    char *resume_token;   /* from a stored cursor: the page to list first */
    char *resume_last_id; /* and the last id of it already done */
    /* search scope, incremental: the ids the query lists, sorted (listed
     * once, again only for history newer than query_upto) */
    char **query_ids;
    size_t nquery_ids, query_alloc, query_sorted; /* [0, query_sorted) sorted */
    char *query_token;                            /* the listing's next page */
    uint64_t query_upto;
    int query_started, query_done;
    /* change tracking (docs/gmail.md, "Mailbox changes") */
    int track;      /* on for this scope: labels after each message, known set */
    int incr_track; /* incremental with tracking: a fetched message must be in the label */
    /* what this command changed of the known set since the page's lookup
     * (incremental with tracking): id -> present */
    char **ov_ids;
    unsigned char *ov_present;
    size_t nov, ov_alloc;
} scope_ctx_t;

/* The command's total: done + what the current list still holds + the
 * estimate beyond it (lt_sync_set_total). */
static void set_total(scope_ctx_t *x, size_t left)
{
    lt_sync_set_total(x->s, lt_sync_progress_done(x->s) + (int64_t)left + x->est_after);
}

/* What a listing still expects after `listed` ids when it has (more) or
 * has not more pages: Google's estimate is of the whole result and rough,
 * so it only counts while above what was listed; the last page makes the
 * total exact. */
int64_t lt_sync_gmail_list_remaining(int64_t estimate, uint64_t listed, int more)
{
    if (!more || estimate < 0 || (uint64_t)estimate <= listed)
        return 0;
    return estimate - (int64_t)listed;
}

/* --- change tracking: overrides and change events ------------------------ */

static void ov_reset(scope_ctx_t *x)
{
    for (size_t i = 0; i < x->nov; i++)
        free(x->ov_ids[i]);
    x->nov = 0;
}

static void ov_free(scope_ctx_t *x)
{
    ov_reset(x);
    free(x->ov_ids);
    free(x->ov_present);
    x->ov_ids = NULL;
    x->ov_present = NULL;
    x->ov_alloc = 0;
}

/* -1: not changed by this command since the lookup; else 0 / 1 */
static int ov_get(const scope_ctx_t *x, const char *id)
{
    for (size_t i = x->nov; i-- > 0;)
        if (!strcmp(x->ov_ids[i], id))
            return x->ov_present[i];
    return -1;
}

static void ov_set(scope_ctx_t *x, const char *id, int present)
{
    if (x->nov == x->ov_alloc) {
        x->ov_alloc = x->ov_alloc ? x->ov_alloc * 2 : 64;
        x->ov_ids = lt_xrealloc(x->ov_ids, x->ov_alloc * sizeof(char *));
        x->ov_present = lt_xrealloc(x->ov_present, x->ov_alloc);
    }
    x->ov_ids[x->nov] = lt_xstrdup(id);
    x->ov_present[x->nov++] = (unsigned char)present;
}

/* A labels change: the message's full labelIds (','-joined text; NULL:
 * the field was absent, which in Google's JSON is an empty list: proto3
 * leaves empty repeated fields out). */
static lt_err_t emit_labels(scope_ctx_t *x, const char *id, const char *labels, uint64_t position,
                            char *errstr, size_t n)
{
    char buf[LT_GMAIL_LABELS_TEXT_MAX];
    const char *items[LT_CHANGE_MAX_ITEMS];
    size_t k = 0;
    snprintf(buf, sizeof(buf), "%s", labels ? labels : "");
    for (char *p = buf; *p && k < LT_CHANGE_MAX_ITEMS;) {
        char *c = strchr(p, ',');
        if (c)
            *c = 0;
        items[k++] = p;
        if (!c)
            break;
        p = c + 1;
    }
    lt_sync_change_t ch = {.kind = LT_CHANGE_LABELS,
                           .provider_message_id = id,
                           .mailbox = x->scope,
                           .position = position ? (int64_t)position : -1,
                           .items = items,
                           .nitems = k};
    return lt_sync_change(x->s, &ch, errstr, n);
}

static lt_err_t emit_deleted(scope_ctx_t *x, const char *id, uint64_t position, char *errstr,
                             size_t n)
{
    lt_sync_change_t ch = {.kind = LT_CHANGE_DELETED,
                           .provider_message_id = id,
                           .mailbox = x->scope,
                           .position = position ? (int64_t)position : -1};
    return lt_sync_change(x->s, &ch, errstr, n);
}

static lt_watermark_key_t scope_key(const scope_ctx_t *x)
{
    const lt_account_t *a = lt_sync_account(x->s);
    return (lt_watermark_key_t){.tenant = lt_account_tenant(a),
                                .account_id = lt_account_id(a),
                                .scope = x->scope,
                                .provider = "gmail"};
}

static lt_err_t on_message(void *opaque, size_t index, lt_err_t status, const lt_gmail_message_t *m,
                           const lt_buf_t *raw, const char *reason)
{
    scope_ctx_t *x = opaque;
    if (status == LT_ERR_NOT_FOUND) {
        x->gone++; /* deleted since it was listed: nothing to ingest */
        lt_sync_note_expunged(x->s, x->cur_ids[index]);
        return LT_OK;
    }
    if (status == LT_ERR_TOO_BIG) {
        const char *id = x->cur_ids[index];
        x->skipped++;
        lt_buf_appendf(x->skipped_ids, "%s%s", lt_buf_len(x->skipped_ids) ? "," : "", id);
        lt_sync_note_skipped(x->s, id);
        lt_warn(lt_sync_log(x->s), "message %s of scope %s not ingested: %s", id, x->scope,
                reason ? reason : "too big");
        return LT_OK;
    }
    if (x->incr_track && x->is_label && m->has_labels &&
        !lt_gmail_labels_have(m->labels, x->label)) {
        /* it left the label after the history was read: not in the scope
         * (the next history shows its labelRemoved; it was never announced) */
        lt_debug(lt_sync_log(x->s), "message %s left scope %s before it was fetched", m->id,
                 x->scope);
        return LT_OK;
    }
    int64_t skipped_before = lt_sync_skipped(x->s);
    lt_err_t err = lt_sync_message_begin(x->s, m->id, m->thread_id[0] ? m->thread_id : NULL,
                                         x->scope, m->internal_date_ms, x->err, sizeof(x->err));
    if (!err)
        err =
            lt_sync_message_write(x->s, lt_buf_data(raw), lt_buf_len(raw), x->err, sizeof(x->err));
    if (err == LT_ERR_TOO_BIG) {
        lt_sync_message_abandon(x->s);
        x->skipped++;
        lt_buf_appendf(x->skipped_ids, "%s%s", lt_buf_len(x->skipped_ids) ? "," : "", m->id);
        lt_sync_note_skipped(x->s, m->id);
        lt_warn(lt_sync_log(x->s), "message %s not ingested: %s", m->id, x->err);
        return LT_OK;
    }
    if (!err)
        err = lt_sync_message_end(x->s, x->err, sizeof(x->err));
    if (err) {
        lt_sync_message_abandon(x->s);
        x->err_code = err;
        return err;
    }
    if (x->track && lt_sync_skipped(x->s) == skipped_before) {
        /* the message's labels right after its raw event (mail.raw.v1 has
         * no labels): the downstream's labels follow the mailbox from the
         * start */
        if (x->incr_track)
            ov_set(x, m->id, 1);
        if (m->labels_over)
            lt_warn(lt_sync_log(x->s), "message %s: labelIds too long to report", m->id);
        else if ((err = emit_labels(x, m->id, m->labels, m->history_id, x->err, sizeof(x->err))))
            x->err_code = err;
    }
    return err;
}

static lt_err_t on_minimal(void *opaque, size_t index, lt_err_t status, const lt_gmail_message_t *m,
                           const lt_buf_t *raw, const char *reason)
{
    scope_ctx_t *x = opaque;
    if (status != LT_OK)
        return LT_OK; /* gone: nothing to do */
    if (m->history_id && m->history_id <= x->old_history_id)
        return LT_OK; /* unchanged since the old watermark: ingested before */
    x->keep_labels[x->nkeep] = m->labels_over ? NULL : lt_xstrdup(m->labels);
    x->keep_hid[x->nkeep] = m->history_id;
    x->keep[x->nkeep++] = lt_xstrdup(m->id);
    return LT_OK;
}

static void heartbeat(lt_sync_t *s)
{
    lt_command_progress_t p = {lt_sync_messages(s), lt_sync_bytes(s), lt_sync_progress_done(s),
                               lt_sync_progress_total(s)};
    lt_command_heartbeat(lt_sync_db(s), lt_command_id(lt_sync_command(s)), &p, NULL, 0);
}

/* The cursor after the batch ending with last_id (docs/delivery-protocol.md,
 * "Progress of long syncs"): the page token that lists the page being
 * fetched and the last id of it done. messages.list is newest first, so
 * mail arriving meanwhile is listed before the token's position (and is in
 * the history after the full sync's historyId); a resumed listing skips the
 * page through last_id. */
static char *cursor_json(const scope_ctx_t *x, const char *last_id)
{
    json_object *o = json_object_new_object();
    if (x->cur_home == LT_CURSOR_SCOPE) {
        char h[32];
        snprintf(h, sizeof(h), "%llu", (unsigned long long)x->cur_history_id);
        json_object_object_add(o, "historyId", json_object_new_string(h));
        json_object_object_add(o, "resync", json_object_new_boolean(x->cur_resync));
        if (x->cur_resync) {
            snprintf(h, sizeof(h), "%llu", (unsigned long long)x->old_history_id);
            json_object_object_add(o, "oldHistoryId", json_object_new_string(h));
        }
    }
    json_object_object_add(o, "pageToken",
                           x->cur_page_token ? json_object_new_string(x->cur_page_token) : NULL);
    json_object_object_add(o, "lastId", json_object_new_string(last_id));
    json_object_object_add(o, "done", json_object_new_int64(lt_sync_progress_done(x->s)));
    char *out = lt_xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return out;
}

/* A stored cursor (lt_watermark_cursor_get) into x->resume_*; 1 when the
 * listing is complete ("complete": true). */
static int cursor_load(scope_ctx_t *x, const char *json)
{
    json_object *o = json_tokener_parse(json), *v;
    int complete = 0;
    if (!o)
        return 0;
    if (json_object_object_get_ex(o, "complete", &v) && json_object_get_boolean(v))
        complete = 1;
    if (json_object_object_get_ex(o, "historyId", &v))
        x->cur_history_id = strtoull(json_object_get_string(v), NULL, 10);
    if (json_object_object_get_ex(o, "resync", &v))
        x->cur_resync = json_object_get_boolean(v);
    if (json_object_object_get_ex(o, "oldHistoryId", &v))
        x->old_history_id = strtoull(json_object_get_string(v), NULL, 10);
    if (json_object_object_get_ex(o, "pageToken", &v) && json_object_is_type(v, json_type_string))
        x->resume_token = lt_xstrdup(json_object_get_string(v));
    if (json_object_object_get_ex(o, "lastId", &v) && json_object_is_type(v, json_type_string))
        x->resume_last_id = lt_xstrdup(json_object_get_string(v));
    if (json_object_object_get_ex(o, "done", &v))
        lt_sync_progress_resume(x->s, json_object_get_int64(v));
    json_object_put(o);
    return complete;
}

/* Fetch (format=raw) and ingest ids[0..n), checkpointing every batch; the
 * watermark of each batch from wm_of (may be NULL: events only). */
typedef int (*wm_fn)(void *opaque, size_t last_index, lt_watermark_t *wm);

static lt_err_t fetch_ids(scope_ctx_t *x, const char *const *ids, size_t n, wm_fn wm_of,
                          void *wm_opaque, int resync, char *errstr, size_t errstr_size)
{
    size_t batch = (size_t)lt_sync_batch_messages(x->s);
    for (size_t i = 0; i < n; i += batch) {
        if (lt_sync_cancelled(x->s))
            return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                             "cancelled (shutdown or revoke)");
        size_t k = n - i < batch ? n - i : batch;
        x->err[0] = 0;
        x->err_code = LT_OK;
        x->cur_ids = ids + i;
        lt_err_t err =
            lt_gmail_get_many(x->g, ids + i, k, LT_GMAIL_FORMAT_RAW,
                              &(lt_gmail_message_cb_t){on_message, x}, errstr, errstr_size);
        if (err) {
            if (x->err_code && x->err[0])
                lt_seterr(errstr, errstr_size, x->err_code, "%s", x->err);
            lt_sync_abort(x->s);
            return err;
        }
        lt_watermark_t wm;
        memset(&wm, 0, sizeof(wm));
        int have = wm_of && wm_of(wm_opaque, i + k - 1, &wm);
        if (x->cur_home) {
            char *cur = cursor_json(x, ids[i + k - 1]);
            err = lt_sync_checkpoint_cursor(x->s, x->scope, have ? &wm : NULL, resync, x->cur_home,
                                            cur, errstr, errstr_size);
            free(cur);
        } else {
            err =
                lt_sync_checkpoint(x->s, x->scope, have ? &wm : NULL, resync, errstr, errstr_size);
        }
        if (err)
            return err;
        set_total(x, n - (i + k)); /* messages gone since listing drop out */
        heartbeat(x->s);
    }
    return LT_OK;
}

static void free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* A resync with tracking: every id of the page (those skipped through on
 * a resume too) is marked listed by this resync in the known set ("listed:"
 * and the resync's position), committed with a checkpoint at the page's
 * end (after its messages' own batches, whose additions it must follow),
 * so the comparison at the end of the listing survives a resumed listing. */
static void listed_mark(const scope_ctx_t *x, char *out, size_t outsz)
{
    snprintf(out, outsz, "listed:%llu", (unsigned long long)x->cur_history_id);
}

static lt_err_t mark_listed(scope_ctx_t *x, const lt_gmail_page_t *page, char *errstr, size_t n)
{
    char mark[48];
    listed_mark(x, mark, sizeof(mark));
    for (size_t i = 0; i < page->n; i++)
        lt_sync_known_state(x->s, page->refs[i].id, mark);
    char *cur = cursor_json(x, page->refs[page->n - 1].id);
    lt_err_t err = lt_sync_checkpoint_cursor(x->s, x->scope, NULL, 0, x->cur_home, cur, errstr, n);
    free(cur);
    return err;
}

/* End of a resync's listing with tracking: every known message of the
 * scope the listing did not mark is gone (deleted during the history gap,
 * or out of the label): a deleted change each, in the final batch. */
typedef struct {
    const char *mark;
    char **ids;
    size_t n, alloc;
} unlisted_t;

static int collect_unlisted(const char *id, const char *state, void *opaque)
{
    unlisted_t *u = opaque;
    if (state && !strcmp(state, u->mark))
        return 0;
    if (u->n == u->alloc) {
        u->alloc = u->alloc ? u->alloc * 2 : 64;
        u->ids = lt_xrealloc(u->ids, u->alloc * sizeof(char *));
    }
    u->ids[u->n++] = lt_xstrdup(id);
    return 0;
}

typedef struct {
    scope_ctx_t *x;
    const char *const *ids;
    size_t deleted, relabelled;
    char err[512];
    lt_err_t err_code;
} unlisted_check_t;

/* An unlisted known message: 404 -> deleted; still there (out of the label
 * or the query, in the trash) -> its labels now. */
static lt_err_t on_unlisted(void *opaque, size_t index, lt_err_t status,
                            const lt_gmail_message_t *m, const lt_buf_t *raw, const char *reason)
{
    (void)raw;
    (void)reason;
    unlisted_check_t *u = opaque;
    lt_err_t err = LT_OK;
    if (status == LT_ERR_NOT_FOUND) {
        err = emit_deleted(u->x, u->ids[index], u->x->cur_history_id, u->err, sizeof(u->err));
        u->deleted++;
    } else if (status == LT_OK && !m->labels_over) {
        err = emit_labels(u->x, m->id, m->labels, m->history_id, u->err, sizeof(u->err));
        u->relabelled++;
    }
    if (err)
        u->err_code = err;
    return err;
}

static lt_err_t resync_deletions(scope_ctx_t *x, char *errstr, size_t n)
{
    char mark[48];
    listed_mark(x, mark, sizeof(mark));
    unlisted_t u = {mark, NULL, 0, 0};
    lt_watermark_key_t key = scope_key(x);
    lt_err_t err = lt_known_each(lt_sync_db(x->s), &key, collect_unlisted, &u, errstr, n);
    unlisted_check_t c = {x, (const char *const *)u.ids, 0, 0, "", LT_OK};
    if (!err && u.n) {
        err = lt_gmail_get_many(x->g, (const char *const *)u.ids, u.n, LT_GMAIL_FORMAT_MINIMAL,
                                &(lt_gmail_message_cb_t){on_unlisted, &c}, errstr, n);
        if (err && c.err_code && c.err[0])
            lt_seterr(errstr, n, c.err_code, "%s", c.err);
    }
    if (!err && u.n)
        lt_info(lt_sync_log(x->s),
                "resync of %s: %zu known message(s) not listed: %zu deleted, %zu still in the "
                "mailbox (labels reported)",
                x->scope, u.n, c.deleted, c.relabelled);
    free_strs(u.ids, u.n);
    return err;
}

/* A resync with tracking: of the messages changed since the old position,
 * those already announced (known) only changed their labels (a Gmail
 * message's content never changes): a labels change each, not a second raw
 * event; they leave x->keep. */
static lt_err_t keep_known_labels(scope_ctx_t *x, char *errstr, size_t n)
{
    unsigned char *known = lt_xcalloc(x->nkeep, 1);
    lt_watermark_key_t key = scope_key(x);
    lt_err_t err = lt_known_which(lt_sync_db(x->s), &key, (const char *const *)x->keep, x->nkeep,
                                  known, errstr, n);
    size_t k = 0;
    for (size_t i = 0; i < x->nkeep; i++) {
        if (!err && known[i]) {
            if (x->keep_labels[i]) /* NULL: too long to report */
                err = emit_labels(x, x->keep[i], x->keep_labels[i], x->keep_hid[i], errstr, n);
            free(x->keep[i]);
            free(x->keep_labels[i]);
            continue;
        }
        x->keep[k] = x->keep[i];
        x->keep_labels[k] = x->keep_labels[i];
        x->keep_hid[k++] = x->keep_hid[i];
    }
    x->nkeep = k;
    free(known);
    return err;
}

/* List the scope (optionally narrowed by extra_q) and ingest every message;
 * resync: only those changed after x->old_history_id. */
static lt_err_t list_and_fetch(scope_ctx_t *x, const char *extra_q, int resync, char *errstr,
                               size_t n)
{
    char q[2200];
    const char *query = NULL;
    if (x->query && extra_q)
        snprintf(q, sizeof(q), "(%s) %s", x->query, extra_q), query = q;
    else if (x->query)
        query = x->query;
    else if (extra_q)
        query = extra_q;
    /* a stored cursor: list from its page, skip the page through its last id */
    char *token = x->resume_token;
    char *skip_through = x->resume_last_id;
    x->resume_token = x->resume_last_id = NULL;
    lt_err_t err = LT_OK;
    uint64_t listed = 0;
    do {
        lt_gmail_page_t page;
        err = lt_gmail_list(x->g, x->is_label ? x->label : NULL, query, token, &page, errstr, n);
        if (err == LT_ERR_FINAL && token && skip_through) {
            /* the stored page token is no longer accepted: list again from
             * the start (messages done before are published again, with
             * the same ids; nothing is missed) */
            lt_warn(lt_sync_log(x->s),
                    "scope %s: stored page token refused (%s); listing again "
                    "from the start",
                    x->scope, errstr);
            free(token);
            token = NULL;
            free(skip_through);
            skip_through = NULL;
            err = lt_gmail_list(x->g, x->is_label ? x->label : NULL, query, NULL, &page, errstr, n);
        }
        free(x->cur_page_token);
        x->cur_page_token = token;
        token = NULL;
        if (err)
            break;
        token = page.next_page_token;
        page.next_page_token = NULL;
        size_t from = 0;
        if (skip_through) {
            for (size_t i = 0; i < page.n; i++)
                if (!strcmp(page.refs[i].id, skip_through))
                    from = i + 1;
            if (!from)
                lt_warn(lt_sync_log(x->s),
                        "scope %s: message %s of the stored cursor is no longer "
                        "listed; its page is fetched whole",
                        x->scope, skip_through);
            else
                lt_info(lt_sync_log(x->s), "scope %s: resuming the listing after message %s",
                        x->scope, skip_through);
            free(skip_through);
            skip_through = NULL;
        }
        listed += page.n;
        x->est_after =
            lt_sync_gmail_list_remaining(page.result_size_estimate, listed, token != NULL);
        set_total(x, page.n - from); /* resync: an upper bound until the minimal gets */
        const char **ids = lt_xcalloc(page.n ? page.n : 1, sizeof(char *));
        for (size_t i = from; i < page.n; i++)
            ids[i - from] = page.refs[i].id;
        size_t nids = page.n - from;
        if (resync && nids) {
            x->keep = lt_xcalloc(nids, sizeof(char *));
            x->keep_labels = lt_xcalloc(nids, sizeof(char *));
            x->keep_hid = lt_xcalloc(nids, sizeof(uint64_t));
            x->nkeep = 0;
            err = lt_gmail_get_many(x->g, ids, nids, LT_GMAIL_FORMAT_MINIMAL,
                                    &(lt_gmail_message_cb_t){on_minimal, x}, errstr, n);
            if (!err && x->track && x->nkeep)
                err = keep_known_labels(x, errstr, n);
            if (!err)
                set_total(x, x->nkeep);
            if (!err)
                err =
                    fetch_ids(x, (const char *const *)x->keep, x->nkeep, NULL, NULL, 0, errstr, n);
            if (!err && nids > x->nkeep)
                lt_info(lt_sync_log(x->s),
                        "resync of %s: %zu of %zu listed messages unchanged since historyId %llu; "
                        "not published again",
                        x->scope, nids - x->nkeep, nids, (unsigned long long)x->old_history_id);
            free_strs(x->keep, x->nkeep);
            free_strs(x->keep_labels, x->nkeep);
            free(x->keep_hid);
            x->keep = x->keep_labels = NULL;
            x->keep_hid = NULL;
            x->nkeep = 0;
        } else {
            err = fetch_ids(x, ids, nids, NULL, NULL, 0, errstr, n);
        }
        if (!err && x->track && x->cur_resync && page.n)
            err = mark_listed(x, &page, errstr, n);
        free(ids);
        lt_gmail_page_free(&page);
    } while (!err && token);
    free(token);
    free(skip_through);
    free(x->cur_page_token);
    x->cur_page_token = NULL;
    x->est_after = 0;
    if (!err)
        lt_debug(lt_sync_log(x->s), "scope %s: %llu messages listed", x->scope,
                 (unsigned long long)listed);
    return err;
}

/* A first sync or full resync. Its progress is the scope's cursor
 * (mail_sync_cursors), so whichever command runs the scope next resumes it;
 * resume: x->cur_history_id and x->resume_* come from that cursor. */
static lt_err_t full_sync(scope_ctx_t *x, int resync, int resume, char *errstr, size_t n)
{
    lt_err_t err = LT_OK;
    if (!resume) {
        /* The position is taken before listing: whatever arrives meanwhile
         * is in the history after it (and maybe in the list too: same
         * event id). A resumed sync keeps the position of its start. */
        x->cur_history_id = 0;
        err = lt_gmail_profile(x->g, &x->cur_history_id, errstr, n);
        if (err)
            return err;
        x->cur_resync = resync;
        if (resync && x->track) {
            /* what happened since the stored position is not known one by
             * one: say so first (committed with the listing's first batch) */
            lt_sync_change_t ch = {.kind = LT_CHANGE_RESET,
                                   .mailbox = x->scope,
                                   .position = (int64_t)x->cur_history_id,
                                   .reset_reason = LT_CHANGE_RESET_HISTORY_EXPIRED};
            if ((err = lt_sync_change(x->s, &ch, errstr, n)))
                return err;
        }
    }
    x->cur_home = LT_CURSOR_SCOPE;
    err = list_and_fetch(x, NULL, x->cur_resync, errstr, n);
    x->cur_home = LT_CURSOR_NONE;
    if (!err && x->track && x->cur_resync)
        err = resync_deletions(x, errstr, n);
    if (err) {
        lt_sync_abort(x->s); /* nothing of an unfinished batch goes with another scope's */
        return err;
    }
    /* the watermark, and the cursor deleted, with the last batch */
    lt_watermark_t wm = {.history_id = x->cur_history_id};
    return lt_sync_checkpoint_cursor(x->s, x->scope, &wm, x->cur_resync, LT_CURSOR_SCOPE, NULL,
                                     errstr, n);
}

/* History refs of one page, and the watermark after each prefix. */
typedef struct {
    const lt_gmail_page_t *page;
    const size_t *map; /* index in the fetched list -> index in page->refs */
    size_t nmap;
} hist_wm_t;

static int hist_wm(void *opaque, size_t last, lt_watermark_t *wm)
{
    hist_wm_t *h = opaque;
    size_t ri = h->map[last];
    uint64_t rec = h->page->refs[ri].history_id;
    /* a record whose messages straddle two batches is not done yet */
    if (last + 1 < h->nmap && h->page->refs[h->map[last + 1]].history_id == rec)
        rec--;
    if (!rec)
        return 0;
    wm->history_id = rec;
    return 1;
}

/* Search scope: keep the candidates messages.list q= names. The query is
 * listed once per command, lazily (newest first: new mail is found on its
 * first pages) and kept across history pages; only a candidate recorded
 * after the listing started (history id above query_upto) that the listing
 * did not name lists it again. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void query_reset(scope_ctx_t *x)
{
    free_strs(x->query_ids, x->nquery_ids);
    x->query_ids = NULL;
    x->nquery_ids = x->query_alloc = x->query_sorted = 0;
    free(x->query_token);
    x->query_token = NULL;
    x->query_started = x->query_done = 0;
}

static lt_err_t filter_query(scope_ctx_t *x, const lt_gmail_page_t *page, char *keep, char *errstr,
                             size_t n)
{
    size_t left = page->n;
    lt_err_t err = LT_OK;
    int restarted = 0;
    memset(keep, 0, page->n);
    if (x->nquery_ids) {
        if (x->query_sorted < x->nquery_ids) {
            qsort(x->query_ids, x->nquery_ids, sizeof(char *), cmp_str);
            x->query_sorted = x->nquery_ids;
        }
        for (size_t k = 0; k < page->n; k++) {
            const char *id = page->refs[k].id;
            if (bsearch(&id, x->query_ids, x->nquery_ids, sizeof(char *), cmp_str)) {
                keep[k] = 1;
                left--;
            }
        }
    }
    while (left) {
        if (x->query_done) {
            int newer = 0;
            for (size_t k = 0; k < page->n && !newer; k++)
                newer = !keep[k] && page->refs[k].history_id > x->query_upto;
            if (!newer || restarted)
                break; /* not (or no longer) in the query's result */
            query_reset(x);
            restarted = 1;
        }
        if (!x->query_started) {
            /* every record up to the mailbox's position at this history
             * page existed before this listing */
            x->query_upto = page->history_id;
            x->query_started = 1;
        }
        lt_gmail_page_t lp;
        err = lt_gmail_list(x->g, NULL, x->query, x->query_token, &lp, errstr, n);
        if (err)
            break;
        free(x->query_token);
        x->query_token = lp.next_page_token;
        lp.next_page_token = NULL;
        x->query_done = x->query_token == NULL;
        for (size_t i = 0; i < lp.n; i++) {
            for (size_t k = 0; k < page->n; k++)
                if (!keep[k] && !strcmp(lp.refs[i].id, page->refs[k].id)) {
                    keep[k] = 1;
                    left--;
                }
            if (x->nquery_ids == x->query_alloc) {
                x->query_alloc = x->query_alloc ? x->query_alloc * 2 : 512;
                x->query_ids = lt_xrealloc(x->query_ids, x->query_alloc * sizeof(char *));
            }
            x->query_ids[x->nquery_ids++] = lt_xstrdup(lp.refs[i].id);
        }
        lt_gmail_page_free(&lp);
    }
    return err;
}

static lt_err_t incremental(scope_ctx_t *x, uint64_t start, char *errstr, size_t n)
{
    char *token = NULL;
    lt_err_t err = LT_OK;
    uint64_t last_hid = start;
    for (;;) {
        lt_gmail_page_t page;
        err = lt_gmail_history(x->g, start, x->is_label ? x->label : NULL, token, &page, errstr, n);
        free(token);
        token = NULL;
        if (err == LT_ERR_NOT_FOUND) {
            lt_warn(lt_sync_log(x->s),
                    "scope %s: history from %llu is no longer available (%s); full resync",
                    x->scope, (unsigned long long)start, errstr);
            x->old_history_id = start;
            return full_sync(x, 1, 0, errstr, n);
        }
        if (err)
            return err;
        if (last_hid == start && page.history_id && page.history_id < start) {
            /* Gmail's historyId only grows: a mailbox whose current one is
             * behind the stored position was recreated or restored, and
             * its history says nothing of what it holds now. Everything is
             * listed again, nothing filtered as "unchanged". */
            lt_warn(lt_sync_log(x->s),
                    "scope %s: the mailbox's historyId %llu is behind the stored %llu "
                    "(mailbox recreated or restored); full resync",
                    x->scope, (unsigned long long)page.history_id, (unsigned long long)start);
            lt_gmail_page_free(&page);
            x->old_history_id = 0;
            return full_sync(x, 1, 0, errstr, n);
        }
        token = page.next_page_token;
        page.next_page_token = NULL;
        char *keep = lt_xcalloc(page.n ? page.n : 1, 1);
        if (!x->is_label && page.n)
            err = filter_query(x, &page, keep, errstr, n);
        else
            memset(keep, 1, page.n);
        const char **ids = lt_xcalloc(page.n ? page.n : 1, sizeof(char *));
        size_t *map = lt_xcalloc(page.n ? page.n : 1, sizeof(size_t));
        size_t m = 0;
        for (size_t i = 0; !err && i < page.n; i++)
            if (keep[i]) {
                ids[m] = page.refs[i].id;
                map[m++] = i;
            }
        hist_wm_t hw = {&page, map, m};
        x->est_after = 0; /* more history pages may follow: not counted */
        if (!err && m)
            set_total(x, m);
        if (!err)
            err = fetch_ids(x, ids, m, hist_wm, &hw, 0, errstr, n);
        last_hid = page.history_id;
        free(ids);
        free(map);
        free(keep);
        lt_gmail_page_free(&page);
        if (err || !token)
            break;
    }
    free(token);
    if (err)
        return err;
    /* Everything up to the mailbox's historyId is done. */
    lt_watermark_t wm = {.history_id = last_hid};
    return lt_sync_checkpoint(x->s, x->scope, &wm, 0, errstr, n);
}

/* --- incremental with change tracking ------------------------------------ */

/* Fetch the pending candidates (their raw events and labels) and commit
 * everything since the last checkpoint with the watermark at record w: every
 * record up to w is then fully handled, and nothing after it is in the batch. */
static lt_err_t track_flush(scope_ctx_t *x, const char **pend, size_t *npend, uint64_t w,
                            char *errstr, size_t n)
{
    if (lt_sync_cancelled(x->s)) {
        lt_sync_abort(x->s);
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "cancelled (shutdown or revoke)");
    }
    lt_err_t err = LT_OK;
    if (*npend) {
        x->err[0] = 0;
        x->err_code = LT_OK;
        x->cur_ids = pend;
        err = lt_gmail_get_many(x->g, pend, *npend, LT_GMAIL_FORMAT_RAW,
                                &(lt_gmail_message_cb_t){on_message, x}, errstr, n);
        if (err) {
            if (x->err_code && x->err[0])
                lt_seterr(errstr, n, x->err_code, "%s", x->err);
            lt_sync_abort(x->s);
            return err;
        }
    }
    size_t fetched = *npend;
    *npend = 0;
    lt_watermark_t wm = {.history_id = w};
    err = lt_sync_checkpoint(x->s, x->scope, &wm, 0, errstr, n);
    if (!err && fetched)
        heartbeat(x->s);
    return err;
}

static int strs_find(const char *const *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], id))
            return (int)i;
    return -1;
}

static void strs_drop(const char **v, size_t *n, const char *id)
{
    int i = strs_find(v, *n, id);
    if (i < 0)
        return;
    memmove(v + i, v + i + 1, (*n - (size_t)i - 1) * sizeof(*v));
    (*n)--;
}

/* One history page, record by record (docs/gmail.md, "Mailbox changes"):
 * a message added to the scope is fetched and published (then its labels);
 * a label change of a known message is a labels change; a messageDeleted of
 * a known message, or the removal of a label scope's label, a deleted
 * change. A message the page both adds and deletes is never published nor
 * reported. Batches end at record boundaries, each with its watermark. */
static lt_err_t track_page(scope_ctx_t *x, lt_gmail_hist_t *h, char *errstr, size_t n)
{
    size_t ne = h->n;
    if (!ne)
        return LT_OK;
    lt_err_t err = LT_OK;
    char *eligible = lt_xcalloc(ne, 1); /* an entry that adds the message to the scope */
    unsigned char *known = lt_xcalloc(ne, 1);
    const char **ids = lt_xcalloc(ne, sizeof(char *));
    const char **pend = lt_xcalloc(ne, sizeof(char *));  /* to fetch in the open batch */
    const char **cands = lt_xcalloc(ne, sizeof(char *)); /* added to the scope in this page */
    size_t npend = 0, ncands = 0, changes = 0, batch = (size_t)lt_sync_batch_messages(x->s);

    for (size_t i = 0; i < ne; i++)
        ids[i] = h->e[i].ref.id;
    if (x->is_label) {
        for (size_t i = 0; i < ne; i++) {
            const lt_gmail_hist_entry_t *e = &h->e[i];
            eligible[i] = (e->kind == LT_GMAIL_HIST_ADDED &&
                           (!e->labels || lt_gmail_labels_have(e->labels, x->label))) ||
                          (e->kind == LT_GMAIL_HIST_LABELS_ADDED &&
                           lt_gmail_labels_have(e->changed, x->label));
        }
    } else {
        /* search scope: the messageAdded entries its query lists */
        lt_gmail_page_t pg;
        memset(&pg, 0, sizeof(pg));
        pg.refs = lt_xcalloc(ne, sizeof(lt_gmail_ref_t));
        size_t *map = lt_xcalloc(ne, sizeof(size_t));
        for (size_t i = 0; i < ne; i++)
            if (h->e[i].kind == LT_GMAIL_HIST_ADDED) {
                pg.refs[pg.n] = h->e[i].ref;
                map[pg.n++] = i;
            }
        pg.history_id = h->page.history_id;
        char *keep = lt_xcalloc(pg.n ? pg.n : 1, 1);
        if (pg.n)
            err = filter_query(x, &pg, keep, errstr, n);
        for (size_t j = 0; !err && j < pg.n; j++)
            eligible[map[j]] = keep[j];
        free(keep);
        free(map);
        free(pg.refs);
    }
    lt_watermark_key_t key = scope_key(x);
    if (!err)
        err = lt_known_which(lt_sync_db(x->s), &key, ids, ne, known, errstr, n);
    ov_reset(x);
    size_t total = 0;
    for (size_t i = 0; i < ne; i++)
        total += eligible[i] && !known[i];
    x->est_after = 0;
    if (!err && total)
        set_total(x, total);

    for (size_t i = 0; !err && i < ne; i++) {
        const lt_gmail_hist_entry_t *e = &h->e[i];
        const char *id = e->ref.id;
        uint64_t rid = e->ref.history_id;
        int ov = ov_get(x, id);
        int is_known = ov >= 0 ? ov : known[i];
        int leaves = e->kind == LT_GMAIL_HIST_DELETED;
        if (eligible[i] && strs_find(cands, ncands, id) < 0) {
            if (is_known) {
                /* already announced in the scope: not published twice */
                if (!e->labels_over && !(err = emit_labels(x, id, e->labels, rid, errstr, n)))
                    changes++;
            } else {
                pend[npend++] = id;
                cands[ncands++] = id;
            }
        } else if (leaves) {
            /* gone: a pending fetch is dropped (a message added and
             * deleted here is never published); a known message is
             * reported deleted */
            strs_drop(pend, &npend, id);
            strs_drop(cands, &ncands, id);
            if (is_known && !(err = emit_deleted(x, id, rid, errstr, n))) {
                ov_set(x, id, 0);
                changes++;
            }
        } else if ((e->kind == LT_GMAIL_HIST_LABELS_ADDED ||
                    e->kind == LT_GMAIL_HIST_LABELS_REMOVED) &&
                   strs_find(cands, ncands, id) < 0 && is_known && !e->labels_over) {
            /* (a message fetched for this page already carries labels newer
             * than any of its records here) */
            if (!(err = emit_labels(x, id, e->labels, rid, errstr, n)))
                changes++;
        }
        int boundary = i + 1 == ne || h->e[i + 1].ref.history_id != rid;
        if (!err && boundary && npend + changes >= batch) {
            err = track_flush(x, pend, &npend, rid, errstr, n);
            changes = 0;
        }
    }
    if (!err && (npend || changes))
        err = track_flush(x, pend, &npend, h->page.last_record_id, errstr, n);
    if (err)
        lt_sync_abort(x->s);
    free(eligible);
    free(known);
    free(ids);
    free(pend);
    free(cands);
    return err;
}

static lt_err_t incremental_track(scope_ctx_t *x, uint64_t start, char *errstr, size_t n)
{
    char *token = NULL;
    lt_err_t err = LT_OK;
    uint64_t last_hid = start;
    for (;;) {
        lt_gmail_hist_t h;
        /* the whole mailbox's history, not labelId-filtered: a known
         * message that left the label is still followed (its labels, its
         * deletion), which Gmail's labelId filter would hide */
        err = lt_gmail_history_all(x->g, start, NULL, token, &h, errstr, n);
        free(token);
        token = NULL;
        if (err == LT_ERR_NOT_FOUND) {
            lt_warn(lt_sync_log(x->s),
                    "scope %s: history from %llu is no longer available (%s); reset and full "
                    "resync",
                    x->scope, (unsigned long long)start, errstr);
            x->old_history_id = start;
            x->incr_track = 0;
            return full_sync(x, 1, 0, errstr, n);
        }
        if (err)
            return err;
        if (last_hid == start && h.page.history_id < start) {
            lt_warn(lt_sync_log(x->s),
                    "scope %s: the mailbox's historyId %llu is behind the stored %llu "
                    "(mailbox recreated or restored); reset and full resync",
                    x->scope, (unsigned long long)h.page.history_id, (unsigned long long)start);
            lt_gmail_hist_free(&h);
            x->old_history_id = 0;
            x->incr_track = 0;
            return full_sync(x, 1, 0, errstr, n);
        }
        token = h.page.next_page_token;
        h.page.next_page_token = NULL;
        x->incr_track = 1;
        err = track_page(x, &h, errstr, n);
        x->incr_track = 0;
        last_hid = h.page.history_id;
        lt_gmail_hist_free(&h);
        if (err || !token)
            break;
    }
    free(token);
    ov_reset(x);
    if (err)
        return err;
    lt_watermark_t wm = {.history_id = last_hid};
    return lt_sync_checkpoint(x->s, x->scope, &wm, 0, errstr, n);
}

static lt_err_t sync_scope(lt_sync_t *s, lt_gmail_t *g, const char *scope, const char *bf_query,
                           char *errstr, size_t n)
{
    scope_ctx_t x;
    memset(&x, 0, sizeof(x));
    x.s = s;
    x.g = g;
    x.scope = scope;
    x.skipped_ids = lt_buf_new(64 * 1024);
    lt_sync_set_scope(s, scope);
    int system = 0;
    char label[LT_GMAIL_ID_MAX + 1];
    lt_err_t err = LT_OK;
    x.is_label = lt_sync_gmail_scope_label(scope, label, &system);
    if (x.is_label && !system) {
        err = lt_gmail_label_id(g, label, x.label, errstr, n);
        if (err == LT_ERR_NOT_FOUND) { /* the caller reports the scope as missing */
            char why[512];
            snprintf(why, sizeof(why), "%.511s", errstr);
            lt_seterr(errstr, n, err, "scope %s: %s", scope, why);
        }
        if (err)
            goto out;
    } else if (x.is_label) {
        snprintf(x.label, sizeof(x.label), "%s", label);
    } else {
        x.query = scope;
    }

    /* change tracking: known set and labels (docs/gmail.md, "Mailbox changes") */
    x.track = lt_sync_changes_enabled(s, scope);
    lt_sync_track_known(s, x.track);

    const lt_account_t *a = lt_sync_account(s);
    char cur[LT_WATERMARK_CURSOR_MAX];
    if (bf_query) {
        /* the backfill's position: in its command row (same id when Kafka
         * delivers it again) */
        err = lt_watermark_cursor_get(lt_sync_db(s),
                                      &(lt_watermark_key_t){.tenant = lt_account_tenant(a),
                                                            .account_id = lt_account_id(a),
                                                            .scope = scope,
                                                            .provider = "gmail"},
                                      LT_CURSOR_COMMAND, lt_command_id(lt_sync_command(s)), cur,
                                      errstr, n);
        if (err && err != LT_ERR_NOT_FOUND)
            goto out;
        if (!err && cursor_load(&x, cur)) {
            lt_info(lt_sync_log(s), "backfill of scope %s: done by an earlier run", scope);
            goto out;
        }
        x.cur_home = LT_CURSOR_COMMAND;
        err = list_and_fetch(&x, bf_query, 0, errstr, n);
        if (!err)
            err = lt_sync_checkpoint_cursor(s, scope, NULL, 0, LT_CURSOR_COMMAND,
                                            "{\"complete\": true}", errstr, n);
        goto out;
    }
    err =
        lt_watermark_cursor_get(lt_sync_db(s),
                                &(lt_watermark_key_t){.tenant = lt_account_tenant(a),
                                                      .account_id = lt_account_id(a),
                                                      .scope = scope,
                                                      .provider = "gmail"},
                                LT_CURSOR_SCOPE, lt_command_id(lt_sync_command(s)), cur, errstr, n);
    if (err && err != LT_ERR_NOT_FOUND)
        goto out;
    if (!err) {
        /* a full sync an earlier command left unfinished: resume it */
        cursor_load(&x, cur);
        if (x.cur_history_id) {
            lt_info(lt_sync_log(s),
                    "scope %s: resuming the %s started at historyId %llu (%lld done before)", scope,
                    x.cur_resync ? "full resync" : "first sync",
                    (unsigned long long)x.cur_history_id, (long long)lt_sync_progress_done(s));
            err = full_sync(&x, x.cur_resync, 1, errstr, n);
            goto out;
        }
        free(x.resume_token);
        free(x.resume_last_id);
        x.resume_token = x.resume_last_id = NULL;
    }
    err = LT_OK;
    lt_watermark_t wm;
    lt_err_t werr = lt_watermark_get(lt_sync_db(s),
                                     &(lt_watermark_key_t){.tenant = lt_account_tenant(a),
                                                           .account_id = lt_account_id(a),
                                                           .scope = scope,
                                                           .provider = "gmail"},
                                     &wm, errstr, n);
    if (werr == LT_ERR_NOT_FOUND)
        err = full_sync(&x, 0, 0, errstr, n);
    else if (werr)
        err = werr;
    else if (x.track)
        err = incremental_track(&x, wm.history_id, errstr, n);
    else
        err = incremental(&x, wm.history_id, errstr, n);
out:
    lt_sync_track_known(s, 0);
    ov_free(&x);
    if (!err && x.skipped)
        lt_warn(lt_sync_log(s), "scope %s: %llu message(s) not ingested (too big): %s", scope,
                (unsigned long long)x.skipped, lt_buf_str(x.skipped_ids));
    if (x.gone)
        lt_info(lt_sync_log(s), "scope %s: %llu message(s) deleted before they were fetched", scope,
                (unsigned long long)x.gone);
    lt_buf_destroy(x.skipped_ids);
    free(x.resume_token);
    free(x.resume_last_id);
    query_reset(&x);
    return err;
}

lt_err_t lt_sync_gmail_run(lt_sync_t *s, const lt_sync_gmail_opts_t *opts, char *errstr,
                           size_t errstr_size)
{
    gmail_conf_t conf;
    const lt_account_t *a = lt_sync_account(s);
    const lt_command_t *cmd = lt_sync_command(s);
    lt_gmail_t *g = NULL;
    lt_err_t err = parse_conf(a, opts->secrets_dir, &conf, errstr, errstr_size);
    if (err)
        goto out;
    char bfq[128];
    const char *bf = NULL;
    if (lt_command_kind(cmd) == LT_SYNC_BACKFILL) {
        err = lt_sync_gmail_date_query(lt_command_backfill_start_date(cmd),
                                       lt_command_backfill_end_date(cmd), bfq, sizeof(bfq), errstr,
                                       errstr_size);
        if (err)
            goto out;
        bf = bfq;
    }
    lt_gmail_opts_t go = {
        .api_url = opts->api_url,
        .token_url = opts->token_url,
        .ca_file = opts->ca_file,
        .user = conf.user,
        .client_id = conf.client_id,
        .client_secret = conf.client_secret,
        .refresh_token = conf.refresh_token,
        .max_inflight = opts->max_inflight,
        .quota_units_per_s = opts->quota_units_per_s,
        .user_units_per_min = opts->user_units_per_min,
        .project_units_per_min = opts->project_units_per_min,
        .quota_project = opts->quota_project,
        .quota_user = opts->quota_user,
        .pacer = opts->pacer,
        .timeout_s = opts->timeout_s,
        .max_retries = opts->max_retries,
        .retry_base_ms = opts->retry_base_ms,
        .retry_max_ms = 64000,
        .max_message_bytes = lt_sync_max_message_bytes(s),
        .log = lt_sync_log(s),
        .cancel = opts->cancel,
        .tokens = opts->tokens,
    };
    g = lt_gmail_new(&go);
    /* Scopes fail independently (lt_sync_scope_done): a missing label or a
     * scope that keeps failing does not keep the others from syncing. */
    const char *scope = lt_command_scope(cmd);
    size_t nsc = scope ? 1 : conf.nscopes;
    for (size_t i = 0; i < nsc; i++) {
        const char *sc = scope ? scope : conf.scopes[i];
        char e[1024] = "";
        lt_err_t serr = sync_scope(s, g, sc, bf, e, sizeof(e));
        lt_sync_scope_done(s, sc,
                           !serr                      ? LT_SYNC_SCOPE_OK
                           : serr == LT_ERR_NOT_FOUND ? LT_SYNC_SCOPE_MISSING
                                                      : LT_SYNC_SCOPE_FAILED,
                           serr == LT_ERR_NOT_FOUND ? LT_ERR_FINAL : serr, e);
        if (!serr)
            continue;
        lt_warn(lt_sync_log(s), "scope %s not synced (%s): %s", sc,
                serr == LT_ERR_NOT_FOUND ? "missing" : lt_err_name(serr), e);
        /* What fails for every scope ends the command here. */
        if (serr == LT_ERR_REAUTH || lt_sync_cancelled(s) || lt_sync_in_doubt(s) ||
            !lt_db_ok(lt_sync_db(s))) {
            err = lt_seterr(errstr, errstr_size, serr, "%s", e);
            break;
        }
    }
    if (!err)
        err = lt_sync_scopes_result(s, errstr, errstr_size);
    lt_gmail_stats_t st;
    lt_gmail_stats(g, &st);
    lt_info(lt_sync_log(s),
            "gmail: %lld requests, %lld retries, %lld quota errors (%lld user, %lld project, "
            "%lld rate cuts), %lld server errors, %lld "
            "units, %lld token refreshes, %lld cached token(s) used, %d in flight at most",
            (long long)st.requests, (long long)st.retries, (long long)st.quota_errors,
            (long long)st.quota_errors_user, (long long)st.quota_errors_project,
            (long long)st.rate_cuts, (long long)st.server_errors, (long long)st.units,
            (long long)st.token_refreshes, (long long)st.token_reuses, st.max_inflight_seen);
    if (opts->stats)
        *opts->stats = st;
    if (err == LT_ERR_REAUTH) {
        lt_account_set_status(lt_sync_db(s), lt_account_tenant(a), lt_account_id(a), "needs_reauth",
                              errstr, NULL, 0);
        lt_warn(lt_sync_log(s), "account marked needs_reauth: %s", errstr);
    }
out:
    lt_gmail_destroy(g);
    conf_free(&conf);
    return err;
}
