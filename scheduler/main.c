/* lattice-scheduler: emits incremental sync commands for the enabled
 * accounts (lt_sched.h does the work). */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

#include "lt_accounts.h"
#include "lt_config.h"
#include "lt_http.h"
#include "lt_log.h"
#include "lt_metrics.h"
#include "lt_program.h"
#include "lt_sched.h"
#include "lt_sched_plan.h"

static lt_sched_t *g_sched; /* for the signal handler only */
static atomic_int g_ready;  /* /readyz: 1 from lt_sched_new() until SIGTERM */

static int sched_ready(void *opaque, char *why, size_t why_size)
{
    int r = atomic_load(&g_ready);
    if (r != 1)
        snprintf(why, why_size, "%s", r ? "stopping" : "starting");
    return r == 1;
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_ready, 2);
    if (g_sched)
        lt_sched_stop(g_sched);
}

static void usage(FILE *out)
{
    fputs("usage: lattice-scheduler [--once | --interval SECONDS] [--provider gmail|imap]\n"
          "                         [--tenant TENANT] [--dry-run] [--help] [--version]\n\n"
          "Reads the enabled accounts from Postgres (mail_accounts) and produces one\n"
          "incremental sync command per account and configured scope on\n"
          "LATTICE_TOPIC_COMMANDS (JSON, key = account_id, traceparent header). An account\n"
          "whose previous command is still in flight (issued but not started, or running\n"
          "with a fresh heartbeat; LATTICE_SCHEDULER_STALE_AFTER_S) or whose status is not\n"
          "active gets none. Logs one summary line per run.\n\n"
          "  --once              one run, then exit: 0 when every command was delivered,\n"
          "                      1 otherwise (for a Kubernetes CronJob)\n"
          "  --interval SECONDS  a run every SECONDS until SIGTERM/SIGINT (exit 0)\n"
          "                      (neither: LATTICE_SCHEDULER_INTERVAL_S, 0 = once)\n"
          "  --provider P        only accounts of provider P (LATTICE_SCHEDULER_PROVIDER)\n"
          "  --tenant T          only accounts of tenant T (LATTICE_SCHEDULER_TENANT)\n"
          "  --dry-run           print the commands (one JSON per line) instead of sending\n"
          "                      them; writes nothing\n"
          "Exit status: 0 success, 1 a run failed or a command was not delivered, 2 bad usage\n"
          "or configuration.\n\n",
          out);
    lt_config_print_help(out, LT_PROG_SCHEDULER);
}

int main(int argc, char **argv)
{
    char err[4096];
    lt_sched_args_t args;
    if (lt_sched_args_parse(argc, argv, &args, err, sizeof(err))) {
        fprintf(stderr, "lattice-scheduler: %s\n\n", err);
        usage(stderr);
        return 2;
    }
    if (args.help) {
        usage(stdout);
        return 0;
    }
    if (args.version) {
        printf("lattice-scheduler %s\n", LT_VERSION);
        return 0;
    }
    lt_config_t *cfg = lt_program_config("lattice-scheduler", LT_PROG_SCHEDULER);
    if (!cfg)
        return 2;
    const lt_settings_t *set = lt_config_settings(cfg);
    int rc = 2;
    lt_metrics_t *metrics = NULL;
    lt_http_t *http = NULL;
    lt_sched_opts_t opts = {
        .provider = args.provider ? args.provider : set->scheduler.provider,
        .tenant = args.tenant ? args.tenant : set->scheduler.tenant,
        .topic = set->topic.commands,
        .requested_by = "scheduler",
        .stale_after_s = set->scheduler.stale_after_s,
        .per_scope = set->scheduler.per_scope,
        .flush_timeout_s = set->scheduler.flush_timeout_s,
        .dry_run = args.dry_run,
    };
    if (opts.tenant && !lt_account_id_valid(opts.tenant)) {
        fprintf(stderr, "lattice-scheduler: LATTICE_SCHEDULER_TENANT: not a tenant id\n");
        goto out;
    }
    int interval = args.once ? 0 : args.interval_s ? args.interval_s : set->scheduler.interval_s;
    signal(SIGPIPE, SIG_IGN);
    /* --interval: /metrics, /healthz, /readyz (docs/observability.md) */
    metrics = lt_metrics_new();
    opts.metrics = metrics;
    if (lt_program_http(cfg,
                        &(lt_program_http_t){
                            .name = "lattice-scheduler", .metrics = metrics, .ready = sched_ready},
                        &http, err, sizeof(err))) {
        lt_error(NULL, "cannot start: %s", err);
        rc = 1;
        goto out;
    }
    g_sched = lt_sched_new(cfg, &opts, err, sizeof(err));
    if (!g_sched) {
        lt_error(NULL, "cannot start: %s", err);
        rc = 1;
        goto out;
    }
    lt_program_on_stop(on_signal);
    int zero = 0;
    atomic_compare_exchange_strong(&g_ready, &zero, 1);
    if (interval > 0) {
        rc = lt_sched_run_every(g_sched, interval, err, sizeof(err)) ? 1 : 0;
        if (rc)
            lt_error(NULL, "%s", err);
    } else {
        lt_sched_stats_t st;
        if (lt_sched_run_once(g_sched, &st, err, sizeof(err))) {
            lt_error(NULL, "run failed: %s", err);
            rc = 1;
        } else {
            rc = st.errors || st.interrupted ? 1 : 0;
        }
    }
out:
    lt_http_stop(http);
    lt_metrics_destroy(metrics);
    lt_sched_destroy(g_sched);
    g_sched = NULL;
    lt_config_destroy(cfg);
    return rc;
}
