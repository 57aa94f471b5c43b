#include "lt_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lt_buf_s {
    uint8_t *data;
    size_t len;
    size_t alloc;
    size_t cap;
    int secret; /* lt_buf_new_secret: wipe what is freed or reset */
};

void *lt_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fputs("lattice: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *lt_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fputs("lattice: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *lt_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("lattice: out of memory\n", stderr);
        abort();
    }
    return q;
}

char *lt_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = lt_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

lt_buf_t *lt_buf_new(size_t cap)
{
    lt_buf_t *b = lt_xcalloc(1, sizeof(*b));
    b->cap = cap;
    return b;
}

lt_buf_t *lt_buf_new_secret(size_t cap)
{
    lt_buf_t *b = lt_buf_new(cap);
    b->secret = 1;
    return b;
}

void lt_buf_wipe(lt_buf_t *b)
{
    if (b->data)
        explicit_bzero(b->data, b->alloc);
    b->len = 0;
}

void lt_buf_destroy(lt_buf_t *b)
{
    if (!b)
        return;
    if (b->secret)
        lt_buf_wipe(b);
    free(b->data);
    free(b);
}

static lt_err_t grow(lt_buf_t *b, size_t need)
{
    if (need > b->cap)
        return LT_ERR_TOO_BIG;
    if (need + 1 <= b->alloc)
        return LT_OK;
    size_t n = b->alloc ? b->alloc : 256;
    while (n < need + 1)
        n = n > SIZE_MAX / 2 ? need + 1 : n * 2;
    if (b->secret && b->data) { /* realloc would free the old copy as it is */
        uint8_t *d = lt_xmalloc(n);
        memcpy(d, b->data, b->len + 1);
        explicit_bzero(b->data, b->alloc);
        free(b->data);
        b->data = d;
    } else {
        b->data = lt_xrealloc(b->data, n);
    }
    b->alloc = n;
    return LT_OK;
}

lt_err_t lt_buf_append(lt_buf_t *b, const void *data, size_t len)
{
    if (len > b->cap - b->len)
        return LT_ERR_TOO_BIG;
    lt_err_t err = grow(b, b->len + len);
    if (err)
        return err;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return LT_OK;
}

lt_err_t lt_buf_appendf(lt_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return LT_ERR_INVALID;
    if ((size_t)n > b->cap - b->len)
        return LT_ERR_TOO_BIG;
    lt_err_t err = grow(b, b->len + (size_t)n);
    if (err)
        return err;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return LT_OK;
}

void lt_buf_reset(lt_buf_t *b)
{
    if (b->secret)
        lt_buf_wipe(b);
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

void lt_buf_truncate(lt_buf_t *b, size_t len)
{
    if (len >= b->len)
        return;
    b->len = len;
    b->data[len] = 0;
}

void lt_buf_consume(lt_buf_t *b, size_t n)
{
    if (n >= b->len) {
        lt_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    if (b->secret)
        explicit_bzero(b->data + b->len - n, n);
    b->len -= n;
    b->data[b->len] = 0;
}

const uint8_t *lt_buf_data(const lt_buf_t *b)
{
    return b->data ? b->data : (const uint8_t *)"";
}

const char *lt_buf_str(const lt_buf_t *b)
{
    return b->data ? (const char *)b->data : "";
}

size_t lt_buf_len(const lt_buf_t *b)
{
    return b->len;
}

size_t lt_buf_cap(const lt_buf_t *b)
{
    return b->cap;
}

uint8_t *lt_buf_steal(lt_buf_t *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len)
        *len = b->len;
    if (!p)
        p = lt_xcalloc(1, 1);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}
