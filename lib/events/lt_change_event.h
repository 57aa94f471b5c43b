/* lt_change_event: the mail.change.v1 event (schemas/mail.change.v1.avsc)
 * and its Avro codec in the Confluent wire format (magic byte 0, 4-byte
 * big-endian schema id, Avro binary datum; see lt_event.h).
 *
 * One event per change of a message already announced on mail.raw.v1 (it
 * was deleted, its flags or labels are now a new full set) or per reset of a
 * whole sync scope. Topic lattice.mail.change.v1, Kafka key account_id.
 * Field reference and ordering rules: docs/events.md.
 *
 * Ownership: an lt_change_event_t owns copies of every string given to its
 * setters; getters return borrowed pointers valid until the next setter call
 * on that field (for flags/labels: the next add/clear) or
 * lt_change_event_destroy(). Out of memory aborts.
 *
 * Threads: an lt_change_event_t and an lt_change_codec_t are not
 * thread-safe; use one codec per thread. */
#ifndef LT_CHANGE_EVENT_H
#define LT_CHANGE_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"
#include "lt_provider.h"

#define LT_CHANGE_EVENT_TYPE "mail.change.v1"
#define LT_MAIL_CHANGE_TOPIC "lattice.mail.change.v1"
/* TopicNameStrategy: the value subject of topic lattice.mail.change.v1. */
#define LT_MAIL_CHANGE_SUBJECT "lattice.mail.change.v1-value"
/* Decode refuses values larger than this (a change event is well under 1 KiB
 * plus its flag or label set). */
#define LT_CHANGE_EVENT_MAX_WIRE (1024u * 1024u)
/* At most this many entries in flags or labels (Gmail allows 10,000 labels
 * per account, a message carries far fewer; IMAP servers cap keywords). */
#define LT_CHANGE_MAX_ITEMS 1000u

/* The payload.kind symbols, in schema order (the enum index). */
typedef enum {
    LT_CHANGE_DELETED = 0, /* gone from the scope */
    LT_CHANGE_FLAGS = 1,   /* IMAP flags/keywords are now exactly flags */
    LT_CHANGE_LABELS = 2,  /* Gmail labelIds are now exactly labels */
    LT_CHANGE_RESET = 3    /* forget the scope; a full listing follows */
} lt_change_kind_t;

/* "deleted", "flags", "labels", "reset"; NULL for another value. */
const char *lt_change_kind_name(lt_change_kind_t kind);
/* The kind named name into *out; LT_ERR_INVALID for an unknown name. */
lt_err_t lt_change_kind_parse(const char *name, lt_change_kind_t *out);

/* The reset_reason values the worker writes. */
#define LT_CHANGE_RESET_UIDVALIDITY "uidvalidity_changed"
#define LT_CHANGE_RESET_HISTORY_EXPIRED "history_expired"

typedef struct lt_change_event_s lt_change_event_t;

/* A new event with the schema defaults: event_type "mail.change.v1",
 * data_classification "confidential", provider gmail, kind deleted, empty
 * flags and labels, no position, optional strings NULL, required strings
 * unset (encode fails until set). */
lt_change_event_t *lt_change_event_new(void);
void lt_change_event_destroy(lt_change_event_t *ev);

/* Setters copy the string; NULL is allowed for the optional (nullable)
 * fields and means "unset" for the required ones. */
void lt_change_event_set_event_id(lt_change_event_t *ev, const char *event_id);
void lt_change_event_set_event_type(lt_change_event_t *ev, const char *event_type);
void lt_change_event_set_event_time(lt_change_event_t *ev, int64_t ms);
void lt_change_event_set_tenant_id(lt_change_event_t *ev, const char *tenant_id);
void lt_change_event_set_provider(lt_change_event_t *ev, lt_provider_t provider);
void lt_change_event_set_account_id(lt_change_event_t *ev, const char *account_id);
void lt_change_event_set_mailbox(lt_change_event_t *ev, const char *mailbox_or_null);
void lt_change_event_set_kind(lt_change_event_t *ev, lt_change_kind_t kind);
void lt_change_event_set_provider_message_id(lt_change_event_t *ev, const char *id_or_null);
/* position < 0: null (the provider gave none). */
void lt_change_event_set_position(lt_change_event_t *ev, int64_t position);
void lt_change_event_set_reset_reason(lt_change_event_t *ev, const char *reason_or_null);
void lt_change_event_set_data_classification(lt_change_event_t *ev, const char *classification);
/* Append one entry (copied) to flags or labels; clear empties the list. */
void lt_change_event_add_flag(lt_change_event_t *ev, const char *flag);
void lt_change_event_clear_flags(lt_change_event_t *ev);
void lt_change_event_add_label(lt_change_event_t *ev, const char *label);
void lt_change_event_clear_labels(lt_change_event_t *ev);

/* Getters: borrowed, NULL when unset (or null in the datum). */
const char *lt_change_event_get_event_id(const lt_change_event_t *ev);
const char *lt_change_event_get_event_type(const lt_change_event_t *ev);
int64_t lt_change_event_get_event_time(const lt_change_event_t *ev);
const char *lt_change_event_get_tenant_id(const lt_change_event_t *ev);
lt_provider_t lt_change_event_get_provider(const lt_change_event_t *ev);
const char *lt_change_event_get_account_id(const lt_change_event_t *ev);
const char *lt_change_event_get_mailbox(const lt_change_event_t *ev);
lt_change_kind_t lt_change_event_get_kind(const lt_change_event_t *ev);
const char *lt_change_event_get_provider_message_id(const lt_change_event_t *ev);
/* -1 when null. */
int64_t lt_change_event_get_position(const lt_change_event_t *ev);
const char *lt_change_event_get_reset_reason(const lt_change_event_t *ev);
const char *lt_change_event_get_data_classification(const lt_change_event_t *ev);
size_t lt_change_event_flag_count(const lt_change_event_t *ev);
/* Entry i, NULL when i is out of range. */
const char *lt_change_event_get_flag(const lt_change_event_t *ev, size_t i);
size_t lt_change_event_label_count(const lt_change_event_t *ev);
const char *lt_change_event_get_label(const lt_change_event_t *ev, size_t i);

/* Set event_id from the event's own content (the rule in the schema's
 * event_id doc: tenant, provider, account, mailbox, provider_message_id,
 * kind, position and the flag or label set, sorted). LT_ERR_INVALID if
 * tenant_id or account_id is unset or provider or kind is out of range. */
lt_err_t lt_change_event_derive_id(lt_change_event_t *ev, char *errstr, size_t errstr_size);

/* JSON of the event for debugging and tests (Avro JSON field names; nullable
 * values as null or the value, not Avro's union wrapping). Appends to out. */
lt_err_t lt_change_event_to_json(const lt_change_event_t *ev, lt_buf_t *out);

/* The embedded copy of schemas/mail.change.v1.avsc (a unit test keeps them
 * equal). Register it under LT_MAIL_CHANGE_SUBJECT (or "<topic>-value"). */
const char *lt_change_event_schema_json(void);

typedef struct lt_change_codec_s lt_change_codec_t;

lt_change_codec_t *lt_change_codec_new(char *errstr, size_t errstr_size);
void lt_change_codec_destroy(lt_change_codec_t *c);

/* Validate ev and append the wire format with schema_id to out. Rules on top
 * of the schema: required strings set, non-empty and valid UTF-8; event_id
 * lower-case UUID text; provider and kind in range; provider_message_id set
 * unless kind is reset, and NULL for reset; reset_reason set for reset and
 * NULL otherwise; flags only for kind flags, labels only for kind labels,
 * each entry non-empty, at most LT_CHANGE_MAX_ITEMS. LT_ERR_INVALID for an
 * invalid event, LT_ERR_TOO_BIG if out's cap is reached (out unchanged). */
lt_err_t lt_change_event_encode(lt_change_codec_t *c, const lt_change_event_t *ev,
                                int32_t schema_id, lt_buf_t *out, char *errstr,
                                size_t errstr_size);

/* Decode a wire-format value (the header as lt_mail_event_peek_schema_id()
 * reads it). writer_schema_json: the registry's schema for the header's id,
 * NULL for the embedded mail.change.v1 schema; a later writer schema is
 * resolved against mail.change.v1 (fields the reader does not know are
 * skipped; a writer lacking a field of mail.change.v1 is refused). The datum
 * is checked by a bounded walk of the binary encoding before avro-c reads it
 * and the result by encode's rules, so garbage is LT_ERR_INVALID (or
 * LT_ERR_TOO_BIG) with a reason, never a crash. On success *out is a new
 * event (caller destroys). */
lt_err_t lt_change_event_decode(lt_change_codec_t *c, const void *data, size_t len,
                                const char *writer_schema_json, lt_change_event_t **out,
                                char *errstr, size_t errstr_size);

#endif
