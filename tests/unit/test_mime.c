/* lt_mime: table-driven over the sample messages of tests/data/mime/ (made
 * by make_samples.py, which also computed the expected sizes and SHA-256
 * with Python's hashlib). Each case is parsed from the file, from memory and
 * with its line ends turned into CRLF; all three must give the same values. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_mime.h"
#include "lt_test.h"

#define DATA LT_SOURCE_DIR "/tests/data/mime/"

/* Equal strings, or both NULL when b is NULL. */
#define CHECK_OPT(ctx, a, b)                                                                       \
    do {                                                                                           \
        const char *x_ = (a), *y_ = (b);                                                           \
        if (!y_)                                                                                   \
            CHECK_MSG(x_ == NULL, "%s: %s: expected NULL, got \"%s\"", ctx, #a, x_);               \
        else                                                                                       \
            CHECK_MSG(x_ && !strcmp(x_, y_), "%s: %s: \"%s\" != \"%s\"", ctx, #a,                  \
                      x_ ? x_ : "(null)", y_);                                                     \
    } while (0)

typedef struct {
    const char *id, *filename, *ctype, *disposition, *content_id;
    uint64_t size;
    const char *sha256;
} exp_att_t;

typedef struct {
    const char *file;
    unsigned flags;
    const char *message_id, *subject;
    int64_t date_ms;
    const char *in_reply_to;
    const char *refs[4];
    const char *from, *to, *cc;
    const char *text_source, *text_part_id, *text;
    size_t natt;
    exp_att_t att[4];
} exp_t;

static const exp_t CASES[] = {
    {.file = "plain.eml",
     .message_id = "plain-1@example.com",
     .subject = "Hello plain",
     .date_ms = 1764063000000LL,
     .in_reply_to = "prev@example.com",
     .refs = {"root@example.com", "prev@example.com"},
     .from = "Alice Example <alice@example.com>",
     .to = "Bob <bob@example.org>, carol@example.net",
     .cc = "\"Doe, John\" <john@example.com>, Team: dan@example.com, erin@example.com;",
     .text_source = "text/plain",
     .text_part_id = "1",
     .text = "Hello Bob,\n\nThis is plain ASCII.\n-- \nAlice\n"},
    {.file = "alternative.eml",
     .message_id = "alt-1@example.com",
     .subject = "Grüße from the team",
     .date_ms = 1764144000000LL,
     .from = "Jürgen Müller <juergen@example.de>",
     .to = "team@example.com",
     .text_source = "text/plain",
     .text_part_id = "1",
     .text = "Hallo, Grüße aus München. This line is long enough to need a soft break.\n"},
    {.file = "mixed3.eml",
     .message_id = "mixed-3@example.com",
     .subject = "Café crème menu",
     .date_ms = 1764305999000LL,
     .from = "Café Owner <owner@example.fr>",
     .to = "André <andre@example.fr>",
     .text_source = "text/plain",
     .text_part_id = "1",
     .text = "Voici le menu du café.\n",
     .natt = 3,
     .att = {{"2", "report.pdf", "application/pdf", "attachment", NULL, 272,
              "ee008b17f0184f659dc798e138ffd0a968789fcdfc0314e4fd19760f6f50c7d6"},
             {"3", "€.txt", "text/plain", "attachment", NULL, 16,
              "a0ee7e4f577c4cf834bf7e37e7ea9d6f54ef25ddf962ea639eaaab7eb5846aaa"},
             {"4", "café.bin", "application/octet-stream", NULL, NULL, 10,
              "1038b7a50d198e03d9229f2ac69f72c13add2193e7b696d5ccbf1ab435004353"}}},
    {.file = "eightbit-utf8.eml",
     .subject = "Grüße",
     .from = "müller@example.de",
     .text_source = "text/plain",
     .text_part_id = "1",
     .text = "Grüße aus München — ok\n"},
    {.file = "eightbit-latin1.eml",
     .subject = "Café € 5",
     .from = "owner@example.fr",
     .text_source = "text/plain",
     .text_part_id = "1",
     .text = "Café crème € 5\n"},
    {.file = "no-closing-boundary.eml",
     .subject = "no closing boundary",
     .from = "a@example.com",
     .text_source = "text/plain",
     .text_part_id = "1",
     .text = "first part",
     .natt = 1,
     .att = {{"2", "tail.bin", "application/octet-stream", NULL, NULL, 9,
              "4929d70f0f319165ef1db08ee56929a805c4ff657e2497c10c62fe6bfe155d29"}}},
    /* bad base64: invalid characters skipped, a cut quantum dropped; an
     * unknown charset read as UTF-8 when it is UTF-8 */
    {.file = "bad-base64.eml",
     .subject = "bad base64",
     .from = "a@example.com",
     .text_source = "text/plain",
     .text_part_id = "1",
     .text = "body in an unknown charset: café",
     .natt = 2,
     .att = {{"2", "broken.bin", "application/octet-stream", "attachment", NULL, 24,
              "dce9e9aade076d53ede4cab56608e54a7e7cae465925d9bbd2964b6319bb2278"},
             {"3", "truncated.bin", "application/octet-stream", "attachment", NULL, 9,
              "3d0883898481e93521c583ccd0075e5436e8621c6660ffdfd85c92663b02638d"}}},
    /* gmime skips the line without a colon and reads on */
    {.file = "header-no-colon.eml",
     .subject = "before",
     .from = "a@example.com",
     .to = "b@example.com",
     .text_source = "text/plain",
     .text_part_id = "1",
     .text = "body\n"},
    /* multipart with no boundary: its text is the prologue */
    {.file = "no-boundary-param.eml",
     .subject = "multipart without boundary",
     .from = "a@example.com",
     .text_source = "text/plain",
     .text = "just text\n"},
    /* message/rfc822 parts: attachments, the bytes of the embedded message
     * (gmime writes them with LF line ends, so CRLF input gives the same) */
    {
        .file = "nested-rfc822.eml",
        .message_id = "outer-1@example.com",
        .subject = "Fwd: report",
        .from = "fwd@example.com",
        .to = "x@example.com",
        .text_source = "text/plain",
        .text_part_id = "1",
        .text = "See the attached messages.",
        .natt = 2,
        .att = {{"2", "Inner report_ Q3_Q4.eml", "message/rfc822", NULL, NULL, 174,
                 "c8fecc70c3bcf4c16ca9cdf3cf3bbe5d597851cf1f8e98e8a22966954a43c80a"},
                {"3", "message.eml", "message/rfc822", "attachment", NULL, 69,
                 "a0f3ebf811c6e41ff85335282f0982f066a2fb16d80ba0173883306d4ec0607b"}},
    },
    {.file = "deep-32.eml",
     .subject = "deep 32",
     .from = "a@example.com",
     .text = "",
     .natt = 1,
     .att = {{"1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1", NULL, "image/gif",
              NULL, NULL, 6, "610f5ae4d76e332636a17bd357fd6ce99029316a99d320280d4d77a746bf29e8"}}},
    {.file = "deep-40.eml",
     .flags = LT_MIME_F_DEPTH_CAPPED,
     .subject = "deep 40",
     .from = "a@example.com",
     .text = ""},
    /* html only: tags, title, style, script, comments dropped; entities */
    {.file = "related.eml",
     .subject = "Newsletter",
     .from = "news@example.com",
     .text_source = "text/html",
     .text_part_id = "1",
     .text = "Café & more\n\nLine one\nLine two €5 <b>\n\na b c",
     .natt = 1,
     .att = {{"2", NULL, "image/png", "inline", "logo@example.com", 20,
              "590818726fdd225df86ed3fce231130cf8dc95562fe3896254f8889841676634"}}},
    {.file = "empty.eml", .text = ""},
    {.file = "headers-only.eml",
     .subject = "only headers",
     .from = "a@example.com",
     .text_source = "text/plain",
     .text_part_id = "1",
     .text = ""},
};

static lt_buf_t *slurp(const char *path)
{
    lt_buf_t *b = lt_buf_new((size_t)16 << 20);
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "open %s", path);
    if (!f)
        return b;
    char tmp[8192];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        lt_buf_append(b, tmp, n);
    fclose(f);
    return b;
}

static lt_buf_t *to_crlf(const lt_buf_t *in)
{
    lt_buf_t *b = lt_buf_new(lt_buf_len(in) * 2 + 1);
    const uint8_t *p = lt_buf_data(in);
    for (size_t i = 0; i < lt_buf_len(in); i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            lt_buf_append(b, "\r", 1);
        lt_buf_append(b, p + i, 1);
    }
    return b;
}

static void check_case(const exp_t *e, const lt_mime_t *m, const char *how)
{
    char ctx[256];
    snprintf(ctx, sizeof(ctx), "%s (%s)", e->file, how);
    CHECK_MSG(lt_mime_flags(m) == e->flags, "%s: flags %u", ctx, lt_mime_flags(m));
    CHECK_OPT(ctx, lt_mime_message_id(m), e->message_id);
    CHECK_OPT(ctx, lt_mime_subject(m), e->subject);
    CHECK_MSG(lt_mime_date_ms(m) == e->date_ms, "%s: date %lld", ctx,
              (long long)lt_mime_date_ms(m));
    CHECK_OPT(ctx, lt_mime_in_reply_to(m), e->in_reply_to);
    size_t nrefs = 0;
    while (nrefs < 4 && e->refs[nrefs])
        nrefs++;
    CHECK_MSG(lt_mime_reference_count(m) == nrefs, "%s: %zu references", ctx,
              lt_mime_reference_count(m));
    for (size_t i = 0; i < nrefs; i++)
        CHECK_OPT(ctx, lt_mime_reference(m, i), e->refs[i]);
    CHECK_OPT(ctx, lt_mime_addr_display(m, LT_MIME_FROM), e->from);
    CHECK_OPT(ctx, lt_mime_addr_display(m, LT_MIME_TO), e->to);
    CHECK_OPT(ctx, lt_mime_addr_display(m, LT_MIME_CC), e->cc);
    size_t len = 99;
    const char *text = lt_mime_text(m, &len);
    CHECK_OPT(ctx, text, e->text);
    CHECK_MSG(len == strlen(e->text), "%s: text length %zu", ctx, len);
    CHECK_OPT(ctx, lt_mime_text_source(m), e->text_source);
    CHECK_OPT(ctx, lt_mime_text_part_id(m), e->text_part_id);
    CHECK_MSG(lt_mime_attachment_count(m) == e->natt, "%s: %zu attachments", ctx,
              lt_mime_attachment_count(m));
    for (size_t i = 0; i < e->natt && i < lt_mime_attachment_count(m); i++) {
        const exp_att_t *a = &e->att[i];
        CHECK_OPT(ctx, lt_mime_attachment_id(m, i), a->id);
        CHECK_OPT(ctx, lt_mime_attachment_filename(m, i), a->filename);
        CHECK_OPT(ctx, lt_mime_attachment_content_type(m, i), a->ctype);
        CHECK_OPT(ctx, lt_mime_attachment_disposition(m, i), a->disposition);
        CHECK_OPT(ctx, lt_mime_attachment_content_id(m, i), a->content_id);
        CHECK_MSG(lt_mime_attachment_size(m, i) == a->size, "%s: attachment %zu size %llu", ctx, i,
                  (unsigned long long)lt_mime_attachment_size(m, i));
        CHECK_OPT(ctx, lt_mime_attachment_sha256(m, i), a->sha256);
    }
    /* past the end */
    CHECK(lt_mime_attachment_id(m, e->natt) == NULL);
    CHECK(lt_mime_attachment_sha256(m, e->natt) == NULL);
}

static void run_cases(void)
{
    char err[512];
    for (size_t c = 0; c < sizeof(CASES) / sizeof(CASES[0]); c++) {
        const exp_t *e = &CASES[c];
        char path[1024];
        snprintf(path, sizeof(path), DATA "%s", e->file);
        lt_mime_t *m = NULL;
        lt_err_t rc = lt_mime_parse_file(path, NULL, &m, err, sizeof(err));
        CHECK_MSG(rc == LT_OK && m, "%s: %s", path, err);
        if (m)
            check_case(e, m, "file");
        lt_mime_destroy(m);

        lt_buf_t *raw = slurp(path);
        m = NULL;
        rc = lt_mime_parse_mem(lt_buf_data(raw), lt_buf_len(raw), NULL, &m, err, sizeof(err));
        CHECK_MSG(rc == LT_OK && m, "%s (mem): %s", path, err);
        if (m)
            check_case(e, m, "mem");
        lt_mime_destroy(m);

        lt_buf_t *crlf = to_crlf(raw);
        m = NULL;
        rc = lt_mime_parse_mem(lt_buf_data(crlf), lt_buf_len(crlf), NULL, &m, err, sizeof(err));
        CHECK_MSG(rc == LT_OK && m, "%s (crlf): %s", path, err);
        if (m)
            check_case(e, m, "mem crlf");
        lt_mime_destroy(m);
        lt_buf_destroy(crlf);
        lt_buf_destroy(raw);
    }
}

static lt_mime_t *parse_path(const char *name, const lt_mime_limits_t *lim)
{
    char err[512];
    lt_mime_t *m = NULL;
    lt_err_t rc = lt_mime_parse_file(name, lim, &m, err, sizeof(err));
    CHECK_MSG(rc == LT_OK && m, "%s: %s", name, err);
    return m;
}

static void check_addresses(void)
{
    lt_mime_t *m = parse_path(DATA "plain.eml", NULL);
    if (!m)
        return;
    CHECK_INT(lt_mime_addr_count(m, LT_MIME_FROM), 1);
    CHECK_STR(lt_mime_addr_name(m, LT_MIME_FROM, 0), "Alice Example");
    CHECK_STR(lt_mime_addr_email(m, LT_MIME_FROM, 0), "alice@example.com");
    CHECK_INT(lt_mime_addr_count(m, LT_MIME_TO), 2);
    CHECK_STR(lt_mime_addr_name(m, LT_MIME_TO, 0), "Bob");
    CHECK_STR(lt_mime_addr_email(m, LT_MIME_TO, 0), "bob@example.org");
    CHECK(lt_mime_addr_name(m, LT_MIME_TO, 1) == NULL);
    CHECK_STR(lt_mime_addr_email(m, LT_MIME_TO, 1), "carol@example.net");
    /* the group is flattened */
    CHECK_INT(lt_mime_addr_count(m, LT_MIME_CC), 3);
    CHECK_STR(lt_mime_addr_name(m, LT_MIME_CC, 0), "Doe, John");
    CHECK_STR(lt_mime_addr_email(m, LT_MIME_CC, 0), "john@example.com");
    CHECK_STR(lt_mime_addr_email(m, LT_MIME_CC, 1), "dan@example.com");
    CHECK_STR(lt_mime_addr_email(m, LT_MIME_CC, 2), "erin@example.com");
    CHECK(lt_mime_addr_email(m, LT_MIME_CC, 3) == NULL);
    CHECK_INT(lt_mime_addr_count(m, LT_MIME_REPLY_TO), 1);
    CHECK_STR(lt_mime_addr_email(m, LT_MIME_REPLY_TO, 0), "replies@example.com");
    CHECK(lt_mime_addr_count(m, (lt_mime_field_t)42) == 0);

    char *h = lt_mime_header_dup(m, "x-custom");
    CHECK_STR(h, "folded value");
    free(h);
    CHECK(lt_mime_header_dup(m, "X-Not-There") == NULL);
    lt_mime_destroy(m);

    m = parse_path(DATA "alternative.eml", NULL);
    if (m) {
        CHECK_STR(lt_mime_addr_name(m, LT_MIME_FROM, 0), "Jürgen Müller");
        CHECK_INT(lt_mime_addr_count(m, LT_MIME_CC), 0);
        CHECK(lt_mime_addr_display(m, LT_MIME_CC) == NULL);
    }
    lt_mime_destroy(m);
}

typedef struct {
    lt_buf_t *b;
    int chunks;
    int fail_after;
} sink_t;

static lt_err_t sink_write(void *opaque, const uint8_t *data, size_t len)
{
    sink_t *s = opaque;
    if (s->fail_after && s->chunks + 1 >= s->fail_after)
        return LT_ERR_TEMPORARY;
    s->chunks++;
    return lt_buf_append(s->b, data, len);
}

static void check_streaming(void)
{
    char err[512];
    lt_mime_t *m = parse_path(DATA "mixed3.eml", NULL);
    if (!m)
        return;
    uint8_t pdf[9 + 256 + 7];
    memcpy(pdf, "%PDF-1.4\n", 9);
    for (int i = 0; i < 256; i++)
        pdf[9 + i] = (uint8_t)i;
    memcpy(pdf + 9 + 256, "\n%%EOF\n", 7);

    sink_t s = {lt_buf_new(1 << 20), 0, 0};
    CHECK_INT(lt_mime_attachment_write(m, 0, sink_write, &s, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_buf_len(s.b), sizeof(pdf));
    CHECK(lt_buf_len(s.b) == sizeof(pdf) && !memcmp(lt_buf_data(s.b), pdf, sizeof(pdf)));
    /* twice: the same bytes (the source stream is re-read) */
    lt_buf_reset(s.b);
    CHECK_INT(lt_mime_attachment_write(m, 0, sink_write, &s, err, sizeof(err)), LT_OK);
    CHECK(lt_buf_len(s.b) == sizeof(pdf) && !memcmp(lt_buf_data(s.b), pdf, sizeof(pdf)));

    lt_buf_t *b = lt_buf_new(1024);
    CHECK_INT(lt_mime_attachment_read(m, 1, b, err, sizeof(err)), LT_OK);
    CHECK_STR(lt_buf_str(b), "euro sign: €\r\n");
    lt_buf_reset(b);
    CHECK_INT(lt_mime_attachment_read(m, 2, b, err, sizeof(err)), LT_OK);
    CHECK(lt_buf_len(b) == 10 && !memcmp(lt_buf_data(b),
                                         "\x00\x01"
                                         "binary\xff\xfe",
                                         10));
    lt_buf_destroy(b);

    /* capped buffer */
    b = lt_buf_new(100);
    CHECK_INT(lt_mime_attachment_read(m, 0, b, err, sizeof(err)), LT_ERR_TOO_BIG);
    CHECK_MSG(strstr(err, "cap") != NULL, "%s", err);
    lt_buf_destroy(b);

    /* a failing writer stops the stream and its code comes back */
    lt_buf_reset(s.b);
    s.fail_after = 1;
    s.chunks = 0;
    CHECK_INT(lt_mime_attachment_write(m, 0, sink_write, &s, err, sizeof(err)), LT_ERR_TEMPORARY);
    CHECK_INT(lt_buf_len(s.b), 0);
    CHECK_MSG(strstr(err, "temporary") != NULL, "%s", err);
    s.fail_after = 0;

    CHECK_INT(lt_mime_attachment_write(m, 3, sink_write, &s, err, sizeof(err)), LT_ERR_NOT_FOUND);
    lt_buf_destroy(s.b);
    lt_mime_destroy(m);

    /* the attached message streams as its own bytes */
    m = parse_path(DATA "nested-rfc822.eml", NULL);
    if (m) {
        b = lt_buf_new(1 << 20);
        CHECK_INT(lt_mime_attachment_read(m, 1, b, err, sizeof(err)), LT_OK);
        CHECK_STR(lt_buf_str(b), "From: nosubject@example.com\nContent-Type: text/plain\n\n"
                                 "no subject here");
        lt_buf_destroy(b);
    }
    lt_mime_destroy(m);
}

static void check_limits(void)
{
    char err[512];
    lt_mime_t *m = NULL;
    lt_mime_limits_t lim;
    lt_mime_limits_default(&lim);
    CHECK(lim.max_input == (size_t)64 << 20);
    CHECK(lim.max_depth == 32);

    /* input cap, both ways in */
    memset(&lim, 0, sizeof(lim));
    lim.max_input = 100;
    CHECK_INT(lt_mime_parse_file(DATA "mixed3.eml", &lim, &m, err, sizeof(err)), LT_ERR_TOO_BIG);
    CHECK(m == NULL);
    CHECK_MSG(strstr(err, "cap") != NULL, "%s", err);
    lt_buf_t *raw = slurp(DATA "mixed3.eml");
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(raw), lt_buf_len(raw), &lim, &m, err, sizeof(err)),
              LT_ERR_TOO_BIG);
    CHECK(m == NULL);

    /* attachments cap */
    memset(&lim, 0, sizeof(lim));
    lim.max_attachments = 1;
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(raw), lt_buf_len(raw), &lim, &m, err, sizeof(err)),
              LT_OK);
    if (m) {
        CHECK_INT(lt_mime_attachment_count(m), 1);
        CHECK_INT(lt_mime_flags(m), LT_MIME_F_TOO_MANY_PARTS);
        CHECK_STR(lt_mime_attachment_filename(m, 0), "report.pdf");
    }
    lt_mime_destroy(m);

    /* text cap: cut on a character boundary ("é" is 2 bytes at 20..21) */
    memset(&lim, 0, sizeof(lim));
    lim.max_text = 21;
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(raw), lt_buf_len(raw), &lim, &m, err, sizeof(err)),
              LT_OK);
    if (m) {
        size_t len;
        CHECK_STR(lt_mime_text(m, &len), "Voici le menu du caf");
        CHECK_INT(len, 20);
        CHECK_INT(lt_mime_flags(m), LT_MIME_F_TEXT_TRUNCATED);
    }
    lt_mime_destroy(m);

    /* header cap */
    memset(&lim, 0, sizeof(lim));
    lim.max_header = 4;
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(raw), lt_buf_len(raw), &lim, &m, err, sizeof(err)),
              LT_OK);
    if (m) {
        CHECK_STR(lt_mime_subject(m), "Caf");
        CHECK(lt_mime_flags(m) & LT_MIME_F_HEADER_TRUNCATED);
    }
    lt_mime_destroy(m);
    lt_buf_destroy(raw);

    /* depth cap set lower */
    memset(&lim, 0, sizeof(lim));
    lim.max_depth = 2;
    m = parse_path(DATA "deep-32.eml", &lim);
    if (m) {
        CHECK_INT(lt_mime_attachment_count(m), 0);
        CHECK_INT(lt_mime_flags(m), LT_MIME_F_DEPTH_CAPPED);
    }
    lt_mime_destroy(m);

    CHECK_INT(lt_mime_parse_file(DATA "no-such.eml", NULL, &m, err, sizeof(err)), LT_ERR_NOT_FOUND);
    CHECK(m == NULL);
    CHECK_INT(lt_mime_parse_file(DATA, NULL, &m, err, sizeof(err)), LT_ERR_INVALID);
    CHECK(m == NULL);
}

/* Outside input the samples do not cover: huge header line, nesting far past
 * gmime's own limit, random binary, NULs and bad charsets. */
static void check_hostile(void)
{
    char err[512];
    lt_mime_t *m = NULL;

    /* a 900 KB Subject line: parsed, cut to max_header */
    lt_buf_t *b = lt_buf_new((size_t)8 << 20);
    lt_buf_append(b, "Subject: ", 9);
    for (int i = 0; i < 900000 / 8; i++)
        lt_buf_append(b, "abcdefg ", 8);
    lt_buf_append(b, "\n\nbody\n", 7);
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(b), lt_buf_len(b), NULL, &m, err, sizeof(err)), LT_OK);
    if (m) {
        CHECK_INT(strlen(lt_mime_subject(m)), LT_MIME_DEFAULT_MAX_HEADER);
        CHECK(!strncmp(lt_mime_subject(m), "abcdefg abcdefg", 15));
        CHECK(lt_mime_flags(m) & LT_MIME_F_HEADER_TRUNCATED);
        CHECK_STR(lt_mime_text(m, NULL), "body\n");
    }
    lt_mime_destroy(m);

    /* 5000 nested multiparts */
    lt_buf_reset(b);
    lt_buf_appendf(b, "Subject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n");
    for (int i = 1; i < 5000; i++)
        lt_buf_appendf(b, "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i - 1, i);
    lt_buf_appendf(b, "--b4999\nContent-Type: image/gif\n\nGIF\n");
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(b), lt_buf_len(b), NULL, &m, err, sizeof(err)), LT_OK);
    if (m) {
        CHECK_INT(lt_mime_attachment_count(m), 0);
        CHECK_INT(lt_mime_flags(m), LT_MIME_F_DEPTH_CAPPED);
        CHECK_STR(lt_mime_subject(m), "deep");
    }
    lt_mime_destroy(m);

    /* 3000 nested message/rfc822: one attachment, the outermost */
    lt_buf_reset(b);
    lt_buf_appendf(b, "Subject: outer\nContent-Type: multipart/mixed; boundary=x\n\n--x\n"
                      "Content-Type: message/rfc822\n\n");
    for (int i = 0; i < 3000; i++)
        lt_buf_appendf(b, "Subject: level %d\nContent-Type: message/rfc822\n\n", i);
    lt_buf_appendf(b, "Subject: last\n\nend\n--x--\n");
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(b), lt_buf_len(b), NULL, &m, err, sizeof(err)), LT_OK);
    if (m) {
        CHECK_INT(lt_mime_attachment_count(m), 1);
        CHECK_STR(lt_mime_attachment_filename(m, 0), "level 0.eml");
        CHECK_STR(lt_mime_attachment_content_type(m, 0), "message/rfc822");
        CHECK(lt_mime_attachment_size(m, 0) > 3000 * 30);
    }
    lt_mime_destroy(m);

    /* binary garbage, not a message at all: still a message */
    lt_buf_reset(b);
    uint32_t x = 12345;
    for (int i = 0; i < 100000; i++) {
        x = x * 1103515245u + 12345u;
        uint8_t c = (uint8_t)(x >> 16);
        lt_buf_append(b, &c, 1);
    }
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(b), lt_buf_len(b), NULL, &m, err, sizeof(err)), LT_OK);
    if (m) {
        size_t len;
        const char *t = lt_mime_text(m, &len);
        CHECK(strlen(t) == len); /* no NUL inside */
    }
    lt_mime_destroy(m);

    /* NUL bytes and CR in the body, a bad charset, a bad 2047 word */
    static const char nul[] = "Subject: =?x-bogus?Q?abc?= =?utf-8?B?////?=\n"
                              "Content-Type: text/plain; charset=\"x-bogus\"\n\n"
                              "a\0b\rc\r\nd\xff";
    CHECK_INT(lt_mime_parse_mem((const uint8_t *)nul, sizeof(nul) - 1, NULL, &m, err, sizeof(err)),
              LT_OK);
    if (m) {
        size_t len;
        /* U+FFFD for NUL; CR and CRLF as LF; 0xFF alone: not UTF-8, so 1252 */
        CHECK_STR(lt_mime_text(m, &len), "a\xef\xbf\xbd"
                                         "b\nc\nd\xc3\xbf");
        CHECK_INT(len, 11);
        const char *s = lt_mime_subject(m);
        CHECK(s != NULL);
        CHECK_MSG(s && strstr(s, "abc") != NULL, "%s", s ? s : "(null)");
    }
    lt_mime_destroy(m);

    /* UTF-16 declared charset, iconv path; odd trailing byte replaced */
    static const char u16[] = "Content-Type: text/plain; charset=utf-16le\n"
                              "Content-Transfer-Encoding: base64\n\n"
                              "aABpAKwgQQ==\n";
    CHECK_INT(lt_mime_parse_mem((const uint8_t *)u16, sizeof(u16) - 1, NULL, &m, err, sizeof(err)),
              LT_OK);
    if (m)
        CHECK_STR(lt_mime_text(m, NULL), "hi€\xef\xbf\xbd");
    lt_mime_destroy(m);

    lt_buf_destroy(b);
}

static lt_err_t parse_str(const char *s, const lt_mime_limits_t *lim, char *err, size_t n)
{
    lt_mime_t *m = NULL;
    lt_err_t rc = lt_mime_parse_mem((const uint8_t *)s, strlen(s), lim, &m, err, n);
    CHECK(rc == LT_OK ? m != NULL : m == NULL);
    lt_mime_destroy(m);
    return rc;
}

/* The structure pre-scan: what gmime would build is bounded before it
 * builds it (an object per part, header and address). */
static void check_prescan(void)
{
    char err[512];
    lt_mime_limits_t lim;
    memset(&lim, 0, sizeof(lim));

    /* 2 MiB of header: over the default 1 MiB of header bytes */
    lt_buf_t *b = lt_buf_new((size_t)8 << 20);
    lt_buf_append(b, "To: ", 4);
    for (int i = 0; i < (2 << 20) / 5; i++)
        lt_buf_append(b, "a@b, ", 5);
    lt_buf_append(b, "\n\nbody\n", 7);
    CHECK_INT(parse_str(lt_buf_str(b), NULL, err, sizeof(err)), LT_ERR_TOO_BIG);
    CHECK_MSG(strstr(err, "header bytes") != NULL, "%s", err);

    /* 30000 empty parts */
    lt_buf_reset(b);
    lt_buf_appendf(b, "Content-Type: multipart/mixed; boundary=b\n\n");
    for (int i = 0; i < 30000; i++)
        lt_buf_append(b, "--b\n\n", 5);
    CHECK_INT(parse_str(lt_buf_str(b), NULL, err, sizeof(err)), LT_ERR_TOO_BIG);
    CHECK_MSG(strstr(err, "boundary-like lines") != NULL, "%s", err);
    lim.max_parts = 30001;
    CHECK_INT(parse_str(lt_buf_str(b), &lim, err, sizeof(err)), LT_OK);
    lim.max_parts = 0;

    /* nested-rfc822.eml has 17 header lines counting the embedded
     * messages' (6 top, 1 + 1 part headers, 5 + 2 inner, 2 part) */
    lt_buf_t *raw = slurp(DATA "nested-rfc822.eml");
    lim.max_header_lines = 17;
    CHECK_INT(parse_str(lt_buf_str(raw), &lim, err, sizeof(err)), LT_OK);
    lim.max_header_lines = 16;
    CHECK_INT(parse_str(lt_buf_str(raw), &lim, err, sizeof(err)), LT_ERR_TOO_BIG);
    CHECK_MSG(strstr(err, "header lines") != NULL, "%s", err);
    lt_buf_destroy(raw);

    /* an embedded message announced with a comment and blanks, and the
     * parts of a digest (message/rfc822 by default): their headers count */
    lim.max_header_lines = 50;
    static const char *const shapes[] = {
        ("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: Message(x) /\n"
         " rfc822\n\n"),
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\n",
        "Content-Type: message/rfc822\n\n",
    };
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
        lt_buf_reset(b);
        lt_buf_appendf(b, "%s", shapes[k]);
        for (int i = 0; i < 60; i++)
            lt_buf_appendf(b, "X-H%d: v\n", i);
        lt_buf_appendf(b, "\nbody\n");
        CHECK_MSG(parse_str(lt_buf_str(b), &lim, err, sizeof(err)) == LT_ERR_TOO_BIG, "shape %zu",
                  k);
    }
    /* but a big body after an ordinary header block is not header */
    lt_buf_reset(b);
    lt_buf_appendf(b, "Content-Type: application/octet-stream; name=\"message/x\"\n"
                      "Content-Transfer-Encoding: base64\n\n");
    for (int i = 0; i < 40000; i++)
        lt_buf_appendf(b, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\n");
    CHECK_INT(parse_str(lt_buf_str(b), NULL, err, sizeof(err)), LT_OK);
    lt_buf_destroy(b);
}

/* Input whose first line is not a header (gmime builds no message at all):
 * no headers, the whole input is the text/plain body (docs/mime.md), from
 * memory and from a file alike. */
static void check_not_mime(void)
{
    char err[512];
    lt_mime_t *m = NULL;
    static const char words[] = "just some words\nand more: lines\r\n\nand a paragraph\n";
    static const char want[] = "just some words\nand more: lines\n\nand a paragraph\n";
    CHECK_INT(
        lt_mime_parse_mem((const uint8_t *)words, sizeof(words) - 1, NULL, &m, err, sizeof(err)),
        LT_OK);
    if (m) {
        size_t len;
        CHECK_STR(lt_mime_text(m, &len), want);
        CHECK_INT(len, sizeof(want) - 1);
        CHECK_STR(lt_mime_text_source(m), "text/plain");
        CHECK_STR(lt_mime_text_part_id(m), "1");
        CHECK(lt_mime_subject(m) == NULL);
        CHECK(lt_mime_message_id(m) == NULL);
        CHECK_INT(lt_mime_addr_count(m, LT_MIME_FROM), 0);
        CHECK_INT(lt_mime_attachment_count(m), 0);
        CHECK_INT(lt_mime_flags(m), 0);
        CHECK(lt_mime_header_dup(m, "and more") == NULL);
    }
    lt_mime_destroy(m);

    /* the same from a file (the stream is read again from its start) */
    char path[] = "/tmp/test_mime_words.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, words, sizeof(words) - 1) == (ssize_t)(sizeof(words) - 1));
    if (fd >= 0)
        close(fd);
    m = parse_path(path, NULL);
    if (m) {
        CHECK_STR(lt_mime_text(m, NULL), want);
        CHECK_STR(lt_mime_text_source(m), "text/plain");
    }
    lt_mime_destroy(m);
    unlink(path);

    /* one line without a newline; an 8-bit byte that is not UTF-8 (1252) */
    static const char one[] = "caf\xe9 ol\xe9";
    CHECK_INT(lt_mime_parse_mem((const uint8_t *)one, sizeof(one) - 1, NULL, &m, err, sizeof(err)),
              LT_OK);
    if (m)
        CHECK_STR(lt_mime_text(m, NULL), "café olé");
    lt_mime_destroy(m);

    /* the text cap applies: cut and flagged */
    lt_mime_limits_t lim;
    memset(&lim, 0, sizeof(lim));
    lim.max_text = 10;
    lt_buf_t *b = lt_buf_new(1 << 20);
    for (int i = 0; i < 2000; i++)
        lt_buf_appendf(b, "line %d of prose\n", i);
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(b), lt_buf_len(b), &lim, &m, err, sizeof(err)), LT_OK);
    if (m) {
        CHECK_STR(lt_mime_text(m, NULL), "line 0 of ");
        CHECK_INT(lt_mime_flags(m), LT_MIME_F_TEXT_TRUNCATED);
    }
    lt_mime_destroy(m);
    lt_buf_destroy(b);

    /* unchanged: a header first is a message; empty input has no text */
    static const char hdr[] = "Subject: x\n\nbody\n";
    CHECK_INT(lt_mime_parse_mem((const uint8_t *)hdr, sizeof(hdr) - 1, NULL, &m, err, sizeof(err)),
              LT_OK);
    if (m) {
        CHECK_STR(lt_mime_subject(m), "x");
        CHECK_STR(lt_mime_text(m, NULL), "body\n");
    }
    lt_mime_destroy(m);
    CHECK_INT(lt_mime_parse_mem((const uint8_t *)"", 0, NULL, &m, err, sizeof(err)), LT_OK);
    if (m) {
        CHECK_STR(lt_mime_text(m, NULL), "");
        CHECK(lt_mime_text_source(m) == NULL);
    }
    lt_mime_destroy(m);
}

/* A part's Content-Type is outside data that ends up in S3 PUT headers: an
 * overlong or malformed media type is reported as application/octet-stream,
 * a valid one as is (lower case). */
static void check_hostile_content_type(void)
{
    char err[512];
    lt_mime_t *m = NULL;
    lt_buf_t *b = lt_buf_new((size_t)1 << 20);
    lt_buf_appendf(b, "Subject: ctype\nMIME-Version: 1.0\n"
                      "Content-Type: multipart/mixed; boundary=zz\n\n"
                      "--zz\nContent-Type: text/plain\n\nhello\n"
                      "--zz\nContent-Type: application/");
    for (int i = 0; i < 300; i++)
        lt_buf_append(b, "x", 1);
    lt_buf_appendf(b, "\nContent-Disposition: attachment; filename=a.bin\n\nAAAA\n"
                      "--zz\nContent-Type: Image/PNG\n"
                      "Content-Disposition: attachment; filename=b.png\n\nPNG\n"
                      "--zz\nContent-Type: app{}lication/x\n"
                      "Content-Disposition: attachment; filename=c.bin\n\nCCC\n--zz--\n");
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(b), lt_buf_len(b), NULL, &m, err, sizeof(err)), LT_OK);
    CHECK_INT(m ? lt_mime_attachment_count(m) : 0, 3);
    if (m && lt_mime_attachment_count(m) == 3) {
        CHECK_STR(lt_mime_attachment_content_type(m, 0), "application/octet-stream");
        CHECK_STR(lt_mime_attachment_content_type(m, 1), "image/png");
        CHECK_STR(lt_mime_attachment_content_type(m, 2), "application/octet-stream");
    }
    lt_mime_destroy(m);
    lt_buf_destroy(b);
}

/* Numeric character references for white space in HTML are white space:
 * collapsed like the literal character, never a CR or a run of empty lines
 * in the text ("\n" line ends, at most one empty line in a row). */
static void check_html_space_references(void)
{
    char err[512];
    lt_mime_t *m = NULL;
    static const char msg[] = "Content-Type: text/html; charset=utf-8\r\n\r\n"
                              "<p>a&#10;&#10;&#10;&#10;b&#13;c&#x9;&#32;d</p><p>e&#xA;</p>";
    CHECK_INT(lt_mime_parse_mem((const uint8_t *)msg, sizeof(msg) - 1, NULL, &m, err, sizeof(err)),
              LT_OK);
    if (m) {
        CHECK_STR(lt_mime_text_source(m), "text/html");
        CHECK_STR(lt_mime_text(m, NULL), "a b c d\n\ne");
    }
    lt_mime_destroy(m);
}

int main(void)
{
    lt_mime_global_init();
    check_hostile_content_type();
    check_html_space_references();
    run_cases();
    check_addresses();
    check_streaming();
    check_limits();
    check_hostile();
    check_prescan();
    check_not_mime();
    lt_mime_global_shutdown();
    return lt_test_done("test_mime");
}
