/* The schema compiled into lt_event.c is schemas/mail.raw.v1.avsc: equal
 * after JSON normalisation by json-c (same keys, same order, same values),
 * and every field, record and enum of it carries a "doc". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_event.h"
#include "lt_test.h"

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0)
        n += got;
    fclose(f);
    buf[n] = 0;
    return buf;
}

static int docs_everywhere(json_object *t, const char *where)
{
    int ok = 1;
    if (json_object_is_type(t, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(t); i++)
            ok &= docs_everywhere(json_object_array_get_idx(t, i), where);
        return ok;
    }
    if (!json_object_is_type(t, json_type_object))
        return 1;
    json_object *type = NULL, *doc = NULL, *fields = NULL, *items = NULL;
    json_object_object_get_ex(t, "type", &type);
    const char *ts = type && json_object_is_type(type, json_type_string)
                         ? json_object_get_string(type)
                         : "";
    if (!strcmp(ts, "record") || !strcmp(ts, "enum")) {
        CHECK_MSG(json_object_object_get_ex(t, "doc", &doc), "%s: %s without doc", where, ts);
    }
    if (json_object_object_get_ex(t, "fields", &fields)) {
        for (size_t i = 0; i < json_object_array_length(fields); i++) {
            json_object *f = json_object_array_get_idx(fields, i), *name = NULL, *ft = NULL;
            json_object_object_get_ex(f, "name", &name);
            CHECK_MSG(json_object_object_get_ex(f, "doc", &doc), "field %s without doc",
                      json_object_get_string(name));
            if (json_object_object_get_ex(f, "type", &ft))
                ok &= docs_everywhere(ft, json_object_get_string(name));
        }
    }
    if (json_object_object_get_ex(t, "items", &items))
        ok &= docs_everywhere(items, where);
    return ok;
}

int main(void)
{
    char *file = read_file(LT_SOURCE_DIR "/schemas/mail.raw.v1.avsc");
    CHECK_MSG(file != NULL, "cannot read %s", LT_SOURCE_DIR "/schemas/mail.raw.v1.avsc");
    if (!file)
        return lt_test_done("test_event_schema");
    json_object *a = json_tokener_parse(file);
    json_object *b = json_tokener_parse(lt_mail_event_schema_json());
    CHECK(a != NULL);
    CHECK(b != NULL);
    if (a && b) {
        const char *sa = json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN);
        const char *sb = json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN);
        CHECK_MSG(!strcmp(sa, sb),
                  "the schema embedded in lib/events/lt_event.c differs from "
                  "schemas/mail.raw.v1.avsc: update the embedded copy");
        CHECK(json_object_equal(a, b));
        json_object *ns = NULL, *name = NULL;
        CHECK(json_object_object_get_ex(a, "namespace", &ns));
        CHECK_STR(json_object_get_string(ns), "io.lattice.mail");
        CHECK(json_object_object_get_ex(a, "name", &name));
        CHECK_STR(json_object_get_string(name), "MailRawV1");
        docs_everywhere(a, "MailRawV1");
    }
    json_object_put(a);
    json_object_put(b);
    free(file);
    return lt_test_done("test_event_schema");
}
