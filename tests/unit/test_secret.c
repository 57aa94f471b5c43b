/* lt_secret_resolve: env and file references inside the tenant's namespace,
 * refusals (worker settings, /proc, "..", links out of the tenant directory,
 * another tenant's names), caps, and that no error text ever carries the
 * secret or tells whether a file outside the namespace exists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "lt_secret.h"
#include "lt_test.h"

#define SECRET "s3cr3t-Value-42" /* pragma: allowlist secret */

/* The one text for a file that is missing, not regular or outside. */
#define NOT_READABLE                                                                              \
    "account config: password_file \"%s\" is not a readable file in the tenant's secrets "        \
    "directory"

static char g_dir[] = "/tmp/lt_test_secret_XXXXXX";
static lt_secret_ns_t g_ns = {"acme", NULL};

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
    lt_err_t err = lt_secret_resolve(&g_ns, cfg, name, out, outsz, errstr, n);
    json_object_put(cfg);
    if (err) {
        CHECK_MSG(!strstr(errstr, SECRET), "secret leaked into error: %s", errstr);
        CHECK_MSG(errstr[0] != 0, "no error text for %s", json);
        CHECK_MSG(out[0] == 0, "out not cleared on error for %s", json);
    }
    return err;
}

/* A file reference name -> the error text (the call must fail). */
static void refused_file(const char *name, char *err, size_t n)
{
    char json[1024], out[64];
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", name);
    CHECK_MSG(resolve(json, "password", out, sizeof(out), err, n) == LT_ERR_FINAL,
              "file reference %s not refused", name);
}

static void test_env_prefix(void)
{
    char p[64];
    CHECK_INT(lt_secret_env_prefix("acme", p, sizeof(p)), 10);
    CHECK_STR(p, "LTS_acme__");
    CHECK(lt_secret_env_prefix("acme-eu.1", p, sizeof(p)) > 0);
    CHECK_STR(p, "LTS_acme_2Deu_2E1__");
    /* distinct tenants, distinct prefixes, none a prefix of another */
    const char *t[] = {"a", "A", "a_b", "a-b", "a__b", "a_5Fb", "-a", "a-", NULL};
    char q[64];
    for (int i = 0; t[i]; i++)
        for (int j = 0; t[j]; j++) {
            if (i == j)
                continue;
            size_t li = lt_secret_env_prefix(t[i], p, sizeof(p));
            lt_secret_env_prefix(t[j], q, sizeof(q));
            CHECK_MSG(strncmp(p, q, li) != 0, "prefix of %s (%s) starts that of %s (%s)", t[i], p,
                      t[j], q);
        }
    CHECK_INT(lt_secret_env_name("t-1", "IMAP_PASSWORD", p, sizeof(p)), 24);
    CHECK_STR(p, "LTS_t_2D1__IMAP_PASSWORD");
    CHECK_INT(lt_secret_env_name("t-1", "IMAP-PASSWORD", p, sizeof(p)), 0);
    CHECK_INT(lt_secret_env_name("t-1", "", p, sizeof(p)), 0);
    CHECK_INT(lt_secret_env_name("t-1", "IMAP_PASSWORD", p, 24), 0); /* needs 25 */
    CHECK(lt_secret_file_name_ok("pw") && lt_secret_file_name_ok("gmail/alice.token") &&
          lt_secret_file_name_ok("..data/pw"));
    CHECK(!lt_secret_file_name_ok("/pw") && !lt_secret_file_name_ok("../pw") &&
          !lt_secret_file_name_ok("a/./pw") && !lt_secret_file_name_ok("a/") &&
          !lt_secret_file_name_ok("") && !lt_secret_file_name_ok(NULL));
    CHECK_INT(lt_secret_env_prefix("", p, sizeof(p)), 0);
    /* the longest tenant id (128 bytes, none a letter or digit) still has a namespace */
    char longest[129], big[512];
    memset(longest, '-', 128);
    longest[128] = 0;
    CHECK_INT(lt_secret_env_name(longest, "PW", big, sizeof(big)), 4 + 3 * 128 + 2 + 2);
    setenv(big, SECRET, 1);
    char cfgtext[600], got[64], e[256];
    snprintf(cfgtext, sizeof(cfgtext), "{\"password_env\":\"%s\"}", big);
    json_object *cfg = json_tokener_parse(cfgtext);
    lt_secret_ns_t ns = {longest, NULL};
    CHECK_INT(lt_secret_resolve(&ns, cfg, "password", got, sizeof(got), e, sizeof(e)), LT_OK);
    CHECK_STR(got, SECRET);
    json_object_put(cfg);
    unsetenv(big);
    CHECK_INT(lt_secret_env_prefix("acme", p, 10), 0); /* needs 11 */
}

static void test_env(void)
{
    char out[64], err[256];
    setenv("LTS_acme__PW", SECRET, 1);
    CHECK_INT(resolve("{\"password_env\":\"LTS_acme__PW\"}", "password", out, sizeof(out), err,
                      sizeof(err)),
              LT_OK);
    CHECK_STR(out, SECRET);

    /* unset, empty, non-string, too long */
    unsetenv("LTS_acme__UNSET");
    CHECK_INT(resolve("{\"password_env\":\"LTS_acme__UNSET\"}", "password", out, sizeof(out), err,
                      sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "password_env") && strstr(err, "LTS_acme__UNSET"));
    setenv("LTS_acme__EMPTY", "", 1);
    CHECK_INT(resolve("{\"password_env\":\"LTS_acme__EMPTY\"}", "password", out, sizeof(out), err,
                      sizeof(err)),
              LT_ERR_FINAL);
    CHECK_INT(resolve("{\"password_env\":7}", "password", out, sizeof(out), err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "password_env") != NULL);
    char small[8];
    CHECK_INT(resolve("{\"password_env\":\"LTS_acme__PW\"}", "password", small, sizeof(small), err,
                      sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "too long") != NULL);
    /* exactly fits: strlen == outsz - 1 */
    char fit[sizeof(SECRET)];
    CHECK_INT(resolve("{\"password_env\":\"LTS_acme__PW\"}", "password", fit, sizeof(fit), err,
                      sizeof(err)),
              LT_OK);
    CHECK_STR(fit, SECRET);

    /* outside the namespace: refused whether set or not, with the same text */
    setenv("LATTICE_S3_SECRET_ACCESS_KEY", "s3-" SECRET, 1);
    setenv("LTS_other__PW", SECRET, 1);
    setenv("LTS_acm__PW", SECRET, 1);
    setenv("LTS_acme_PW", SECRET, 1);
    const char *bad[] = {"LATTICE_S3_SECRET_ACCESS_KEY", "LATTICE_PG_PASSWORD", "HOME",
                         "LTS_other__PW", "LTS_acm__PW", "LTS_acme_PW", "LTS_acme__",
                         "LTS_acme__A-B", "LTS_acme__A=B", "lts_acme__PW", NULL};
    char first[256] = "";
    for (int i = 0; bad[i]; i++) {
        char json[256];
        snprintf(json, sizeof(json), "{\"password_env\":\"%s\"}", bad[i]);
        CHECK_MSG(resolve(json, "password", out, sizeof(out), err, sizeof(err)) == LT_ERR_FINAL,
                  "%s not refused", bad[i]);
        CHECK_MSG(strstr(err, "LTS_acme__<NAME>") != NULL, "%s: %s", bad[i], err);
        if (!first[0])
            snprintf(first, sizeof(first), "%s", err);
        CHECK_STR(err, first);
    }
    /* the same name belongs to its own tenant */
    g_ns.tenant = "other";
    CHECK_INT(resolve("{\"password_env\":\"LTS_other__PW\"}", "password", out, sizeof(out), err,
                      sizeof(err)),
              LT_OK);
    g_ns.tenant = "acme";
}

static void test_file(void)
{
    char out[64], err[256], path[512], json[1024], tdir[128], other[128];
    snprintf(tdir, sizeof(tdir), "%s/acme", g_dir);
    snprintf(other, sizeof(other), "%s/other", g_dir);
    CHECK(mkdir(tdir, 0700) == 0 && mkdir(other, 0700) == 0);

    /* off without a secrets directory */
    g_ns.secrets_dir = NULL;
    refused_file("pw", err, sizeof(err));
    CHECK(strstr(err, "LATTICE_SECRETS_DIR") != NULL);
    g_ns.secrets_dir = "";
    refused_file("pw", err, sizeof(err));
    g_ns.secrets_dir = g_dir;

    /* file, with trailing CRLF trimmed */
    snprintf(path, sizeof(path), "%s/pw", tdir);
    write_file(path, SECRET "\r\n", strlen(SECRET) + 2);
    CHECK_INT(resolve("{\"refresh_token_file\":\"pw\"}", "refresh_token", out, sizeof(out), err,
                      sizeof(err)),
              LT_OK);
    CHECK_STR(out, SECRET);
    /* exactly fits, with a newline beyond the buffer */
    char fit[sizeof(SECRET)];
    CHECK_INT(resolve("{\"refresh_token_file\":\"pw\"}", "refresh_token", fit, sizeof(fit), err,
                      sizeof(err)),
              LT_OK);
    CHECK_STR(fit, SECRET);
    /* too big: never truncated */
    char small[8];
    CHECK_INT(resolve("{\"refresh_token_file\":\"pw\"}", "refresh_token", small, sizeof(small), err,
                      sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "too big") && strstr(err, "refresh_token_file"));

    /* a subdirectory, and a link that stays inside the tenant directory (the
     * layout of a Kubernetes secret volume: name -> ..data/name) */
    char sub[256], link[256];
    snprintf(sub, sizeof(sub), "%s/..data", tdir);
    CHECK(mkdir(sub, 0700) == 0);
    snprintf(path, sizeof(path), "%s/..data/gm", tdir);
    write_file(path, SECRET "\n", strlen(SECRET) + 1);
    snprintf(link, sizeof(link), "%s/gm", tdir);
    CHECK(symlink("..data/gm", link) == 0);
    CHECK_INT(resolve("{\"password_file\":\"gm\"}", "password", out, sizeof(out), err, sizeof(err)),
              LT_OK);
    CHECK_STR(out, SECRET);
    CHECK_INT(
        resolve("{\"password_file\":\"..data/gm\"}", "password", out, sizeof(out), err, sizeof(err)),
        LT_OK);

    /* missing, empty (only a newline), a directory */
    refused_file("nope", err, sizeof(err));
    char want[256];
    snprintf(want, sizeof(want), NOT_READABLE, "nope");
    CHECK_STR(err, want);
    snprintf(path, sizeof(path), "%s/empty", tdir);
    write_file(path, "\n", 1);
    refused_file("empty", err, sizeof(err));
    CHECK(strstr(err, "empty") != NULL);
    refused_file("..data", err, sizeof(err));

    /* outside the namespace: absolute paths, "..", another tenant's file, /proc */
    snprintf(path, sizeof(path), "%s/pw", other);
    write_file(path, SECRET, strlen(SECRET));
    const char *syntax[] = {"/proc/self/environ", "../other/pw", "sub/../../other/pw", "..",
                            ".", "./pw", "pw/", "a//b", "a b", "a\\\\b", NULL};
    char first[256] = "";
    for (int i = 0; syntax[i]; i++) {
        refused_file(syntax[i], err, sizeof(err));
        if (!first[0])
            snprintf(first, sizeof(first), "%s", err);
        CHECK_STR(err, first); /* one text: tells nothing about the file */
    }
    snprintf(json, sizeof(json), "{\"password_file\":\"%s\"}", path);
    CHECK_INT(resolve(json, "password", out, sizeof(out), err, sizeof(err)), LT_ERR_FINAL);
    CHECK_STR(err, first);

    /* links out of the tenant directory: to another tenant's file, to
     * /proc/self/environ, to a missing file outside; the same text as a
     * missing file inside */
    const char *targets[] = {"../other/pw", "/proc/self/environ", "/nonexistent-lt-secret", "..",
                             NULL};
    for (int i = 0; targets[i]; i++) {
        char name[32];
        snprintf(name, sizeof(name), "out%d", i);
        snprintf(link, sizeof(link), "%s/%s", tdir, name);
        CHECK(symlink(targets[i], link) == 0);
        refused_file(name, err, sizeof(err));
        snprintf(want, sizeof(want), NOT_READABLE, name);
        CHECK_STR(err, want);
        unlink(link);
    }
    /* a link to another tenant's directory, used as a folder */
    snprintf(link, sizeof(link), "%s/peer", tdir);
    CHECK(symlink("../other", link) == 0);
    refused_file("peer/pw", err, sizeof(err));
    unlink(link);
    /* the tenant directory is <dir>/<tenant>: "other" reads its own file */
    g_ns.tenant = "other";
    CHECK_INT(resolve("{\"password_file\":\"pw\"}", "password", out, sizeof(out), err, sizeof(err)),
              LT_OK);
    /* tenant ids that are no directory name: file references refused */
    g_ns.tenant = "..";
    refused_file("other/pw", err, sizeof(err));
    g_ns.tenant = "acme";

    snprintf(path, sizeof(path), "%s/pw", other);
    unlink(path);
    snprintf(path, sizeof(path), "%s/pw", tdir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/empty", tdir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/gm", tdir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/..data/gm", tdir);
    unlink(path);
    rmdir(sub);
    rmdir(tdir);
    rmdir(other);
}

int main(void)
{
    char out[64], err[256];
    CHECK(mkdtemp(g_dir) != NULL);
    g_ns.secrets_dir = g_dir;

    test_env_prefix();
    test_env();
    test_file();

    /* neither given */
    CHECK_INT(resolve("{\"user\":\"me\"}", "password", out, sizeof(out), err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK_STR(err, "account config: no password_env or password_file");

    /* both given */
    CHECK_INT(resolve("{\"password_env\":\"LTS_acme__PW\",\"password_file\":\"pw\"}", "password",
                      out, sizeof(out), err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "both") != NULL);

    /* inline refused, and its value not echoed */
    CHECK_INT(resolve("{\"password\":\"" SECRET "\",\"password_env\":\"LTS_acme__PW\"}",
                      "password", out, sizeof(out), err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK(strstr(err, "inline") != NULL);

    /* bad arguments */
    json_object *cfg = json_object_new_object();
    CHECK_INT(lt_secret_resolve(&g_ns, cfg, "password", out, 1, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_INT(lt_secret_resolve(NULL, cfg, "password", out, sizeof(out), err, sizeof(err)),
              LT_ERR_INVALID);
    json_object_put(cfg);

    /* lt_secret_wipe */
    char buf[16];
    memcpy(buf, SECRET, sizeof(SECRET) < sizeof(buf) ? sizeof(SECRET) : sizeof(buf));
    lt_secret_wipe(buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++)
        CHECK(buf[i] == 0);
    lt_secret_wipe(NULL, 4);

    rmdir(g_dir);
    return lt_test_done("secret");
}
