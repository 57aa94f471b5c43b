/* Modified UTF-7 (RFC 3501 5.1.3): table-driven, both directions, plus the
 * strictness cases (after isync's tst_imap_utf7.c). */
#include "lt_buf.h"
#include "lt_imap_utf7.h"
#include "lt_test.h"

static const struct {
    const char *utf8;
    const char *utf7;
} good[] = {
    {"", ""},
    {"INBOX", "INBOX"},
    {"&", "&-"},
    {"a&b", "a&-b"},
    {"&&", "&-&-"},
    {"Entw\xc3\xbc"
     "rfe",
     "Entw&APw-rfe"},
    {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
     "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-"},
    {"Gesch\xc3\xa4"
     "ftlich & Privat",
     "Gesch&AOQ-ftlich &- Privat"},
    {"\xf0\x9f\x93\xa7", "&2D3c5w-"},                          /* U+1F4E7 e-mail, a pair */
    {"a\xf0\x9f\x98\x80\xf0\x9f\x98\x81z", "a&2D3eANg93gE-z"}, /* two emoji in one run */
    {"\xc3\xa9\xf0\x9f\x98\x80", "&AOnYPd4A-"},
    {"tab\there", "tab&AAk-here"},
    {"del\x7f", "del&AH8-"},
    {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", "&BB8EQAQ4BDIENQRC-"},
};

static const char *bad7[] = {
    "&",               /* unterminated */
    "&AOQ",            /* unterminated */
    "a&AOQ-&AOQ-",     /* adjacent runs: not canonical */
    "&AGE-",           /* 'a' in base64 */
    "&AOQ=-",          /* '=' is not modified base64 */
    "&AO/-",           /* '/' is ',' in modified base64 */
    "&2D0-",           /* lone high surrogate */
    "&3gA-",           /* lone low surrogate */
    "&AOR-",           /* non-zero pad bits */
    "&AOQA-",          /* extra base64 character */
    "&AA-",            /* too short */
    "&AAA-",           /* U+0000 */
    "Entw\xc3\xbcrfe", /* 8-bit byte */
    "tab\there",       /* control character sent directly */
    "&2D3eANg-",       /* pair then a lone high surrogate */
};

static const char *bad8[] = {
    "\xc3",             /* truncated */
    "\xc0\xaf",         /* overlong '/' */
    "\xe0\x80\xaf",     /* overlong */
    "\xed\xa0\x80",     /* encoded surrogate */
    "\xf4\x90\x80\x80", /* > U+10FFFF */
    "\xff",
    "a\x80z",
};

int main(void)
{
    char err[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        lt_buf_t *b = lt_buf_new(1024);
        lt_err_t e = lt_imap_utf7_encode(good[i].utf8, strlen(good[i].utf8), b, err, sizeof(err));
        CHECK_MSG(e == LT_OK, "encode #%zu: %s", i, err);
        CHECK_STR(lt_buf_str(b), good[i].utf7);
        lt_buf_reset(b);
        e = lt_imap_utf7_decode(good[i].utf7, strlen(good[i].utf7), b, err, sizeof(err));
        CHECK_MSG(e == LT_OK, "decode #%zu: %s", i, err);
        CHECK_STR(lt_buf_str(b), good[i].utf8);
        lt_buf_destroy(b);
    }
    for (size_t i = 0; i < sizeof(bad7) / sizeof(bad7[0]); i++) {
        lt_buf_t *b = lt_buf_new(1024);
        lt_buf_append(b, "keep", 4);
        err[0] = 0;
        lt_err_t e = lt_imap_utf7_decode(bad7[i], strlen(bad7[i]), b, err, sizeof(err));
        CHECK_MSG(e == LT_ERR_INVALID, "decode of bad #%zu \"%s\" accepted", i, bad7[i]);
        CHECK_STR(lt_buf_str(b), "keep"); /* untouched on error */
        CHECK_MSG(strstr(err, "at byte") != NULL, "%s", err);
        lt_buf_destroy(b);
    }
    for (size_t i = 0; i < sizeof(bad8) / sizeof(bad8[0]); i++) {
        lt_buf_t *b = lt_buf_new(1024);
        lt_err_t e = lt_imap_utf7_encode(bad8[i], strlen(bad8[i]), b, err, sizeof(err));
        CHECK_MSG(e == LT_ERR_INVALID, "encode of bad UTF-8 #%zu accepted", i);
        CHECK_INT(lt_buf_len(b), 0);
        lt_buf_destroy(b);
    }
    /* U+0000 cannot be a mailbox name character. */
    {
        lt_buf_t *b = lt_buf_new(1024);
        CHECK_INT(lt_imap_utf7_encode("a\0b", 3, b, err, sizeof(err)), LT_ERR_INVALID);
        lt_buf_destroy(b);
    }
    /* The output cap holds. */
    {
        lt_buf_t *b = lt_buf_new(5);
        CHECK_INT(lt_imap_utf7_encode("Entw\xc3\xbcrfe", 9, b, err, sizeof(err)), LT_ERR_TOO_BIG);
        CHECK_INT(lt_buf_len(b), 0);
        lt_buf_destroy(b);
    }
    return lt_test_done("test_imap_utf7");
}
