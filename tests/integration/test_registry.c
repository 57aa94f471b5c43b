/* The schema registry client against the real registry of the local stack
 * (Apicurio, Confluent-compatible API at LATTICE_SCHEMA_REGISTRY_URL):
 * register mail.raw.v1 (idempotent), set BACKWARD on its subject, and let
 * the registry judge candidate v1 changes; fetch the schema back by id;
 * error classes for an unknown id, an invalid schema, an unreachable registry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_event.h"
#include "lt_registry.h"
#include "lt_test.h"

/* The v1 schema changed by fn(fields array); returned string to free(). */
static char *variant(void (*fn)(json_object *fields))
{
    json_object *s = json_tokener_parse(lt_mail_event_schema_json());
    json_object *fields = NULL;
    json_object_object_get_ex(s, "fields", &fields);
    fn(fields);
    char *out = strdup(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
    json_object_put(s);
    return out;
}

static void add_optional(json_object *fields)
{
    json_object_array_add(fields,
                          json_tokener_parse("{\"name\":\"spam_score\",\"type\":[\"null\","
                                             "\"double\"],\"default\":null,\"doc\":\"x\"}"));
}

static void add_required(json_object *fields)
{
    json_object_array_add(fields,
                          json_tokener_parse("{\"name\":\"language\",\"type\":\"string\","
                                             "\"doc\":\"required, no default\"}"));
}

static void remove_tenant(json_object *fields)
{
    /* tenant_id is field 3 and has no default */
    json_object_array_del_idx(fields, 3, 1);
}

static void retype_event_time(json_object *fields)
{
    json_object *f = json_object_array_get_idx(fields, 2); /* event_time: long -> string */
    json_object_object_add(f, "type", json_object_new_string("string"));
}

int main(void)
{
    const char *url = lt_test_env("LATTICE_SCHEMA_REGISTRY_URL");
    const char *ca = getenv("LATTICE_CA_FILE");
    char err[1024] = "";
    const char *schema = lt_mail_event_schema_json();

    lt_registry_t *reg = lt_registry_new(url, NULL, NULL, ca && *ca ? ca : NULL, err, sizeof(err));
    CHECK_MSG(reg != NULL, "%s", err);
    if (!reg)
        return lt_test_done("test_registry");

    /* register: an id; again (cache) and again from a fresh handle (registry) */
    int32_t id = -1, id2 = -1, id3 = -1;
    lt_err_t e = lt_registry_register(reg, LT_MAIL_RAW_SUBJECT, schema, &id, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "register: %s", err);
    CHECK(id >= 0);
    CHECK_INT(lt_registry_register(reg, LT_MAIL_RAW_SUBJECT, schema, &id2, err, sizeof(err)),
              LT_OK);
    CHECK_INT(id2, id);
    lt_registry_t *fresh = lt_registry_new(url, NULL, NULL, NULL, err, sizeof(err));
    CHECK_INT(lt_registry_register(fresh, LT_MAIL_RAW_SUBJECT, schema, &id3, err, sizeof(err)),
              LT_OK);
    CHECK_INT(id3, id);
    id3 = -1;
    CHECK_INT(lt_registry_lookup(fresh, LT_MAIL_RAW_SUBJECT, schema, &id3, err, sizeof(err)),
              LT_OK);
    CHECK_INT(id3, id);
    printf("mail.raw.v1 is schema id %d under %s\n", (int)id, LT_MAIL_RAW_SUBJECT);

    /* BACKWARD on the subject, read back */
    e = lt_registry_set_compat(reg, LT_MAIL_RAW_SUBJECT, "BACKWARD", err, sizeof(err));
    CHECK_MSG(e == LT_OK, "set compat: %s", err);
    char level[64] = "";
    e = lt_registry_get_compat(reg, LT_MAIL_RAW_SUBJECT, level, sizeof(level), err, sizeof(err));
    CHECK_MSG(e == LT_OK, "get compat: %s", err);
    CHECK_STR(level, "BACKWARD");
    CHECK_INT(lt_registry_set_compat(reg, LT_MAIL_RAW_SUBJECT, "SIDEWAYS", err, sizeof(err)),
              LT_ERR_INVALID);

    /* the registry judges candidate changes (nothing is registered here) */
    struct {
        const char *what;
        void (*fn)(json_object *);
        int want;
    } cases[] = {
        {"add an optional field with a default", add_optional, 1},
        {"add a required field without a default", add_required, 0},
        {"change a field's type (long -> string)", retype_event_time, 0},
        /* Avro rule: a reader ignores writer fields it does not have, so
         * under BACKWARD (new reader, old data) removing a field is allowed;
         * only FORWARD/FULL refuse to remove a field without a default. */
        {"remove a field without a default (BACKWARD allows it)", remove_tenant, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *v = variant(cases[i].fn);
        int ok = -1;
        err[0] = 0;
        e = lt_registry_check_compat(reg, LT_MAIL_RAW_SUBJECT, v, &ok, err, sizeof(err));
        CHECK_MSG(e == LT_OK, "%s: %s", cases[i].what, err);
        CHECK_MSG(ok == cases[i].want, "%s: registry says %d, want %d (%s)", cases[i].what, ok,
                  cases[i].want, err);
        printf("BACKWARD, %s: registry says %s%s%s\n", cases[i].what,
               ok ? "compatible" : "NOT compatible", err[0] ? " " : "", err);
        free(v);
    }
    /* the unchanged schema is compatible with itself */
    int self = 0;
    CHECK_INT(lt_registry_check_compat(reg, LT_MAIL_RAW_SUBJECT, schema, &self, err, sizeof(err)),
              LT_OK);
    CHECK_INT(self, 1);

    /* removal under FULL, on a scratch subject: the registry refuses it */
    char scratch[128];
    snprintf(scratch, sizeof(scratch), "lattice.test.registry-%d-%ld-value", (int)getpid(),
             (long)time(NULL)); /* unique per run, also with a recycled pid */
    int32_t sid = -1;
    CHECK_INT(lt_registry_register(reg, scratch, schema, &sid, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_registry_set_compat(reg, scratch, "FULL", err, sizeof(err)), LT_OK);
    {
        char *v = variant(remove_tenant);
        int ok = -1;
        CHECK_INT(lt_registry_check_compat(reg, scratch, v, &ok, err, sizeof(err)), LT_OK);
        CHECK_MSG(ok == 0, "FULL, remove a field without default: registry says %d", ok);
        free(v);
        v = variant(add_optional);
        CHECK_INT(lt_registry_check_compat(reg, scratch, v, &ok, err, sizeof(err)), LT_OK);
        CHECK_MSG(ok == 1, "FULL, add an optional field: registry says %d (%s)", ok, err);
        free(v);
    }
    /* registering an incompatible change is refused (409: final) */
    {
        char *v = variant(add_required);
        CHECK_INT(lt_registry_set_compat(reg, scratch, "BACKWARD", err, sizeof(err)), LT_OK);
        int32_t bad = -1;
        e = lt_registry_register(reg, scratch, v, &bad, err, sizeof(err));
        CHECK_MSG(e == LT_ERR_FINAL, "incompatible register: %s: %s", lt_err_name(e), err);
        CHECK_MSG(strstr(err, "HTTP 409") != NULL, "%s", err);
        printf("incompatible register: %s\n", err);
        free(v);
    }
    /* no version yet: NOT_FOUND for lookups of an unknown subject */
    {
        char nosub[128];
        int32_t x;
        snprintf(nosub, sizeof(nosub), "lattice.test.none-%d-%ld-value", (int)getpid(),
                 (long)time(NULL));
        e = lt_registry_lookup(reg, nosub, schema, &x, err, sizeof(err));
        CHECK_MSG(e == LT_ERR_NOT_FOUND, "lookup unknown subject: %s: %s", lt_err_name(e), err);
    }

    /* fetch by id: the same schema (as JSON), and it decodes what we encode */
    lt_buf_t *got = lt_buf_new(1 << 20);
    e = lt_registry_get_schema(fresh, id, got, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "get schema: %s", err);
    json_object *a = json_tokener_parse(lt_buf_str(got)), *b = json_tokener_parse(schema);
    CHECK_MSG(a && json_object_equal(a, b), "registry schema differs: %.200s", lt_buf_str(got));
    json_object_put(a);
    json_object_put(b);
    {
        lt_mail_codec_t *c = lt_mail_codec_new(err, sizeof(err));
        lt_mail_event_t *ev = lt_mail_event_new();
        lt_mail_event_set_tenant_id(ev, "t");
        lt_mail_event_set_account_id(ev, "acc");
        lt_mail_event_set_provider_message_id(ev, "18c2f0");
        lt_mail_event_set_raw_object_uri(ev, "s3://b/k");
        lt_mail_event_set_raw_sha256(
            ev, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        lt_mail_event_derive_id(ev, err, sizeof(err));
        lt_buf_t *wire = lt_buf_new(1 << 16);
        CHECK_INT(lt_mail_event_encode(c, ev, id, wire, err, sizeof(err)), LT_OK);
        lt_mail_event_t *back = NULL;
        e = lt_mail_event_decode(c, lt_buf_data(wire), lt_buf_len(wire), lt_buf_str(got), &back,
                                 err, sizeof(err));
        CHECK_MSG(e == LT_OK, "decode with the registry's schema: %s", err);
        if (back)
            CHECK_STR(lt_mail_event_get_event_id(back), lt_mail_event_get_event_id(ev));
        lt_mail_event_destroy(back);
        lt_mail_event_destroy(ev);
        lt_buf_destroy(wire);
        lt_mail_codec_destroy(c);
    }
    /* cached: a second fetch answers the same */
    lt_buf_reset(got);
    CHECK_INT(lt_registry_get_schema(fresh, id, got, err, sizeof(err)), LT_OK);
    CHECK(lt_buf_len(got) > 100);

    /* error classes */
    e = lt_registry_get_schema(reg, 987654321, got, err, sizeof(err));
    CHECK_MSG(e == LT_ERR_NOT_FOUND, "unknown id: %s: %s", lt_err_name(e), err);
    CHECK_MSG(strstr(err, "HTTP 404") != NULL, "%s", err);
    printf("unknown id: %s\n", err);
    int32_t x;
    e = lt_registry_register(reg, scratch, "{\"type\": \"no-such-type\"}", &x, err, sizeof(err));
    CHECK_MSG(e == LT_ERR_INVALID || e == LT_ERR_FINAL, "invalid schema: %s: %s", lt_err_name(e),
              err);
    CHECK_MSG(strstr(err, "error_code") != NULL, "invalid schema: no error_code in \"%s\"", err);
    printf("invalid schema: %s: %s\n", lt_err_name(e), err);
    lt_registry_t *down = lt_registry_new("http://127.0.0.1:1/apis/ccompat/v7", NULL, NULL, NULL,
                                          err, sizeof(err));
    e = lt_registry_register(down, LT_MAIL_RAW_SUBJECT, schema, &x, err, sizeof(err));
    CHECK_MSG(e == LT_ERR_TEMPORARY, "unreachable: %s: %s", lt_err_name(e), err);
    CHECK(lt_registry_new("ftp://x", NULL, NULL, NULL, err, sizeof(err)) == NULL);

    e = lt_registry_delete_subject(reg, scratch, 1, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "delete scratch subject: %s", err);
    e = lt_registry_lookup(reg, scratch, schema, &x, err, sizeof(err));
    CHECK_MSG(e == LT_ERR_NOT_FOUND, "lookup deleted subject: %s: %s", lt_err_name(e), err);

    lt_registry_destroy(down);
    lt_buf_destroy(got);
    lt_registry_destroy(fresh);
    lt_registry_destroy(reg);
    return lt_test_done("test_registry");
}
