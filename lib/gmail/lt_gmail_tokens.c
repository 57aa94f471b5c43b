#include "lt_gmail_tokens.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "lt_buf.h"

typedef struct {
    uint8_t key[LT_GMAIL_TOKEN_KEY_SIZE];
    char *access; /* NULL: free slot */
    int64_t until_ms;
} entry_t;

struct lt_gmail_tokens_s {
    pthread_mutex_t mu;
    size_t cap;
    entry_t *e;
};

lt_gmail_tokens_t *lt_gmail_tokens_new(size_t capacity)
{
    lt_gmail_tokens_t *t = lt_xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->cap = capacity ? capacity : 1;
    t->e = lt_xcalloc(t->cap, sizeof(*t->e));
    return t;
}

static void clear(entry_t *e)
{
    if (e->access) {
        OPENSSL_cleanse(e->access, strlen(e->access));
        free(e->access);
    }
    memset(e, 0, sizeof(*e));
}

void lt_gmail_tokens_destroy(lt_gmail_tokens_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++)
        clear(&t->e[i]);
    free(t->e);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void lt_gmail_tokens_key(const char *token_url, const char *client_id, const char *refresh_token,
                         const char *user, uint8_t key[LT_GMAIL_TOKEN_KEY_SIZE])
{
    const char *parts[] = {token_url, client_id, refresh_token, user};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        abort(); /* OOM policy */
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        const char *s = parts[i] ? parts[i] : "";
        EVP_DigestUpdate(md, s, strlen(s) + 1); /* the NUL separates the parts */
    }
    unsigned len = 0;
    EVP_DigestFinal_ex(md, key, &len);
    EVP_MD_CTX_free(md);
}

static entry_t *find(lt_gmail_tokens_t *t, const uint8_t *key)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].access && !memcmp(t->e[i].key, key, LT_GMAIL_TOKEN_KEY_SIZE))
            return &t->e[i];
    return NULL;
}

int lt_gmail_tokens_get(lt_gmail_tokens_t *t, const uint8_t key[LT_GMAIL_TOKEN_KEY_SIZE],
                        int64_t now_ms, char *access, int64_t *until_ms)
{
    int rc = -1;
    access[0] = 0;
    pthread_mutex_lock(&t->mu);
    entry_t *e = find(t, key);
    if (e && now_ms < e->until_ms) {
        memcpy(access, e->access, strlen(e->access) + 1);
        *until_ms = e->until_ms;
        rc = 0;
    } else if (e) {
        clear(e); /* expired */
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void lt_gmail_tokens_put(lt_gmail_tokens_t *t, const uint8_t key[LT_GMAIL_TOKEN_KEY_SIZE],
                         const char *access, int64_t until_ms, int64_t now_ms)
{
    size_t len = strlen(access);
    if (!len || len > LT_GMAIL_TOKEN_MAX || until_ms <= now_ms)
        return;
    pthread_mutex_lock(&t->mu);
    entry_t *e = find(t, key);
    if (!e) {
        size_t pick = 0; /* a free slot, else the one that expires soonest */
        for (size_t i = 0; i < t->cap; i++) {
            entry_t *x = &t->e[i];
            if (x->access && now_ms >= x->until_ms)
                clear(x); /* expired: free it on the way */
            if (!x->access) {
                pick = i;
                break;
            }
            if (x->until_ms < t->e[pick].until_ms)
                pick = i;
        }
        e = &t->e[pick];
    }
    clear(e);
    memcpy(e->key, key, LT_GMAIL_TOKEN_KEY_SIZE);
    e->access = lt_xstrdup(access);
    e->until_ms = until_ms;
    pthread_mutex_unlock(&t->mu);
}

void lt_gmail_tokens_drop(lt_gmail_tokens_t *t, const uint8_t key[LT_GMAIL_TOKEN_KEY_SIZE],
                          const char *access)
{
    pthread_mutex_lock(&t->mu);
    entry_t *e = find(t, key);
    if (e && !strcmp(e->access, access))
        clear(e);
    pthread_mutex_unlock(&t->mu);
}

size_t lt_gmail_tokens_count(lt_gmail_tokens_t *t)
{
    size_t n = 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->cap; i++)
        n += t->e[i].access != NULL;
    pthread_mutex_unlock(&t->mu);
    return n;
}
