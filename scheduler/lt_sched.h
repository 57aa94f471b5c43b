/* lt_sched: lattice-scheduler's run: read the enabled accounts from
 * mail_accounts and produce one incremental command per account and scope
 * on the commands topic (key = account_id, traceparent in the command and
 * as a header), skipping accounts that are not active or still have a
 * command in flight (lt_issued.h), and recording what was issued.
 *
 * One run:
 *   1. the run lock for the filters (another scheduler holds it: nothing
 *      is done, stats.locked_out = 1);
 *   2. prune stale issued rows; load the accounts in flight;
 *   3. stream the enabled accounts (constant memory); per batch of commands:
 *      record them as issued, then produce them (idempotent producer);
 *   4. flush and check every delivery report; failed deliveries are
 *      forgotten again (so the next run retries them) and counted as errors.
 * Dry run: steps 2-3 without writing anything; the commands are printed
 * as JSON lines to opts.dry_run_out instead.
 *
 * Ownership: lt_sched_t owns its two Postgres connections (one streams the
 * accounts, one writes) and its producer. One thread; lt_sched_stop() may
 * be called from a signal handler. */
#ifndef LT_SCHED_H
#define LT_SCHED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lt_config.h"
#include "lt_err.h"
#include "lt_metrics.h"

typedef struct lt_sched_s lt_sched_t;

/* Strings and the registry borrowed for the life of the lt_sched_t. */
typedef struct {
    const char *provider;     /* filter; NULL = all */
    const char *tenant;       /* filter; NULL = all */
    const char *topic;        /* commands topic */
    const char *requested_by; /* "scheduler" */
    int stale_after_s;        /* > 0 */
    int per_scope;            /* 1: one command per configured scope */
    int flush_timeout_s;      /* wait for delivery reports at most this long */
    int dry_run;              /* print, write nothing (no producer is made) */
    FILE *dry_run_out;        /* where a dry run prints (stdout when NULL) */
    lt_metrics_t *metrics;    /* run metrics (docs/observability.md); NULL: none */
} lt_sched_opts_t;

typedef struct {
    uint64_t accounts_seen;     /* enabled accounts listed */
    uint64_t commands_sent;     /* delivered (dry run: printed) */
    uint64_t skipped_in_flight; /* accounts with a command in flight */
    uint64_t skipped_inactive;  /* accounts whose status is not active */
    uint64_t errors;            /* commands not built, not produced or not delivered */
    uint64_t pruned;            /* stale issued rows deleted */
    int locked_out;             /* another scheduler held the run lock */
    int interrupted;            /* lt_sched_stop() during the run */
    double seconds;             /* wall time of the run */
    double record_seconds;      /* of which recording issued commands */
    double deliver_seconds;     /* of which waiting for the last delivery reports */
} lt_sched_stats_t;

/* Connect to Postgres (LATTICE_PG_*) and, unless dry_run, make the
 * producer (LATTICE_KAFKA_*) and check the topic exists. NULL with the
 * reason in errstr. */
lt_sched_t *lt_sched_new(const lt_config_t *cfg, const lt_sched_opts_t *opts, char *errstr,
                         size_t errstr_size);
void lt_sched_destroy(lt_sched_t *s);

/* One run (see above). LT_OK when the run went through (look at
 * stats->errors for per-command failures); otherwise the failure that
 * stopped it (database or Kafka unavailable: TEMPORARY). Stats are filled
 * either way and logged as one summary line. */
lt_err_t lt_sched_run_once(lt_sched_t *s, lt_sched_stats_t *stats, char *errstr,
                           size_t errstr_size);

/* Run every interval_s seconds (measured from the start of each run) until
 * lt_sched_stop(). A failed run is logged and retried at the next tick;
 * broken connections are re-established. LT_OK on a requested stop. */
lt_err_t lt_sched_run_every(lt_sched_t *s, int interval_s, char *errstr, size_t errstr_size);

/* Async-signal-safe: the current run stops producing new commands (those
 * already produced are still flushed and checked) and the loop ends. */
void lt_sched_stop(lt_sched_t *s);

#endif
