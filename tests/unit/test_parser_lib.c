/* The parser library without servers: what lt_parser_event decides about a
 * record before the registry could answer (an empty value or one without
 * the wire header is dead-lettered without asking it; a well-framed event
 * whose registry is unreachable is retried, never dead-lettered), and the
 * settings lt_parser_new refuses before it connects to anything. The
 * registry is a port on 127.0.0.1 that is bound but not listening: every
 * request to it is refused at once. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_config.h"
#include "lt_event.h"
#include "lt_parser.h"
#include "lt_parser_event.h"
#include "lt_registry.h"
#include "lt_test.h"

#define SHA "0000000000000000000000000000000000000000000000000000000000000000"

/* A TCP port of 127.0.0.1 nobody listens on while *fd stays open. */
static int refused_port(int *fd)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&a, sizeof(a)) ||
        getsockname(*fd, (struct sockaddr *)&a, &alen))
        return -1;
    return ntohs(a.sin_port);
}

static lt_mail_event_t *sample_event(void)
{
    lt_mail_event_t *ev = lt_mail_event_new();
    lt_mail_event_set_tenant_id(ev, "t1");
    lt_mail_event_set_provider(ev, LT_PROVIDER_IMAP);
    lt_mail_event_set_account_id(ev, "acct");
    lt_mail_event_set_mailbox(ev, "INBOX");
    lt_mail_event_set_provider_message_id(ev, "INBOX;UIDVALIDITY=7;UID=3");
    lt_mail_event_set_received_at(ev, 1764063000000LL);
    lt_mail_event_set_event_time(ev, 1764063001000LL);
    lt_mail_event_set_raw_object_uri(ev, "s3://lattice-mail/tenant/t1/elsewhere/message.eml");
    lt_mail_event_set_raw_size_bytes(ev, 10);
    lt_mail_event_set_raw_sha256(ev, SHA);
    char e[128];
    CHECK_INT(lt_mail_event_derive_id(ev, e, sizeof(e)), LT_OK);
    return ev;
}

static void parse(lt_parser_event_ctx_t *c, const void *v, size_t len, lt_buf_t *row,
                  lt_parser_outcome_t *out)
{
    lt_buf_reset(row);
    (void)lt_buf_appendf(row, "left over");
    lt_parser_event(c, v, len, 2, 40, row, out);
}

static void test_event_verdicts(void)
{
    char e[512];
    int fd = -1;
    int port = refused_port(&fd);
    CHECK_MSG(port > 0, "no local port");
    if (port <= 0)
        return;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/apis/ccompat/v7", port);
    lt_registry_t *reg = lt_registry_new(url, NULL, NULL, NULL, e, sizeof(e));
    CHECK_MSG(reg != NULL, "%s", e);
    lt_mail_codec_t *codec = lt_mail_codec_new(e, sizeof(e));
    CHECK_MSG(codec != NULL, "%s", e);
    if (!reg || !codec)
        goto out;
    lt_registry_set_timeouts(reg, 5000, 10000); /* a hang guard: refused at once */

    lt_parser_event_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.registry = reg;
    c.codec = codec;
    c.s3 = NULL; /* none of these records gets as far as S3 */
    c.bucket = "lattice-mail";
    c.max_message_bytes = 1 << 20;
    lt_mime_limits_default(&c.limits);
    c.raw = lt_buf_new(1 << 20);
    c.schema = lt_buf_new(1 << 20);
    lt_buf_t *row = lt_buf_new(1 << 20);
    lt_parser_outcome_t o;

    /* an empty value (a tombstone): dead-lettered, no row */
    parse(&c, NULL, 0, row, &o);
    CHECK_INT(o.verdict, LT_PARSED_DLQ);
    CHECK_INT(o.err_class, LT_ERR_INVALID);
    CHECK_STR(o.dlq_reason ? o.dlq_reason : "", "empty");
    CHECK_INT(lt_buf_len(row), 0);

    /* no wire header (bad magic byte, too short): dead-lettered as
     * undecodable without asking the registry (which would mean RETRY) */
    static const unsigned char bad_magic[] = {1, 0, 0, 0, 7, 2, 'x'};
    parse(&c, bad_magic, sizeof(bad_magic), row, &o);
    CHECK_INT(o.verdict, LT_PARSED_DLQ);
    CHECK_INT(o.err_class, LT_ERR_INVALID);
    CHECK_STR(o.dlq_reason ? o.dlq_reason : "", "undecodable");
    CHECK_MSG(strstr(o.reason, "undecodable mail.raw.v1 record") != NULL, "reason: %s", o.reason);
    CHECK_INT(lt_buf_len(row), 0);
    static const unsigned char short_value[] = {0, 0, 7};
    parse(&c, short_value, sizeof(short_value), row, &o);
    CHECK_INT(o.verdict, LT_PARSED_DLQ);
    CHECK_STR(o.dlq_reason ? o.dlq_reason : "", "undecodable");

    /* a real event (whose raw object lies outside its own folder: a
     * foreign_object once decoded) under schema id 4711, the registry
     * unreachable: the registry's failure, not the record's, so the batch
     * is retried and nothing is dead-lettered or decided about the event */
    lt_mail_event_t *ev = sample_event();
    lt_buf_t *wire = lt_buf_new(1 << 20);
    CHECK_INT(lt_mail_event_encode(codec, ev, 4711, wire, e, sizeof(e)), LT_OK);
    int32_t id = 0;
    CHECK_INT(lt_mail_event_peek_schema_id(lt_buf_data(wire), lt_buf_len(wire), &id, e, sizeof(e)),
              LT_OK);
    CHECK_INT(id, 4711);
    parse(&c, lt_buf_data(wire), lt_buf_len(wire), row, &o);
    CHECK_INT(o.verdict, LT_PARSED_RETRY);
    CHECK_INT(o.err_class, LT_ERR_TEMPORARY);
    CHECK(o.dlq_reason == NULL);
    CHECK_MSG(strstr(o.reason, "schema id 4711") != NULL, "reason: %s", o.reason);
    CHECK_STR(o.tenant, "");
    CHECK_STR(o.event_id, "");
    CHECK_INT(lt_buf_len(row), 0);
    /* the same again: the failure is not cached as an unknown schema */
    parse(&c, lt_buf_data(wire), lt_buf_len(wire), row, &o);
    CHECK_INT(o.verdict, LT_PARSED_RETRY);

    lt_buf_destroy(wire);
    lt_mail_event_destroy(ev);
    lt_buf_destroy(row);
    lt_buf_destroy(c.raw);
    lt_buf_destroy(c.schema);
out:
    lt_mail_codec_destroy(codec);
    lt_registry_destroy(reg);
    if (fd >= 0)
        close(fd);
}

/* lt_parser_new refuses these before it connects to Postgres, Kafka, the
 * registry or S3 (all pointed at the refused port: reaching one would give
 * a connection error instead). */
static void test_new_refuses(void)
{
    char e[1024], url[128];
    int fd = -1;
    int port = refused_port(&fd);
    CHECK_MSG(port > 0, "no local port");
    if (port <= 0)
        return;
    snprintf(url, sizeof(url), "host=127.0.0.1 port=%d dbname=lattice user=lattice", port);
    setenv("LATTICE_PG_DSN", url, 1);
    snprintf(url, sizeof(url), "127.0.0.1:%d", port);
    setenv("LATTICE_KAFKA_BOOTSTRAP_SERVERS", url, 1);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    setenv("LATTICE_S3_ENDPOINT", url, 1);
    setenv("LATTICE_S3_BUCKET", "lattice-mail", 1);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/apis/ccompat/v7", port);
    setenv("LATTICE_SCHEMA_REGISTRY_URL", url, 1);
    unsetenv("LATTICE_S3_ACCESS_KEY_ID_FILE");
    unsetenv("LATTICE_S3_SECRET_ACCESS_KEY_FILE");

    /* no S3 credentials */
    unsetenv("LATTICE_S3_ACCESS_KEY_ID");
    unsetenv("LATTICE_S3_SECRET_ACCESS_KEY");
    setenv("LATTICE_TOPIC_RAW", "raw.v1", 1);
    setenv("LATTICE_PARSER_DLQ_TOPIC", "dlq.v1", 1);
    lt_config_t *cfg = lt_config_load(LT_PROG_PARSER, e, sizeof(e));
    CHECK_MSG(cfg != NULL, "%s", e);
    if (cfg) {
        e[0] = 0;
        lt_parser_t *p = lt_parser_new(cfg, NULL, e, sizeof(e));
        CHECK(p == NULL);
        CHECK_MSG(strstr(e, "LATTICE_S3_ACCESS_KEY_ID and LATTICE_S3_SECRET_ACCESS_KEY") != NULL,
                  "%s", e);
        lt_parser_destroy(p);
        lt_config_destroy(cfg);
    }

    /* dead letters on the topic they came from would be read again */
    setenv("LATTICE_S3_ACCESS_KEY_ID", "AKEXAMPLE", 1);
    setenv("LATTICE_S3_SECRET_ACCESS_KEY", "sekrit", 1);
    setenv("LATTICE_PARSER_DLQ_TOPIC", "raw.v1", 1);
    cfg = lt_config_load(LT_PROG_PARSER, e, sizeof(e));
    CHECK_MSG(cfg != NULL, "%s", e);
    if (cfg) {
        e[0] = 0;
        lt_parser_t *p = lt_parser_new(cfg, NULL, e, sizeof(e));
        CHECK(p == NULL);
        CHECK_MSG(strstr(e, "LATTICE_PARSER_DLQ_TOPIC must differ from LATTICE_TOPIC_RAW") != NULL,
                  "%s", e);
        lt_parser_destroy(p);
        lt_config_destroy(cfg);
    }
    close(fd);
}

int main(void)
{
    lt_mime_global_init();
    test_event_verdicts();
    test_new_refuses();
    lt_mime_global_shutdown();
    return lt_test_done("test_parser_lib");
}
