/* lt_group_watch: partitions of the command topic that no member of the
 * worker's consumer group owns, and when to rejoin the group for them.
 *
 * A static member (group.instance.id) that ends between the first round of
 * a cooperative rebalance (it revoked partitions for another member) and its
 * rejoin leaves those partitions to nobody: its restart, inside the session
 * timeout, gets its cached assignment back without a new rebalance (KIP-345),
 * and no member asks for one. Their commands would wait until the group
 * changes again. A thread of this module describes the group every
 * `check_ms` (the Admin API's DescribeConsumerGroups, on the worker's own
 * consumer) and reads the topic's partition count; a partition owned by no
 * member of a stable group for `grace_ms` on consecutive checks is reported
 * once to the poll thread, which rejoins the group (unsubscribe, subscribe:
 * a rebalance that assigns every partition). A normal cooperative rebalance
 * also leaves partitions unowned in a stable group between its two rounds,
 * while their previous owner drains them: grace_ms is above that drain.
 *
 * Thread-safety: lt_group_watch_take() from one thread (the poll thread);
 * lt_group_watch_observe() is the decision alone, for tests. */
#ifndef LT_GROUP_WATCH_H
#define LT_GROUP_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "lt_err.h"

typedef struct lt_group_watch_s lt_group_watch_t;

typedef struct {
    int check_ms; /* between two descriptions of the group */
    int grace_ms; /* how long a partition stays unowned before a rejoin is asked */
} lt_group_watch_opts_t;

lt_group_watch_t *lt_group_watch_new(const lt_group_watch_opts_t *o);
void lt_group_watch_destroy(lt_group_watch_t *g); /* stops the thread first */

/* Start the thread on `consumer` (borrowed; it must outlive the watch, or
 * the watch be destroyed first). */
lt_err_t lt_group_watch_start(lt_group_watch_t *g, rd_kafka_t *consumer, const char *group,
                              const char *topic, char *errstr, size_t errstr_size);

/* One reading: the group stable or not, the topic's partition count and
 * which of them a member owns (owned[p] != 0). Returns the number of
 * partitions unowned for grace_ms on consecutive stable readings, else 0.
 * A report forgets every unowned partition (a rejoin follows): the next
 * report needs grace_ms of its own;
 * `which` gets them as "0,3" (truncated to its size). */
int lt_group_watch_observe(lt_group_watch_t *g, int64_t now_ms, int stable, int npartitions,
                           const uint8_t *owned, char *which, size_t which_size);

/* Poll thread: a report of the thread's readings (see observe), once; 0
 * when there is none. `unowned` (may be NULL) gets the last reading's
 * count of unowned partitions in a stable group. */
int lt_group_watch_take(lt_group_watch_t *g, char *which, size_t which_size, int *unowned);

#endif
