/* lt_parser: lattice-mail-parser, the consumer of lattice.mail.raw.v1 that
 * writes one emails row per message, and of lattice.mail.change.v1 that
 * applies mailbox changes to those rows (docs/parser.md).
 *
 * Loop: one consumer subscribed to both topics polls a batch
 * (LATTICE_PARSER_BATCH_MESSAGES or LATTICE_PARSER_BATCH_WAIT_MS), fetches
 * and parses its messages and decodes its changes on
 * LATTICE_PARSER_CONCURRENCY threads, dead-letters what cannot be stored,
 * upserts the rows and applies the changes in one Postgres transaction (a
 * change for a message not stored yet is kept pending and applied with the
 * message's row), then commits the batch's offsets (at-least-once; upserts
 * and changes are idempotent, so a replay is harmless). A temporary failure
 * (Postgres, S3, registry, DLQ) rewinds the batch's partitions and redoes it
 * after a backoff; nothing is committed before it is durable.
 *
 * Ownership: the parser borrows cfg and obs (they must outlive the parser)
 * and owns every client it creates. lt_parser_stop() only sets a flag: it
 * may be called from a signal handler. */
#ifndef LT_PARSER_H
#define LT_PARSER_H

#include <stddef.h>
#include <stdint.h>

#include "lt_config.h"
#include "lt_err.h"
#include "lt_parser_obs.h"

typedef struct lt_parser_s lt_parser_t;

/* Connect to Postgres (and check the emails table exists), create the
 * Kafka consumer (group LATTICE_PARSER_GROUP_ID, read_committed) and the
 * DLQ producer (checks LATTICE_PARSER_DLQ_TOPIC exists), the registry and
 * S3 clients. obs: where the metrics and the assignment go (NULL: none).
 * NULL with errstr on failure. */
lt_parser_t *lt_parser_new(const lt_config_t *cfg, lt_parser_obs_t *obs, char *errstr,
                           size_t errstr_size);

/* Consume until lt_parser_stop(); the batch in hand is finished and
 * committed, then the consumer leaves the group. LT_OK on a clean stop. */
lt_err_t lt_parser_run(lt_parser_t *p, char *errstr, size_t errstr_size);

void lt_parser_stop(lt_parser_t *p);

/* Totals since start, for the parser's own thread (its log lines, tests);
 * other threads read the metrics (lt_parser_obs.h). */
typedef struct {
    uint64_t events;          /* records handled (rows + changes + dead letters) */
    uint64_t rows;            /* rows upserted */
    uint64_t parse_errors;    /* of them with parse_error */
    uint64_t changes;         /* mail.change.v1 records applied (any result) */
    uint64_t changes_pending; /* of them kept pending (no row yet) */
    uint64_t pending_applied; /* pending changes applied when their row came */
    uint64_t dead_letters; /* records sent to the DLQ */
    uint64_t batches;      /* batches committed */
    uint64_t retries;      /* batches redone after a temporary failure */
} lt_parser_stats_t;

void lt_parser_stats(const lt_parser_t *p, lt_parser_stats_t *out);

void lt_parser_destroy(lt_parser_t *p);

#endif
