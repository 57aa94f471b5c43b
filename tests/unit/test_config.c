/* Settings table: defaults, validation with clear errors, secrets from
 * files, Kafka pass-through, and .env.example kept in step. */
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_config.h"
#include "lt_settings.h"
#include "lt_test.h"

static void clear_env(void)
{
    unsetenv("LATTICE_LOG_LEVEL");
    unsetenv("LATTICE_S3_TIMEOUT_S");
    unsetenv("LATTICE_S3_PATH_STYLE");
    unsetenv("LATTICE_S3_SECRET_ACCESS_KEY");
    unsetenv("LATTICE_S3_SECRET_ACCESS_KEY_FILE");
    setenv("LATTICE_S3_ACCESS_KEY_ID", "AKEXAMPLE", 1);
    setenv("LATTICE_S3_SECRET_ACCESS_KEY", "sekrit", 1);
}

typedef struct {
    lt_buf_t *seen;
} kctx_t;

static lt_err_t collect(const char *prop, const char *value, void *opaque, char *errstr,
                        size_t errstr_size)
{
    kctx_t *k = opaque;
    lt_buf_appendf(k->seen, "%s=%s\n", prop, value);
    return LT_OK;
}

/* The table itself: one row per name, each bound to its own field, int
 * rows' bounds within their field, every default valid for its row. */
static void check_table(void)
{
    size_t n;
    const lt_setting_t *t = lt_settings_table(&n);
    CHECK(n > 0);
    for (size_t i = 0; i < n; i++) {
        const lt_setting_t *s = &t[i];
        CHECK_MSG(!strncmp(s->env, "LATTICE_", 8), "%s", s->env);
        CHECK_MSG(s->offset < sizeof(lt_settings_t), "%s", s->env);
        CHECK_MSG(s->group && s->desc && s->programs, "%s", s->env);
        CHECK_MSG((s->type == LT_SET_ENUM) == (s->choices != NULL), "%s", s->env);
        if (s->type == LT_SET_INT)
            CHECK_MSG(s->min >= INT_MIN && s->max <= INT_MAX && s->min <= s->max, "%s", s->env);
        if (s->type == LT_SET_INT64)
            CHECK_MSG(s->min <= s->max, "%s", s->env);
        for (size_t j = i + 1; j < n; j++) {
            CHECK_MSG(strcmp(s->env, t[j].env), "%s twice", s->env);
            CHECK_MSG(s->offset != t[j].offset, "%s and %s share a field", s->env, t[j].env);
        }
    }
}

int main(void)
{
    char err[1024];
    check_table();
    clear_env();

    lt_config_t *c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (c) {
        CHECK_STR(lt_config_settings(c)->log.level, "info");
        CHECK_INT(lt_config_settings(c)->s3.timeout_s, 120);
        CHECK_INT(lt_config_settings(c)->s3.path_style, 1);
        CHECK(lt_config_settings(c)->kafka.sasl_password == NULL);
        /* every type lands in its field, defaults included */
        CHECK_INT(lt_config_settings(c)->worker.concurrency, 4);
        CHECK_INT(lt_config_settings(c)->worker.max_message_bytes, 67108864);
        CHECK_STR(lt_config_settings(c)->s3.bucket, "lattice-mail");
        /* rows of other programs are not read: their fields stay zero */
        CHECK(lt_config_settings(c)->seed.tenant == NULL);
        CHECK_INT(lt_config_settings(c)->scheduler.stale_after_s, 0);
        CHECK_INT(lt_config_settings(c)->parser.max_message_bytes, 0);
        lt_config_destroy(c);
    }

    /* Values from the environment: a 64-bit integer beyond INT_MAX, a bool
     * false, an enum as written. */
    setenv("LATTICE_MAX_MESSAGE_BYTES", "5000000000", 1);
    setenv("LATTICE_S3_PATH_STYLE", "off", 1);
    setenv("LATTICE_LOG_LEVEL", "WARN", 1);
    setenv("LATTICE_WORKER_CONCURRENCY", "256", 1);
    c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (c) {
        CHECK(lt_config_settings(c)->worker.max_message_bytes == 5000000000LL);
        CHECK_INT(lt_config_settings(c)->s3.path_style, 0);
        CHECK_STR(lt_config_settings(c)->log.level, "WARN");
        CHECK_INT(lt_config_settings(c)->worker.concurrency, 256);
        lt_config_destroy(c);
    }
    unsetenv("LATTICE_MAX_MESSAGE_BYTES");
    unsetenv("LATTICE_WORKER_CONCURRENCY");
    clear_env();

    /* Bad values: every problem is named in one message. */
    setenv("LATTICE_LOG_LEVEL", "loud", 1);
    setenv("LATTICE_S3_TIMEOUT_S", "99999", 1);
    setenv("LATTICE_S3_PATH_STYLE", "maybe", 1);
    c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK(c == NULL);
    CHECK_MSG(strstr(err, "LATTICE_LOG_LEVEL=\"loud\"") != NULL, "%s", err);
    CHECK_MSG(strstr(err, "between 1 and 3600") != NULL, "%s", err);
    CHECK_MSG(strstr(err, "expected true or false") != NULL, "%s", err);
    lt_config_destroy(c);
    clear_env();

    /* A required setting emptied. */
    setenv("LATTICE_TOPIC_RAW", "", 1);
    c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(c != NULL, "an empty value falls back to the default: %s", err);
    if (c)
        CHECK_STR(lt_config_settings(c)->topic.raw, "lattice.mail.raw.v1");
    lt_config_destroy(c);
    unsetenv("LATTICE_TOPIC_RAW");
    /* The change topic: a default, and an override read into topic.changes. */
    c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (c)
        CHECK_STR(lt_config_settings(c)->topic.changes, "lattice.mail.change.v1");
    lt_config_destroy(c);
    setenv("LATTICE_TOPIC_CHANGES", "tenant-a.mail.change.v1", 1);
    c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (c)
        CHECK_STR(lt_config_settings(c)->topic.changes, "tenant-a.mail.change.v1");
    lt_config_destroy(c);
    unsetenv("LATTICE_TOPIC_CHANGES");
    /* Secrets are not needed by every program (lattice-migrate has no S3). */
    unsetenv("LATTICE_S3_SECRET_ACCESS_KEY");
    c = lt_config_load(LT_PROG_TOOLS, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (c)
        CHECK(lt_config_settings(c)->s3.secret_access_key == NULL);
    lt_config_destroy(c);

    /* Secret from a mounted file; trailing newline dropped. */
    char path[] = "/tmp/lt_test_secretXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "from-file\n", 10) == 10);
    close(fd);
    setenv("LATTICE_S3_SECRET_ACCESS_KEY_FILE", path, 1);
    c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (c)
        CHECK_STR(lt_config_settings(c)->s3.secret_access_key, "from-file");
    lt_config_destroy(c);
    /* Both the value and the file: ambiguous, refused. */
    setenv("LATTICE_S3_SECRET_ACCESS_KEY", "x", 1);
    c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK(c == NULL);
    CHECK_MSG(strstr(err, "not both") != NULL, "%s", err);
    unlink(path);
    unsetenv("LATTICE_S3_SECRET_ACCESS_KEY_FILE");
    clear_env();

    /* Kafka pass-through. */
    setenv("LATTICE_KAFKA_SASL_MECHANISMS", "PLAIN", 1);
    setenv("LATTICE_KAFKA_MESSAGE_MAX_BYTES", "2000000", 1);
    setenv("LATTICE_KAFKA_SECURITY_PROTOCOL", "", 1);
    c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (c) {
        kctx_t k = {lt_buf_new(4096)};
        CHECK_INT(lt_config_kafka_props(c, collect, &k, err, sizeof(err)), LT_OK);
        const char *s = lt_buf_str(k.seen);
        CHECK_MSG(strstr(s, "bootstrap.servers=127.0.0.1:19092\n") != NULL, "%s", s);
        CHECK_MSG(strstr(s, "sasl.mechanisms=PLAIN\n") != NULL, "%s", s);
        CHECK_MSG(strstr(s, "message.max.bytes=2000000\n") != NULL, "%s", s);
        CHECK_MSG(strstr(s, "security.protocol") == NULL, "empty value passed: %s", s);
        lt_buf_destroy(k.seen);
        lt_config_destroy(c);
    }

    /* .env.example is what the table generates. */
    char *gen = NULL;
    size_t genlen = 0;
    FILE *m = open_memstream(&gen, &genlen);
    lt_config_print_env_example(m);
    fclose(m);
    FILE *f = fopen(LT_SOURCE_DIR "/.env.example", "rb");
    CHECK_MSG(f != NULL, "no .env.example at the top of the tree");
    if (f) {
        lt_buf_t *b = lt_buf_new(1 << 20);
        char chunk[4096];
        size_t r;
        while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0)
            lt_buf_append(b, chunk, r);
        fclose(f);
        CHECK_MSG(lt_buf_len(b) == genlen && !memcmp(lt_buf_data(b), gen, genlen),
                  ".env.example is out of date: run `make env-example`");
        lt_buf_destroy(b);
    }
    free(gen);
    return lt_test_done("test_config");
}
