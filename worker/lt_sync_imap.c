#include "lt_sync_imap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_command.h"
#include "lt_command_log.h"
#include "lt_imap_client.h"
#include "lt_secret.h"
#include "lt_sync_imap_changes.h"

#define SECRET_MAX 4096

typedef struct {
    char host[256];
    int port;
    char user[320];
    char password[SECRET_MAX];
    char **folders;
    size_t nfolders;
    unsigned hide_caps; /* "imap_disable_caps": extensions taken as absent */
} imap_conf_t;

static void conf_free(imap_conf_t *c)
{
    for (size_t i = 0; i < c->nfolders; i++)
        free(c->folders[i]);
    free(c->folders);
    lt_secret_wipe(c->password, sizeof(c->password));
}

static lt_err_t parse_conf(const lt_account_t *a, const char *secrets_dir, imap_conf_t *c,
                           char *errstr, size_t n)
{
    json_object *cfg = lt_account_config(a), *v;
    memset(c, 0, sizeof(*c));
    if (!json_object_object_get_ex(cfg, "host", &v) || !json_object_is_type(v, json_type_string))
        return lt_seterr(errstr, n, LT_ERR_FINAL, "account config: \"host\" (string) is required");
    snprintf(c->host, sizeof(c->host), "%s", json_object_get_string(v));
    c->port = 993;
    if (json_object_object_get_ex(cfg, "port", &v)) {
        c->port = json_object_get_int(v);
        if (c->port < 1 || c->port > 65535)
            return lt_seterr(errstr, n, LT_ERR_FINAL, "account config: bad \"port\"");
    }
    if (!json_object_object_get_ex(cfg, "username", &v) ||
        !json_object_is_type(v, json_type_string))
        return lt_seterr(errstr, n, LT_ERR_FINAL,
                         "account config: \"username\" (string) is required");
    snprintf(c->user, sizeof(c->user), "%s", json_object_get_string(v));
    if (json_object_object_get_ex(cfg, "folders", &v)) {
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
            return lt_seterr(errstr, n, LT_ERR_FINAL,
                             "account config: \"folders\" must be a non-empty array");
        size_t len = json_object_array_length(v);
        c->folders = lt_xcalloc(len, sizeof(char *));
        c->nfolders = 0;
        for (size_t i = 0; i < len; i++) {
            json_object *f = json_object_array_get_idx(v, i);
            if (!json_object_is_type(f, json_type_string))
                return lt_seterr(errstr, n, LT_ERR_FINAL,
                                 "account config: folders[%zu] is not a string", i);
            /* INBOX in one spelling (one watermark), each folder once */
            const char *name = lt_command_imap_mailbox(json_object_get_string(f));
            int dup = 0;
            for (size_t k = 0; k < c->nfolders && !dup; k++)
                dup = !strcmp(c->folders[k], name);
            if (!dup)
                c->folders[c->nfolders++] = lt_xstrdup(name);
        }
    } else {
        c->nfolders = 1;
        c->folders = lt_xcalloc(1, sizeof(char *));
        c->folders[0] = lt_xstrdup("INBOX");
    }
    if (json_object_object_get_ex(cfg, "imap_disable_caps", &v)) {
        static const struct {
            const char *name;
            unsigned bit;
        } caps[] = {{"CONDSTORE", LT_IMAP_CAP_CONDSTORE},
                    {"QRESYNC", LT_IMAP_CAP_QRESYNC},
                    {"ENABLE", LT_IMAP_CAP_ENABLE}};
        size_t len = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
        if (!json_object_is_type(v, json_type_array))
            return lt_seterr(errstr, n, LT_ERR_FINAL,
                             "account config: \"imap_disable_caps\" must be an array");
        for (size_t i = 0; i < len; i++) {
            const char *x = json_object_get_string(json_object_array_get_idx(v, i));
            size_t k = 0;
            while (k < sizeof(caps) / sizeof(caps[0]) && (!x || strcasecmp(x, caps[k].name)))
                k++;
            if (k == sizeof(caps) / sizeof(caps[0]))
                return lt_seterr(errstr, n, LT_ERR_FINAL,
                                 "account config: imap_disable_caps[%zu] is not one of "
                                 "CONDSTORE, QRESYNC, ENABLE",
                                 i);
            c->hide_caps |= caps[k].bit;
        }
    }
    lt_secret_ns_t ns = {lt_account_tenant(a), secrets_dir};
    return lt_secret_resolve(&ns, cfg, "password", c->password, sizeof(c->password), errstr, n);
}

void lt_sync_imap_message_id(const char *folder, uint32_t uidvalidity, uint32_t uid, char *out,
                             size_t outsz)
{
    snprintf(out, outsz, "%s;UIDVALIDITY=%u;UID=%u", folder, uidvalidity, uid);
}

/* A skipped message or a new message's flags met while the previous
 * batch's checkpoint is deferred (lt_sync_checkpoint_pending): kept, and
 * done once that checkpoint is, so that they count and are published with
 * their own batch. */
typedef struct {
    uint32_t uid;
    int flags;     /* 1: text is the canonical flags; 0: a skip, text its reason */
    lt_err_t why;  /* a skip */
    int64_t modseq;
    char *text;
} later_t;

typedef struct {
    lt_sync_t *s;
    const char *folder;
    uint32_t uidvalidity;
    uint32_t last_uid;   /* highest UID given to lt_sync in this batch */
    uint64_t skipped;
    char err[512];
    lt_buf_t *skipped_uids;
    uint64_t durable_skipped; /* skipped, skipped_uids as of the last checkpoint */
    size_t durable_len;
    int64_t skipped_before; /* lt_sync_skipped() when the message began */
    uint32_t published_uid; /* the message just published (its flags follow) */
    later_t *later;
    size_t nlater, later_cap;
} fetch_ctx_t;

static void later_drop(fetch_ctx_t *f)
{
    for (size_t i = 0; i < f->nlater; i++)
        free(f->later[i].text);
    f->nlater = 0;
}

static void later_add(fetch_ctx_t *f, later_t l)
{
    if (f->nlater == f->later_cap) {
        f->later_cap = f->later_cap ? 2 * f->later_cap : 16;
        f->later = lt_xrealloc(f->later, f->later_cap * sizeof(*f->later));
    }
    f->later[f->nlater++] = l;
}

static void skipped_now(fetch_ctx_t *f, uint32_t uid, lt_err_t why, const char *reason);
static lt_err_t flags_now(fetch_ctx_t *f, uint32_t uid, const char *canon, uint64_t modseq);

/* What was kept while a checkpoint was deferred, once it is done. */
static lt_err_t later_run(fetch_ctx_t *f)
{
    lt_err_t err = LT_OK;
    for (size_t i = 0; i < f->nlater && !err; i++) {
        later_t *l = &f->later[i];
        if (l->flags)
            err = flags_now(f, l->uid, l->text, (uint64_t)l->modseq);
        else
            skipped_now(f, l->uid, l->why, l->text);
    }
    later_drop(f);
    return err;
}

static lt_err_t cb_begin(void *opaque, uint32_t uid, uint64_t size, int64_t internaldate_ms)
{
    fetch_ctx_t *f = opaque;
    if (f->nlater && !lt_sync_checkpoint_pending(f->s)) {
        lt_err_t err = later_run(f);
        if (err)
            return err;
    }
    char pmid[1200];
    lt_sync_imap_message_id(f->folder, f->uidvalidity, uid, pmid, sizeof(pmid));
    f->last_uid = uid;
    f->published_uid = 0;
    f->skipped_before = lt_sync_skipped(f->s);
    return lt_sync_message_begin(f->s, pmid, NULL, f->folder, internaldate_ms, f->err,
                                 sizeof(f->err));
}

static lt_err_t cb_data(void *opaque, const uint8_t *chunk, size_t len)
{
    fetch_ctx_t *f = opaque;
    return lt_sync_message_write(f->s, chunk, len, f->err, sizeof(f->err));
}

static lt_err_t cb_end(void *opaque)
{
    fetch_ctx_t *f = opaque;
    lt_err_t err = lt_sync_message_end(f->s, f->err, sizeof(f->err));
    if (!err && lt_sync_skipped(f->s) == f->skipped_before)
        f->published_uid = f->last_uid;
    return err;
}

static lt_err_t flags_now(fetch_ctx_t *f, uint32_t uid, const char *canon, uint64_t modseq)
{
    char pmid[1200];
    lt_sync_imap_message_id(f->folder, f->uidvalidity, uid, pmid, sizeof(pmid));
    return lt_imap_publish_flags(f->s, f->folder, pmid, canon, modseq ? (int64_t)modseq : -1,
                                 f->err, sizeof(f->err));
}

/* A new message's flags, right after its raw event: its first state. */
static lt_err_t cb_flags(void *opaque, uint32_t uid, const char *const *flags, size_t nflags,
                         uint64_t modseq)
{
    fetch_ctx_t *f = opaque;
    if (uid != f->published_uid)
        return LT_OK; /* not published (skipped) */
    f->published_uid = 0;
    char *canon = lt_imap_flags_canon(flags, nflags);
    if (lt_sync_checkpoint_pending(f->s)) {
        later_add(f, (later_t){.uid = uid, .flags = 1, .modseq = (int64_t)modseq, .text = canon});
        return LT_OK;
    }
    lt_err_t err = later_run(f);
    if (!err)
        err = flags_now(f, uid, canon, modseq);
    free(canon);
    return err;
}

static void cb_skipped(void *opaque, uint32_t uid, lt_err_t why, const char *reason)
{
    fetch_ctx_t *f = opaque;
    /* (in order behind what is kept: this callback cannot return the error
     * of a kept flags event; cb_begin, cb_flags and the batch's end can) */
    if (lt_sync_checkpoint_pending(f->s) || f->nlater) {
        later_add(f, (later_t){.uid = uid, .why = why, .text = lt_xstrdup(reason ? reason : "")});
        return;
    }
    skipped_now(f, uid, why, reason);
}

static void skipped_now(fetch_ctx_t *f, uint32_t uid, lt_err_t why, const char *reason)
{
    char pmid[1200];
    lt_sync_imap_message_id(f->folder, f->uidvalidity, uid, pmid, sizeof(pmid));
    if (why == LT_ERR_NOT_FOUND) { /* UID SEARCH confirmed it is gone */
        lt_sync_note_expunged(f->s, pmid);
        lt_info(lt_sync_log(f->s), "folder %s UID %u expunged before it was fetched: %s",
                f->folder, uid, reason ? reason : "");
        return;
    }
    f->skipped++;
    if (uid > f->last_uid)
        f->last_uid = uid;
    lt_buf_appendf(f->skipped_uids, "%s%u", lt_buf_len(f->skipped_uids) ? "," : "", uid);
    lt_sync_note_skipped(f->s, pmid);
    lt_warn(lt_sync_log(f->s), "folder %s UID %u not ingested (%s): %s", f->folder, uid,
            lt_err_name(why), reason ? reason : "");
}

typedef struct {
    const lt_sync_imap_opts_t *opts;
    imap_conf_t conf;
    lt_imap_t *c;
    lt_log_ctx_t log;
    uint64_t max_message;
    int want_qresync; /* ENABLE QRESYNC after login (change tracking) */
    uint64_t bytes_in, bytes_out; /* of the sessions closed so far */
    int down;    /* the last session_open failed: the server is out of reach */
    int flagged; /* the account was flagged: no folder is synced any more */
} session_t;

static void session_drop(session_t *ss)
{
    uint64_t in = 0, out = 0;
    lt_imap_wire_bytes(ss->c, &in, &out);
    ss->bytes_in += in;
    ss->bytes_out += out;
    lt_imap_destroy(ss->c);
    ss->c = NULL;
}

static lt_err_t session_open(session_t *ss, char *errstr, size_t n)
{
    session_drop(ss);
    lt_imap_opts_t o;
    memset(&o, 0, sizeof(o));
    o.host = ss->conf.host;
    o.port = ss->conf.port;
    o.tls = 1;
    o.ca_file = ss->opts->ca_file;
    o.max_message = ss->max_message; /* bigger: skipped() and reported, not a failure */
    o.log = &ss->log;
    o.hide_caps = ss->conf.hide_caps;
    ss->c = lt_imap_new(&o);
    lt_err_t err = lt_imap_connect(ss->c, errstr, n);
    if (!err)
        err = lt_imap_login(ss->c, ss->conf.user, ss->conf.password, errstr, n);
    ss->down = err != LT_OK;
    /* (only before a mailbox is examined; not advertised: nothing sent) */
    if (!err && ss->want_qresync) {
        char e[512];
        lt_err_t eerr = lt_imap_enable(ss->c, "QRESYNC", NULL, e, sizeof(e));
        if (eerr == LT_ERR_TEMPORARY) /* the connection is gone */
            err = lt_seterr(errstr, n, eerr, "%s", e);
        else if (eerr) /* refused: the folders get the fallback */
            lt_warn(&ss->log, "ENABLE QRESYNC refused (%s): change tracking without it", e);
    }
    return err;
}

static void backoff_sleep(const lt_sync_imap_opts_t *opts, int attempt)
{
    long ms = (long)opts->retry_base_ms << (attempt < 6 ? attempt : 6);
    if (ms > 30000)
        ms = 30000;
    ms = ms / 2 + (rand() % (ms / 2 + 1));
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A backfill run again (Kafka re-delivers its command after a crash or a
 * rebalance): resume after the last UID its committed batches covered, if
 * the folder's UIDVALIDITY is still the one the cursor was written in. */
static lt_err_t backfill_resume(lt_sync_t *s, const char *folder, uint32_t uidvalidity,
                                uint32_t *durable, char *errstr, size_t n)
{
    const lt_account_t *a = lt_sync_account(s);
    char cur[LT_WATERMARK_CURSOR_MAX];
    lt_err_t err = lt_watermark_cursor_get(lt_sync_db(s),
                                           &(lt_watermark_key_t){.tenant = lt_account_tenant(a),
                                                                 .account_id = lt_account_id(a),
                                                                 .scope = folder,
                                                                 .provider = "imap"},
                                           LT_CURSOR_COMMAND, lt_command_id(lt_sync_command(s)),
                                           cur, errstr, n);
    if (err == LT_ERR_NOT_FOUND)
        return LT_OK;
    if (err)
        return err;
    json_object *o = json_tokener_parse(cur), *v;
    uint32_t validity = 0, last = 0;
    int64_t done = 0;
    if (o && json_object_object_get_ex(o, "uidvalidity", &v))
        validity = (uint32_t)json_object_get_int64(v);
    if (o && json_object_object_get_ex(o, "last_uid", &v))
        last = (uint32_t)json_object_get_int64(v);
    if (o && json_object_object_get_ex(o, "done", &v))
        done = json_object_get_int64(v);
    json_object_put(o);
    if (validity != uidvalidity || !last) {
        lt_warn(lt_sync_log(s),
                "backfill of %s: cursor %s is for UIDVALIDITY %u, folder has %u; "
                "starting the range again",
                folder, cur, validity, uidvalidity);
        return LT_OK;
    }
    *durable = last;
    lt_sync_progress_resume(s, done);
    lt_info(lt_sync_log(s), "backfill of %s: resuming after UID %u (%lld done before)", folder,
            last, (long long)done);
    return LT_OK;
}

/* Sync one folder (incremental) or one UID range (backfill). */
static lt_err_t sync_folder(lt_sync_t *s, session_t *ss, const char *folder, int backfill,
                            uint32_t bf_start, uint32_t bf_end, char *errstr, size_t n)
{
    lt_err_t err = LT_OK;
    const lt_account_t *a = lt_sync_account(s);
    lt_db_t *db = lt_sync_db(s);
    uint32_t *uids = NULL;
    size_t nuids = 0;
    fetch_ctx_t f;
    memset(&f, 0, sizeof(f));
    f.s = s;
    f.folder = folder;
    f.skipped_uids = lt_buf_new(4096);
    lt_sync_set_scope(s, folder);
    ss->log.scope = lt_sync_log(s)->scope; /* the IMAP client's log lines too */
    /* Change tracking (docs/imap.md): the incremental sync of a tracked
     * folder first publishes its changes, then its new messages with their
     * flags. chg: 0 to do, 1 published in the open transaction (redone if
     * it is aborted), 2 committed. */
    int track = !backfill && lt_sync_changes_enabled(s, folder);
    lt_sync_track_known(s, track);
    lt_imap_changes_t *ch = track ? lt_imap_changes_new(s, folder) : NULL;
    int chg = 0;
    lt_watermark_t stored; /* the folder's watermark as read; zero when none */
    int have_wm = 0;
    lt_watermark_t next; /* change-tracking keys of the watermarks written */
    memset(&stored, 0, sizeof(stored));
    memset(&next, 0, sizeof(next));

    int reconnects = 0;
    uint32_t durable = 0; /* last UID known committed for this command */
    int first = 1;
    uint32_t validity = 0;
    int resync = 0;
    for (;;) {
        if (!first || !ss->c) {
            err = session_open(ss, errstr, n);
            if (err)
                goto retry;
        }
        if (!backfill && first) {
            lt_err_t werr = lt_watermark_get(db,
                                             &(lt_watermark_key_t){.tenant = lt_account_tenant(a),
                                                                   .account_id = lt_account_id(a),
                                                                   .scope = folder,
                                                                   .provider = "imap"},
                                             &stored, errstr, n);
            if (werr && werr != LT_ERR_NOT_FOUND) {
                err = werr;
                goto retry;
            }
            have_wm = werr == LT_OK;
            if (!have_wm)
                memset(&stored, 0, sizeof(stored));
        }
        lt_imap_mailbox_t mb;
        /* QRESYNC: the EXAMINE itself tells what changed since the stored
         * HIGHESTMODSEQ (held until the mode is decided) */
        int examined_qr = track && first && have_wm && chg == 0 && stored.highestmodseq &&
                          stored.highestmodseq <= LT_IMAP_MODSEQ_MAX &&
                          (lt_imap_enabled(ss->c) & LT_IMAP_CAP_QRESYNC);
        if (examined_qr) {
            lt_imap_range_t known = {1, stored.last_uid};
            err = lt_imap_examine_qresync(ss->c, folder,
                                          &(lt_imap_qresync_t){stored.uidvalidity,
                                                               stored.highestmodseq,
                                                               stored.last_uid ? &known : NULL,
                                                               stored.last_uid ? 1 : 0},
                                          &mb, lt_imap_changes_examine_cb(ch), errstr, n);
        } else {
            err = lt_imap_examine(ss->c, folder, &mb, errstr, n);
        }
        if (err == LT_ERR_NOT_FOUND) { /* the caller reports the scope as missing */
            char why[512];
            snprintf(why, sizeof(why), "%.511s", errstr);
            err = lt_seterr(errstr, n, LT_ERR_NOT_FOUND, "folder \"%s\" does not exist (%s)",
                            folder, why);
            goto out;
        }
        if (err)
            goto retry;
        if (validity && mb.uidvalidity != validity) {
            /* Changed between our own sessions: confirm it is not flapping. */
            ss->flagged = 1;
            lt_account_set_status(db, lt_account_tenant(a), lt_account_id(a), "flagged",
                                  "UIDVALIDITY changes between sessions", NULL, 0);
            err = lt_seterr(errstr, n, LT_ERR_FINAL,
                            "folder \"%s\": UIDVALIDITY changed between sessions (%u then %u); "
                            "account flagged instead of resyncing in a loop",
                            folder, validity, mb.uidvalidity);
            goto out;
        }
        uint32_t start;
        if (backfill) {
            if (first && (err = backfill_resume(s, folder, mb.uidvalidity, &durable, errstr, n)))
                goto retry;
            validity = mb.uidvalidity;
            start = durable ? durable + 1 : (bf_start ? bf_start : 1);
        } else if (first) {
            const lt_watermark_t wm = stored;
            if (!have_wm) {
                start = 1;
                if (track)
                    lt_imap_changes_first(&mb, lt_imap_enabled(ss->c), (int64_t)time(NULL),
                                          &next);
            } else if (wm.uidvalidity != mb.uidvalidity) {
                /* Confirm in a second session before resyncing everything. */
                uint32_t seen = mb.uidvalidity;
                err = session_open(ss, errstr, n);
                if (!err)
                    err = lt_imap_examine(ss->c, folder, &mb, errstr, n);
                if (err)
                    goto retry;
                if (mb.uidvalidity != seen) {
                    ss->flagged = 1;
                    lt_account_set_status(db, lt_account_tenant(a), lt_account_id(a), "flagged",
                                          "UIDVALIDITY changes on every session", NULL, 0);
                    err = lt_seterr(errstr, n, LT_ERR_FINAL,
                                    "folder \"%s\": UIDVALIDITY changes on every session (%u, "
                                    "%u, %u); account flagged",
                                    folder, wm.uidvalidity, seen, mb.uidvalidity);
                    goto out;
                }
                lt_warn(lt_sync_log(s),
                        "folder %s: UIDVALIDITY changed %u -> %u: full resync of the folder",
                        folder, wm.uidvalidity, mb.uidvalidity);
                resync = 1;
                start = 1;
                if (track) {
                    /* the old UIDVALIDITY's messages are gone for good (their
                     * ids are never listed again): deleted, then forget the
                     * folder; a full listing follows */
                    size_t ndel = 0;
                    err = lt_imap_changes_reset(s, folder, &ndel, errstr, n);
                    if (err) {
                        chg = 1; /* redone after the retry's abort */
                        goto retry;
                    }
                    lt_info(lt_sync_log(s),
                            "folder %s: %zu message(s) of UIDVALIDITY %u deleted, then a reset",
                            folder, ndel, wm.uidvalidity);
                    lt_imap_changes_first(&mb, lt_imap_enabled(ss->c), (int64_t)time(NULL),
                                          &next);
                    chg = 1;
                }
            } else {
                start = wm.last_uid + 1;
                durable = wm.last_uid;
                if (track && chg == 0) {
                    next = wm;
                    err = lt_imap_changes_run(ch, ss->c,
                                              &(lt_imap_changes_in_t){
                                                  .wm = &wm,
                                                  .mb = &mb,
                                                  .examined_qresync = examined_qr,
                                                  .flags_scan_interval_s =
                                                      ss->opts->flags_scan_interval_s,
                                                  .now_s = (int64_t)time(NULL)},
                                              &next, errstr, n);
                    chg = 1; /* on failure: redone after the retry's abort */
                    if (err)
                        goto retry;
                }
            }
            validity = mb.uidvalidity;
        } else {
            start = durable + 1;
        }
        first = 0;
        f.uidvalidity = validity;

        free(uids);
        uids = NULL;
        nuids = 0;
        uint32_t last = backfill ? bf_end : 0;
        if (start == 0 || (last && start > last)) {
            nuids = 0; /* UID space exhausted or empty range */
        } else {
            err = lt_imap_uid_search(ss->c, start, last, &uids, &nuids, errstr, n);
            if (err)
                goto retry;
        }
        lt_sync_set_total(s, lt_sync_progress_done(s) + (int64_t)nuids);
        lt_command_progress_t prog = {lt_sync_messages(s), lt_sync_bytes(s),
                                      lt_sync_progress_done(s), lt_sync_progress_total(s)};
        lt_command_heartbeat(db, lt_command_id(lt_sync_command(s)), &prog, NULL, 0);

        size_t batch = (size_t)lt_sync_batch_messages(s);
        /* Each batch's checkpoint is deferred until the next batch is read
         * (lt_sync_checkpoint_defer): its last uploads, the Kafka commit and
         * the watermark overlap the next fetch and its uploads instead of
         * stalling them. What the deferred one makes durable: */
        struct {
            int on;
            int64_t ok_before; /* lt_sync_checkpoints_ok() when it was deferred */
            uint32_t last_uid;
            uint64_t skipped;
            size_t skipped_len;
            int chg;
        } dcp = {0};
        for (size_t i = 0, k = 0;; i += k) {
            if (lt_sync_cancelled(s)) {
                /* what was read is committed first, as before the deferral */
                char e[256];
                (void)lt_sync_checkpoint_flush(s, e, sizeof(e));
                later_drop(&f);
                err = lt_seterr(errstr, n, LT_ERR_TEMPORARY, "cancelled (shutdown or revoke)");
                goto out;
            }
            k = nuids - i < batch ? nuids - i : batch; /* 0: only the last checkpoint */
            f.last_uid = 0;
            err = LT_OK;
            if (k)
                err = lt_imap_uid_fetch(ss->c, uids + i, k,
                                        &(lt_imap_fetch_cb_t){cb_begin, cb_data, cb_end,
                                                              cb_skipped, &f,
                                                              track ? cb_flags : NULL},
                                        errstr, n);
            if (k && !err && i + k < nuids) {
                /* the next batch's UID FETCH goes out before the
                 * checkpoint: its answer travels meanwhile (a failure to
                 * send shows at that fetch) */
                char e[256];
                size_t k2 = nuids - (i + k) < batch ? nuids - (i + k) : batch;
                if (lt_imap_uid_fetch_ahead(ss->c, uids + i + k, k2, track, e, sizeof(e)))
                    lt_debug(lt_sync_log(s), "folder %s: next fetch not sent ahead: %s", folder,
                             e);
            }
            /* the previous batch's checkpoint: now (or already done by a
             * message published in order during the fetch). A failed fetch
             * does not hold it back (its messages are behind the fence):
             * the batch before commits, as it did before the deferral. */
            lt_err_t cerr = LT_OK;
            if (err) {
                char e[256];
                if (f.err[0])
                    snprintf(errstr, n, "%s", f.err);
                lt_sync_message_abandon(s);
                if (lt_sync_checkpoint_flush(s, e, sizeof(e)))
                    lt_warn(lt_sync_log(s), "folder %s: checkpoint after a failed fetch: %s",
                            folder, e);
            } else {
                cerr = lt_sync_checkpoint_flush(s, errstr, n);
            }
            if (dcp.on && lt_sync_checkpoints_ok(s) > dcp.ok_before) {
                /* committed (even if the fetch failed after it) */
                if (dcp.chg && chg == 1)
                    chg = 2;
                f.durable_skipped = dcp.skipped;
                f.durable_len = dcp.skipped_len;
                resync = 0;
                durable = dcp.last_uid;
                dcp.on = 0;
                lt_command_progress_t pr = {lt_sync_messages(s), lt_sync_bytes(s),
                                            lt_sync_progress_done(s), lt_sync_progress_total(s)};
                lt_command_heartbeat(db, lt_command_id(lt_sync_command(s)), &pr, NULL, 0);
            }
            if (cerr) { /* the checkpoint aborted, or left its batch in doubt */
                later_drop(&f);
                err = cerr;
                goto retry;
            }
            if (!err && (err = later_run(&f)))
                snprintf(errstr, n, "%s", f.err);
            if (err) {
                later_drop(&f);
                lt_sync_message_abandon(s);
                if (!lt_sync_in_doubt(s))
                    lt_sync_abort(s);
                goto retry;
            }
            if (!k)
                break;
            lt_watermark_t wm = {.uidvalidity = validity,
                                 .last_uid = uids[i + k - 1],
                                 .highestmodseq = next.highestmodseq,
                                 .flags_scanned_at = next.flags_scanned_at};
            dcp.ok_before = lt_sync_checkpoints_ok(s);
            if (backfill) {
                /* the backfill's position moves with the batch (command row) */
                char cur[128];
                snprintf(cur, sizeof(cur),
                         "{\"uidvalidity\": %u, \"last_uid\": %u, \"done\": %lld}", validity,
                         uids[i + k - 1], (long long)lt_sync_progress_done(s));
                err = lt_sync_checkpoint_defer(s, folder, NULL, 0, LT_CURSOR_COMMAND, cur, errstr,
                                               n);
            } else {
                err = lt_sync_checkpoint_defer(s, folder, &wm, resync, LT_CURSOR_NONE, NULL,
                                               errstr, n);
            }
            if (err)
                goto retry;
            dcp.on = 1;
            dcp.last_uid = uids[i + k - 1];
            dcp.skipped = f.skipped;
            dcp.skipped_len = lt_buf_len(f.skipped_uids);
            dcp.chg = chg == 1;
        }
        if (!backfill && nuids == 0 &&
            (resync || durable == 0 || chg == 1 ||
             (track && (next.highestmodseq != stored.highestmodseq ||
                        next.flags_scanned_at != stored.flags_scanned_at)))) {
            /* Record the (new) validity even when the folder is empty, and
             * the changes published with where they were read. */
            lt_watermark_t wm = {.uidvalidity = validity,
                                 .last_uid = durable,
                                 .highestmodseq = next.highestmodseq,
                                 .flags_scanned_at = next.flags_scanned_at};
            err = lt_sync_checkpoint(s, folder, &wm, resync, errstr, n);
            if (err)
                goto retry;
            if (chg == 1)
                chg = 2;
        }
        err = LT_OK;
        goto out;
    retry:
        if (err != LT_ERR_TEMPORARY || ++reconnects > ss->opts->max_reconnects || lt_sync_cancelled(s))
            goto out;
        /* Postgres gone: so is the account lock; the command is retried on
         * a new connection (a new IMAP session cannot help). A batch left
         * in doubt is resolved by that retry's recovery, not redone here;
         * a producer to be replaced is replaced between attempts. */
        if (!lt_db_ok(lt_sync_db(s)) || lt_sync_in_doubt(s) || lt_sync_producer_unusable(s))
            goto out;
        lt_warn(lt_sync_log(s), "folder %s: %s; reconnecting (attempt %d), resuming after UID %u",
                folder, errstr, reconnects, durable);
        f.skipped = f.durable_skipped; /* the batch is fetched again: its skips too */
        later_drop(&f);
        lt_buf_truncate(f.skipped_uids, f.durable_len);
        session_drop(ss);
        first = first && !validity;
        if (chg == 1) {
            /* the changes were not committed: their transaction is dropped
             * and they are found again from the stored watermark (what an
             * intermediate checkpoint committed is known and not repeated) */
            lt_sync_abort(s);
            chg = 0;
            first = 1;
            resync = 0;
        }
        backoff_sleep(ss->opts, reconnects);
    }
out:
    later_drop(&f);
    free(f.later);
    lt_sync_track_known(s, 0);
    lt_imap_changes_destroy(ch);
    if (!err && f.skipped)
        lt_warn(lt_sync_log(s), "folder %s: %llu message(s) not ingested: UIDs %s", folder,
                (unsigned long long)f.skipped, lt_buf_str(f.skipped_uids));
    lt_buf_destroy(f.skipped_uids);
    free(uids);
    return err;
}

lt_err_t lt_sync_imap_run(lt_sync_t *s, const lt_sync_imap_opts_t *opts, char *errstr,
                          size_t errstr_size)
{
    session_t ss;
    memset(&ss, 0, sizeof(ss));
    ss.opts = opts;
    ss.log = *lt_sync_log(s);
    ss.max_message = lt_sync_max_message_bytes(s);
    const lt_command_t *cmd = lt_sync_command(s);
    lt_err_t err = parse_conf(lt_sync_account(s), opts->secrets_dir, &ss.conf, errstr, errstr_size);
    if (err)
        goto out;
    ss.want_qresync = lt_command_kind(cmd) != LT_SYNC_BACKFILL && lt_sync_changes_enabled(s, NULL);
    err = session_open(&ss, errstr, errstr_size);
    if (err == LT_ERR_REAUTH) {
        const lt_account_t *a = lt_sync_account(s);
        lt_account_set_status(lt_sync_db(s), lt_account_tenant(a), lt_account_id(a),
                              "needs_reauth", errstr, NULL, 0);
        goto out;
    }
    if (err && err != LT_ERR_TEMPORARY)
        goto out;
    if (err) { /* let sync_folder's reconnect loop handle it */
        session_drop(&ss);
    }
    /* Folders fail independently (lt_sync_scope_done): a missing one or one
     * the server fails on does not keep the others from syncing. */
    int backfill = lt_command_kind(cmd) == LT_SYNC_BACKFILL;
    const char *one = backfill ? lt_command_backfill_folder(cmd) : lt_command_scope(cmd);
    size_t nf = one ? 1 : ss.conf.nfolders;
    err = LT_OK;
    for (size_t i = 0; i < nf; i++) {
        const char *folder = one ? one : ss.conf.folders[i];
        char e[1024] = "";
        lt_err_t ferr = sync_folder(s, &ss, folder, backfill,
                                    backfill ? lt_command_backfill_start_uid(cmd) : 0,
                                    backfill ? lt_command_backfill_end_uid(cmd) : 0, e, sizeof(e));
        lt_sync_scope_done(s, folder,
                           !ferr                        ? LT_SYNC_SCOPE_OK
                           : ferr == LT_ERR_NOT_FOUND   ? LT_SYNC_SCOPE_MISSING
                                                        : LT_SYNC_SCOPE_FAILED,
                           ferr == LT_ERR_NOT_FOUND ? LT_ERR_FINAL : ferr, e);
        if (!ferr)
            continue;
        lt_warn(lt_sync_log(s), "folder %s not synced (%s): %s", folder,
                ferr == LT_ERR_NOT_FOUND ? "missing" : lt_err_name(ferr), e);
        /* What fails for every folder ends the command here. */
        if (ferr == LT_ERR_REAUTH || ss.down || ss.flagged || lt_sync_cancelled(s) ||
            lt_sync_in_doubt(s) || !lt_db_ok(lt_sync_db(s))) {
            err = lt_seterr(errstr, errstr_size, ferr, "%s", e);
            break;
        }
        if (ferr != LT_ERR_NOT_FOUND) { /* the next folder on a new session */
            session_drop(&ss);
        }
    }
    if (!err)
        err = lt_sync_scopes_result(s, errstr, errstr_size);
    if (ss.c)
        lt_imap_logout(ss.c, NULL, 0);
out:
    session_drop(&ss);
    lt_info(lt_sync_log(s), "IMAP wire bytes: %llu in, %llu out",
            (unsigned long long)ss.bytes_in, (unsigned long long)ss.bytes_out);
    conf_free(&ss.conf);
    return err;
}
