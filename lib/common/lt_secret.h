/* lt_secret: resolve a secret that an account's config_json refers to.
 *
 * config_json never holds a secret, only a reference to one under <name>:
 *   "<name>_env":  the name of an environment variable holding the secret;
 *   "<name>_file": the path of a file holding it (trailing CR/LF trimmed).
 * Exactly one of the two must be given; an inline non-empty "<name>"
 * string is refused. An empty secret is refused; one that does not fit in out is
 * refused (never truncated). Every failure is LT_ERR_FINAL (the account is
 * misconfigured); errstr names the key, the variable or the path, never the
 * secret. On failure out is zeroed. */
#ifndef LT_SECRET_H
#define LT_SECRET_H

#include <stddef.h>

#include <json-c/json.h>

#include "lt_err.h"

/* cfg: borrowed config object. out: caller's buffer of outsz bytes (>= 2),
 * receives the NUL-terminated secret; the caller wipes it after use. */
lt_err_t lt_secret_resolve(json_object *cfg, const char *name, char *out, size_t outsz,
                           char *errstr, size_t errstr_size);

#endif
