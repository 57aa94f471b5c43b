/* lt_ready_probe: the Postgres half of a /readyz answer, shared by the
 * programs that need the database to be useful (parser, worker).
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

/* Copies dsn, password (may be NULL) and application_name; connects lazily. */
lt_ready_probe_t *lt_ready_probe_new(const char *dsn, const char *password,
                                     const char *application_name);

/* Closes the connection and wipes the copied password. NULL is a no-op. */
void lt_ready_probe_destroy(lt_ready_probe_t *p);

/* 1 if Postgres answered at the last run; else 0 and why gets
 * "Postgres: <reason>". */
int lt_ready_probe_check(lt_ready_probe_t *p, char *why, size_t why_size);

#endif
