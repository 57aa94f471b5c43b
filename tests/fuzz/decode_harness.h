/* The harness the Avro decode fuzz targets share (fuzz_event_decode,
 * fuzz_change_decode): arbitrary bytes as a Kafka record value, decoded
 * twice, with the embedded schema as the writer schema and with a later
 * writer schema (the embedded one plus an optional field) that goes through
 * avro-c's schema resolution. Invariants:
 *  - never a crash, leak or sanitizer report; a failure is LT_ERR_INVALID or
 *    LT_ERR_TOO_BIG with a reason and no event;
 *  - an accepted event that encodes survives encode -> decode unchanged
 *    (same JSON); with must_encode, every accepted event encodes.
 *
 * A target fills an lt_fuzz_codec_t with adapters of its codec and calls
 * lt_fuzz_decode() from LLVMFuzzerTestOneInput. Header-only: each target is
 * one translation unit (tests/CMakeLists.txt builds fuzz_*.c alone). */
#ifndef LT_FUZZ_DECODE_HARNESS_H
#define LT_FUZZ_DECODE_HARNESS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_err.h"
#include "lt_event.h"

#define ASSERT(c)                                                                                 \
    do {                                                                                          \
        if (!(c))                                                                                 \
            abort();                                                                              \
    } while (0)

typedef struct {
    const char *(*schema_json)(void); /* the embedded writer schema */
    const char *extra_field;          /* JSON of the optional field a later writer adds */
    size_t max_wire;                  /* the codec's cap of a wire value */
    int must_encode;                  /* 1: decode applies encode's checks */
    void *(*codec_new)(char *errstr, size_t errstr_size);
    void (*codec_destroy)(void *codec);
    lt_err_t (*decode)(void *codec, const void *data, size_t len, const char *writer_schema,
                       void **ev, char *errstr, size_t errstr_size);
    lt_err_t (*encode)(void *codec, const void *ev, int32_t schema_id, lt_buf_t *out,
                       char *errstr, size_t errstr_size);
    lt_err_t (*to_json)(const void *ev, lt_buf_t *out);
    void (*destroy)(void *ev);
} lt_fuzz_codec_t;

/* Built once per process (a harness, not a module: process-lifetime state). */
static const lt_fuzz_codec_t *fuzz_ops;
static void *fuzz_codec;
static char *fuzz_v2_schema;

static void fuzz_teardown(void)
{
    fuzz_ops->codec_destroy(fuzz_codec);
    fuzz_codec = NULL;
    free(fuzz_v2_schema);
    fuzz_v2_schema = NULL;
}

static void fuzz_setup(const lt_fuzz_codec_t *ops)
{
    char err[256];
    fuzz_ops = ops;
    fuzz_codec = ops->codec_new(err, sizeof(err));
    ASSERT(fuzz_codec);
    json_object *s = json_tokener_parse(ops->schema_json());
    json_object *fields = NULL;
    ASSERT(json_object_object_get_ex(s, "fields", &fields));
    json_object_array_add(fields, json_tokener_parse(ops->extra_field));
    fuzz_v2_schema = strdup(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
    json_object_put(s);
    atexit(fuzz_teardown); /* runs before LeakSanitizer's exit check */
}

static void fuzz_check(const uint8_t *data, size_t size, const char *schema)
{
    const lt_fuzz_codec_t *o = fuzz_ops;
    char err[256] = "";
    void *ev = NULL;
    int32_t id = -1;
    lt_err_t e = o->decode(fuzz_codec, data, size, schema, &ev, err, sizeof(err));
    if (e != LT_OK) {
        ASSERT(ev == NULL);
        ASSERT(e == LT_ERR_INVALID || e == LT_ERR_TOO_BIG);
        ASSERT(err[0] != 0);
        return;
    }
    ASSERT(lt_mail_event_peek_schema_id(data, size, &id, err, sizeof(err)) == LT_OK);
    ASSERT(ev != NULL && id >= 0);
    lt_buf_t *wire = lt_buf_new(o->max_wire);
    lt_err_t enc = o->encode(fuzz_codec, ev, id, wire, err, sizeof(err));
    ASSERT(enc == LT_OK || !o->must_encode);
    if (enc == LT_OK) {
        void *back = NULL;
        ASSERT(o->decode(fuzz_codec, lt_buf_data(wire), lt_buf_len(wire), NULL, &back, err,
                         sizeof(err)) == LT_OK);
        lt_buf_t *j1 = lt_buf_new(o->max_wire * 2), *j2 = lt_buf_new(o->max_wire * 2);
        ASSERT(o->to_json(ev, j1) == LT_OK);
        ASSERT(o->to_json(back, j2) == LT_OK);
        ASSERT(lt_buf_len(j1) == lt_buf_len(j2) && !strcmp(lt_buf_str(j1), lt_buf_str(j2)));
        lt_buf_destroy(j1);
        lt_buf_destroy(j2);
        o->destroy(back);
    }
    lt_buf_destroy(wire);
    o->destroy(ev);
}

/* One input: set up on first use, then both decodes. */
static int lt_fuzz_decode(const lt_fuzz_codec_t *ops, const uint8_t *data, size_t size)
{
    if (!fuzz_codec)
        fuzz_setup(ops);
    fuzz_check(data, size, NULL);
    fuzz_check(data, size, fuzz_v2_schema);
    return 0;
}

#endif
