/* Fuzz lt_s3's signed requests: hostile keys, media types, regions and
 * credentials go through lt_s3_new() and lt_s3_put/get/head/delete() to a
 * server thread on 127.0.0.1, which checks each request's AWS Signature V4
 * the way S3 does (canonical request rebuilt from what arrived: method, the
 * path decoded and URI-encoded again, empty query, the signed headers,
 * x-amz-content-sha256) and answers with bytes of the input (status line,
 * headers, XML error body).
 *
 * lt_s3 builds the request (the key's URI-encoding, the URL, the headers
 * and their values, the payload hash) and libcurl's CURLOPT_AWS_SIGV4 signs
 * it: the check covers both, as the server sees them.
 *
 * Input: byte 0 picks the call (PUT/GET/HEAD/DELETE); then NUL-separated
 * fields: key, content type, region, access key id, secret, and the raw
 * HTTP response (the rest, NULs included). Missing fields get plain
 * defaults. Path-style addressing (the server is 127.0.0.1).
 * Invariants:
 *  - never a crash, leak or sanitizer report;
 *  - lt_s3_new() refuses what it must (a bad region, control characters in
 *    credentials), else every request that reaches the server is signed
 *    correctly for the configured secret, credential scope and region (for
 *    an access key id the header syntax can carry), its
 *    path is the canonical URI-encoding of the key (S3 computes the
 *    signature over that), and a PUT's x-amz-content-sha256 is the SHA-256
 *    of the body received (also in x-amz-meta-lattice-sha256);
 *  - a request for an unsafe key never reaches the server (LT_ERR_INVALID);
 *  - results are among the codes lt_s3.h lists. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lt_buf.h"
#include "lt_objkey.h"
#include "lt_s3.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int initialized; /* curl_global_init() done (a harness, not a module) */

static void teardown(void)
{
    curl_global_cleanup();
}

/* A listener of one input's own: a connection its client gave up on (a
 * timeout on a starved machine, then a retry) can wait in the accept queue
 * after the input is done, with a full request of that input's key and
 * secret in it. A listener shared by all inputs hands it to the next
 * input's server, which checks it against the wrong credentials. Closing
 * the listener with the input resets such connections. */
static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    ASSERT(listen(fd, 16) == 0);
    socklen_t al = sizeof(a);
    ASSERT(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

typedef struct {
    const char *secret, *akid, *region, *key, *method;
    const uint8_t *resp;
    size_t resp_len;
    int listener;
    int requests; /* requests that reached the server */
    int cut;      /* requests whose body ended early: the client gave up */
    int stop;
} server_t;

static void hex(const unsigned char *d, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = 0;
}

static void sha256_hex(const void *d, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int ml = 0;
    ASSERT(EVP_Digest(n ? d : "", n, md, &ml, EVP_sha256(), NULL) && ml == 32);
    hex(md, 32, out);
}

static void hmac(const void *key, size_t kl, const char *msg, unsigned char out[32])
{
    unsigned int ol = 0;
    ASSERT(HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)msg, strlen(msg), out, &ol) &&
           ol == 32);
}

/* The value of header name (lower-case) in head, trimmed, inner runs of
 * spaces as one; NULL when absent. */
static char *header(const char *head, const char *name)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] && !(p[2] == '\r' && p[3] == '\n')) {
        const char *line = p + 2, *eol = strstr(line, "\r\n");
        ASSERT(eol);
        if ((size_t)(eol - line) > nl && line[nl] == ':' && !strncasecmp(line, name, nl)) {
            const char *v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            char *out = malloc((size_t)(e - v) + 1);
            size_t o = 0;
            for (const char *q = v; q < e; q++)
                if (!(*q == ' ' && o && out[o - 1] == ' '))
                    out[o++] = *q;
            out[o] = 0;
            return out;
        }
        p = eol;
    }
    return NULL;
}

static int unhex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* Check one request as S3 does; returns the body length to read. */
static void verify(server_t *sv, const char *head, const uint8_t *body, size_t blen)
{
    /* An access key id with ',', '/', '=', space or a non-ASCII byte cannot
     * be told apart from the header's syntax (Credential=<id>/<scope>,
     * SignedHeaders=...): S3 refuses such a header as malformed, lt_s3 then
     * reports the refusal (FINAL). Only the path is checked for it. */
    int parsable = strcspn(sv->akid, ",/= ") == strlen(sv->akid);
    for (const char *q = sv->akid; *q; q++)
        parsable &= (unsigned char)*q < 0x7f;
    /* Request line: METHOD SP path SP HTTP/1.1 */
    const char *sp1 = strchr(head, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    ASSERT(sp1 && sp2);
    ASSERT((size_t)(sp1 - head) == strlen(sv->method) &&
           !strncmp(head, sv->method, strlen(sv->method)));
    const char *path = sp1 + 1;
    size_t plen = (size_t)(sp2 - path);
    ASSERT(!memchr(path, '?', plen)); /* lt_s3 sends no query */
    /* Decode the path, then URI-encode it the SigV4 way: it must come out
     * unchanged (the canonical URI S3 signs is what we sent). */
    lt_buf_t *dec = lt_buf_new(plen + 1);
    for (size_t i = 0; i < plen; i++) {
        if (path[i] == '%') {
            ASSERT(i + 2 < plen && unhex(path[i + 1]) >= 0 && unhex(path[i + 2]) >= 0);
            char c = (char)(unhex(path[i + 1]) * 16 + unhex(path[i + 2]));
            lt_buf_append(dec, &c, 1);
            i += 2;
        } else {
            lt_buf_append(dec, &path[i], 1);
        }
    }
    char *canon = malloc(3 * lt_buf_len(dec) + 1);
    ASSERT(lt_s3_encode_key(lt_buf_str(dec), canon, 3 * lt_buf_len(dec) + 1) == LT_OK);
    ASSERT(strlen(canon) == plen && !memcmp(canon, path, plen));
    /* ... and it names the object: "/bucket/" + key. */
    ASSERT(!strncmp(lt_buf_str(dec), "/fuzz-bucket/", 13) &&
           !strcmp(lt_buf_str(dec) + 13, sv->key));
    lt_buf_destroy(dec);

    char *auth = header(head, "authorization"), *date = header(head, "x-amz-date"),
         *psha = header(head, "x-amz-content-sha256");
    ASSERT(auth && date && psha && strlen(date) == 16);
    if (!parsable) {
        free(auth);
        free(date);
        free(psha);
        free(canon);
        return;
    }
    /* AWS4-HMAC-SHA256 Credential=<akid>/<date>/<region>/s3/aws4_request,
     * SignedHeaders=a;b;c, Signature=<hex> */
    ASSERT(!strncmp(auth, "AWS4-HMAC-SHA256 Credential=", 28));
    char *cred = auth + 28, *sh = strstr(cred, ", SignedHeaders="),
         *sig = strstr(cred, ", Signature=");
    ASSERT(sh && sig && sig > sh);
    *sh = 0;
    sh += 16;
    *sig = 0;
    sig += 12;
    char scope[160];
    int sl = snprintf(scope, sizeof(scope), "/%.8s/%s/s3/aws4_request", date, sv->region);
    size_t cl = strlen(cred);
    ASSERT(cl >= (size_t)sl && !strcmp(cred + cl - (size_t)sl, scope));
    ASSERT(cl - (size_t)sl == strlen(sv->akid) && !strncmp(cred, sv->akid, cl - (size_t)sl));

    lt_buf_t *cr = lt_buf_new(1 << 20);
    lt_buf_appendf(cr, "%s\n%.*s\n\n", sv->method, (int)plen, path);
    int has_host = 0, has_sha = 0;
    char *names = strdup(sh), *save = NULL;
    for (char *n = strtok_r(names, ";", &save); n; n = strtok_r(NULL, ";", &save)) {
        char *v = header(head, n);
        ASSERT(v);
        has_host |= !strcmp(n, "host");
        has_sha |= !strcmp(n, "x-amz-content-sha256");
        lt_buf_appendf(cr, "%s:%s\n", n, v);
        free(v);
    }
    free(names);
    ASSERT(has_host && has_sha);
    lt_buf_appendf(cr, "\n%s\n%s", sh, psha);
    char crh[65];
    sha256_hex(lt_buf_data(cr), lt_buf_len(cr), crh);
    lt_buf_t *sts = lt_buf_new(4096);
    lt_buf_appendf(sts, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/s3/aws4_request\n%s", date, date, sv->region,
                   crh);
    char *k0 = malloc(strlen(sv->secret) + 5);
    sprintf(k0, "AWS4%s", sv->secret);
    unsigned char k1[32], k2[32], k3[32], k4[32], s[32];
    char d8[9];
    snprintf(d8, sizeof(d8), "%.8s", date);
    hmac(k0, strlen(k0), d8, k1);
    hmac(k1, 32, sv->region, k2);
    hmac(k2, 32, "s3", k3);
    hmac(k3, 32, "aws4_request", k4);
    hmac(k4, 32, lt_buf_str(sts), s);
    char want[65];
    hex(s, 32, want);
    ASSERT(!strcmp(sig, want)); /* S3 would accept the signature */
    if (!strcmp(sv->method, "PUT")) {
        char bh[65];
        sha256_hex(body, blen, bh);
        ASSERT(!strcmp(psha, bh));
        char *meta = header(head, "x-amz-meta-lattice-sha256");
        ASSERT(meta && !strcmp(meta, bh));
        free(meta);
    }
    free(k0);
    lt_buf_destroy(sts);
    lt_buf_destroy(cr);
    free(auth);
    free(date);
    free(psha);
    free(canon);
}

static void serve_one(server_t *sv, int fd)
{
    lt_buf_t *in = lt_buf_new(1 << 22);
    char buf[8192];
    const char *eoh = NULL;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            goto out;
        lt_buf_append(in, buf, (size_t)n);
        eoh = strstr(lt_buf_str(in), "\r\n\r\n");
        if (eoh)
            break;
    }
    size_t hl = (size_t)(eoh - lt_buf_str(in)) + 4;
    char *head = strndup(lt_buf_str(in), hl);
    char *clen = header(head, "content-length");
    size_t blen = clen ? strtoull(clen, NULL, 10) : 0;
    free(clen);
    char *expect = header(head, "expect");
    if (expect && !strcasecmp(expect, "100-continue") && lt_buf_len(in) - hl < blen)
        send(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, MSG_NOSIGNAL);
    free(expect);
    while (lt_buf_len(in) - hl < blen) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        lt_buf_append(in, buf, (size_t)n);
    }
    if (lt_buf_len(in) - hl < blen) {
        /* the client closed before its body was all here: it timed out
         * (checked after the call: the result must say TEMPORARY) */
        sv->cut++;
        free(head);
        goto out;
    }
    ASSERT(lt_buf_len(in) - hl == blen);
    sv->requests++;
    verify(sv, head, lt_buf_data(in) + hl, blen);
    free(head);
    if (sv->resp_len) {
        send(fd, sv->resp, sv->resp_len, MSG_NOSIGNAL);
    } else {
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: \"e\"\r\n\r\n";
        send(fd, ok, sizeof(ok) - 1, MSG_NOSIGNAL);
    }
    shutdown(fd, SHUT_WR); /* one request per connection (then closed) */
out:
    lt_buf_destroy(in);
}

static void *server_main(void *arg)
{
    server_t *sv = arg;
    for (;;) {
        int fd = accept(sv->listener, NULL, NULL);
        if (fd < 0)
            continue;
        if (__atomic_load_n(&sv->stop, __ATOMIC_ACQUIRE)) { /* the harness's wake-up call */
            close(fd);
            break;
        }
        serve_one(sv, fd);
        close(fd);
    }
    return NULL;
}

/* The n-th NUL-separated field of the input, or def. */
static char *field(const uint8_t *d, size_t n, int idx, const char *def, size_t *len)
{
    size_t start = 0;
    for (int i = 0; i < idx; i++) {
        const uint8_t *z = memchr(d + start, 0, n - start);
        if (!z) {
            if (len)
                *len = strlen(def);
            return strdup(def);
        }
        start = (size_t)(z - d) + 1;
    }
    const uint8_t *z = idx == 5 ? NULL : memchr(d + start, 0, n - start);
    size_t l = z ? (size_t)(z - d) - start : n - start;
    char *s = malloc(l + 1);
    memcpy(s, d + start, l);
    s[l] = 0;
    if (len)
        *len = l;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!initialized) {
        ASSERT(curl_global_init(CURL_GLOBAL_DEFAULT) == 0);
        atexit(teardown);
        initialized = 1;
    }
    if (size < 1)
        return 0;
    static const char *const methods[] = {"PUT", "GET", "HEAD", "DELETE"};
    const char *method = methods[data[0] & 3];
    size_t resp_len = 0;
    char *key = field(data + 1, size - 1, 0, "a/b.eml", NULL),
         *ctype = field(data + 1, size - 1, 1, "message/rfc822", NULL),
         *region = field(data + 1, size - 1, 2, "us-east-1", NULL),
         *akid = field(data + 1, size - 1, 3, "AKIAFUZZ", NULL),
         *secret = field(data + 1, size - 1, 4, "fuzz-secret", NULL),
         *resp = field(data + 1, size - 1, 5, "", &resp_len);
    int port;
    int listener = listen_any(&port);
    char endpoint[64];
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", port);
    char err[512] = ""; /* lt_s3 writes it on errors only */
    lt_s3_config_t cfg = {.endpoint = endpoint,
                          .region = region,
                          .bucket = "fuzz-bucket",
                          .access_key_id = akid,
                          .secret_access_key = secret,
                          .addressing = LT_S3_PATH_STYLE,
                          .timeout_s = 5,
                          .low_speed_time_s = 3,
                          /* 503 answers are sent again 7 times: 1 ms
                           * doubling, not the 25 s of the default */
                          .slowdown_base_ms = 1};
    lt_s3_t *s3 = lt_s3_new(&cfg, err, sizeof(err));
    if (!s3) {
        ASSERT(err[0]);
        goto out;
    }
    server_t sv = {.secret = secret,
                   .akid = akid,
                   .region = region,
                   .key = key,
                   .method = method,
                   .resp = (const uint8_t *)resp,
                   .resp_len = resp_len,
                   .listener = listener};
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, server_main, &sv) == 0);
    lt_err_t e;
    err[0] = 0;
    if (!strcmp(method, "PUT")) {
        lt_s3_object_t obj = {key, ctype};
        char sha[LT_S3_SHA256_HEX];
        e = lt_s3_put(s3, &obj, key, strlen(key), sha, err, sizeof(err));
    } else if (!strcmp(method, "GET")) {
        lt_buf_t *out = lt_buf_new(4096);
        e = lt_s3_get(s3, key, out, err, sizeof(err));
        lt_buf_destroy(out);
    } else if (!strcmp(method, "HEAD")) {
        uint64_t sz;
        char etag[LT_S3_ETAG_MAX], sha[LT_S3_SHA256_HEX];
        e = lt_s3_head(s3, key, &sz, etag, sha, err, sizeof(err));
    } else {
        e = lt_s3_delete(s3, key, err, sizeof(err));
    }
    __atomic_store_n(&sv.stop, 1, __ATOMIC_RELEASE);
    int wake = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT(wake >= 0 && connect(wake, (struct sockaddr *)&a, sizeof(a)) == 0);
    pthread_join(th, NULL);
    close(wake);
    if (getenv("LT_FUZZ_VERBOSE"))
        fprintf(stderr, "%s %s: %d request(s) verified: %s: %s\n", method, key, sv.requests,
                lt_err_name(e), e ? err : "");
    ASSERT(e == LT_OK || e == LT_ERR_TEMPORARY || e == LT_ERR_NOT_FOUND || e == LT_ERR_TOO_BIG ||
           e == LT_ERR_FINAL || e == LT_ERR_INVALID);
    if (!lt_objkey_is_safe(key))
        ASSERT(e == LT_ERR_INVALID && sv.requests == 0 && sv.cut == 0);
    if (sv.cut && !sv.requests)
        ASSERT(e == LT_ERR_TEMPORARY); /* a body cut short never passes */
    ASSERT(e == LT_OK || err[0]);
    /* never a credential in an error (unless the key or the response has
     * the same bytes: errstr names the key and S3's Message) */
    if (e != LT_OK && strlen(secret) >= 8 && !strstr(key, secret) &&
        !memmem(resp, resp_len, secret, strlen(secret)))
        ASSERT(!strstr(err, secret));
    lt_s3_destroy(s3);
out:
    close(listener);
    free(key);
    free(ctype);
    free(region);
    free(akid);
    free(secret);
    free(resp);
    return 0;
}
