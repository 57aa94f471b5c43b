/* lib/state/lt_issued (the scheduler's Postgres state) against the stack's
 * Postgres, in a throwaway schema migrated with lt_migrate: recording
 * (idempotent, foreign key, pipelined send/wait), the in-flight rules
 * (queued, running with a fresh or stale heartbeat, finished, stale issued
 * rows), filters, forgetting failed deliveries, pruning, the run lock
 * across two connections. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lt_accounts.h"
#include "lt_db.h"
#include "lt_issued.h"
#include "lt_migrate.h"
#include "lt_sched_plan.h"
#include "lt_test.h"

static char g_err[1024];
#define E g_err, sizeof(g_err)
static char g_schema[64];
static const char *g_dsn, *g_password;

static lt_db_t *connect_scratch(void)
{
    char opt[128];
    snprintf(opt, sizeof(opt), "-csearch_path=%s", g_schema);
    const char *kw[] = {"options", NULL}, *val[] = {opt, NULL};
    lt_db_t *db = lt_db_connect_params(g_dsn, g_password, kw, val, E);
    if (!db)
        fprintf(stderr, "connect: %s\n", g_err);
    return db;
}

static lt_err_t sql(lt_db_t *db, const char *q)
{
    lt_err_t e =
        lt_db_exec(db, &(lt_db_query_t){.what = "test sql", .sql = q, .nparams = 0}, NULL, E);
    if (e)
        fprintf(stderr, "%s: %s\n", q, g_err);
    return e;
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

/* The in-flight accounts as "t/a,t/a" (sorted by the set: we list them). */
static int collect(const char *tenant, const char *account, void *opaque)
{
    lt_sched_set_t *set = opaque;
    CHECK(lt_sched_set_add(set, tenant, account) == LT_OK);
    return 0;
}

static lt_sched_set_t *in_flight(lt_db_t *db, int stale, const char *provider, const char *tenant)
{
    lt_sched_set_t *set = lt_sched_set_new(1000);
    lt_err_t e = lt_issued_list_in_flight(
        db, &(lt_issued_filter_t){.stale_after_s = stale, .provider = provider, .tenant = tenant},
        collect, set, E);
    CHECK_MSG(e == LT_OK, "list in flight: %s", g_err);
    return set;
}

static void test_issued(lt_db_t *db)
{
    CHECK(sql(db, "INSERT INTO mail_accounts (tenant_id, account_id, provider) VALUES "
                  "('t1', 'a1', 'imap'), ('t1', 'a2', 'imap'), ('t1', 'g1', 'gmail'), "
                  "('t2', 'a1', 'imap'), ('t2', 'a3', 'imap')") == LT_OK);

    /* record: batch, idempotent, scope NULL and text */
    lt_issued_t rows[] = {
        {"c1", "t1", "a1", "imap", "INBOX"},
        {"c2", "t1", "a1", "imap", "Sent Items"},
        {"c3", "t1", "g1", "gmail", NULL},
        {"c4", "t2", "a1", "imap", NULL},
    };
    CHECK(lt_issued_record(db, rows, 4, E) == LT_OK);
    CHECK(lt_issued_record(db, rows, 4, E) == LT_OK); /* same ids: nothing new */
    CHECK(lt_issued_record(db, rows, 0, E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued"), 4);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued WHERE scope IS NULL"), 2);

    /* an unknown account: refused (foreign key), nothing of the batch kept */
    lt_issued_t bad[] = {{"c5", "t1", "a2", "imap", NULL}, {"c6", "t9", "zz", "imap", NULL}};
    lt_err_t e = lt_issued_record(db, bad, 2, E);
    CHECK_MSG(e == LT_ERR_INVALID, "unknown account: %d %s", (int)e, g_err);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued"), 4);
    lt_issued_t missing[] = {{"c7", NULL, "a2", "imap", NULL}};
    CHECK(lt_issued_record(db, missing, 1, E) == LT_ERR_INVALID);

    /* pipelined: send, then wait; the connection is usable afterwards */
    lt_issued_t next[] = {{"c8", "t2", "a3", "imap", "INBOX"}};
    CHECK(lt_issued_record_send(db, next, 1, E) == LT_OK);
    CHECK(lt_issued_record_wait(db, E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued"), 5);
    /* the statement does not wait for the WAL flush, and leaves the session as it was */
    CHECK_INT(scalar(db, "SELECT (current_setting('synchronous_commit') = 'on')::int"), 1);

    /* COPY text: a scope with the characters COPY escapes arrives as sent */
    lt_issued_t odd[] = {{"c9", "t2", "a3", "imap", "a\\b\tc\nd\re \\N"}};
    CHECK(lt_issued_record_send(db, odd, 1, E) == LT_OK);
    CHECK(lt_issued_record_wait(db, E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued WHERE command_id = 'c9' AND "
                         "scope = E'a\\\\b\\tc\\nd\\re \\\\N'"),
              1);
    /* two-step with an id already recorded or an unknown account: the batch
     * fails whole, the connection is usable afterwards */
    lt_issued_t dup[] = {{"c10", "t2", "a3", "imap", NULL}, {"c8", "t2", "a3", "imap", NULL}};
    CHECK(lt_issued_record_send(db, dup, 2, E) == LT_OK);
    CHECK(lt_issued_record_wait(db, E) != LT_OK);
    CHECK(lt_issued_record_send(db, bad, 2, E) == LT_OK);
    CHECK(lt_issued_record_wait(db, E) == LT_ERR_INVALID);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued"), 6);
    CHECK(sql(db, "DELETE FROM mail_sync_issued WHERE command_id = 'c9'") == LT_OK);

    /* queued (issued, no command row): in flight, per filter */
    lt_sched_set_t *s = in_flight(db, 60, NULL, NULL);
    CHECK_INT(lt_sched_set_count(s), 4);
    CHECK(lt_sched_set_has(s, "t1", "a1") && lt_sched_set_has(s, "t1", "g1"));
    CHECK(lt_sched_set_has(s, "t2", "a1") && lt_sched_set_has(s, "t2", "a3"));
    CHECK(!lt_sched_set_has(s, "t1", "a2"));
    lt_sched_set_destroy(s);
    s = in_flight(db, 60, "gmail", NULL);
    CHECK_INT(lt_sched_set_count(s), 1);
    CHECK(lt_sched_set_has(s, "t1", "g1"));
    lt_sched_set_destroy(s);
    s = in_flight(db, 60, "imap", "t2");
    CHECK_INT(lt_sched_set_count(s), 2);
    lt_sched_set_destroy(s);

    /* started: c1 running (fresh), c2 finished -> t1/a1 still in flight through c1 */
    CHECK(sql(db, "INSERT INTO mail_sync_commands (command_id, tenant_id, account_id, provider, "
                  "kind, status) VALUES ('c1', 't1', 'a1', 'imap', 'incremental', 'running'), "
                  "('c2', 't1', 'a1', 'imap', 'incremental', 'succeeded')") == LT_OK);
    s = in_flight(db, 60, NULL, "t1");
    CHECK(lt_sched_set_has(s, "t1", "a1"));
    lt_sched_set_destroy(s);
    /* c1's heartbeat goes stale: t1/a1 no longer in flight (c2 finished) */
    CHECK(sql(db, "UPDATE mail_sync_commands SET heartbeat_at = now() - interval '1 hour' "
                  "WHERE command_id = 'c1'") == LT_OK);
    s = in_flight(db, 60, NULL, "t1");
    CHECK(!lt_sched_set_has(s, "t1", "a1"));
    CHECK(lt_sched_set_has(s, "t1", "g1"));
    lt_sched_set_destroy(s);
    /* a running command the scheduler never issued (a manual backfill) counts too */
    CHECK(sql(db, "INSERT INTO mail_sync_commands (command_id, tenant_id, account_id, provider, "
                  "kind, status) VALUES ('manual', 't1', 'a2', 'imap', 'backfill', 'running')") ==
          LT_OK);
    s = in_flight(db, 60, NULL, NULL);
    CHECK(lt_sched_set_has(s, "t1", "a2"));
    lt_sched_set_destroy(s);
    s = in_flight(db, 60, "gmail", NULL); /* filtered by the command's provider */
    CHECK(!lt_sched_set_has(s, "t1", "a2"));
    lt_sched_set_destroy(s);

    /* a failed delivery is forgotten: the account is free again */
    const char *ids[] = {"c4", "no-such-id"};
    CHECK(lt_issued_forget(db, ids, 2, E) == LT_OK);
    CHECK(lt_issued_forget(db, ids, 0, E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued WHERE command_id = 'c4'"), 0);
    s = in_flight(db, 60, NULL, "t2");
    CHECK(!lt_sched_set_has(s, "t2", "a1"));
    CHECK(lt_sched_set_has(s, "t2", "a3"));
    lt_sched_set_destroy(s);

    /* stale issued rows: not in flight, pruned */
    CHECK(sql(db, "UPDATE mail_sync_issued SET issued_at = now() - interval '2 minutes' "
                  "WHERE command_id IN ('c3', 'c8')") == LT_OK);
    s = in_flight(db, 60, NULL, NULL);
    CHECK(!lt_sched_set_has(s, "t1", "g1"));
    CHECK(!lt_sched_set_has(s, "t2", "a3"));
    lt_sched_set_destroy(s);
    s = in_flight(db, 600, NULL, NULL); /* a longer threshold: still fresh */
    CHECK(lt_sched_set_has(s, "t1", "g1"));
    lt_sched_set_destroy(s);
    long long pruned = -1;
    CHECK(lt_issued_prune(db, 60, &pruned, E) == LT_OK);
    CHECK_INT(pruned, 2);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued"), 2); /* c1, c2 */
    CHECK(lt_issued_prune(db, 0, NULL, E) == LT_ERR_INVALID);
    CHECK(lt_issued_list_in_flight(db, &(lt_issued_filter_t){.stale_after_s = 0}, collect, NULL,
                                   E) == LT_ERR_INVALID);

    /* renaming an account renames its issued rows (the others stay) */
    lt_issued_t ren[] = {{"c11", "t2", "a3", "imap", NULL}, {"c12", "t2", "a1", "imap", NULL}};
    CHECK(lt_issued_record(db, ren, 2, E) == LT_OK);
    CHECK(sql(db, "UPDATE mail_accounts SET account_id = 'a3b' WHERE tenant_id = 't2' AND "
                  "account_id = 'a3'") == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued WHERE command_id = 'c11' AND "
                         "tenant_id = 't2' AND account_id = 'a3b'"),
              1);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued WHERE command_id = 'c12' AND "
                         "account_id = 'a1'"),
              1);
    /* the old name is unknown now: refused */
    lt_issued_t old_name[] = {{"c13", "t2", "a3", "imap", NULL}};
    CHECK(lt_issued_record(db, old_name, 1, E) == LT_ERR_INVALID);
    /* deleting several accounts in one statement deletes their issued rows */
    CHECK(sql(db, "DELETE FROM mail_accounts WHERE tenant_id = 't2'") == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued WHERE tenant_id = 't2'"), 0);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued"), 2); /* c1, c2 */

    /* deleting an account deletes its issued rows */
    CHECK(lt_account_delete(db, "t1", "a1", E) == LT_OK);
    CHECK_INT(scalar(db, "SELECT count(*) FROM mail_sync_issued"), 0);
}

static void test_run_lock(lt_db_t *a)
{
    lt_db_t *b = connect_scratch();
    CHECK(b != NULL);
    if (!b)
        return;
    int la = 0, lb = 0;
    CHECK(lt_issued_run_trylock(a, "imap", NULL, &la, E) == LT_OK);
    CHECK_INT(la, 1);
    CHECK(lt_issued_run_trylock(b, "imap", NULL, &lb, E) == LT_OK);
    CHECK_INT(lb, 0); /* same filters: held by a */
    CHECK(lt_issued_run_trylock(b, "gmail", NULL, &lb, E) == LT_OK);
    CHECK_INT(lb, 1); /* other filters: independent */
    CHECK(lt_issued_run_unlock(b, "gmail", NULL, E) == LT_OK);
    CHECK(lt_issued_run_trylock(b, "imap", "t1", &lb, E) == LT_OK);
    CHECK_INT(lb, 1);
    CHECK(lt_issued_run_unlock(b, "imap", "t1", E) == LT_OK);
    CHECK(lt_issued_run_unlock(b, "imap", NULL, E) == LT_ERR_NOT_FOUND); /* not b's */
    CHECK(lt_issued_run_unlock(a, "imap", NULL, E) == LT_OK);
    CHECK(lt_issued_run_trylock(b, "imap", NULL, &lb, E) == LT_OK);
    CHECK_INT(lb, 1);
    lt_db_destroy(b); /* the session ends: released */
    /* the server ends b's backend (and its locks) just after the close: poll
     * (30 s: a hang guard) */
    for (int i = 0; i < 300; i++) {
        CHECK(lt_issued_run_trylock(a, "imap", NULL, &la, E) == LT_OK);
        if (la)
            break;
        usleep(100 * 1000);
    }
    CHECK_INT(la, 1);
    CHECK(lt_issued_run_unlock(a, "imap", NULL, E) == LT_OK);
}

int main(void)
{
    g_dsn = lt_test_env("LATTICE_PG_DSN");
    g_password = lt_test_env("LATTICE_PG_PASSWORD");
    snprintf(g_schema, sizeof(g_schema), "lattice_test_%ld_%ld_issued", (long)getpid(),
             (long)time(NULL)); /* unique per run, also with a recycled pid */
    lt_db_t *admin = lt_db_connect(g_dsn, g_password, E);
    if (!admin) {
        fprintf(stderr, "cannot connect to Postgres: %s\n", g_err);
        return 1;
    }
    char q[256];
    snprintf(q, sizeof(q), "CREATE SCHEMA %s", g_schema);
    if (sql(admin, q)) {
        lt_db_destroy(admin);
        return 1;
    }
    lt_db_t *db = connect_scratch();
    CHECK(db != NULL);
    if (db) {
        int applied = 0;
        lt_err_t e = lt_migrate_apply(db, LT_SOURCE_DIR "/migrations", NULL, NULL, &applied, E);
        CHECK_MSG(e == LT_OK, "migrate: %s", g_err);
        if (!e) {
            test_issued(db);
            test_run_lock(db);
        }
        lt_db_destroy(db);
    }
    snprintf(q, sizeof(q), "DROP SCHEMA IF EXISTS %s CASCADE", g_schema);
    sql(admin, q);
    lt_db_destroy(admin);
    return lt_test_done("test_issued");
}
