/* The emails row of the parser: lt_emails_row_json (JSON the upsert reads:
 * escaping, UTF-8 repair, required fields, time ranges) and lt_mailrow_json
 * (event + parsed message -> row). The JSON is parsed back with json-c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_emails.h"
#include "lt_event.h"
#include "lt_mailrow.h"
#include "lt_mime.h"
#include "lt_test.h"

#define UUID "6f1c2a9e-3b7d-8e21-a4c5-0d9f8b7e6a51"
#define SHA "0000000000000000000000000000000000000000000000000000000000000000"

static lt_email_row_t base_row(void)
{
    lt_email_row_t r = {0};
    r.tenant_id = "t1";
    r.account_id = "a1";
    r.provider_message_id = "INBOX;UIDVALIDITY=7;UID=3";
    r.event_id = UUID;
    r.provider = "imap";
    r.received_at_ms = 1764063000123LL;
    r.raw_bucket = "lattice-mail";
    r.raw_object_key = "tenant/t1/message.eml";
    r.raw_sha256 = SHA;
    r.data_classification = "confidential";
    r.kafka_partition = 2;
    r.kafka_offset = 41;
    return r;
}

/* Row -> JSON -> json-c object (NULL if it does not parse). */
static json_object *row_obj(const lt_email_row_t *r, lt_err_t *err)
{
    lt_buf_t *b = lt_buf_new(1 << 20);
    char e[256] = "";
    *err = lt_emails_row_json(r, b, e, sizeof(e));
    json_object *o = NULL;
    if (!*err) {
        CHECK_MSG(strlen(lt_buf_str(b)) == lt_buf_len(b), "NUL in row JSON");
        o = json_tokener_parse(lt_buf_str(b));
        CHECK_MSG(o != NULL, "row JSON does not parse: %s", lt_buf_str(b));
    }
    lt_buf_destroy(b);
    return o;
}

static const char *jstr(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *k)
{
    json_object *v = NULL;
    json_object_object_get_ex(o, k, &v);
    return json_object_get_int64(v);
}

static int jnull(json_object *o, const char *k)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, k, &v) && v == NULL;
}

static void test_row_minimal(void)
{
    lt_email_row_t r = base_row();
    lt_err_t err;
    json_object *o = row_obj(&r, &err);
    CHECK_INT(err, LT_OK);
    CHECK_STR(jstr(o, "event_id"), UUID);
    CHECK_STR(jstr(o, "provider_message_id"), "INBOX;UIDVALIDITY=7;UID=3");
    CHECK_INT(jint(o, "received_at_ms"), 1764063000123LL);
    CHECK_INT(jint(o, "kafka_offset"), 41);
    CHECK(jnull(o, "subject"));
    CHECK(jnull(o, "date_ms"));
    CHECK(jnull(o, "event_time_ms")); /* unknown: never un-deletes */
    CHECK(jnull(o, "parse_error"));
    CHECK_STR(jstr(o, "body_text"), "");
    json_object *v = NULL;
    CHECK(json_object_object_get_ex(o, "to_addrs", &v) && json_object_array_length(v) == 0);
    CHECK(json_object_object_get_ex(o, "attachments", &v) && json_object_array_length(v) == 0);
    json_object_put(o);
}

static void test_row_escaping(void)
{
    lt_email_row_t r = base_row();
    /* quotes, backslash, controls, an invalid byte, a truncated sequence,
     * an overlong encoding, a surrogate, valid non-ASCII, an embedded NUL */
    static const char body[] = "a\"b\\c\n\t\x01 \xff z \xc3 \xc0\xaf \xed\xa0\x80 \xc3\xa9\0end";
    r.body_text = body;
    r.body_len = sizeof(body) - 1;
    r.subject = "Gr\xc3\xbc\xc3\x9f"
                "e \xe2\x80\x94 \xf0\x9f\x93\xa7";
    const char *to[] = {"a@x", "b\"@y"};
    r.to_addrs = to;
    r.n_to = 2;
    r.has_date = 1;
    r.date_ms = -1000;
    lt_err_t err;
    json_object *o = row_obj(&r, &err);
    CHECK_INT(err, LT_OK);
    CHECK_STR(jstr(o, "body_text"),
              "a\"b\\c\n\t\x01 \xef\xbf\xbd z \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
              "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xc3\xa9"
              "end");
    CHECK_STR(jstr(o, "subject"), "Gr\xc3\xbc\xc3\x9f"
                                  "e \xe2\x80\x94 \xf0\x9f\x93\xa7");
    json_object *v = NULL;
    CHECK(json_object_object_get_ex(o, "to_addrs", &v) && json_object_array_length(v) == 2);
    CHECK_STR(json_object_get_string(json_object_array_get_idx(v, 1)), "b\"@y");
    CHECK_INT(jint(o, "date_ms"), -1000);
    json_object_put(o);
}

static void test_row_rejects(void)
{
    lt_err_t err;
    lt_email_row_t r = base_row();
    r.event_id = "not-a-uuid";
    CHECK(row_obj(&r, &err) == NULL);
    CHECK_INT(err, LT_ERR_INVALID);
    r = base_row();
    r.tenant_id = NULL;
    CHECK(row_obj(&r, &err) == NULL);
    CHECK_INT(err, LT_ERR_INVALID);
    r = base_row();
    r.provider = "pop3";
    CHECK(row_obj(&r, &err) == NULL);
    CHECK_INT(err, LT_ERR_INVALID);
    r = base_row();
    r.received_at_ms = 253402300800000LL; /* year 10000 */
    CHECK(row_obj(&r, &err) == NULL);
    CHECK_INT(err, LT_ERR_INVALID);
    r = base_row();
    r.body_source = "application/pdf";
    CHECK(row_obj(&r, &err) == NULL);
    CHECK_INT(err, LT_ERR_INVALID);
    /* a Date header out of range is no error: NULL */
    r = base_row();
    r.has_date = 1;
    r.date_ms = INT64_MAX;
    json_object *o = row_obj(&r, &err);
    CHECK_INT(err, LT_OK);
    CHECK(jnull(o, "date_ms"));
    json_object_put(o);

    /* over the cap: TOO_BIG, buffer unchanged */
    r = base_row();
    lt_buf_t *b = lt_buf_new(64);
    lt_buf_append(b, "[", 1);
    char e[128];
    CHECK_INT(lt_emails_row_json(&r, b, e, sizeof(e)), LT_ERR_TOO_BIG);
    CHECK_STR(lt_buf_str(b), "[");
    lt_buf_destroy(b);
}

static lt_mail_event_t *sample_event(void)
{
    lt_mail_event_t *ev = lt_mail_event_new();
    lt_mail_event_set_tenant_id(ev, "t1");
    lt_mail_event_set_provider(ev, LT_PROVIDER_GMAIL);
    lt_mail_event_set_account_id(ev, "personal-gmail");
    lt_mail_event_set_mailbox(ev, "INBOX");
    lt_mail_event_set_provider_message_id(ev, "18c2f0a1b2c3d4e5");
    lt_mail_event_set_provider_thread_id(ev, "18c2f0a1b2c3d4e0");
    lt_mail_event_set_received_at(ev, 1764063000000LL);
    lt_mail_event_set_event_time(ev, 1764063001000LL);
    lt_mail_event_set_raw_object_uri(
        ev, "s3://lattice-mail/tenant/t1/account/personal-gmail/provider/gmail/message/"
            "18c2f0a1b2c3d4e5/message.eml");
    lt_mail_event_set_raw_size_bytes(ev, 1234);
    lt_mail_event_set_raw_sha256(ev, SHA);
    lt_mail_event_set_rfc822_message_id(ev, "from-event@example.com");
    lt_mail_event_add_attachment(
        ev, "2", "r\xc3\xa9sum\xc3\xa9.pdf", "application/pdf", 5000, SHA,
        "s3://lattice-mail/tenant/t1/x/attachments/2/r%C3%A9sum%C3%A9.pdf");
    lt_mail_event_add_attachment(ev, "3", NULL, "image/png", 7, SHA, "not-a-uri");
    char e[128];
    CHECK_INT(lt_mail_event_derive_id(ev, e, sizeof(e)), LT_OK);
    return ev;
}

static const char MSG[] =
    "From: =?UTF-8?Q?Zo=C3=AB?= <zoe@example.test>\r\n"
    "To: Alice <alice@example.test>, bob@example.test\r\n"
    "Cc: Team: carol@example.test;\r\n"
    "Subject: =?UTF-8?B?R3LDvMOfZQ==?= again\r\n"
    "Date: Tue, 24 Nov 2026 10:15:00 +0100\r\n"
    "Message-ID: <m1@example.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello \xc3\xa9t\xc3\xa9\r\n"
    "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
    "filename=x.pdf\r\n\r\nPDF\r\n--b--\r\n";

static json_object *mailrow(const lt_mail_event_t *ev, const lt_mime_t *m,
                            const lt_mailrow_source_t *src)
{
    lt_buf_t *b = lt_buf_new(1 << 20);
    char e[256] = "";
    lt_err_t err = lt_mailrow_json(ev, m, src, b, e, sizeof(e));
    CHECK_MSG(err == LT_OK, "mailrow: %s", e);
    json_object *o = json_tokener_parse(lt_buf_str(b));
    CHECK(o != NULL);
    lt_buf_destroy(b);
    return o;
}

static void test_mailrow_parsed(void)
{
    lt_mail_event_t *ev = sample_event();
    lt_mime_t *m = NULL;
    char e[256];
    CHECK_INT(lt_mime_parse_mem((const uint8_t *)MSG, sizeof(MSG) - 1, NULL, &m, e, sizeof(e)),
              LT_OK);
    lt_mailrow_source_t src = {3, 99, NULL, NULL};
    json_object *o = mailrow(ev, m, &src);
    CHECK_STR(jstr(o, "event_id"), lt_mail_event_get_event_id(ev));
    CHECK_STR(jstr(o, "provider"), "gmail");
    CHECK_STR(jstr(o, "mailbox"), "INBOX");
    CHECK_STR(jstr(o, "thread_id"), "18c2f0a1b2c3d4e0");
    CHECK_STR(jstr(o, "message_id"), "m1@example.test"); /* the message's, not the event's */
    CHECK_STR(jstr(o, "subject"), "Gr\xc3\xbc\xc3\x9f"
                                  "e again");
    CHECK_STR(jstr(o, "from_display"), "Zo\xc3\xab <zoe@example.test>");
    CHECK_STR(jstr(o, "from_email"), "zoe@example.test");
    json_object *v = NULL;
    CHECK(json_object_object_get_ex(o, "to_addrs", &v) && json_object_array_length(v) == 2);
    CHECK_STR(json_object_get_string(json_object_array_get_idx(v, 0)), "alice@example.test");
    CHECK_STR(json_object_get_string(json_object_array_get_idx(v, 1)), "bob@example.test");
    CHECK(json_object_object_get_ex(o, "cc_addrs", &v) && json_object_array_length(v) == 1);
    CHECK_STR(json_object_get_string(json_object_array_get_idx(v, 0)), "carol@example.test");
    CHECK_INT(jint(o, "date_ms"), 1795511700000LL);
    CHECK_STR(jstr(o, "date_raw"), "Tue, 24 Nov 2026 10:15:00 +0100");
    CHECK_STR(jstr(o, "body_text"), "Hello \xc3\xa9t\xc3\xa9");
    CHECK_STR(jstr(o, "body_source"), "text/plain");
    CHECK_STR(jstr(o, "raw_bucket"), "lattice-mail");
    CHECK_STR(jstr(o, "raw_object_key"), "tenant/t1/account/personal-gmail/provider/gmail/message/"
                                         "18c2f0a1b2c3d4e5/message.eml");
    CHECK_INT(jint(o, "raw_size_bytes"), 1234);
    CHECK_INT(jint(o, "kafka_partition"), 3);
    CHECK_INT(jint(o, "kafka_offset"), 99);
    CHECK_INT(jint(o, "event_time_ms"), 1764063001000LL); /* orders a re-add after a deletion */
    CHECK(jnull(o, "parse_error"));
    /* attachments come from the event's manifest, not from the message */
    CHECK(json_object_object_get_ex(o, "attachments", &v) && json_object_array_length(v) == 2);
    json_object *a0 = json_object_array_get_idx(v, 0), *a1 = json_object_array_get_idx(v, 1);
    CHECK_STR(jstr(a0, "attachment_id"), "2");
    CHECK_STR(jstr(a0, "filename"), "r\xc3\xa9sum\xc3\xa9.pdf");
    CHECK_STR(jstr(a0, "content_type"), "application/pdf");
    CHECK_INT(jint(a0, "size_bytes"), 5000);
    CHECK_STR(jstr(a0, "object_key"), "tenant/t1/x/attachments/2/r%C3%A9sum%C3%A9.pdf");
    CHECK(jnull(a1, "filename"));
    CHECK_STR(jstr(a1, "object_key"), "not-a-uri"); /* kept as given */
    json_object_put(o);
    lt_mime_destroy(m);
    lt_mail_event_destroy(ev);
}

static void test_mailrow_parse_error(void)
{
    lt_mail_event_t *ev = sample_event();
    lt_mailrow_source_t src = {0, 5, "raw message: HTTP 404 NoSuchKey", "not_found"};
    json_object *o = mailrow(ev, NULL, &src);
    CHECK_STR(jstr(o, "parse_error"), "raw message: HTTP 404 NoSuchKey");
    CHECK_STR(jstr(o, "parse_error_class"), "not_found");
    CHECK_STR(jstr(o, "message_id"), "from-event@example.com"); /* the event's */
    CHECK(jnull(o, "subject"));
    CHECK_STR(jstr(o, "body_text"), "");
    json_object *v = NULL;
    CHECK(json_object_object_get_ex(o, "attachments", &v) && json_object_array_length(v) == 2);
    json_object_put(o);
    lt_mail_event_destroy(ev);
}

/* An attachment published as a range of the .eml: the row's entry names the
 * raw object and the range; one stored as an object has no range keys. */
static void test_mailrow_ranges(void)
{
    lt_mail_event_t *ev = sample_event();
    lt_mail_event_add_attachment(
        ev, "4", "q.csv", "text/csv", 11, SHA,
        "s3://lattice-mail/tenant/t1/account/personal-gmail/provider/gmail/message/"
        "18c2f0a1b2c3d4e5/message.eml");
    lt_mail_event_set_attachment_range(ev, 2, 345, 16, "base64");
    lt_mailrow_source_t src = {0, 5, NULL, NULL};
    json_object *o = mailrow(ev, NULL, &src);
    json_object *v = NULL;
    CHECK(json_object_object_get_ex(o, "attachments", &v) && json_object_array_length(v) == 3);
    json_object *a0 = json_object_array_get_idx(v, 0), *a2 = json_object_array_get_idx(v, 2), *x;
    CHECK(!json_object_object_get_ex(a0, "encoded_offset", &x));
    CHECK(!json_object_object_get_ex(a0, "transfer_encoding", &x));
    CHECK_STR(jstr(a2, "object_key"), "tenant/t1/account/personal-gmail/provider/gmail/message/"
                                      "18c2f0a1b2c3d4e5/message.eml");
    CHECK_INT(jint(a2, "encoded_offset"), 345);
    CHECK_INT(jint(a2, "encoded_length"), 16);
    CHECK_STR(jstr(a2, "transfer_encoding"), "base64");
    CHECK_INT(jint(a2, "size_bytes"), 11);
    json_object_put(o);
    lt_mail_event_destroy(ev);
}

int main(void)
{
    lt_mime_global_init();
    test_row_minimal();
    test_row_escaping();
    test_row_rejects();
    test_mailrow_parsed();
    test_mailrow_parse_error();
    test_mailrow_ranges();
    lt_mime_global_shutdown();
    return lt_test_done("test_parser_row");
}
