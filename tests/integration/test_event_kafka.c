/* mail.raw.v1 through real Kafka: register the schema, produce one encoded
 * event with a traceparent header (idempotent producer), consume it back
 * read_committed from the produced offset, decode it with the schema fetched
 * from the registry by the id in the wire header, compare every field; then
 * read the same record with the real kcat and check what kcat sees. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <openssl/rand.h>

#include "lt_buf.h"
#include "lt_event.h"
#include "lt_registry.h"
#include "lt_test.h"

typedef struct {
    int done;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
} dr_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    dr_t *d = m->_private;
    d->done = 1;
    d->err = m->err;
    d->partition = m->partition;
    d->offset = m->offset;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char h[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = h[b[i] >> 4];
        out[2 * i + 1] = h[b[i] & 15];
    }
    out[2 * n] = 0;
}

static rd_kafka_conf_t *conf_with(const char *bootstrap)
{
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof(e)) != RD_KAFKA_CONF_OK)
        fprintf(stderr, "%s\n", e);
    return conf;
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char e[512];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s=%s: %s\n", k, v, e);
        return -1;
    }
    return 0;
}

/* Run cmd, capture up to cap bytes of its stdout; returns the length or -1. */
static long run_capture(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = 0, got;
    while (n < cap && (got = fread(out + n, 1, cap - n, p)) > 0)
        n += got;
    int rc = pclose(p);
    if (rc != 0) {
        fprintf(stderr, "`%s` exited with %d\n", cmd, rc);
        return -1;
    }
    return (long)n;
}

int main(void)
{
    const char *bootstrap = lt_test_env("LATTICE_KAFKA_BOOTSTRAP_SERVERS");
    const char *url = lt_test_env("LATTICE_SCHEMA_REGISTRY_URL");
    char err[1024] = "";

    lt_registry_t *reg = lt_registry_new(url, NULL, NULL, NULL, err, sizeof(err));
    lt_mail_codec_t *codec = lt_mail_codec_new(err, sizeof(err));
    CHECK(reg && codec);
    if (!reg || !codec)
        return lt_test_done("test_event_kafka");
    int32_t id = -1;
    lt_err_t e =
        lt_registry_register(reg, LT_MAIL_RAW_SUBJECT, lt_mail_event_schema_json(), &id, err,
                             sizeof(err));
    CHECK_MSG(e == LT_OK, "register: %s", err);

    /* an event unique to this run */
    char pmid[64], tp[64], trace[33], span[17];
    unsigned char rnd[24];
    RAND_bytes(rnd, sizeof(rnd));
    hex(rnd, 16, trace);
    hex(rnd + 16, 8, span);
    snprintf(tp, sizeof(tp), "00-%s-%s-01", trace, span);
    snprintf(pmid, sizeof(pmid), "%ld:%d", (long)time(NULL), (int)getpid());
    lt_mail_event_t *ev = lt_mail_event_new();
    lt_mail_event_set_tenant_id(ev, "test-tenant");
    lt_mail_event_set_provider(ev, LT_PROVIDER_IMAP);
    lt_mail_event_set_account_id(ev, "test-event-kafka");
    lt_mail_event_set_mailbox(ev, "INBOX/\xc3\x9c" "bersicht");
    lt_mail_event_set_provider_message_id(ev, pmid);
    lt_mail_event_set_event_time(ev, (int64_t)time(NULL) * 1000);
    lt_mail_event_set_received_at(ev, 1700000000000LL);
    lt_mail_event_set_raw_object_uri(ev, "s3://lattice-mail/test/message.eml");
    lt_mail_event_set_raw_size_bytes(ev, 4242);
    lt_mail_event_set_raw_sha256(
        ev, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    lt_mail_event_set_rfc822_message_id(ev, "abc@example.test");
    lt_mail_event_add_attachment(ev, "2", "caf\xc3\xa9.pdf", "application/pdf", 10,
                                 "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
                                 "s3://lattice-mail/test/2/cafe.pdf");
    CHECK_INT(lt_mail_event_derive_id(ev, err, sizeof(err)), LT_OK);
    lt_buf_t *wire = lt_buf_new(1 << 20);
    CHECK_INT(lt_mail_event_encode(codec, ev, id, wire, err, sizeof(err)), LT_OK);

    /* produce: idempotent, acks=all, keyed by account_id */
    rd_kafka_conf_t *pconf = conf_with(bootstrap);
    CHECK(set(pconf, "enable.idempotence", "true") == 0);
    CHECK(set(pconf, "acks", "all") == 0);
    rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
    CHECK_MSG(prod != NULL, "producer: %s", err);
    if (!prod)
        return lt_test_done("test_event_kafka");
    dr_t dr = {0, RD_KAFKA_RESP_ERR_NO_ERROR, -1, -1};
    const char *key = lt_mail_event_get_account_id(ev);
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        prod, RD_KAFKA_V_TOPIC(LT_MAIL_RAW_TOPIC),
        RD_KAFKA_V_KEY((void *)key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)lt_buf_data(wire), lt_buf_len(wire)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADER("traceparent", tp, -1),
        RD_KAFKA_V_OPAQUE(&dr), RD_KAFKA_V_END);
    CHECK_MSG(kerr == RD_KAFKA_RESP_ERR_NO_ERROR, "producev: %s", rd_kafka_err2str(kerr));
    rd_kafka_flush(prod, 30000);
    CHECK(dr.done);
    CHECK_MSG(dr.err == RD_KAFKA_RESP_ERR_NO_ERROR, "delivery: %s", rd_kafka_err2str(dr.err));
    CHECK(dr.offset >= 0);
    printf("produced %zu bytes to %s [%d] at offset %lld\n", lt_buf_len(wire), LT_MAIL_RAW_TOPIC,
           (int)dr.partition, (long long)dr.offset);
    rd_kafka_destroy(prod);

    /* consume it back: read_committed, assigned at the produced offset */
    rd_kafka_conf_t *cconf = conf_with(bootstrap);
    char group[64];
    snprintf(group, sizeof(group), "lattice-test-event-kafka-%d", (int)getpid());
    CHECK(set(cconf, "group.id", group) == 0);
    CHECK(set(cconf, "isolation.level", "read_committed") == 0);
    CHECK(set(cconf, "enable.auto.commit", "false") == 0);
    rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
    CHECK_MSG(cons != NULL, "consumer: %s", err);
    if (!cons)
        return lt_test_done("test_event_kafka");
    rd_kafka_topic_partition_list_t *tpl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tpl, LT_MAIL_RAW_TOPIC, dr.partition)->offset = dr.offset;
    CHECK_INT(rd_kafka_assign(cons, tpl), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(tpl);
    rd_kafka_message_t *m = NULL;
    for (int i = 0; i < 60 && !m; i++) {
        m = rd_kafka_consumer_poll(cons, 500);
        if (m && m->err) {
            fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            m = NULL;
        }
    }
    CHECK_MSG(m != NULL, "no message consumed from %s [%d] @%lld", LT_MAIL_RAW_TOPIC,
              (int)dr.partition, (long long)dr.offset);
    if (m) {
        CHECK_INT(m->offset, dr.offset);
        CHECK_INT(m->len, lt_buf_len(wire));
        rd_kafka_headers_t *hdrs = NULL;
        const void *hv = NULL;
        size_t hlen = 0;
        CHECK(rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR);
        CHECK(hdrs && rd_kafka_header_get_last(hdrs, "traceparent", &hv, &hlen) ==
                          RD_KAFKA_RESP_ERR_NO_ERROR);
        CHECK(hv && hlen == strlen(tp) && !memcmp(hv, tp, hlen));

        /* decode with the schema the registry has for the header's id */
        int32_t wid = -1;
        CHECK_INT(lt_mail_event_peek_schema_id(m->payload, m->len, &wid, err, sizeof(err)),
                  LT_OK);
        CHECK_INT(wid, id);
        lt_buf_t *schema = lt_buf_new(1 << 20);
        e = lt_registry_get_schema(reg, wid, schema, err, sizeof(err));
        CHECK_MSG(e == LT_OK, "get schema %d: %s", (int)wid, err);
        lt_mail_event_t *back = NULL;
        e = lt_mail_event_decode(codec, m->payload, m->len, lt_buf_str(schema), &back, err,
                                 sizeof(err));
        CHECK_MSG(e == LT_OK, "decode: %s", err);
        if (back) {
            lt_buf_t *j1 = lt_buf_new(1 << 20), *j2 = lt_buf_new(1 << 20);
            lt_mail_event_to_json(ev, j1);
            lt_mail_event_to_json(back, j2);
            CHECK_STR(lt_buf_str(j1), lt_buf_str(j2));
            CHECK_STR(lt_mail_event_get_provider_message_id(back), pmid);
            CHECK_INT(lt_mail_event_attachment_count(back), 1);
            lt_buf_destroy(j1);
            lt_buf_destroy(j2);
            lt_mail_event_destroy(back);
        }
        lt_buf_destroy(schema);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);

    /* the real kcat */
    char out[1 << 16], cmd[2048];
    long n = run_capture("kcat -V 2>&1", out, sizeof(out) - 1);
    CHECK_MSG(n > 0, "kcat is not installed");
    out[n > 0 ? n : 0] = 0;
    int kcat_avro = strstr(out, "Avro") || strstr(out, "avro");
    printf("kcat -V: %s", out);
    printf("kcat has Avro support: %s\n", kcat_avro ? "yes" : "no");
    if (kcat_avro) {
        /* kcat decodes via the registry: the JSON must carry our ids */
        snprintf(cmd, sizeof(cmd),
                 "kcat -C -b '%s' -t %s -p %d -o %lld -c 1 -e -q -s value=avro -r '%s' -f '%%s'",
                 bootstrap, LT_MAIL_RAW_TOPIC, (int)dr.partition, (long long)dr.offset, url);
        n = run_capture(cmd, out, sizeof(out) - 1);
        CHECK(n > 0);
        out[n > 0 ? n : 0] = 0;
        CHECK_MSG(strstr(out, lt_mail_event_get_event_id(ev)) != NULL, "kcat avro: %s", out);
        CHECK_MSG(strstr(out, pmid) != NULL, "kcat avro: %s", out);
    }
    /* headers, value size, offset as kcat prints them */
    snprintf(cmd, sizeof(cmd),
             "kcat -C -b '%s' -t %s -p %d -o %lld -c 1 -e -q -f '%%h\\n%%S\\n%%o\\n%%k\\n'",
             bootstrap, LT_MAIL_RAW_TOPIC, (int)dr.partition, (long long)dr.offset);
    n = run_capture(cmd, out, sizeof(out) - 1);
    CHECK(n > 0);
    out[n > 0 ? n : 0] = 0;
    char want[512];
    snprintf(want, sizeof(want), "traceparent=%s\n%zu\n%lld\n%s\n", tp, lt_buf_len(wire),
             (long long)dr.offset, key);
    CHECK_STR(out, want);
    /* the raw value bytes as kcat prints them: identical to what we produced */
    snprintf(cmd, sizeof(cmd), "kcat -C -b '%s' -t %s -p %d -o %lld -c 1 -e -q -f '%%s'",
             bootstrap, LT_MAIL_RAW_TOPIC, (int)dr.partition, (long long)dr.offset);
    n = run_capture(cmd, out, sizeof(out));
    CHECK_INT(n, lt_buf_len(wire));
    if (n > 5) {
        CHECK_INT((unsigned char)out[0], 0); /* magic byte */
        CHECK(!memcmp(out, lt_buf_data(wire), (size_t)n));
        lt_mail_event_t *back = NULL;
        CHECK_INT(lt_mail_event_decode(codec, out, (size_t)n, NULL, &back, err, sizeof(err)),
                  LT_OK);
        lt_mail_event_destroy(back);
    }

    lt_buf_destroy(wire);
    lt_mail_event_destroy(ev);
    lt_mail_codec_destroy(codec);
    lt_registry_destroy(reg);
    return lt_test_done("test_event_kafka");
}
