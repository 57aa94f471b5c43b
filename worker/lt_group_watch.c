#include "lt_group_watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lt_clock.h"
#include "lt_log.h"

#define LT_GROUP_WATCH_MAX_PARTITIONS 4096 /* beyond: the extra ones are not watched */
#define LT_GROUP_WATCH_REQUEST_MS 10000    /* one description or metadata request */

struct lt_group_watch_s {
    lt_group_watch_opts_t o;
    /* the decision (observe): since when each partition is unowned, -1 owned */
    int64_t *since;
    int nsince;
    /* the thread */
    rd_kafka_t *consumer;
    char *group, *topic;
    pthread_t thread;
    int started;
    atomic_int stop;
    pthread_mutex_t mu; /* report, which, unowned */
    int report;
    int unowned;
    char which[256];
};

lt_group_watch_t *lt_group_watch_new(const lt_group_watch_opts_t *o)
{
    lt_group_watch_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->o = *o;
    if (g->o.check_ms < 100)
        g->o.check_ms = 100;
    pthread_mutex_init(&g->mu, NULL);
    return g;
}

void lt_group_watch_destroy(lt_group_watch_t *g)
{
    if (!g)
        return;
    if (g->started) {
        atomic_store(&g->stop, 1);
        pthread_join(g->thread, NULL);
    }
    pthread_mutex_destroy(&g->mu);
    free(g->since);
    free(g->group);
    free(g->topic);
    free(g);
}

int lt_group_watch_observe(lt_group_watch_t *g, int64_t now_ms, int stable, int npartitions,
                           const uint8_t *owned, char *which, size_t which_size)
{
    if (which_size)
        which[0] = 0;
    if (npartitions > LT_GROUP_WATCH_MAX_PARTITIONS)
        npartitions = LT_GROUP_WATCH_MAX_PARTITIONS;
    if (npartitions < 0)
        npartitions = 0;
    if (npartitions > g->nsince) {
        int64_t *s = realloc(g->since, (size_t)npartitions * sizeof(*s));
        if (!s)
            return 0;
        for (int p = g->nsince; p < npartitions; p++)
            s[p] = -1;
        g->since = s;
        g->nsince = npartitions;
    }
    int due = 0;
    for (int p = 0; p < g->nsince; p++) {
        if (!stable || p >= npartitions || owned[p]) {
            g->since[p] = -1;
            continue;
        }
        if (g->since[p] < 0)
            g->since[p] = now_ms;
        if (now_ms - g->since[p] >= g->o.grace_ms)
            due++;
    }
    if (!due)
        return 0;
    /* reported: every unowned partition starts its grace again */
    size_t used = 0;
    for (int p = 0; p < g->nsince; p++) {
        if (g->since[p] >= 0 && now_ms - g->since[p] >= g->o.grace_ms && which_size > used) {
            int k = snprintf(which + used, which_size - used, "%s%d", used ? "," : "", p);
            used = k < 0 || (size_t)k >= which_size - used ? which_size - 1 : used + (size_t)k;
        }
        g->since[p] = -1;
    }
    return due;
}

/* The group's description: stable or not, and the partitions of the topic
 * its members own. 0 on success. */
static int describe(lt_group_watch_t *g, rd_kafka_queue_t *q, int *stable, uint8_t *owned,
                    int npartitions)
{
    int rc = -1;
    rd_kafka_event_t *ev = NULL;
    rd_kafka_AdminOptions_t *opts =
        rd_kafka_AdminOptions_new(g->consumer, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    char err[256];
    if (!opts)
        goto out;
    if (rd_kafka_AdminOptions_set_request_timeout(opts, LT_GROUP_WATCH_REQUEST_MS, err,
                                                  sizeof(err)))
        goto out;
    const char *groups[1] = {g->group};
    rd_kafka_DescribeConsumerGroups(g->consumer, groups, 1, opts, q);
    ev = rd_kafka_queue_poll(q, LT_GROUP_WATCH_REQUEST_MS + 2000);
    if (!ev || rd_kafka_event_error(ev)) {
        lt_debug(NULL, "group watch: describe %s: %s", g->group,
                 ev ? rd_kafka_event_error_string(ev) : "no answer");
        goto out;
    }
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        rd_kafka_event_DescribeConsumerGroups_result(ev);
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t **d =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &n) : NULL;
    if (n != 1 || rd_kafka_ConsumerGroupDescription_error(d[0]))
        goto out;
    *stable = rd_kafka_ConsumerGroupDescription_state(d[0]) == RD_KAFKA_CONSUMER_GROUP_STATE_STABLE;
    size_t members = rd_kafka_ConsumerGroupDescription_member_count(d[0]);
    for (size_t i = 0; i < members; i++) {
        const rd_kafka_MemberDescription_t *m = rd_kafka_ConsumerGroupDescription_member(d[0], i);
        const rd_kafka_MemberAssignment_t *a = m ? rd_kafka_MemberDescription_assignment(m) : NULL;
        const rd_kafka_topic_partition_list_t *l =
            a ? rd_kafka_MemberAssignment_partitions(a) : NULL;
        for (int k = 0; l && k < l->cnt; k++)
            if (!strcmp(l->elems[k].topic, g->topic) && l->elems[k].partition >= 0 &&
                l->elems[k].partition < npartitions)
                owned[l->elems[k].partition] = 1;
    }
    rc = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    return rc;
}

/* The topic's partition count, or -1. */
static int partition_count(lt_group_watch_t *g)
{
    int n = -1;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(g->consumer, g->topic, NULL);
    if (!t)
        return -1;
    if (!rd_kafka_metadata(g->consumer, 0, t, &md, LT_GROUP_WATCH_REQUEST_MS) && md &&
        md->topic_cnt == 1 && !md->topics[0].err)
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return n;
}

/* Sleeps ms on the monotonic clock; 1 when told to stop meanwhile. */
static int nap(lt_group_watch_t *g, int64_t ms)
{
    int64_t end = lt_now_ms() + ms;
    while (!atomic_load(&g->stop)) {
        int64_t left = end - lt_now_ms();
        if (left <= 0)
            return 0;
        struct timespec t = {0, (left < 100 ? left : 100) * 1000000L};
        clock_nanosleep(CLOCK_MONOTONIC, 0, &t, NULL);
    }
    return 1;
}

static void *watch_main(void *arg)
{
    lt_group_watch_t *g = arg;
    rd_kafka_queue_t *q = rd_kafka_queue_new(g->consumer);
    uint8_t *owned = calloc(LT_GROUP_WATCH_MAX_PARTITIONS, 1);
    /* the workers of a pool check at different times: a first wait of
     * between one and two periods, from this thread's own seed */
    unsigned seed = (unsigned)getpid() ^ (unsigned)lt_now_ms();
    int64_t wait = g->o.check_ms + (int64_t)(rand_r(&seed) % (unsigned)g->o.check_ms);
    while (q && owned && !nap(g, wait)) {
        wait = g->o.check_ms;
        int npart = partition_count(g);
        int stable = 0;
        if (npart > LT_GROUP_WATCH_MAX_PARTITIONS)
            npart = LT_GROUP_WATCH_MAX_PARTITIONS;
        if (npart > 0)
            memset(owned, 0, (size_t)npart);
        if (npart <= 0 || describe(g, q, &stable, owned, npart))
            stable = 0; /* unknown: no partition counts as unowned */
        char which[sizeof(g->which)];
        int due = lt_group_watch_observe(g, lt_now_ms(), stable, npart > 0 ? npart : 0, owned,
                                         which, sizeof(which));
        int unowned = 0;
        for (int p = 0; stable && p < npart; p++)
            unowned += !owned[p];
        pthread_mutex_lock(&g->mu);
        g->unowned = unowned;
        if (due) {
            g->report = due;
            memcpy(g->which, which, sizeof(which));
        }
        pthread_mutex_unlock(&g->mu);
    }
    free(owned);
    if (q)
        rd_kafka_queue_destroy(q);
    return NULL;
}

lt_err_t lt_group_watch_start(lt_group_watch_t *g, rd_kafka_t *consumer, const char *group,
                              const char *topic, char *errstr, size_t errstr_size)
{
    if (g->started)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "group watch: already started");
    g->consumer = consumer;
    g->group = strdup(group);
    g->topic = strdup(topic);
    if (!g->group || !g->topic)
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "group watch: out of memory");
    if (pthread_create(&g->thread, NULL, watch_main, g))
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                         "group watch: cannot start its thread");
    g->started = 1;
    return LT_OK;
}

int lt_group_watch_take(lt_group_watch_t *g, char *which, size_t which_size, int *unowned)
{
    pthread_mutex_lock(&g->mu);
    int due = g->report;
    g->report = 0;
    if (which_size)
        snprintf(which, which_size, "%s", due ? g->which : "");
    if (unowned)
        *unowned = g->unowned;
    pthread_mutex_unlock(&g->mu);
    return due;
}
