/* lt_change_event: mail.change.v1 round trips of every kind, the wire bytes
 * against a hand-written Avro encoding, the deterministic id, the encode
 * rules, hostile values (truncated, trailing bytes, bad indexes, bad UTF-8,
 * absurd counts, semantically invalid records), writer schema resolution,
 * and the schema file against the embedded copy. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_change_event.h"
#include "lt_event.h"
#include "lt_test.h"

#define UUID1 "0b5e8a43-66c2-8d7e-9a41-0c3f6e2b1d55"

/* ---- a hand-written Avro encoder (the spec, not avro-c) ---- */

typedef struct {
    uint8_t b[1 << 16];
    size_t n;
} wbuf_t;

static void w_byte(wbuf_t *w, uint8_t c)
{
    if (w->n < sizeof(w->b))
        w->b[w->n++] = c;
}

static void w_long(wbuf_t *w, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z & ~0x7fULL) {
        w_byte(w, (uint8_t)((z & 0x7f) | 0x80));
        z >>= 7;
    }
    w_byte(w, (uint8_t)z);
}

static void w_bytes(wbuf_t *w, const char *s, size_t n)
{
    w_long(w, (int64_t)n);
    for (size_t i = 0; i < n; i++)
        w_byte(w, (uint8_t)s[i]);
}

static void w_str(wbuf_t *w, const char *s)
{
    w_bytes(w, s, strlen(s));
}

static void w_nullable(wbuf_t *w, const char *s)
{
    if (!s) {
        w_long(w, 0);
        return;
    }
    w_long(w, 1);
    w_str(w, s);
}

typedef struct {
    const char *event_id, *tenant, *account, *mailbox;
    int provider, kind;
    const char *pmid;
    const char *const *flags;
    size_t nflags;
    int64_t flags_count_override; /* != 0: write this count instead */
    const char *const *labels;
    size_t nlabels;
    int64_t position; /* < 0: null */
    const char *reason;
} forge_t;

static void forge(wbuf_t *w, const forge_t *f, int32_t schema_id)
{
    w->n = 0;
    w_byte(w, 0);
    w_byte(w, (uint8_t)(schema_id >> 24));
    w_byte(w, (uint8_t)(schema_id >> 16));
    w_byte(w, (uint8_t)(schema_id >> 8));
    w_byte(w, (uint8_t)schema_id);
    w_str(w, f->event_id);
    w_str(w, "mail.change.v1");
    w_long(w, 1765000000123LL);
    w_str(w, f->tenant);
    w_long(w, f->provider);
    w_str(w, f->account);
    w_nullable(w, f->mailbox);
    w_long(w, f->kind);
    w_nullable(w, f->pmid);
    if (f->flags_count_override) {
        w_long(w, f->flags_count_override);
    } else {
        if (f->nflags) {
            w_long(w, (int64_t)f->nflags);
            for (size_t i = 0; i < f->nflags; i++)
                w_str(w, f->flags[i]);
        }
        w_long(w, 0);
    }
    if (f->nlabels) {
        w_long(w, (int64_t)f->nlabels);
        for (size_t i = 0; i < f->nlabels; i++)
            w_str(w, f->labels[i]);
    }
    w_long(w, 0);
    if (f->position < 0) {
        w_long(w, 0);
    } else {
        w_long(w, 1);
        w_long(w, f->position);
    }
    w_nullable(w, f->reason);
    w_str(w, "confidential");
}

static const char *const k_flags[] = {"\\Seen", "\\Flagged", "$Important"};
static const char *const k_labels[] = {"INBOX", "UNREAD", "Label_12", "Étiquette"};

static forge_t base(int kind)
{
    forge_t f = {UUID1, "acme", "workmail-support", "INBOX", 1, kind, "INBOX;UIDVALIDITY=7;UID=42",
                 NULL, 0, 0, NULL, 0, 4711, NULL};
    if (kind == LT_CHANGE_FLAGS) {
        f.flags = k_flags;
        f.nflags = 3;
    } else if (kind == LT_CHANGE_LABELS) {
        f.provider = 0;
        f.account = "personal-gmail";
        f.mailbox = NULL;
        f.pmid = "18c2f0a9b3e4d5c6";
        f.labels = k_labels;
        f.nlabels = 4;
    } else if (kind == LT_CHANGE_RESET) {
        f.pmid = NULL;
        f.position = -1;
        f.reason = LT_CHANGE_RESET_UIDVALIDITY;
    }
    return f;
}

static lt_change_event_t *from_forge(const forge_t *f)
{
    lt_change_event_t *ev = lt_change_event_new();
    lt_change_event_set_event_id(ev, f->event_id);
    lt_change_event_set_event_time(ev, 1765000000123LL);
    lt_change_event_set_tenant_id(ev, f->tenant);
    lt_change_event_set_provider(ev, (lt_provider_t)f->provider);
    lt_change_event_set_account_id(ev, f->account);
    lt_change_event_set_mailbox(ev, f->mailbox);
    lt_change_event_set_kind(ev, (lt_change_kind_t)f->kind);
    lt_change_event_set_provider_message_id(ev, f->pmid);
    for (size_t i = 0; i < f->nflags; i++)
        lt_change_event_add_flag(ev, f->flags[i]);
    for (size_t i = 0; i < f->nlabels; i++)
        lt_change_event_add_label(ev, f->labels[i]);
    lt_change_event_set_position(ev, f->position);
    lt_change_event_set_reset_reason(ev, f->reason);
    return ev;
}

static char *to_json(const lt_change_event_t *ev)
{
    lt_buf_t *b = lt_buf_new(1 << 16);
    lt_change_event_to_json(ev, b);
    char *s = strndup((const char *)lt_buf_data(b), lt_buf_len(b));
    lt_buf_destroy(b);
    return s;
}

/* Each kind: encode == the hand-written bytes, decode gives the event back. */
static void test_round_trip(lt_change_codec_t *c)
{
    for (int kind = 0; kind < 4; kind++) {
        forge_t f = base(kind);
        wbuf_t *want = calloc(1, sizeof(*want));
        forge(want, &f, 77);
        lt_change_event_t *ev = from_forge(&f);
        lt_buf_t *out = lt_buf_new(1 << 16);
        char err[256] = "";
        lt_err_t e = lt_change_event_encode(c, ev, 77, out, err, sizeof(err));
        CHECK_MSG(e == LT_OK, "kind %d: %s", kind, err);
        CHECK_INT(lt_buf_len(out), want->n);
        CHECK_MSG(lt_buf_len(out) == want->n && !memcmp(lt_buf_data(out), want->b, want->n),
                  "kind %s: the codec's bytes differ from the Avro spec encoding",
                  lt_change_kind_name((lt_change_kind_t)kind));
        int32_t id = -1;
        CHECK(lt_mail_event_peek_schema_id(lt_buf_data(out), lt_buf_len(out), &id, err,
                                           sizeof(err)) == LT_OK);
        CHECK_INT(id, 77);
        lt_change_event_t *back = NULL;
        e = lt_change_event_decode(c, lt_buf_data(out), lt_buf_len(out), NULL, &back, err,
                                   sizeof(err));
        CHECK_MSG(e == LT_OK, "kind %d decode: %s", kind, err);
        if (back) {
            char *a = to_json(ev), *b = to_json(back);
            CHECK_STR(a, b);
            free(a);
            free(b);
            CHECK_INT(lt_change_event_get_kind(back), kind);
            CHECK_STR(lt_change_event_get_event_type(back), "mail.change.v1");
            CHECK_STR(lt_change_event_get_tenant_id(back), f.tenant);
            CHECK_STR(lt_change_event_get_account_id(back), f.account);
            CHECK_INT(lt_change_event_get_provider(back), f.provider);
            CHECK_INT(lt_change_event_get_position(back), f.position);
            CHECK_INT(lt_change_event_flag_count(back), f.nflags);
            CHECK_INT(lt_change_event_label_count(back), f.nlabels);
            CHECK_STR(lt_change_event_get_data_classification(back), "confidential");
            if (kind == LT_CHANGE_FLAGS)
                CHECK_STR(lt_change_event_get_flag(back, 0), "\\Seen");
            if (kind == LT_CHANGE_LABELS)
                CHECK_STR(lt_change_event_get_label(back, 3), "Étiquette");
            CHECK(lt_change_event_get_flag(back, 99) == NULL);
            if (kind == LT_CHANGE_RESET) {
                CHECK(lt_change_event_get_provider_message_id(back) == NULL);
                CHECK_STR(lt_change_event_get_reset_reason(back), "uidvalidity_changed");
            }
        }
        lt_change_event_destroy(back);
        lt_change_event_destroy(ev);
        lt_buf_destroy(out);
        free(want);
    }
    /* an empty set is a valid "full new set" (every flag removed) */
    forge_t f = base(LT_CHANGE_FLAGS);
    f.nflags = 0;
    lt_change_event_t *ev = from_forge(&f);
    lt_buf_t *out = lt_buf_new(1 << 16);
    char err[256] = "";
    CHECK(lt_change_event_encode(c, ev, 1, out, err, sizeof(err)) == LT_OK);
    lt_change_event_destroy(ev);
    lt_buf_destroy(out);
}

static void test_kind_names(void)
{
    lt_change_kind_t k;
    for (int i = 0; i < 4; i++) {
        const char *n = lt_change_kind_name((lt_change_kind_t)i);
        CHECK(n != NULL);
        CHECK(lt_change_kind_parse(n, &k) == LT_OK);
        CHECK_INT(k, i);
    }
    CHECK(lt_change_kind_name((lt_change_kind_t)4) == NULL);
    CHECK(lt_change_kind_parse("moved", &k) == LT_ERR_INVALID);
    CHECK(lt_change_kind_parse(NULL, &k) == LT_ERR_INVALID);
}

static void test_derive_id(void)
{
    char err[256];
    forge_t f = base(LT_CHANGE_FLAGS);
    lt_change_event_t *a = from_forge(&f);
    lt_change_event_set_event_id(a, NULL);
    CHECK(lt_change_event_derive_id(a, err, sizeof(err)) == LT_OK);
    const char *ida = lt_change_event_get_event_id(a);
    CHECK(ida && strlen(ida) == 36 && ida[14] == '8');
    /* the same set in another order: the same id (a replay) */
    lt_change_event_t *b = from_forge(&f);
    lt_change_event_clear_flags(b);
    lt_change_event_add_flag(b, "$Important");
    lt_change_event_add_flag(b, "\\Seen");
    lt_change_event_add_flag(b, "\\Flagged");
    CHECK(lt_change_event_derive_id(b, err, sizeof(err)) == LT_OK);
    CHECK_STR(lt_change_event_get_event_id(b), ida);
    /* another set, another position, another kind: another id */
    lt_change_event_add_flag(b, "\\Answered");
    CHECK(lt_change_event_derive_id(b, err, sizeof(err)) == LT_OK);
    CHECK(strcmp(lt_change_event_get_event_id(b), ida) != 0);
    lt_change_event_clear_flags(b);
    CHECK(lt_change_event_derive_id(b, err, sizeof(err)) == LT_OK);
    CHECK(strcmp(lt_change_event_get_event_id(b), ida) != 0);
    char id2[37];
    lt_change_event_set_kind(b, LT_CHANGE_DELETED);
    CHECK(lt_change_event_derive_id(b, err, sizeof(err)) == LT_OK);
    snprintf(id2, sizeof(id2), "%s", lt_change_event_get_event_id(b));
    lt_change_event_set_position(b, 4712);
    CHECK(lt_change_event_derive_id(b, err, sizeof(err)) == LT_OK);
    CHECK(strcmp(lt_change_event_get_event_id(b), id2) != 0);
    /* without a position the time counts: the same set at two times (\Seen,
     * unset, \Seen again) gets two ids, so deduplication keeps both */
    lt_change_event_set_kind(a, LT_CHANGE_FLAGS);
    lt_change_event_set_position(a, -1);
    lt_change_event_set_event_time(a, 1000);
    CHECK(lt_change_event_derive_id(a, err, sizeof(err)) == LT_OK);
    snprintf(id2, sizeof(id2), "%s", lt_change_event_get_event_id(a));
    CHECK(lt_change_event_derive_id(a, err, sizeof(err)) == LT_OK);
    CHECK_STR(lt_change_event_get_event_id(a), id2);
    lt_change_event_set_event_time(a, 3000);
    CHECK(lt_change_event_derive_id(a, err, sizeof(err)) == LT_OK);
    CHECK(strcmp(lt_change_event_get_event_id(a), id2) != 0);
    /* with a position the time does not count (a replay keeps its id) */
    lt_change_event_set_position(a, 9);
    CHECK(lt_change_event_derive_id(a, err, sizeof(err)) == LT_OK);
    snprintf(id2, sizeof(id2), "%s", lt_change_event_get_event_id(a));
    lt_change_event_set_event_time(a, 5000);
    CHECK(lt_change_event_derive_id(a, err, sizeof(err)) == LT_OK);
    CHECK_STR(lt_change_event_get_event_id(a), id2);
    lt_change_event_set_tenant_id(b, NULL);
    CHECK(lt_change_event_derive_id(b, err, sizeof(err)) == LT_ERR_INVALID);
    lt_change_event_destroy(a);
    lt_change_event_destroy(b);
}

/* encode refuses what the schema cannot say and what it says wrong */
static void test_encode_rules(lt_change_codec_t *c)
{
    char err[256];
    lt_buf_t *out = lt_buf_new(1 << 16);
    lt_change_event_t *ev;
    forge_t f;

#define EXPECT_INVALID(setup, needle)                                                             \
    do {                                                                                          \
        ev = from_forge(&f);                                                                      \
        setup;                                                                                    \
        err[0] = 0;                                                                               \
        CHECK(lt_change_event_encode(c, ev, 1, out, err, sizeof(err)) == LT_ERR_INVALID);       \
        CHECK_MSG(strstr(err, needle) != NULL, "%s", err);                                        \
        CHECK_INT(lt_buf_len(out), 0);                                                            \
        lt_change_event_destroy(ev);                                                              \
    } while (0)

    f = base(LT_CHANGE_DELETED);
    EXPECT_INVALID(lt_change_event_set_provider_message_id(ev, NULL), "provider_message_id");
    EXPECT_INVALID(lt_change_event_set_tenant_id(ev, NULL), "tenant_id is not set");
    EXPECT_INVALID(lt_change_event_set_account_id(ev, ""), "account_id is empty");
    EXPECT_INVALID(lt_change_event_set_event_id(ev, "not-a-uuid"), "UUID");
    EXPECT_INVALID(lt_change_event_set_mailbox(ev, "IN\xc3\x28"), "UTF-8");
    EXPECT_INVALID(lt_change_event_add_flag(ev, "\\Seen"), "flags must be empty");
    EXPECT_INVALID(lt_change_event_add_label(ev, "INBOX"), "labels must be empty");
    EXPECT_INVALID(lt_change_event_set_reset_reason(ev, "x"), "reset_reason");
    EXPECT_INVALID(lt_change_event_set_kind(ev, (lt_change_kind_t)9), "unknown kind");
    EXPECT_INVALID(lt_change_event_set_provider(ev, (lt_provider_t)5), "unknown provider");
    f = base(LT_CHANGE_RESET);
    EXPECT_INVALID(lt_change_event_set_provider_message_id(ev, "INBOX;UIDVALIDITY=7;UID=1"),
                   "must be null");
    EXPECT_INVALID(lt_change_event_set_reset_reason(ev, NULL), "reset_reason");
    f = base(LT_CHANGE_FLAGS);
    EXPECT_INVALID(lt_change_event_add_flag(ev, ""), "flags is empty");
    EXPECT_INVALID(lt_change_event_add_flag(ev, "\xff"), "UTF-8");
    EXPECT_INVALID(for (unsigned i = 0; i < LT_CHANGE_MAX_ITEMS; i++)
                       lt_change_event_add_flag(ev, "$k"),
                   "over the limit");
    f = base(LT_CHANGE_LABELS);
    EXPECT_INVALID(lt_change_event_add_flag(ev, "\\Seen"), "flags must be empty");
#undef EXPECT_INVALID

    /* position < 0 is null; exactly LT_CHANGE_MAX_ITEMS entries pass */
    f = base(LT_CHANGE_FLAGS);
    ev = from_forge(&f);
    lt_change_event_set_position(ev, -5);
    CHECK_INT(lt_change_event_get_position(ev), -1);
    lt_change_event_clear_flags(ev);
    for (unsigned i = 0; i < LT_CHANGE_MAX_ITEMS; i++)
        lt_change_event_add_flag(ev, "$k");
    CHECK(lt_change_event_encode(c, ev, 1, out, err, sizeof(err)) == LT_OK);
    lt_buf_t *small = lt_buf_new(16);
    CHECK(lt_change_event_encode(c, ev, 1, small, err, sizeof(err)) == LT_ERR_TOO_BIG);
    CHECK_INT(lt_buf_len(small), 0);
    CHECK(lt_change_event_encode(c, ev, -1, small, err, sizeof(err)) == LT_ERR_INVALID);
    lt_buf_destroy(small);
    lt_change_event_destroy(ev);
    lt_buf_destroy(out);
}

static lt_err_t decode_forged(lt_change_codec_t *c, const wbuf_t *w, char *err, size_t n)
{
    lt_change_event_t *ev = (lt_change_event_t *)1;
    lt_err_t e = lt_change_event_decode(c, w->b, w->n, NULL, &ev, err, n);
    CHECK(e == LT_OK || ev == NULL);
    lt_change_event_destroy(ev);
    return e;
}

static void test_hostile(lt_change_codec_t *c)
{
    char err[256];
    wbuf_t *w = calloc(1, sizeof(*w));
    forge_t f = base(LT_CHANGE_FLAGS);
    forge(w, &f, 3);
    CHECK(decode_forged(c, w, err, sizeof(err)) == LT_OK);

    /* every truncation is refused */
    size_t full = w->n;
    for (size_t n = 0; n < full; n++) {
        w->n = n;
        lt_err_t e = decode_forged(c, w, err, sizeof(err));
        CHECK_MSG(e == LT_ERR_INVALID, "truncated to %zu bytes: %d", n, (int)e);
    }
    w->n = full;
    w_byte(w, 0);
    CHECK(decode_forged(c, w, err, sizeof(err)) == LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "trailing") != NULL, "%s", err);
    w->n = full;
    w->b[0] = 1;
    CHECK(decode_forged(c, w, err, sizeof(err)) == LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "magic") != NULL, "%s", err);

    /* bad enum indexes, union branches, counts, strings */
    typedef struct {
        const char *what;
        forge_t f;
        const char *needle;
    } hcase_t;
    hcase_t cases[8];
    size_t nc = 0;
    cases[nc] = (hcase_t){"kind index 4", base(LT_CHANGE_DELETED), "enum index"};
    cases[nc++].f.kind = 4;
    cases[nc] = (hcase_t){"provider index 2", base(LT_CHANGE_DELETED), "enum index"};
    cases[nc++].f.provider = 2;
    cases[nc] = (hcase_t){"huge flags count", base(LT_CHANGE_FLAGS), "block count"};
    cases[nc++].f.flags_count_override = 1LL << 40;
    cases[nc] = (hcase_t){"negative position", base(LT_CHANGE_FLAGS), "negative"};
    cases[nc++].f.position = -7; /* written as null by forge: fixed below */
    cases[nc] = (hcase_t){"invalid UTF-8", base(LT_CHANGE_DELETED), "UTF-8"};
    cases[nc++].f.tenant = "ac\xc0\xafme";
    cases[nc] = (hcase_t){"reset with a message id", base(LT_CHANGE_RESET),
                                   "must be null"};
    cases[nc++].f.pmid = "INBOX;UIDVALIDITY=7;UID=1";
    cases[nc] = (hcase_t){"labels on a delete", base(LT_CHANGE_DELETED),
                                   "labels must be empty"};
    cases[nc].f.labels = k_labels;
    cases[nc++].f.nlabels = 1;
    cases[nc] = (hcase_t){"kind flags without a message", base(LT_CHANGE_FLAGS),
                                   "provider_message_id"};
    cases[nc++].f.pmid = NULL;
    for (size_t i = 0; i < nc; i++) {
        forge(w, &cases[i].f, 3);
        if (!strcmp(cases[i].what, "negative position")) {
            /* rewrite: the position union is 4 bytes before the end
             * (branch, ..., reset_reason null, "confidential") */
            w->n -= 1 + 1 + 12;
            w->n -= 1; /* the null branch of position */
            w_long(w, 1);
            w_long(w, -7);
            w_long(w, 0);
            w_str(w, "confidential");
        }
        err[0] = 0;
        lt_err_t e = decode_forged(c, w, err, sizeof(err));
        CHECK_MSG(e == LT_ERR_INVALID, "%s: %d", cases[i].what, (int)e);
        CHECK_MSG(strstr(err, cases[i].needle) != NULL, "%s: %s", cases[i].what, err);
    }

    /* NUL inside a string, and an over-the-limit set that the walk lets by */
    f = base(LT_CHANGE_DELETED);
    forge(w, &f, 3);
    size_t at = 5 + 1; /* first byte of event_id's text */
    w->b[at + 3] = 0;
    CHECK(decode_forged(c, w, err, sizeof(err)) == LT_ERR_INVALID);
    static const char *many[LT_CHANGE_MAX_ITEMS + 1];
    for (size_t i = 0; i <= LT_CHANGE_MAX_ITEMS; i++)
        many[i] = "$k";
    f = base(LT_CHANGE_FLAGS);
    f.flags = many;
    f.nflags = LT_CHANGE_MAX_ITEMS + 1;
    forge(w, &f, 3);
    CHECK(decode_forged(c, w, err, sizeof(err)) == LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "over the limit") != NULL, "%s", err);

    /* too large a value */
    size_t big = LT_CHANGE_EVENT_MAX_WIRE + 1;
    uint8_t *huge = calloc(1, big);
    lt_change_event_t *ev = NULL;
    CHECK(lt_change_event_decode(c, huge, big, NULL, &ev, err, sizeof(err)) == LT_ERR_TOO_BIG);
    CHECK(ev == NULL);
    free(huge);
    free(w);
}

/* The embedded schema with json modified by edit(). */
static char *schema_variant(void (*edit)(json_object *root))
{
    json_object *s = json_tokener_parse(lt_change_event_schema_json());
    edit(s);
    char *out = strdup(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
    json_object_put(s);
    return out;
}

static void add_field(json_object *root)
{
    json_object *fields = NULL;
    json_object_object_get_ex(root, "fields", &fields);
    json_object_array_add(fields, json_tokener_parse("{\"name\":\"origin\",\"type\":[\"null\","
                                                     "\"string\"],\"default\":null}"));
}

static void drop_reset_reason(json_object *root)
{
    json_object *fields = NULL, *pl = NULL, *type = NULL, *pf = NULL;
    json_object_object_get_ex(root, "fields", &fields);
    for (size_t i = 0; i < json_object_array_length(fields); i++) {
        json_object *name = NULL;
        json_object_object_get_ex(json_object_array_get_idx(fields, i), "name", &name);
        if (!strcmp(json_object_get_string(name), "payload"))
            pl = json_object_array_get_idx(fields, i);
    }
    json_object_object_get_ex(pl, "type", &type);
    json_object_object_get_ex(type, "fields", &pf);
    json_object_array_del_idx(pf, json_object_array_length(pf) - 1, 1);
}

static void test_writer_schemas(lt_change_codec_t *c)
{
    char err[256];
    wbuf_t *w = calloc(1, sizeof(*w));
    forge_t f = base(LT_CHANGE_LABELS);
    forge(w, &f, 9);
    /* a later writer (an optional field added): the reader skips it */
    char *v2 = schema_variant(add_field);
    w_long(w, 1);
    w_str(w, "rule-42");
    lt_change_event_t *ev = NULL;
    lt_err_t e = lt_change_event_decode(c, w->b, w->n, v2, &ev, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "%s", err);
    if (ev)
        CHECK_STR(lt_change_event_get_label(ev, 2), "Label_12");
    lt_change_event_destroy(ev);
    ev = NULL;
    /* the same bytes read as v1 have trailing bytes */
    CHECK(lt_change_event_decode(c, w->b, w->n, NULL, &ev, err, sizeof(err)) == LT_ERR_INVALID);
    /* a writer without a field of mail.change.v1: refused, not a crash */
    char *old = schema_variant(drop_reset_reason);
    forge(w, &f, 9);
    w->n -= 1 + 13; /* reset_reason null, "confidential" */
    w_str(w, "confidential");
    CHECK(lt_change_event_decode(c, w->b, w->n, old, &ev, err, sizeof(err)) == LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "lacks") != NULL, "%s", err);
    CHECK(lt_change_event_decode(c, w->b, w->n, "{not json", &ev, err, sizeof(err)) ==
          LT_ERR_INVALID);
    CHECK(lt_change_event_decode(c, w->b, w->n, "\"string\"", &ev, err, sizeof(err)) ==
          LT_ERR_INVALID);
    CHECK(ev == NULL);
    free(v2);
    free(old);
    free(w);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0)
        n += got;
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void strip_docs(json_object *t)
{
    if (json_object_is_type(t, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(t); i++)
            strip_docs(json_object_array_get_idx(t, i));
    } else if (json_object_is_type(t, json_type_object)) {
        json_object_object_del(t, "doc");
        json_object_object_foreach(t, k, v)
        {
            (void)k;
            strip_docs(v);
        }
    }
}

static json_object *field_named(json_object *rec, const char *name)
{
    json_object *fields = NULL;
    json_object_object_get_ex(rec, "fields", &fields);
    for (size_t i = 0; fields && i < json_object_array_length(fields); i++) {
        json_object *f = json_object_array_get_idx(fields, i), *n = NULL;
        json_object_object_get_ex(f, "name", &n);
        if (n && !strcmp(json_object_get_string(n), name))
            return f;
    }
    return NULL;
}

/* schemas/mail.change.v1.avsc == the embedded copy; its envelope (every
 * field but payload, docs aside) == mail.raw.v1's. */
static void test_schema_file(void)
{
    char *file = read_file(LT_SOURCE_DIR "/schemas/mail.change.v1.avsc");
    CHECK_MSG(file != NULL, "cannot read schemas/mail.change.v1.avsc");
    if (!file)
        return;
    json_object *a = json_tokener_parse(file);
    json_object *b = json_tokener_parse(lt_change_event_schema_json());
    json_object *raw = json_tokener_parse(lt_mail_event_schema_json());
    CHECK(a && b && raw);
    if (a && b && raw) {
        CHECK_MSG(json_object_equal(a, b),
                  "the schema embedded in lib/events/lt_change_event.c differs from "
                  "schemas/mail.change.v1.avsc: update the embedded copy");
        json_object *name = NULL;
        CHECK(json_object_object_get_ex(a, "name", &name));
        CHECK_STR(json_object_get_string(name), "MailChangeV1");
        strip_docs(a);
        strip_docs(raw);
        const char *env[] = {"event_id", "event_type", "event_time", "tenant_id", "source",
                             "data_classification"};
        for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++) {
            json_object *fa = field_named(a, env[i]), *fr = field_named(raw, env[i]);
            CHECK_MSG(fa && fr, "envelope field %s missing", env[i]);
            if (!fa || !fr || !strcmp(env[i], "event_type"))
                continue; /* the default names the type */
            CHECK_MSG(json_object_equal(fa, fr), "envelope field %s differs from mail.raw.v1",
                      env[i]);
        }
    }
    json_object_put(a);
    json_object_put(b);
    json_object_put(raw);
    free(file);
}

int main(void)
{
    char err[256];
    lt_change_codec_t *c = lt_change_codec_new(err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (!c)
        return lt_test_done("test_change_event");
    test_kind_names();
    test_round_trip(c);
    test_derive_id();
    test_encode_rules(c);
    test_hostile(c);
    test_writer_schemas(c);
    test_schema_file();
    lt_change_codec_destroy(c);
    return lt_test_done("test_change_event");
}
