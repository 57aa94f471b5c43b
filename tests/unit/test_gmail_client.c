/* Scripted-peer tests of lt_gmail_client: an in-process HTTP peer
 * (libmicrohttpd on 127.0.0.1, a thread per connection) plays Google's token
 * endpoint and Gmail API with per-test behaviour, so the client's OAuth,
 * retry, quota and concurrency rules are checked without any server:
 * several 401s in flight for one expired token -> one refresh; invalid_grant
 * -> reauth with one token request; 429 + Retry-After; a malformed body
 * retried; persistent 503 -> temporary; 403 forbidden -> reauth; history 404
 * -> not found; pacing at the quota. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_gmail_client.h"
#include "lt_test.h"

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int token_requests, api_requests;
    int tokens_issued;
    int valid_from; /* tokens "tok<N>" with N >= valid_from are accepted */
    int invalid_grant;
    int barrier; /* requests with a bad token wait until this many are waiting */
    int waiting;
    int fail_first; /* the first fail_first API calls answer fail_status */
    int fail_status;
    const char *fail_body;
    const char *fail_header; /* e.g. "Retry-After: 1" */
    int inflight, max_inflight;
} peer_t;

static peer_t P;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
                             const char *header)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json; charset=UTF-8");
    if (header) {
        char k[64];
        const char *colon = strchr(header, ':');
        snprintf(k, sizeof(k), "%.*s", (int)(colon - header), header);
        MHD_add_response_header(r, k, colon + 2);
    }
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **state)
{
    static int marker;
    if (!*state) {
        *state = &marker;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    char body[512];
    pthread_mutex_lock(&P.mu);
    if (!strcmp(url, "/token")) {
        P.token_requests++;
        if (P.invalid_grant) {
            pthread_mutex_unlock(&P.mu);
            return reply(c, 400,
                         "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been "
                         "expired or revoked.\"}",
                         NULL);
        }
        snprintf(body, sizeof(body),
                 "{\"access_token\":\"tok%d\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
                 ++P.tokens_issued);
        pthread_mutex_unlock(&P.mu);
        return reply(c, 200, body, NULL);
    }
    P.api_requests++;
    if (++P.inflight > P.max_inflight)
        P.max_inflight = P.inflight;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    int n = auth && !strncmp(auth, "Bearer tok", 10) ? atoi(auth + 10) : 0;
    unsigned status = 200;
    const char *hdr = NULL;
    if (n < P.valid_from) {
        if (P.barrier) { /* hold until `barrier` bad-token calls are here, then 401 them all */
            P.waiting++;
            pthread_cond_broadcast(&P.cv);
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += 30; /* a hang guard: released as soon as all `barrier` are here */
            while (P.waiting < P.barrier && pthread_cond_timedwait(&P.cv, &P.mu, &dl) == 0) {
            }
        }
        status = 401;
        snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":401,\"message\":\"Request had invalid authentication "
                 "credentials.\",\"errors\":[{\"reason\":\"authError\"}],\"status\":"
                 "\"UNAUTHENTICATED\"}}");
    } else if (P.fail_first > 0) {
        P.fail_first--;
        status = (unsigned)P.fail_status;
        hdr = P.fail_header;
        snprintf(body, sizeof(body), "%s", P.fail_body);
    } else if (strstr(url, "/history")) {
        status = 404;
        snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":404,\"errors\":[{\"reason\":\"notFound\"}]}}");
    } else if (strstr(url, "/profile")) {
        snprintf(body, sizeof(body), "{\"emailAddress\":\"a@b.c\",\"historyId\":\"42\"}");
    } else {
        const char *id = strrchr(url, '/') + 1;
        snprintf(body, sizeof(body),
                 "{\"id\":\"%s\",\"threadId\":\"%s\",\"historyId\":\"7\",\"internalDate\":"
                 "\"1000\",\"raw\":\"QUJD\"}",
                 id, id);
    }
    P.inflight--;
    pthread_mutex_unlock(&P.mu);
    return reply(c, status, body, hdr);
}

static void peer_reset(void)
{
    pthread_mutex_lock(&P.mu);
    P.token_requests = P.api_requests = P.tokens_issued = 0;
    P.valid_from = 1;
    P.invalid_grant = P.barrier = P.waiting = P.fail_first = 0;
    P.fail_status = 0;
    P.fail_body = "";
    P.fail_header = NULL;
    P.inflight = P.max_inflight = 0;
    pthread_mutex_unlock(&P.mu);
}

static char g_base[64];

static lt_gmail_t *client_with(int inflight, double quota, lt_gmail_tokens_t *tokens)
{
    static char token_url[96];
    snprintf(token_url, sizeof(token_url), "%s/token", g_base);
    lt_gmail_opts_t o = {
        .api_url = g_base,
        .token_url = token_url,
        .user = "me",
        .client_id = "cid",
        .client_secret = "secret",
        .refresh_token = "rt",
        .max_inflight = inflight,
        .quota_units_per_s = quota,
        .timeout_s = 10,
        .max_retries = 3,
        .retry_base_ms = 10,
        .retry_max_ms = 50,
        .max_message_bytes = 1 << 20,
        .tokens = tokens,
    };
    return lt_gmail_new(&o);
}

static lt_gmail_t *client(int inflight, double quota)
{
    return client_with(inflight, quota, NULL);
}

typedef struct {
    int ok, other;
} count_t;

static lt_err_t on_msg(void *opaque, size_t index, lt_err_t status, const lt_gmail_message_t *m,
                       const lt_buf_t *raw, const char *reason)
{
    count_t *c = opaque;
    if (status == LT_OK && raw && lt_buf_len(raw) == 3 && !memcmp(lt_buf_data(raw), "ABC", 3))
        c->ok++;
    else
        c->other++;
    return LT_OK;
}

static const char *const k_ids[] = {"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "aa",
                                    "ab", "ac", "ad", "ae", "af", "b0", "b1", "b2", "b3", "b4",
                                    "b5", "b6", "b7", "b8", "b9", "ba", "bb", "bc", "bd", "be"};

int main(void)
{
    char e[512];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.cv, NULL);
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL,
                         NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    CHECK_MSG(d != NULL, "libmicrohttpd did not start");
    if (!d)
        return lt_test_done("test_gmail_client");
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(g_base, sizeof(g_base), "http://127.0.0.1:%u", (unsigned)di->port);

    /* 1. the first token is already dead: 6 calls in flight all get a 401 at
     *    once; one refresh serves them all, no reauth */
    peer_reset();
    lt_gmail_t *g = client(6, 0);
    uint64_t h = 0;
    lt_err_t err = lt_gmail_profile(g, &h, e, sizeof(e)); /* token 1; HTTP/1.1 learnt */
    CHECK_MSG(err == LT_OK && h == 42, "profile: %s %s", lt_err_name(err), e);
    pthread_mutex_lock(&P.mu);
    P.valid_from = 2; /* token 1 expires now */
    P.barrier = 6;
    pthread_mutex_unlock(&P.mu);
    count_t cnt = {0, 0};
    err = lt_gmail_get_many(g, k_ids, 6, LT_GMAIL_FORMAT_RAW,
                            &(lt_gmail_message_cb_t){on_msg, &cnt}, e, sizeof(e));
    CHECK_MSG(err == LT_OK, "401 burst: %s %s", lt_err_name(err), e);
    CHECK_INT(cnt.ok, 6);
    CHECK_INT(P.token_requests, 2);
    CHECK_INT(P.max_inflight, 6);
    lt_gmail_destroy(g);

    /* 2. invalid_grant: reauth at once, one token request, no API call */
    peer_reset();
    P.invalid_grant = 1;
    g = client(4, 0);
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    CHECK_INT(err, LT_ERR_REAUTH);
    CHECK_MSG(strstr(e, "invalid_grant") != NULL, "%s", e);
    CHECK_INT(P.token_requests, 1);
    CHECK_INT(P.api_requests, 0);
    lt_gmail_destroy(g);

    /* 3. 429 with Retry-After: 1 -> waits at least a second, then succeeds */
    peer_reset();
    P.fail_first = 1;
    P.fail_status = 429;
    P.fail_header = "Retry-After: 1";
    P.fail_body = "{\"error\":{\"code\":429,\"errors\":[{\"reason\":\"rateLimitExceeded\","
                  "\"domain\":\"usageLimits\"}]}}";
    g = client(4, 0);
    double t0 = lt_now_s();
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    double dt = lt_now_s() - t0;
    CHECK_MSG(err == LT_OK && h == 42, "429: %s %s", lt_err_name(err), e);
    /* it waited for Retry-After (lower bound); the upper bound only guards a hang */
    CHECK_MSG(dt >= 1.0 && dt < 30.0, "429 + Retry-After: 1 took %.2f s", dt);
    lt_gmail_stats_t st;
    lt_gmail_stats(g, &st);
    CHECK_INT(st.quota_errors, 1);
    CHECK_INT(st.retries, 1);
    lt_gmail_destroy(g);

    /* 4. a malformed 200 body is retried */
    peer_reset();
    P.fail_first = 1;
    P.fail_status = 200;
    P.fail_body = "{\"historyId\":";
    g = client(4, 0);
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    CHECK_MSG(err == LT_OK && h == 42, "malformed once: %s %s", lt_err_name(err), e);
    lt_gmail_destroy(g);

    /* 5. 503 for ever: temporary after max_retries, with the reason */
    peer_reset();
    P.fail_first = 1000;
    P.fail_status = 503;
    P.fail_body = "{\"error\":{\"code\":503,\"message\":\"The service is currently "
                  "unavailable.\",\"errors\":[{\"reason\":\"backendError\"}]}}";
    g = client(4, 0);
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    CHECK_INT(err, LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(e, "gave up after 4 attempts") && strstr(e, "503"), "%s", e);
    CHECK_INT(P.api_requests, 4);
    lt_gmail_destroy(g);

    /* 6. 403 forbidden: reauth, not retried */
    peer_reset();
    P.fail_first = 1000;
    P.fail_status = 403;
    P.fail_body = "{\"error\":{\"code\":403,\"message\":\"Delegation denied\",\"errors\":[{"
                  "\"reason\":\"forbidden\"}]}}";
    g = client(4, 0);
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    CHECK_INT(err, LT_ERR_REAUTH);
    CHECK_INT(P.api_requests, 1);
    lt_gmail_destroy(g);

    /* 7. history 404: not found (the connector resyncs) */
    peer_reset();
    g = client(4, 0);
    lt_gmail_page_t page;
    err = lt_gmail_history(g, 5, "INBOX", NULL, &page, e, sizeof(e));
    CHECK_INT(err, LT_ERR_NOT_FOUND);
    lt_gmail_destroy(g);

    /* 8. pacing: 30 gets = 150 units at 100 units/s from an empty bucket */
    peer_reset();
    g = client(4, 100);
    cnt.ok = cnt.other = 0;
    t0 = lt_now_s();
    err = lt_gmail_get_many(g, k_ids, 30, LT_GMAIL_FORMAT_RAW,
                            &(lt_gmail_message_cb_t){on_msg, &cnt}, e, sizeof(e));
    dt = lt_now_s() - t0;
    CHECK_MSG(err == LT_OK && cnt.ok == 30, "pacing: %s %s, %d ok", lt_err_name(err), e, cnt.ok);
    /* paced (lower bound); the upper bound only guards a hang, speed is bench/'s */
    CHECK_MSG(dt >= 1.45 && dt < 30.0, "150 units at 100 units/s took %.2f s", dt);
    lt_gmail_destroy(g);

    /* 8b. two mailboxes of one OAuth client, both as "me" (the usual config):
     *     each is its own user for the pacer, the project is the client's */
    {
        lt_gmail_opts_t o = {.api_url = g_base, .user = "me", .client_id = "cid",
                             .client_secret = "s", .refresh_token = "rt-a", .max_inflight = 1};
        lt_gmail_t *a = lt_gmail_new(&o);
        o.refresh_token = "rt-b";
        lt_gmail_t *b = lt_gmail_new(&o);
        lt_gmail_pace_t ka, kb;
        lt_gmail_pace_key(a, &ka);
        lt_gmail_pace_key(b, &kb);
        CHECK_MSG(strcmp(ka.user, kb.user) != 0, "two mailboxes share the user key %s", ka.user);
        CHECK_STR(ka.project, "cid");
        CHECK_STR(kb.project, "cid");
        lt_gmail_destroy(a);
        lt_gmail_destroy(b);
    }

    /* 9. a shared token cache: the next client of the grant (the next command)
     *    uses the token without asking the token endpoint; a 401 on it drops
     *    it and the fresh token is shared in turn */
    peer_reset();
    lt_gmail_tokens_t *tokens = lt_gmail_tokens_new(16);
    g = client_with(2, 0, tokens);
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    CHECK_MSG(err == LT_OK, "cache, first client: %s %s", lt_err_name(err), e);
    lt_gmail_destroy(g);
    CHECK_INT(P.token_requests, 1);
    CHECK_INT((int)lt_gmail_tokens_count(tokens), 1);
    g = client_with(2, 0, tokens);
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    CHECK_MSG(err == LT_OK, "cache, second client: %s %s", lt_err_name(err), e);
    lt_gmail_stats(g, &st);
    CHECK_INT(st.token_refreshes, 0);
    CHECK_INT(st.token_reuses, 1);
    lt_gmail_destroy(g);
    CHECK_INT(P.token_requests, 1);
    pthread_mutex_lock(&P.mu);
    P.valid_from = 2; /* the cached token 1 is revoked */
    pthread_mutex_unlock(&P.mu);
    g = client_with(2, 0, tokens);
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    CHECK_MSG(err == LT_OK && h == 42, "cache, revoked token: %s %s", lt_err_name(err), e);
    lt_gmail_stats(g, &st);
    CHECK_INT(st.token_reuses, 1);
    CHECK_INT(st.token_refreshes, 1);
    lt_gmail_destroy(g);
    CHECK_INT(P.token_requests, 2);
    g = client_with(2, 0, tokens); /* token 2 from the cache, accepted */
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    CHECK_MSG(err == LT_OK, "cache, after refresh: %s %s", lt_err_name(err), e);
    lt_gmail_destroy(g);
    CHECK_INT(P.token_requests, 2);
    /* another grant (other refresh token) never gets that token */
    lt_gmail_opts_t other = {.api_url = g_base, .token_url = "", .refresh_token = "rt2",
                             .client_id = "cid", .max_inflight = 1, .timeout_s = 10,
                             .max_retries = 0, .tokens = tokens};
    char tu[96];
    snprintf(tu, sizeof(tu), "%s/token", g_base);
    other.token_url = tu;
    g = lt_gmail_new(&other);
    err = lt_gmail_profile(g, &h, e, sizeof(e));
    CHECK_MSG(err == LT_OK, "cache, other grant: %s %s", lt_err_name(err), e);
    lt_gmail_stats(g, &st);
    CHECK_INT(st.token_reuses, 0);
    lt_gmail_destroy(g);
    CHECK_INT(P.token_requests, 3);
    CHECK_INT((int)lt_gmail_tokens_count(tokens), 2);
    lt_gmail_tokens_destroy(tokens);

    MHD_stop_daemon(d);
    curl_global_cleanup();
    return lt_test_done("test_gmail_client");
}
