/* lt_event: mail.raw.v1 events, their deterministic ids, and the Avro codec
 * in the Confluent wire format (see lt_event.h and docs/events.md). */
#include "lt_event.h"
#include "lt_avro_walk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <json-c/json.h>
#include <openssl/evp.h>

/* The compiled-in copy of schemas/mail.raw.v1.avsc. tests/unit/test_event_schema.c
 * fails when the two differ: edit the .avsc, then paste it here. */
static const char mail_raw_v1_schema[] =
    "{\n"
    "  \"type\": \"record\",\n"
    "  \"name\": \"MailRawV1\",\n"
    "  \"namespace\": \"io.lattice.mail\",\n"
    "  \"doc\": \"One mail message fetched from a provider (Gmail API or IMAP) and stored as raw RFC 822 bytes in object storage. Provider-neutral envelope of topic lattice.mail.raw.v1. Evolve BACKWARD-compatibly only: new fields must be optional with a default.\",\n"
    "  \"fields\": [\n"
    "    {\n"
    "      \"name\": \"event_id\",\n"
    "      \"type\": \"string\",\n"
    "      \"doc\": \"Deterministic event id (UUID text, version nibble 8): the first 16 bytes of SHA-256 over \\\"mail.raw.v1\\\\0tenant_id\\\\0provider\\\\0account_id\\\\0mailbox\\\\0provider_message_id\\\". A replay of the same message produces the same id; consumers deduplicate on it.\"\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"event_type\",\n"
    "      \"type\": \"string\",\n"
    "      \"default\": \"mail.raw.v1\",\n"
    "      \"doc\": \"Event type name, always \\\"mail.raw.v1\\\" for this schema.\"\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"event_time\",\n"
    "      \"type\": {\"type\": \"long\", \"logicalType\": \"timestamp-millis\"},\n"
    "      \"doc\": \"When the worker produced this event (milliseconds since the Unix epoch, UTC).\"\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"tenant_id\",\n"
    "      \"type\": \"string\",\n"
    "      \"doc\": \"Tenant that owns the mail account (mail_accounts.tenant_id).\"\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"source\",\n"
    "      \"doc\": \"Where the message came from.\",\n"
    "      \"type\": {\n"
    "        \"type\": \"record\",\n"
    "        \"name\": \"MailSource\",\n"
    "        \"doc\": \"The provider account and mailbox the message was fetched from.\",\n"
    "        \"fields\": [\n"
    "          {\n"
    "            \"name\": \"provider\",\n"
    "            \"doc\": \"Mail provider the message was fetched from.\",\n"
    "            \"type\": {\n"
    "              \"type\": \"enum\",\n"
    "              \"name\": \"MailProvider\",\n"
    "              \"doc\": \"Supported mail providers.\",\n"
    "              \"symbols\": [\"gmail\", \"imap\"]\n"
    "            }\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"account_id\",\n"
    "            \"type\": \"string\",\n"
    "            \"doc\": \"Logical inbox id, unique per tenant (mail_accounts.account_id), e.g. personal-gmail or workmail-support.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"mailbox\",\n"
    "            \"type\": [\"null\", \"string\"],\n"
    "            \"default\": null,\n"
    "            \"doc\": \"Sync scope the message was found in: the IMAP folder (e.g. INBOX) or the Gmail label/search scope; null when the provider has no such scope.\"\n"
    "          }\n"
    "        ]\n"
    "      }\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"payload\",\n"
    "      \"doc\": \"The message and its stored artifacts.\",\n"
    "      \"type\": {\n"
    "        \"type\": \"record\",\n"
    "        \"name\": \"MailPayload\",\n"
    "        \"doc\": \"Identifiers of the message and pointers to its raw bytes and attachments in object storage.\",\n"
    "        \"fields\": [\n"
    "          {\n"
    "            \"name\": \"provider_message_id\",\n"
    "            \"type\": \"string\",\n"
    "            \"doc\": \"Normalized provider message id, stable across replays and unique per account: the Gmail message id (hex) for gmail; \\\"<folder>;UIDVALIDITY=<uidvalidity>;UID=<uid>\\\" for imap (after RFC 5092 IMAP URLs).\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"provider_thread_id\",\n"
    "            \"type\": [\"null\", \"string\"],\n"
    "            \"default\": null,\n"
    "            \"doc\": \"Provider thread id (the Gmail threadId); null when the provider has none (IMAP).\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"received_at\",\n"
    "            \"type\": {\"type\": \"long\", \"logicalType\": \"timestamp-millis\"},\n"
    "            \"doc\": \"When the provider received the message (Gmail internalDate, IMAP INTERNALDATE), milliseconds since the Unix epoch, UTC.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"raw_object_uri\",\n"
    "            \"type\": \"string\",\n"
    "            \"doc\": \"Object storage URI of the raw RFC 822 message (.eml), e.g. s3://bucket/tenant/t/account/a/provider/p/message/m/message.eml.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"raw_size_bytes\",\n"
    "            \"type\": \"long\",\n"
    "            \"doc\": \"Size of the raw RFC 822 message in bytes.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"raw_sha256\",\n"
    "            \"type\": \"string\",\n"
    "            \"doc\": \"SHA-256 of the raw RFC 822 message, 64 lower-case hex digits.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"attachments_manifest\",\n"
    "            \"doc\": \"Attachments stored separately from the raw message; empty when none were extracted.\",\n"
    "            \"default\": [],\n"
    "            \"type\": {\n"
    "              \"type\": \"array\",\n"
    "              \"items\": {\n"
    "                \"type\": \"record\",\n"
    "                \"name\": \"MailAttachment\",\n"
    "                \"doc\": \"One attachment stored in object storage.\",\n"
    "                \"fields\": [\n"
    "                  {\n"
    "                    \"name\": \"attachment_id\",\n"
    "                    \"type\": \"string\",\n"
    "                    \"doc\": \"Attachment id, stable for the message: the Gmail attachmentId or the MIME part path (e.g. 1.2) for imap.\"\n"
    "                  },\n"
    "                  {\n"
    "                    \"name\": \"filename\",\n"
    "                    \"type\": [\"null\", \"string\"],\n"
    "                    \"default\": null,\n"
    "                    \"doc\": \"File name declared by the message (UTF-8), null when the part has none.\"\n"
    "                  },\n"
    "                  {\n"
    "                    \"name\": \"content_type\",\n"
    "                    \"type\": \"string\",\n"
    "                    \"doc\": \"MIME content type, lower case, without parameters (e.g. application/pdf).\"\n"
    "                  },\n"
    "                  {\n"
    "                    \"name\": \"size_bytes\",\n"
    "                    \"type\": \"long\",\n"
    "                    \"doc\": \"Decoded size of the attachment in bytes.\"\n"
    "                  },\n"
    "                  {\n"
    "                    \"name\": \"sha256\",\n"
    "                    \"type\": \"string\",\n"
    "                    \"doc\": \"SHA-256 of the decoded attachment bytes, 64 lower-case hex digits.\"\n"
    "                  },\n"
    "                  {\n"
    "                    \"name\": \"object_uri\",\n"
    "                    \"type\": \"string\",\n"
    "                    \"doc\": \"Object storage URI of the attachment: of the decoded attachment when encoded_offset is null; otherwise of the raw message (raw_object_uri) that holds it transfer-encoded.\"\n"
    "                  },\n"
    "                  {\n"
    "                    \"name\": \"encoded_offset\",\n"
    "                    \"type\": [\"null\", \"long\"],\n"
    "                    \"default\": null,\n"
    "                    \"doc\": \"Byte offset, in the object at object_uri, of the attachment's transfer-encoded content; null when object_uri holds the decoded attachment itself.\"\n"
    "                  },\n"
    "                  {\n"
    "                    \"name\": \"encoded_length\",\n"
    "                    \"type\": [\"null\", \"long\"],\n"
    "                    \"default\": null,\n"
    "                    \"doc\": \"Length in bytes of the transfer-encoded content at encoded_offset (an HTTP Range of bytes=encoded_offset-(encoded_offset+encoded_length-1)); null with encoded_offset.\"\n"
    "                  },\n"
    "                  {\n"
    "                    \"name\": \"transfer_encoding\",\n"
    "                    \"type\": [\"null\", \"string\"],\n"
    "                    \"default\": null,\n"
    "                    \"doc\": \"How to decode the bytes of the range into the attachment (size_bytes and sha256 are of the decoded bytes): base64, quoted-printable or binary (the bytes as they are); null with encoded_offset.\"\n"
    "                  }\n"
    "                ]\n"
    "              }\n"
    "            }\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"rfc822_message_id\",\n"
    "            \"type\": [\"null\", \"string\"],\n"
    "            \"default\": null,\n"
    "            \"doc\": \"The Message-ID header of the message, without angle brackets; null when absent.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"attachments_manifest_truncated\",\n"
    "            \"type\": \"boolean\",\n"
    "            \"default\": false,\n"
    "            \"doc\": \"True when attachments_manifest lists only the first attachments, so that the event stays under the Kafka message size limit; the full manifest is then the object at attachments_manifest_ref.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"attachments_manifest_ref\",\n"
    "            \"type\": [\"null\", \"string\"],\n"
    "            \"default\": null,\n"
    "            \"doc\": \"Object storage URI of the full manifest (JSON: {\\\"attachments_manifest\\\": [entries with the fields of MailAttachment]}) when attachments_manifest_truncated is true; null otherwise.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"parse_error\",\n"
    "            \"type\": [\"null\", \"string\"],\n"
    "            \"default\": null,\n"
    "            \"doc\": \"Why the message could only be partly derived (MIME structure the parser refused, an attachment that could not be stored, a declared content type replaced by application/octet-stream); null when it was derived fully. The raw message is stored in every case.\"\n"
    "          }\n"
    "        ]\n"
    "      }\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"data_classification\",\n"
    "      \"type\": \"string\",\n"
    "      \"default\": \"confidential\",\n"
    "      \"doc\": \"Data classification of the content (mail_accounts.data_classification).\"\n"
    "    }\n"
    "  ]\n"
    "}\n"
    ;

/* Writer schemas kept decoded (by registry id). */
#define WRITER_CACHE_SIZE 8

typedef struct {
    char *attachment_id;
    char *filename; /* NULL = null */
    char *content_type;
    int64_t size_bytes;
    char *sha256;
    char *object_uri;
    int64_t encoded_offset; /* -1: null (object_uri is the decoded attachment) */
    int64_t encoded_length;
    char *transfer_encoding;
} attachment_t;

struct lt_mail_event_s {
    char *event_id;
    char *event_type;
    int64_t event_time;
    char *tenant_id;
    lt_provider_t provider;
    char *account_id;
    char *mailbox;
    char *provider_message_id;
    char *provider_thread_id;
    int64_t received_at;
    char *raw_object_uri;
    int64_t raw_size_bytes;
    char *raw_sha256;
    attachment_t *att;
    size_t natt;
    size_t att_alloc;
    char *rfc822_message_id;
    int manifest_truncated;
    char *manifest_ref;
    char *parse_error;
    char *data_classification;
};

typedef struct {
    char *json;                 /* writer schema text, the cache key */
    avro_schema_t schema;       /* parsed writer schema */
    avro_value_iface_t *iface;  /* resolved writer -> reader, NULL if same schema */
    avro_value_t resolved;      /* instance of iface whose dest is the codec's value */
    /* 1: iface is the writer's own generic class and resolved a value of it
     * (read as written; fields added to mail.raw.v1 later take their
     * defaults: avro-c 1.11 crashes resolving a reader field the writer lacks) */
    int native;
} writer_entry_t;

struct lt_mail_codec_s {
    avro_schema_t schema;      /* mail.raw.v1 */
    avro_value_iface_t *iface; /* generic class of schema */
    avro_value_t value;        /* reused for every encode/decode */
    writer_entry_t writers[WRITER_CACHE_SIZE];
    size_t next_evict;
};

/* ---- small helpers ---------------------------------------------------- */

static void replace_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? lt_xstrdup(src) : NULL;
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF), no NUL. */
static int utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += len;
    }
    return 1;
}

static int is_lower_hex(const char *s, size_t want)
{
    size_t i = 0;
    for (; s[i]; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return i == want;
}

static int is_uuid_text(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}


/* ---- event: builder, getters ------------------------------------------- */

lt_mail_event_t *lt_mail_event_new(void)
{
    lt_mail_event_t *ev = lt_xcalloc(1, sizeof(*ev));
    ev->event_type = lt_xstrdup(LT_MAIL_EVENT_TYPE);
    ev->data_classification = lt_xstrdup(LT_MAIL_DEFAULT_CLASSIFICATION);
    ev->provider = LT_PROVIDER_GMAIL;
    return ev;
}

static void attachment_free(attachment_t *a)
{
    free(a->attachment_id);
    free(a->filename);
    free(a->content_type);
    free(a->sha256);
    free(a->object_uri);
    free(a->transfer_encoding);
}

void lt_mail_event_destroy(lt_mail_event_t *ev)
{
    if (!ev)
        return;
    free(ev->event_id);
    free(ev->event_type);
    free(ev->tenant_id);
    free(ev->account_id);
    free(ev->mailbox);
    free(ev->provider_message_id);
    free(ev->provider_thread_id);
    free(ev->raw_object_uri);
    free(ev->raw_sha256);
    for (size_t i = 0; i < ev->natt; i++)
        attachment_free(&ev->att[i]);
    free(ev->att);
    free(ev->rfc822_message_id);
    free(ev->manifest_ref);
    free(ev->parse_error);
    free(ev->data_classification);
    free(ev);
}

#define STR_ACCESSORS(field)                                                                      \
    void lt_mail_event_set_##field(lt_mail_event_t *ev, const char *v)                            \
    {                                                                                             \
        replace_str(&ev->field, v);                                                               \
    }                                                                                             \
    const char *lt_mail_event_get_##field(const lt_mail_event_t *ev)                              \
    {                                                                                             \
        return ev->field;                                                                         \
    }
#define INT_ACCESSORS(field)                                                                      \
    void lt_mail_event_set_##field(lt_mail_event_t *ev, int64_t v)                                \
    {                                                                                             \
        ev->field = v;                                                                            \
    }                                                                                             \
    int64_t lt_mail_event_get_##field(const lt_mail_event_t *ev)                                  \
    {                                                                                             \
        return ev->field;                                                                         \
    }

STR_ACCESSORS(event_id)
STR_ACCESSORS(event_type)
INT_ACCESSORS(event_time)
STR_ACCESSORS(tenant_id)
STR_ACCESSORS(account_id)
STR_ACCESSORS(mailbox)
STR_ACCESSORS(provider_message_id)
STR_ACCESSORS(provider_thread_id)
INT_ACCESSORS(received_at)
STR_ACCESSORS(raw_object_uri)
INT_ACCESSORS(raw_size_bytes)
STR_ACCESSORS(raw_sha256)
STR_ACCESSORS(rfc822_message_id)
STR_ACCESSORS(data_classification)

void lt_mail_event_set_attachments_manifest_ref(lt_mail_event_t *ev, const char *uri_or_null)
{
    replace_str(&ev->manifest_ref, uri_or_null);
}
const char *lt_mail_event_get_attachments_manifest_ref(const lt_mail_event_t *ev)
{
    return ev->manifest_ref;
}
void lt_mail_event_set_attachments_manifest_truncated(lt_mail_event_t *ev, int truncated)
{
    ev->manifest_truncated = truncated != 0;
}
int lt_mail_event_get_attachments_manifest_truncated(const lt_mail_event_t *ev)
{
    return ev->manifest_truncated;
}
void lt_mail_event_set_parse_error(lt_mail_event_t *ev, const char *reason_or_null)
{
    replace_str(&ev->parse_error, reason_or_null);
}
const char *lt_mail_event_get_parse_error(const lt_mail_event_t *ev)
{
    return ev->parse_error;
}

void lt_mail_event_truncate_attachments(lt_mail_event_t *ev, size_t n)
{
    while (ev->natt > n)
        attachment_free(&ev->att[--ev->natt]);
}

void lt_mail_event_set_provider(lt_mail_event_t *ev, lt_provider_t provider)
{
    ev->provider = provider;
}

lt_provider_t lt_mail_event_get_provider(const lt_mail_event_t *ev)
{
    return ev->provider;
}

void lt_mail_event_add_attachment(lt_mail_event_t *ev, const char *attachment_id,
                                  const char *filename_or_null, const char *content_type,
                                  int64_t size_bytes, const char *sha256_hex,
                                  const char *object_uri)
{
    if (ev->natt == ev->att_alloc) {
        ev->att_alloc = ev->att_alloc ? ev->att_alloc * 2 : 4;
        ev->att = lt_xrealloc(ev->att, ev->att_alloc * sizeof(*ev->att));
    }
    attachment_t *a = &ev->att[ev->natt++];
    memset(a, 0, sizeof(*a));
    replace_str(&a->attachment_id, attachment_id);
    replace_str(&a->filename, filename_or_null);
    replace_str(&a->content_type, content_type);
    a->size_bytes = size_bytes;
    replace_str(&a->sha256, sha256_hex);
    replace_str(&a->object_uri, object_uri);
    a->encoded_offset = a->encoded_length = -1;
}

void lt_mail_event_set_attachment_range(lt_mail_event_t *ev, size_t i, int64_t offset,
                                        int64_t length, const char *encoding)
{
    if (i >= ev->natt)
        return;
    attachment_t *a = &ev->att[i];
    a->encoded_offset = offset;
    a->encoded_length = length;
    replace_str(&a->transfer_encoding, encoding);
}

size_t lt_mail_event_attachment_count(const lt_mail_event_t *ev)
{
    return ev->natt;
}

lt_err_t lt_mail_event_get_attachment(const lt_mail_event_t *ev, size_t i,
                                      lt_mail_attachment_t *out)
{
    if (i >= ev->natt)
        return LT_ERR_NOT_FOUND;
    const attachment_t *a = &ev->att[i];
    *out = (lt_mail_attachment_t){a->attachment_id,  a->filename,       a->content_type,
                                  a->size_bytes,     a->sha256,         a->object_uri,
                                  a->encoded_offset, a->encoded_length, a->transfer_encoding};
    return LT_OK;
}

/* ---- deterministic id ------------------------------------------------------ */

lt_err_t lt_mail_event_id(const char *tenant, lt_provider_t provider, const char *account_id,
                          const char *mailbox_or_null, const char *provider_message_id,
                          char out[37])
{
    out[0] = 0;
    if (!tenant || !account_id || !provider_message_id ||
        (provider != LT_PROVIDER_GMAIL && provider != LT_PROVIDER_IMAP))
        return LT_ERR_INVALID;
    const char *parts[6] = {LT_MAIL_EVENT_TYPE,      tenant,
                            lt_provider_name(provider), account_id,
                            mailbox_or_null ? mailbox_or_null : "", provider_message_id};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        fputs("lattice: out of memory\n", stderr);
        abort();
    }
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < 6; i++) {
        /* NUL-separated: the separator goes between parts, not after the last */
        if (i > 0)
            ok = EVP_DigestUpdate(ctx, "", 1);
        if (ok)
            ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]));
    }
    if (ok)
        ok = EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen < 16)
        return LT_ERR_INVALID;
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x80); /* version 8 (RFC 9562 custom) */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* variant 10xx */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[md[i] >> 4];
        out[o++] = hex[md[i] & 0x0f];
    }
    out[o] = 0;
    return LT_OK;
}

lt_err_t lt_mail_event_derive_id(lt_mail_event_t *ev, char *errstr, size_t errstr_size)
{
    char id[37];
    if (lt_mail_event_id(ev->tenant_id, ev->provider, ev->account_id, ev->mailbox,
                         ev->provider_message_id, id))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "event id needs tenant_id, a valid provider, account_id and "
                         "provider_message_id");
    replace_str(&ev->event_id, id);
    return LT_OK;
}

const char *lt_mail_event_schema_json(void)
{
    return mail_raw_v1_schema;
}

/* ---- JSON (debugging, tests; the manifest object) -------------------------- */

static lt_err_t check_str(const char *name, const char *s, int required, int nonempty,
                          char *errstr, size_t errstr_size);

static json_object *jstr(const char *s)
{
    return s ? json_object_new_string(s) : NULL; /* NULL is JSON null */
}

static json_object *manifest_json(const lt_mail_event_t *ev)
{
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < ev->natt; i++) {
        const attachment_t *a = &ev->att[i];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "attachment_id", jstr(a->attachment_id));
        json_object_object_add(o, "filename", jstr(a->filename));
        json_object_object_add(o, "content_type", jstr(a->content_type));
        json_object_object_add(o, "size_bytes", json_object_new_int64(a->size_bytes));
        json_object_object_add(o, "sha256", jstr(a->sha256));
        json_object_object_add(o, "object_uri", jstr(a->object_uri));
        if (a->encoded_offset >= 0) {
            json_object_object_add(o, "encoded_offset", json_object_new_int64(a->encoded_offset));
            json_object_object_add(o, "encoded_length", json_object_new_int64(a->encoded_length));
            json_object_object_add(o, "transfer_encoding", jstr(a->transfer_encoding));
        }
        json_object_array_add(arr, o);
    }
    return arr;
}

lt_err_t lt_mail_event_manifest_to_json(const lt_mail_event_t *ev, lt_buf_t *out)
{
    json_object *root = json_object_new_object();
    json_object_object_add(root, "attachments_manifest", manifest_json(ev));
    const char *s = json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    lt_err_t err = lt_buf_append(out, s, strlen(s));
    json_object_put(root);
    return err;
}

/* A string member of o, or NULL (absent or JSON null); -1 if another type. */
static int jget_str(json_object *o, const char *name, const char **out)
{
    json_object *v = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(o, name, &v) || !v)
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return -1;
    *out = json_object_get_string(v);
    return 0;
}

lt_err_t lt_mail_event_manifest_from_json(lt_mail_event_t *ev, const char *json, size_t len,
                                          char *errstr, size_t errstr_size)
{
    lt_err_t err = LT_OK;
    json_tokener *tok = json_tokener_new();
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    int complete = json_tokener_get_error(tok) == json_tokener_success &&
                   json_tokener_get_parse_end(tok) == len;
    json_tokener_free(tok);
    json_object *arr = NULL;
    if (!root || !complete || len > INT32_MAX ||
        !json_object_object_get_ex(root, "attachments_manifest", &arr) ||
        !json_object_is_type(arr, json_type_array)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                        "manifest: not a JSON object with an attachments_manifest array");
        goto out;
    }
    lt_mail_event_t *tmp = lt_mail_event_new();
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n && !err; i++) {
        json_object *o = json_object_array_get_idx(arr, i), *size = NULL, *eoff = NULL,
                    *elen = NULL;
        const char *aid, *fname, *ctype, *sha, *uri, *tenc = NULL;
        if (!json_object_is_type(o, json_type_object) || jget_str(o, "attachment_id", &aid) ||
            jget_str(o, "filename", &fname) || jget_str(o, "content_type", &ctype) ||
            jget_str(o, "sha256", &sha) || jget_str(o, "object_uri", &uri) ||
            !json_object_object_get_ex(o, "size_bytes", &size) ||
            !json_object_is_type(size, json_type_int) || !aid || !ctype || !sha || !uri ||
            check_str("attachment.attachment_id", aid, 1, 1, errstr, errstr_size) ||
            check_str("attachment.filename", fname, 0, 0, errstr, errstr_size) ||
            check_str("attachment.content_type", ctype, 1, 1, errstr, errstr_size) ||
            check_str("attachment.object_uri", uri, 1, 1, errstr, errstr_size) ||
            !is_lower_hex(sha, 64) || json_object_get_int64(size) < 0) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                            "manifest: entry %zu is not a valid attachment", i);
            break;
        }
        /* the range: all three or none */
        int has_off = json_object_object_get_ex(o, "encoded_offset", &eoff) && eoff;
        int has_len = json_object_object_get_ex(o, "encoded_length", &elen) && elen;
        if (jget_str(o, "transfer_encoding", &tenc) || has_off != has_len ||
            has_off != (tenc != NULL) ||
            (has_off && (!json_object_is_type(eoff, json_type_int) ||
                         !json_object_is_type(elen, json_type_int) ||
                         json_object_get_int64(eoff) < 0 || json_object_get_int64(elen) < 0 ||
                         check_str("attachment.transfer_encoding", tenc, 1, 1, errstr,
                                   errstr_size)))) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                            "manifest: entry %zu has an invalid encoded range", i);
            break;
        }
        lt_mail_event_add_attachment(tmp, aid, fname, ctype, json_object_get_int64(size), sha,
                                     uri);
        if (has_off)
            lt_mail_event_set_attachment_range(tmp, tmp->natt - 1, json_object_get_int64(eoff),
                                               json_object_get_int64(elen), tenc);
    }
    if (!err) { /* swap the lists */
        attachment_t *a = ev->att;
        size_t na = ev->natt, nalloc = ev->att_alloc;
        ev->att = tmp->att;
        ev->natt = tmp->natt;
        ev->att_alloc = tmp->att_alloc;
        tmp->att = a;
        tmp->natt = na;
        tmp->att_alloc = nalloc;
    }
    lt_mail_event_destroy(tmp);
out:
    json_object_put(root);
    return err;
}

lt_err_t lt_mail_event_to_json(const lt_mail_event_t *ev, lt_buf_t *out)
{
    json_object *root = json_object_new_object();
    json_object_object_add(root, "event_id", jstr(ev->event_id));
    json_object_object_add(root, "event_type", jstr(ev->event_type));
    json_object_object_add(root, "event_time", json_object_new_int64(ev->event_time));
    json_object_object_add(root, "tenant_id", jstr(ev->tenant_id));
    json_object *src = json_object_new_object();
    json_object_object_add(src, "provider", jstr(lt_provider_name(ev->provider)));
    json_object_object_add(src, "account_id", jstr(ev->account_id));
    json_object_object_add(src, "mailbox", jstr(ev->mailbox));
    json_object_object_add(root, "source", src);
    json_object *pl = json_object_new_object();
    json_object_object_add(pl, "provider_message_id", jstr(ev->provider_message_id));
    json_object_object_add(pl, "provider_thread_id", jstr(ev->provider_thread_id));
    json_object_object_add(pl, "received_at", json_object_new_int64(ev->received_at));
    json_object_object_add(pl, "raw_object_uri", jstr(ev->raw_object_uri));
    json_object_object_add(pl, "raw_size_bytes", json_object_new_int64(ev->raw_size_bytes));
    json_object_object_add(pl, "raw_sha256", jstr(ev->raw_sha256));
    json_object *arr = manifest_json(ev);
    json_object_object_add(pl, "attachments_manifest", arr);
    json_object_object_add(pl, "rfc822_message_id", jstr(ev->rfc822_message_id));
    json_object_object_add(pl, "attachments_manifest_truncated",
                           json_object_new_boolean(ev->manifest_truncated));
    json_object_object_add(pl, "attachments_manifest_ref", jstr(ev->manifest_ref));
    json_object_object_add(pl, "parse_error", jstr(ev->parse_error));
    json_object_object_add(root, "payload", pl);
    json_object_object_add(root, "data_classification", jstr(ev->data_classification));
    const char *s = json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    lt_err_t err = lt_buf_append(out, s, strlen(s));
    json_object_put(root);
    return err;
}

/* ---- codec ------------------------------------------------------------------ */

lt_mail_codec_t *lt_mail_codec_new(char *errstr, size_t errstr_size)
{
    lt_mail_codec_t *c = lt_xcalloc(1, sizeof(*c));
    if (avro_schema_from_json_length(mail_raw_v1_schema, sizeof(mail_raw_v1_schema) - 1,
                                     &c->schema)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.raw.v1 schema: %s",
                  avro_strerror());
        goto fail;
    }
    c->iface = avro_generic_class_from_schema(c->schema);
    if (!c->iface) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.raw.v1 value class: %s",
                  avro_strerror());
        goto fail;
    }
    if (avro_generic_value_new(c->iface, &c->value)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.raw.v1 value: %s", avro_strerror());
        c->value.iface = NULL;
        goto fail;
    }
    return c;
fail:
    lt_mail_codec_destroy(c);
    return NULL;
}

static void writer_entry_clear(writer_entry_t *w)
{
    if (w->iface) {
        avro_value_decref(&w->resolved);
        avro_value_iface_decref(w->iface);
    }
    if (w->schema)
        avro_schema_decref(w->schema);
    free(w->json);
    memset(w, 0, sizeof(*w));
}

void lt_mail_codec_destroy(lt_mail_codec_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < WRITER_CACHE_SIZE; i++)
        writer_entry_clear(&c->writers[i]);
    if (c->value.iface)
        avro_value_decref(&c->value);
    if (c->iface)
        avro_value_iface_decref(c->iface);
    if (c->schema)
        avro_schema_decref(c->schema);
    free(c);
}

/* -- encode -- */

static int set_string(avro_value_t *rec, const char *name, const char *s)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL))
        return -1;
    return avro_value_set_string(&f, s) ? -1 : 0;
}

static int set_long(avro_value_t *rec, const char *name, int64_t v)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL))
        return -1;
    return avro_value_set_long(&f, v) ? -1 : 0;
}

/* ["null","long"]: branch 0 is null (v < 0), branch 1 the long. */
static int set_nullable_long(avro_value_t *rec, const char *name, int64_t v)
{
    avro_value_t f, b;
    if (avro_value_get_by_name(rec, name, &f, NULL))
        return -1;
    if (avro_value_set_branch(&f, v >= 0 ? 1 : 0, &b))
        return -1;
    return (v >= 0 ? avro_value_set_long(&b, v) : avro_value_set_null(&b)) ? -1 : 0;
}

/* ["null","string"]: branch 0 is null, branch 1 the string. */
static int set_nullable(avro_value_t *rec, const char *name, const char *s)
{
    avro_value_t f, b;
    if (avro_value_get_by_name(rec, name, &f, NULL))
        return -1;
    if (avro_value_set_branch(&f, s ? 1 : 0, &b))
        return -1;
    return (s ? avro_value_set_string(&b, s) : avro_value_set_null(&b)) ? -1 : 0;
}

static lt_err_t check_str(const char *name, const char *s, int required, int nonempty,
                          char *errstr, size_t errstr_size)
{
    if (!s) {
        if (required)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.raw.v1: %s is not set",
                             name);
        return LT_OK;
    }
    if (nonempty && !*s)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.raw.v1: %s is empty", name);
    if (!utf8_valid(s, strlen(s)))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "mail.raw.v1: %s is not valid UTF-8", name);
    return LT_OK;
}

static lt_err_t validate(const lt_mail_event_t *ev, char *errstr, size_t n)
{
    lt_err_t err;
#define CHK(name, val, req, nonempty)                                                             \
    if ((err = check_str(name, val, req, nonempty, errstr, n)))                                   \
        return err;
    CHK("event_id", ev->event_id, 1, 1);
    CHK("event_type", ev->event_type, 1, 1);
    CHK("tenant_id", ev->tenant_id, 1, 1);
    CHK("source.account_id", ev->account_id, 1, 1);
    CHK("source.mailbox", ev->mailbox, 0, 0);
    CHK("payload.provider_message_id", ev->provider_message_id, 1, 1);
    CHK("payload.provider_thread_id", ev->provider_thread_id, 0, 0);
    CHK("payload.raw_object_uri", ev->raw_object_uri, 1, 1);
    CHK("payload.raw_sha256", ev->raw_sha256, 1, 1);
    CHK("payload.rfc822_message_id", ev->rfc822_message_id, 0, 0);
    CHK("payload.attachments_manifest_ref", ev->manifest_ref, 0, 0);
    CHK("payload.parse_error", ev->parse_error, 0, 0);
    CHK("data_classification", ev->data_classification, 1, 1);
    for (size_t i = 0; i < ev->natt; i++) {
        const attachment_t *a = &ev->att[i];
        CHK("attachment.attachment_id", a->attachment_id, 1, 1);
        CHK("attachment.filename", a->filename, 0, 0);
        CHK("attachment.content_type", a->content_type, 1, 1);
        CHK("attachment.sha256", a->sha256, 1, 1);
        CHK("attachment.object_uri", a->object_uri, 1, 1);
        if (a->size_bytes < 0)
            return lt_seterr(errstr, n, LT_ERR_INVALID,
                             "mail.raw.v1: attachment %zu size_bytes is negative", i);
        if (!is_lower_hex(a->sha256, 64))
            return lt_seterr(errstr, n, LT_ERR_INVALID,
                             "mail.raw.v1: attachment %zu sha256 is not 64 lower-case hex "
                             "digits",
                             i);
        CHK("attachment.transfer_encoding", a->transfer_encoding, 0, 1);
        if ((a->encoded_offset >= 0) != (a->encoded_length >= 0) ||
            (a->encoded_offset >= 0) != (a->transfer_encoding != NULL) ||
            a->encoded_offset < -1 || a->encoded_length < -1)
            return lt_seterr(errstr, n, LT_ERR_INVALID,
                             "mail.raw.v1: attachment %zu: encoded_offset, encoded_length and "
                             "transfer_encoding are all set (non-negative) or all null",
                             i);
    }
#undef CHK
    if (!is_uuid_text(ev->event_id))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.raw.v1: event_id is not lower-case UUID text");
    if (ev->provider != LT_PROVIDER_GMAIL && ev->provider != LT_PROVIDER_IMAP)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: unknown provider %d",
                         (int)ev->provider);
    if (ev->raw_size_bytes < 0)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: raw_size_bytes is negative");
    if (!is_lower_hex(ev->raw_sha256, 64))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.raw.v1: raw_sha256 is not 64 lower-case hex digits");
    return LT_OK;
}

static int fill_value(avro_value_t *v, const lt_mail_event_t *ev)
{
    avro_value_t src, pl, arr;
    if (set_string(v, "event_id", ev->event_id) || set_string(v, "event_type", ev->event_type) ||
        set_long(v, "event_time", ev->event_time) || set_string(v, "tenant_id", ev->tenant_id) ||
        set_string(v, "data_classification", ev->data_classification))
        return -1;
    if (avro_value_get_by_name(v, "source", &src, NULL))
        return -1;
    avro_value_t prov;
    if (avro_value_get_by_name(&src, "provider", &prov, NULL) ||
        avro_value_set_enum(&prov, (int)ev->provider) ||
        set_string(&src, "account_id", ev->account_id) ||
        set_nullable(&src, "mailbox", ev->mailbox))
        return -1;
    if (avro_value_get_by_name(v, "payload", &pl, NULL))
        return -1;
    if (set_string(&pl, "provider_message_id", ev->provider_message_id) ||
        set_nullable(&pl, "provider_thread_id", ev->provider_thread_id) ||
        set_long(&pl, "received_at", ev->received_at) ||
        set_string(&pl, "raw_object_uri", ev->raw_object_uri) ||
        set_long(&pl, "raw_size_bytes", ev->raw_size_bytes) ||
        set_string(&pl, "raw_sha256", ev->raw_sha256) ||
        set_nullable(&pl, "rfc822_message_id", ev->rfc822_message_id) ||
        set_nullable(&pl, "attachments_manifest_ref", ev->manifest_ref) ||
        set_nullable(&pl, "parse_error", ev->parse_error))
        return -1;
    avro_value_t trunc;
    if (avro_value_get_by_name(&pl, "attachments_manifest_truncated", &trunc, NULL) ||
        avro_value_set_boolean(&trunc, ev->manifest_truncated))
        return -1;
    if (avro_value_get_by_name(&pl, "attachments_manifest", &arr, NULL))
        return -1;
    for (size_t i = 0; i < ev->natt; i++) {
        const attachment_t *a = &ev->att[i];
        avro_value_t el;
        if (avro_value_append(&arr, &el, NULL) ||
            set_string(&el, "attachment_id", a->attachment_id) ||
            set_nullable(&el, "filename", a->filename) ||
            set_string(&el, "content_type", a->content_type) ||
            set_long(&el, "size_bytes", a->size_bytes) || set_string(&el, "sha256", a->sha256) ||
            set_string(&el, "object_uri", a->object_uri) ||
            set_nullable_long(&el, "encoded_offset", a->encoded_offset) ||
            set_nullable_long(&el, "encoded_length", a->encoded_length) ||
            set_nullable(&el, "transfer_encoding", a->transfer_encoding))
            return -1;
    }
    return 0;
}

lt_err_t lt_mail_event_encode(lt_mail_codec_t *c, const lt_mail_event_t *ev, int32_t schema_id,
                              lt_buf_t *out, char *errstr, size_t errstr_size)
{
    lt_err_t err = validate(ev, errstr, errstr_size);
    if (err)
        return err;
    if (schema_id < 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "negative schema id %" PRId32,
                         schema_id);
    char *tmp = NULL;
    avro_writer_t w = NULL;
    avro_value_reset(&c->value);
    if (fill_value(&c->value, ev)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.raw.v1: avro: %s",
                        avro_strerror());
        goto out;
    }
    size_t size = 0;
    if (avro_value_sizeof(&c->value, &size)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.raw.v1: avro size: %s",
                        avro_strerror());
        goto out;
    }
    if (size > LT_MAIL_EVENT_MAX_WIRE - LT_WIRE_HEADER_SIZE ||
        size + LT_WIRE_HEADER_SIZE > lt_buf_cap(out) - lt_buf_len(out)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                        "mail.raw.v1: encoded event of %zu bytes does not fit", size);
        goto out;
    }
    tmp = lt_xmalloc(size);
    w = avro_writer_memory(tmp, (int64_t)size);
    if (!w || avro_value_write(w, &c->value) || avro_writer_tell(w) != (int64_t)size) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.raw.v1: avro write: %s",
                        avro_strerror());
        goto out;
    }
    uint32_t id = (uint32_t)schema_id;
    uint8_t hdr[LT_WIRE_HEADER_SIZE] = {0, (uint8_t)(id >> 24), (uint8_t)(id >> 16),
                                        (uint8_t)(id >> 8), (uint8_t)id};
    /* both fit: checked above */
    err = lt_buf_append(out, hdr, sizeof(hdr));
    if (!err)
        err = lt_buf_append(out, tmp, size);
    if (err)
        lt_seterr(errstr, errstr_size, err, "mail.raw.v1: output buffer");
out:
    if (w)
        avro_writer_free(w);
    free(tmp);
    avro_value_reset(&c->value);
    return err;
}

static lt_err_t encoded_size(lt_mail_codec_t *c, const lt_mail_event_t *ev, size_t *size,
                             char *errstr, size_t errstr_size)
{
    lt_err_t err = LT_OK;
    avro_value_reset(&c->value);
    if (fill_value(&c->value, ev) || avro_value_sizeof(&c->value, size))
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.raw.v1: avro size: %s",
                        avro_strerror());
    else
        *size += LT_WIRE_HEADER_SIZE;
    avro_value_reset(&c->value);
    return err;
}

lt_err_t lt_mail_event_fit(lt_mail_codec_t *c, lt_mail_event_t *ev, size_t max_wire,
                           size_t *kept, char *errstr, size_t errstr_size)
{
    size_t all = ev->natt, size = 0;
    lt_err_t err = validate(ev, errstr, errstr_size);
    if (!err)
        err = encoded_size(c, ev, &size, errstr, errstr_size);
    if (err)
        return err;
    if (kept)
        *kept = all;
    if (size <= max_wire)
        return LT_OK;
    /* the largest prefix of the manifest that fits (sizes grow with it) */
    int was = ev->manifest_truncated;
    ev->manifest_truncated = 1;
    size_t lo = 0, hi = all;
    ev->natt = 0;
    err = encoded_size(c, ev, &size, errstr, errstr_size);
    if (!err && size > max_wire)
        err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                        "mail.raw.v1: %zu bytes without any manifest entry, over the %zu-byte "
                        "bound",
                        size, max_wire);
    while (!err && hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        ev->natt = mid;
        err = encoded_size(c, ev, &size, errstr, errstr_size);
        if (size <= max_wire)
            lo = mid;
        else
            hi = mid;
    }
    ev->natt = all;
    if (err) {
        ev->manifest_truncated = was;
        return err;
    }
    lt_mail_event_truncate_attachments(ev, lo);
    if (kept)
        *kept = lo;
    return LT_OK;
}

/* -- decode -- */

lt_err_t lt_mail_event_peek_schema_id(const void *data, size_t len, int32_t *schema_id,
                                      char *errstr, size_t errstr_size)
{
    const uint8_t *p = data;
    if (!p || len < LT_WIRE_HEADER_SIZE)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "value of %zu bytes is shorter than the 5-byte wire header", len);
    if (p[0] != 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "bad magic byte 0x%02x (want 0x00: Confluent wire format)", p[0]);
    uint32_t id = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4];
    if (id > INT32_MAX)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "schema id %" PRIu32 " out of range",
                         id);
    if (schema_id)
        *schema_id = (int32_t)id;
    return LT_OK;
}

/* The optional payload fields added to mail.raw.v1 after its first version:
 * a writer from before them is read as written (they keep their defaults). */
static const char *const k_later_fields[] = {
    "attachments_manifest_truncated", "attachments_manifest_ref", "parse_error",
    /* MailAttachment */
    "encoded_offset", "encoded_length", "transfer_encoding"};

/* A record's field schema by name, NULL if none (avro-c 1.11's
 * avro_schema_record_field_get() crashes on a record without fields). */
static avro_schema_t field_get(avro_schema_t rec, const char *name)
{
    size_t n = avro_schema_record_size(rec);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(avro_schema_record_field_name(rec, (int)i), name))
            return avro_schema_record_field_get_by_index(rec, (int)i);
    return NULL;
}

static int is_later_field(const char *name)
{
    for (size_t k = 0; k < sizeof(k_later_fields) / sizeof(k_later_fields[0]); k++)
        if (!strcmp(name, k_later_fields[k]))
            return 1;
    return 0;
}

/* Which reader record fields the writer lacks (records, and records inside
 * arrays, matched by field name): 0 none, 1 only k_later_fields, 2 others.
 * avro-c 1.11's avro_resolved_writer_new() crashes on a reader field the
 * writer lacks, so it is only called when this says 0. */
static int missing_fields(avro_schema_t w, avro_schema_t r, int depth)
{
    if (depth > LT_AVRO_WALK_MAX_DEPTH)
        return 2;
    if (is_avro_array(w) && is_avro_array(r))
        return missing_fields(avro_schema_array_items(w), avro_schema_array_items(r), depth + 1);
    if (!is_avro_record(w) || !is_avro_record(r))
        return 0; /* other mismatches are avro-c's to judge */
    int worst = 0;
    size_t nr = avro_schema_record_size(r);
    for (size_t i = 0; i < nr; i++) {
        const char *name = avro_schema_record_field_name(r, (int)i);
        avro_schema_t wf = field_get(w, name);
        int m;
        if (!wf)
            m = is_later_field(name) ? 1 : 2;
        else
            m = missing_fields(wf, avro_schema_record_field_get_by_index(r, (int)i), depth + 1);
        if (m > worst)
            worst = m;
    }
    return worst;
}

/* The writer-schema cache entry for json (parsed and resolved on a miss). */
static lt_err_t writer_get(lt_mail_codec_t *c, const char *json, writer_entry_t **out,
                           char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < WRITER_CACHE_SIZE; i++) {
        if (c->writers[i].json && !strcmp(c->writers[i].json, json)) {
            *out = &c->writers[i];
            return LT_OK;
        }
    }
    writer_entry_t *w = &c->writers[c->next_evict];
    c->next_evict = (c->next_evict + 1) % WRITER_CACHE_SIZE;
    writer_entry_clear(w);
    if (avro_schema_from_json_length(json, strlen(json), &w->schema)) {
        w->schema = NULL;
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "writer schema: %s",
                         avro_strerror());
    }
    if (!avro_schema_equal(w->schema, c->schema)) {
        int missing = missing_fields(w->schema, c->schema, 0);
        if (missing == 2) {
            writer_entry_clear(w);
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "writer schema cannot be read as mail.raw.v1: it lacks a field "
                             "that has no default");
        }
        w->native = missing == 1;
        w->iface = w->native ? avro_generic_class_from_schema(w->schema)
                             : avro_resolved_writer_new(w->schema, c->schema);
        if (!w->iface) {
            lt_err_t err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                     "writer schema cannot be read as mail.raw.v1: %s",
                                     avro_strerror());
            writer_entry_clear(w);
            return err;
        }
        if (w->native) {
            if (avro_generic_value_new(w->iface, &w->resolved)) {
                lt_err_t err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                         "writer value: %s", avro_strerror());
                avro_value_iface_decref(w->iface);
                w->iface = NULL;
                writer_entry_clear(w);
                return err;
            }
        } else if (avro_resolved_writer_new_value(w->iface, &w->resolved)) {
            lt_err_t err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                     "resolved value: %s", avro_strerror());
            avro_value_iface_decref(w->iface);
            w->iface = NULL;
            writer_entry_clear(w);
            return err;
        }
        if (!w->native)
            avro_resolved_writer_set_dest(&w->resolved, &c->value);
    }
    w->json = lt_xstrdup(json);
    *out = w;
    return LT_OK;
}

static lt_err_t get_string(avro_value_t *rec, const char *name, char **dst, char *errstr,
                           size_t n)
{
    avro_value_t f;
    const char *s = NULL;
    size_t size = 0;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_string(&f, &s, &size) ||
        !s || size == 0)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: cannot read %s", name);
    if (!utf8_valid(s, size - 1))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.raw.v1: %s is not valid UTF-8 (or contains NUL)", name);
    replace_str(dst, s);
    return LT_OK;
}

static lt_err_t get_nullable(avro_value_t *rec, const char *name, char **dst, char *errstr,
                             size_t n)
{
    avro_value_t f, b;
    int disc = -1;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_discriminant(&f, &disc) ||
        avro_value_get_current_branch(&f, &b))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: cannot read %s", name);
    if (avro_value_get_type(&b) == AVRO_NULL) {
        replace_str(dst, NULL);
        return LT_OK;
    }
    const char *s = NULL;
    size_t size = 0;
    if (avro_value_get_string(&b, &s, &size) || !s || size == 0)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: cannot read %s", name);
    if (!utf8_valid(s, size - 1))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.raw.v1: %s is not valid UTF-8 (or contains NUL)", name);
    replace_str(dst, s);
    return LT_OK;
}

static lt_err_t get_long(avro_value_t *rec, const char *name, int64_t *dst, char *errstr,
                         size_t n)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_long(&f, dst))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: cannot read %s", name);
    return LT_OK;
}

/* ["null","long"]: -1 for null; a negative long is refused. */
static lt_err_t get_nullable_long(avro_value_t *rec, const char *name, int64_t *dst,
                                  char *errstr, size_t n)
{
    avro_value_t f, b;
    int disc = -1;
    if (avro_value_get_by_name(rec, name, &f, NULL) || avro_value_get_discriminant(&f, &disc) ||
        avro_value_get_current_branch(&f, &b))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: cannot read %s", name);
    if (avro_value_get_type(&b) == AVRO_NULL) {
        *dst = -1;
        return LT_OK;
    }
    if (avro_value_get_long(&b, dst) || *dst < 0)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: %s is not a length", name);
    return LT_OK;
}

static lt_err_t extract(avro_value_t *v, lt_mail_event_t *ev, char *errstr, size_t n)
{
    lt_err_t err;
    avro_value_t src, pl, arr, prov;
#define TRY(x)                                                                                    \
    if ((err = (x)))                                                                              \
        return err;
    TRY(get_string(v, "event_id", &ev->event_id, errstr, n));
    TRY(get_string(v, "event_type", &ev->event_type, errstr, n));
    TRY(get_long(v, "event_time", &ev->event_time, errstr, n));
    TRY(get_string(v, "tenant_id", &ev->tenant_id, errstr, n));
    TRY(get_string(v, "data_classification", &ev->data_classification, errstr, n));
    int sym = -1;
    if (avro_value_get_by_name(v, "source", &src, NULL) ||
        avro_value_get_by_name(&src, "provider", &prov, NULL) || avro_value_get_enum(&prov, &sym))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: cannot read source.provider");
    if (sym != LT_PROVIDER_GMAIL && sym != LT_PROVIDER_IMAP)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: unknown provider index %d",
                         sym);
    ev->provider = (lt_provider_t)sym;
    TRY(get_string(&src, "account_id", &ev->account_id, errstr, n));
    TRY(get_nullable(&src, "mailbox", &ev->mailbox, errstr, n));
    if (avro_value_get_by_name(v, "payload", &pl, NULL))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: cannot read payload");
    TRY(get_string(&pl, "provider_message_id", &ev->provider_message_id, errstr, n));
    TRY(get_nullable(&pl, "provider_thread_id", &ev->provider_thread_id, errstr, n));
    TRY(get_long(&pl, "received_at", &ev->received_at, errstr, n));
    TRY(get_string(&pl, "raw_object_uri", &ev->raw_object_uri, errstr, n));
    TRY(get_long(&pl, "raw_size_bytes", &ev->raw_size_bytes, errstr, n));
    TRY(get_string(&pl, "raw_sha256", &ev->raw_sha256, errstr, n));
    TRY(get_nullable(&pl, "rfc822_message_id", &ev->rfc822_message_id, errstr, n));
    /* added later: a writer without them (read natively) leaves the defaults */
    avro_value_t f;
    int b = 0;
    if (!avro_value_get_by_name(&pl, "attachments_manifest_truncated", &f, NULL)) {
        if (avro_value_get_boolean(&f, &b))
            return lt_seterr(errstr, n, LT_ERR_INVALID,
                             "mail.raw.v1: cannot read payload.attachments_manifest_truncated");
        ev->manifest_truncated = b != 0;
    }
    if (!avro_value_get_by_name(&pl, "attachments_manifest_ref", &f, NULL))
        TRY(get_nullable(&pl, "attachments_manifest_ref", &ev->manifest_ref, errstr, n));
    if (!avro_value_get_by_name(&pl, "parse_error", &f, NULL))
        TRY(get_nullable(&pl, "parse_error", &ev->parse_error, errstr, n));
    size_t count = 0;
    if (avro_value_get_by_name(&pl, "attachments_manifest", &arr, NULL) ||
        avro_value_get_size(&arr, &count))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.raw.v1: cannot read payload.attachments_manifest");
    for (size_t i = 0; i < count; i++) {
        avro_value_t el;
        if (avro_value_get_by_index(&arr, i, &el, NULL))
            return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.raw.v1: cannot read attachment");
        lt_mail_event_add_attachment(ev, NULL, NULL, NULL, 0, NULL, NULL);
        attachment_t *a = &ev->att[ev->natt - 1];
        TRY(get_string(&el, "attachment_id", &a->attachment_id, errstr, n));
        TRY(get_nullable(&el, "filename", &a->filename, errstr, n));
        TRY(get_string(&el, "content_type", &a->content_type, errstr, n));
        TRY(get_long(&el, "size_bytes", &a->size_bytes, errstr, n));
        TRY(get_string(&el, "sha256", &a->sha256, errstr, n));
        TRY(get_string(&el, "object_uri", &a->object_uri, errstr, n));
        if (!avro_value_get_by_name(&el, "encoded_offset", &f, NULL)) {
            TRY(get_nullable_long(&el, "encoded_offset", &a->encoded_offset, errstr, n));
            TRY(get_nullable_long(&el, "encoded_length", &a->encoded_length, errstr, n));
            TRY(get_nullable(&el, "transfer_encoding", &a->transfer_encoding, errstr, n));
            if ((a->encoded_offset >= 0) != (a->encoded_length >= 0) ||
                (a->encoded_offset >= 0) != (a->transfer_encoding != NULL))
                return lt_seterr(errstr, n, LT_ERR_INVALID,
                                 "mail.raw.v1: attachment %zu: a partial encoded range", i);
        }
    }
#undef TRY
    return LT_OK;
}

lt_err_t lt_mail_event_decode(lt_mail_codec_t *c, const void *data, size_t len,
                              const char *writer_schema_json, lt_mail_event_t **out, char *errstr,
                              size_t errstr_size)
{
    *out = NULL;
    int32_t id = 0;
    lt_err_t err = lt_mail_event_peek_schema_id(data, len, &id, errstr, errstr_size);
    if (err)
        return err;
    if (len > LT_MAIL_EVENT_MAX_WIRE)
        return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                         "value of %zu bytes exceeds the %u-byte limit", len,
                         LT_MAIL_EVENT_MAX_WIRE);
    avro_schema_t wschema = c->schema;
    avro_value_t *target = &c->value;
    int native = 0;
    if (writer_schema_json) {
        writer_entry_t *we = NULL;
        err = writer_get(c, writer_schema_json, &we, errstr, errstr_size);
        if (err || !we)
            return err ? err : LT_ERR_INVALID;
        wschema = we->schema;
        if (we->iface)
            target = &we->resolved;
        native = we->native;
    }
    const uint8_t *datum = (const uint8_t *)data + LT_WIRE_HEADER_SIZE;
    size_t dlen = len - LT_WIRE_HEADER_SIZE;
    lt_err_t werr = lt_avro_walk(wschema, datum, dlen, LT_WIRE_HEADER_SIZE, errstr,
                                 errstr_size);
    if (werr)
        return werr;

    lt_mail_event_t *ev = NULL;
    avro_reader_t r = avro_reader_memory((const char *)datum, (int64_t)dlen);
    if (!r) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "avro reader: %s", avro_strerror());
        goto out;
    }
    if (avro_value_read(r, target)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad Avro datum: %s",
                        avro_strerror());
        goto out;
    }
    ev = lt_mail_event_new();
    if ((err = extract(native ? target : &c->value, ev, errstr, errstr_size)))
        goto out;
    *out = ev;
    ev = NULL;
out:
    lt_mail_event_destroy(ev);
    if (r)
        avro_reader_free(r);
    avro_value_reset(&c->value);
    if (native)
        avro_value_reset(target);
    return err;
}
