/* lt_gmail_bucket: the client-side token bucket of one Gmail account.
 *
 * Refilled at `rate` units per second up to `rate * burst_s`, it starts
 * EMPTY (the server's bucket may have been drained by the previous command
 * a moment ago), so a client that takes from it before every request never
 * outruns a server bucket of the same rate and at least the same capacity.
 * pause() empties it and blocks it until a time (a 429 / Retry-After).
 * A plain value with explicit time (milliseconds, any monotonic origin), so
 * it is tested without clocks. rate <= 0: no limit. */
#ifndef LT_GMAIL_BUCKET_H
#define LT_GMAIL_BUCKET_H

#include <stdint.h>

typedef struct {
    double rate;   /* units per second */
    double cap;    /* units */
    double tokens; /* units available at t_ms */
    int64_t t_ms;
    int64_t pause_until_ms;
} lt_gmail_bucket_t;

void lt_gmail_bucket_init(lt_gmail_bucket_t *b, double rate, double burst_s, int64_t now_ms);
/* 0 when `cost` may be taken now, else the milliseconds to wait. A cost
 * above the capacity (a small quota) may start once the bucket is full, and
 * take() then charges it in full: the bucket goes negative and the next
 * request waits for the debt, so the rate holds at any quota. */
int64_t lt_gmail_bucket_wait(lt_gmail_bucket_t *b, double cost, int64_t now_ms);
/* Take `cost` in full (call after a wait of 0); tokens may go below 0. */
void lt_gmail_bucket_take(lt_gmail_bucket_t *b, double cost);
/* Empty the bucket and refuse everything until until_ms. */
void lt_gmail_bucket_pause(lt_gmail_bucket_t *b, int64_t until_ms);

#endif
