/* lattice-gmail-probe: check Gmail credentials and measure the fetch layer.
 *
 *   lattice-gmail-probe --client-id ID --client-secret-env VAR
 *       (--refresh-token-env VAR | --refresh-tokens-file FILE) [--user me]
 *       [--label INBOX | --query Q] [--fetch N] [--api-url URL] [--token-url URL]
 *       [--ca-file PEM] [--max-inflight 8] [--quota UNITS_PER_S]
 *
 * Gets a token, reads the profile, lists the scope and fetches up to N
 * messages (format=raw; 0 = only list) through lt_gmail_client, exactly as
 * the worker does but without storage or Kafka, then prints messages/s and
 * the client's counters. With --refresh-tokens-file (one token per line, one
 * mailbox each) every line is an account probed at the same time, one
 * thread each (the benchmark's fetch-only rows). Defaults come from the
 * settings table (lt_config, programs "tools"): LATTICE_GMAIL_API_URL,
 * LATTICE_GMAIL_TOKEN_URL, LATTICE_TLS_CA_FILE, LATTICE_GMAIL_MAX_INFLIGHT,
 * LATTICE_GMAIL_USER_UNITS_PER_MIN, LATTICE_GMAIL_PROJECT_UNITS_PER_MIN (the
 * deprecated LATTICE_GMAIL_QUOTA_UNITS_PER_S x 60 when set), LATTICE_GMAIL_TIMEOUT_S,
 * LATTICE_GMAIL_MAX_RETRIES, LATTICE_GMAIL_RETRY_BASE_MS; the options
 * override them (--quota: units per second per user, 0 no pacing). The client secret and refresh token are read from the
 * variables the options name (as the worker reads an account's). Never prints a token or message
 * content. Exit 0 when every account succeeded. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_config.h"
#include "lt_gmail_client.h"
#include "lt_log.h"

typedef struct {
    lt_gmail_opts_t o;
    const char *label, *query;
    long fetch;
    /* results */
    lt_err_t err;
    char errstr[512];
    uint64_t history_id;
    long listed, fetched, gone;
    uint64_t bytes;
    double seconds;
    lt_gmail_stats_t st;
} probe_t;

static lt_err_t on_msg(void *opaque, size_t index, lt_err_t status, const lt_gmail_message_t *m,
                       const lt_buf_t *raw, const char *reason)
{
    probe_t *p = opaque;
    if (status == LT_OK) {
        p->fetched++;
        p->bytes += raw ? lt_buf_len(raw) : 0;
    } else {
        p->gone++;
    }
    return LT_OK;
}

static void *probe(void *arg)
{
    probe_t *p = arg;
    double t0 = lt_now_s();
    lt_gmail_t *g = lt_gmail_new(&p->o);
    char **ids = NULL;
    char *token = NULL;
    long n = 0, alloc = 0;
    p->err = lt_gmail_profile(g, &p->history_id, p->errstr, sizeof(p->errstr));
    while (!p->err && (p->fetch == 0 || n < p->fetch)) {
        lt_gmail_page_t page;
        p->err = lt_gmail_list(g, p->label, p->query, token, &page, p->errstr, sizeof(p->errstr));
        free(token);
        token = NULL;
        if (p->err)
            break;
        for (size_t i = 0; i < page.n && (p->fetch == 0 || n < p->fetch); i++) {
            if (n == alloc) {
                alloc = alloc ? alloc * 2 : 1024;
                ids = lt_xrealloc(ids, (size_t)alloc * sizeof(char *));
            }
            ids[n++] = lt_xstrdup(page.refs[i].id);
        }
        token = page.next_page_token;
        page.next_page_token = NULL;
        lt_gmail_page_free(&page);
        if (!token)
            break;
    }
    free(token);
    p->listed = n;
    for (long i = 0; !p->err && p->fetch && i < n; i += 500) {
        long k = n - i < 500 ? n - i : 500;
        p->err =
            lt_gmail_get_many(g, (const char *const *)ids + i, (size_t)k, LT_GMAIL_FORMAT_RAW,
                              &(lt_gmail_message_cb_t){on_msg, p}, p->errstr, sizeof(p->errstr));
    }
    p->seconds = lt_now_s() - t0;
    lt_gmail_stats(g, &p->st);
    lt_gmail_destroy(g);
    for (long i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return NULL;
}

static void usage(FILE *f)
{
    fputs("usage: lattice-gmail-probe --client-id ID --client-secret-env VAR\n"
          "         (--refresh-token-env VAR | --refresh-tokens-file FILE) [--user me]\n"
          "         [--label INBOX | --query Q] [--fetch N] [--api-url URL] [--token-url URL]\n"
          "         [--ca-file PEM] [--max-inflight 8] [--quota UNITS_PER_S]\n",
          f);
}

static int bad_number(const char *opt, const char *v)
{
    fprintf(stderr, "lattice-gmail-probe: %s needs a number >= its minimum, not \"%s\"\n", opt, v);
    return 2;
}

int main(int argc, char **argv)
{
    const char *client_id = NULL, *secret_env = NULL, *rt_env = NULL, *rt_file = NULL;
    char errstr[2048];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            fputs("\n", stdout);
            lt_config_print_help(stdout, LT_PROG_TOOLS);
            return 0;
        }
    }
    lt_config_t *cfg = lt_config_load(LT_PROG_TOOLS, errstr, sizeof(errstr));
    if (!cfg) {
        fprintf(stderr, "lattice-gmail-probe: %s\n", errstr);
        return 2;
    }
    const lt_settings_t *set = lt_config_settings(cfg);
    probe_t base;
    memset(&base, 0, sizeof(base));
    base.o.api_url = set->gmail.api_url;
    base.o.token_url = set->gmail.token_url;
    base.o.ca_file = set->tls_ca_file;
    base.o.user = "me";
    base.o.max_inflight = set->gmail.max_inflight;
    /* the deprecated per-second setting, when given, as per minute */
    base.o.user_units_per_min = set->gmail.quota_units_per_s > 0
                                    ? set->gmail.quota_units_per_s * 60.0
                                    : (double)set->gmail.user_units_per_min;
    base.o.project_units_per_min = (double)set->gmail.project_units_per_min;
    base.o.timeout_s = set->gmail.timeout_s;
    base.o.max_retries = set->gmail.max_retries;
    base.o.retry_base_ms = set->gmail.retry_base_ms;
    base.o.retry_max_ms = 64000;
    base.label = "INBOX";
    base.fetch = 100;
    static const struct option opts[] = {
        {"client-id", required_argument, 0, 'c'},
        {"client-secret-env", required_argument, 0, 's'},
        {"refresh-token-env", required_argument, 0, 'r'},
        {"refresh-tokens-file", required_argument, 0, 'R'},
        {"user", required_argument, 0, 'u'},
        {"label", required_argument, 0, 'l'},
        {"query", required_argument, 0, 'q'},
        {"fetch", required_argument, 0, 'n'},
        {"api-url", required_argument, 0, 'a'},
        {"token-url", required_argument, 0, 't'},
        {"ca-file", required_argument, 0, 'C'},
        {"max-inflight", required_argument, 0, 'i'},
        {"quota", required_argument, 0, 'Q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            client_id = optarg;
            break;
        case 's':
            secret_env = optarg;
            break;
        case 'r':
            rt_env = optarg;
            break;
        case 'R':
            rt_file = optarg;
            break;
        case 'u':
            base.o.user = optarg;
            break;
        case 'l':
            base.label = optarg;
            base.query = NULL;
            break;
        case 'q':
            base.query = optarg;
            base.label = NULL;
            break;
        case 'n':
            base.fetch = atol(optarg);
            break;
        case 'a':
            base.o.api_url = optarg;
            break;
        case 't':
            base.o.token_url = optarg;
            break;
        case 'C':
            base.o.ca_file = optarg;
            break;
        case 'i':
            base.o.max_inflight = atoi(optarg);
            if (base.o.max_inflight < 1)
                return lt_config_destroy(cfg), bad_number("--max-inflight", optarg);
            break;
        case 'Q':
            base.o.quota_units_per_s = atof(optarg); /* 0: no client-side pacing */
            base.o.user_units_per_min = 0;           /* --quota wins */
            if (base.o.quota_units_per_s <= 0)
                base.o.project_units_per_min = 0;
            if (base.o.quota_units_per_s < 0)
                return lt_config_destroy(cfg), bad_number("--quota", optarg);
            break;
        default:
            usage(stderr);
            lt_config_destroy(cfg);
            return 2;
        }
    }
    const char *secret = secret_env ? getenv(secret_env) : NULL;
    if (!client_id || !secret || (!rt_env && !rt_file)) {
        usage(stderr);
        fputs("lattice-gmail-probe: --client-id, a set --client-secret-env and a refresh token "
              "are required\n",
              stderr);
        lt_config_destroy(cfg);
        return 2;
    }
    if (lt_log_setup("lattice-gmail-probe", "warn", "text", errstr, sizeof(errstr))) {
        lt_config_destroy(cfg);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    base.o.client_id = client_id;
    base.o.client_secret = secret;

    char **tokens = NULL;
    size_t nt = 0;
    if (rt_env) {
        const char *rt = getenv(rt_env);
        if (!rt) {
            fprintf(stderr, "lattice-gmail-probe: %s is not set\n", rt_env);
            lt_config_destroy(cfg);
            return 2;
        }
        tokens = lt_xcalloc(1, sizeof(char *));
        tokens[nt++] = lt_xstrdup(rt);
    } else {
        FILE *f = fopen(rt_file, "r");
        if (!f) {
            perror(rt_file);
            lt_config_destroy(cfg);
            return 2;
        }
        char line[4096];
        while (fgets(line, sizeof(line), f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0])
                continue;
            tokens = lt_xrealloc(tokens, (nt + 1) * sizeof(char *));
            tokens[nt++] = lt_xstrdup(line);
        }
        fclose(f);
    }
    probe_t *p = lt_xcalloc(nt ? nt : 1, sizeof(probe_t));
    pthread_t *th = lt_xcalloc(nt ? nt : 1, sizeof(pthread_t));
    for (size_t i = 0; i < nt; i++) {
        p[i] = base;
        p[i].o.refresh_token = tokens[i];
        pthread_create(&th[i], NULL, probe, &p[i]);
    }
    int rc = 0;
    long quota = 0, total = 0;
    double worst = 0;
    for (size_t i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
        double rate = p[i].seconds > 0 ? (double)p[i].fetched / p[i].seconds : 0;
        printf("account %zu: %s historyId %llu, listed %ld, fetched %ld (%llu bytes, %ld gone) in "
               "%.2f s = %.1f messages/s; %lld requests, %lld retries, %lld quota errors, %lld "
               "server errors, %lld units, %d in flight at most%s%s\n",
               i + 1, p[i].err ? lt_err_name(p[i].err) : "ok", (unsigned long long)p[i].history_id,
               p[i].listed, p[i].fetched, (unsigned long long)p[i].bytes, p[i].gone, p[i].seconds,
               rate, (long long)p[i].st.requests, (long long)p[i].st.retries,
               (long long)p[i].st.quota_errors, (long long)p[i].st.server_errors,
               (long long)p[i].st.units, p[i].st.max_inflight_seen, p[i].err ? ": " : "",
               p[i].err ? p[i].errstr : "");
        if (p[i].err)
            rc = 1;
        quota += (long)p[i].st.quota_errors;
        total += p[i].fetched;
        if (p[i].seconds > worst)
            worst = p[i].seconds;
        free(tokens[i]);
    }
    if (nt > 1)
        printf("all: %zu accounts, %ld messages in %.2f s = %.1f messages/s, %ld quota errors\n",
               nt, total, worst, worst > 0 ? (double)total / worst : 0, quota);
    free(tokens);
    free(p);
    free(th);
    curl_global_cleanup();
    lt_config_destroy(cfg); /* the options' strings point into it */
    return rc;
}
