/* The group watch's decision: a partition is reported only when no member
 * owns it in a stable group for the grace period, on consecutive readings;
 * once reported, it needs a grace period of its own again. */
#include <stdint.h>
#include <string.h>

#include "lt_group_watch.h"
#include "lt_test.h"

int main(void)
{
    lt_group_watch_opts_t o = {.check_ms = 1000, .grace_ms = 5000};
    lt_group_watch_t *g = lt_group_watch_new(&o);
    CHECK(g != NULL);
    char which[64];
    uint8_t all[4] = {1, 1, 1, 1};
    uint8_t two_left[4] = {1, 0, 1, 0}; /* 1 and 3 owned by nobody */

    /* every partition owned: nothing, ever */
    for (int64_t t = 0; t <= 20000; t += 1000)
        CHECK_INT(lt_group_watch_observe(g, t, 1, 4, all, which, sizeof(which)), 0);

    /* unowned in a stable group: reported once grace_ms has passed */
    CHECK_INT(lt_group_watch_observe(g, 30000, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 34999, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 35000, 1, 4, two_left, which, sizeof(which)), 2);
    CHECK_STR(which, "1,3");
    /* reported: the next report needs a grace of its own */
    CHECK_INT(lt_group_watch_observe(g, 36000, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_STR(which, "");
    CHECK_INT(lt_group_watch_observe(g, 40999, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 41000, 1, 4, two_left, which, sizeof(which)), 2);

    /* a rebalance in progress (not stable) resets the grace: the
     * partitions between the two rounds of a cooperative rebalance */
    CHECK_INT(lt_group_watch_observe(g, 50000, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 53000, 0, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 56000, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 60999, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 61000, 1, 4, two_left, which, sizeof(which)), 2);

    /* owned again in between: its grace starts over */
    uint8_t one_left[4] = {1, 1, 1, 0};
    CHECK_INT(lt_group_watch_observe(g, 70000, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 73000, 1, 4, one_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 75000, 1, 4, two_left, which, sizeof(which)), 1);
    CHECK_STR(which, "3");
    /* a report restarts every unowned partition's grace (a rejoin follows) */
    CHECK_INT(lt_group_watch_observe(g, 78000, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 79999, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 83000, 1, 4, two_left, which, sizeof(which)), 2);
    CHECK_STR(which, "1,3");

    /* partitions added to the topic: watched too; removed ones forgotten */
    uint8_t six[6] = {1, 1, 1, 1, 0, 1};
    CHECK_INT(lt_group_watch_observe(g, 90000, 1, 6, six, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 95000, 1, 6, six, which, sizeof(which)), 1);
    CHECK_STR(which, "4");
    CHECK_INT(lt_group_watch_observe(g, 96000, 1, 6, six, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 100000, 1, 4, all, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 200000, 1, 4, all, which, sizeof(which)), 0);

    /* an unknown reading (no partition count) is no evidence */
    CHECK_INT(lt_group_watch_observe(g, 210000, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 212000, 1, 0, NULL, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 216000, 1, 4, two_left, which, sizeof(which)), 0);
    CHECK_INT(lt_group_watch_observe(g, 221000, 1, 4, two_left, which, sizeof(which)), 2);

    /* a short `which` is cut, never overrun */
    char tiny[3];
    uint8_t none[12] = {0};
    CHECK_INT(lt_group_watch_observe(g, 300000, 1, 12, none, tiny, sizeof(tiny)), 0);
    CHECK_INT(lt_group_watch_observe(g, 305000, 1, 12, none, tiny, sizeof(tiny)), 12);
    CHECK(strlen(tiny) < sizeof(tiny));
    CHECK_STR(tiny, "0,");

    /* the thread's report, without a thread: nothing to take */
    int unowned = -1;
    CHECK_INT(lt_group_watch_take(g, which, sizeof(which), &unowned), 0);
    CHECK_INT(unowned, 0);
    lt_group_watch_destroy(g);
    return lt_test_done("test_group_watch");
}
