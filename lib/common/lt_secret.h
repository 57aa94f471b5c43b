/* lt_secret: resolve a secret that an account's config_json refers to.
 *
 * config_json never holds a secret, only a reference to one under <name>:
 *   "<name>_env":  the name of an environment variable holding the secret;
 *   "<name>_file": the name of a file holding it (trailing CR/LF trimmed).
 * Exactly one of the two must be given; an inline non-empty "<name>"
 * string is refused.
 *
 * A reference may only point into the account's tenant's own namespace
 * (docs/operations.md, "Account secrets"), so that no account's config can
 * make the worker send a worker setting, the worker's environment or another
 * tenant's secret to a host that config chooses:
 *   - a variable must be named LTS_<T>__<NAME>: <T> the tenant id with
 *     letters and digits kept and every other byte written _XX (two
 *     upper-case hex digits: tenant "acme-eu" -> LTS_acme_2Deu__),
 *     <NAME> of [A-Za-z0-9_]; never a LATTICE_* setting;
 *   - a file name is relative to <secrets_dir>/<tenant id>/: components of
 *     [A-Za-z0-9._-], none "." or ".."; the file, after symbolic links are
 *     followed, must be a regular file inside that tenant directory
 *     (a Kubernetes secret volume's own links inside it are fine). An empty
 *     secrets_dir refuses every file reference.
 * An empty secret is refused; one that does not fit in out is refused (never
 * truncated). Every failure is LT_ERR_FINAL (the account is misconfigured);
 * errstr names the key and the reference, never the secret, and one text
 * covers "missing", "not a regular file" and "outside the tenant directory",
 * so it tells nothing of files outside the namespace. On failure out is
 * zeroed. */
#ifndef LT_SECRET_H
#define LT_SECRET_H

#include <stddef.h>

#include <json-c/json.h>

#include "lt_err.h"

/* Fixed start of every account secret variable (never a LATTICE_* name). */
#define LT_SECRET_ENV_PREFIX "LTS_"

/* Where the references of one account may point. Borrowed strings. */
typedef struct {
    const char *tenant;      /* the account's tenant id */
    const char *secrets_dir; /* LATTICE_SECRETS_DIR; NULL or "": file references refused */
} lt_secret_ns_t;

/* The variable-name prefix of tenant's secrets, "LTS_<T>__", into out.
 * Returns its length, or 0 when tenant is empty or out is too small. */
size_t lt_secret_env_prefix(const char *tenant, char *out, size_t outsz);

/* The variable tenant's account may name for NAME: "LTS_<T>__<name>" into
 * out. Returns its length, or 0 when name is not of [A-Za-z0-9_]+ or it does
 * not fit (lattice-seed builds the references it stores with it). */
size_t lt_secret_env_name(const char *tenant, const char *name, char *out, size_t outsz);

/* 1 when name is a valid file reference: relative, components of
 * [A-Za-z0-9._-]+, none "." or "..", at most 255 bytes. */
int lt_secret_file_name_ok(const char *name);

/* cfg: borrowed config object. out: caller's buffer of outsz bytes (>= 2),
 * receives the NUL-terminated secret; the caller wipes it after use
 * (lt_secret_wipe). */
lt_err_t lt_secret_resolve(const lt_secret_ns_t *ns, json_object *cfg, const char *name,
                           char *out, size_t outsz, char *errstr, size_t errstr_size);

/* Overwrite n bytes at p with zeros in a way the compiler does not drop
 * (for buffers that held a secret, before they are freed or reused). */
void lt_secret_wipe(void *p, size_t n);

#endif
