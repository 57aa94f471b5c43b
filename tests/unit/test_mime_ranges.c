/* lt_mime_attachment_range / lt_mime_decode: for every attachment that has a
 * range, decoding those bytes of the input gives exactly the attachment's
 * size and SHA-256 (what the worker publishes in the manifest when it stores
 * no attachment object of its own). Over the sample messages of
 * tests/data/mime/ (from memory, from a file, with CRLF line ends) and a
 * message with every transfer encoding. */
#include <dirent.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_mime.h"
#include "lt_test.h"

#define DATA LT_SOURCE_DIR "/tests/data/mime/"

typedef struct {
    EVP_MD_CTX *md;
    uint64_t size;
} sink_t;

static lt_err_t sink(void *opaque, const uint8_t *data, size_t len)
{
    sink_t *s = opaque;
    EVP_DigestUpdate(s->md, data, len);
    s->size += len;
    return LT_OK;
}

static lt_err_t refuse(void *opaque, const uint8_t *data, size_t len)
{
    (void)opaque, (void)data, (void)len;
    return LT_ERR_TOO_BIG;
}

/* Check every attachment of m (input: the parsed bytes); returns how many had a range. */
static size_t check_ranges(const char *what, lt_mime_t *m, const uint8_t *input, size_t len)
{
    size_t ranged = 0;
    for (size_t i = 0; i < lt_mime_attachment_count(m); i++) {
        uint64_t off = 0, n = 0;
        const char *enc = NULL;
        if (lt_mime_attachment_range(m, i, &off, &n, &enc) != LT_OK)
            continue;
        ranged++;
        CHECK_MSG(off + n <= len, "%s att %zu: range %llu+%llu beyond %zu", what, i,
                  (unsigned long long)off, (unsigned long long)n, len);
        if (off + n > len)
            continue;
        sink_t s = {EVP_MD_CTX_new(), 0};
        EVP_DigestInit_ex(s.md, EVP_sha256(), NULL);
        char err[256] = "";
        CHECK_INT(lt_mime_decode(enc, input + off, (size_t)n, sink, &s, err, sizeof(err)), LT_OK);
        unsigned char md[32];
        EVP_DigestFinal_ex(s.md, md, NULL);
        EVP_MD_CTX_free(s.md);
        char hex[65];
        for (int k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02x", md[k]);
        CHECK_MSG(!strcmp(hex, lt_mime_attachment_sha256(m, i)),
                  "%s att %zu (%s): decoded range sha256 %s != %s", what, i, enc, hex,
                  lt_mime_attachment_sha256(m, i));
        CHECK_MSG(s.size == lt_mime_attachment_size(m, i), "%s att %zu: size %llu != %llu", what,
                  i, (unsigned long long)s.size,
                  (unsigned long long)lt_mime_attachment_size(m, i));
    }
    return ranged;
}

static lt_buf_t *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    lt_buf_t *b = lt_buf_new((size_t)64 << 20);
    if (!f)
        return b;
    char chunk[65536];
    size_t r;
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0)
        lt_buf_append(b, chunk, r);
    fclose(f);
    return b;
}

static lt_buf_t *to_crlf(const lt_buf_t *in)
{
    lt_buf_t *b = lt_buf_new((size_t)128 << 20);
    const uint8_t *p = lt_buf_data(in);
    for (size_t i = 0; i < lt_buf_len(in); i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            lt_buf_append(b, "\r", 1);
        lt_buf_append(b, &p[i], 1);
    }
    return b;
}

static void check_samples(void)
{
    DIR *d = opendir(DATA);
    CHECK(d != NULL);
    if (!d)
        return;
    struct dirent *e;
    size_t files = 0, ranged = 0, atts = 0;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".eml"))
            continue;
        char path[1024], what[1100], err[256];
        snprintf(path, sizeof(path), DATA "%s", e->d_name);
        lt_buf_t *raw = slurp(path), *crlf = to_crlf(raw);
        lt_mime_t *m = NULL;
        size_t in_mem = 0, in_file = 0, in_crlf = 0;
        files++;
        /* memory, file, CRLF: the same ranges hold against each input */
        if (lt_mime_parse_mem(lt_buf_data(raw), lt_buf_len(raw), NULL, &m, err, sizeof(err)) ==
            LT_OK) {
            snprintf(what, sizeof(what), "%s (memory)", e->d_name);
            in_mem = check_ranges(what, m, lt_buf_data(raw), lt_buf_len(raw));
            ranged += in_mem;
            atts += lt_mime_attachment_count(m);
        }
        lt_mime_destroy(m);
        m = NULL;
        if (lt_mime_parse_file(path, NULL, &m, err, sizeof(err)) == LT_OK) {
            snprintf(what, sizeof(what), "%s (file)", e->d_name);
            in_file = check_ranges(what, m, lt_buf_data(raw), lt_buf_len(raw));
        }
        lt_mime_destroy(m);
        m = NULL;
        if (lt_mime_parse_mem(lt_buf_data(crlf), lt_buf_len(crlf), NULL, &m, err, sizeof(err)) ==
            LT_OK) {
            snprintf(what, sizeof(what), "%s (CRLF)", e->d_name);
            in_crlf = check_ranges(what, m, lt_buf_data(crlf), lt_buf_len(crlf));
        }
        lt_mime_destroy(m);
        /* the same attachments have ranges whatever the input */
        CHECK_MSG(in_mem == in_file && in_mem == in_crlf, "%s: ranges memory %zu, file %zu, CRLF %zu",
                  e->d_name, in_mem, in_file, in_crlf);
        lt_buf_destroy(raw);
        lt_buf_destroy(crlf);
    }
    closedir(d);
    CHECK(files >= 10);
    /* the samples have attachments with ranges, and the attached message has none */
    CHECK_MSG(ranged >= 3 && ranged < atts, "%zu of %zu attachments ranged", ranged, atts);
}

/* One message with every transfer encoding, a digest-free attached message
 * and a uuencoded part. */
static void check_encodings(void)
{
    static const char msg[] =
        "Subject: encodings\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfs\r\nj6IKNSAwIG9iago=\r\n"
        "--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=q.csv\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\na=3Db,caf=C3=A9\r\nlong line=\r\n"
        " continued\r\n"
        "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=s.txt\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\nseven\r\nbit\r\n"
        "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=e.txt\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n"
        "Content-Disposition: attachment; filename=n.bin\r\n\r\nno encoding header\r\n"
        "--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
        "Subject: inner\r\n\r\ninner body\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n"
        "Content-Disposition: attachment; filename=u.bin\r\nContent-Transfer-Encoding: x-uuencode\r\n"
        "\r\nbegin 644 u.bin\r\n#86)C\r\n`\r\nend\r\n"
        "--b--\r\n";
    lt_mime_t *m = NULL;
    char err[256];
    CHECK_INT(lt_mime_parse_mem((const uint8_t *)msg, sizeof(msg) - 1, NULL, &m, err,
                                sizeof(err)),
              LT_OK);
    if (!m)
        return;
    CHECK_INT(lt_mime_attachment_count(m), 7);
    static const char *const want[] = {"base64", "quoted-printable", "binary", "binary",
                                       "binary", NULL,               NULL};
    for (size_t i = 0; i < 7 && i < lt_mime_attachment_count(m); i++) {
        uint64_t off = 0, n = 0;
        const char *enc = NULL;
        lt_err_t r = lt_mime_attachment_range(m, i, &off, &n, &enc);
        if (want[i]) {
            CHECK_MSG(r == LT_OK && enc && !strcmp(enc, want[i]), "att %zu: %s, want %s", i,
                      r ? "no range" : enc, want[i]);
        } else {
            CHECK_MSG(r == LT_ERR_NOT_FOUND, "att %zu (%s): no range expected", i,
                      lt_mime_attachment_content_type(m, i));
        }
    }
    CHECK_INT(check_ranges("encodings", m, (const uint8_t *)msg, sizeof(msg) - 1), 5);
    uint64_t off, n;
    const char *enc;
    CHECK_INT(lt_mime_attachment_range(m, 7, &off, &n, &enc), LT_ERR_NOT_FOUND);
    lt_mime_destroy(m);

    /* the decoder: unknown encodings refused, a failing writer's code returned */
    CHECK_INT(lt_mime_decode("x-uuencode", (const uint8_t *)"a", 1, sink, NULL, err, sizeof(err)),
              LT_ERR_INVALID);
    CHECK_INT(lt_mime_decode(NULL, (const uint8_t *)"a", 1, sink, NULL, err, sizeof(err)),
              LT_ERR_INVALID);
    CHECK_INT(lt_mime_decode("BASE64", (const uint8_t *)"YWJj", 4, refuse, NULL, err,
                             sizeof(err)),
              LT_ERR_TOO_BIG);
}

/* Malformed encoded content, where lenient decoders differ: no range (the
 * worker stores those decoded); well-formed neighbours keep theirs. */
static void check_malformed(void)
{
    static const char *const bodies[][2] = {
        {"base64", "QUJD!!!REVG\r\n"},         /* characters outside the alphabet */
        {"base64", "QUJDREVGRw\r\n"},          /* a partial quantum without padding */
        {"base64", "QUJD\r\nRA=\r\n"},        /* wrong padding */
        {"base64", "QU=JD\r\n"},               /* data after the padding */
        {"quoted-printable", "a=G1b\r\n"},     /* '=' without hex digits */
        {"quoted-printable", "trailing \r\nx"}, /* whitespace before a line break */
        {"quoted-printable", "end=\r"},         /* a lone CR */
        {"base64", "QUJDREVGRw==\r\n"},        /* fine */
        {"quoted-printable", "caf=C3=A9=\r\nsoft\r\n"}, /* fine */
    };
    size_t n = sizeof(bodies) / sizeof(bodies[0]);
    lt_buf_t *b = lt_buf_new(1 << 20);
    lt_buf_appendf(b, "Subject: bad\r\nMIME-Version: 1.0\r\n"
                      "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
                      "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n");
    for (size_t i = 0; i < n; i++)
        lt_buf_appendf(b,
                       "--b\r\nContent-Type: application/octet-stream\r\n"
                       "Content-Disposition: attachment; filename=f%zu\r\n"
                       "Content-Transfer-Encoding: %s\r\n\r\n%s\r\n",
                       i, bodies[i][0], bodies[i][1]);
    lt_buf_appendf(b, "--b--\r\n");
    lt_mime_t *m = NULL;
    char err[256];
    CHECK_INT(lt_mime_parse_mem(lt_buf_data(b), lt_buf_len(b), NULL, &m, err, sizeof(err)),
              LT_OK);
    CHECK_INT(m ? lt_mime_attachment_count(m) : 0, n);
    for (size_t i = 0; m && i < n && i < lt_mime_attachment_count(m); i++) {
        uint64_t off = 7, len = 7;
        const char *enc = "untouched";
        lt_err_t r = lt_mime_attachment_range(m, i, &off, &len, &enc);
        CHECK_MSG(r == (i < n - 2 ? LT_ERR_NOT_FOUND : LT_OK), "body %zu (%s %s): %s", i,
                  bodies[i][0], bodies[i][1], r ? "no range" : "range");
        if (r) /* no range: the outputs are left alone */
            CHECK_MSG(off == 7 && len == 7 && !strcmp(enc, "untouched"), "body %zu: %s", i, enc);
    }
    if (m)
        CHECK_INT(check_ranges("malformed", m, lt_buf_data(b), lt_buf_len(b)), 2);
    lt_mime_destroy(m);
    lt_buf_destroy(b);
}

/* no_text (the worker's parse): the same attachments, sizes, hashes,
 * ranges and Message-ID as a full parse, no text extracted. */
static void check_no_text(void)
{
    static const char *const files[] = {"mixed3.eml", "alternative.eml", "related.eml",
                                        "nested-rfc822.eml", "plain.eml", "bad-base64.eml"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        char path[1024], err[256];
        snprintf(path, sizeof(path), DATA "%s", files[f]);
        lt_buf_t *raw = slurp(path);
        lt_mime_limits_t lim;
        lt_mime_limits_default(&lim);
        lt_mime_t *full = NULL, *lean = NULL;
        CHECK_INT(lt_mime_parse_mem(lt_buf_data(raw), lt_buf_len(raw), &lim, &full, err,
                                    sizeof(err)),
                  LT_OK);
        lim.no_text = 1;
        CHECK_INT(lt_mime_parse_mem(lt_buf_data(raw), lt_buf_len(raw), &lim, &lean, err,
                                    sizeof(err)),
                  LT_OK);
        if (full && lean) {
            CHECK_STR(lt_mime_text(lean, NULL), "");
            CHECK(lt_mime_text_source(lean) == NULL);
            CHECK_MSG(!lt_mime_text_part_id(full) == !lt_mime_text_part_id(lean) &&
                          (!lt_mime_text_part_id(full) ||
                           !strcmp(lt_mime_text_part_id(full), lt_mime_text_part_id(lean))),
                      "%s: text part", files[f]);
            CHECK_MSG((!lt_mime_message_id(full) && !lt_mime_message_id(lean)) ||
                          (lt_mime_message_id(full) && lt_mime_message_id(lean) &&
                           !strcmp(lt_mime_message_id(full), lt_mime_message_id(lean))),
                      "%s: message id", files[f]);
            CHECK_INT(lt_mime_attachment_count(lean), lt_mime_attachment_count(full));
            for (size_t i = 0; i < lt_mime_attachment_count(full) &&
                               i < lt_mime_attachment_count(lean);
                 i++) {
                CHECK_STR(lt_mime_attachment_id(lean, i), lt_mime_attachment_id(full, i));
                CHECK_STR(lt_mime_attachment_sha256(lean, i), lt_mime_attachment_sha256(full, i));
                CHECK_INT(lt_mime_attachment_size(lean, i), lt_mime_attachment_size(full, i));
                uint64_t o1 = 0, l1 = 0, o2 = 0, l2 = 0;
                const char *e1 = NULL, *e2 = NULL;
                CHECK_INT(lt_mime_attachment_range(lean, i, &o2, &l2, &e2),
                          lt_mime_attachment_range(full, i, &o1, &l1, &e1));
                CHECK(o1 == o2 && l1 == l2 && e1 == e2);
            }
            CHECK(strlen(lt_mime_text(full, NULL)) > 0 || !strcmp(files[f], "related.eml") ||
                  !strcmp(files[f], "nested-rfc822.eml") || !strcmp(files[f], "bad-base64.eml"));
        }
        lt_mime_destroy(full);
        lt_mime_destroy(lean);
        lt_buf_destroy(raw);
    }
}

int main(void)
{
    lt_mime_global_init();
    check_samples();
    check_encodings();
    check_malformed();
    check_no_text();
    lt_mime_global_shutdown();
    return lt_test_done("test_mime_ranges");
}
