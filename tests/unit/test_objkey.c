/* Object key conventions: escaping table, truncation with hash, layout,
 * safety predicate, s3:// URIs. */
#include <stdlib.h>
#include <string.h>

#include "lt_media_type.h"
#include "lt_objkey.h"
#include "lt_test.h"

typedef struct {
    const char *raw;
    size_t len; /* 0: strlen(raw) */
    const char *want;
} esc_case_t;

static const esc_case_t esc_cases[] = {
    {"abcXYZ019", 0, "abcXYZ019"},
    {"a_b.c-d", 0, "a_b.c-d"},
    {"..", 0, "%2E."},
    {".", 0, "%2E"},
    {"../../x", 0, "%2E.%2F..%2Fx"},
    {".hidden", 0, "%2Ehidden"},
    {"a/b", 0, "a%2Fb"},
    {"a\\b", 0, "a%5Cb"},
    {"\x01", 0, "%01"},
    {"%2e%2e", 0, "%252e%252e"},
    {"a b+c", 0, "a%20b%2Bc"},
    {"~x", 0, "%7Ex"},
    {"<CAF=abc@mail.gmail.com>", 0, "%3CCAF%3Dabc%40mail.gmail.com%3E"},
    {"1700000000-42", 0, "1700000000-42"},
    {"M\xc3\xa4rz.pdf", 0, "M%C3%A4rz.pdf"},
    {"\xff\xfe", 0, "%FF%FE"},
    {"a\0b", 3, "a%00b"},
    {"\0", 1, "%00"},
};

static void test_escape_table(void)
{
    char out[LT_OBJKEY_MAX + 1], err[256];
    for (size_t i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
        const esc_case_t *c = &esc_cases[i];
        size_t len = c->len ? c->len : strlen(c->raw);
        lt_err_t e = lt_objkey_component(c->raw, len, LT_OBJKEY_ID_LIMIT, out, sizeof(out), err,
                                         sizeof(err));
        CHECK_INT(e, LT_OK);
        CHECK_STR(out, c->want);
        /* Reversible: decoding gives the original bytes back. */
        char back[LT_OBJKEY_MAX + 1];
        size_t blen = 0;
        CHECK_INT(lt_objkey_decode_component(out, back, sizeof(back), &blen), LT_OK);
        CHECK_INT(blen, len);
        CHECK(memcmp(back, c->raw, len) == 0);
    }
}

static void test_escape_errors(void)
{
    char out[LT_OBJKEY_MAX + 1], err[256];
    CHECK_INT(
        lt_objkey_component("", 0, (lt_objkey_limit_t){150, 0}, out, sizeof(out), err, sizeof(err)),
        LT_ERR_INVALID);
    CHECK_INT(lt_objkey_component(NULL, 3, (lt_objkey_limit_t){150, 0}, out, sizeof(out), err,
                                  sizeof(err)),
              LT_ERR_INVALID);
    CHECK_INT(lt_objkey_component("abc", 3, (lt_objkey_limit_t){10, 0}, out, sizeof(out), err,
                                  sizeof(err)),
              LT_ERR_INVALID); /* cap below minimum */
    CHECK_INT(
        lt_objkey_component("abc", 3, (lt_objkey_limit_t){150, 0}, out, 150, err, sizeof(err)),
        LT_ERR_INVALID); /* output smaller than cap + 1 */

    /* Decoding refuses what the encoder never produces. */
    char back[64];
    const char *bad[] = {"",     ".",   "..",  ".a",  "a%2e", "a%2E", "a%41", "a%4",
                         "a%G1", "a/b", "a b", "x~0", "%",    "a\\b", "a%2",  NULL};
    for (int i = 0; bad[i]; i++)
        CHECK_MSG(lt_objkey_decode_component(bad[i], back, sizeof(back), NULL) != LT_OK,
                  "decoded \"%s\"", bad[i]);
    CHECK_INT(lt_objkey_decode_component("abcdef", back, 4, NULL), LT_ERR_TOO_BIG);
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void test_truncation(void)
{
    char out[LT_OBJKEY_MAX + 1], out2[LT_OBJKEY_MAX + 1], err[256];
    char longname[1200];

    /* 300 x 'a' + ".pdf": cut to 200 bytes, extension kept after the hash. */
    memset(longname, 'a', 300);
    strcpy(longname + 300, ".pdf");
    CHECK_INT(lt_objkey_component(longname, strlen(longname), LT_OBJKEY_FILENAME_LIMIT, out,
                                  sizeof(out), err, sizeof(err)),
              LT_OK);
    CHECK_INT(strlen(out), LT_OBJKEY_FILENAME_MAX);
    CHECK(strlen(out) > 4 && strcmp(out + strlen(out) - 4, ".pdf") == 0);
    CHECK_INT(count_char(out, '~'), 1);
    char *tilde = strchr(out, '~');
    CHECK(tilde && strspn(tilde + 1, "0123456789abcdef") == 16);
    CHECK(lt_objkey_decode_component(out, longname, sizeof(longname), NULL) != LT_OK);

    /* Same prefix, different tail: different names (the hash covers all). */
    memset(longname, 'a', 300);
    strcpy(longname + 300, "b.pdf");
    CHECK_INT(lt_objkey_component(longname, strlen(longname), LT_OBJKEY_FILENAME_LIMIT, out2,
                                  sizeof(out2), err, sizeof(err)),
              LT_OK);
    CHECK(strcmp(out, out2) != 0);
    CHECK_INT(strlen(out2), LT_OBJKEY_FILENAME_MAX);

    /* Deterministic. */
    char out3[LT_OBJKEY_MAX + 1];
    lt_objkey_component(longname, strlen(longname), LT_OBJKEY_FILENAME_LIMIT, out3, sizeof(out3),
                        err, sizeof(err));
    CHECK_STR(out2, out3);

    /* Escapes are never cut in half; multi-byte escapes expand 3x. */
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        memcpy(longname + n, "\xc3\xa9", 2); /* é */
        n += 2;
    }
    longname[n] = 0;
    CHECK_INT(
        lt_objkey_component(longname, n, LT_OBJKEY_ID_LIMIT, out, sizeof(out), err, sizeof(err)),
        LT_OK);
    CHECK(strlen(out) <= LT_OBJKEY_COMPONENT_MAX);
    tilde = strchr(out, '~');
    CHECK(tilde && (tilde - out) % 3 == 0); /* only whole %XX before the '~' */
    CHECK(tilde && strlen(tilde) == 17);

    /* An id is cut without extension logic. */
    memset(longname, 'x', 400);
    strcpy(longname + 400, ".eml");
    lt_objkey_component(longname, strlen(longname), LT_OBJKEY_ID_LIMIT, out, sizeof(out), err,
                        sizeof(err));
    CHECK_INT(strlen(out), LT_OBJKEY_COMPONENT_MAX);
    CHECK(strstr(out, ".eml") == NULL);

    /* Exactly at the cap: kept, no hash. */
    memset(longname, 'y', LT_OBJKEY_COMPONENT_MAX);
    longname[LT_OBJKEY_COMPONENT_MAX] = 0;
    lt_objkey_component(longname, LT_OBJKEY_COMPONENT_MAX, LT_OBJKEY_ID_LIMIT, out, sizeof(out),
                        err, sizeof(err));
    CHECK_STR(out, longname);
    /* One more byte: truncated. */
    longname[LT_OBJKEY_COMPONENT_MAX] = 'y';
    longname[LT_OBJKEY_COMPONENT_MAX + 1] = 0;
    lt_objkey_component(longname, LT_OBJKEY_COMPONENT_MAX + 1, LT_OBJKEY_ID_LIMIT, out, sizeof(out),
                        err, sizeof(err));
    CHECK_INT(count_char(out, '~'), 1);

    /* A very long extension is not kept (it is part of the name). */
    memset(longname, 'z', 300);
    strcpy(longname + 300, ".abcdefghijklmnopqrstuvwxyz");
    lt_objkey_component(longname, strlen(longname), LT_OBJKEY_FILENAME_LIMIT, out, sizeof(out), err,
                        sizeof(err));
    CHECK(strstr(out, ".abcdefghijklmnopqrstuvwxyz") == NULL);
    CHECK_INT(strlen(out), LT_OBJKEY_FILENAME_MAX);
}

static void test_layout(void)
{
    char key[LT_OBJKEY_MAX + 1], pre[LT_OBJKEY_MAX + 1], err[256];
    CHECK_INT(lt_objkey_message(&(lt_objkey_msg_t){"acme", "42", "imap", "1700000000-17"}, key,
                                sizeof(key), err, sizeof(err)),
              LT_OK);
    CHECK_STR(key, "tenant/acme/account/42/provider/imap/message/1700000000-17/message.eml");
    CHECK_INT(lt_objkey_message_prefix(&(lt_objkey_msg_t){"acme", "42", "imap", "1700000000-17"},
                                       pre, sizeof(pre), err, sizeof(err)),
              LT_OK);
    CHECK_STR(pre, "tenant/acme/account/42/provider/imap/message/1700000000-17/");

    CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){"acme", "42", "gmail", "18c2f0a1b2c3d4e5"},
                                   "2", "Rechnung M\xc3\xa4rz.pdf", key, sizeof(key), err,
                                   sizeof(err)),
              LT_OK);
    CHECK_STR(key, "tenant/acme/account/42/provider/gmail/message/18c2f0a1b2c3d4e5/attachments/2/"
                   "Rechnung%20M%C3%A4rz.pdf");

    /* Traversal attempts stay inside the message's folder. */
    CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){"../..", "..", "/", "../../x"}, ".",
                                   "../../../etc/passwd", key, sizeof(key), err, sizeof(err)),
              LT_OK);
    CHECK_STR(key,
              "tenant/%2E.%2F../account/%2E./provider/%2F/message/%2E.%2F..%2Fx/attachments/%2E/"
              "%2E.%2F..%2F..%2Fetc%2Fpasswd");
    CHECK(lt_objkey_is_safe(key));
    CHECK_INT(count_char(key, '/'), 10);

    /* A missing filename: "unnamed~" + the hash of "" (as documented). */
    CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){"t", "a", "p", "m"}, "1", NULL, key,
                                   sizeof(key), err, sizeof(err)),
              LT_OK);
    CHECK_STR(key,
              "tenant/t/account/a/provider/p/message/m/attachments/1/unnamed~e3b0c44298fc1c14");
    /* An empty filename is another input, so another key, just as stable. */
    char key2[LT_OBJKEY_MAX + 1];
    CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){"t", "a", "p", "m"}, "1", "", key2,
                                   sizeof(key2), err, sizeof(err)),
              LT_OK);
    CHECK_STR(key2, "tenant/t/account/a/provider/p/message/m/attachments/1/empty~e3b0c44298fc1c14");
    CHECK(strcmp(key, key2) != 0);
    CHECK(lt_objkey_is_safe(key2));
    /* ... neither collides with a real file literally named so, nor with
     * a made-up default name */
    const char *lookalikes[] = {
        "unnamed~e3b0c44298fc1c14", "empty~e3b0c44298fc1c14", "unnamed", "empty", "attachment",
        "~e3b0c44298fc1c14"};
    for (size_t i = 0; i < sizeof(lookalikes) / sizeof(lookalikes[0]); i++) {
        char k3[LT_OBJKEY_MAX + 1];
        CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){"t", "a", "p", "m"}, "1", lookalikes[i],
                                       k3, sizeof(k3), err, sizeof(err)),
                  LT_OK);
        CHECK_MSG(strcmp(k3, key) && strcmp(k3, key2), "%s collides", lookalikes[i]);
    }
    /* Two unnamed attachments of one message: their ids keep them apart. */
    CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){"t", "a", "p", "m"}, "2", NULL, key2,
                                   sizeof(key2), err, sizeof(err)),
              LT_OK);
    CHECK_STR(key2,
              "tenant/t/account/a/provider/p/message/m/attachments/2/unnamed~e3b0c44298fc1c14");
    CHECK(strcmp(key, key2) != 0);

    /* Empty ids are refused, the output is emptied. */
    CHECK_INT(lt_objkey_message(&(lt_objkey_msg_t){"", "a", "p", "m"}, key, sizeof(key), err,
                                sizeof(err)),
              LT_ERR_INVALID);
    CHECK_STR(key, "");
    CHECK(strstr(err, "tenant") != NULL);
    CHECK_INT(lt_objkey_message(&(lt_objkey_msg_t){"t", "a", "p", NULL}, key, sizeof(key), err,
                                sizeof(err)),
              LT_ERR_INVALID);
    CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){"t", "a", "p", "m"}, "", "f", key,
                                   sizeof(key), err, sizeof(err)),
              LT_ERR_INVALID);

    /* Too small an output buffer. */
    char small[20];
    CHECK_INT(lt_objkey_message(&(lt_objkey_msg_t){"t", "a", "p", "m"}, small, sizeof(small), err,
                                sizeof(err)),
              LT_ERR_TOO_BIG);

    /* Worst case: every component at its cap still fits S3's 1024 bytes. */
    char huge[2000];
    memset(huge, '/', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = 0;
    CHECK_INT(lt_objkey_attachment(&(lt_objkey_msg_t){huge, huge, huge, huge}, huge, huge, key,
                                   sizeof(key), err, sizeof(err)),
              LT_OK);
    CHECK(strlen(key) <= LT_OBJKEY_MAX);
    CHECK(lt_objkey_is_safe(key));
    CHECK_INT(count_char(key, '/'), 10);
    CHECK_INT(lt_objkey_message_prefix(&(lt_objkey_msg_t){huge, huge, huge, huge}, pre, sizeof(pre),
                                       err, sizeof(err)),
              LT_OK);
    CHECK(strncmp(key, pre, strlen(pre)) == 0);

    /* Distinct ids that look alike after naive cleaning stay distinct. */
    const char *alike[] = {"a/b", "a%2Fb", "a_b", "a b", "a\\b", "a%b", "a.b", NULL};
    char seen[8][LT_OBJKEY_MAX + 1];
    int n = 0;
    for (int i = 0; alike[i]; i++, n++)
        lt_objkey_message(&(lt_objkey_msg_t){"t", "a", "p", alike[i]}, seen[i], sizeof(seen[i]),
                          err, sizeof(err));
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            CHECK_MSG(strcmp(seen[i], seen[j]) != 0, "%s == %s", alike[i], alike[j]);
}

static void test_is_safe(void)
{
    const char *good[] = {"a",         "a/b",   "tenant/t/message.eml",   "a b+c%d", "M\xc3\xa4rz",
                          "x/.hidden", "x/...", "emoji/\xf0\x9f\x93\xa7", NULL};
    const char *bad[] = {"",
                         "/a",
                         "a/",
                         "a//b",
                         "./a",
                         "a/./b",
                         "a/..",
                         "..",
                         "a\\b",
                         "a\x01",
                         "a\x7f",
                         "a\tb",
                         "\xff",
                         "\xc3",
                         "\xc0\xaf",
                         "\xed\xa0\x80",
                         "\xf4\x90\x80\x80",
                         "a\nb",
                         NULL};
    for (int i = 0; good[i]; i++)
        CHECK_MSG(lt_objkey_is_safe(good[i]), "should be safe: %s", good[i]);
    for (int i = 0; bad[i]; i++)
        CHECK_MSG(!lt_objkey_is_safe(bad[i]), "should be unsafe: case %d", i);
    char big[LT_OBJKEY_MAX + 2];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK(!lt_objkey_is_safe(big));
    big[LT_OBJKEY_MAX] = 0;
    CHECK(lt_objkey_is_safe(big));
    CHECK(!lt_objkey_is_safe(NULL));
}

static void test_bucket(void)
{
    const char *good[] = {"lattice-mail", "abc", "a.b.c", "my-bucket-01", NULL};
    const char *bad[] = {"ab",   "Lattice", "-abc",        "abc-", "a..b", "a.-b",
                         "a-.b", "a_b",     "192.168.1.1", "a/b",  "",     NULL};
    for (int i = 0; good[i]; i++)
        CHECK_MSG(lt_objkey_bucket_valid(good[i]), "should be valid: %s", good[i]);
    for (int i = 0; bad[i]; i++)
        CHECK_MSG(!lt_objkey_bucket_valid(bad[i]), "should be invalid: %s", bad[i]);
    char big[70];
    memset(big, 'b', 64);
    big[64] = 0;
    CHECK(!lt_objkey_bucket_valid(big));
    big[63] = 0;
    CHECK(lt_objkey_bucket_valid(big));
}

static void test_uri(void)
{
    char uri[LT_OBJKEY_URI_MAX + 1], b[LT_OBJKEY_BUCKET_MAX + 1], k[LT_OBJKEY_MAX + 1];
    char err[256];
    CHECK_INT(lt_objkey_uri_format("lattice-mail", "tenant/t/x.eml", uri, sizeof(uri)), LT_OK);
    CHECK_STR(uri, "s3://lattice-mail/tenant/t/x.eml");
    CHECK_INT(lt_objkey_uri_parse(uri, b, sizeof(b), k, sizeof(k), err, sizeof(err)), LT_OK);
    CHECK_STR(b, "lattice-mail");
    CHECK_STR(k, "tenant/t/x.eml");

    CHECK_INT(lt_objkey_uri_format("lattice-mail", "../x", uri, sizeof(uri)), LT_ERR_INVALID);
    CHECK_INT(lt_objkey_uri_format("Bad_Bucket", "x", uri, sizeof(uri)), LT_ERR_INVALID);
    CHECK_INT(lt_objkey_uri_format("lattice-mail", "x/y", uri, 10), LT_ERR_TOO_BIG);
    CHECK_STR(uri, "");

    /* Round trip of a generated key with escapes. */
    char key[LT_OBJKEY_MAX + 1];
    lt_objkey_attachment(&(lt_objkey_msg_t){"t", "a", "p", "<id@x>"}, "1", "a b.txt", key,
                         sizeof(key), err, sizeof(err));
    CHECK_INT(lt_objkey_uri_format("lattice-mail", key, uri, sizeof(uri)), LT_OK);
    CHECK_INT(lt_objkey_uri_parse(uri, b, sizeof(b), k, sizeof(k), err, sizeof(err)), LT_OK);
    CHECK_STR(k, key);

    const char *bad[] = {"",
                         "s3:/b/k",
                         "S3://lattice-mail/k",
                         "http://lattice-mail/k",
                         "s3://lattice-mail",
                         "s3://lattice-mail/",
                         "s3://lattice-mail//k",
                         "s3://lattice-mail/../k",
                         "s3://lattice-mail/a/../../k",
                         "s3://lattice-mail/a\\b",
                         "s3://lattice-mail/a\x01",
                         "s3://ab/k",
                         "s3:///k",
                         "s3://Lattice/k",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        CHECK_MSG(lt_objkey_uri_parse(bad[i], b, sizeof(b), k, sizeof(k), err, sizeof(err)) ==
                      LT_ERR_INVALID,
                  "accepted \"%s\"", bad[i]);
        CHECK_STR(k, "");
    }
    CHECK_INT(lt_objkey_uri_parse(NULL, b, sizeof(b), k, sizeof(k), err, sizeof(err)),
              LT_ERR_INVALID);
    CHECK_INT(lt_objkey_uri_parse("s3://lattice-mail/abcdef", b, sizeof(b), k, 4, err, sizeof(err)),
              LT_ERR_TOO_BIG);
}

/* The manifest key of a message with a long id, and the content type an
 * object is stored with. */
static void test_manifest_and_ctype(void)
{
    char key[LT_OBJKEY_MAX + 1], err[256];
    CHECK_INT(
        lt_objkey_manifest(&(lt_objkey_msg_t){"acme", "42", "imap", "INBOX;UIDVALIDITY=1;UID=7"},
                           key, sizeof(key), err, sizeof(err)),
        LT_OK);
    CHECK_STR(key, "tenant/acme/account/42/provider/imap/message/INBOX%3BUIDVALIDITY%3D1%3BUID%3D7/"
                   "manifest.json");
    CHECK(lt_objkey_is_safe(key));
    char small[40];
    CHECK(lt_objkey_manifest(&(lt_objkey_msg_t){"acme", "42", "imap", "7"}, small, sizeof(small),
                             err, sizeof(err)) != LT_OK);

    const char *ok[] = {"application/pdf", "image/svg+xml", "message/rfc822",
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        "Text/Plain"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        CHECK_STR(lt_media_type_safe(ok[i]), ok[i]);
    char longsub[300] = "application/";
    memset(longsub + 12, 'x', 250);
    longsub[262] = 0;
    char name64[80] = "application/";
    memset(name64 + 12, 'y', 64);
    name64[76] = 0;
    const char *bad[] = {NULL, "", "text", "text/", "/plain", "text/plain; charset=utf-8",
                         "text/pl ain", "text/plain\r\nX-Amz-Meta-Evil: 1", "te{xt/plain",
                         "text/plain/x", ".text/plain", "text/\xc3\xa9", longsub, name64};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_STR(lt_media_type_safe(bad[i]), "application/octet-stream");
}

int main(void)
{
    test_manifest_and_ctype();
    test_escape_table();
    test_escape_errors();
    test_truncation();
    test_layout();
    test_is_safe();
    test_bucket();
    test_uri();
    return lt_test_done("test_objkey");
}
