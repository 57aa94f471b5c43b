/* watcher/lt_gmail_push: the push envelope parser (table) and the request
 * authentication, with tokens signed here by a key pair made for the run:
 * a good token is accepted; expired, future, wrong audience / issuer /
 * service account, alg none / HS256, a bad signature and an unknown key
 * are refused (401/403) and yield nothing; the shared URL token; the key
 * file is re-read when it changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "lt_gmail_push.h"
#include "lt_test.h"

#define NOW 1800000000LL
static char g_err[256];

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = 0;
}

/* header.claims.signature, signed by key (NULL: "sig" is garbage). */
static char *jwt(EVP_PKEY *key, const char *header, const char *claims)
{
    char *t = malloc(8192);
    char h[1024], c[2048];
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)claims, strlen(claims), c);
    snprintf(t, 8192, "Bearer %s.%s", h, c);
    unsigned char sig[512];
    size_t sl = sizeof(sig);
    if (key) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key);
        EVP_DigestSign(md, sig, &sl, (const unsigned char *)t + 7, strlen(t + 7));
        EVP_MD_CTX_free(md);
    } else {
        memset(sig, 0x5a, 256);
        sl = 256;
    }
    char s[1024];
    b64url(sig, sl, s);
    strcat(t, ".");
    strcat(t, s);
    return t;
}

static char *claims(char *buf, const char *aud, const char *iss, long long exp, long long iat,
                    const char *email)
{
    snprintf(buf, 1024,
             "{\"aud\":\"%s\",\"iss\":\"%s\",\"exp\":%lld,\"iat\":%lld,\"email\":\"%s\","
             "\"email_verified\":true,\"sub\":\"1\"}",
             aud, iss, exp, iat, email);
    return buf;
}

static const char *envelope(char *buf, const char *email, const char *hid)
{
    char data[512], b[800];
    snprintf(data, sizeof(data), "{\"emailAddress\":\"%s\",\"historyId\":%s}", email, hid);
    EVP_EncodeBlock((unsigned char *)b, (const unsigned char *)data, (int)strlen(data));
    snprintf(buf, 2048,
             "{\"message\":{\"data\":\"%s\",\"messageId\":\"42\",\"publishTime\":"
             "\"2026-01-01T00:00:00.000Z\"},\"subscription\":\"projects/p/subscriptions/s\"}",
             b);
    return buf;
}

static void write_pub(EVP_PKEY *k, const char *path)
{
    FILE *f = fopen(path, "w");
    PEM_write_PUBKEY(f, k);
    fclose(f);
}

static void test_parse(void)
{
    struct {
        const char *email, *hid;
        int ok;
    } t[] = {
        {"user@example.com", "9876543210", 1}, {"user@example.com", "\"9876543210\"", 1},
        {"user@example.com", "0", 0},          {"user@example.com", "-1", 0},
        {"user@example.com", "\"12x\"", 0},    {"nobody", "1", 0},
        {"a@b@c", "1", 0},                     {"user@example.com", "\"18446744073709551616\"", 0},
        {"user@example.com", "null", 0},       {"with space@x.y", "1", 0},
    };
    char buf[2048];
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        lt_gmail_push_note_t n;
        g_err[0] = 0;
        envelope(buf, t[i].email, t[i].hid);
        lt_err_t e = lt_gmail_push_parse(buf, strlen(buf), &n, g_err, sizeof(g_err));
        CHECK_MSG((e == LT_OK) == t[i].ok, "case %zu: %s", i, g_err);
        if (t[i].ok) {
            CHECK_STR(n.email, t[i].email);
            CHECK_INT(n.history_id, 9876543210LL);
            CHECK_STR(n.message_id, "42");
            CHECK_STR(n.subscription, "projects/p/subscriptions/s");
        } else {
            CHECK(g_err[0] && !n.email[0] && !n.history_id);
        }
    }
    const char *bad[] = {"", "[]", "{}", "{\"message\":1}", "{\"message\":{}}",
                         "{\"message\":{\"data\":\"@@@\"}}", "{\"message\":{\"data\":\"e30=\"}}",
                         "{\"message\":{\"data\":\"W10=\"}}", "{\"message\":{\"data\":\"e30\"}} x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lt_gmail_push_note_t n;
        CHECK_MSG(lt_gmail_push_parse(bad[i], strlen(bad[i]), &n, g_err, sizeof(g_err)) ==
                      LT_ERR_INVALID,
                  "%s", bad[i]);
    }
}

static void test_auth(void)
{
    EVP_PKEY *key = EVP_RSA_gen(2048), *other = EVP_RSA_gen(2048);
    CHECK(key && other);
    char path[] = "/tmp/test_gmail_push_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_pub(key, path);
    const char *sa = "push@p.iam.gserviceaccount.com";
    lt_gmail_push_opts_t o = {
        .keys_file = path, .audience = "aud-1", .service_account = sa, .clock_skew_s = 60};
    CHECK(lt_gmail_push_new(&(lt_gmail_push_opts_t){0}, g_err, sizeof(g_err)) == NULL);
    CHECK(lt_gmail_push_new(&(lt_gmail_push_opts_t){.keys_file = path}, g_err, sizeof(g_err)) ==
          NULL);
    lt_gmail_push_t *p = lt_gmail_push_new(&o, g_err, sizeof(g_err));
    CHECK_MSG(p != NULL, "%s", g_err);
    if (!p)
        return;
    const char *rs = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    const char *iss = "https://accounts.google.com";
    char c[1024], env[2048];
    envelope(env, "user@example.com", "77");
    struct {
        const char *name;
        EVP_PKEY *signer;
        const char *header;
        const char *aud, *iss, *email;
        long long exp, iat;
        int status;
    } t[] = {
        {"good", key, rs, "aud-1", iss, sa, NOW + 3600, NOW, 204},
        {"good, short iss", key, rs, "aud-1", "accounts.google.com", sa, NOW + 3600, NOW, 204},
        {"within skew", key, rs, "aud-1", iss, sa, NOW - 30, NOW - 3630, 204},
        {"expired", key, rs, "aud-1", iss, sa, NOW - 61, NOW - 3661, 401},
        {"issued in the future", key, rs, "aud-1", iss, sa, NOW + 7200, NOW + 3600, 401},
        {"wrong audience", key, rs, "aud-2", iss, sa, NOW + 3600, NOW, 403},
        {"wrong issuer", key, rs, "aud-1", "https://evil.example", sa, NOW + 3600, NOW, 401},
        {"other account", key, rs, "aud-1", iss, "x@p.iam.gserviceaccount.com", NOW + 3600, NOW,
         403},
        {"other key", other, rs, "aud-1", iss, sa, NOW + 3600, NOW, 401},
        {"bad signature", NULL, rs, "aud-1", iss, sa, NOW + 3600, NOW, 401},
        {"alg none", key, "{\"alg\":\"none\"}", "aud-1", iss, sa, NOW + 3600, NOW, 401},
        {"alg HS256", key, "{\"alg\":\"HS256\"}", "aud-1", iss, sa, NOW + 3600, NOW, 401},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *a = jwt(t[i].signer, t[i].header,
                      claims(c, t[i].aud, t[i].iss, t[i].exp, t[i].iat, t[i].email));
        lt_gmail_push_note_t n;
        char why[200] = "";
        int st = lt_gmail_push_handle(p, a, NULL, env, strlen(env), NOW, &n, why, sizeof(why));
        CHECK_MSG(st == t[i].status, "%s: %d (%s)", t[i].name, st, why);
        if (st == 204) {
            CHECK_STR(n.email, "user@example.com");
            CHECK_INT(n.history_id, 77);
        } else {
            CHECK(!n.email[0] && !n.history_id && why[0]);
        }
        free(a);
    }
    lt_gmail_push_note_t n;
    char why[200];
    CHECK_INT(lt_gmail_push_handle(p, NULL, NULL, env, strlen(env), NOW, &n, why, sizeof(why)),
              401);
    CHECK_INT(lt_gmail_push_handle(p, "Basic abc", NULL, env, strlen(env), NOW, &n, why,
                                   sizeof(why)),
              401);
    char *good = jwt(key, rs, claims(c, "aud-1", iss, NOW + 3600, NOW, sa));
    CHECK_INT(lt_gmail_push_handle(p, good, NULL, "{}", 2, NOW, &n, why, sizeof(why)), 400);
    lt_gmail_push_stats_t st;
    lt_gmail_push_stats(p, &st);
    CHECK_INT(st.accepted, 3);
    CHECK_INT(st.forbidden, 2);
    CHECK_INT(st.malformed, 1);

    /* a key rotated in the file is used without a restart */
    char *by_other = jwt(other, rs, claims(c, "aud-1", iss, NOW + 3600, NOW, sa));
    CHECK_INT(lt_gmail_push_handle(p, by_other, NULL, env, strlen(env), NOW, &n, why, sizeof(why)),
              401);
    FILE *f = fopen(path, "a");
    PEM_write_PUBKEY(f, other);
    fclose(f);
    CHECK_INT(lt_gmail_push_handle(p, by_other, NULL, env, strlen(env), NOW, &n, why, sizeof(why)),
              204);
    lt_gmail_push_destroy(p);

    /* shared token only */
    p = lt_gmail_push_new(&(lt_gmail_push_opts_t){.token = "s3cret"}, g_err, sizeof(g_err));
    CHECK(p != NULL);
    CHECK_INT(lt_gmail_push_handle(p, NULL, "s3cret", env, strlen(env), NOW, &n, why, sizeof(why)),
              204);
    CHECK_INT(lt_gmail_push_handle(p, NULL, NULL, env, strlen(env), NOW, &n, why, sizeof(why)),
              401);
    CHECK_INT(lt_gmail_push_handle(p, NULL, "s3cre", env, strlen(env), NOW, &n, why, sizeof(why)),
              403);
    CHECK_INT(lt_gmail_push_handle(p, NULL, "s3cret!", env, strlen(env), NOW, &n, why,
                                   sizeof(why)),
              403);
    lt_gmail_push_destroy(p);
    free(good);
    free(by_other);
    unlink(path);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

int main(void)
{
    test_parse();
    test_auth();
    return lt_test_done("test_gmail_push_unit");
}
