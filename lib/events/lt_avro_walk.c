/* lt_avro_walk: the bounded walk of an Avro binary datum that every decoder
 * of this project runs before avro-c (lt_avro_walk.h). */
#include "lt_avro_walk.h"

#include <stdint.h>
#include <stdio.h>

#include "lt_err.h"

/* -- pre-validation: a bounded walk of the Avro binary encoding --
 *
 * avro-c 1.11 trusts its input: it allocates whatever a length prefix says,
 * negates INT64_MIN block counts, and loops over absurd array counts. So
 * before avro-c sees a datum, this walk checks it against the writer schema:
 * every varint at most 10 bytes, every length within the remaining bytes,
 * union and enum indexes in range, booleans 0/1, nesting depth and the number
 * of visited values bounded, and no trailing bytes. */

typedef struct {
    const uint8_t *p;
    size_t n;
    size_t pos;
    size_t base; /* offset of the datum in its record, for messages */
    long steps;
    char *errstr;
    size_t errstr_size;
} walk_t;

static int walk_fail(walk_t *w, const char *what)
{
    lt_seterr(w->errstr, w->errstr_size, LT_ERR_INVALID, "bad Avro datum at byte %zu: %s",
              w->base + w->pos, what);
    return -1;
}

static int walk_varint(walk_t *w, int64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (w->pos >= w->n)
            return walk_fail(w, "truncated (in a varint)");
        uint8_t b = w->p[w->pos++];
        if (i == 9 && b > 1)
            return walk_fail(w, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return walk_fail(w, "varint longer than 10 bytes");
}

static int walk_skip(walk_t *w, int64_t len, const char *what)
{
    if (len < 0)
        return walk_fail(w, what);
    if ((uint64_t)len > w->n - w->pos)
        return walk_fail(w, "truncated (a length runs past the end)");
    w->pos += (size_t)len;
    return 0;
}

static int walk_value(walk_t *w, avro_schema_t s, int depth);

static int walk_blocks(walk_t *w, avro_schema_t items, int is_map, int depth)
{
    for (;;) {
        int64_t count;
        if (walk_varint(w, &count))
            return -1;
        if (count == 0)
            return 0;
        if (count < 0) {
            if (count == INT64_MIN)
                return walk_fail(w, "invalid block count");
            count = -count;
            int64_t bytes;
            if (walk_varint(w, &bytes))
                return -1;
            if (bytes < 0)
                return walk_fail(w, "negative block size");
        }
        if (count > LT_AVRO_WALK_MAX_STEPS)
            return walk_fail(w, "block count too large");
        for (int64_t i = 0; i < count; i++) {
            if (is_map) {
                int64_t klen;
                if (walk_varint(w, &klen) || walk_skip(w, klen, "negative map key length"))
                    return -1;
            }
            if (walk_value(w, items, depth + 1))
                return -1;
        }
    }
}

static int walk_value(walk_t *w, avro_schema_t s, int depth)
{
    int64_t v;
    if (depth > LT_AVRO_WALK_MAX_DEPTH)
        return walk_fail(w, "nesting too deep");
    if (++w->steps > LT_AVRO_WALK_MAX_STEPS)
        return walk_fail(w, "too many values");
    while (is_avro_link(s))
        s = avro_schema_link_target(s);
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        if (w->pos >= w->n)
            return walk_fail(w, "truncated (boolean)");
        if (w->p[w->pos] > 1)
            return walk_fail(w, "boolean is not 0 or 1");
        w->pos++;
        return 0;
    case AVRO_INT32:
        if (walk_varint(w, &v))
            return -1;
        if (v < INT32_MIN || v > INT32_MAX)
            return walk_fail(w, "int out of range");
        return 0;
    case AVRO_INT64:
        return walk_varint(w, &v);
    case AVRO_FLOAT:
        return walk_skip(w, 4, "float");
    case AVRO_DOUBLE:
        return walk_skip(w, 8, "double");
    case AVRO_STRING:
    case AVRO_BYTES:
        if (walk_varint(w, &v))
            return -1;
        return walk_skip(w, v, "negative string/bytes length");
    case AVRO_FIXED:
        return walk_skip(w, avro_schema_fixed_size(s), "fixed");
    case AVRO_ENUM:
        if (walk_varint(w, &v))
            return -1;
        if (v < 0 || v >= avro_schema_enum_number_of_symbols(s))
            return walk_fail(w, "enum index out of range");
        return 0;
    case AVRO_UNION:
        if (walk_varint(w, &v))
            return -1;
        if (v < 0 || (uint64_t)v >= avro_schema_union_size(s))
            return walk_fail(w, "union branch out of range");
        return walk_value(w, avro_schema_union_branch(s, (int)v), depth + 1);
    case AVRO_RECORD: {
        size_t nf = avro_schema_record_size(s);
        for (size_t i = 0; i < nf; i++) {
            if (walk_value(w, avro_schema_record_field_get_by_index(s, (int)i), depth + 1))
                return -1;
        }
        return 0;
    }
    case AVRO_ARRAY:
        return walk_blocks(w, avro_schema_array_items(s), 0, depth);
    case AVRO_MAP:
        return walk_blocks(w, avro_schema_map_values(s), 1, depth);
    case AVRO_LINK:
        break;
    }
    return walk_fail(w, "unsupported schema type");
}

lt_err_t lt_avro_walk(avro_schema_t schema, const void *datum, size_t len, size_t base,
                      char *errstr, size_t errstr_size)
{
    walk_t w = {datum, len, 0, base, 0, errstr, errstr_size};
    if (walk_value(&w, schema, 0))
        return LT_ERR_INVALID;
    if (w.pos != len)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "bad Avro datum: %zu trailing bytes after the record", len - w.pos);
    return LT_OK;
}
