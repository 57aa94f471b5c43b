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
    int64_t not_before;
    lt_job_t *next;
};

typedef struct running_s {
    const lt_job_t *job;
    struct running_s *next;
} running_t;

struct lt_dispatch_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lt_job_t *head, *tail;
    running_t *running;
    int closed;
};

int64_t lt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

lt_dispatch_t *lt_dispatch_new(void)
{
    lt_dispatch_t *d = lt_xcalloc(1, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    return d;
}

void lt_dispatch_destroy(lt_dispatch_t *d)
{
    if (!d)
        return;
    lt_job_t *j = d->head;
    while (j) {
        lt_job_t *n = j->next;
        lt_job_destroy(j);
        j = n;
    }
    running_t *r = d->running;
    while (r) {
        running_t *n = r->next;
        free(r);
        r = n;
    }
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void lt_dispatch_push(lt_dispatch_t *d, lt_job_t *job)
{
    pthread_mutex_lock(&d->mu);
    job->next = NULL;
    if (d->tail)
        d->tail->next = job;
    else
        d->head = job;
    d->tail = job;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static int account_running(const lt_dispatch_t *d, const char *account)
{
    for (const running_t *r = d->running; r; r = r->next)
        if (!strcmp(r->job->account, account))
            return 1;
    return 0;
}

/* First runnable job: its account idle, no earlier queued job of the same
 * account (order per account), and its not-before time passed. Sets
 * *wake_ms to the earliest future not-before seen. */
static lt_job_t *take_runnable(lt_dispatch_t *d, int64_t now, int64_t *wake_ms)
{
    lt_job_t *prev = NULL;
    for (lt_job_t *j = d->head; j; prev = j, j = j->next) {
        if (account_running(d, j->account))
            continue;
        int earlier = 0;
        for (lt_job_t *k = d->head; k != j; k = k->next)
            if (!strcmp(k->account, j->account)) {
                earlier = 1;
                break;
            }
        if (earlier)
            continue;
        if (j->not_before > now) {
            if (*wake_ms == 0 || j->not_before < *wake_ms)
                *wake_ms = j->not_before;
            continue;
        }
        if (prev)
            prev->next = j->next;
        else
            d->head = j->next;
        if (d->tail == j)
            d->tail = prev;
        j->next = NULL;
        return j;
    }
    return NULL;
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
            running_t *r = lt_xcalloc(1, sizeof(*r));
            r->job = job;
            r->next = d->running;
            d->running = r;
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
    for (running_t **rp = &d->running; *rp; rp = &(*rp)->next) {
        if ((*rp)->job == job) {
            running_t *r = *rp;
            *rp = r->next;
            free(r);
            break;
        }
    }
    if (requeue) {
        job->next = d->head; /* ahead of the account's later commands */
        d->head = job;
        if (!d->tail)
            d->tail = job;
        job = NULL;
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    lt_job_destroy(job);
}

int lt_dispatch_cancel_partition(lt_dispatch_t *d, int32_t partition)
{
    int n = 0;
    pthread_mutex_lock(&d->mu);
    lt_job_t *prev = NULL, *j = d->head;
    while (j) {
        lt_job_t *next = j->next;
        if (j->partition == partition) {
            if (prev)
                prev->next = next;
            else
                d->head = next;
            if (d->tail == j)
                d->tail = prev;
            lt_job_destroy(j);
            n++;
        } else {
            prev = j;
        }
        j = next;
    }
    pthread_mutex_unlock(&d->mu);
    return n;
}

static int count_running(const lt_dispatch_t *d, int32_t partition)
{
    int n = 0;
    for (const running_t *r = d->running; r; r = r->next)
        if (partition < 0 || r->job->partition == partition)
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
    int n = count_running(d, -1);
    for (lt_job_t *j = d->head; j; j = j->next)
        n++;
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
