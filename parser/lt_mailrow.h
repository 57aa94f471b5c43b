/* lt_mailrow: the emails row (lt_emails.h) of one message, built
 * from its mail.raw.v1 event and its parsed raw message (pure: no I/O).
 *
 * What comes from where (docs/parser.md):
 *   event:  event_id, tenant, provider, account, mailbox, provider message
 *           and thread id, received_at, raw object (bucket and key from
 *           raw_object_uri), size, sha256, classification, and the
 *           attachment list (object keys from the manifest's URIs)
 *   message (lt_mime): Message-ID (else the event's), Subject, From, To, Cc,
 *           Date, text body (text/plain, else HTML as text; lt_mime's
 *           max_text is the cap), body_truncated
 * Without a parsed message (it could not be fetched or parsed) the row has
 * the event's values, an empty body and parse_error set.
 *
 * Ownership: nothing is kept; the JSON is appended to the caller's buffer. */
#ifndef LT_MAILROW_H
#define LT_MAILROW_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"
#include "lt_event.h"
#include "lt_mime.h"

/* Where the event was read, and why there is no message (a plain value
 * carrier; strings borrowed). */
typedef struct {
    int32_t kafka_partition;
    int64_t kafka_offset;
    const char *parse_error;       /* NULL when the message parsed */
    const char *parse_error_class; /* lt_err_name() of the failure */
} lt_mailrow_source_t;

/* Append the row of (ev, m) as lt_emails_row_json() does. m may be NULL
 * (then src->parse_error should say why). Errors: lt_emails_row_json()'s
 * (LT_ERR_INVALID for an event the table cannot hold, e.g. an event_id that
 * is not a UUID; LT_ERR_TOO_BIG over out's cap); out is then unchanged. */
lt_err_t lt_mailrow_json(const lt_mail_event_t *ev, const lt_mime_t *m,
                         const lt_mailrow_source_t *src, lt_buf_t *out, char *errstr,
                         size_t errstr_size);

#endif
