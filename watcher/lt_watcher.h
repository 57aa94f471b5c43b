/* lt_watcher: lattice-watcher's engine. One thread, one poll() loop:
 *
 *  - Accounts: the enabled, active IMAP accounts of mail_accounts, read
 *    again every reload_s (added, disabled, deleted or changed accounts are
 *    picked up without a restart).
 *  - Sharing between replicas: the watcher joins its own consumer group on
 *    the commands topic (never reading a command: its partitions are
 *    assigned at the end and paused) and watches the accounts whose key,
 *    account_id, the producer's partitioner puts in an assigned partition.
 *    Kafka's group membership is the only coordinator: a replica that dies
 *    is replaced after the session timeout and its partitions, so its
 *    accounts, move to the others.
 *  - Per watched account and push folder (config_json "push_folders", an
 *    array of folder names; default ["INBOX"]) one lt_watch_conn_t in IDLE,
 *    reconnected with backoff and jitter after any failure.
 *  - Notifications (a connect, EXISTS, EXPUNGE, FETCH) go through the
 *    account's lt_watch_gate_t (debounce, no pile-up: lt_watch_plan.h) and
 *    become incremental commands on the commands topic, keyed by
 *    account_id, recorded in mail_sync_issued first, exactly as
 *    lattice-scheduler records its own, so the two never pile commands up on
 *    one account.
 *  - Gmail (with LATTICE_WATCHER_GMAIL_TOPIC): the owned Gmail accounts get
 *    users.watch (lt_gmail_watch; renewals on one helper thread, users.stop
 *    when disabled); the push endpoint's thread (lt_gmail_push) queues
 *    (tenant, account) and wakes the loop through a pipe; the loop notes
 *    the account on the same gate (docs/watcher.md, docs/gmail-push.md).
 *
 * Ownership: the watcher owns its Postgres connection, its producer, its
 * group consumer, the SSL_CTX and every connection. lt_watcher_stop() may
 * be called from a signal handler. */
#ifndef LT_WATCHER_H
#define LT_WATCHER_H

#include <stddef.h>

#include "lt_config.h"
#include "lt_err.h"
#include "lt_metrics.h"

typedef struct lt_watcher_s lt_watcher_t;

/* Make the clients (LATTICE_PG_*, LATTICE_KAFKA_*, LATTICE_WATCHER_*,
 * LATTICE_TLS_CA_FILE) and check the commands topic exists. metrics may be
 * NULL. NULL with the reason in errstr. */
lt_watcher_t *lt_watcher_new(const lt_config_t *cfg, lt_metrics_t *metrics, char *errstr,
                             size_t errstr_size);
void lt_watcher_destroy(lt_watcher_t *w);

/* Run until lt_watcher_stop(): LT_OK then. Failures of the database or of
 * one connection are logged and retried; only an unusable Kafka client
 * ends the run with an error. */
lt_err_t lt_watcher_run(lt_watcher_t *w, char *errstr, size_t errstr_size);

/* Async-signal-safe. */
void lt_watcher_stop(lt_watcher_t *w);

/* 1 once the group gave this replica its first assignment (possibly empty)
 * and the accounts were read; why gets the reason otherwise. Thread-safe. */
int lt_watcher_ready(lt_watcher_t *w, char *why, size_t why_size);

#endif
