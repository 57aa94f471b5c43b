#include "lt_sync_imap_changes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lt_buf.h"
#include "lt_known.h"
#include "lt_sync_imap.h"

typedef struct {
    uint32_t uid;
    char *state; /* canonical flags last published; NULL: none recorded */
    int gone;    /* reported deleted by this run */
} known_t;

typedef struct {
    uint32_t uid;
    char *flags; /* canonical */
    uint64_t modseq;
} flag_t;

struct lt_imap_changes_s {
    lt_sync_t *s;
    const char *folder;
    lt_imap_changes_cb_t cb;
    /* the EXAMINE's QRESYNC answers */
    lt_imap_range_t *van;
    size_t nvan, capvan;
    flag_t *fl;
    size_t nfl, capfl;
    /* the known set of the folder's UIDVALIDITY, by UID */
    known_t *kn;
    size_t nkn, capkn;
    char prefix[1200];
    size_t prefix_len;
    uint32_t last_uid; /* flags of UIDs above: new messages, not changes */
    int seeding;
    lt_imap_changes_stats_t st;
};

const char *lt_imap_chg_mode_name(lt_imap_chg_mode_t m)
{
    switch (m) {
    case LT_IMAP_CHG_QRESYNC:
        return "qresync";
    case LT_IMAP_CHG_FULL:
        return "full";
    case LT_IMAP_CHG_BACKWARDS:
        return "highestmodseq_backwards";
    case LT_IMAP_CHG_FALLBACK:
        return "fallback";
    case LT_IMAP_CHG_SEED:
        return "seed";
    }
    return "?";
}

lt_imap_chg_mode_t lt_imap_chg_mode(const lt_watermark_t *wm, const lt_imap_mailbox_t *mb,
                                    unsigned enabled, int examined_qresync, size_t nknown,
                                    int64_t now_s, int flags_scan_interval_s, int *scan_flags)
{
    int modseq = (enabled & LT_IMAP_CAP_QRESYNC) && !mb->nomodseq && mb->highestmodseq;
    *scan_flags = 1;
    /* Synced before tracking, or while it was off (the checkpoints of an
     * untracked sync store neither key): the known set cannot be trusted. */
    if (wm->last_uid && (nknown == 0 || (!wm->highestmodseq && !wm->flags_scanned_at)))
        return LT_IMAP_CHG_SEED;
    if (!modseq) {
        *scan_flags = flags_scan_interval_s <= 0 || !wm->flags_scanned_at ||
                      now_s - wm->flags_scanned_at >= flags_scan_interval_s ||
                      now_s < wm->flags_scanned_at;
        return LT_IMAP_CHG_FALLBACK;
    }
    if (!wm->highestmodseq)
        return LT_IMAP_CHG_FULL;
    if (mb->highestmodseq < wm->highestmodseq)
        return LT_IMAP_CHG_BACKWARDS;
    if (!examined_qresync)
        return LT_IMAP_CHG_FULL;
    *scan_flags = 0;
    return LT_IMAP_CHG_QRESYNC;
}

void lt_imap_changes_first(const lt_imap_mailbox_t *mb, unsigned enabled, int64_t now_s,
                           lt_watermark_t *next)
{
    int modseq = (enabled & LT_IMAP_CAP_QRESYNC) && !mb->nomodseq && mb->highestmodseq;
    next->highestmodseq = modseq ? mb->highestmodseq : 0;
    /* the new messages' flags are published with them: a full listing */
    next->flags_scanned_at = now_s > 0 ? now_s : 1;
}

typedef struct {
    char **ids;
    size_t n, cap;
} id_list_t;

static int on_known_id(const char *id, const char *state, void *opaque)
{
    (void)state;
    id_list_t *l = opaque;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->ids = lt_xrealloc(l->ids, l->cap * sizeof(*l->ids));
    }
    l->ids[l->n++] = lt_xstrdup(id);
    return 0;
}

lt_err_t lt_imap_changes_reset(lt_sync_t *s, const char *folder, size_t *ndeleted,
                               char *errstr, size_t errstr_size)
{
    const lt_account_t *a = lt_sync_account(s);
    id_list_t l = {0};
    *ndeleted = 0;
    lt_err_t err = lt_known_each(lt_sync_db(s),
                                 &(lt_watermark_key_t){.tenant = lt_account_tenant(a),
                                                       .account_id = lt_account_id(a),
                                                       .scope = folder,
                                                       .provider = "imap"},
                                 on_known_id, &l, errstr, errstr_size);
    for (size_t i = 0; !err && i < l.n; i++) {
        err = lt_sync_change(s,
                             &(lt_sync_change_t){.kind = LT_CHANGE_DELETED,
                                                 .provider_message_id = l.ids[i],
                                                 .mailbox = folder,
                                                 .position = -1},
                             errstr, errstr_size);
        if (!err)
            (*ndeleted)++;
    }
    if (!err)
        err = lt_sync_change(s,
                             &(lt_sync_change_t){.kind = LT_CHANGE_RESET,
                                                 .mailbox = folder,
                                                 .position = -1,
                                                 .reset_reason = LT_CHANGE_RESET_UIDVALIDITY},
                             errstr, errstr_size);
    if (!err)
        lt_sync_known_forget(s);
    for (size_t i = 0; i < l.n; i++)
        free(l.ids[i]);
    free(l.ids);
    return err;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *lt_imap_flags_canon(const char *const *flags, size_t nflags)
{
    const char **v = lt_xmalloc((nflags ? nflags : 1) * sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < nflags; i++)
        if (flags[i][0] && strcasecmp(flags[i], "\\Recent"))
            v[n++] = flags[i];
    qsort(v, n, sizeof(*v), cmp_str);
    lt_buf_t *b = lt_buf_new(1u << 20);
    for (size_t i = 0; i < n; i++)
        if (!i || strcmp(v[i], v[i - 1]))
            lt_buf_appendf(b, "%s%s", lt_buf_len(b) ? " " : "", v[i]);
    char *out = lt_xstrdup(lt_buf_str(b));
    lt_buf_destroy(b);
    free(v);
    return out;
}

lt_err_t lt_imap_publish_flags(lt_sync_t *s, const char *folder, const char *pmid,
                               const char *canon, int64_t position, char *errstr, size_t n)
{
    size_t cap = 8, ni = 0;
    const char **items = lt_xmalloc(cap * sizeof(*items));
    char *copy = lt_xstrdup(canon), *save = NULL;
    for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (ni == cap) {
            cap *= 2;
            items = lt_xrealloc(items, cap * sizeof(*items));
        }
        items[ni++] = t;
    }
    lt_err_t err = lt_sync_change(s,
                                  &(lt_sync_change_t){.kind = LT_CHANGE_FLAGS,
                                                      .provider_message_id = pmid,
                                                      .mailbox = folder,
                                                      .position = position,
                                                      .items = items,
                                                      .nitems = ni},
                                  errstr, n);
    if (!err)
        lt_sync_known_state(s, pmid, canon);
    if (err == LT_ERR_INVALID) {
        /* a set the codec refuses (over LT_CHANGE_MAX_ITEMS keywords, one
         * not UTF-8) fails the same way every time: reported, not fatal;
         * the state stays unrecorded, so it is compared again next time */
        lt_warn(lt_sync_log(s), "folder %s: flags of %s not published: %s", folder, pmid,
                errstr);
        err = LT_OK;
    }
    free(items);
    free(copy);
    return err;
}

static void held_reset(lt_imap_changes_t *ch)
{
    for (size_t i = 0; i < ch->nfl; i++)
        free(ch->fl[i].flags);
    ch->nfl = 0;
    ch->nvan = 0;
}

static void push_flag(lt_imap_changes_t *ch, uint32_t uid, char *canon, uint64_t modseq)
{
    if (ch->nfl == ch->capfl) {
        ch->capfl = ch->capfl ? 2 * ch->capfl : 256;
        ch->fl = lt_xrealloc(ch->fl, ch->capfl * sizeof(*ch->fl));
    }
    ch->fl[ch->nfl++] = (flag_t){uid, canon, modseq};
}

static lt_err_t on_changed(void *opaque, uint32_t uid, const char *const *flags, size_t nflags,
                           uint64_t modseq)
{
    push_flag(opaque, uid, lt_imap_flags_canon(flags, nflags), modseq);
    return LT_OK;
}

static lt_err_t on_vanished(void *opaque, const lt_imap_range_t *r, size_t n, int earlier)
{
    lt_imap_changes_t *ch = opaque;
    (void)earlier; /* expunged before or during the command: gone either way */
    for (size_t i = 0; i < n; i++) {
        if (ch->nvan == ch->capvan) {
            ch->capvan = ch->capvan ? 2 * ch->capvan : 64;
            ch->van = lt_xrealloc(ch->van, ch->capvan * sizeof(*ch->van));
        }
        ch->van[ch->nvan++] = r[i];
    }
    return LT_OK;
}

lt_imap_changes_t *lt_imap_changes_new(lt_sync_t *s, const char *folder)
{
    lt_imap_changes_t *ch = lt_xcalloc(1, sizeof(*ch));
    ch->s = s;
    ch->folder = folder;
    ch->cb = (lt_imap_changes_cb_t){on_changed, on_vanished, ch};
    return ch;
}

static void known_reset(lt_imap_changes_t *ch)
{
    for (size_t i = 0; i < ch->nkn; i++)
        free(ch->kn[i].state);
    ch->nkn = 0;
}

void lt_imap_changes_destroy(lt_imap_changes_t *ch)
{
    if (!ch)
        return;
    held_reset(ch);
    known_reset(ch);
    free(ch->fl);
    free(ch->van);
    free(ch->kn);
    free(ch);
}

const lt_imap_changes_cb_t *lt_imap_changes_examine_cb(lt_imap_changes_t *ch)
{
    held_reset(ch);
    return &ch->cb;
}

void lt_imap_changes_stats(const lt_imap_changes_t *ch, lt_imap_changes_stats_t *out)
{
    *out = ch->st;
}

static void known_push(lt_imap_changes_t *ch, uint32_t uid, const char *state)
{
    if (ch->nkn == ch->capkn) {
        ch->capkn = ch->capkn ? 2 * ch->capkn : 1024;
        ch->kn = lt_xrealloc(ch->kn, ch->capkn * sizeof(*ch->kn));
    }
    ch->kn[ch->nkn++] = (known_t){uid, state ? lt_xstrdup(state) : NULL, 0};
}

/* One known message: kept when it is of this folder's UIDVALIDITY. */
static int on_known(const char *id, const char *state, void *opaque)
{
    lt_imap_changes_t *ch = opaque;
    if (strncmp(id, ch->prefix, ch->prefix_len))
        return 0;
    const char *p = id + ch->prefix_len;
    char *end;
    errno = 0;
    unsigned long u = strtoul(p, &end, 10);
    if (end == p || *end || errno || !u || u > UINT32_MAX)
        return 0;
    known_push(ch, (uint32_t)u, state);
    return 0;
}

static int cmp_known(const void *a, const void *b)
{
    uint32_t x = ((const known_t *)a)->uid, y = ((const known_t *)b)->uid;
    return x < y ? -1 : x > y;
}

static known_t *known_find(lt_imap_changes_t *ch, uint32_t uid)
{
    known_t key = {uid, NULL, 0};
    return ch->nkn ? bsearch(&key, ch->kn, ch->nkn, sizeof(*ch->kn), cmp_known) : NULL;
}

static lt_err_t load_known(lt_imap_changes_t *ch, uint32_t validity, char *errstr, size_t n)
{
    known_reset(ch);
    lt_sync_imap_message_id(ch->folder, validity, 0, ch->prefix, sizeof(ch->prefix));
    ch->prefix_len = strlen(ch->prefix) - 1; /* without the "0" */
    const lt_account_t *a = lt_sync_account(ch->s);
    lt_err_t err = lt_known_each(lt_sync_db(ch->s),
                                 &(lt_watermark_key_t){.tenant = lt_account_tenant(a),
                                                       .account_id = lt_account_id(a),
                                                       .scope = ch->folder,
                                                       .provider = "imap"},
                                 on_known, ch, errstr, n);
    if (err)
        return err;
    if (ch->nkn)
        qsort(ch->kn, ch->nkn, sizeof(*ch->kn), cmp_known);
    return LT_OK;
}

typedef struct {
    lt_imap_changes_t *ch;
    const lt_watermark_t *wm;
    size_t since_checkpoint;
} emit_t;

/* A checkpoint every batch_messages changes, keeping the stored watermark:
 * a long phase does not grow one transaction without bound, and what is
 * committed is never published again (the known set moved with it). */
static lt_err_t maybe_checkpoint(emit_t *e, char *errstr, size_t n)
{
    if (++e->since_checkpoint < (size_t)lt_sync_batch_messages(e->ch->s))
        return LT_OK;
    e->since_checkpoint = 0;
    return lt_sync_checkpoint(e->ch->s, e->ch->folder, e->wm, 0, errstr, n);
}

static lt_err_t emit_deleted(emit_t *e, known_t *k, int64_t position, char *errstr, size_t n)
{
    lt_imap_changes_t *ch = e->ch;
    char pmid[1200];
    lt_sync_imap_message_id(ch->folder, e->wm->uidvalidity, k->uid, pmid, sizeof(pmid));
    lt_err_t err = lt_sync_change(ch->s,
                                  &(lt_sync_change_t){.kind = LT_CHANGE_DELETED,
                                                      .provider_message_id = pmid,
                                                      .mailbox = ch->folder,
                                                      .position = position},
                                  errstr, n);
    if (err)
        return err;
    k->gone = 1;
    ch->st.deleted++;
    return maybe_checkpoint(e, errstr, n);
}

static lt_err_t emit_flags(emit_t *e, known_t *k, const char *canon, uint64_t modseq,
                           char *errstr, size_t n)
{
    lt_imap_changes_t *ch = e->ch;
    if (k->gone || (k->state && !strcmp(k->state, canon)))
        return LT_OK;
    char pmid[1200];
    lt_sync_imap_message_id(ch->folder, e->wm->uidvalidity, k->uid, pmid, sizeof(pmid));
    lt_err_t err = lt_imap_publish_flags(ch->s, ch->folder, pmid, canon,
                                         modseq ? (int64_t)modseq : -1, errstr, n);
    if (err)
        return err;
    free(k->state);
    k->state = lt_xstrdup(canon);
    ch->st.flags++;
    return maybe_checkpoint(e, errstr, n);
}

/* Flags listing callback: held when the UID is known (or adopted). */
static lt_err_t on_listed(void *opaque, uint32_t uid, const char *const *flags, size_t nflags,
                          uint64_t modseq)
{
    lt_imap_changes_t *ch = opaque;
    if (uid > ch->last_uid || !known_find(ch, uid))
        return LT_OK;
    push_flag(ch, uid, lt_imap_flags_canon(flags, nflags), modseq);
    return LT_OK;
}

/* A VANISHED during the listing (expunged now): gone. */
static lt_err_t on_listed_vanished(void *opaque, const lt_imap_range_t *r, size_t n, int earlier)
{
    return on_vanished(opaque, r, n, earlier);
}

static lt_err_t apply_vanished(emit_t *e, int64_t position, char *errstr, size_t n)
{
    lt_imap_changes_t *ch = e->ch;
    for (size_t i = 0; i < ch->nvan; i++) {
        lt_imap_range_t r = ch->van[i];
        if (r.lo > ch->last_uid)
            continue;
        /* the first known UID >= r.lo */
        size_t lo = 0, hi = ch->nkn;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ch->kn[mid].uid < r.lo)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t k = lo; k < ch->nkn && ch->kn[k].uid <= r.hi; k++) {
            if (ch->kn[k].gone)
                continue;
            lt_err_t err = emit_deleted(e, &ch->kn[k], position, errstr, n);
            if (err)
                return err;
        }
    }
    return LT_OK;
}

static lt_err_t apply_flags(emit_t *e, char *errstr, size_t n)
{
    lt_imap_changes_t *ch = e->ch;
    for (size_t i = 0; i < ch->nfl; i++) {
        if (ch->fl[i].uid > ch->last_uid)
            continue; /* a new message: its flags come with it */
        known_t *k = known_find(ch, ch->fl[i].uid);
        if (!k)
            continue; /* never announced (skipped, or not tracked) */
        lt_err_t err = emit_flags(e, k, ch->fl[i].flags, ch->fl[i].modseq, errstr, n);
        if (err)
            return err;
    }
    return LT_OK;
}

/* UID SEARCH ALL against the known set; when seeding, the server's UIDs up
 * to last_uid not known yet are adopted (no state: their flags follow). */
static lt_err_t compare_uids(emit_t *e, lt_imap_t *c, int64_t position, char *errstr, size_t n)
{
    lt_imap_changes_t *ch = e->ch;
    lt_imap_range_t *r = NULL;
    size_t nr = 0;
    lt_err_t err = lt_imap_uid_search_all(c, &r, &nr, errstr, n);
    if (err)
        return err;
    size_t j = 0;
    for (size_t k = 0; k < ch->nkn && !err; k++) {
        known_t *kn = &ch->kn[k];
        if (kn->uid > ch->last_uid || kn->gone)
            continue;
        while (j < nr && r[j].hi < kn->uid)
            j++;
        if (j < nr && r[j].lo <= kn->uid)
            continue; /* still there */
        err = emit_deleted(e, kn, position, errstr, n);
    }
    if (!err && ch->seeding) {
        size_t before = ch->nkn;
        for (size_t i = 0; i < nr; i++)
            for (uint64_t u = r[i].lo; u <= r[i].hi && u <= ch->last_uid; u++) {
                known_t key = {(uint32_t)u, NULL, 0};
                if (!before || !bsearch(&key, ch->kn, before, sizeof(*ch->kn), cmp_known))
                    known_push(ch, (uint32_t)u, NULL);
            }
        if (ch->nkn > before)
            qsort(ch->kn, ch->nkn, sizeof(*ch->kn), cmp_known);
        lt_info(lt_sync_log(ch->s),
                "folder %s: %zu message(s) synced before change tracking adopted into the "
                "known set",
                ch->folder, ch->nkn - before);
    }
    free(r);
    return err;
}

lt_err_t lt_imap_changes_run(lt_imap_changes_t *ch, lt_imap_t *c, const lt_imap_changes_in_t *in,
                             lt_watermark_t *next, char *errstr, size_t n)
{
    const lt_watermark_t *wm = in->wm;
    const lt_imap_mailbox_t *mb = in->mb;
    unsigned enabled = lt_imap_enabled(c);
    const lt_account_t *a = lt_sync_account(ch->s);
    long long count = 0;
    lt_err_t err = lt_known_count(lt_sync_db(ch->s),
                                  &(lt_watermark_key_t){.tenant = lt_account_tenant(a),
                                                        .account_id = lt_account_id(a),
                                                        .scope = ch->folder,
                                                        .provider = "imap"},
                                  &count, errstr, n);
    if (err)
        return err;
    known_reset(ch);
    memset(&ch->st, 0, sizeof(ch->st));
    ch->last_uid = wm->last_uid;
    int scan = 0;
    lt_imap_chg_mode_t mode =
        lt_imap_chg_mode(wm, mb, enabled, in->examined_qresync, (size_t)count, in->now_s,
                         in->flags_scan_interval_s, &scan);
    /* the known set is read only when there is something to compare: a
     * QRESYNC answer with nothing in it needs none (a quiet folder) */
    if (mode != LT_IMAP_CHG_QRESYNC || ch->nvan || ch->nfl) {
        if ((err = load_known(ch, wm->uidvalidity, errstr, n)))
            return err;
    }
    ch->st.known = mode == LT_IMAP_CHG_QRESYNC && !ch->nkn ? (size_t)count : ch->nkn;
    ch->st.mode = mode;
    ch->st.scanned_flags = scan;
    ch->seeding = mode == LT_IMAP_CHG_SEED;
    int modseq = (enabled & LT_IMAP_CAP_QRESYNC) && !mb->nomodseq && mb->highestmodseq;
    int64_t position = modseq ? (int64_t)mb->highestmodseq : -1;
    if (mode == LT_IMAP_CHG_BACKWARDS)
        lt_warn(lt_sync_log(ch->s),
                "folder %s: HIGHESTMODSEQ went backwards (%llu stored, %llu now): a restored "
                "server? comparing every UID and every message's flags",
                ch->folder, (unsigned long long)wm->highestmodseq,
                (unsigned long long)mb->highestmodseq);
    emit_t e = {ch, wm, 0};
    if (mode == LT_IMAP_CHG_QRESYNC) {
        err = apply_vanished(&e, position, errstr, n);
        if (!err)
            err = apply_flags(&e, errstr, n);
    } else {
        held_reset(ch); /* the EXAMINE's answers (if any) are not trusted */
        err = compare_uids(&e, c, position, errstr, n);
        if (!err && scan && ch->last_uid) {
            lt_imap_changes_cb_t cb = {on_listed, on_listed_vanished, ch};
            err = lt_imap_uid_fetch_changed(c, &(lt_imap_range_t){1, ch->last_uid}, 1, 0, 0, &cb,
                                            errstr, n);
            if (!err)
                err = apply_vanished(&e, position, errstr, n);
            if (!err)
                err = apply_flags(&e, errstr, n);
        }
    }
    held_reset(ch);
    if (err)
        return err;
    next->highestmodseq = modseq ? mb->highestmodseq : 0;
    next->flags_scanned_at = scan ? (in->now_s > 0 ? in->now_s : 1) : wm->flags_scanned_at;
    lt_info(lt_sync_log(ch->s),
            "folder %s: changes by %s (%zu known%s): %zu deleted, %zu flags", ch->folder,
            lt_imap_chg_mode_name(mode), ch->st.known, scan ? ", flags listed" : "",
            ch->st.deleted, ch->st.flags);
    return LT_OK;
}
