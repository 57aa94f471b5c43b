#include "lt_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HOOKS 8

typedef enum { K_COUNTER, K_GAUGE, K_HISTOGRAM, K_VOLATILE } kind_t;

struct lt_series_s {
    lt_metric_t *m;
    char **values;
    _Atomic uint64_t v;        /* value bits (double) */
    _Atomic uint64_t sum;      /* histogram: sum bits (double) */
    _Atomic uint64_t *buckets; /* histogram: nbounds + 1 counts, not cumulative */
    uint64_t touched;          /* volatile: tick of the last set */
    lt_series_t *next;
};

struct lt_metric_s {
    lt_metrics_t *r;
    char *name;
    char *help;
    kind_t kind;
    char **labels;
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    size_t max_series; /* volatile only */
    size_t nseries;
    lt_series_t *head, *tail;
    lt_series_t *dropped; /* volatile: its lattice_metrics_series_dropped_total series */
    lt_metric_t *next;
};

struct lt_metrics_s {
    pthread_mutex_t mu;
    pthread_mutex_t hook_mu; /* hooks run one scrape at a time */
    lt_metric_t *head, *tail;
    uint64_t tick;
    struct {
        lt_metrics_scrape_fn fn;
        void *opaque;
    } hooks[MAX_HOOKS];
    int nhooks;
};

__attribute__((noreturn, format(printf, 1, 2))) static void bug(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("lt_metrics: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* --- atomic doubles ------------------------------------------------------ */

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double d)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, d2u(u2d(old) + d),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* --- registry ------------------------------------------------------------ */

lt_metrics_t *lt_metrics_new(void)
{
    lt_metrics_t *r = lt_xcalloc(1, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->hook_mu, NULL);
    return r;
}

static void series_free(lt_series_t *s, size_t nlabels)
{
    for (size_t i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->buckets);
    free(s);
}

void lt_metrics_destroy(lt_metrics_t *r)
{
    if (!r)
        return;
    lt_metric_t *m = r->head;
    while (m) {
        lt_metric_t *next = m->next;
        lt_series_t *s = m->head;
        while (s) {
            lt_series_t *sn = s->next;
            series_free(s, m->nlabels);
            s = sn;
        }
        for (size_t i = 0; i < m->nlabels; i++)
            free(m->labels[i]);
        free(m->labels);
        free(m->bounds);
        free(m->name);
        free(m->help);
        free(m);
        m = next;
    }
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->hook_mu);
    free(r);
}

static int valid_name(const char *s, int colon)
{
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                 (colon && *p == ':') || (p != s && *p >= '0' && *p <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

/* Split "a,b" into names; validated. */
static char **parse_labels(const char *metric, const char *labels, size_t *n, kind_t kind)
{
    *n = 0;
    if (!labels || !*labels)
        return NULL;
    size_t cap = 1;
    for (const char *p = labels; *p; p++)
        cap += *p == ',';
    char **out = lt_xcalloc(cap, sizeof(char *));
    const char *p = labels;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *l = lt_xmalloc(len + 1);
        memcpy(l, p, len);
        l[len] = 0;
        if (!valid_name(l, 0) || !strncmp(l, "__", 2) || (kind == K_HISTOGRAM && !strcmp(l, "le")))
            bug("metric %s: invalid label name \"%s\"", metric, l);
        for (size_t i = 0; i < *n; i++)
            if (!strcmp(out[i], l))
                bug("metric %s: label \"%s\" given twice", metric, l);
        out[(*n)++] = l;
        if (!e)
            break;
        p = e + 1;
    }
    return out;
}

static lt_metric_t *find_metric(lt_metrics_t *r, const char *name)
{
    for (lt_metric_t *m = r->head; m; m = m->next)
        if (!strcmp(m->name, name))
            return m;
    return NULL;
}

static lt_metric_t *add_metric(lt_metrics_t *r, const char *name, const char *help,
                               const char *labels, kind_t kind, const double *bounds,
                               size_t nbounds, size_t max_series)
{
    if (!r)
        return NULL;
    if (!valid_name(name, 1))
        bug("invalid metric name \"%s\"", name ? name : "(null)");
    size_t nl;
    char **ls = parse_labels(name, labels, &nl, kind);
    if (kind == K_HISTOGRAM) {
        if (!bounds || nbounds == 0)
            bug("histogram %s: no buckets", name);
        for (size_t i = 0; i < nbounds; i++)
            if (isnan(bounds[i]) || isinf(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
                bug("histogram %s: bucket bounds must be finite and strictly increasing", name);
    }
    if (kind == K_VOLATILE && max_series == 0)
        bug("volatile gauge %s: max_series must be > 0", name);

    pthread_mutex_lock(&r->mu);
    lt_metric_t *m = find_metric(r, name);
    if (m) {
        int same = m->kind == kind && m->nlabels == nl && m->nbounds == nbounds;
        for (size_t i = 0; same && i < nl; i++)
            same = !strcmp(m->labels[i], ls[i]);
        for (size_t i = 0; same && i < nbounds; i++)
            same = m->bounds[i] == bounds[i];
        pthread_mutex_unlock(&r->mu);
        for (size_t i = 0; i < nl; i++)
            free(ls[i]);
        free(ls);
        if (!same)
            bug("metric %s registered twice with different type, labels or buckets", name);
        return m;
    }
    m = lt_xcalloc(1, sizeof(*m));
    m->r = r;
    m->name = lt_xstrdup(name);
    m->help = lt_xstrdup(help ? help : "");
    m->kind = kind;
    m->labels = ls;
    m->nlabels = nl;
    if (kind == K_HISTOGRAM) {
        m->bounds = lt_xmalloc(nbounds * sizeof(double));
        memcpy(m->bounds, bounds, nbounds * sizeof(double));
        m->nbounds = nbounds;
    }
    m->max_series = max_series;
    if (r->tail)
        r->tail->next = m;
    else
        r->head = m;
    r->tail = m;
    pthread_mutex_unlock(&r->mu);
    if (kind == K_VOLATILE) {
        lt_metric_t *d = lt_metrics_counter(r, "lattice_metrics_series_dropped_total",
                                            "Series of volatile gauges dropped at their cap.",
                                            "metric");
        m->dropped = lt_metric_get(d, name);
    }
    return m;
}

lt_metric_t *lt_metrics_counter(lt_metrics_t *r, const char *name, const char *help,
                                const char *labels)
{
    return add_metric(r, name, help, labels, K_COUNTER, NULL, 0, 0);
}

lt_metric_t *lt_metrics_gauge(lt_metrics_t *r, const char *name, const char *help,
                              const char *labels)
{
    return add_metric(r, name, help, labels, K_GAUGE, NULL, 0, 0);
}

lt_metric_t *lt_metrics_histogram(lt_metrics_t *r, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t nbounds)
{
    return add_metric(r, name, help, labels, K_HISTOGRAM, bounds, nbounds, 0);
}

lt_metric_t *lt_metrics_gauge_volatile(lt_metrics_t *r, const char *name, const char *help,
                                       const char *labels, size_t max_series)
{
    return add_metric(r, name, help, labels, K_VOLATILE, NULL, 0, max_series);
}

void lt_metrics_exponential_buckets(double start, double factor, size_t count, double *out)
{
    double v = start;
    for (size_t i = 0; i < count; i++, v *= factor)
        out[i] = v;
}

void lt_metrics_linear_buckets(double start, double width, size_t count, double *out)
{
    for (size_t i = 0; i < count; i++)
        out[i] = start + width * (double)i;
}

void lt_metrics_on_scrape(lt_metrics_t *r, lt_metrics_scrape_fn fn, void *opaque)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    if (r->nhooks == MAX_HOOKS) {
        pthread_mutex_unlock(&r->mu);
        bug("more than %d scrape hooks", MAX_HOOKS);
    }
    r->hooks[r->nhooks].fn = fn;
    r->hooks[r->nhooks].opaque = opaque;
    r->nhooks++;
    pthread_mutex_unlock(&r->mu);
}

/* --- series -------------------------------------------------------------- */

static int same_values(const lt_series_t *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->values[i], values[i] ? values[i] : ""))
            return 0;
    return 1;
}

/* Under r->mu. */
static lt_series_t *find_or_add(lt_metric_t *m, const char *const *values, size_t n, int *added)
{
    if (n != m->nlabels)
        bug("metric %s has %zu label(s), %zu value(s) given", m->name, m->nlabels, n);
    *added = 0;
    for (lt_series_t *s = m->head; s; s = s->next)
        if (same_values(s, values, n))
            return s;
    lt_series_t *s = lt_xcalloc(1, sizeof(*s));
    s->m = m;
    s->values = lt_xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        s->values[i] = lt_xstrdup(values[i] ? values[i] : "");
    if (m->kind == K_HISTOGRAM) {
        s->buckets = lt_xcalloc(m->nbounds + 1, sizeof(*s->buckets));
        for (size_t i = 0; i <= m->nbounds; i++)
            atomic_init(&s->buckets[i], 0);
    }
    atomic_init(&s->v, d2u(0.0));
    atomic_init(&s->sum, d2u(0.0));
    if (m->tail)
        m->tail->next = s;
    else
        m->head = s;
    m->tail = s;
    m->nseries++;
    *added = 1;
    return s;
}

lt_series_t *lt_metric_get_n(lt_metric_t *m, const char *const *values, size_t n)
{
    if (!m)
        return NULL;
    if (m->kind == K_VOLATILE)
        bug("metric %s is a volatile gauge: use lt_metric_set()", m->name);
    int added;
    pthread_mutex_lock(&m->r->mu);
    lt_series_t *s = find_or_add(m, values, n, &added);
    pthread_mutex_unlock(&m->r->mu);
    return s;
}

lt_series_t *lt_metric_series(lt_metric_t *m)
{
    return lt_metric_get_n(m, NULL, 0);
}

static void unlink_series(lt_metric_t *m, lt_series_t *s)
{
    lt_series_t *prev = NULL;
    for (lt_series_t *p = m->head; p; prev = p, p = p->next) {
        if (p != s)
            continue;
        if (prev)
            prev->next = s->next;
        else
            m->head = s->next;
        if (m->tail == s)
            m->tail = prev;
        m->nseries--;
        series_free(s, m->nlabels);
        return;
    }
}

void lt_metric_set_n(lt_metric_t *m, double v, const char *const *values, size_t n)
{
    if (!m)
        return;
    if (m->kind != K_VOLATILE)
        bug("lt_metric_set() on %s, which is not a volatile gauge", m->name);
    int added, dropped = 0;
    pthread_mutex_lock(&m->r->mu);
    lt_series_t *s = find_or_add(m, values, n, &added);
    atomic_store_explicit(&s->v, d2u(v), memory_order_relaxed);
    s->touched = ++m->r->tick;
    if (added && m->nseries > m->max_series) {
        lt_series_t *oldest = NULL;
        for (lt_series_t *p = m->head; p; p = p->next)
            if (p != s && (!oldest || p->touched < oldest->touched))
                oldest = p;
        if (oldest) {
            unlink_series(m, oldest);
            dropped = 1;
        }
    }
    pthread_mutex_unlock(&m->r->mu);
    if (dropped)
        lt_series_inc(m->dropped);
}

void lt_metric_remove_n(lt_metric_t *m, const char *const *values, size_t n)
{
    if (!m)
        return;
    if (m->kind != K_VOLATILE)
        bug("lt_metric_remove() on %s, which is not a volatile gauge", m->name);
    if (n != m->nlabels)
        bug("metric %s has %zu label(s), %zu value(s) given", m->name, m->nlabels, n);
    pthread_mutex_lock(&m->r->mu);
    for (lt_series_t *s = m->head; s; s = s->next) {
        if (same_values(s, values, n)) {
            unlink_series(m, s);
            break;
        }
    }
    pthread_mutex_unlock(&m->r->mu);
}

void lt_series_inc(lt_series_t *s)
{
    lt_series_add(s, 1.0);
}

void lt_series_dec(lt_series_t *s)
{
    if (s && s->m->kind != K_GAUGE)
        bug("lt_series_dec() on %s, which is not a gauge", s->m->name);
    lt_series_add(s, -1.0);
}

void lt_series_add(lt_series_t *s, double v)
{
    if (!s)
        return;
    if (s->m->kind == K_COUNTER) {
        if (!(v >= 0))
            bug("counter %s: negative or NaN increment", s->m->name);
    } else if (s->m->kind != K_GAUGE) {
        bug("lt_series_add() on %s, which is not a counter or gauge", s->m->name);
    }
    atomic_add_double(&s->v, v);
}

void lt_series_set(lt_series_t *s, double v)
{
    if (!s)
        return;
    if (s->m->kind != K_GAUGE)
        bug("lt_series_set() on %s, which is not a gauge", s->m->name);
    atomic_store_explicit(&s->v, d2u(v), memory_order_relaxed);
}

void lt_series_observe(lt_series_t *s, double v)
{
    if (!s)
        return;
    lt_metric_t *m = s->m;
    if (m->kind != K_HISTOGRAM)
        bug("lt_series_observe() on %s, which is not a histogram", m->name);
    size_t i = 0;
    while (i < m->nbounds && !(v <= m->bounds[i]))
        i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    atomic_add_double(&s->sum, v);
}

double lt_series_value(const lt_series_t *s)
{
    if (!s)
        return 0;
    if (s->m->kind == K_HISTOGRAM) {
        uint64_t c = 0;
        for (size_t i = 0; i <= s->m->nbounds; i++)
            c += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        return (double)c;
    }
    return u2d(atomic_load_explicit(&((lt_series_t *)s)->v, memory_order_relaxed));
}

/* --- exposition ---------------------------------------------------------- */

/* Shortest text that reads back as the same double; Go's float forms for
 * the specials. */
static void fmt_double(char *out, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(out, n, "NaN");
    } else if (isinf(v)) {
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(out, n, "0");
    } else if (fabs(v) < 1e15 && v == (double)(long long)v) {
        snprintf(out, n, "%lld", (long long)v);
    } else {
        snprintf(out, n, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, n, "%.17g", v);
    }
}

/* Length of the valid UTF-8 sequence at p (0: invalid). */
static size_t utf8_seq(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if ((p[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Label values escape \ " and newline; HELP escapes \ and newline. Invalid
 * UTF-8 becomes U+FFFD (the exposition must be UTF-8). */
static lt_err_t escape(lt_buf_t *b, const char *s, int quote)
{
    lt_err_t err = LT_OK;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && !err) {
        if (*p == '\\') {
            err = lt_buf_append(b, "\\\\", 2);
        } else if (*p == '\n') {
            err = lt_buf_append(b, "\\n", 2);
        } else if (*p == '"' && quote) {
            err = lt_buf_append(b, "\\\"", 2);
        } else {
            size_t len = utf8_seq(p);
            if (!len) {
                err = lt_buf_append(b, "\xef\xbf\xbd", 3);
                p++;
                continue;
            }
            err = lt_buf_append(b, p, len);
            p += len;
            continue;
        }
        p++;
    }
    return err;
}

/* name{l1="v1",...[,le="x"]} value\n */
static lt_err_t sample(lt_buf_t *b, const lt_metric_t *m, const char *suffix, const lt_series_t *s,
                       const char *le, double v)
{
    lt_err_t err = lt_buf_appendf(b, "%s%s", m->name, suffix);
    if (!err && (m->nlabels || le)) {
        err = lt_buf_append(b, "{", 1);
        for (size_t i = 0; !err && i < m->nlabels; i++) {
            err = lt_buf_appendf(b, "%s%s=\"", i ? "," : "", m->labels[i]);
            if (!err)
                err = escape(b, s->values[i], 1);
            if (!err)
                err = lt_buf_append(b, "\"", 1);
        }
        if (!err && le)
            err = lt_buf_appendf(b, "%sle=\"%s\"", m->nlabels ? "," : "", le);
        if (!err)
            err = lt_buf_append(b, "}", 1);
    }
    char num[64];
    fmt_double(num, sizeof(num), v);
    if (!err)
        err = lt_buf_appendf(b, " %s\n", num);
    return err;
}

static lt_err_t render_metric(lt_buf_t *b, const lt_metric_t *m)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "gauge"};
    lt_err_t err = lt_buf_appendf(b, "# HELP %s ", m->name);
    if (!err)
        err = escape(b, m->help, 0);
    if (!err)
        err = lt_buf_appendf(b, "\n# TYPE %s %s\n", m->name, types[m->kind]);
    for (const lt_series_t *s = m->head; !err && s; s = s->next) {
        if (m->kind != K_HISTOGRAM) {
            err = sample(b, m, "", s, NULL,
                         u2d(atomic_load_explicit(&((lt_series_t *)s)->v, memory_order_relaxed)));
            continue;
        }
        uint64_t cum = 0;
        char le[64];
        for (size_t i = 0; !err && i <= m->nbounds; i++) {
            cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
            if (i < m->nbounds)
                fmt_double(le, sizeof(le), m->bounds[i]);
            else
                snprintf(le, sizeof(le), "+Inf");
            err = sample(b, m, "_bucket", s, le, (double)cum);
        }
        if (!err)
            err = sample(b, m, "_sum", s, NULL,
                         u2d(atomic_load_explicit(&((lt_series_t *)s)->sum, memory_order_relaxed)));
        if (!err)
            err = sample(b, m, "_count", s, NULL, (double)cum);
    }
    return err;
}

lt_err_t lt_metrics_render(lt_metrics_t *r, lt_buf_t *out)
{
    if (!r)
        return LT_OK;
    pthread_mutex_lock(&r->mu);
    int nhooks = r->nhooks;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&r->hook_mu);
    for (int i = 0; i < nhooks; i++)
        r->hooks[i].fn(r->hooks[i].opaque);
    pthread_mutex_unlock(&r->hook_mu);
    lt_err_t err = LT_OK;
    pthread_mutex_lock(&r->mu);
    for (const lt_metric_t *m = r->head; !err && m; m = m->next)
        err = render_metric(out, m);
    pthread_mutex_unlock(&r->mu);
    return err;
}
