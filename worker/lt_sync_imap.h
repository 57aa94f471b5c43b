/* lt_sync_imap: the IMAP connector (Amazon WorkMail, Dovecot, any IMAP4rev1).
 *
 * Account config_json:
 *   {"host": "imap.mail.us-east-1.awsapps.com", "port": 993,
 *    "username": "user@example.com", "password_env": "LTS_<tenant>__VAR" | "password_file": "name",
 *    "folders": ["INBOX", ...],                      (folders default ["INBOX"])
 *    "imap_disable_caps": ["QRESYNC", "CONDSTORE"]}  (optional: taken as not
 *                                                     advertised; forces the fallback)
 *
 * provider_message_id = "<folder>;UIDVALIDITY=<v>;UID=<u>" (after RFC 5092's
 * IMAP URL form; the folder as UTF-8): stable and unique per account. A
 * UIDVALIDITY change makes new ids (the server says the old UIDs are void).
 *
 * Incremental (scope = one folder, or every configured folder): EXAMINE,
 * then UIDs above the watermark's last_uid in batches, one Kafka
 * transaction + watermark step per batch. UIDVALIDITY changed: confirmed in
 * a second session, then the folder is synced again from UID 1 under the
 * new validity; a server that changes it on every session flags the account.
 * Connection lost: reconnect with backoff, resume from the last durable UID.
 * Every UID of a batch is accounted for (lt_imap_uid_fetch): one the server
 * does not return is either gone (reported as expunged) or the batch fails
 * temporarily and is redone; the watermark never moves past it otherwise.
 * Folders fail independently (lt_sync_scope_done): a missing folder is
 * reported as such and the other folders still sync.
 * Change tracking (lt_sync_changes_enabled; docs/imap.md): before its new
 * messages, a folder's changes since the last sync (QRESYNC, or the
 * fallback's UID SEARCH ALL and periodic FLAGS listing:
 * lt_sync_imap_changes.h), each new message's flags right after its raw
 * event, a reset before the full listing of a new UIDVALIDITY; the
 * watermark carries highestmodseq and flags_scanned_at.
 * Backfill: folder, start_uid..end_uid; events only, the watermark never
 * moves, no changes. */
#ifndef LT_SYNC_IMAP_H
#define LT_SYNC_IMAP_H

#include "lt_sync.h"

typedef struct {
    const char *ca_file; /* NULL: system store */
    int max_reconnects;  /* per command */
    int retry_base_ms;
    const char *secrets_dir; /* LATTICE_SECRETS_DIR (lt_secret.h); NULL: no file references */
    int flags_scan_interval_s; /* LATTICE_IMAP_FLAGS_SCAN_INTERVAL_S: full FLAGS listing of a
                                  folder without QRESYNC at most this often; 0: every sync */
} lt_sync_imap_opts_t;

/* Run the command of `s`. On failure the class says what to do (temporary:
 * retry later; reauth: credentials rejected; final: account misconfigured or
 * flagged). */
lt_err_t lt_sync_imap_run(lt_sync_t *s, const lt_sync_imap_opts_t *opts, char *errstr,
                          size_t errstr_size);

/* The provider_message_id of a message. */
void lt_sync_imap_message_id(const char *folder, uint32_t uidvalidity, uint32_t uid, char *out,
                             size_t outsz);

#endif
