/* lattice-worker: executes sync commands from lattice.mail.sync.cmd.v1. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "lt_config.h"
#include "lt_http.h"
#include "lt_log.h"
#include "lt_metrics.h"
#include "lt_mime.h"
#include "lt_program.h"
#include "lt_worker.h"

static lt_worker_t *g_worker; /* for the signal handler only */

/* /readyz: "starting" until the worker exists (the endpoint starts first). */
static int worker_ready(void *opaque, char *why, size_t why_size)
{
    lt_worker_t *w = atomic_load((_Atomic(lt_worker_t *) *)opaque);
    if (!w) {
        snprintf(why, why_size, "starting");
        return 0;
    }
    return lt_worker_ready(w, why, why_size);
}

static void on_signal(int sig)
{
    (void)sig;
    if (g_worker)
        lt_worker_stop(g_worker);
}

static void usage(FILE *out)
{
    fputs("usage: lattice-worker [--help] [--version]\n\n"
          "Consumes sync commands (JSON) from LATTICE_TOPIC_COMMANDS as a member of the\n"
          "consumer group LATTICE_WORKER_GROUP_ID and executes each once: fetches new mail\n"
          "(IMAP, Gmail), stores raw messages and attachments in S3, publishes mail.raw.v1\n"
          "events and moves watermarks with the Kafka transaction (docs/delivery-protocol.md).\n"
          "SIGTERM/SIGINT drain running commands and exit 0 (exit 1 when the stop outlasts\n"
          "LATTICE_WORKER_SHUTDOWN_TIMEOUT_S). A Kafka client that cannot be created ends\n"
          "the process with exit 1.\n\n",
          out);
    lt_config_print_help(out, LT_PROG_WORKER);
}

int main(int argc, char **argv)
{
    int st = lt_program_args(argc, argv, "lattice-worker", usage);
    if (st >= 0)
        return st;
    lt_config_t *cfg = lt_program_config("lattice-worker", LT_PROG_WORKER);
    if (!cfg)
        return 2;
    char err[4096];
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    signal(SIGPIPE, SIG_IGN);
    lt_mime_global_init();
    int rc = 0;
    lt_metrics_t *metrics = lt_metrics_new();
    lt_http_t *http = NULL;
    _Atomic(lt_worker_t *) ready_worker = NULL;
    if (lt_program_http(cfg,
                        &(lt_program_http_t){.name = "lattice-worker",
                                             .metrics = metrics,
                                             .ready = worker_ready,
                                             .ready_opaque = &ready_worker},
                        &http, err, sizeof(err))) {
        lt_error(NULL, "cannot start: %s", err);
        rc = 1;
        goto out;
    }
    if (http)
        lt_info(NULL, "metrics on http://%s:%d/metrics", lt_config_settings(cfg)->metrics.bind,
                lt_http_port(http));
    g_worker = lt_worker_new(cfg, err, sizeof(err));
    if (!g_worker) {
        lt_error(NULL, "cannot start: %s", err);
        rc = 1;
        goto out;
    }
    lt_worker_set_metrics(g_worker, metrics);
    atomic_store(&ready_worker, g_worker);
    lt_program_on_stop(on_signal);
    if (lt_worker_run(g_worker, err, sizeof(err))) {
        lt_error(NULL, "%s", err);
        rc = 1;
    }
out:
    lt_http_stop(http);
    lt_worker_destroy(g_worker);
    lt_metrics_destroy(metrics);
    g_worker = NULL;
    lt_mime_global_shutdown();
    lt_config_destroy(cfg);
    return rc;
}
