/* lt_emails: the emails table (migrations/0004_emails.sql, 0009, and the
 * pending changes of 0013), one row per
 * parsed message, written by lattice-mail-parser (docs/parser.md).
 *
 * Rows travel as JSON objects: lt_emails_row_json() turns a row into one
 * (pure, no server), lt_emails_upsert() writes many in one statement per
 * chunk (jsonb_to_recordset, parameterised: SQL is never built from the
 * data). The upsert is idempotent on (tenant_id, account_id,
 * provider_message_id): a replayed message rewrites its row; within one
 * call the last row of a key wins.
 *
 * Mailbox changes (lt_emails_apply_*) mark a row deleted and replace its
 * flags or labels; they never create a row. See docs/parser.md, "Mailbox
 * changes".
 *
 * Ownership: an lt_email_row_t borrows every string and array; nothing is
 * kept after a call returns. */
#ifndef LT_EMAILS_H
#define LT_EMAILS_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_db.h"
#include "lt_err.h"

/* One attachment of the event's manifest (strings borrowed; filename may be
 * NULL). */
typedef struct {
    const char *attachment_id;
    const char *filename;
    const char *content_type;
    int64_t size_bytes;
    const char *sha256;
    const char *object_key;
    /* the attachment as a range of object_key (the raw .eml), transfer-encoded;
     * transfer_encoding NULL: object_key is the decoded attachment */
    int64_t encoded_offset;
    int64_t encoded_length;
    const char *transfer_encoding;
} lt_email_attachment_t;

/* A plain value carrier. Strings are borrowed, UTF-8 (invalid bytes are
 * written as U+FFFD); NULL means SQL NULL where the column allows it.
 * Required: tenant_id, account_id, provider_message_id, event_id (UUID
 * text), provider ("gmail" | "imap"), raw_bucket, raw_object_key,
 * raw_sha256, data_classification. */
typedef struct {
    const char *tenant_id;
    const char *account_id;
    const char *provider_message_id;
    const char *event_id;
    const char *provider;
    const char *mailbox;
    const char *thread_id;
    int64_t received_at_ms; /* epoch ms, years 1..9999 */
    const char *message_id;
    const char *subject;
    const char *from_display;
    const char *from_email;
    const char *const *to_addrs; /* n_to strings (none NULL) */
    size_t n_to;
    const char *const *cc_addrs;
    size_t n_cc;
    const char *to_display;
    const char *cc_display;
    int has_date;    /* 0: date_header NULL */
    int64_t date_ms; /* epoch ms; out of years 1..9999: NULL */
    const char *date_raw;
    const char *body_text; /* body_len bytes; NULL = "" */
    size_t body_len;
    const char *body_source; /* "text/plain", "text/html" or NULL */
    int body_truncated;
    const lt_email_attachment_t *attachments;
    size_t n_attachments;
    const char *raw_bucket;
    const char *raw_object_key;
    int64_t raw_size_bytes;
    const char *raw_sha256;
    const char *data_classification;
    const char *parse_error; /* NULL for a parsed message */
    const char *parse_error_class;
    int32_t kafka_partition;
    int64_t kafka_offset;
    /* The event's event_time (epoch ms): a re-added message (a row marked
     * deleted) is live again only when this is not older than the
     * deletion; 0 = unknown, never un-deletes. */
    int64_t event_time_ms;
} lt_email_row_t;

/* Append the row as one JSON object to out (the format lt_emails_upsert()
 * reads). LT_ERR_INVALID (out unchanged) if a required field is missing,
 * event_id is not a UUID, provider is unknown or received_at_ms is out of
 * range; LT_ERR_TOO_BIG (out unchanged) if out's cap is reached. Text is
 * made valid for Postgres: invalid UTF-8 becomes U+FFFD, NUL bytes in
 * body_text are dropped. */
lt_err_t lt_emails_row_json(const lt_email_row_t *row, lt_buf_t *out, char *errstr,
                            size_t errstr_size);

/* Defined below, with the mailbox changes. */
typedef struct lt_email_pending_stats_s lt_email_pending_stats_t;

/* Largest JSON text sent in one statement; more rows are split into
 * several statements (all in the caller's transaction, if one is open). */
#define LT_EMAILS_STATEMENT_BYTES ((size_t)8 << 20)

/* UPSERT n rows given as JSON objects from lt_emails_row_json() (rows[i]
 * NUL-terminated). *written (may be NULL) gets the number of rows inserted
 * or updated. Then the pending changes of these messages
 * (lt_emails_apply_or_pend(), same provider) are applied to their rows by
 * the usual ordering rules and removed from emails_changes_pending; what
 * they did is added to *pending (may be NULL). Call it in a transaction
 * (with lt_emails_lock()) so that rows and pending changes move together.
 * Errors are lt_db_exec()'s (a bad row: LT_ERR_INVALID or
 * LT_ERR_FINAL; the connection: LT_ERR_TEMPORARY); the caller's
 * transaction is then aborted. */
lt_err_t lt_emails_upsert(lt_db_t *db, const char *const *rows, size_t n, size_t *written,
                          lt_email_pending_stats_t *pending, char *errstr, size_t errstr_size);

/* One mailbox change for one message (strings borrowed). The message is
 * found by (tenant_id, account_id, provider_message_id) and must have the
 * given provider. event_time_ms orders changes: per attribute (presence,
 * flags, labels) a change older than the one applied last is ignored. */
typedef struct {
    const char *tenant_id;
    const char *account_id;
    const char *provider; /* "gmail" | "imap" */
    const char *provider_message_id;
    int64_t event_time_ms; /* epoch ms, years 1..9999 */
    /* flags / labels only: the full new set (n_values strings, none NULL;
     * duplicates and order do not matter). Ignored by _deleted. */
    const char *const *values;
    size_t n_values;
} lt_email_change_t;

/* What an apply did. */
typedef enum {
    LT_EMAIL_CHANGE_APPLIED = 0, /* the row changed */
    LT_EMAIL_CHANGE_SAME,        /* already in that state (a repeat): nothing changed */
    LT_EMAIL_CHANGE_STALE,       /* older than the state stored: ignored */
    LT_EMAIL_CHANGE_UNKNOWN,     /* no such message (or another provider): ignored */
    LT_EMAIL_CHANGE_PENDING      /* no such message yet: kept in emails_changes_pending */
} lt_email_change_result_t;

#define LT_EMAIL_CHANGE_RESULTS 5

/* "applied", "same", "stale", "unknown", "pending" (a metrics label). */
const char *lt_email_change_result_name(lt_email_change_result_t r);

/* Mark the message deleted: deleted_at = the change's event time (a row
 * already marked keeps its first time). The row stays, out of emails_live
 * and the live search; a later mail.raw.v1 event for the message (not older
 * than this change) makes it live again. */
lt_err_t lt_emails_apply_deleted(lt_db_t *db, const lt_email_change_t *c,
                                 lt_email_change_result_t *result, char *errstr,
                                 size_t errstr_size);

/* Replace the message's flags (IMAP flags and keywords) with the full set. */
lt_err_t lt_emails_apply_flags(lt_db_t *db, const lt_email_change_t *c,
                               lt_email_change_result_t *result, char *errstr, size_t errstr_size);

/* Replace the message's labels (Gmail labelIds) with the full set. */
lt_err_t lt_emails_apply_labels(lt_db_t *db, const lt_email_change_t *c,
                                lt_email_change_result_t *result, char *errstr,
                                size_t errstr_size);

/* All three: LT_ERR_INVALID (nothing sent) if a key field is missing, the
 * provider is unknown, event_time_ms is out of range or values is NULL with
 * n_values > 0; otherwise lt_db_exec()'s errors. *result (may be NULL) is
 * set on LT_OK. Each is one statement, idempotent: a repeat is SAME. */

/* The kinds of change that alter a row (a reset alters none). */
typedef enum { LT_EMAIL_DELETED = 0, LT_EMAIL_FLAGS, LT_EMAIL_LABELS } lt_email_change_kind_t;

#define LT_EMAIL_CHANGE_KINDS 3

/* "deleted", "flags", "labels"; NULL for another value. */
const char *lt_email_change_kind_name(lt_email_change_kind_t kind);

/* lt_emails_apply_deleted, _flags or _labels by kind. */
lt_err_t lt_emails_apply(lt_db_t *db, lt_email_change_kind_t kind, const lt_email_change_t *c,
                         lt_email_change_result_t *result, char *errstr, size_t errstr_size);

/* A change that may arrive before its message (docs/parser.md, "Changes
 * before their message"): applied like lt_emails_apply(); when the message
 * has no row (UNKNOWN) the change is kept in emails_changes_pending
 * instead, the newest per (message, provider, kind): PENDING when it was
 * stored, UNKNOWN when a newer change of that kind is already pending (this
 * one is then dropped, as a stale change would be). lt_emails_upsert()
 * applies the pending changes of the messages it writes. Concurrent
 * writers must hold lt_emails_lock() on the message (else a change and its
 * row written at the same moment may miss each other). */
lt_err_t lt_emails_apply_or_pend(lt_db_t *db, lt_email_change_kind_t kind,
                                 const lt_email_change_t *c, lt_email_change_result_t *result,
                                 char *errstr, size_t errstr_size);

/* A message by its key (strings borrowed). */
typedef struct {
    const char *tenant_id;
    const char *account_id;
    const char *provider_message_id;
} lt_email_key_t;

/* Serialise the caller's transaction with every other one writing these
 * messages (rows, changes, pending changes): transaction-level advisory
 * locks, taken in one statement in a fixed order (no deadlock between two
 * callers that each lock all their keys first), released at commit or
 * rollback. Call it first in the transaction, once, with every key the
 * transaction will write. LT_ERR_INVALID if a key field is NULL. */
lt_err_t lt_emails_lock(lt_db_t *db, const lt_email_key_t *keys, size_t n, char *errstr,
                        size_t errstr_size);

/* What the pending changes applied by an upsert did: count[kind][result]. */
struct lt_email_pending_stats_s {
    uint64_t count[LT_EMAIL_CHANGE_KINDS][LT_EMAIL_CHANGE_RESULTS];
};

/* Delete the pending changes older than retention_s (by pending_since).
 * *purged (may be NULL): how many. */
lt_err_t lt_emails_purge_pending(lt_db_t *db, int64_t retention_s, uint64_t *purged,
                                 char *errstr, size_t errstr_size);

/* LT_OK if the emails table exists (migrations applied); LT_ERR_FINAL
 * with "run lattice-migrate" otherwise. */
lt_err_t lt_emails_check(lt_db_t *db, char *errstr, size_t errstr_size);

#endif
