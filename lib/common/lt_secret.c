#include "lt_secret.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_LEN 255 /* longest file name a config may give */
#define ENV_MAX_LEN 511  /* longest variable name (a 128-byte tenant id is up to 390 encoded) */

void lt_secret_wipe(void *p, size_t n)
{
    if (p && n)
        explicit_bzero(p, n);
}

static int is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

size_t lt_secret_env_prefix(const char *tenant, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(LT_SECRET_ENV_PREFIX);
    if (!tenant || !*tenant || !out || outsz <= len)
        return 0;
    memcpy(out, LT_SECRET_ENV_PREFIX, len);
    for (const unsigned char *p = (const unsigned char *)tenant; *p; p++) {
        if (len + (is_alnum(*p) ? 1 : 3) + 2 >= outsz)
            return 0;
        if (is_alnum(*p)) {
            out[len++] = (char)*p;
        } else {
            out[len++] = '_';
            out[len++] = hex[*p >> 4];
            out[len++] = hex[*p & 15];
        }
    }
    out[len++] = '_';
    out[len++] = '_';
    out[len] = 0;
    return len;
}

static int env_rest_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!is_alnum((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

size_t lt_secret_env_name(const char *tenant, const char *name, char *out, size_t outsz)
{
    size_t plen = lt_secret_env_prefix(tenant, out, outsz);
    if (!plen || !name || !env_rest_ok(name) || plen + strlen(name) >= outsz ||
        plen + strlen(name) > ENV_MAX_LEN) {
        if (out && outsz)
            out[0] = 0;
        return 0;
    }
    memcpy(out + plen, name, strlen(name) + 1);
    return plen + strlen(name);
}

/* The string value of cfg[key], or NULL if absent. A present key whose value
 * is not a non-empty string is an error. */
static lt_err_t ref_get(json_object *cfg, const char *key, const char **out, char *errstr, size_t n)
{
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(cfg, key, &v))
        return LT_OK;
    if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: \"%s\" must be a non-empty string", key);
    *out = json_object_get_string(v);
    return LT_OK;
}

static lt_err_t from_env(const lt_secret_ns_t *ns, const char *key, const char *var, char *out,
                         size_t outsz, char *errstr, size_t n)
{
    char prefix[ENV_MAX_LEN + 1];
    size_t plen = lt_secret_env_prefix(ns->tenant, prefix, sizeof(prefix));
    size_t vlen = strlen(var);
    int ok = plen && vlen <= ENV_MAX_LEN && !strncmp(var, prefix, plen) && env_rest_ok(var + plen);
    if (!ok)
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: %s must name a variable of this tenant, %s<NAME> "
                         "(NAME of A-Z, a-z, 0-9, _)",
                         key, plen ? prefix : LT_SECRET_ENV_PREFIX "<tenant>__");
    const char *val = getenv(var);
    if (!val || !*val)
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: %s names environment variable %s, which is not set", key,
                         var);
    size_t len = strlen(val);
    if (len >= outsz)
        return lt_seterr(errstr, n, LT_ERR_FINAL, "secret in %s is too long (max %zu bytes)", var,
                         outsz - 1);
    memcpy(out, val, len + 1);
    return LT_OK;
}

int lt_secret_file_name_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (!len || len > NAME_MAX_LEN || name[0] == '/')
        return 0;
    for (const char *c = name; *c;) {
        const char *e = strchr(c, '/');
        size_t clen = e ? (size_t)(e - c) : strlen(c);
        if (!clen || (clen == 1 && c[0] == '.') || (clen == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        for (size_t i = 0; i < clen; i++)
            if (!is_alnum((unsigned char)c[i]) && c[i] != '.' && c[i] != '_' && c[i] != '-')
                return 0;
        c += clen + (e ? 1 : 0);
        if (e && !*c)
            return 0; /* trailing '/' */
    }
    return 1;
}

/* A tenant id usable as one directory name. */
static int tenant_dir_ok(const char *t)
{
    if (!t || !*t || !strcmp(t, ".") || !strcmp(t, ".."))
        return 0;
    for (; *t; t++)
        if (!is_alnum((unsigned char)*t) && !strchr("._:-", *t))
            return 0;
    return 1;
}

/* Open <dir>/<tenant>/<name> read-only when, all links followed, it is a
 * regular file inside <dir>/<tenant>; -1 otherwise (whatever the reason). */
static int open_in_tenant_dir(const lt_secret_ns_t *ns, const char *name)
{
    char tdir[PATH_MAX], full[PATH_MAX], *rdir = NULL, *rfile = NULL;
    int fd = -1;
    struct stat st;
    if (snprintf(tdir, sizeof(tdir), "%s/%s", ns->secrets_dir, ns->tenant) >= (int)sizeof(tdir) ||
        snprintf(full, sizeof(full), "%s/%s", tdir, name) >= (int)sizeof(full))
        goto out;
    if (!(rdir = realpath(tdir, NULL)) || !(rfile = realpath(full, NULL)))
        goto out;
    size_t dlen = strlen(rdir);
    if (strncmp(rfile, rdir, dlen) || rfile[dlen] != '/')
        goto out;
    /* O_NONBLOCK: a FIFO planted in the tenant directory must not hang the
     * slot; O_NOFOLLOW: the resolved path holds no link any more. */
    fd = open(rfile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd >= 0 && (fstat(fd, &st) || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
out:
    free(rdir);
    free(rfile);
    return fd;
}

static lt_err_t from_file(const lt_secret_ns_t *ns, const char *key, const char *name, char *out,
                          size_t outsz, char *errstr, size_t n)
{
    lt_err_t err = LT_OK;
    if (!ns->secrets_dir || !*ns->secrets_dir)
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: %s refused: file references are off "
                         "(LATTICE_SECRETS_DIR is empty)",
                         key);
    if (!lt_secret_file_name_ok(name) || !tenant_dir_ok(ns->tenant))
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: %s must be a name relative to the tenant's secrets "
                         "directory (components of A-Z, a-z, 0-9, '.', '_', '-'; no '..')",
                         key);
    int fd = open_in_tenant_dir(ns, name);
    if (fd < 0)
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: %s \"%s\" is not a readable file in the tenant's "
                         "secrets directory",
                         key, name);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return lt_seterr(errstr, n, LT_ERR_FINAL, "account config: %s \"%s\": %s", key, name,
                         strerror(errno));
    }
    setvbuf(f, NULL, _IONBF, 0); /* no stdio copy of the secret */
    size_t r = fread(out, 1, outsz - 1, f);
    if (ferror(f)) {
        err = lt_seterr(errstr, n, LT_ERR_FINAL, "account config: %s \"%s\": read error", key,
                        name);
        goto out;
    }
    out[r] = 0;
    /* Anything beyond the buffer other than a line ending means too big. */
    for (int c; r == outsz - 1 && (c = fgetc(f)) != EOF;) {
        if (c != '\n' && c != '\r') {
            err = lt_seterr(errstr, n, LT_ERR_FINAL,
                            "account config: %s \"%s\" is too big (max %zu bytes)", key, name,
                            outsz - 1);
            goto out;
        }
    }
    while (r > 0 && (out[r - 1] == '\n' || out[r - 1] == '\r'))
        out[--r] = 0;
    if (!r)
        err = lt_seterr(errstr, n, LT_ERR_FINAL, "account config: %s \"%s\" is empty", key, name);
out:
    fclose(f);
    return err;
}

lt_err_t lt_secret_resolve(const lt_secret_ns_t *ns, json_object *cfg, const char *name,
                           char *out, size_t outsz, char *errstr, size_t n)
{
    char env_key[64], file_key[64];
    const char *var, *path;
    json_object *v;
    lt_err_t err;
    if (!ns || !ns->tenant || !cfg || !name || !out || outsz < 2)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "lt_secret_resolve: bad arguments");
    memset(out, 0, outsz);
    if (json_object_object_get_ex(cfg, name, &v) && json_object_is_type(v, json_type_string) &&
        json_object_get_string_len(v))
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: inline \"%s\" is refused: name it with %s_env or "
                         "%s_file",
                         name, name, name);
    snprintf(env_key, sizeof(env_key), "%s_env", name);
    snprintf(file_key, sizeof(file_key), "%s_file", name);
    if ((err = ref_get(cfg, env_key, &var, errstr, n)) ||
        (err = ref_get(cfg, file_key, &path, errstr, n)))
        return err;
    if (var && path)
        return lt_seterr(errstr, n, LT_ERR_FINAL, "account config: both %s and %s given; use one",
                         env_key, file_key);
    if (var)
        err = from_env(ns, env_key, var, out, outsz, errstr, n);
    else if (path)
        err = from_file(ns, file_key, path, out, outsz, errstr, n);
    else
        err = lt_seterr(errstr, n, LT_ERR_FINAL, "account config: no %s or %s", env_key, file_key);
    if (err)
        lt_secret_wipe(out, outsz);
    return err;
}
