/* lt_worker_obs: the worker's observability — its metrics (handles made
 * once, docs/observability.md), progress reports of long commands (log line,
 * gauges, "running" status event) and its readiness.
 *
 * Every function accepts a NULL lt_worker_obs_t (no-op): the worker runs
 * without it in tests. Thread-safe: slots call it concurrently, the HTTP
 * thread calls lt_worker_obs_ready().
 *
 * Ownership: the registry, cfg, producer and dispatch queue are borrowed for
 * the object's lifetime. */
#ifndef LT_WORKER_OBS_H
#define LT_WORKER_OBS_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "lt_command.h"
#include "lt_config.h"
#include "lt_dispatch.h"
#include "lt_err.h"
#include "lt_kafka.h"
#include "lt_metrics.h"
#include "lt_sync.h"

typedef struct lt_worker_obs_s lt_worker_obs_t;

/* registry NULL: readiness and progress logs only, no metrics. producer:
 * for the "running" status events (NULL: none). */
lt_worker_obs_t *lt_worker_obs_new(lt_metrics_t *registry, const lt_config_t *cfg,
                                   const char *worker_id, rd_kafka_t *producer,
                                   lt_dispatch_t *dispatch, int nslots);
void lt_worker_obs_destroy(lt_worker_obs_t *o);

/* A command ended (the status event it got): result "succeeded", "partial",
 * "failed", "dead_lettered"; cmd NULL when it did not parse. */
void lt_worker_obs_command(lt_worker_obs_t *o, const lt_command_t *cmd, const char *result,
                           lt_err_t err, int64_t duration_ms);
/* An attempt ended without a result: "retried" (backoff) or "cancelled"
 * (shutdown, revoke); "skipped" (already done). */
void lt_worker_obs_attempt(lt_worker_obs_t *o, const lt_command_t *cmd, const char *result,
                           lt_err_t err, int64_t duration_ms);
/* One scope's result in a command's final status event: "ok", "failed",
 * "missing" (err: its class, LT_OK when ok). */
void lt_worker_obs_scope(lt_worker_obs_t *o, const lt_command_t *cmd, const char *result,
                         lt_err_t err);
/* An S3 request was given up as stalled (LATTICE_S3_LOW_SPEED_TIME_S). */
void lt_worker_obs_s3_stall(lt_worker_obs_t *o);
/* A SlowDown answer of the store (slowed 1: counted; the first of a spell is
 * logged) or a success after one (slowed 0: the end of the spell, logged). */
void lt_worker_obs_s3_slowdown(lt_worker_obs_t *o, const char *what, int slowed);
/* The consumer group's partitions of the command topic owned by no member
 * (last reading of the group watch), and a rejoin made for them. */
void lt_worker_obs_group_unowned(lt_worker_obs_t *o, int unowned);
void lt_worker_obs_group_rejoin(lt_worker_obs_t *o);
/* A command was written to the dead-letter topic. */
void lt_worker_obs_dead_letter(lt_worker_obs_t *o);
/* Fetching from the command topic paused (1: the in-memory queue is full)
 * or resumed (0). */
void lt_worker_obs_paused(lt_worker_obs_t *o, int paused);
/* A slot starts (running = 1) or ends (0) a command. */
void lt_worker_obs_slot(lt_worker_obs_t *o, int slot, int running);
/* After a rebalance callback: the assignment size, and readiness. */
void lt_worker_obs_rebalance(lt_worker_obs_t *o, rd_kafka_t *consumer, rd_kafka_resp_err_t why);

/* A Gmail command's quota figures: its units and quota answers (user,
 * project), the project's units today (UTC, all workers; -1 unknown), 1
 * when that is over the alert share, 1 when the project is paused. */
void lt_worker_obs_gmail_quota(lt_worker_obs_t *o, const char *project, int64_t units,
                               int64_t quota_user, int64_t quota_project, int64_t rate_cuts,
                               int64_t day_units, int alert, int paused);
/* This worker's share of every Gmail project's per-minute limit. */
void lt_worker_obs_gmail_share(lt_worker_obs_t *o, double share);

/* Fill env's metrics and progress members for a command about to run on
 * `slot` (traceparent may be NULL: used on the "running" events). */
void lt_worker_obs_sync_env(lt_worker_obs_t *o, int slot, const lt_command_t *cmd,
                            const char *traceparent, int attempt, lt_sync_env_t *env);

/* The worker's Kafka clients' health (borrowed; NULL: none): exported as
 * metrics at each scrape, and part of readiness. */
void lt_worker_obs_kafka_health(lt_worker_obs_t *o, lt_kafka_health_t *health);

/* Readiness: the worker has had its first partition assignment (zero
 * partitions count: an idle member of a group larger than the partition
 * count is healthy), Postgres answers (a probe connection, checked at
 * most every 5 s) and the Kafka brokers are reachable (not in an outage
 * its clients reported, lt_kafka_health_t). 0 with the reason in why. */
int lt_worker_obs_ready(lt_worker_obs_t *o, char *why, size_t why_size);

#endif
