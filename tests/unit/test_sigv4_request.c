/* lt_s3 without a server: SigV4 path encoding of keys, classification of
 * S3 error responses, argument validation of lt_s3_new. */
#include <string.h>

#include "lt_s3.h"
#include "lt_test.h"

static void test_encode_key(void)
{
    static const struct {
        const char *key, *want;
    } cases[] = {
        {"tenant/t/message.eml", "tenant/t/message.eml"},
        {"a b", "a%20b"},
        {"a+b", "a%2Bb"},
        {"100%", "100%25"},
        {"%2E.", "%252E."},
        {"x~y_z-.", "x~y_z-."},
        {"M\xc3\xa4rz", "M%C3%A4rz"},
        {"q?x=1&y#z", "q%3Fx%3D1%26y%23z"},
        {"a=b;c,d:e@f", "a%3Db%3Bc%2Cd%3Ae%40f"},
        {"emoji/\xf0\x9f\x93\xa7", "emoji/%F0%9F%93%A7"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_INT(lt_s3_encode_key(cases[i].key, out, sizeof(out)), LT_OK);
        CHECK_STR(out, cases[i].want);
    }
    CHECK_INT(lt_s3_encode_key("a b", out, 4), LT_ERR_TOO_BIG); /* needs 6 */
    CHECK_STR(out, "");
    CHECK_INT(lt_s3_encode_key("a b", out, 6), LT_OK);
}

static void test_classify(void)
{
    static const char sig[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"
        "<Message>The request signature we calculated does not match the signature you "
        "provided. Check your key and signing method.</Message><Key>d</Key></Error>";
    static const char akid[] = "<Error><Code>InvalidAccessKeyId</Code><Message>The Access Key "
                               "Id you provided does not exist in our records.</Message></Error>";
    static const char slow[] =
        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    static const char nokey[] = "<Error><Code>NoSuchKey</Code><Message>The specified key does "
                                "not exist.</Message></Error>";
    static const char nobucket[] = "<Error><Code>NoSuchBucket</Code><Message>The specified "
                                   "bucket does not exist</Message></Error>";
    static const char sha[] = "<Error><Code>XAmzContentSHA256Mismatch</Code><Message>The "
                              "provided &#39;x-amz-content-sha256&#39; header does not match "
                              "what was computed.</Message></Error>";
    static const char big[] = "<Error><Code>EntityTooLarge</Code><Message>x</Message></Error>";
    static const char skew[] = "<Error><Code>RequestTimeTooSkewed</Code></Error>";
    static const char rto[] = "<Error><Code>RequestTimeout</Code><Message>Your socket "
                              "connection\r\nwas idle</Message></Error>";
    static const char trunc[] = "<Error><Code>AccessDen";
    static const struct {
        long status;
        const char *body;
        lt_err_t want;
        const char *errstr;
    } cases[] = {
        {200, NULL, LT_OK, "HTTP 200"},
        {204, NULL, LT_OK, "HTTP 204"},
        {403, sig, LT_ERR_FINAL,
         "HTTP 403 SignatureDoesNotMatch: The request signature we calculated does not match "
         "the signature you provided. Check your key and signing method."},
        {403, akid, LT_ERR_FINAL,
         "HTTP 403 InvalidAccessKeyId: The Access Key Id you provided does not exist in our "
         "records."},
        {503, slow, LT_ERR_TEMPORARY, "HTTP 503 SlowDown: Please reduce your request rate."},
        {500, NULL, LT_ERR_TEMPORARY, "HTTP 500 (no error code)"},
        {502, "<html>bad gateway</html>", LT_ERR_TEMPORARY, "HTTP 502 (no error code)"},
        {429, NULL, LT_ERR_TEMPORARY, "HTTP 429 (no error code)"},
        {408, NULL, LT_ERR_TEMPORARY, "HTTP 408 (no error code)"},
        /* MinIO, seen by the fault campaign (a command failed for good) */
        {499,
         "<Error><Code>ClientDisconnected</Code><Message>Client disconnected before response "
         "was ready</Message></Error>",
         LT_ERR_TEMPORARY,
         "HTTP 499 ClientDisconnected: Client disconnected before response was ready"},
        {499, NULL, LT_ERR_TEMPORARY, "HTTP 499 (no error code)"},
        {400, rto, LT_ERR_TEMPORARY, "HTTP 400 RequestTimeout: Your socket connection??was idle"},
        {403, skew, LT_ERR_TEMPORARY, "HTTP 403 RequestTimeTooSkewed"},
        {404, nokey, LT_ERR_NOT_FOUND, "HTTP 404 NoSuchKey: The specified key does not exist."},
        {404, NULL, LT_ERR_NOT_FOUND, "HTTP 404 NotFound"},
        {404, nobucket, LT_ERR_FINAL, "HTTP 404 NoSuchBucket: The specified bucket does not exist"},
        {400, sha, LT_ERR_FINAL,
         "HTTP 400 XAmzContentSHA256Mismatch: The provided 'x-amz-content-sha256' header does "
         "not match what was computed."},
        {400, big, LT_ERR_TOO_BIG, "HTTP 400 EntityTooLarge: x"},
        {413, NULL, LT_ERR_TOO_BIG, "HTTP 413 (no error code)"},
        {403, NULL, LT_ERR_FINAL, "HTTP 403 (no error code)"},
        {403, trunc, LT_ERR_FINAL, "HTTP 403 (no error code)"},
        {301, NULL, LT_ERR_FINAL, "HTTP 301 (no error code)"},
        {307, NULL, LT_ERR_TEMPORARY, "HTTP 307 (no error code)"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *b = cases[i].body;
        lt_err_t e = lt_s3_classify(cases[i].status, b, b ? strlen(b) : 0, err, sizeof(err));
        CHECK_MSG(e == cases[i].want, "case %zu: %s", i, lt_err_name(e));
        CHECK_STR(err, cases[i].errstr);
    }
    /* A body with no NUL terminator right after the tag must not be over-read
     * (ASan would catch it): classify a slice of a longer string. */
    CHECK_INT(lt_s3_classify(403, sig, 30, err, sizeof(err)), LT_ERR_FINAL);
    CHECK_STR(err, "HTTP 403 (no error code)");
    /* Small errstr: truncated, still terminated. */
    char tiny[12];
    CHECK_INT(lt_s3_classify(403, sig, strlen(sig), tiny, sizeof(tiny)), LT_ERR_FINAL);
    CHECK_INT(strlen(tiny), sizeof(tiny) - 1);
}

static void test_new_validation(void)
{
    char err[256];
    lt_s3_t *s3 = lt_s3_new(&(lt_s3_config_t){.endpoint = "http://127.0.0.1:9",
                                              .region = "us-east-1",
                                              .bucket = "lattice-mail",
                                              .access_key_id = "AK",
                                              .secret_access_key = "SK",
                                              .addressing = LT_S3_PATH_STYLE,
                                              .timeout_s = 5},
                            err, sizeof(err));
    CHECK_MSG(s3 != NULL, "%s", err);
    char uri[256];
    if (s3) {
        CHECK_STR(lt_s3_bucket(s3), "lattice-mail");
        CHECK_INT(lt_s3_uri(s3, "tenant/t/x.eml", uri, sizeof(uri)), LT_OK);
        CHECK_STR(uri, "s3://lattice-mail/tenant/t/x.eml");
        CHECK_INT(lt_s3_uri(s3, "../x", uri, sizeof(uri)), LT_ERR_INVALID);
        /* Unsafe keys are refused before any network I/O. */
        lt_buf_t *b = lt_buf_new(100);
        CHECK_INT(lt_s3_get(s3, "a/../b", b, err, sizeof(err)), LT_ERR_INVALID);
        CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = "/abs"}, "x", 1, NULL, err, sizeof(err)),
                  LT_ERR_INVALID);
        /* A content type that is not a bounded media type (a message
         * declares its parts' types) is sent as application/octet-stream,
         * never an error that would repeat for the message: these get as
         * far as the network (nothing listens: temporary). */
        CHECK_INT(
            lt_s3_put(s3, &(lt_s3_object_t){.key = "ok", .content_type = "text/plain\r\nX-Evil: 1"},
                      "x", 1, NULL, err, sizeof(err)),
            LT_ERR_TEMPORARY);
        char longtype[320] = "application/";
        memset(longtype + 12, 'x', 300);
        longtype[312] = 0;
        CHECK_INT(lt_s3_put(s3, &(lt_s3_object_t){.key = "ok", .content_type = longtype}, "x", 1,
                            NULL, err, sizeof(err)),
                  LT_ERR_TEMPORARY);
        CHECK_INT(
            lt_s3_put_file(s3, &(lt_s3_object_t){.key = "ok"}, -1, NULL, NULL, err, sizeof(err)),
            LT_ERR_INVALID);
        /* Nothing listens on port 9: a network failure is temporary. */
        CHECK_INT(lt_s3_head(s3, "ok", NULL, NULL, NULL, err, sizeof(err)), LT_ERR_TEMPORARY);
        CHECK(strstr(err, "HEAD ok") != NULL);
        lt_buf_destroy(b);
        lt_s3_destroy(s3);
    }
    static const struct {
        const char *endpoint, *region, *bucket, *ak, *sk;
        long timeout;
    } bad[] = {
        {"ftp://host", "us-east-1", "lattice-mail", "AK", "SK", 5},
        {"http://host/path", "us-east-1", "lattice-mail", "AK", "SK", 5},
        {"http://host?x=1", "us-east-1", "lattice-mail", "AK", "SK", 5},
        {"http://u:p@host", "us-east-1", "lattice-mail", "AK", "SK", 5},
        {"not a url", "us-east-1", "lattice-mail", "AK", "SK", 5},
        {"http://host", "us:east", "lattice-mail", "AK", "SK", 5},
        {"http://host", "", "lattice-mail", "AK", "SK", 5},
        {"http://host", "us-east-1", "Bad_Bucket", "AK", "SK", 5},
        {"http://host", "us-east-1", "lattice-mail", "", "SK", 5},
        {"http://host", "us-east-1", "lattice-mail", "AK", "", 5},
        {"http://host", "us-east-1", "lattice-mail", "AK", "S\nK", 5},
        {"http://host", "us-east-1", "lattice-mail", "AK", "SK", 0},
        {NULL, "us-east-1", "lattice-mail", "AK", "SK", 5},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        s3 = lt_s3_new(&(lt_s3_config_t){.endpoint = bad[i].endpoint,
                                         .region = bad[i].region,
                                         .bucket = bad[i].bucket,
                                         .access_key_id = bad[i].ak,
                                         .secret_access_key = bad[i].sk,
                                         .addressing = LT_S3_PATH_STYLE,
                                         .timeout_s = bad[i].timeout},
                       err, sizeof(err));
        CHECK_MSG(s3 == NULL, "case %zu accepted", i);
        CHECK_MSG(err[0] != 0, "case %zu: no errstr", i);
        CHECK_MSG(strstr(err, "SK") == NULL, "case %zu: secret in errstr: %s", i, err);
        lt_s3_destroy(s3);
    }
    /* Virtual-host style is accepted too. */
    s3 = lt_s3_new(&(lt_s3_config_t){.endpoint = "https://s3.eu-central-1.amazonaws.com",
                                     .region = "eu-central-1",
                                     .bucket = "lattice-mail",
                                     .access_key_id = "AK",
                                     .secret_access_key = "SK",
                                     .addressing = LT_S3_VIRTUAL_HOSTED,
                                     .timeout_s = 5},
                   err, sizeof(err));
    CHECK_MSG(s3 != NULL, "%s", err);
    lt_s3_destroy(s3);
}

int main(void)
{
    test_encode_key();
    test_classify();
    test_new_validation();
    return lt_test_done("test_sigv4_request");
}
