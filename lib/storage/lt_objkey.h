/* lt_objkey: object key conventions for the raw mail store (pure functions).
 *
 * Layout (see docs/storage.md):
 *   tenant/{t}/account/{a}/provider/{p}/message/{m}/message.eml
 *   tenant/{t}/account/{a}/provider/{p}/message/{m}/attachments/{id}/{filename}
 *   tenant/{t}/account/{a}/provider/{p}/message/{m}/manifest.json
 *
 * Every {component} is made safe by one reversible escape: the bytes
 * [A-Za-z0-9_.-] are kept (a leading '.' is escaped), every other byte
 * (including '%', '/', '\', '~', controls, NUL, bytes >= 0x80) becomes %XX
 * with upper-case hex. So no component can be empty, ".", ".." or contain
 * '/', and distinct inputs give distinct components. A component whose
 * escaped form is longer than its cap is truncated and gets
 * "~" + 16 hex digits of SHA-256(original) (filenames keep their extension
 * after the hash); '~' never occurs otherwise, so truncated names cannot
 * collide with untruncated ones. Everything is deterministic: a replay of
 * the same input yields the same key.
 *
 * Output buffers are caller-owned; LT_OBJKEY_MAX + 1 bytes always suffice
 * for a key (S3's limit is 1024 bytes). */
#ifndef LT_OBJKEY_H
#define LT_OBJKEY_H

#include <stddef.h>

#include "lt_err.h"

#define LT_OBJKEY_MAX 1024          /* longest key (S3 limit), bytes, NUL excluded */
#define LT_OBJKEY_COMPONENT_MAX 150 /* cap of an id component (tenant, account, ...) */
#define LT_OBJKEY_FILENAME_MAX 200  /* cap of an attachment filename component */
#define LT_OBJKEY_CAP_MIN 80        /* smallest cap lt_objkey_component accepts */
#define LT_OBJKEY_BUCKET_MAX 63
#define LT_OBJKEY_URI_MAX (5 + LT_OBJKEY_BUCKET_MAX + 1 + LT_OBJKEY_MAX) /* "s3://b/k" */

/* Escape `len` raw bytes (any bytes, NUL included) into one key component of
 * at most limit.cap bytes (LT_OBJKEY_CAP_MIN <= cap <= LT_OBJKEY_MAX).
 * limit.keep_ext: when truncating, keep the extension (last ".xyz", 1..16
 * raw bytes) after the hash. Empty input is LT_ERR_INVALID. outsz must be
 * > cap (LT_ERR_INVALID otherwise). */
typedef struct {
    size_t cap;   /* LT_OBJKEY_CAP_MIN..LT_OBJKEY_MAX */
    int keep_ext; /* 1: a truncated name keeps its extension */
} lt_objkey_limit_t;
/* The limits of an id component (tenant, account, ...) and of a filename. */
#define LT_OBJKEY_ID_LIMIT ((lt_objkey_limit_t){LT_OBJKEY_COMPONENT_MAX, 0})
#define LT_OBJKEY_FILENAME_LIMIT ((lt_objkey_limit_t){LT_OBJKEY_FILENAME_MAX, 1})

lt_err_t lt_objkey_component(const void *raw, size_t len, lt_objkey_limit_t limit, char *out,
                             size_t outsz, char *errstr, size_t errstr_size);

/* Undo lt_objkey_component for an untruncated component: writes the raw
 * bytes to out (NUL added, not counted) and their number to *outlen.
 * LT_ERR_INVALID for a truncated component ('~') or a malformed escape;
 * LT_ERR_TOO_BIG if out is too small. */
lt_err_t lt_objkey_decode_component(const char *comp, void *out, size_t outsz, size_t *outlen);

/* The message an object belongs to: all ids non-empty C strings. A plain
 * value carrier; strings borrowed. */
typedef struct {
    const char *tenant;
    const char *account_id;
    const char *provider;
    const char *provider_message_id;
} lt_objkey_msg_t;

/* Key of the raw message. */
lt_err_t lt_objkey_message(const lt_objkey_msg_t *msg, char *out, size_t outsz, char *errstr,
                           size_t errstr_size);

/* The folder of one message, "tenant/.../message/{m}/" (ends with '/'): every
 * key of that message (message.eml, attachments) starts with it. */
lt_err_t lt_objkey_message_prefix(const lt_objkey_msg_t *msg, char *out, size_t outsz, char *errstr,
                                  size_t errstr_size);

/* Key of the full attachments manifest of a message whose event carries only
 * part of it (lt_mail_event_fit()): the message folder + "manifest.json". */
lt_err_t lt_objkey_manifest(const lt_objkey_msg_t *msg, char *out, size_t outsz, char *errstr,
                            size_t errstr_size);

/* Key of one attachment. filename may be NULL (missing: the component is
 * "unnamed~e3b0c44298fc1c14", "unnamed~" + the hash of the empty string) or
 * empty ("empty~e3b0c44298fc1c14"): two distinct, stable names that no real
 * filename escapes to. Pass the filename as the message has it, never a
 * made-up default. */
lt_err_t lt_objkey_attachment(const lt_objkey_msg_t *msg, const char *attachment_id,
                              const char *filename, char *out, size_t outsz, char *errstr,
                              size_t errstr_size);

/* 1 if `key` is a key this project will read or write: 1..LT_OBJKEY_MAX
 * bytes of valid UTF-8 without control characters or '\', not starting
 * with '/', and no empty, "." or ".." segment. Spaces, '+', '%' and
 * non-ASCII letters are allowed (keys written by others may have them). */
int lt_objkey_is_safe(const char *key);

/* 1 if `bucket` is a valid S3 bucket name (3..63 of [a-z0-9.-], starting and
 * ending with a letter or digit, no "..", not an IPv4 address). */
int lt_objkey_bucket_valid(const char *bucket);

/* "s3://{bucket}/{key}" (key as is, not percent-encoded). */
lt_err_t lt_objkey_uri_format(const char *bucket, const char *key, char *out, size_t outsz);

/* Parse and validate "s3://{bucket}/{key}": bucket must be valid, key safe.
 * bucket_out needs LT_OBJKEY_BUCKET_MAX + 1 bytes, key_out LT_OBJKEY_MAX + 1. */
lt_err_t lt_objkey_uri_parse(const char *uri, char *bucket_out, size_t bucket_size, char *key_out,
                             size_t key_size, char *errstr, size_t errstr_size);

#endif
