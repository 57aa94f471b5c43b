#include "lt_s3.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lt_log.h"
#include "lt_media_type.h"
#include "lt_objkey.h"

#define ERRBODY_CAP (16 * 1024) /* S3 error documents are small */
#define FILE_CHUNK (1024 * 1024)
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define META_SHA256 "x-amz-meta-lattice-sha256"

struct lt_s3_s {
    CURL *curl;
    char *obj_prefix; /* URL up to the key: ".../bucket/" or "https://bucket.host/" */
    char *bucket_url; /* URL of the bucket itself */
    char *bucket;
    char *access_key_id;
    char *secret;
    char *ca_file;
    char sigv4[96]; /* "aws:amz:<region>:s3" */
    long timeout_s;
    long low_speed_time_s, low_speed_bytes;
    void (*on_stall)(void *, const char *);
    void *stall_opaque;
    void (*on_slowdown)(void *, const char *, int);
    void *slowdown_opaque;
    long slowdown_base_ms;
    int slowed;      /* a SlowDown answer since the last success */
    unsigned jitter; /* state of the backoff's jitter */
    /* the store's clock minus this host's, seconds: learnt from the Date of
     * a RequestTimeTooSkewed refusal, added to the signed time */
    int64_t skew_s;
    /* SigV4 signing key of one day (HMAC chain from the secret), kept so that
     * a request costs one HMAC for its signature */
    char skey_date[9];
    unsigned char skey[32];
};

/* One request and its response. */
typedef struct {
    const char *method;
    /* upload source: memory or file */
    const uint8_t *mem;
    int fd;
    uint64_t up_len;
    uint64_t up_pos;
    int read_errno;
    int meta_header; /* send x-amz-meta-lattice-sha256 */
    const char *range; /* GET: "first-last" (CURLOPT_RANGE), NULL: the whole object */
    /* response */
    long status;
    lt_buf_t *body;    /* 2xx body goes here (may be NULL: discarded) */
    lt_buf_t *errbody; /* non-2xx body (capped, excess dropped) */
    int too_big;
    int have_len;
    uint64_t content_length;
    char etag[LT_S3_ETAG_MAX];
    char meta_sha[LT_S3_SHA256_HEX];
    char code[64]; /* S3 error Code of a refusal */
    time_t server_date; /* the answer's Date, 0 none */
} req_t;

static int valid_region(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
            return 0;
    return 1;
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static void sha256_hex(const unsigned char md[32], char out[LT_S3_SHA256_HEX])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[md[i] >> 4];
        out[2 * i + 1] = hx[md[i] & 15];
    }
    out[64] = 0;
}

static void sha256_mem(const void *data, size_t len, char out[LT_S3_SHA256_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(len ? data : "", len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        fputs("lattice: SHA-256 unavailable\n", stderr);
        abort();
    }
    sha256_hex(md, out);
}

static void hmac256(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n) ||
        n != 32) {
        fputs("lattice: HMAC-SHA-256 unavailable\n", stderr);
        abort();
    }
}

/* AWS Signature Version 4 of one request (no query string; the path as sent,
 * its key already URI-encoded once, lt_s3_encode_key). Fills the Host,
 * x-amz-date and Authorization header lines; content_type and meta_sha
 * (NULL: not sent) are signed with host, x-amz-content-sha256 and
 * x-amz-date. libcurl's CURLOPT_AWS_SIGV4 did the same at about 340,000
 * instructions a request (its canonical strings go through curl_maprintf);
 * this is a few HMACs and one SHA-256 of a short string. */
static lt_err_t sign(lt_s3_t *s3, const char *method, const char *url, const char *payload_sha,
                     const char *content_type, const char *meta_sha, char host_hdr[320],
                     char date_hdr[64], char auth_hdr[512], char *errstr, size_t errstr_size)
{
    const char *auth = strstr(url, "://");
    if (!auth)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3: bad URL");
    auth += 3;
    const char *path = strchr(auth, '/');
    size_t alen = path ? (size_t)(path - auth) : strlen(auth);
    if (!path)
        path = "";
    if (alen == 0 || alen > 255 || strchr(path, '?'))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3: bad URL");
    const char *region = s3->sigv4 + strlen("aws:amz:");
    int rlen = (int)(strlen(region) - strlen(":s3"));

    /* the wall clock (SigV4 dates a request in Unix time), corrected by the
     * store's own if it refused ours (perform()) */
    time_t now = time(NULL) + (time_t)s3->skew_s;
    struct tm tm;
    char amzdate[17], day[9];
    gmtime_r(&now, &tm);
    strftime(amzdate, sizeof(amzdate), "%Y%m%dT%H%M%SZ", &tm);
    memcpy(day, amzdate, 8);
    day[8] = 0;
    snprintf(host_hdr, 320, "Host: %.*s", (int)alen, auth);
    snprintf(date_hdr, 64, "x-amz-date: %s", amzdate);

    lt_buf_t *cr = lt_buf_new((size_t)16 << 10);
    lt_buf_appendf(cr, "%s\n%s\n\n", method, *path ? path : "/");
    if (content_type)
        lt_buf_appendf(cr, "content-type:%s\n", content_type);
    lt_buf_appendf(cr, "host:%.*s\nx-amz-content-sha256:%s\nx-amz-date:%s\n", (int)alen, auth,
                   payload_sha, amzdate);
    if (meta_sha)
        lt_buf_appendf(cr, "%s:%s\n", META_SHA256, meta_sha);
    const char *signed_headers = content_type ? (meta_sha ? "content-type;host;x-amz-content-sha256;"
                                                            "x-amz-date;" META_SHA256
                                                          : "content-type;host;x-amz-content-sha256;"
                                                            "x-amz-date")
                                              : (meta_sha ? "host;x-amz-content-sha256;x-amz-date;" META_SHA256
                                                          : "host;x-amz-content-sha256;x-amz-date");
    lt_buf_appendf(cr, "\n%s\n%s", signed_headers, payload_sha);
    char cr_sha[LT_S3_SHA256_HEX];
    sha256_mem(lt_buf_data(cr), lt_buf_len(cr), cr_sha);
    lt_buf_destroy(cr);

    char scope[160], sts[400];
    snprintf(scope, sizeof(scope), "%s/%.*s/s3/aws4_request", day, rlen, region);
    snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", amzdate, scope, cr_sha);
    if (strcmp(s3->skey_date, day)) { /* a new day: derive the signing key again */
        size_t sl = strlen(s3->secret);
        unsigned char *k = lt_xmalloc(sl + 4), t[32];
        memcpy(k, "AWS4", 4);
        memcpy(k + 4, s3->secret, sl);
        char reg[96];
        snprintf(reg, sizeof(reg), "%.*s", rlen, region);
        hmac256(k, sl + 4, day, t);
        hmac256(t, 32, reg, t);
        hmac256(t, 32, "s3", t);
        hmac256(t, 32, "aws4_request", s3->skey);
        OPENSSL_cleanse(k, sl + 4);
        OPENSSL_cleanse(t, sizeof(t));
        free(k);
        memcpy(s3->skey_date, day, sizeof(day));
    }
    unsigned char sig[32];
    char sighex[LT_S3_SHA256_HEX];
    hmac256(s3->skey, 32, sts, sig);
    sha256_hex(sig, sighex);
    snprintf(auth_hdr, 512,
             "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
             s3->access_key_id, scope, signed_headers, sighex);
    return LT_OK;
}

/* Build endpoint-derived URLs; the endpoint must be scheme://host[:port][/]. */
static lt_err_t parse_endpoint(lt_s3_t *s3, const char *endpoint, int path_style, char *errstr,
                               size_t errstr_size)
{
    lt_err_t err = LT_ERR_INVALID;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL;
    if (!u)
        abort();
    if (curl_url_set(u, CURLUPART_URL, endpoint, 0) != CURLUE_OK) {
        lt_seterr(errstr, errstr_size, err, "S3 endpoint is not a URL");
        goto out;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    curl_url_get(u, CURLUPART_USER, &user, 0);
    if (!scheme || (strcmp(scheme, "http") && strcmp(scheme, "https"))) {
        lt_seterr(errstr, errstr_size, err, "S3 endpoint: scheme must be http or https");
        goto out;
    }
    if (!host || !*host || query || user || (path && strcmp(path, "/") && *path)) {
        lt_seterr(errstr, errstr_size, err,
                  "S3 endpoint must be scheme://host[:port] without path, query or user");
        goto out;
    }
    lt_buf_t *b = lt_buf_new(4096);
    if (path_style) {
        lt_buf_appendf(b, "%s://%s%s%s/%s", scheme, host, port ? ":" : "", port ? port : "",
                       s3->bucket);
        s3->bucket_url = lt_xstrdup(lt_buf_str(b));
        lt_buf_appendf(b, "/");
    } else {
        lt_buf_appendf(b, "%s://%s.%s%s%s/", scheme, s3->bucket, host, port ? ":" : "",
                       port ? port : "");
        s3->bucket_url = lt_xstrdup(lt_buf_str(b));
    }
    s3->obj_prefix = lt_xstrdup(lt_buf_str(b));
    lt_buf_destroy(b);
    err = LT_OK;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(u);
    return err;
}

lt_s3_t *lt_s3_new(const lt_s3_config_t *cfg, char *errstr, size_t errstr_size)
{
    const char *endpoint = cfg->endpoint, *region = cfg->region, *bucket = cfg->bucket;
    const char *access_key_id = cfg->access_key_id, *secret_access_key = cfg->secret_access_key;
    const char *ca_file = cfg->ca_file;
    long timeout_s = cfg->timeout_s;
    if (!endpoint || !region || !bucket || !access_key_id || !secret_access_key) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "S3: missing endpoint, region, bucket or keys");
        return NULL;
    }
    if (!valid_region(region)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3: invalid region \"%s\"", region);
        return NULL;
    }
    if (!lt_objkey_bucket_valid(bucket)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3: invalid bucket name \"%s\"", bucket);
        return NULL;
    }
    if (!*access_key_id || !*secret_access_key || has_ctl(access_key_id) ||
        has_ctl(secret_access_key)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3: empty or malformed credentials");
        return NULL;
    }
    if (timeout_s < 1 || timeout_s > 86400) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3: timeout %ld out of range", timeout_s);
        return NULL;
    }
    lt_s3_t *s3 = lt_xcalloc(1, sizeof(*s3));
    s3->bucket = lt_xstrdup(bucket);
    s3->access_key_id = lt_xstrdup(access_key_id);
    s3->secret = lt_xstrdup(secret_access_key);
    s3->ca_file = ca_file && *ca_file ? lt_xstrdup(ca_file) : NULL;
    s3->timeout_s = timeout_s;
    s3->low_speed_time_s = cfg->low_speed_time_s > 0 ? cfg->low_speed_time_s : 0;
    s3->low_speed_bytes = cfg->low_speed_bytes > 0 ? cfg->low_speed_bytes : 1;
    s3->on_stall = cfg->on_stall;
    s3->stall_opaque = cfg->stall_opaque;
    s3->on_slowdown = cfg->on_slowdown;
    s3->slowdown_opaque = cfg->slowdown_opaque;
    s3->slowdown_base_ms =
        cfg->slowdown_base_ms > 0 ? cfg->slowdown_base_ms : LT_S3_SLOWDOWN_BASE_MS;
    s3->jitter = (unsigned)(uintptr_t)s3 ^ (unsigned)time(NULL);
    snprintf(s3->sigv4, sizeof(s3->sigv4), "aws:amz:%s:s3", region);
    if (parse_endpoint(s3, endpoint, cfg->addressing == LT_S3_PATH_STYLE, errstr, errstr_size) !=
        LT_OK) {
        lt_s3_destroy(s3);
        return NULL;
    }
    s3->curl = curl_easy_init();
    if (!s3->curl) {
        lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "S3: curl_easy_init failed");
        lt_s3_destroy(s3);
        return NULL;
    }
    return s3;
}

lt_s3_t *lt_s3_dup(const lt_s3_t *s3)
{
    lt_s3_t *d = lt_xcalloc(1, sizeof(*d));
    d->obj_prefix = lt_xstrdup(s3->obj_prefix);
    d->bucket_url = lt_xstrdup(s3->bucket_url);
    d->bucket = lt_xstrdup(s3->bucket);
    d->access_key_id = lt_xstrdup(s3->access_key_id);
    d->secret = lt_xstrdup(s3->secret);
    d->ca_file = s3->ca_file ? lt_xstrdup(s3->ca_file) : NULL;
    memcpy(d->sigv4, s3->sigv4, sizeof(d->sigv4));
    d->timeout_s = s3->timeout_s;
    d->low_speed_time_s = s3->low_speed_time_s;
    d->low_speed_bytes = s3->low_speed_bytes;
    d->on_stall = s3->on_stall;
    d->stall_opaque = s3->stall_opaque;
    d->on_slowdown = s3->on_slowdown;
    d->slowdown_opaque = s3->slowdown_opaque;
    d->slowdown_base_ms = s3->slowdown_base_ms;
    d->skew_s = s3->skew_s;
    d->jitter = (unsigned)(uintptr_t)d ^ (unsigned)time(NULL);
    d->curl = curl_easy_init();
    if (!d->curl) {
        lt_s3_destroy(d);
        return NULL;
    }
    return d;
}

void lt_s3_destroy(lt_s3_t *s3)
{
    if (!s3)
        return;
    OPENSSL_cleanse(s3->skey, sizeof(s3->skey));
    if (s3->curl)
        curl_easy_cleanup(s3->curl);
    if (s3->secret) {
        OPENSSL_cleanse(s3->secret, strlen(s3->secret));
        free(s3->secret);
    }
    free(s3->obj_prefix);
    free(s3->bucket_url);
    free(s3->bucket);
    free(s3->access_key_id);
    free(s3->ca_file);
    free(s3);
}

const char *lt_s3_bucket(const lt_s3_t *s3)
{
    return s3->bucket;
}

lt_err_t lt_s3_uri(const lt_s3_t *s3, const char *key, char *out, size_t outsz)
{
    return lt_objkey_uri_format(s3->bucket, key, out, outsz);
}

lt_err_t lt_s3_encode_key(const char *key, char *out, size_t outsz)
{
    static const char hx[] = "0123456789ABCDEF";
    size_t n = 0;
    if (!out || outsz == 0)
        return LT_ERR_INVALID;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        unsigned char c = *p;
        int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
        if (n + (keep ? 1 : 3) >= outsz) {
            out[0] = 0;
            return LT_ERR_TOO_BIG;
        }
        if (keep) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hx[c >> 4];
            out[n++] = hx[c & 15];
        }
    }
    out[n] = 0;
    return LT_OK;
}

/* Text of <tag>...</tag> in an XML error body, entities decoded, non-printable
 * bytes replaced, cut to outsz - 1. "" if absent. */
static void xml_text(const char *body, size_t len, const char *tag, char *out, size_t outsz)
{
    char open[32], close[32];
    size_t n = 0;
    out[0] = 0;
    if (!body || !len)
        return;
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *s = memmem(body, len, open, strlen(open));
    if (!s)
        return;
    s += strlen(open);
    const char *e = memmem(s, len - (size_t)(s - body), close, strlen(close));
    if (!e)
        return;
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&lt;", '<'},    {"&gt;", '>'},   {"&amp;", '&'}, {"&quot;", '"'},
                {"&apos;", '\''}, {"&#39;", '\''}, {"&#34;", '"'}};
    while (s < e && n + 1 < outsz) {
        char c = *s;
        size_t adv = 1;
        if (c == '&') {
            for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t l = strlen(ents[i].ent);
                if ((size_t)(e - s) >= l && !memcmp(s, ents[i].ent, l)) {
                    c = ents[i].c;
                    adv = l;
                    break;
                }
            }
        }
        out[n++] = ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f) ? '?' : c;
        s += adv;
    }
    out[n] = 0;
}

lt_err_t lt_s3_classify(long status, const char *body, size_t body_len, char *errstr,
                        size_t errstr_size)
{
    char code[64], msg[256];
    if (status >= 200 && status <= 299) {
        lt_seterr(errstr, errstr_size, LT_OK, "HTTP %ld", status);
        return LT_OK;
    }
    xml_text(body, body_len, "Code", code, sizeof(code));
    xml_text(body, body_len, "Message", msg, sizeof(msg));
    lt_err_t err;
    /* 499 ClientDisconnected: MinIO's answer to a request whose client it
     * believes gone (a proxy or load balancer that cut the connection
     * midway); the request itself was fine */
    if (!strcmp(code, "SlowDown") || !strcmp(code, "RequestTimeout") ||
        !strcmp(code, "RequestTimeTooSkewed") || !strcmp(code, "InternalError") ||
        !strcmp(code, "ServiceUnavailable") || !strcmp(code, "ClientDisconnected") ||
        status == 408 || status == 429 || status == 499 || status == 307 || status >= 500)
        err = LT_ERR_TEMPORARY;
    else if (!strcmp(code, "EntityTooLarge") || status == 413)
        err = LT_ERR_TOO_BIG;
    else if (status == 404 && strcmp(code, "NoSuchBucket") != 0)
        err = LT_ERR_NOT_FOUND;
    else
        err = LT_ERR_FINAL;
    if (!code[0] && status == 404)
        snprintf(code, sizeof(code), "NotFound");
    return lt_seterr(errstr, errstr_size, err, "HTTP %ld %s%s%s", status,
                     code[0] ? code : "(no error code)", msg[0] ? ": " : "", msg);
}

/* --- libcurl callbacks --- */

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    req_t *r = ud;
    size_t n = size * nmemb;
    char line[512];
    size_t l = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
    memcpy(line, ptr, l);
    line[l] = 0;
    while (l && (line[l - 1] == '\r' || line[l - 1] == '\n' || line[l - 1] == ' '))
        line[--l] = 0;
    if (!strncmp(line, "HTTP/", 5)) {
        /* A new response (100 Continue comes before the final one). */
        const char *sp = strchr(line, ' ');
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->have_len = 0;
        r->etag[0] = 0;
        r->meta_sha[0] = 0;
        r->server_date = 0;
        return n;
    }
    char *colon = strchr(line, ':');
    if (!colon)
        return n;
    *colon = 0;
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!strcasecmp(line, "Content-Length")) {
        char *end;
        errno = 0;
        unsigned long long cl = strtoull(v, &end, 10);
        if (!errno && end != v) {
            r->have_len = 1;
            r->content_length = cl;
            /* Refuse an oversized object before reading a byte of it. */
            if (r->body && r->status >= 200 && r->status <= 299 &&
                cl > lt_buf_cap(r->body) - lt_buf_len(r->body)) {
                r->too_big = 1;
                return 0;
            }
        }
    } else if (!strcasecmp(line, "ETag")) {
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = 0;
            v++;
        }
        snprintf(r->etag, sizeof(r->etag), "%s", v);
    } else if (!strcasecmp(line, "Date")) {
        time_t t = curl_getdate(v, NULL);
        r->server_date = t > 0 ? t : 0;
    } else if (!strcasecmp(line, META_SHA256)) {
        if (strlen(v) == 64 && strspn(v, "0123456789abcdef") == 64)
            memcpy(r->meta_sha, v, LT_S3_SHA256_HEX);
    }
    return n;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    req_t *r = ud;
    size_t n = size * nmemb;
    if (r->status < 200 || r->status > 299) {
        size_t room = ERRBODY_CAP - lt_buf_len(r->errbody);
        lt_buf_append(r->errbody, ptr, n < room ? n : room);
        return n;
    }
    if (!r->body)
        return n;
    if (lt_buf_append(r->body, ptr, n) != LT_OK) {
        r->too_big = 1;
        return 0;
    }
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    req_t *r = ud;
    size_t want = size * nitems;
    uint64_t left = r->up_len - r->up_pos;
    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (r->mem) {
        memcpy(buf, r->mem + r->up_pos, want);
        r->up_pos += want;
        return want;
    }
    ssize_t got;
    do
        got = pread(r->fd, buf, want, (off_t)r->up_pos);
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
        r->read_errno = got < 0 ? errno : EIO; /* a file that shrank is an error too */
        return CURL_READFUNC_ABORT;
    }
    r->up_pos += (uint64_t)got;
    return (size_t)got;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    req_t *r = ud;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->up_len)
        return CURL_SEEKFUNC_CANTSEEK;
    r->up_pos = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* A timeout that came before the request's whole timeout: the low-speed
 * limit gave the request up. */
static int stalled(const lt_s3_t *s3, CURL *c)
{
    curl_off_t us = 0;
    if (s3->low_speed_time_s <= 0 || s3->low_speed_time_s >= s3->timeout_s)
        return 0;
    if (curl_easy_getinfo(c, CURLINFO_TOTAL_TIME_T, &us) != CURLE_OK)
        return 0;
    return us < (curl_off_t)s3->timeout_s * 1000000 - 500000;
}

/* Run one request. url: full URL. payload_sha: hex SHA-256 of the upload
 * (NULL: no upload). what: "PUT key" etc. for errstr. */
static lt_err_t perform_once(lt_s3_t *s3, req_t *r, const char *url, const char *payload_sha,
                             const char *content_type, const char *what, char *errstr,
                             size_t errstr_size)
{
    CURL *c = s3->curl;
    struct curl_slist *hdrs = NULL;
    char hdr[256], cerr[CURL_ERROR_SIZE];
    lt_err_t err;
    int upload = payload_sha != NULL;

    r->errbody = lt_buf_new(ERRBODY_CAP);
    cerr[0] = 0;
    curl_easy_reset(c); /* keeps the connection cache */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, s3->timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, s3->timeout_s < 10 ? s3->timeout_s : 10L);
    if (s3->low_speed_time_s > 0 && s3->low_speed_time_s < s3->timeout_s) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, s3->low_speed_bytes);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, s3->low_speed_time_s);
    }
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (s3->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, s3->ca_file);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);

    /* signed by us (sign()): the payload hash, the date, the host */
    const char *ctype = content_type ? content_type : "application/octet-stream";
    char host_hdr[320], date_hdr[64], auth_hdr[512];
    err = sign(s3, r->method, url, upload ? payload_sha : EMPTY_SHA256, upload ? ctype : NULL,
               upload && r->meta_header ? payload_sha : NULL, host_hdr, date_hdr, auth_hdr, errstr,
               errstr_size);
    if (err) {
        lt_buf_destroy(r->errbody);
        r->errbody = NULL;
        return err;
    }
    hdrs = curl_slist_append(hdrs, host_hdr);
    hdrs = curl_slist_append(hdrs, date_hdr);
    hdrs = curl_slist_append(hdrs, auth_hdr);
    snprintf(hdr, sizeof(hdr), "x-amz-content-sha256: %s", upload ? payload_sha : EMPTY_SHA256);
    hdrs = curl_slist_append(hdrs, hdr);
    if (upload) {
        snprintf(hdr, sizeof(hdr), "Content-Type: %s", ctype);
        hdrs = curl_slist_append(hdrs, hdr);
        if (r->meta_header) {
            snprintf(hdr, sizeof(hdr), "%s: %s", META_SHA256, payload_sha);
            hdrs = curl_slist_append(hdrs, hdr);
        }
        /* Below 1 MiB the body follows the headers at once instead of
         * after the server's "100 Continue" (libcurl 7.x asks for one from
         * 1 KiB on): that wait costs a round trip per PUT, most of a PUT's
         * time with a distant store, and a refused body that small costs
         * less to send than the wait. (The header itself stays, unsigned:
         * a body over 1 MiB still waits up to 1 s for the server's verdict.) */
        curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS,
                         r->up_len < ((uint64_t)1 << 20) ? 0L : 1000L);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->up_len);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, r);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, r);
    } else if (!strcmp(r->method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(r->method, "GET")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        if (r->range)
            curl_easy_setopt(c, CURLOPT_RANGE, r->range);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    }
    if (!hdrs)
        abort();
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

    CURLcode rc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    if (rc != CURLE_OK) {
        if (r->too_big) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                            "S3 %s: object larger than the buffer cap", what);
        } else if (r->read_errno) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "S3 %s: reading the file: %s", what,
                            strerror(r->read_errno));
        } else {
            switch (rc) {
            case CURLE_PEER_FAILED_VERIFICATION:
            case CURLE_SSL_CACERT_BADFILE:
            case CURLE_SSL_CERTPROBLEM:
                err = LT_ERR_FINAL;
                break;
            case CURLE_URL_MALFORMAT:
            case CURLE_UNSUPPORTED_PROTOCOL:
            case CURLE_BAD_FUNCTION_ARGUMENT:
                err = LT_ERR_INVALID;
                break;
            default:
                err = LT_ERR_TEMPORARY;
            }
            if (rc == CURLE_OPERATION_TIMEDOUT && stalled(s3, c)) {
                err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                                "S3 %s: stalled: under %ld byte(s)/s for %ld s "
                                "(LATTICE_S3_LOW_SPEED_TIME_S); the store is frozen or "
                                "unreachable: %s",
                                what, s3->low_speed_bytes, s3->low_speed_time_s, cerr);
                lt_warn(NULL, "S3 %s: stalled (under %ld byte(s)/s for %ld s); given up, retried",
                        what, s3->low_speed_bytes, s3->low_speed_time_s);
                if (s3->on_stall)
                    s3->on_stall(s3->stall_opaque, what);
                goto out;
            }
            err = lt_seterr(errstr, errstr_size, err, "S3 %s: %s%s%s", what, curl_easy_strerror(rc),
                            cerr[0] ? ": " : "", cerr);
        }
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    r->status = status;
    char detail[512];
    err = lt_s3_classify(status, lt_buf_str(r->errbody), lt_buf_len(r->errbody), detail,
                         sizeof(detail));
    if (err != LT_OK) {
        xml_text(lt_buf_str(r->errbody), lt_buf_len(r->errbody), "Code", r->code, sizeof(r->code));
        lt_seterr(errstr, errstr_size, err, "S3 %s: %s", what, detail);
    }
out:
    if (lt_log_enabled(LT_LOG_DEBUG))
        lt_debug(NULL, "S3 %s: %s (HTTP %ld)", what, lt_err_name(err), r->status);
    curl_slist_free_all(hdrs);
    lt_buf_destroy(r->errbody);
    r->errbody = NULL;
    return err;
}

/* The request sent again: its upload from the start, no answer yet. */
static void req_rewind(req_t *r)
{
    r->up_pos = 0;
    r->read_errno = 0;
    r->status = 0;
    r->too_big = 0;
    r->have_len = 0;
    r->content_length = 0;
    r->etag[0] = 0;
    r->meta_sha[0] = 0;
    r->code[0] = 0;
    r->server_date = 0;
    if (r->body)
        lt_buf_reset(r->body);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* perform_once(), and again when the answer says how to do better:
 * - RequestTimeTooSkewed (this host's clock is over 15 min off the store's,
 *   e.g. stepped): once, signed with the time of the refusal's Date (what
 *   the AWS SDKs do); the offset is kept for the handle's next requests and
 *   learnt again when a later refusal shows the clock moved back;
 * - SlowDown (the store sheds load; any 503 likewise): after a backoff, up
 *   to LT_S3_SLOWDOWN_TRIES answers in a row (on_slowdown each time). */
static lt_err_t perform(lt_s3_t *s3, req_t *r, const char *url, const char *payload_sha,
                        const char *content_type, const char *what, char *errstr,
                        size_t errstr_size)
{
    int skew_retried = 0, slow = 0;
    for (;;) {
        lt_err_t err =
            perform_once(s3, r, url, payload_sha, content_type, what, errstr, errstr_size);
        if (err == LT_ERR_TEMPORARY && !skew_retried && r->server_date &&
            !strcmp(r->code, "RequestTimeTooSkewed")) {
            int64_t skew = (int64_t)r->server_date - (int64_t)time(NULL);
            lt_warn(NULL,
                    "S3 %s: refused, RequestTimeTooSkewed: this host's clock is %+lld s off the "
                    "store's (its Date; positive: ahead); requests are signed with the store's "
                    "time",
                    what, -(long long)skew);
            s3->skew_s = skew;
            skew_retried = 1;
            req_rewind(r);
            continue;
        }
        if (err == LT_ERR_TEMPORARY && (r->status == 503 || !strcmp(r->code, "SlowDown"))) {
            s3->slowed = 1;
            if (s3->on_slowdown)
                s3->on_slowdown(s3->slowdown_opaque, what, 1);
            if (++slow >= LT_S3_SLOWDOWN_TRIES) {
                size_t l = errstr ? strlen(errstr) : 0;
                if (errstr && l + 1 < errstr_size)
                    snprintf(errstr + l, errstr_size - l, " (%d answers in a row)", slow);
                return err;
            }
            int64_t ms = (int64_t)s3->slowdown_base_ms << (slow - 1);
            if (ms > (int64_t)s3->slowdown_base_ms * 32)
                ms = (int64_t)s3->slowdown_base_ms * 32;
            ms = ms / 2 + (int64_t)(rand_r(&s3->jitter) % (unsigned)(ms / 2 + 1));
            lt_debug(NULL, "S3 %s: %s; sent again in %lld ms", what, errstr, (long long)ms);
            sleep_ms(ms);
            req_rewind(r);
            continue;
        }
        if (err == LT_OK && s3->slowed) {
            s3->slowed = 0;
            if (s3->on_slowdown)
                s3->on_slowdown(s3->slowdown_opaque, what, 0);
        }
        return err;
    }
}

static lt_err_t object_url(lt_s3_t *s3, const char *key, lt_buf_t *url, char *errstr,
                           size_t errstr_size)
{
    if (!lt_objkey_is_safe(key))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3: unsafe or empty object key");
    size_t n = 3 * strlen(key) + 1;
    char *enc = lt_xmalloc(n);
    lt_s3_encode_key(key, enc, n);
    lt_buf_appendf(url, "%s%s", s3->obj_prefix, enc);
    free(enc);
    return LT_OK;
}

static void req_init(req_t *r, const char *method)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->fd = -1;
}

lt_err_t lt_s3_put(lt_s3_t *s3, const lt_s3_object_t *obj, const void *data, size_t len,
                   char sha256_hex_out[LT_S3_SHA256_HEX], char *errstr, size_t errstr_size)
{
    const char *key = obj->key, *content_type = obj->content_type;
    lt_buf_t *url = lt_buf_new(8192);
    char what[64 + LT_OBJKEY_MAX], sha[LT_S3_SHA256_HEX];
    req_t r;
    lt_err_t err;
    snprintf(what, sizeof(what), "PUT %s", key ? key : "(null)");
    /* a declared type that is not a bounded media type is stored as
     * application/octet-stream: never an error that repeats for a message */
    content_type = lt_media_type_safe(content_type);
    if ((err = object_url(s3, key, url, errstr, errstr_size)))
        goto out;
    if (!data && len) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3 %s: no data", what);
        goto out;
    }
    if ((uint64_t)len > LT_S3_PUT_MAX) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG, "S3 %s: over 5 GiB", what);
        goto out;
    }
    sha256_mem(data, len, sha);
    req_init(&r, "PUT");
    r.mem = len ? data : (const uint8_t *)"";
    r.up_len = len;
    r.meta_header = 1;
    err = perform(s3, &r, lt_buf_str(url), sha, content_type, what, errstr, errstr_size);
    if (err == LT_OK && sha256_hex_out)
        memcpy(sha256_hex_out, sha, LT_S3_SHA256_HEX);
out:
    lt_buf_destroy(url);
    return err;
}

lt_err_t lt_s3_put_file(lt_s3_t *s3, const lt_s3_object_t *obj, int fd,
                        char sha256_hex_out[LT_S3_SHA256_HEX], uint64_t *size_out, char *errstr,
                        size_t errstr_size)
{
    const char *key = obj->key, *content_type = obj->content_type;
    lt_buf_t *url = lt_buf_new(8192);
    char what[64 + LT_OBJKEY_MAX], sha[LT_S3_SHA256_HEX];
    unsigned char *chunk = NULL;
    EVP_MD_CTX *md = NULL;
    req_t r;
    lt_err_t err;
    struct stat st;
    snprintf(what, sizeof(what), "PUT %s", key ? key : "(null)");
    /* a declared type that is not a bounded media type is stored as
     * application/octet-stream: never an error that repeats for a message */
    content_type = lt_media_type_safe(content_type);
    if ((err = object_url(s3, key, url, errstr, errstr_size)))
        goto out;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3 %s: not a regular file", what);
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size > LT_S3_PUT_MAX) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG, "S3 %s: over 5 GiB", what);
        goto out;
    }

    /* Pass 1: hash (the hash is signed, so it must be known before sending). */
    chunk = lt_xmalloc(FILE_CHUNK);
    md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        abort();
    for (uint64_t pos = 0; pos < size;) {
        size_t want = size - pos < FILE_CHUNK ? (size_t)(size - pos) : FILE_CHUNK;
        ssize_t got = pread(fd, chunk, want, (off_t)pos);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "S3 %s: reading the file: %s", what,
                            got < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        EVP_DigestUpdate(md, chunk, (size_t)got);
        pos += (uint64_t)got;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (!EVP_DigestFinal_ex(md, digest, &dlen) || dlen != 32)
        abort();
    sha256_hex(digest, sha);

    /* Pass 2: stream. */
    req_init(&r, "PUT");
    r.fd = fd;
    r.up_len = size;
    r.meta_header = 1;
    err = perform(s3, &r, lt_buf_str(url), sha, content_type, what, errstr, errstr_size);
    if (err == LT_OK) {
        if (sha256_hex_out)
            memcpy(sha256_hex_out, sha, LT_S3_SHA256_HEX);
        if (size_out)
            *size_out = size;
    }
out:
    EVP_MD_CTX_free(md);
    free(chunk);
    lt_buf_destroy(url);
    return err;
}

lt_err_t lt_s3_get(lt_s3_t *s3, const char *key, lt_buf_t *out, char *errstr, size_t errstr_size)
{
    lt_buf_t *url = lt_buf_new(8192);
    char what[64 + LT_OBJKEY_MAX];
    req_t r;
    lt_err_t err;
    snprintf(what, sizeof(what), "GET %s", key ? key : "(null)");
    if (!out) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3 %s: no output buffer", what);
        goto out;
    }
    lt_buf_reset(out);
    if ((err = object_url(s3, key, url, errstr, errstr_size)))
        goto out;
    req_init(&r, "GET");
    r.body = out;
    err = perform(s3, &r, lt_buf_str(url), NULL, NULL, what, errstr, errstr_size);
    if (err != LT_OK)
        lt_buf_reset(out);
out:
    lt_buf_destroy(url);
    return err;
}

lt_err_t lt_s3_get_range(lt_s3_t *s3, const char *key, uint64_t offset, uint64_t length,
                         lt_buf_t *out, char *errstr, size_t errstr_size)
{
    lt_buf_t *url = lt_buf_new(8192);
    char what[96 + LT_OBJKEY_MAX], range[48];
    req_t r;
    lt_err_t err;
    snprintf(what, sizeof(what), "GET %s bytes %llu+%llu", key ? key : "(null)",
             (unsigned long long)offset, (unsigned long long)length);
    if (!out || offset > UINT64_MAX - length) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "S3 %s: bad arguments", what);
        goto out;
    }
    lt_buf_reset(out);
    if ((err = object_url(s3, key, url, errstr, errstr_size)) || length == 0)
        goto out; /* nothing to read */
    if (length > lt_buf_cap(out)) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                        "S3 %s: range larger than the buffer cap", what);
        goto out;
    }
    snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)offset,
             (unsigned long long)(offset + length - 1));
    req_init(&r, "GET");
    r.body = out;
    r.range = range;
    err = perform(s3, &r, lt_buf_str(url), NULL, NULL, what, errstr, errstr_size);
    /* 206 with exactly the range; a 200 (range ignored) or a short answer is refused */
    if (err == LT_OK && (r.status != 206 || lt_buf_len(out) != length))
        err = lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                        "S3 %s: HTTP %ld with %zu bytes, not the range", what, r.status,
                        lt_buf_len(out));
    if (err != LT_OK)
        lt_buf_reset(out);
out:
    lt_buf_destroy(url);
    return err;
}

lt_err_t lt_s3_head(lt_s3_t *s3, const char *key, uint64_t *size_out, char etag_out[LT_S3_ETAG_MAX],
                    char sha256_hex_out[LT_S3_SHA256_HEX], char *errstr, size_t errstr_size)
{
    lt_buf_t *url = lt_buf_new(8192);
    char what[64 + LT_OBJKEY_MAX];
    req_t r;
    lt_err_t err;
    snprintf(what, sizeof(what), "HEAD %s", key ? key : "(null)");
    if ((err = object_url(s3, key, url, errstr, errstr_size)))
        goto out;
    req_init(&r, "HEAD");
    err = perform(s3, &r, lt_buf_str(url), NULL, NULL, what, errstr, errstr_size);
    if (err == LT_OK) {
        if (size_out)
            *size_out = r.have_len ? r.content_length : 0;
        if (etag_out)
            snprintf(etag_out, LT_S3_ETAG_MAX, "%s", r.etag);
        if (sha256_hex_out)
            snprintf(sha256_hex_out, LT_S3_SHA256_HEX, "%s", r.meta_sha);
    }
out:
    lt_buf_destroy(url);
    return err;
}

lt_err_t lt_s3_delete(lt_s3_t *s3, const char *key, char *errstr, size_t errstr_size)
{
    lt_buf_t *url = lt_buf_new(8192);
    char what[64 + LT_OBJKEY_MAX];
    req_t r;
    lt_err_t err;
    snprintf(what, sizeof(what), "DELETE %s", key ? key : "(null)");
    if ((err = object_url(s3, key, url, errstr, errstr_size)))
        goto out;
    req_init(&r, "DELETE");
    err = perform(s3, &r, lt_buf_str(url), NULL, NULL, what, errstr, errstr_size);
    if (err == LT_ERR_NOT_FOUND)
        err = LT_OK;
out:
    lt_buf_destroy(url);
    return err;
}

lt_err_t lt_s3_ensure_bucket(lt_s3_t *s3, char *errstr, size_t errstr_size)
{
    char what[128];
    req_t r;
    snprintf(what, sizeof(what), "HEAD bucket %s", s3->bucket);
    req_init(&r, "HEAD");
    lt_err_t err = perform(s3, &r, s3->bucket_url, NULL, NULL, what, errstr, errstr_size);
    if (err != LT_ERR_NOT_FOUND)
        return err;

    /* Outside us-east-1 S3 wants the region in the body. */
    const char *region = s3->sigv4 + strlen("aws:amz:");
    char body[256];
    size_t rlen = strlen(region) - strlen(":s3");
    if (rlen == strlen("us-east-1") && !strncmp(region, "us-east-1", rlen))
        body[0] = 0;
    else
        snprintf(body, sizeof(body),
                 "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                 "<LocationConstraint>%.*s</LocationConstraint></CreateBucketConfiguration>",
                 (int)rlen, region);
    char sha[LT_S3_SHA256_HEX];
    sha256_mem(body, strlen(body), sha);
    snprintf(what, sizeof(what), "PUT bucket %s", s3->bucket);
    req_init(&r, "PUT");
    r.mem = (const uint8_t *)body;
    r.up_len = strlen(body);
    err = perform(s3, &r, s3->bucket_url, sha, body[0] ? "application/xml" : NULL, what, errstr,
                  errstr_size);
    if (err == LT_ERR_FINAL && r.status == 409 && !strcmp(r.code, "BucketAlreadyOwnedByYou"))
        err = LT_OK; /* created meanwhile (BucketAlreadyOwnedByYou) */
    return err;
}
