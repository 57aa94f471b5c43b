/* lt_worker: the worker process — a consumer of lattice.mail.sync.cmd.v1
 * in a consumer group (cooperative-sticky, no auto-commit) that runs each
 * command once on a pool of slot threads.
 *
 * - Commands of one account never run at once (lt_dispatch queues them per
 *   account; a Postgres advisory lock guards across processes and
 *   rebalances). Different accounts run concurrently (LATTICE_WORKER_CONCURRENCY).
 * - A malformed command, or one for an unknown, disabled or misconfigured
 *   account, goes to the dead-letter topic with the reason; the worker goes on.
 * - Every command ends with a status event on LATTICE_TOPIC_STATUS and its row
 *   in mail_sync_commands (counts, bytes, duration, error class).
 * - Temporary failures are retried with exponential backoff and jitter.
 * - Offsets are committed only up to the lowest command still in flight, and
 *   only after the command's watermark is durable.
 * - lt_worker_stop() (SIGTERM) drains: running commands get
 *   LATTICE_WORKER_DRAIN_TIMEOUT_S to finish, then are abandoned at their
 *   next message (uncommitted work is redone by whoever runs them next). */
#ifndef LT_WORKER_H
#define LT_WORKER_H

#include "lt_config.h"
#include "lt_err.h"
#include "lt_metrics.h"

typedef struct lt_worker_s lt_worker_t;

/* Connects to everything it needs (Kafka, registry; Postgres and S3 per
 * slot). cfg is borrowed for the worker's lifetime. */
lt_worker_t *lt_worker_new(const lt_config_t *cfg, char *errstr, size_t errstr_size);
/* Runs until lt_worker_stop(); returns LT_OK after a clean drain. */
lt_err_t lt_worker_run(lt_worker_t *w, char *errstr, size_t errstr_size);
/* Async-signal-safe. */
void lt_worker_stop(lt_worker_t *w);
/* Record the worker's metrics in `metrics` (docs/observability.md): once,
 * before lt_worker_run(). Borrowed: stop serving it (lt_http_stop) before
 * lt_worker_destroy(), destroy it after. */
void lt_worker_set_metrics(lt_worker_t *w, lt_metrics_t *metrics);
/* For /readyz (any thread): 1 once the worker has its first partition
 * assignment (even of zero partitions: an idle member of a group larger
 * than the partition count is healthy) and Postgres answers; 0 while
 * starting, when Postgres is down, and while stopping, with the reason. */
int lt_worker_ready(lt_worker_t *w, char *why, size_t why_size);
void lt_worker_destroy(lt_worker_t *w);

#endif
