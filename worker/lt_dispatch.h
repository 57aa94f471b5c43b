/* lt_dispatch: the worker's job queue.
 *
 * Jobs (commands taken from the consumer) are handed to slot threads in
 * arrival order, except that two jobs of the same account never run at the
 * same time: a job whose account is busy waits behind it. A job may carry a
 * not-before time (retry with backoff). Thread-safe.
 *
 * Cost: push, pop and finish are O(log accounts) (a hash of accounts, each
 * with its FIFO of jobs, and heaps of the idle accounts); cancelling a
 * partition walks everything once. */
#ifndef LT_DISPATCH_H
#define LT_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "lt_clock.h" /* lt_now_ms(): the clock of lt_job_retry_at */

typedef struct lt_dispatch_s lt_dispatch_t;
typedef struct lt_job_s lt_job_t;

/* A job owns copies of the key and value. */
lt_job_t *lt_job_new(int32_t partition, int64_t offset, const char *account_key,
                     const void *value, size_t value_len);
void lt_job_destroy(lt_job_t *job);
int32_t lt_job_partition(const lt_job_t *job);
int64_t lt_job_offset(const lt_job_t *job);
const char *lt_job_account(const lt_job_t *job);
const uint8_t *lt_job_value(const lt_job_t *job, size_t *len);
int lt_job_attempt(const lt_job_t *job);
/* Monotonic milliseconds before which the job is not handed out. */
void lt_job_retry_at(lt_job_t *job, int64_t not_before_ms);
/* The command's row was started with attempt `attempt` by this process:
 * later attempts number on from it (the in-memory count and the row's
 * agree even when a failure could not be written to the row). */
void lt_job_started(lt_job_t *job, int attempt);
/* The row attempt this process last started (0: none). */
int lt_job_row_attempt(const lt_job_t *job);
/* The retry budget of temporary failures (monotonic clock): record a
 * failure at now_ms; progressed non-zero when the attempt made durable
 * progress, which starts the budget again. */
void lt_job_failed(lt_job_t *job, int progressed, int64_t now_ms);
/* Monotonic time of the first temporary failure since the last progress
 * (0: none), and the failures since then (the backoff's exponent). */
int64_t lt_job_failing_since(const lt_job_t *job);
int lt_job_failures(const lt_job_t *job);

lt_dispatch_t *lt_dispatch_new(void);
/* Destroys queued jobs too. */
void lt_dispatch_destroy(lt_dispatch_t *d);

/* Queue a job (ownership moves to the queue). */
void lt_dispatch_push(lt_dispatch_t *d, lt_job_t *job);
/* Wait up to timeout_ms for a runnable job; its account becomes busy and the
 * caller owns the job until lt_dispatch_finish(). NULL on timeout/close. */
lt_job_t *lt_dispatch_pop(lt_dispatch_t *d, int timeout_ms);
/* The job is done with: its account is free again. If requeue is non-zero
 * the job goes back to the queue (at its account's head, so the order of
 * the account's commands is kept), else it is destroyed. */
void lt_dispatch_finish(lt_dispatch_t *d, lt_job_t *job, int requeue);

/* Drop queued (not running) jobs of a partition (revoked); returns how
 * many. A job of it running now is not queued again by
 * lt_dispatch_finish(): it is destroyed. Jobs pushed later (the partition
 * assigned again) are queued as usual. */
int lt_dispatch_cancel_partition(lt_dispatch_t *d, int32_t partition);
/* Running jobs of a partition (all partitions when partition < 0). */
int lt_dispatch_running(lt_dispatch_t *d, int32_t partition);
/* Queued + running jobs. */
int lt_dispatch_size(lt_dispatch_t *d);
/* Queued (not running) jobs. */
int lt_dispatch_queued(lt_dispatch_t *d);
/* Wait until no job of the partition (any when < 0) runs, up to timeout_ms;
 * returns the number still running. */
int lt_dispatch_wait_idle(lt_dispatch_t *d, int32_t partition, int timeout_ms);
/* Elementary steps spent choosing jobs so far (the cost of takes, for
 * tests). */
uint64_t lt_dispatch_steps(lt_dispatch_t *d);
/* Wake every waiter; pop returns NULL from now on. */
void lt_dispatch_close(lt_dispatch_t *d);

#endif
