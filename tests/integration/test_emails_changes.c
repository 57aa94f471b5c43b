/* Mailbox changes on the emails table (parser/lt_emails, migrations/0009)
 * against the stack's Postgres, in a throwaway database or schema migrated
 * with lt_migrate: a deletion hides the message from the live search of
 * docs/parser.md and keeps the row; a re-add (a newer mail.raw.v1 event)
 * makes it live again, an older replay does not; flags and labels replace
 * the full set; repeats are no-ops; older changes are ignored per
 * attribute; a change for an unknown message creates nothing; a change
 * kept pending before its message is applied when the row is written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_db.h"
#include "lt_emails.h"
#include "lt_migrate.h"
#include "lt_test.h"
#include "lt_test_db.h"

static char g_err[1024];
#define E g_err, sizeof(g_err)

#define UUID "6f1c2a9e-3b7d-8e21-a4c5-0d9f8b7e6a51"
#define SHA "0000000000000000000000000000000000000000000000000000000000000000"
#define T0 1764063000000LL /* event times, epoch ms */

/* The first value of a one-row query as text ("<null>" for NULL, "<error>"
 * on an error). */
static const char *value(lt_db_t *db, const char *q, char *out, size_t n)
{
    PGresult *r = NULL;
    if (lt_db_exec(db, &(lt_db_query_t){.what = "test value", .sql = q, .nparams = 0}, &r, E)) {
        fprintf(stderr, "%s: %s\n", q, g_err);
        snprintf(out, n, "<error>");
        return out;
    }
    if (PQntuples(r) < 1 || PQgetisnull(r, 0, 0))
        snprintf(out, n, "<null>");
    else
        snprintf(out, n, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

static long long scalar(lt_db_t *db, const char *q)
{
    char v[64];
    value(db, q, v, sizeof(v));
    return strtoll(v, NULL, 10);
}

/* A message of account a1 (imap), written through the parser's upsert;
 * what its pending changes did is added to *pend (may be NULL). */
static lt_err_t upsert_pend(lt_db_t *db, const char *pmid, const char *subject,
                            int64_t event_time_ms, lt_email_pending_stats_t *pend)
{
    lt_email_row_t r = {0};
    r.tenant_id = "t1";
    r.account_id = "a1";
    r.provider_message_id = pmid;
    r.event_id = UUID;
    r.provider = "imap";
    r.mailbox = "INBOX";
    r.received_at_ms = T0;
    r.subject = subject;
    r.from_display = "Zoe <zoe@example.test>";
    r.body_text = "Anbei die Rechnung.";
    r.body_len = strlen(r.body_text);
    r.raw_bucket = "lattice-mail";
    r.raw_object_key = "t1/a1/m.eml";
    r.raw_sha256 = SHA;
    r.data_classification = "confidential";
    r.kafka_partition = 0;
    r.kafka_offset = 1;
    r.event_time_ms = event_time_ms;
    lt_buf_t *b = lt_buf_new(1 << 20);
    lt_err_t err = lt_emails_row_json(&r, b, E);
    if (!err) {
        const char *rows[] = {lt_buf_str(b)};
        size_t written = 0;
        err = lt_emails_upsert(db, rows, 1, &written, pend, E);
    }
    lt_buf_destroy(b);
    return err;
}

static lt_err_t upsert(lt_db_t *db, const char *pmid, const char *subject, int64_t event_time_ms)
{
    return upsert_pend(db, pmid, subject, event_time_ms, NULL);
}

static lt_email_change_t change(const char *pmid, int64_t t, const char *const *v, size_t n)
{
    return (lt_email_change_t){.tenant_id = "t1",
                               .account_id = "a1",
                               .provider = "imap",
                               .provider_message_id = pmid,
                               .event_time_ms = t,
                               .values = v,
                               .n_values = n};
}

/* The live search of docs/parser.md ("Full-text search"). */
#define SEARCH                                                                                     \
    "SELECT count(*) FROM emails_live WHERE tenant_id = 't1' AND fts @@ "                          \
    "plainto_tsquery('simple', 'rechnung')"

static void test_delete_readd(lt_db_t *db)
{
    char v[256];
    lt_email_change_result_t res = -1;
    CHECK(upsert(db, "m1", "Rechnung Mai", T0) == LT_OK);
    CHECK(upsert(db, "m2", "Rechnung Juni", T0) == LT_OK);
    CHECK_INT(scalar(db, SEARCH), 2);

    lt_email_change_t d = change("m1", T0 + 2000, NULL, 0);
    CHECK(lt_emails_apply_deleted(db, &d, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_APPLIED);
    CHECK_INT(scalar(db, SEARCH), 1);
    CHECK_STR(value(db, "SELECT subject FROM emails_live WHERE fts @@ "
                        "plainto_tsquery('simple', 'rechnung')",
                    v, sizeof(v)),
              "Rechnung Juni");
    /* Marked, not removed: the row stays, deleted_at = the change's time. */
    CHECK_STR(value(db,
                    "SELECT (extract(epoch FROM deleted_at) * 1000)::bigint FROM emails WHERE "
                    "provider_message_id = 'm1'",
                    v, sizeof(v)),
              "1764063002000");
    CHECK_INT(scalar(db, "SELECT count(*) FROM emails WHERE fts @@ plainto_tsquery('simple', "
                         "'rechnung')"),
              2);
    /* A live search can use the partial full-text index (with no better
     * one: the tiny table favours the account index). */
    CHECK(lt_db_exec(db,
                     &(lt_db_query_t){.what = "t", .sql = "SET enable_seqscan = off", .nparams = 0},
                     NULL, E) == LT_OK);
    {
        PGresult *r = NULL;
        int uses = 0;
        if (lt_db_exec(db, &(lt_db_query_t){.what = "explain", .sql = "EXPLAIN SELECT 1 FROM emails_live WHERE fts @@ plainto_tsquery('simple', 'x')"},
                       &r, E) == LT_OK) {
            for (int i = 0; i < PQntuples(r); i++) {
                uses |= strstr(PQgetvalue(r, i, 0), "emails_fts_live") != NULL;
                if (getenv("LT_TEST_VERBOSE"))
                    fprintf(stderr, "plan: %s\n", PQgetvalue(r, i, 0));
            }
            PQclear(r);
        }
        CHECK_MSG(uses, "the live search does not use emails_fts_live");
    }
    CHECK(lt_db_exec(db,
                     &(lt_db_query_t){.what = "t", .sql = "RESET enable_seqscan", .nparams = 0},
                     NULL, E) == LT_OK);

    /* The same change again: nothing changes, changed_at stays. */
    char before[64], after[64];
    value(db, "SELECT changed_at FROM emails WHERE provider_message_id = 'm1'", before,
          sizeof(before));
    CHECK(strcmp(before, "<null>") != 0);
    CHECK(lt_emails_apply_deleted(db, &d, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_SAME);
    value(db, "SELECT changed_at FROM emails WHERE provider_message_id = 'm1'", after,
          sizeof(after));
    CHECK_STR(after, before);

    /* A replay of the older raw event rewrites the content, stays deleted. */
    CHECK(upsert(db, "m1", "Rechnung Mai (replayed)", T0) == LT_OK);
    CHECK_INT(scalar(db, SEARCH), 1);
    CHECK_STR(value(db, "SELECT subject FROM emails WHERE provider_message_id = 'm1'", v,
                    sizeof(v)),
              "Rechnung Mai (replayed)");
    /* So does one without an event time. */
    CHECK(upsert(db, "m1", "Rechnung Mai", 0) == LT_OK);
    CHECK_INT(scalar(db, SEARCH), 1);

    /* A re-add (a newer raw event: untrash) makes it live again. */
    CHECK(upsert(db, "m1", "Rechnung Mai", T0 + 3000) == LT_OK);
    CHECK_INT(scalar(db, SEARCH), 2);
    CHECK_STR(value(db, "SELECT deleted_at FROM emails WHERE provider_message_id = 'm1'", v,
                    sizeof(v)),
              "<null>");

    /* A deletion older than the re-add is ignored. */
    lt_email_change_t old = change("m1", T0 + 2500, NULL, 0);
    CHECK(lt_emails_apply_deleted(db, &old, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_STALE);
    CHECK_INT(scalar(db, SEARCH), 2);

    /* A newer one applies again, and a second delete keeps the first time. */
    lt_email_change_t d2 = change("m1", T0 + 4000, NULL, 0);
    CHECK(lt_emails_apply_deleted(db, &d2, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_APPLIED);
    lt_email_change_t d3 = change("m1", T0 + 5000, NULL, 0);
    CHECK(lt_emails_apply_deleted(db, &d3, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_SAME);
    CHECK_STR(value(db,
                    "SELECT (extract(epoch FROM deleted_at) * 1000)::bigint FROM emails WHERE "
                    "provider_message_id = 'm1'",
                    v, sizeof(v)),
              "1764063004000");
    /* A re-add older than the latest deletion does not un-delete. */
    CHECK(upsert(db, "m1", "Rechnung Mai", T0 + 4500) == LT_OK);
    CHECK_INT(scalar(db, SEARCH), 1);
    CHECK(upsert(db, "m1", "Rechnung Mai", T0 + 5000) == LT_OK); /* ties: the later read wins */
    CHECK_INT(scalar(db, SEARCH), 2);
}

static void test_flags_labels(lt_db_t *db)
{
    char v[256];
    lt_email_change_result_t res = -1;
    CHECK_STR(value(db, "SELECT coalesce(flags::text, 'NULL') || ' ' || coalesce(labels::text, "
                        "'NULL') FROM emails WHERE provider_message_id = 'm2'",
                    v, sizeof(v)),
              "NULL NULL"); /* nothing known yet */

    const char *f1[] = {"\\Seen", "$Label1", "\\Seen"};
    lt_email_change_t c = change("m2", T0 + 5000, f1, 3);
    CHECK(lt_emails_apply_flags(db, &c, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_APPLIED);
    CHECK_STR(value(db, "SELECT flags::text FROM emails WHERE provider_message_id = 'm2'", v,
                    sizeof(v)),
              "{$Label1,\"\\\\Seen\"}");
    CHECK_INT(scalar(db, "SELECT count(*) FROM emails_live WHERE '\\Seen' = ANY(flags)"), 1);
    /* Idempotent: the same change again, and the same set in another order. */
    CHECK(lt_emails_apply_flags(db, &c, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_SAME);
    const char *f1b[] = {"$Label1", "\\Seen"};
    lt_email_change_t cb = change("m2", T0 + 5000, f1b, 2);
    CHECK(lt_emails_apply_flags(db, &cb, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_SAME);

    /* The full new set replaces the old one. */
    const char *f2[] = {"\\Flagged"};
    lt_email_change_t c2 = change("m2", T0 + 6000, f2, 1);
    CHECK(lt_emails_apply_flags(db, &c2, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_APPLIED);
    CHECK_STR(value(db, "SELECT flags::text FROM emails WHERE provider_message_id = 'm2'", v,
                    sizeof(v)),
              "{\"\\\\Flagged\"}");
    /* An older change does not overwrite the newer set. */
    lt_email_change_t c_old = change("m2", T0 + 5500, f1, 3);
    CHECK(lt_emails_apply_flags(db, &c_old, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_STALE);
    CHECK_STR(value(db, "SELECT flags::text FROM emails WHERE provider_message_id = 'm2'", v,
                    sizeof(v)),
              "{\"\\\\Flagged\"}");
    /* The empty set is a set (no flags), not "unknown". */
    lt_email_change_t c3 = change("m2", T0 + 7000, NULL, 0);
    CHECK(lt_emails_apply_flags(db, &c3, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_APPLIED);
    CHECK_STR(value(db, "SELECT flags::text FROM emails WHERE provider_message_id = 'm2'", v,
                    sizeof(v)),
              "{}");

    /* Labels keep their own order: older than the flags' last change, it
     * still applies. */
    const char *l1[] = {"INBOX", "Label_7", "IMPORTANT"};
    lt_email_change_t l = change("m2", T0 + 100, l1, 3);
    CHECK(lt_emails_apply_labels(db, &l, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_APPLIED);
    CHECK_STR(value(db, "SELECT labels::text FROM emails WHERE provider_message_id = 'm2'", v,
                    sizeof(v)),
              "{IMPORTANT,INBOX,Label_7}");
    CHECK(lt_emails_apply_labels(db, &l, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_SAME);
    const char *l2[] = {"Label_7"};
    lt_email_change_t l_old = change("m2", T0 + 50, l2, 1);
    CHECK(lt_emails_apply_labels(db, &l_old, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_STALE);
    lt_email_change_t l_new = change("m2", T0 + 200, l2, 1);
    CHECK(lt_emails_apply_labels(db, &l_new, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_APPLIED);
    CHECK_STR(value(db, "SELECT labels::text FROM emails WHERE provider_message_id = 'm2'", v,
                    sizeof(v)),
              "{Label_7}");

    /* A newer raw event (a replay or a re-fetch) keeps flags and labels. */
    CHECK(upsert(db, "m2", "Rechnung Juni", T0 + 9000) == LT_OK);
    CHECK_STR(value(db, "SELECT flags::text || ' ' || labels::text FROM emails WHERE "
                        "provider_message_id = 'm2'",
                    v, sizeof(v)),
              "{} {Label_7}");
    /* Flags of a deleted message still follow the mailbox (audit). */
    lt_email_change_t d = change("m2", T0 + 9500, NULL, 0);
    CHECK(lt_emails_apply_deleted(db, &d, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_APPLIED);
    lt_email_change_t c4 = change("m2", T0 + 9600, f2, 1);
    CHECK(lt_emails_apply_flags(db, &c4, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_APPLIED);
    CHECK_INT(scalar(db, "SELECT count(*) FROM emails_live WHERE provider_message_id = 'm2'"), 0);
}

static void test_unknown_and_invalid(lt_db_t *db)
{
    lt_email_change_result_t res = -1;
    long long rows = scalar(db, "SELECT count(*) FROM emails");
    const char *f[] = {"\\Seen"};
    lt_email_change_t u = change("no-such-message", T0, f, 1);
    CHECK(lt_emails_apply_deleted(db, &u, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_UNKNOWN);
    CHECK(lt_emails_apply_flags(db, &u, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_UNKNOWN);
    CHECK(lt_emails_apply_labels(db, &u, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_UNKNOWN);
    /* Same id, another provider: not this message. */
    lt_email_change_t g = change("m1", T0 + 99000, NULL, 0);
    g.provider = "gmail";
    CHECK(lt_emails_apply_deleted(db, &g, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_UNKNOWN);
    /* Another tenant: not this message either. */
    lt_email_change_t t = change("m1", T0 + 99000, NULL, 0);
    t.tenant_id = "t2";
    CHECK(lt_emails_apply_deleted(db, &t, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_UNKNOWN);
    CHECK_INT(scalar(db, "SELECT count(*) FROM emails"), rows); /* nothing created */
    CHECK_INT(scalar(db, SEARCH), 1);                            /* m1 still live */
    CHECK_STR(lt_email_change_result_name(LT_EMAIL_CHANGE_UNKNOWN), "unknown");

    /* Refused before anything is sent. */
    lt_email_change_t bad = change(NULL, T0, NULL, 0);
    CHECK(lt_emails_apply_deleted(db, &bad, &res, E) == LT_ERR_INVALID);
    bad = change("m1", T0, NULL, 0);
    bad.provider = "pop3";
    CHECK(lt_emails_apply_deleted(db, &bad, &res, E) == LT_ERR_INVALID);
    bad = change("m1", 253402300800000LL, NULL, 0); /* year 10000 */
    CHECK(lt_emails_apply_deleted(db, &bad, &res, E) == LT_ERR_INVALID);
    bad = change("m1", T0, NULL, 2);
    CHECK(lt_emails_apply_flags(db, &bad, &res, E) == LT_ERR_INVALID);
    const char *withnull[] = {"\\Seen", NULL};
    bad = change("m1", T0, withnull, 2);
    CHECK(lt_emails_apply_labels(db, &bad, &res, E) == LT_ERR_INVALID);
    CHECK_INT(scalar(db, SEARCH), 1);
}

#define ROW_STATE(pmid)                                                                            \
    "SELECT coalesce((extract(epoch FROM deleted_at) * 1000)::bigint::text, 'live') || ' ' || "    \
    "coalesce(flags::text, 'NULL') || ' ' || coalesce(labels::text, 'NULL') FROM emails WHERE "    \
    "tenant_id = 't1' AND provider_message_id = '" pmid "'"
#define PENDING(pmid)                                                                              \
    "SELECT count(*) FROM emails_changes_pending WHERE tenant_id = 't1' AND "                      \
    "provider_message_id = '" pmid "'"

/* A change read before its message's raw event (the topics are read
 * independently) is kept pending and applied when the row is written. */
static void test_pending(lt_db_t *db)
{
    char v[256];
    lt_email_change_result_t res = -1;
    const char *f[] = {"\\Seen", "\\Flagged"};
    const char *fo[] = {"\\Answered"};
    lt_email_change_t d = change("p1", T0 + 2000, NULL, 0);
    lt_email_change_t fl = change("p1", T0 + 2000, f, 2);
    lt_email_change_t fl_old = change("p1", T0 + 1000, fo, 1);

    /* No row yet: kept pending, the newest per kind. */
    CHECK(lt_emails_apply_or_pend(db, LT_EMAIL_DELETED, &d, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_PENDING);
    CHECK(lt_emails_apply_or_pend(db, LT_EMAIL_FLAGS, &fl, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_PENDING);
    CHECK(lt_emails_apply_or_pend(db, LT_EMAIL_FLAGS, &fl_old, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_UNKNOWN); /* older than the pending one: dropped */
    CHECK(lt_emails_apply_or_pend(db, LT_EMAIL_DELETED, &d, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_PENDING); /* a replay: the same entry again */
    CHECK_INT(scalar(db, PENDING("p1")), 2);
    CHECK_INT(scalar(db, "SELECT count(*) FROM emails WHERE provider_message_id = 'p1'"), 0);

    /* The raw event (older than the deletion) arrives: the row is written
     * and the pending changes applied in the same call. */
    lt_email_pending_stats_t st = {0};
    CHECK(upsert_pend(db, "p1", "Rechnung Juli", T0, &st) == LT_OK);
    CHECK_STR(value(db, ROW_STATE("p1"), v, sizeof(v)),
              "1764063002000 {\"\\\\Flagged\",\"\\\\Seen\"} NULL");
    CHECK_INT((long long)st.count[LT_EMAIL_DELETED][LT_EMAIL_CHANGE_APPLIED], 1);
    CHECK_INT((long long)st.count[LT_EMAIL_FLAGS][LT_EMAIL_CHANGE_APPLIED], 1);
    CHECK_INT(scalar(db, PENDING("p1")), 0);
    CHECK_INT(scalar(db, "SELECT count(*) FROM emails_live WHERE provider_message_id = 'p1'"), 0);

    /* Replay everything twice: the same state, nothing pending. */
    for (int round = 0; round < 2; round++) {
        lt_email_pending_stats_t st2 = {0};
        CHECK(lt_emails_apply_or_pend(db, LT_EMAIL_DELETED, &d, &res, E) == LT_OK);
        CHECK_INT(res, LT_EMAIL_CHANGE_SAME);
        CHECK(lt_emails_apply_or_pend(db, LT_EMAIL_FLAGS, &fl, &res, E) == LT_OK);
        CHECK_INT(res, LT_EMAIL_CHANGE_SAME);
        CHECK(lt_emails_apply_or_pend(db, LT_EMAIL_FLAGS, &fl_old, &res, E) == LT_OK);
        CHECK_INT(res, LT_EMAIL_CHANGE_STALE);
        CHECK(upsert_pend(db, "p1", "Rechnung Juli", T0, &st2) == LT_OK);
        CHECK_STR(value(db, ROW_STATE("p1"), v, sizeof(v)),
                  "1764063002000 {\"\\\\Flagged\",\"\\\\Seen\"} NULL");
        CHECK_INT(scalar(db, PENDING("p1")), 0);
    }

    /* A pending deletion older than the raw event is stale: the row is live. */
    lt_email_change_t d_old = change("p2", T0 - 1000, NULL, 0);
    CHECK(lt_emails_apply_or_pend(db, LT_EMAIL_DELETED, &d_old, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_PENDING);
    lt_email_pending_stats_t st3 = {0};
    CHECK(upsert_pend(db, "p2", "Rechnung August", T0, &st3) == LT_OK);
    CHECK_INT((long long)st3.count[LT_EMAIL_DELETED][LT_EMAIL_CHANGE_STALE], 1);
    CHECK_STR(value(db, ROW_STATE("p2"), v, sizeof(v)), "live NULL NULL");
    CHECK_INT(scalar(db, PENDING("p2")), 0);

    /* Labels pending for a message of another provider stay pending (the
     * row is not theirs), and go with the retention purge. */
    const char *l[] = {"INBOX"};
    lt_email_change_t g = change("p3", T0 + 10, l, 1);
    g.provider = "gmail";
    CHECK(lt_emails_apply_or_pend(db, LT_EMAIL_LABELS, &g, &res, E) == LT_OK);
    CHECK_INT(res, LT_EMAIL_CHANGE_PENDING);
    CHECK(upsert(db, "p3", "Rechnung September", T0) == LT_OK);
    CHECK_STR(value(db, ROW_STATE("p3"), v, sizeof(v)), "live NULL NULL");
    CHECK_INT(scalar(db, PENDING("p3")), 1);
    uint64_t purged = 99;
    CHECK(lt_emails_purge_pending(db, 3600, &purged, E) == LT_OK);
    CHECK_INT((long long)purged, 0); /* younger than the retention */
    CHECK(lt_db_exec(db,
                     &(lt_db_query_t){.what = "t",
                                      .sql = "UPDATE emails_changes_pending SET pending_since = "
                                             "now() - interval '2 hours'"},
                     NULL, E) == LT_OK);
    CHECK(lt_emails_purge_pending(db, 3600, &purged, E) == LT_OK);
    CHECK_INT((long long)purged, 1);
    CHECK_INT(scalar(db, PENDING("p3")), 0);
    CHECK_STR(lt_email_change_result_name(LT_EMAIL_CHANGE_PENDING), "pending");

    /* The message locks of a transaction (one statement; duplicates fine). */
    lt_email_key_t keys[] = {{"t1", "a1", "p1"}, {"t1", "a1", "p2"}, {"t1", "a1", "p1"}};
    CHECK(lt_db_begin(db, E) == LT_OK);
    CHECK_MSG(lt_emails_lock(db, keys, 3, E) == LT_OK, "%s", g_err);
    CHECK_INT(scalar(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                         "classid = 19540 AND pid = pg_backend_pid()"),
              2);
    CHECK(lt_db_commit(db, E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                         "classid = 19540 AND pid = pg_backend_pid()"),
              0);
    lt_email_key_t bad[] = {{"t1", NULL, "p1"}};
    CHECK(lt_emails_lock(db, bad, 1, E) == LT_ERR_INVALID);
}

int main(void)
{
    lt_scratch_t s;
    if (lt_scratch_create(&s, "emailchg") != 0)
        return lt_test_done("test_emails_changes (no scratch)") | 1;
    lt_db_t *db = lt_scratch_connect(&s);
    CHECK(db != NULL);
    if (db) {
        CHECK(lt_emails_check(db, E) == LT_ERR_FINAL); /* not migrated yet */
        int applied = 0;
        lt_err_t e = lt_migrate_apply(db, LT_SOURCE_DIR "/migrations", NULL, NULL, &applied, E);
        CHECK_MSG(e == LT_OK, "%s", g_err);
        if (e == LT_OK) {
            CHECK_MSG(lt_emails_check(db, E) == LT_OK, "%s", g_err);
            test_delete_readd(db);
            test_flags_labels(db);
            test_unknown_and_invalid(db);
            test_pending(db);
        }
        lt_db_destroy(db);
    }
    lt_scratch_drop(&s);
    return lt_test_done("test_emails_changes");
}
