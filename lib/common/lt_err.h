/* lt_err: the one error vocabulary of the project.
 *
 * Every fallible function returns an lt_err_t and, on failure, writes a
 * human-readable reason into a caller-supplied errstr buffer (librdkafka
 * style). The code says what the caller should do about it; the text says
 * why. Modules never exit(); only main() decides. */
#ifndef LT_ERR_H
#define LT_ERR_H

#include <stddef.h>

typedef enum {
    LT_OK = 0,
    LT_ERR_TEMPORARY, /* transient (network, 5xx, quota): retry with backoff */
    LT_ERR_REAUTH,    /* credentials rejected: the account needs re-authorisation */
    LT_ERR_RESYNC,    /* provider state invalid (UIDVALIDITY, historyId 404): resync */
    LT_ERR_FINAL,     /* will never succeed as asked (bad command, bad account): DLQ */
    LT_ERR_INVALID,   /* invalid argument or input (a programming or input error) */
    LT_ERR_NOT_FOUND, /* the thing asked for does not exist */
    LT_ERR_TOO_BIG,   /* a hard size cap was reached */
} lt_err_t;

/* Stable lower-case name of a code ("temporary", "reauth", ...), as used in
 * logs, metrics labels and status events. */
const char *lt_err_name(lt_err_t err);

/* printf into errstr (always NUL-terminated, truncated if needed) and return
 * err, so that failures are one line: return lt_seterr(errstr, n, LT_ERR_X, "...") */
lt_err_t lt_seterr(char *errstr, size_t errstr_size, lt_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
