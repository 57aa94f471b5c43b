#include "lt_parser_obs.h"

#include <stdio.h>
#include <stdlib.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_ready_probe.h"

struct lt_parser_obs_s {
    lt_metric_t *parse_errors, *dead_letters, *changes, *pending_applied;
    lt_series_t *pending_purged;
    lt_series_t *events, *rows, *bytes, *batches, *duration, *retries, *assigned, *last_commit,
        *ready;

    lt_ready_probe_t *probe;
};

static void on_scrape(void *opaque)
{
    lt_parser_obs_t *o = opaque;
    char why[256];
    lt_series_set(o->ready, lt_parser_obs_ready(o, why, sizeof(why)));
}

lt_parser_obs_t *lt_parser_obs_new(lt_metrics_t *reg, const lt_config_t *cfg)
{
    lt_parser_obs_t *o = lt_xcalloc(1, sizeof(*o));
    const lt_settings_t *set = lt_config_settings(cfg);
    o->probe = lt_ready_probe_new(set->pg.dsn, set->pg.password, "lattice-mail-parser-readiness",
                                  set->parser.group_id);

    o->events = lt_metric_series(lt_metrics_counter(
        reg, "lattice_parser_events_consumed_total",
        "mail.raw.v1 records handled in committed batches (rows + dead letters; change records: "
        "lattice_parser_changes_total).",
        NULL));
    o->rows = lt_metric_series(lt_metrics_counter(reg, "lattice_parser_rows_upserted_total",
                                                  "Rows upserted into the emails table.", NULL));
    o->parse_errors =
        lt_metrics_counter(reg, "lattice_parser_parse_errors_total",
                           "Rows stored with parse_error, by error class.", "error_class");
    o->dead_letters = lt_metrics_counter(
        reg, "lattice_parser_dead_letters_total",
        "Records written to LATTICE_PARSER_DLQ_TOPIC, by reason: empty, unknown_schema, "
        "undecodable, foreign_object, no_row, row_refused.",
        "reason");
    o->changes = lt_metrics_counter(
        reg, "lattice_parser_changes_total",
        "mail.change.v1 records applied, by kind (deleted, flags, labels, reset) and result: "
        "applied, same (nothing to change; every reset), stale (older than the row's state), "
        "pending (no row yet: kept in emails_changes_pending), unknown (no row, and a newer "
        "change of the kind is already pending).",
        "kind,result");
    o->pending_applied = lt_metrics_counter(
        reg, "lattice_parser_pending_changes_applied_total",
        "Pending changes applied when their message's row was written, by kind and result.",
        "kind,result");
    o->pending_purged = lt_metric_series(lt_metrics_counter(
        reg, "lattice_parser_pending_changes_purged_total",
        "Pending changes purged after LATTICE_PARSER_PENDING_RETENTION_S (their message never "
        "came).",
        NULL));
    o->bytes = lt_metric_series(
        lt_metrics_counter(reg, "lattice_parser_s3_bytes_read_total",
                           "Bytes of raw messages read from S3 (redone batches included).", NULL));
    o->batches = lt_metric_series(lt_metrics_counter(reg, "lattice_parser_batches_total",
                                                     "Batches whose rows are durable.", NULL));
    double b[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    o->duration = lt_metric_series(
        lt_metrics_histogram(reg, "lattice_parser_batch_duration_seconds",
                             "Batch time from fetch and parse to the offset commit, seconds.", NULL,
                             b, sizeof(b) / sizeof(b[0])));
    o->retries = lt_metric_series(lt_metrics_counter(
        reg, "lattice_parser_batch_retries_total",
        "Batches redone after a temporary failure (Postgres, S3, registry, DLQ).", NULL));
    o->assigned = lt_metric_series(
        lt_metrics_gauge(reg, "lattice_parser_assigned_partitions",
                         "Partitions of the raw and change topics assigned to this parser.", NULL));
    o->last_commit = lt_metric_series(
        lt_metrics_gauge(reg, "lattice_parser_last_commit_timestamp_seconds",
                         "Unix time of the last successful offset commit (0: none yet).", NULL));
    o->ready = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_parser_ready", "1 when /readyz answers 200 (at the last scrape).", NULL));
    if (reg)
        lt_metrics_on_scrape(reg, on_scrape, o);
    return o;
}

void lt_parser_obs_destroy(lt_parser_obs_t *o)
{
    if (!o)
        return;
    lt_ready_probe_destroy(o->probe);
    free(o);
}

void lt_parser_obs_s3_read(lt_parser_obs_t *o, uint64_t bytes)
{
    if (o)
        lt_series_add(o->bytes, (double)bytes);
}

void lt_parser_obs_row(lt_parser_obs_t *o, const char *parse_error_class)
{
    if (!o)
        return;
    lt_series_inc(o->rows);
    if (parse_error_class)
        lt_series_inc(lt_metric_get(o->parse_errors, parse_error_class));
}

void lt_parser_obs_dead_letter(lt_parser_obs_t *o, const char *reason)
{
    if (o)
        lt_series_inc(lt_metric_get(o->dead_letters, reason ? reason : "unknown"));
}

void lt_parser_obs_batch(lt_parser_obs_t *o, size_t records, double seconds, int committed)
{
    if (!o)
        return;
    lt_series_add(o->events, (double)records);
    lt_series_inc(o->batches);
    lt_series_observe(o->duration, seconds);
    if (committed)
        lt_series_set(o->last_commit, lt_wall_s());
}

void lt_parser_obs_change(lt_parser_obs_t *o, const char *kind, const char *result)
{
    if (o)
        lt_series_inc(lt_metric_get(o->changes, kind ? kind : "?", result ? result : "?"));
}

void lt_parser_obs_pending_applied(lt_parser_obs_t *o, const char *kind, const char *result,
                                   uint64_t n)
{
    if (o)
        lt_series_add(lt_metric_get(o->pending_applied, kind ? kind : "?", result ? result : "?"),
                      (double)n);
}

void lt_parser_obs_pending_purged(lt_parser_obs_t *o, uint64_t n)
{
    if (o)
        lt_series_add(o->pending_purged, (double)n);
}

void lt_parser_obs_retry(lt_parser_obs_t *o)
{
    if (o)
        lt_series_inc(o->retries);
}

void lt_parser_obs_assignment(lt_parser_obs_t *o, int partitions, int assigned)
{
    if (!o)
        return;
    lt_series_set(o->assigned, partitions);
    if (assigned)
        lt_ready_probe_assigned(o->probe);
}

int lt_parser_obs_ready(lt_parser_obs_t *o, char *why, size_t why_size)
{
    return lt_ready_probe_check(o ? o->probe : NULL, why, why_size);
}
