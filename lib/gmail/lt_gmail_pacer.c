#include "lt_gmail_pacer.h"

#include "lt_buf.h"
#include "lt_gmail_bucket.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PROJECT_BURST_S 1.0

typedef struct {
    char *name; /* "u:<user>" or "p:<project>" */
    lt_gmail_bucket_t b;
    int64_t used_ms;
} entry_t;

struct lt_gmail_pacer_s {
    pthread_mutex_t mu;
    double share;
    entry_t *e;
    size_t n, cap;
};

lt_gmail_pacer_t *lt_gmail_pacer_new(void)
{
    lt_gmail_pacer_t *p = lt_xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    p->share = 1.0;
    return p;
}

void lt_gmail_pacer_destroy(lt_gmail_pacer_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->e[i].name);
    free(p->e);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void lt_gmail_pacer_set_share(lt_gmail_pacer_t *p, double share)
{
    pthread_mutex_lock(&p->mu);
    p->share = share > 1 ? 1 : share > 0 ? share : 1;
    pthread_mutex_unlock(&p->mu);
}

double lt_gmail_pacer_share(lt_gmail_pacer_t *p)
{
    pthread_mutex_lock(&p->mu);
    double s = p->share;
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* The bucket of kind ('u' or 'p') and name at `rate` units/s, created empty
 * if new; NULL when there is no such quota. Called with the lock held. */
static lt_gmail_bucket_t *get(lt_gmail_pacer_t *p, char kind, const char *name, double rate,
                              double burst_s, int64_t now_ms, int create)
{
    if (!name || !name[0] || rate <= 0)
        return NULL;
    size_t l = strlen(name);
    for (size_t i = 0; i < p->n; i++) {
        entry_t *e = &p->e[i];
        if (e->name[0] == kind && !strcmp(e->name + 2, name)) {
            if (e->b.ceiling != rate)
                lt_gmail_bucket_set_ceiling(&e->b, rate, now_ms);
            e->b.burst_s = burst_s;
            e->used_ms = now_ms;
            return &e->b;
        }
    }
    if (!create)
        return NULL;
    if (p->n == LT_GMAIL_PACER_MAX) { /* forget the one unused longest */
        size_t old = 0;
        for (size_t i = 1; i < p->n; i++)
            if (p->e[i].used_ms < p->e[old].used_ms)
                old = i;
        free(p->e[old].name);
        p->e[old] = p->e[--p->n];
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->e = lt_xrealloc(p->e, p->cap * sizeof(entry_t));
    }
    entry_t *e = &p->e[p->n++];
    e->name = lt_xmalloc(l + 3);
    e->name[0] = kind;
    e->name[1] = ':';
    memcpy(e->name + 2, name, l + 1);
    lt_gmail_bucket_init(&e->b, rate, burst_s, now_ms);
    e->used_ms = now_ms;
    return &e->b;
}

static lt_gmail_bucket_t *user_b(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, int64_t now,
                                 int create)
{
    return get(p, 'u', k->user, k->user_per_min / 60.0, k->user_burst_s > 0 ? k->user_burst_s : 1.0,
               now, create);
}

static lt_gmail_bucket_t *project_b(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, int64_t now,
                                    int create)
{
    return get(p, 'p', k->project, k->project_per_min / 60.0 * p->share, PROJECT_BURST_S, now,
               create);
}

int64_t lt_gmail_pacer_take(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, double cost,
                            int64_t now_ms)
{
    pthread_mutex_lock(&p->mu);
    lt_gmail_bucket_t *u = user_b(p, k, now_ms, 1), *j = project_b(p, k, now_ms, 1);
    int64_t wu = u ? lt_gmail_bucket_wait(u, cost, now_ms) : 0;
    int64_t wj = j ? lt_gmail_bucket_wait(j, cost, now_ms) : 0;
    int64_t w = wu > wj ? wu : wj;
    if (w == 0) {
        if (u)
            lt_gmail_bucket_take(u, cost);
        if (j)
            lt_gmail_bucket_take(j, cost);
    }
    pthread_mutex_unlock(&p->mu);
    return w;
}

int lt_gmail_pacer_cut(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, lt_gmail_quota_kind_t kind,
                       int64_t now_ms)
{
    pthread_mutex_lock(&p->mu);
    lt_gmail_bucket_t *b =
        kind == LT_GMAIL_QUOTA_PROJECT ? project_b(p, k, now_ms, 1) : user_b(p, k, now_ms, 1);
    int cut = b ? lt_gmail_bucket_cut(b, now_ms) : 0;
    pthread_mutex_unlock(&p->mu);
    return cut;
}

void lt_gmail_pacer_pause(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, int64_t until_ms)
{
    pthread_mutex_lock(&p->mu);
    lt_gmail_bucket_t *u = user_b(p, k, until_ms, 1);
    if (u)
        lt_gmail_bucket_pause(u, until_ms);
    pthread_mutex_unlock(&p->mu);
}

void lt_gmail_pacer_info(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, lt_gmail_pace_info_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->mu);
    lt_gmail_bucket_t *u = user_b(p, k, 0, 0), *j = project_b(p, k, 0, 0);
    if (u) {
        out->user_rate = u->rate;
        out->user_ceiling = u->ceiling;
        out->user_cuts = u->cuts;
    }
    if (j) {
        out->project_rate = j->rate;
        out->project_ceiling = j->ceiling;
        out->project_cuts = j->cuts;
    }
    pthread_mutex_unlock(&p->mu);
}
