/* Fuzz lt_mail_event_decode: arbitrary bytes as a Kafka record value of
 * lattice.mail.raw.v1, with the embedded mail.raw.v1 schema and with a later
 * writer schema (decode_harness.h states the invariants). An accepted event
 * need not pass encode's checks; one that does must round-trip. */
#include <stdint.h>

#include "decode_harness.h"
#include "lt_event.h"

static void *codec_new(char *errstr, size_t n)
{
    return lt_mail_codec_new(errstr, n);
}

static void codec_destroy(void *c)
{
    lt_mail_codec_destroy(c);
}

static lt_err_t decode(void *c, const void *data, size_t len, const char *schema, void **ev,
                       char *errstr, size_t n)
{
    lt_mail_event_t *e = NULL;
    lt_err_t err = lt_mail_event_decode(c, data, len, schema, &e, errstr, n);
    *ev = e;
    return err;
}

static lt_err_t encode(void *c, const void *ev, int32_t id, lt_buf_t *out, char *errstr, size_t n)
{
    return lt_mail_event_encode(c, ev, id, out, errstr, n);
}

static lt_err_t to_json(const void *ev, lt_buf_t *out)
{
    return lt_mail_event_to_json(ev, out);
}

static void destroy(void *ev)
{
    lt_mail_event_destroy(ev);
}

static const lt_fuzz_codec_t k_ops = {
    .schema_json = lt_mail_event_schema_json,
    .extra_field =
        "{\"name\":\"spam_score\",\"type\":[\"null\",\"double\",\"string\"],\"default\":null}",
    .max_wire = LT_MAIL_EVENT_MAX_WIRE,
    .must_encode = 0,
    .codec_new = codec_new,
    .codec_destroy = codec_destroy,
    .decode = decode,
    .encode = encode,
    .to_json = to_json,
    .destroy = destroy,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return lt_fuzz_decode(&k_ops, data, size);
}
