/* lt_sync_imap_changes: the mailbox changes of one IMAP folder (docs/imap.md,
 * "Change tracking"), found before the folder's new messages are fetched.
 *
 * The folder's known set (lt_known: the messages announced and not since
 * reported deleted, with the flags last published for each) is compared
 * with what the server says:
 *   QRESYNC   the EXAMINE (QRESYNC (uidvalidity modseq 1:last_uid)) answers
 *             (VANISHED (EARLIER), FETCH FLAGS MODSEQ) since the stored
 *             HIGHESTMODSEQ;
 *   full      UID SEARCH ALL against the known set (expunged), and
 *             UID FETCH 1:last_uid (FLAGS) against the recorded flags: when
 *             the stored HIGHESTMODSEQ is unknown or above the server's
 *             (a restore: never trusted to mean "nothing changed");
 *   fallback  no QRESYNC (not advertised, masked, or a NOMODSEQ folder):
 *             UID SEARCH ALL on every sync, the FLAGS listing every
 *             flags_scan_interval_s;
 *   seed      a folder synced before change tracking (or while it was
 *             off): a full compare that also adopts the server's UIDs up to
 *             last_uid into the known set (their flags are published).
 * Every change is checked against the known set first, so a phase redone
 * after a crash or an aborted batch publishes nothing twice.
 *
 * Ownership: the handle borrows s and folder; one slot thread. */
#ifndef LT_SYNC_IMAP_CHANGES_H
#define LT_SYNC_IMAP_CHANGES_H

#include <stddef.h>
#include <stdint.h>

#include "lt_imap_client.h"
#include "lt_sync.h"
#include "lt_watermark.h"

typedef enum {
    LT_IMAP_CHG_QRESYNC,   /* apply the EXAMINE's QRESYNC answers */
    LT_IMAP_CHG_FULL,      /* HIGHESTMODSEQ unknown: full compare */
    LT_IMAP_CHG_BACKWARDS, /* HIGHESTMODSEQ went backwards: full compare */
    LT_IMAP_CHG_FALLBACK,  /* no mod-sequences: UID set, FLAGS when due */
    LT_IMAP_CHG_SEED,      /* known set empty or stale: adopt, full compare */
} lt_imap_chg_mode_t;

const char *lt_imap_chg_mode_name(lt_imap_chg_mode_t m);

/* The decision (pure): stored watermark, this session's EXAMINE, the
 * extensions enabled, whether the EXAMINE carried QRESYNC parameters, the
 * known set's size, the clock and the FLAGS scan interval. *scan_flags:
 * 1 when the FLAGS listing is to be compared. */
lt_imap_chg_mode_t lt_imap_chg_mode(const lt_watermark_t *wm, const lt_imap_mailbox_t *mb,
                                    unsigned enabled, int examined_qresync, size_t nknown,
                                    int64_t now_s, int flags_scan_interval_s, int *scan_flags);

/* The flags as the canonical text recorded and compared: sorted byte-wise,
 * space-separated, without \Recent (a per-session flag). Caller frees. */
char *lt_imap_flags_canon(const char *const *flags, size_t nflags);

/* Publish a flags change of pmid (canon: lt_imap_flags_canon's text, its
 * entries the new set; position the MODSEQ or -1) and record canon as the
 * message's state (lt_sync_known_state). */
lt_err_t lt_imap_publish_flags(lt_sync_t *s, const char *folder, const char *pmid,
                               const char *canon, int64_t position, char *errstr,
                               size_t errstr_size);

typedef struct lt_imap_changes_s lt_imap_changes_t;

lt_imap_changes_t *lt_imap_changes_new(lt_sync_t *s, const char *folder);
void lt_imap_changes_destroy(lt_imap_changes_t *ch);

/* The callbacks to give lt_imap_examine_qresync(): its answers are held
 * (forgotten by each call) until lt_imap_changes_run() decides. */
const lt_imap_changes_cb_t *lt_imap_changes_examine_cb(lt_imap_changes_t *ch);

typedef struct {
    const lt_watermark_t *wm;    /* stored, same UIDVALIDITY as mb */
    const lt_imap_mailbox_t *mb; /* this session's EXAMINE */
    int examined_qresync;
    int flags_scan_interval_s; /* 0: every sync */
    int64_t now_s;
} lt_imap_changes_in_t;

/* Load the known set, decide, compare and publish the changes (into the
 * open transaction; every batch_messages of them a checkpoint that keeps
 * the stored watermark). *next gets the highestmodseq and
 * flags_scanned_at to store with the folder's next watermark. */
lt_err_t lt_imap_changes_run(lt_imap_changes_t *ch, lt_imap_t *c, const lt_imap_changes_in_t *in,
                             lt_watermark_t *next, char *errstr, size_t errstr_size);

/* The folder's first sync, or a resync: what to store then. */
void lt_imap_changes_first(const lt_imap_mailbox_t *mb, unsigned enabled, int64_t now_s,
                           lt_watermark_t *next);

/* The folder's UIDVALIDITY changed: every message its known set holds
 * (ids of the old UIDVALIDITY, which the server will never list again) is
 * published as a `deleted` change (no position), then a `reset`
 * (uidvalidity_changed), and the known set is forgotten; all into the open
 * transaction, where the full listing follows. *ndeleted gets the count. */
lt_err_t lt_imap_changes_reset(lt_sync_t *s, const char *folder, size_t *ndeleted,
                               char *errstr, size_t errstr_size);

/* Counters of the last run (for logs and the benchmark). */
typedef struct {
    lt_imap_chg_mode_t mode;
    int scanned_flags;
    size_t known, deleted, flags;
} lt_imap_changes_stats_t;
void lt_imap_changes_stats(const lt_imap_changes_t *ch, lt_imap_changes_stats_t *out);

#endif
