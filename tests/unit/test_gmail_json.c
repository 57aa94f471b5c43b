/* lt_gmail_json: Google's response shapes, table-driven, plus the
 * connector's pure helpers (scope split, backfill dates). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"
#include "lt_gmail_json.h"
#include "lt_sync_gmail.h"
#include "lt_test.h"

#define S(x) x, strlen(x)

static void test_token(void)
{
    char e[256];
    lt_gmail_token_t t;
    CHECK_INT(lt_gmail_parse_token(S("{\"access_token\":\"ya29.a0Af\",\"expires_in\":3599,"
                                     "\"scope\":\"https://www.googleapis.com/auth/gmail.readonly\","
                                     "\"token_type\":\"Bearer\"}"),
                                   &t, e, sizeof(e)),
              LT_OK);
    CHECK_STR(t.access_token, "ya29.a0Af");
    CHECK_INT(t.expires_in_s, 3599);
    CHECK_INT(lt_gmail_parse_token(S("{\"access_token\":\"x\"}"), &t, e, sizeof(e)), LT_OK);
    CHECK_INT(t.expires_in_s, 3600); /* default */
    CHECK_INT(lt_gmail_parse_token(S("{\"expires_in\":3599}"), &t, e, sizeof(e)), LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_token(S("{\"access_token\":\"a b\"}"), &t, e, sizeof(e)),
              LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_token(S("{\"access_token\":\"a\",\"expires_in\":\"soon\"}"), &t, e,
                                   sizeof(e)),
              LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_token(S("{\"access_token\":\"ya29"), &t, e, sizeof(e)),
              LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(e, "truncated") != NULL, "%s", e);
    CHECK_INT(lt_gmail_parse_token(S("{\"access_token\":\"a\"} trailing"), &t, e, sizeof(e)),
              LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_token(S("[1,2]"), &t, e, sizeof(e)), LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_token("", 0, &t, e, sizeof(e)), LT_ERR_TEMPORARY);

    static const struct {
        long status;
        const char *body;
        lt_err_t want;
    } errs[] = {
        {400,
         "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been expired or "
         "revoked.\"}",
         LT_ERR_REAUTH},
        {401, "{\"error\":\"invalid_client\",\"error_description\":\"Unauthorized\"}",
         LT_ERR_REAUTH},
        {400, "{\"error\":\"unsupported_grant_type\"}", LT_ERR_FINAL},
        {400, "{\"error\":\"invalid_request\"}", LT_ERR_FINAL},
        {503, "<html>busy</html>", LT_ERR_TEMPORARY},
        {500, "{\"error\":\"internal_failure\"}", LT_ERR_TEMPORARY},
        {429, "", LT_ERR_TEMPORARY},
        {302, "<html>proxy</html>", LT_ERR_TEMPORARY},
    };
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        lt_err_t got =
            lt_gmail_token_error(errs[i].status, errs[i].body, strlen(errs[i].body), e, sizeof(e));
        CHECK_MSG(got == errs[i].want, "token error %zu: %s -> %s", i, errs[i].body,
                  lt_err_name(got));
    }
    lt_gmail_token_error(400,
                         S("{\"error\":\"invalid_grant\",\"error_description\":\"Token has "
                           "been expired or revoked.\"}"),
                         e, sizeof(e));
    CHECK_MSG(strstr(e, "invalid_grant") && strstr(e, "expired or revoked"), "%s", e);
}

static void test_profile_list(void)
{
    char e[256];
    uint64_t h = 0;
    CHECK_INT(lt_gmail_parse_profile(S("{\"emailAddress\":\"a@b.c\",\"messagesTotal\":3,"
                                       "\"historyId\":\"18446744073709551615\"}"),
                                     &h, e, sizeof(e)),
              LT_OK);
    CHECK(h == UINT64_MAX);
    CHECK_INT(
        lt_gmail_parse_profile(S("{\"historyId\":\"18446744073709551616\"}"), &h, e, sizeof(e)),
        LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_profile(S("{\"historyId\":\"12x\"}"), &h, e, sizeof(e)),
              LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_profile(S("{\"historyId\":1234}"), &h, e, sizeof(e)), LT_OK);
    CHECK(h == 1234);
    CHECK_INT(lt_gmail_parse_profile(S("{}"), &h, e, sizeof(e)), LT_ERR_TEMPORARY);

    lt_gmail_page_t p;
    CHECK_INT(lt_gmail_parse_list(S("{\"messages\":[{\"id\":\"18c1\",\"threadId\":\"18c0\"},"
                                    "{\"id\":\"18c2\"}],\"nextPageToken\":\"0815\","
                                    "\"resultSizeEstimate\":2}"),
                                  &p, e, sizeof(e)),
              LT_OK);
    CHECK_INT(p.n, 2);
    CHECK_STR(p.refs[0].id, "18c1");
    CHECK_STR(p.refs[0].thread_id, "18c0");
    CHECK_STR(p.refs[1].thread_id, "");
    CHECK_STR(p.next_page_token, "0815");
    CHECK_INT(p.result_size_estimate, 2);
    lt_gmail_page_free(&p);
    CHECK_INT(lt_gmail_parse_list(S("{\"resultSizeEstimate\":0}"), &p, e, sizeof(e)), LT_OK);
    CHECK_INT(p.n, 0);
    CHECK(p.next_page_token == NULL);
    CHECK_INT(p.result_size_estimate, 0);
    lt_gmail_page_free(&p);
    /* resultSizeEstimate: the whole result's estimate (may exceed this page);
     * a string (int64 convention) is read too; absent or odd: -1, never an error */
    static const struct {
        const char *body;
        int64_t want;
    } k_est[] = {
        {"{\"messages\":[{\"id\":\"1\"}],\"nextPageToken\":\"t\",\"resultSizeEstimate\":1234}",
         1234},
        {"{\"messages\":[{\"id\":\"1\"}],\"resultSizeEstimate\":\"4294967296\"}", 4294967296LL},
        {"{\"messages\":[{\"id\":\"1\"}]}", -1},
        {"{\"resultSizeEstimate\":-3}", -1},
        {"{\"resultSizeEstimate\":2.5}", -1},
        {"{\"resultSizeEstimate\":\"12x\"}", -1},
        {"{\"resultSizeEstimate\":null}", -1},
        {"{\"resultSizeEstimate\":\"18446744073709551615\"}", -1}, /* > INT64_MAX */
        {"{\"resultSizeEstimate\":[1]}", -1},
    };
    for (size_t i = 0; i < sizeof(k_est) / sizeof(k_est[0]); i++) {
        CHECK_INT(lt_gmail_parse_list(k_est[i].body, strlen(k_est[i].body), &p, e, sizeof(e)),
                  LT_OK);
        CHECK_MSG(p.result_size_estimate == k_est[i].want, "estimate of %s: %lld", k_est[i].body,
                  (long long)p.result_size_estimate);
        lt_gmail_page_free(&p);
    }
    /* an id that would change the URL it is pasted into */
    CHECK_INT(
        lt_gmail_parse_list(S("{\"messages\":[{\"id\":\"../profile?x=\"}]}"), &p, e, sizeof(e)),
        LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_list(S("{\"messages\":{\"id\":\"1\"}}"), &p, e, sizeof(e)),
              LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_list(S("{\"messages\":[{\"id\":\"1\"}],\"nextPageToken\":\"a\\nb\"}"),
                                  &p, e, sizeof(e)),
              LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_list(S("{\"messages\":[{\"id\":\"1\"},"), &p, e, sizeof(e)),
              LT_ERR_TEMPORARY);
}

static const char *k_history =
    "{\"history\":["
    "{\"id\":\"101\",\"messages\":[{\"id\":\"a1\",\"threadId\":\"t1\"}],"
    " \"messagesAdded\":[{\"message\":{\"id\":\"a1\",\"threadId\":\"t1\",\"labelIds\":[\"INBOX\"]}}"
    "]},"
    "{\"id\":\"105\",\"messages\":[{\"id\":\"a2\",\"threadId\":\"t2\"}],"
    " \"labelsAdded\":[{\"message\":{\"id\":\"a2\",\"threadId\":\"t2\"},\"labelIds\":[\"INBOX\"]}]}"
    ","
    "{\"id\":\"107\",\"messages\":[{\"id\":\"a3\",\"threadId\":\"t3\"}],"
    " \"labelsAdded\":[{\"message\":{\"id\":\"a3\",\"threadId\":\"t3\"},\"labelIds\":[\"STARRED\"]}"
    "]},"
    "{\"id\":\"109\",\"messages\":[{\"id\":\"a1\",\"threadId\":\"t1\"}],"
    " \"labelsAdded\":[{\"message\":{\"id\":\"a1\",\"threadId\":\"t1\"},\"labelIds\":[\"INBOX\"]}]}"
    ","
    "{\"id\":\"110\",\"messages\":[{\"id\":\"a4\",\"threadId\":\"t4\"}],"
    " \"messagesDeleted\":[{\"message\":{\"id\":\"a4\",\"threadId\":\"t4\"}}]}"
    "],\"nextPageToken\":\"MTEw\",\"historyId\":\"120\"}";

static void test_history(void)
{
    char e[256];
    lt_gmail_page_t p;
    CHECK_INT(lt_gmail_parse_history(S(k_history), "INBOX", &p, e, sizeof(e)), LT_OK);
    /* a1 added, a2 labelled INBOX; a3 STARRED only; a1 again kept once; a4 deleted */
    CHECK_INT(p.n, 2);
    CHECK_INT(p.result_size_estimate, -1); /* history.list has none */
    CHECK_STR(p.refs[0].id, "a1");
    CHECK_INT(p.refs[0].history_id, 101);
    CHECK_STR(p.refs[1].id, "a2");
    CHECK_INT(p.refs[1].history_id, 105);
    CHECK_INT(p.history_id, 120);
    CHECK_INT(p.last_record_id, 110);
    CHECK_STR(p.next_page_token, "MTEw");
    lt_gmail_page_free(&p);
    /* no label (search scope): only messagesAdded */
    CHECK_INT(lt_gmail_parse_history(S(k_history), NULL, &p, e, sizeof(e)), LT_OK);
    CHECK_INT(p.n, 1);
    lt_gmail_page_free(&p);
    CHECK_INT(lt_gmail_parse_history(S("{\"historyId\":\"5\"}"), "INBOX", &p, e, sizeof(e)), LT_OK);
    CHECK_INT(p.n, 0);
    CHECK_INT(p.history_id, 5);
    lt_gmail_page_free(&p);
    static const char *bad[] = {
        "{\"history\":[]}",                                           /* no historyId */
        "{\"history\":{},\"historyId\":\"5\"}",                       /* not an array */
        "{\"history\":[{\"messagesAdded\":[]}],\"historyId\":\"5\"}", /* record without id */
        "{\"history\":[{\"id\":\"9\"},{\"id\":\"8\"}],\"historyId\":\"10\"}", /* out of order */
        "{\"history\":[{\"id\":\"11\"}],\"historyId\":\"10\"}", /* beyond the mailbox */
        "{\"history\":[{\"id\":\"3\",\"messagesAdded\":[{\"message\":{}}]}],\"historyId\":\"5\"}",
        "{\"history\":[{\"id\":\"3\",\"messagesAdded\":{}}],\"historyId\":\"5\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lt_err_t r = lt_gmail_parse_history(S(bad[i]), "INBOX", &p, e, sizeof(e));
        CHECK_MSG(r == LT_ERR_TEMPORARY && p.refs == NULL, "history bad %zu: %s", i, bad[i]);
    }
}

/* Every entry, in order, for change tracking: kinds, the message's labels
 * after the record, the labels a record added or removed. */
static void test_history_all(void)
{
    char e[256];
    lt_gmail_hist_t h;
    static const char *body =
        "{\"history\":["
        "{\"id\":\"101\",\"messagesAdded\":[{\"message\":{\"id\":\"a1\",\"threadId\":\"t1\","
        "\"labelIds\":[\"INBOX\",\"UNREAD\"]}}]},"
        "{\"id\":\"105\",\"labelsAdded\":[{\"message\":{\"id\":\"a1\",\"threadId\":\"t1\","
        "\"labelIds\":[\"INBOX\",\"UNREAD\",\"Label_7\"]},\"labelIds\":[\"Label_7\"]}]},"
        "{\"id\":\"106\",\"labelsRemoved\":[{\"message\":{\"id\":\"a1\",\"threadId\":\"t1\","
        "\"labelIds\":[\"Label_7\"]},\"labelIds\":[\"INBOX\",\"UNREAD\"]}]},"
        "{\"id\":\"110\",\"messagesDeleted\":[{\"message\":{\"id\":\"a4\",\"threadId\":\"t4\"}}]}"
        "],\"nextPageToken\":\"MTEw\",\"historyId\":\"120\"}";
    CHECK_INT(lt_gmail_parse_history_all(S(body), &h, e, sizeof(e)), LT_OK);
    CHECK_INT(h.n, 4);
    CHECK_INT(h.e[0].kind, LT_GMAIL_HIST_ADDED);
    CHECK_STR(h.e[0].ref.id, "a1");
    CHECK_INT(h.e[0].ref.history_id, 101);
    CHECK_STR(h.e[0].labels, "INBOX,UNREAD");
    CHECK(h.e[0].changed == NULL);
    CHECK_INT(h.e[1].kind, LT_GMAIL_HIST_LABELS_ADDED);
    CHECK_STR(h.e[1].labels, "INBOX,UNREAD,Label_7");
    CHECK_STR(h.e[1].changed, "Label_7");
    CHECK_INT(h.e[2].kind, LT_GMAIL_HIST_LABELS_REMOVED);
    CHECK_STR(h.e[2].labels, "Label_7");
    CHECK_STR(h.e[2].changed, "INBOX,UNREAD");
    CHECK(lt_gmail_labels_have(h.e[2].changed, "UNREAD"));
    CHECK(lt_gmail_labels_have(h.e[2].changed, "INBOX"));
    CHECK(!lt_gmail_labels_have(h.e[2].changed, "INBO"));
    CHECK(!lt_gmail_labels_have(NULL, "INBOX"));
    CHECK_INT(h.e[3].kind, LT_GMAIL_HIST_DELETED);
    CHECK_STR(h.e[3].ref.id, "a4");
    CHECK(h.e[3].labels == NULL); /* absent: not "no labels" */
    CHECK_INT(h.page.history_id, 120);
    CHECK_INT(h.page.last_record_id, 110);
    CHECK_STR(h.page.next_page_token, "MTEw");
    lt_gmail_hist_free(&h);
    static const char *bad[] = {
        "{\"history\":[{\"id\":\"3\",\"labelsAdded\":[{\"message\":{\"id\":\"a\"},"
        "\"labelIds\":[\"bad id\"]}]}],\"historyId\":\"5\"}",
        "{\"history\":[{\"id\":\"3\",\"messagesDeleted\":[{\"message\":{\"id\":\"a\","
        "\"labelIds\":\"INBOX\"}}]}],\"historyId\":\"5\"}",
        "{\"history\":[{\"id\":\"3\",\"labelsRemoved\":[{}]}],\"historyId\":\"5\"}",
        "{\"history\":[{\"id\":\"9\"},{\"id\":\"8\"}],\"historyId\":\"10\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lt_err_t r = lt_gmail_parse_history_all(S(bad[i]), &h, e, sizeof(e));
        CHECK_MSG(r == LT_ERR_TEMPORARY && h.e == NULL, "history_all bad %zu: %s", i, bad[i]);
    }
}

static void test_labels(void)
{
    char e[256], id[LT_GMAIL_ID_MAX + 1];
    const char *body = "{\"labels\":[{\"id\":\"INBOX\",\"name\":\"INBOX\",\"type\":\"system\"},"
                       "{\"id\":\"Label_12\",\"name\":\"Receipts\",\"type\":\"user\"}]}";
    CHECK_INT(lt_gmail_parse_labels_find(S(body), "receipts", id, e, sizeof(e)), LT_OK);
    CHECK_STR(id, "Label_12");
    CHECK_INT(lt_gmail_parse_labels_find(S(body), "Label_12", id, e, sizeof(e)), LT_OK);
    CHECK_STR(id, "Label_12");
    CHECK_INT(lt_gmail_parse_labels_find(S(body), "Travel", id, e, sizeof(e)), LT_ERR_NOT_FOUND);
}

static void test_message(void)
{
    char e[256];
    lt_buf_t *raw = lt_buf_new(64);
    lt_gmail_message_t m;
    /* labelIds: joined, absent vs empty, refused when not ids */
    CHECK_INT(lt_gmail_parse_message(S("{\"id\":\"18c\",\"labelIds\":[\"INBOX\",\"Label_3\"]}"), &m,
                                     NULL, e, sizeof(e)),
              LT_OK);
    CHECK_STR(m.labels, "INBOX,Label_3");
    CHECK_INT(m.has_labels, 1);
    CHECK_INT(lt_gmail_parse_message(S("{\"id\":\"18c\",\"labelIds\":[]}"), &m, NULL, e, sizeof(e)),
              LT_OK);
    CHECK_STR(m.labels, "");
    CHECK_INT(m.has_labels, 1);
    CHECK_INT(lt_gmail_parse_message(S("{\"id\":\"18c\"}"), &m, NULL, e, sizeof(e)), LT_OK);
    CHECK_INT(m.has_labels, 0);
    {
        /* a list longer than the cap: the answer is kept, its labels unknown */
        lt_buf_t *b = lt_buf_new(1 << 20);
        lt_buf_appendf(b, "{\"id\":\"18c\",\"labelIds\":[");
        for (int i = 0; i < 2000; i++)
            lt_buf_appendf(b, "%s\"Label_%d\"", i ? "," : "", 100000 + i);
        lt_buf_appendf(b, "]}");
        CHECK_INT(lt_gmail_parse_message(lt_buf_str(b), lt_buf_len(b), &m, NULL, e, sizeof(e)),
                  LT_OK);
        CHECK_INT(m.labels_over, 1);
        CHECK_STR(m.labels, "");
        lt_buf_destroy(b);
    }
    CHECK_INT(lt_gmail_parse_message(S("{\"id\":\"18c\",\"labelIds\":[\"a,b\"]}"), &m, NULL, e,
                                     sizeof(e)),
              LT_ERR_TEMPORARY);
    /* "From: a\r\n\r\nhi?>" in base64url: '-' and '_' and no padding */
    CHECK_INT(lt_gmail_parse_message(S("{\"id\":\"18c\",\"threadId\":\"17a\",\"historyId\":\"99\","
                                       "\"internalDate\":\"1709251200000\","
                                       "\"raw\":\"RnJvbTogYQ0KDQpoaT8-\"}"),
                                     &m, raw, e, sizeof(e)),
              LT_OK);
    CHECK_STR(m.id, "18c");
    CHECK_STR(m.thread_id, "17a");
    CHECK_INT(m.history_id, 99);
    CHECK_INT(m.internal_date_ms, 1709251200000LL);
    CHECK_INT(lt_buf_len(raw), 15);
    CHECK(!memcmp(lt_buf_data(raw), "From: a\r\n\r\nhi?>", 15));
    /* minimal: no raw needed */
    CHECK_INT(
        lt_gmail_parse_message(S("{\"id\":\"18c\",\"historyId\":\"7\"}"), &m, NULL, e, sizeof(e)),
        LT_OK);
    CHECK_INT(m.history_id, 7);
    CHECK_INT(lt_gmail_parse_message(S("{\"id\":\"18c\"}"), &m, raw, e, sizeof(e)),
              LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_message(S("{\"id\":\"18c\",\"raw\":\"!!!!\"}"), &m, raw, e, sizeof(e)),
              LT_ERR_TEMPORARY);
    CHECK_INT(lt_gmail_parse_message(S("{\"id\":\"18c\",\"internalDate\":\"-5\",\"raw\":\"\"}"), &m,
                                     raw, e, sizeof(e)),
              LT_ERR_TEMPORARY);
    /* over the cap */
    lt_buf_t *small = lt_buf_new(4);
    CHECK_INT(lt_gmail_parse_message(S("{\"id\":\"1\",\"raw\":\"QUFBQUFBQUFBQQ\"}"), &m, small, e,
                                     sizeof(e)),
              LT_ERR_TOO_BIG);
    lt_buf_destroy(small);

    static const struct {
        const char *in;
        const char *out; /* NULL: invalid */
    } b64[] = {
        {"", ""},        {"QQ", "A"},         {"QQ==", "A"},   {"QUI", "AB"},
        {"QUJD", "ABC"}, {"QU\r\nJD", "ABC"}, {"Q", NULL},     {"QQ=", NULL},
        {"QQ=A", NULL},  {"Q*==", NULL},      {"QUJD=", NULL},
    };
    for (size_t i = 0; i < sizeof(b64) / sizeof(b64[0]); i++) {
        lt_buf_reset(raw);
        lt_err_t r = lt_gmail_b64url_decode(b64[i].in, strlen(b64[i].in), raw, e, sizeof(e));
        if (b64[i].out)
            CHECK_MSG(r == LT_OK && !strcmp(lt_buf_str(raw), b64[i].out), "b64 %zu (%s)", i,
                      b64[i].in);
        else
            CHECK_MSG(r == LT_ERR_INVALID, "b64 %zu (%s) should fail", i, b64[i].in);
    }
    lt_buf_destroy(raw);
}

static void test_classify(void)
{
    static const struct {
        long status;
        const char *body;
        lt_gmail_action_t action;
        int quota;
        lt_err_t err;
    } t[] = {
        {429,
         "{\"error\":{\"code\":429,\"message\":\"User-rate limit exceeded.\",\"errors\":[{"
         "\"message\":\"x\",\"domain\":\"usageLimits\",\"reason\":\"rateLimitExceeded\"}],"
         "\"status\":\"RESOURCE_EXHAUSTED\"}}",
         LT_GMAIL_RETRY, 1, LT_OK},
        {403,
         "{\"error\":{\"code\":403,\"message\":\"User Rate Limit Exceeded\",\"errors\":[{"
         "\"reason\":\"userRateLimitExceeded\"}]}}",
         LT_GMAIL_RETRY, 1, LT_OK},
        {403, "{\"error\":{\"errors\":[{\"reason\":\"rateLimitExceeded\"}]}}", LT_GMAIL_RETRY, 1,
         LT_OK},
        {403,
         "{\"error\":{\"code\":403,\"message\":\"Delegation denied\",\"errors\":[{"
         "\"reason\":\"forbidden\"}]}}",
         LT_GMAIL_FAIL, 0, LT_ERR_REAUTH},
        {401, "{\"error\":{\"code\":401,\"errors\":[{\"reason\":\"authError\"}]}}",
         LT_GMAIL_REFRESH, 0, LT_OK},
        {404, "{\"error\":{\"code\":404,\"errors\":[{\"reason\":\"notFound\"}]}}",
         LT_GMAIL_NOT_FOUND, 0, LT_ERR_NOT_FOUND},
        {404, "<html>Error 404 (Not Found)!!1</html>", LT_GMAIL_NOT_FOUND, 0, LT_ERR_NOT_FOUND},
        {500, "{\"error\":{\"code\":500,\"errors\":[{\"reason\":\"backendError\"}]}}",
         LT_GMAIL_RETRY, 0, LT_OK},
        {503, "", LT_GMAIL_RETRY, 0, LT_OK},
        {502, "{\"error\": {", LT_GMAIL_RETRY, 0, LT_OK},
        {400, "{\"error\":{\"code\":400,\"errors\":[{\"reason\":\"invalidArgument\"}]}}",
         LT_GMAIL_FAIL, 0, LT_ERR_FINAL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        lt_gmail_verdict_t v;
        lt_gmail_classify(t[i].status, t[i].body, strlen(t[i].body), &v);
        CHECK_MSG(v.action == t[i].action && v.quota == t[i].quota && v.err == t[i].err,
                  "classify %zu: HTTP %ld -> action %d quota %d err %s", i, t[i].status,
                  (int)v.action, v.quota, lt_err_name(v.err));
    }
    lt_gmail_verdict_t v;
    lt_gmail_classify(t[0].status, t[0].body, strlen(t[0].body), &v);
    CHECK_STR(v.reason, "rateLimitExceeded");
    CHECK_STR(v.message, "User-rate limit exceeded.");
    CHECK_INT(v.quota_kind, 1); /* the user's limit, whatever the reason says */

    /* which limit a quota answer names: the pacer lowers that user's or project's rate */
    struct {
        long status;
        const char *body;
        int kind;
    } k[] = {
        {403,
         "{\"error\":{\"code\":403,\"message\":\"User Rate Limit Exceeded\",\"errors\":[{"
         "\"reason\":\"userRateLimitExceeded\"}]}}",
         1},
        {429,
         "{\"error\":{\"code\":429,\"message\":\"User-rate limit exceeded.\",\"errors\":[{"
         "\"reason\":\"userRateLimitExceeded\"}]}}",
         1},
        {403,
         "{\"error\":{\"code\":403,\"message\":\"Rate Limit Exceeded\",\"errors\":[{"
         "\"reason\":\"rateLimitExceeded\"}]}}",
         2},
        {429,
         "{\"error\":{\"code\":429,\"message\":\"Too many concurrent requests for user\","
         "\"errors\":[{\"reason\":\"rateLimitExceeded\"}]}}",
         0},
        {429, "", 1},
    };
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
        lt_gmail_classify(k[i].status, k[i].body, strlen(k[i].body), &v);
        CHECK_MSG(v.quota == 1 && v.quota_kind == k[i].kind, "quota kind %zu: %d (want %d)", i,
                  v.quota_kind, k[i].kind);
    }
}

static void test_scope_and_dates(void)
{
    char l[LT_GMAIL_ID_MAX + 1], q[128], e[128];
    int sys = 0;
    CHECK_INT(lt_sync_gmail_scope_label("label:INBOX", l, &sys), 1);
    CHECK_STR(l, "INBOX");
    CHECK_INT(sys, 1);
    CHECK_INT(lt_sync_gmail_scope_label("in:sent", l, &sys), 1);
    CHECK_STR(l, "SENT");
    CHECK_INT(lt_sync_gmail_scope_label("label:category-promotions", l, &sys), 1);
    CHECK_STR(l, "CATEGORY_PROMOTIONS");
    CHECK_INT(lt_sync_gmail_scope_label("label:Receipts", l, &sys), 1);
    CHECK_STR(l, "Receipts");
    CHECK_INT(sys, 0);
    CHECK_INT(lt_sync_gmail_scope_label("in:anywhere", l, &sys), 0);
    CHECK_INT(lt_sync_gmail_scope_label("label:INBOX -is:read", l, &sys), 0);
    CHECK_INT(lt_sync_gmail_scope_label("from:boss@example.com", l, &sys), 0);
    CHECK_INT(lt_sync_gmail_scope_label("label:", l, &sys), 0);

    CHECK_INT(lt_sync_gmail_date_query("2024-03-02", "2024-03-02", q, sizeof(q), e, sizeof(e)),
              LT_OK);
    CHECK_STR(q, "after:1709337600 before:1709424000");
    CHECK_INT(lt_sync_gmail_date_query("2024-02-28", "2024-03-01", q, sizeof(q), e, sizeof(e)),
              LT_OK);
    CHECK_STR(q, "after:1709078400 before:1709337600"); /* leap day included */
    CHECK_INT(lt_sync_gmail_date_query("2024-03-02", "2024-03-01", q, sizeof(q), e, sizeof(e)),
              LT_ERR_FINAL);
    CHECK_INT(lt_sync_gmail_date_query("2024/03/02", "2024-03-03", q, sizeof(q), e, sizeof(e)),
              LT_ERR_FINAL);
}

/* Progress of a listing: the estimate is of the whole result. */
static void test_list_remaining(void)
{
    static const struct {
        int64_t estimate;
        uint64_t listed;
        int more;
        int64_t want;
    } t[] = {
        {1200, 500, 1, 700},  /* first page of ~1200 */
        {1200, 1000, 1, 200}, /* second page */
        {1200, 1100, 0, 0},   /* last page: exact, whatever the estimate said */
        {300, 500, 1, 0},     /* estimate already exceeded: a lower bound */
        {500, 500, 1, 0},
        {-1, 500, 1, 0}, /* no estimate */
        {0, 0, 0, 0},    /* empty scope */
        {INT64_MAX, 0, 1, INT64_MAX},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        CHECK_MSG(lt_sync_gmail_list_remaining(t[i].estimate, t[i].listed, t[i].more) == t[i].want,
                  "remaining %zu: %lld", i,
                  (long long)lt_sync_gmail_list_remaining(t[i].estimate, t[i].listed, t[i].more));
}

int main(void)
{
    test_token();
    test_profile_list();
    test_history();
    test_history_all();
    test_labels();
    test_message();
    test_classify();
    test_scope_and_dates();
    test_list_remaining();
    return lt_test_done("test_gmail_json");
}
