#include "lt_imap_utf7.h"

#include <stdint.h>

#include "lt_b64.h"

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int is_direct(uint32_t cp)
{
    return cp >= 0x20 && cp <= 0x7e;
}

/* Decode one UTF-8 sequence; returns its length or 0 when invalid. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

static void utf8_put(lt_buf_t *tmp, uint32_t cp, lt_err_t *err)
{
    unsigned char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp, n = 1;
    } else if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        o[0] = (unsigned char)(0xf0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (!*err)
        *err = lt_buf_append(tmp, o, n);
}

lt_err_t lt_imap_utf7_encode(const char *utf8, size_t len, lt_buf_t *out, char *errstr,
                             size_t errstr_size)
{
    const unsigned char *s = (const unsigned char *)utf8;
    lt_buf_t *tmp = lt_buf_new(lt_buf_cap(out));
    lt_err_t err = LT_OK;
    size_t i = 0;
    while (i < len && !err) {
        uint32_t cp;
        size_t n = utf8_next(s + i, len - i, &cp);
        if (n == 0 || cp == 0) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                            "mailbox name: invalid UTF-8 at byte %zu", i);
            goto out;
        }
        if (is_direct(cp)) {
            err = lt_buf_append(tmp, cp == '&' ? "&-" : (const char *)s + i, cp == '&' ? 2 : 1);
            i += n;
            continue;
        }
        /* A base64 run over consecutive non-direct characters, as UTF-16. */
        uint32_t bits = 0;
        int nbits = 0;
        err = lt_buf_append(tmp, "&", 1);
        while (i < len && !err) {
            n = utf8_next(s + i, len - i, &cp);
            if (n == 0 || cp == 0) {
                err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                "mailbox name: invalid UTF-8 at byte %zu", i);
                goto out;
            }
            if (is_direct(cp))
                break;
            uint16_t u[2];
            int nu = 1;
            if (cp >= 0x10000) {
                u[0] = (uint16_t)(0xd800 + ((cp - 0x10000) >> 10));
                u[1] = (uint16_t)(0xdc00 + ((cp - 0x10000) & 0x3ff));
                nu = 2;
            } else {
                u[0] = (uint16_t)cp;
            }
            for (int k = 0; k < nu && !err; k++) {
                bits = (bits << 16) | u[k];
                nbits += 16;
                while (nbits >= 6 && !err) {
                    nbits -= 6;
                    err = lt_buf_append(tmp, &b64chars[(bits >> nbits) & 0x3f], 1);
                }
                bits &= (1u << nbits) - 1;
            }
            i += n;
        }
        if (nbits > 0 && !err)
            err = lt_buf_append(tmp, &b64chars[(bits << (6 - nbits)) & 0x3f], 1);
        if (!err)
            err = lt_buf_append(tmp, "-", 1);
    }
    if (!err)
        err = lt_buf_append(out, lt_buf_data(tmp), lt_buf_len(tmp));
    if (err == LT_ERR_TOO_BIG)
        lt_seterr(errstr, errstr_size, err, "mailbox name: encoded name too long");
out:
    lt_buf_destroy(tmp);
    return err;
}

lt_err_t lt_imap_utf7_decode(const char *utf7, size_t len, lt_buf_t *out, char *errstr,
                             size_t errstr_size)
{
    const unsigned char *s = (const unsigned char *)utf7;
    lt_buf_t *tmp = lt_buf_new(lt_buf_cap(out));
    lt_err_t err = LT_OK;
    size_t i = 0;
    size_t last_run_end = (size_t)-1; /* offset just after the last run's '-' */
    const char *why = NULL;
    while (i < len && !err) {
        unsigned char c = s[i];
        if (!is_direct(c)) {
            why = "byte outside printable US-ASCII";
            goto bad;
        }
        if (c != '&') {
            err = lt_buf_append(tmp, &c, 1);
            i++;
            continue;
        }
        size_t start = i++;
        if (i < len && s[i] == '-') {
            err = lt_buf_append(tmp, "&", 1);
            i++;
            continue;
        }
        if (start == last_run_end) {
            i = start;
            why = "adjacent base64 runs (not canonical)";
            goto bad;
        }
        uint32_t bits = 0, hi = 0;
        int nbits = 0;
        size_t nchars = 0;
        for (;;) {
            if (i >= len) {
                why = "unterminated base64 run";
                goto bad;
            }
            if (s[i] == '-')
                break;
            int v = lt_b64_value(s[i], "+", ",");
            if (v < 0) {
                why = "invalid character in base64 run";
                goto bad;
            }
            bits = (bits << 6) | (uint32_t)v;
            nbits += 6;
            nchars++;
            if (nbits >= 16) {
                nbits -= 16;
                uint32_t u = (bits >> nbits) & 0xffff;
                bits &= (1u << nbits) - 1;
                if (hi) {
                    if (u < 0xdc00 || u > 0xdfff) {
                        why = "unpaired high surrogate";
                        goto bad;
                    }
                    utf8_put(tmp, 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00), &err);
                    hi = 0;
                } else if (u >= 0xd800 && u <= 0xdbff) {
                    hi = u;
                } else if (u >= 0xdc00 && u <= 0xdfff) {
                    why = "unpaired low surrogate";
                    goto bad;
                } else if (u == 0 || is_direct(u)) {
                    why = u ? "printable ASCII inside base64 (not canonical)" : "U+0000";
                    goto bad;
                } else {
                    utf8_put(tmp, u, &err);
                }
            }
            i++;
        }
        if (nchars == 0 || hi || nbits >= 6 || bits != 0) {
            why = hi ? "unpaired high surrogate" : "bad base64 run length or padding bits";
            goto bad;
        }
        i++; /* '-' */
        last_run_end = i;
    }
    if (!err)
        err = lt_buf_append(out, lt_buf_data(tmp), lt_buf_len(tmp));
    if (err == LT_ERR_TOO_BIG)
        lt_seterr(errstr, errstr_size, err, "mailbox name: decoded name too long");
    lt_buf_destroy(tmp);
    return err;
bad:
    lt_buf_destroy(tmp);
    return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                     "invalid modified UTF-7 mailbox name at byte %zu: %s", i, why);
}
