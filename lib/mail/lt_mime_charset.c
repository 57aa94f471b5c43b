#include "lt_mime_charset.h"

#include <gmime/gmime.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lt_mime.h"

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid.
 * NUL counts as invalid: our strings are C strings. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return c ? 1 : 0;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

/* Expected length of a sequence by its lead byte (0: not a lead byte). */
static size_t utf8_lead_len(uint8_t c)
{
    if (c >= 0xC2 && c < 0xE0)
        return 2;
    if (c >= 0xE0 && c < 0xF0)
        return 3;
    if (c >= 0xF0 && c < 0xF5)
        return 4;
    return 0;
}

/* Valid UTF-8, ignoring a sequence cut short by the end of the data (the
 * data may have been cut at a cap). */
static int utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            size_t want = utf8_lead_len(p[i]);
            if (want && n - i < want) {
                int prefix_ok = 1;
                for (size_t j = i + 1; j < n; j++)
                    prefix_ok &= (p[j] & 0xC0) == 0x80;
                return prefix_ok;
            }
            return 0;
        }
        i += k;
    }
    return 1;
}

lt_err_t lt_mime_put_cp(lt_buf_t *b, uint32_t cp)
{
    uint8_t u[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return lt_buf_append(b, LT_MIME_REPLACEMENT, 3);
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | (cp >> 6));
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | (cp >> 12));
        u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | (cp >> 18));
        u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return lt_buf_append(b, u, n);
}

/* Windows-1252 0x80..0x9F; 0 = undefined. */
static const uint16_t CP1252[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178,
};

static void from_cp1252(const uint8_t *p, size_t n, lt_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = p[i];
        if (cp >= 0x80 && cp < 0xA0)
            cp = CP1252[cp - 0x80];
        if (cp == 0)
            cp = 0xFFFD;
        if (lt_mime_put_cp(out, cp))
            return;
    }
}

/* Copy valid UTF-8, each invalid byte becoming U+FFFD. */
void lt_mime_utf8_sanitize(const uint8_t *p, size_t n, lt_buf_t *out)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        size_t k;
        while (i < n && (k = utf8_seq(p + i, n - i)) != 0)
            i += k;
        if (i > start && lt_buf_append(out, p + start, i - start))
            return;
        if (i < n) {
            if (lt_buf_append(out, LT_MIME_REPLACEMENT, 3))
                return;
            i++;
        }
    }
}

/* No usable charset: UTF-8 if the bytes are UTF-8, else Windows-1252 (the
 * common case of undeclared 8-bit mail). */
static void from_unknown(const uint8_t *p, size_t n, lt_buf_t *out)
{
    if (utf8_valid(p, n))
        lt_mime_utf8_sanitize(p, n, out);
    else
        from_cp1252(p, n, out);
}

static int is_ascii_name(const char *cs)
{
    return !strcasecmp(cs, "us-ascii") || !strcasecmp(cs, "ascii") ||
           !strcasecmp(cs, "ansi_x3.4-1968") || !strcasecmp(cs, "iso646-us");
}

/* raw bytes in charset cs (may be NULL) to UTF-8 (maybe still with NULs and
 * CRs; the caller cleans). */
void lt_mime_to_utf8(const char *cs, const uint8_t *p, size_t n, lt_buf_t *out)
{
    if (!cs || !*cs || is_ascii_name(cs)) {
        from_unknown(p, n, out);
        return;
    }
    if (!strcasecmp(cs, "utf-8") || !strcasecmp(cs, "utf8")) {
        lt_mime_utf8_sanitize(p, n, out);
        return;
    }
    const char *name = g_mime_charset_iconv_name(cs);
    iconv_t cd = iconv_open("UTF-8", name ? name : cs);
    if (cd == (iconv_t)-1) {
        from_unknown(p, n, out);
        return;
    }
    char *in = (char *)p;
    size_t inleft = n;
    char tmp[16384];
    while (inleft > 0) {
        char *o = tmp;
        size_t oleft = sizeof(tmp);
        size_t r = iconv(cd, &in, &inleft, &o, &oleft);
        int e = errno;
        if (o > tmp && lt_buf_append(out, tmp, (size_t)(o - tmp)))
            goto out;
        if (r == (size_t)-1) {
            if (e == E2BIG)
                continue;
            /* EILSEQ / EINVAL: one bad byte becomes U+FFFD, go on. */
            if (lt_buf_append(out, LT_MIME_REPLACEMENT, 3))
                goto out;
            in++;
            inleft--;
        }
    }
    char *o = tmp;
    size_t oleft = sizeof(tmp);
    iconv(cd, NULL, NULL, &o, &oleft);
    if (o > tmp)
        lt_buf_append(out, tmp, (size_t)(o - tmp));
out:
    iconv_close(cd);
}

/* Cut b to at most max bytes at a UTF-8 character boundary. */
int lt_mime_utf8_cut(char *s, size_t *len, size_t max)
{
    if (*len <= max)
        return 0;
    size_t n = max;
    while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80)
        n--;
    s[n] = 0;
    *len = n;
    return 1;
}

/* A header string made clean: valid UTF-8, CR/LF as spaces, at most max
 * bytes (cut: *flags gets LT_MIME_F_HEADER_TRUNCATED). NULL in, NULL out. */
char *lt_mime_clean_string(const char *s, size_t max, unsigned *flags)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    lt_buf_t *b = lt_buf_new(n * 3 + 16);
    lt_mime_utf8_sanitize((const uint8_t *)s, n, b);
    size_t len;
    char *r = (char *)lt_buf_steal(b, &len);
    lt_buf_destroy(b);
    if (!r)
        r = lt_xstrdup("");
    for (size_t i = 0; i < len; i++)
        if (r[i] == '\r' || r[i] == '\n')
            r[i] = ' ';
    if (lt_mime_utf8_cut(r, &len, max))
        *flags |= LT_MIME_F_HEADER_TRUNCATED;
    return r;
}
