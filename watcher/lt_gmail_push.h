/* lt_gmail_push: Gmail push notifications arriving as Cloud Pub/Sub push
 * requests (docs/gmail-push.md).
 *
 * Pub/Sub POSTs each message of the subscription to the endpoint as
 *   {"message": {"data": base64(JSON {"emailAddress","historyId"}),
 *                "messageId", "publishTime", "attributes"},
 *    "subscription": "projects/P/subscriptions/S"}
 * and retries (with backoff) until it gets a 2xx. A request is accepted
 * only when it proves it comes from our subscription:
 *
 * - OIDC (the default for a deployment): "Authorization: Bearer <JWT>",
 *   a Google-signed RS256 token. Checked here: the signature against the
 *   keys of keys_file (Google's JWKS https://www.googleapis.com/oauth2/v3/certs,
 *   its PEM map .../oauth2/v1/certs, or PEM public keys / certificates;
 *   re-read when the file changes, so a job that refreshes the file rotates
 *   keys without a restart), alg RS256 only, iss accounts.google.com, aud
 *   = audience, exp/iat within clock_skew_s, and email = service_account
 *   with email_verified.
 * - Shared token: the push URL carries ?token=<secret>, compared in
 *   constant time. Both may be required at once.
 *
 * Answers (lt_gmail_push_handle's status): 204 accepted; 400 the envelope
 * is not a Gmail notification; 401 no or unverifiable credentials (bad
 * signature, unknown key, expired, not Google's); 403 a valid token for
 * someone else (audience, service account) or a wrong shared token;
 * 413 a body over LT_GMAIL_PUSH_BODY_MAX. Nothing is yielded unless 204.
 *
 * Threads: lt_gmail_push_handle may be called from several threads at
 * once (the key set is guarded). Nothing here logs a token. */
#ifndef LT_GMAIL_PUSH_H
#define LT_GMAIL_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include "lt_err.h"

#define LT_GMAIL_PUSH_BODY_MAX ((size_t)64 << 10) /* Gmail's envelopes are < 1 KiB */
#define LT_GMAIL_PUSH_EMAIL_MAX 320
#define LT_GMAIL_PUSH_ID_MAX 128
#define LT_GMAIL_PUSH_SUB_MAX 255

typedef struct lt_gmail_push_s lt_gmail_push_t;

typedef struct {
    const char *keys_file;       /* JWKS / PEM keys; NULL: no OIDC check */
    const char *audience;        /* the subscription's OIDC audience; required with keys_file */
    const char *service_account; /* expected "email" claim; NULL: any verified email */
    const char *token;           /* shared ?token= secret; NULL: none */
    int clock_skew_s;            /* leeway on exp and iat (e.g. 60) */
} lt_gmail_push_opts_t;

/* One notification. */
typedef struct {
    char email[LT_GMAIL_PUSH_EMAIL_MAX + 1]; /* the mailbox ("emailAddress") */
    uint64_t history_id;                     /* its historyId at publication */
    char message_id[LT_GMAIL_PUSH_ID_MAX + 1];      /* Pub/Sub's, "" when absent */
    char subscription[LT_GMAIL_PUSH_SUB_MAX + 1];   /* "" when absent */
} lt_gmail_push_note_t;

typedef struct {
    int64_t accepted;
    int64_t unauthorized; /* 401 */
    int64_t forbidden;    /* 403 */
    int64_t malformed;    /* 400, 413 */
} lt_gmail_push_stats_t;

/* Check the options and load the keys. LT_ERR_INVALID when neither
 * keys_file nor token is given, keys_file without audience, or the key
 * file holds no usable RSA key. */
lt_gmail_push_t *lt_gmail_push_new(const lt_gmail_push_opts_t *opts, char *errstr,
                                   size_t errstr_size);
void lt_gmail_push_destroy(lt_gmail_push_t *p);

/* Authenticate and parse one push request. authorization: the
 * Authorization header (NULL when absent); query_token: the URL's "token"
 * parameter (NULL when absent); now_s: Unix time (0: the clock). Returns
 * the HTTP status to answer (above); out is filled on 204 only. why gets a
 * one-line reason on any other status (no secret in it). */
int lt_gmail_push_handle(lt_gmail_push_t *p, const char *authorization, const char *query_token,
                         const char *body, size_t len, int64_t now_s, lt_gmail_push_note_t *out,
                         char *why, size_t why_size);

void lt_gmail_push_stats(lt_gmail_push_t *p, lt_gmail_push_stats_t *out);

/* The envelope parser alone (no authentication): LT_ERR_INVALID with a
 * reason for anything but a Gmail notification. */
lt_err_t lt_gmail_push_parse(const char *body, size_t len, lt_gmail_push_note_t *out,
                             char *errstr, size_t errstr_size);

/* --- a push endpoint of its own --------------------------------------------
 * For a program without an HTTP server of its own to plug
 * lt_gmail_push_handle into: a libmicrohttpd server (one internal thread)
 * answering POST <path> (other paths 404, other methods 405). fn is called
 * on the server's thread for each accepted notification, before the 204
 * is sent: it must be quick (queue it) and thread-safe. */
typedef void (*lt_gmail_push_fn)(void *opaque, const lt_gmail_push_note_t *note);

typedef struct lt_gmail_push_server_s lt_gmail_push_server_t;

typedef struct {
    const char *bind; /* NULL: 0.0.0.0 */
    int port;         /* 0: any free port (lt_gmail_push_server_port) */
    const char *path; /* NULL: "/gmail/push" */
    lt_gmail_push_fn fn;
    void *opaque;
} lt_gmail_push_server_opts_t;

/* p and opaque are borrowed: stop the server before destroying them. */
lt_gmail_push_server_t *lt_gmail_push_server_start(lt_gmail_push_t *p,
                                                   const lt_gmail_push_server_opts_t *opts,
                                                   char *errstr, size_t errstr_size);
int lt_gmail_push_server_port(const lt_gmail_push_server_t *s);
void lt_gmail_push_server_stop(lt_gmail_push_server_t *s);

#endif
