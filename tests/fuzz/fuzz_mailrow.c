/* libFuzzer target for the parser's row building: the input as a raw
 * message (lt_mime with a small body cap) -> lt_mailrow_json, and the input
 * as raw header/body bytes -> lt_emails_row_json. The row JSON must always
 * parse back (json-c), hold no NUL, and carry the body it was given in
 * valid UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_emails.h"
#include "lt_event.h"
#include "lt_mailrow.h"
#include "lt_mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(const lt_buf_t *b)
{
    if (strlen(lt_buf_str(b)) != lt_buf_len(b))
        abort(); /* a NUL would cut the Postgres parameter */
    json_object *o = json_tokener_parse(lt_buf_str(b));
    if (!o)
        abort();
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, "body_text", &v) || !json_object_is_type(v, json_type_string))
        abort();
    json_object_put(o);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised; /* gmime's global init, once per process */
    if (!initialised) {
        lt_mime_global_init();
        initialised = 1;
    }
    char e[256];
    lt_buf_t *b = lt_buf_new((size_t)64 << 20);

    /* 1. as a message */
    lt_mail_event_t *ev = event();
    lt_mime_limits_t lim;
    lt_mime_limits_default(&lim);
    lim.max_text = 4096;
    lt_mime_t *m = NULL;
    if (lt_mime_parse_mem(data, size, &lim, &m, e, sizeof(e)) == LT_OK) {
        lt_mailrow_source_t src = {0, 0, NULL, NULL};
        if (lt_mailrow_json(ev, m, &src, b, e, sizeof(e)) != LT_OK)
            abort(); /* a parsed message always gives a row */
        check_json(b);
        lt_mime_destroy(m);
    }
    lt_mail_event_destroy(ev);

    /* 2. as raw strings: first half a subject (NUL-terminated copy), all of
     * it the body (may hold NUL and invalid UTF-8) */
    lt_buf_reset(b);
    size_t half = size / 2;
    char *subject = malloc(half + 1);
    memcpy(subject, data, half);
    subject[half] = 0;
    const char *to[] = {subject};
    lt_email_row_t r = {0};
    r.tenant_id = r.account_id = r.provider_message_id = subject;
    r.event_id = "00000000-0000-8000-8000-000000000000";
    r.provider = "gmail";
    r.subject = subject;
    r.to_addrs = to;
    r.n_to = 1;
    r.body_text = (const char *)data;
    r.body_len = size;
    r.raw_bucket = r.raw_object_key = r.raw_sha256 = r.data_classification = subject;
    if (lt_emails_row_json(&r, b, e, sizeof(e)) != LT_OK)
        abort();
    check_json(b);
    free(subject);
    lt_buf_destroy(b);
    return 0;
}
