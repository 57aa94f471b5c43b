#include "lt_sched.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <openssl/rand.h>

#include "lt_accounts.h"
#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_command.h"
#include "lt_db.h"
#include "lt_issued.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_provider.h"
#include "lt_sched_plan.h"
#include "lt_trace.h"

#define BATCH_MAX 1000                    /* commands recorded in one statement */
#define IN_FLIGHT_MAX (16u * 1024 * 1024) /* accounts in the in-flight set */
#define FAILED_MAX (16u * 1024 * 1024)    /* failed deliveries remembered per run */
#define WARM_TIMEOUT_MS 10000
#define ID_BYTES 16   /* random bytes of a command id */
#define RAND_POOL 256 /* command ids drawn from one RAND_bytes call */

/* One command of the current batch. */
typedef struct {
    char id[LT_SCHED_COMMAND_ID_SIZE];
    char *tenant, *account, *provider, *scope; /* owned */
    char *json;                                /* owned */
    size_t json_len;
    char traceparent[LT_TRACEPARENT_SIZE]; /* also in the JSON */
} pending_t;

/* Commands waiting to be recorded and produced. */
typedef struct {
    pending_t items[BATCH_MAX];
    size_t n;
} batch_t;

/* Travels with a produced message to its delivery report. */
typedef struct {
    char id[LT_SCHED_COMMAND_ID_SIZE];
    char provider[16]; /* metrics label */
} dr_rec_t;

struct lt_sched_s {
    lt_sched_opts_t opts;
    lt_db_t *rdb; /* streams mail_accounts */
    lt_db_t *wdb; /* lock, in-flight list, issued rows */
    rd_kafka_t *rk;
    volatile sig_atomic_t stop;

    /* per run */
    lt_sched_stats_t *stats;
    lt_sched_set_t *in_flight;
    lt_trace_t trace;
    /* Double buffering: while the server records batch `inflight`, the
     * accounts stream into batch `cur`. */
    batch_t batches[2];
    int cur, inflight; /* inflight: -1 = none */
    lt_issued_t rows[BATCH_MAX];
    lt_buf_t *json; /* scratch for one command */
    /* Random bytes for the command ids, drawn RAND_POOL ids at a time (one
     * RAND_bytes call per id cost more than writing the command). */
    unsigned char rand_pool[ID_BYTES * RAND_POOL];
    size_t rand_used;
    char **failed; /* ids whose delivery failed (owned) */
    size_t nfailed, failed_cap;
    uint64_t delivered;
    lt_err_t fatal; /* stops the run */
    char fatal_err[1024];

    /* metrics (opts.metrics; NULL handles without a registry: no-ops) */
    lt_metric_t *m_seen, *m_sent, *m_in_flight, *m_inactive, *m_failed, *m_runs;
    lt_series_t *m_duration, *m_last_success;
};

/* Add n to the provider's series of a per-provider counter. */
static void count(lt_metric_t *m, const char *provider, double n)
{
    lt_series_add(lt_metric_get(m, provider ? provider : "unknown"), n);
}

static void metrics_init(lt_sched_t *s, lt_metrics_t *reg)
{
    s->m_seen = lt_metrics_counter(reg, "lattice_scheduler_accounts_seen_total",
                                   "Enabled accounts listed by the runs.", "provider");
    s->m_sent = lt_metrics_counter(reg, "lattice_scheduler_commands_sent_total",
                                   "Commands delivered to the commands topic (dry run: printed).",
                                   "provider");
    s->m_in_flight =
        lt_metrics_counter(reg, "lattice_scheduler_skipped_in_flight_total",
                           "Accounts skipped: their previous command is in flight.", "provider");
    s->m_inactive = lt_metrics_counter(reg, "lattice_scheduler_skipped_inactive_total",
                                       "Accounts skipped: their status is not active.", "provider");
    s->m_failed = lt_metrics_counter(
        reg, "lattice_scheduler_delivery_failures_total",
        "Commands not produced or not delivered (forgotten again: the next run retries them).",
        "provider");
    const char *name;
    for (int p = 0; (name = lt_provider_name((lt_provider_t)p)); p++) {
        lt_metric_t *ms[] = {s->m_seen, s->m_sent, s->m_in_flight, s->m_inactive, s->m_failed};
        for (size_t k = 0; k < sizeof(ms) / sizeof(ms[0]); k++)
            count(ms[k], name, 0); /* exported at 0 from the start */
    }
    s->m_runs = lt_metrics_counter(reg, "lattice_scheduler_runs_total",
                                   "Runs by result: succeeded, failed (the run or a command), "
                                   "interrupted (SIGTERM), locked_out (another scheduler held "
                                   "the run lock).",
                                   "result");
    double b[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
    s->m_duration = lt_metric_series(
        lt_metrics_histogram(reg, "lattice_scheduler_run_duration_seconds",
                             "Wall time of the runs, seconds.", NULL, b, sizeof(b) / sizeof(b[0])));
    s->m_last_success = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_scheduler_last_success_timestamp_seconds",
        "Unix time of the end of the last run that succeeded (every command delivered).", NULL));
}

static void remember_failed(lt_sched_t *s, const char *id)
{
    if (s->nfailed >= FAILED_MAX)
        return; /* stays "in flight" until stale: no pile-up, just a delay */
    if (s->nfailed == s->failed_cap) {
        s->failed_cap = s->failed_cap ? 2 * s->failed_cap : 64;
        s->failed = lt_xrealloc(s->failed, s->failed_cap * sizeof(char *));
    }
    s->failed[s->nfailed++] = lt_xstrdup(id);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    lt_sched_t *s = opaque;
    dr_rec_t *rec = msg->_private;
    if (!rec)
        return;
    if (msg->err) {
        lt_log_ctx_t log = {.command_id = rec->id};
        lt_warn(&log, "command not delivered: %s", rd_kafka_err2str(msg->err));
        remember_failed(s, rec->id);
        count(s->m_failed, rec->provider, 1);
        if (s->stats)
            s->stats->errors++;
    } else {
        s->delivered++;
        count(s->m_sent, rec->provider, 1);
    }
    free(rec);
}

lt_sched_t *lt_sched_new(const lt_config_t *cfg, const lt_sched_opts_t *opts, char *errstr,
                         size_t errstr_size)
{
    lt_sched_t *s = lt_xcalloc(1, sizeof(*s));
    s->opts = *opts;
    s->inflight = -1;
    s->rand_used = sizeof(s->rand_pool);
    metrics_init(s, opts->metrics);
    if (!s->opts.dry_run_out)
        s->opts.dry_run_out = stdout;
    if (s->opts.stale_after_s <= 0 || !s->opts.requested_by ||
        (!s->opts.dry_run && (!s->opts.topic || s->opts.flush_timeout_s <= 0))) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "scheduler: stale_after_s, requested_by, topic and flush_timeout_s are required");
        goto fail;
    }
    s->json = lt_buf_new(LT_COMMAND_MAX_SIZE + 1);
    const char *dsn = lt_config_settings(cfg)->pg.dsn;
    const char *pw = lt_config_settings(cfg)->pg.password;
    if (!(s->rdb = lt_db_connect(dsn, pw, errstr, errstr_size)) ||
        !(s->wdb = lt_db_connect(dsn, pw, errstr, errstr_size)))
        goto fail;
    if (s->opts.dry_run)
        return s;
    rd_kafka_conf_t *conf = lt_kafka_producer_conf(cfg, NULL, errstr, errstr_size);
    if (!conf)
        goto fail;
    char kerr[256];
    if (rd_kafka_conf_set(conf, "client.id", "lattice-scheduler", kerr, sizeof(kerr)) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "kafka: %s", kerr);
        goto fail;
    }
    if (!(s->rk = lt_kafka_new(RD_KAFKA_PRODUCER, conf, s, on_delivery, errstr, errstr_size)))
        goto fail;
    if (lt_kafka_warm_topic(s->rk, s->opts.topic, WARM_TIMEOUT_MS, errstr, errstr_size))
        goto fail;
    return s;
fail:
    lt_sched_destroy(s);
    return NULL;
}

static void batch_free(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        pending_t *p = &b->items[i];
        free(p->tenant);
        free(p->account);
        free(p->provider);
        free(p->scope);
        free(p->json);
    }
    b->n = 0;
}

static void failed_free(lt_sched_t *s)
{
    for (size_t i = 0; i < s->nfailed; i++)
        free(s->failed[i]);
    s->nfailed = 0;
}

void lt_sched_destroy(lt_sched_t *s)
{
    if (!s)
        return;
    if (s->rk) {
        rd_kafka_flush(s->rk, 5000);
        rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(s->rk, 0); /* free the purged messages' records */
        lt_kafka_destroy(s->rk);
    }
    batch_free(&s->batches[0]);
    batch_free(&s->batches[1]);
    failed_free(s);
    free(s->failed);
    lt_sched_set_destroy(s->in_flight);
    lt_buf_destroy(s->json);
    lt_db_destroy(s->rdb);
    lt_db_destroy(s->wdb);
    free(s);
}

void lt_sched_stop(lt_sched_t *s)
{
    s->stop = 1;
}

static void set_fatal(lt_sched_t *s, lt_err_t err, const char *msg)
{
    if (s->fatal)
        return;
    s->fatal = err;
    snprintf(s->fatal_err, sizeof(s->fatal_err), "%s", msg);
}

/* Produce one command; QUEUE_FULL waits for room. */
static lt_err_t produce(lt_sched_t *s, const pending_t *p, char *errstr, size_t errstr_size)
{
    dr_rec_t *rec = lt_xmalloc(sizeof(*rec));
    memcpy(rec->id, p->id, sizeof(rec->id));
    snprintf(rec->provider, sizeof(rec->provider), "%s", p->provider);
    double deadline = lt_now_s() + s->opts.flush_timeout_s;
    for (;;) {
        /* The command carries its traceparent; the header repeats it. */
        rd_kafka_headers_t *h = lt_kafka_headers_with_traceparent(p->traceparent);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            s->rk, RD_KAFKA_V_TOPIC(s->opts.topic), RD_KAFKA_V_KEY(p->account, strlen(p->account)),
            RD_KAFKA_V_VALUE(p->json, p->json_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(rec), RD_KAFKA_V_END);
        if (!e)
            return LT_OK;
        if (h)
            rd_kafka_headers_destroy(h);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && lt_now_s() < deadline) {
            rd_kafka_poll(s->rk, 50);
            continue;
        }
        free(rec);
        return lt_seterr(errstr, errstr_size, lt_kafka_resp_err_class(e), "produce: %s",
                         rd_kafka_err2str(e));
    }
}

/* Wait for the batch being recorded, then produce it. Recorded before
 * produced: a crash in between delays the accounts until the records are
 * stale, it never piles commands up. */
static void complete_inflight(lt_sched_t *s)
{
    char err[1024];
    if (s->inflight < 0)
        return;
    batch_t *b = &s->batches[s->inflight];
    s->inflight = -1;
    double t0 = lt_now_s();
    lt_err_t e = lt_issued_record_wait(s->wdb, err, sizeof(err));
    s->stats->record_seconds += lt_now_s() - t0;
    if (e) {
        lt_error(NULL, "%zu command(s) not issued: %s", b->n, err);
        s->stats->errors += b->n;
        if (e == LT_ERR_TEMPORARY || e == LT_ERR_FINAL)
            set_fatal(s, e, err);
        batch_free(b);
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        pending_t *p = &b->items[i];
        e = produce(s, p, err, sizeof(err));
        if (e) {
            lt_log_ctx_t log = {
                .tenant = p->tenant, .account = p->account, .scope = p->scope, .command_id = p->id};
            lt_error(&log, "command not produced: %s", err);
            remember_failed(s, p->id);
            count(s->m_failed, p->provider, 1);
            s->stats->errors++;
            if (e == LT_ERR_FINAL)
                set_fatal(s, e, err);
        }
    }
    rd_kafka_poll(s->rk, 0);
    batch_free(b);
}

/* Hand the current batch on: printed (dry run), or sent to be recorded
 * while the next one fills. */
static void submit_batch(lt_sched_t *s)
{
    char err[1024];
    batch_t *b = &s->batches[s->cur];
    if (b->n == 0)
        return;
    if (s->opts.dry_run) {
        for (size_t i = 0; i < b->n; i++) {
            fwrite(b->items[i].json, 1, b->items[i].json_len, s->opts.dry_run_out);
            fputc('\n', s->opts.dry_run_out);
            count(s->m_sent, b->items[i].provider, 1);
        }
        fflush(s->opts.dry_run_out);
        s->stats->commands_sent += b->n;
        batch_free(b);
        return;
    }
    complete_inflight(s); /* the other buffer is free afterwards */
    if (s->fatal) {
        batch_free(b);
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        pending_t *p = &b->items[i];
        s->rows[i] = (lt_issued_t){p->id, p->tenant, p->account, p->provider, p->scope};
    }
    double t0 = lt_now_s();
    lt_err_t e = lt_issued_record_send(s->wdb, s->rows, b->n, err, sizeof(err));
    s->stats->record_seconds += lt_now_s() - t0;
    if (e) {
        lt_error(NULL, "%zu command(s) not issued: %s", b->n, err);
        s->stats->errors += b->n;
        if (e == LT_ERR_TEMPORARY || e == LT_ERR_FINAL)
            set_fatal(s, e, err);
        batch_free(b);
        return;
    }
    s->inflight = s->cur;
    s->cur = 1 - s->cur;
}

typedef struct {
    lt_sched_t *s;
    const char *tenant, *account, *provider;
} scope_ctx_t;

static int on_scope(const char *scope, void *opaque)
{
    scope_ctx_t *c = opaque;
    lt_sched_t *s = c->s;
    char err[512], tp[LT_TRACEPARENT_SIZE];
    lt_trace_t child;
    lt_log_ctx_t log = {.tenant = c->tenant, .account = c->account, .scope = scope};
    if (lt_trace_child(&s->trace, &child, err, sizeof(err))) {
        set_fatal(s, LT_ERR_TEMPORARY, err);
        return 1;
    }
    lt_trace_format(&child, tp);
    char cmd_id[5 + 2 * ID_BYTES];
    if (s->rand_used == sizeof(s->rand_pool)) {
        if (RAND_bytes(s->rand_pool, (int)sizeof(s->rand_pool)) != 1) {
            set_fatal(s, LT_ERR_TEMPORARY, "command: the random generator failed");
            return 1;
        }
        s->rand_used = 0;
    }
    static const char hex[] = "0123456789abcdef";
    memcpy(cmd_id, "cmd-", 4);
    for (size_t i = 0; i < ID_BYTES; i++) {
        unsigned char r = s->rand_pool[s->rand_used++];
        cmd_id[4 + 2 * i] = hex[r >> 4];
        cmd_id[5 + 2 * i] = hex[r & 15];
    }
    cmd_id[4 + 2 * ID_BYTES] = 0;
    lt_sched_cmd_t cmd = {.tenant = c->tenant,
                          .account_id = c->account,
                          .provider = c->provider,
                          .scope = scope,
                          .requested_by = s->opts.requested_by,
                          .traceparent = tp,
                          .command_id = cmd_id};
    batch_t *b = &s->batches[s->cur];
    pending_t *p = &b->items[b->n];
    lt_buf_reset(s->json);
    if (lt_sched_command(&cmd, s->json, p->id, err, sizeof(err))) {
        lt_error(&log, "no command for this account: %s", err);
        s->stats->errors++;
        return 0;
    }
    p->tenant = lt_xstrdup(c->tenant);
    p->account = lt_xstrdup(c->account);
    p->provider = lt_xstrdup(c->provider);
    p->scope = scope ? lt_xstrdup(scope) : NULL;
    p->json_len = lt_buf_len(s->json);
    p->json = lt_xstrdup(lt_buf_str(s->json));
    memcpy(p->traceparent, tp, sizeof(p->traceparent));
    b->n++;
    if (lt_log_enabled(LT_LOG_DEBUG)) {
        log.command_id = p->id;
        lt_debug(&log, "command %s", s->opts.dry_run ? "planned" : "issued");
    }
    if (b->n == BATCH_MAX)
        submit_batch(s);
    return s->fatal != LT_OK;
}

static int on_account(const lt_account_t *a, void *opaque)
{
    lt_sched_t *s = opaque;
    if (s->stop) {
        s->stats->interrupted = 1;
        return 1;
    }
    s->stats->accounts_seen++;
    count(s->m_seen, lt_account_provider(a), 1);
    if (strcmp(lt_account_status(a), "active") != 0) {
        s->stats->skipped_inactive++;
        count(s->m_inactive, lt_account_provider(a), 1);
        return 0;
    }
    if (lt_sched_set_has(s->in_flight, lt_account_tenant(a), lt_account_id(a))) {
        s->stats->skipped_in_flight++;
        count(s->m_in_flight, lt_account_provider(a), 1);
        return 0;
    }
    scope_ctx_t c = {s, lt_account_tenant(a), lt_account_id(a), lt_account_provider(a)};
    lt_sched_scopes(c.provider, lt_account_config(a), s->opts.per_scope, on_scope, &c);
    return s->fatal != LT_OK;
}

static int on_in_flight(const char *tenant, const char *account_id, void *opaque)
{
    lt_sched_t *s = opaque;
    if (lt_sched_set_add(s->in_flight, tenant, account_id)) {
        set_fatal(s, LT_ERR_TOO_BIG, "too many accounts in flight");
        return 1;
    }
    return 0;
}

/* Wait for every delivery report; what is still queued at the deadline is
 * purged (reported as failed). */
static void await_deliveries(lt_sched_t *s)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(s->rk, s->opts.flush_timeout_s * 1000);
    if (e) {
        lt_error(NULL, "%d command(s) not delivered within %d s: purged", rd_kafka_outq_len(s->rk),
                 s->opts.flush_timeout_s);
        rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(s->rk, 5000); /* serve the purged messages' reports */
    }
}

static lt_err_t ensure_db(lt_db_t *db, char *errstr, size_t errstr_size)
{
    return lt_db_ok(db) ? LT_OK : lt_db_reset(db, errstr, errstr_size);
}

lt_err_t lt_sched_run_once(lt_sched_t *s, lt_sched_stats_t *stats, char *errstr, size_t errstr_size)
{
    char err[1024];
    int locked = 0;
    long long pruned = 0;
    lt_err_t e;
    memset(stats, 0, sizeof(*stats));
    double t0 = lt_now_s();
    s->stats = stats;
    s->fatal = LT_OK;
    s->fatal_err[0] = 0;
    s->delivered = 0;
    s->inflight = -1;
    failed_free(s);
    if (!s->in_flight)
        s->in_flight = lt_sched_set_new(IN_FLIGHT_MAX);
    lt_sched_set_clear(s->in_flight);

    if ((e = ensure_db(s->rdb, errstr, errstr_size)) ||
        (e = ensure_db(s->wdb, errstr, errstr_size)))
        goto out;
    if (!s->opts.dry_run) {
        if ((e = lt_issued_run_trylock(s->wdb, s->opts.provider, s->opts.tenant, &locked, errstr,
                                       errstr_size)))
            goto out;
        if (!locked) {
            stats->locked_out = 1;
            lt_warn(NULL, "another scheduler with the same filters is running; this run does "
                          "nothing");
            goto out;
        }
        if ((e = lt_issued_prune(s->wdb, s->opts.stale_after_s, &pruned, errstr, errstr_size)))
            goto out;
        stats->pruned = (uint64_t)pruned;
    }
    if ((e = lt_issued_list_in_flight(s->wdb,
                                      &(lt_issued_filter_t){.stale_after_s = s->opts.stale_after_s,
                                                            .provider = s->opts.provider,
                                                            .tenant = s->opts.tenant},
                                      on_in_flight, s, errstr, errstr_size)))
        goto out;
    if (s->fatal) {
        e = lt_seterr(errstr, errstr_size, s->fatal, "%s", s->fatal_err);
        goto out;
    }
    if ((e = lt_trace_new(&s->trace, errstr, errstr_size)))
        goto out;
    char trace_id[LT_TRACE_ID_HEX_SIZE];
    lt_trace_id_hex(&s->trace, trace_id);
    lt_log_ctx_t log = {.trace_id = trace_id};
    lt_info(&log, "run: provider=%s tenant=%s in_flight=%zu%s",
            s->opts.provider ? s->opts.provider : "all", s->opts.tenant ? s->opts.tenant : "all",
            lt_sched_set_count(s->in_flight), s->opts.dry_run ? " (dry run)" : "");

    e = lt_accounts_list_enabled(s->rdb, s->opts.provider, s->opts.tenant, on_account, s, err,
                                 sizeof(err));
    if (!s->fatal)
        submit_batch(s);
    complete_inflight(s);
    batch_free(&s->batches[s->cur]); /* left over after a fatal error */
    if (!s->opts.dry_run) {
        double t1 = lt_now_s();
        await_deliveries(s);
        stats->deliver_seconds = lt_now_s() - t1;
    }
    if (s->nfailed) {
        char ferr[512];
        if (lt_issued_forget(s->wdb, (const char *const *)s->failed, s->nfailed, ferr,
                             sizeof(ferr)))
            lt_warn(NULL, "undelivered commands stay in flight until stale: %s", ferr);
    }
    if (!s->opts.dry_run)
        stats->commands_sent = s->delivered;
    if (e)
        lt_seterr(errstr, errstr_size, e, "%s", err);
    else if (s->fatal)
        e = lt_seterr(errstr, errstr_size, s->fatal, "%s", s->fatal_err);
out:
    if (locked) {
        char uerr[256];
        if (lt_db_ok(s->wdb) &&
            lt_issued_run_unlock(s->wdb, s->opts.provider, s->opts.tenant, uerr, sizeof(uerr)))
            lt_warn(NULL, "%s", uerr);
    }
    if (s->stop)
        stats->interrupted = 1;
    stats->seconds = lt_now_s() - t0;
    s->stats = NULL;
    const char *result = stats->locked_out    ? "locked_out"
                         : e || stats->errors ? "failed"
                         : stats->interrupted ? "interrupted"
                                              : "succeeded";
    lt_series_inc(lt_metric_get(s->m_runs, result));
    lt_series_observe(s->m_duration, stats->seconds);
    if (!strcmp(result, "succeeded"))
        lt_series_set(s->m_last_success, (double)time(NULL));
    lt_log(e || stats->errors ? LT_LOG_WARN : LT_LOG_INFO, NULL,
           "summary: accounts_seen=%llu commands_sent=%llu skipped_in_flight=%llu "
           "skipped_inactive=%llu errors=%llu pruned_issued=%llu seconds=%.3f "
           "commands_per_s=%.0f record_s=%.3f deliver_wait_s=%.3f%s%s%s%s",
           (unsigned long long)stats->accounts_seen, (unsigned long long)stats->commands_sent,
           (unsigned long long)stats->skipped_in_flight,
           (unsigned long long)stats->skipped_inactive, (unsigned long long)stats->errors,
           (unsigned long long)stats->pruned, stats->seconds,
           stats->seconds > 0 ? (double)stats->commands_sent / stats->seconds : 0.0,
           stats->record_seconds, stats->deliver_seconds, s->opts.dry_run ? " dry_run=true" : "",
           stats->locked_out ? " locked_out=true" : "",
           stats->interrupted ? " interrupted=true" : "", e ? " failed=true" : "");
    return e;
}

lt_err_t lt_sched_run_every(lt_sched_t *s, int interval_s, char *errstr, size_t errstr_size)
{
    if (interval_s <= 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "interval must be > 0");
    while (!s->stop) {
        double t0 = lt_now_s();
        lt_sched_stats_t st;
        char err[1024];
        if (lt_sched_run_once(s, &st, err, sizeof(err)))
            lt_error(NULL, "run failed: %s; next run in %d s", err, interval_s);
        while (!s->stop && lt_now_s() < t0 + interval_s) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
            if (s->rk)
                rd_kafka_poll(s->rk, 0);
        }
    }
    return LT_OK;
}
