/* lt_sync's parts (lt_sync.c: the command and the message in progress;
 * lt_publish.c, lt_upload_pool.c, lt_delivery.c, lt_recovery.c,
 * lt_sync_progress.c, lt_sync_scopes.c): the state they share. Internal to
 * the worker; connectors use lt_sync.h. */
#ifndef LT_SYNC_INTERNAL_H
#define LT_SYNC_INTERNAL_H

#include "lt_sync.h"

#include "lt_buf.h"
#include "lt_known.h"
#include "lt_mime.h"
#include "lt_trace.h"

/* Ids of skipped messages kept for the command result (the count is exact). */
#define LT_SYNC_SKIPPED_IDS_MAX ((size_t)16 << 10)
/* Messages up to this size are kept in memory; larger ones spill to a file. */
#define LT_SYNC_MEM_MAX ((size_t)8 << 20)

/* Delivery-report state: the producer's dr_msg_cb (lt_sync_dr_cb) writes
 * into the struct given as the message opaque. */
typedef struct {
    int64_t delivered;
    int64_t failed;
    rd_kafka_resp_err_t first_err;
    int32_t partition;
    int64_t offset;
} lt_dr_t;

/* Where a command's wall time went, seconds (logged at its end). */
typedef struct {
    double t0;        /* lt_now_s() at lt_sync_new */
    double slot_wait; /* the reader waiting for room in the upload queue */
    double up_wait;   /* a checkpoint waiting for the batch's last uploads */
    double flush;     /* marker produced, every event acknowledged */
    double pending;   /* the in-doubt row (and known-set changes) */
    double commit;    /* commit_transaction */
    double apply;     /* the watermark applied */
    int checkpoints;
} lt_sync_timing_t;

struct lt_sync_s {
    lt_sync_env_t env;
    const lt_account_t *account;
    const lt_command_t *cmd;
    lt_log_ctx_t log;
    char scope[1024];
    lt_trace_t trace;
    int have_trace;

    /* the message in progress */
    int in_message;
    char pmid[1024];
    char *thread_id;
    char *mailbox;
    int64_t received_at;
    lt_buf_t *mem;
    int fd; /* spill file, -1 none */
    char path[512];
    uint64_t size;
    /* the message is larger than the whole file system of LATTICE_TMP_DIR:
     * its bytes are counted, not kept, and it is skipped at its end */
    int no_room;
    char no_room_why[768];

    /* the open transaction */
    int txn_open;
    int64_t uncommitted;
    int in_doubt; /* a batch's fate or watermark is left to recovery */
    int producer_unusable; /* the producer can start no new transaction */
    lt_dr_t ev_dr;
    lt_dr_t marker_dr;

    int64_t messages;
    int64_t bytes;
    int64_t changes;       /* change events committed */
    int64_t changes_uncommitted[4]; /* by kind, in the open transaction */
    int track_known;       /* lt_sync_track_known */
    lt_known_delta_t *known; /* the batch's known-set changes */

    /* progress (lt_sync_set_total); monotonic ms */
    int64_t progress_done;
    int64_t progress_total; /* -1 unknown */
    int64_t progress_d0;    /* done when the total was first known */
    int64_t progress_t0;    /* and when (0: not yet) */
    int64_t started_ms;
    int64_t progress_last_ms;
    int64_t skipped;
    lt_buf_t *skipped_ids; /* comma-separated, capped */
    int64_t expunged;
    lt_buf_t *expunged_ids; /* comma-separated, capped */
    /* the counts as of the last commit: an abort goes back to them, since
     * the command redoes everything after it (no message counted twice) */
    struct {
        int64_t messages, bytes, skipped, expunged;
        size_t skipped_ids_len, expunged_ids_len;
    } durable;

    /* results of the scopes run so far (lt_sync_scope_done) */
    lt_sync_scope_t *scopes;
    size_t nscopes;
    int64_t scope_messages0; /* messages when the current scope started */

    struct uploader_s *up; /* parallel uploads, NULL until the first */
    lt_sync_timing_t timing;
    /* lt_sync_checkpoint_defer(): its arguments, and the fence (the last
     * upload job it covers: later jobs' events wait for it). */
    struct {
        int active;
        char scope[1024];
        lt_watermark_t wm;
        int have_wm, resync;
        lt_cursor_home_t home;
        char cursor[LT_WATERMARK_CURSOR_MAX];
        int have_cursor;
        uint64_t fence;
    } deferred;
    int64_t checkpoints_ok; /* lt_sync_checkpoints_ok() */
};

/* lt_sync.c */
void lt_sync_message_reset(lt_sync_t *s);
/* Attachment i of m is published as a range of the raw object, not stored
 * (LT_SYNC_ATT_RANGES and lt_mime_attachment_range() found one). */
int lt_sync_attachment_ranged(const lt_sync_t *s, lt_mime_t *m, size_t i, uint64_t *offset,
                              uint64_t *length, const char **encoding);

/* lt_sync_progress.c: report when a total is known and the interval has
 * passed. */
void lt_sync_progress_tick(lt_sync_t *s);

/* lt_delivery.c: begin the batch's transaction unless it is open. */
lt_err_t lt_sync_ensure_txn(lt_sync_t *s, char *errstr, size_t n);

/* lt_publish.c: one encoded record into the open transaction. */
lt_err_t lt_sync_produce_wire(lt_sync_t *s, const char *topic, const lt_buf_t *wire,
                              const char *event_id, char *errstr, size_t n);
/* lt_sync_changes.c: the batch's change counts at a commit / an abort. */
void lt_sync_changes_committed(lt_sync_t *s);
void lt_sync_changes_aborted(lt_sync_t *s);
/* Uncommitted change events in the open transaction (all kinds). */
int64_t lt_sync_changes_open(const lt_sync_t *s);

/* lt_publish.c: messages that fail the same way on every attempt. */
int lt_sync_per_message(lt_err_t err);
void lt_sync_reason_add(lt_buf_t **r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lt_sync_skip_message(lt_sync_t *s, const char *pmid, const char *why);
lt_err_t lt_sync_publish(lt_sync_t *s, lt_mail_event_t *ev, uint64_t size, lt_buf_t *reason,
                         char *errstr, size_t n);

/* lt_upload_pool.c: parallel uploads (s3_parallel > 1). */
void lt_sync_up_destroy(lt_sync_t *s);
void lt_sync_up_discard(lt_sync_t *s);
lt_err_t lt_sync_up_collect(lt_sync_t *s, int all, size_t room, char *errstr, size_t n);
lt_err_t lt_sync_message_end_parallel(lt_sync_t *s, char *errstr, size_t n);
/* The sequence number of the last upload job queued (0: none yet). */
uint64_t lt_sync_up_last_seq(const lt_sync_t *s);

#endif
