/* Fuzz the object key conventions and the s3:// URI parser.
 *
 * Input: up to six fields separated by 0xFF bytes (tenant, account,
 * provider, message id, attachment id, filename). Invariants checked:
 *  - every generated key is safe (lt_objkey_is_safe): no "." / ".." / empty
 *    segment, no leading '/', <= 1024 bytes, no control characters;
 *  - a key has exactly the layout's number of segments and starts with its
 *    message prefix (no component can leave its place);
 *  - deterministic (two runs give the same key);
 *  - components round-trip through the decoder unless truncated, and two
 *    different raw components never give the same component;
 *  - the URI parser never accepts an unsafe key and round-trips.
 * The raw input is also fed to lt_objkey_component with embedded NULs and
 * to lt_objkey_uri_parse. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_objkey.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static int segments(const char *k)
{
    int n = 1;
    for (; *k; k++)
        n += *k == '/';
    return n;
}

static void check_component(const uint8_t *raw, size_t len, int keep_ext, size_t cap)
{
    char a[LT_OBJKEY_MAX + 1], b[LT_OBJKEY_MAX + 1], err[128];
    lt_err_t e = lt_objkey_component(raw, len, (lt_objkey_limit_t){cap, keep_ext}, a, sizeof(a),
                                     err, sizeof(err));
    if (len == 0) {
        ASSERT(e == LT_ERR_INVALID);
        return;
    }
    ASSERT(e == LT_OK);
    ASSERT(strlen(a) >= 1 && strlen(a) <= cap);
    ASSERT(strchr(a, '/') == NULL && strcmp(a, ".") && strcmp(a, "..") && a[0] != '.');
    ASSERT(lt_objkey_is_safe(a));
    ASSERT(lt_objkey_component(raw, len, (lt_objkey_limit_t){cap, keep_ext}, b, sizeof(b), err,
                               sizeof(err)) == LT_OK);
    ASSERT(strcmp(a, b) == 0);

    uint8_t back[LT_OBJKEY_MAX + 1];
    size_t blen = 0;
    if (strchr(a, '~') == NULL) {
        ASSERT(lt_objkey_decode_component(a, back, sizeof(back), &blen) == LT_OK);
        ASSERT(blen == len && memcmp(back, raw, len) == 0);
    } else {
        ASSERT(lt_objkey_decode_component(a, back, sizeof(back), &blen) == LT_ERR_INVALID);
    }

    /* A neighbour input (last byte changed) must give another component. */
    uint8_t *alt = malloc(len);
    ASSERT(alt);
    memcpy(alt, raw, len);
    alt[len - 1] ^= 0x01;
    ASSERT(lt_objkey_component(alt, len, (lt_objkey_limit_t){cap, keep_ext}, b, sizeof(b), err,
                               sizeof(err)) == LT_OK);
    ASSERT(strcmp(a, b) != 0);
    free(alt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;

    check_component(data, size, 0, LT_OBJKEY_COMPONENT_MAX);
    check_component(data, size, 1, LT_OBJKEY_FILENAME_MAX);
    check_component(data, size, 1, LT_OBJKEY_CAP_MIN);

    /* Split into C strings (NUL bytes end a field early, as in C callers). */
    char *copy = malloc(size + 1);
    ASSERT(copy);
    memcpy(copy, data, size);
    copy[size] = 0;
    const char *f[6] = {"t", "a", "p", "m", "1", ""};
    char *p = copy;
    for (int i = 0; i < 6 && p; i++) {
        f[i] = p;
        char *sep = memchr(p, 0xFF, (size_t)(copy + size - p));
        if (sep) {
            *sep = 0;
            p = sep + 1;
        } else {
            p = NULL;
        }
    }

    char k1[LT_OBJKEY_MAX + 1], k2[LT_OBJKEY_MAX + 1], pre[LT_OBJKEY_MAX + 1], err[128];
    lt_err_t e1 = lt_objkey_message(&(lt_objkey_msg_t){f[0], f[1], f[2], f[3]}, k1, sizeof(k1), err,
                                    sizeof(err));
    lt_err_t e2 = lt_objkey_message(&(lt_objkey_msg_t){f[0], f[1], f[2], f[3]}, k2, sizeof(k2), err,
                                    sizeof(err));
    ASSERT(e1 == e2);
    if (e1 == LT_OK) {
        ASSERT(strcmp(k1, k2) == 0);
        ASSERT(lt_objkey_is_safe(k1) && k1[0] != '/');
        ASSERT(segments(k1) == 9);
        ASSERT(lt_objkey_message_prefix(&(lt_objkey_msg_t){f[0], f[1], f[2], f[3]}, pre,
                                        sizeof(pre), err, sizeof(err)) == LT_OK);
        ASSERT(strncmp(k1, pre, strlen(pre)) == 0 && strcmp(k1 + strlen(pre), "message.eml") == 0);

        lt_err_t e3 = lt_objkey_attachment(&(lt_objkey_msg_t){f[0], f[1], f[2], f[3]}, f[4], f[5],
                                           k2, sizeof(k2), err, sizeof(err));
        if (e3 == LT_OK) {
            ASSERT(lt_objkey_is_safe(k2));
            ASSERT(segments(k2) == 11);
            ASSERT(strncmp(k2, pre, strlen(pre)) == 0);
            ASSERT(strncmp(k2 + strlen(pre), "attachments/", 12) == 0);
        } else {
            ASSERT(e3 == LT_ERR_INVALID && !*f[4]); /* only an empty attachment id */
        }

        char uri[LT_OBJKEY_URI_MAX + 1], b[LT_OBJKEY_BUCKET_MAX + 1], k[LT_OBJKEY_MAX + 1];
        ASSERT(lt_objkey_uri_format("lattice-mail", k1, uri, sizeof(uri)) == LT_OK);
        ASSERT(lt_objkey_uri_parse(uri, b, sizeof(b), k, sizeof(k), err, sizeof(err)) == LT_OK);
        ASSERT(strcmp(k, k1) == 0 && strcmp(b, "lattice-mail") == 0);
    } else {
        ASSERT(e1 == LT_ERR_INVALID && (!*f[0] || !*f[1] || !*f[2] || !*f[3]));
    }

    /* The whole input as a URI: anything accepted is safe. */
    char b[LT_OBJKEY_BUCKET_MAX + 1], k[LT_OBJKEY_MAX + 1];
    if (lt_objkey_uri_parse(copy, b, sizeof(b), k, sizeof(k), err, sizeof(err)) == LT_OK) {
        ASSERT(lt_objkey_is_safe(k) && lt_objkey_bucket_valid(b));
        char uri[LT_OBJKEY_URI_MAX + 1];
        ASSERT(lt_objkey_uri_format(b, k, uri, sizeof(uri)) == LT_OK && strcmp(uri, copy) == 0);
    }
    /* And as a key: is_safe agrees with the segment rules. */
    if (lt_objkey_is_safe(copy)) {
        ASSERT(copy[0] != '/' && strstr(copy, "//") == NULL && strncmp(copy, "../", 3) != 0 &&
               strstr(copy, "/../") == NULL && strstr(copy, "/./") == NULL);
    }
    free(copy);
    return 0;
}
