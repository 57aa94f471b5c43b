/* lt_s3: a small S3 client (libcurl, AWS Signature V4) for the raw mail store.
 *
 * Requests are signed here (SigV4, OpenSSL HMAC-SHA-256; the signing key is
 * derived once a day). Every request carries x-amz-content-sha256 with the
 * SHA-256 of its payload, signed, so S3 verifies what it stores. Uploads from a file are hashed first, then
 * streamed (the file is read twice, never held in memory).
 *
 * Keys are given as is (see lt_objkey.h for how this project forms them) and
 * must pass lt_objkey_is_safe(); they are URI-encoded per SigV4 in the
 * request path (each byte outside [A-Za-z0-9-._~/] as %XX).
 *
 * Errors: LT_ERR_TEMPORARY for network failures, timeouts, stalls (the
 * low-speed limit below), 5xx, 429, 408,
 * SlowDown/RequestTimeout/RequestTimeTooSkewed; LT_ERR_NOT_FOUND for 404
 * (NoSuchKey); LT_ERR_TOO_BIG when a GET exceeds the caller's buffer cap or
 * S3 says EntityTooLarge; LT_ERR_FINAL for every other refusal (403
 * SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied, NoSuchBucket, 400,
 * a TLS certificate that does not verify); LT_ERR_INVALID for bad arguments.
 * errstr then holds the method, key, HTTP status and S3's error Code and
 * Message (never a credential).
 *
 * Threads: an lt_s3_t keeps one libcurl easy handle, so connections are
 * reused between requests; it is NOT thread-safe: use one lt_s3_t per
 * thread. main() should call curl_global_init() before starting threads. */
#ifndef LT_S3_H
#define LT_S3_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"

typedef struct lt_s3_s lt_s3_t;

#define LT_S3_SHA256_HEX 65 /* 64 hex digits + NUL */
#define LT_S3_ETAG_MAX 128
#define LT_S3_PUT_MAX ((uint64_t)5 << 30) /* S3's limit for one PUT: 5 GiB */

/* How a bucket is addressed. */
typedef enum {
    LT_S3_VIRTUAL_HOSTED = 0, /* https://bucket.host/key (AWS) */
    LT_S3_PATH_STYLE = 1,     /* https://host/bucket/key (MinIO) */
} lt_s3_addressing_t;

/* Where and how to reach the store. A plain value carrier; strings
 * borrowed (lt_s3_new() copies them). */
typedef struct {
    const char *endpoint; /* "http(s)://host[:port]" (no path) */
    const char *region;   /* e.g. "us-east-1" */
    const char *bucket;
    const char *access_key_id;
    const char *secret_access_key; /* wiped from memory by lt_s3_destroy() */
    lt_s3_addressing_t addressing;
    const char *ca_file; /* PEM bundle to verify the server with; NULL or "": the
                          * system store (verification is always on) */
    long timeout_s;      /* limit for one whole request, 1..86400 */
    /* Stall detection: a request whose transfer stays under
     * low_speed_bytes per second for low_speed_time_s seconds is given up
     * (LT_ERR_TEMPORARY, "stalled" in errstr) long before timeout_s: a frozen
     * server or a black hole answers nothing. 0 s: off. While the server
     * thinks (after the upload, before its answer) nothing moves either: the
     * window must exceed the store's slowest answer. */
    long low_speed_time_s;
    long low_speed_bytes; /* < 1: 1 */
    /* Called (on the requesting thread) for every request given up as
     * stalled, with the request ("PUT key") and stall_opaque; may be NULL.
     * Copied by lt_s3_dup(). */
    void (*on_stall)(void *stall_opaque, const char *what);
    void *stall_opaque;
    /* The store asks to slow down (503, or the S3 error code SlowDown): the
     * request is sent again after a backoff (LT_S3_SLOWDOWN_TRIES answers
     * in a row at most, then LT_ERR_TEMPORARY). Called (on the requesting
     * thread) with slowed 1 for every such answer, with slowed 0 for the
     * first request of this handle that succeeds after one; may be NULL.
     * Copied by lt_s3_dup(). */
    void (*on_slowdown)(void *slowdown_opaque, const char *what, int slowed);
    void *slowdown_opaque;
    /* The first backoff after a SlowDown answer, doubling up to 32 times
     * it; 0: LT_S3_SLOWDOWN_BASE_MS. Copied by lt_s3_dup(). */
    long slowdown_base_ms;
} lt_s3_config_t;

/* SlowDown answers in a row before a request fails, and the backoff between
 * them: 200 ms doubling to at most 6.4 s (32 × the first), with jitter
 * (about 25 s in all). */
#define LT_S3_SLOWDOWN_TRIES 8
#define LT_S3_SLOWDOWN_BASE_MS 200

/* A client of one bucket. NULL on bad settings (errstr says which). */
lt_s3_t *lt_s3_new(const lt_s3_config_t *cfg, char *errstr, size_t errstr_size);
void lt_s3_destroy(lt_s3_t *s3);
/* A new handle with the same settings and its own connection (for another
 * thread). NULL only when libcurl cannot make a handle. */
lt_s3_t *lt_s3_dup(const lt_s3_t *s3);

const char *lt_s3_bucket(const lt_s3_t *s3);

/* An object to store: its key and media type. content_type is stored as
 * given when it is a bare media type (lt_media_type_safe()), else (NULL,
 * too long, parameters, bad bytes) as application/octet-stream. A plain
 * value carrier; strings borrowed. */
typedef struct {
    const char *key;
    const char *content_type;
} lt_s3_object_t;

/* Store len bytes (data may be NULL when len is 0) as obj; the same key
 * again overwrites (idempotent). sha256_hex_out (may be NULL) receives the
 * SHA-256 of the data, which is also stored as user metadata
 * (x-amz-meta-lattice-sha256). */
lt_err_t lt_s3_put(lt_s3_t *s3, const lt_s3_object_t *obj, const void *data, size_t len,
                   char sha256_hex_out[LT_S3_SHA256_HEX], char *errstr, size_t errstr_size);

/* Store the whole regular file open at fd as obj (read with pread from
 * offset 0; the file position is not used). The file is hashed first, then
 * streamed. size_out (may be NULL) receives its size. The fd stays the
 * caller's. */
lt_err_t lt_s3_put_file(lt_s3_t *s3, const lt_s3_object_t *obj, int fd,
                        char sha256_hex_out[LT_S3_SHA256_HEX], uint64_t *size_out, char *errstr,
                        size_t errstr_size);

/* Fetch an object into out (reset first; its cap applies: LT_ERR_TOO_BIG). */
lt_err_t lt_s3_get(lt_s3_t *s3, const char *key, lt_buf_t *out, char *errstr, size_t errstr_size);

/* Bytes [offset, offset + length) of the object into out (reset first): one
 * GET with a Range header (an attachment published as a range of its .eml,
 * docs/events.md). length 0: nothing read, LT_OK. A range past the end of
 * the object: LT_ERR_FINAL (HTTP 416 InvalidRange); a range over out's cap:
 * LT_ERR_TOO_BIG; otherwise the errors of lt_s3_get(). */
lt_err_t lt_s3_get_range(lt_s3_t *s3, const char *key, uint64_t offset, uint64_t length,
                         lt_buf_t *out, char *errstr, size_t errstr_size);

/* Object metadata. Any output may be NULL. etag without quotes; sha256_hex
 * is "" when the object carries no x-amz-meta-lattice-sha256. */
lt_err_t lt_s3_head(lt_s3_t *s3, const char *key, uint64_t *size_out, char etag_out[LT_S3_ETAG_MAX],
                    char sha256_hex_out[LT_S3_SHA256_HEX], char *errstr, size_t errstr_size);

/* Remove an object (LT_OK also when it did not exist, as S3 answers). */
lt_err_t lt_s3_delete(lt_s3_t *s3, const char *key, char *errstr, size_t errstr_size);

/* Create the bucket unless it exists (for tests and tools). */
lt_err_t lt_s3_ensure_bucket(lt_s3_t *s3, char *errstr, size_t errstr_size);

/* "s3://{bucket}/{key}" of this handle's bucket. */
lt_err_t lt_s3_uri(const lt_s3_t *s3, const char *key, char *out, size_t outsz);

/* --- pure helpers, public for tests --- */

/* URI-encode a key for the request path per SigV4 (S3: encoded once, '/'
 * kept). LT_ERR_TOO_BIG if out is too small (3 * strlen(key) + 1 suffices). */
lt_err_t lt_s3_encode_key(const char *key, char *out, size_t outsz);

/* Classify an HTTP status and S3 XML error body (may be NULL) as above and
 * write "HTTP <status> <Code>: <Message>" to errstr. LT_OK for 2xx. */
lt_err_t lt_s3_classify(long http_status, const char *body, size_t body_len, char *errstr,
                        size_t errstr_size);

#endif
