/* lattice-watcher's pure decisions (watcher/lt_watch_plan.h): the debounce
 * and no-pile-up gate on a fake clock, the reconnect backoff, and the
 * partition of an account key (librdkafka's partitioners: CRC32 for the
 * default consistent_random, Kafka's murmur2). */
#include <stdlib.h>

#include "lt_test.h"
#include "lt_watch_plan.h"

static void test_gate_debounce(void)
{
    lt_watch_gate_t g = {0};
    CHECK(!lt_watch_gate_due(&g, 0));
    lt_watch_gate_note(&g, "INBOX", 1000, 200);
    CHECK(!lt_watch_gate_ready(&g, 1000));
    CHECK(!lt_watch_gate_ready(&g, 1199));
    /* a burst inside the window does not move it */
    for (int i = 0; i < 100; i++)
        lt_watch_gate_note(&g, "INBOX", 1100 + i, 200);
    CHECK(lt_watch_gate_ready(&g, 1200));
    CHECK_STR(lt_watch_gate_scope(&g), "INBOX");
    CHECK_INT(g.notes, 101);
    lt_watch_gate_sent(&g);
    CHECK(!lt_watch_gate_due(&g, 5000));
    CHECK(g.in_flight);
    lt_watch_gate_clear(&g);
}

static void test_gate_in_flight(void)
{
    lt_watch_gate_t g = {0};
    lt_watch_gate_note(&g, "INBOX", 0, 200);
    lt_watch_gate_sent(&g); /* command 1 in flight */
    /* mail arrives during the run: remembered, held back */
    lt_watch_gate_note(&g, "INBOX", 500, 200);
    CHECK(lt_watch_gate_due(&g, 800));
    CHECK(!lt_watch_gate_ready(&g, 800));
    CHECK(!lt_watch_gate_ready(&g, 100000));
    /* the run ended (the in-flight list no longer has the account) */
    g.in_flight = 0;
    CHECK(lt_watch_gate_ready(&g, 100000));
    lt_watch_gate_sent(&g);
    lt_watch_gate_clear(&g);
}

static void test_gate_scopes(void)
{
    lt_watch_gate_t g = {0};
    lt_watch_gate_note(&g, "INBOX", 0, 0);
    lt_watch_gate_note(&g, "Sent", 0, 0);
    CHECK(lt_watch_gate_ready(&g, 0));
    CHECK(lt_watch_gate_scope(&g) == NULL); /* two folders: all scopes */
    lt_watch_gate_sent(&g);
    /* delivery failed: pending again with its scope, at once */
    lt_watch_gate_failed(&g, "INBOX", 10);
    CHECK(!g.in_flight);
    CHECK(lt_watch_gate_ready(&g, 10));
    CHECK_STR(lt_watch_gate_scope(&g), "INBOX");
    /* a failure merged with a newer note of another folder: all scopes */
    lt_watch_gate_sent(&g);
    lt_watch_gate_note(&g, "Sent", 20, 0);
    lt_watch_gate_failed(&g, "INBOX", 20);
    CHECK(lt_watch_gate_scope(&g) == NULL);
    lt_watch_gate_clear(&g);
    lt_watch_gate_note(&g, NULL, 0, 0); /* the account as a whole */
    CHECK(lt_watch_gate_scope(&g) == NULL);
    lt_watch_gate_clear(&g);
}

static void test_backoff(void)
{
    CHECK_INT(lt_watch_backoff_ms(0, 300000, 0), 500);
    CHECK_INT(lt_watch_backoff_ms(0, 300000, 500), 1000);
    CHECK_INT(lt_watch_backoff_ms(3, 300000, 0), 4000);
    CHECK_INT(lt_watch_backoff_ms(50, 300000, 0), 150000);
    CHECK_INT(lt_watch_backoff_ms(50, 300000, UINT32_MAX), 150000 + (int64_t)(UINT32_MAX % 150001));
    for (uint32_t r = 0; r < 100000; r += 997) {
        int64_t d = lt_watch_backoff_ms(4, 10000, r * 2654435761u);
        CHECK(d >= 5000 && d <= 10000);
    }
}

static void test_partition(void)
{
    int32_t p = -1;
    /* consistent_random / consistent: CRC-32 (zlib's) of the key mod n */
    static const struct {
        const char *key;
        int32_t n, want;
    } crc[] = {{"acc-1", 3, 2}, {"acc-1", 12, 5},         {"a", 3, 0},
               {"a", 12, 3},    {"workmail-imap", 12, 6}, {"workmail-imap", 1, 0}};
    for (size_t i = 0; i < sizeof(crc) / sizeof(crc[0]); i++) {
        CHECK(lt_watch_partition(NULL, crc[i].key, strlen(crc[i].key), crc[i].n, &p) == LT_OK);
        CHECK_MSG(p == crc[i].want, "%s/%d: %d", crc[i].key, crc[i].n, p);
        CHECK(lt_watch_partition("consistent_random", crc[i].key, strlen(crc[i].key), crc[i].n,
                                 &p) == LT_OK);
        CHECK_INT(p, crc[i].want);
    }
    /* murmur2 (Java client's default): Kafka's own vectors, toPositive() % n */
    CHECK(lt_watch_partition("murmur2_random", "foobar", 6, 10, &p) == LT_OK);
    CHECK_INT(p, (int32_t)(((uint32_t)-790332482 & 0x7fffffff) % 10));
    CHECK(lt_watch_partition("murmur2", "21", 2, 7, &p) == LT_OK);
    CHECK_INT(p, (int32_t)(((uint32_t)-973932308 & 0x7fffffff) % 7));
    CHECK(lt_watch_partition("random", "a", 1, 3, &p) == LT_ERR_INVALID);
    CHECK(lt_watch_partition(NULL, "", 0, 3, &p) == LT_ERR_INVALID);
    CHECK(lt_watch_partition(NULL, "a", 1, 0, &p) == LT_ERR_INVALID);
}

int main(void)
{
    test_gate_debounce();
    test_gate_in_flight();
    test_gate_scopes();
    test_backoff();
    test_partition();
    return lt_test_done("test_watch_plan");
}
