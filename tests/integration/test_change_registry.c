/* mail.change.v1 in the real registry of the local stack (Apicurio,
 * Confluent-compatible API at LATTICE_SCHEMA_REGISTRY_URL): registered under
 * its subject lattice.mail.change.v1-value (idempotent) with BACKWARD; the
 * registry's copy decodes what the codec encodes; and, on a scratch subject
 * of this run, the registry's verdict on the evolutions docs/events.md
 * allows (an optional payload field, a kind appended) and forbids (a kind
 * removed, a required field). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_change_event.h"
#include "lt_registry.h"
#include "lt_test.h"

/* The payload record's type object inside root (borrowed). */
static json_object *payload_type(json_object *root)
{
    json_object *fields = NULL, *type = NULL;
    json_object_object_get_ex(root, "fields", &fields);
    for (size_t i = 0; i < json_object_array_length(fields); i++) {
        json_object *f = json_object_array_get_idx(fields, i), *name = NULL;
        json_object_object_get_ex(f, "name", &name);
        if (!strcmp(json_object_get_string(name), "payload"))
            json_object_object_get_ex(f, "type", &type);
    }
    return type;
}

static json_object *kind_symbols(json_object *root)
{
    json_object *pf = NULL, *type = NULL, *syms = NULL;
    json_object_object_get_ex(payload_type(root), "fields", &pf);
    json_object_object_get_ex(json_object_array_get_idx(pf, 0), "type", &type); /* kind */
    json_object_object_get_ex(type, "symbols", &syms);
    return syms;
}

static void add_optional(json_object *root)
{
    json_object *pf = NULL;
    json_object_object_get_ex(payload_type(root), "fields", &pf);
    json_object_array_add(pf, json_tokener_parse("{\"name\":\"folder_path\",\"type\":[\"null\","
                                                 "\"string\"],\"default\":null,\"doc\":\"x\"}"));
}

static void add_required(json_object *root)
{
    json_object *pf = NULL;
    json_object_object_get_ex(payload_type(root), "fields", &pf);
    json_object_array_add(pf, json_tokener_parse("{\"name\":\"actor\",\"type\":\"string\","
                                                 "\"doc\":\"required, no default\"}"));
}

static void append_kind(json_object *root)
{
    json_object_array_add(kind_symbols(root), json_object_new_string("restored"));
}

static void remove_kind(json_object *root)
{
    json_object *syms = kind_symbols(root);
    json_object_array_del_idx(syms, json_object_array_length(syms) - 1, 1); /* reset */
}

static char *variant(void (*fn)(json_object *root))
{
    json_object *s = json_tokener_parse(lt_change_event_schema_json());
    fn(s);
    char *out = strdup(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
    json_object_put(s);
    return out;
}

int main(void)
{
    const char *url = lt_test_env("LATTICE_SCHEMA_REGISTRY_URL");
    const char *ca = getenv("LATTICE_CA_FILE");
    char err[1024] = "";
    const char *schema = lt_change_event_schema_json();
    lt_registry_t *reg = lt_registry_new(url, NULL, NULL, ca && *ca ? ca : NULL, err, sizeof(err));
    CHECK_MSG(reg != NULL, "%s", err);
    if (!reg)
        return lt_test_done("test_change_registry");

    /* the product subject: register (idempotent), BACKWARD */
    int32_t id = -1, id2 = -1;
    lt_err_t e = lt_registry_register(reg, LT_MAIL_CHANGE_SUBJECT, schema, &id, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "register: %s", err);
    CHECK(id >= 0);
    lt_registry_t *fresh = lt_registry_new(url, NULL, NULL, ca && *ca ? ca : NULL, err,
                                           sizeof(err));
    CHECK_INT(lt_registry_lookup(fresh, LT_MAIL_CHANGE_SUBJECT, schema, &id2, err, sizeof(err)),
              LT_OK);
    CHECK_INT(id2, id);
    printf("mail.change.v1 is schema id %d under %s\n", (int)id, LT_MAIL_CHANGE_SUBJECT);
    CHECK_INT(lt_registry_set_compat(reg, LT_MAIL_CHANGE_SUBJECT, "BACKWARD", err, sizeof(err)),
              LT_OK);
    char level[64] = "";
    CHECK_INT(lt_registry_get_compat(reg, LT_MAIL_CHANGE_SUBJECT, level, sizeof(level), err,
                                     sizeof(err)),
              LT_OK);
    CHECK_STR(level, "BACKWARD");

    /* the registry's copy by id decodes what the codec encodes with that id */
    lt_buf_t *got = lt_buf_new(1 << 20);
    e = lt_registry_get_schema(fresh, id, got, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "get schema: %s", err);
    json_object *a = json_tokener_parse(lt_buf_str(got)), *b = json_tokener_parse(schema);
    CHECK_MSG(a && json_object_equal(a, b), "registry schema differs: %.200s", lt_buf_str(got));
    json_object_put(a);
    json_object_put(b);
    lt_change_codec_t *c = lt_change_codec_new(err, sizeof(err));
    lt_change_event_t *ev = lt_change_event_new();
    lt_change_event_set_tenant_id(ev, "t");
    lt_change_event_set_provider(ev, LT_PROVIDER_GMAIL);
    lt_change_event_set_account_id(ev, "personal-gmail");
    lt_change_event_set_kind(ev, LT_CHANGE_LABELS);
    lt_change_event_set_provider_message_id(ev, "18c2f0a9b3e4d5c6");
    lt_change_event_add_label(ev, "INBOX");
    lt_change_event_add_label(ev, "STARRED");
    lt_change_event_set_position(ev, 991234);
    CHECK_INT(lt_change_event_derive_id(ev, err, sizeof(err)), LT_OK);
    lt_buf_t *wire = lt_buf_new(1 << 16);
    CHECK_INT(lt_change_event_encode(c, ev, id, wire, err, sizeof(err)), LT_OK);
    lt_change_event_t *back = NULL;
    e = lt_change_event_decode(c, lt_buf_data(wire), lt_buf_len(wire), lt_buf_str(got), &back,
                               err, sizeof(err));
    CHECK_MSG(e == LT_OK, "decode with the registry's schema: %s", err);
    if (back) {
        CHECK_STR(lt_change_event_get_event_id(back), lt_change_event_get_event_id(ev));
        CHECK_STR(lt_change_event_get_label(back, 1), "STARRED");
    }
    lt_change_event_destroy(back);
    lt_change_event_destroy(ev);
    lt_buf_destroy(wire);
    lt_change_codec_destroy(c);

    /* evolutions, judged by the registry on a scratch subject of this run */
    char scratch[128];
    snprintf(scratch, sizeof(scratch), "lattice.test.change-registry-%d-%ld-value", (int)getpid(),
             (long)time(NULL));
    int32_t sid = -1;
    CHECK_INT(lt_registry_register(reg, scratch, schema, &sid, err, sizeof(err)), LT_OK);
    CHECK_INT(sid, id); /* the same schema text: the same global id */
    CHECK_INT(lt_registry_set_compat(reg, scratch, "BACKWARD", err, sizeof(err)), LT_OK);
    struct {
        const char *what;
        void (*fn)(json_object *);
        int want;
    } cases[] = {
        {"add an optional payload field", add_optional, 1},
        {"append a kind", append_kind, 1},
        {"add a required payload field", add_required, 0},
        {"remove a kind (old events may carry it)", remove_kind, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *v = variant(cases[i].fn);
        int ok = -1;
        err[0] = 0;
        e = lt_registry_check_compat(reg, scratch, v, &ok, err, sizeof(err));
        CHECK_MSG(e == LT_OK, "%s: %s", cases[i].what, err);
        CHECK_MSG(ok == cases[i].want, "%s: registry says %d, want %d (%s)", cases[i].what, ok,
                  cases[i].want, err);
        printf("BACKWARD, %s: registry says %s\n", cases[i].what,
               ok ? "compatible" : "NOT compatible");
        free(v);
    }
    CHECK_INT(lt_registry_delete_subject(reg, scratch, 1, err, sizeof(err)), LT_OK);

    lt_buf_destroy(got);
    lt_registry_destroy(fresh);
    lt_registry_destroy(reg);
    return lt_test_done("test_change_registry");
}
