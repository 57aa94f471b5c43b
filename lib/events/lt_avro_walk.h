/* lt_avro_walk: a bounded walk of one Avro binary datum against its writer
 * schema, before avro-c 1.11 (which trusts its input) decodes it: every
 * varint at most 10 bytes, every length within the remaining bytes, union
 * and enum indexes in range, booleans 0/1, nesting depth and visited values
 * bounded, no trailing bytes. Pure; thread-safe. */
#ifndef LT_AVRO_WALK_H
#define LT_AVRO_WALK_H

#include <avro.h>
#include <stddef.h>

#include "lt_err.h"

#define LT_AVRO_WALK_MAX_DEPTH 32
#define LT_AVRO_WALK_MAX_STEPS 100000

/* LT_OK when datum (len bytes, no wire header) is a well-formed encoding of
 * schema within the bounds; else LT_ERR_INVALID with the reason in errstr,
 * which gives positions as base + the offset in datum (base: where the
 * datum starts in its record, e.g. after the wire header). */
lt_err_t lt_avro_walk(avro_schema_t schema, const void *datum, size_t len, size_t base,
                      char *errstr, size_t errstr_size);

#endif
