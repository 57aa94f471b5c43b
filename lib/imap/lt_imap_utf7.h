/* lt_imap_utf7: IMAP "modified UTF-7" mailbox names (RFC 3501 section 5.1.3).
 *
 * Both directions are strict and canonical: decode() accepts exactly what
 * encode() produces, so decode(encode(x)) == x for every valid UTF-8 x and
 * encode(decode(y)) == y for every y that decodes. Rejected on decode:
 * bytes outside printable US-ASCII, an unterminated or adjacent base64 run,
 * printable ASCII hidden in base64, non-zero pad bits, a lone surrogate,
 * U+0000. Rejected on encode: invalid UTF-8 (overlong, surrogates,
 * > U+10FFFF, truncated) and U+0000.
 *
 * Output is appended to a caller-owned lt_buf_t (its cap applies: LT_ERR_TOO_BIG);
 * on error the buffer is left as it was. */
#ifndef LT_IMAP_UTF7_H
#define LT_IMAP_UTF7_H

#include <stddef.h>

#include "lt_buf.h"
#include "lt_err.h"

/* UTF-8 -> modified UTF-7. LT_ERR_INVALID on invalid UTF-8. */
lt_err_t lt_imap_utf7_encode(const char *utf8, size_t len, lt_buf_t *out, char *errstr,
                             size_t errstr_size);

/* Modified UTF-7 -> UTF-8. LT_ERR_INVALID (with the byte offset) on invalid input. */
lt_err_t lt_imap_utf7_decode(const char *utf7, size_t len, lt_buf_t *out, char *errstr,
                             size_t errstr_size);

#endif
