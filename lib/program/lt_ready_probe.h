/* lt_ready_probe: the /readyz answer of a Kafka consumer that needs
 * Postgres to be useful (parser, worker): ready once the consumer has had
 * its first partition assignment (lt_ready_probe_assigned; zero partitions
 * count) and while Postgres answers.
 *
 * A probe keeps one small connection of its own (connect_timeout 3 s,
 * application_name as given) and runs "SELECT 1" at most once per
 * LT_READY_PROBE_EVERY_MS; between runs it answers the cached result. A broken
 * connection is dropped and reconnected at the next run. Thread-safe: the
 * HTTP thread and the scrape callback may ask at the same time. */
#ifndef LT_READY_PROBE_H
#define LT_READY_PROBE_H

#include <stddef.h>

#define LT_READY_PROBE_EVERY_MS 5000

typedef struct lt_ready_probe lt_ready_probe_t;

/* Copies dsn, password (may be NULL), application_name and group_id (named
 * in the "not ready" reason; NULL: no assignment is awaited); connects
 * lazily. */
lt_ready_probe_t *lt_ready_probe_new(const char *dsn, const char *password,
                                     const char *application_name, const char *group_id);

/* The consumer got an assignment (from its rebalance callback). */
void lt_ready_probe_assigned(lt_ready_probe_t *p);

/* Closes the connection and wipes the copied password. NULL is a no-op. */
void lt_ready_probe_destroy(lt_ready_probe_t *p);

/* 1 if assigned and Postgres answered at the last run; else 0 and why gets
 * "no partition assignment yet (joining consumer group G)" or
 * "Postgres: <reason>". NULL p: 0, "starting". */
int lt_ready_probe_check(lt_ready_probe_t *p, char *why, size_t why_size);

#endif
