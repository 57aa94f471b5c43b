#include "lt_objkey.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define HASH_HEX 16    /* hex digits of SHA-256 kept in a truncated name */
#define EXT_MAX_RAW 16 /* longest extension kept, raw bytes after the '.' */

static const char hexdig[] = "0123456789ABCDEF";

static int keep_byte(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* Escaped form of one byte at position `pos` of a component: 1 or 3 chars. */
static size_t esc_byte(uint8_t c, size_t pos, char out[3])
{
    if (keep_byte(c) && !(pos == 0 && c == '.')) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = '%';
    out[1] = hexdig[c >> 4];
    out[2] = hexdig[c & 15];
    return 3;
}

static size_t esc_len(const uint8_t *p, size_t len, size_t startpos)
{
    size_t n = 0;
    char tmp[3];
    for (size_t i = 0; i < len; i++)
        n += esc_byte(p[i], startpos + i, tmp);
    return n;
}

/* Escape p[0..len) into out (room checked by the caller), return length. */
static size_t esc_into(const uint8_t *p, size_t len, size_t startpos, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += esc_byte(p[i], startpos + i, out + n);
    return n;
}

static void hash_hex16(const void *raw, size_t len, char out[HASH_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(raw, len, md, &mdlen, EVP_sha256(), NULL) || mdlen < HASH_HEX / 2) {
        /* Only fails when OpenSSL is broken; fail loudly rather than collide. */
        fputs("lattice: SHA-256 unavailable\n", stderr);
        abort();
    }
    static const char lo[] = "0123456789abcdef";
    for (int i = 0; i < HASH_HEX / 2; i++) {
        out[2 * i] = lo[md[i] >> 4];
        out[2 * i + 1] = lo[md[i] & 15];
    }
    out[HASH_HEX] = 0;
}

lt_err_t lt_objkey_component(const void *rawv, size_t len, lt_objkey_limit_t limit, char *out,
                             size_t outsz, char *errstr, size_t errstr_size)
{
    size_t cap = limit.cap;
    int keep_ext = limit.keep_ext;
    const uint8_t *raw = rawv;
    if (cap < LT_OBJKEY_CAP_MIN || cap > LT_OBJKEY_MAX || outsz <= cap || !out)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "key component: bad cap %zu or output size %zu", cap, outsz);
    if (!raw || len == 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "key component: empty");

    size_t full = esc_len(raw, len, 0);
    if (full <= cap) {
        size_t n = esc_into(raw, len, 0, out);
        out[n] = 0;
        return LT_OK;
    }

    /* Truncate: prefix + "~" + hash [+ extension]. */
    char hash[HASH_HEX + 1];
    hash_hex16(raw, len, hash);
    size_t ext_at = len; /* raw offset of the kept extension ('.' included) */
    if (keep_ext) {
        for (size_t i = len; i-- > 1;) {
            if (raw[i] == '.') {
                size_t elen = len - i - 1;
                if (elen >= 1 && elen <= EXT_MAX_RAW)
                    ext_at = i;
                break;
            }
            if (len - i > EXT_MAX_RAW)
                break;
        }
    }
    /* The extension is never at position 0 (ext_at >= 1), so its '.' stays. */
    size_t ext_esc = ext_at < len ? esc_len(raw + ext_at, len - ext_at, ext_at) : 0;
    size_t suffix = 1 + HASH_HEX + ext_esc; /* <= 1 + 16 + 49 = 66 < LT_OBJKEY_CAP_MIN */
    size_t budget = cap - suffix;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char tmp[3];
        size_t k = esc_byte(raw[i], i, tmp);
        if (n + k > budget)
            break;
        memcpy(out + n, tmp, k);
        n += k;
    }
    out[n++] = '~';
    memcpy(out + n, hash, HASH_HEX);
    n += HASH_HEX;
    if (ext_at < len)
        n += esc_into(raw + ext_at, len - ext_at, ext_at, out + n);
    out[n] = 0;
    return LT_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* lower case is never produced: reject it to keep decoding 1:1 */
}

lt_err_t lt_objkey_decode_component(const char *comp, void *outv, size_t outsz, size_t *outlen)
{
    uint8_t *out = outv;
    size_t n = 0;
    if (!comp || !*comp || !out || outsz == 0)
        return LT_ERR_INVALID;
    for (size_t i = 0; comp[i]; i++) {
        uint8_t c = (uint8_t)comp[i];
        int v;
        if (c == '%') {
            int hi = hexval(comp[i + 1]);
            int lo = hi < 0 ? -1 : hexval(comp[i + 2]);
            if (lo < 0)
                return LT_ERR_INVALID;
            v = hi * 16 + lo;
            /* A byte we would have kept as is must not arrive escaped. */
            if (keep_byte((uint8_t)v) && !(i == 0 && v == '.'))
                return LT_ERR_INVALID;
            i += 2;
        } else if (keep_byte(c) && !(i == 0 && c == '.')) {
            v = c;
        } else {
            return LT_ERR_INVALID; /* includes '~' of a truncated component */
        }
        if (n + 1 >= outsz)
            return LT_ERR_TOO_BIG;
        out[n++] = (uint8_t)v;
    }
    out[n] = 0;
    if (outlen)
        *outlen = n;
    return LT_OK;
}

/* Append "{name}/{escaped value}" pieces. */
typedef struct {
    char *out;
    size_t outsz;
    size_t len;
    lt_err_t err;
    char *errstr;
    size_t errstr_size;
} kb_t;

static void kb_lit(kb_t *k, const char *s)
{
    size_t n = strlen(s);
    if (k->err)
        return;
    if (k->len + n >= k->outsz || k->len + n > LT_OBJKEY_MAX) {
        k->err = lt_seterr(k->errstr, k->errstr_size, LT_ERR_TOO_BIG, "object key too long");
        return;
    }
    memcpy(k->out + k->len, s, n + 1);
    k->len += n;
}

static void kb_comp(kb_t *k, const char *what, const char *raw)
{
    char comp[LT_OBJKEY_MAX + 1];
    if (k->err)
        return;
    if (!raw || !*raw) {
        k->err = lt_seterr(k->errstr, k->errstr_size, LT_ERR_INVALID, "object key: empty %s", what);
        return;
    }
    k->err = lt_objkey_component(raw, strlen(raw), LT_OBJKEY_ID_LIMIT, comp, sizeof(comp),
                                 k->errstr, k->errstr_size);
    kb_lit(k, comp);
}

typedef enum { KEY_PREFIX, KEY_MESSAGE, KEY_ATTACHMENT } key_kind_t;

/* The key of kind into k's output (k: its output, size and errstr set).
 * att_id and filename: KEY_ATTACHMENT only. */
static lt_err_t build(kb_t k, const lt_objkey_msg_t *m, key_kind_t kind, const char *att_id,
                      const char *filename)
{
    char *out = k.out;
    if (!out || k.outsz == 0)
        return lt_seterr(k.errstr, k.errstr_size, LT_ERR_INVALID, "object key: no output buffer");
    out[0] = 0;
    kb_lit(&k, "tenant/");
    kb_comp(&k, "tenant", m->tenant);
    kb_lit(&k, "/account/");
    kb_comp(&k, "account id", m->account_id);
    kb_lit(&k, "/provider/");
    kb_comp(&k, "provider", m->provider);
    kb_lit(&k, "/message/");
    kb_comp(&k, "provider message id", m->provider_message_id);
    kb_lit(&k, "/");
    if (kind == KEY_MESSAGE) {
        kb_lit(&k, "message.eml");
    } else if (kind == KEY_ATTACHMENT) {
        kb_lit(&k, "attachments/");
        kb_comp(&k, "attachment id", att_id);
        kb_lit(&k, "/");
        if (!k.err) {
            char comp[LT_OBJKEY_MAX + 1];
            if (filename && *filename) {
                k.err = lt_objkey_component(filename, strlen(filename), LT_OBJKEY_FILENAME_LIMIT,
                                            comp, sizeof(comp), k.errstr, k.errstr_size);
            } else {
                /* '~' marks a made name: no escaped filename has one
                 * before a hash, so neither can collide with a real name */
                char h[HASH_HEX + 1];
                hash_hex16("", 0, h);
                snprintf(comp, sizeof(comp), "%s~%s", filename ? "empty" : "unnamed", h);
            }
            kb_lit(&k, comp);
        }
    }
    if (k.err)
        out[0] = 0;
    return k.err;
}

#define KB(out, outsz, errstr, errstr_size) ((kb_t){out, outsz, 0, LT_OK, errstr, errstr_size})

lt_err_t lt_objkey_message(const lt_objkey_msg_t *msg, char *out, size_t outsz, char *errstr,
                           size_t errstr_size)
{
    return build(KB(out, outsz, errstr, errstr_size), msg, KEY_MESSAGE, NULL, NULL);
}

lt_err_t lt_objkey_message_prefix(const lt_objkey_msg_t *msg, char *out, size_t outsz, char *errstr,
                                  size_t errstr_size)
{
    return build(KB(out, outsz, errstr, errstr_size), msg, KEY_PREFIX, NULL, NULL);
}

lt_err_t lt_objkey_manifest(const lt_objkey_msg_t *msg, char *out, size_t outsz, char *errstr,
                            size_t errstr_size)
{
    lt_err_t err = lt_objkey_message_prefix(msg, out, outsz, errstr, errstr_size);
    if (err)
        return err;
    size_t n = strlen(out);
    if (n + sizeof("manifest.json") - 1 > LT_OBJKEY_MAX || n + sizeof("manifest.json") > outsz)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "object key too long");
    memcpy(out + n, "manifest.json", sizeof("manifest.json"));
    return LT_OK;
}

lt_err_t lt_objkey_attachment(const lt_objkey_msg_t *msg, const char *attachment_id,
                              const char *filename, char *out, size_t outsz, char *errstr,
                              size_t errstr_size)
{
    return build(KB(out, outsz, errstr, errstr_size), msg, KEY_ATTACHMENT, attachment_id, filename);
}

/* Length of the valid UTF-8 sequence at p (no overlongs, surrogates or
 * code points above U+10FFFF), 0 if invalid. */
static size_t utf8_seq(const uint8_t *p)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

int lt_objkey_is_safe(const char *key)
{
    if (!key)
        return 0;
    const uint8_t *p = (const uint8_t *)key;
    size_t len = strlen(key);
    if (len == 0 || len > LT_OBJKEY_MAX || key[0] == '/')
        return 0;
    size_t seg = 0; /* start of the current segment */
    for (size_t i = 0; i <= len;) {
        if (i == len || p[i] == '/') {
            size_t slen = i - seg;
            if (slen == 0 || (slen == 1 && p[seg] == '.') ||
                (slen == 2 && p[seg] == '.' && p[seg + 1] == '.'))
                return 0;
            if (i == len)
                break;
            seg = ++i;
            continue;
        }
        if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
            return 0;
        size_t n = utf8_seq(p + i); /* reads stop at the NUL: it fails the checks */
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

int lt_objkey_bucket_valid(const char *b)
{
    if (!b)
        return 0;
    size_t len = strlen(b);
    if (len < 3 || len > LT_OBJKEY_BUCKET_MAX)
        return 0;
    int dots = 0, all_digits_dots = 1;
    for (size_t i = 0; i < len; i++) {
        char c = b[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '.' && c != '-')
            return 0;
        if ((i == 0 || i == len - 1) && !alnum)
            return 0;
        if (c == '.' && (b[i + 1] == '.' || b[i + 1] == '-' || (i > 0 && b[i - 1] == '-')))
            return 0;
        if (c == '.')
            dots++;
        if (!(c == '.' || (c >= '0' && c <= '9')))
            all_digits_dots = 0;
    }
    if (dots == 3 && all_digits_dots)
        return 0; /* looks like an IPv4 address */
    return 1;
}

lt_err_t lt_objkey_uri_format(const char *bucket, const char *key, char *out, size_t outsz)
{
    if (!out || outsz == 0)
        return LT_ERR_INVALID;
    out[0] = 0;
    if (!lt_objkey_bucket_valid(bucket) || !lt_objkey_is_safe(key))
        return LT_ERR_INVALID;
    int n = snprintf(out, outsz, "s3://%s/%s", bucket, key);
    if (n < 0 || (size_t)n >= outsz) {
        out[0] = 0;
        return LT_ERR_TOO_BIG;
    }
    return LT_OK;
}

lt_err_t lt_objkey_uri_parse(const char *uri, char *bucket_out, size_t bucket_size, char *key_out,
                             size_t key_size, char *errstr, size_t errstr_size)
{
    if (bucket_out && bucket_size)
        bucket_out[0] = 0;
    if (key_out && key_size)
        key_out[0] = 0;
    if (!uri || strncmp(uri, "s3://", 5) != 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3 URI: must start with s3://");
    const char *b = uri + 5;
    const char *slash = strchr(b, '/');
    if (!slash)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3 URI: no key");
    size_t blen = (size_t)(slash - b);
    char bucket[LT_OBJKEY_BUCKET_MAX + 1];
    if (blen > LT_OBJKEY_BUCKET_MAX)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3 URI: bucket name too long");
    memcpy(bucket, b, blen);
    bucket[blen] = 0;
    if (!lt_objkey_bucket_valid(bucket))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3 URI: invalid bucket name");
    const char *key = slash + 1;
    if (!lt_objkey_is_safe(key))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3 URI: unsafe or empty key");
    size_t klen = strlen(key);
    if (!bucket_out || !key_out || bucket_size <= blen || key_size <= klen)
        return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG, "S3 URI: output buffer too small");
    memcpy(bucket_out, bucket, blen + 1);
    memcpy(key_out, key, klen + 1);
    return LT_OK;
}
