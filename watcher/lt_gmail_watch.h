/* lt_gmail_watch: the Gmail users.watch of every Gmail account a watcher
 * owns (docs/gmail-push.md).
 *
 * Per account: users.watch on the topic (LATTICE_WATCHER_GMAIL_TOPIC) with
 * the labels of the account's scopes (config_json "label_ids", or the
 * "label:"/"in:" scopes; the default scope INBOX; a search-query scope
 * watches every change), remembered expiration, renewed every renew_s
 * (Google: a watch lasts 7 days, renew daily) and always before the
 * expiration; a failed call is retried with backoff (1 min doubling to
 * 1 h, never later than the expiration allows). users.stop when the
 * account is released with stop (disabled). Notifications name the
 * mailbox by address: lt_gmail_watch_lookup maps it to the account
 * (config_json "user", case-insensitive; an account whose "user" is "me"
 * cannot be matched and is logged so).
 *
 * The Gmail calls reuse lt_gmail_client (OAuth refresh, TLS verification,
 * quota pacing, retries): lt_gmail_watch_run_due blocks for the calls it
 * makes (each bounded by the client's timeout and retries), so an event
 * loop runs it when lt_gmail_watch_next_due_ms says (a few calls a day
 * per account), or on a thread of its own.
 *
 * Threads: every function may be called from any thread (one mutex; it is
 * not held during Gmail calls), so the push endpoint's thread can call
 * lt_gmail_watch_lookup while the loop renews. Credentials are resolved
 * when an account is set and kept in memory only (wiped when dropped). */
#ifndef LT_GMAIL_WATCH_H
#define LT_GMAIL_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "lt_accounts.h"
#include "lt_err.h"
#include "lt_gmail_client.h"

typedef struct lt_gmail_watch_s lt_gmail_watch_t;

typedef struct {
    const char *topic; /* "projects/P/topics/T" (required) */
    int renew_s;       /* renewal interval (default 86400) */
    /* Client settings for every account: api_url, token_url, ca_file,
     * quota_units_per_s, timeout_s, max_retries, retry_base_ms,
     * retry_max_ms, tokens, cancel (the per-account fields are ignored). */
    lt_gmail_opts_t client;
    const char *secrets_dir; /* LATTICE_SECRETS_DIR (lt_secret.h), may be NULL */
} lt_gmail_watch_opts_t;

/* What is known of one account's watch. */
typedef struct {
    char email[321];       /* config "user" */
    int active;            /* a watch is in force (expiration_ms in the future) */
    int64_t expiration_ms; /* epoch ms, 0 = never watched */
    uint64_t history_id;   /* historyId of the last users.watch answer */
    int64_t next_ms;       /* epoch ms of the next users.watch */
    int64_t watch_calls;   /* successful users.watch calls */
    int64_t failures;      /* failed ones */
    char last_error[256];  /* "" after a success */
} lt_gmail_watch_info_t;

/* LT_ERR_INVALID without a topic. */
lt_gmail_watch_t *lt_gmail_watch_new(const lt_gmail_watch_opts_t *opts, char *errstr,
                                     size_t errstr_size);
/* Forgets the accounts (no users.stop: a watch simply expires, and a
 * replica taking the accounts over renews them). */
void lt_gmail_watch_destroy(lt_gmail_watch_t *w);

/* Add or update a Gmail account from its mail_accounts row. A new account,
 * or one whose user, labels or credentials changed, is due at once; an
 * unchanged one keeps its schedule. LT_ERR_FINAL: not a Gmail account, or
 * its config is unusable (reason in errstr; the account is not watched);
 * an account that was watched keeps its entry until released. */
lt_err_t lt_gmail_watch_set(lt_gmail_watch_t *w, const lt_account_t *a, char *errstr,
                            size_t errstr_size);

/* Stop watching an account: with stop, users.stop first (disabled
 * account; a failure is returned but the account is forgotten anyway: its
 * watch then lapses within 7 days). Without stop (another replica owns it
 * now) it is only forgotten. LT_ERR_NOT_FOUND when not watched. */
lt_err_t lt_gmail_watch_release(lt_gmail_watch_t *w, const char *tenant, const char *account_id,
                                int stop, char *errstr, size_t errstr_size);

/* users.watch for every account due at now_ms (epoch ms; 0: the clock).
 * Returns how many calls succeeded; failures are logged, counted and
 * rescheduled. */
int lt_gmail_watch_run_due(lt_gmail_watch_t *w, int64_t now_ms);

/* Milliseconds from now_ms (0: the clock) to the next due account (0 when
 * one is due now), -1 when there is none. */
int64_t lt_gmail_watch_next_due_ms(lt_gmail_watch_t *w, int64_t now_ms);

/* The account of a notification's emailAddress: tenant and account id
 * (each up to 128 characters) into the caller's buffers. NOT_FOUND when no
 * watched account has that address. */
lt_err_t lt_gmail_watch_lookup(lt_gmail_watch_t *w, const char *email, char tenant[129],
                               char account_id[129]);

/* NOT_FOUND when the account is not watched. */
lt_err_t lt_gmail_watch_info(lt_gmail_watch_t *w, const char *tenant, const char *account_id,
                             lt_gmail_watch_info_t *out);

size_t lt_gmail_watch_count(lt_gmail_watch_t *w);

#endif
