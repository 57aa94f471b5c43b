/* lib/state against the stack's Postgres, in a throwaway database or schema
 * (migrated with lt_migrate): accounts (load, unknown, disabled, malformed,
 * status, streaming list with filters over 1000 rows), watermark guard,
 * the pending protocol, per-account locks across two connections, the
 * command log and the in-flight check, error classification. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lt_account_lock.h"
#include "lt_accounts.h"
#include "lt_clock.h"
#include "lt_command_log.h"
#include "lt_db.h"
#include "lt_migrate.h"
#include "lt_watermark.h"
#include "lt_test.h"
#include "lt_test_db.h"

/* ---- helpers ---- */

static char g_err[1024];
#define E g_err, sizeof(g_err)

static lt_err_t sql(lt_db_t *db, const char *q)
{
    return lt_db_exec(db, &(lt_db_query_t){.what = "test sql", .sql = q, .nparams = 0}, NULL, E);
}

static long long scalar(lt_db_t *db, const char *q)
{
    PGresult *r = NULL;
    if (lt_db_exec(db, &(lt_db_query_t){.what = "scalar", .sql = q, .nparams = 0}, &r, E)) {
        fprintf(stderr, "%s: %s\n", q, g_err);
        return -1;
    }
    long long v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* 1 when the account has a running command with a heartbeat newer than secs:
 * the scheduler's in-flight rule for started commands (lt_issued). */
static int running_fresh(lt_db_t *db, const char *account, int secs)
{
    char q[512];
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM mail_sync_commands WHERE tenant_id = 'personal' AND "
             "account_id = '%s' AND status = 'running' AND heartbeat_at > now() - "
             "make_interval(secs => %d)",
             account, secs);
    return scalar(db, q) > 0;
}

#define FRESH_ACCOUNTS                                                                             \
    "SELECT count(DISTINCT (tenant_id, account_id)) FROM mail_sync_commands WHERE status = "       \
    "'running' AND heartbeat_at > now() - interval '60 seconds'"

/* ---- accounts ---- */

static void test_accounts(lt_db_t *db)
{
    lt_account_t *a = NULL;
    CHECK(
        lt_account_upsert(
            db,
            &(lt_account_row_t){
                .tenant = "personal",
                .account_id = "personal-gmail",
                .provider = "gmail",
                .enabled = 1,
                .config_json = "{\"user\":\"me@example.com\",\"refresh_token_env\":\"GMAIL_RT\"}"},
            E) == LT_OK);
    CHECK(lt_account_upsert(
              db,
              &(lt_account_row_t){.tenant = "personal",
                                  .account_id = "workmail-imap",
                                  .provider = "imap",
                                  .enabled = 1,
                                  .config_json =
                                      "{\"host\":\"imap.mail.us-east-1.awsapps.com\",\"port\":993,"
                                      "\"username\":\"me\",\"password_env\":\"IMAP_PW\"}",
                                  .classification = "restricted"},
              E) == LT_OK);
    lt_err_t e = lt_account_load(db, "personal", "personal-gmail", &a, E);
    CHECK_MSG(e == LT_OK && a, "%s", g_err);
    if (a) {
        CHECK_STR(lt_account_tenant(a), "personal");
        CHECK_STR(lt_account_id(a), "personal-gmail");
        CHECK_STR(lt_account_provider(a), "gmail");
        CHECK(lt_account_enabled(a));
        CHECK_STR(lt_account_classification(a), "confidential");
        CHECK_STR(lt_account_status(a), "active");
        CHECK(lt_account_status_reason(a) == NULL);
        CHECK(lt_account_row_id(a) > 0);
        json_object *v;
        CHECK(json_object_object_get_ex(lt_account_config(a), "user", &v));
        CHECK_STR(json_object_get_string(v), "me@example.com");
        lt_account_destroy(a);
        a = NULL;
    }
    CHECK(lt_account_load(db, "personal", "workmail-imap", &a, E) == LT_OK);
    if (a) {
        CHECK_STR(lt_account_classification(a), "restricted");
        json_object *v;
        CHECK(json_object_object_get_ex(lt_account_config(a), "port", &v) &&
              json_object_get_int(v) == 993);
        lt_account_destroy(a);
        a = NULL;
    }

    /* Unknown. */
    CHECK(lt_account_load(db, "personal", "nobody", &a, E) == LT_ERR_NOT_FOUND && !a);
    CHECK(lt_account_load(db, "other", "personal-gmail", &a, E) == LT_ERR_NOT_FOUND);
    /* Invalid ids never reach SQL. */
    CHECK(lt_account_load(db, "per sonal", "x", &a, E) == LT_ERR_INVALID);
    CHECK(lt_account_load(db, "personal", "", &a, E) == LT_ERR_INVALID);
    /* Disabled: FINAL, the caller dead-letters. */
    CHECK(lt_account_upsert(
              db,
              &(lt_account_row_t){
                  .tenant = "personal", .account_id = "old-imap", .provider = "imap", .enabled = 0},
              E) == LT_OK);
    e = lt_account_load(db, "personal", "old-imap", &a, E);
    CHECK(e == LT_ERR_FINAL && !a);
    CHECK_MSG(strstr(g_err, "disabled") != NULL, "%s", g_err);
    /* Malformed config (an inline secret written behind our back): FINAL. */
    CHECK(sql(db,
              "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) "
              "VALUES ('personal', 'leaky', 'imap', '{\"host\":\"h\",\"password\":\"s3cr3t\"}')") ==
          LT_OK);
    e = lt_account_load(db, "personal", "leaky", &a, E);
    CHECK(e == LT_ERR_FINAL && !a);
    CHECK_MSG(strstr(g_err, "\"password\"") && !strstr(g_err, "s3cr3t"), "%s", g_err);
    /* The upsert refuses such a config, bad JSON and bad providers. */
    CHECK(lt_account_upsert(db,
                            &(lt_account_row_t){.tenant = "personal",
                                                .account_id = "leaky2",
                                                .provider = "imap",
                                                .enabled = 1,
                                                .config_json = "{\"token\":\"abc\"}"},
                            E) == LT_ERR_INVALID);
    CHECK(lt_account_upsert(db,
                            &(lt_account_row_t){.tenant = "personal",
                                                .account_id = "bad",
                                                .provider = "imap",
                                                .enabled = 1,
                                                .config_json = "{not json"},
                            E) == LT_ERR_INVALID);
    CHECK(lt_account_upsert(
              db,
              &(lt_account_row_t){
                  .tenant = "personal", .account_id = "bad", .provider = "pop3", .enabled = 1},
              E) == LT_ERR_INVALID);
    /* The database's own checks, classified INVALID (constraint). */
    e = sql(db, "INSERT INTO mail_accounts (tenant_id, account_id, provider) VALUES "
                "('bad tenant', 'x', 'imap')");
    CHECK(e == LT_ERR_INVALID);
    CHECK_MSG(strstr(g_err, "mail_accounts_tenant_id_format") != NULL, "%s", g_err);
    e = sql(db, "INSERT INTO mail_accounts (tenant_id, account_id, provider, config_json) VALUES "
                "('t', 'x', 'imap', '[]')");
    CHECK(e == LT_ERR_INVALID);
    e = sql(db, "INSERT INTO mail_accounts (tenant_id, account_id, provider) VALUES "
                "('personal', 'personal-gmail', 'gmail')");
    CHECK(e == LT_ERR_INVALID); /* unique (tenant, account) */

    /* Status. */
    long long before = scalar(db, "SELECT extract(epoch FROM updated_at)*1000000 FROM "
                                  "mail_accounts WHERE account_id = 'personal-gmail'");
    CHECK(lt_account_set_status(db, "personal", "personal-gmail", "needs_reauth",
                                "invalid_grant from token endpoint", E) == LT_OK);
    CHECK(lt_account_load(db, "personal", "personal-gmail", &a, E) == LT_OK);
    if (a) {
        CHECK_STR(lt_account_status(a), "needs_reauth");
        CHECK_STR(lt_account_status_reason(a), "invalid_grant from token endpoint");
        lt_account_destroy(a);
        a = NULL;
    }
    CHECK(scalar(db, "SELECT extract(epoch FROM updated_at)*1000000 FROM mail_accounts WHERE "
                     "account_id = 'personal-gmail'") > before); /* trigger */
    CHECK(lt_account_set_status(db, "personal", "personal-gmail", "active", NULL, E) == LT_OK);
    CHECK(lt_account_set_status(db, "personal", "nobody", "flagged", "x", E) == LT_ERR_NOT_FOUND);
    CHECK(lt_account_set_status(db, "personal", "personal-gmail", "bogus", NULL, E) ==
          LT_ERR_INVALID);
    /* Upsert updates in place, keeps status. */
    CHECK(lt_account_set_status(db, "personal", "workmail-imap", "flagged", "review", E) == LT_OK);
    CHECK(lt_account_upsert(db,
                            &(lt_account_row_t){.tenant = "personal",
                                                .account_id = "workmail-imap",
                                                .provider = "imap",
                                                .enabled = 1,
                                                .config_json = "{\"host\":\"h2\"}"},
                            E) == LT_OK);
    CHECK(lt_account_load(db, "personal", "workmail-imap", &a, E) == LT_OK);
    if (a) {
        CHECK_STR(lt_account_status(a), "flagged");
        json_object *v;
        CHECK(json_object_object_get_ex(lt_account_config(a), "host", &v));
        CHECK_STR(json_object_get_string(v), "h2");
        lt_account_destroy(a);
        a = NULL;
    }
}

typedef struct {
    long long n;
    int stop_after;
    int ordered;
    char last[300];
    const char *want_provider, *want_tenant;
    int wrong;
} list_ctx_t;

static int on_account(const lt_account_t *a, void *opaque)
{
    list_ctx_t *c = opaque;
    char key[300];
    snprintf(key, sizeof(key), "%s/%s/%s", lt_account_provider(a), lt_account_tenant(a),
             lt_account_id(a));
    if (c->n > 0 && strcmp(c->last, key) >= 0)
        c->ordered = 0;
    snprintf(c->last, sizeof(c->last), "%s", key);
    if (!lt_account_enabled(a) || !lt_account_config(a))
        c->wrong++;
    if (c->want_provider && strcmp(lt_account_provider(a), c->want_provider))
        c->wrong++;
    if (c->want_tenant && strcmp(lt_account_tenant(a), c->want_tenant))
        c->wrong++;
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static long long list(lt_db_t *db, const char *provider, const char *tenant, int stop_after,
                      list_ctx_t *c)
{
    memset(c, 0, sizeof(*c));
    c->ordered = 1;
    c->stop_after = stop_after;
    c->want_provider = provider;
    c->want_tenant = tenant;
    lt_err_t e = lt_accounts_list_enabled(db, provider, tenant, on_account, c, E);
    CHECK_MSG(e == LT_OK, "%s", g_err);
    CHECK(c->ordered);
    CHECK_INT(c->wrong, 0);
    return c->n;
}

static void test_list(lt_db_t *db)
{
    /* 1000 accounts over 10 tenants; every 7th disabled; even = gmail. */
    CHECK(sql(db, "INSERT INTO mail_accounts (tenant_id, account_id, provider, enabled, "
                  "config_json) SELECT 'bulk' || (i % 10), 'acct-' || i, "
                  "CASE WHEN i % 2 = 0 THEN 'gmail' ELSE 'imap' END, i % 7 <> 0, "
                  "jsonb_build_object('n', i) FROM generate_series(1, 1000) AS i") == LT_OK);
    long long all = scalar(db, "SELECT count(*) FROM mail_accounts WHERE enabled");
    long long gmail = scalar(db, "SELECT count(*) FROM mail_accounts WHERE enabled AND provider = "
                                 "'gmail'");
    long long t3 = scalar(db, "SELECT count(*) FROM mail_accounts WHERE enabled AND tenant_id = "
                              "'bulk3'");
    long long t3imap = scalar(db, "SELECT count(*) FROM mail_accounts WHERE enabled AND tenant_id "
                                  "= 'bulk3' AND provider = 'imap'");
    CHECK(all > 850 && gmail > 400 && t3 > 80 && t3imap > 40);
    list_ctx_t c;
    CHECK_INT(list(db, NULL, NULL, 0, &c), all);
    CHECK_INT(list(db, "gmail", NULL, 0, &c), gmail);
    CHECK_INT(list(db, NULL, "bulk3", 0, &c), t3);
    CHECK_INT(list(db, "imap", "bulk3", 0, &c), t3imap);
    CHECK_INT(list(db, "imap", "no-such-tenant", 0, &c), 0);
    /* The leaky account (inline secret) is listed; the worker refuses it. */
    CHECK_INT(list(db, "imap", "personal", 0, &c), 2);
    /* Stop early: the connection is usable right after. */
    CHECK_INT(list(db, NULL, NULL, 10, &c), 10);
    CHECK_INT(scalar(db, "SELECT 42"), 42);
    CHECK(lt_db_ok(db));
    /* The plan for a provider filter uses the scheduler's index. */
    PGresult *r = NULL;
    CHECK(sql(db, "ANALYZE mail_accounts") == LT_OK);
    CHECK(
        lt_db_exec(
            db,
            &(lt_db_query_t){
                .what = "explain",
                .sql = "EXPLAIN SELECT id FROM mail_accounts WHERE enabled AND provider = 'gmail' "
                       "AND tenant_id = 'bulk3' ORDER BY provider, tenant_id, account_id",
                .nparams = 0},
            &r, E) == LT_OK);
    int uses_index = 0;
    for (int i = 0; r && i < PQntuples(r); i++)
        if (strstr(PQgetvalue(r, i, 0), "mail_accounts_enabled_by_provider"))
            uses_index = 1;
    CHECK_MSG(uses_index, "the provider+tenant listing should use the partial index");
    PQclear(r);
}

/* ---- watermarks ---- */

static lt_watermark_t gm(uint64_t h)
{
    lt_watermark_t w = {.history_id = h};
    return w;
}

static lt_watermark_t im(uint32_t v, uint32_t u)
{
    lt_watermark_t w = {.uidvalidity = v, .last_uid = u};
    return w;
}

static void test_watermarks(lt_db_t *db)
{
    const char *T = "personal", *G = "personal-gmail", *I = "workmail-imap";
    lt_watermark_t w, got;
    int stored = -1;

    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &got, E) ==
          LT_ERR_NOT_FOUND);

    /* Gmail: numeric compare, never backwards unless resync. */
    w = gm(9);
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &w, 0, &stored, E) ==
              LT_OK &&
          stored == 1);
    w = gm(10); /* "10" < "9" as strings: must compare as numbers */
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &w, 0, &stored, E) ==
              LT_OK &&
          stored == 1);
    w = gm(9);
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &w, 0, &stored, E) ==
              LT_OK &&
          stored == 0);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &got, E) == LT_OK);
    CHECK(got.history_id == 10);
    w = gm(10); /* equal: idempotent rewrite */
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &w, 0, &stored, E) ==
              LT_OK &&
          stored == 1);
    w = gm(UINT64_MAX);
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &w, 0, &stored, E) ==
              LT_OK &&
          stored == 1);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &got, E) == LT_OK &&
          got.history_id == UINT64_MAX);
    w = gm(5); /* explicit resync moves it backwards */
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &w, 1, &stored, E) ==
              LT_OK &&
          stored == 1);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, G, "INBOX", "gmail"}, &got, E) == LT_OK &&
          got.history_id == 5);
    /* Scopes are independent. */
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, G, "label:Work", "gmail"}, &got, E) ==
          LT_ERR_NOT_FOUND);
    /* Stored format as documented. */
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_watermarks WHERE account_id = "
                         "'personal-gmail' AND watermark_json = '{\"historyId\": \"5\"}'"),
              1);

    /* IMAP: last_uid never backwards within a uidvalidity; a new
     * uidvalidity replaces. */
    w = im(9999, 100);
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &w, 0, &stored, E) ==
              LT_OK &&
          stored == 1);
    w = im(9999, 50); /* a backfill finishing behind the incremental one */
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &w, 0, &stored, E) ==
              LT_OK &&
          stored == 0);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &got, E) == LT_OK);
    CHECK(got.uidvalidity == 9999 && got.last_uid == 100);
    w = im(9999, 150);
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &w, 0, &stored, E) ==
              LT_OK &&
          stored == 1);
    w = im(10000, 3); /* UIDVALIDITY changed: replaces, even though last_uid is lower */
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &w, 0, &stored, E) ==
              LT_OK &&
          stored == 1);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &got, E) == LT_OK);
    CHECK(got.uidvalidity == 10000 && got.last_uid == 3);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_watermarks WHERE account_id = "
                         "'workmail-imap' AND watermark_json = "
                         "'{\"uidvalidity\": 10000, \"last_uid\": 3}'"),
              1);
    /* Folder names with any characters are scopes. */
    w = im(1, 1);
    CHECK(lt_watermark_set(
              db, &(lt_watermark_key_t){T, I, "Archive/2024 \xc3\xa9t\xc3\xa9 \"q\"", "imap"}, &w,
              0, &stored, E) == LT_OK);
    CHECK(lt_watermark_get(
              db, &(lt_watermark_key_t){T, I, "Archive/2024 \xc3\xa9t\xc3\xa9 \"q\"", "imap"}, &got,
              E) == LT_OK);

    /* Refusals. */
    w = im(0, 1);
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &w, 0, &stored, E) ==
          LT_ERR_INVALID);
    w = gm(1);
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, "nobody", "INBOX", "gmail"}, &w, 0, &stored,
                           E) == LT_ERR_INVALID); /* foreign key */
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, G, "", "gmail"}, &w, 0, &stored, E) ==
          LT_ERR_INVALID);
    /* The table refuses a malformed watermark written directly. */
    CHECK(sql(db, "INSERT INTO mail_watermarks (tenant_id, account_id, scope, provider, "
                  "watermark_json) VALUES ('personal', 'personal-gmail', 'x', 'gmail', "
                  "'{\"historyId\": 12}')") == LT_ERR_INVALID);
}

static lt_watermark_pending_t pend(lt_watermark_t wm, const char *cmd, int32_t part, int64_t off)
{
    lt_watermark_pending_t p;
    memset(&p, 0, sizeof(p));
    p.wm = wm;
    snprintf(p.command_id, sizeof(p.command_id), "%s", cmd);
    snprintf(p.marker_topic, sizeof(p.marker_topic), "lattice.mail.raw.v1");
    p.marker_partition = part;
    p.marker_offset = off;
    return p;
}

typedef struct {
    int n;
    char scopes[256];
} plist_t;

static int on_pending(const char *scope, const char *provider, const lt_watermark_pending_t *p,
                      void *opaque)
{
    plist_t *l = opaque;
    size_t len = strlen(l->scopes);
    snprintf(l->scopes + len, sizeof(l->scopes) - len, "%s:%s:%s;", scope, provider, p->command_id);
    l->n++;
    return 0;
}

static void test_pending(lt_db_t *db)
{
    const char *T = "personal", *I = "workmail-imap", *G = "personal-gmail";
    lt_watermark_pending_t p, got;
    lt_watermark_t wm;
    int stored = -1;

    CHECK(lt_watermark_pending_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &got, E) ==
          LT_ERR_NOT_FOUND);
    CHECK(lt_watermark_pending_apply(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, NULL,
                                     &stored, E) == LT_ERR_NOT_FOUND);

    /* (c) put, (e) apply: watermark moves, row gone. Current: (10000, 3). */
    p = pend(im(10000, 40), "cmd-1", 3, 1234567890123LL);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &p, E) ==
          LT_OK);
    CHECK(lt_watermark_pending_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &got, E) ==
          LT_OK);
    CHECK_STR(got.command_id, "cmd-1");
    CHECK_STR(got.marker_topic, "lattice.mail.raw.v1");
    CHECK_INT(got.marker_partition, 3);
    CHECK(got.marker_offset == 1234567890123LL);
    CHECK(got.wm.uidvalidity == 10000 && got.wm.last_uid == 40 && got.resync == 0);
    /* The watermark itself has not moved yet. */
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &wm, E) == LT_OK &&
          wm.last_uid == 3);
    CHECK(lt_watermark_pending_apply(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &got,
                                     &stored, E) == LT_OK);
    CHECK_INT(stored, 1);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &wm, E) == LT_OK &&
          wm.last_uid == 40);
    CHECK(lt_watermark_pending_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &got, E) ==
          LT_ERR_NOT_FOUND);
    CHECK(lt_watermark_pending_apply(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, NULL,
                                     &stored, E) == LT_ERR_NOT_FOUND);

    /* Upsert replaces; apply with a stale expectation changes nothing. */
    p = pend(im(10000, 50), "cmd-2", 0, 10);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &p, E) ==
          LT_OK);
    lt_watermark_pending_t p3 = pend(im(10000, 60), "cmd-3", 0, 11);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &p3, E) ==
          LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_watermark_pending"), 1);
    CHECK(lt_watermark_pending_apply(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &p, &stored,
                                     E) == LT_ERR_NOT_FOUND);
    CHECK(lt_watermark_pending_discard(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &p, E) ==
          LT_ERR_NOT_FOUND);
    CHECK(lt_watermark_pending_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &got, E) ==
          LT_OK);
    CHECK_STR(got.command_id, "cmd-3");

    /* Recovery "aborted": discard; the watermark is untouched. */
    CHECK(lt_watermark_pending_discard(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &p3, E) ==
          LT_OK);
    CHECK(lt_watermark_pending_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &got, E) ==
          LT_ERR_NOT_FOUND);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &wm, E) == LT_OK &&
          wm.last_uid == 40);
    CHECK(lt_watermark_pending_discard(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, NULL, E) ==
          LT_ERR_NOT_FOUND);

    /* Apply keeps the guard: a pending behind the stored one is deleted
     * but does not move the watermark back. */
    p = pend(im(10000, 20), "cmd-4", 1, 5);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &p, E) ==
          LT_OK);
    CHECK(lt_watermark_pending_apply(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, NULL,
                                     &stored, E) == LT_OK);
    CHECK_INT(stored, 0);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &wm, E) == LT_OK &&
          wm.last_uid == 40);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_watermark_pending"), 0);
    /* ... unless it is a resync. */
    p = pend(im(10000, 20), "cmd-5", 1, 6);
    p.resync = 1;
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &p, E) ==
          LT_OK);
    CHECK(lt_watermark_pending_apply(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, NULL,
                                     &stored, E) == LT_OK);
    CHECK_INT(stored, 1);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, I, "INBOX", "imap"}, &wm, E) == LT_OK &&
          wm.last_uid == 20);

    /* Apply creates the first watermark of a scope. */
    p = pend(gm(777), "cmd-6", 2, 99);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, G, "label:Work", "gmail"}, &p, E) ==
          LT_OK);
    p = pend(im(5, 5), "cmd-7", 2, 100);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "Sent", "imap"}, &p, E) ==
          LT_OK);
    p = pend(im(5, 6), "cmd-8", 2, 101);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "Drafts", "imap"}, &p, E) ==
          LT_OK);
    plist_t l = {0};
    CHECK(lt_watermark_pending_list(db, T, I, on_pending, &l, E) == LT_OK);
    CHECK_INT(l.n, 2);
    CHECK_STR(l.scopes, "Drafts:imap:cmd-8;Sent:imap:cmd-7;");
    CHECK(lt_watermark_pending_apply(db, &(lt_watermark_key_t){T, G, "label:Work", "gmail"}, NULL,
                                     &stored, E) == LT_OK &&
          stored == 1);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, G, "label:Work", "gmail"}, &wm, E) ==
              LT_OK &&
          wm.history_id == 777);

    /* Bad input never reaches the table. */
    p = pend(im(5, 5), "", 0, 0);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "Sent", "imap"}, &p, E) ==
          LT_ERR_INVALID);
    p = pend(im(5, 5), "c", -1, 0);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "Sent", "imap"}, &p, E) ==
          LT_ERR_INVALID);

    /* Deleting an account takes its watermarks and pending rows along. */
    CHECK(lt_account_upsert(
              db,
              &(lt_account_row_t){
                  .tenant = "personal", .account_id = "gone", .provider = "imap", .enabled = 1},
              E) == LT_OK);
    lt_watermark_t w1 = im(1, 1);
    CHECK(lt_watermark_set(db, &(lt_watermark_key_t){T, "gone", "INBOX", "imap"}, &w1, 0, NULL,
                           E) == LT_OK);
    p = pend(im(1, 2), "cmd-9", 0, 1);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, "gone", "INBOX", "imap"}, &p, E) ==
          LT_OK);
    CHECK(lt_account_delete(db, T, "gone", E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_watermarks WHERE account_id = 'gone'"), 0);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_watermark_pending WHERE account_id = 'gone'"),
              0);
    CHECK(lt_account_delete(db, T, "gone", E) == LT_ERR_NOT_FOUND);
}

/* ---- locks across two connections ---- */

static void test_locks(const lt_scratch_t *s, lt_db_t *a)
{
    /* advisory locks are database-wide: a tenant of this run's own, so a worker of the
     * seeded tenant "personal" on the same database cannot hold these keys */
    char T[64];
    snprintf(T, sizeof(T), "locks-%ld-%ld", (long)getpid(), (long)time(NULL));
    lt_db_t *b = lt_scratch_connect(s);
    CHECK(b != NULL);
    if (!b)
        return;
    int locked = -1;
    CHECK(lt_account_lock(a, T, "workmail-imap", E) == LT_OK);
    CHECK(lt_account_trylock(b, T, "workmail-imap", &locked, E) == LT_OK);
    CHECK_INT(locked, 0);
    /* Another account is independent. */
    CHECK(lt_account_trylock(b, T, "personal-gmail", &locked, E) == LT_OK);
    CHECK_INT(locked, 1);
    CHECK(lt_account_unlock(b, T, "personal-gmail", E) == LT_OK);
    /* Bounded wait. */
    double t0 = lt_now_s();
    lt_err_t e = lt_account_lock_timeout(b, T, "workmail-imap", 300, E);
    double waited = lt_now_s() - t0;
    CHECK_MSG(e == LT_ERR_TEMPORARY, "%s", g_err);
    CHECK_MSG(waited >= 0.25 && waited < 5, "waited %.3f s", waited);
    CHECK(lt_db_ok(b));
    /* B cannot unlock A's lock. */
    CHECK(lt_account_unlock(b, T, "workmail-imap", E) == LT_ERR_NOT_FOUND);
    CHECK(lt_account_unlock(a, T, "workmail-imap", E) == LT_OK);
    CHECK(lt_account_unlock(a, T, "workmail-imap", E) == LT_ERR_NOT_FOUND);
    CHECK(lt_account_lock_timeout(b, T, "workmail-imap", 300, E) == LT_OK);
    /* The session lock outlives the transaction it was taken in. */
    CHECK(lt_account_trylock(a, T, "workmail-imap", &locked, E) == LT_OK);
    CHECK_INT(locked, 0);
    CHECK(lt_account_unlock(b, T, "workmail-imap", E) == LT_OK);

    /* A lock dies with its connection (a crashed worker). */
    lt_db_t *c = lt_scratch_connect(s);
    CHECK(c != NULL);
    if (c) {
        CHECK(lt_account_lock(c, T, "workmail-imap", E) == LT_OK);
        CHECK(lt_account_trylock(b, T, "workmail-imap", &locked, E) == LT_OK);
        CHECK_INT(locked, 0);
        lt_db_destroy(c);
        /* The server notices the closed socket quickly; poll (30 s: a hang guard). */
        for (int i = 0; i < 300; i++) {
            CHECK(lt_account_trylock(b, T, "workmail-imap", &locked, E) == LT_OK);
            if (locked)
                break;
            usleep(100 * 1000);
        }
        CHECK_INT(locked, 1);
        CHECK(lt_account_unlock(b, T, "workmail-imap", E) == LT_OK);
    }

    /* A killed backend is a TEMPORARY failure; reset reconnects. */
    long long pid = scalar(b, "SELECT pg_backend_pid()");
    char q[128];
    snprintf(q, sizeof(q), "SELECT pg_terminate_backend(%lld)", pid);
    CHECK(sql(a, q) == LT_OK);
    /* terminate only signals it: wait until the backend is gone (30 s: a hang guard) */
    snprintf(q, sizeof(q), "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld", pid);
    for (int i = 0; i < 300 && scalar(a, q) != 0; i++)
        usleep(100 * 1000);
    CHECK_MSG(scalar(a, q) == 0, "backend %lld still there", pid);
    e = sql(b, "SELECT 1");
    CHECK_MSG(e == LT_ERR_TEMPORARY, "%s: %s", lt_err_name(e), g_err);
    CHECK(!lt_db_ok(b));
    CHECK(sql(b, "SELECT 1") == LT_ERR_TEMPORARY);
    CHECK(lt_db_reset(b, E) == LT_OK);
    CHECK(lt_db_ok(b));
    CHECK_INT(scalar(b, "SELECT 7"), 7);
    lt_db_destroy(b);
}

/* ---- commands ---- */

/* ---- durable progress of long syncs: cursors move with the pending row ---- */

static void test_cursors(lt_db_t *db)
{
    const char *T = "personal", *I = "workmail-imap", *G = "personal-gmail";
    char cur[LT_WATERMARK_CURSOR_MAX];
    lt_watermark_pending_t p, got;
    lt_watermark_t wm;
    int stored = -1, attempt = 0;
    lt_command_status_t prev;
    lt_command_info_t c = {.command_id = "bf-cursor-1",
                           .tenant = T,
                           .account_id = I,
                           .provider = "imap",
                           .kind = "backfill",
                           .worker_id = "w"};
    CHECK(lt_command_start(db, &c, &attempt, &prev, E) == LT_OK);
    CHECK(lt_watermark_cursor_get(db, &(lt_watermark_key_t){T, I, "Archive", "imap"},
                                  LT_CURSOR_COMMAND, "bf-cursor-1", cur, E) == LT_ERR_NOT_FOUND);

    /* a backfill batch: no watermark, the cursor in the command row */
    memset(&p, 0, sizeof(p));
    p.no_wm = 1;
    p.cursor_home = LT_CURSOR_COMMAND;
    snprintf(p.cursor, sizeof(p.cursor), "{\"uidvalidity\": 7, \"last_uid\": 50}");
    snprintf(p.command_id, sizeof(p.command_id), "bf-cursor-1");
    snprintf(p.marker_topic, sizeof(p.marker_topic), "ckpt");
    p.marker_offset = 9;
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, I, "Archive", "imap"}, &wm, E) ==
          LT_ERR_NOT_FOUND);
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "Archive", "imap"}, &p, E) ==
          LT_OK);
    CHECK(lt_watermark_pending_get(db, &(lt_watermark_key_t){T, I, "Archive", "imap"}, &got, E) ==
          LT_OK);
    CHECK(got.no_wm == 1 && got.cursor_home == LT_CURSOR_COMMAND);
    /* not applied yet: the Kafka transaction is in doubt */
    CHECK(lt_watermark_cursor_get(db, &(lt_watermark_key_t){T, I, "Archive", "imap"},
                                  LT_CURSOR_COMMAND, "bf-cursor-1", cur, E) == LT_ERR_NOT_FOUND);
    CHECK(lt_watermark_pending_apply(db, &(lt_watermark_key_t){T, I, "Archive", "imap"}, &got,
                                     &stored, E) == LT_OK);
    CHECK_INT(stored, 0); /* no watermark written */
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, I, "Archive", "imap"}, &wm, E) ==
          LT_ERR_NOT_FOUND);
    CHECK(lt_watermark_cursor_get(db, &(lt_watermark_key_t){T, I, "Archive", "imap"},
                                  LT_CURSOR_COMMAND, "bf-cursor-1", cur, E) == LT_OK);
    CHECK(strstr(cur, "\"last_uid\": 50") != NULL);
    /* an aborted batch's cursor is discarded with its row */
    snprintf(p.cursor, sizeof(p.cursor), "{\"uidvalidity\": 7, \"last_uid\": 100}");
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "Archive", "imap"}, &p, E) ==
          LT_OK);
    CHECK(lt_watermark_pending_discard(db, &(lt_watermark_key_t){T, I, "Archive", "imap"}, NULL,
                                       E) == LT_OK);
    CHECK(lt_watermark_cursor_get(db, &(lt_watermark_key_t){T, I, "Archive", "imap"},
                                  LT_CURSOR_COMMAND, "bf-cursor-1", cur, E) == LT_OK);
    CHECK(strstr(cur, "\"last_uid\": 50") != NULL);
    /* the row of another account with the same command id is not touched */
    CHECK(lt_watermark_cursor_get(db, &(lt_watermark_key_t){T, G, "Archive", "imap"},
                                  LT_CURSOR_COMMAND, "bf-cursor-1", cur, E) == LT_ERR_NOT_FOUND);
    /* a pending row needs a watermark or a cursor */
    p.cursor_home = LT_CURSOR_NONE;
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, I, "Archive", "imap"}, &p, E) ==
          LT_ERR_INVALID);

    /* a first sync: scope cursor while it runs; the final batch stores the
     * watermark and deletes the cursor in one transaction */
    CHECK(lt_watermark_cursor_set(db, &(lt_watermark_key_t){T, G, "label:Big", "gmail"},
                                  LT_CURSOR_SCOPE, "fs-1",
                                  "{\"historyId\": \"500\", \"lastId\": \"a1\"}", E) == LT_OK);
    CHECK(lt_watermark_cursor_get(db, &(lt_watermark_key_t){T, G, "label:Big", "gmail"},
                                  LT_CURSOR_SCOPE, NULL, cur, E) == LT_OK);
    CHECK(strstr(cur, "\"a1\"") != NULL);
    memset(&p, 0, sizeof(p));
    p.wm = gm(500);
    p.cursor_home = LT_CURSOR_SCOPE; /* empty cursor: delete */
    snprintf(p.command_id, sizeof(p.command_id), "fs-2");
    snprintf(p.marker_topic, sizeof(p.marker_topic), "ckpt");
    CHECK(lt_watermark_pending_put(db, &(lt_watermark_key_t){T, G, "label:Big", "gmail"}, &p, E) ==
          LT_OK);
    CHECK(lt_watermark_pending_apply(db, &(lt_watermark_key_t){T, G, "label:Big", "gmail"}, NULL,
                                     &stored, E) == LT_OK);
    CHECK_INT(stored, 1);
    CHECK(lt_watermark_get(db, &(lt_watermark_key_t){T, G, "label:Big", "gmail"}, &wm, E) ==
              LT_OK &&
          wm.history_id == 500);
    CHECK(lt_watermark_cursor_get(db, &(lt_watermark_key_t){T, G, "label:Big", "gmail"},
                                  LT_CURSOR_SCOPE, NULL, cur, E) == LT_ERR_NOT_FOUND);
}

static void test_commands(lt_db_t *db)
{
    int attempt = -1;
    lt_command_status_t prev = LT_COMMAND_RUNNING;
    lt_command_state_t cs;
    lt_command_info_t c = {.command_id = "01JCMD-A",
                           .tenant = "personal",
                           .account_id = "workmail-imap",
                           .provider = "imap",
                           .kind = "incremental",
                           .scope = "INBOX",
                           .worker_id = "worker-1"};

    CHECK_INT(running_fresh(db, "workmail-imap", 60), 0);
    CHECK(lt_command_start(db, &c, &attempt, &prev, E) == LT_OK);
    CHECK_INT(attempt, 1);
    CHECK(prev == LT_COMMAND_NONE);
    CHECK_INT(running_fresh(db, "workmail-imap", 60), 1);
    CHECK_INT(running_fresh(db, "personal-gmail", 60), 0);
    lt_command_progress_t pr = {
        .messages = 10, .bytes = 4096, .progress_done = 10, .progress_total = 250};
    CHECK(lt_command_heartbeat(db, "01JCMD-A", &pr, E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT progress_total FROM mail_sync_commands WHERE command_id = "
                         "'01JCMD-A'"),
              250);
    lt_command_progress_t unknown = {-1, -1, 11, -1};
    CHECK(lt_command_heartbeat(db, "01JCMD-A", &unknown, E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT progress_total FROM mail_sync_commands WHERE command_id = "
                         "'01JCMD-A'"),
              250); /* unknown keeps the value */
    CHECK_INT(scalar(db, "SELECT progress_done FROM mail_sync_commands WHERE command_id = "
                         "'01JCMD-A'"),
              11);
    CHECK_INT(scalar(db, FRESH_ACCOUNTS), 1);

    lt_command_progress_t done = {
        .messages = 250, .bytes = 1 << 20, .progress_done = 250, .progress_total = 250};
    CHECK(
        lt_command_finish(db, "01JCMD-A",
                          &(lt_command_outcome_t){.status = LT_COMMAND_SUCCEEDED, .counts = &done},
                          E) == LT_OK);
    CHECK_INT(running_fresh(db, "workmail-imap", 60), 0);
    CHECK(lt_command_heartbeat(db, "01JCMD-A", &pr, E) == LT_ERR_NOT_FOUND);
    CHECK(lt_command_get_status(db, "01JCMD-A", NULL, NULL, &cs, E) == LT_OK);
    CHECK(cs.status == LT_COMMAND_SUCCEEDED && cs.attempt == 1);
    CHECK_INT(scalar(db, "SELECT messages FROM mail_sync_commands WHERE command_id = '01JCMD-A' "
                         "AND finished_at IS NOT NULL AND bytes = 1048576"),
              250);

    /* Redelivered after success: not restarted, the outcome is kept. */
    CHECK(lt_command_start(db, &c, &attempt, &prev, E) == LT_OK);
    CHECK_INT(attempt, 1);
    CHECK(prev == LT_COMMAND_SUCCEEDED);
    CHECK(lt_command_get_status(db, "01JCMD-A", NULL, NULL, &cs, E) == LT_OK &&
          cs.status == LT_COMMAND_SUCCEEDED);
    CHECK_INT(running_fresh(db, "workmail-imap", 60), 0);
    /* A failed one is: attempt 2, counters reset. */
    CHECK(lt_command_finish(db, "01JCMD-A",
                            &(lt_command_outcome_t){.status = LT_COMMAND_FAILED,
                                                    .error_class = "temporary",
                                                    .error = "x"},
                            E) == LT_OK);
    CHECK(lt_command_start(db, &c, &attempt, &prev, E) == LT_OK);
    CHECK_INT(attempt, 2);
    CHECK(prev == LT_COMMAND_FAILED);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_commands WHERE command_id = '01JCMD-A' "
                         "AND finished_at IS NULL AND messages = 0 AND error IS NULL AND "
                         "status = 'running'"),
              1);
    /* Failure with class and a long error (capped). */
    char longerr[5000];
    memset(longerr, 'e', sizeof(longerr) - 1);
    longerr[sizeof(longerr) - 1] = 0;
    CHECK(lt_command_finish(db, "01JCMD-A",
                            &(lt_command_outcome_t){.status = LT_COMMAND_FAILED,
                                                    .error_class = "temporary",
                                                    .error = longerr},
                            E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT length(error) FROM mail_sync_commands WHERE command_id = "
                         "'01JCMD-A' AND error_class = 'temporary' AND status = 'failed'"),
              2000);
    CHECK(lt_command_finish(db, "nope", &(lt_command_outcome_t){.status = LT_COMMAND_FAILED}, E) ==
          LT_ERR_NOT_FOUND);
    CHECK(lt_command_finish(db, "01JCMD-A", &(lt_command_outcome_t){.status = LT_COMMAND_RUNNING},
                            E) == LT_ERR_INVALID);

    /* A running command with a stale heartbeat is not in flight. */
    lt_command_info_t c2 = c;
    c2.command_id = "01JCMD-B";
    CHECK(lt_command_start(db, &c2, &attempt, &prev, E) == LT_OK && attempt == 1);
    CHECK(sql(db, "UPDATE mail_sync_commands SET heartbeat_at = now() - interval '10 minutes' "
                  "WHERE command_id = '01JCMD-B'") == LT_OK);
    CHECK_INT(running_fresh(db, "workmail-imap", 60), 0);
    CHECK_INT(running_fresh(db, "workmail-imap", 3600), 1);
    CHECK_INT(scalar(db, FRESH_ACCOUNTS), 0);
    CHECK(lt_command_finish(db, "01JCMD-B",
                            &(lt_command_outcome_t){.status = LT_COMMAND_DEAD_LETTERED,
                                                    .error_class = "final",
                                                    .error = "account disabled"},
                            E) == LT_OK);
    CHECK(lt_command_get_status(db, "01JCMD-B", NULL, NULL, &cs, E) == LT_OK &&
          cs.status == LT_COMMAND_DEAD_LETTERED);
    CHECK(lt_command_start(db, &c2, &attempt, &prev, E) == LT_OK);
    CHECK(prev == LT_COMMAND_DEAD_LETTERED && attempt == 1);
    CHECK(lt_command_get_status(db, "01JCMD-B", NULL, NULL, &cs, E) == LT_OK &&
          cs.status == LT_COMMAND_DEAD_LETTERED);
    CHECK(lt_command_get_status(db, "01JCMD-Z", NULL, NULL, &cs, E) == LT_ERR_NOT_FOUND);
    /* A command for an unknown account is still recorded (no FK). */
    lt_command_info_t c3 = c;
    c3.command_id = "01JCMD-C";
    c3.account_id = "unknown-account";
    c3.scope = NULL;
    CHECK(lt_command_start(db, &c3, &attempt, &prev, E) == LT_OK);

    /* A command id is one account's: the same id sent for another tenant or
     * account neither reads as that command's outcome nor restarts its row. */
    lt_command_info_t other = c;
    other.command_id = "01JCMD-A"; /* failed above, attempt 2 */
    other.tenant = "other-tenant";
    CHECK(lt_command_start(db, &other, &attempt, &prev, E) == LT_ERR_FINAL);
    CHECK_MSG(strstr(g_err, "another account") != NULL, "reason: %s", g_err);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_commands WHERE command_id = '01JCMD-A' "
                         "AND tenant_id = 'personal' AND account_id = 'workmail-imap' AND "
                         "status = 'failed' AND attempt = 2"),
              1);
    CHECK(lt_command_get_status(db, "01JCMD-A", "other-tenant", "workmail-imap", &cs, E) ==
          LT_ERR_FINAL);
    CHECK(lt_command_get_status(db, "01JCMD-A", "personal", "workmail-imap", &cs, E) == LT_OK &&
          cs.status == LT_COMMAND_FAILED && cs.attempt == 2);
    other.command_id = "01JCMD-B"; /* dead-lettered above */
    other.tenant = "personal";
    other.account_id = "personal-gmail";
    CHECK(lt_command_start(db, &other, &attempt, &prev, E) == LT_ERR_FINAL);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_commands WHERE command_id = '01JCMD-B' "
                         "AND account_id = 'workmail-imap' AND status = 'dead_lettered'"),
              1);

    /* A run given up cleanly (a drain) does not count as an attempt. */
    lt_command_info_t c4 = c;
    c4.command_id = "01JCMD-D";
    CHECK(lt_command_start(db, &c4, &attempt, &prev, E) == LT_OK && attempt == 1);
    CHECK(lt_command_start(db, &c4, &attempt, &prev, E) == LT_OK && attempt == 2);
    CHECK(lt_command_abandon(db, "01JCMD-D", 1, E) == LT_ERR_NOT_FOUND); /* not that run */
    CHECK(lt_command_abandon(db, "01JCMD-D", 2, E) == LT_OK);
    CHECK(lt_command_get_status(db, "01JCMD-D", "personal", "workmail-imap", &cs, E) == LT_OK &&
          cs.status == LT_COMMAND_FAILED && cs.attempt == 1);
    CHECK(lt_command_abandon(db, "01JCMD-D", 1, E) == LT_ERR_NOT_FOUND); /* not running */
    CHECK(lt_command_start(db, &c4, &attempt, &prev, E) == LT_OK && attempt == 2);

    /* Runs the worker counted that never reached the row (Postgres down):
     * the next start writes at least their number. */
    lt_command_info_t c5 = c;
    c5.command_id = "01JCMD-E";
    CHECK(lt_command_start(db, &c5, &attempt, &prev, E) == LT_OK && attempt == 1);
    c5.min_attempt = 5;
    c5.own_attempt = 1; /* the run still "running" in the row was this worker's */
    CHECK(lt_command_start(db, &c5, &attempt, &prev, E) == LT_OK && attempt == 5);
    CHECK(lt_command_get_status(db, "01JCMD-E", NULL, NULL, &cs, E) == LT_OK &&
          cs.attempt == 5 && cs.stalled_runs == 0);
    /* Runs that never finished (another worker's: killed) count, unless
     * they made progress (a heartbeat counted messages). */
    c5.min_attempt = 0;
    c5.own_attempt = 0;
    CHECK(lt_command_start(db, &c5, &attempt, &prev, E) == LT_OK && attempt == 6);
    CHECK(lt_command_get_status(db, "01JCMD-E", NULL, NULL, &cs, E) == LT_OK &&
          cs.stalled_runs == 1 && cs.messages == 0);
    lt_command_progress_t some = {3, 300, 3, 10};
    CHECK(lt_command_heartbeat(db, "01JCMD-E", &some, E) == LT_OK);
    CHECK(lt_command_get_status(db, "01JCMD-E", NULL, NULL, &cs, E) == LT_OK &&
          cs.messages == 3);
    CHECK(lt_command_start(db, &c5, &attempt, &prev, E) == LT_OK && attempt == 7);
    CHECK(lt_command_get_status(db, "01JCMD-E", NULL, NULL, &cs, E) == LT_OK &&
          cs.stalled_runs == 0);
    CHECK(lt_command_start(db, &c5, &attempt, &prev, E) == LT_OK && attempt == 8);
    CHECK(lt_command_start(db, &c5, &attempt, &prev, E) == LT_OK && attempt == 9);
    CHECK(lt_command_get_status(db, "01JCMD-E", NULL, NULL, &cs, E) == LT_OK &&
          cs.stalled_runs == 2);
    /* a run that finished (failed) is not one that took its worker down */
    CHECK(lt_command_finish(db, "01JCMD-E",
                            &(lt_command_outcome_t){.status = LT_COMMAND_FAILED,
                                                    .error_class = "temporary"},
                            E) == LT_OK);
    CHECK(lt_command_start(db, &c5, &attempt, &prev, E) == LT_OK && attempt == 10);
    CHECK(lt_command_get_status(db, "01JCMD-E", NULL, NULL, &cs, E) == LT_OK &&
          cs.stalled_runs == 2);
}

/* ---- transactions ---- */

static void test_tx(lt_db_t *db)
{
    CHECK(lt_db_begin(db, E) == LT_OK);
    CHECK(sql(db, "INSERT INTO mail_accounts (tenant_id, account_id, provider) VALUES ('tx', "
                  "'a', 'imap')") == LT_OK);
    lt_db_rollback(db);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_accounts WHERE tenant_id = 'tx'"), 0);
    /* COMMIT of a failed transaction reports the rollback. */
    CHECK(lt_db_begin(db, E) == LT_OK);
    CHECK(sql(db, "SELECT 1/0") == LT_ERR_INVALID); /* 22012 */
    CHECK(lt_db_commit(db, E) == LT_ERR_FINAL);
    CHECK(sql(db, "SELECT no_such_thing") == LT_ERR_FINAL); /* 42703 */
    lt_db_rollback(db);                                     /* nothing open: harmless */
    CHECK_INT(scalar(db, "SELECT 1"), 1);

    /* pipelined: statements without a result are only sent, the commit
     * reads them; one that wants its result reads everything before it */
    CHECK(lt_db_begin_pipelined(db, E) == LT_OK);
    CHECK(lt_db_begin_pipelined(db, E) == LT_ERR_INVALID); /* one at a time */
    CHECK(sql(db, "INSERT INTO mail_accounts (tenant_id, account_id, provider) VALUES ('tx', "
                  "'p1', 'imap')") == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_accounts WHERE tenant_id = 'tx'"), 1);
    CHECK(sql(db, "INSERT INTO mail_accounts (tenant_id, account_id, provider) VALUES ('tx', "
                  "'p2', 'imap')") == LT_OK);
    CHECK(lt_db_commit(db, E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_accounts WHERE tenant_id = 'tx'"), 2);
    /* a statement sent without waiting fails: the commit says which, and
     * nothing of the transaction stays */
    CHECK(lt_db_begin_pipelined(db, E) == LT_OK);
    CHECK(sql(db, "DELETE FROM mail_accounts WHERE tenant_id = 'tx' AND account_id = 'p1'") ==
          LT_OK);
    CHECK(sql(db, "INSERT INTO mail_accounts (tenant_id, account_id, provider) VALUES ('tx', "
                  "'p2', 'imap')") == LT_OK); /* duplicate: fails at the commit */
    CHECK(sql(db, "DELETE FROM mail_accounts WHERE tenant_id = 'tx' AND account_id = 'p2'") ==
          LT_OK);
    CHECK_MSG(lt_db_commit(db, E) == LT_ERR_INVALID && strstr(g_err, "test sql: "), "%s", g_err);
    lt_db_rollback(db);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_accounts WHERE tenant_id = 'tx'"), 2);
    /* the same failure read by a statement that wants its result; the
     * rollback ends the mode and the connection works as before */
    CHECK(lt_db_begin_pipelined(db, E) == LT_OK);
    CHECK(sql(db, "SELECT 1/0") == LT_OK);
    CHECK(scalar(db, "SELECT 1") == -1);
    lt_db_rollback(db);
    CHECK_INT(scalar(db, "SELECT 2"), 2);
    CHECK(lt_db_begin(db, E) == LT_OK);
    CHECK(lt_db_commit(db, E) == LT_OK);
    CHECK(sql(db, "DELETE FROM mail_accounts WHERE tenant_id = 'tx'") == LT_OK);
}

int main(void)
{
    lt_scratch_t s;
    if (lt_scratch_create(&s, "state") != 0)
        return lt_test_done("test_state (no scratch)") | 1;
    lt_db_t *db = lt_scratch_connect(&s);
    CHECK(db != NULL);
    if (db) {
        int applied = 0;
        lt_err_t e = lt_migrate_apply(db, LT_SOURCE_DIR "/migrations", NULL, NULL, &applied, E);
        CHECK_MSG(e == LT_OK, "%s", g_err);
        if (e == LT_OK) {
            test_accounts(db);
            test_list(db);
            test_watermarks(db);
            test_pending(db);
            test_locks(&s, db);
            test_commands(db);
            test_cursors(db);
            test_tx(db);
        }
        lt_db_destroy(db);
    }
    lt_scratch_drop(&s);
    return lt_test_done("test_state");
}
