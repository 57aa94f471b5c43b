/* lt_gmail_json: pure parsers of the Gmail API v1 and Google OAuth 2.0
 * response shapes Lattice uses (json-c). No I/O; every input is untrusted:
 * malformed, truncated or oddly typed JSON gives LT_ERR_TEMPORARY with a
 * reason (Google never sends it on purpose: a proxy cut it, so a retry is
 * the right answer), never a crash.
 *
 * Shapes (https://developers.google.com/gmail/api/reference/rest):
 *   token      {"access_token","expires_in","token_type","scope"}
 *              error: {"error":"invalid_grant","error_description":"..."}
 *   profile    {"emailAddress","messagesTotal","threadsTotal","historyId":"<u64>"}
 *   list       {"messages":[{"id","threadId"}],"nextPageToken","resultSizeEstimate"}
 *   history    {"history":[{"id","messages":[..],"messagesAdded":[{"message":{..}}],
 *               "messagesDeleted":[{"message":{..}}],
 *               "labelsAdded":[{"message":{..},"labelIds":[..]}],
 *               "labelsRemoved":[{"message":{..},"labelIds":[..]}]}],"nextPageToken","historyId"}
 *              (a record's message: {"id","threadId","labelIds":[..]})
 *   labels     {"labels":[{"id","name","type"}]}
 *   watch      {"historyId":"<u64>","expiration":"<epoch ms>"}
 *   message    {"id","threadId","labelIds":[..],"historyId","internalDate":"<ms>",
 *               "raw":"<base64url>"}
 *   error      {"error":{"code","message","status","errors":[{"reason","domain","message"}]}}
 *
 * Ownership: results own their memory; free with the matching _free(). */
#ifndef LT_GMAIL_JSON_H
#define LT_GMAIL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"

/* Gmail ids (message, thread, label, page token) are URL-safe; anything
 * else is refused (they are pasted into request URLs). */
#define LT_GMAIL_ID_MAX 128
#define LT_GMAIL_TOKEN_MAX 4096 /* access tokens, page tokens */

/* 1 when s[0..len) is 1..LT_GMAIL_ID_MAX of [A-Za-z0-9_-]. */
int lt_gmail_id_valid(const char *s, size_t len);

typedef struct {
    char access_token[LT_GMAIL_TOKEN_MAX + 1];
    int64_t expires_in_s;
} lt_gmail_token_t;

/* A 200 answer of the token endpoint. */
lt_err_t lt_gmail_parse_token(const char *body, size_t len, lt_gmail_token_t *out, char *errstr,
                              size_t errstr_size);
/* A non-200 answer of the token endpoint: invalid_grant (refresh token
 * expired or revoked) and invalid_client / unauthorized_client give
 * LT_ERR_REAUTH; 5xx, 429 and unparseable bodies LT_ERR_TEMPORARY; other
 * 4xx LT_ERR_FINAL. errstr gets "error: description" (never a token). */
lt_err_t lt_gmail_token_error(long http_status, const char *body, size_t len, char *errstr,
                              size_t errstr_size);

lt_err_t lt_gmail_parse_profile(const char *body, size_t len, uint64_t *history_id, char *errstr,
                                size_t errstr_size);

/* users.watch: {"historyId": "<u64>", "expiration": "<epoch ms>"}. */
typedef struct {
    uint64_t history_id;
    int64_t expiration_ms; /* epoch ms */
} lt_gmail_watch_reply_t;

lt_err_t lt_gmail_parse_watch(const char *body, size_t len, lt_gmail_watch_reply_t *out,
                              char *errstr, size_t errstr_size);

typedef struct {
    char id[LT_GMAIL_ID_MAX + 1];
    char thread_id[LT_GMAIL_ID_MAX + 1];
    uint64_t history_id; /* history.list: the record that named it; else 0 */
} lt_gmail_ref_t;

typedef struct {
    lt_gmail_ref_t *refs;
    size_t n;
    char *next_page_token;   /* NULL on the last page */
    uint64_t history_id;     /* history.list: the mailbox's current historyId */
    uint64_t last_record_id; /* history.list: id of the last record of the page, 0 none */
    /* messages.list: Google's estimate of the size of the WHOLE result (all
     * pages, not what is left), often rough; -1 when absent or not a
     * non-negative integer (never an error: only progress uses it). */
    int64_t result_size_estimate;
} lt_gmail_page_t;

void lt_gmail_page_free(lt_gmail_page_t *p);

/* messages.list. result_size_estimate from "resultSizeEstimate" (a JSON
 * integer or decimal string). */
lt_err_t lt_gmail_parse_list(const char *body, size_t len, lt_gmail_page_t *out, char *errstr,
                             size_t errstr_size);

/* history.list: the messages added to the scope, in record order. A
 * messagesAdded entry always counts; a labelsAdded entry counts when
 * `label` (may be NULL) is among its labelIds. A message named twice is
 * kept once (its first record). */
lt_err_t lt_gmail_parse_history(const char *body, size_t len, const char *label,
                                lt_gmail_page_t *out, char *errstr, size_t errstr_size);

/* Every entry of a history.list page, in record order (within a record:
 * messagesAdded, messagesDeleted, labelsAdded, labelsRemoved), unfiltered
 * and not deduplicated: what change tracking walks. */
typedef enum {
    LT_GMAIL_HIST_ADDED = 0,          /* messagesAdded */
    LT_GMAIL_HIST_DELETED = 1,        /* messagesDeleted */
    LT_GMAIL_HIST_LABELS_ADDED = 2,   /* labelsAdded */
    LT_GMAIL_HIST_LABELS_REMOVED = 3, /* labelsRemoved */
} lt_gmail_hist_kind_t;

/* Label id lists are kept as text: the ids joined by ',' (a label id never
 * holds one, lt_gmail_id_valid). At most this long. */
#define LT_GMAIL_LABELS_TEXT_MAX 16384

typedef struct {
    lt_gmail_hist_kind_t kind;
    lt_gmail_ref_t ref; /* history_id: the record's id */
    char *labels;       /* the message's labelIds after the record; NULL when absent */
    int labels_over;    /* labelIds longer than LT_GMAIL_LABELS_TEXT_MAX: labels NULL */
    char *changed;      /* labelsAdded/Removed: the labelIds added/removed ("" when
                           too long); else NULL */
} lt_gmail_hist_entry_t;

typedef struct {
    lt_gmail_page_t page; /* next_page_token, history_id, last_record_id; no refs */
    lt_gmail_hist_entry_t *e;
    size_t n;
} lt_gmail_hist_t;

lt_err_t lt_gmail_parse_history_all(const char *body, size_t len, lt_gmail_hist_t *out,
                                    char *errstr, size_t errstr_size);
void lt_gmail_hist_free(lt_gmail_hist_t *h);
/* 1 when the ','-joined label text `labels` (may be NULL) holds `label`. */
int lt_gmail_labels_have(const char *labels, const char *label);

/* labels.list: the id of the label whose id or name equals `name` (names
 * case-insensitively). LT_ERR_NOT_FOUND when none. */
lt_err_t lt_gmail_parse_labels_find(const char *body, size_t len, const char *name,
                                    char out_id[LT_GMAIL_ID_MAX + 1], char *errstr,
                                    size_t errstr_size);

typedef struct {
    char id[LT_GMAIL_ID_MAX + 1];
    char thread_id[LT_GMAIL_ID_MAX + 1];
    uint64_t history_id;
    int64_t internal_date_ms;
    /* labelIds joined by ',' ("" none); has_labels 0 when the field was absent;
     * labels_over 1 when they do not fit (labels "": not known) */
    char labels[LT_GMAIL_LABELS_TEXT_MAX];
    int has_labels, labels_over;
} lt_gmail_message_t;

/* messages.get. With `raw` non-NULL the "raw" field is required and its
 * base64url text is decoded into it (LT_ERR_TOO_BIG at raw's cap); with raw
 * NULL (format=minimal) only the metadata is read. */
lt_err_t lt_gmail_parse_message(const char *body, size_t len, lt_gmail_message_t *out,
                                lt_buf_t *raw, char *errstr, size_t errstr_size);

/* Decode base64url (RFC 4648 section 5; '+' '/' and '=' padding also
 * accepted, whitespace skipped) and append to out. LT_ERR_INVALID on a bad
 * character or length, LT_ERR_TOO_BIG at out's cap. */
lt_err_t lt_gmail_b64url_decode(const char *in, size_t len, lt_buf_t *out, char *errstr,
                                size_t errstr_size);

/* What to do with a non-2xx answer of the Gmail API. */
typedef enum {
    LT_GMAIL_RETRY = 1, /* 429, 403 rateLimitExceeded/userRateLimitExceeded, 5xx: back off */
    LT_GMAIL_REFRESH,   /* 401: refresh the access token, then retry */
    LT_GMAIL_NOT_FOUND, /* 404 (history expired, message deleted) */
    LT_GMAIL_FAIL,      /* anything else: *err says the class */
} lt_gmail_action_t;

typedef struct {
    lt_gmail_action_t action;
    lt_err_t err;      /* for LT_GMAIL_FAIL: FINAL, REAUTH (403 auth) or INVALID (400) */
    int quota;         /* 1: a rate-limit answer (429 or 403 rate limit) */
    int quota_kind;    /* with quota: 1 the user's limit, 2 the project's, 0 concurrency */
    char reason[64];   /* errors[0].reason, "" if none */
    char message[256]; /* error.message, "" if none */
} lt_gmail_verdict_t;

/* Classify an answer by status and Google's error body (which may be
 * missing, HTML or garbage: the status decides then). */
void lt_gmail_classify(long http_status, const char *body, size_t len, lt_gmail_verdict_t *out);

/* A decimal uint64 given as a JSON string (Google's int64 convention) or a
 * non-negative JSON integer (below json-c's saturation at INT64_MAX) into
 * *out: 0, or -1 for anything else. */
struct json_object;
int lt_gmail_json_uint64(struct json_object *v, uint64_t *out);

#endif
