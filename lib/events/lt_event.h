/* lt_event: the mail.raw.v1 event (schemas/mail.raw.v1.avsc) and its Avro
 * codec in the Confluent wire format.
 *
 * Wire format of a Kafka record value:
 *   byte 0      magic byte 0
 *   bytes 1..4  schema id, 32-bit big-endian (the registry's id of the writer schema)
 *   bytes 5..   the Avro binary encoding of one MailRawV1 datum
 *
 * Ownership: an lt_mail_event_t owns copies of every string given to its
 * setters; getters return borrowed pointers valid until the next setter call
 * on that field or lt_mail_event_destroy(). Out of memory aborts.
 *
 * Threads: an lt_mail_event_t and an lt_mail_codec_t are not thread-safe;
 * use one codec per thread (it caches avro-c value interfaces and parsed
 * writer schemas, which are not safe to share). */
#ifndef LT_EVENT_H
#define LT_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"
#include "lt_provider.h"

#define LT_MAIL_EVENT_TYPE "mail.raw.v1"
#define LT_MAIL_RAW_TOPIC "lattice.mail.raw.v1"
/* TopicNameStrategy: the value subject of topic lattice.mail.raw.v1. */
#define LT_MAIL_RAW_SUBJECT "lattice.mail.raw.v1-value"
#define LT_MAIL_DEFAULT_CLASSIFICATION "confidential"
/* Size of the Confluent wire header (magic byte + schema id). */
#define LT_WIRE_HEADER_SIZE 5
/* Decode refuses values larger than this (a raw event is a few KiB). */
#define LT_MAIL_EVENT_MAX_WIRE (4u * 1024u * 1024u)

typedef struct lt_mail_event_s lt_mail_event_t;

/* A new event with the schema defaults: event_type "mail.raw.v1",
 * data_classification "confidential", provider gmail, no attachments, all
 * optional strings NULL, required strings unset (encode fails until set). */
lt_mail_event_t *lt_mail_event_new(void);
void lt_mail_event_destroy(lt_mail_event_t *ev);

/* Setters copy the string; NULL is allowed for the optional (nullable)
 * fields and means "unset" for the required ones. */
void lt_mail_event_set_event_id(lt_mail_event_t *ev, const char *event_id);
void lt_mail_event_set_event_type(lt_mail_event_t *ev, const char *event_type);
void lt_mail_event_set_event_time(lt_mail_event_t *ev, int64_t ms);
void lt_mail_event_set_tenant_id(lt_mail_event_t *ev, const char *tenant_id);
void lt_mail_event_set_provider(lt_mail_event_t *ev, lt_provider_t provider);
void lt_mail_event_set_account_id(lt_mail_event_t *ev, const char *account_id);
void lt_mail_event_set_mailbox(lt_mail_event_t *ev, const char *mailbox_or_null);
void lt_mail_event_set_provider_message_id(lt_mail_event_t *ev, const char *id);
void lt_mail_event_set_provider_thread_id(lt_mail_event_t *ev, const char *id_or_null);
void lt_mail_event_set_received_at(lt_mail_event_t *ev, int64_t ms);
void lt_mail_event_set_raw_object_uri(lt_mail_event_t *ev, const char *uri);
void lt_mail_event_set_raw_size_bytes(lt_mail_event_t *ev, int64_t size);
void lt_mail_event_set_raw_sha256(lt_mail_event_t *ev, const char *hex);
void lt_mail_event_set_rfc822_message_id(lt_mail_event_t *ev, const char *id_or_null);
void lt_mail_event_set_data_classification(lt_mail_event_t *ev, const char *classification);
/* Append one attachment (strings copied; filename may be NULL). */
void lt_mail_event_add_attachment(lt_mail_event_t *ev, const char *attachment_id,
                                  const char *filename_or_null, const char *content_type,
                                  int64_t size_bytes, const char *sha256_hex,
                                  const char *object_uri);
/* Attachment i (< count; else nothing) is the range [offset, offset + length)
 * of its object_uri (the raw message), transfer-encoded as encoding (copied):
 * payload.attachments_manifest[i].encoded_offset/_length/transfer_encoding.
 * A new attachment has none (all null). */
void lt_mail_event_set_attachment_range(lt_mail_event_t *ev, size_t i, int64_t offset,
                                        int64_t length, const char *encoding);
/* Keep the first n attachments of the manifest (n >= count: no change). */
void lt_mail_event_truncate_attachments(lt_mail_event_t *ev, size_t n);
/* payload.attachments_manifest_truncated / _ref: the inline manifest lists
 * only the first attachments; the full one is the object at the ref (its
 * JSON: lt_mail_event_manifest_to_json()). */
void lt_mail_event_set_attachments_manifest_truncated(lt_mail_event_t *ev, int truncated);
void lt_mail_event_set_attachments_manifest_ref(lt_mail_event_t *ev, const char *uri_or_null);
/* payload.parse_error: why the message was only partly derived (NULL: it was not). */
void lt_mail_event_set_parse_error(lt_mail_event_t *ev, const char *reason_or_null);
/* Set event_id from the event's own tenant, provider, account, mailbox and
 * provider_message_id (lt_mail_event_id()). LT_ERR_INVALID if one is unset. */
lt_err_t lt_mail_event_derive_id(lt_mail_event_t *ev, char *errstr, size_t errstr_size);

/* Getters: borrowed, NULL when unset (or null in the datum). */
const char *lt_mail_event_get_event_id(const lt_mail_event_t *ev);
const char *lt_mail_event_get_event_type(const lt_mail_event_t *ev);
int64_t lt_mail_event_get_event_time(const lt_mail_event_t *ev);
const char *lt_mail_event_get_tenant_id(const lt_mail_event_t *ev);
lt_provider_t lt_mail_event_get_provider(const lt_mail_event_t *ev);
const char *lt_mail_event_get_account_id(const lt_mail_event_t *ev);
const char *lt_mail_event_get_mailbox(const lt_mail_event_t *ev);
const char *lt_mail_event_get_provider_message_id(const lt_mail_event_t *ev);
const char *lt_mail_event_get_provider_thread_id(const lt_mail_event_t *ev);
int64_t lt_mail_event_get_received_at(const lt_mail_event_t *ev);
const char *lt_mail_event_get_raw_object_uri(const lt_mail_event_t *ev);
int64_t lt_mail_event_get_raw_size_bytes(const lt_mail_event_t *ev);
const char *lt_mail_event_get_raw_sha256(const lt_mail_event_t *ev);
const char *lt_mail_event_get_rfc822_message_id(const lt_mail_event_t *ev);
const char *lt_mail_event_get_data_classification(const lt_mail_event_t *ev);
int lt_mail_event_get_attachments_manifest_truncated(const lt_mail_event_t *ev);
const char *lt_mail_event_get_attachments_manifest_ref(const lt_mail_event_t *ev);
const char *lt_mail_event_get_parse_error(const lt_mail_event_t *ev);
size_t lt_mail_event_attachment_count(const lt_mail_event_t *ev);
/* One entry of the attachments manifest, as read: strings borrowed from
 * the event. */
typedef struct {
    const char *attachment_id;
    const char *filename; /* NULL: the part had none */
    const char *content_type;
    int64_t size_bytes;
    const char *sha256_hex;
    const char *object_uri;
    /* The attachment as a range of object_uri (the raw message), still
     * transfer-encoded; -1, -1, NULL: object_uri is the decoded attachment. */
    int64_t encoded_offset;
    int64_t encoded_length;
    const char *transfer_encoding; /* "base64", "quoted-printable", "binary" */
} lt_mail_attachment_t;

/* Attachment i (< count) into *out. LT_ERR_NOT_FOUND, *out untouched, if i
 * is out of range. */
lt_err_t lt_mail_event_get_attachment(const lt_mail_event_t *ev, size_t i,
                                      lt_mail_attachment_t *out);

/* Deterministic event id: the first 16 bytes of SHA-256 over
 * "mail.raw.v1\0<tenant>\0<provider>\0<account_id>\0<mailbox>\0<provider_message_id>"
 * (mailbox NULL hashes as the empty string), version nibble set to 8 and the
 * RFC 9562 variant bits set, formatted as lower-case UUID text into out
 * (36 characters + NUL). LT_ERR_INVALID if a required input is NULL. */
lt_err_t lt_mail_event_id(const char *tenant, lt_provider_t provider, const char *account_id,
                          const char *mailbox_or_null, const char *provider_message_id,
                          char out[37]);

/* The manifest object: {"attachments_manifest": [{"attachment_id",
 * "filename" (or null), "content_type", "size_bytes", "sha256",
 * "object_uri"}, ...]} (the Avro field names), appended to out. */
lt_err_t lt_mail_event_manifest_to_json(const lt_mail_event_t *ev, lt_buf_t *out);
/* Replace ev's attachments with those of a manifest object (as written by
 * lt_mail_event_manifest_to_json()). LT_ERR_INVALID (ev unchanged) for
 * anything else: not JSON, a missing or mistyped field, bad UTF-8, a sha256
 * that is not 64 lower-case hex digits, a negative size. */
lt_err_t lt_mail_event_manifest_from_json(lt_mail_event_t *ev, const char *json, size_t len,
                                          char *errstr, size_t errstr_size);

/* JSON of the event for debugging and tests (Avro JSON field names; nullable
 * strings as null or a string, not Avro's union wrapping). Appends to out. */
lt_err_t lt_mail_event_to_json(const lt_mail_event_t *ev, lt_buf_t *out);

/* The embedded copy of schemas/mail.raw.v1.avsc (a unit test keeps them equal). */
const char *lt_mail_event_schema_json(void);

/* The codec: the parsed mail.raw.v1 schema, its avro-c value interface, and a
 * small cache of parsed writer schemas. Not thread-safe: one per thread. */
typedef struct lt_mail_codec_s lt_mail_codec_t;

lt_mail_codec_t *lt_mail_codec_new(char *errstr, size_t errstr_size);
void lt_mail_codec_destroy(lt_mail_codec_t *c);

/* Validate ev (required fields set, provider in range, sizes >= 0, sha256
 * as 64 lower-case hex digits) and append the wire format with schema_id to
 * out. LT_ERR_INVALID for an invalid event, LT_ERR_TOO_BIG if out's cap is
 * reached (out is then left as it was). */
lt_err_t lt_mail_event_encode(lt_mail_codec_t *c, const lt_mail_event_t *ev, int32_t schema_id,
                              lt_buf_t *out, char *errstr, size_t errstr_size);

/* Bound an event so a Kafka broker and producer with their defaults
 * (message.max.bytes 1,000,000) accept it: max_wire is the largest wire
 * format (header included) allowed. If ev encodes to more, the manifest is
 * cut to its longest prefix that fits and attachments_manifest_truncated is
 * set (the caller stores the full manifest first and sets
 * attachments_manifest_ref, which counts). *kept (may be NULL): entries
 * left. LT_ERR_INVALID for an invalid event; LT_ERR_TOO_BIG (ev unchanged)
 * when even an empty manifest does not fit. */
#define LT_MAIL_EVENT_DEFAULT_MAX_BYTES 900000u
lt_err_t lt_mail_event_fit(lt_mail_codec_t *c, lt_mail_event_t *ev, size_t max_wire,
                           size_t *kept, char *errstr, size_t errstr_size);

/* Read the wire header: LT_ERR_INVALID for a short value or a bad magic byte. */
lt_err_t lt_mail_event_peek_schema_id(const void *data, size_t len, int32_t *schema_id,
                                      char *errstr, size_t errstr_size);

/* Decode a wire-format value. writer_schema_json is the schema the producer
 * wrote with (the registry's schema for the id in the header, see
 * lt_registry_get_schema()); NULL means the embedded mail.raw.v1 schema.
 * A different writer schema is resolved against mail.raw.v1 (fields the
 * reader does not know are skipped). The datum is checked by a bounded walk
 * of the binary encoding before avro-c reads it, so garbage is rejected with
 * LT_ERR_INVALID and a reason in errstr, never a crash. On success *out is a
 * new event (caller destroys); the header's schema id is
 * lt_mail_event_peek_schema_id()'s. */
lt_err_t lt_mail_event_decode(lt_mail_codec_t *c, const void *data, size_t len,
                              const char *writer_schema_json, lt_mail_event_t **out, char *errstr,
                              size_t errstr_size);

#endif
