#include "lt_dispatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lt_buf.h"

struct lt_job_s {
    int32_t partition;
    int64_t offset;
    char *account;
    uint8_t *value;
    size_t value_len;
    int attempt;
    int row_attempt;       /* the row's attempt this process started, 0: none */
    int failures;          /* temporary failures since failing_since */
    int64_t failing_since; /* monotonic ms, 0: not failing */
    int64_t not_before;
    uint64_t seq; /* arrival order */
    uint32_t gen; /* the partition's generation when queued */
    lt_job_t *next;
};

/* An account with queued or running jobs: its jobs in order (a FIFO), and
 * at most one of them running. An idle account with a queued job sits in
 * exactly one heap: `ready` (ordered by its head job's arrival) or, while
 * its head job waits for its not-before time, `delayed` (ordered by that
 * time). A take pops the ready heap: O(log accounts), never a scan. */
typedef struct acct_s {
    char *name;
    uint64_t hash;
    lt_job_t *head, *tail;
    const lt_job_t *running; /* NULL when idle */
    int heap;                /* HEAP_NONE, HEAP_READY, HEAP_DELAYED */
    size_t heap_pos;
    struct acct_s *chain; /* hash bucket */
} acct_t;

enum { HEAP_NONE, HEAP_READY, HEAP_DELAYED };

typedef struct {
    acct_t **v;
    size_t n, cap;
} heap_t;

struct lt_dispatch_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    acct_t **buckets;
    size_t nbuckets, naccts;
    heap_t ready, delayed;
    const lt_job_t **running; /* the running jobs (few: one per slot) */
    size_t nrunning, running_cap;
    size_t queued;
    uint64_t next_seq;
    uint32_t *gens; /* per partition, bumped when it is cancelled */
    size_t ngens;
    int closed;
    uint64_t steps;
};

lt_job_t *lt_job_new(int32_t partition, int64_t offset, const char *account_key,
                     const void *value, size_t value_len)
{
    lt_job_t *j = lt_xcalloc(1, sizeof(*j));
    j->partition = partition;
    j->offset = offset;
    j->account = lt_xstrdup(account_key ? account_key : "");
    j->value = lt_xmalloc(value_len + 1);
    if (value_len)
        memcpy(j->value, value, value_len);
    j->value[value_len] = 0;
    j->value_len = value_len;
    return j;
}

void lt_job_destroy(lt_job_t *job)
{
    if (!job)
        return;
    free(job->account);
    free(job->value);
    free(job);
}

int32_t lt_job_partition(const lt_job_t *job)
{
    return job->partition;
}

int64_t lt_job_offset(const lt_job_t *job)
{
    return job->offset;
}

const char *lt_job_account(const lt_job_t *job)
{
    return job->account;
}

const uint8_t *lt_job_value(const lt_job_t *job, size_t *len)
{
    if (len)
        *len = job->value_len;
    return job->value;
}

int lt_job_attempt(const lt_job_t *job)
{
    return job->attempt;
}

void lt_job_retry_at(lt_job_t *job, int64_t not_before_ms)
{
    job->not_before = not_before_ms;
}

void lt_job_started(lt_job_t *job, int attempt)
{
    if (attempt > job->attempt)
        job->attempt = attempt;
    job->row_attempt = attempt;
}

int lt_job_row_attempt(const lt_job_t *job)
{
    return job->row_attempt;
}

void lt_job_failed(lt_job_t *job, int progressed, int64_t now_ms)
{
    if (progressed || !job->failing_since) {
        job->failing_since = now_ms;
        job->failures = 0;
    }
    job->failures++;
}

int64_t lt_job_failing_since(const lt_job_t *job)
{
    return job->failing_since;
}

int lt_job_failures(const lt_job_t *job)
{
    return job->failures;
}

/* --- accounts (a chained hash table) ------------------------------------ */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static acct_t *acct_find(lt_dispatch_t *d, const char *name, int create)
{
    uint64_t h = hash_str(name);
    for (acct_t *a = d->buckets[h & (d->nbuckets - 1)]; a; a = a->chain) {
        d->steps++;
        if (a->hash == h && !strcmp(a->name, name))
            return a;
    }
    if (!create)
        return NULL;
    if (d->naccts >= d->nbuckets) { /* grow: keep chains short */
        size_t nb = d->nbuckets * 2;
        acct_t **b = lt_xcalloc(nb, sizeof(*b));
        for (size_t i = 0; i < d->nbuckets; i++) {
            acct_t *a = d->buckets[i];
            while (a) {
                acct_t *next = a->chain;
                a->chain = b[a->hash & (nb - 1)];
                b[a->hash & (nb - 1)] = a;
                a = next;
            }
        }
        free(d->buckets);
        d->buckets = b;
        d->nbuckets = nb;
    }
    acct_t *a = lt_xcalloc(1, sizeof(*a));
    a->name = lt_xstrdup(name);
    a->hash = h;
    a->chain = d->buckets[h & (d->nbuckets - 1)];
    d->buckets[h & (d->nbuckets - 1)] = a;
    d->naccts++;
    return a;
}

/* Forget an account with nothing queued or running (not in a heap). */
static void acct_drop(lt_dispatch_t *d, acct_t *a)
{
    for (acct_t **p = &d->buckets[a->hash & (d->nbuckets - 1)]; *p; p = &(*p)->chain)
        if (*p == a) {
            *p = a->chain;
            break;
        }
    d->naccts--;
    free(a->name);
    free(a);
}

/* --- heaps of idle accounts ---------------------------------------------- */

static int heap_less(int which, const acct_t *x, const acct_t *y)
{
    if (which == HEAP_DELAYED && x->head->not_before != y->head->not_before)
        return x->head->not_before < y->head->not_before;
    return x->head->seq < y->head->seq;
}

static heap_t *heap_of(lt_dispatch_t *d, int which)
{
    return which == HEAP_READY ? &d->ready : &d->delayed;
}

static void heap_set(heap_t *h, size_t i, acct_t *a)
{
    h->v[i] = a;
    a->heap_pos = i;
}

static void heap_up(lt_dispatch_t *d, int which, size_t i)
{
    heap_t *h = heap_of(d, which);
    acct_t *a = h->v[i];
    while (i > 0) {
        d->steps++;
        size_t parent = (i - 1) / 2;
        if (!heap_less(which, a, h->v[parent]))
            break;
        heap_set(h, i, h->v[parent]);
        i = parent;
    }
    heap_set(h, i, a);
}

static void heap_down(lt_dispatch_t *d, int which, size_t i)
{
    heap_t *h = heap_of(d, which);
    acct_t *a = h->v[i];
    for (;;) {
        d->steps++;
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && heap_less(which, h->v[c + 1], h->v[c]))
            c++;
        if (!heap_less(which, h->v[c], a))
            break;
        heap_set(h, i, h->v[c]);
        i = c;
    }
    heap_set(h, i, a);
}

static void heap_push(lt_dispatch_t *d, int which, acct_t *a)
{
    heap_t *h = heap_of(d, which);
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->v = lt_xrealloc(h->v, h->cap * sizeof(*h->v));
    }
    a->heap = which;
    heap_set(h, h->n++, a);
    heap_up(d, which, a->heap_pos);
}

static acct_t *heap_pop(lt_dispatch_t *d, int which)
{
    heap_t *h = heap_of(d, which);
    acct_t *top = h->v[0];
    top->heap = HEAP_NONE;
    if (--h->n > 0) {
        heap_set(h, 0, h->v[h->n]);
        heap_down(d, which, 0);
    }
    return top;
}

/* An idle account with a queued job joins the heap its head job belongs in. */
static void schedule(lt_dispatch_t *d, acct_t *a, int64_t now)
{
    if (a->running || !a->head || a->heap != HEAP_NONE)
        return;
    heap_push(d, a->head->not_before > now ? HEAP_DELAYED : HEAP_READY, a);
}

static uint32_t *gen_of(lt_dispatch_t *d, int32_t partition)
{
    size_t p = partition < 0 ? 0 : (size_t)partition;
    if (p >= d->ngens) {
        size_t n = p + 16;
        d->gens = lt_xrealloc(d->gens, n * sizeof(*d->gens));
        memset(d->gens + d->ngens, 0, (n - d->ngens) * sizeof(*d->gens));
        d->ngens = n;
    }
    return &d->gens[p];
}

/* --- the queue -------------------------------------------------------------- */

lt_dispatch_t *lt_dispatch_new(void)
{
    lt_dispatch_t *d = lt_xcalloc(1, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    d->nbuckets = 64;
    d->buckets = lt_xcalloc(d->nbuckets, sizeof(*d->buckets));
    return d;
}

static void destroy_jobs(lt_job_t *j)
{
    while (j) {
        lt_job_t *n = j->next;
        lt_job_destroy(j);
        j = n;
    }
}

void lt_dispatch_destroy(lt_dispatch_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nbuckets; i++) {
        acct_t *a = d->buckets[i];
        while (a) {
            acct_t *n = a->chain;
            destroy_jobs(a->head);
            free(a->name);
            free(a);
            a = n;
        }
    }
    free(d->buckets);
    free(d->ready.v);
    free(d->delayed.v);
    free(d->running);
    free(d->gens);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void lt_dispatch_push(lt_dispatch_t *d, lt_job_t *job)
{
    pthread_mutex_lock(&d->mu);
    job->next = NULL;
    job->seq = d->next_seq++;
    job->gen = *gen_of(d, job->partition);
    acct_t *a = acct_find(d, job->account, 1);
    if (a->tail)
        a->tail->next = job;
    else
        a->head = job;
    a->tail = job;
    d->queued++;
    schedule(d, a, lt_now_ms());
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* The runnable job that arrived first: the head of an idle account whose
 * not-before time passed. Sets *wake_ms to the earliest future not-before. */
static lt_job_t *take_runnable(lt_dispatch_t *d, int64_t now, int64_t *wake_ms)
{
    while (d->delayed.n && d->delayed.v[0]->head->not_before <= now)
        heap_push(d, HEAP_READY, heap_pop(d, HEAP_DELAYED));
    if (d->delayed.n)
        *wake_ms = d->delayed.v[0]->head->not_before;
    d->steps++;
    if (!d->ready.n)
        return NULL;
    acct_t *a = heap_pop(d, HEAP_READY);
    lt_job_t *j = a->head;
    a->head = j->next;
    if (!a->head)
        a->tail = NULL;
    j->next = NULL;
    a->running = j;
    d->queued--;
    return j;
}

lt_job_t *lt_dispatch_pop(lt_dispatch_t *d, int timeout_ms)
{
    int64_t deadline = lt_now_ms() + timeout_ms;
    lt_job_t *job = NULL;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (d->closed)
            break;
        int64_t now = lt_now_ms();
        int64_t wake = 0;
        job = take_runnable(d, now, &wake);
        if (job) {
            if (d->nrunning == d->running_cap) {
                d->running_cap = d->running_cap ? d->running_cap * 2 : 16;
                d->running = lt_xrealloc(d->running, d->running_cap * sizeof(*d->running));
            }
            d->running[d->nrunning++] = job;
            job->attempt++;
            break;
        }
        if (now >= deadline)
            break;
        int64_t until = deadline;
        if (wake && wake < until)
            until = wake;
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000L};
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
    return job;
}

void lt_dispatch_finish(lt_dispatch_t *d, lt_job_t *job, int requeue)
{
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->nrunning; i++)
        if (d->running[i] == job) {
            d->running[i] = d->running[--d->nrunning];
            break;
        }
    acct_t *a = acct_find(d, job->account, 0);
    if (a && a->running == job)
        a->running = NULL;
    /* A retry of a partition revoked since the job was queued is dropped:
     * the partition's new owner runs the command. */
    if (requeue && a && job->gen == *gen_of(d, job->partition)) {
        job->next = a->head; /* ahead of the account's later commands */
        a->head = job;
        if (!a->tail)
            a->tail = job;
        d->queued++;
        job = NULL;
    }
    if (a) {
        if (a->head)
            schedule(d, a, lt_now_ms());
        else if (!a->running)
            acct_drop(d, a);
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    lt_job_destroy(job);
}

int lt_dispatch_cancel_partition(lt_dispatch_t *d, int32_t partition)
{
    int n = 0;
    pthread_mutex_lock(&d->mu);
    (*gen_of(d, partition))++;
    /* Rare (a revocation): walk everything, then rebuild the heaps. */
    d->ready.n = d->delayed.n = 0;
    int64_t now = lt_now_ms();
    for (size_t i = 0; i < d->nbuckets; i++) {
        acct_t **ap = &d->buckets[i];
        while (*ap) {
            acct_t *a = *ap;
            a->heap = HEAP_NONE;
            lt_job_t **jp = &a->head;
            a->tail = NULL;
            while (*jp) {
                lt_job_t *j = *jp;
                if (j->partition == partition) {
                    *jp = j->next;
                    lt_job_destroy(j);
                    d->queued--;
                    n++;
                } else {
                    a->tail = j;
                    jp = &j->next;
                }
            }
            if (!a->head && !a->running) { /* nothing left: forget it */
                *ap = a->chain;
                d->naccts--;
                free(a->name);
                free(a);
                continue;
            }
            schedule(d, a, now);
            ap = &a->chain;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

static int count_running(const lt_dispatch_t *d, int32_t partition)
{
    int n = 0;
    for (size_t i = 0; i < d->nrunning; i++)
        if (partition < 0 || d->running[i]->partition == partition)
            n++;
    return n;
}

int lt_dispatch_running(lt_dispatch_t *d, int32_t partition)
{
    pthread_mutex_lock(&d->mu);
    int n = count_running(d, partition);
    pthread_mutex_unlock(&d->mu);
    return n;
}

int lt_dispatch_size(lt_dispatch_t *d)
{
    pthread_mutex_lock(&d->mu);
    int n = (int)(d->queued + d->nrunning);
    pthread_mutex_unlock(&d->mu);
    return n;
}

int lt_dispatch_queued(lt_dispatch_t *d)
{
    pthread_mutex_lock(&d->mu);
    int n = (int)d->queued;
    pthread_mutex_unlock(&d->mu);
    return n;
}
int lt_dispatch_wait_idle(lt_dispatch_t *d, int32_t partition, int timeout_ms)
{
    int64_t deadline = lt_now_ms() + timeout_ms;
    pthread_mutex_lock(&d->mu);
    int n;
    while ((n = count_running(d, partition)) > 0) {
        int64_t now = lt_now_ms();
        if (now >= deadline)
            break;
        struct timespec ts = {(time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000L};
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

void lt_dispatch_close(lt_dispatch_t *d)
{
    pthread_mutex_lock(&d->mu);
    d->closed = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

uint64_t lt_dispatch_steps(lt_dispatch_t *d)
{
    pthread_mutex_lock(&d->mu);
    uint64_t n = d->steps;
    pthread_mutex_unlock(&d->mu);
    return n;
}
