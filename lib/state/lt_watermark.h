/* lt_watermark: per-scope sync positions (mail_watermarks) and the
 * delivery protocol's in-doubt record (mail_watermark_pending).
 *
 * Formats (watermark_json):
 *   gmail: {"historyId": "123"}                     (string: a uint64)
 *   imap:  {"uidvalidity": 9999, "last_uid": 12345}  (uint32 numbers)
 *          + optional, written only when non-zero (change tracking,
 *          docs/imap.md): "highestmodseq": "123" (a string: a 63-bit
 *          RFC 7162 mod-sequence) and "flags_scanned_at": 1796000000 (unix
 *          seconds of the last full FLAGS scan of the fallback path)
 *
 * The monotonic guard (in SQL, lt_watermark_advances(), so concurrent
 * writers cannot race it): gmail historyId never moves backwards (numeric
 * compare); imap last_uid never moves backwards within the same
 * uidvalidity, and a different uidvalidity replaces. `resync` = 1 bypasses
 * the guard (an explicit resync may move a watermark backwards). A backfill
 * writing behind the incremental watermark is therefore a no-op, not an
 * error: *stored tells the caller which happened.
 *
 * Delivery protocol, per batch (scope = one watermark row):
 *   (a) store objects; (b) begin the Kafka transaction, produce events and
 *   one marker, flush, learn the marker's partition/offset;
 *   (c) lt_watermark_pending_put()          -- committed in Postgres
 *   (d) commit the Kafka transaction
 *   (e) lt_watermark_pending_apply()        -- apply + delete, one tx
 * Recovery (a pending row found before a batch): read the marker with a
 * read_committed consumer; visible -> _apply(); aborted -> _discard().
 * The worker holds lt_account_lock() (lt_account_lock.h) throughout. */
#ifndef LT_WATERMARK_H
#define LT_WATERMARK_H

#include <stddef.h>
#include <stdint.h>

#include "lt_db.h"
#include "lt_err.h"

/* A plain value: the fields of the account's provider are used. */
typedef struct {
    uint64_t history_id;  /* gmail */
    uint32_t uidvalidity; /* imap, >= 1 */
    uint32_t last_uid;    /* imap */
    uint64_t highestmodseq;   /* imap: HIGHESTMODSEQ the changes were read at; 0 unknown */
    int64_t flags_scanned_at; /* imap: unix s of the last full FLAGS scan; 0 never */
} lt_watermark_t;

#define LT_WATERMARK_JSON_MAX 192
#define LT_WATERMARK_COMMAND_ID_MAX 256
#define LT_WATERMARK_TOPIC_MAX 249
#define LT_WATERMARK_CURSOR_MAX 4096 /* a cursor's JSON text, NUL included */

/* Durable progress of a long sync (docs/delivery-protocol.md, "Progress of
 * long syncs"): a cursor is a JSON object written after a batch, atomically
 * with its watermark (the pending row carries both). Its home:
 *   LT_CURSOR_COMMAND: mail_sync_commands.cursor_json -> scope (a backfill;
 *                      the command id is the pending row's);
 *   LT_CURSOR_SCOPE:   mail_sync_cursors (tenant, account, scope, provider):
 *                      a full sync in progress; an empty cursor deletes it. */
typedef enum { LT_CURSOR_NONE = 0, LT_CURSOR_COMMAND = 1, LT_CURSOR_SCOPE = 2 } lt_cursor_home_t;

/* Encode as watermark_json ("gmail" or "imap"); LT_ERR_INVALID for another
 * provider or an imap uidvalidity of 0. */
lt_err_t lt_watermark_to_json(const char *provider, const lt_watermark_t *wm,
                              char out[LT_WATERMARK_JSON_MAX], char *errstr, size_t errstr_size);
/* Decode watermark_json strictly (types and ranges as above; other keys are
 * ignored). LT_ERR_INVALID with the reason when malformed. */
lt_err_t lt_watermark_from_json(const char *provider, const char *json, lt_watermark_t *wm,
                                char *errstr, size_t errstr_size);

/* Which watermark (and pending row, and scope cursor): one scope of one
 * account of a tenant, read with its provider's format. A plain value
 * carrier; strings borrowed. */
typedef struct {
    const char *tenant;
    const char *account_id;
    const char *scope;    /* e.g. an IMAP folder, a Gmail label or query scope */
    const char *provider; /* "gmail" or "imap" */
} lt_watermark_key_t;

/* The stored watermark; LT_ERR_NOT_FOUND when there is none yet. */
lt_err_t lt_watermark_get(lt_db_t *db, const lt_watermark_key_t *key, lt_watermark_t *out,
                          char *errstr, size_t errstr_size);

/* Store a watermark under the guard (resync = 1 bypasses it). *stored
 * (may be NULL) = 1 when written, 0 when the stored one was ahead and was
 * kept. The account must exist (else LT_ERR_INVALID: foreign key). */
lt_err_t lt_watermark_set(lt_db_t *db, const lt_watermark_key_t *key, const lt_watermark_t *wm,
                          int resync, int *stored, char *errstr, size_t errstr_size);

/* The in-doubt record of one batch. A plain value (fixed-size strings). */
typedef struct {
    lt_watermark_t wm;
    int resync;
    int no_wm; /* 1: the batch moves only its cursor (wm unused) */
    lt_cursor_home_t cursor_home;
    char cursor[LT_WATERMARK_CURSOR_MAX]; /* JSON object; "" = none (scope home: delete) */
    char command_id[LT_WATERMARK_COMMAND_ID_MAX + 1];
    char marker_topic[LT_WATERMARK_TOPIC_MAX + 1];
    int32_t marker_partition;
    int64_t marker_offset;
} lt_watermark_pending_t;

/* (c): upsert the pending row (replaces an unresolved one for the same
 * key: resolve first). */
lt_err_t lt_watermark_pending_put(lt_db_t *db, const lt_watermark_key_t *key,
                                  const lt_watermark_pending_t *p, char *errstr,
                                  size_t errstr_size);

/* The pending row, LT_ERR_NOT_FOUND when none. */
lt_err_t lt_watermark_pending_get(lt_db_t *db, const lt_watermark_key_t *key,
                                  lt_watermark_pending_t *out, char *errstr, size_t errstr_size);

/* (e) / recovery "visible": in one transaction apply the pending watermark
 * to mail_watermarks (same guard, its resync flag), write its cursor to the
 * cursor's home (lt_watermark_cursor_set) and delete the row.
 * `expect` (may be NULL): only if the row still has this command id and
 * marker (else LT_ERR_NOT_FOUND, nothing changed). *stored as for _set.
 * LT_ERR_NOT_FOUND when there is no pending row. */
lt_err_t lt_watermark_pending_apply(lt_db_t *db, const lt_watermark_key_t *key,
                                    const lt_watermark_pending_t *expect, int *stored, char *errstr,
                                    size_t errstr_size);

/* Recovery "aborted": delete the pending row (`expect` as above).
 * LT_ERR_NOT_FOUND when there is none. */
lt_err_t lt_watermark_pending_discard(lt_db_t *db, const lt_watermark_key_t *key,
                                      const lt_watermark_pending_t *expect, char *errstr,
                                      size_t errstr_size);

/* Write a cursor to its home outside the delivery protocol (a batch without
 * events: nothing to protect). cursor NULL or "": the scope home's row is
 * deleted, the command home's key removed. command_id: the command whose
 * row holds it (LT_CURSOR_COMMAND) or that wrote it (LT_CURSOR_SCOPE). */
lt_err_t lt_watermark_cursor_set(lt_db_t *db, const lt_watermark_key_t *key, lt_cursor_home_t home,
                                 const char *command_id, const char *cursor, char *errstr,
                                 size_t errstr_size);
/* The cursor stored for scope (home LT_CURSOR_COMMAND: in command_id's row)
 * as JSON text into out; LT_ERR_NOT_FOUND when there is none. */
lt_err_t lt_watermark_cursor_get(lt_db_t *db, const lt_watermark_key_t *key, lt_cursor_home_t home,
                                 const char *command_id, char out[LT_WATERMARK_CURSOR_MAX],
                                 char *errstr, size_t errstr_size);

/* Every pending row of one account (recovery at start-up / assignment).
 * fn gets borrowed values; it must not use db; non-zero stops. */
typedef int (*lt_watermark_pending_fn)(const char *scope, const char *provider,
                                       const lt_watermark_pending_t *p, void *opaque);
lt_err_t lt_watermark_pending_list(lt_db_t *db, const char *tenant, const char *account_id,
                                   lt_watermark_pending_fn fn, void *opaque, char *errstr,
                                   size_t errstr_size);

#endif
