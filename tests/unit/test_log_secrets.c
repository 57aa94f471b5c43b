/* No log line carries a secret: every secret setting gets a recognisable
 * value, then the code paths whose errors are logged run (config errors,
 * --help/.env.example, Postgres, S3, schema registry, Kafka client with
 * SASL, a failing connection each) at debug level, with a log context, and
 * the captured stderr (JSON and text) must not contain any of the values.
 * Connections go to 127.0.0.1:1 (refused at once): no server is needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "lt_buf.h"
#include "lt_config.h"
#include "lt_db.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_registry.h"
#include "lt_s3.h"
#include "lt_test.h"

static const char *const k_secrets[] = {
    "pgPASSW0RD-8c1f",  "s3SECRET-77aa", "saslSECRET-42bb", "registryPW-19cc",
};
#define NSECRETS (sizeof(k_secrets) / sizeof(k_secrets[0]))

static void run_paths(const lt_log_ctx_t *ctx)
{
    char err[2048];
    /* a config error next to secrets */
    setenv("LATTICE_S3_TIMEOUT_S", "oops", 1);
    lt_config_t *bad = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK(bad == NULL);
    lt_error(ctx, "config: %s", err);
    lt_config_destroy(bad);
    unsetenv("LATTICE_S3_TIMEOUT_S");

    lt_config_t *cfg = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return;
    /* --help and .env.example go to the log stream here */
    lt_config_print_help(stderr, LT_PROG_WORKER);
    lt_config_print_env_example(stderr);

    /* Postgres: refused */
    lt_db_t *db = lt_db_connect("host=127.0.0.1 port=1 dbname=x user=lattice connect_timeout=2",
                                lt_config_settings(cfg)->pg.password, err, sizeof(err));
    CHECK(db == NULL);
    lt_error(ctx, "postgres: %s", err);
    lt_db_destroy(db);

    /* S3: refused */
    lt_s3_t *s3 = lt_s3_new(
        &(lt_s3_config_t){.endpoint = "http://127.0.0.1:1",
                          .region = "us-east-1",
                          .bucket = "lattice-mail",
                          .access_key_id = "AKIDEXAMPLE",
                          .secret_access_key = lt_config_settings(cfg)->s3.secret_access_key,
                          .addressing = LT_S3_PATH_STYLE,
                          .timeout_s = 5},
        err, sizeof(err));
    CHECK_MSG(s3 != NULL, "%s", err);
    if (s3) {
        char sha[LT_S3_SHA256_HEX];
        CHECK(lt_s3_put(s3, &(lt_s3_object_t){.key = "k", .content_type = "text/plain"}, "x", 1,
                        sha, err, sizeof(err)) != LT_OK);
        lt_error(ctx, "s3: %s", err);
        lt_s3_destroy(s3);
    }

    /* schema registry with basic auth: refused */
    lt_registry_t *reg =
        lt_registry_new("http://127.0.0.1:1", "sr-user", lt_config_settings(cfg)->registry.password,
                        NULL, err, sizeof(err));
    if (reg) {
        int32_t id;
        CHECK(lt_registry_register(reg, "s-value", "\"string\"", &id, err, sizeof(err)) != LT_OK);
        lt_registry_destroy(reg);
    }
    lt_error(ctx, "registry: %s", err);

    /* Kafka client with SASL/PLAIN: the configuration and its errors */
    rd_kafka_t *rk = lt_kafka_producer_new(cfg, NULL, err, sizeof(err));
    if (!rk) {
        lt_error(ctx, "kafka: %s", err);
    } else {
        rd_kafka_poll(rk, 300);
        lt_kafka_destroy(rk);
    }
    lt_config_destroy(cfg);
}

int main(void)
{
    char path[] = "/tmp/lt_test_log_secretsXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);

    setenv("LATTICE_PG_PASSWORD", k_secrets[0], 1);
    setenv("LATTICE_S3_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("LATTICE_S3_SECRET_ACCESS_KEY", k_secrets[1], 1);
    setenv("LATTICE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1", 1);
    setenv("LATTICE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT", 1);
    setenv("LATTICE_KAFKA_SASL_MECHANISMS", "PLAIN", 1);
    setenv("LATTICE_KAFKA_SASL_USERNAME", "kafka-user", 1);
    setenv("LATTICE_KAFKA_SASL_PASSWORD", k_secrets[2], 1);
    setenv("LATTICE_KAFKA_DEBUG", "security,conf", 1); /* librdkafka's own debug lines */
    setenv("LATTICE_SCHEMA_REGISTRY_PASSWORD", k_secrets[3], 1);

    lt_log_ctx_t ctx = {"tenant-1", "acct-1", "INBOX", "cmd-1", "0af7651916cd43dd8448eb211c80319c"};
    char err[256];
    CHECK_INT(lt_log_setup("test", "debug", "json", err, sizeof(err)), LT_OK);
    run_paths(&ctx);
    CHECK_INT(lt_log_setup("test", "debug", "text", err, sizeof(err)), LT_OK);
    run_paths(&ctx);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);

    FILE *f = fopen(path, "rb");
    lt_buf_t *b = lt_buf_new((size_t)64 << 20);
    char chunk[65536];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        lt_buf_append(b, chunk, n);
    if (f)
        fclose(f);
    if (getenv("LT_TEST_KEEP_LOG"))
        fprintf(stderr, "log kept in %s\n", path);
    else
        unlink(path);
    const char *log = lt_buf_str(b);
    /* the capture worked and the paths really logged */
    CHECK_MSG(strstr(log, "\"msg\":\"postgres: ") != NULL, "no postgres line captured");
    CHECK(strstr(log, "\"msg\":\"s3: ") != NULL);
    CHECK(strstr(log, "\"command_id\":\"cmd-1\"") != NULL);
    CHECK(strstr(log, " command_id=cmd-1") != NULL);
    CHECK(strstr(log, "LATTICE_PG_PASSWORD") != NULL); /* help lists the setting */
    for (size_t i = 0; i < NSECRETS; i++) {
        const char *hit = strstr(log, k_secrets[i]);
        CHECK_MSG(hit == NULL, "secret %zu in the log: ...%.120s", i,
                  hit ? (hit > log + 60 ? hit - 60 : log) : "");
    }
    fprintf(stderr, "captured %zu bytes of log\n", lt_buf_len(b));
    lt_buf_destroy(b);
    return lt_test_done("test_log_secrets");
}
