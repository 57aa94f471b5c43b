/* Job queue: per-account serialisation and order, retries, partition
 * cancellation. */
#include "lt_dispatch.h"
#include "lt_test.h"

int main(void)
{
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
