/* How the IMAP connector finds a folder's changes (lt_imap_chg_mode, a
 * table): QRESYNC only when it is enabled, the folder has mod-sequences,
 * the stored HIGHESTMODSEQ is known and not above the server's (a restored
 * server is never taken to mean "nothing changed": full compare) and the
 * EXAMINE carried the QRESYNC parameters; otherwise the fallback, whose
 * FLAGS listing runs when due; a folder synced without tracking is seeded.
 * And the canonical flag text that is recorded and compared. */
#include <stdlib.h>
#include <string.h>

#include "lt_sync_imap_changes.h"
#include "lt_test.h"

#define QR (LT_IMAP_CAP_QRESYNC | LT_IMAP_CAP_CONDSTORE)

static void test_modes(void)
{
    static const struct {
        const char *what;
        lt_watermark_t wm;
        lt_imap_mailbox_t mb;
        unsigned enabled;
        int examined_qr;
        size_t nknown;
        int64_t now;
        int interval;
        lt_imap_chg_mode_t want;
        int want_scan;
    } cases[] = {
        {"qresync, nothing special", {.uidvalidity = 7, .last_uid = 10, .highestmodseq = 50},
         {.uidvalidity = 7, .highestmodseq = 60}, QR, 1, 10, 1000, 3600, LT_IMAP_CHG_QRESYNC, 0},
        {"qresync, same modseq", {.uidvalidity = 7, .last_uid = 10, .highestmodseq = 50},
         {.uidvalidity = 7, .highestmodseq = 50}, QR, 1, 10, 1000, 3600, LT_IMAP_CHG_QRESYNC, 0},
        {"HIGHESTMODSEQ backwards", {.uidvalidity = 7, .last_uid = 10, .highestmodseq = 50},
         {.uidvalidity = 7, .highestmodseq = 49}, QR, 1, 10, 1000, 3600, LT_IMAP_CHG_BACKWARDS, 1},
        {"stored modseq unknown", {.uidvalidity = 7, .last_uid = 10, .flags_scanned_at = 5},
         {.uidvalidity = 7, .highestmodseq = 49}, QR, 0, 10, 1000, 3600, LT_IMAP_CHG_FULL, 1},
        {"EXAMINE without QRESYNC", {.uidvalidity = 7, .last_uid = 10, .highestmodseq = 50},
         {.uidvalidity = 7, .highestmodseq = 60}, QR, 0, 10, 1000, 3600, LT_IMAP_CHG_FULL, 1},
        {"NOMODSEQ folder, scan not due",
         {.uidvalidity = 7, .last_uid = 10, .highestmodseq = 50, .flags_scanned_at = 900},
         {.uidvalidity = 7, .nomodseq = 1}, QR, 1, 10, 1000, 3600, LT_IMAP_CHG_FALLBACK, 0},
        {"QRESYNC masked, scan due", {.uidvalidity = 7, .last_uid = 10, .flags_scanned_at = 900},
         {.uidvalidity = 7, .highestmodseq = 60}, 0, 0, 10, 4500, 3600, LT_IMAP_CHG_FALLBACK, 1},
        {"CONDSTORE only: fallback", {.uidvalidity = 7, .last_uid = 10, .flags_scanned_at = 900},
         {.uidvalidity = 7, .highestmodseq = 60}, LT_IMAP_CAP_CONDSTORE, 0, 10, 1000, 3600,
         LT_IMAP_CHG_FALLBACK, 0},
        {"fallback, interval 0", {.uidvalidity = 7, .last_uid = 10, .flags_scanned_at = 999},
         {.uidvalidity = 7}, 0, 0, 10, 1000, 0, LT_IMAP_CHG_FALLBACK, 1},
        {"fallback, clock went back", {.uidvalidity = 7, .last_uid = 10, .flags_scanned_at = 5000},
         {.uidvalidity = 7}, 0, 0, 10, 1000, 3600, LT_IMAP_CHG_FALLBACK, 1},
        {"synced before tracking", {.uidvalidity = 7, .last_uid = 10},
         {.uidvalidity = 7, .highestmodseq = 60}, QR, 0, 10, 1000, 3600, LT_IMAP_CHG_SEED, 1},
        {"known set empty", {.uidvalidity = 7, .last_uid = 10, .highestmodseq = 50},
         {.uidvalidity = 7, .highestmodseq = 60}, QR, 1, 0, 1000, 3600, LT_IMAP_CHG_SEED, 1},
        {"empty folder, nothing known", {.uidvalidity = 7, .last_uid = 0, .highestmodseq = 50},
         {.uidvalidity = 7, .highestmodseq = 60}, QR, 1, 0, 1000, 3600, LT_IMAP_CHG_QRESYNC, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int scan = -1;
        lt_imap_chg_mode_t m =
            lt_imap_chg_mode(&cases[i].wm, &cases[i].mb, cases[i].enabled, cases[i].examined_qr,
                             cases[i].nknown, cases[i].now, cases[i].interval, &scan);
        CHECK_MSG(m == cases[i].want && scan == cases[i].want_scan, "%s: %s scan %d",
                  cases[i].what, lt_imap_chg_mode_name(m), scan);
    }
}

static void test_canon(void)
{
    static const struct {
        const char *in[6];
        size_t n;
        const char *want;
    } cases[] = {
        {{"\\Seen", "\\Flagged"}, 2, "\\Flagged \\Seen"},
        {{"\\Recent", "\\Seen"}, 2, "\\Seen"},
        {{"\\RECENT"}, 1, ""},
        {{NULL}, 0, ""},
        {{"$Label1", "\\Answered", "$Label1", "Junk"}, 4, "$Label1 Junk \\Answered"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *c = lt_imap_flags_canon(cases[i].in, cases[i].n);
        CHECK_STR(c, cases[i].want);
        free(c);
    }
}

int main(void)
{
    test_modes();
    test_canon();
    return lt_test_done("test_imap_changes_mode");
}
