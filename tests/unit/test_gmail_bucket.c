/* lt_gmail_bucket: pacing at Google's unit costs, with explicit time. */
#include <stdint.h>

#include "lt_gmail_bucket.h"
#include "lt_test.h"

/* Simulate a client taking `cost` as soon as allowed for `ms`; return how
 * many times it took. */
static int drain(lt_gmail_bucket_t *b, double cost, int64_t t0, int64_t ms, int64_t *t_end)
{
    int n = 0;
    int64_t t = t0;
    while (t < t0 + ms) {
        int64_t w = lt_gmail_bucket_wait(b, cost, t);
        if (w) {
            t += w;
            continue;
        }
        lt_gmail_bucket_take(b, cost);
        n++;
    }
    if (t_end)
        *t_end = t;
    return n;
}

int main(void)
{
    lt_gmail_bucket_t b;

    /* starts empty: the first 5-unit call waits 20 ms at 250 units/s */
    lt_gmail_bucket_init(&b, 250, 1.0, 1000);
    CHECK_INT(lt_gmail_bucket_wait(&b, 5, 1000), 21);
    CHECK_INT(lt_gmail_bucket_wait(&b, 5, 1020), 0);

    /* steady state: 50 messages.get per second, never more */
    lt_gmail_bucket_init(&b, 250, 1.0, 0);
    int n = drain(&b, 5, 0, 10000, NULL);
    CHECK_MSG(n >= 499 && n <= 500, "10 s at 250 units/s of 5-unit calls: %d (want 500)", n);

    /* mixed costs spend the same units: 2-unit history + 5-unit gets */
    lt_gmail_bucket_init(&b, 250, 1.0, 0);
    int64_t t = 0;
    double units = 0;
    while (t < 4000) {
        double cost = ((int)units % 7 == 0) ? 2 : 5;
        int64_t w = lt_gmail_bucket_wait(&b, cost, t);
        if (w) {
            t += w;
            continue;
        }
        lt_gmail_bucket_take(&b, cost);
        units += cost;
    }
    CHECK_MSG(units <= 4 * 250 + 5 && units >= 4 * 250 - 10, "4 s: %.0f units", units);

    /* idle time fills it up to one second of burst, not more */
    lt_gmail_bucket_init(&b, 250, 1.0, 0);
    CHECK_INT(lt_gmail_bucket_wait(&b, 250, 60000), 0);
    lt_gmail_bucket_take(&b, 250);
    CHECK(lt_gmail_bucket_wait(&b, 5, 60000) > 0);
    CHECK_INT(drain(&b, 5, 100000, 1, NULL), 50); /* after a long idle: 50 at once */
    CHECK(lt_gmail_bucket_wait(&b, 5, 100001) > 0);

    /* a cost above the capacity starts once the bucket is full (never
     * stuck) and is charged in full: the next one waits for the debt */
    lt_gmail_bucket_init(&b, 10, 1.0, 0);
    CHECK(lt_gmail_bucket_wait(&b, 100, 0) > 0);
    CHECK_INT(lt_gmail_bucket_wait(&b, 100, 1000), 0);
    lt_gmail_bucket_take(&b, 100); /* 10 - 100 = -90 */
    CHECK_INT(lt_gmail_bucket_wait(&b, 100, 1000), 10001); /* back to full: 100 units at 10/s */
    CHECK_INT(lt_gmail_bucket_wait(&b, 100, 11001), 0);
    /* a quota of 1 unit/s with a 0.2 s burst: 10 gets of 5 units take ~50 s */
    lt_gmail_bucket_init(&b, 1, 0.2, 0);
    int64_t tq = 0;
    for (int i = 0; i < 10; i++) {
        int64_t w;
        while ((w = lt_gmail_bucket_wait(&b, 5, tq)) > 0)
            tq += w;
        lt_gmail_bucket_take(&b, 5);
    }
    CHECK_MSG(tq >= 44000 && tq <= 46000, "10 x 5 units at 1 unit/s: %lld ms", (long long)tq);

    /* pause (429 + Retry-After): nothing before, empty after */
    lt_gmail_bucket_init(&b, 250, 1.0, 0);
    CHECK_INT(lt_gmail_bucket_wait(&b, 5, 5000), 0);
    lt_gmail_bucket_pause(&b, 7000);
    CHECK_INT(lt_gmail_bucket_wait(&b, 5, 5000), 2000);
    CHECK_INT(lt_gmail_bucket_wait(&b, 1, 6999), 1);
    CHECK_INT(lt_gmail_bucket_wait(&b, 5, 7000), 21); /* refilling from empty at 7000 */
    CHECK_INT(lt_gmail_bucket_wait(&b, 5, 7020), 0);

    /* rate 0: unlimited */
    lt_gmail_bucket_init(&b, 0, 1.0, 0);
    CHECK_INT(lt_gmail_bucket_wait(&b, 5, 0), 0);
    return lt_test_done("test_gmail_bucket");
}
