/* lt_registry: Confluent-compatible schema registry client (see lt_registry.h). */
#include "lt_registry.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#define REG_MAX_BODY (4u * 1024u * 1024u)
#define REG_CACHE_SIZE 64

typedef struct {
    char *subject;
    char *schema;
    int32_t id;
} id_entry_t;

typedef struct {
    int32_t id;
    char *schema;
} schema_entry_t;

struct lt_registry_s {
    pthread_mutex_t lock;
    CURL *curl;
    char *base_url;
    char *user;
    char *password;
    char *ca_file;
    long connect_ms;
    long request_ms;
    lt_buf_t *body;
    id_entry_t ids[REG_CACHE_SIZE];
    size_t ids_next;
    schema_entry_t schemas[REG_CACHE_SIZE];
    size_t schemas_next;
};

static int curl_ready(void)
{
    /* curl_global_init is not thread-safe before 7.84; with 7.88 it is, and
     * calling it more than once is reference counted. */
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

lt_registry_t *lt_registry_new(const char *base_url, const char *user, const char *password,
                               const char *ca_file, char *errstr, size_t errstr_size)
{
    if (!base_url || (strncmp(base_url, "http://", 7) && strncmp(base_url, "https://", 8))) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "schema registry URL must start with http:// or https://");
        return NULL;
    }
    if ((user == NULL) != (password == NULL)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "schema registry: user and password must be given together");
        return NULL;
    }
    if (!curl_ready()) {
        lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "curl_global_init failed");
        return NULL;
    }
    lt_registry_t *reg = lt_xcalloc(1, sizeof(*reg));
    pthread_mutex_init(&reg->lock, NULL);
    reg->base_url = lt_xstrdup(base_url);
    size_t n = strlen(reg->base_url);
    while (n > 0 && reg->base_url[n - 1] == '/')
        reg->base_url[--n] = 0;
    reg->user = user ? lt_xstrdup(user) : NULL;
    reg->password = password ? lt_xstrdup(password) : NULL;
    reg->ca_file = ca_file ? lt_xstrdup(ca_file) : NULL;
    reg->connect_ms = 5000;
    reg->request_ms = 15000;
    reg->body = lt_buf_new(REG_MAX_BODY);
    reg->curl = curl_easy_init();
    if (!reg->curl) {
        lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "curl_easy_init failed");
        lt_registry_destroy(reg);
        return NULL;
    }
    return reg;
}

void lt_registry_destroy(lt_registry_t *reg)
{
    if (!reg)
        return;
    if (reg->curl)
        curl_easy_cleanup(reg->curl);
    for (size_t i = 0; i < REG_CACHE_SIZE; i++) {
        free(reg->ids[i].subject);
        free(reg->ids[i].schema);
        free(reg->schemas[i].schema);
    }
    lt_buf_destroy(reg->body);
    free(reg->base_url);
    free(reg->user);
    if (reg->password) {
        memset(reg->password, 0, strlen(reg->password));
        free(reg->password);
    }
    free(reg->ca_file);
    pthread_mutex_destroy(&reg->lock);
    curl_global_cleanup();
    free(reg);
}

void lt_registry_set_timeouts(lt_registry_t *reg, long connect_ms, long request_ms)
{
    pthread_mutex_lock(&reg->lock);
    if (connect_ms > 0)
        reg->connect_ms = connect_ms;
    if (request_ms > 0)
        reg->request_ms = request_ms;
    pthread_mutex_unlock(&reg->lock);
}

/* ---- caches (called with the lock held) ---- */

static int cache_find_id(lt_registry_t *reg, const char *subject, const char *schema, int32_t *id)
{
    for (size_t i = 0; i < REG_CACHE_SIZE; i++) {
        id_entry_t *e = &reg->ids[i];
        if (e->subject && !strcmp(e->subject, subject) && !strcmp(e->schema, schema)) {
            *id = e->id;
            return 1;
        }
    }
    return 0;
}

static void cache_put_id(lt_registry_t *reg, const char *subject, const char *schema, int32_t id)
{
    int32_t old;
    if (cache_find_id(reg, subject, schema, &old))
        return;
    id_entry_t *e = &reg->ids[reg->ids_next];
    reg->ids_next = (reg->ids_next + 1) % REG_CACHE_SIZE;
    free(e->subject);
    free(e->schema);
    e->subject = lt_xstrdup(subject);
    e->schema = lt_xstrdup(schema);
    e->id = id;
}

static const char *cache_find_schema(lt_registry_t *reg, int32_t id)
{
    for (size_t i = 0; i < REG_CACHE_SIZE; i++) {
        if (reg->schemas[i].schema && reg->schemas[i].id == id)
            return reg->schemas[i].schema;
    }
    return NULL;
}

static void cache_put_schema(lt_registry_t *reg, int32_t id, const char *schema)
{
    if (cache_find_schema(reg, id))
        return;
    schema_entry_t *e = &reg->schemas[reg->schemas_next];
    reg->schemas_next = (reg->schemas_next + 1) % REG_CACHE_SIZE;
    free(e->schema);
    e->schema = lt_xstrdup(schema);
    e->id = id;
}

/* ---- HTTP ---- */

typedef struct {
    lt_buf_t *buf;
    int too_big;
} sink_t;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    sink_t *s = userp;
    size_t n = size * nmemb;
    if (lt_buf_append(s->buf, data, n)) {
        s->too_big = 1;
        return 0; /* abort the transfer */
    }
    return n;
}

/* Escape one path segment (subject names contain dots, may contain others). */
static char *escape(lt_registry_t *reg, const char *s)
{
    char *e = curl_easy_escape(reg->curl, s, 0);
    if (!e) {
        fputs("lattice: out of memory\n", stderr);
        abort();
    }
    char *copy = lt_xstrdup(e);
    curl_free(e);
    return copy;
}

/* path += prefix + the URL-escaped subject + suffix. */
static lt_err_t subject_path(lt_registry_t *reg, lt_buf_t *path, const char *prefix,
                             const char *subject, const char *suffix, char *errstr, size_t n)
{
    char *esc = escape(reg, subject);
    int too_long = lt_buf_appendf(path, "%s%s%s", prefix, esc, suffix);
    free(esc);
    return too_long ? lt_seterr(errstr, n, LT_ERR_INVALID, "registry: subject too long") : LT_OK;
}

/* Classify an HTTP error status. */
static lt_err_t http_class(long status)
{
    if (status == 404)
        return LT_ERR_NOT_FOUND;
    if (status == 422)
        return LT_ERR_INVALID;
    if (status == 408 || status == 429 || status >= 500)
        return LT_ERR_TEMPORARY;
    return LT_ERR_FINAL;
}

/* Perform method on base_url + path with an optional JSON body. On a 2xx
 * answer, *json_out is the parsed body (caller puts it). Otherwise an error
 * with the registry's error_code/message. Lock held. */
static lt_err_t request(lt_registry_t *reg, const char *method, const char *path, const char *body,
                        json_object **json_out, char *errstr, size_t n)
{
    *json_out = NULL;
    CURL *c = reg->curl;
    lt_buf_t *url = lt_buf_new(16384);
    if (lt_buf_appendf(url, "%s%s", reg->base_url, path)) {
        lt_buf_destroy(url);
        return lt_seterr(errstr, n, LT_ERR_INVALID, "registry URL too long");
    }
    lt_buf_reset(reg->body);
    sink_t sink = {reg->body, 0};
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Accept: application/vnd.schemaregistry.v1+json, "
                                   "application/json");
    if (body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/vnd.schemaregistry.v1+json");

    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, lt_buf_str(url));
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (!strcmp(method, "GET")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, reg->connect_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, reg->request_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (reg->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, reg->ca_file);
    if (reg->user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, reg->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, reg->password);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    lt_buf_destroy(url);

    if (sink.too_big)
        return lt_seterr(errstr, n, LT_ERR_TOO_BIG, "registry %s %s: response over %u bytes",
                         method, path, REG_MAX_BODY);
    if (rc != CURLE_OK)
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "registry %s %s: %s", method, path,
                         curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    json_object *j = NULL;
    if (lt_buf_len(reg->body) > 0) {
        json_tokener *tok = json_tokener_new();
        j = json_tokener_parse_ex(tok, lt_buf_str(reg->body), (int)lt_buf_len(reg->body));
        json_tokener_free(tok);
    }
    if (status >= 200 && status < 300) {
        if (!j)
            return lt_seterr(errstr, n, LT_ERR_TEMPORARY,
                             "registry %s %s: HTTP %ld with a body that is not JSON", method, path,
                             status);
        *json_out = j;
        return LT_OK;
    }
    lt_err_t err = http_class(status);
    json_object *code = NULL, *msg = NULL;
    if (j && json_object_is_type(j, json_type_object) &&
        json_object_object_get_ex(j, "error_code", &code) &&
        json_object_object_get_ex(j, "message", &msg))
        lt_seterr(errstr, n, err, "registry %s %s: HTTP %ld error_code %d: %s", method, path,
                  status, json_object_get_int(code), json_object_get_string(msg));
    else
        lt_seterr(errstr, n, err, "registry %s %s: HTTP %ld", method, path, status);
    json_object_put(j);
    return err;
}

static char *schema_body(const char *schema_json)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "schema", json_object_new_string(schema_json));
    json_object_object_add(o, "schemaType", json_object_new_string("AVRO"));
    char *s = lt_xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}

static lt_err_t get_id(json_object *j, const char *what, int32_t *id, char *errstr, size_t n)
{
    json_object *v = NULL;
    if (!json_object_is_type(j, json_type_object) || !json_object_object_get_ex(j, "id", &v) ||
        !json_object_is_type(v, json_type_int))
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "registry %s: answer without an id", what);
    int64_t x = json_object_get_int64(v);
    if (x < 0 || x > INT32_MAX)
        return lt_seterr(errstr, n, LT_ERR_FINAL, "registry %s: id %" PRId64 " out of range", what,
                         x);
    *id = (int32_t)x;
    return LT_OK;
}

static lt_err_t check_args(const char *subject, const char *schema_json, char *errstr, size_t n)
{
    if (!subject || !*subject || !schema_json || !*schema_json)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "registry: subject and schema are required");
    return LT_OK;
}

static lt_err_t register_or_lookup(lt_registry_t *reg, int do_register, const char *subject,
                                   const char *schema_json, int32_t *id, char *errstr, size_t n)
{
    lt_err_t err = check_args(subject, schema_json, errstr, n);
    if (err)
        return err;
    pthread_mutex_lock(&reg->lock);
    if (cache_find_id(reg, subject, schema_json, id)) {
        pthread_mutex_unlock(&reg->lock);
        return LT_OK;
    }
    char *body = schema_body(schema_json);
    lt_buf_t *path = lt_buf_new(8192);
    json_object *j = NULL;
    if ((err = subject_path(reg, path, "/subjects/", subject, do_register ? "/versions" : "",
                            errstr, n)))
        goto out;
    err = request(reg, "POST", lt_buf_str(path), body, &j, errstr, n);
    if (err)
        goto out;
    err = get_id(j, lt_buf_str(path), id, errstr, n);
    if (!err)
        cache_put_id(reg, subject, schema_json, *id);
out:
    json_object_put(j);
    lt_buf_destroy(path);
    free(body);
    pthread_mutex_unlock(&reg->lock);
    return err;
}

lt_err_t lt_registry_register(lt_registry_t *reg, const char *subject, const char *schema_json,
                              int32_t *id, char *errstr, size_t errstr_size)
{
    return register_or_lookup(reg, 1, subject, schema_json, id, errstr, errstr_size);
}

lt_err_t lt_registry_lookup(lt_registry_t *reg, const char *subject, const char *schema_json,
                            int32_t *id, char *errstr, size_t errstr_size)
{
    return register_or_lookup(reg, 0, subject, schema_json, id, errstr, errstr_size);
}

lt_err_t lt_registry_get_schema(lt_registry_t *reg, int32_t id, lt_buf_t *schema_out, char *errstr,
                                size_t errstr_size)
{
    if (id < 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "registry: negative schema id");
    lt_err_t err = LT_OK;
    json_object *j = NULL;
    pthread_mutex_lock(&reg->lock);
    const char *cached = cache_find_schema(reg, id);
    if (!cached) {
        char path[64];
        snprintf(path, sizeof(path), "/schemas/ids/%" PRId32, id);
        err = request(reg, "GET", path, NULL, &j, errstr, errstr_size);
        if (err)
            goto out;
        json_object *s = NULL;
        if (!json_object_is_type(j, json_type_object) ||
            !json_object_object_get_ex(j, "schema", &s) ||
            !json_object_is_type(s, json_type_string)) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                            "registry GET %s: answer without a schema", path);
            goto out;
        }
        json_object *type = NULL;
        if (json_object_object_get_ex(j, "schemaType", &type) &&
            strcmp(json_object_get_string(type), "AVRO")) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                            "registry GET %s: schema type %s, not AVRO", path,
                            json_object_get_string(type));
            goto out;
        }
        cache_put_schema(reg, id, json_object_get_string(s));
        cached = cache_find_schema(reg, id);
    }
    lt_buf_reset(schema_out);
    if (lt_buf_append(schema_out, cached, strlen(cached)))
        err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                        "registry: schema %" PRId32 " does not fit the buffer", id);
out:
    json_object_put(j);
    pthread_mutex_unlock(&reg->lock);
    return err;
}

lt_err_t lt_registry_check_compat(lt_registry_t *reg, const char *subject, const char *schema_json,
                                  int *is_compatible, char *errstr, size_t errstr_size)
{
    lt_err_t err = check_args(subject, schema_json, errstr, errstr_size);
    if (err)
        return err;
    *is_compatible = 0;
    pthread_mutex_lock(&reg->lock);
    char *body = schema_body(schema_json);
    lt_buf_t *path = lt_buf_new(8192);
    json_object *j = NULL;
    if ((err = subject_path(reg, path, "/compatibility/subjects/", subject, "/versions/latest",
                            errstr, errstr_size)))
        goto out;
    err = request(reg, "POST", lt_buf_str(path), body, &j, errstr, errstr_size);
    if (err)
        goto out;
    json_object *v = NULL;
    if (!json_object_is_type(j, json_type_object) ||
        !json_object_object_get_ex(j, "is_compatible", &v) ||
        !json_object_is_type(v, json_type_boolean)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "registry POST %s: answer without is_compatible", lt_buf_str(path));
        goto out;
    }
    *is_compatible = json_object_get_boolean(v) ? 1 : 0;
    if (errstr && errstr_size)
        errstr[0] = 0;
    json_object *msgs = NULL;
    if (!*is_compatible && json_object_object_get_ex(j, "messages", &msgs))
        lt_seterr(errstr, errstr_size, LT_OK, "%s",
                  json_object_to_json_string_ext(msgs, JSON_C_TO_STRING_PLAIN));
out:
    json_object_put(j);
    lt_buf_destroy(path);
    free(body);
    pthread_mutex_unlock(&reg->lock);
    return err;
}

static int valid_level(const char *level)
{
    static const char *const levels[] = {
        "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
        "FULL",     "FULL_TRANSITIVE",     "NONE"};
    for (size_t i = 0; level && i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (!strcmp(level, levels[i]))
            return 1;
    }
    return 0;
}

lt_err_t lt_registry_set_compat(lt_registry_t *reg, const char *subject, const char *level,
                                char *errstr, size_t errstr_size)
{
    if (!subject || !*subject || !valid_level(level))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "registry: a subject and a compatibility level are required");
    lt_err_t err;
    pthread_mutex_lock(&reg->lock);
    lt_buf_t *path = lt_buf_new(8192);
    json_object *j = NULL;
    char body[64];
    snprintf(body, sizeof(body), "{\"compatibility\":\"%s\"}", level);
    if ((err = subject_path(reg, path, "/config/", subject, "", errstr, errstr_size)))
        goto out;
    err = request(reg, "PUT", lt_buf_str(path), body, &j, errstr, errstr_size);
out:
    json_object_put(j);
    lt_buf_destroy(path);
    pthread_mutex_unlock(&reg->lock);
    return err;
}

lt_err_t lt_registry_get_compat(lt_registry_t *reg, const char *subject, char *level,
                                size_t level_size, char *errstr, size_t errstr_size)
{
    if (!subject || !*subject || !level || level_size == 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "registry: subject required");
    level[0] = 0;
    lt_err_t err;
    pthread_mutex_lock(&reg->lock);
    lt_buf_t *path = lt_buf_new(8192);
    json_object *j = NULL;
    if ((err = subject_path(reg, path, "/config/", subject, "", errstr, errstr_size)))
        goto out;
    err = request(reg, "GET", lt_buf_str(path), NULL, &j, errstr, errstr_size);
    if (err)
        goto out;
    json_object *v = NULL;
    /* Confluent answers {"compatibilityLevel": ...}; accept "compatibility" too */
    if (!json_object_object_get_ex(j, "compatibilityLevel", &v) &&
        !json_object_object_get_ex(j, "compatibility", &v)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "registry GET %s: answer without a compatibility level", lt_buf_str(path));
        goto out;
    }
    snprintf(level, level_size, "%s", json_object_get_string(v));
out:
    json_object_put(j);
    lt_buf_destroy(path);
    pthread_mutex_unlock(&reg->lock);
    return err;
}

lt_err_t lt_registry_delete_subject(lt_registry_t *reg, const char *subject, int permanent,
                                    char *errstr, size_t errstr_size)
{
    if (!subject || !*subject)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "registry: subject required");
    lt_err_t err;
    pthread_mutex_lock(&reg->lock);
    lt_buf_t *path = lt_buf_new(8192);
    json_object *j = NULL;
    if ((err = subject_path(reg, path, "/subjects/", subject, "", errstr, errstr_size)))
        goto out;
    err = request(reg, "DELETE", lt_buf_str(path), NULL, &j, errstr, errstr_size);
    json_object_put(j);
    j = NULL;
    if (!err && permanent) {
        lt_buf_appendf(path, "?permanent=true");
        err = request(reg, "DELETE", lt_buf_str(path), NULL, &j, errstr, errstr_size);
    }
    /* forget cached ids of the subject: a re-registration may get a new id */
    for (size_t i = 0; i < REG_CACHE_SIZE; i++) {
        id_entry_t *e = &reg->ids[i];
        if (e->subject && !strcmp(e->subject, subject)) {
            free(e->subject);
            free(e->schema);
            memset(e, 0, sizeof(*e));
        }
    }
out:
    json_object_put(j);
    lt_buf_destroy(path);
    pthread_mutex_unlock(&reg->lock);
    return err;
}
