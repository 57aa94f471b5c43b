/* Text extraction as the parser stores it: the body_text / body_source /
 * body_truncated / subject of the row built from a message (lt_mime with
 * the parser's body cap, then lt_mailrow_json). Table-driven. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_event.h"
#include "lt_mailrow.h"
#include "lt_mime.h"
#include "lt_test.h"

typedef struct {
    const char *name;
    const char *msg;
    size_t max_text; /* 0: default */
    const char *subject;
    const char *body;
    const char *source; /* NULL: none */
    int truncated;
} text_case_t;

static const text_case_t CASES[] = {
    {"plain preferred over html",
     "Subject: alt\n"
     "Content-Type: multipart/alternative; boundary=x\n\n"
     "--x\nContent-Type: text/html\n\n<p>html version</p>\n"
     "--x\nContent-Type: text/plain\n\nplain version\n--x--\n",
     0, "alt", "plain version", "text/plain", 0},
    {"html only: tags, style, script, entities, blocks",
     "Subject: h\nContent-Type: text/html; charset=utf-8\n\n"
     "<html><head><title>T</title><style>p{x:1}</style><script>var a=1;</script></head>"
     "<body><p>One &amp; two</p><div>three&nbsp;&lt;4&gt;</div>caf&#233;</body></html>\n",
     0, "h", NULL, "text/html", 0},
    {"quoted-printable latin1 body, Q-encoded latin1 subject",
     "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?=\nContent-Type: text/plain; charset=iso-8859-1\n"
     "Content-Transfer-Encoding: quoted-printable\n\nK=F6ln =3D gro=DF\n",
     0,
     "Gr\xc3\xbc\xc3\x9f"
     "e",
     "K\xc3\xb6ln = gro\xc3\x9f\n", "text/plain", 0},
    {"undeclared 8-bit windows-1252", "Subject: x\n\nna\xefve \x93quoted\x94\n", 0, "x",
     "na\xc3\xafve \xe2\x80\x9cquoted\xe2\x80\x9d\n", "text/plain", 0},
    {"cap cuts at a character boundary",
     "Subject: cap\nContent-Type: text/plain; charset=utf-8\n\n"
     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\n",
     5, "cap", "\xc3\xa9\xc3\xa9", "text/plain", 1},
    {"no MIME headers", "From: a@example.test\nSubject: old\n\njust some words\nno headers here\n",
     0, "old", "just some words\nno headers here\n", "text/plain", 0},
    {"attachment only: no text",
     "Subject: att\nContent-Type: application/pdf\nContent-Disposition: attachment; "
     "filename=a.pdf\n\nPDF\n",
     0, "att", "", NULL, 0},
};

static const char *jstr(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    return json_object_get_string(v);
}

static lt_mail_event_t *event(void)
{
    lt_mail_event_t *ev = lt_mail_event_new();
    lt_mail_event_set_tenant_id(ev, "t");
    lt_mail_event_set_provider(ev, LT_PROVIDER_IMAP);
    lt_mail_event_set_account_id(ev, "a");
    lt_mail_event_set_provider_message_id(ev, "INBOX;UIDVALIDITY=1;UID=1");
    lt_mail_event_set_received_at(ev, 1);
    lt_mail_event_set_raw_object_uri(ev, "s3://lattice-mail/k/message.eml");
    lt_mail_event_set_raw_size_bytes(ev, 1);
    lt_mail_event_set_raw_sha256(
        ev, "1111111111111111111111111111111111111111111111111111111111111111");
    lt_mail_event_derive_id(ev, NULL, 0);
    return ev;
}

int main(void)
{
    lt_mime_global_init();
    lt_mail_event_t *ev = event();
    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
        const text_case_t *c = &CASES[i];
        lt_mime_limits_t lim;
        lt_mime_limits_default(&lim);
        if (c->max_text)
            lim.max_text = c->max_text;
        lt_mime_t *m = NULL;
        char e[256];
        lt_err_t err =
            lt_mime_parse_mem((const uint8_t *)c->msg, strlen(c->msg), &lim, &m, e, sizeof(e));
        CHECK_MSG(err == LT_OK, "%s: parse: %s", c->name, e);
        if (err)
            continue;
        lt_buf_t *b = lt_buf_new(1 << 20);
        lt_mailrow_source_t src = {0, 0, NULL, NULL};
        CHECK_INT(lt_mailrow_json(ev, m, &src, b, e, sizeof(e)), LT_OK);
        json_object *o = json_tokener_parse(lt_buf_str(b));
        CHECK_MSG(o != NULL, "%s: row JSON", c->name);
        const char *body = jstr(o, "body_text");
        if (c->body)
            CHECK_MSG(body && !strcmp(body, c->body), "%s: body \"%s\"", c->name,
                      body ? body : "(null)");
        const char *subject = jstr(o, "subject");
        CHECK_MSG(c->subject ? subject && !strcmp(subject, c->subject) : subject == NULL,
                  "%s: subject \"%s\"", c->name, subject ? subject : "(null)");
        const char *src_t = jstr(o, "body_source");
        CHECK_MSG(c->source ? src_t && !strcmp(src_t, c->source) : src_t == NULL,
                  "%s: body_source %s", c->name, src_t ? src_t : "(null)");
        json_object *t = NULL;
        json_object_object_get_ex(o, "body_truncated", &t);
        CHECK_MSG(json_object_get_boolean(t) == c->truncated, "%s: body_truncated", c->name);
        if (i == 1) { /* the HTML case, checked by content */
            CHECK_MSG(body && strstr(body, "One & two") && strstr(body, "three") &&
                          strstr(body, "<4>") && strstr(body, "caf\xc3\xa9") &&
                          !strstr(body, "var a") && !strstr(body, "x:1") && !strstr(body, "<p>"),
                      "html body \"%s\"", body ? body : "(null)");
        }
        json_object_put(o);
        lt_buf_destroy(b);
        lt_mime_destroy(m);
    }
    lt_mail_event_destroy(ev);
    lt_mime_global_shutdown();
    return lt_test_done("test_parser_text");
}
