/* lattice-mail-parser: mail.raw.v1 events to rows of the emails table,
 * mail.change.v1 events applied to them. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "lt_config.h"
#include "lt_http.h"
#include "lt_log.h"
#include "lt_metrics.h"
#include "lt_mime.h"
#include "lt_parser.h"
#include "lt_program.h"

static lt_parser_t *g_parser; /* for the signal handler only */
static atomic_int g_stopping; /* /readyz: 503 "stopping" from SIGTERM on */

/* /readyz: the first partition assignment and Postgres (lt_parser_obs.h),
 * not while stopping. */
static int parser_ready(void *opaque, char *why, size_t why_size)
{
    if (atomic_load(&g_stopping)) {
        snprintf(why, why_size, "stopping");
        return 0;
    }
    return lt_parser_obs_ready(opaque, why, why_size);
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_stopping, 1);
    if (g_parser)
        lt_parser_stop(g_parser);
}

static void usage(FILE *out)
{
    fputs("usage: lattice-mail-parser [--help] [--version]\n\n"
          "Consumes mail.raw.v1 events (Avro) from LATTICE_TOPIC_RAW, read_committed, as a\n"
          "member of the consumer group LATTICE_PARSER_GROUP_ID. For each event it reads the\n"
          "raw .eml from S3, parses it (headers, text body) and upserts one row of the emails\n"
          "table (idempotent on tenant, account and provider message id; full-text search\n"
          "column fts). It also consumes mail.change.v1 events from LATTICE_TOPIC_CHANGES\n"
          "(same group) and applies them to the rows: deleted, flags, labels; a change for\n"
          "a message not stored yet waits in emails_changes_pending for its row. Offsets\n"
          "are committed after the rows are durable. Undecodable records go to\n"
          "LATTICE_PARSER_DLQ_TOPIC; a missing or unparseable .eml gives a row with\n"
          "parse_error (docs/parser.md). SIGTERM/SIGINT finish the batch and exit 0.\n\n",
          out);
    lt_config_print_help(out, LT_PROG_PARSER);
}

int main(int argc, char **argv)
{
    int st = lt_program_args(argc, argv, "lattice-mail-parser", usage);
    if (st >= 0)
        return st;
    lt_config_t *cfg = lt_program_config("lattice-mail-parser", LT_PROG_PARSER);
    if (!cfg)
        return 2;
    char err[4096];
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lt_mime_global_init();
    int rc = 0;
    lt_metrics_t *metrics = lt_metrics_new(); /* docs/observability.md */
    lt_parser_obs_t *obs = lt_parser_obs_new(metrics, cfg);
    lt_http_t *http = NULL;
    if (lt_program_http(cfg,
                        &(lt_program_http_t){.name = "lattice-mail-parser",
                                             .metrics = metrics,
                                             .ready = parser_ready,
                                             .ready_opaque = obs},
                        &http, err, sizeof(err))) {
        lt_error(NULL, "cannot start: %s", err);
        rc = 1;
        goto out;
    }
    g_parser = lt_parser_new(cfg, obs, err, sizeof(err));
    if (!g_parser) {
        lt_error(NULL, "cannot start: %s", err);
        rc = 1;
        goto out;
    }
    lt_program_on_stop(on_signal);
    if (lt_parser_run(g_parser, err, sizeof(err))) {
        lt_error(NULL, "%s", err);
        rc = 1;
    }
out:
    lt_http_stop(http);
    lt_parser_destroy(g_parser);
    g_parser = NULL;
    lt_parser_obs_destroy(obs);
    lt_metrics_destroy(metrics);
    lt_mime_global_shutdown();
    curl_global_cleanup();
    lt_config_destroy(cfg);
    return rc;
}
