/* Fuzz lt_change_event_decode: arbitrary bytes as a Kafka record value of
 * lattice.mail.change.v1.
 *
 * The input is decoded twice: with the embedded mail.change.v1 schema as the
 * writer schema, and with a later writer schema (v1 plus an optional field)
 * that goes through avro-c's schema resolution. Invariants:
 *  - never a crash, leak or sanitizer report; a failure is LT_ERR_INVALID or
 *    LT_ERR_TOO_BIG with a reason and no event;
 *  - an accepted event passes encode's checks (decode applies them) and
 *    survives encode -> decode unchanged (same JSON). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_change_event.h"
#include "lt_event.h"

#define ASSERT(c)                                                                                 \
    do {                                                                                          \
        if (!(c))                                                                                 \
            abort();                                                                              \
    } while (0)

/* Built once per process (a harness, not a module: process-lifetime state). */
static lt_change_codec_t *codec;
static char *v2_schema;

static void teardown(void)
{
    lt_change_codec_destroy(codec);
    codec = NULL;
    free(v2_schema);
    v2_schema = NULL;
}

static void setup(void)
{
    char err[256];
    codec = lt_change_codec_new(err, sizeof(err));
    ASSERT(codec);
    json_object *s = json_tokener_parse(lt_change_event_schema_json());
    json_object *fields = NULL;
    ASSERT(json_object_object_get_ex(s, "fields", &fields));
    json_object_array_add(fields, json_tokener_parse("{\"name\":\"origin\",\"type\":[\"null\","
                                                     "\"string\"],\"default\":null}"));
    v2_schema = strdup(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
    json_object_put(s);
    atexit(teardown); /* runs before LeakSanitizer's exit check */
}

static void check(const uint8_t *data, size_t size, const char *schema)
{
    char err[256] = "";
    lt_change_event_t *ev = NULL;
    int32_t id = -1;
    lt_err_t e = lt_change_event_decode(codec, data, size, schema, &ev, err, sizeof(err));
    if (e != LT_OK) {
        ASSERT(ev == NULL);
        ASSERT(e == LT_ERR_INVALID || e == LT_ERR_TOO_BIG);
        ASSERT(err[0] != 0);
        return;
    }
    ASSERT(lt_mail_event_peek_schema_id(data, size, &id, err, sizeof(err)) == LT_OK);
    ASSERT(ev != NULL && id >= 0);
    lt_buf_t *wire = lt_buf_new(LT_CHANGE_EVENT_MAX_WIRE);
    ASSERT(lt_change_event_encode(codec, ev, id, wire, err, sizeof(err)) == LT_OK);
    lt_change_event_t *back = NULL;
    ASSERT(lt_change_event_decode(codec, lt_buf_data(wire), lt_buf_len(wire), NULL, &back, err,
                                  sizeof(err)) == LT_OK);
    lt_buf_t *j1 = lt_buf_new(LT_CHANGE_EVENT_MAX_WIRE * 2),
             *j2 = lt_buf_new(LT_CHANGE_EVENT_MAX_WIRE * 2);
    ASSERT(lt_change_event_to_json(ev, j1) == LT_OK);
    ASSERT(lt_change_event_to_json(back, j2) == LT_OK);
    ASSERT(lt_buf_len(j1) == lt_buf_len(j2) && !strcmp(lt_buf_str(j1), lt_buf_str(j2)));
    lt_buf_destroy(j1);
    lt_buf_destroy(j2);
    lt_change_event_destroy(back);
    lt_buf_destroy(wire);
    lt_change_event_destroy(ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!codec)
        setup();
    check(data, size, NULL);
    check(data, size, v2_schema);
    return 0;
}
