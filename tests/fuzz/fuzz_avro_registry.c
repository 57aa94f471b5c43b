/* Fuzz the Avro decoders with the schema registry's text of each schema as
 * the writer schema, as the parser and consumers decode: they fetch the
 * writer schema by the id in the record header (GET /schemas/ids/{id}) and
 * the registry answers with its own serialisation of the registered schema
 * (tests/data/registry/: captured from the Apicurio registry of the local
 * stack; compact, not the text of the .avsc files in schemas/), and later producers may
 * write with an evolved schema. The captured text must be the registry's
 * latest version of each subject (GET /subjects/<subject>/versions/latest):
 * variant 0 checks it decodes exactly as the embedded schema does, so a
 * schema change refreshes it.
 *
 * Input: byte 0 picks the topic (bit 0: lattice.mail.raw.v1 or
 * lattice.mail.change.v1) and the writer schema (the rest, modulo 7); the
 * other bytes are the record value (magic byte, schema id, Avro datum).
 * Writer schemas, all derived from the registry's text:
 *   0 as stored;
 *   1 plus an optional field at the end of the top record;
 *   2 plus an optional field at the start of the nested "source" record;
 *   3 the provider enum with one more symbol (appended);
 *   4 the top record's fields in reverse order;
 *   5 event_time written as int (promoted to long by the reader);
 *   6 without data_classification (no default in the reader: refused).
 * Invariants:
 *  - never a crash, leak or sanitizer report; a failure is LT_ERR_INVALID or
 *    LT_ERR_TOO_BIG with a reason and no event;
 *  - with schema 0 the verdict and the event equal those with the embedded
 *    schema (writer_schema_json NULL): same schema, other text;
 *  - with schema 6 nothing decodes;
 *  - an accepted event survives encode -> decode unchanged (same JSON). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_change_event.h"
#include "lt_event.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define NVARIANTS 7

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Built once per process (a harness, not a module: process-lifetime state). */
static lt_mail_codec_t *mail_codec;
static lt_change_codec_t *change_codec;
static char *schemas[2][NVARIANTS]; /* [0] mail.raw.v1, [1] mail.change.v1 */

static void teardown(void)
{
    lt_mail_codec_destroy(mail_codec);
    lt_change_codec_destroy(change_codec);
    mail_codec = NULL;
    change_codec = NULL;
    for (int k = 0; k < 2; k++)
        for (int v = 0; v < NVARIANTS; v++) {
            free(schemas[k][v]);
            schemas[k][v] = NULL;
        }
}

static char *read_text(const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/data/registry/%s", LT_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        abort();
    }
    lt_buf_t *b = lt_buf_new(1 << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ASSERT(lt_buf_append(b, chunk, n) == LT_OK);
    fclose(f);
    char *s = strdup(lt_buf_str(b));
    lt_buf_destroy(b);
    return s;
}

static json_object *field_named(json_object *fields, const char *name, size_t *at)
{
    for (size_t i = 0; i < json_object_array_length(fields); i++) {
        json_object *f = json_object_array_get_idx(fields, i), *n = NULL;
        if (json_object_object_get_ex(f, "name", &n) && !strcmp(json_object_get_string(n), name)) {
            if (at)
                *at = i;
            return f;
        }
    }
    abort(); /* the schema lost a field the harness relies on */
}

static char *derive(const char *text, int variant)
{
    json_object *s = json_tokener_parse(text), *fields = NULL, *t = NULL;
    ASSERT(s && json_object_object_get_ex(s, "fields", &fields));
    switch (variant) {
    case 0:
        json_object_put(s);
        return strdup(text);
    case 1:
        json_object_array_add(fields,
                              json_tokener_parse("{\"name\":\"x_origin\",\"type\":"
                                                 "[\"null\",\"string\"],\"default\":null}"));
        break;
    case 2: {
        json_object *src = field_named(fields, "source", NULL), *sf = NULL;
        ASSERT(json_object_object_get_ex(src, "type", &t) &&
               json_object_object_get_ex(t, "fields", &sf));
        json_object *nf = json_object_new_array();
        json_object_array_add(nf, json_tokener_parse("{\"name\":\"x_region\",\"type\":[\"null\","
                                                     "\"string\"],\"default\":null}"));
        for (size_t i = 0; i < json_object_array_length(sf); i++)
            json_object_array_add(nf, json_object_get(json_object_array_get_idx(sf, i)));
        json_object_object_add(t, "fields", nf);
        break;
    }
    case 3: {
        json_object *src = field_named(fields, "source", NULL), *sf = NULL, *syms = NULL;
        ASSERT(json_object_object_get_ex(src, "type", &t) &&
               json_object_object_get_ex(t, "fields", &sf));
        json_object *prov = field_named(sf, "provider", NULL);
        ASSERT(json_object_object_get_ex(prov, "type", &t) &&
               json_object_object_get_ex(t, "symbols", &syms));
        json_object_array_add(syms, json_object_new_string("exchange"));
        break;
    }
    case 4: {
        json_object *rev = json_object_new_array();
        for (size_t i = json_object_array_length(fields); i-- > 0;)
            json_object_array_add(rev, json_object_get(json_object_array_get_idx(fields, i)));
        json_object_object_add(s, "fields", rev);
        break;
    }
    case 5:
        json_object_object_add(field_named(fields, "event_time", NULL), "type",
                               json_object_new_string("int"));
        break;
    case 6: {
        size_t at = 0;
        field_named(fields, "data_classification", &at);
        json_object_array_del_idx(fields, at, 1);
        break;
    }
    }
    char *out = strdup(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
    json_object_put(s);
    return out;
}

static void setup(void)
{
    char err[256];
    mail_codec = lt_mail_codec_new(err, sizeof(err));
    change_codec = lt_change_codec_new(err, sizeof(err));
    ASSERT(mail_codec && change_codec);
    char *text[2] = {read_text("mail.raw.v1.json"), read_text("mail.change.v1.json")};
    for (int k = 0; k < 2; k++) {
        for (int v = 0; v < NVARIANTS; v++)
            schemas[k][v] = derive(text[k], v);
        free(text[k]);
    }
    atexit(teardown); /* runs before LeakSanitizer's exit check */
}

static char *mail_json(const lt_mail_event_t *ev)
{
    lt_buf_t *b = lt_buf_new(LT_MAIL_EVENT_MAX_WIRE * 2);
    ASSERT(lt_mail_event_to_json(ev, b) == LT_OK);
    char *s = strdup(lt_buf_str(b));
    lt_buf_destroy(b);
    return s;
}

static char *change_json(const lt_change_event_t *ev)
{
    lt_buf_t *b = lt_buf_new(LT_CHANGE_EVENT_MAX_WIRE * 2);
    ASSERT(lt_change_event_to_json(ev, b) == LT_OK);
    char *s = strdup(lt_buf_str(b));
    lt_buf_destroy(b);
    return s;
}

/* Decode with schema (NULL: embedded); returns the event's JSON or NULL. */
static char *mail_decode(const uint8_t *d, size_t n, const char *schema)
{
    char err[256] = "";
    lt_mail_event_t *ev = NULL;
    lt_err_t e = lt_mail_event_decode(mail_codec, d, n, schema, &ev, err, sizeof(err));
    if (e != LT_OK) {
        ASSERT(ev == NULL && (e == LT_ERR_INVALID || e == LT_ERR_TOO_BIG) && err[0]);
        return NULL;
    }
    int32_t id = -1;
    ASSERT(ev && lt_mail_event_peek_schema_id(d, n, &id, err, sizeof(err)) == LT_OK);
    char *j = mail_json(ev);
    lt_buf_t *wire = lt_buf_new(LT_MAIL_EVENT_MAX_WIRE);
    if (lt_mail_event_encode(mail_codec, ev, id, wire, err, sizeof(err)) == LT_OK) {
        lt_mail_event_t *back = NULL;
        ASSERT(lt_mail_event_decode(mail_codec, lt_buf_data(wire), lt_buf_len(wire), NULL, &back,
                                    err, sizeof(err)) == LT_OK);
        char *j2 = mail_json(back);
        ASSERT(!strcmp(j, j2));
        free(j2);
        lt_mail_event_destroy(back);
    }
    lt_buf_destroy(wire);
    lt_mail_event_destroy(ev);
    return j;
}

static char *change_decode(const uint8_t *d, size_t n, const char *schema)
{
    char err[256] = "";
    lt_change_event_t *ev = NULL;
    lt_err_t e = lt_change_event_decode(change_codec, d, n, schema, &ev, err, sizeof(err));
    if (e != LT_OK) {
        ASSERT(ev == NULL && (e == LT_ERR_INVALID || e == LT_ERR_TOO_BIG) && err[0]);
        return NULL;
    }
    int32_t id = -1;
    ASSERT(ev && lt_mail_event_peek_schema_id(d, n, &id, err, sizeof(err)) == LT_OK);
    char *j = change_json(ev);
    lt_buf_t *wire = lt_buf_new(LT_CHANGE_EVENT_MAX_WIRE);
    ASSERT(lt_change_event_encode(change_codec, ev, id, wire, err, sizeof(err)) == LT_OK);
    lt_change_event_t *back = NULL;
    ASSERT(lt_change_event_decode(change_codec, lt_buf_data(wire), lt_buf_len(wire), NULL, &back,
                                  err, sizeof(err)) == LT_OK);
    char *j2 = change_json(back);
    ASSERT(!strcmp(j, j2));
    free(j2);
    lt_change_event_destroy(back);
    lt_buf_destroy(wire);
    lt_change_event_destroy(ev);
    return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mail_codec)
        setup();
    if (size < 1)
        return 0;
    int kind = data[0] & 1, variant = (data[0] >> 1) % NVARIANTS;
    /* An exact-size copy: ASan sees any read past the end. */
    size_t n = size - 1;
    uint8_t *v = malloc(n ? n : 1);
    memcpy(v, data + 1, n);
    char *(*decode)(const uint8_t *, size_t, const char *) = kind ? change_decode : mail_decode;
    char *got = decode(v, n, schemas[kind][variant]);
    if (variant == 0) {
        char *ref = decode(v, n, NULL);
        ASSERT((got == NULL) == (ref == NULL));
        ASSERT(!got || !strcmp(got, ref));
        free(ref);
    }
    if (variant == 6)
        ASSERT(got == NULL);
    free(got);
    free(v);
    return 0;
}
