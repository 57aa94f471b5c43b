/* lt_s3 against the real S3 (MinIO) of the local stack: round trips with
 * SHA-256, a streamed 26 MB upload, NOT_FOUND, refused credentials, odd
 * keys, idempotent overwrite, size caps; prints PUT/GET throughput. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_objkey.h"
#include "lt_s3.h"
#include "lt_test.h"

static const char *endpoint, *bucket, *akid, *secret, *region;
static char run[64]; /* unique key prefix of this run */

static void sha256_of(const void *d, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int l = 0;
    EVP_Digest(d, n, md, &l, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Deterministic pseudo-random bytes (xorshift), so data is not compressible. */
static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

static lt_s3_t *open_s3(const char *sk)
{
    char err[512];
    lt_s3_t *s3 = lt_s3_new(&(lt_s3_config_t){.endpoint = endpoint,
                                              .region = region,
                                              .bucket = bucket,
                                              .access_key_id = akid,
                                              .secret_access_key = sk,
                                              .addressing = LT_S3_PATH_STYLE,
                                              .ca_file = getenv("LATTICE_S3_CA_FILE"),
                                              .timeout_s = 120},
                            err, sizeof(err));
    CHECK_MSG(s3 != NULL, "lt_s3_new: %s", err);
    return s3;
}

static void key_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", run, name);
}

static void test_round_trip(lt_s3_t *s3)
{
    char err[512], key[512], sha[LT_S3_SHA256_HEX], etag[LT_S3_ETAG_MAX], msha[LT_S3_SHA256_HEX];
    key_of(key, sizeof(key), "abc.txt");
    CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = key, .content_type = "text/plain"}, "abc", 3,
                        sha, err, sizeof(err)),
              LT_OK);
    /* FIPS 180-2 test vector for "abc". */
    CHECK_STR(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    uint64_t size = 0;
    CHECK_INT(lt_s3_head(s3, key, &size, etag, msha, err, sizeof(err)), LT_OK);
    CHECK_INT(size, 3);
    CHECK_STR(etag, "900150983cd24fb0d6963f7d28e17f72"); /* MD5("abc"): single-part PUT */
    CHECK_STR(msha, sha);
    lt_buf_t *b = lt_buf_new(1024);
    CHECK_INT(lt_s3_get(s3, key, b, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_buf_len(b), 3);
    CHECK_STR(lt_buf_str(b), "abc");

    /* Same key twice: fine, the second content wins. */
    CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = key, .content_type = "text/plain"}, "abcd", 4,
                        sha, err, sizeof(err)),
              LT_OK);
    CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = key, .content_type = "text/plain"}, "abcd", 4,
                        NULL, err, sizeof(err)),
              LT_OK);
    CHECK_INT(lt_s3_get(s3, key, b, err, sizeof(err)), LT_OK);
    CHECK_STR(lt_buf_str(b), "abcd");

    /* Ranges of it (an attachment inside its .eml): exactly those bytes */
    CHECK_INT(lt_s3_get_range(s3, key, 1, 2, b, err, sizeof(err)), LT_OK);
    CHECK_MSG(lt_buf_len(b) == 2 && !memcmp(lt_buf_data(b), "bc", 2), "range: %s", err);
    CHECK_INT(lt_s3_get_range(s3, key, 0, 4, b, err, sizeof(err)), LT_OK);
    CHECK_STR(lt_buf_str(b), "abcd");
    CHECK_INT(lt_s3_get_range(s3, key, 3, 0, b, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_buf_len(b), 0);
    /* past the end: refused (416), nothing returned; a short answer is refused too */
    CHECK_INT(lt_s3_get_range(s3, key, 9, 2, b, err, sizeof(err)), LT_ERR_FINAL);
    CHECK_INT(lt_buf_len(b), 0);
    CHECK_INT(lt_s3_get_range(s3, key, 2, 5, b, err, sizeof(err)), LT_ERR_FINAL);
    CHECK_MSG(strstr(err, "not the range") != NULL, "%s", err);
    char gone[512];
    key_of(gone, sizeof(gone), "no-such-object");
    CHECK_INT(lt_s3_get_range(s3, gone, 0, 2, b, err, sizeof(err)), LT_ERR_NOT_FOUND);

    /* A cap smaller than the object: TOO_BIG, buffer left empty. */
    lt_buf_t *small = lt_buf_new(2);
    CHECK_INT(lt_s3_get(s3, key, small, err, sizeof(err)), LT_ERR_TOO_BIG);
    CHECK_INT(lt_buf_len(small), 0);
    lt_buf_destroy(small);

    /* Empty object. */
    key_of(key, sizeof(key), "empty");
    CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = key}, NULL, 0, sha, err, sizeof(err)), LT_OK);
    CHECK_STR(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_INT(lt_s3_head(s3, key, &size, NULL, NULL, err, sizeof(err)), LT_OK);
    CHECK_INT(size, 0);
    CHECK_INT(lt_s3_get(s3, key, b, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_buf_len(b), 0);

    /* Missing objects. */
    key_of(key, sizeof(key), "no/such/key");
    CHECK_INT(lt_s3_head(s3, key, &size, NULL, NULL, err, sizeof(err)), LT_ERR_NOT_FOUND);
    CHECK_INT(lt_s3_get(s3, key, b, err, sizeof(err)), LT_ERR_NOT_FOUND);
    CHECK_MSG(strstr(err, "NoSuchKey") != NULL, "%s", err);

    /* Delete, then gone; deleting again is fine. */
    key_of(key, sizeof(key), "abc.txt");
    CHECK_INT(lt_s3_delete(s3, key, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_s3_head(s3, key, &size, NULL, NULL, err, sizeof(err)), LT_ERR_NOT_FOUND);
    CHECK_INT(lt_s3_delete(s3, key, err, sizeof(err)), LT_OK);
    lt_buf_destroy(b);
}

static void test_odd_keys(lt_s3_t *s3)
{
    char err[512], key[LT_OBJKEY_MAX + 1], full[LT_OBJKEY_MAX + 64];
    const char *names[] = {
        "a b+c%d",
        "M\xc3\xa4rz ~ (1).txt",
        "q?x=1&y#z",
        "semi;colon,comma:at@",
        "emoji-\xf0\x9f\x93\xa7",
        "%2E%2E",
        "x*y!z'()",
        "trailing.",
        NULL,
    };
    lt_buf_t *b = lt_buf_new(1024);
    for (int i = 0; names[i]; i++) {
        snprintf(full, sizeof(full), "%s/odd/%s", run, names[i]);
        CHECK_MSG(lt_s3_put(s3, &(lt_s3_object_t){.key = full}, names[i], strlen(names[i]), NULL,
                            err, sizeof(err)) == LT_OK,
                  "put %s: %s", names[i], err);
        CHECK_MSG(lt_s3_get(s3, full, b, err, sizeof(err)) == LT_OK, "get %s: %s", names[i], err);
        CHECK_STR(lt_buf_str(b), names[i]);
    }
    /* A key formed from hostile ids and a long unicode filename. */
    char fname[600] = "";
    for (int i = 0; i < 120; i++)
        strcat(fname, "\xc3\xa9");
    strcat(fname, " final.pdf");
    CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){run, "../..", "imap", "<CAF+x/y@mail>"},
                                   "1.2", fname, key, sizeof(key), err, sizeof(err)),
              LT_OK);
    CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = key, .content_type = "application/pdf"}, "pdf",
                        3, NULL, err, sizeof(err)),
              LT_OK);
    CHECK_INT(lt_s3_get(s3, key, b, err, sizeof(err)), LT_OK);
    CHECK_STR(lt_buf_str(b), "pdf");
    CHECK_INT(lt_objkey_message(&(lt_objkey_msg_t){run, "../..", "imap", "<CAF+x/y@mail>"}, key,
                                sizeof(key), err, sizeof(err)),
              LT_OK);
    CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = key, .content_type = "message/rfc822"}, "eml",
                        3, NULL, err, sizeof(err)),
              LT_OK);
    CHECK_INT(lt_s3_get(s3, key, b, err, sizeof(err)), LT_OK);
    CHECK_STR(lt_buf_str(b), "eml");
    lt_buf_destroy(b);
}

static void test_big_file(lt_s3_t *s3)
{
    const size_t n = 26u * 1024 * 1024;
    char err[512], key[512], sha[LT_S3_SHA256_HEX], want[65], msha[LT_S3_SHA256_HEX];
    uint8_t *data = lt_xmalloc(n);
    fill(data, n, 42);
    sha256_of(data, n, want);

    char path[] = "/tmp/lt_test_s3_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        free(data);
        return;
    }
    unlink(path);
    CHECK_INT(write(fd, data, n), (long long)n);
    lseek(fd, 123, SEEK_SET); /* the file position must not matter */

    key_of(key, sizeof(key), "big/message.eml");
    uint64_t size = 0;
    double t0 = lt_now_s();
    lt_err_t e = lt_s3_put_file(s3, &(lt_s3_object_t){.key = key, .content_type = "message/rfc822"},
                                fd, sha, &size, err, sizeof(err));
    double t_put = lt_now_s() - t0;
    CHECK_MSG(e == LT_OK, "put_file: %s", err);
    CHECK_STR(sha, want);
    CHECK_INT(size, n);
    uint64_t hsize = 0;
    CHECK_INT(lt_s3_head(s3, key, &hsize, NULL, msha, err, sizeof(err)), LT_OK);
    CHECK_INT(hsize, n);
    CHECK_STR(msha, want);

    lt_buf_t *b = lt_buf_new(32u * 1024 * 1024);
    t0 = lt_now_s();
    e = lt_s3_get(s3, key, b, err, sizeof(err));
    double t_get = lt_now_s() - t0;
    CHECK_MSG(e == LT_OK, "get: %s", err);
    CHECK_INT(lt_buf_len(b), n);
    CHECK(lt_buf_len(b) == n && memcmp(lt_buf_data(b), data, n) == 0);
    printf("26 MB: PUT (streamed from file, hashed first) %.1f MB/s, GET %.1f MB/s\n", 26.0 / t_put,
           26.0 / t_get);

    /* A buffer capped below the object is refused from Content-Length. */
    lt_buf_t *small = lt_buf_new(1024 * 1024);
    CHECK_INT(lt_s3_get(s3, key, small, err, sizeof(err)), LT_ERR_TOO_BIG);
    lt_buf_destroy(small);

    /* 1 MB objects from memory, a few times over the kept-alive connection. */
    const size_t m = 1024 * 1024;
    const int reps = 20;
    t0 = lt_now_s();
    for (int i = 0; i < reps; i++) {
        char k[512];
        snprintf(k, sizeof(k), "%s/mb/%d", run, i);
        CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = k}, data + (size_t)i * 1000, m, NULL, err,
                            sizeof(err)),
                  LT_OK);
    }
    t_put = lt_now_s() - t0;
    t0 = lt_now_s();
    for (int i = 0; i < reps; i++) {
        char k[512];
        snprintf(k, sizeof(k), "%s/mb/%d", run, i);
        CHECK_INT(lt_s3_get(s3, k, b, err, sizeof(err)), LT_OK);
        CHECK(lt_buf_len(b) == m && memcmp(lt_buf_data(b), data + (size_t)i * 1000, m) == 0);
    }
    t_get = lt_now_s() - t0;
    printf("1 MB x %d: PUT %.1f MB/s (%.1f ms each), GET %.1f MB/s (%.1f ms each)\n", reps,
           reps / t_put, 1000 * t_put / reps, reps / t_get, 1000 * t_get / reps);
    for (int i = 0; i < reps; i++) {
        char k[512];
        snprintf(k, sizeof(k), "%s/mb/%d", run, i);
        lt_s3_delete(s3, k, err, sizeof(err));
    }
    lt_s3_delete(s3, key, err, sizeof(err));
    lt_buf_destroy(b);
    close(fd);
    free(data);
}

static void test_refused(void)
{
    char err[512], key[512];
    key_of(key, sizeof(key), "refused");
    lt_s3_t *bad = open_s3("definitely-not-the-secret");
    if (bad) {
        CHECK_INT(lt_s3_put(bad, &(lt_s3_object_t){.key = key}, "x", 1, NULL, err, sizeof(err)),
                  LT_ERR_FINAL);
        CHECK_MSG(strstr(err, "SignatureDoesNotMatch") != NULL, "%s", err);
        CHECK_MSG(strstr(err, "definitely-not") == NULL, "secret in errstr: %s", err);
        lt_buf_t *b = lt_buf_new(100);
        CHECK_INT(lt_s3_get(bad, key, b, err, sizeof(err)), LT_ERR_FINAL);
        CHECK_MSG(strstr(err, "SignatureDoesNotMatch") != NULL, "%s", err);
        lt_buf_destroy(b);
        lt_s3_destroy(bad);
    }
    char e2[512];
    lt_s3_t *nokey = lt_s3_new(&(lt_s3_config_t){.endpoint = endpoint,
                                                 .region = region,
                                                 .bucket = bucket,
                                                 .access_key_id = "NOSUCHACCESSKEY",
                                                 .secret_access_key = secret,
                                                 .addressing = LT_S3_PATH_STYLE,
                                                 .ca_file = getenv("LATTICE_S3_CA_FILE"),
                                                 .timeout_s = 30},
                               e2, sizeof(e2));
    CHECK(nokey != NULL);
    if (nokey) {
        CHECK_INT(lt_s3_put(nokey, &(lt_s3_object_t){.key = key}, "x", 1, NULL, err, sizeof(err)),
                  LT_ERR_FINAL);
        CHECK_MSG(strstr(err, "InvalidAccessKeyId") != NULL, "%s", err);
        lt_s3_destroy(nokey);
    }
    /* The object was never written. */
    lt_s3_t *s3 = open_s3(secret);
    if (s3) {
        CHECK_INT(lt_s3_head(s3, key, NULL, NULL, NULL, err, sizeof(err)), LT_ERR_NOT_FOUND);
        lt_s3_destroy(s3);
    }
}

static void test_missing_bucket(void)
{
    char err[512], b2[64];
    snprintf(b2, sizeof(b2), "lt-missing-%ld", (long)getpid());
    lt_s3_t *s3 = lt_s3_new(&(lt_s3_config_t){.endpoint = endpoint,
                                              .region = region,
                                              .bucket = b2,
                                              .access_key_id = akid,
                                              .secret_access_key = secret,
                                              .addressing = LT_S3_PATH_STYLE,
                                              .ca_file = getenv("LATTICE_S3_CA_FILE"),
                                              .timeout_s = 30},
                            err, sizeof(err));
    CHECK(s3 != NULL);
    if (!s3)
        return;
    CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = "k"}, "x", 1, NULL, err, sizeof(err)),
              LT_ERR_FINAL);
    CHECK_MSG(strstr(err, "NoSuchBucket") != NULL, "%s", err);
    lt_s3_destroy(s3);
}

int main(void)
{
    endpoint = lt_test_env("LATTICE_S3_ENDPOINT");
    bucket = lt_test_env("LATTICE_S3_BUCKET");
    akid = lt_test_env("LATTICE_S3_ACCESS_KEY_ID");
    secret = lt_test_env("LATTICE_S3_SECRET_ACCESS_KEY");
    region = getenv("LATTICE_S3_REGION") && *getenv("LATTICE_S3_REGION")
                 ? getenv("LATTICE_S3_REGION")
                 : "us-east-1";
    snprintf(run, sizeof(run), "test-s3/%ld-%ld", (long)getpid(), (long)time(NULL));

    lt_s3_t *s3 = open_s3(secret);
    if (!s3)
        return lt_test_done("test_s3");
    char err[512];
    lt_err_t e = lt_s3_ensure_bucket(s3, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "ensure_bucket: %s", err);
    CHECK_INT(lt_s3_ensure_bucket(s3, err, sizeof(err)), LT_OK); /* idempotent */
    if (e == LT_OK) {
        test_round_trip(s3);
        test_odd_keys(s3);
        test_big_file(s3);
        test_refused();
        test_missing_bucket();
    }
    lt_s3_destroy(s3);
    return lt_test_done("test_s3");
}
