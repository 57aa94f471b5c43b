/* lattice-watcher: turns IMAP IDLE notifications into incremental sync
 * commands within a second (lt_watcher.h does the work). */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

#include "lt_config.h"
#include "lt_http.h"
#include "lt_log.h"
#include "lt_metrics.h"
#include "lt_program.h"
#include "lt_watcher.h"

static lt_watcher_t *g_watcher; /* for the signal handler only */
static atomic_int g_stopping;

static int watcher_ready(void *opaque, char *why, size_t why_size)
{
    (void)opaque;
    if (atomic_load(&g_stopping)) {
        snprintf(why, why_size, "stopping");
        return 0;
    }
    if (!g_watcher) {
        snprintf(why, why_size, "starting");
        return 0;
    }
    return lt_watcher_ready(g_watcher, why, why_size);
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_stopping, 1);
    if (g_watcher)
        lt_watcher_stop(g_watcher);
}

static void usage(FILE *out)
{
    fputs("usage: lattice-watcher [--help] [--version]\n\n"
          "Holds one IMAP IDLE connection per watched account and push folder (config_json\n"
          "\"push_folders\", default [\"INBOX\"]) and, when the server reports a change (new,\n"
          "expunged or re-flagged mail) or after a (re)connect, produces one incremental sync\n"
          "command for the account on LATTICE_TOPIC_COMMANDS (key = account_id, scope = the\n"
          "folder), debounced by LATTICE_WATCHER_DEBOUNCE_MS. An account whose previous\n"
          "command is still queued or running gets none until it ends (then one). Replicas\n"
          "share the accounts through the consumer group LATTICE_WATCHER_GROUP_ID on the\n"
          "commands topic: each watches the accounts whose key falls in its partitions.\n"
          "With LATTICE_WATCHER_GMAIL_TOPIC, Gmail accounts get users.watch and a Pub/Sub\n"
          "push endpoint (LATTICE_WATCHER_GMAIL_PUSH_*) turns their notifications into\n"
          "commands the same way (docs/gmail-push.md).\n"
          "Runs until SIGTERM/SIGINT (exit 0). docs/watcher.md.\n"
          "Exit status: 0 stopped, 1 could not start, 2 bad usage or configuration.\n\n",
          out);
    lt_config_print_help(out, LT_PROG_WATCHER);
}

int main(int argc, char **argv)
{
    int rc = lt_program_args(argc, argv, "lattice-watcher", usage);
    if (rc >= 0)
        return rc;
    lt_config_t *cfg = lt_program_config("lattice-watcher", LT_PROG_WATCHER);
    if (!cfg)
        return 2;
    char err[4096];
    lt_metrics_t *metrics = lt_metrics_new();
    lt_http_t *http = NULL;
    lt_watcher_t *w = NULL;
    rc = 1;
    signal(SIGPIPE, SIG_IGN);
    lt_program_on_stop(on_signal);
    if (lt_program_http(cfg,
                        &(lt_program_http_t){
                            .name = "lattice-watcher", .metrics = metrics, .ready = watcher_ready},
                        &http, err, sizeof(err))) {
        lt_error(NULL, "cannot start: %s", err);
        goto out;
    }
    w = lt_watcher_new(cfg, metrics, err, sizeof(err));
    if (!w) {
        lt_error(NULL, "cannot start: %s", err);
        goto out;
    }
    g_watcher = w;
    if (atomic_load(&g_stopping))
        lt_watcher_stop(w);
    rc = lt_watcher_run(w, err, sizeof(err)) ? 1 : 0;
    if (rc)
        lt_error(NULL, "%s", err);
out:
    lt_http_stop(http);
    g_watcher = NULL;
    lt_watcher_destroy(w);
    lt_metrics_destroy(metrics);
    lt_config_destroy(cfg);
    return rc;
}
