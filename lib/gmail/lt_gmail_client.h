/* lt_gmail_client: the Gmail API v1 over libcurl multi, for one account.
 *
 * - OAuth 2.0 refresh-token flow: an access token is obtained on first use,
 *   cached until 60 s before it expires, and refreshed on a 401. With a
 *   shared lt_gmail_tokens_t cache the token outlives the client: the next
 *   client of the same grant starts with it (no token request). The token
 *   endpoint's invalid_grant / invalid_client give LT_ERR_REAUTH at once (no
 *   retry loop); a 401 that persists after fresh tokens too.
 * - Quota: Google's per-method unit costs (getProfile 1, history.list 2,
 *   messages.list/get 5, labels.list 1, watch 100, stop 50) are taken from
 *   the pacer's buckets of the user (user_units_per_min / 60 per second,
 *   one second of burst less what may be in flight) and of the project
 *   (project_units_per_min x the process's share), both starting empty, so
 *   a client never asks Google for more than the limits it knows; a quota
 *   answer lowers the rate of the user or project it names (AIMD,
 *   lt_gmail_pacer.h).
 * - Retries: 429, 403 rateLimitExceeded/userRateLimitExceeded, 5xx,
 *   network errors, truncated and malformed JSON bodies are retried with
 *   exponential backoff and full jitter, at least Retry-After (Google
 *   documents none; when one comes it pauses the whole account). After
 *   max_retries a request fails with LT_ERR_TEMPORARY and the last reason.
 * - Concurrency: up to max_inflight requests at once (HTTP/2 streams on one
 *   connection when the server speaks h2, else that many HTTP/1.1
 *   keep-alive connections).
 * - TLS always verified (ca_file, or the system store).
 *
 * Ownership: lt_gmail_new copies every string of the options; a client is
 * used by one thread. Tokens never reach logs or error strings. */
#ifndef LT_GMAIL_CLIENT_H
#define LT_GMAIL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"
#include "lt_gmail_json.h"
#include "lt_gmail_pacer.h"
#include "lt_gmail_tokens.h"
#include "lt_log.h"

typedef struct lt_gmail_s lt_gmail_t;

typedef struct {
    const char *api_url;   /* "https://gmail.googleapis.com" */
    const char *token_url; /* "https://oauth2.googleapis.com/token" */
    const char *ca_file;   /* NULL: system store */
    const char *user;      /* "me" or the mailbox address */
    const char *client_id;
    const char *client_secret;
    const char *refresh_token;
    int max_inflight;         /* >= 1 */
    double quota_units_per_s; /* older form of user_units_per_min (x 60) */
    double user_units_per_min;    /* > 0: the per-user limit; <= 0: quota_units_per_s x 60 */
    double project_units_per_min; /* <= 0: the project is not paced */
    const char *quota_user;       /* pacer name of the mailbox; NULL: a digest of the grant */
    const char *quota_project;    /* pacer name of the project; NULL: client_id */
    lt_gmail_pacer_t *pacer;      /* borrowed, may be NULL: a private one */
    int timeout_s;            /* one request */
    int max_retries;          /* per request */
    int retry_base_ms;
    int retry_max_ms;
    uint64_t max_message_bytes; /* decoded raw message cap */
    const lt_log_ctx_t *log;    /* borrowed, may be NULL */
    const volatile int *cancel; /* borrowed, may be NULL: non-zero stops at once */
    lt_gmail_tokens_t *tokens;  /* borrowed, may be NULL: access tokens shared across clients */
} lt_gmail_opts_t;

typedef struct {
    int64_t requests; /* HTTP requests sent to the API (retries included) */
    int64_t retries;
    int64_t quota_errors;  /* 429 and 403 rate-limit answers */
    int64_t quota_errors_user;    /* of them userRateLimitExceeded (the per-user limit) */
    int64_t quota_errors_project; /* of them rateLimitExceeded (the project's limit) */
    int64_t rate_cuts;            /* times a quota answer lowered a rate */
    int64_t server_errors; /* 5xx */
    int64_t units;         /* quota units spent (successful or not) */
    int64_t token_refreshes; /* requests to the token endpoint */
    int64_t token_reuses;    /* access tokens taken from the shared cache */
    int max_inflight_seen;
} lt_gmail_stats_t;

lt_gmail_t *lt_gmail_new(const lt_gmail_opts_t *opts);
/* The pacer names and limits the client's requests count against (strings
 * owned by the client). The user: quota_user, else a digest of the grant
 * (token URL, client id, refresh token, mailbox), never "me" alone: every
 * account is "me" to its own token. */
void lt_gmail_pace_key(const lt_gmail_t *c, lt_gmail_pace_t *out);
void lt_gmail_destroy(lt_gmail_t *c);
void lt_gmail_stats(const lt_gmail_t *c, lt_gmail_stats_t *out);

/* users.getProfile: the mailbox's current historyId. */
lt_err_t lt_gmail_profile(lt_gmail_t *c, uint64_t *history_id, char *errstr, size_t errstr_size);

/* labels.list: the id of a label given by id or name (NOT_FOUND if none). */
lt_err_t lt_gmail_label_id(lt_gmail_t *c, const char *name, char out[LT_GMAIL_ID_MAX + 1],
                           char *errstr, size_t errstr_size);

/* messages.list, one page of up to 500 ids. label_id and query may be NULL;
 * page_token NULL for the first page. *out: lt_gmail_page_free(). */
lt_err_t lt_gmail_list(lt_gmail_t *c, const char *label_id, const char *query,
                       const char *page_token, lt_gmail_page_t *out, char *errstr,
                       size_t errstr_size);

/* history.list (historyTypes messageAdded + labelAdded, labelId = label_id
 * when given), one page of up to 500 records. LT_ERR_NOT_FOUND when Google
 * answers 404 (startHistoryId too old: resync). */
lt_err_t lt_gmail_history(lt_gmail_t *c, uint64_t start_history_id, const char *label_id,
                          const char *page_token, lt_gmail_page_t *out, char *errstr,
                          size_t errstr_size);

/* history.list with every historyType (messageAdded, messageDeleted,
 * labelAdded, labelRemoved; change tracking), labelId = label_id when
 * given: every entry of the page (lt_gmail_parse_history_all). *out:
 * lt_gmail_hist_free(). LT_ERR_NOT_FOUND on 404 as lt_gmail_history. */
lt_err_t lt_gmail_history_all(lt_gmail_t *c, uint64_t start_history_id, const char *label_id,
                              const char *page_token, lt_gmail_hist_t *out, char *errstr,
                              size_t errstr_size);

/* Called once per id of lt_gmail_get_many, in completion order, on the
 * caller's thread. status: LT_OK (m, and raw when raw was asked for, are
 * valid for the call), LT_ERR_NOT_FOUND (deleted meanwhile), LT_ERR_TOO_BIG
 * (over max_message_bytes; reason says so). A non-LT_OK return stops the
 * run (requests in flight are dropped) and becomes its result. */
typedef lt_err_t (*lt_gmail_message_fn)(void *opaque, size_t index, lt_err_t status,
                                        const lt_gmail_message_t *m, const lt_buf_t *raw,
                                        const char *reason);

/* What messages.get returns. */
typedef enum {
    LT_GMAIL_FORMAT_MINIMAL = 0, /* id, threadId, historyId, internalDate */
    LT_GMAIL_FORMAT_RAW = 1,     /* those and the raw message */
} lt_gmail_format_t;

/* Where lt_gmail_get_many delivers: fn(opaque, ...). */
typedef struct {
    lt_gmail_message_fn fn;
    void *opaque;
} lt_gmail_message_cb_t;

/* messages.get of every id in the format, max_inflight at a time, each
 * result to cb. */
lt_err_t lt_gmail_get_many(lt_gmail_t *c, const char *const *ids, size_t n,
                           lt_gmail_format_t format, const lt_gmail_message_cb_t *cb, char *errstr,
                           size_t errstr_size);

/* users.watch: Gmail publishes a notification of each change of the
 * mailbox to the Cloud Pub/Sub topic ("projects/P/topics/T") until
 * out->expiration_ms (Google: 7 days; call again before, daily is
 * Google's advice). label_ids (nlabels of them, may be 0: every change)
 * restrict the notifications to changes of messages with (exclude = 0) or
 * without (exclude = 1) one of the labels. 100 quota units. */
lt_err_t lt_gmail_watch(lt_gmail_t *c, const char *topic, const char *const *label_ids,
                        size_t nlabels, int exclude, lt_gmail_watch_reply_t *out, char *errstr,
                        size_t errstr_size);
/* users.stop: no more notifications for the mailbox. 50 quota units. */
lt_err_t lt_gmail_stop(lt_gmail_t *c, char *errstr, size_t errstr_size);

#endif
