#include "lt_worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <json-c/json.h>
#include <librdkafka/rdkafka.h>

#include "lt_account_lock.h"
#include "lt_accounts.h"
#include "lt_buf.h"
#include "lt_command.h"
#include "lt_command_log.h"
#include "lt_db.h"
#include "lt_dispatch.h"
#include "lt_event.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_offsets.h"
#include "lt_change_event.h"
#include "lt_registry.h"
#include "lt_s3.h"
#include "lt_sync.h"
#include "lt_gmail_quota.h"
#include "lt_group_watch.h"
#include "lt_quota_day.h"
#include "lt_sync_gmail.h"
#include "lt_sync_imap.h"
#include "lt_trace.h"
#include "lt_worker_obs.h"

#define POLL_MS 200
#define TXN_TIMEOUT_MS 60000
#define GIVE_UP_MS 10000 /* unsubscribe before close: the revocation's bound */

typedef struct slot_s {
    lt_worker_t *w;
    int index;
    pthread_t thread;
    lt_db_t *db;
    lt_s3_t *s3;
    rd_kafka_t *producer;
    int txn_timeout_ms; /* the producer's transaction.timeout.ms */
    rd_kafka_t *marker_reader;
    lt_mail_codec_t *codec;
    lt_change_codec_t *change_codec;
    volatile int cancel;
    int32_t running_partition; /* -1 when idle */
} slot_t;

/* Gmail access tokens kept between commands: one per account (a token
 * costs ~40 bytes here plus its length); beyond that the soonest to expire
 * is forgotten and its account asks the token endpoint again. */
#define LT_WORKER_GMAIL_TOKENS 10000

struct lt_worker_s {
    const lt_config_t *cfg;
    const lt_settings_t *set; /* cfg's, read once at start */
    char worker_id[256];
    rd_kafka_t *consumer;
    rd_kafka_t *producer; /* DLQ and status: idempotent, not transactional */
    lt_kafka_health_t *kafka_health; /* every client's errors; outlives them */
    lt_registry_t *registry;
    int32_t schema_id;
    int32_t change_schema_id; /* -1: change tracking off */
    lt_dispatch_t *dispatch;
    pthread_mutex_t mu; /* offsets, slots' running_partition */
    lt_offsets_t *offsets;
    int nslots;
    slot_t *slots;
    volatile sig_atomic_t stop;
    volatile int stopping_slots;
    int drain_ms;
    /* Periodic offset commits wait while a cooperative rebalance that
     * revoked partitions completes its second round: librdkafka 2.0.2 treats
     * an OffsetCommit answered ILLEGAL_GENERATION as a lost assignment
     * (librdkafka#4059, fixed in 2.8). Poll thread only. */
    int64_t commit_hold_until;
    int assigns_to_wait;
    /* Flow control (poll thread only): fetching is paused while the queue
     * holds queue_max commands, resumed at half. */
    int queue_max;
    int paused;
    char spill_prefix[256]; /* this worker's spill files in LATTICE_TMP_DIR */
    lt_worker_obs_t *obs;      /* metrics, progress reports, readiness */
    lt_gmail_tokens_t *tokens; /* Gmail access tokens, shared by the slots */
    lt_gmail_pacer_t *pacer;   /* Gmail quotas (users, projects), shared by the slots */
    volatile int share_dirty;  /* the assignment changed: recompute the project share */
    /* The shutdown deadline (LATTICE_WORKER_SHUTDOWN_TIMEOUT_S from the
     * stop, monotonic clock): its thread, and what the stop waits for now. */
    pthread_t watchdog;
    int watchdog_started;
    atomic_int watchdog_done;
    _Atomic(const char *) waiting_for;
    /* Partitions no member owns (LATTICE_WORKER_GROUP_CHECK_S; NULL: off). */
    lt_group_watch_t *group_watch;
};

/* --- results ------------------------------------------------------------ */

typedef enum { R_DONE, R_RETRY, R_CANCELLED } run_result_t;

/* One status event: the command (or, when it could not be parsed, the
 * record's account key), its result and counts. */
typedef struct {
    const lt_command_t *cmd;
    const char *account_key; /* when cmd is NULL */
    const char *result;      /* "succeeded", "failed", "partial", "dead_lettered", ... */
    lt_err_t err;
    const char *error; /* may be NULL */
    int64_t messages;
    int64_t bytes;
    int64_t duration_ms;
    int attempt;
    const char *traceparent; /* may be NULL */
    const lt_sync_t *sync;   /* skipped, expunged, scopes; may be NULL */
} status_t;

static void status_event(lt_worker_t *w, const status_t *st)
{
    const lt_command_t *cmd = st->cmd;
    const char *account_key = st->account_key, *result = st->result, *error = st->error;
    const char *traceparent = st->traceparent;
    lt_err_t err = st->err;
    int64_t messages = st->messages, bytes = st->bytes, duration_ms = st->duration_ms;
    int attempt = st->attempt;
    const lt_sync_t *sync = st->sync;
    lt_worker_obs_command(w->obs, cmd, result, err, duration_ms);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "schema", json_object_new_string("lattice.mail.sync.status.v1"));
    if (cmd) {
        json_object_object_add(o, "command_id", json_object_new_string(lt_command_id(cmd)));
        json_object_object_add(o, "tenant_id", json_object_new_string(lt_command_tenant_id(cmd)));
        json_object_object_add(o, "account_id",
                               json_object_new_string(lt_command_account_id(cmd)));
        json_object_object_add(o, "provider",
                               json_object_new_string(lt_provider_name(lt_command_provider(cmd))));
        json_object_object_add(o, "kind",
                               json_object_new_string(lt_sync_kind_name(lt_command_kind(cmd))));
        if (lt_command_scope(cmd))
            json_object_object_add(o, "scope", json_object_new_string(lt_command_scope(cmd)));
    } else {
        json_object_object_add(o, "account_id", json_object_new_string(account_key));
    }
    json_object_object_add(o, "result", json_object_new_string(result));
    if (err)
        json_object_object_add(o, "error_class", json_object_new_string(lt_err_name(err)));
    if (error && *error)
        json_object_object_add(o, "error", json_object_new_string(error));
    json_object_object_add(o, "messages", json_object_new_int64(messages));
    json_object_object_add(o, "bytes", json_object_new_int64(bytes));
    if (sync && lt_sync_skipped(sync)) { /* not ingested (over the size cap, gone) */
        json_object_object_add(o, "skipped", json_object_new_int64(lt_sync_skipped(sync)));
        json_object_object_add(o, "skipped_ids",
                               json_object_new_string(lt_sync_skipped_ids(sync)));
    }
    if (sync && lt_sync_expunged(sync)) { /* listed, then gone before the fetch */
        json_object_object_add(o, "expunged", json_object_new_int64(lt_sync_expunged(sync)));
        json_object_object_add(o, "expunged_ids",
                               json_object_new_string(lt_sync_expunged_ids(sync)));
    }
    size_t nsc = 0;
    const lt_sync_scope_t *sc = sync ? lt_sync_scopes(sync, &nsc) : NULL;
    if (nsc) { /* each scope's own result (they fail independently) */
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < nsc; i++) {
            json_object *e = json_object_new_object();
            json_object_object_add(e, "scope", json_object_new_string(sc[i].scope));
            json_object_object_add(
                e, "result", json_object_new_string(lt_sync_scope_result_name(sc[i].result)));
            if (sc[i].err)
                json_object_object_add(e, "error_class",
                                       json_object_new_string(lt_err_name(sc[i].err)));
            if (sc[i].error)
                json_object_object_add(e, "error", json_object_new_string(sc[i].error));
            json_object_object_add(e, "messages", json_object_new_int64(sc[i].messages));
            json_object_array_add(arr, e);
            lt_worker_obs_scope(w->obs, cmd, lt_sync_scope_result_name(sc[i].result), sc[i].err);
        }
        json_object_object_add(o, "scopes", arr);
    }
    json_object_object_add(o, "duration_ms", json_object_new_int64(duration_ms));
    json_object_object_add(o, "attempt", json_object_new_int(attempt));
    json_object_object_add(o, "worker_id", json_object_new_string(w->worker_id));
    json_object_object_add(o, "finished_at_ms", json_object_new_int64((int64_t)time(NULL) * 1000));
    const char *v = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    rd_kafka_headers_t *h = lt_kafka_headers_with_traceparent(traceparent);
    const char *topic = w->set->topic.status;
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        w->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(account_key, strlen(account_key)),
        RD_KAFKA_V_VALUE((void *)v, strlen(v)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (kerr) {
        rd_kafka_headers_destroy(h);
        lt_log_ctx_t ctx = {cmd ? lt_command_tenant_id(cmd) : NULL,
                            cmd ? lt_command_account_id(cmd) : account_key,
                            cmd ? lt_command_scope(cmd) : NULL, cmd ? lt_command_id(cmd) : NULL,
                            NULL};
        lt_warn(&ctx, "status event not produced: %s", rd_kafka_err2str(kerr));
    }
    json_object_put(o);
}

/* Dead-letter: the command's bytes, unchanged, with the reason in headers.
 * Synchronous, so the offset is committed only after the DLQ has it. */
static lt_err_t dead_letter(lt_worker_t *w, const lt_job_t *job, lt_err_t why, const char *reason,
                            const lt_log_ctx_t *log)
{
    size_t len;
    const uint8_t *v = lt_job_value(job, &len);
    rd_kafka_headers_t *h = rd_kafka_headers_new(5);
    char num[32];
    rd_kafka_header_add(h, "lattice.dlq.reason", -1, reason, -1);
    rd_kafka_header_add(h, "lattice.dlq.error_class", -1, lt_err_name(why), -1);
    rd_kafka_header_add(h, "lattice.dlq.source_topic", -1, w->set->topic.commands, -1);
    snprintf(num, sizeof(num), "%d", (int)lt_job_partition(job));
    rd_kafka_header_add(h, "lattice.dlq.source_partition", -1, num, -1);
    snprintf(num, sizeof(num), "%lld", (long long)lt_job_offset(job));
    rd_kafka_header_add(h, "lattice.dlq.source_offset", -1, num, -1);
    const char *key = lt_job_account(job);
    lt_log_ctx_t ctx = *log; /* the command's, when it parsed */
    if (!ctx.account)
        ctx.account = key;
    char e[512];
    lt_err_t err = lt_kafka_produce_sync(w->producer,
                                         &(lt_kafka_msg_t){.topic = w->set->topic.dlq,
                                                           .partition = RD_KAFKA_PARTITION_UA,
                                                           .key = key,
                                                           .key_len = strlen(key),
                                                           .value = v,
                                                           .value_len = len,
                                                           .headers = h},
                                         TXN_TIMEOUT_MS, NULL, e, sizeof(e));
    if (err)
        lt_error(&ctx,
                 "dead-letter of %s[%d]@%lld failed (attempt %d): %s; the command is kept and "
                 "dead-lettered again after a backoff",
                 key, (int)lt_job_partition(job), (long long)lt_job_offset(job),
                 lt_job_attempt(job), e);
    else
        lt_warn(&ctx, "command %s[%d]@%lld dead-lettered: %s", key, (int)lt_job_partition(job),
                (long long)lt_job_offset(job), reason);
    if (!err)
        lt_worker_obs_dead_letter(w->obs);
    return err;
}

/* Dead-letter a command that parsed but must not run (its id is another
 * account's, its attempts are spent): the DLQ, then its status event.
 * Non-zero when the DLQ write failed (the caller retries the job). */
static lt_err_t dead_letter_command(lt_worker_t *w, const lt_job_t *job, const lt_command_t *cmd,
                                    const char *reason, const lt_log_ctx_t *log, int64_t t0,
                                    int attempt, const char *tp)
{
    lt_err_t err = dead_letter(w, job, LT_ERR_FINAL, reason, log);
    if (err)
        return err;
    status_event(w, &(status_t){.cmd = cmd,
                                .account_key = lt_job_account(job),
                                .result = "dead_lettered",
                                .err = LT_ERR_FINAL,
                                .error = reason,
                                .duration_ms = lt_now_ms() - t0,
                                .attempt = attempt,
                                .traceparent = tp && *tp ? tp : NULL});
    return LT_OK;
}

/* --- slots -------------------------------------------------------------- */

/* Every Kafka client of the worker. rd_kafka_new() failing is fatal for
 * the process, never retried in it: after a failure past its threads' start
 * (seen when a wall-clock step cut its CLOCK_REALTIME wait short) librdkafka
 * 2.0.2 may leave those threads running on freed memory (later clients got
 * a garbled client.software.name, the process a SIGSEGV). The process
 * ends at once with _exit(1), as a crash would: every batch is in an open
 * Kafka transaction (aborted, or fenced by the restarted worker's
 * init_transactions()) and no offset of a running command is committed, so
 * the restart redoes the commands from their watermarks and nothing is lost.
 * A created client whose init_transactions() fails (brokers unreachable) is
 * destroyed and returns NULL as before: retried. */
static rd_kafka_t *kafka_client(lt_worker_t *w, const char *what, rd_kafka_type_t type,
                                rd_kafka_conf_t *conf, void *opaque, lt_kafka_dr_fn on_delivery,
                                char *errstr, size_t n)
{
    lt_kafka_new_result_t how = LT_KAFKA_NEW_OK;
    rd_kafka_t *rk = lt_kafka_new_watched(type, conf, opaque, on_delivery, w->kafka_health, &how,
                                          errstr, n);
    if (!rk && how != LT_KAFKA_NEW_OK) {
        lt_error(NULL,
                 "%s: %s; exiting 1 (a Kafka client that cannot be created is not retried in "
                 "this process; its restart redoes the running commands)",
                 what, errstr);
        _exit(1);
    }
    return rk;
}

static void slot_close(slot_t *s)
{
    if (s->producer) {
        rd_kafka_flush(s->producer, 5000);
        lt_kafka_destroy(s->producer);
    }
    lt_kafka_destroy(s->marker_reader); /* closes it */
    lt_mail_codec_destroy(s->codec);
    lt_change_codec_destroy(s->change_codec);
    s->change_codec = NULL;
    lt_s3_destroy(s->s3);
    lt_db_destroy(s->db);
    s->producer = s->marker_reader = NULL;
    s->codec = NULL;
    s->s3 = NULL;
    s->db = NULL;
}

/* lt_s3's stall callback (any slot or upload thread). */
static void on_s3_stall(void *opaque, const char *what)
{
    lt_worker_t *w = opaque;
    lt_worker_obs_s3_stall(w->obs);
}

/* lt_s3's SlowDown callback (any slot or upload thread). */
static void on_s3_slowdown(void *opaque, const char *what, int slowed)
{
    lt_worker_t *w = opaque;
    lt_worker_obs_s3_slowdown(w->obs, what, slowed);
}

static lt_err_t slot_open(slot_t *s, char *errstr, size_t n)
{
    const lt_config_t *cfg = s->w->cfg;
    const lt_settings_t *set = s->w->set;
    /* An idle connection may have died unnoticed (server restart, admin
     * termination): check it, or the command spends an attempt on it. */
    if (s->db &&
        (!lt_db_ok(s->db) ||
         lt_db_exec(s->db,
                    &(lt_db_query_t){.what = "connection check", .sql = "SELECT 1", .nparams = 0},
                    NULL, NULL, 0))) {
        lt_db_destroy(s->db);
        s->db = NULL;
    }
    if (!s->db) {
        s->db = lt_db_connect(set->pg.dsn, set->pg.password, errstr, n);
        if (!s->db)
            return LT_ERR_TEMPORARY;
    }
    if (!s->s3) {
        s->s3 = lt_s3_new(&(lt_s3_config_t){.endpoint = set->s3.endpoint,
                                            .region = set->s3.region,
                                            .bucket = set->s3.bucket,
                                            .access_key_id = set->s3.access_key_id,
                                            .secret_access_key = set->s3.secret_access_key,
                                            .addressing = set->s3.path_style ? LT_S3_PATH_STYLE
                                                                             : LT_S3_VIRTUAL_HOSTED,
                                            .ca_file = set->s3.ca_file,
                                            .timeout_s = (long)set->s3.timeout_s,
                                            .low_speed_time_s = set->s3.low_speed_time_s,
                                            .low_speed_bytes = set->s3.low_speed_bytes,
                                            .on_stall = on_s3_stall,
                                            .stall_opaque = s->w,
                                            .on_slowdown = on_s3_slowdown,
                                            .slowdown_opaque = s->w},
                          errstr, n);
        if (!s->s3)
            return LT_ERR_FINAL;
    }
    if (!s->codec) {
        s->codec = lt_mail_codec_new(errstr, n);
        if (!s->codec)
            return LT_ERR_FINAL;
    }
    if (!s->change_codec && s->w->change_schema_id >= 0) {
        s->change_codec = lt_change_codec_new(errstr, n);
        if (!s->change_codec)
            return LT_ERR_FINAL;
    }
    if (!s->producer) {
        char txid[512];
        snprintf(txid, sizeof(txid), "%s-%s-%d", set->worker.transactional_id_prefix,
                 s->w->worker_id, s->index);
        rd_kafka_conf_t *conf = lt_kafka_producer_conf(cfg, txid, errstr, n);
        if (!conf)
            return LT_ERR_FINAL;
        /* flush, commit and abort wait as long as a transaction may live */
        char tmo[32];
        size_t tmo_len = sizeof(tmo);
        s->txn_timeout_ms = TXN_TIMEOUT_MS;
        if (rd_kafka_conf_get(conf, "transaction.timeout.ms", tmo, &tmo_len) ==
                RD_KAFKA_CONF_OK &&
            atoi(tmo) > 0)
            s->txn_timeout_ms = atoi(tmo);
        char what[64];
        snprintf(what, sizeof(what), "slot %d", s->index);
        s->producer =
            kafka_client(s->w, what, RD_KAFKA_PRODUCER, conf, s, lt_sync_dr_cb, errstr, n);
        if (!s->producer)
            return LT_ERR_TEMPORARY;
        /* metadata now, not on librdkafka's 1 s timer inside the first commit */
        char e[256];
        if (lt_kafka_warm_topic(s->producer, set->topic.raw, 10000, e, sizeof(e)) ||
            lt_kafka_warm_topic(s->producer, set->topic.checkpoints, 10000, e, sizeof(e)))
            lt_warn(NULL, "slot %d: %s", s->index, e);
    }
    if (!s->marker_reader) {
        /* assign()-only reader; the group id is never used to commit */
        char group[600];
        snprintf(group, sizeof(group), "lattice-marker-reader-%s-%d", s->w->worker_id, s->index);
        rd_kafka_conf_t *conf = lt_kafka_consumer_conf(cfg, group, errstr, n);
        if (!conf)
            return LT_ERR_FINAL;
        char e[256];
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof(e));
        char what[64];
        snprintf(what, sizeof(what), "slot %d", s->index);
        s->marker_reader = kafka_client(s->w, what, RD_KAFKA_CONSUMER, conf, s, NULL, errstr, n);
        if (!s->marker_reader)
            return LT_ERR_TEMPORARY;
    }
    return LT_OK;
}

/* The delay before retry number `failures` (1, 2, ...) of a temporary
 * failure: base * 2^(failures - 1), capped at LATTICE_WORKER_RETRY_MAX_MS,
 * with jitter (half of it random) so that the commands an outage failed
 * together do not come back together. */
static int64_t backoff_ms(const lt_worker_t *w, int failures)
{
    int64_t base = w->set->worker.retry_base_ms, cap = w->set->worker.retry_max_ms;
    int shift = failures < 1 ? 0 : failures - 1;
    int64_t ms = base << (shift < 20 ? shift : 20);
    if (ms > cap)
        ms = cap;
    if (ms < 2)
        return ms;
    return ms / 2 + rand() % (ms / 2 + 1);
}

/* One command's run, shared by the steps below. */
typedef struct {
    slot_t *slot;
    lt_worker_t *w;
    lt_job_t *job;
    lt_command_t *cmd;  /* owned */
    lt_account_t *acct; /* owned */
    lt_sync_t *sync;    /* owned */
    lt_log_ctx_t log;
    char tp[LT_TRACEPARENT_SIZE], trace_hex[LT_TRACE_ID_HEX_SIZE];
    char errstr[1024];
    lt_err_t err;
    int64_t t0;
    int attempt; /* this process's attempts and, once started, its predecessors' */
    int att;     /* the command row's attempt, once started */
    int locked, started;
} job_run_t;

/* What a step leaves to do: the next step, nothing (the outcome is
 * reported), the failure path (r->err set), or a retry later. */
typedef enum { STEP_NEXT, STEP_DONE, STEP_FAIL, STEP_RETRY } step_t;

/* 1. the command itself */
static step_t job_parse(job_run_t *r)
{
    size_t len;
    const uint8_t *value = lt_job_value(r->job, &len);
    const char *key = lt_job_account(r->job);
    r->err = lt_command_parse((const char *)value, len, &r->cmd, r->errstr, sizeof(r->errstr));
    if (!r->err)
        r->err = lt_command_check_key(r->cmd, key, strlen(key), r->errstr, sizeof(r->errstr));
    if (r->err) {
        if (dead_letter(r->w, r->job, LT_ERR_FINAL, r->errstr, &r->log))
            return STEP_RETRY;
        status_event(r->w, &(status_t){.cmd = r->cmd,
                                       .account_key = key,
                                       .result = "dead_lettered",
                                       .err = LT_ERR_FINAL,
                                       .error = r->errstr,
                                       .duration_ms = lt_now_ms() - r->t0,
                                       .attempt = r->attempt});
        return STEP_DONE;
    }
    lt_trace_t tr;
    int propagated = 0;
    if (!lt_trace_continue(lt_command_traceparent(r->cmd), &tr, &propagated, NULL, 0)) {
        lt_trace_format(&tr, r->tp);
        lt_trace_id_hex(&tr, r->trace_hex);
    }
    r->log.tenant = lt_command_tenant_id(r->cmd);
    r->log.account = lt_command_account_id(r->cmd);
    r->log.scope = lt_command_scope(r->cmd);
    r->log.command_id = lt_command_id(r->cmd);
    r->log.trace_id = r->trace_hex;
    return STEP_NEXT;
}

/* 3. already done? (a replay after a crash or a late offset commit) A
 * command id is one account's: the same id for another account is not
 * this command's outcome; it is dead-lettered. */
static step_t job_check_status(job_run_t *r)
{
    lt_worker_t *w = r->w;
    lt_command_t *cmd = r->cmd;
    lt_db_t *db = r->slot->db;
    lt_command_state_t prev_state = {.status = LT_COMMAND_NONE};
    r->err = lt_command_get_status(db, lt_command_id(cmd), lt_command_tenant_id(cmd),
                                   lt_command_account_id(cmd), &prev_state, r->errstr,
                                   sizeof(r->errstr));
    lt_command_status_t st = prev_state.status;
    int prev_attempts = prev_state.attempt;
    /* Runs in a row that never finished and made no durable progress: the
     * row's count, plus its last run when the row is still running it, that
     * run counted no message, and it is not this process's own (whose
     * failure Postgres may have missed). */
    int stalled = prev_state.stalled_runs +
                  (st == LT_COMMAND_RUNNING && prev_state.messages == 0 &&
                           prev_attempts != lt_job_row_attempt(r->job)
                       ? 1
                       : 0);
    if (r->err == LT_ERR_FINAL) {
        if (dead_letter_command(w, r->job, cmd, r->errstr, &r->log, r->t0, r->attempt, r->tp))
            return STEP_RETRY;
        r->err = LT_OK;
        return STEP_DONE;
    }
    if (r->err && r->err != LT_ERR_NOT_FOUND)
        return STEP_FAIL;
    if (st == LT_COMMAND_SUCCEEDED || st == LT_COMMAND_DEAD_LETTERED) {
        lt_info(&r->log, "command already %s; not run again", lt_command_status_name(st));
        lt_worker_obs_attempt(w->obs, cmd, "skipped", LT_OK, 0);
        r->err = LT_OK;
        return STEP_DONE;
    }
    /* Runs count across restarts: the row has them. A command whose last
     * max runs never finished and moved no watermark took its worker down
     * each time (killed, out of memory); it is not run again. */
    if (stalled >= w->set->worker.max_attempts) {
        char reason[1100];
        snprintf(reason, sizeof(reason),
                 "gave up after %d attempts (LATTICE_WORKER_MAX_ATTEMPTS): the last %d never "
                 "finished and made no progress (their worker stopped or crashed)",
                 prev_attempts, stalled);
        if (dead_letter_command(w, r->job, cmd, reason, &r->log, r->t0, prev_attempts, r->tp))
            return STEP_RETRY;
        lt_command_finish(db, lt_command_id(cmd),
                          &(lt_command_outcome_t){.status = LT_COMMAND_DEAD_LETTERED,
                                                  .error_class = "final",
                                                  .error = reason},
                          NULL, 0);
        r->err = LT_OK;
        return STEP_DONE;
    }
    return STEP_NEXT;
}

static lt_command_info_t command_info(const job_run_t *r)
{
    const lt_command_t *cmd = r->cmd;
    lt_command_info_t ci = {lt_command_id(cmd),
                            lt_command_tenant_id(cmd),
                            lt_command_account_id(cmd),
                            lt_provider_name(lt_command_provider(cmd)),
                            lt_sync_kind_name(lt_command_kind(cmd)),
                            lt_command_scope(cmd),
                            r->w->worker_id,
                            r->attempt,
                            lt_job_row_attempt(r->job)};
    return ci;
}

/* 4. the account */
static step_t job_check_account(job_run_t *r)
{
    lt_command_t *cmd = r->cmd;
    lt_db_t *db = r->slot->db;
    r->err = lt_account_load(db, lt_command_tenant_id(cmd), lt_command_account_id(cmd), &r->acct,
                             r->errstr, sizeof(r->errstr));
    if (!r->err &&
        strcmp(lt_account_provider(r->acct), lt_provider_name(lt_command_provider(cmd)))) {
        r->err =
            lt_seterr(r->errstr, sizeof(r->errstr), LT_ERR_FINAL,
                      "command provider %s does not match account provider %s",
                      lt_provider_name(lt_command_provider(cmd)), lt_account_provider(r->acct));
    }
    if (r->err == LT_ERR_NOT_FOUND || r->err == LT_ERR_FINAL || r->err == LT_ERR_INVALID) {
        char reason[1100];
        snprintf(reason, sizeof(reason), "%s%s",
                 r->err == LT_ERR_NOT_FOUND ? "unknown account: " : "", r->errstr);
        if (dead_letter(r->w, r->job, LT_ERR_FINAL, reason, &r->log))
            return STEP_RETRY;
        lt_command_info_t ci = command_info(r);
        int att = 0;
        lt_command_status_t prev;
        if (!lt_command_start(db, &ci, &att, &prev, NULL, 0))
            lt_command_finish(db, lt_command_id(cmd),
                              &(lt_command_outcome_t){.status = LT_COMMAND_DEAD_LETTERED,
                                                      .error_class = "final",
                                                      .error = reason},
                              NULL, 0);
        status_event(r->w, &(status_t){.cmd = cmd,
                                       .account_key = lt_job_account(r->job),
                                       .result = "dead_lettered",
                                       .err = LT_ERR_FINAL,
                                       .error = reason,
                                       .duration_ms = lt_now_ms() - r->t0,
                                       .attempt = r->attempt,
                                       .traceparent = r->tp});
        r->err = LT_OK;
        return STEP_DONE;
    }
    if (r->err)
        return STEP_FAIL;
    const char *status = lt_account_status(r->acct);
    if (strcmp(status, "active")) {
        const char *why = lt_account_status_reason(r->acct);
        r->err = lt_seterr(r->errstr, sizeof(r->errstr),
                           strcmp(status, "needs_reauth") ? LT_ERR_FINAL : LT_ERR_REAUTH,
                           "account is %s: %s", status, why ? why : "");
        return STEP_FAIL;
    }
    return STEP_NEXT;
}

/* Whether the command runs now: 2. resources, 3. its row, 4. its account. */
static step_t job_classify(job_run_t *r)
{
    r->err = slot_open(r->slot, r->errstr, sizeof(r->errstr));
    if (r->err)
        return STEP_FAIL;
    step_t st = job_check_status(r);
    if (st != STEP_NEXT)
        return st;
    return job_check_account(r);
}

/* 5. exclusive for the account, across processes */
static step_t job_start(job_run_t *r)
{
    lt_command_t *cmd = r->cmd;
    lt_db_t *db = r->slot->db;
    r->err = lt_account_lock_timeout(db, lt_command_tenant_id(cmd), lt_command_account_id(cmd),
                                     r->w->set->worker.lock_timeout_s * 1000, r->errstr,
                                     sizeof(r->errstr));
    if (r->err)
        return STEP_FAIL;
    r->locked = 1;
    lt_command_info_t ci = command_info(r);
    lt_command_status_t prev;
    r->err = lt_command_start(db, &ci, &r->att, &prev, r->errstr, sizeof(r->errstr));
    if (r->err == LT_ERR_FINAL) { /* the id became another account's meanwhile */
        if (dead_letter_command(r->w, r->job, cmd, r->errstr, &r->log, r->t0, r->attempt, r->tp))
            return STEP_RETRY;
        r->err = LT_OK;
        return STEP_DONE;
    }
    if (r->err)
        return STEP_FAIL;
    r->started = 1;
    /* the row's attempt is at least this process's count: both agree */
    if (r->att > r->attempt)
        r->attempt = r->att; /* this process's attempts and its predecessors' */
    lt_job_started(r->job, r->attempt);
    lt_info(&r->log, "command started (%s, attempt %d)", lt_sync_kind_name(lt_command_kind(cmd)),
            r->att);
    return STEP_NEXT;
}

/* --- Gmail: the daily threshold of a project ------------------------------ */

/* Add the command's units to its project's day (Postgres, all workers) and
 * report the day: gauge, alert share, warning. */
static void gmail_day_count(job_run_t *r, const lt_gmail_quota_t *q, const lt_gmail_stats_t *st)
{
    const lt_settings_t *set = r->w->set;
    int64_t day = -1;
    int alert = 0;
    char e[512];
    if (q->project[0] && set->gmail.project_units_per_day > 0 && r->slot->db &&
        lt_db_ok(r->slot->db)) {
        if (lt_quota_day_add(r->slot->db, q->project, st->units, &day, e, sizeof(e)))
            lt_warn(&r->log, "gmail: units of project %s not counted: %s", q->project, e);
        else {
            int64_t limit = set->gmail.project_units_per_day;
            alert = (double)day >= (double)limit * set->gmail.day_alert_percent / 100.0;
            if (alert)
                lt_warn(&r->log,
                        "gmail: project %s has used %lld units today (UTC), %.1f %% of its "
                        "daily threshold %lld (alert at %d %%)",
                        q->project, (long long)day, 100.0 * (double)day / (double)limit,
                        (long long)limit, set->gmail.day_alert_percent);
        }
    }
    lt_worker_obs_gmail_quota(r->w->obs, q->project, st->units, st->quota_errors_user,
                              st->quota_errors_project, st->rate_cuts, day, alert, 0);
}

/* With LATTICE_GMAIL_PROJECT_DAY_HARD_STOP, a project that used its daily
 * threshold runs no Gmail command until the next UTC day: the command ends
 * "quota_paused" (status event, command row), not retried; the scheduler's
 * next commands run again the next day. 1 when paused (reported). */
static int gmail_day_paused(job_run_t *r, const lt_gmail_quota_t *q)
{
    const lt_settings_t *set = r->w->set;
    if (!set->gmail.day_hard_stop || set->gmail.project_units_per_day <= 0 || !q->project[0] ||
        !r->slot->db || !lt_db_ok(r->slot->db))
        return 0;
    int64_t day = 0, left = 0;
    char e[512];
    if (lt_quota_day_get(r->slot->db, q->project, &day, &left, e, sizeof(e))) {
        lt_warn(&r->log, "gmail: units of project %s unknown (%s); running", q->project, e);
        return 0;
    }
    if (day < set->gmail.project_units_per_day)
        return 0;
    time_t resume = time(NULL) + (time_t)left;
    struct tm tm;
    char at[32];
    gmtime_r(&resume, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT00:00:00Z", &tm);
    snprintf(r->errstr, sizeof(r->errstr),
             "quota_paused: Gmail project %s has used %lld units today (UTC), its daily "
             "threshold is %lld (LATTICE_GMAIL_PROJECT_DAY_HARD_STOP); its commands resume at %s",
             q->project, (long long)day, (long long)set->gmail.project_units_per_day, at);
    lt_warn(&r->log, "%s", r->errstr);
    r->err = LT_ERR_TEMPORARY;
    lt_command_progress_t c = {0, 0, 0, 0};
    lt_command_finish(r->slot->db, lt_command_id(r->cmd),
                      &(lt_command_outcome_t){.status = LT_COMMAND_FAILED,
                                              .counts = &c,
                                              .error_class = "quota_paused",
                                              .error = r->errstr},
                      NULL, 0);
    lt_worker_obs_gmail_quota(r->w->obs, q->project, 0, 0, 0, 0, day, 1, 1);
    lt_worker_obs_attempt(r->w->obs, r->cmd, "quota_paused", r->err, lt_now_ms() - r->t0);
    status_event(r->w, &(status_t){.cmd = r->cmd,
                                   .account_key = lt_job_account(r->job),
                                   .result = "quota_paused",
                                   .err = r->err,
                                   .error = r->errstr,
                                   .duration_ms = lt_now_ms() - r->t0,
                                   .attempt = r->att,
                                   .traceparent = r->tp});
    r->err = LT_OK;
    return 1;
}

/* 6. recover, then run */
static step_t job_sync(job_run_t *r)
{
    slot_t *slot = r->slot;
    lt_worker_t *w = r->w;
    const lt_settings_t *set = w->set;
    const char *tp = r->tp[0] ? r->tp : NULL;
    lt_sync_env_t env = {
        .db = slot->db,
        .s3 = slot->s3,
        .producer = slot->producer,
        .marker_reader = slot->marker_reader,
        .codec = slot->codec,
        .schema_id = w->schema_id,
        .raw_topic = set->topic.raw,
        .change_codec = slot->change_codec,
        .change_schema_id = w->change_schema_id,
        .change_topic = set->topic.changes,
        .track_changes = set->worker.track_changes,
        .checkpoint_topic = set->topic.checkpoints,
        .tmp_dir = set->worker.tmp_dir,
        .spill_prefix = w->spill_prefix,
        .max_message_bytes = (uint64_t)set->worker.max_message_bytes,
        .event_max_bytes = (size_t)set->worker.event_max_bytes,
        .batch_messages = set->worker.batch_messages,
        .s3_parallel = set->worker.s3_parallel,
        .s3_parallel_max = set->worker.s3_parallel_max,
        .attachments = strcmp(set->worker.attachments, "objects") ? LT_SYNC_ATT_RANGES
                                                                  : LT_SYNC_ATT_OBJECTS,
        .txn_timeout_ms = slot->txn_timeout_ms,
        .cancel = &slot->cancel,
    };
    lt_worker_obs_sync_env(w->obs, slot->index, r->cmd, tp, r->att, &env);
    r->sync = lt_sync_new(&env, r->acct, r->cmd, tp, &r->log);
    r->err = lt_sync_recover(r->sync, r->errstr, sizeof(r->errstr));
    if (r->err)
        return STEP_FAIL;
    if (lt_command_provider(r->cmd) == LT_PROVIDER_IMAP) {
        lt_sync_imap_opts_t io = {set->tls_ca_file, 5, set->worker.retry_base_ms,
                                  set->worker.secrets_dir, set->worker.imap_flags_scan_interval_s};
        r->err = lt_sync_imap_run(r->sync, &io, r->errstr, sizeof(r->errstr));
    } else {
        lt_gmail_quota_t q;
        r->err = lt_gmail_quota_of(r->acct, set, set->worker.secrets_dir, &q, r->errstr,
                                   sizeof(r->errstr));
        if (r->err)
            return STEP_FAIL;
        if (gmail_day_paused(r, &q))
            return STEP_DONE;
        lt_gmail_stats_t st;
        memset(&st, 0, sizeof(st));
        char quser[600];
        snprintf(quser, sizeof(quser), "%s/%s", lt_command_tenant_id(r->cmd),
                 lt_command_account_id(r->cmd));
        lt_sync_gmail_opts_t go = {
            .api_url = set->gmail.api_url,
            .token_url = set->gmail.token_url,
            .ca_file = set->tls_ca_file,
            .max_inflight = set->gmail.max_inflight,
            .user_units_per_min = q.user_units_per_min,
            .project_units_per_min = q.project_units_per_min,
            .quota_project = q.project[0] ? q.project : NULL,
            .quota_user = quser,
            .pacer = w->pacer,
            .stats = &st,
            .timeout_s = set->gmail.timeout_s,
            .max_retries = set->gmail.max_retries,
            .retry_base_ms = set->gmail.retry_base_ms,
            .cancel = &slot->cancel,
            .tokens = w->tokens,
            .secrets_dir = set->worker.secrets_dir,
        };
        r->err = lt_sync_gmail_run(r->sync, &go, r->errstr, sizeof(r->errstr));
        gmail_day_count(r, &q, &st);
    }
    return r->err ? STEP_FAIL : STEP_NEXT;
}

/* The command's final row. A Postgres session cut just then (a restart,
 * pg_terminate_backend) must not leave it "running" for good while its
 * status event says it finished: a temporary failure is retried on a new
 * session, up to FINISH_RETRY_MS with a doubling backoff; what still fails
 * is logged (the status event stays the record). */
#define FINISH_RETRY_MS 30000
static void finish_row(job_run_t *r, const lt_command_outcome_t *outcome)
{
    lt_db_t *db = r->slot->db;
    char err[512] = "";
    int64_t deadline = lt_now_ms() + FINISH_RETRY_MS;
    long ms = 100;
    for (;;) {
        lt_err_t e = db ? lt_command_finish(db, lt_command_id(r->cmd), outcome, err, sizeof(err))
                        : LT_ERR_FINAL;
        if (!e)
            return;
        if (e != LT_ERR_TEMPORARY || lt_now_ms() + ms > deadline) {
            lt_warn(&r->log, "final status %s of the command not recorded: %s",
                    lt_command_status_name(outcome->status), db ? err : "no database session");
            return;
        }
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ms = ms < 4000 ? ms * 2 : 8000;
        if (!lt_db_ok(db) && lt_db_reset(db, err, sizeof(err)) == LT_OK)
            lt_info(&r->log, "postgres session reconnected to record the command's final status");
    }
}

static void job_succeeded(job_run_t *r)
{
    lt_sync_t *sync = r->sync;
    lt_command_progress_t done = {lt_sync_messages(sync), lt_sync_bytes(sync), 0, 0};
    finish_row(r, &(lt_command_outcome_t){.status = LT_COMMAND_SUCCEEDED, .counts = &done});
    lt_info(&r->log, "command succeeded: %lld messages, %lld bytes in %lld ms",
            (long long)lt_sync_messages(sync), (long long)lt_sync_bytes(sync),
            (long long)(lt_now_ms() - r->t0));
    status_event(r->w, &(status_t){.cmd = r->cmd,
                                   .account_key = lt_job_account(r->job),
                                   .result = "succeeded",
                                   .messages = lt_sync_messages(sync),
                                   .bytes = lt_sync_bytes(sync),
                                   .duration_ms = lt_now_ms() - r->t0,
                                   .attempt = r->att,
                                   .traceparent = r->tp,
                                   .sync = r->sync});
}

/* Retry later: the backoff grows with the failures since the last
 * durable progress (lt_job_failed() counted this one). */
static run_result_t job_retry_after(job_run_t *r, int64_t delay_ms)
{
    lt_job_retry_at(r->job, lt_now_ms() + delay_ms);
    lt_worker_obs_attempt(r->w->obs, r->cmd, "retried", r->err, lt_now_ms() - r->t0);
    return R_RETRY;
}

static run_result_t job_retry(job_run_t *r)
{
    lt_job_failed(r->job, 0, lt_now_ms());
    return job_retry_after(r, backoff_ms(r->w, lt_job_failures(r->job)));
}

/* The command row of a started command that failed: a temporary failure's
 * when the database still answers (the retry starts the row again), a
 * final one's in any case (finish_row: on a new session if need be). */
static void job_record_failure(job_run_t *r, const char *error_class, int final)
{
    lt_db_t *db = r->slot->db;
    if (!r->started || !db || (!final && !lt_db_ok(db)))
        return;
    lt_command_progress_t c = {r->sync ? lt_sync_messages(r->sync) : 0,
                               r->sync ? lt_sync_bytes(r->sync) : 0, 0, 0};
    lt_command_outcome_t o = {.status = LT_COMMAND_FAILED,
                              .counts = &c,
                              .error_class = error_class,
                              .error = r->errstr};
    if (final)
        finish_row(r, &o);
    else
        lt_command_finish(db, lt_command_id(r->cmd), &o, NULL, 0);
}

static run_result_t job_failed(job_run_t *r)
{
    slot_t *slot = r->slot;
    lt_worker_t *w = r->w;
    if (slot->cancel) {
        lt_warn(&r->log, "command abandoned (%s); it will be run again", r->errstr);
        if (r->started && slot->db && lt_db_ok(slot->db))
            lt_command_abandon(slot->db, lt_command_id(r->cmd), r->att, NULL, 0);
        lt_worker_obs_attempt(w->obs, r->cmd, "cancelled", r->err, lt_now_ms() - r->t0);
        return R_CANCELLED;
    }
    /* A temporary failure is retried while it lasts less than the retry
     * window (monotonic clock); an attempt that moved the watermark starts
     * the window again: the command is getting somewhere. */
    if (r->err == LT_ERR_TEMPORARY) {
        int64_t now = lt_now_ms(), window_ms = (int64_t)w->set->worker.retry_window_s * 1000;
        lt_job_failed(r->job, r->sync && lt_sync_messages(r->sync) > 0, now);
        int64_t failing_ms = now - lt_job_failing_since(r->job);
        if (failing_ms < window_ms) {
            int64_t delay = backoff_ms(w, lt_job_failures(r->job));
            lt_warn(&r->log,
                    "command failed temporarily (attempt %d): %s; retrying in %lld ms (failing "
                    "for %lld s of the %d s retry window)",
                    r->attempt, r->errstr, (long long)delay, (long long)(failing_ms / 1000),
                    w->set->worker.retry_window_s);
            job_record_failure(r, "temporary", 0);
            return job_retry_after(r, delay);
        }
        lt_error(&r->log,
                 "command failing temporarily for %lld s, beyond the %d s retry window "
                 "(LATTICE_WORKER_RETRY_WINDOW_S): giving up",
                 (long long)(failing_ms / 1000), w->set->worker.retry_window_s);
    }
    /* Some scopes synced, others did not: "partial" (the table has no such
     * status: failed there, with the summary as the error). */
    const char *result = r->sync && lt_sync_scopes_ok(r->sync) ? "partial" : "failed";
    lt_error(&r->log, "command %s (%s): %s", result, lt_err_name(r->err), r->errstr);
    job_record_failure(r, lt_err_name(r->err), 1);
    status_event(w, &(status_t){.cmd = r->cmd,
                                .account_key = lt_job_account(r->job),
                                .result = result,
                                .err = r->err,
                                .error = r->errstr,
                                .messages = r->sync ? lt_sync_messages(r->sync) : 0,
                                .bytes = r->sync ? lt_sync_bytes(r->sync) : 0,
                                .duration_ms = lt_now_ms() - r->t0,
                                .attempt = r->attempt,
                                .traceparent = r->tp,
                                .sync = r->sync});
    return R_DONE;
}

/* Report the outcome a step left. */
static run_result_t job_finish(job_run_t *r, step_t st)
{
    switch (st) {
    case STEP_NEXT: /* every step done */
        job_succeeded(r);
        return R_DONE;
    case STEP_DONE:
        return R_DONE;
    case STEP_FAIL:
        return job_failed(r);
    case STEP_RETRY:
        return job_retry(r);
    }
    return R_DONE;
}

static void job_release(job_run_t *r)
{
    slot_t *slot = r->slot;
    if (r->sync && lt_sync_producer_unusable(r->sync)) {
        /* Kept, it would refuse every later transaction of this slot. The
         * next slot_open() creates a new one with the same transactional.id:
         * its init_transactions() completes or aborts the open transaction,
         * and the pending row's recovery reads which. Destroyed before the
         * sync (which no longer calls it), so no delivery report can come
         * for the sync's counters after they are freed. */
        lt_warn(&r->log,
                "slot %d: its transactional producer can begin no new transaction; "
                "replacing it",
                slot->index);
        lt_kafka_destroy(slot->producer);
        slot->producer = NULL;
    }
    lt_sync_destroy(r->sync);
    if (r->locked && slot->db && lt_db_ok(slot->db))
        lt_account_unlock(slot->db, lt_command_tenant_id(r->cmd), lt_command_account_id(r->cmd),
                          NULL, 0);
    if (slot->db && !lt_db_ok(slot->db)) {
        lt_db_destroy(slot->db); /* a dead connection also dropped the lock */
        slot->db = NULL;
    }
    lt_account_destroy(r->acct);
    lt_command_destroy(r->cmd);
}

/* Classify, run and finish one command; every outcome is reported (status
 * event, DLQ, command row) before it returns. */
static run_result_t run_job(slot_t *slot, lt_job_t *job)
{
    job_run_t r = {
        .slot = slot,
        .w = slot->w,
        .job = job,
        .t0 = lt_now_ms(),
        .attempt = lt_job_attempt(job),
    };
    step_t st = job_parse(&r);
    if (st == STEP_NEXT)
        st = job_classify(&r);
    if (st == STEP_NEXT)
        st = job_start(&r);
    if (st == STEP_NEXT)
        st = job_sync(&r);
    run_result_t rr = job_finish(&r, st);
    job_release(&r);
    return rr;
}

static void *slot_main(void *arg)
{
    slot_t *s = arg;
    lt_worker_t *w = s->w;
    /* Open everything now: init_transactions() of this slot's transactional
     * id fences a crashed predecessor's open transaction at once, instead of
     * leaving it to block read_committed readers (and the recovery of its
     * batch) until transaction.timeout.ms, whichever slot runs the command. */
    char e[1024];
    if (slot_open(s, e, sizeof(e)))
        lt_warn(NULL, "slot %d: %s (retried with its first command)", s->index, e);
    while (!w->stopping_slots) {
        lt_job_t *job = lt_dispatch_pop(w->dispatch, 500);
        if (!job)
            continue;
        pthread_mutex_lock(&w->mu);
        s->running_partition = lt_job_partition(job);
        s->cancel = 0;
        pthread_mutex_unlock(&w->mu);

        lt_worker_obs_slot(w->obs, s->index, 1);
        run_result_t r = run_job(s, job);
        lt_worker_obs_slot(w->obs, s->index, 0);

        pthread_mutex_lock(&w->mu);
        s->running_partition = -1;
        if (r == R_DONE)
            lt_offsets_done(w->offsets, lt_job_partition(job), lt_job_offset(job));
        pthread_mutex_unlock(&w->mu);
        lt_dispatch_finish(w->dispatch, job, r == R_RETRY && !w->stop);
        /* a replaced producer is opened now, not by the next command: its
         * init_transactions() settles the transaction the old one left */
        if (!s->producer && !w->stop && slot_open(s, e, sizeof(e)))
            lt_warn(NULL, "slot %d: %s (retried with its next command)", s->index, e);
    }
    slot_close(s);
    return NULL;
}

/* --- offsets and rebalances ---------------------------------------------- */

/* Commit the committable offset of each partition in `parts` (all assigned
 * ones when NULL). */
static void commit_ready(lt_worker_t *w, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (!parts) {
        if (rd_kafka_assignment(w->consumer, &assigned))
            return;
        parts = assigned;
    }
    rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_new(parts->cnt);
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < parts->cnt; i++) {
        int64_t off = lt_offsets_to_commit(w->offsets, parts->elems[i].partition);
        if (off >= 0)
            rd_kafka_topic_partition_list_add(c, parts->elems[i].topic, parts->elems[i].partition)
                ->offset = off;
    }
    pthread_mutex_unlock(&w->mu);
    if (c->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_commit(w->consumer, c, 0);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            lt_warn(NULL, "offset commit: %s", rd_kafka_err2str(e));
        if (!e) {
            pthread_mutex_lock(&w->mu);
            for (int i = 0; i < c->cnt; i++)
                if (!c->elems[i].err)
                    lt_offsets_committed(w->offsets, c->elems[i].partition, c->elems[i].offset);
            pthread_mutex_unlock(&w->mu);
        }
    }
    rd_kafka_topic_partition_list_destroy(c);
    if (assigned)
        rd_kafka_topic_partition_list_destroy(assigned);
}

/* Let the commands of the given partitions finish (or abandon them after
 * the drain timeout), then forget them. */
static void drain_partitions(lt_worker_t *w, const rd_kafka_topic_partition_list_t *parts,
                             int can_commit)
{
    for (int i = 0; i < parts->cnt; i++)
        lt_dispatch_cancel_partition(w->dispatch, parts->elems[i].partition);
    int64_t deadline = lt_now_ms() + w->drain_ms;
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        int64_t left = deadline - lt_now_ms();
        if (lt_dispatch_wait_idle(w->dispatch, p, left > 0 ? (int)left : 0) > 0) {
            pthread_mutex_lock(&w->mu);
            for (int k = 0; k < w->nslots; k++)
                if (w->slots[k].running_partition == p)
                    w->slots[k].cancel = 1;
            pthread_mutex_unlock(&w->mu);
            lt_dispatch_wait_idle(w->dispatch, p, TXN_TIMEOUT_MS);
        }
    }
    if (can_commit)
        commit_ready(w, parts);
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < parts->cnt; i++)
        lt_offsets_drop(w->offsets, parts->elems[i].partition);
    pthread_mutex_unlock(&w->mu);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    lt_worker_t *w = lt_kafka_user_opaque(rk);
    rd_kafka_error_t *e = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        lt_info(NULL, "assigned %d partition(s)", parts->cnt);
        e = rd_kafka_incremental_assign(rk, parts);
        if (!e && w->paused) /* the queue is still full: these wait too */
            rd_kafka_pause_partitions(rk, parts);
        if (w->assigns_to_wait > 0 && --w->assigns_to_wait == 0)
            w->commit_hold_until = 0;
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        int lost = rd_kafka_assignment_lost(rk);
        lt_info(NULL, "%s %d partition(s): draining their commands", lost ? "lost" : "revoked",
                parts->cnt);
        drain_partitions(w, parts, !lost);
        w->assigns_to_wait = 2; /* this round's assign, then the next round's */
        w->commit_hold_until = lt_now_ms() + 15000;
        e = rd_kafka_incremental_unassign(rk, parts);
    } else {
        lt_error(NULL, "rebalance error: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
    if (e) {
        lt_error(NULL, "incremental rebalance: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    w->share_dirty = 1;
    lt_worker_obs_rebalance(w->obs, rk, err);
}

/* This worker's share of every Gmail project's per-minute limit: its share of
 * the command topic's partitions. Commands are keyed by account, so a
 * worker's part of the pool's accounts is its part of the partitions; the
 * workers of a pool together stay under a project's limit without talking
 * to each other (docs/gmail.md, "The project limit in a pool"). Poll thread. */
static void update_share(lt_worker_t *w)
{
    w->share_dirty = 0;
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (rd_kafka_assignment(w->consumer, &assigned))
        return;
    int mine = assigned->cnt;
    rd_kafka_topic_partition_list_destroy(assigned);
    rd_kafka_topic_t *t = rd_kafka_topic_new(w->consumer, w->set->topic.commands, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int total = 0;
    if (t && !rd_kafka_metadata(w->consumer, 0, t, &md, 5000) && md->topic_cnt == 1)
        total = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    if (t)
        rd_kafka_topic_destroy(t);
    if (total <= 0) {
        w->share_dirty = 1; /* try again at the next poll */
        return;
    }
    double share = mine > 0 ? (double)mine / total : 1.0 / total;
    if (share != lt_gmail_pacer_share(w->pacer))
        lt_info(NULL, "gmail: this worker paces each project to %d/%d of its limit",
                mine > 0 ? mine : 1, total);
    lt_gmail_pacer_set_share(w->pacer, share);
    lt_worker_obs_gmail_share(w->obs, share);
}

/* Pause fetching while the queue is full, resume when half of it has been
 * taken. The poll loop goes on meanwhile (rebalances, max.poll.interval.ms),
 * and a paused partition resumes from the next command not yet taken. */
static void flow_control(lt_worker_t *w)
{
    int queued = lt_dispatch_queued(w->dispatch);
    int pause;
    if (!w->paused && queued >= w->queue_max)
        pause = 1;
    else if (w->paused && queued <= w->queue_max / 2)
        pause = 0;
    else
        return;
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (rd_kafka_assignment(w->consumer, &assigned))
        return;
    rd_kafka_resp_err_t e = pause ? rd_kafka_pause_partitions(w->consumer, assigned)
                                  : rd_kafka_resume_partitions(w->consumer, assigned);
    rd_kafka_topic_partition_list_destroy(assigned);
    if (e) {
        lt_warn(NULL, "%s partitions: %s", pause ? "pause" : "resume", rd_kafka_err2str(e));
        return;
    }
    w->paused = pause;
    lt_worker_obs_paused(w->obs, pause);
    if (pause)
        lt_info(NULL,
                "paused fetching commands: %d queued (LATTICE_WORKER_QUEUE_MAX %d); resuming at "
                "%d",
                queued, w->queue_max, w->queue_max / 2);
    else
        lt_info(NULL, "resumed fetching commands: %d queued", queued);
}

/* --- lifecycle ----------------------------------------------------------- */

lt_worker_t *lt_worker_new(const lt_config_t *cfg, char *errstr, size_t errstr_size)
{
    lt_worker_t *w = lt_xcalloc(1, sizeof(*w));
    w->cfg = cfg;
    w->set = lt_config_settings(cfg);
    const lt_settings_t *set = w->set;
    pthread_mutex_init(&w->mu, NULL);
    w->offsets = lt_offsets_new();
    w->dispatch = lt_dispatch_new();
    w->tokens = lt_gmail_tokens_new(LT_WORKER_GMAIL_TOKENS);
    w->pacer = lt_gmail_pacer_new();
    if (set->gmail.quota_units_per_s > 0)
        lt_warn(NULL,
                "LATTICE_GMAIL_QUOTA_UNITS_PER_S is deprecated (Google's limits are per minute): "
                "using %d units per user per minute; set LATTICE_GMAIL_USER_UNITS_PER_MIN instead",
                set->gmail.quota_units_per_s * 60);
    w->drain_ms = set->worker.drain_timeout_s * 1000;
    if (set->worker.shutdown_timeout_s <= set->worker.drain_timeout_s)
        lt_warn(NULL,
                "LATTICE_WORKER_SHUTDOWN_TIMEOUT_S (%d) is not above LATTICE_WORKER_DRAIN_TIMEOUT_S "
                "(%d): a stop ends the process before running commands can finish their drain",
                set->worker.shutdown_timeout_s, set->worker.drain_timeout_s);
    w->queue_max = set->worker.queue_max;
    const char *id = set->worker.id;
    if (id)
        snprintf(w->worker_id, sizeof(w->worker_id), "%s", id);
    else if (gethostname(w->worker_id, sizeof(w->worker_id) - 1))
        snprintf(w->worker_id, sizeof(w->worker_id), "worker");

    /* spill files of a predecessor killed mid-message (kill -9, OOM) */
    lt_sync_spill_prefix(w->worker_id, w->spill_prefix, sizeof(w->spill_prefix));
    int spilled = lt_sync_spill_cleanup(set->worker.tmp_dir, w->spill_prefix, errstr, errstr_size);
    if (spilled < 0)
        lt_warn(NULL, "%s", errstr);
    else if (spilled > 0)
        lt_info(NULL, "removed %d spill file(s) %s* left in %s", spilled, w->spill_prefix,
                set->worker.tmp_dir);
    struct statvfs tv;
    if (!statvfs(set->worker.tmp_dir, &tv) &&
        (uint64_t)tv.f_blocks * tv.f_frsize < (uint64_t)set->worker.max_message_bytes)
        lt_warn(NULL,
                "LATTICE_TMP_DIR %s holds %llu bytes in all, less than LATTICE_MAX_MESSAGE_BYTES "
                "(%llu): a larger message is skipped and reported (docs/operations.md)",
                set->worker.tmp_dir, (unsigned long long)tv.f_blocks * tv.f_frsize,
                (unsigned long long)set->worker.max_message_bytes);

    if (!set->s3.access_key_id || !set->s3.secret_access_key) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "LATTICE_S3_ACCESS_KEY_ID and LATTICE_S3_SECRET_ACCESS_KEY (or their _FILE "
                  "variants) are required");
        goto fail;
    }
    w->registry = lt_registry_new(set->registry.url, set->registry.username, set->registry.password,
                                  set->tls_ca_file, errstr, errstr_size);
    if (!w->registry)
        goto fail;
    char subject[300];
    snprintf(subject, sizeof(subject), "%s-value", set->topic.raw);
    if (lt_registry_register(w->registry, subject, lt_mail_event_schema_json(), &w->schema_id,
                             errstr, errstr_size))
        goto fail;
    w->change_schema_id = -1;
    if (set->worker.track_changes) {
        snprintf(subject, sizeof(subject), "%s-value", set->topic.changes);
        if (lt_registry_register(w->registry, subject, lt_change_event_schema_json(),
                                 &w->change_schema_id, errstr, errstr_size))
            goto fail;
    }

    w->kafka_health = lt_kafka_health_new();
    rd_kafka_conf_t *pconf = lt_kafka_producer_conf(cfg, NULL, errstr, errstr_size);
    if (!pconf)
        goto fail;
    w->producer =
        kafka_client(w, "cannot start", RD_KAFKA_PRODUCER, pconf, NULL, NULL, errstr, errstr_size);
    if (!w->producer)
        goto fail;
    /* every topic the worker produces to must exist (auto-create is off):
     * a missing one fails now, not at the first command that needs it (a
     * missing DLQ would hold its command, retried, forever) */
    const struct {
        const char *setting, *topic;
    } need[] = {{"LATTICE_TOPIC_RAW", set->topic.raw},
                {"LATTICE_TOPIC_CHECKPOINTS", set->topic.checkpoints},
                {"LATTICE_TOPIC_STATUS", set->topic.status},
                {"LATTICE_TOPIC_DLQ", set->topic.dlq},
                {"LATTICE_TOPIC_CHANGES", set->worker.track_changes ? set->topic.changes : NULL}};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (!need[i].topic)
            continue;
        char e[512];
        lt_err_t terr = lt_kafka_warm_topic(w->producer, need[i].topic, 10000, e, sizeof(e));
        if (terr == LT_ERR_NOT_FOUND) {
            lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                      "%s: %s (topics are not auto-created: create it first)", need[i].setting, e);
            goto fail;
        }
        if (terr)
            lt_warn(NULL, "%s: %s", need[i].setting, e);
    }
    rd_kafka_conf_t *conf = lt_kafka_consumer_conf(cfg, set->worker.group_id, errstr, errstr_size);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    w->consumer =
        kafka_client(w, "cannot start", RD_KAFKA_CONSUMER, conf, w, NULL, errstr, errstr_size);
    if (!w->consumer)
        goto fail;

    w->nslots = set->worker.concurrency;
    w->slots = lt_xcalloc((size_t)w->nslots, sizeof(slot_t));
    for (int i = 0; i < w->nslots; i++) {
        w->slots[i].w = w;
        w->slots[i].index = i;
        w->slots[i].running_partition = -1;
    }
    w->obs = lt_worker_obs_new(NULL, cfg, w->worker_id, w->producer, w->dispatch, w->nslots);
    lt_worker_obs_kafka_health(w->obs, w->kafka_health);
    return w;
fail:
    lt_worker_destroy(w);
    return NULL;
}

/* The shutdown deadline. librdkafka's own timed waits are absolute
 * CLOCK_REALTIME deadlines: a wall-clock step makes one of them last an
 * hour longer, and a stop waiting on it (a flush, a close, a commit) would
 * outlast the pod's grace period. This thread counts on CLOCK_MONOTONIC
 * from the moment the stop is seen; at LATTICE_WORKER_SHUTDOWN_TIMEOUT_S it
 * logs what the stop was waiting for and ends the process with _exit(1)
 * (no cleanup: the cleanup is what hangs). Nothing is lost: a command not
 * finished has its batch in an open Kafka transaction (never seen by
 * read_committed readers; aborted by the broker, or fenced at once by the
 * restarted worker's init_transactions() with the same transactional.id)
 * and its offset uncommitted, so the partition's next owner runs it again
 * from its watermark. */
static void *shutdown_watchdog(void *arg)
{
    lt_worker_t *w = arg;
    struct timespec now, deadline = {0, 0};
    int armed = 0;
    while (!atomic_load(&w->watchdog_done)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!armed && w->stop) {
            armed = 1;
            deadline = now;
            deadline.tv_sec += w->set->worker.shutdown_timeout_s;
        }
        if (armed && (now.tv_sec > deadline.tv_sec ||
                      (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))) {
            const char *what = atomic_load(&w->waiting_for);
            lt_error(NULL,
                     "stopping: not done within LATTICE_WORKER_SHUTDOWN_TIMEOUT_S (%d s), still "
                     "waiting for %s (%d command(s) running); exiting 1 (their uncommitted "
                     "batches are aborted and the commands redone by the next owner)",
                     w->set->worker.shutdown_timeout_s, what ? what : "the poll loop to stop",
                     lt_dispatch_running(w->dispatch, -1));
            _exit(1);
        }
        struct timespec nap = {0, 100 * 1000000L};
        clock_nanosleep(CLOCK_MONOTONIC, 0, &nap, NULL);
    }
    return NULL;
}

/* Leave the group before closing the consumer. librdkafka before 2.4 can
 * wait for good in rd_kafka_consumer_close() when a cooperative assignment
 * arrives while it closes (librdkafka #4527: the close waits for an assign
 * call that never comes; a rebalance started by another member's departure
 * or eviction is enough). Unsubscribing first and serving the revocation it
 * brings here, on the poll thread, until nothing is assigned leaves the
 * close no rebalance to wait for. A static member (group.instance.id) leaves
 * too: its partitions go to the others now instead of after
 * session.timeout.ms, and none stays unowned when the restarted member comes
 * back with an older assignment; a crashed one keeps the static id's
 * rebalance-free return. */
static void give_up_partitions(lt_worker_t *w, int max_ms, const char *doing)
{
    rd_kafka_resp_err_t kerr = rd_kafka_unsubscribe(w->consumer);
    if (kerr) {
        lt_warn(NULL, "%s: unsubscribe: %s", doing, rd_kafka_err2str(kerr));
        return;
    }
    int64_t deadline = lt_now_ms() + max_ms;
    for (;;) {
        rd_kafka_topic_partition_list_t *a = NULL;
        int left = -1;
        if (!rd_kafka_assignment(w->consumer, &a)) {
            left = a->cnt;
            rd_kafka_topic_partition_list_destroy(a);
        }
        if (left == 0)
            return;
        if (lt_now_ms() >= deadline) {
            lt_warn(NULL, "%s: %d partition(s) still assigned %d ms after unsubscribing", doing,
                    left, max_ms);
            return;
        }
        /* serves the revocation (rebalance_cb); a message that still
         * arrives is not run: its offset stays uncommitted */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 100);
        if (m)
            rd_kafka_message_destroy(m);
    }
}

void lt_worker_stop(lt_worker_t *w)
{
    w->stop = 1;
}

void lt_worker_set_metrics(lt_worker_t *w, lt_metrics_t *metrics)
{
    lt_worker_obs_destroy(w->obs);
    w->obs = lt_worker_obs_new(metrics, w->cfg, w->worker_id, w->producer, w->dispatch, w->nslots);
    lt_worker_obs_kafka_health(w->obs, w->kafka_health);
}

int lt_worker_ready(lt_worker_t *w, char *why, size_t why_size)
{
    if (w->stop) {
        snprintf(why, why_size, "stopping");
        return 0;
    }
    return lt_worker_obs_ready(w->obs, why, why_size);
}

/* How long partitions stay unowned in a stable group before the worker
 * rejoins for them: longer than a cooperative rebalance leaves them so
 * (their previous owner's drain), and than one check period. */
static int group_grace_ms(const lt_worker_t *w)
{
    int check_ms = w->set->worker.group_check_s * 1000;
    return w->drain_ms + (check_ms > 10000 ? check_ms : 10000);
}

static rd_kafka_resp_err_t subscribe(lt_worker_t *w)
{
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, w->set->topic.commands, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(w->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    return kerr;
}

/* Partitions of the command topic have had no owner in a stable group for
 * longer than a rebalance's drain (lt_group_watch.h: a static member that
 * ended between the two rounds of a cooperative rebalance and came back
 * with its cached assignment). Leave the group and join it again: the
 * rebalance this starts assigns every partition. This worker's own
 * partitions are revoked like in any rebalance (their commands drain, their
 * finished offsets are committed), and the cooperative-sticky assignor
 * gives the others' back to them. Poll thread. */
static void rejoin_group(lt_worker_t *w, int n, const char *which)
{
    lt_warn(NULL,
            "consumer group %s: %d partition(s) of %s (%s) owned by no member of the stable "
            "group for over %d s (a static member that ended during a rebalance keeps the "
            "others without a new one); rejoining the group to have them assigned",
            w->set->worker.group_id, n, w->set->topic.commands, which, group_grace_ms(w) / 1000);
    lt_worker_obs_group_rejoin(w->obs);
    give_up_partitions(w, GIVE_UP_MS, "rejoining");
    rd_kafka_resp_err_t kerr = subscribe(w);
    if (kerr) {
        /* without a subscription the worker consumes nothing: stop, and
         * let the restart join anew */
        lt_error(NULL, "rejoining: subscribe %s: %s; stopping", w->set->topic.commands,
                 rd_kafka_err2str(kerr));
        w->stop = 1;
    }
}

lt_err_t lt_worker_run(lt_worker_t *w, char *errstr, size_t errstr_size)
{
    const char *topic = w->set->topic.commands;
    rd_kafka_resp_err_t kerr = subscribe(w);
    if (kerr)
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "subscribe %s: %s", topic,
                         rd_kafka_err2str(kerr));
    if (w->set->worker.group_check_s > 0 && !w->group_watch) {
        lt_group_watch_opts_t go = {.check_ms = w->set->worker.group_check_s * 1000,
                                    .grace_ms = group_grace_ms(w)};
        char gerr[256];
        w->group_watch = lt_group_watch_new(&go);
        if (!w->group_watch ||
            lt_group_watch_start(w->group_watch, w->consumer, w->set->worker.group_id, topic, gerr,
                                 sizeof(gerr)) != LT_OK) {
            lt_warn(NULL, "group watch off: %s", w->group_watch ? gerr : "out of memory");
            lt_group_watch_destroy(w->group_watch);
            w->group_watch = NULL;
        }
    }
    if (!w->watchdog_started && !pthread_create(&w->watchdog, NULL, shutdown_watchdog, w))
        w->watchdog_started = 1;
    for (int i = 0; i < w->nslots; i++)
        pthread_create(&w->slots[i].thread, NULL, slot_main, &w->slots[i]);
    lt_info(NULL, "worker %s consuming %s with %d slot(s), schema id %d", w->worker_id, topic,
            w->nslots, (int)w->schema_id);

    int64_t last_commit = 0;
    char fatal[512] = "";
    while (!w->stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, POLL_MS);
        if (m) {
            if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                /* The consumer is unusable for good (e.g. a static member
                 * fenced: FENCED_INSTANCE_ID): polling it on would consume
                 * nothing ever again. Stop as on SIGTERM (drain what runs;
                 * not ready meanwhile) and exit with the reason: a
                 * restarted worker joins the group again. */
                rd_kafka_fatal_error(w->consumer, fatal, sizeof(fatal));
                if (!fatal[0])
                    snprintf(fatal, sizeof(fatal), "%s", rd_kafka_message_errstr(m));
                lt_error(NULL, "consumer: fatal error: %s; stopping (the consumer cannot be used "
                         "again: the worker exits and its restart joins the group anew)", fatal);
                w->stop = 1;
            } else if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    lt_warn(NULL, "consumer: %s", rd_kafka_message_errstr(m));
            } else {
                char key[256] = "";
                if (m->key && m->key_len < sizeof(key)) {
                    memcpy(key, m->key, m->key_len);
                    key[m->key_len] = 0;
                }
                pthread_mutex_lock(&w->mu);
                lt_offsets_start(w->offsets, m->partition, m->offset);
                pthread_mutex_unlock(&w->mu);
                lt_dispatch_push(w->dispatch, lt_job_new(m->partition, m->offset, key, m->payload,
                                                         m->payload ? m->len : 0));
            }
            rd_kafka_message_destroy(m);
        }
        rd_kafka_poll(w->producer, 0);
        if (w->share_dirty)
            update_share(w);
        /* while the brokers are down: are they back? (a short wait, every 2 s) */
        lt_kafka_health_probe(w->kafka_health, w->producer, 2000, 500);
        flow_control(w);
        if (w->group_watch) {
            char which[256];
            int unowned = 0;
            int n = lt_group_watch_take(w->group_watch, which, sizeof(which), &unowned);
            lt_worker_obs_group_unowned(w->obs, unowned);
            if (n > 0 && !w->stop)
                rejoin_group(w, n, which);
        }
        if (lt_now_ms() - last_commit > 1000 && lt_now_ms() >= w->commit_hold_until) {
            commit_ready(w, NULL);
            last_commit = lt_now_ms();
        }
    }

    /* the watch describes the group on the consumer: it ends first */
    lt_group_watch_destroy(w->group_watch);
    w->group_watch = NULL;

    /* Drain: finish or abandon what runs, commit what finished. */
    lt_info(NULL, "stopping: draining %d command(s) for up to %d ms",
            lt_dispatch_running(w->dispatch, -1), w->drain_ms);
    atomic_store(&w->waiting_for, "the running commands to finish (the drain)");
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (!rd_kafka_assignment(w->consumer, &assigned)) {
        drain_partitions(w, assigned, 1);
        rd_kafka_topic_partition_list_destroy(assigned);
    }
    atomic_store(&w->waiting_for, "the slots to end (their commands and producers)");
    w->stopping_slots = 1;
    lt_dispatch_close(w->dispatch);
    for (int i = 0; i < w->nslots; i++)
        pthread_join(w->slots[i].thread, NULL);
    w->nslots = 0;
    if (!fatal[0]) {
        atomic_store(&w->waiting_for, "the consumer to give its partitions up (unsubscribe)");
        give_up_partitions(w, GIVE_UP_MS, "stopping");
    }
    atomic_store(&w->waiting_for, "the consumer to leave its group");
    rd_kafka_consumer_close(w->consumer);
    atomic_store(&w->waiting_for, "the producer's flush");
    rd_kafka_flush(w->producer, 10000);
    atomic_store(&w->waiting_for, "the Kafka clients to close");
    lt_info(NULL, "stopped");
    if (fatal[0])
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "kafka consumer: fatal error: %s",
                         fatal);
    return LT_OK;
}

void lt_worker_destroy(lt_worker_t *w)
{
    if (!w)
        return;
    if (w->nslots) { /* never ran */
        for (int i = 0; i < w->nslots; i++)
            slot_close(&w->slots[i]);
    }
    free(w->slots);
    lt_group_watch_destroy(w->group_watch); /* uses the consumer */
    lt_kafka_destroy(w->consumer);
    if (w->producer)
        rd_kafka_flush(w->producer, 5000);
    lt_kafka_destroy(w->producer);
    lt_kafka_health_destroy(w->kafka_health); /* after every client */
    if (w->watchdog_started) {
        atomic_store(&w->watchdog_done, 1);
        pthread_join(w->watchdog, NULL);
    }
    lt_registry_destroy(w->registry);
    lt_worker_obs_destroy(w->obs);
    lt_dispatch_destroy(w->dispatch);
    lt_offsets_destroy(w->offsets);
    lt_gmail_tokens_destroy(w->tokens);
    lt_gmail_pacer_destroy(w->pacer);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
