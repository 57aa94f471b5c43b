/* mail.raw.v1 codec: round trip, wire header, deterministic ids, rejection of
 * bad input, schema evolution (a writer with an extra optional field). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_event.h"
#include "lt_test.h"

#define PMID42 "INBOX;UIDVALIDITY=1700000000;UID=42"
#define PMID43 "INBOX;UIDVALIDITY=1700000000;UID=43"
#define PMID4242 "INBOX;UIDVALIDITY=1700000000;UID=4242"
#define SHA_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define SHA_B "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
#define SHA_C "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13"
#define SHA_D "a4ff8f6fd1f2d0b4b0dc6c1c9f4e3b1e0a5e2d0f5f3b0d8c7e6f5a4b3c2d1e0f"

static lt_mail_event_t *full_event(void)
{
    lt_mail_event_t *ev = lt_mail_event_new();
    lt_mail_event_set_tenant_id(ev, "personal-\xc3\xbc"); /* personal-ü */
    lt_mail_event_set_provider(ev, LT_PROVIDER_IMAP);
    lt_mail_event_set_account_id(ev, "workmail-imap");
    lt_mail_event_set_mailbox(ev, "Entw\xc3\xbcrfe/\xe6\x97\xa5\xe6\x9c\xac"); /* Entwürfe/日本 */
    lt_mail_event_set_provider_message_id(ev, PMID4242);
    lt_mail_event_set_event_time(ev, 1764000000123LL);
    lt_mail_event_set_received_at(ev, 1763999999000LL);
    lt_mail_event_set_raw_object_uri(
        ev, "s3://lattice-mail/tenant/personal/account/workmail-imap/provider/imap/message/"
            "x/message.eml");
    lt_mail_event_set_raw_size_bytes(ev, 123456789012LL);
    lt_mail_event_set_raw_sha256(ev, SHA_A);
    lt_mail_event_set_rfc822_message_id(ev, "CAF=x+y@mail.example.com");
    lt_mail_event_add_attachment(ev, "1.2", "r\xc3\xa9sum\xc3\xa9 \xf0\x9f\x93\x8e.pdf",
                                 "application/pdf", 52345, SHA_B, "s3://lattice-mail/a/1.2");
    lt_mail_event_add_attachment(ev, "1.3", NULL, "application/octet-stream", 0, SHA_C,
                                 "s3://lattice-mail/a/1.3");
    lt_mail_event_add_attachment(ev, "1.4.1", "\"quoted\"\\back.txt", "text/plain", 7, SHA_D,
                                 "s3://lattice-mail/a/1.4.1");
    char err[256];
    CHECK_INT(lt_mail_event_derive_id(ev, err, sizeof(err)), LT_OK);
    return ev;
}

static char *json_of(const lt_mail_event_t *ev)
{
    lt_buf_t *b = lt_buf_new(1 << 20);
    CHECK_INT(lt_mail_event_to_json(ev, b), LT_OK);
    char *s = (char *)lt_buf_steal(b, NULL);
    lt_buf_destroy(b);
    return s;
}

static void test_round_trip(lt_mail_codec_t *c)
{
    char err[256] = "";
    lt_mail_event_t *ev = full_event();
    lt_buf_t *out = lt_buf_new(1 << 20);
    CHECK_INT(lt_mail_event_encode(c, ev, 0x01020304, out, err, sizeof(err)), LT_OK);
    const uint8_t *p = lt_buf_data(out);
    CHECK(lt_buf_len(out) > 5);
    CHECK_INT(p[0], 0);
    CHECK_INT(p[1], 1);
    CHECK_INT(p[2], 2);
    CHECK_INT(p[3], 3);
    CHECK_INT(p[4], 4);
    /* the first field is event_id: zigzag length 36 -> 0x48, then the text */
    CHECK_INT(p[5], 0x48);
    CHECK(!memcmp(p + 6, lt_mail_event_get_event_id(ev), 36));

    int32_t id = 0;
    CHECK_INT(lt_mail_event_peek_schema_id(p, lt_buf_len(out), &id, err, sizeof(err)), LT_OK);
    CHECK_INT(id, 0x01020304);

    lt_mail_event_t *back = NULL;
    id = 0;
    CHECK_INT(lt_mail_event_decode(c, p, lt_buf_len(out), NULL, &back, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_mail_event_peek_schema_id(p, lt_buf_len(out), &id, err, sizeof(err)), LT_OK);
    CHECK_MSG(back != NULL, "%s", err);
    if (back) {
        CHECK_INT(id, 0x01020304);
        CHECK_STR(lt_mail_event_get_event_id(back), lt_mail_event_get_event_id(ev));
        CHECK_STR(lt_mail_event_get_event_type(back), "mail.raw.v1");
        CHECK_INT(lt_mail_event_get_event_time(back), 1764000000123LL);
        CHECK_STR(lt_mail_event_get_tenant_id(back), "personal-\xc3\xbc");
        CHECK_INT(lt_mail_event_get_provider(back), LT_PROVIDER_IMAP);
        CHECK_STR(lt_mail_event_get_account_id(back), "workmail-imap");
        CHECK_STR(lt_mail_event_get_mailbox(back), "Entw\xc3\xbcrfe/\xe6\x97\xa5\xe6\x9c\xac");
        CHECK_STR(lt_mail_event_get_provider_message_id(back), PMID4242);
        CHECK(lt_mail_event_get_provider_thread_id(back) == NULL);
        CHECK_INT(lt_mail_event_get_received_at(back), 1763999999000LL);
        CHECK_STR(lt_mail_event_get_raw_object_uri(back), lt_mail_event_get_raw_object_uri(ev));
        CHECK_INT(lt_mail_event_get_raw_size_bytes(back), 123456789012LL);
        CHECK_STR(lt_mail_event_get_raw_sha256(back), SHA_A);
        CHECK_STR(lt_mail_event_get_rfc822_message_id(back), "CAF=x+y@mail.example.com");
        CHECK_STR(lt_mail_event_get_data_classification(back), "confidential");
        CHECK_INT(lt_mail_event_attachment_count(back), 3);
        lt_mail_attachment_t a;
        CHECK_INT(lt_mail_event_get_attachment(back, 0, &a), LT_OK);
        CHECK_STR(a.attachment_id, "1.2");
        CHECK_STR(a.filename, "r\xc3\xa9sum\xc3\xa9 \xf0\x9f\x93\x8e.pdf");
        CHECK_STR(a.content_type, "application/pdf");
        CHECK_INT(a.size_bytes, 52345);
        CHECK_STR(a.sha256_hex, SHA_B);
        CHECK_STR(a.object_uri, "s3://lattice-mail/a/1.2");
        CHECK_INT(lt_mail_event_get_attachment(back, 1, &a), LT_OK);
        CHECK(a.filename == NULL);
        CHECK_INT(a.size_bytes, 0);
        CHECK_INT(lt_mail_event_get_attachment(back, 2, &a), LT_OK);
        CHECK_STR(a.filename, "\"quoted\"\\back.txt");
        CHECK_INT(lt_mail_event_get_attachment(back, 3, &a), LT_ERR_NOT_FOUND);

        char *j1 = json_of(ev), *j2 = json_of(back);
        CHECK_STR(j1, j2);
        /* the JSON is valid JSON with the nulls as null */
        json_object *o = json_tokener_parse(j2);
        CHECK(o != NULL);
        json_object *pl = NULL, *tid = NULL;
        CHECK(json_object_object_get_ex(o, "payload", &pl));
        CHECK(json_object_object_get_ex(pl, "provider_thread_id", &tid) && tid == NULL);
        json_object_put(o);
        free(j1);
        free(j2);
        lt_mail_event_destroy(back);
    }

    /* a minimal event: all nullable fields null, no attachments; encodes the
     * same twice (the codec's value is reset between uses) */
    lt_mail_event_t *min = lt_mail_event_new();
    lt_mail_event_set_tenant_id(min, "t");
    lt_mail_event_set_account_id(min, "a");
    lt_mail_event_set_provider_message_id(min, "18c2f0a1b2c3d4e5");
    lt_mail_event_set_raw_object_uri(min, "s3://b/k");
    lt_mail_event_set_raw_sha256(min, SHA_A);
    CHECK_INT(lt_mail_event_derive_id(min, err, sizeof(err)), LT_OK);
    lt_buf_t *m1 = lt_buf_new(4096), *m2 = lt_buf_new(4096);
    CHECK_INT(lt_mail_event_encode(c, min, 7, m1, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_mail_event_encode(c, min, 7, m2, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_buf_len(m1), lt_buf_len(m2));
    CHECK(!memcmp(lt_buf_data(m1), lt_buf_data(m2), lt_buf_len(m1)));
    CHECK_INT(
        lt_mail_event_decode(c, lt_buf_data(m1), lt_buf_len(m1), NULL, &back, err, sizeof(err)),
        LT_OK);
    if (back) {
        CHECK(lt_mail_event_get_mailbox(back) == NULL);
        CHECK(lt_mail_event_get_rfc822_message_id(back) == NULL);
        CHECK_INT(lt_mail_event_attachment_count(back), 0);
        CHECK_INT(lt_mail_event_get_provider(back), LT_PROVIDER_GMAIL);
        lt_mail_event_destroy(back);
    }
    /* a full buffer: TOO_BIG and the buffer left as it was */
    lt_buf_t *tiny = lt_buf_new(16);
    lt_buf_append(tiny, "xy", 2);
    CHECK_INT(lt_mail_event_encode(c, ev, 7, tiny, err, sizeof(err)), LT_ERR_TOO_BIG);
    CHECK_INT(lt_buf_len(tiny), 2);
    lt_buf_destroy(tiny);
    lt_buf_destroy(m1);
    lt_buf_destroy(m2);
    lt_mail_event_destroy(min);
    lt_buf_destroy(out);
    lt_mail_event_destroy(ev);
}

static void test_invalid_events(lt_mail_codec_t *c)
{
    char err[256];
    lt_buf_t *out = lt_buf_new(1 << 20);
    lt_mail_event_t *ev = full_event();
    lt_mail_event_set_raw_sha256(
        ev, "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08");
    CHECK_INT(lt_mail_event_encode(c, ev, 1, out, err, sizeof(err)), LT_ERR_INVALID);
    CHECK(strstr(err, "raw_sha256") != NULL);
    lt_mail_event_destroy(ev);

    ev = full_event();
    lt_mail_event_set_tenant_id(ev, NULL);
    CHECK_INT(lt_mail_event_encode(c, ev, 1, out, err, sizeof(err)), LT_ERR_INVALID);
    CHECK(strstr(err, "tenant_id") != NULL);
    lt_mail_event_destroy(ev);

    ev = full_event();
    lt_mail_event_set_account_id(ev, "bad\xff utf8");
    CHECK_INT(lt_mail_event_encode(c, ev, 1, out, err, sizeof(err)), LT_ERR_INVALID);
    CHECK(strstr(err, "UTF-8") != NULL);
    lt_mail_event_destroy(ev);

    ev = full_event();
    lt_mail_event_set_event_id(ev, "not-a-uuid");
    CHECK_INT(lt_mail_event_encode(c, ev, 1, out, err, sizeof(err)), LT_ERR_INVALID);
    lt_mail_event_destroy(ev);

    ev = full_event();
    lt_mail_event_set_provider(ev, (lt_provider_t)7);
    CHECK_INT(lt_mail_event_encode(c, ev, 1, out, err, sizeof(err)), LT_ERR_INVALID);
    lt_mail_event_destroy(ev);

    ev = full_event();
    lt_mail_event_add_attachment(ev, "x", NULL, "text/plain", -1, SHA_A, "s3://b/x");
    CHECK_INT(lt_mail_event_encode(c, ev, 1, out, err, sizeof(err)), LT_ERR_INVALID);
    lt_mail_event_destroy(ev);

    ev = full_event();
    CHECK_INT(lt_mail_event_encode(c, ev, -1, out, err, sizeof(err)), LT_ERR_INVALID);
    lt_mail_event_destroy(ev);
    CHECK_INT(lt_buf_len(out), 0);
    lt_buf_destroy(out);
}

static void test_event_id(void)
{
    char a[37], b[37];
    CHECK_INT(lt_mail_event_id("personal", LT_PROVIDER_IMAP, "workmail-imap", "INBOX",
                               PMID42, a),
              LT_OK);
    CHECK_INT(strlen(a), 36);
    CHECK_INT(a[14], '8');                              /* version 8 */
    CHECK(strchr("89ab", a[19]) != NULL);               /* RFC 9562 variant */
    CHECK(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
    /* determinism */
    CHECK_INT(lt_mail_event_id("personal", LT_PROVIDER_IMAP, "workmail-imap", "INBOX",
                               PMID42, b),
              LT_OK);
    CHECK_STR(a, b);
    /* golden value: SHA-256("mail.raw.v1\0personal\0imap\0workmail-imap\0INBOX\0" PMID42),
     * first 16 bytes, version/variant set (computed independently with Python hashlib) */
    CHECK_STR(a, "60b1b8c0-3f69-88f6-8bc4-95875e0ec028");

    /* sensitive to every input */
    struct {
        const char *t;
        lt_provider_t p;
        const char *acc, *mb, *pmid;
    } v[] = {
        {"personaL", LT_PROVIDER_IMAP, "workmail-imap", "INBOX", PMID42},
        {"personal", LT_PROVIDER_GMAIL, "workmail-imap", "INBOX", PMID42},
        {"personal", LT_PROVIDER_IMAP, "workmail-imaP", "INBOX", PMID42},
        {"personal", LT_PROVIDER_IMAP, "workmail-imap", "Inbox", PMID42},
        {"personal", LT_PROVIDER_IMAP, "workmail-imap", NULL, PMID42},
        {"personal", LT_PROVIDER_IMAP, "workmail-imap", "INBOX", PMID43},
        /* the separator matters: shifting text between fields changes the id */
        {"personal", LT_PROVIDER_IMAP, "workmail-imapI", "NBOX", PMID42},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        CHECK_INT(lt_mail_event_id(v[i].t, v[i].p, v[i].acc, v[i].mb, v[i].pmid, b), LT_OK);
        CHECK_MSG(strcmp(a, b) != 0, "variant %zu gives the same id", i);
    }
    /* NULL mailbox hashes as the empty string */
    CHECK_INT(lt_mail_event_id("t", LT_PROVIDER_GMAIL, "acc", NULL, "m", a), LT_OK);
    CHECK_INT(lt_mail_event_id("t", LT_PROVIDER_GMAIL, "acc", "", "m", b), LT_OK);
    CHECK_STR(a, b);
    CHECK_INT(lt_mail_event_id(NULL, LT_PROVIDER_GMAIL, "acc", NULL, "m", a),
              LT_ERR_INVALID);
    CHECK_INT(lt_mail_event_id("t", (lt_provider_t)9, "acc", NULL, "m", a), LT_ERR_INVALID);

    lt_provider_t p;
    CHECK_INT(lt_provider_parse("imap", &p), LT_OK);
    CHECK_INT(p, LT_PROVIDER_IMAP);
    CHECK_INT(lt_provider_parse("IMAP", &p), LT_ERR_INVALID);
    CHECK_STR(lt_provider_name(LT_PROVIDER_GMAIL), "gmail");
}

static void expect_reject(lt_mail_codec_t *c, const void *data, size_t len, const char *schema,
                          const char *why_contains)
{
    char err[256] = "";
    lt_mail_event_t *ev = (lt_mail_event_t *)1;
    lt_err_t e = lt_mail_event_decode(c, data, len, schema, &ev, err, sizeof(err));
    CHECK_MSG(e == LT_ERR_INVALID, "len %zu: got %s", len, lt_err_name(e));
    CHECK(ev == NULL);
    if (why_contains)
        CHECK_MSG(strstr(err, why_contains) != NULL, "error \"%s\" lacks \"%s\"", err,
                  why_contains);
}

static void test_reject(lt_mail_codec_t *c)
{
    char err[256];
    lt_mail_event_t *ev = full_event();
    lt_buf_t *out = lt_buf_new(1 << 20);
    CHECK_INT(lt_mail_event_encode(c, ev, 3, out, err, sizeof(err)), LT_OK);
    size_t n = lt_buf_len(out);
    uint8_t *w = malloc(n + 16);
    memcpy(w, lt_buf_data(out), n);

    expect_reject(c, w, 0, NULL, "shorter than");
    expect_reject(c, w, 4, NULL, "shorter than");
    expect_reject(c, NULL, 0, NULL, "shorter than");
    w[0] = 1;
    expect_reject(c, w, n, NULL, "magic byte 0x01");
    w[0] = 0;
    w[1] = 0x80; /* schema id > INT32_MAX */
    expect_reject(c, w, n, NULL, "schema id");
    w[1] = 0;
    /* every truncation of the datum is rejected, none crashes */
    for (size_t len = 5; len < n; len++)
        expect_reject(c, w, len, NULL, len == 5 ? "truncated" : NULL);
    /* trailing garbage */
    w[n] = 0;
    expect_reject(c, w, n + 1, NULL, "trailing");
    /* a string length pointing far past the end (event_id length 2^40) */
    uint8_t big[] = {0, 0, 0, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40};
    expect_reject(c, big, sizeof(big), NULL, "past the end");
    /* a negative string length */
    uint8_t neg[] = {0, 0, 0, 0, 1, 0x01, 'x'};
    expect_reject(c, neg, sizeof(neg), NULL, "negative");
    /* an 11-byte varint */
    uint8_t longv[] = {0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff,
                       0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_reject(c, longv, sizeof(longv), NULL, "varint");
    /* an out-of-range provider enum: find the provider byte right after
     * event_id, event_type, event_time and tenant_id by re-encoding them */
    {
        size_t pos = 5;
        for (int f = 0; f < 4; f++) {
            uint64_t v = 0;
            int sh = 0;
            while (w[pos] & 0x80)
                v |= (uint64_t)(w[pos++] & 0x7f) << (sh += 7, sh - 7);
            v |= (uint64_t)(w[pos++] & 0x7f) << sh;
            if (f != 2) /* strings: skip the text */
                pos += (size_t)((int64_t)(v >> 1) ^ -(int64_t)(v & 1));
        }
        CHECK_INT(w[pos], 2); /* imap = index 1, zigzag 2 */
        w[pos] = 4;           /* index 2: no such symbol */
        expect_reject(c, w, n, NULL, "enum index out of range");
        w[pos] = 2;
    }
    /* an unparseable writer schema */
    expect_reject(c, w, n, "{\"type\": \"nonsense\"}", "writer schema");
    /* a writer schema that cannot be resolved to mail.raw.v1 */
    expect_reject(c, w, n, "{\"type\":\"record\",\"name\":\"X\",\"fields\":[]}", NULL);

    /* the intact value still decodes (nothing above corrupted the codec) */
    lt_mail_event_t *back = NULL;
    CHECK_INT(lt_mail_event_decode(c, w, n, NULL, &back, err, sizeof(err)), LT_OK);
    lt_mail_event_destroy(back);
    free(w);
    lt_buf_destroy(out);
    lt_mail_event_destroy(ev);
}

/* A later version of the schema that appends an optional field: a v1 reader
 * reads its data (the field is skipped). Appending a top-level field means the
 * v2 datum is the v1 datum followed by that field's encoding. */
static void test_evolved_writer(lt_mail_codec_t *c)
{
    char err[256];
    json_object *s = json_tokener_parse(lt_mail_event_schema_json());
    json_object *fields = NULL;
    CHECK(json_object_object_get_ex(s, "fields", &fields));
    json_object *f = json_tokener_parse(
        "{\"name\":\"spam_score\",\"type\":[\"null\",\"double\"],\"default\":null,"
        "\"doc\":\"v1.1 test field\"}");
    json_object_array_add(fields, f);
    const char *v2 = json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN);

    lt_mail_event_t *ev = full_event();
    lt_buf_t *out = lt_buf_new(1 << 20);
    CHECK_INT(lt_mail_event_encode(c, ev, 11, out, err, sizeof(err)), LT_OK);
    /* spam_score = 0.5: union branch 1 (zigzag 2), then 8 bytes little-endian */
    const uint8_t tail[] = {2, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f};
    lt_buf_append(out, tail, sizeof(tail));
    lt_mail_event_t *back = NULL;
    for (int round = 0; round < 2; round++) { /* the second round hits the cache */
        CHECK_INT(
            lt_mail_event_decode(c, lt_buf_data(out), lt_buf_len(out), v2, &back, err, sizeof(err)),
            LT_OK);
        CHECK_MSG(back != NULL, "%s", err);
        if (back) {
            char *j1 = json_of(ev), *j2 = json_of(back);
            CHECK_STR(j1, j2);
            free(j1);
            free(j2);
            lt_mail_event_destroy(back);
            back = NULL;
        }
    }
    /* the same bytes against v1 have 9 trailing bytes */
    expect_reject(c, lt_buf_data(out), lt_buf_len(out), NULL, "9 trailing bytes");
    /* and v2 bytes with a bad union branch are rejected */
    lt_buf_t *bad = lt_buf_new(1 << 20);
    lt_buf_append(bad, lt_buf_data(out), lt_buf_len(out) - sizeof(tail));
    uint8_t b3 = 6;
    lt_buf_append(bad, &b3, 1);
    expect_reject(c, lt_buf_data(bad), lt_buf_len(bad), v2, "union branch");
    lt_buf_destroy(bad);
    lt_buf_destroy(out);
    lt_mail_event_destroy(ev);
    json_object_put(s);
}

/* 1,000 attachments with 600-byte names: over librdkafka's default
 * message.max.bytes (1,000,000) when encoded whole. */
#define BIG_NATT 1000
#define BIG_BOUND 900000
static lt_mail_event_t *big_event(void)
{
    lt_mail_event_t *ev = full_event();
    char name[601], uri[1100];
    for (int i = 0; i < BIG_NATT; i++) {
        snprintf(name, sizeof(name), "%04d-", i);
        memset(name + 5, 'n', 595);
        name[600] = 0;
        char aid[16];
        snprintf(aid, sizeof(aid), "%d", i + 2);
        snprintf(uri, sizeof(uri),
                 "s3://lattice-mail/tenant/personal/account/workmail-imap/provider/imap/"
                 "message/x/attachments/%s/%.200s",
                 aid, name);
        lt_mail_event_add_attachment(ev, aid, name, "application/octet-stream", 1000 + i, SHA_B,
                                     uri);
    }
    return ev;
}

static void test_bound(lt_mail_codec_t *c)
{
    char err[256] = "";
    lt_mail_event_t *ev = big_event();
    /* whole: over the bound (and over 1,000,000 with real object URIs) */
    lt_buf_t *out = lt_buf_new(BIG_BOUND);
    CHECK_INT(lt_mail_event_encode(c, ev, 7, out, err, sizeof(err)), LT_ERR_TOO_BIG);
    /* the full manifest as JSON (what the worker stores), read back */
    lt_buf_t *mj = lt_buf_new((size_t)16 << 20);
    CHECK_INT(lt_mail_event_manifest_to_json(ev, mj), LT_OK);
    lt_mail_event_t *full = lt_mail_event_new();
    CHECK_INT(lt_mail_event_manifest_from_json(full, lt_buf_str(mj), lt_buf_len(mj), err,
                                               sizeof(err)),
              LT_OK);
    CHECK_INT(lt_mail_event_attachment_count(full), BIG_NATT + 3);
    lt_mail_attachment_t last = {0};
    CHECK_INT(lt_mail_event_get_attachment(full, BIG_NATT + 2, &last), LT_OK);
    const char *fname = last.filename;
    int64_t size = last.size_bytes;
    CHECK(fname && strlen(fname) == 600 && !strncmp(fname, "0999-", 5));
    CHECK_INT(size, 1999);
    /* bounded: the manifest is cut, flagged and referenced; it encodes under the bound */
    lt_mail_event_set_attachments_manifest_ref(ev, "s3://lattice-mail/x/manifest.json");
    size_t kept = 0;
    CHECK_INT(lt_mail_event_fit(c, ev, BIG_BOUND, &kept, err, sizeof(err)), LT_OK);
    CHECK(kept > 0 && kept < BIG_NATT + 3);
    CHECK_INT(lt_mail_event_attachment_count(ev), kept);
    CHECK(lt_mail_event_get_attachments_manifest_truncated(ev));
    lt_buf_reset(out);
    lt_err_t e = lt_mail_event_encode(c, ev, 7, out, err, sizeof(err));
    CHECK_MSG(e == LT_OK && lt_buf_len(out) <= BIG_BOUND,
              "1000 attachments x 600-byte names: %s, %zu bytes (bound %d): %s", lt_err_name(e),
              lt_buf_len(out), BIG_BOUND, err);
    printf("1000 attachments x 600-byte names: %zu bytes bounded (%zu of %d manifest entries "
           "inline)\n",
           lt_buf_len(out), kept, BIG_NATT + 3);
    /* the longest prefix: one more entry would not fit */
    lt_mail_event_t *back = NULL;
    CHECK_INT(
        lt_mail_event_decode(c, lt_buf_data(out), lt_buf_len(out), NULL, &back, err, sizeof(err)),
        LT_OK);
    if (back) {
        CHECK(lt_mail_event_get_attachments_manifest_truncated(back));
        CHECK_STR(lt_mail_event_get_attachments_manifest_ref(back),
                  "s3://lattice-mail/x/manifest.json");
        CHECK_INT(lt_mail_event_attachment_count(back), kept);
        lt_mail_event_destroy(back);
    }
    /* a small event is left alone */
    lt_mail_event_t *small = full_event();
    CHECK_INT(lt_mail_event_fit(c, small, BIG_BOUND, &kept, err, sizeof(err)), LT_OK);
    CHECK_INT(kept, 3);
    CHECK(!lt_mail_event_get_attachments_manifest_truncated(small));
    /* a bound that not even the envelope fits: TOO_BIG, event unchanged */
    CHECK_INT(lt_mail_event_fit(c, small, 100, &kept, err, sizeof(err)), LT_ERR_TOO_BIG);
    CHECK_INT(lt_mail_event_attachment_count(small), 3);
    CHECK(!lt_mail_event_get_attachments_manifest_truncated(small));
    /* manifest JSON that is not one */
    const char *bad[] = {"", "[]", "{\"attachments_manifest\":{}}",
                         "{\"attachments_manifest\":[{\"attachment_id\":\"1\"}]}",
                         "{\"attachments_manifest\":[]} x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_INT(lt_mail_event_manifest_from_json(small, bad[i], strlen(bad[i]), err,
                                                   sizeof(err)),
                  LT_ERR_INVALID);
    CHECK_INT(lt_mail_event_attachment_count(small), 3);
    lt_mail_event_destroy(small);
    lt_mail_event_destroy(full);
    lt_buf_destroy(mj);
    lt_buf_destroy(out);
    lt_mail_event_destroy(ev);
}

/* The fields added later (manifest truncated/ref, parse_error) round trip,
 * and an event written with the schema from before them still decodes
 * (they take their defaults). */
static void test_later_fields(lt_mail_codec_t *c)
{
    char err[256] = "";
    lt_mail_event_t *ev = full_event();
    lt_mail_event_set_parse_error(ev, "MIME: message structure over the caps");
    lt_mail_event_set_attachments_manifest_ref(ev, "s3://lattice-mail/m/manifest.json");
    lt_mail_event_set_attachments_manifest_truncated(ev, 1);
    lt_buf_t *out = lt_buf_new(1 << 20);
    CHECK_INT(lt_mail_event_encode(c, ev, 3, out, err, sizeof(err)), LT_OK);
    lt_mail_event_t *back = NULL;
    CHECK_INT(
        lt_mail_event_decode(c, lt_buf_data(out), lt_buf_len(out), NULL, &back, err, sizeof(err)),
        LT_OK);
    if (back) {
        char *j1 = json_of(ev), *j2 = json_of(back);
        CHECK_STR(j1, j2);
        free(j1);
        free(j2);
        lt_mail_event_destroy(back);
        back = NULL;
    }
    /* the older writer: the schema without the three fields; its datum is
     * the new one without their 3 trailing payload bytes... */
    json_object *s = json_tokener_parse(lt_mail_event_schema_json());
    json_object *fields = NULL, *pl = NULL, *plt = NULL, *plf = NULL;
    json_object_object_get_ex(s, "fields", &fields);
    for (size_t i = 0; i < json_object_array_length(fields); i++) {
        json_object *f = json_object_array_get_idx(fields, i), *n = NULL;
        json_object_object_get_ex(f, "name", &n);
        if (!strcmp(json_object_get_string(n), "payload"))
            pl = f;
    }
    CHECK(pl != NULL);
    json_object_object_get_ex(pl, "type", &plt);
    json_object_object_get_ex(plt, "fields", &plf);
    size_t nf = json_object_array_length(plf);
    CHECK(nf > 3);
    json_object_array_del_idx(plf, nf - 3, 3);
    const char *old = json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN);
    lt_mail_event_t *plain = full_event();
    lt_buf_reset(out);
    CHECK_INT(lt_mail_event_encode(c, plain, 3, out, err, sizeof(err)), LT_OK);
    /* new layout: ... rfc822_message_id, false, null, null, data_classification */
    lt_buf_t *olddat = lt_buf_new(1 << 20);
    const uint8_t *p = lt_buf_data(out);
    size_t cls = strlen(LT_MAIL_DEFAULT_CLASSIFICATION) + 1; /* zigzag length byte + text */
    size_t at = lt_buf_len(out) - cls - 3;
    CHECK(p[at] == 0 && p[at + 1] == 0 && p[at + 2] == 0);
    lt_buf_append(olddat, p, at);
    lt_buf_append(olddat, p + at + 3, cls);
    for (int round = 0; round < 2; round++) {
        CHECK_INT(lt_mail_event_decode(c, lt_buf_data(olddat), lt_buf_len(olddat), old, &back, err,
                                       sizeof(err)),
                  LT_OK);
        CHECK_MSG(back != NULL, "older writer: %s", err);
        if (back) {
            char *j1 = json_of(plain), *j2 = json_of(back);
            CHECK_STR(j1, j2);
            free(j1);
            free(j2);
            CHECK(lt_mail_event_get_parse_error(back) == NULL);
            lt_mail_event_destroy(back);
            back = NULL;
        }
    }
    lt_buf_destroy(olddat);
    lt_mail_event_destroy(plain);
    json_object_put(s);
    lt_buf_destroy(out);
    lt_mail_event_destroy(ev);
}

/* Attachments as ranges of the raw object: the three MailAttachment fields
 * round trip (Avro and the manifest JSON), a partial range is refused, and
 * an event written with the schema from before them decodes with every
 * attachment's range null. */
static void test_attachment_ranges(lt_mail_codec_t *c)
{
    char err[256] = "";
    lt_mail_event_t *ev = full_event();
    lt_mail_event_set_attachment_range(ev, 0, 1234, 69796, "base64");
    lt_mail_event_set_attachment_range(ev, 2, 0, 7, "binary");
    lt_buf_t *out = lt_buf_new(1 << 20);
    CHECK_INT(lt_mail_event_encode(c, ev, 3, out, err, sizeof(err)), LT_OK);
    lt_mail_event_t *back = NULL;
    CHECK_INT(
        lt_mail_event_decode(c, lt_buf_data(out), lt_buf_len(out), NULL, &back, err, sizeof(err)),
        LT_OK);
    if (back) {
        lt_mail_attachment_t a = {0};
        CHECK_INT(lt_mail_event_get_attachment(back, 0, &a), LT_OK);
        CHECK_INT(a.encoded_offset, 1234);
        CHECK_INT(a.encoded_length, 69796);
        CHECK_STR(a.transfer_encoding, "base64");
        CHECK_INT(lt_mail_event_get_attachment(back, 1, &a), LT_OK);
        CHECK_INT(a.encoded_offset, -1);
        CHECK_INT(a.encoded_length, -1);
        CHECK(a.transfer_encoding == NULL);
        char *j1 = json_of(ev), *j2 = json_of(back);
        CHECK_STR(j1, j2);
        CHECK(strstr(j1, "\"encoded_offset\":1234,\"encoded_length\":69796,"
                         "\"transfer_encoding\":\"base64\"") != NULL);
        free(j1);
        free(j2);
        lt_mail_event_destroy(back);
        back = NULL;
    }
    /* the manifest object keeps them too */
    lt_buf_t *mj = lt_buf_new(1 << 20);
    CHECK_INT(lt_mail_event_manifest_to_json(ev, mj), LT_OK);
    lt_mail_event_t *m2 = lt_mail_event_new();
    CHECK_INT(lt_mail_event_manifest_from_json(m2, (const char *)lt_buf_data(mj), lt_buf_len(mj),
                                               err, sizeof(err)),
              LT_OK);
    lt_mail_attachment_t a = {0};
    CHECK_INT(lt_mail_event_get_attachment(m2, 2, &a), LT_OK);
    CHECK_INT(a.encoded_offset, 0);
    CHECK_INT(a.encoded_length, 7);
    CHECK_STR(a.transfer_encoding, "binary");
    static const char partial[] =
        "{\"attachments_manifest\":[{\"attachment_id\":\"2\",\"filename\":null,"
        "\"content_type\":\"a/b\",\"size_bytes\":1,\"sha256\":\"" SHA_A "\","
        "\"object_uri\":\"s3://b/k\",\"encoded_offset\":5}]}";
    CHECK_INT(lt_mail_event_manifest_from_json(m2, partial, sizeof(partial) - 1, err, sizeof(err)),
              LT_ERR_INVALID);
    lt_mail_event_destroy(m2);
    lt_buf_destroy(mj);
    /* a partial range is refused by the encoder */
    lt_mail_event_set_attachment_range(ev, 1, 5, -1, "base64");
    lt_buf_reset(out);
    CHECK_INT(lt_mail_event_encode(c, ev, 3, out, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "encoded_offset") != NULL, "%s", err);

    /* the older writer: MailAttachment without the three fields; its datum is
     * the new one without the three null bytes after each object_uri */
    json_object *s = json_tokener_parse(lt_mail_event_schema_json());
    json_object *fields = NULL, *plt = NULL, *plf = NULL;
    json_object_object_get_ex(s, "fields", &fields);
    for (size_t i = 0; i < json_object_array_length(fields); i++) {
        json_object *f = json_object_array_get_idx(fields, i), *n = NULL;
        json_object_object_get_ex(f, "name", &n);
        if (!strcmp(json_object_get_string(n), "payload"))
            json_object_object_get_ex(f, "type", &plt);
    }
    json_object_object_get_ex(plt, "fields", &plf);
    int removed = 0;
    for (size_t i = 0; plf && i < json_object_array_length(plf); i++) {
        json_object *f = json_object_array_get_idx(plf, i), *n = NULL, *t = NULL, *it = NULL,
                    *af = NULL;
        json_object_object_get_ex(f, "name", &n);
        if (strcmp(json_object_get_string(n), "attachments_manifest"))
            continue;
        json_object_object_get_ex(f, "type", &t);
        json_object_object_get_ex(t, "items", &it);
        json_object_object_get_ex(it, "fields", &af);
        size_t nf = json_object_array_length(af);
        json_object_array_del_idx(af, nf - 3, 3);
        removed = 1;
    }
    CHECK(removed);
    const char *old = json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN);
    lt_mail_event_t *plain = full_event();
    lt_buf_reset(out);
    CHECK_INT(lt_mail_event_encode(c, plain, 3, out, err, sizeof(err)), LT_OK);
    lt_buf_t *olddat = lt_buf_new(1 << 20);
    const uint8_t *p = lt_buf_data(out);
    size_t len = lt_buf_len(out), from = 0;
    static const char *const uris[] = {"s3://lattice-mail/a/1.2", "s3://lattice-mail/a/1.3",
                                       "s3://lattice-mail/a/1.4.1"};
    for (size_t k = 0; k < 3; k++) {
        size_t ul = strlen(uris[k]), at = from;
        while (at + ul + 3 <= len && memcmp(p + at, uris[k], ul))
            at++;
        CHECK(at + ul + 3 <= len && !p[at + ul] && !p[at + ul + 1] && !p[at + ul + 2]);
        lt_buf_append(olddat, p + from, at + ul - from);
        from = at + ul + 3;
    }
    lt_buf_append(olddat, p + from, len - from);
    CHECK_INT(lt_mail_event_decode(c, lt_buf_data(olddat), lt_buf_len(olddat), old, &back, err,
                                   sizeof(err)),
              LT_OK);
    CHECK_MSG(back != NULL, "older writer: %s", err);
    if (back) {
        char *j1 = json_of(plain), *j2 = json_of(back);
        CHECK_STR(j1, j2);
        free(j1);
        free(j2);
        CHECK_INT(lt_mail_event_get_attachment(back, 0, &a), LT_OK);
        CHECK_INT(a.encoded_offset, -1);
        CHECK(a.transfer_encoding == NULL);
        lt_mail_event_destroy(back);
    }
    lt_buf_destroy(olddat);
    lt_mail_event_destroy(plain);
    json_object_put(s);
    lt_buf_destroy(out);
    lt_mail_event_destroy(ev);
}

int main(void)
{
    char err[256];
    lt_mail_codec_t *c = lt_mail_codec_new(err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (!c)
        return lt_test_done("test_event");
    test_round_trip(c);
    test_invalid_events(c);
    test_event_id();
    test_reject(c);
    test_evolved_writer(c);
    test_bound(c);
    test_later_fields(c);
    test_attachment_ranges(c);
    lt_mail_codec_destroy(c);
    return lt_test_done("test_event");
}
