/* librdkafka configuration built from the settings: defaults, pass-through
 * of LATTICE_KAFKA_*, enforced safety properties, program-owned ids;
 * headers; error classification. No broker: nothing listens on the
 * bootstrap address used here (127.0.0.1:1). */
#include <stdlib.h>
#include <string.h>

#include "lt_config.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_test.h"

static const char *k_vars[] = {
    "LATTICE_KAFKA_LINGER_MS",
    "LATTICE_KAFKA_ENABLE_IDEMPOTENCE",
    "LATTICE_KAFKA_ACKS",
    "LATTICE_KAFKA_CLIENT_ID",
    "LATTICE_KAFKA_AUTO_OFFSET_RESET",
    "LATTICE_KAFKA_ENABLE_AUTO_COMMIT",
    "LATTICE_KAFKA_GROUP_ID",
    "LATTICE_KAFKA_TRANSACTIONAL_ID",
    "LATTICE_KAFKA_NOT_A_PROPERTY",
    "LATTICE_KAFKA_ISOLATION_LEVEL",
    "LATTICE_KAFKA_MESSAGE_TIMEOUT_MS",
    "LATTICE_KAFKA_PARTITION_ASSIGNMENT_STRATEGY",
    "LATTICE_KAFKA_SESSION_TIMEOUT_MS",
    "LATTICE_KAFKA_TRANSACTION_TIMEOUT_MS",
    "LATTICE_KAFKA_GROUP_INSTANCE_ID",
    NULL,
};

static void reset_env(void)
{
    for (const char **v = k_vars; *v; v++)
        unsetenv(*v);
    setenv("LATTICE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1", 1);
}

static lt_config_t *load(void)
{
    char err[1024];
    lt_config_t *cfg = lt_config_load(LT_PROG_SCHEDULER, err, sizeof(err));
    CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        exit(1);
    return cfg;
}

/* Property value as librdkafka reports it, in a static buffer. */
static const char *get(rd_kafka_conf_t *conf, const char *prop)
{
    static char v[512];
    size_t n = sizeof(v);
    if (rd_kafka_conf_get(conf, prop, v, &n) != RD_KAFKA_CONF_OK)
        return "(unset)";
    return v;
}

/* Building a producer conf must fail with `reason` in the message. */
static void producer_fails(const char *var, const char *value, const char *reason)
{
    char err[1024] = "";
    reset_env();
    setenv(var, value, 1);
    lt_config_t *cfg = load();
    rd_kafka_conf_t *conf = lt_kafka_producer_conf(cfg, NULL, err, sizeof(err));
    CHECK_MSG(conf == NULL, "%s=%s accepted", var, value);
    CHECK_MSG(strstr(err, reason) != NULL, "%s=%s: \"%s\" lacks \"%s\"", var, value, err, reason);
    if (conf)
        rd_kafka_conf_destroy(conf);
    lt_config_destroy(cfg);
}

static void consumer_fails(const char *var, const char *value, const char *reason)
{
    char err[1024] = "";
    reset_env();
    setenv(var, value, 1);
    lt_config_t *cfg = load();
    rd_kafka_conf_t *conf = lt_kafka_consumer_conf(cfg, "g", err, sizeof(err));
    CHECK_MSG(conf == NULL, "%s=%s accepted", var, value);
    CHECK_MSG(strstr(err, reason) != NULL, "%s=%s: \"%s\" lacks \"%s\"", var, value, err, reason);
    if (conf)
        rd_kafka_conf_destroy(conf);
    lt_config_destroy(cfg);
}

static void test_producer_conf(void)
{
    char err[1024];
    reset_env();
    lt_config_t *cfg = load();
    rd_kafka_conf_t *conf = lt_kafka_producer_conf(cfg, NULL, err, sizeof(err));
    CHECK_MSG(conf != NULL, "%s", err);
    if (conf) {
        CHECK_STR(get(conf, "bootstrap.servers"), "127.0.0.1:1");
        CHECK_STR(get(conf, "enable.idempotence"), "true");
        CHECK_STR(get(conf, "acks"), "-1");
        CHECK_STR(get(conf, "linger.ms"), "20");
        CHECK_STR(get(conf, "compression.type"), "lz4");
        CHECK_STR(get(conf, "client.id"), "lattice");
        CHECK_STR(get(conf, "transactional.id"), "(unset)");
        rd_kafka_conf_destroy(conf);
    }
    conf = lt_kafka_producer_conf(cfg, "lattice-worker-0", err, sizeof(err));
    CHECK_MSG(conf != NULL, "%s", err);
    if (conf) {
        CHECK_STR(get(conf, "transactional.id"), "lattice-worker-0");
        rd_kafka_conf_destroy(conf);
    }
    CHECK(lt_kafka_producer_conf(cfg, "", err, sizeof(err)) == NULL);
    lt_config_destroy(cfg);

    /* Pass-through overrides defaults; repeating an enforced value is fine. */
    reset_env();
    setenv("LATTICE_KAFKA_LINGER_MS", "5", 1);
    setenv("LATTICE_KAFKA_CLIENT_ID", "lattice-scheduler-eu", 1);
    setenv("LATTICE_KAFKA_ENABLE_IDEMPOTENCE", "true", 1);
    setenv("LATTICE_KAFKA_ACKS", "all", 1);
    cfg = load();
    conf = lt_kafka_producer_conf(cfg, NULL, err, sizeof(err));
    CHECK_MSG(conf != NULL, "%s", err);
    if (conf) {
        CHECK_STR(get(conf, "linger.ms"), "5");
        CHECK_STR(get(conf, "client.id"), "lattice-scheduler-eu");
        CHECK_STR(get(conf, "enable.idempotence"), "true");
        rd_kafka_conf_destroy(conf);
    }
    lt_config_destroy(cfg);

    /* Safety properties cannot be turned off; ids are the program's. */
    producer_fails("LATTICE_KAFKA_ENABLE_IDEMPOTENCE", "false",
                   "LATTICE_KAFKA_ENABLE_IDEMPOTENCE=false: enable.idempotence must be true");
    producer_fails("LATTICE_KAFKA_ACKS", "1", "LATTICE_KAFKA_ACKS=1: acks must be all");
    producer_fails("LATTICE_KAFKA_TRANSACTIONAL_ID", "x",
                   "LATTICE_KAFKA_TRANSACTIONAL_ID: transactional.id is set by the program");
    producer_fails("LATTICE_KAFKA_NOT_A_PROPERTY", "1",
                   "LATTICE_KAFKA_NOT_A_PROPERTY: No such configuration property");
    producer_fails("LATTICE_KAFKA_LINGER_MS", "soon", "LATTICE_KAFKA_LINGER_MS: ");
}

static void test_consumer_conf(void)
{
    char err[1024];
    reset_env();
    lt_config_t *cfg = load();
    rd_kafka_conf_t *conf = lt_kafka_consumer_conf(cfg, "lattice-workers", err, sizeof(err));
    CHECK_MSG(conf != NULL, "%s", err);
    if (conf) {
        CHECK_STR(get(conf, "group.id"), "lattice-workers");
        CHECK_STR(get(conf, "enable.auto.commit"), "false");
        CHECK_STR(get(conf, "enable.auto.offset.store"), "false");
        CHECK_STR(get(conf, "isolation.level"), "read_committed");
        CHECK_STR(get(conf, "partition.assignment.strategy"), "cooperative-sticky");
        CHECK_STR(get(conf, "auto.offset.reset"), "smallest"); /* librdkafka's alias */
        rd_kafka_conf_destroy(conf);
    }
    CHECK(lt_kafka_consumer_conf(cfg, NULL, err, sizeof(err)) == NULL);
    CHECK_MSG(strstr(err, "needs a group.id") != NULL, "%s", err);
    lt_config_destroy(cfg);

    reset_env();
    setenv("LATTICE_KAFKA_AUTO_OFFSET_RESET", "latest", 1);
    setenv("LATTICE_KAFKA_SESSION_TIMEOUT_MS", "12000", 1);
    setenv("LATTICE_KAFKA_ISOLATION_LEVEL", "read_committed", 1);
    cfg = load();
    conf = lt_kafka_consumer_conf(cfg, "g", err, sizeof(err));
    CHECK_MSG(conf != NULL, "%s", err);
    if (conf) {
        CHECK_STR(get(conf, "auto.offset.reset"), "largest");
        CHECK_STR(get(conf, "session.timeout.ms"), "12000");
        rd_kafka_conf_destroy(conf);
    }
    lt_config_destroy(cfg);

    /* one setting for all of a program's clients: each client gets only the
     * properties it reads (no CONFWARN from librdkafka at start) */
    reset_env();
    setenv("LATTICE_KAFKA_SESSION_TIMEOUT_MS", "12000", 1);
    setenv("LATTICE_KAFKA_GROUP_INSTANCE_ID", "worker-0", 1);
    setenv("LATTICE_KAFKA_TRANSACTION_TIMEOUT_MS", "10000", 1);
    setenv("LATTICE_KAFKA_LINGER_MS", "7", 1);
    cfg = load();
    conf = lt_kafka_consumer_conf(cfg, "g", err, sizeof(err));
    CHECK_MSG(conf != NULL, "%s", err);
    if (conf) {
        CHECK_STR(get(conf, "session.timeout.ms"), "12000");
        CHECK_STR(get(conf, "group.instance.id"), "worker-0");
        CHECK_STR(get(conf, "transaction.timeout.ms"), "60000"); /* librdkafka's default */
        CHECK_STR(get(conf, "linger.ms"), "5");                  /* librdkafka's default */
        CHECK_STR(get(conf, "enable.idempotence"), "false");
        rd_kafka_conf_destroy(conf);
    }
    conf = lt_kafka_producer_conf(cfg, "t", err, sizeof(err));
    CHECK_MSG(conf != NULL, "%s", err);
    if (conf) {
        CHECK_STR(get(conf, "transaction.timeout.ms"), "10000");
        CHECK_STR(get(conf, "linger.ms"), "7");
        CHECK_STR(get(conf, "session.timeout.ms"), "45000"); /* librdkafka's default */
        CHECK_STR(get(conf, "group.instance.id"), "(unset)");
        rd_kafka_conf_destroy(conf);
    }
    lt_config_destroy(cfg);

    consumer_fails("LATTICE_KAFKA_ENABLE_AUTO_COMMIT", "true",
                   "LATTICE_KAFKA_ENABLE_AUTO_COMMIT=true: enable.auto.commit must be false");
    consumer_fails("LATTICE_KAFKA_ISOLATION_LEVEL", "read_uncommitted",
                   "isolation.level must be read_committed");
    consumer_fails("LATTICE_KAFKA_PARTITION_ASSIGNMENT_STRATEGY", "range",
                   "partition.assignment.strategy must be cooperative-sticky");
    consumer_fails("LATTICE_KAFKA_GROUP_ID", "other", "group.id is set by the program");
}

static void test_headers(void)
{
    char v[128];
    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    rd_kafka_headers_t *h = lt_kafka_headers_with_traceparent(tp);
    CHECK_INT(rd_kafka_header_cnt(h), 1);
    CHECK_INT(lt_kafka_header_str(h, LT_KAFKA_HEADER_TRACEPARENT, v, sizeof(v)), LT_OK);
    CHECK_STR(v, tp);
    CHECK_INT(lt_kafka_header_str(h, "missing", v, sizeof(v)), LT_ERR_NOT_FOUND);
    CHECK_INT(lt_kafka_header_str(h, LT_KAFKA_HEADER_TRACEPARENT, v, 10), LT_ERR_TOO_BIG);
    /* The last value of a repeated header wins. */
    rd_kafka_header_add(h, "traceparent", -1, "second", 6);
    CHECK_INT(lt_kafka_header_str(h, "traceparent", v, sizeof(v)), LT_OK);
    CHECK_STR(v, "second");
    rd_kafka_header_add(h, "bin", -1, "a\0b", 3);
    CHECK_INT(lt_kafka_header_str(h, "bin", v, sizeof(v)), LT_ERR_INVALID);
    rd_kafka_header_add(h, "nullv", -1, NULL, 0);
    CHECK_INT(lt_kafka_header_str(h, "nullv", v, sizeof(v)), LT_ERR_INVALID);
    rd_kafka_headers_destroy(h);
    h = lt_kafka_headers_with_traceparent(NULL);
    CHECK_INT(rd_kafka_header_cnt(h), 0);
    rd_kafka_headers_destroy(h);
    CHECK_INT(lt_kafka_header_str(NULL, "x", v, sizeof(v)), LT_ERR_NOT_FOUND);
}

static void test_errors_and_clients(void)
{
    char err[1024];
    lt_kafka_action_t a = LT_KAFKA_FAIL;
    CHECK_INT(lt_kafka_error_classify(NULL, &a, err, sizeof(err)), LT_OK);
    CHECK_INT(a, LT_KAFKA_OK);
    rd_kafka_error_t *e = rd_kafka_error_new(RD_KAFKA_RESP_ERR__STATE, "no transaction");
    CHECK_INT(lt_kafka_error_classify(e, &a, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_INT(a, LT_KAFKA_FAIL);
    CHECK_MSG(strstr(err, "_STATE: no transaction") != NULL, "%s", err);
    rd_kafka_error_destroy(e);

    CHECK_INT(lt_kafka_resp_err_class(RD_KAFKA_RESP_ERR_NO_ERROR), LT_OK);
    CHECK_INT(lt_kafka_resp_err_class(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), LT_ERR_TEMPORARY);
    CHECK_INT(lt_kafka_resp_err_class(RD_KAFKA_RESP_ERR__QUEUE_FULL), LT_ERR_TEMPORARY);
    CHECK_INT(lt_kafka_resp_err_class(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), LT_ERR_TOO_BIG);
    CHECK_INT(lt_kafka_resp_err_class(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED), LT_ERR_FINAL);
    CHECK_INT(lt_kafka_resp_err_class(RD_KAFKA_RESP_ERR__FENCED), LT_ERR_FINAL);
    CHECK_INT(lt_kafka_resp_err_class(RD_KAFKA_RESP_ERR__STATE), LT_ERR_INVALID);

    /* A transactional producer with nobody listening: init_transactions
     * times out, which librdkafka marks retriable. */
    reset_env();
    lt_config_t *cfg = load();
    rd_kafka_conf_t *conf = lt_kafka_producer_conf(cfg, "lattice-test-tx", err, sizeof(err));
    CHECK_MSG(conf != NULL, "%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    CHECK_MSG(rk != NULL, "%s", err);
    if (rk) {
        e = rd_kafka_init_transactions(rk, 200);
        CHECK(e != NULL);
        CHECK_INT(lt_kafka_error_classify(e, &a, err, sizeof(err)), LT_ERR_TEMPORARY);
        CHECK_MSG(a == LT_KAFKA_RETRY, "%d: %s", a, err);
        rd_kafka_error_destroy(e);
        rd_kafka_destroy(rk);
    }
    lt_config_destroy(cfg);

    /* An idempotent producer: a message that cannot be delivered comes back
     * as a failed delivery report, counted, and classified temporary. */
    reset_env();
    setenv("LATTICE_KAFKA_MESSAGE_TIMEOUT_MS", "300", 1);
    cfg = load();
    int user = 42;
    conf = lt_kafka_producer_conf(cfg, NULL, err, sizeof(err));
    rk = lt_kafka_new(RD_KAFKA_PRODUCER, conf, &user, NULL, err, sizeof(err));
    CHECK_MSG(rk != NULL, "%s", err);
    if (rk) {
        CHECK(lt_kafka_user_opaque(rk) == &user);
        lt_kafka_pos_t pos = {-5, -5};
        lt_err_t r = lt_kafka_produce_sync(
            rk,
            &(lt_kafka_msg_t){.topic = "lattice.test",
                              .partition = RD_KAFKA_PARTITION_UA,
                              .key = "k",
                              .key_len = 1,
                              .value = "v",
                              .value_len = 1,
                              .headers = lt_kafka_headers_with_traceparent(NULL)},
            5000, &pos, err, sizeof(err));
        CHECK_INT(r, LT_ERR_TEMPORARY);
        CHECK_MSG(strstr(err, "delivery to lattice.test failed") != NULL, "%s", err);
        CHECK_INT(pos.partition, -5); /* untouched on failure */
        uint64_t ok = 9, failed = 0;
        rd_kafka_resp_err_t last = 0;
        lt_kafka_delivery_stats(rk, &ok, &failed, &last);
        CHECK_INT(ok, 0);
        CHECK_INT(failed, 1);
        CHECK_INT(last, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
        lt_kafka_destroy(rk);
    }
    /* A consumer handle can be made and closed without a broker. */
    rk = lt_kafka_consumer_new(cfg, "lattice-test-group", err, sizeof(err));
    CHECK_MSG(rk != NULL, "%s", err);
    CHECK(rk && lt_kafka_user_opaque(rk) == NULL);
    lt_kafka_destroy(rk);
    lt_kafka_destroy(NULL);
    lt_config_destroy(cfg);
}

int main(void)
{
    char err[256];
    /* librdkafka's connection-refused lines are expected here. */
    lt_log_setup("test_kafka_conf", "error", "text", err, sizeof(err));
    test_producer_conf();
    test_consumer_conf();
    test_headers();
    test_errors_and_clients();
    return lt_test_done("test_kafka_conf");
}
