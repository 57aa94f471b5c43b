/* lt_sync_gmail: the Gmail connector (Gmail API v1, REST, OAuth 2.0).
 *
 * Account config_json (docs/gmail.md):
 *   {"user": "me",                                   (default "me")
 *    "label_ids": ["INBOX", "Label_12"]  |  "query": "in:inbox -category:promotions"
 *      | "scopes": ["label:INBOX", "in:sent"],        (default ["label:INBOX"])
 *    "client_id": "1234-abc.apps.googleusercontent.com",
 *    "client_secret_env": "VAR" | "client_secret_file": "/path",
 *    "refresh_token_env": "VAR" | "refresh_token_file": "/path"}
 *
 * Scopes: "label:<id or name>" and "in:<system label>" are label scopes
 * (messages.list labelIds=, history.list labelId=); anything else is a
 * Gmail search query (messages.list q=; history candidates are kept when
 * messages.list q= names them). One watermark per scope:
 * {"historyId": "<u64>"}.
 *
 * provider_message_id = Gmail message id, provider_thread_id = threadId,
 * received_at = internalDate, mailbox = the scope.
 *
 * First run: getProfile's historyId is taken BEFORE listing, the scope is
 * listed and fetched (format=raw), then the watermark is set to it.
 * Incremental: history.list from the watermark (messageAdded, and
 * labelAdded of the scope's label), messages fetched in batches, watermark
 * moved per batch to the last history record fully processed, then to the
 * mailbox's historyId. A 404 (history expired) resyncs the scope: list
 * everything again, but fetch format=raw (store + publish) only messages
 * whose historyId is beyond the old watermark; the others were ingested
 * before and have not changed since.
 * Backfill: start_date..end_date (UTC days, inclusive) as
 * q=after:<epoch> before:<epoch>; events only, the watermark never moves.
 * Credentials rejected (invalid_grant): the account is marked needs_reauth
 * and the command fails with LT_ERR_REAUTH. */
#ifndef LT_SYNC_GMAIL_H
#define LT_SYNC_GMAIL_H

#include "lt_gmail_client.h"
#include "lt_gmail_tokens.h"
#include "lt_sync.h"

typedef struct {
    const char *api_url;          /* NULL: https://gmail.googleapis.com */
    const char *token_url;        /* NULL: https://oauth2.googleapis.com/token */
    const char *ca_file;          /* NULL: system store */
    int max_inflight;             /* concurrent requests per account */
    int quota_units_per_s;        /* older form of user_units_per_min (x 60) */
    double user_units_per_min;    /* per-user limit (Google: 6,000 or 15,000) */
    double project_units_per_min; /* the project's limit (Google: 1,200,000) */
    const char *quota_project;    /* the project's name; NULL: the OAuth client id */
    const char *quota_user;       /* the mailbox's pacer name ("tenant/account"); NULL: the grant */
    lt_gmail_pacer_t *pacer;      /* the worker's pacer, may be NULL */
    lt_gmail_stats_t *stats;      /* out, may be NULL: the command's request counters */
    int timeout_s;
    int max_retries;
    int retry_base_ms;
    const volatile int *cancel; /* the slot's cancel flag, may be NULL */
    lt_gmail_tokens_t *tokens;  /* the worker's access-token cache, may be NULL */
    const char *secrets_dir;    /* LATTICE_SECRETS_DIR (lt_secret.h); NULL: no file references */
} lt_sync_gmail_opts_t;

lt_err_t lt_sync_gmail_run(lt_sync_t *s, const lt_sync_gmail_opts_t *opts, char *errstr,
                           size_t errstr_size);

/* Backfill dates ("YYYY-MM-DD", inclusive, UTC) as a Gmail query:
 * "after:<epoch s of start> before:<epoch s of the day after end>". */
lt_err_t lt_sync_gmail_date_query(const char *start_date, const char *end_date, char *out,
                                  size_t outsz, char *errstr, size_t errstr_size);

/* Split a scope: label scopes give *label (a label id or name, to resolve),
 * search scopes *query. Returns 1 for a label scope, 0 for a query. The
 * label is written to label_out (capacity LT_GMAIL_ID_MAX + 1); a label
 * that is a system label comes back in upper case with *system = 1. */
int lt_sync_gmail_scope_label(const char *scope, char *label_out, int *system);

/* Progress of a listing (first run, resync, backfill): the messages still
 * expected after the `listed` ids seen so far, from messages.list's
 * resultSizeEstimate (of the whole result; -1 unknown) and whether more
 * pages follow. 0 on the last page (the total is exact then) or when the
 * estimate is unknown or already exceeded (the total is a lower bound). */
int64_t lt_sync_gmail_list_remaining(int64_t estimate, uint64_t listed, int more);

#endif
