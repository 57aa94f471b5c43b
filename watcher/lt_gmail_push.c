#include "lt_gmail_push.h"

#include "lt_gmail_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "lt_b64.h"
#include "lt_buf.h"
#include "lt_log.h"

#define JWT_MAX 8192         /* Google's tokens are ~1 KiB */
#define JWT_PART_MAX 4096    /* one decoded part */
#define KEYS_FILE_MAX ((size_t)1 << 20)
#define DATA_MAX 4096        /* decoded message.data */
#define KID_MAX 128

typedef struct {
    char kid[KID_MAX + 1]; /* "" when the source names none (plain PEM) */
    EVP_PKEY *key;
} key_t_;

struct lt_gmail_push_s {
    char *keys_file, *audience, *service_account, *token;
    int skew;
    pthread_mutex_t mu; /* keys, keys_mtime */
    key_t_ *keys;
    size_t nkeys;
    struct timespec keys_mtime;
    off_t keys_size;
    _Atomic int64_t st_accepted, st_unauthorized, st_forbidden, st_malformed;
};

/* --- base64 (standard or URL-safe alphabet, padding optional) ------------ */

static int b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
    while (len && s[len - 1] == '=')
        len--;
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = lt_b64_value((unsigned char)s[i], "+-", "/_");
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= cap)
                return -1;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits >= 6) /* a lone trailing digit */
        return -1;
    *outlen = n;
    return 0;
}

/* --- the envelope ------------------------------------------------------------ */

static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] == 0x7f)
            return 0;
    return 1;
}

/* historyId: a positive decimal (lt_gmail_json_uint64). */
static int get_u64(json_object *v, uint64_t *out)
{
    return lt_gmail_json_uint64(v, out) || !*out ? -1 : 0;
}

static json_object *parse_json(const char *s, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    json_tokener *tok = json_tokener_new_ex(32);
    if (!tok)
        abort(); /* OOM policy */
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    if (o && json_tokener_get_parse_end(tok) != len) {
        /* trailing bytes: only whitespace */
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
            if (!strchr(" \t\r\n", s[i])) {
                json_object_put(o);
                o = NULL;
                break;
            }
    }
    json_tokener_free(tok);
    if (o && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

static lt_err_t copy_str(json_object *o, const char *key, char *out, size_t cap, int required,
                         char *errstr, size_t n)
{
    json_object *v;
    out[0] = 0;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
        if (required)
            return lt_seterr(errstr, n, LT_ERR_INVALID, "push: no \"%s\"", key);
        return LT_OK;
    }
    size_t l = json_object_is_type(v, json_type_string) ? (size_t)json_object_get_string_len(v) : 0;
    const char *s = l ? json_object_get_string(v) : NULL;
    if (!s || l >= cap || !printable(s, l))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "push: \"%s\" is not a string of 1..%zu printable characters", key,
                         cap - 1);
    memcpy(out, s, l);
    out[l] = 0;
    return LT_OK;
}

lt_err_t lt_gmail_push_parse(const char *body, size_t len, lt_gmail_push_note_t *out,
                             char *errstr, size_t n)
{
    memset(out, 0, sizeof(*out));
    if (len > LT_GMAIL_PUSH_BODY_MAX)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "push: body over %zu bytes",
                         LT_GMAIL_PUSH_BODY_MAX);
    lt_err_t err = LT_OK;
    json_object *env = parse_json(body, len), *data = NULL, *msg, *v;
    if (!env) {
        err = lt_seterr(errstr, n, LT_ERR_INVALID, "push: the body is not a JSON object");
        goto out;
    }
    if (!json_object_object_get_ex(env, "message", &msg) ||
        !json_object_is_type(msg, json_type_object)) {
        err = lt_seterr(errstr, n, LT_ERR_INVALID, "push: no \"message\" object");
        goto out;
    }
    if ((err = copy_str(env, "subscription", out->subscription, sizeof(out->subscription), 0,
                        errstr, n)))
        goto out;
    /* Pub/Sub sends both spellings; either will do */
    if ((err = copy_str(msg, "messageId", out->message_id, sizeof(out->message_id), 0, errstr, n)))
        goto out;
    if (!out->message_id[0] &&
        (err = copy_str(msg, "message_id", out->message_id, sizeof(out->message_id), 0, errstr, n)))
        goto out;
    if (!json_object_object_get_ex(msg, "data", &v) || !json_object_is_type(v, json_type_string)) {
        err = lt_seterr(errstr, n, LT_ERR_INVALID, "push: no \"message.data\" string");
        goto out;
    }
    uint8_t raw[DATA_MAX];
    size_t rawlen = 0;
    if (b64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v), raw,
                   sizeof(raw), &rawlen)) {
        err = lt_seterr(errstr, n, LT_ERR_INVALID,
                        "push: \"message.data\" is not base64 of at most %d bytes", DATA_MAX);
        goto out;
    }
    if (!(data = parse_json((const char *)raw, rawlen))) {
        err = lt_seterr(errstr, n, LT_ERR_INVALID, "push: \"message.data\" is not a JSON object");
        goto out;
    }
    if ((err = copy_str(data, "emailAddress", out->email, sizeof(out->email), 1, errstr, n)))
        goto out;
    const char *at = strchr(out->email, '@');
    if (!at || at == out->email || !at[1] || strchr(at + 1, '@')) {
        err = lt_seterr(errstr, n, LT_ERR_INVALID, "push: \"emailAddress\" is not an address");
        goto out;
    }
    if (!json_object_object_get_ex(data, "historyId", &v) || get_u64(v, &out->history_id)) {
        err = lt_seterr(errstr, n, LT_ERR_INVALID, "push: no valid \"historyId\"");
        goto out;
    }
out:
    if (data)
        json_object_put(data);
    if (env)
        json_object_put(env);
    if (err)
        memset(out, 0, sizeof(*out));
    return err;
}

/* --- keys -------------------------------------------------------------------- */

static void keys_free(key_t_ *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        EVP_PKEY_free(k[i].key);
    free(k);
}

static void keys_add(key_t_ **k, size_t *n, const char *kid, EVP_PKEY *key)
{
    if (!key)
        return;
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        return;
    }
    *k = lt_xrealloc(*k, (*n + 1) * sizeof(**k));
    snprintf((*k)[*n].kid, sizeof((*k)[*n].kid), "%s", kid ? kid : "");
    (*k)[*n].key = key;
    (*n)++;
}

static BIGNUM *bn_b64(json_object *jwk, const char *name)
{
    json_object *v;
    if (!json_object_object_get_ex(jwk, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    uint8_t buf[1024];
    size_t l;
    if (b64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v), buf,
                   sizeof(buf), &l) ||
        !l)
        return NULL;
    return BN_bin2bn(buf, (int)l, NULL);
}

static EVP_PKEY *rsa_from_jwk(json_object *jwk)
{
    json_object *v;
    if (!json_object_object_get_ex(jwk, "kty", &v) || !json_object_is_type(v, json_type_string) ||
        strcmp(json_object_get_string(v), "RSA"))
        return NULL;
    BIGNUM *n = bn_b64(jwk, "n"), *e = bn_b64(jwk, "e");
    EVP_PKEY *key = NULL;
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (!n || !e || !b || !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, e) ||
        !(params = OSSL_PARAM_BLD_to_param(b)))
        goto out;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        key = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    BN_free(n);
    BN_free(e);
    return key;
}

/* Every PEM public key or certificate of text (kid for all of them). */
static void keys_from_pem(key_t_ **k, size_t *n, const char *kid, const char *text, size_t len)
{
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    if (!bio)
        abort();
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        if (!PEM_read_bio(bio, &name, &header, &data, &dlen))
            break;
        const unsigned char *p = data;
        if (!strcmp(name, "PUBLIC KEY")) {
            keys_add(k, n, kid, d2i_PUBKEY(NULL, &p, dlen));
        } else if (!strcmp(name, "CERTIFICATE")) {
            X509 *x = d2i_X509(NULL, &p, dlen);
            if (x) {
                keys_add(k, n, kid, X509_get_pubkey(x));
                X509_free(x);
            }
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
    }
    BIO_free(bio);
}

/* A JWKS {"keys":[{kty,kid,n,e}]}, Google's v1 map {"<kid>": "<PEM
 * certificate>"}, or PEM text. */
static lt_err_t keys_load(const char *path, key_t_ **out, size_t *nout, struct stat *st,
                          char *errstr, size_t n)
{
    *out = NULL;
    *nout = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lt_seterr(errstr, n, LT_ERR_INVALID, "push keys %s: %s", path, strerror(errno));
    lt_err_t err = LT_OK;
    char *text = lt_xmalloc(KEYS_FILE_MAX + 1);
    size_t len = fread(text, 1, KEYS_FILE_MAX + 1, f);
    if (fstat(fileno(f), st))
        memset(st, 0, sizeof(*st));
    fclose(f);
    if (len > KEYS_FILE_MAX) {
        err = lt_seterr(errstr, n, LT_ERR_INVALID, "push keys %s: over %zu bytes", path,
                        KEYS_FILE_MAX);
        goto out;
    }
    text[len] = 0;
    key_t_ *k = NULL;
    size_t nk = 0;
    json_object *o = parse_json(text, len), *arr;
    if (o && json_object_object_get_ex(o, "keys", &arr) &&
        json_object_is_type(arr, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            json_object *jwk = json_object_array_get_idx(arr, i), *kid;
            if (!json_object_is_type(jwk, json_type_object))
                continue;
            const char *kids = json_object_object_get_ex(jwk, "kid", &kid) &&
                                       json_object_is_type(kid, json_type_string)
                                   ? json_object_get_string(kid)
                                   : "";
            keys_add(&k, &nk, kids, rsa_from_jwk(jwk));
        }
    } else if (o) {
        json_object_object_foreach(o, kid, pem)
        {
            if (json_object_is_type(pem, json_type_string))
                keys_from_pem(&k, &nk, kid, json_object_get_string(pem),
                              (size_t)json_object_get_string_len(pem));
        }
    } else {
        keys_from_pem(&k, &nk, "", text, len);
    }
    if (o)
        json_object_put(o);
    if (!nk) {
        err = lt_seterr(errstr, n, LT_ERR_INVALID,
                        "push keys %s: no RSA key (expected a JWKS, Google's PEM map or PEM "
                        "public keys / certificates)",
                        path);
        goto out;
    }
    *out = k;
    *nout = nk;
out:
    free(text);
    return err;
}

/* Re-read the key file when it changed (called with mu held). A file that
 * cannot be read now keeps the keys loaded before. */
static void keys_refresh(lt_gmail_push_t *p)
{
    struct stat st;
    if (stat(p->keys_file, &st))
        return;
    if (st.st_mtim.tv_sec == p->keys_mtime.tv_sec &&
        st.st_mtim.tv_nsec == p->keys_mtime.tv_nsec && st.st_size == p->keys_size)
        return;
    key_t_ *k;
    size_t nk;
    char err[300];
    if (keys_load(p->keys_file, &k, &nk, &st, err, sizeof(err))) {
        lt_warn(NULL, "gmail push: %s; keeping the %zu keys loaded before", err, p->nkeys);
        return;
    }
    keys_free(p->keys, p->nkeys);
    p->keys = k;
    p->nkeys = nk;
    p->keys_mtime = st.st_mtim;
    p->keys_size = st.st_size;
    lt_info(NULL, "gmail push: %zu signing keys loaded from %s", nk, p->keys_file);
}

/* --- the handle ---------------------------------------------------------------- */

lt_gmail_push_t *lt_gmail_push_new(const lt_gmail_push_opts_t *o, char *errstr, size_t n)
{
    int has_keys = o->keys_file && *o->keys_file, has_token = o->token && *o->token;
    if (!has_keys && !has_token) {
        lt_seterr(errstr, n, LT_ERR_INVALID,
                  "gmail push: no authentication configured (a keys file for the OIDC token, "
                  "or a shared token)");
        return NULL;
    }
    if (has_keys && (!o->audience || !*o->audience)) {
        lt_seterr(errstr, n, LT_ERR_INVALID, "gmail push: the OIDC check needs an audience");
        return NULL;
    }
    lt_gmail_push_t *p = lt_xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    p->skew = o->clock_skew_s < 0 ? 0 : o->clock_skew_s;
    if (has_keys) {
        p->keys_file = lt_xstrdup(o->keys_file);
        p->audience = lt_xstrdup(o->audience);
        if (o->service_account && *o->service_account)
            p->service_account = lt_xstrdup(o->service_account);
        struct stat st;
        if (keys_load(p->keys_file, &p->keys, &p->nkeys, &st, errstr, n)) {
            lt_gmail_push_destroy(p);
            return NULL;
        }
        p->keys_mtime = st.st_mtim;
        p->keys_size = st.st_size;
    }
    if (has_token)
        p->token = lt_xstrdup(o->token);
    return p;
}

void lt_gmail_push_destroy(lt_gmail_push_t *p)
{
    if (!p)
        return;
    keys_free(p->keys, p->nkeys);
    free(p->keys_file);
    free(p->audience);
    free(p->service_account);
    if (p->token) {
        OPENSSL_cleanse(p->token, strlen(p->token));
        free(p->token);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void lt_gmail_push_stats(lt_gmail_push_t *p, lt_gmail_push_stats_t *out)
{
    out->accepted = atomic_load(&p->st_accepted);
    out->unauthorized = atomic_load(&p->st_unauthorized);
    out->forbidden = atomic_load(&p->st_forbidden);
    out->malformed = atomic_load(&p->st_malformed);
}

__attribute__((format(printf, 4, 5))) static int deny(char *why, size_t n, int status,
                                                      const char *fmt, ...)
{
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return status;
}

static int verify_sig(lt_gmail_push_t *p, const char *kid, const char *signed_part, size_t slen,
                      const uint8_t *sig, size_t siglen)
{
    int ok = 0, tried = 0;
    pthread_mutex_lock(&p->mu);
    keys_refresh(p);
    for (size_t i = 0; i < p->nkeys && !ok; i++) {
        /* a key with a kid signs only tokens naming it; one without any (plain PEM) all */
        if (p->keys[i].kid[0] && (!kid || strcmp(kid, p->keys[i].kid)))
            continue;
        tried = 1;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (!md)
            abort();
        if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, p->keys[i].key) == 1 &&
            EVP_DigestVerify(md, sig, siglen, (const unsigned char *)signed_part, slen) == 1)
            ok = 1;
        EVP_MD_CTX_free(md);
    }
    pthread_mutex_unlock(&p->mu);
    return ok ? 1 : tried ? 0 : -1;
}

/* 0 when the token is good; else the status, reason in why. */
static int check_jwt(lt_gmail_push_t *p, const char *jwt, int64_t now, char *why, size_t wn)
{
    size_t len = strlen(jwt);
    if (len > JWT_MAX)
        return deny(why, wn, 401, "bearer token too long");
    const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.'))
        return deny(why, wn, 401, "bearer token is not a JWT");
    uint8_t head[JWT_PART_MAX], claims[JWT_PART_MAX], sig[1024];
    size_t hl, cl, sl;
    if (b64_decode(jwt, (size_t)(d1 - jwt), head, sizeof(head), &hl) ||
        b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), claims, sizeof(claims), &cl) ||
        b64_decode(d2 + 1, len - (size_t)(d2 + 1 - jwt), sig, sizeof(sig), &sl) || !sl)
        return deny(why, wn, 401, "bearer token: bad base64url");
    int status = 0;
    json_object *h = parse_json((const char *)head, hl), *c = NULL, *v;
    if (!h) {
        status = deny(why, wn, 401, "JWT header is not a JSON object");
        goto out;
    }
    /* RS256 only: "none" and HMAC algorithms must never be accepted */
    if (!json_object_object_get_ex(h, "alg", &v) || !json_object_is_type(v, json_type_string) ||
        strcmp(json_object_get_string(v), "RS256")) {
        status = deny(why, wn, 401, "JWT alg is not RS256");
        goto out;
    }
    const char *kid = json_object_object_get_ex(h, "kid", &v) &&
                              json_object_is_type(v, json_type_string)
                          ? json_object_get_string(v)
                          : NULL;
    int r = verify_sig(p, kid, jwt, (size_t)(d2 - jwt), sig, sl);
    if (r != 1) {
        status = deny(why, wn, 401, r < 0 ? "JWT signed by an unknown key" : "JWT signature invalid");
        goto out;
    }
    if (!(c = parse_json((const char *)claims, cl))) {
        status = deny(why, wn, 401, "JWT claims are not a JSON object");
        goto out;
    }
    if (!json_object_object_get_ex(c, "iss", &v) || !json_object_is_type(v, json_type_string) ||
        (strcmp(json_object_get_string(v), "https://accounts.google.com") &&
         strcmp(json_object_get_string(v), "accounts.google.com"))) {
        status = deny(why, wn, 401, "JWT issuer is not accounts.google.com");
        goto out;
    }
    if (!json_object_object_get_ex(c, "exp", &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) + p->skew <= now) {
        status = deny(why, wn, 401, "JWT expired (or no exp)");
        goto out;
    }
    if (json_object_object_get_ex(c, "iat", &v) &&
        (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) - p->skew > now)) {
        status = deny(why, wn, 401, "JWT issued in the future");
        goto out;
    }
    int aud_ok = 0;
    if (json_object_object_get_ex(c, "aud", &v)) {
        if (json_object_is_type(v, json_type_string))
            aud_ok = !strcmp(json_object_get_string(v), p->audience);
        else if (json_object_is_type(v, json_type_array))
            for (size_t i = 0; i < json_object_array_length(v); i++) {
                json_object *a = json_object_array_get_idx(v, i);
                if (json_object_is_type(a, json_type_string) &&
                    !strcmp(json_object_get_string(a), p->audience))
                    aud_ok = 1;
            }
    }
    if (!aud_ok) {
        status = deny(why, wn, 403, "JWT audience is not ours");
        goto out;
    }
    if (p->service_account) {
        json_object *ev;
        if (!json_object_object_get_ex(c, "email", &v) ||
            !json_object_is_type(v, json_type_string) ||
            strcasecmp(json_object_get_string(v), p->service_account) ||
            !json_object_object_get_ex(c, "email_verified", &ev) || !json_object_get_boolean(ev)) {
            status = deny(why, wn, 403, "JWT is not the push service account's");
            goto out;
        }
    }
out:
    if (h)
        json_object_put(h);
    if (c)
        json_object_put(c);
    OPENSSL_cleanse(sig, sizeof(sig));
    return status;
}

int lt_gmail_push_handle(lt_gmail_push_t *p, const char *authorization, const char *query_token,
                         const char *body, size_t len, int64_t now_s, lt_gmail_push_note_t *out,
                         char *why, size_t why_size)
{
    int status = 0;
    memset(out, 0, sizeof(*out));
    if (why && why_size)
        why[0] = 0;
    if (now_s <= 0)
        now_s = (int64_t)time(NULL);
    if (p->token) {
        if (!query_token || !*query_token) {
            status = deny(why, why_size, 401, "no token in the push URL");
            goto out;
        }
        size_t a = strlen(p->token), b = strlen(query_token);
        if (a != b || CRYPTO_memcmp(p->token, query_token, a)) {
            status = deny(why, why_size, 403, "wrong token in the push URL");
            goto out;
        }
    }
    if (p->keys_file) {
        if (!authorization || strncasecmp(authorization, "Bearer ", 7)) {
            status = deny(why, why_size, 401, "no bearer token");
            goto out;
        }
        const char *jwt = authorization + 7;
        while (*jwt == ' ')
            jwt++;
        if ((status = check_jwt(p, jwt, now_s, why, why_size)))
            goto out;
    }
    if (len > LT_GMAIL_PUSH_BODY_MAX) {
        status = deny(why, why_size, 413, "body over %zu bytes", LT_GMAIL_PUSH_BODY_MAX);
        goto out;
    }
    char err[200];
    if (lt_gmail_push_parse(body, len, out, err, sizeof(err))) {
        status = deny(why, why_size, 400, "%s", err);
        goto out;
    }
    status = 204;
out:
    switch (status) {
    case 204:
        atomic_fetch_add(&p->st_accepted, 1);
        break;
    case 401:
        atomic_fetch_add(&p->st_unauthorized, 1);
        break;
    case 403:
        atomic_fetch_add(&p->st_forbidden, 1);
        break;
    default:
        atomic_fetch_add(&p->st_malformed, 1);
    }
    if (status != 204)
        memset(out, 0, sizeof(*out));
    return status;
}

/* --- the endpoint ------------------------------------------------------------- */

struct lt_gmail_push_server_s {
    lt_gmail_push_t *p;
    lt_gmail_push_server_opts_t o;
    char *path;
    struct MHD_Daemon *d;
    int port;
};

typedef struct {
    lt_buf_t *body;
    int too_big;
} upload_t;

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *text)
{
    size_t len = strlen(text);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    lt_gmail_push_server_t *s = cls;
    upload_t *u = *req_cls;
    if (!u) {
        if (strcmp(url, s->path))
            return answer(c, MHD_HTTP_NOT_FOUND, "not found\n");
        if (strcmp(method, MHD_HTTP_METHOD_POST))
            return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
        u = lt_xcalloc(1, sizeof(*u));
        u->body = lt_buf_new(LT_GMAIL_PUSH_BODY_MAX);
        *req_cls = u;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!u->too_big && lt_buf_append(u->body, upload, *upload_size))
            u->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    lt_gmail_push_note_t note;
    char why[200];
    int status =
        u->too_big
            ? 413
            : lt_gmail_push_handle(
                  s->p, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
                  MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token"),
                  (const char *)lt_buf_data(u->body), lt_buf_len(u->body), 0, &note, why,
                  sizeof(why));
    if (status == 204) {
        if (s->o.fn)
            s->o.fn(s->o.opaque, &note);
        return answer(c, MHD_HTTP_NO_CONTENT, "");
    }
    if (u->too_big)
        snprintf(why, sizeof(why), "body over %zu bytes", LT_GMAIL_PUSH_BODY_MAX);
    lt_warn(NULL, "gmail push: refused with %d: %s", status, why);
    return answer(c, (unsigned)status,
                  status == 401 ? "unauthorized\n" : status == 403 ? "forbidden\n" : "bad request\n");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    upload_t *u = *req_cls;
    if (u) {
        lt_buf_destroy(u->body);
        free(u);
        *req_cls = NULL;
    }
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    lt_warn(NULL, "gmail push http: %s", msg);
}

lt_gmail_push_server_t *lt_gmail_push_server_start(lt_gmail_push_t *p,
                                                   const lt_gmail_push_server_opts_t *o,
                                                   char *errstr, size_t n)
{
    const char *bind_addr = o->bind && *o->bind ? o->bind : "0.0.0.0";
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", o->port);
    int rc = getaddrinfo(bind_addr, ps, &hints, &ai);
    if (rc) {
        lt_seterr(errstr, n, LT_ERR_INVALID, "gmail push bind %s: %s", bind_addr,
                  gai_strerror(rc));
        return NULL;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol), one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 128)) {
        int e = errno;
        lt_seterr(errstr, n, e == EADDRNOTAVAIL || e == EACCES ? LT_ERR_INVALID : LT_ERR_TEMPORARY,
                  "gmail push port %d on %s: %s", o->port, bind_addr, strerror(e));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return NULL;
    }
    freeaddrinfo(ai);
    lt_gmail_push_server_t *s = lt_xcalloc(1, sizeof(*s));
    s->p = p;
    s->o = *o;
    s->path = lt_xstrdup(o->path && *o->path ? o->path : "/gmail/push");
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    s->port = o->port;
    if (!getsockname(fd, (struct sockaddr *)&ss, &sl))
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC |
                                MHD_USE_ERROR_LOG,
                            0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
                            NULL, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)256,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30, MHD_OPTION_END);
    if (!s->d) {
        lt_seterr(errstr, n, LT_ERR_TEMPORARY, "gmail push port %d on %s: the server did not start",
                  o->port, bind_addr);
        close(fd);
        free(s->path);
        free(s);
        return NULL;
    }
    return s;
}

int lt_gmail_push_server_port(const lt_gmail_push_server_t *s)
{
    return s ? s->port : 0;
}

void lt_gmail_push_server_stop(lt_gmail_push_server_t *s)
{
    if (!s)
        return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    MHD_stop_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    free(s->path);
    free(s);
}
