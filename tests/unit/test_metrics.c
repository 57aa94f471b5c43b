/* lt_metrics: exact exposition text, escaping, histogram buckets, volatile
 * gauges with a cap, NULL tolerance, concurrent updates; lt_http on a
 * loopback port: /metrics, /healthz, /readyz, 404/405, port in use. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "lt_buf.h"
#include "lt_http.h"
#include "lt_metrics.h"
#include "lt_test.h"

static char *render(lt_metrics_t *r)
{
    lt_buf_t *b = lt_buf_new(1 << 20);
    CHECK_INT(lt_metrics_render(r, b), LT_OK);
    size_t n;
    char *s = (char *)lt_buf_steal(b, &n);
    lt_buf_destroy(b);
    return s;
}

static void test_exposition(void)
{
    lt_metrics_t *r = lt_metrics_new();
    lt_metric_t *c = lt_metrics_counter(r, "lattice_test_commands_total",
                                        "Commands by result.", "provider,result");
    lt_series_t *ok = lt_metric_get(c, "imap", "succeeded");
    lt_series_inc(ok);
    lt_series_add(ok, 2);
    lt_series_inc(lt_metric_get(c, "gmail", "failed"));
    /* same labels again: the same series */
    CHECK(lt_metric_get(c, "imap", "succeeded") == ok);
    /* registering again returns the same metric */
    CHECK(lt_metrics_counter(r, "lattice_test_commands_total", "x", "provider,result") == c);

    lt_metric_t *g = lt_metrics_gauge(r, "lattice_test_in_flight", "Running now.", NULL);
    lt_series_t *gs = lt_metric_series(g);
    lt_series_set(gs, 5);
    lt_series_dec(gs);
    lt_series_add(gs, 0.5);
    lt_metrics_gauge(r, "lattice_test_empty", "No series yet.", "a");
    lt_series_set(lt_metric_series(lt_metrics_gauge(r, "lattice_test_ratio", "A ratio.", NULL)),
                  0.1);
    lt_series_set(lt_metric_series(lt_metrics_gauge(r, "lattice_test_big", "Big.", NULL)),
                  1.5e300);

    char *s = render(r);
    CHECK_STR(s, "# HELP lattice_test_commands_total Commands by result.\n"
                 "# TYPE lattice_test_commands_total counter\n"
                 "lattice_test_commands_total{provider=\"imap\",result=\"succeeded\"} 3\n"
                 "lattice_test_commands_total{provider=\"gmail\",result=\"failed\"} 1\n"
                 "# HELP lattice_test_in_flight Running now.\n"
                 "# TYPE lattice_test_in_flight gauge\n"
                 "lattice_test_in_flight 4.5\n"
                 "# HELP lattice_test_empty No series yet.\n"
                 "# TYPE lattice_test_empty gauge\n"
                 "# HELP lattice_test_ratio A ratio.\n"
                 "# TYPE lattice_test_ratio gauge\n"
                 "lattice_test_ratio 0.1\n"
                 "# HELP lattice_test_big Big.\n"
                 "# TYPE lattice_test_big gauge\n"
                 "lattice_test_big 1.5e+300\n");
    free(s);
    CHECK(lt_series_value(ok) == 3);
    lt_metrics_destroy(r);
}

static void test_escaping(void)
{
    lt_metrics_t *r = lt_metrics_new();
    lt_metric_t *g = lt_metrics_gauge(r, "lattice_test_esc", "Help with \\ and\nnewline \"q\".",
                                      "v");
    lt_series_set(lt_metric_get(g, "a\"b\\c\nd"), 1);
    lt_series_set(lt_metric_get(g, "Entwürfe"), 2);
    lt_series_set(lt_metric_get(g, "bad\xff utf8"), 3);
    lt_series_set(lt_metric_get(g, NULL), 4);
    lt_series_set(lt_metric_get(g, "nan"), 0.0 / 0.0);
    lt_series_set(lt_metric_get(g, "inf"), -1.0 / 0.0);
    char *s = render(r);
    CHECK_STR(s, "# HELP lattice_test_esc Help with \\\\ and\\nnewline \"q\".\n"
                 "# TYPE lattice_test_esc gauge\n"
                 "lattice_test_esc{v=\"a\\\"b\\\\c\\nd\"} 1\n"
                 "lattice_test_esc{v=\"Entwürfe\"} 2\n"
                 "lattice_test_esc{v=\"bad\xef\xbf\xbd utf8\"} 3\n"
                 "lattice_test_esc{v=\"\"} 4\n"
                 "lattice_test_esc{v=\"nan\"} NaN\n"
                 "lattice_test_esc{v=\"inf\"} -Inf\n");
    free(s);
    lt_metrics_destroy(r);
}

static void test_histogram(void)
{
    lt_metrics_t *r = lt_metrics_new();
    double b[3];
    lt_metrics_exponential_buckets(0.5, 2, 3, b); /* 0.5 1 2 */
    CHECK(b[0] == 0.5 && b[1] == 1 && b[2] == 2);
    double lin[3];
    lt_metrics_linear_buckets(1, 0.5, 3, lin);
    CHECK(lin[0] == 1 && lin[1] == 1.5 && lin[2] == 2);
    lt_metric_t *h = lt_metrics_histogram(r, "lattice_test_seconds", "Durations.", "kind", b, 3);
    lt_series_t *s = lt_metric_get(h, "backfill");
    lt_series_observe(s, 0.5); /* le 0.5: bounds are inclusive */
    lt_series_observe(s, 0.7);
    lt_series_observe(s, 2);
    lt_series_observe(s, 100);
    lt_series_observe(s, -1);
    CHECK(lt_series_value(s) == 5);
    lt_metric_t *h0 = lt_metrics_histogram(r, "lattice_test_nolabels_seconds", "No labels.", NULL,
                                           b, 1);
    lt_series_observe(lt_metric_series(h0), 0.25);
    char *t = render(r);
    CHECK_STR(t, "# HELP lattice_test_seconds Durations.\n"
                 "# TYPE lattice_test_seconds histogram\n"
                 "lattice_test_seconds_bucket{kind=\"backfill\",le=\"0.5\"} 2\n"
                 "lattice_test_seconds_bucket{kind=\"backfill\",le=\"1\"} 3\n"
                 "lattice_test_seconds_bucket{kind=\"backfill\",le=\"2\"} 4\n"
                 "lattice_test_seconds_bucket{kind=\"backfill\",le=\"+Inf\"} 5\n"
                 "lattice_test_seconds_sum{kind=\"backfill\"} 102.2\n"
                 "lattice_test_seconds_count{kind=\"backfill\"} 5\n"
                 "# HELP lattice_test_nolabels_seconds No labels.\n"
                 "# TYPE lattice_test_nolabels_seconds histogram\n"
                 "lattice_test_nolabels_seconds_bucket{le=\"0.5\"} 1\n"
                 "lattice_test_nolabels_seconds_bucket{le=\"+Inf\"} 1\n"
                 "lattice_test_nolabels_seconds_sum 0.25\n"
                 "lattice_test_nolabels_seconds_count 1\n");
    free(t);
    lt_metrics_destroy(r);
}

static void test_volatile(void)
{
    lt_metrics_t *r = lt_metrics_new();
    lt_metric_t *v = lt_metrics_gauge_volatile(r, "lattice_test_last_success", "Per account.",
                                               "account", 2);
    lt_metric_set(v, 10, "a");
    lt_metric_set(v, 20, "b");
    lt_metric_set(v, 11, "a"); /* a is now the most recent */
    lt_metric_set(v, 30, "c"); /* cap 2: b (least recently set) goes */
    lt_metric_remove(v, "zzz"); /* absent: nothing */
    char *s = render(r);
    CHECK_STR(s, "# HELP lattice_test_last_success Per account.\n"
                 "# TYPE lattice_test_last_success gauge\n"
                 "lattice_test_last_success{account=\"a\"} 11\n"
                 "lattice_test_last_success{account=\"c\"} 30\n"
                 "# HELP lattice_metrics_series_dropped_total Series of volatile gauges dropped "
                 "at their cap.\n"
                 "# TYPE lattice_metrics_series_dropped_total counter\n"
                 "lattice_metrics_series_dropped_total{metric=\"lattice_test_last_success\"} 1\n");
    free(s);
    lt_metric_remove(v, "a");
    lt_metric_remove(v, "c");
    s = render(r);
    CHECK(strstr(s, "{account=") == NULL);
    free(s);
    lt_metrics_destroy(r);
}

static void test_null(void)
{
    /* Everything is a no-op on NULL: instrumented code runs without metrics. */
    lt_metric_t *m = lt_metrics_counter(NULL, "lattice_x_total", "x", "a");
    CHECK(m == NULL);
    lt_series_t *s = lt_metric_get(m, "v");
    CHECK(s == NULL);
    lt_series_inc(s);
    lt_series_set(s, 1);
    lt_series_observe(s, 1);
    lt_metric_set(NULL, 1, "x");
    lt_metric_remove(NULL, "x");
    CHECK(lt_series_value(s) == 0);
    CHECK_INT(lt_metrics_render(NULL, NULL), LT_OK);
    lt_metrics_destroy(NULL);
}

static void test_render_cap(void)
{
    lt_metrics_t *r = lt_metrics_new();
    lt_metric_t *g = lt_metrics_gauge(r, "lattice_test_many", "Many.", "i");
    char v[16];
    for (int i = 0; i < 100; i++) {
        snprintf(v, sizeof(v), "%d", i);
        lt_series_set(lt_metric_get(g, v), i);
    }
    lt_buf_t *b = lt_buf_new(256);
    CHECK_INT(lt_metrics_render(r, b), LT_ERR_TOO_BIG);
    lt_buf_destroy(b);
    lt_metrics_destroy(r);
}

/* --- concurrency --------------------------------------------------------- */

#define THREADS 8
#define PER_THREAD 100000

typedef struct {
    lt_metrics_t *r;
    lt_series_t *c, *g, *h;
    lt_metric_t *vol;
    int id;
} tctx_t;

static void *hammer(void *arg)
{
    tctx_t *t = arg;
    char acct[16];
    for (int i = 0; i < PER_THREAD; i++) {
        lt_series_inc(t->c);
        lt_series_add(t->g, (i & 1) ? 1 : -1);
        lt_series_observe(t->h, (double)(i % 4));
        if (i % 1000 == 0) {
            snprintf(acct, sizeof(acct), "a%d-%d", t->id, i / 1000 % 7);
            lt_metric_set(t->vol, i, acct);
            /* a new series looked up while others update and a scrape runs */
            lt_metric_get(lt_metrics_counter(t->r, "lattice_test_lookup_total", "L.", "t"), acct);
        }
    }
    return NULL;
}

static void *scraper(void *arg)
{
    tctx_t *t = arg;
    for (int i = 0; i < 50; i++)
        free(render(t->r));
    return NULL;
}

static void test_concurrency(void)
{
    lt_metrics_t *r = lt_metrics_new();
    double b[] = {0.5, 1.5, 2.5};
    lt_series_t *c = lt_metric_get(lt_metrics_counter(r, "lattice_test_n_total", "N.", "k"), "x");
    lt_series_t *g = lt_metric_series(lt_metrics_gauge(r, "lattice_test_g", "G.", NULL));
    lt_series_t *h = lt_metric_series(lt_metrics_histogram(r, "lattice_test_h", "H.", NULL, b, 3));
    lt_metric_t *vol = lt_metrics_gauge_volatile(r, "lattice_test_vol", "V.", "account", 5);
    pthread_t th[THREADS + 1];
    tctx_t ctx[THREADS + 1];
    for (int i = 0; i <= THREADS; i++) {
        ctx[i] = (tctx_t){r, c, g, h, vol, i};
        pthread_create(&th[i], NULL, i < THREADS ? hammer : scraper, &ctx[i]);
    }
    for (int i = 0; i <= THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(lt_series_value(c) == (double)THREADS * PER_THREAD);
    CHECK(lt_series_value(g) == 0);
    CHECK(lt_series_value(h) == (double)THREADS * PER_THREAD);
    char *s = render(r);
    char want[128];
    snprintf(want, sizeof(want), "lattice_test_h_bucket{le=\"0.5\"} %d\n",
             THREADS * PER_THREAD / 4);
    CHECK_MSG(strstr(s, want) != NULL, "%s", want);
    snprintf(want, sizeof(want), "lattice_test_h_sum %d\n", THREADS * PER_THREAD / 4 * 6);
    CHECK_MSG(strstr(s, want) != NULL, "%s", want);
    /* the volatile gauge kept its cap */
    int n = 0;
    for (const char *p = s; (p = strstr(p, "lattice_test_vol{")); p++)
        n++;
    CHECK_INT(n, 5);
    free(s);
    lt_metrics_destroy(r);
}

/* --- HTTP ---------------------------------------------------------------- */

static size_t collect(char *p, size_t sz, size_t nm, void *ud)
{
    lt_buf_append(ud, p, sz * nm);
    return sz * nm;
}

static long get(int port, const char *path, const char *method, lt_buf_t *body, char *ctype,
                size_t ctype_size)
{
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (method && !strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    lt_buf_reset(body);
    long code = -1;
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        if (ctype)
            snprintf(ctype, ctype_size, "%s", ct ? ct : "");
    }
    curl_easy_cleanup(c);
    return code;
}

static int g_ready;
static int ready_cb(void *opaque, char *why, size_t n)
{
    CHECK(opaque == &g_ready);
    if (!g_ready)
        snprintf(why, n, "no Kafka assignment yet");
    return g_ready;
}

static void test_http(void)
{
    lt_metrics_t *r = lt_metrics_new();
    lt_series_inc(lt_metric_get(lt_metrics_counter(r, "lattice_test_hits_total", "Hits.", "path"),
                                "/x"));
    char err[256];
    lt_http_t *h = lt_http_start(&(lt_http_opts_t){.program = "test", .bind = "127.0.0.1",
                                                   .port = 0, .metrics = r, .ready = ready_cb,
                                                   .ready_opaque = &g_ready},
                                 err, sizeof(err));
    CHECK_MSG(h != NULL, "%s", err);
    if (!h) {
        lt_metrics_destroy(r);
        return;
    }
    int port = lt_http_port(h);
    CHECK(port > 0);
    lt_buf_t *b = lt_buf_new(1 << 20);
    char ct[128];
    CHECK_INT(get(port, "/metrics", NULL, b, ct, sizeof(ct)), 200);
    CHECK_STR(ct, "text/plain; version=0.0.4; charset=utf-8");
    CHECK(strstr(lt_buf_str(b), "lattice_test_hits_total{path=\"/x\"} 1\n") != NULL);
    CHECK(strstr(lt_buf_str(b), "lattice_build_info{program=\"test\",version=\"") != NULL);
    CHECK(strstr(lt_buf_str(b), "process_start_time_seconds ") != NULL);
    CHECK_INT(get(port, "/metrics", NULL, b, NULL, 0), 200);
    CHECK(strstr(lt_buf_str(b), "lattice_metrics_scrape_duration_seconds ") != NULL);
    CHECK_INT(get(port, "/healthz", NULL, b, NULL, 0), 200);
    CHECK_STR(lt_buf_str(b), "ok\n");
    g_ready = 0;
    CHECK_INT(get(port, "/readyz", NULL, b, NULL, 0), 503);
    CHECK_STR(lt_buf_str(b), "no Kafka assignment yet\n");
    g_ready = 1;
    CHECK_INT(get(port, "/readyz", NULL, b, NULL, 0), 200);
    CHECK_INT(get(port, "/readyz", "HEAD", b, NULL, 0), 200);
    CHECK_INT(get(port, "/nope", NULL, b, NULL, 0), 404);
    CHECK_INT(get(port, "/metrics", "POST", b, NULL, 0), 405);

    /* The port is taken: a clear error, no server. */
    lt_http_t *h2 = lt_http_start(&(lt_http_opts_t){.bind = "127.0.0.1", .port = port}, err,
                                  sizeof(err));
    CHECK(h2 == NULL);
    char want[96];
    snprintf(want, sizeof(want), "LATTICE_METRICS_PORT %d on 127.0.0.1: Address already in use",
             port);
    CHECK_STR(err, want);
    lt_http_stop(h2);
    /* A bad address. */
    CHECK(lt_http_start(&(lt_http_opts_t){.bind = "not an address", .port = 0}, err,
                        sizeof(err)) == NULL);
    CHECK_MSG(strstr(err, "LATTICE_METRICS_BIND not an address") != NULL, "%s", err);

    lt_http_stop(h);
    /* stopped: the port is free again */
    lt_http_t *h3 =
        lt_http_start(&(lt_http_opts_t){.bind = "127.0.0.1", .port = port}, err, sizeof(err));
    CHECK_MSG(h3 != NULL, "%s", err);
    lt_http_stop(h3);
    lt_buf_destroy(b);
    lt_metrics_destroy(r);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    test_exposition();
    test_escaping();
    test_histogram();
    test_volatile();
    test_null();
    test_render_cap();
    test_concurrency();
    test_http();
    curl_global_cleanup();
    return lt_test_done("test_metrics");
}
