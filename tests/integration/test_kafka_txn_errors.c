/* How lt_sync_checkpoint treats each kind of transactional error of the
 * commit, and whether the slot's producer can go on (lt_sync_producer_unusable):
 *
 *   abortable         the commit needs an abort; the abort succeeds -> the batch
 *                     is aborted (not in doubt) and the same producer commits
 *                     the next batch: no needless replacement
 *   abort fails       the commit needs an abort and the abort is refused too
 *                     -> the producer is to be replaced
 *   fatal (fenced)    -> in doubt (recovery reads the marker), temporary for
 *                     the command, the producer is to be replaced
 *   unknown outcome   the coordinator never answers the commit -> in doubt,
 *                     the producer is to be replaced; a new producer with the
 *                     same transactional.id (what the slot opens) commits the
 *                     next batch
 *
 * The Kafka side is librdkafka's mock cluster (test.mock.num.brokers), the only
 * way to make the coordinator answer EndTxn with a chosen error; Postgres and
 * S3 are the stack's. The end to end proof against a real broker (the worker,
 * read_committed) is test_worker_txn_in_doubt.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "lt_accounts.h"
#include "lt_command.h"
#include "lt_config.h"
#include "lt_db.h"
#include "lt_event.h"
#include "lt_kafka.h"
#include "lt_mime.h"
#include "lt_s3.h"
#include "lt_sync.h"
#include "lt_test.h"

#define API_ENDTXN 26 /* Kafka protocol ApiKey of EndTxn */
#define RAW "raw"
#define CKPT "ckpt"

static lt_config_t *g_cfg;
static lt_db_t *g_db;
static lt_s3_t *g_s3;
static lt_mail_codec_t *g_codec;
static lt_account_t *g_acct;
static lt_command_t *g_cmd;
static char g_run[64];
static int g_uid;

/* A mock cluster of one broker with the two topics, owned by its own handle
 * (it lives as long as that handle, across the producers of a case). */
static rd_kafka_mock_cluster_t *mock_new(rd_kafka_t **owner)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    CHECK_MSG(*owner != NULL, "%s", err);
    if (!*owner)
        return NULL;
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(*owner, 1);
    CHECK(mc != NULL);
    if (mc) {
        rd_kafka_mock_topic_create(mc, RAW, 1, 1);
        rd_kafka_mock_topic_create(mc, CKPT, 1, 1);
    }
    return mc;
}

static void mock_destroy(rd_kafka_t *owner, rd_kafka_mock_cluster_t *mc)
{
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (owner)
        rd_kafka_destroy(owner);
}

/* The slot's producer as the worker makes it, on the mock cluster. */
static rd_kafka_t *producer(const char *txid, rd_kafka_mock_cluster_t *mc)
{
    char err[1024];
    rd_kafka_conf_t *conf = lt_kafka_producer_conf(g_cfg, txid, err, sizeof(err));
    CHECK_MSG(conf != NULL, "%s", err);
    if (!conf)
        return NULL;
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), err,
                      sizeof(err));
    rd_kafka_t *rk = lt_kafka_new(RD_KAFKA_PRODUCER, conf, NULL, lt_sync_dr_cb, err, sizeof(err));
    CHECK_MSG(rk != NULL, "%s", err);
    return rk;
}

/* One batch of two messages, then the checkpoint (no watermark: nothing
 * in Postgres to resolve; the commit path is the same). */
static lt_err_t batch(rd_kafka_t *p, lt_sync_t **out, char *err, size_t n)
{
    lt_sync_env_t env = {
        .db = g_db,
        .s3 = g_s3,
        .producer = p,
        .codec = g_codec,
        .schema_id = 1,
        .raw_topic = RAW,
        .checkpoint_topic = CKPT,
        .tmp_dir = "/tmp",
        .max_message_bytes = 1 << 20,
        .batch_messages = 10,
        .s3_parallel = 1,
        .txn_timeout_ms = 3000,
    };
    lt_sync_t *s = lt_sync_new(&env, g_acct, g_cmd, NULL, NULL);
    lt_sync_set_scope(s, "INBOX");
    lt_err_t e = LT_OK;
    for (int i = 0; i < 2 && !e; i++) {
        char pmid[32], msg[256];
        snprintf(pmid, sizeof(pmid), "%d", ++g_uid);
        snprintf(msg, sizeof(msg),
                 "From: a@example.test\r\nTo: b@example.test\r\nSubject: txn %s\r\n"
                 "Message-ID: <%s.%s@example.test>\r\n\r\nbody\r\n",
                 pmid, pmid, g_run);
        e = lt_sync_message_begin(s, pmid, NULL, "INBOX", 1700000000000, err, n);
        if (!e)
            e = lt_sync_message_write(s, msg, strlen(msg), err, n);
        if (!e)
            e = lt_sync_message_end(s, err, n);
    }
    CHECK_MSG(e == LT_OK, "messages: %s", err);
    if (!e)
        e = lt_sync_checkpoint(s, "INBOX", NULL, 0, err, n);
    *out = s;
    return e;
}

static void case_abortable(void)
{
    char err[1024] = "", txid[128];
    rd_kafka_t *owner = NULL;
    rd_kafka_mock_cluster_t *mc = mock_new(&owner);
    snprintf(txid, sizeof(txid), "lattice-test-txerr-%s-abortable", g_run);
    rd_kafka_t *p = mc ? producer(txid, mc) : NULL;
    if (!p) {
        mock_destroy(owner, mc);
        return;
    }
    /* an error librdkafka does not know for EndTxn: the transaction must be aborted */
    rd_kafka_mock_push_request_errors(mc, API_ENDTXN, 1, RD_KAFKA_RESP_ERR_INVALID_MSG);
    lt_sync_t *s = NULL;
    lt_err_t e = batch(p, &s, err, sizeof(err));
    printf("abortable:       %s: %s\n", lt_err_name(e), err);
    CHECK_INT(e, LT_ERR_TEMPORARY);
    CHECK(!lt_sync_in_doubt(s));
    CHECK_MSG(!lt_sync_producer_unusable(s), "abortable: the producer was given up");
    lt_sync_destroy(s);
    err[0] = 0;
    e = batch(p, &s, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "abortable: the same producer's next batch: %s", err);
    CHECK(!lt_sync_producer_unusable(s));
    lt_sync_destroy(s);
    lt_kafka_destroy(p);
    mock_destroy(owner, mc);
}

static void case_abort_fails(void)
{
    char err[1024] = "", txid[128];
    rd_kafka_t *owner = NULL;
    rd_kafka_mock_cluster_t *mc = mock_new(&owner);
    snprintf(txid, sizeof(txid), "lattice-test-txerr-%s-abortfails", g_run);
    rd_kafka_t *p = mc ? producer(txid, mc) : NULL;
    if (!p) {
        mock_destroy(owner, mc);
        return;
    }
    /* the commit's EndTxn needs an abort, the abort's EndTxn is refused */
    rd_kafka_mock_push_request_errors(mc, API_ENDTXN, 2, RD_KAFKA_RESP_ERR_INVALID_MSG,
                                      RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    lt_sync_t *s = NULL;
    lt_err_t e = batch(p, &s, err, sizeof(err));
    printf("abort fails:     %s: %s\n", lt_err_name(e), err);
    CHECK_INT(e, LT_ERR_TEMPORARY);
    CHECK_MSG(lt_sync_producer_unusable(s), "abort fails: the producer is kept");
    lt_sync_destroy(s);
    lt_kafka_destroy(p);
    mock_destroy(owner, mc);
}

static void case_fatal(void)
{
    char err[1024] = "", txid[128];
    rd_kafka_t *owner = NULL;
    rd_kafka_mock_cluster_t *mc = mock_new(&owner);
    snprintf(txid, sizeof(txid), "lattice-test-txerr-%s-fatal", g_run);
    rd_kafka_t *p = mc ? producer(txid, mc) : NULL;
    if (!p) {
        mock_destroy(owner, mc);
        return;
    }
    rd_kafka_mock_push_request_errors(mc, API_ENDTXN, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    lt_sync_t *s = NULL;
    lt_err_t e = batch(p, &s, err, sizeof(err));
    printf("fatal:           %s: %s\n", lt_err_name(e), err);
    CHECK_MSG(e == LT_ERR_TEMPORARY, "fatal: %s (the retry runs on a new producer)",
              lt_err_name(e));
    CHECK(lt_sync_in_doubt(s));
    CHECK_MSG(lt_sync_producer_unusable(s), "fatal: the producer is kept");
    lt_sync_destroy(s);
    lt_kafka_destroy(p);
    mock_destroy(owner, mc);
}

static void case_unknown(void)
{
    char err[1024] = "", txid[128];
    rd_kafka_t *owner = NULL;
    rd_kafka_mock_cluster_t *mc = mock_new(&owner);
    snprintf(txid, sizeof(txid), "lattice-test-txerr-%s-unknown", g_run);
    rd_kafka_t *p = mc ? producer(txid, mc) : NULL;
    if (!p) {
        mock_destroy(owner, mc);
        return;
    }
    /* the coordinator keeps answering "busy": every try of the commit times out */
    rd_kafka_resp_err_t busy[400];
    for (size_t i = 0; i < sizeof(busy) / sizeof(busy[0]); i++)
        busy[i] = RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
    rd_kafka_mock_push_request_errors_array(mc, API_ENDTXN, sizeof(busy) / sizeof(busy[0]),
                                            busy);
    lt_sync_t *s = NULL;
    lt_err_t e = batch(p, &s, err, sizeof(err));
    printf("unknown outcome: %s: %s\n", lt_err_name(e), err);
    CHECK_INT(e, LT_ERR_TEMPORARY);
    CHECK(lt_sync_in_doubt(s));
    CHECK_MSG(lt_sync_producer_unusable(s), "unknown outcome: the producer is kept");
    lt_sync_destroy(s);

    /* what the slot does: the old one destroyed, a new one of the same id */
    rd_kafka_mock_clear_request_errors(mc, API_ENDTXN);
    lt_kafka_destroy(p);
    rd_kafka_t *p2 = producer(txid, mc);
    if (p2) {
        err[0] = 0;
        e = batch(p2, &s, err, sizeof(err));
        CHECK_MSG(e == LT_OK, "unknown outcome: the new producer's batch: %s", err);
        lt_sync_destroy(s);
    }
    lt_kafka_destroy(p2);
    mock_destroy(owner, mc);
}

int main(void)
{
    char err[1024];
    const char *dsn = lt_test_env("LATTICE_PG_DSN");
    const char *pw = lt_test_env("LATTICE_PG_PASSWORD");
    lt_test_env("LATTICE_S3_ENDPOINT");
    snprintf(g_run, sizeof(g_run), "%ld%ld", (long)time(NULL), (long)getpid());
    lt_mime_global_init();
    g_cfg = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(g_cfg != NULL, "%s", err);
    g_db = lt_db_connect(dsn, pw, err, sizeof(err));
    CHECK_MSG(g_db != NULL, "%s", err);
    if (!g_cfg || !g_db)
        return lt_test_done("test_kafka_txn_errors");
    const lt_settings_t *set = lt_config_settings(g_cfg);
    g_s3 = lt_s3_new(&(lt_s3_config_t){.endpoint = set->s3.endpoint,
                                       .region = set->s3.region,
                                       .bucket = set->s3.bucket,
                                       .access_key_id = set->s3.access_key_id,
                                       .secret_access_key = set->s3.secret_access_key,
                                       .addressing = set->s3.path_style ? LT_S3_PATH_STYLE
                                                                        : LT_S3_VIRTUAL_HOSTED,
                                       .ca_file = set->s3.ca_file,
                                       .timeout_s = (long)set->s3.timeout_s},
                     err, sizeof(err));
    CHECK_MSG(g_s3 != NULL, "%s", err);
    g_codec = lt_mail_codec_new(err, sizeof(err));
    CHECK_MSG(g_codec != NULL, "%s", err);

    char tenant[96], account[128], sql[512], json[1024];
    snprintf(tenant, sizeof(tenant), "txerr-t%s", g_run);
    snprintf(account, sizeof(account), "txerr-a%s", g_run);
    snprintf(sql, sizeof(sql),
             "INSERT INTO mail_accounts (tenant_id, account_id, provider) VALUES ('%s', '%s', "
             "'imap')",
             tenant, account);
    CHECK_MSG(lt_db_exec(g_db, &(lt_db_query_t){.what = "insert account", .sql = sql, .nparams = 0},
                         NULL, err, sizeof(err)) == LT_OK,
              "%s", err);
    CHECK_MSG(lt_account_load(g_db, tenant, account, &g_acct, err, sizeof(err)) == LT_OK, "%s",
              err);
    snprintf(json, sizeof(json),
             "{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"txerr-%s\","
             "\"tenant_id\":\"%s\",\"account_id\":\"%s\",\"provider\":\"imap\","
             "\"kind\":\"incremental\",\"requested_at\":\"2026-11-25T12:00:00Z\","
             "\"requested_by\":\"test\"}",
             g_run, tenant, account);
    CHECK_MSG(lt_command_parse(json, strlen(json), &g_cmd, err, sizeof(err)) == LT_OK, "%s", err);

    if (g_s3 && g_codec && g_acct && g_cmd) {
        case_abortable();
        case_abort_fails();
        case_fatal();
        case_unknown();
    }
    lt_command_destroy(g_cmd);
    lt_account_destroy(g_acct);
    lt_mail_codec_destroy(g_codec);
    lt_s3_destroy(g_s3);
    lt_db_destroy(g_db);
    lt_config_destroy(g_cfg);
    lt_mime_global_shutdown();
    return lt_test_done("test_kafka_txn_errors");
}
