#include "lt_trace.h"

#include <string.h>

#include <openssl/rand.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is invalid per the spec */
}

/* Decode 2*n lower-case hex digits; -1 on a bad digit. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void tohex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

lt_err_t lt_trace_parse(const char *s, size_t len, lt_trace_t *out, char *errstr,
                        size_t errstr_size)
{
    lt_trace_t t;
    if (!s || len < LT_TRACEPARENT_LEN)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: expected 55 characters "
                         "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>, got %zu",
                         s ? len : 0);
    if (unhex(s, &t.version, 1))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: version is not 2 lower-case hex digits");
    if (t.version == 0xff)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "traceparent: version ff is invalid");
    if (t.version == 0x00 && len != LT_TRACEPARENT_LEN)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: version 00 must be exactly 55 characters, got %zu", len);
    if (t.version != 0x00 && len > LT_TRACEPARENT_LEN && s[LT_TRACEPARENT_LEN] != '-')
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: expected '-' after the flags of a version %02x value",
                         t.version);
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: fields must be separated by '-'");
    if (unhex(s + 3, t.trace_id, sizeof(t.trace_id)))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: trace-id is not 32 lower-case hex digits");
    if (unhex(s + 36, t.span_id, sizeof(t.span_id)))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: parent-id is not 16 lower-case hex digits");
    if (unhex(s + 53, &t.flags, 1))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: trace-flags is not 2 lower-case hex digits");
    if (all_zero(t.trace_id, sizeof(t.trace_id)))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: an all-zero trace-id is invalid");
    if (all_zero(t.span_id, sizeof(t.span_id)))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "traceparent: an all-zero parent-id is invalid");
    *out = t;
    return LT_OK;
}

/* Random bytes that are not all zero (an all-zero id is invalid). */
static lt_err_t random_id(uint8_t *p, size_t n, char *errstr, size_t errstr_size)
{
    for (int tries = 0; tries < 8; tries++) {
        if (RAND_bytes(p, (int)n) != 1)
            return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                             "trace: the random generator failed");
        if (!all_zero(p, n))
            return LT_OK;
    }
    return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                     "trace: the random generator returned zeros");
}

lt_err_t lt_trace_new(lt_trace_t *out, char *errstr, size_t errstr_size)
{
    lt_trace_t t = {0};
    lt_err_t err = random_id(t.trace_id, sizeof(t.trace_id), errstr, errstr_size);
    if (!err)
        err = random_id(t.span_id, sizeof(t.span_id), errstr, errstr_size);
    if (err)
        return err;
    t.flags = LT_TRACE_FLAG_SAMPLED;
    *out = t;
    return LT_OK;
}

lt_err_t lt_trace_child(const lt_trace_t *parent, lt_trace_t *child, char *errstr,
                        size_t errstr_size)
{
    lt_trace_t t = *parent;
    t.version = 0;
    /* A new id that differs from the parent's. */
    do {
        lt_err_t err = random_id(t.span_id, sizeof(t.span_id), errstr, errstr_size);
        if (err)
            return err;
    } while (!memcmp(t.span_id, parent->span_id, sizeof(t.span_id)));
    *child = t;
    return LT_OK;
}

lt_err_t lt_trace_continue(const char *s, lt_trace_t *out, int *propagated, char *errstr,
                           size_t errstr_size)
{
    lt_trace_t parent;
    if (propagated)
        *propagated = 0;
    if (s && *s && lt_trace_parse(s, strlen(s), &parent, NULL, 0) == LT_OK) {
        lt_err_t err = lt_trace_child(&parent, out, errstr, errstr_size);
        if (!err && propagated)
            *propagated = 1;
        return err;
    }
    return lt_trace_new(out, errstr, errstr_size);
}

void lt_trace_format(const lt_trace_t *t, char out[LT_TRACEPARENT_SIZE])
{
    memcpy(out, "00-", 3);
    tohex(t->trace_id, sizeof(t->trace_id), out + 3);
    out[35] = '-';
    tohex(t->span_id, sizeof(t->span_id), out + 36);
    out[52] = '-';
    tohex(&t->flags, 1, out + 53);
    out[55] = 0;
}

void lt_trace_id_hex(const lt_trace_t *t, char out[LT_TRACE_ID_HEX_SIZE])
{
    tohex(t->trace_id, sizeof(t->trace_id), out);
    out[32] = 0;
}

void lt_trace_span_id_hex(const lt_trace_t *t, char out[LT_SPAN_ID_HEX_SIZE])
{
    tohex(t->span_id, sizeof(t->span_id), out);
    out[16] = 0;
}

int lt_trace_sampled(const lt_trace_t *t)
{
    return (t->flags & LT_TRACE_FLAG_SAMPLED) != 0;
}

int lt_trace_same_trace(const lt_trace_t *a, const lt_trace_t *b)
{
    return !memcmp(a->trace_id, b->trace_id, sizeof(a->trace_id));
}
