#include "lt_secret.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static lt_err_t from_env(const char *key, const char *var, char *out, size_t outsz, char *errstr,
                         size_t n)
{
    const char *val = getenv(var);
    if (!val || !*val)
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: %s names environment variable %s, which is not set", key,
                         var);
    if (strlen(val) >= outsz)
        return lt_seterr(errstr, n, LT_ERR_FINAL, "secret in %s is too long (max %zu bytes)", var,
                         outsz - 1);
    memcpy(out, val, strlen(val) + 1);
    return LT_OK;
}

static lt_err_t from_file(const char *key, const char *path, char *out, size_t outsz, char *errstr,
                          size_t n)
{
    lt_err_t err = LT_OK;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lt_seterr(errstr, n, LT_ERR_FINAL, "account config: %s %s: %s", key, path,
                         strerror(errno));
    size_t r = fread(out, 1, outsz - 1, f);
    if (ferror(f)) {
        err = lt_seterr(errstr, n, LT_ERR_FINAL, "account config: %s %s: read error", key, path);
        goto out;
    }
    out[r] = 0;
    /* Anything beyond the buffer other than a line ending means too big. */
    for (int c; r == outsz - 1 && (c = fgetc(f)) != EOF;) {
        if (c != '\n' && c != '\r') {
            err =
                lt_seterr(errstr, n, LT_ERR_FINAL,
                          "account config: %s %s is too big (max %zu bytes)", key, path, outsz - 1);
            goto out;
        }
    }
    while (r > 0 && (out[r - 1] == '\n' || out[r - 1] == '\r'))
        out[--r] = 0;
    if (!r)
        err = lt_seterr(errstr, n, LT_ERR_FINAL, "account config: %s %s is empty", key, path);
out:
    fclose(f);
    return err;
}

lt_err_t lt_secret_resolve(json_object *cfg, const char *name, char *out, size_t outsz,
                           char *errstr, size_t n)
{
    char env_key[64], file_key[64];
    const char *var, *path;
    json_object *v;
    lt_err_t err;
    if (!cfg || !name || !out || outsz < 2)
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
        err = from_env(env_key, var, out, outsz, errstr, n);
    else if (path)
        err = from_file(file_key, path, out, outsz, errstr, n);
    else
        err = lt_seterr(errstr, n, LT_ERR_FINAL, "account config: no %s or %s", env_key, file_key);
    if (err)
        memset(out, 0, outsz);
    return err;
}
