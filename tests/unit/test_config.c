/* Settings table: defaults, validation with clear errors, secrets from
 * files, Kafka pass-through, and .env.example kept in step. */
#include <stdlib.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_config.h"
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

int main(void)
{
    char err[1024];
    clear_env();

    lt_config_t *c = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (c) {
        CHECK_STR(lt_config_str(c, "LATTICE_LOG_LEVEL"), "info");
        CHECK_INT(lt_config_int(c, "LATTICE_S3_TIMEOUT_S"), 120);
        CHECK_INT(lt_config_bool(c, "LATTICE_S3_PATH_STYLE"), 1);
        CHECK(lt_config_str(c, "LATTICE_KAFKA_SASL_PASSWORD") == NULL);
        lt_config_destroy(c);
    }

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
        CHECK_STR(lt_config_str(c, "LATTICE_TOPIC_RAW"), "lattice.mail.raw.v1");
    lt_config_destroy(c);
    unsetenv("LATTICE_TOPIC_RAW");
    /* Secrets are not needed by every program (lattice-migrate has no S3). */
    unsetenv("LATTICE_S3_SECRET_ACCESS_KEY");
    c = lt_config_load(LT_PROG_TOOLS, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (c)
        CHECK(lt_config_str(c, "LATTICE_S3_SECRET_ACCESS_KEY") == NULL);
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
        CHECK_STR(lt_config_str(c, "LATTICE_S3_SECRET_ACCESS_KEY"), "from-file");
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
