/* lt_http: the observability endpoint of a program (libmicrohttpd), on
 * LATTICE_METRICS_BIND:LATTICE_METRICS_PORT (docs/observability.md):
 *
 *   GET /metrics  the registry in the Prometheus text format 0.0.4
 *   GET /healthz  200 "ok" while the process serves requests (liveness)
 *   GET /readyz   200 "ready", or 503 with the reason from the ready
 *                 callback (readiness)
 *
 * HEAD is answered like GET; other methods get 405, other paths 404.
 * Requests are served on libmicrohttpd's threads (one per connection, at
 * most 16 at once, 10 s idle timeout), so the callbacks run on them: they
 * must be thread-safe and quick.
 *
 * It also registers lattice_build_info{program,version} (always 1),
 * process_start_time_seconds and lattice_metrics_scrape_duration_seconds in
 * the registry.
 *
 * Ownership: the registry and the callbacks' opaque are borrowed; stop the
 * server (lt_http_stop) before destroying them. */
#ifndef LT_HTTP_H
#define LT_HTTP_H

#include <stddef.h>

#include "lt_err.h"
#include "lt_metrics.h"

typedef struct lt_http_s lt_http_t;

/* 1 when ready; 0 with a one-line reason in why (plain text, no secret). */
typedef int (*lt_http_ready_fn)(void *opaque, char *why, size_t why_size);

typedef struct {
    const char *program; /* for lattice_build_info; NULL: "lattice" */
    const char *bind;    /* address or host name; NULL: 0.0.0.0 */
    int port;            /* 0: any free port (see lt_http_port) */
    lt_metrics_t *metrics;    /* NULL: /metrics is empty */
    lt_http_ready_fn ready;   /* NULL: always ready */
    void *ready_opaque;
} lt_http_opts_t;

/* Bind, listen and serve. NULL with errstr filled when the address cannot
 * be used (e.g. "LATTICE_METRICS_PORT 9464 on 0.0.0.0: Address already in
 * use"): LT_ERR_INVALID for a bad address, LT_ERR_TEMPORARY otherwise. */
lt_http_t *lt_http_start(const lt_http_opts_t *opts, char *errstr, size_t errstr_size);
/* The port listened on. */
int lt_http_port(const lt_http_t *h);
/* Stop serving (waits for requests in progress) and free. NULL is fine. */
void lt_http_stop(lt_http_t *h);

#endif
