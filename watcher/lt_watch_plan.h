/* lt_watch_plan: the watcher's pure decisions, apart from any I/O so that a
 * unit test can drive them with a fake clock.
 *
 *  - lt_watch_gate_t: per account, when change notifications become a
 *    command. A notification (from IMAP IDLE, a poll, a (re)connect, or
 *    later a Gmail push) opens a debounce window; when it closes the
 *    account is due. A due account whose previous command is still in
 *    flight (queued or running: lt_issued.h) stays due and is sent once that
 *    command ends, so mail that arrived during a run is never missed and
 *    commands never pile up. Notifications for two folders of one account
 *    within a window make one command for all scopes.
 *  - Backoff with jitter for reconnects.
 *  - Which partition of the commands topic an account's key lands in,
 *    with librdkafka's own partitioner functions.
 *
 * Time is in milliseconds of any monotonic clock. No allocation beyond the
 * gate's scope string (owned by the gate). */
#ifndef LT_WATCH_PLAN_H
#define LT_WATCH_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "lt_err.h"

typedef struct {
    int pending;    /* a notification not yet turned into a command */
    int64_t due_ms; /* pending: not sent before */
    char *scope;    /* pending: the folder; NULL = several (all configured scopes) */
    int in_flight;  /* a command we (or the scheduler) issued is queued or running */
    uint64_t notes; /* notifications seen (for logs) */
} lt_watch_gate_t;

/* A notification for folder (NULL: the account as a whole) at now_ms. */
void lt_watch_gate_note(lt_watch_gate_t *g, const char *folder, int64_t now_ms, int debounce_ms);

/* 1 when the gate's debounce window is over and nothing of the account is
 * in flight: the caller sends a command with lt_watch_gate_scope() and then
 * calls lt_watch_gate_sent(). */
int lt_watch_gate_ready(const lt_watch_gate_t *g, int64_t now_ms);
/* 1 when pending and the window is over (ready or held back by in_flight). */
int lt_watch_gate_due(const lt_watch_gate_t *g, int64_t now_ms);
const char *lt_watch_gate_scope(const lt_watch_gate_t *g);
/* The command was handed to Kafka: the gate is closed and in flight. */
void lt_watch_gate_sent(lt_watch_gate_t *g);
/* Its delivery failed: the notification is pending again (scope as given). */
void lt_watch_gate_failed(lt_watch_gate_t *g, const char *scope, int64_t now_ms);
void lt_watch_gate_clear(lt_watch_gate_t *g); /* frees the scope */

/* Delay before reconnect attempt number `attempt` (0 = first after a
 * failure): min(max_ms, 1000 * 2^attempt), then a uniformly random 50-100 %
 * of it (rnd: any 32-bit random value). */
int64_t lt_watch_backoff_ms(int attempt, int64_t max_ms, uint32_t rnd);

/* The partition librdkafka's partitioner `name` (the producer's
 * "partitioner" property; NULL or "" = librdkafka's default
 * consistent_random) picks for a non-empty key among n partitions.
 * LT_ERR_INVALID for an unknown name, or one that ignores the key (random). */
lt_err_t lt_watch_partition(const char *name, const void *key, size_t keylen, int32_t n,
                            int32_t *out);

#endif
