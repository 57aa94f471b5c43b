/* lt_change_event: mail.change.v1 events, their deterministic ids, and the
 * Avro codec in the Confluent wire format (see lt_change_event.h and
 * docs/events.md). */
#include "lt_change_event.h"
#include "lt_avro_walk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <json-c/json.h>
#include <openssl/evp.h>

#include "lt_event.h"

/* The compiled-in copy of schemas/mail.change.v1.avsc.
 * tests/unit/test_change_event.c fails when the two differ: edit the .avsc,
 * then paste it here. */
static const char mail_change_v1_schema[] =
    "{\n"
    "  \"type\": \"record\",\n"
    "  \"name\": \"MailChangeV1\",\n"
    "  \"namespace\": \"io.lattice.mail\",\n"
    "  \"doc\": \"One change to a message (or to a whole sync scope) already announced on lattice.mail.raw.v1: a deletion, a new flag or label set, or a reset of a scope. Provider-neutral envelope of topic lattice.mail.change.v1, keyed by account_id and produced in the same Kafka transaction as the watermark. Evolve BACKWARD-compatibly only: new fields must be optional with a default; new kinds are appended to MailChangeKind.\",\n"
    "  \"fields\": [\n"
    "    {\n"
    "      \"name\": \"event_id\",\n"
    "      \"type\": \"string\",\n"
    "      \"doc\": \"Deterministic event id (UUID text, version nibble 8): the first 16 bytes of SHA-256 over \\\"mail.change.v1\\\\0tenant_id\\\\0provider\\\\0account_id\\\\0mailbox\\\\0provider_message_id\\\\0kind\\\\0position\\\" followed by \\\"\\\\0item\\\" for each entry of flags or labels in byte order (a null mailbox or provider_message_id hashes as the empty string; position as decimal digits, or when null \\\"@\\\" and event_time in decimal digits). With a position, a replay of the same change produces the same id; without one, the same state reached twice never shares an id. Consumers deduplicate on it.\"\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"event_type\",\n"
    "      \"type\": \"string\",\n"
    "      \"default\": \"mail.change.v1\",\n"
    "      \"doc\": \"Event type name, always \\\"mail.change.v1\\\" for this schema.\"\n"
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
    "      \"doc\": \"Where the change was observed (the same envelope as mail.raw.v1).\",\n"
    "      \"type\": {\n"
    "        \"type\": \"record\",\n"
    "        \"name\": \"MailSource\",\n"
    "        \"doc\": \"The provider account and mailbox the change was observed in.\",\n"
    "        \"fields\": [\n"
    "          {\n"
    "            \"name\": \"provider\",\n"
    "            \"doc\": \"Mail provider the change was observed at.\",\n"
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
    "            \"doc\": \"Logical inbox id, unique per tenant (mail_accounts.account_id); also the Kafka key.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"mailbox\",\n"
    "            \"type\": [\"null\", \"string\"],\n"
    "            \"default\": null,\n"
    "            \"doc\": \"Sync scope of the change: the IMAP folder (e.g. INBOX) or the Gmail label/search scope; null when the provider has no such scope.\"\n"
    "          }\n"
    "        ]\n"
    "      }\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"payload\",\n"
    "      \"doc\": \"What changed.\",\n"
    "      \"type\": {\n"
    "        \"type\": \"record\",\n"
    "        \"name\": \"MailChange\",\n"
    "        \"doc\": \"The kind of change, the message it concerns and the new state.\",\n"
    "        \"fields\": [\n"
    "          {\n"
    "            \"name\": \"kind\",\n"
    "            \"doc\": \"deleted: the message is gone from the scope (IMAP expunge, Gmail trashed-and-purged or messageDeleted); flags: its IMAP flags/keywords are now exactly flags; labels: its Gmail labelIds are now exactly labels; reset: forget what you knew of the scope, a full listing (mail.raw.v1 events) follows (IMAP UIDVALIDITY change, Gmail history expiry).\",\n"
    "            \"type\": {\n"
    "              \"type\": \"enum\",\n"
    "              \"name\": \"MailChangeKind\",\n"
    "              \"doc\": \"Kinds of change; new kinds are appended.\",\n"
    "              \"symbols\": [\"deleted\", \"flags\", \"labels\", \"reset\"]\n"
    "            }\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"provider_message_id\",\n"
    "            \"type\": [\"null\", \"string\"],\n"
    "            \"default\": null,\n"
    "            \"doc\": \"The provider_message_id (as in mail.raw.v1) of the message the change concerns; null only for kind reset, which concerns the whole scope.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"flags\",\n"
    "            \"type\": {\"type\": \"array\", \"items\": \"string\"},\n"
    "            \"default\": [],\n"
    "            \"doc\": \"For kind flags: the full new set of IMAP flags and keywords (e.g. \\\\\\\\Seen, $Important), empty when none is set; empty for other kinds.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"labels\",\n"
    "            \"type\": {\"type\": \"array\", \"items\": \"string\"},\n"
    "            \"default\": [],\n"
    "            \"doc\": \"For kind labels: the full new set of Gmail labelIds (e.g. INBOX, UNREAD, Label_12), empty when none is set; empty for other kinds.\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"position\",\n"
    "            \"type\": [\"null\", \"long\"],\n"
    "            \"default\": null,\n"
    "            \"doc\": \"Provider position the change was observed at: the IMAP MODSEQ (CONDSTORE, RFC 7162) or the Gmail historyId; null when the provider gave none. Increases with time within a scope (IMAP: within one UIDVALIDITY).\"\n"
    "          },\n"
    "          {\n"
    "            \"name\": \"reset_reason\",\n"
    "            \"type\": [\"null\", \"string\"],\n"
    "            \"default\": null,\n"
    "            \"doc\": \"For kind reset: why (\\\"uidvalidity_changed\\\" or \\\"history_expired\\\"); null for other kinds.\"\n"
    "          }\n"
    "        ]\n"
    "      }\n"
    "    },\n"
    "    {\n"
    "      \"name\": \"data_classification\",\n"
    "      \"type\": \"string\",\n"
    "      \"default\": \"confidential\",\n"
    "      \"doc\": \"Data classification of the account (mail_accounts.data_classification).\"\n"
    "    }\n"
    "  ]\n"
    "}\n"
    ;

/* Writer schemas kept decoded (by registry id). */
#define WRITER_CACHE_SIZE 4

typedef struct {
    char **v;
    size_t n, alloc;
} strlist_t;

struct lt_change_event_s {
    char *event_id;
    char *event_type;
    int64_t event_time;
    char *tenant_id;
    lt_provider_t provider;
    char *account_id;
    char *mailbox;
    lt_change_kind_t kind;
    char *provider_message_id;
    strlist_t flags;
    strlist_t labels;
    int64_t position; /* -1: null */
    char *reset_reason;
    char *data_classification;
};

typedef struct {
    char *json;                /* writer schema text, the cache key */
    avro_schema_t schema;      /* parsed writer schema */
    avro_value_iface_t *iface; /* resolved writer -> reader, NULL if same schema */
    avro_value_t resolved;     /* instance of iface whose dest is the codec's value */
} writer_entry_t;

struct lt_change_codec_s {
    avro_schema_t schema;      /* mail.change.v1 */
    avro_value_iface_t *iface; /* generic class of schema */
    avro_value_t value;        /* reused for every encode/decode */
    writer_entry_t writers[WRITER_CACHE_SIZE];
    size_t next_evict;
};

static const char *const k_kind_names[] = {"deleted", "flags", "labels", "reset"};
#define KIND_COUNT (sizeof(k_kind_names) / sizeof(k_kind_names[0]))

const char *lt_change_kind_name(lt_change_kind_t kind)
{
    if ((unsigned)kind >= KIND_COUNT)
        return NULL;
    return k_kind_names[kind];
}

lt_err_t lt_change_kind_parse(const char *name, lt_change_kind_t *out)
{
    for (size_t i = 0; name && i < KIND_COUNT; i++) {
        if (!strcmp(name, k_kind_names[i])) {
            *out = (lt_change_kind_t)i;
            return LT_OK;
        }
    }
    return LT_ERR_INVALID;
}

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


static void strlist_add(strlist_t *l, const char *s)
{
    if (l->n == l->alloc) {
        l->alloc = l->alloc ? l->alloc * 2 : 4;
        l->v = lt_xrealloc(l->v, l->alloc * sizeof(*l->v));
    }
    l->v[l->n++] = s ? lt_xstrdup(s) : NULL;
}

static void strlist_clear(strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

static void strlist_free(strlist_t *l)
{
    strlist_clear(l);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* ---- event: builder, getters ------------------------------------------- */

lt_change_event_t *lt_change_event_new(void)
{
    lt_change_event_t *ev = lt_xcalloc(1, sizeof(*ev));
    ev->event_type = lt_xstrdup(LT_CHANGE_EVENT_TYPE);
    ev->data_classification = lt_xstrdup("confidential");
    ev->provider = LT_PROVIDER_GMAIL;
    ev->kind = LT_CHANGE_DELETED;
    ev->position = -1;
    return ev;
}

void lt_change_event_destroy(lt_change_event_t *ev)
{
    if (!ev)
        return;
    free(ev->event_id);
    free(ev->event_type);
    free(ev->tenant_id);
    free(ev->account_id);
    free(ev->mailbox);
    free(ev->provider_message_id);
    strlist_free(&ev->flags);
    strlist_free(&ev->labels);
    free(ev->reset_reason);
    free(ev->data_classification);
    free(ev);
}

#define STR_ACCESSORS(field)                                                                      \
    void lt_change_event_set_##field(lt_change_event_t *ev, const char *v)                        \
    {                                                                                             \
        replace_str(&ev->field, v);                                                               \
    }                                                                                             \
    const char *lt_change_event_get_##field(const lt_change_event_t *ev)                          \
    {                                                                                             \
        return ev->field;                                                                         \
    }

STR_ACCESSORS(event_id)
STR_ACCESSORS(event_type)
STR_ACCESSORS(tenant_id)
STR_ACCESSORS(account_id)
STR_ACCESSORS(mailbox)
STR_ACCESSORS(provider_message_id)
STR_ACCESSORS(reset_reason)
STR_ACCESSORS(data_classification)

void lt_change_event_set_event_time(lt_change_event_t *ev, int64_t ms)
{
    ev->event_time = ms;
}
int64_t lt_change_event_get_event_time(const lt_change_event_t *ev)
{
    return ev->event_time;
}
void lt_change_event_set_provider(lt_change_event_t *ev, lt_provider_t provider)
{
    ev->provider = provider;
}
lt_provider_t lt_change_event_get_provider(const lt_change_event_t *ev)
{
    return ev->provider;
}
void lt_change_event_set_kind(lt_change_event_t *ev, lt_change_kind_t kind)
{
    ev->kind = kind;
}
lt_change_kind_t lt_change_event_get_kind(const lt_change_event_t *ev)
{
    return ev->kind;
}
void lt_change_event_set_position(lt_change_event_t *ev, int64_t position)
{
    ev->position = position < 0 ? -1 : position;
}
int64_t lt_change_event_get_position(const lt_change_event_t *ev)
{
    return ev->position;
}
void lt_change_event_add_flag(lt_change_event_t *ev, const char *flag)
{
    strlist_add(&ev->flags, flag);
}
void lt_change_event_clear_flags(lt_change_event_t *ev)
{
    strlist_clear(&ev->flags);
}
void lt_change_event_add_label(lt_change_event_t *ev, const char *label)
{
    strlist_add(&ev->labels, label);
}
void lt_change_event_clear_labels(lt_change_event_t *ev)
{
    strlist_clear(&ev->labels);
}
size_t lt_change_event_flag_count(const lt_change_event_t *ev)
{
    return ev->flags.n;
}
const char *lt_change_event_get_flag(const lt_change_event_t *ev, size_t i)
{
    return i < ev->flags.n ? ev->flags.v[i] : NULL;
}
size_t lt_change_event_label_count(const lt_change_event_t *ev)
{
    return ev->labels.n;
}
const char *lt_change_event_get_label(const lt_change_event_t *ev, size_t i)
{
    return i < ev->labels.n ? ev->labels.v[i] : NULL;
}

const char *lt_change_event_schema_json(void)
{
    return mail_change_v1_schema;
}

/* ---- deterministic id ------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

lt_err_t lt_change_event_derive_id(lt_change_event_t *ev, char *errstr, size_t errstr_size)
{
    const char *kind = lt_change_kind_name(ev->kind);
    if (!ev->tenant_id || !ev->account_id || !kind ||
        (ev->provider != LT_PROVIDER_GMAIL && ev->provider != LT_PROVIDER_IMAP))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "mail.change.v1: event id needs tenant_id, account_id, a valid "
                         "provider and a valid kind");
    const strlist_t *items = ev->kind == LT_CHANGE_FLAGS    ? &ev->flags
                             : ev->kind == LT_CHANGE_LABELS ? &ev->labels
                                                            : NULL;
    for (size_t i = 0; items && i < items->n; i++)
        if (!items->v[i])
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "mail.change.v1: a %s entry is unset", kind);
    /* without a position, the time: the same set reached twice (\Seen,
     * unset, \Seen) must not share an id, or deduplication drops the last */
    char pos[24];
    if (ev->position >= 0)
        snprintf(pos, sizeof(pos), "%" PRId64, ev->position);
    else
        snprintf(pos, sizeof(pos), "@%" PRId64, ev->event_time);
    const char *parts[8] = {LT_CHANGE_EVENT_TYPE,
                            ev->tenant_id,
                            lt_provider_name(ev->provider),
                            ev->account_id,
                            ev->mailbox ? ev->mailbox : "",
                            ev->provider_message_id ? ev->provider_message_id : "",
                            kind,
                            pos};
    size_t nitems = items ? items->n : 0;
    char **sorted = NULL;
    if (nitems) {
        sorted = lt_xmalloc(nitems * sizeof(*sorted));
        memcpy(sorted, items->v, nitems * sizeof(*sorted));
        qsort(sorted, nitems, sizeof(*sorted), cmp_str);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        fputs("lattice: out of memory\n", stderr);
        abort();
    }
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (size_t i = 0; ok && i < 8 + nitems; i++) {
        const char *p = i < 8 ? parts[i] : sorted[i - 8];
        if (i > 0)
            ok = EVP_DigestUpdate(ctx, "", 1);
        if (ok)
            ok = EVP_DigestUpdate(ctx, p, strlen(p));
    }
    if (ok)
        ok = EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    free(sorted);
    if (!ok || mdlen < 16)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.change.v1: SHA-256 failed");
    md[6] = (unsigned char)((md[6] & 0x0f) | 0x80); /* version 8 (RFC 9562 custom) */
    md[8] = (unsigned char)((md[8] & 0x3f) | 0x80); /* variant 10xx */
    static const char hex[] = "0123456789abcdef";
    char id[37];
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            id[o++] = '-';
        id[o++] = hex[md[i] >> 4];
        id[o++] = hex[md[i] & 0x0f];
    }
    id[o] = 0;
    replace_str(&ev->event_id, id);
    return LT_OK;
}

/* ---- JSON (debugging, tests) ---------------------------------------------- */

static json_object *jstr(const char *s)
{
    return s ? json_object_new_string(s) : NULL; /* NULL is JSON null */
}

static json_object *jlist(const strlist_t *l)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < l->n; i++)
        json_object_array_add(a, jstr(l->v[i]));
    return a;
}

lt_err_t lt_change_event_to_json(const lt_change_event_t *ev, lt_buf_t *out)
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
    json_object_object_add(pl, "kind", jstr(lt_change_kind_name(ev->kind)));
    json_object_object_add(pl, "provider_message_id", jstr(ev->provider_message_id));
    json_object_object_add(pl, "flags", jlist(&ev->flags));
    json_object_object_add(pl, "labels", jlist(&ev->labels));
    json_object_object_add(pl, "position",
                           ev->position >= 0 ? json_object_new_int64(ev->position) : NULL);
    json_object_object_add(pl, "reset_reason", jstr(ev->reset_reason));
    json_object_object_add(root, "payload", pl);
    json_object_object_add(root, "data_classification", jstr(ev->data_classification));
    const char *s = json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    lt_err_t err = lt_buf_append(out, s, strlen(s));
    json_object_put(root);
    return err;
}

/* ---- codec ------------------------------------------------------------------ */

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

void lt_change_codec_destroy(lt_change_codec_t *c)
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

lt_change_codec_t *lt_change_codec_new(char *errstr, size_t errstr_size)
{
    lt_change_codec_t *c = lt_xcalloc(1, sizeof(*c));
    if (avro_schema_from_json_length(mail_change_v1_schema, sizeof(mail_change_v1_schema) - 1,
                                     &c->schema)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.change.v1 schema: %s",
                  avro_strerror());
        c->schema = NULL;
        goto fail;
    }
    c->iface = avro_generic_class_from_schema(c->schema);
    if (!c->iface) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.change.v1 value class: %s",
                  avro_strerror());
        goto fail;
    }
    if (avro_generic_value_new(c->iface, &c->value)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.change.v1 value: %s",
                  avro_strerror());
        c->value.iface = NULL;
        goto fail;
    }
    return c;
fail:
    lt_change_codec_destroy(c);
    return NULL;
}

/* -- validation (encode, and decode's result) -- */

static lt_err_t check_str(const char *name, const char *s, int required, char *errstr,
                          size_t errstr_size)
{
    if (!s) {
        if (required)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "mail.change.v1: %s is not set", name);
        return LT_OK;
    }
    if (!*s)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.change.v1: %s is empty",
                         name);
    if (!utf8_valid(s, strlen(s)))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "mail.change.v1: %s is not valid UTF-8", name);
    return LT_OK;
}

static lt_err_t check_list(const char *name, const strlist_t *l, int allowed, char *errstr,
                           size_t n)
{
    if (!allowed && l->n)
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.change.v1: payload.%s must be empty for this kind", name);
    if (l->n > LT_CHANGE_MAX_ITEMS)
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.change.v1: payload.%s has %zu entries, over the limit of %u",
                         name, l->n, LT_CHANGE_MAX_ITEMS);
    for (size_t i = 0; i < l->n; i++) {
        lt_err_t err = check_str(name, l->v[i], 1, errstr, n);
        if (err)
            return err;
    }
    return LT_OK;
}

static lt_err_t validate(const lt_change_event_t *ev, char *errstr, size_t n)
{
    lt_err_t err;
#define CHK(name, val, req)                                                                       \
    if ((err = check_str(name, val, req, errstr, n)))                                             \
        return err;
    CHK("event_id", ev->event_id, 1);
    CHK("event_type", ev->event_type, 1);
    CHK("tenant_id", ev->tenant_id, 1);
    CHK("source.account_id", ev->account_id, 1);
    CHK("source.mailbox", ev->mailbox, 0);
    CHK("payload.provider_message_id", ev->provider_message_id, 0);
    CHK("payload.reset_reason", ev->reset_reason, 0);
    CHK("data_classification", ev->data_classification, 1);
#undef CHK
    if (!is_uuid_text(ev->event_id))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.change.v1: event_id is not lower-case UUID text");
    if (ev->provider != LT_PROVIDER_GMAIL && ev->provider != LT_PROVIDER_IMAP)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: unknown provider %d",
                         (int)ev->provider);
    if (!lt_change_kind_name(ev->kind))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: unknown kind %d",
                         (int)ev->kind);
    int reset = ev->kind == LT_CHANGE_RESET;
    if (reset && ev->provider_message_id)
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.change.v1: a reset concerns a scope, not a message: "
                         "payload.provider_message_id must be null");
    if (!reset && !ev->provider_message_id)
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.change.v1: payload.provider_message_id is not set (kind %s)",
                         lt_change_kind_name(ev->kind));
    if (reset != (ev->reset_reason != NULL))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.change.v1: payload.reset_reason is required for kind reset "
                         "and must be null otherwise");
    if ((err = check_list("flags", &ev->flags, ev->kind == LT_CHANGE_FLAGS, errstr, n)) ||
        (err = check_list("labels", &ev->labels, ev->kind == LT_CHANGE_LABELS, errstr, n)))
        return err;
    return LT_OK;
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

static int set_list(avro_value_t *rec, const char *name, const strlist_t *l)
{
    avro_value_t arr, el;
    if (avro_value_get_by_name(rec, name, &arr, NULL))
        return -1;
    for (size_t i = 0; i < l->n; i++)
        if (avro_value_append(&arr, &el, NULL) || avro_value_set_string(&el, l->v[i]))
            return -1;
    return 0;
}

static int fill_value(avro_value_t *v, const lt_change_event_t *ev)
{
    avro_value_t src, pl, e, pos, b;
    if (set_string(v, "event_id", ev->event_id) || set_string(v, "event_type", ev->event_type) ||
        set_long(v, "event_time", ev->event_time) || set_string(v, "tenant_id", ev->tenant_id) ||
        set_string(v, "data_classification", ev->data_classification))
        return -1;
    if (avro_value_get_by_name(v, "source", &src, NULL) ||
        avro_value_get_by_name(&src, "provider", &e, NULL) ||
        avro_value_set_enum(&e, (int)ev->provider) ||
        set_string(&src, "account_id", ev->account_id) ||
        set_nullable(&src, "mailbox", ev->mailbox))
        return -1;
    if (avro_value_get_by_name(v, "payload", &pl, NULL) ||
        avro_value_get_by_name(&pl, "kind", &e, NULL) || avro_value_set_enum(&e, (int)ev->kind) ||
        set_nullable(&pl, "provider_message_id", ev->provider_message_id) ||
        set_list(&pl, "flags", &ev->flags) || set_list(&pl, "labels", &ev->labels) ||
        set_nullable(&pl, "reset_reason", ev->reset_reason))
        return -1;
    if (avro_value_get_by_name(&pl, "position", &pos, NULL) ||
        avro_value_set_branch(&pos, ev->position >= 0 ? 1 : 0, &b) ||
        (ev->position >= 0 ? avro_value_set_long(&b, ev->position) : avro_value_set_null(&b)))
        return -1;
    return 0;
}

lt_err_t lt_change_event_encode(lt_change_codec_t *c, const lt_change_event_t *ev,
                                int32_t schema_id, lt_buf_t *out, char *errstr,
                                size_t errstr_size)
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
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.change.v1: avro: %s",
                        avro_strerror());
        goto out;
    }
    size_t size = 0;
    if (avro_value_sizeof(&c->value, &size)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.change.v1: avro size: %s",
                        avro_strerror());
        goto out;
    }
    if (size > LT_CHANGE_EVENT_MAX_WIRE - LT_WIRE_HEADER_SIZE ||
        size + LT_WIRE_HEADER_SIZE > lt_buf_cap(out) - lt_buf_len(out)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                        "mail.change.v1: encoded event of %zu bytes does not fit", size);
        goto out;
    }
    tmp = lt_xmalloc(size ? size : 1);
    w = avro_writer_memory(tmp, (int64_t)size);
    if (!w || avro_value_write(w, &c->value) || avro_writer_tell(w) != (int64_t)size) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "mail.change.v1: avro write: %s",
                        avro_strerror());
        goto out;
    }
    uint32_t id = (uint32_t)schema_id;
    uint8_t hdr[LT_WIRE_HEADER_SIZE] = {0, (uint8_t)(id >> 24), (uint8_t)(id >> 16),
                                        (uint8_t)(id >> 8), (uint8_t)id};
    err = lt_buf_append(out, hdr, sizeof(hdr));
    if (!err)
        err = lt_buf_append(out, tmp, size);
    if (err)
        lt_seterr(errstr, errstr_size, err, "mail.change.v1: output buffer");
out:
    if (w)
        avro_writer_free(w);
    free(tmp);
    avro_value_reset(&c->value);
    return err;
}

/* -- decode -- */

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

/* 1 if a record (nested records included) of the reader has a field the
 * writer lacks: avro-c 1.11's avro_resolved_writer_new() crashes on that,
 * and mail.change.v1 has no field added after its first version. */
static int lacks_fields(avro_schema_t w, avro_schema_t r, int depth)
{
    if (depth > LT_AVRO_WALK_MAX_DEPTH)
        return 1;
    if (!is_avro_record(w) || !is_avro_record(r))
        return 0; /* other mismatches are avro-c's to judge */
    size_t nr = avro_schema_record_size(r);
    for (size_t i = 0; i < nr; i++) {
        avro_schema_t wf = field_get(w, avro_schema_record_field_name(r, (int)i));
        if (!wf || lacks_fields(wf, avro_schema_record_field_get_by_index(r, (int)i), depth + 1))
            return 1;
    }
    return 0;
}

static lt_err_t writer_get(lt_change_codec_t *c, const char *json, writer_entry_t **out,
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
        if (lacks_fields(w->schema, c->schema, 0)) {
            writer_entry_clear(w);
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "writer schema cannot be read as mail.change.v1: it lacks a "
                             "field of mail.change.v1");
        }
        w->iface = avro_resolved_writer_new(w->schema, c->schema);
        if (!w->iface) {
            lt_err_t err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                     "writer schema cannot be read as mail.change.v1: %s",
                                     avro_strerror());
            writer_entry_clear(w);
            return err;
        }
        if (avro_resolved_writer_new_value(w->iface, &w->resolved)) {
            lt_err_t err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                     "resolved value: %s", avro_strerror());
            avro_value_iface_decref(w->iface);
            w->iface = NULL;
            writer_entry_clear(w);
            return err;
        }
        avro_resolved_writer_set_dest(&w->resolved, &c->value);
    }
    w->json = lt_xstrdup(json);
    *out = w;
    return LT_OK;
}

static lt_err_t read_str(avro_value_t *f, const char *name, char **dst, char *errstr, size_t n)
{
    const char *s = NULL;
    size_t size = 0;
    if (avro_value_get_string(f, &s, &size) || !s || size == 0)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: cannot read %s", name);
    if (!utf8_valid(s, size - 1))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.change.v1: %s is not valid UTF-8 (or contains NUL)", name);
    replace_str(dst, s);
    return LT_OK;
}

static lt_err_t get_string(avro_value_t *rec, const char *name, char **dst, char *errstr,
                           size_t n)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: cannot read %s", name);
    return read_str(&f, name, dst, errstr, n);
}

/* A ["null", T] union: *branch is NULL for null, else the value. */
static lt_err_t get_union(avro_value_t *rec, const char *name, avro_value_t *branch, int *isnull,
                          char *errstr, size_t n)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL) ||
        avro_value_get_current_branch(&f, branch))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: cannot read %s", name);
    *isnull = avro_value_get_type(branch) == AVRO_NULL;
    return LT_OK;
}

static lt_err_t get_nullable(avro_value_t *rec, const char *name, char **dst, char *errstr,
                             size_t n)
{
    avro_value_t b;
    int isnull = 0;
    lt_err_t err = get_union(rec, name, &b, &isnull, errstr, n);
    if (err)
        return err;
    if (isnull) {
        replace_str(dst, NULL);
        return LT_OK;
    }
    return read_str(&b, name, dst, errstr, n);
}

static lt_err_t get_list(avro_value_t *rec, const char *name, strlist_t *l, char *errstr,
                         size_t n)
{
    avro_value_t arr, el;
    size_t count = 0;
    if (avro_value_get_by_name(rec, name, &arr, NULL) || avro_value_get_size(&arr, &count))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: cannot read %s", name);
    if (count > LT_CHANGE_MAX_ITEMS)
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.change.v1: payload.%s has %zu entries, over the limit of %u",
                         name, count, LT_CHANGE_MAX_ITEMS);
    for (size_t i = 0; i < count; i++) {
        lt_err_t err;
        if (avro_value_get_by_index(&arr, i, &el, NULL))
            return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: cannot read %s", name);
        strlist_add(l, NULL);
        if ((err = read_str(&el, name, &l->v[l->n - 1], errstr, n)))
            return err;
    }
    return LT_OK;
}

static lt_err_t extract(avro_value_t *v, lt_change_event_t *ev, char *errstr, size_t n)
{
    lt_err_t err;
    avro_value_t src, pl, e, b;
    int sym = -1, isnull = 0;
#define TRY(x)                                                                                    \
    if ((err = (x)))                                                                              \
        return err;
    TRY(get_string(v, "event_id", &ev->event_id, errstr, n));
    TRY(get_string(v, "event_type", &ev->event_type, errstr, n));
    if (avro_value_get_by_name(v, "event_time", &e, NULL) ||
        avro_value_get_long(&e, &ev->event_time))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: cannot read event_time");
    TRY(get_string(v, "tenant_id", &ev->tenant_id, errstr, n));
    TRY(get_string(v, "data_classification", &ev->data_classification, errstr, n));
    if (avro_value_get_by_name(v, "source", &src, NULL) ||
        avro_value_get_by_name(&src, "provider", &e, NULL) || avro_value_get_enum(&e, &sym))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "mail.change.v1: cannot read source.provider");
    if (sym != LT_PROVIDER_GMAIL && sym != LT_PROVIDER_IMAP)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: unknown provider index %d",
                         sym);
    ev->provider = (lt_provider_t)sym;
    TRY(get_string(&src, "account_id", &ev->account_id, errstr, n));
    TRY(get_nullable(&src, "mailbox", &ev->mailbox, errstr, n));
    if (avro_value_get_by_name(v, "payload", &pl, NULL) ||
        avro_value_get_by_name(&pl, "kind", &e, NULL) || avro_value_get_enum(&e, &sym))
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: cannot read payload.kind");
    if (sym < 0 || (size_t)sym >= KIND_COUNT)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "mail.change.v1: unknown kind index %d",
                         sym);
    ev->kind = (lt_change_kind_t)sym;
    TRY(get_nullable(&pl, "provider_message_id", &ev->provider_message_id, errstr, n));
    TRY(get_list(&pl, "flags", &ev->flags, errstr, n));
    TRY(get_list(&pl, "labels", &ev->labels, errstr, n));
    TRY(get_nullable(&pl, "reset_reason", &ev->reset_reason, errstr, n));
    TRY(get_union(&pl, "position", &b, &isnull, errstr, n));
    ev->position = -1;
    if (!isnull) {
        int64_t p = 0;
        if (avro_value_get_long(&b, &p))
            return lt_seterr(errstr, n, LT_ERR_INVALID,
                             "mail.change.v1: cannot read payload.position");
        if (p < 0)
            return lt_seterr(errstr, n, LT_ERR_INVALID,
                             "mail.change.v1: payload.position %" PRId64 " is negative", p);
        ev->position = p;
    }
#undef TRY
    return validate(ev, errstr, n);
}

lt_err_t lt_change_event_decode(lt_change_codec_t *c, const void *data, size_t len,
                                const char *writer_schema_json, lt_change_event_t **out,
                                char *errstr, size_t errstr_size)
{
    *out = NULL;
    lt_err_t err = lt_mail_event_peek_schema_id(data, len, NULL, errstr, errstr_size);
    if (err)
        return err;
    if (len > LT_CHANGE_EVENT_MAX_WIRE)
        return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                         "value of %zu bytes exceeds the %u-byte limit", len,
                         LT_CHANGE_EVENT_MAX_WIRE);
    avro_schema_t wschema = c->schema;
    avro_value_t *target = &c->value;
    if (writer_schema_json) {
        writer_entry_t *we = NULL;
        err = writer_get(c, writer_schema_json, &we, errstr, errstr_size);
        if (err || !we)
            return err ? err : LT_ERR_INVALID;
        wschema = we->schema;
        if (we->iface)
            target = &we->resolved;
    }
    const uint8_t *datum = (const uint8_t *)data + LT_WIRE_HEADER_SIZE;
    size_t dlen = len - LT_WIRE_HEADER_SIZE;
    lt_err_t werr = lt_avro_walk(wschema, datum, dlen, LT_WIRE_HEADER_SIZE, errstr,
                                 errstr_size);
    if (werr)
        return werr;

    lt_change_event_t *ev = NULL;
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
    ev = lt_change_event_new();
    if ((err = extract(&c->value, ev, errstr, errstr_size)))
        goto out;
    *out = ev;
    ev = NULL;
out:
    lt_change_event_destroy(ev);
    if (r)
        avro_reader_free(r);
    avro_value_reset(&c->value);
    return err;
}
