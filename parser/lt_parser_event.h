/* lt_parser_event: one mail.raw.v1 record to one emails row (or a verdict
 * that it cannot become one), and one mail.change.v1 record to a decoded
 * change (lt_parser_change). Used by the parser's fetch threads; one
 * lt_parser_event_ctx_t per thread.
 *
 *   value --(wire header, registry schema, Avro decode)--> event
 *         --(S3 GET of attachments_manifest_ref, when set)--> the whole manifest
 *         --(S3 GET of raw_object_uri)--> .eml bytes
 *         --(lt_mime)--> message --(lt_mailrow)--> row JSON
 *
 * Verdicts (docs/parser.md):
 *   ROW    a row to upsert; parse_error set when the .eml is missing, too
 *          big, in another bucket or not parseable (the event's values are
 *          still stored)
 *   DLQ    the record cannot become a row (not decodable, unknown schema
 *          id, an event the table cannot hold, an object key outside the
 *          event's own folder): dead-letter it
 *   RETRY  a temporary failure (registry or S3 unreachable): redo the
 *          batch later, commit nothing */
#ifndef LT_PARSER_EVENT_H
#define LT_PARSER_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"
#include "lt_change_event.h"
#include "lt_event.h"
#include "lt_mime.h"
#include "lt_registry.h"
#include "lt_s3.h"

typedef enum {
    LT_PARSED_ROW = 0,
    LT_PARSED_DLQ,
    LT_PARSED_RETRY,
    LT_PARSED_CHANGE, /* a mail.change.v1 event to apply (lt_parser_change) */
} lt_parsed_t;

/* Per thread. registry is shared (thread-safe), codec and s3 belong to the
 * thread; all borrowed. */
typedef struct {
    lt_registry_t *registry;
    lt_mail_codec_t *codec;
    lt_change_codec_t *change_codec;
    lt_s3_t *s3;
    const char *bucket;         /* the bucket s3 reads */
    uint64_t max_message_bytes; /* larger .eml: parse_error too_big */
    lt_mime_limits_t limits;    /* max_text = the body cap */
    lt_buf_t *raw;              /* scratch, cap >= max_message_bytes */
    lt_buf_t *schema;           /* scratch for the writer schema */
} lt_parser_event_ctx_t;

/* What one record became. reason: why DLQ/RETRY, or the parse error of a
 * ROW (empty otherwise). Ids for log lines (may be empty). */
typedef struct {
    lt_parsed_t verdict;
    lt_err_t err_class;
    int parse_error; /* ROW: stored with parse_error */
    /* DLQ: a short code for metrics: "empty", "unknown_schema",
     * "undecodable", "foreign_object", "no_row" (the parser adds
     * "row_refused") */
    const char *dlq_reason;
    uint64_t raw_bytes; /* bytes of the .eml read from S3 */
    char reason[1024];
    char tenant[129];
    char account[129];
    char event_id[37];
    /* ROW: the message's key, whole (owned: free() them) */
    char *key_tenant, *key_account, *key_message;
    /* CHANGE: the decoded event (owned: lt_change_event_destroy()) */
    lt_change_event_t *change;
} lt_parser_outcome_t;

/* Free what an outcome owns (key strings, change event); safe twice. */
void lt_parser_outcome_clear(lt_parser_outcome_t *out);

/* Every object the event names must be its own: the key of raw_object_uri
 * and of each attachment's object_uri must lie under the event's message
 * folder, lt_objkey_message_prefix(tenant_id, account_id, provider,
 * provider_message_id), compared byte for byte (so "tenant/a/" never
 * matches "tenant/a2/...", an id is compared in its escaped form, and the
 * keys are lt_objkey_is_safe: no "." or ".." segment). Attachments must also
 * be in `bucket` (the row names them by key in the raw bucket) and their
 * URIs must parse. A raw_object_uri that does not parse or is in another
 * bucket passes here: nothing is read, the row gets a parse_error.
 * LT_OK, or LT_ERR_INVALID with the reason (the record is dead-lettered). */
lt_err_t lt_parser_event_check_keys(const lt_mail_event_t *ev, const char *bucket, char *reason,
                                    size_t reason_size);

/* Handle one mail.change.v1 record value: CHANGE with the event in
 * out->change, DLQ (empty, unknown schema id, undecodable, an event time the
 * table cannot hold) or RETRY (registry unreachable). No object is read: a
 * change names its tenant and account and only ever touches their rows. */
void lt_parser_change(lt_parser_event_ctx_t *c, const void *value, size_t len,
                      lt_parser_outcome_t *out);

/* Handle one record value; a ROW appends its JSON to row (reset first). */
void lt_parser_event(lt_parser_event_ctx_t *c, const void *value, size_t len, int32_t partition,
                     int64_t offset, lt_buf_t *row, lt_parser_outcome_t *out);

#endif
