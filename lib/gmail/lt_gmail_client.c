#include "lt_gmail_client.h"

#include "lt_clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/crypto.h>

#define LIST_BODY_MAX ((size_t)16 << 20)
#define TOKEN_BODY_MAX ((size_t)64 << 10)
#define TOKEN_EARLY_S 60
#define MAX_AUTH_ROUNDS 3

enum {
    COST_PROFILE = 1,
    COST_LABELS = 1,
    COST_HISTORY = 2,
    COST_LIST = 5,
    COST_GET = 5,
    COST_WATCH = 100,
    COST_STOP = 50,
};

typedef struct req_s {
    CURL *h;
    char *url;
    const char *post_json; /* borrowed; NULL: a GET */
    int cost;
    int attempts;
    int auth_rounds;
    int64_t not_before;
    lt_buf_t *body;
    size_t body_cap;
    long status;
    long retry_after_s;
    int token_gen;
    int too_big;
    size_t index;
    int state; /* 0 queued, 1 running, 2 finished */
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
    char last_err[400];
} req_t;

struct lt_gmail_s {
    char *api_url, *token_url, *ca_file, *user, *client_id, *client_secret, *refresh_token;
    char *user_esc;
    lt_gmail_opts_t o;
    lt_log_ctx_t log;
    int has_log;
    CURLM *multi;

    /* access token */
    char access[LT_GMAIL_TOKEN_MAX + 1];
    int64_t access_expires; /* monotonic ms; 0 = none */
    int token_gen;
    uint8_t token_key[LT_GMAIL_TOKEN_KEY_SIZE]; /* in o.tokens */

    lt_gmail_pacer_t *pacer;
    lt_gmail_pacer_t *own_pacer; /* when none was given */
    lt_gmail_pace_t pace;
    char *pace_user, *pace_project;

    lt_gmail_stats_t st;
    int inflight;
    int http1;     /* the server answered HTTP/1.x: no multiplexing to wait for */
    lt_buf_t *raw; /* decoded message of the current callback */
};

static char *dup_or_null(const char *s)
{
    return s ? lt_xstrdup(s) : NULL;
}

static const lt_log_ctx_t *LOG(const lt_gmail_t *c)
{
    return c->has_log ? &c->log : NULL;
}

lt_gmail_t *lt_gmail_new(const lt_gmail_opts_t *o)
{
    lt_gmail_t *c = lt_xcalloc(1, sizeof(*c));
    c->o = *o;
    c->api_url = lt_xstrdup(o->api_url ? o->api_url : "https://gmail.googleapis.com");
    size_t l = strlen(c->api_url);
    while (l && c->api_url[l - 1] == '/')
        c->api_url[--l] = 0;
    c->token_url = lt_xstrdup(o->token_url ? o->token_url : "https://oauth2.googleapis.com/token");
    c->ca_file = dup_or_null(o->ca_file);
    c->user = lt_xstrdup(o->user ? o->user : "me");
    c->client_id = lt_xstrdup(o->client_id ? o->client_id : "");
    c->client_secret = lt_xstrdup(o->client_secret ? o->client_secret : "");
    c->refresh_token = lt_xstrdup(o->refresh_token ? o->refresh_token : "");
    if (o->tokens)
        lt_gmail_tokens_key(c->token_url, c->client_id, c->refresh_token, c->user, c->token_key);
    if (o->log) {
        c->log = *o->log;
        c->has_log = 1;
    }
    if (c->o.max_inflight < 1)
        c->o.max_inflight = 1;
    if (c->o.max_retries < 0)
        c->o.max_retries = 0;
    if (c->o.retry_base_ms < 1)
        c->o.retry_base_ms = 1;
    if (c->o.retry_max_ms < c->o.retry_base_ms)
        c->o.retry_max_ms = c->o.retry_base_ms;
    if (c->o.timeout_s < 1)
        c->o.timeout_s = 120;
    if (!c->o.max_message_bytes)
        c->o.max_message_bytes = (uint64_t)64 << 20;
    c->o.log = NULL;
    c->multi = curl_multi_init();
    if (!c->multi)
        abort(); /* OOM policy */
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->o.max_inflight);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)c->o.max_inflight + 1);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)c->o.max_inflight + 1);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    CURL *e = curl_easy_init();
    char *esc = curl_easy_escape(e, c->user, 0);
    c->user_esc = lt_xstrdup(esc ? esc : "me");
    curl_free(esc);
    curl_easy_cleanup(e);
    /* One second of burst at the per-minute rate, less what may be in flight:
     * requests the client charged earlier can reach the server after the
     * client's bucket has refilled (a loaded server, slow network), and both
     * buckets must not be full at that moment. */
    double per_min = o->user_units_per_min > 0 ? o->user_units_per_min
                                               : o->quota_units_per_s * 60.0;
    double burst = 1.0;
    if (per_min > 0)
        burst -= (double)c->o.max_inflight * COST_GET / (per_min / 60.0);
    if (o->quota_user) {
        c->pace_user = lt_xstrdup(o->quota_user);
    } else { /* "me" names every mailbox: the grant tells them apart */
        uint8_t k[LT_GMAIL_TOKEN_KEY_SIZE];
        lt_gmail_tokens_key(c->token_url, c->client_id, c->refresh_token, c->user, k);
        c->pace_user = lt_xmalloc(6 + 2 * 16 + 1);
        memcpy(c->pace_user, "grant:", 6);
        for (int i = 0; i < 16; i++)
            snprintf(c->pace_user + 6 + 2 * i, 3, "%02x", k[i]);
    }
    c->pace_project = lt_xstrdup(o->quota_project ? o->quota_project : c->client_id);
    c->pace.user = c->pace_user;
    c->pace.user_per_min = per_min;
    c->pace.user_burst_s = burst < 0.2 ? 0.2 : burst;
    c->pace.project = c->pace_project;
    c->pace.project_per_min = o->project_units_per_min;
    c->pacer = o->pacer;
    if (!c->pacer)
        c->pacer = c->own_pacer = lt_gmail_pacer_new();
    c->raw = lt_buf_new((size_t)c->o.max_message_bytes);
    return c;
}

void lt_gmail_destroy(lt_gmail_t *c)
{
    if (!c)
        return;
    if (c->multi)
        curl_multi_cleanup(c->multi);
    free(c->api_url);
    free(c->token_url);
    free(c->ca_file);
    free(c->user);
    free(c->user_esc);
    free(c->client_id);
    free(c->pace_user);
    free(c->pace_project);
    lt_gmail_pacer_destroy(c->own_pacer);
    /* OPENSSL_cleanse: a memset before free() may be dropped by the compiler */
    if (c->client_secret) {
        OPENSSL_cleanse(c->client_secret, strlen(c->client_secret));
        free(c->client_secret);
    }
    if (c->refresh_token) {
        OPENSSL_cleanse(c->refresh_token, strlen(c->refresh_token));
        free(c->refresh_token);
    }
    OPENSSL_cleanse(c->access, sizeof(c->access));
    lt_buf_destroy(c->raw);
    free(c);
}

void lt_gmail_pace_key(const lt_gmail_t *c, lt_gmail_pace_t *out)
{
    *out = c->pace;
}

void lt_gmail_stats(const lt_gmail_t *c, lt_gmail_stats_t *out)
{
    *out = c->st;
}

/* --- curl plumbing ------------------------------------------------------- */

/* Request headers hold the bearer token: wiped before they are freed. */
static void free_hdrs(struct curl_slist *l)
{
    for (struct curl_slist *e = l; e; e = e->next)
        if (e->data)
            OPENSSL_cleanse(e->data, strlen(e->data));
    curl_slist_free_all(l);
}

static size_t on_write(char *p, size_t sz, size_t nm, void *ud)
{
    req_t *r = ud;
    size_t n = sz * nm;
    if (lt_buf_append(r->body, p, n)) {
        r->too_big = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud)
{
    req_t *r = ud;
    size_t n = sz * nm;
    if (n > 12 && !strncasecmp(p, "Retry-After:", 12)) {
        char tmp[64];
        size_t l = n - 12 < sizeof(tmp) - 1 ? n - 12 : sizeof(tmp) - 1;
        memcpy(tmp, p + 12, l);
        tmp[l] = 0;
        char *end;
        long v = strtol(tmp, &end, 10);
        if (end != tmp && v >= 0)
            r->retry_after_s = v > 3600 ? 3600 : v; /* an HTTP date: ignored (backoff rules) */
    }
    return n;
}

static void common_opts(lt_gmail_t *c, CURL *h, req_t *r)
{
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)c->o.timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->o.timeout_s < 10 ? (long)c->o.timeout_s : 10L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "lattice-mail-ingest/" LT_VERSION " (gzip)");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_PRIVATE, r);
}

static int64_t backoff_ms(const lt_gmail_t *c, int attempt, long retry_after_s)
{
    int64_t d = (int64_t)c->o.retry_base_ms << (attempt < 16 ? attempt : 16);
    if (d > c->o.retry_max_ms)
        d = c->o.retry_max_ms;
    d = d / 2 + (int64_t)(rand() % (int)(d / 2 + 1));
    if (retry_after_s > 0 && retry_after_s * 1000 > d)
        d = retry_after_s * 1000 + rand() % 250;
    return d;
}

static int cancelled(const lt_gmail_t *c)
{
    return c->o.cancel && *c->o.cancel;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* --- OAuth ----------------------------------------------------------------- */

static lt_err_t refresh_token(lt_gmail_t *c, char *errstr, size_t n)
{
    lt_err_t err = LT_ERR_TEMPORARY;
    CURL *h = curl_easy_init();
    req_t r;
    memset(&r, 0, sizeof(r));
    r.url = c->token_url;
    /* The form holds the client secret and the refresh token, the answer
     * the access token: buffers that are wiped when they grow or go. */
    r.body = lt_buf_new_secret(TOKEN_BODY_MAX);
    char *id = curl_easy_escape(h, c->client_id, 0),
         *sec = curl_easy_escape(h, c->client_secret, 0),
         *rt = curl_easy_escape(h, c->refresh_token, 0);
    lt_buf_t *form = lt_buf_new_secret(64 * 1024);
    lt_buf_appendf(form, "grant_type=refresh_token&client_id=%s&client_secret=%s&refresh_token=%s",
                   id ? id : "", sec ? sec : "", rt ? rt : "");
    curl_free(id);
    if (sec)
        OPENSSL_cleanse(sec, strlen(sec));
    curl_free(sec);
    if (rt)
        OPENSSL_cleanse(rt, strlen(rt));
    curl_free(rt);
    if (!c->refresh_token[0] || !c->client_id[0]) {
        err = lt_seterr(errstr, n, LT_ERR_REAUTH, "no client_id or refresh token configured");
        goto out;
    }
    for (int attempt = 0;; attempt++) {
        if (cancelled(c)) {
            err = lt_seterr(errstr, n, LT_ERR_TEMPORARY, "cancelled");
            goto out;
        }
        lt_buf_reset(r.body);
        r.retry_after_s = -1;
        r.errbuf[0] = 0;
        curl_easy_reset(h);
        common_opts(c, h, &r);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, lt_buf_str(form));
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)lt_buf_len(form));
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        c->st.token_refreshes++;
        if (rc == CURLE_OK && status == 200) {
            lt_gmail_token_t tok;
            err = lt_gmail_parse_token((const char *)lt_buf_data(r.body), lt_buf_len(r.body), &tok,
                                       errstr, n);
            if (!err) {
                memcpy(c->access, tok.access_token, sizeof(c->access));
                /* use it until a minute before it expires (half its life if short) */
                int64_t life = tok.expires_in_s > 2 * TOKEN_EARLY_S
                                   ? tok.expires_in_s - TOKEN_EARLY_S
                                   : tok.expires_in_s / 2;
                c->access_expires = lt_now_ms() + life * 1000;
                OPENSSL_cleanse(&tok, sizeof(tok));
                c->token_gen++;
                if (c->o.tokens)
                    lt_gmail_tokens_put(c->o.tokens, c->token_key, c->access, c->access_expires,
                                        lt_now_ms());
                goto out;
            }
        } else if (rc != CURLE_OK) {
            err = lt_seterr(errstr, n, LT_ERR_TEMPORARY, "token endpoint: %s",
                            r.errbuf[0] ? r.errbuf : curl_easy_strerror(rc));
        } else {
            err = lt_gmail_token_error(status, (const char *)lt_buf_data(r.body),
                                       lt_buf_len(r.body), errstr, n);
            if (err != LT_ERR_TEMPORARY)
                goto out;
        }
        if (attempt >= c->o.max_retries)
            goto out;
        int64_t d = backoff_ms(c, attempt, r.retry_after_s);
        lt_warn(LOG(c), "%s; retrying in %lld ms", errstr, (long long)d);
        sleep_ms(d);
    }
out:
    lt_buf_destroy(form);
    lt_buf_destroy(r.body);
    curl_easy_cleanup(h);
    return err;
}

static lt_err_t ensure_token(lt_gmail_t *c, char *errstr, size_t n)
{
    if (c->access[0] && lt_now_ms() < c->access_expires)
        return LT_OK;
    c->access[0] = 0;
    if (c->o.tokens &&
        !lt_gmail_tokens_get(c->o.tokens, c->token_key, lt_now_ms(), c->access, &c->access_expires)) {
        c->token_gen++;
        c->st.token_reuses++;
        return LT_OK;
    }
    return refresh_token(c, errstr, n);
}

/* --- the request engine ---------------------------------------------------- */

/* A 200 answer. *retry = 1: the body was malformed or truncated (the
 * request is retried); otherwise a non-LT_OK result stops the run. */
typedef lt_err_t (*on_ok_fn)(lt_gmail_t *c, req_t *r, void *opaque, int *retry, char *errstr,
                             size_t n);
typedef lt_err_t (*on_gone_fn)(lt_gmail_t *c, req_t *r, lt_err_t why, const char *reason,
                               void *opaque, char *errstr, size_t n);

static void req_start(lt_gmail_t *c, req_t *r)
{
    if (!r->h)
        r->h = curl_easy_init();
    else
        curl_easy_reset(r->h);
    if (!r->body)
        r->body = lt_buf_new(r->body_cap);
    lt_buf_reset(r->body);
    r->status = 0;
    r->retry_after_s = -1;
    r->too_big = 0;
    r->errbuf[0] = 0;
    common_opts(c, r->h, r);
    if (r->post_json) {
        curl_easy_setopt(r->h, CURLOPT_POSTFIELDS, r->post_json);
        curl_easy_setopt(r->h, CURLOPT_POSTFIELDSIZE, (long)strlen(r->post_json));
    } else {
        curl_easy_setopt(r->h, CURLOPT_HTTPGET, 1L);
    }
    /* HTTP/2 (Google): wait for the first connection and multiplex on it;
     * HTTP/1.1 (the emulator, proxies): one connection per request in flight. */
    curl_easy_setopt(r->h, CURLOPT_PIPEWAIT, c->http1 ? 0L : 1L);
    free_hdrs(r->hdrs);
    char auth[LT_GMAIL_TOKEN_MAX + 32];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->access);
    r->hdrs = curl_slist_append(NULL, auth);
    OPENSSL_cleanse(auth, sizeof(auth));
    if (r->post_json)
        r->hdrs = curl_slist_append(r->hdrs, "Content-Type: application/json");
    curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, r->hdrs);
    r->token_gen = c->token_gen;
    r->state = 1;
    c->st.units += r->cost;
    c->st.requests++;
    c->inflight++;
    if (c->inflight > c->st.max_inflight_seen)
        c->st.max_inflight_seen = c->inflight;
    curl_multi_add_handle(c->multi, r->h);
}

static void req_release(lt_gmail_t *c, req_t *r)
{
    if (r->state == 1) {
        curl_multi_remove_handle(c->multi, r->h);
        c->inflight--;
    }
    if (r->h)
        curl_easy_cleanup(r->h);
    r->h = NULL;
    free_hdrs(r->hdrs);
    r->hdrs = NULL;
    lt_buf_destroy(r->body);
    r->body = NULL;
}

/* Schedule a retry of r, or fail when out of attempts. */
static lt_err_t req_retry(lt_gmail_t *c, req_t *r, int quota, char *errstr, size_t n)
{
    /* quota: 0 none, 1 the user's limit, 2 the project's, 3 concurrency */
    r->state = 0;
    if (++r->attempts > c->o.max_retries)
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "gave up after %d attempts: %s", r->attempts,
                         r->last_err);
    c->st.retries++;
    int64_t d = backoff_ms(c, r->attempts - 1, r->retry_after_s);
    r->not_before = lt_now_ms() + d;
    if (quota == 1 || quota == 2) {
        /* lower that rate (once per overshoot): the next requests are paced slower */
        if (lt_gmail_pacer_cut(c->pacer, &c->pace,
                               quota == 2 ? LT_GMAIL_QUOTA_PROJECT : LT_GMAIL_QUOTA_USER,
                               lt_now_ms()))
            c->st.rate_cuts++;
    }
    if (quota && r->retry_after_s > 0) /* asked to wait: the whole account waits */
        lt_gmail_pacer_pause(c->pacer, &c->pace, lt_now_ms() + d);
    lt_debug(LOG(c), "gmail: %s; retry %d in %lld ms", r->last_err, r->attempts, (long long)d);
    return LT_OK;
}

/* Run reqs[0..nreq) to completion. */
static lt_err_t run(lt_gmail_t *c, req_t *reqs, size_t nreq, on_ok_fn ok, on_gone_fn gone,
                    void *opaque, char *errstr, size_t n)
{
    lt_err_t err = LT_OK;
    size_t finished = 0, next = 0; /* reqs before `next` were all started once */
    int auth_failures = 0;
    while (finished < nreq) {
        if (cancelled(c)) {
            err = lt_seterr(errstr, n, LT_ERR_TEMPORARY, "cancelled (shutdown or revoke)");
            goto out;
        }
        /* start what may start, in order */
        int64_t t = lt_now_ms(), wait = 200;
        for (size_t i = next; i < nreq && c->inflight < c->o.max_inflight; i++) {
            req_t *r = &reqs[i];
            if (r->state != 0) {
                if (r->state == 2 && i == next)
                    next++;
                continue;
            }
            if (r->not_before > t) {
                if (r->not_before - t < wait)
                    wait = r->not_before - t;
                continue;
            }
            int64_t w = lt_gmail_pacer_take(c->pacer, &c->pace, r->cost, t);
            if (w > 0) {
                if (w < wait)
                    wait = w;
                break;
            }
            if (!c->access[0] || lt_now_ms() >= c->access_expires) {
                err = ensure_token(c, errstr, n);
                if (err)
                    goto out;
                t = lt_now_ms();
            }
            req_start(c, r);
        }
        if (c->inflight == 0) {
            sleep_ms(wait > 0 ? wait : 1);
            continue;
        }
        int running = 0;
        curl_multi_perform(c->multi, &running);
        CURLMsg *m;
        int left;
        int any = 0;
        while ((m = curl_multi_info_read(c->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            any = 1;
            req_t *r = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            CURLcode rc = m->data.result;
            curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
            long ver = 0;
            if (rc == CURLE_OK && !curl_easy_getinfo(r->h, CURLINFO_HTTP_VERSION, &ver))
                c->http1 = ver != CURL_HTTP_VERSION_2_0 && ver != CURL_HTTP_VERSION_3;
            curl_multi_remove_handle(c->multi, r->h);
            c->inflight--;
            r->state = 0;
            const char *body = (const char *)lt_buf_data(r->body);
            size_t blen = lt_buf_len(r->body);
            if (r->too_big) {
                r->state = 2;
                finished++;
                char why[200];
                snprintf(why, sizeof(why), "answer larger than the cap (%zu bytes)", r->body_cap);
                err = gone ? gone(c, r, LT_ERR_TOO_BIG, why, opaque, errstr, n)
                           : lt_seterr(errstr, n, LT_ERR_TEMPORARY, "%s", why);
                req_release(c, r);
                if (err)
                    goto out;
                continue;
            }
            if (rc != CURLE_OK) {
                snprintf(r->last_err, sizeof(r->last_err), "%s",
                         r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
                if ((err = req_retry(c, r, 0, errstr, n)))
                    goto out;
                continue;
            }
            if (r->status == 200 || r->status == 204) { /* 204: users.stop */
                char perr[300] = "";
                int retry = 0;
                lt_err_t e = ok(c, r, opaque, &retry, perr, sizeof(perr));
                if (e && retry) { /* malformed or truncated body */
                    snprintf(r->last_err, sizeof(r->last_err), "%s", perr);
                    lt_warn(LOG(c), "gmail: %s", perr);
                    if ((err = req_retry(c, r, 0, errstr, n)))
                        goto out;
                    continue;
                }
                auth_failures = 0;
                r->state = 2;
                finished++;
                if (r->body) {
                    lt_buf_destroy(r->body);
                    r->body = NULL;
                }
                if (e) {
                    err = lt_seterr(errstr, n, e, "%s", perr);
                    goto out;
                }
                continue;
            }
            lt_gmail_verdict_t v;
            lt_gmail_classify(r->status, body, blen, &v);
            snprintf(r->last_err, sizeof(r->last_err), "HTTP %ld%s%s%s%s", r->status,
                     v.reason[0] ? " " : "", v.reason, v.message[0] ? ": " : "", v.message);
            if (v.quota) {
                c->st.quota_errors++;
                c->st.quota_errors_user += v.quota_kind == 1;
                c->st.quota_errors_project += v.quota_kind == 2;
            }
            if (r->status >= 500)
                c->st.server_errors++;
            switch (v.action) {
            case LT_GMAIL_RETRY:
                if ((err = req_retry(c, r, v.quota ? (v.quota_kind ? v.quota_kind : 3) : 0,
                                     errstr, n)))
                    goto out;
                break;
            case LT_GMAIL_REFRESH:
                /* Several requests in flight get the same 401 for one expired
                 * token: only the first one (token still set) counts and clears it. */
                if (r->token_gen == c->token_gen && c->access[0]) {
                    if (++auth_failures > MAX_AUTH_ROUNDS) {
                        err = lt_seterr(errstr, n, LT_ERR_REAUTH,
                                        "access token rejected even after %d refreshes: %s",
                                        MAX_AUTH_ROUNDS, r->last_err);
                        goto out;
                    }
                    lt_info(LOG(c), "gmail: access token rejected (%s); refreshing", r->last_err);
                    if (c->o.tokens)
                        lt_gmail_tokens_drop(c->o.tokens, c->token_key, c->access);
                    c->access[0] = 0;
                }
                r->not_before = 0; /* again at once with the new token */
                break;
            case LT_GMAIL_NOT_FOUND:
                r->state = 2;
                finished++;
                err = gone ? gone(c, r, LT_ERR_NOT_FOUND, r->last_err, opaque, errstr, n)
                           : lt_seterr(errstr, n, LT_ERR_NOT_FOUND, "%s", r->last_err);
                req_release(c, r);
                if (err)
                    goto out;
                break;
            case LT_GMAIL_FAIL:
            default:
                err = lt_seterr(errstr, n, v.err ? v.err : LT_ERR_FINAL, "%s", r->last_err);
                goto out;
            }
        }
        if (!any && c->inflight > 0) {
            int nfds;
            int64_t pw = wait < 100 ? wait : 100;
            curl_multi_poll(c->multi, NULL, 0, (int)(pw > 0 ? pw : 1), &nfds);
        }
    }
out:
    for (size_t i = 0; i < nreq; i++)
        req_release(c, &reqs[i]);
    return err;
}

/* --- single calls ------------------------------------------------------------ */

typedef struct {
    lt_err_t (*parse)(lt_gmail_t *c, const char *body, size_t len, void *out, char *errstr,
                      size_t n);
    void *out;
    int not_found;
} one_t;

static lt_err_t one_ok(lt_gmail_t *c, req_t *r, void *opaque, int *retry, char *errstr, size_t n)
{
    one_t *o = opaque;
    lt_err_t err =
        o->parse(c, (const char *)lt_buf_data(r->body), lt_buf_len(r->body), o->out, errstr, n);
    *retry = err == LT_ERR_TEMPORARY;
    return err;
}

static lt_err_t one_gone(lt_gmail_t *c, req_t *r, lt_err_t why, const char *reason, void *opaque,
                         char *errstr, size_t n)
{
    return lt_seterr(errstr, n, why == LT_ERR_NOT_FOUND ? LT_ERR_NOT_FOUND : LT_ERR_TEMPORARY, "%s",
                     reason);
}

static lt_err_t call_post(lt_gmail_t *c, char *url, const char *json, int cost, one_t *o,
                          char *errstr, size_t n)
{
    req_t r;
    memset(&r, 0, sizeof(r));
    r.url = url;
    r.post_json = json;
    r.cost = cost;
    r.body_cap = LIST_BODY_MAX;
    lt_err_t err = run(c, &r, 1, one_ok, one_gone, o, errstr, n);
    free(url);
    return err;
}

static lt_err_t call_one(lt_gmail_t *c, char *url, int cost, one_t *o, char *errstr, size_t n)
{
    return call_post(c, url, NULL, cost, o, errstr, n);
}

static char *url_of(lt_gmail_t *c, lt_buf_t *b)
{
    char *s = lt_xstrdup(lt_buf_str(b));
    lt_buf_destroy(b);
    return s;
}

static lt_buf_t *url_base(lt_gmail_t *c, const char *path)
{
    lt_buf_t *b = lt_buf_new(64 * 1024);
    lt_buf_appendf(b, "%s/gmail/v1/users/%s/%s", c->api_url, c->user_esc, path);
    return b;
}

static void add_param(lt_buf_t *b, const char *name, const char *value)
{
    CURL *e = curl_easy_init();
    char *v = curl_easy_escape(e, value, 0);
    lt_buf_appendf(b, "%c%s=%s", strchr(lt_buf_str(b), '?') ? '&' : '?', name, v ? v : "");
    curl_free(v);
    curl_easy_cleanup(e);
}

static lt_err_t parse_profile(lt_gmail_t *c, const char *body, size_t len, void *out, char *errstr,
                              size_t n)
{
    return lt_gmail_parse_profile(body, len, out, errstr, n);
}

lt_err_t lt_gmail_profile(lt_gmail_t *c, uint64_t *history_id, char *errstr, size_t errstr_size)
{
    one_t o = {parse_profile, history_id, 0};
    lt_buf_t *b = url_base(c, "profile");
    add_param(b, "prettyPrint", "false");
    return call_one(c, url_of(c, b), COST_PROFILE, &o, errstr, errstr_size);
}

typedef struct {
    const char *name;
    char *out;
} label_find_t;

static lt_err_t parse_labels(lt_gmail_t *c, const char *body, size_t len, void *out, char *errstr,
                             size_t n)
{
    label_find_t *f = out;
    lt_err_t err = lt_gmail_parse_labels_find(body, len, f->name, f->out, errstr, n);
    return err == LT_ERR_NOT_FOUND ? LT_ERR_FINAL : err;
}

lt_err_t lt_gmail_label_id(lt_gmail_t *c, const char *name, char out[LT_GMAIL_ID_MAX + 1],
                           char *errstr, size_t errstr_size)
{
    label_find_t f = {name, out};
    one_t o = {parse_labels, &f, 0};
    lt_buf_t *b = url_base(c, "labels");
    add_param(b, "prettyPrint", "false");
    lt_err_t err = call_one(c, url_of(c, b), COST_LABELS, &o, errstr, errstr_size);
    return err == LT_ERR_FINAL && strstr(errstr, "no label") ? LT_ERR_NOT_FOUND : err;
}

static lt_err_t parse_list(lt_gmail_t *c, const char *body, size_t len, void *out, char *errstr,
                           size_t n)
{
    lt_gmail_page_free(out);
    return lt_gmail_parse_list(body, len, out, errstr, n);
}

lt_err_t lt_gmail_list(lt_gmail_t *c, const char *label_id, const char *query,
                       const char *page_token, lt_gmail_page_t *out, char *errstr,
                       size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    one_t o = {parse_list, out, 0};
    lt_buf_t *b = url_base(c, "messages");
    add_param(b, "maxResults", "500");
    if (label_id)
        add_param(b, "labelIds", label_id);
    if (query)
        add_param(b, "q", query);
    if (page_token)
        add_param(b, "pageToken", page_token);
    add_param(b, "fields", "messages(id,threadId),nextPageToken,resultSizeEstimate");
    add_param(b, "prettyPrint", "false");
    lt_err_t err = call_one(c, url_of(c, b), COST_LIST, &o, errstr, errstr_size);
    if (err)
        lt_gmail_page_free(out);
    return err;
}

typedef struct {
    const char *label;
    lt_gmail_page_t *out;
} hist_t;

static lt_err_t parse_hist(lt_gmail_t *c, const char *body, size_t len, void *out, char *errstr,
                           size_t n)
{
    hist_t *h = out;
    lt_gmail_page_free(h->out);
    return lt_gmail_parse_history(body, len, h->label, h->out, errstr, n);
}

/* The users.history.list URL of one page: historyTypes repeated, as the
 * API takes them. */
static lt_buf_t *history_url(lt_gmail_t *c, uint64_t start_history_id, const char *const *types,
                             size_t ntypes, const char *label_id, const char *page_token)
{
    lt_buf_t *b = url_base(c, "history");
    char num[32];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)start_history_id);
    add_param(b, "startHistoryId", num);
    for (size_t i = 0; i < ntypes; i++)
        add_param(b, "historyTypes", types[i]);
    if (label_id)
        add_param(b, "labelId", label_id);
    add_param(b, "maxResults", "500");
    if (page_token)
        add_param(b, "pageToken", page_token);
    add_param(b, "prettyPrint", "false");
    return b;
}

lt_err_t lt_gmail_history(lt_gmail_t *c, uint64_t start_history_id, const char *label_id,
                          const char *page_token, lt_gmail_page_t *out, char *errstr,
                          size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    hist_t h = {label_id, out};
    one_t o = {parse_hist, &h, 0};
    static const char *const types[] = {"messageAdded", "labelAdded"};
    lt_buf_t *b = history_url(c, start_history_id, types, 2, label_id, page_token);
    lt_err_t err = call_one(c, url_of(c, b), COST_HISTORY, &o, errstr, errstr_size);
    if (err)
        lt_gmail_page_free(out);
    return err;
}

static lt_err_t parse_hist_all(lt_gmail_t *c, const char *body, size_t len, void *out, char *errstr,
                               size_t n)
{
    (void)c;
    lt_gmail_hist_free(out);
    return lt_gmail_parse_history_all(body, len, out, errstr, n);
}

lt_err_t lt_gmail_history_all(lt_gmail_t *c, uint64_t start_history_id, const char *label_id,
                              const char *page_token, lt_gmail_hist_t *out, char *errstr,
                              size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    one_t o = {parse_hist_all, out, 0};
    static const char *const types[] = {"messageAdded", "messageDeleted", "labelAdded",
                                        "labelRemoved"};
    lt_buf_t *b = history_url(c, start_history_id, types, 4, label_id, page_token);
    lt_err_t err = call_one(c, url_of(c, b), COST_HISTORY, &o, errstr, errstr_size);
    if (err)
        lt_gmail_hist_free(out);
    return err;
}

/* --- many gets --------------------------------------------------------------- */

typedef struct {
    int raw;
    lt_gmail_message_fn fn;
    void *opaque;
} many_t;

static lt_err_t many_ok(lt_gmail_t *c, req_t *r, void *opaque, int *retry, char *errstr, size_t n)
{
    many_t *m = opaque;
    lt_gmail_message_t msg;
    lt_err_t err = lt_gmail_parse_message((const char *)lt_buf_data(r->body), lt_buf_len(r->body),
                                          &msg, m->raw ? c->raw : NULL, errstr, n);
    lt_buf_destroy(r->body); /* the encoded copy is not needed any more */
    r->body = NULL;
    if (err == LT_ERR_TOO_BIG) {
        char why[300];
        snprintf(why, sizeof(why), "%s", errstr);
        err = m->fn(m->opaque, r->index, LT_ERR_TOO_BIG, NULL, NULL, why);
        lt_buf_reset(c->raw);
        return err ? err : LT_OK;
    }
    if (err) {
        *retry = err == LT_ERR_TEMPORARY;
        return err;
    }
    err = m->fn(m->opaque, r->index, LT_OK, &msg, m->raw ? c->raw : NULL, NULL);
    lt_buf_reset(c->raw);
    if (err && errstr && n && !errstr[0])
        lt_seterr(errstr, n, err, "stopped by the caller");
    return err;
}

static lt_err_t many_gone(lt_gmail_t *c, req_t *r, lt_err_t why, const char *reason, void *opaque,
                          char *errstr, size_t n)
{
    many_t *m = opaque;
    return m->fn(m->opaque, r->index, why, NULL, NULL, reason);
}

lt_err_t lt_gmail_get_many(lt_gmail_t *c, const char *const *ids, size_t n,
                           lt_gmail_format_t format, const lt_gmail_message_cb_t *cb, char *errstr,
                           size_t errstr_size)
{
    int raw = format == LT_GMAIL_FORMAT_RAW;
    if (n == 0)
        return LT_OK;
    req_t *reqs = lt_xcalloc(n, sizeof(req_t));
    size_t cap = (size_t)(c->o.max_message_bytes / 3 * 4) + ((size_t)1 << 20);
    for (size_t i = 0; i < n; i++) {
        char path[LT_GMAIL_ID_MAX + 32];
        if (!lt_gmail_id_valid(ids[i], strlen(ids[i]))) {
            for (size_t k = 0; k < i; k++)
                free(reqs[k].url);
            free(reqs);
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "bad message id");
        }
        snprintf(path, sizeof(path), "messages/%s", ids[i]);
        lt_buf_t *b = url_base(c, path);
        add_param(b, "format", raw ? "raw" : "minimal");
        add_param(b, "fields",
                  raw ? "id,threadId,labelIds,historyId,internalDate,raw"
                      : "id,threadId,labelIds,historyId,internalDate");
        add_param(b, "prettyPrint", "false");
        reqs[i].url = url_of(c, b);
        reqs[i].cost = COST_GET;
        reqs[i].index = i;
        reqs[i].body_cap = raw ? cap : LIST_BODY_MAX;
    }
    many_t m = {raw, cb->fn, cb->opaque};
    lt_err_t err = run(c, reqs, n, many_ok, many_gone, &m, errstr, errstr_size);
    for (size_t i = 0; i < n; i++)
        free(reqs[i].url);
    free(reqs);
    return err;
}

/* --- push notifications -------------------------------------------------------- */

static lt_err_t parse_watch(lt_gmail_t *c, const char *body, size_t len, void *out, char *errstr,
                            size_t n)
{
    return lt_gmail_parse_watch(body, len, out, errstr, n);
}

lt_err_t lt_gmail_watch(lt_gmail_t *c, const char *topic, const char *const *label_ids,
                        size_t nlabels, int exclude, lt_gmail_watch_reply_t *out, char *errstr,
                        size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    if (!topic || !*topic)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "users.watch: no topic name");
    json_object *req = json_object_new_object();
    json_object_object_add(req, "topicName", json_object_new_string(topic));
    if (nlabels) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < nlabels; i++)
            json_object_array_add(a, json_object_new_string(label_ids[i]));
        json_object_object_add(req, "labelIds", a);
        json_object_object_add(req, "labelFilterBehavior",
                               json_object_new_string(exclude ? "exclude" : "include"));
    }
    char *json = lt_xstrdup(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
    json_object_put(req);
    one_t o = {parse_watch, out, 0};
    lt_buf_t *b = url_base(c, "watch");
    add_param(b, "prettyPrint", "false");
    lt_err_t err = call_post(c, url_of(c, b), json, COST_WATCH, &o, errstr, errstr_size);
    free(json);
    return err;
}

static lt_err_t parse_nothing(lt_gmail_t *c, const char *body, size_t len, void *out,
                              char *errstr, size_t n)
{
    return LT_OK; /* users.stop: an empty answer (or an empty object) */
}

lt_err_t lt_gmail_stop(lt_gmail_t *c, char *errstr, size_t errstr_size)
{
    one_t o = {parse_nothing, NULL, 0};
    lt_buf_t *b = url_base(c, "stop");
    add_param(b, "prettyPrint", "false");
    return call_post(c, url_of(c, b), "", COST_STOP, &o, errstr, errstr_size);
}
