/* lt_metrics: a small thread-safe Prometheus registry (counters, gauges,
 * histograms with fixed buckets, label sets) and its text exposition
 * (format 0.0.4: # HELP / # TYPE lines, escaped label values).
 *
 * No globals: a program makes one lt_metrics_t and passes it to whoever
 * records metrics; lt_http (lt_http.h) serves it on /metrics.
 *
 * Model. A metric (lt_metric_t, one name + type + label names) holds
 * series (lt_series_t, one per set of label values). Updating a series is
 * lock-free (C11 atomics); looking a series up by label values takes the
 * registry's mutex, so resolve the series you update often once and keep
 * the handle. Series handles stay valid until lt_metrics_destroy(), except
 * those of volatile gauges (below), which are never handed out.
 *
 * Ownership: the registry owns every metric and series; handles are
 * borrowed. Every function accepts NULL for the registry, metric or series
 * and then does nothing (returns NULL): code can be instrumented
 * unconditionally and run without metrics (tests, a disabled port).
 *
 * Misuse is a bug and aborts with a message: an invalid metric or label
 * name, the same name registered with another type or other labels, the
 * wrong number of label values, an update of the wrong kind (set on a
 * counter), a negative counter increment.
 *
 * Label cardinality: every distinct label value set is a series kept in
 * memory and scraped. Use labels with few values (provider, kind, result,
 * error class). Anything per account or per command must be a volatile
 * gauge, which has a cap.
 *
 * ---- Adding metrics to a program in a few lines -------------------------
 *
 *   // main(): registry + HTTP endpoint (LATTICE_METRICS_PORT, 0 = off)
 *   lt_metrics_t *reg = lt_metrics_new();
 *   lt_http_t *http = NULL;
 *   const lt_settings_t *set = lt_config_settings(cfg);
 *   if (set->metrics.port > 0)
 *       http = lt_http_start(&(lt_http_opts_t){
 *           .bind = set->metrics.bind,
 *           .port = set->metrics.port,
 *           .metrics = reg, .ready = my_ready, .ready_opaque = me}, err, sizeof(err));
 *   // (NULL http with err filled, e.g. "port in use": exit 1)
 *
 *   // once, at start-up: the metrics, in a struct passed to whoever uses them
 *   lt_metric_t *runs = lt_metrics_counter(reg, "lattice_scheduler_runs_total",
 *                                          "Scheduling passes by result.", "result");
 *   lt_series_t *ok = lt_metric_get(runs, "ok");
 *   lt_series_t *lag = lt_metric_series(lt_metrics_gauge(reg,
 *                         "lattice_scheduler_lag_seconds", "Oldest due account.", NULL));
 *
 *   // hot path: lock-free
 *   lt_series_inc(ok);
 *   lt_series_set(lag, 12.5);
 *
 *   // end: lt_http_stop(http) before lt_metrics_destroy(reg)
 *
 * Naming (https://prometheus.io/docs/practices/naming/): lattice_<program>_
 * prefix, counters end in _total, units in the name (_seconds, _bytes),
 * base units only. */
#ifndef LT_METRICS_H
#define LT_METRICS_H

#include <stddef.h>

#include "lt_buf.h"
#include "lt_err.h"

typedef struct lt_metrics_s lt_metrics_t;
typedef struct lt_metric_s lt_metric_t;
typedef struct lt_series_s lt_series_t;

lt_metrics_t *lt_metrics_new(void);
void lt_metrics_destroy(lt_metrics_t *r);

/* Register a metric (or return the one already registered under `name`
 * with the same type and labels). `labels`: label names separated by
 * commas ("provider,kind"), NULL or "" for none. help: one line of text.
 * Strings are copied. */
lt_metric_t *lt_metrics_counter(lt_metrics_t *r, const char *name, const char *help,
                                const char *labels);
lt_metric_t *lt_metrics_gauge(lt_metrics_t *r, const char *name, const char *help,
                              const char *labels);
/* bounds: the upper bounds of the buckets, strictly increasing, without
 * +Inf (added); copied. */
lt_metric_t *lt_metrics_histogram(lt_metrics_t *r, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t nbounds);
/* A gauge whose series come and go (one per account, one per running
 * command): updated only through lt_metric_set() / lt_metric_remove(), never
 * through a handle. At most max_series series exist (> 0); setting a new one
 * beyond that drops the least recently set one (counted in
 * lattice_metrics_series_dropped_total{metric}). */
lt_metric_t *lt_metrics_gauge_volatile(lt_metrics_t *r, const char *name, const char *help,
                                       const char *labels, size_t max_series);

/* Bucket bounds helpers: `count` bounds start, start*factor, ... (exponential)
 * or start, start+width, ... (linear), written to out[count]. */
void lt_metrics_exponential_buckets(double start, double factor, size_t count, double *out);
void lt_metrics_linear_buckets(double start, double width, size_t count, double *out);

/* The series of the label values (created at 0 on first use). Exactly as
 * many values as the metric has labels; values are any UTF-8 text (escaped on
 * output); NULL counts as "". Not for volatile gauges. */
lt_series_t *lt_metric_get_n(lt_metric_t *m, const char *const *values, size_t n);
#define lt_metric_get(m, ...)                                                                     \
    lt_metric_get_n((m), (const char *const[]){__VA_ARGS__},                                      \
                    sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
/* The one series of a metric without labels. */
lt_series_t *lt_metric_series(lt_metric_t *m);

/* Counters: inc/add (v >= 0). Gauges: set/add (any sign)/inc/dec.
 * Histograms: observe. All lock-free. */
void lt_series_inc(lt_series_t *s);
void lt_series_dec(lt_series_t *s);
void lt_series_add(lt_series_t *s, double v);
void lt_series_set(lt_series_t *s, double v);
void lt_series_observe(lt_series_t *s, double v);
/* Current value (counter, gauge) or observation count (histogram). */
double lt_series_value(const lt_series_t *s);

/* Volatile gauges: set / remove the series of the label values. */
void lt_metric_set_n(lt_metric_t *m, double v, const char *const *values, size_t n);
#define lt_metric_set(m, v, ...)                                                                  \
    lt_metric_set_n((m), (v), (const char *const[]){__VA_ARGS__},                                 \
                    sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
void lt_metric_remove_n(lt_metric_t *m, const char *const *values, size_t n);
#define lt_metric_remove(m, ...)                                                                  \
    lt_metric_remove_n((m), (const char *const[]){__VA_ARGS__},                                   \
                       sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

/* Called at the start of every lt_metrics_render() (from the scraping
 * thread; hooks of concurrent scrapes never overlap): refresh gauges that
 * are cheaper to read than to track, or bring a counter up to a total kept
 * elsewhere (lt_series_add(s, total - lt_series_value(s))). fn must not
 * register metrics. At most 8 hooks. */
typedef void (*lt_metrics_scrape_fn)(void *opaque);
void lt_metrics_on_scrape(lt_metrics_t *r, lt_metrics_scrape_fn fn, void *opaque);

/* Append the exposition text of every metric, in registration order (series
 * in creation order) to out. Metrics without series are written with their
 * HELP and TYPE only. LT_ERR_TOO_BIG when out's cap is reached. */
lt_err_t lt_metrics_render(lt_metrics_t *r, lt_buf_t *out);

/* The Content-Type of the exposition. */
#define LT_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
