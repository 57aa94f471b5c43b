/* lt_buf: a growable byte buffer with a hard cap (after curl's dynbuf).
 *
 * The buffer owns its memory. Appending past the cap fails with
 * LT_ERR_TOO_BIG and leaves the content unchanged. The content is always
 * followed by a NUL byte (not counted in the length), so text can be used
 * as a C string. Out of memory aborts (the project's OOM policy: the
 * consumer group reassigns the work of a dead worker). */
#ifndef LT_BUF_H
#define LT_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "lt_err.h"

typedef struct lt_buf_s lt_buf_t;

lt_buf_t *lt_buf_new(size_t cap);
/* A buffer for secrets (an OAuth form, a token response): the old block is
 * zeroed before it is freed when the buffer grows, and lt_buf_reset,
 * lt_buf_destroy and lt_buf_wipe zero what it held. */
lt_buf_t *lt_buf_new_secret(size_t cap);
void lt_buf_destroy(lt_buf_t *b);
/* Zero every allocated byte (not only the content) and empty the buffer;
 * the memory stays the buffer's. */
void lt_buf_wipe(lt_buf_t *b);

lt_err_t lt_buf_append(lt_buf_t *b, const void *data, size_t len);
lt_err_t lt_buf_appendf(lt_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lt_buf_reset(lt_buf_t *b);
/* Drop the first n bytes (n <= length). */
void lt_buf_consume(lt_buf_t *b, size_t n);
/* Keep the first len bytes (a longer len changes nothing). */
void lt_buf_truncate(lt_buf_t *b, size_t len);

const uint8_t *lt_buf_data(const lt_buf_t *b);
const char *lt_buf_str(const lt_buf_t *b);
size_t lt_buf_len(const lt_buf_t *b);
size_t lt_buf_cap(const lt_buf_t *b);

/* Hand the content to the caller (free() it); the buffer becomes empty. */
uint8_t *lt_buf_steal(lt_buf_t *b, size_t *len);

/* Abort on allocation failure: the one out-of-memory policy. */
void *lt_xmalloc(size_t n);
void *lt_xcalloc(size_t n, size_t size);
void *lt_xrealloc(void *p, size_t n);
char *lt_xstrdup(const char *s);

#endif
