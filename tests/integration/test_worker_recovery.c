/* Recovery of an in-doubt batch (lt_sync_recover, docs/delivery-protocol.md)
 * against the real Kafka and Postgres, for each fate of the batch's
 * transaction when the worker died with a pending row:
 *   committed        committed before recovery (crash between commit and apply)
 *                    -> the pending watermark is applied
 *   aborted          aborted before recovery (crash between the pending row
 *                    and the commit; the restarted worker fenced it) -> discarded
 *   fenced-later     still open when recovery starts; a producer with the same
 *                    transactional.id fences it 2 s later -> recovery waits for
 *                    the decision, then discards
 *   committed-later  still open; committed 2 s later -> waits, then applies
 * The kill -9 campaign (tests/crash) hits this window (a few ms per batch)
 * only now and then; this test builds each state on purpose. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lt_accounts.h"
#include "lt_command.h"
#include "lt_config.h"
#include "lt_db.h"
#include "lt_dispatch.h"
#include "lt_kafka.h"
#include "lt_sync.h"
#include "lt_test.h"
#include "lt_watermark.h"

#define SCOPE "INBOX"
#define LATER_MS 2000

typedef enum { COMMITTED, ABORTED, FENCED_LATER, COMMITTED_LATER } fate_t;
static const char *k_fate[] = {"committed", "aborted", "fenced-later", "committed-later"};

static lt_config_t *g_cfg;
static lt_db_t *g_db;
static char g_run[64];

typedef struct {
    fate_t fate;
    rd_kafka_t *tx;
    const char *txid;
    int64_t decided_ms; /* lt_now_ms() when the decision started */
} later_t;

static void *decide_later(void *arg)
{
    later_t *l = arg;
    struct timespec ts = {LATER_MS / 1000, (LATER_MS % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    l->decided_ms = lt_now_ms();
    char err[512];
    if (l->fate == COMMITTED_LATER) {
        rd_kafka_error_t *e = rd_kafka_commit_transaction(l->tx, 30000);
        if (e) {
            fprintf(stderr, "late commit: %s\n", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    } else {
        /* what a restarted worker does: init_transactions of the same id */
        rd_kafka_t *p = lt_kafka_producer_new(g_cfg, l->txid, err, sizeof(err));
        if (!p)
            fprintf(stderr, "fencing producer: %s\n", err);
        lt_kafka_destroy(p);
    }
    return NULL;
}

static void run_case(fate_t fate)
{
    char err[1024], tenant[96], account[128], txid[160], cid[160], sql[1024], json[1024];
    snprintf(tenant, sizeof(tenant), "rec-t%s", g_run);
    snprintf(account, sizeof(account), "rec-a%s-%s", g_run, k_fate[fate]);
    snprintf(txid, sizeof(txid), "lattice-test-recovery-%s-%d", g_run, (int)fate);
    snprintf(cid, sizeof(cid), "rec-cmd-%s-%d", g_run, (int)fate);
    const char *ckpt = lt_config_settings(g_cfg)->topic.checkpoints;

    snprintf(sql, sizeof(sql),
             "INSERT INTO mail_accounts (tenant_id, account_id, provider) VALUES ('%s', '%s', "
             "'imap')",
             tenant, account);
    CHECK_MSG(lt_db_exec(g_db, &(lt_db_query_t){.what = "insert account", .sql = sql, .nparams = 0},
                         NULL, err, sizeof(err)) == LT_OK,
              "%s", err);
    lt_account_t *acct = NULL;
    CHECK_MSG(lt_account_load(g_db, tenant, account, &acct, err, sizeof(err)) == LT_OK, "%s",
              err);
    snprintf(json, sizeof(json),
             "{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"%s\",\"tenant_id\":\"%s\","
             "\"account_id\":\"%s\",\"provider\":\"imap\",\"kind\":\"incremental\","
             "\"requested_at\":\"2026-11-25T12:00:00Z\",\"requested_by\":\"test\"}",
             cid, tenant, account);
    lt_command_t *cmd = NULL;
    CHECK_MSG(lt_command_parse(json, strlen(json), &cmd, err, sizeof(err)) == LT_OK, "%s", err);
    if (!acct || !cmd)
        goto out_early;

    /* the command's row as after four runs killed in a row, none seen to
     * move a watermark (a run killed between its Kafka commit and the
     * watermark's apply counts no message) */
    snprintf(sql, sizeof(sql),
             "INSERT INTO mail_sync_commands (command_id, tenant_id, account_id, provider, kind, "
             "status, attempt, stalled_runs) VALUES ('%s', '%s', '%s', 'imap', 'incremental', "
             "'running', 5, 3)",
             cid, tenant, account);
    CHECK_MSG(lt_db_exec(g_db, &(lt_db_query_t){.what = "insert command", .sql = sql, .nparams = 0},
                         NULL, err, sizeof(err)) == LT_OK,
              "%s", err);

    /* the batch: a transaction holding the marker, and the pending row */
    rd_kafka_t *tx = lt_kafka_producer_new(g_cfg, txid, err, sizeof(err));
    CHECK_MSG(tx != NULL, "%s", err);
    if (!tx)
        goto out_early;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(tx);
    CHECK(e == NULL);
    lt_kafka_pos_t pos = {-1, -1};
    char key[300];
    snprintf(key, sizeof(key), "%s/%s/%s", tenant, account, SCOPE);
    const char *marker = "{\"test\":\"recovery\"}";
    CHECK_MSG(lt_kafka_produce_sync(tx,
                                    &(lt_kafka_msg_t){.topic = ckpt,
                                                      .partition = RD_KAFKA_PARTITION_UA,
                                                      .key = key,
                                                      .key_len = strlen(key),
                                                      .value = marker,
                                                      .value_len = strlen(marker)},
                                    30000, &pos, err, sizeof(err)) == LT_OK,
              "%s", err);
    lt_watermark_pending_t p;
    memset(&p, 0, sizeof(p));
    p.wm.uidvalidity = 777;
    p.wm.last_uid = 42;
    snprintf(p.command_id, sizeof(p.command_id), "%s", cid);
    snprintf(p.marker_topic, sizeof(p.marker_topic), "%s", ckpt);
    p.marker_partition = pos.partition;
    p.marker_offset = pos.offset;
    CHECK_MSG(lt_watermark_pending_put(g_db, &(lt_watermark_key_t){tenant, account, SCOPE, "imap"},
                                       &p, err, sizeof(err)) == LT_OK,
              "%s", err);
    if (fate == COMMITTED)
        CHECK((e = rd_kafka_commit_transaction(tx, 30000)) == NULL);
    else if (fate == ABORTED)
        CHECK((e = rd_kafka_abort_transaction(tx, 30000)) == NULL);
    if (e)
        rd_kafka_error_destroy(e);
    later_t later = {fate, tx, txid, 0};
    pthread_t th;
    int threaded = fate == FENCED_LATER || fate == COMMITTED_LATER;
    if (threaded)
        pthread_create(&th, NULL, decide_later, &later);

    /* the restarted worker's recovery */
    char group[200];
    snprintf(group, sizeof(group), "lattice-test-recovery-reader-%s", g_run);
    rd_kafka_conf_t *conf = lt_kafka_consumer_conf(g_cfg, group, err, sizeof(err));
    char why[256];
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", why, sizeof(why));
    rd_kafka_t *reader = lt_kafka_new(RD_KAFKA_CONSUMER, conf, NULL, NULL, err, sizeof(err));
    CHECK_MSG(reader != NULL, "%s", err);
    lt_sync_env_t env = {
        .db = g_db,
        .marker_reader = reader,
        .checkpoint_topic = ckpt,
        .txn_timeout_ms = 60000,
    };
    lt_sync_t *s = lt_sync_new(&env, acct, cmd, NULL, NULL);
    int64_t t0 = lt_now_ms();
    err[0] = 0;
    lt_err_t rerr = lt_sync_recover(s, err, sizeof(err));
    int64_t took = lt_now_ms() - t0;
    printf("%-16s recovered in %lld ms\n", k_fate[fate], (long long)took);
    CHECK_MSG(rerr == LT_OK, "%s: %s", k_fate[fate], err);
    lt_sync_destroy(s);
    if (threaded)
        pthread_join(th, NULL);

    lt_watermark_pending_t left;
    CHECK_MSG(lt_watermark_pending_get(g_db, &(lt_watermark_key_t){tenant, account, SCOPE, "imap"},
                                       &left, err, sizeof(err)) == LT_ERR_NOT_FOUND,
              "%s: pending row left", k_fate[fate]);
    lt_watermark_t wm;
    lt_err_t werr = lt_watermark_get(g_db, &(lt_watermark_key_t){tenant, account, SCOPE, "imap"},
                                     &wm, err, sizeof(err));
    if (fate == COMMITTED || fate == COMMITTED_LATER) {
        CHECK_MSG(werr == LT_OK && wm.uidvalidity == 777 && wm.last_uid == 42,
                  "%s: watermark not applied", k_fate[fate]);
    } else {
        CHECK_MSG(werr == LT_ERR_NOT_FOUND, "%s: the aborted batch's watermark was applied",
                  k_fate[fate]);
    }
    /* a batch found committed was progress of the run that made it: the
     * command's runs in a row without progress start again from 0 (else a
     * command whose runs each commit a batch and die before applying it is
     * dead-lettered as if it never moved); an aborted one changes nothing */
    PGresult *res = NULL;
    snprintf(sql, sizeof(sql), "SELECT stalled_runs FROM mail_sync_commands WHERE command_id = '%s'",
             cid);
    CHECK_MSG(lt_db_exec(g_db, &(lt_db_query_t){.what = "stalled", .sql = sql, .nparams = 0}, &res,
                         err, sizeof(err)) == LT_OK && res && PQntuples(res) == 1,
              "%s", err);
    if (res && PQntuples(res) == 1) {
        int stalled = atoi(PQgetvalue(res, 0, 0));
        int want = fate == COMMITTED || fate == COMMITTED_LATER ? 0 : 3;
        CHECK_MSG(stalled == want, "%s: stalled_runs %d, want %d", k_fate[fate], stalled, want);
    }
    PQclear(res);
    /* it waited for the decision (threaded: it returned after the decision
     * started, whatever the machine's speed), and not for the 60 s transaction
     * timeout: the upper bounds only tell the two apart, with room for a loaded
     * machine */
    if (threaded)
        CHECK_MSG(t0 + took >= later.decided_ms && took < 45000,
                  "%s: returned %lld ms after the decision, in %lld ms", k_fate[fate],
                  (long long)(t0 + took - later.decided_ms), (long long)took);
    else
        CHECK_MSG(took < 45000, "%s: %lld ms", k_fate[fate], (long long)took);

    lt_kafka_destroy(reader);
    lt_kafka_destroy(tx);
out_early:
    lt_command_destroy(cmd);
    lt_account_destroy(acct);
}

int main(void)
{
    char err[1024];
    lt_test_env("LATTICE_KAFKA_BOOTSTRAP_SERVERS");
    const char *dsn = lt_test_env("LATTICE_PG_DSN");
    const char *pw = lt_test_env("LATTICE_PG_PASSWORD");
    snprintf(g_run, sizeof(g_run), "%ld%ld", (long)time(NULL), (long)getpid());
    g_cfg = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(g_cfg != NULL, "%s", err);
    g_db = lt_db_connect(dsn, pw, err, sizeof(err));
    CHECK_MSG(g_db != NULL, "%s", err);
    if (g_cfg && g_db)
        for (fate_t f = COMMITTED; f <= COMMITTED_LATER; f++)
            run_case(f);
    lt_db_destroy(g_db);
    lt_config_destroy(g_cfg);
    return lt_test_done("test_worker_recovery");
}
