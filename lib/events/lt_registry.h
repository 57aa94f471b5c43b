/* lt_registry: a Confluent-compatible schema registry client (libcurl +
 * json-c), used against Apicurio Registry's ccompat API
 * (http://host:port/apis/ccompat/v7) or a Confluent Schema Registry.
 *
 * Subjects follow the TopicNameStrategy: "<topic>-value", e.g.
 * "lattice.mail.raw.v1-value" (LT_MAIL_RAW_SUBJECT in lt_event.h).
 *
 * Caching: register/lookup results are cached per (subject, schema text) and
 * schemas per id, so a worker asks the registry once per schema, not once per
 * message. Ids never change meaning in a registry, so the cache never expires
 * (bounded: the oldest entries are evicted).
 *
 * Errors: a connection failure, timeout, HTTP 429 or 5xx is LT_ERR_TEMPORARY
 * (retry with backoff); HTTP 404 is LT_ERR_NOT_FOUND; HTTP 422 (invalid schema)
 * is LT_ERR_INVALID; any other 4xx (401/403 bad credentials, 409 incompatible
 * schema, ...) is LT_ERR_FINAL. errstr carries the method, path, HTTP status
 * and the registry's error_code and message. The password is never put in
 * errstr.
 *
 * Threads: an lt_registry_t may be shared by threads; every call holds the
 * handle's mutex (curl handle and caches), so calls are serialized. Cache hits
 * are cheap; one registry handle per process is the intended use.
 *
 * Ownership: the handle copies its string arguments; outputs are copied into
 * caller storage. */
#ifndef LT_REGISTRY_H
#define LT_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"

typedef struct lt_registry_s lt_registry_t;

/* base_url: up to and without "/subjects", e.g.
 * "http://127.0.0.1:18080/apis/ccompat/v7". user/password: HTTP basic auth,
 * both NULL for none. ca_file: PEM bundle to verify https with, NULL for the
 * system store (TLS is always verified). NULL on error (errstr filled). */
lt_registry_t *lt_registry_new(const char *base_url, const char *user, const char *password,
                               const char *ca_file, char *errstr, size_t errstr_size);
void lt_registry_destroy(lt_registry_t *reg);

/* HTTP timeouts in milliseconds (defaults: connect 5000, whole request 15000). */
void lt_registry_set_timeouts(lt_registry_t *reg, long connect_ms, long request_ms);

/* POST /subjects/{subject}/versions {"schema": ..., "schemaType": "AVRO"}:
 * register schema_json (or find it if already registered) and return its id.
 * Registering the same schema again returns the same id. Cached. */
lt_err_t lt_registry_register(lt_registry_t *reg, const char *subject, const char *schema_json,
                              int32_t *id, char *errstr, size_t errstr_size);

/* POST /subjects/{subject}: the id of schema_json if it is registered under
 * subject; LT_ERR_NOT_FOUND if not. Cached (hits only). */
lt_err_t lt_registry_lookup(lt_registry_t *reg, const char *subject, const char *schema_json,
                            int32_t *id, char *errstr, size_t errstr_size);

/* GET /schemas/ids/{id}: replace schema_out's content with the schema text
 * (cached). LT_ERR_NOT_FOUND for an unknown id; LT_ERR_TOO_BIG if it does not
 * fit schema_out's cap. */
lt_err_t lt_registry_get_schema(lt_registry_t *reg, int32_t id, lt_buf_t *schema_out,
                                char *errstr, size_t errstr_size);

/* POST /compatibility/subjects/{subject}/versions/latest: ask the registry
 * whether schema_json is compatible with the latest version under the
 * subject's compatibility level. LT_OK with *is_compatible 0 or 1; when 0,
 * errstr holds the registry's reasons (if it gave any). LT_ERR_NOT_FOUND if
 * the subject has no version yet. Not cached. */
lt_err_t lt_registry_check_compat(lt_registry_t *reg, const char *subject,
                                  const char *schema_json, int *is_compatible, char *errstr,
                                  size_t errstr_size);

/* PUT /config/{subject} {"compatibility": level}: level is one of BACKWARD,
 * BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE. */
lt_err_t lt_registry_set_compat(lt_registry_t *reg, const char *subject, const char *level,
                                char *errstr, size_t errstr_size);

/* GET /config/{subject}: the subject's compatibility level into level
 * (e.g. "BACKWARD"). LT_ERR_NOT_FOUND if the subject has no own level. */
lt_err_t lt_registry_get_compat(lt_registry_t *reg, const char *subject, char *level,
                                size_t level_size, char *errstr, size_t errstr_size);

/* DELETE /subjects/{subject} (soft), then with permanent also
 * DELETE /subjects/{subject}?permanent=true: remove a subject and its
 * versions (for tests and scratch subjects; ids of the cache stay valid). */
lt_err_t lt_registry_delete_subject(lt_registry_t *reg, const char *subject, int permanent,
                                    char *errstr, size_t errstr_size);

#endif
