#include "lt_worker_obs.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_ready_probe.h"
#include "lt_trace.h"

#define NPROVIDERS 2
static const char *const k_providers[NPROVIDERS] = {"imap", "gmail"};

/* The label values of a slot's progress series, to remove them after. */
typedef struct {
    lt_worker_obs_t *o;
    int index;
    char tp[LT_TRACEPARENT_SIZE];
    int attempt;
    int reported;
    char slot[16];
    char tenant[256];
    char account[256];
    char provider[16];
    char kind[32];
} slot_obs_t;

struct lt_worker_obs_s {
    lt_metrics_t *reg;
    const lt_settings_t *set;
    char worker_id[256];
    rd_kafka_t *producer;
    lt_dispatch_t *dispatch;
    int nslots;
    slot_obs_t *slots;
    int progress_interval_ms;

    lt_metric_t *commands, *scopes, *duration, *retries, *last_success_acct, *last_success,
        *rebalances;
    lt_metric_t *p_done, *p_total, *p_rate, *p_eta;
    lt_metric_t *g_units, *g_quota, *g_cuts, *g_day, *g_alert, *g_paused;
    lt_series_t *g_share;
    lt_series_t *s3_stalls, *s3_slowdowns, *s3_slowed;
    atomic_int s3_slowed_state;      /* 1 from a SlowDown answer to the next success */
    atomic_llong s3_slowdowns_spell; /* SlowDown answers of the spell */
    lt_kafka_health_t *kafka_health;
    lt_series_t *k_up, *k_txn_up, *k_down_s, *k_errors, *k_outages;
    lt_series_t *group_unowned, *group_rejoins;
    lt_series_t *dead_letters, *in_flight, *queued, *assigned, *ready, *paused, *pauses;
    lt_sync_metrics_t sm[NPROVIDERS];

    lt_ready_probe_t *probe;
};

static void on_scrape(void *opaque)
{
    lt_worker_obs_t *o = opaque;
    int running = lt_dispatch_running(o->dispatch, -1);
    lt_series_set(o->queued, (double)(lt_dispatch_size(o->dispatch) - running));
    lt_kafka_health_state_t hs;
    lt_kafka_health_get(o->kafka_health, &hs);
    lt_series_set(o->k_up, hs.brokers_up);
    lt_series_set(o->k_txn_up, hs.txn_coordinator_up);
    lt_series_set(o->k_down_s,
                  hs.down_since_ms ? (double)(lt_now_ms() - hs.down_since_ms) / 1000.0 : 0);
    lt_series_add(o->k_errors, (double)hs.client_errors - lt_series_value(o->k_errors));
    lt_series_add(o->k_outages, (double)hs.outages - lt_series_value(o->k_outages));
    char why[256];
    lt_series_set(o->ready, lt_worker_obs_ready(o, why, sizeof(why)));
}

void lt_worker_obs_kafka_health(lt_worker_obs_t *o, lt_kafka_health_t *health)
{
    if (o)
        o->kafka_health = health;
}

lt_worker_obs_t *lt_worker_obs_new(lt_metrics_t *reg, const lt_config_t *cfg,
                                   const char *worker_id, rd_kafka_t *producer,
                                   lt_dispatch_t *dispatch, int nslots)
{
    lt_worker_obs_t *o = lt_xcalloc(1, sizeof(*o));
    o->reg = reg;
    o->set = lt_config_settings(cfg);
    const lt_settings_t *set = o->set;
    snprintf(o->worker_id, sizeof(o->worker_id), "%s", worker_id);
    o->producer = producer;
    o->dispatch = dispatch;
    o->nslots = nslots;
    o->slots = lt_xcalloc((size_t)(nslots > 0 ? nslots : 1), sizeof(slot_obs_t));
    for (int i = 0; i < nslots; i++) {
        o->slots[i].o = o;
        o->slots[i].index = i;
    }
    o->progress_interval_ms = set->worker.progress_interval_s * 1000;
    o->probe = lt_ready_probe_new(set->pg.dsn, set->pg.password, "lattice-worker-readiness",
                                  set->worker.group_id);

    o->commands = lt_metrics_counter(reg, "lattice_worker_commands_total",
                                     "Command attempts by outcome: succeeded, partial (some "
                                     "scopes failed), failed, dead_lettered (final), retried, "
                                     "cancelled, skipped.",
                                     "provider,kind,result,error_class");
    o->scopes = lt_metrics_counter(reg, "lattice_worker_scope_results_total",
                                   "Scopes (IMAP folders, Gmail labels/queries) of finished "
                                   "commands by result: ok, failed, missing.",
                                   "provider,result,error_class");
    double b[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800};
    o->duration = lt_metrics_histogram(reg, "lattice_worker_command_duration_seconds",
                                       "Duration of command attempts, seconds.", "provider,kind",
                                       b, sizeof(b) / sizeof(b[0]));
    o->retries = lt_metrics_counter(reg, "lattice_worker_command_retries_total",
                                    "Attempts that failed temporarily and were retried later.",
                                    "provider,kind,error_class");
    o->dead_letters = lt_metric_series(lt_metrics_counter(
        reg, "lattice_worker_dead_letters_total",
        "Commands written to the dead-letter topic (malformed, unknown or rejected account).",
        NULL));
    o->group_unowned = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_worker_group_unowned_partitions",
        "Partitions of the command topic that no member of the worker's consumer group owned "
        "while the group was stable, at the last check (LATTICE_WORKER_GROUP_CHECK_S).",
        NULL));
    o->group_rejoins = lt_metric_series(lt_metrics_counter(
        reg, "lattice_worker_group_rejoins_total",
        "Times the worker left and rejoined its consumer group because partitions of the "
        "command topic stayed owned by no member.",
        NULL));
    o->s3_stalls = lt_metric_series(lt_metrics_counter(
        reg, "lattice_worker_s3_stalls_total",
        "S3 requests given up as stalled: under LATTICE_S3_LOW_SPEED_BYTES per second for "
        "LATTICE_S3_LOW_SPEED_TIME_S (a frozen or black-holed object store); retried.",
        NULL));
    o->s3_slowdowns = lt_metric_series(lt_metrics_counter(
        reg, "lattice_worker_s3_slowdowns_total",
        "S3 answers asking to slow down (503 SlowDown or another 503): the request is sent "
        "again after a backoff (up to 8 answers in a row, then the command is retried).",
        NULL));
    o->s3_slowed = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_worker_s3_slowed_down",
        "1 from an S3 SlowDown answer until a request succeeds again, else 0.", NULL));
    o->k_up = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_worker_kafka_brokers_up",
        "0 while every Kafka broker is unreachable (an _ALL_BROKERS_DOWN of any of the worker's "
        "clients, until a delivery or a metadata probe answers), else 1.",
        NULL));
    o->k_txn_up = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_worker_kafka_txn_coordinator_up",
        "0 while the transaction coordinator is unreachable (the clients report the "
        "TxnCoordinator failing, until a transactional delivery or the brokers answer), else 1.",
        NULL));
    o->k_down_s = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_worker_kafka_unreachable_seconds",
        "How long the current broker outage has lasted, seconds (0 when the brokers answer).",
        NULL));
    o->k_errors = lt_metric_series(lt_metrics_counter(
        reg, "lattice_worker_kafka_client_errors_total",
        "Errors the worker's Kafka clients reported (librdkafka's error callback); during a "
        "broker outage they are counted here and logged at debug only.",
        NULL));
    o->k_outages = lt_metric_series(
        lt_metrics_counter(reg, "lattice_worker_kafka_outages_total",
                           "Times every Kafka broker became unreachable.", NULL));
    o->in_flight = lt_metric_series(lt_metrics_gauge(reg, "lattice_worker_commands_in_flight",
                                                     "Commands running now.", NULL));
    o->queued = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_worker_commands_queued",
        "Commands taken from Kafka and waiting for a slot (or their account, or a backoff).",
        NULL));
    o->paused = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_worker_consumer_paused",
        "1 while fetching commands is paused: LATTICE_WORKER_QUEUE_MAX commands are queued.",
        NULL));
    o->pauses = lt_metric_series(
        lt_metrics_counter(reg, "lattice_worker_consumer_pauses_total",
                           "Times fetching commands was paused (the queue was full).", NULL));
    lt_series_set(lt_metric_series(lt_metrics_gauge(reg, "lattice_worker_slots",
                                                     "LATTICE_WORKER_CONCURRENCY.", NULL)),
                  nslots);
    o->assigned = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_worker_assigned_partitions",
        "Partitions of the command topic assigned to this worker.", NULL));
    o->rebalances = lt_metrics_counter(reg, "lattice_worker_rebalances_total",
                                       "Rebalance callbacks: assign, revoke, lost, error.", "type");
    o->ready = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_worker_ready", "1 when /readyz answers 200 (at the last scrape).", NULL));
    o->last_success = lt_metrics_gauge(
        reg, "lattice_worker_last_success_timestamp_seconds",
        "Unix time of the last command that succeeded on this worker.", "provider");
    long long amax = set->metrics.account_series_max;
    if (amax > 0)
        o->last_success_acct = lt_metrics_gauge_volatile(
            reg, "lattice_worker_account_last_success_timestamp_seconds",
            "Unix time of the account's last successful command on this worker (at most "
            "LATTICE_METRICS_ACCOUNT_SERIES_MAX accounts, least recently updated dropped).",
            "tenant,account,provider", (size_t)amax);
    size_t pmax = (size_t)(nslots > 0 ? nslots : 1) * 2;
    const char *pl = "slot,tenant,account,provider,kind";
    o->p_done = lt_metrics_gauge_volatile(reg, "lattice_worker_command_progress_done",
                                          "Messages done by a long running command.", pl, pmax);
    o->p_total = lt_metrics_gauge_volatile(
        reg, "lattice_worker_command_progress_total",
        "Messages the running command expects in all (done + left; -1 unknown).", pl, pmax);
    o->p_rate = lt_metrics_gauge_volatile(reg,
                                          "lattice_worker_command_progress_messages_per_second",
                                          "Rate of the running command since its total was known.",
                                          pl, pmax);
    o->p_eta = lt_metrics_gauge_volatile(reg, "lattice_worker_command_progress_eta_seconds",
                                         "Seconds left for the running command at its rate (-1 "
                                         "unknown).",
                                         pl, pmax);

    o->g_units = lt_metrics_counter(reg, "lattice_gmail_units_total",
                                    "Gmail API quota units spent by this worker.", "project");
    o->g_quota = lt_metrics_counter(
        reg, "lattice_gmail_quota_errors_total",
        "Gmail quota answers: kind user (userRateLimitExceeded) or project (rateLimitExceeded).",
        "project,kind");
    o->g_cuts = lt_metrics_counter(reg, "lattice_gmail_rate_cuts_total",
                                   "Times a quota answer lowered a user's or project's pace.",
                                   "project");
    o->g_day = lt_metrics_gauge_volatile(
        reg, "lattice_gmail_project_day_units",
        "Gmail units of the project today (UTC), all workers, from Postgres.", "project", 1000);
    o->g_alert = lt_metrics_gauge_volatile(
        reg, "lattice_gmail_project_day_alert",
        "1 when the project's units today are over LATTICE_GMAIL_PROJECT_DAY_ALERT_PERCENT of "
        "LATTICE_GMAIL_PROJECT_UNITS_PER_DAY.",
        "project", 1000);
    o->g_paused = lt_metrics_gauge_volatile(
        reg, "lattice_gmail_project_paused",
        "1 while the project's Gmail commands are paused until the next UTC day (hard stop).",
        "project", 1000);
    o->g_share = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_gmail_project_share",
        "This worker's share of each project's per-minute limit (its share of the command "
        "topic's partitions).",
        NULL));
    lt_series_set(o->g_share, 1);

    lt_metric_t *msgs = lt_metrics_counter(reg, "lattice_worker_messages_fetched_total",
                                           "Messages fetched from the provider.", "provider");
    lt_metric_t *mbytes =
        lt_metrics_counter(reg, "lattice_worker_message_bytes_fetched_total",
                           "Raw bytes of the messages fetched from the provider.", "provider");
    lt_metric_t *events =
        lt_metrics_counter(reg, "lattice_worker_events_published_total",
                           "mail.raw.v1 events committed (Kafka transaction).", "provider");
    lt_metric_t *aborted = lt_metrics_counter(
        reg, "lattice_worker_events_aborted_total",
        "mail.raw.v1 events produced in a transaction that was aborted (redone later).",
        "provider");
    lt_metric_t *objs = lt_metrics_counter(reg, "lattice_worker_objects_stored_total",
                                           "Objects written to S3: message (.eml), attachment, manifest.",
                                           "provider,kind");
    lt_metric_t *obytes = lt_metrics_counter(reg, "lattice_worker_object_bytes_stored_total",
                                             "Bytes written to S3.", "provider,kind");
    lt_metric_t *ranged = lt_metrics_counter(
        reg, "lattice_worker_attachments_ranged_total",
        "Attachments published as a byte range of their raw .eml (LATTICE_ATTACHMENTS=ranges), "
        "without an object of their own.",
        "provider");
    lt_metric_t *partial = lt_metrics_counter(
        reg, "lattice_worker_messages_partial_total",
        "Messages published with payload.parse_error set: MIME the parser refused, an "
        "attachment that could not be stored, a content type replaced, an event too big.",
        "provider");
    lt_metric_t *skipped = lt_metrics_counter(
        reg, "lattice_worker_messages_skipped_total",
        "Messages not published and reported in the command result (skipped_ids): over "
        "LATTICE_MAX_MESSAGE_BYTES, gone, or no raw object or event could be stored.",
        "provider");
    lt_metric_t *tmp_full = lt_metrics_counter(
        reg, "lattice_worker_tmp_full_total",
        "Writes of a message to LATTICE_TMP_DIR refused for want of space (ENOSPC, EDQUOT): "
        "the batch is retried, or the message skipped when it is larger than the whole file "
        "system.",
        "provider");
    lt_metric_t *changes = lt_metrics_counter(
        reg, "lattice_worker_changes_published_total",
        "mail.change.v1 events committed (Kafka transaction), by kind: deleted, flags, labels, "
        "reset.",
        "provider,kind");
    for (int i = 0; i < NPROVIDERS; i++) {
        const char *p = k_providers[i];
        o->sm[i] = (lt_sync_metrics_t){
            .messages = lt_metric_get(msgs, p),
            .message_bytes = lt_metric_get(mbytes, p),
            .events = lt_metric_get(events, p),
            .events_aborted = lt_metric_get(aborted, p),
            .objects_message = lt_metric_get(objs, p, "message"),
            .objects_attachment = lt_metric_get(objs, p, "attachment"),
            .object_bytes_message = lt_metric_get(obytes, p, "message"),
            .object_bytes_attachment = lt_metric_get(obytes, p, "attachment"),
            .objects_manifest = lt_metric_get(objs, p, "manifest"),
            .attachments_ranged = lt_metric_get(ranged, p),
            .messages_partial = lt_metric_get(partial, p),
            .messages_skipped = lt_metric_get(skipped, p),
            .tmp_full = lt_metric_get(tmp_full, p),
        };
        for (int k = 0; k < 4; k++)
            o->sm[i].changes[k] = lt_metric_get(changes, p, lt_change_kind_name((lt_change_kind_t)k));
    }
    lt_metrics_on_scrape(reg, on_scrape, o);
    return o;
}

void lt_worker_obs_destroy(lt_worker_obs_t *o)
{
    if (!o)
        return;
    lt_ready_probe_destroy(o->probe);
    free(o->slots);
    free(o);
}

static void cmd_labels(const lt_command_t *cmd, const char **provider, const char **kind)
{
    *provider = cmd ? lt_provider_name(lt_command_provider(cmd)) : "unknown";
    *kind = cmd ? lt_sync_kind_name(lt_command_kind(cmd)) : "unknown";
}

void lt_worker_obs_paused(lt_worker_obs_t *o, int paused)
{
    if (!o)
        return;
    lt_series_set(o->paused, paused);
    if (paused)
        lt_series_inc(o->pauses);
}

void lt_worker_obs_attempt(lt_worker_obs_t *o, const lt_command_t *cmd, const char *result,
                           lt_err_t err, int64_t duration_ms)
{
    if (!o)
        return;
    const char *provider, *kind;
    cmd_labels(cmd, &provider, &kind);
    const char *ec = err ? lt_err_name(err) : "none";
    lt_series_inc(lt_metric_get(o->commands, provider, kind, result, ec));
    if (strcmp(result, "skipped"))
        lt_series_observe(lt_metric_get(o->duration, provider, kind), (double)duration_ms / 1e3);
    if (!strcmp(result, "retried"))
        lt_series_inc(lt_metric_get(o->retries, provider, kind, ec));
}

void lt_worker_obs_command(lt_worker_obs_t *o, const lt_command_t *cmd, const char *result,
                           lt_err_t err, int64_t duration_ms)
{
    if (!o)
        return;
    lt_worker_obs_attempt(o, cmd, result, err, duration_ms);
    if (cmd && !strcmp(result, "succeeded")) {
        double now = (double)time(NULL);
        const char *provider = lt_provider_name(lt_command_provider(cmd));
        lt_series_set(lt_metric_get(o->last_success, provider), now);
        lt_metric_set(o->last_success_acct, now, lt_command_tenant_id(cmd),
                      lt_command_account_id(cmd), provider);
    }
}

void lt_worker_obs_scope(lt_worker_obs_t *o, const lt_command_t *cmd, const char *result,
                         lt_err_t err)
{
    if (!o)
        return;
    const char *provider, *kind;
    cmd_labels(cmd, &provider, &kind);
    lt_series_inc(lt_metric_get(o->scopes, provider, result, err ? lt_err_name(err) : "none"));
}

void lt_worker_obs_s3_stall(lt_worker_obs_t *o)
{
    if (o)
        lt_series_inc(o->s3_stalls);
}

void lt_worker_obs_s3_slowdown(lt_worker_obs_t *o, const char *what, int slowed)
{
    if (!o)
        return;
    if (slowed) {
        lt_series_inc(o->s3_slowdowns);
        atomic_fetch_add(&o->s3_slowdowns_spell, 1);
        if (!atomic_exchange(&o->s3_slowed_state, 1)) {
            lt_series_set(o->s3_slowed, 1);
            lt_warn(NULL,
                    "S3 asks to slow down (%s: 503 SlowDown): requests are backed off and sent "
                    "again (lattice_worker_s3_slowdowns_total)",
                    what);
        }
    } else if (atomic_exchange(&o->s3_slowed_state, 0)) {
        lt_series_set(o->s3_slowed, 0);
        lt_info(NULL, "S3 accepts requests again (%s) after %lld SlowDown answer(s)", what,
                (long long)atomic_exchange(&o->s3_slowdowns_spell, 0));
    }
}

void lt_worker_obs_group_unowned(lt_worker_obs_t *o, int unowned)
{
    if (o)
        lt_series_set(o->group_unowned, unowned);
}

void lt_worker_obs_group_rejoin(lt_worker_obs_t *o)
{
    if (o)
        lt_series_inc(o->group_rejoins);
}

void lt_worker_obs_dead_letter(lt_worker_obs_t *o)
{
    if (o)
        lt_series_inc(o->dead_letters);
}

static void progress_remove(slot_obs_t *so)
{
    lt_worker_obs_t *o = so->o;
    if (!so->reported)
        return;
    lt_metric_t *ms[] = {o->p_done, o->p_total, o->p_rate, o->p_eta};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
        lt_metric_remove(ms[i], so->slot, so->tenant, so->account, so->provider, so->kind);
    so->reported = 0;
}

void lt_worker_obs_slot(lt_worker_obs_t *o, int slot, int running)
{
    if (!o)
        return;
    if (running) {
        lt_series_inc(o->in_flight);
    } else {
        lt_series_dec(o->in_flight);
        if (slot >= 0 && slot < o->nslots)
            progress_remove(&o->slots[slot]);
    }
}

void lt_worker_obs_rebalance(lt_worker_obs_t *o, rd_kafka_t *consumer, rd_kafka_resp_err_t why)
{
    if (!o)
        return;
    const char *type = why == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS   ? "assign"
                       : why == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS ? "revoke"
                                                                     : "error";
    if (why == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && rd_kafka_assignment_lost(consumer))
        type = "lost";
    lt_series_inc(lt_metric_get(o->rebalances, type));
    rd_kafka_topic_partition_list_t *a = NULL;
    if (!rd_kafka_assignment(consumer, &a)) {
        lt_series_set(o->assigned, a->cnt);
        rd_kafka_topic_partition_list_destroy(a);
    }
    if (why == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        lt_ready_probe_assigned(o->probe);
}

/* --- progress ------------------------------------------------------------ */

static void running_event(slot_obs_t *so, lt_sync_t *s, const lt_sync_progress_t *p)
{
    lt_worker_obs_t *o = so->o;
    const lt_command_t *cmd = lt_sync_command(s);
    const char *scope = lt_sync_log(s)->scope ? lt_sync_log(s)->scope : lt_command_scope(cmd);
    json_object *j = json_object_new_object();
    json_object_object_add(j, "schema", json_object_new_string("lattice.mail.sync.status.v1"));
    json_object_object_add(j, "command_id", json_object_new_string(lt_command_id(cmd)));
    json_object_object_add(j, "tenant_id", json_object_new_string(lt_command_tenant_id(cmd)));
    json_object_object_add(j, "account_id", json_object_new_string(lt_command_account_id(cmd)));
    json_object_object_add(j, "provider",
                           json_object_new_string(lt_provider_name(lt_command_provider(cmd))));
    json_object_object_add(j, "kind",
                           json_object_new_string(lt_sync_kind_name(lt_command_kind(cmd))));
    if (scope && *scope)
        json_object_object_add(j, "scope", json_object_new_string(scope));
    json_object_object_add(j, "result", json_object_new_string("running"));
    json_object_object_add(j, "messages", json_object_new_int64(lt_sync_messages(s)));
    json_object_object_add(j, "bytes", json_object_new_int64(lt_sync_bytes(s)));
    json_object_object_add(j, "progress_done", json_object_new_int64(p->done));
    json_object_object_add(j, "progress_total",
                           p->total >= 0 ? json_object_new_int64(p->total) : NULL);
    char rate[32];
    snprintf(rate, sizeof(rate), "%.2f", p->rate);
    json_object_object_add(j, "rate_per_s", json_object_new_double_s(p->rate, rate));
    json_object_object_add(j, "eta_s", p->eta_s >= 0 ? json_object_new_int64(p->eta_s) : NULL);
    json_object_object_add(j, "duration_ms", json_object_new_int64(p->elapsed_ms));
    json_object_object_add(j, "attempt", json_object_new_int(so->attempt));
    json_object_object_add(j, "worker_id", json_object_new_string(o->worker_id));
    json_object_object_add(j, "updated_at_ms", json_object_new_int64((int64_t)time(NULL) * 1000));
    const char *v = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
    const char *key = lt_command_account_id(cmd);
    rd_kafka_headers_t *h = lt_kafka_headers_with_traceparent(so->tp[0] ? so->tp : NULL);
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        o->producer, RD_KAFKA_V_TOPIC(o->set->topic.status), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)v, strlen(v)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (kerr) {
        rd_kafka_headers_destroy(h);
        lt_warn(lt_sync_log(s), "progress status event not produced: %s", rd_kafka_err2str(kerr));
    }
    json_object_put(j);
}

static void on_progress(void *opaque, lt_sync_t *s, const lt_sync_progress_t *p)
{
    slot_obs_t *so = opaque;
    lt_worker_obs_t *o = so->o;
    const lt_command_t *cmd = lt_sync_command(s);
    char eta[32] = "unknown";
    if (p->eta_s >= 0)
        snprintf(eta, sizeof(eta), "%lldm%02llds", (long long)(p->eta_s / 60),
                 (long long)(p->eta_s % 60));
    lt_info(lt_sync_log(s), "progress: %lld/%lld messages (%d%%), %.1f messages/s, ETA %s",
            (long long)p->done, (long long)p->total,
            p->total > 0 ? (int)(p->done * 100 / p->total) : 0, p->rate, eta);

    if (!so->reported) {
        snprintf(so->slot, sizeof(so->slot), "%d", so->index);
        snprintf(so->tenant, sizeof(so->tenant), "%s", lt_command_tenant_id(cmd));
        snprintf(so->account, sizeof(so->account), "%s", lt_command_account_id(cmd));
        snprintf(so->provider, sizeof(so->provider), "%s",
                 lt_provider_name(lt_command_provider(cmd)));
        snprintf(so->kind, sizeof(so->kind), "%s", lt_sync_kind_name(lt_command_kind(cmd)));
        so->reported = 1;
    }
    lt_metric_set(o->p_done, (double)p->done, so->slot, so->tenant, so->account, so->provider,
                  so->kind);
    lt_metric_set(o->p_total, (double)p->total, so->slot, so->tenant, so->account, so->provider,
                  so->kind);
    lt_metric_set(o->p_rate, p->rate, so->slot, so->tenant, so->account, so->provider, so->kind);
    lt_metric_set(o->p_eta, (double)p->eta_s, so->slot, so->tenant, so->account, so->provider,
                  so->kind);
    if (o->producer)
        running_event(so, s, p);
}

void lt_worker_obs_sync_env(lt_worker_obs_t *o, int slot, const lt_command_t *cmd,
                            const char *traceparent, int attempt, lt_sync_env_t *env)
{
    if (!o || slot < 0 || slot >= o->nslots)
        return;
    const char *provider = lt_provider_name(lt_command_provider(cmd));
    for (int i = 0; i < NPROVIDERS; i++)
        if (!strcmp(provider, k_providers[i]))
            env->metrics = &o->sm[i];
    slot_obs_t *so = &o->slots[slot];
    progress_remove(so);
    snprintf(so->tp, sizeof(so->tp), "%s", traceparent ? traceparent : "");
    so->attempt = attempt;
    env->progress = on_progress;
    env->progress_opaque = so;
    env->progress_interval_ms = o->progress_interval_ms;
}

/* --- readiness ----------------------------------------------------------- */

int lt_worker_obs_ready(lt_worker_obs_t *o, char *why, size_t why_size)
{
    if (o && o->kafka_health) {
        lt_kafka_health_state_t hs;
        lt_kafka_health_get(o->kafka_health, &hs);
        if (!hs.brokers_up) {
            snprintf(why, why_size, "kafka brokers unreachable for %lld s",
                     (long long)((lt_now_ms() - hs.down_since_ms) / 1000));
            return 0;
        }
    }
    return lt_ready_probe_check(o ? o->probe : NULL, why, why_size);
}

void lt_worker_obs_gmail_quota(lt_worker_obs_t *o, const char *project, int64_t units,
                               int64_t quota_user, int64_t quota_project, int64_t rate_cuts,
                               int64_t day_units, int alert, int paused)
{
    if (!o || !o->reg)
        return;
    const char *p[1] = {project && project[0] ? project : "unknown"};
    lt_series_add(lt_metric_get_n(o->g_units, p, 1), (double)units);
    const char *ku[2] = {p[0], "user"}, *kp[2] = {p[0], "project"};
    lt_series_add(lt_metric_get_n(o->g_quota, ku, 2), (double)quota_user);
    lt_series_add(lt_metric_get_n(o->g_quota, kp, 2), (double)quota_project);
    lt_series_add(lt_metric_get_n(o->g_cuts, p, 1), (double)rate_cuts);
    if (day_units >= 0) {
        lt_metric_set_n(o->g_day, (double)day_units, p, 1);
        lt_metric_set_n(o->g_alert, alert, p, 1);
    }
    lt_metric_set_n(o->g_paused, paused, p, 1);
}

void lt_worker_obs_gmail_share(lt_worker_obs_t *o, double share)
{
    if (!o || !o->reg)
        return;
    lt_series_set(o->g_share, share);
}
