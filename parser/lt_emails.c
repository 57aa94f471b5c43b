#include "lt_emails.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Years 1..9999 in epoch milliseconds (Postgres timestamptz takes more, but
 * nothing sensible lies outside). */
#define MS_MIN (-62135596800000LL)
#define MS_MAX (253402300799999LL)

/* Length of the valid UTF-8 sequence at p (1..4), 0 if invalid. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    uint32_t cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* A JSON string literal: ", \ and controls escaped, invalid UTF-8 as
 * U+FFFD, NUL dropped. */
static lt_err_t put_str(lt_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    lt_err_t err = lt_buf_append(b, "\"", 1);
    size_t run = 0; /* start of bytes copied as they are */
    size_t i = 0;
    while (!err && i < n) {
        uint8_t c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        size_t sl = c >= 0x80 ? utf8_seq(p + i, n - i) : 1;
        if (c >= 0x80 && sl) {
            i += sl;
            continue;
        }
        err = lt_buf_append(b, p + run, i - run);
        if (err)
            break;
        if (c == '"')
            err = lt_buf_append(b, "\\\"", 2);
        else if (c == '\\')
            err = lt_buf_append(b, "\\\\", 2);
        else if (c == '\n')
            err = lt_buf_append(b, "\\n", 2);
        else if (c == '\t')
            err = lt_buf_append(b, "\\t", 2);
        else if (c == '\r')
            err = lt_buf_append(b, "\\r", 2);
        else if (c == 0)
            ; /* Postgres text cannot hold NUL */
        else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            err = lt_buf_append(b, e, 6);
        } else {
            err = lt_buf_append(b, "\xEF\xBF\xBD", 3); /* invalid byte */
        }
        i++;
        run = i;
    }
    if (!err)
        err = lt_buf_append(b, p + run, i - run);
    if (!err)
        err = lt_buf_append(b, "\"", 1);
    return err;
}

static lt_err_t put_key(lt_buf_t *b, int *first, const char *key)
{
    lt_err_t err = lt_buf_appendf(b, "%s\"%s\":", *first ? "" : ",", key);
    *first = 0;
    return err;
}

static lt_err_t field_str(lt_buf_t *b, int *first, const char *key, const char *v)
{
    lt_err_t err = put_key(b, first, key);
    if (err)
        return err;
    if (!v)
        return lt_buf_append(b, "null", 4);
    return put_str(b, v, strlen(v));
}

static lt_err_t field_int(lt_buf_t *b, int *first, const char *key, int64_t v)
{
    lt_err_t err = put_key(b, first, key);
    return err ? err : lt_buf_appendf(b, "%" PRId64, v);
}

static lt_err_t field_bool(lt_buf_t *b, int *first, const char *key, int v)
{
    lt_err_t err = put_key(b, first, key);
    return err ? err : lt_buf_appendf(b, "%s", v ? "true" : "false");
}

/* A JSON array of strings (NULL entries as ""). */
static lt_err_t put_strv(lt_buf_t *b, const char *const *v, size_t n)
{
    lt_err_t err = lt_buf_append(b, "[", 1);
    for (size_t i = 0; !err && i < n; i++) {
        if (i)
            err = lt_buf_append(b, ",", 1);
        if (!err)
            err = put_str(b, v[i] ? v[i] : "", v[i] ? strlen(v[i]) : 0);
    }
    return err ? err : lt_buf_append(b, "]", 1);
}

static lt_err_t field_strv(lt_buf_t *b, int *first, const char *key, const char *const *v, size_t n)
{
    lt_err_t err = put_key(b, first, key);
    return err ? err : put_strv(b, v, n);
}

static int is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

static lt_err_t row_check(const lt_email_row_t *r, char *errstr, size_t errstr_size)
{
    static const char *names[] = {"tenant_id",      "account_id", "provider_message_id",
                                  "event_id",       "provider",   "raw_bucket",
                                  "raw_object_key", "raw_sha256", "data_classification"};
    const char *vals[] = {r->tenant_id,      r->account_id, r->provider_message_id,
                          r->event_id,       r->provider,   r->raw_bucket,
                          r->raw_object_key, r->raw_sha256, r->data_classification};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
        if (!vals[i])
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "emails row: %s missing",
                             names[i]);
    if (!is_uuid(r->event_id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "emails row: event_id is not a UUID");
    if (strcmp(r->provider, "gmail") && strcmp(r->provider, "imap"))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "emails row: unknown provider");
    if (r->received_at_ms < MS_MIN || r->received_at_ms > MS_MAX)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "emails row: received_at %" PRId64 " ms out of range", r->received_at_ms);
    if (r->body_source && strcmp(r->body_source, "text/plain") &&
        strcmp(r->body_source, "text/html"))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "emails row: unknown body_source");
    if ((r->n_to && !r->to_addrs) || (r->n_cc && !r->cc_addrs) ||
        (r->n_attachments && !r->attachments))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "emails row: NULL array");
    return LT_OK;
}

static lt_err_t put_attachments(lt_buf_t *b, int *first, const lt_email_row_t *r)
{
    lt_err_t err = put_key(b, first, "attachments");
    if (!err)
        err = lt_buf_append(b, "[", 1);
    for (size_t i = 0; !err && i < r->n_attachments; i++) {
        const lt_email_attachment_t *a = &r->attachments[i];
        int f = 1;
        err = lt_buf_append(b, i ? ",{" : "{", i ? 2 : 1);
        if (!err)
            err = field_str(b, &f, "attachment_id", a->attachment_id);
        if (!err)
            err = field_str(b, &f, "filename", a->filename);
        if (!err)
            err = field_str(b, &f, "content_type", a->content_type);
        if (!err)
            err = field_int(b, &f, "size_bytes", a->size_bytes);
        if (!err)
            err = field_str(b, &f, "sha256", a->sha256);
        if (!err)
            err = field_str(b, &f, "object_key", a->object_key);
        if (!err && a->transfer_encoding)
            err = field_int(b, &f, "encoded_offset", a->encoded_offset);
        if (!err && a->transfer_encoding)
            err = field_int(b, &f, "encoded_length", a->encoded_length);
        if (!err && a->transfer_encoding)
            err = field_str(b, &f, "transfer_encoding", a->transfer_encoding);
        if (!err)
            err = lt_buf_append(b, "}", 1);
    }
    return err ? err : lt_buf_append(b, "]", 1);
}

lt_err_t lt_emails_row_json(const lt_email_row_t *r, lt_buf_t *out, char *errstr,
                            size_t errstr_size)
{
    lt_err_t err = row_check(r, errstr, errstr_size);
    if (err)
        return err;
    /* Build aside, so that a full `out` stays as it was. */
    size_t room = lt_buf_cap(out) - lt_buf_len(out);
    lt_buf_t *b = lt_buf_new(room);
    int f = 1;
    int date_ok = r->has_date && r->date_ms >= MS_MIN && r->date_ms <= MS_MAX;
    err = lt_buf_append(b, "{", 1);
    if (!err)
        err = field_str(b, &f, "tenant_id", r->tenant_id);
    if (!err)
        err = field_str(b, &f, "account_id", r->account_id);
    if (!err)
        err = field_str(b, &f, "provider_message_id", r->provider_message_id);
    if (!err)
        err = field_str(b, &f, "event_id", r->event_id);
    if (!err)
        err = field_str(b, &f, "provider", r->provider);
    if (!err)
        err = field_str(b, &f, "mailbox", r->mailbox);
    if (!err)
        err = field_str(b, &f, "thread_id", r->thread_id);
    if (!err)
        err = field_int(b, &f, "received_at_ms", r->received_at_ms);
    if (!err)
        err = field_str(b, &f, "message_id", r->message_id);
    if (!err)
        err = field_str(b, &f, "subject", r->subject);
    if (!err)
        err = field_str(b, &f, "from_display", r->from_display);
    if (!err)
        err = field_str(b, &f, "from_email", r->from_email);
    if (!err)
        err = field_strv(b, &f, "to_addrs", r->to_addrs, r->n_to);
    if (!err)
        err = field_strv(b, &f, "cc_addrs", r->cc_addrs, r->n_cc);
    if (!err)
        err = field_str(b, &f, "to_display", r->to_display);
    if (!err)
        err = field_str(b, &f, "cc_display", r->cc_display);
    if (!err) {
        if (date_ok)
            err = field_int(b, &f, "date_ms", r->date_ms);
        else
            err = field_str(b, &f, "date_ms", NULL);
    }
    if (!err)
        err = field_str(b, &f, "date_raw", r->date_raw);
    if (!err)
        err = put_key(b, &f, "body_text");
    if (!err)
        err = put_str(b, r->body_text ? r->body_text : "", r->body_text ? r->body_len : 0);
    if (!err)
        err = field_str(b, &f, "body_source", r->body_source);
    if (!err)
        err = field_bool(b, &f, "body_truncated", r->body_truncated);
    if (!err)
        err = put_attachments(b, &f, r);
    if (!err)
        err = field_str(b, &f, "raw_bucket", r->raw_bucket);
    if (!err)
        err = field_str(b, &f, "raw_object_key", r->raw_object_key);
    if (!err)
        err = field_int(b, &f, "raw_size_bytes", r->raw_size_bytes);
    if (!err)
        err = field_str(b, &f, "raw_sha256", r->raw_sha256);
    if (!err)
        err = field_str(b, &f, "data_classification", r->data_classification);
    if (!err)
        err = field_str(b, &f, "parse_error", r->parse_error);
    if (!err)
        err = field_str(b, &f, "parse_error_class", r->parse_error_class);
    if (!err)
        err = field_int(b, &f, "kafka_partition", r->kafka_partition);
    if (!err)
        err = field_int(b, &f, "kafka_offset", r->kafka_offset);
    if (!err) {
        if (r->event_time_ms > 0 && r->event_time_ms <= MS_MAX)
            err = field_int(b, &f, "event_time_ms", r->event_time_ms);
        else
            err = field_str(b, &f, "event_time_ms", NULL);
    }
    if (!err)
        err = lt_buf_append(b, "}", 1);
    if (!err)
        err = lt_buf_append(out, lt_buf_data(b), lt_buf_len(b));
    lt_buf_destroy(b);
    if (err)
        return lt_seterr(errstr, errstr_size, err, "emails row: over the %zu-byte cap",
                         lt_buf_cap(out));
    return LT_OK;
}

/* The columns in jsonb_to_recordset order, with their types. */
#define ROW_COLUMNS                                                                                \
    "tenant_id text, account_id text, provider_message_id text, event_id uuid, provider text, "    \
    "mailbox text, thread_id text, received_at_ms bigint, message_id text, subject text, "         \
    "from_display text, from_email text, to_addrs text[], cc_addrs text[], to_display text, "      \
    "cc_display text, date_ms bigint, date_raw text, body_text text, body_source text, "           \
    "body_truncated boolean, attachments jsonb, raw_bucket text, raw_object_key text, "            \
    "raw_size_bytes bigint, raw_sha256 text, data_classification text, parse_error text, "         \
    "parse_error_class text, kafka_partition integer, kafka_offset bigint, event_time_ms bigint"

#define ROW_NAMES                                                                                  \
    "tenant_id, account_id, provider_message_id, event_id, provider, mailbox, thread_id, "         \
    "received_at_ms, message_id, subject, from_display, from_email, to_addrs, cc_addrs, "          \
    "to_display, cc_display, date_ms, date_raw, body_text, body_source, body_truncated, "          \
    "attachments, raw_bucket, raw_object_key, raw_size_bytes, raw_sha256, data_classification, "   \
    "parse_error, parse_error_class, kafka_partition, kafka_offset, event_time_ms"

/* Every column but the key, created_at and the generated ones. */
#define UPDATE_SET(x)                                                                              \
    "event_id = " x ".event_id, provider = " x ".provider, mailbox = " x ".mailbox, "              \
    "thread_id = " x ".thread_id, received_at = " x ".received_at, message_id = " x                \
    ".message_id, subject = " x ".subject, from_display = " x ".from_display, from_email = " x     \
    ".from_email, to_addrs = " x ".to_addrs, cc_addrs = " x ".cc_addrs, to_display = " x           \
    ".to_display, cc_display = " x ".cc_display, date_header = " x ".date_header, date_raw = " x   \
    ".date_raw, body_text = " x ".body_text, body_source = " x ".body_source, body_truncated = " x \
    ".body_truncated, attachments = " x ".attachments, raw_bucket = " x ".raw_bucket, "            \
    "raw_object_key = " x ".raw_object_key, raw_size_bytes = " x                                   \
    ".raw_size_bytes, raw_sha256 = " x ".raw_sha256, data_classification = " x                     \
    ".data_classification, parse_error = " x ".parse_error, parse_error_class = " x                \
    ".parse_error_class, kafka_partition = " x ".kafka_partition, kafka_offset = " x               \
    ".kafka_offset, parsed_at = now()"

/* A re-added message (an event not older than the deletion) is live again;
 * flags and labels are the changes' alone, never touched by an upsert. */
#define READD_CASE "e.deleted_at IS NOT NULL AND EXCLUDED.presence_as_of >= e.presence_as_of"
#define UPDATE_PRESENCE                                                                            \
    ", deleted_at = CASE WHEN " READD_CASE " THEN NULL ELSE e.deleted_at END, "                  \
    "changed_at = CASE WHEN " READD_CASE " THEN now() ELSE e.changed_at END, "                   \
    "presence_as_of = GREATEST(e.presence_as_of, EXCLUDED.presence_as_of)"

static const char k_upsert_sql[] =
    "INSERT INTO emails AS e (tenant_id, account_id, provider_message_id, event_id, provider, "
    "mailbox, thread_id, received_at, message_id, subject, from_display, from_email, to_addrs, "
    "cc_addrs, to_display, cc_display, date_header, date_raw, body_text, body_source, "
    "body_truncated, attachments, raw_bucket, raw_object_key, raw_size_bytes, raw_sha256, "
    "data_classification, parse_error, parse_error_class, kafka_partition, kafka_offset, "
    "presence_as_of) "
    "SELECT DISTINCT ON (r.tenant_id, r.account_id, r.provider_message_id) "
    "r.tenant_id, r.account_id, r.provider_message_id, r.event_id, r.provider, r.mailbox, "
    "r.thread_id, 'epoch'::timestamptz + r.received_at_ms * interval '1 millisecond', "
    "r.message_id, r.subject, r.from_display, r.from_email, coalesce(r.to_addrs, '{}'), "
    "coalesce(r.cc_addrs, '{}'), r.to_display, r.cc_display, "
    "'epoch'::timestamptz + r.date_ms * interval '1 millisecond', r.date_raw, "
    "coalesce(r.body_text, ''), r.body_source, coalesce(r.body_truncated, false), "
    "coalesce(r.attachments, '[]'), r.raw_bucket, r.raw_object_key, r.raw_size_bytes, "
    "r.raw_sha256, r.data_classification, r.parse_error, r.parse_error_class, "
    "r.kafka_partition, r.kafka_offset, "
    "'epoch'::timestamptz + r.event_time_ms * interval '1 millisecond' "
    "FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (" ROW_COLUMNS ")) "
    "WITH ORDINALITY AS r(" ROW_NAMES ", ord) "
    "ORDER BY r.tenant_id, r.account_id, r.provider_message_id, r.ord DESC "
    "ON CONFLICT (tenant_id, account_id, provider_message_id) DO UPDATE SET " UPDATE_SET(
        "EXCLUDED") UPDATE_PRESENCE;

static lt_err_t run_chunk(lt_db_t *db, const lt_buf_t *json, size_t *written, char *errstr,
                          size_t errstr_size)
{
    PGresult *res = NULL;
    const char *params[] = {lt_buf_str(json)};
    lt_err_t err = lt_db_exec(
        db,
        &(lt_db_query_t){
            .what = "emails upsert", .sql = k_upsert_sql, .nparams = 1, .params = params},
        &res, errstr, errstr_size);
    if (err)
        return err;
    *written += (size_t)strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return LT_OK;
}

static lt_err_t apply_pending(lt_db_t *db, const lt_buf_t *json, lt_email_pending_stats_t *st,
                              char *errstr, size_t errstr_size);

lt_err_t lt_emails_upsert(lt_db_t *db, const char *const *rows, size_t n, size_t *written,
                          lt_email_pending_stats_t *pending, char *errstr, size_t errstr_size)
{
    size_t total = 0;
    lt_err_t err = LT_OK;
    if (written)
        *written = 0;
    if (n == 0)
        return LT_OK;
    /* A chunk may exceed LT_EMAILS_STATEMENT_BYTES by its last row; a
     * Postgres parameter cannot exceed 1 GiB. */
    lt_buf_t *json = lt_buf_new((size_t)1 << 30);
    size_t in_chunk = 0;
    for (size_t i = 0; i < n && !err; i++) {
        err = lt_buf_append(json, in_chunk ? "," : "[", 1);
        if (!err)
            err = lt_buf_append(json, rows[i], strlen(rows[i]));
        in_chunk++;
        if (!err && (i + 1 == n || lt_buf_len(json) >= LT_EMAILS_STATEMENT_BYTES))
            err = lt_buf_append(json, "]", 1);
        if (err) {
            lt_seterr(errstr, errstr_size, err, "emails upsert: statement over 1 GiB");
            break;
        }
        if (i + 1 == n || lt_buf_len(json) >= LT_EMAILS_STATEMENT_BYTES) {
            err = run_chunk(db, json, &total, errstr, errstr_size);
            if (!err)
                err = apply_pending(db, json, pending, errstr, errstr_size);
            lt_buf_reset(json);
            in_chunk = 0;
        }
    }
    lt_buf_destroy(json);
    if (written)
        *written = total;
    return err;
}

/* ---- mailbox changes ---- */

const char *lt_email_change_result_name(lt_email_change_result_t r)
{
    switch (r) {
    case LT_EMAIL_CHANGE_APPLIED:
        return "applied";
    case LT_EMAIL_CHANGE_SAME:
        return "same";
    case LT_EMAIL_CHANGE_STALE:
        return "stale";
    case LT_EMAIL_CHANGE_UNKNOWN:
        return "unknown";
    case LT_EMAIL_CHANGE_PENDING:
        return "pending";
    }
    return "?";
}

const char *lt_email_change_kind_name(lt_email_change_kind_t kind)
{
    switch (kind) {
    case LT_EMAIL_DELETED:
        return "deleted";
    case LT_EMAIL_FLAGS:
        return "flags";
    case LT_EMAIL_LABELS:
        return "labels";
    }
    return NULL;
}

#define CHANGE_KEY(x)                                                                              \
    x ".tenant_id = $1 AND " x ".account_id = $2 AND " x ".provider_message_id = $3 AND " x        \
    ".provider = $4"
#define CHANGE_TIME "'epoch'::timestamptz + $5::bigint * interval '1 millisecond'"

/* One statement: the UPDATE (only when the change is not older than the
 * attribute's state and would alter something) and, from the snapshot
 * before it, what the row held. Columns: wrote, found, stale, differs. */
static const char k_deleted_sql[] =
    "WITH v AS (SELECT " CHANGE_TIME " AS t), "
    "u AS (UPDATE emails e SET deleted_at = coalesce(e.deleted_at, v.t), presence_as_of = v.t, "
    "changed_at = CASE WHEN e.deleted_at IS NULL THEN now() ELSE e.changed_at END FROM v "
    "WHERE " CHANGE_KEY("e") " AND (e.presence_as_of IS NULL OR v.t > e.presence_as_of OR "
    "(v.t = e.presence_as_of AND e.deleted_at IS NULL)) RETURNING 1) "
    "SELECT (SELECT count(*) FROM u), e.tenant_id IS NOT NULL, "
    "coalesce(e.presence_as_of > v.t, false), e.deleted_at IS NULL "
    "FROM v LEFT JOIN emails e ON " CHANGE_KEY("e");

/* flags / labels: the set sorted (bytewise) without duplicates, so that
 * equal sets compare equal. */
#define SET_SQL(col)                                                                               \
    "WITH v AS (SELECT " CHANGE_TIME " AS t, ARRAY(SELECT DISTINCT x COLLATE \"C\" FROM "          \
    "jsonb_array_elements_text($6::jsonb) AS a(x) ORDER BY 1) AS s), "                             \
    "u AS (UPDATE emails e SET " col " = v.s, " col "_as_of = v.t, "                               \
    "changed_at = CASE WHEN e." col " IS DISTINCT FROM v.s THEN now() ELSE e.changed_at END "      \
    "FROM v WHERE " CHANGE_KEY("e") " AND (e." col "_as_of IS NULL OR v.t > e." col "_as_of OR "   \
    "(v.t = e." col "_as_of AND e." col " IS DISTINCT FROM v.s)) RETURNING 1) "                    \
    "SELECT (SELECT count(*) FROM u), e.tenant_id IS NOT NULL, "                                   \
    "coalesce(e." col "_as_of > v.t, false), e." col " IS DISTINCT FROM v.s "                      \
    "FROM v LEFT JOIN emails e ON " CHANGE_KEY("e")

static const char k_flags_sql[] = SET_SQL("flags");
static const char k_labels_sql[] = SET_SQL("labels");

static lt_err_t change_check(const lt_email_change_t *c, char *errstr, size_t errstr_size)
{
    if (!c || !c->tenant_id || !c->account_id || !c->provider || !c->provider_message_id)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "email change: key field missing");
    if (strcmp(c->provider, "gmail") && strcmp(c->provider, "imap"))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "email change: unknown provider");
    if (c->event_time_ms < MS_MIN || c->event_time_ms > MS_MAX)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "email change: event_time %" PRId64 " ms out of range", c->event_time_ms);
    if (c->n_values && !c->values)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "email change: NULL values");
    for (size_t i = 0; i < c->n_values; i++)
        if (!c->values[i])
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "email change: NULL value");
    return LT_OK;
}

/* One change statement; params: tenant, account, message id, provider, event
 * time (ms text), and the values as a JSON array for flags and labels. */
static lt_err_t apply_sql(lt_db_t *db, const char *what, const char *sql, const char *const *params,
                          int nparams, lt_email_change_result_t *result, char *errstr,
                          size_t errstr_size)
{
    PGresult *res = NULL;
    lt_err_t err = lt_db_exec(
        db, &(lt_db_query_t){.what = what, .sql = sql, .nparams = nparams, .params = params}, &res,
        errstr, errstr_size);
    if (err)
        goto out;
    if (PQntuples(res) != 1 || PQnfields(res) != 4) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "%s: unexpected result", what);
        goto out;
    }
    long wrote = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    int found = !strcmp(PQgetvalue(res, 0, 1), "t");
    int stale = !strcmp(PQgetvalue(res, 0, 2), "t");
    int differs = !strcmp(PQgetvalue(res, 0, 3), "t");
    lt_email_change_result_t r;
    if (!found)
        r = LT_EMAIL_CHANGE_UNKNOWN;
    else if (wrote && differs)
        r = LT_EMAIL_CHANGE_APPLIED;
    else if (stale)
        r = LT_EMAIL_CHANGE_STALE;
    else
        r = LT_EMAIL_CHANGE_SAME;
    if (result)
        *result = r;
out:
    PQclear(res);
    return err;
}

static const struct {
    const char *what;
    const char *sql;
    int with_values;
} k_kinds[LT_EMAIL_CHANGE_KINDS] = {
    [LT_EMAIL_DELETED] = {"emails deleted", k_deleted_sql, 0},
    [LT_EMAIL_FLAGS] = {"emails flags", k_flags_sql, 1},
    [LT_EMAIL_LABELS] = {"emails labels", k_labels_sql, 1},
};

/* The change's parameters (values as JSON in *json, owned by the caller). */
static lt_err_t change_params(const lt_email_change_t *c, char ms[24], const char *params[6],
                              lt_buf_t **json, char *errstr, size_t errstr_size)
{
    lt_err_t err = change_check(c, errstr, errstr_size);
    if (err)
        return err;
    snprintf(ms, 24, "%" PRId64, c->event_time_ms);
    params[0] = c->tenant_id;
    params[1] = c->account_id;
    params[2] = c->provider_message_id;
    params[3] = c->provider;
    params[4] = ms;
    *json = lt_buf_new((size_t)1 << 30);
    err = put_strv(*json, c->values, c->n_values);
    if (err)
        return lt_seterr(errstr, errstr_size, err, "email change: values over 1 GiB");
    params[5] = lt_buf_str(*json);
    return LT_OK;
}

lt_err_t lt_emails_apply(lt_db_t *db, lt_email_change_kind_t kind, const lt_email_change_t *c,
                         lt_email_change_result_t *result, char *errstr, size_t errstr_size)
{
    if ((unsigned)kind >= LT_EMAIL_CHANGE_KINDS)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "email change: unknown kind");
    char ms[24];
    const char *params[6];
    lt_buf_t *json = NULL;
    lt_err_t err = change_params(c, ms, params, &json, errstr, errstr_size);
    if (!err)
        err = apply_sql(db, k_kinds[kind].what, k_kinds[kind].sql, params,
                        k_kinds[kind].with_values ? 6 : 5, result, errstr, errstr_size);
    lt_buf_destroy(json);
    return err;
}

/* Keep the newest change per (message, provider, kind); on a tie of times
 * the later one read wins (a replay reads them in the same order). $6 the
 * values, $7 the kind. Returns a row when the change was stored. */
static const char k_pend_sql[] =
    "INSERT INTO emails_changes_pending AS p (tenant_id, account_id, provider_message_id, "
    "provider, kind, event_time, change_values) "
    "SELECT $1, $2, $3, $4, $7, " CHANGE_TIME ", ARRAY(SELECT DISTINCT x COLLATE \"C\" FROM "
    "jsonb_array_elements_text($6::jsonb) AS a(x) ORDER BY 1) "
    "ON CONFLICT (tenant_id, account_id, provider_message_id, provider, kind) DO UPDATE SET "
    "event_time = EXCLUDED.event_time, change_values = EXCLUDED.change_values, "
    "pending_since = now() WHERE EXCLUDED.event_time >= p.event_time RETURNING 1";

lt_err_t lt_emails_apply_or_pend(lt_db_t *db, lt_email_change_kind_t kind,
                                 const lt_email_change_t *c, lt_email_change_result_t *result,
                                 char *errstr, size_t errstr_size)
{
    lt_email_change_result_t r = LT_EMAIL_CHANGE_UNKNOWN;
    lt_err_t err = lt_emails_apply(db, kind, c, &r, errstr, errstr_size);
    if (err || r != LT_EMAIL_CHANGE_UNKNOWN)
        goto out;
    char ms[24];
    const char *params[7];
    lt_buf_t *json = NULL;
    PGresult *res = NULL;
    err = change_params(c, ms, params, &json, errstr, errstr_size);
    if (!err) {
        params[6] = lt_email_change_kind_name(kind);
        err = lt_db_exec(db,
                         &(lt_db_query_t){.what = "emails pending change",
                                          .sql = k_pend_sql,
                                          .nparams = 7,
                                          .params = params},
                         &res, errstr, errstr_size);
    }
    if (!err && PQntuples(res) == 1)
        r = LT_EMAIL_CHANGE_PENDING;
    lt_buf_destroy(json);
    PQclear(res);
out:
    if (!err && result)
        *result = r;
    return err;
}

/* The pending changes of a chunk's messages (same provider), taken out of
 * the table: key, kind, event time (ms), values as a JSON array. */
static const char k_take_pending_sql[] =
    "DELETE FROM emails_changes_pending p USING (SELECT DISTINCT r.tenant_id, r.account_id, "
    "r.provider_message_id, r.provider FROM jsonb_to_recordset($1::jsonb) AS r(tenant_id text, "
    "account_id text, provider_message_id text, provider text)) k "
    "WHERE p.tenant_id = k.tenant_id AND p.account_id = k.account_id AND "
    "p.provider_message_id = k.provider_message_id AND p.provider = k.provider "
    "RETURNING p.tenant_id, p.account_id, p.provider_message_id, p.provider, p.kind, "
    "(extract(epoch FROM p.event_time) * 1000)::bigint, to_json(p.change_values)::text";

static lt_err_t apply_pending(lt_db_t *db, const lt_buf_t *json, lt_email_pending_stats_t *st,
                              char *errstr, size_t errstr_size)
{
    PGresult *res = NULL;
    const char *jp[] = {lt_buf_str(json)};
    lt_err_t err = lt_db_exec(db,
                              &(lt_db_query_t){.what = "emails take pending changes",
                                               .sql = k_take_pending_sql,
                                               .nparams = 1,
                                               .params = jp},
                              &res, errstr, errstr_size);
    for (int i = 0; !err && i < PQntuples(res); i++) {
        lt_email_change_kind_t kind;
        const char *kn = PQgetvalue(res, i, 4);
        if (!strcmp(kn, "deleted"))
            kind = LT_EMAIL_DELETED;
        else if (!strcmp(kn, "flags"))
            kind = LT_EMAIL_FLAGS;
        else if (!strcmp(kn, "labels"))
            kind = LT_EMAIL_LABELS;
        else
            continue; /* the table's CHECK allows no other */
        const char *params[6] = {PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                                 PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
                                 PQgetvalue(res, i, 5), PQgetvalue(res, i, 6)};
        lt_email_change_result_t r = LT_EMAIL_CHANGE_UNKNOWN;
        err = apply_sql(db, k_kinds[kind].what, k_kinds[kind].sql, params,
                        k_kinds[kind].with_values ? 6 : 5, &r, errstr, errstr_size);
        if (!err && st)
            st->count[kind][r]++;
    }
    PQclear(res);
    return err;
}

/* Two-key advisory locks: class 0x4c54 ("LT") keeps them apart from the
 * one-key locks of lt_db_lock_key(). The subquery's order is the order the
 * locks are taken in. */
static const char k_lock_sql[] =
    "SELECT count(pg_advisory_xact_lock(19540, k)) FROM (SELECT DISTINCT hashtext(x->>0 || "
    "E'\\x1f' || (x->>1) || E'\\x1f' || (x->>2)) AS k FROM jsonb_array_elements($1::jsonb) AS "
    "a(x) ORDER BY 1) s";

lt_err_t lt_emails_lock(lt_db_t *db, const lt_email_key_t *keys, size_t n, char *errstr,
                        size_t errstr_size)
{
    if (n == 0)
        return LT_OK;
    if (!keys)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "emails lock: NULL keys");
    lt_buf_t *json = lt_buf_new((size_t)1 << 30);
    lt_err_t err = lt_buf_append(json, "[", 1);
    for (size_t i = 0; !err && i < n; i++) {
        const char *k[3] = {keys[i].tenant_id, keys[i].account_id, keys[i].provider_message_id};
        if (!k[0] || !k[1] || !k[2]) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "emails lock: key field missing");
            goto out;
        }
        if (i)
            err = lt_buf_append(json, ",", 1);
        if (!err)
            err = put_strv(json, k, 3);
    }
    if (!err)
        err = lt_buf_append(json, "]", 1);
    if (err) {
        lt_seterr(errstr, errstr_size, err, "emails lock: keys over 1 GiB");
        goto out;
    }
    const char *params[] = {lt_buf_str(json)};
    err = lt_db_exec(
        db, &(lt_db_query_t){.what = "emails lock", .sql = k_lock_sql, .nparams = 1, .params = params},
        NULL, errstr, errstr_size);
out:
    lt_buf_destroy(json);
    return err;
}

lt_err_t lt_emails_purge_pending(lt_db_t *db, int64_t retention_s, uint64_t *purged, char *errstr,
                                 size_t errstr_size)
{
    char secs[24];
    snprintf(secs, sizeof(secs), "%" PRId64, retention_s);
    const char *params[] = {secs};
    PGresult *res = NULL;
    lt_err_t err = lt_db_exec(
        db,
        &(lt_db_query_t){.what = "emails purge pending changes",
                         .sql = "DELETE FROM emails_changes_pending WHERE pending_since < now() - "
                                "$1::bigint * interval '1 second'",
                         .nparams = 1,
                         .params = params},
        &res, errstr, errstr_size);
    if (!err && purged)
        *purged = strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return err;
}

lt_err_t lt_emails_apply_deleted(lt_db_t *db, const lt_email_change_t *c,
                                 lt_email_change_result_t *result, char *errstr,
                                 size_t errstr_size)
{
    return lt_emails_apply(db, LT_EMAIL_DELETED, c, result, errstr, errstr_size);
}

lt_err_t lt_emails_apply_flags(lt_db_t *db, const lt_email_change_t *c,
                               lt_email_change_result_t *result, char *errstr, size_t errstr_size)
{
    return lt_emails_apply(db, LT_EMAIL_FLAGS, c, result, errstr, errstr_size);
}

lt_err_t lt_emails_apply_labels(lt_db_t *db, const lt_email_change_t *c,
                                lt_email_change_result_t *result, char *errstr,
                                size_t errstr_size)
{
    return lt_emails_apply(db, LT_EMAIL_LABELS, c, result, errstr, errstr_size);
}

lt_err_t lt_emails_check(lt_db_t *db, char *errstr, size_t errstr_size)
{
    PGresult *res = NULL;
    /* The table, and the columns of 0009 (the upsert writes them). */
    lt_err_t err = lt_db_exec(db,
                              &(lt_db_query_t){.what = "emails check",
                                               .sql = "SELECT count(*) = 1 AND "
                                                      "to_regclass('emails_changes_pending') IS "
                                                      "NOT NULL FROM pg_attribute "
                                                      "WHERE attrelid = to_regclass('emails') "
                                                      "AND attname = 'presence_as_of'",
                                               .nparams = 0},
                              &res, errstr, errstr_size);
    if (err)
        return err;
    int ok = PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    if (!ok)
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                         "table emails (with deleted_at, flags, labels) or emails_changes_pending "
                         "does not exist: run lattice-migrate (migrations/0004_emails.sql, "
                         "0009_email_changes.sql, 0013_email_changes_pending.sql)");
    return LT_OK;
}
