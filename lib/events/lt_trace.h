/* lt_trace: W3C Trace Context `traceparent` values
 * (https://www.w3.org/TR/trace-context/#traceparent-header).
 *
 *   00-<32 hex trace-id>-<16 hex parent-id>-<2 hex trace-flags>
 *
 * Parsing follows the spec strictly: lower-case hex only, an all-zero
 * trace-id or parent-id is invalid, version ff is invalid. A version above
 * 00 is accepted if it starts with the version-00 fields (anything after a
 * '-' at offset 55 is ignored); the child of such a parent is version 00,
 * as the spec asks.
 *
 * lt_trace_t is a plain value (no allocation, copy it freely). Treat the
 * fields as read-only; use the functions below to make and format values.
 * Random ids come from OpenSSL's RAND_bytes. */
#ifndef LT_TRACE_H
#define LT_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "lt_err.h"

#define LT_TRACEPARENT_LEN 55                        /* version 00, without NUL */
#define LT_TRACEPARENT_SIZE (LT_TRACEPARENT_LEN + 1) /* buffer size with NUL */
#define LT_TRACE_ID_HEX_SIZE 33                      /* 32 hex + NUL */
#define LT_SPAN_ID_HEX_SIZE 17                       /* 16 hex + NUL */
#define LT_TRACE_FLAG_SAMPLED 0x01

typedef struct {
    uint8_t version;
    uint8_t trace_id[16];
    uint8_t span_id[8]; /* the spec's parent-id: the id of the span that sent it */
    uint8_t flags;
} lt_trace_t;

/* Parse a traceparent of `len` bytes (no NUL needed). LT_ERR_INVALID with
 * the reason in errstr if it is not a valid traceparent; *out untouched. */
lt_err_t lt_trace_parse(const char *s, size_t len, lt_trace_t *out, char *errstr,
                        size_t errstr_size);

/* A new root: random trace id and span id, version 00, flags = sampled.
 * LT_ERR_TEMPORARY only if the random generator fails. */
lt_err_t lt_trace_new(lt_trace_t *out, char *errstr, size_t errstr_size);

/* A child of `parent`: same trace id and flags, new random span id,
 * version 00. `child` may be `parent`. */
lt_err_t lt_trace_child(const lt_trace_t *parent, lt_trace_t *child, char *errstr,
                        size_t errstr_size);

/* The child of the traceparent `s` (NULL or empty: none) if it is valid,
 * else a new root. Sets *propagated (may be NULL) to 1 when `s` was used.
 * This is the project's rule for incoming commands and messages. */
lt_err_t lt_trace_continue(const char *s, lt_trace_t *out, int *propagated, char *errstr,
                           size_t errstr_size);

/* Write the version-00 text form into out[LT_TRACEPARENT_SIZE]. */
void lt_trace_format(const lt_trace_t *t, char out[LT_TRACEPARENT_SIZE]);
void lt_trace_id_hex(const lt_trace_t *t, char out[LT_TRACE_ID_HEX_SIZE]);
void lt_trace_span_id_hex(const lt_trace_t *t, char out[LT_SPAN_ID_HEX_SIZE]);
int lt_trace_sampled(const lt_trace_t *t);

/* 1 if a and b have the same trace id. */
int lt_trace_same_trace(const lt_trace_t *a, const lt_trace_t *b);

#endif
