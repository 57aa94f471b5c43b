/* lt_sync: what a connector (IMAP, Gmail) sees while it runs one command.
 *
 * The connector streams each message in (begin / write / end); lt_sync
 * stores the raw .eml and every attachment in S3, builds the mail.raw.v1
 * event and produces it inside the slot's open Kafka transaction. When the
 * connector has a consistent position it calls lt_sync_checkpoint(), which
 * runs the delivery protocol (docs/delivery-protocol.md): marker record,
 * pending watermark, Kafka commit, watermark applied. Messages given after
 * the last checkpoint are not committed: a connector must checkpoint before
 * it returns success.
 *
 * With env.s3_parallel > 1 the objects of a message held in memory (up to
 * 8 MiB) are stored by background threads while the connector goes on; its
 * event is produced once they are stored, in message order. So an S3 error
 * may be returned by a later lt_sync_message_end() or by
 * lt_sync_checkpoint() instead of the message's own: either way the
 * connector aborts and resumes after its last checkpoint, as for any error.
 *
 * A message that fails the same way on every attempt (an error of the
 * message itself, LT_ERR_INVALID or LT_ERR_TOO_BIG: MIME the parser
 * refuses, an attachment S3 refuses, an event too big) never fails the
 * batch: it is published with what could be derived and
 * payload.parse_error saying what could not, or, when not even its raw
 * object or bare event can be stored, skipped and reported
 * (lt_sync_note_skipped). lt_sync_message_end() then returns LT_OK.
 *
 * Ownership: an lt_sync_t belongs to one slot thread and lives for one
 * command; everything it borrows (db, s3, producer, registry) belongs to
 * the slot. */
#ifndef LT_SYNC_H
#define LT_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "lt_accounts.h"
#include "lt_change_event.h"
#include "lt_command.h"
#include "lt_db.h"
#include "lt_err.h"
#include "lt_event.h"
#include "lt_log.h"
#include "lt_metrics.h"
#include "lt_s3.h"
#include "lt_watermark.h"

typedef struct lt_sync_s lt_sync_t;

/* Instrumentation: series already resolved for the command's provider (any
 * member may be NULL). Names in docs/observability.md. */
typedef struct {
    lt_series_t *messages;       /* messages given to lt_sync (fetched) */
    lt_series_t *message_bytes;  /* their raw bytes */
    lt_series_t *events;         /* events committed (Kafka transaction) */
    lt_series_t *events_aborted; /* events produced, then aborted */
    lt_series_t *objects_message;      /* .eml objects stored */
    lt_series_t *objects_attachment;   /* attachment objects stored */
    lt_series_t *object_bytes_message; /* their bytes */
    lt_series_t *object_bytes_attachment;
    lt_series_t *objects_manifest;  /* full manifests stored (event over the bound) */
    lt_series_t *attachments_ranged; /* published as a range of the .eml, no object */
    lt_series_t *messages_partial;  /* published with payload.parse_error set */
    lt_series_t *messages_skipped;  /* not published, reported (lt_sync_note_skipped) */
    lt_series_t *tmp_full;          /* spill writes refused for want of space (ENOSPC, EDQUOT) */
    lt_series_t *changes[4]; /* mail.change.v1 events committed, by lt_change_kind_t */
} lt_sync_metrics_t;

/* Progress of a command (lt_sync_set_total). */
typedef struct {
    int64_t done;     /* messages ingested so far (aborted batches not counted) */
    int64_t total;    /* done + what the connector still expects; -1 unknown */
    double rate;      /* messages per second since the total was first known */
    int64_t eta_s;    /* seconds left at that rate; -1 unknown */
    int64_t elapsed_ms; /* since the command's lt_sync_new */
} lt_sync_progress_t;
typedef enum {
    LT_SYNC_ATT_RANGES = 0,
    LT_SYNC_ATT_OBJECTS,
} lt_sync_attachments_t;

typedef void (*lt_sync_progress_fn)(void *opaque, lt_sync_t *s, const lt_sync_progress_t *p);

/* The slot's long-lived resources, borrowed by each lt_sync_t. */
typedef struct {
    lt_db_t *db;
    lt_s3_t *s3;
    rd_kafka_t *producer; /* transactional */
    rd_kafka_t *marker_reader; /* plain consumer, read_committed, no group */
    lt_mail_codec_t *codec;
    int32_t schema_id;
    const char *raw_topic;
    /* mail.change.v1 (lt_sync_change); change_codec NULL: changes refused */
    lt_change_codec_t *change_codec;
    int32_t change_schema_id;
    const char *change_topic;
    /* LATTICE_CHANGES: 0 turns change tracking off for every account
     * (lt_sync_changes_enabled) */
    int track_changes;
    const char *checkpoint_topic;
    const char *tmp_dir;
    /* Spill files are <tmp_dir>/<spill_prefix>XXXXXX (lt_sync_spill_prefix;
     * NULL: "lattice-msg-"), so a restarted worker finds its own. */
    const char *spill_prefix;
    uint64_t max_message_bytes;
    /* Largest event (wire format); a bigger one keeps part of its manifest
     * inline and the whole as an object (lt_mail_event_fit()). 0: the
     * default LT_MAIL_EVENT_DEFAULT_MAX_BYTES. */
    size_t event_max_bytes;
    int batch_messages; /* checkpoint hint for connectors */
    int s3_parallel;    /* > 1: objects of in-memory messages stored by this many threads */
    int s3_parallel_max; /* the pool may grow to this for a distant store (lt_upload_pool.c) */
    /* Attachments: LT_SYNC_ATT_RANGES (default) names each one's encoded range
     * in the .eml (no object of its own; an attachment without such a range
     * is stored as an object all the same); LT_SYNC_ATT_OBJECTS stores every
     * one decoded as an object (LATTICE_ATTACHMENTS). */
    lt_sync_attachments_t attachments;
    int txn_timeout_ms;
    const volatile int *cancel; /* non-zero: stop at the next checkpoint */
    const lt_sync_metrics_t *metrics; /* NULL: none; borrowed */
    /* Called at most every progress_interval_ms, only once a total is known
     * (from the slot thread, inside lt_sync calls); NULL: none. */
    lt_sync_progress_fn progress;
    void *progress_opaque;
    int progress_interval_ms;
} lt_sync_env_t;

/* The delivery-report callback (dr_msg_cb) of the producer given in
 * lt_sync_env_t: it records each message's outcome in the state the
 * sync passed as the message opaque. */
void lt_sync_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* The spill file prefix of a worker: "lattice-<worker id>-msg-", bytes
 * other than [A-Za-z0-9._-] of the id as '_'. */
void lt_sync_spill_prefix(const char *worker_id, char *out, size_t out_size);
/* Remove the spill files a killed predecessor of this worker left in
 * tmp_dir: the names of exactly <prefix>XXXXXX (another worker's, whose id
 * merely starts like this one's, are kept). Returns how many, -1 when the
 * directory cannot be read (errstr says why). */
int lt_sync_spill_cleanup(const char *tmp_dir, const char *prefix, char *errstr,
                          size_t errstr_size);

lt_sync_t *lt_sync_new(const lt_sync_env_t *env, const lt_account_t *account,
                       const lt_command_t *cmd, const char *traceparent,
                       const lt_log_ctx_t *log);
void lt_sync_destroy(lt_sync_t *s); /* aborts an open transaction */

const lt_account_t *lt_sync_account(const lt_sync_t *s);
const lt_command_t *lt_sync_command(const lt_sync_t *s);
lt_db_t *lt_sync_db(const lt_sync_t *s);
const lt_log_ctx_t *lt_sync_log(const lt_sync_t *s);
int lt_sync_batch_messages(const lt_sync_t *s);
/* Non-zero when the worker wants the command to stop (shutdown, revoke). */
int lt_sync_cancelled(const lt_sync_t *s);
void lt_sync_set_scope(lt_sync_t *s, const char *scope);

/* Resolve the in-doubt batches of this account (all scopes): apply the
 * committed, discard the aborted (docs/delivery-protocol.md). */
lt_err_t lt_sync_recover(lt_sync_t *s, char *errstr, size_t errstr_size);

/* One message. mailbox: IMAP folder / Gmail scope; thread id may be NULL. */
lt_err_t lt_sync_message_begin(lt_sync_t *s, const char *provider_message_id,
                               const char *thread_id, const char *mailbox,
                               int64_t received_at_ms, char *errstr, size_t errstr_size);
lt_err_t lt_sync_message_write(lt_sync_t *s, const void *data, size_t len, char *errstr,
                               size_t errstr_size);
lt_err_t lt_sync_message_end(lt_sync_t *s, char *errstr, size_t errstr_size);
/* Drop the message in progress (connection lost mid-literal). */
void lt_sync_message_abandon(lt_sync_t *s);

/* Commit everything given so far and move the watermark of `scope` to
 * *wm (resync: allowed to move backwards / change UIDVALIDITY; wm NULL: no
 * watermark change, e.g. a backfill). */
lt_err_t lt_sync_checkpoint(lt_sync_t *s, const char *scope, const lt_watermark_t *wm,
                            int resync, char *errstr, size_t errstr_size);
/* The same, and move the durable progress of a long sync with the batch:
 * `cursor` (a JSON object; NULL or "" with LT_CURSOR_SCOPE: the full sync
 * is done, its cursor is deleted) is written to its home (lt_watermark.h)
 * in the Postgres transaction that applies the batch, so it never covers an
 * uncommitted event nor lags a committed one (docs/delivery-protocol.md,
 * "Progress of long syncs"). home LT_CURSOR_NONE: lt_sync_checkpoint(). */
lt_err_t lt_sync_checkpoint_cursor(lt_sync_t *s, const char *scope, const lt_watermark_t *wm,
                                   int resync, lt_cursor_home_t home, const char *cursor,
                                   char *errstr, size_t errstr_size);
/* The same checkpoint, performed later, so that the connector can read the
 * next batch meanwhile: it covers everything given so far (the "fence").
 * Messages given after it are parsed and stored at once, but their events
 * wait: the deferred checkpoint is performed by lt_sync_checkpoint_flush(),
 * by the next checkpoint (deferred or not), or first thing by
 * lt_sync_message_end() of a message that must be published in order (one
 * spilled to a file). Its error comes from whichever call performs it.
 * Meanwhile the connector publishes nothing itself (no lt_sync_change(),
 * no lt_sync_note_skipped(): it keeps them until the checkpoint is done,
 * lt_sync_checkpoint_pending() == 0). An abort drops it with the rest. */
lt_err_t lt_sync_checkpoint_defer(lt_sync_t *s, const char *scope, const lt_watermark_t *wm,
                                  int resync, lt_cursor_home_t home, const char *cursor,
                                  char *errstr, size_t errstr_size);
lt_err_t lt_sync_checkpoint_flush(lt_sync_t *s, char *errstr, size_t errstr_size);
int lt_sync_checkpoint_pending(const lt_sync_t *s);
/* Checkpoints that succeeded so far (deferred or not). */
int64_t lt_sync_checkpoints_ok(const lt_sync_t *s);

/* --- mailbox changes (docs/events.md, mail.change.v1) -------------------
 * Non-zero when the command's account tracks changes of `scope`: the env's
 * track_changes, unless the account's config_json turns it off:
 * "track_changes": false (the whole account) or
 * "track_changes": {"off": ["Spam", ...]} (those scopes only). */
int lt_sync_changes_enabled(const lt_sync_t *s, const char *scope);

/* One change of a message already announced (or a reset of the scope). */
typedef struct {
    lt_change_kind_t kind;
    const char *provider_message_id; /* NULL for a reset */
    const char *mailbox;             /* the IMAP folder / Gmail scope; NULL none */
    int64_t position;                /* IMAP MODSEQ, Gmail historyId; -1 none */
    const char *const *items;        /* flags / labels: the full new set */
    size_t nitems;
    const char *reset_reason;        /* a reset: LT_CHANGE_RESET_* */
} lt_sync_change_t;

/* Produce the change inside the open transaction (begun if needed), with
 * the same envelope, key and traceparent rules as the messages' events; it
 * is committed by the next checkpoint like them. A deleted change also
 * removes the message from the scope's known set (when tracked).
 * LT_ERR_INVALID for a change the codec refuses. */
lt_err_t lt_sync_change(lt_sync_t *s, const lt_sync_change_t *c, char *errstr,
                        size_t errstr_size);
/* Change events committed so far by this command. */
int64_t lt_sync_changes(const lt_sync_t *s);

/* Known messages (lib/state/lt_known.h): with tracking on, every message
 * published from now on is added to the known set of the scope of the
 * next checkpoint, and every deleted change removes one; the changes move
 * with the batch (staged with its pending row, applied when it is). A
 * connector turns it on per scope, when change tracking is on for it. */
void lt_sync_track_known(lt_sync_t *s, int on);
/* The batch forgets the scope's known set first (UIDVALIDITY changed). */
void lt_sync_known_forget(lt_sync_t *s);
/* Record what the batch published of a message's mutable state (IMAP: its
 * flags as canonical text), for a later comparison (lt_known_each on
 * lt_sync_db()); with tracking on, moves with the batch like the rest. */
void lt_sync_known_state(lt_sync_t *s, const char *provider_message_id, const char *state);

/* Abort the open transaction (nothing given since the last checkpoint is
 * published). */
void lt_sync_abort(lt_sync_t *s);

/* Counters for the result. */
int64_t lt_sync_messages(const lt_sync_t *s);
int64_t lt_sync_bytes(const lt_sync_t *s);
int64_t lt_sync_uncommitted(const lt_sync_t *s);
/* Non-zero after a checkpoint whose Kafka commit succeeded (or may have)
 * but whose watermark is not applied: the pending row is left to recovery.
 * The connector must end the command (not redo the batch: that would
 * publish it twice); the command's next run recovers first. */
int lt_sync_in_doubt(const lt_sync_t *s);
/* Non-zero when the producer can begin no new transaction: a commit whose
 * outcome is unknown, an abort that failed, or a fatal error (fenced, ...).
 * The slot replaces it with a new producer of the same transactional.id,
 * whose init_transactions() completes or aborts the open transaction (the
 * pending row's recovery then reads the decision from the marker). */
int lt_sync_producer_unusable(const lt_sync_t *s);

/* Progress of long work (backfill, first full sync): the connector calls
 * this when it learns how much work is left (IMAP: after each UID SEARCH,
 * lt_sync_progress_done() + the UIDs found; Gmail: resultSizeEstimate), as
 * often as the estimate changes. Done counts by itself (every message
 * ingested; minus those of an aborted batch). The env's progress callback
 * then reports done/total, rate and ETA (logs, gauges, "running" status
 * events: docs/commands.md). total < 0: unknown again. */
void lt_sync_set_total(lt_sync_t *s, int64_t total);
int64_t lt_sync_progress_done(const lt_sync_t *s);
/* A resumed long sync: `done` messages were ingested by earlier runs (from
 * its cursor); counted as done before this run's own. */
void lt_sync_progress_resume(lt_sync_t *s, int64_t done);
int64_t lt_sync_progress_total(const lt_sync_t *s);
/* Fill p with the progress now (for a final report). */
void lt_sync_progress_get(const lt_sync_t *s, lt_sync_progress_t *p);

/* LATTICE_MAX_MESSAGE_BYTES: connectors pass it to their fetch layer so a
 * bigger message is skipped (not an error that blocks the scope). */
uint64_t lt_sync_max_message_bytes(const lt_sync_t *s);
/* A message the connector did not ingest (over the cap, gone): counted and
 * its id kept (the first 16 KiB of ids) for the command result, so it is
 * never dropped silently. */
void lt_sync_note_skipped(lt_sync_t *s, const char *provider_message_id);
int64_t lt_sync_skipped(const lt_sync_t *s);
const char *lt_sync_skipped_ids(const lt_sync_t *s); /* comma-separated, "" when none */
/* A message that was listed but no longer exists when fetched (IMAP: left
 * out of the FETCH answer or answered NIL, and UID SEARCH no longer finds
 * it; Gmail: 404 on messages.get): nothing to ingest, but counted and its
 * id kept like a skipped one, for the command result. Taken back with an
 * aborted batch. */
void lt_sync_note_expunged(lt_sync_t *s, const char *provider_message_id);
int64_t lt_sync_expunged(const lt_sync_t *s);
const char *lt_sync_expunged_ids(const lt_sync_t *s); /* comma-separated, "" when none */

/* Scopes fail independently: a connector that runs several scopes (IMAP
 * folders, Gmail labels/queries) reports each one's result once it is done
 * with it, and goes on with the next unless the failure is the account's
 * (credentials, Postgres, a batch in doubt, cancel). MISSING: the folder or
 * label does not exist (a permanent failure of that scope); FAILED: any
 * other failure, err its class (TEMPORARY: the command is retried, and the
 * scopes that succeeded resume after their moved watermarks). messages:
 * those ingested since lt_sync_set_scope() of that scope. */
typedef enum {
    LT_SYNC_SCOPE_OK,
    LT_SYNC_SCOPE_FAILED,
    LT_SYNC_SCOPE_MISSING,
} lt_sync_scope_result_t;
typedef struct {
    char *scope;
    lt_sync_scope_result_t result;
    lt_err_t err;  /* LT_OK when ok */
    char *error;   /* NULL when ok */
    int64_t messages;
} lt_sync_scope_t;
const char *lt_sync_scope_result_name(lt_sync_scope_result_t r); /* "ok", "failed", "missing" */
void lt_sync_scope_done(lt_sync_t *s, const char *scope, lt_sync_scope_result_t result,
                        lt_err_t err, const char *error);
/* The results so far, in run order (owned by s). */
const lt_sync_scope_t *lt_sync_scopes(const lt_sync_t *s, size_t *n);
size_t lt_sync_scopes_ok(const lt_sync_t *s);
/* The command's outcome from its scopes: LT_OK when none failed; else
 * LT_ERR_TEMPORARY when one failed temporarily (retry), else the first
 * failure's class (a missing scope: LT_ERR_FINAL), with a summary in errstr. */
lt_err_t lt_sync_scopes_result(const lt_sync_t *s, char *errstr, size_t errstr_size);

#endif
