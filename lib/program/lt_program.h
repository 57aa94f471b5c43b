/* lt_program: the start-up steps the long-running programs (parser, worker,
 * scheduler) share, so that each main() keeps only what is its own. Only a
 * main() calls these: they print to stdout/stderr and install signal
 * handlers. */
#ifndef LT_PROGRAM_H
#define LT_PROGRAM_H

#include <stddef.h>
#include <stdio.h>

#include "lt_config.h"
#include "lt_err.h"
#include "lt_http.h"
#include "lt_metrics.h"

/* Arguments of a program that takes only --help/-h and --version: -1 to go
 * on; else the exit status (0 after --help or --version, 2 after an unknown
 * argument, with usage on stderr). usage(out) prints the program's help. */
int lt_program_args(int argc, char **argv, const char *name, void (*usage)(FILE *out));

/* Load the settings of program (LT_PROG_*) and set up the logger from
 * LATTICE_LOG_LEVEL / LATTICE_LOG_FORMAT. NULL on failure, after printing
 * "<name>: <reason>" on stderr (the caller exits 2). The caller owns the
 * result (lt_config_destroy). */
lt_config_t *lt_program_config(const char *name, unsigned program);

/* Install handler for SIGTERM and SIGINT (sigaction, no flags). */
void lt_program_on_stop(void (*handler)(int));

/* What a program serves on its HTTP endpoint. A plain value carrier. */
typedef struct {
    const char *name;       /* the program, for lattice_build_info */
    lt_metrics_t *metrics;  /* NULL: /metrics is empty */
    lt_http_ready_fn ready; /* NULL: always ready */
    void *ready_opaque;
} lt_program_http_t;

/* Start /metrics, /healthz and /readyz on LATTICE_METRICS_BIND and
 * LATTICE_METRICS_PORT; *out stays NULL when the port is 0 (disabled). The
 * caller owns *out (lt_http_stop). */
lt_err_t lt_program_http(const lt_config_t *cfg, const lt_program_http_t *serve, lt_http_t **out,
                         char *errstr, size_t errstr_size);

#endif
