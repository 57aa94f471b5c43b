/* lt_secret_resolve: env and file references, refusals, caps, and that no
 * error text ever carries the secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "lt_secret.h"
#include "lt_test.h"

#define SECRET "s3cr3t-Value-42" /* pragma: allowlist secret */

static char g_dir[] = "/tmp/lt_test_secret_XXXXXX";

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

/* Resolve name in the JSON config text; out gets the secret or "". */
static lt_err_t resolve(const char *json, const char *name, char *out, size_t outsz, char *errstr,
                        size_t n)
{
    json_object *cfg = json_tokener_parse(json);
    CHECK_MSG(cfg != NULL, "bad test JSON %s", json);
    errstr[0] = 0;
    lt_err_t err = lt_secret_resolve(cfg, name, out, outsz, errstr, n);
    json_object_put(cfg);
    if (err) {
        CHECK_MSG(!strstr(errstr, SECRET), "secret leaked into error: %s", errstr);
        CHECK_MSG(errstr[0] != 0, "no error text for %s", json);
        CHECK_MSG(out[0] == 0, "out not cleared on error for %s", json);
    }
    return err;
}

int main(void)
{
    char out[64], err[256], path[512], json[1024];
    CHECK(mkdtemp(g_dir) != NULL);

    /* env */
    setenv("LT_TEST_SECRET_A", SECRET, 1);
    CHECK_INT(resolve("{\"password_env\":\"LT_TEST_SECRET_A\"}", "password", out, sizeof(out), err,
                      sizeof(err)),
              LT_OK);
    CHECK_STR(out, SECRET);

    /* env: unset, empty, non-string, too long */
    unsetenv("LT_TEST_SECRET_UNSET");
    CHECK_INT(resolve("{\"password_env\":\"LT_TEST_SECRET_UNSET\"}", "password", out, sizeof(out),
                      err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "password_env") && strstr(err, "LT_TEST_SECRET_UNSET"));
    setenv("LT_TEST_SECRET_EMPTY", "", 1);
    CHECK_INT(resolve("{\"password_env\":\"LT_TEST_SECRET_EMPTY\"}", "password", out, sizeof(out),
                      err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK_INT(resolve("{\"password_env\":7}", "password", out, sizeof(out), err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "password_env") != NULL);
    char small[8];
    CHECK_INT(resolve("{\"password_env\":\"LT_TEST_SECRET_A\"}", "password", small, sizeof(small),
                      err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "too long") != NULL);
    /* exactly fits: strlen == outsz - 1 */
    char fit[sizeof(SECRET)];
    CHECK_INT(resolve("{\"password_env\":\"LT_TEST_SECRET_A\"}", "password", fit, sizeof(fit), err,
                      sizeof(err)),
              LT_OK);
    CHECK_STR(fit, SECRET);

    /* file, with trailing CRLF trimmed */
    snprintf(path, sizeof(path), "%s/pw", g_dir);
    write_file(path, SECRET "\r\n", strlen(SECRET) + 2);
    snprintf(json, sizeof(json), "{\"refresh_token_file\":\"%s\"}", path);
    CHECK_INT(resolve(json, "refresh_token", out, sizeof(out), err, sizeof(err)), LT_OK);
    CHECK_STR(out, SECRET);
    /* exactly fits, with a newline beyond the buffer */
    CHECK_INT(resolve(json, "refresh_token", fit, sizeof(fit), err, sizeof(err)), LT_OK);
    CHECK_STR(fit, SECRET);
    /* too big: never truncated */
    CHECK_INT(resolve(json, "refresh_token", small, sizeof(small), err, sizeof(err)), LT_ERR_FINAL);
    CHECK(strstr(err, "too big") && strstr(err, "refresh_token_file"));

    /* file: missing, empty (only a newline) */
    snprintf(json, sizeof(json), "{\"password_file\":\"%s/nope\"}", g_dir);
    CHECK_INT(resolve(json, "password", out, sizeof(out), err, sizeof(err)), LT_ERR_FINAL);
    CHECK(strstr(err, "password_file") && strstr(err, "nope"));
    char epath[512];
    snprintf(epath, sizeof(epath), "%s/empty", g_dir);
    write_file(epath, "\n", 1);
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", epath);
    CHECK_INT(resolve(json, "password", out, sizeof(out), err, sizeof(err)), LT_ERR_FINAL);
    CHECK(strstr(err, "empty") != NULL);
    /* a directory is not a secret file */
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", g_dir);
    CHECK_INT(resolve(json, "password", out, sizeof(out), err, sizeof(err)), LT_ERR_FINAL);

    /* neither given */
    CHECK_INT(resolve("{\"user\":\"me\"}", "password", out, sizeof(out), err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK_STR(err, "account config: no password_env or password_file");

    /* both given */
    snprintf(json, sizeof(json), "{\"password_env\":\"LT_TEST_SECRET_A\",\"password_file\":\"%s\"}",
             path);
    CHECK_INT(resolve(json, "password", out, sizeof(out), err, sizeof(err)), LT_ERR_FINAL);
    CHECK(strstr(err, "both") != NULL);

    /* inline refused, and its value not echoed */
    CHECK_INT(resolve("{\"password\":\"" SECRET "\",\"password_env\":\"LT_TEST_SECRET_A\"}",
                      "password", out, sizeof(out), err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "inline") != NULL);

    /* bad arguments */
    json_object *cfg = json_object_new_object();
    CHECK_INT(lt_secret_resolve(cfg, "password", out, 1, err, sizeof(err)), LT_ERR_INVALID);
    json_object_put(cfg);

    unlink(path);
    unlink(epath);
    rmdir(g_dir);
    return lt_test_done("secret");
}
