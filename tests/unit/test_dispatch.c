/* Job queue: per-account serialisation and order, retries, partition
 * cancellation, a retry of a revoked partition, the cost of a take. */
#include <stdio.h>

#include "lt_dispatch.h"
#include "lt_test.h"

/* One account with many queued commands ahead of many other accounts' must
 * not make every take walk the busy account's backlog: the steps spent
 * choosing jobs stay within a log factor per take. */
static void test_cost_per_take(void)
{
    enum { HOT = 50000, OTHERS = 50000 }; /* 100k queued */
    lt_dispatch_t *d = lt_dispatch_new();
    char acct[32];
    for (int i = 0; i < HOT; i++)
        lt_dispatch_push(d, lt_job_new(0, i, "hot", "h", 1));
    for (int i = 0; i < OTHERS; i++) {
        snprintf(acct, sizeof(acct), "acct-%d", i);
        lt_dispatch_push(d, lt_job_new(1, i, acct, "o", 1));
    }
    CHECK_INT(lt_dispatch_size(d), HOT + OTHERS);
    lt_job_t *hot = lt_dispatch_pop(d, 10); /* "hot" runs; its backlog waits */
    CHECK(hot && !strcmp(lt_job_account(hot), "hot") && lt_job_offset(hot) == 0);
    int ok = 1;
    for (int i = 0; i < OTHERS; i++) { /* arrival order across accounts */
        lt_job_t *j = lt_dispatch_pop(d, 10);
        if (!j || lt_job_partition(j) != 1 || lt_job_offset(j) != i)
            ok = 0;
        if (j)
            lt_dispatch_finish(d, j, 0);
    }
    CHECK_MSG(ok, "other accounts' jobs not handed out in arrival order");
    lt_dispatch_finish(d, hot, 0);
    for (int i = 1; i < HOT; i++) { /* then the backlog, in order */
        lt_job_t *j = lt_dispatch_pop(d, 10);
        if (!j || lt_job_offset(j) != i)
            ok = 0;
        if (j)
            lt_dispatch_finish(d, j, 0);
    }
    CHECK_MSG(ok, "the busy account's backlog not handed out in order");
    CHECK_INT(lt_dispatch_size(d), 0);
    uint64_t steps = lt_dispatch_steps(d);
    uint64_t takes = HOT + OTHERS;
    fprintf(stderr, "cost: %llu steps for %llu takes (%.1f per take)\n",
            (unsigned long long)steps, (unsigned long long)takes, (double)steps / (double)takes);
    CHECK_MSG(steps <= takes * 64, "choosing a job costs more than O(log n) per take");
    lt_dispatch_destroy(d);
}

/* A command of a revoked partition that fails temporarily while the
 * revocation drains is not queued again: the partition's new owner runs it. */
static void test_retry_after_revoke(void)
{
    lt_dispatch_t *d = lt_dispatch_new();
    lt_dispatch_push(d, lt_job_new(3, 10, "acct-r", "r1", 2));
    lt_dispatch_push(d, lt_job_new(4, 20, "acct-s", "s1", 2));
    lt_job_t *r = lt_dispatch_pop(d, 10);
    lt_job_t *s = lt_dispatch_pop(d, 10);
    CHECK(r && s && lt_job_partition(r) == 3 && lt_job_partition(s) == 4);
    CHECK_INT(lt_dispatch_cancel_partition(d, 3), 0); /* revoked: nothing queued */
    lt_job_retry_at(r, 0);
    lt_dispatch_finish(d, r, 1); /* the retry of the revoked partition's command */
    lt_job_retry_at(s, 0);
    lt_dispatch_finish(d, s, 1); /* partition 4 is still ours: queued again */
    CHECK_INT(lt_dispatch_size(d), 1);
    lt_job_t *again = lt_dispatch_pop(d, 10);
    CHECK(again && lt_job_partition(again) == 4);
    CHECK(lt_dispatch_pop(d, 10) == NULL);
    lt_dispatch_finish(d, again, 0);
    /* assigned again later: its commands are taken as usual */
    lt_dispatch_push(d, lt_job_new(3, 10, "acct-r", "r1", 2));
    lt_job_t *r2 = lt_dispatch_pop(d, 10);
    CHECK(r2 && lt_job_partition(r2) == 3);
    lt_job_retry_at(r2, 0);
    lt_dispatch_finish(d, r2, 1);
    CHECK_INT(lt_dispatch_size(d), 1);
    lt_dispatch_destroy(d);
}

/* The retry budget: failures since the last durable progress; the row's
 * attempt taken over when it is ahead. */
static void test_retry_budget(void)
{
    lt_job_t *j = lt_job_new(0, 1, "acct", "x", 1);
    CHECK(lt_job_failing_since(j) == 0 && lt_job_failures(j) == 0);
    lt_job_failed(j, 0, 1000);
    lt_job_failed(j, 0, 3000);
    lt_job_failed(j, 0, 7000);
    CHECK(lt_job_failing_since(j) == 1000 && lt_job_failures(j) == 3);
    lt_job_failed(j, 1, 9000); /* the attempt moved the watermark: a new window */
    CHECK(lt_job_failing_since(j) == 9000 && lt_job_failures(j) == 1);
    CHECK_INT(lt_job_row_attempt(j), 0);
    lt_job_started(j, 4); /* a predecessor's runs: the row is ahead */
    CHECK_INT(lt_job_attempt(j), 4);
    CHECK_INT(lt_job_row_attempt(j), 4);
    lt_job_destroy(j);
}

int main(void)
{
    test_retry_budget();
    test_cost_per_take();
    test_retry_after_revoke();

    lt_dispatch_t *d = lt_dispatch_new();
    lt_dispatch_push(d, lt_job_new(0, 1, "acct-a", "a1", 2));
    lt_dispatch_push(d, lt_job_new(0, 2, "acct-a", "a2", 2));
    lt_dispatch_push(d, lt_job_new(1, 7, "acct-b", "b1", 2));
    CHECK_INT(lt_dispatch_size(d), 3);

    lt_job_t *j1 = lt_dispatch_pop(d, 10);
    CHECK(j1 && lt_job_offset(j1) == 1);
    /* acct-a is busy: the next runnable job is acct-b's, not a2. */
    lt_job_t *j2 = lt_dispatch_pop(d, 10);
    CHECK(j2 && !strcmp(lt_job_account(j2), "acct-b"));
    CHECK(lt_dispatch_pop(d, 20) == NULL);
    CHECK_INT(lt_dispatch_running(d, -1), 2);
    CHECK_INT(lt_dispatch_running(d, 0), 1);

    /* a1 fails temporarily: requeued with a delay, still ahead of a2. */
    lt_job_retry_at(j1, lt_now_ms() + 80);
    lt_dispatch_finish(d, j1, 1);
    int64_t t0 = lt_now_ms();
    lt_job_t *j3 = lt_dispatch_pop(d, 1000);
    CHECK(j3 && lt_job_offset(j3) == 1);
    CHECK_MSG(lt_now_ms() - t0 >= 70, "retry delay not respected");
    CHECK_INT(lt_job_attempt(j3), 2);
    size_t len;
    const uint8_t *v = lt_job_value(j3, &len);
    CHECK(len == 2 && !memcmp(v, "a1", 2));
    lt_dispatch_finish(d, j3, 0);
    lt_job_t *j4 = lt_dispatch_pop(d, 10);
    CHECK(j4 && lt_job_offset(j4) == 2);
    lt_dispatch_finish(d, j4, 0);

    /* Cancel a revoked partition's queued jobs; running ones are waited for. */
    lt_dispatch_push(d, lt_job_new(1, 8, "acct-b", "b2", 2));
    lt_dispatch_push(d, lt_job_new(1, 9, "acct-c", "c1", 2));
    CHECK_INT(lt_dispatch_cancel_partition(d, 1), 2);
    CHECK_INT(lt_dispatch_wait_idle(d, 1, 30), 1);
    lt_dispatch_finish(d, j2, 0);
    CHECK_INT(lt_dispatch_wait_idle(d, 1, 30), 0);
    CHECK_INT(lt_dispatch_size(d), 0);

    lt_dispatch_push(d, lt_job_new(2, 1, "x", "", 0));
    lt_dispatch_close(d);
    CHECK(lt_dispatch_pop(d, 1000) == NULL);
    lt_dispatch_destroy(d);
    return lt_test_done("test_dispatch");
}
