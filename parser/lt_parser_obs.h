/* lt_parser_obs: lattice-mail-parser's metrics (handles made once;
 * docs/observability.md, "Parser metrics") and its readiness.
 *
 * Every function accepts a NULL lt_parser_obs_t (no-op; not ready) and a
 * NULL registry (readiness only, no metrics). Updates come from the
 * parser's thread; lt_parser_obs_ready() and the scrape hook run on the
 * HTTP threads: everything the HTTP side reads is an atomic (lt_metrics
 * series, have_assignment) or under the probe mutex.
 *
 * Ownership: the registry and cfg are borrowed for the object's lifetime. */
#ifndef LT_PARSER_OBS_H
#define LT_PARSER_OBS_H

#include <stddef.h>
#include <stdint.h>

#include "lt_config.h"
#include "lt_metrics.h"

typedef struct lt_parser_obs_s lt_parser_obs_t;

lt_parser_obs_t *lt_parser_obs_new(lt_metrics_t *registry, const lt_config_t *cfg);
void lt_parser_obs_destroy(lt_parser_obs_t *o);

/* Bytes of raw messages read from S3 (every read, also of a batch that is
 * redone later). */
void lt_parser_obs_s3_read(lt_parser_obs_t *o, uint64_t bytes);
/* A row upserted (its batch committed); parse_error_class: lt_err_name() of
 * its parse error, NULL when the message parsed. */
void lt_parser_obs_row(lt_parser_obs_t *o, const char *parse_error_class);
/* A record written to the DLQ; reason: one of the short codes of
 * lt_parser_outcome_t.dlq_reason. */
void lt_parser_obs_dead_letter(lt_parser_obs_t *o, const char *reason);
/* A batch whose rows are durable: its mail.raw.v1 records (rows + dead
 * letters; change records are counted by lt_parser_obs_change), the
 * seconds from the start of its processing to its offset commit, and
 * whether that commit succeeded. */
void lt_parser_obs_batch(lt_parser_obs_t *o, size_t records, double seconds, int committed);
/* A mail.change.v1 record applied (its batch committed): kind "deleted",
 * "flags", "labels" or "reset"; result lt_email_change_result_name()'s. */
void lt_parser_obs_change(lt_parser_obs_t *o, const char *kind, const char *result);
/* n pending changes of kind applied with their row's upsert, by result. */
void lt_parser_obs_pending_applied(lt_parser_obs_t *o, const char *kind, const char *result,
                                   uint64_t n);
/* n pending changes purged after the retention. */
void lt_parser_obs_pending_purged(lt_parser_obs_t *o, uint64_t n);
/* A batch redone after a temporary failure. */
void lt_parser_obs_retry(lt_parser_obs_t *o);
/* After a rebalance callback: the partitions assigned now; assigned = 1 for
 * an assignment (marks the first one, zero partitions included). */
void lt_parser_obs_assignment(lt_parser_obs_t *o, int partitions, int assigned);

/* Readiness: the first partition assignment happened (zero partitions
 * count) and Postgres answers (a probe connection of its own, checked at
 * most every 5 s). 0 with the reason in why. Thread-safe. */
int lt_parser_obs_ready(lt_parser_obs_t *o, char *why, size_t why_size);

#endif
