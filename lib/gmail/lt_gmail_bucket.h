/* lt_gmail_bucket: the client-side token bucket of one Gmail quota (a user's
 * or a project's), with an adaptive rate.
 *
 * Refilled at `rate` units per second up to `rate * burst_s`, it starts
 * EMPTY (the server's bucket may have been drained by the previous command
 * a moment ago), so a client that takes from it before every request never
 * outruns a server that allows the same rate with at least the same burst.
 *
 * The rate is adaptive (AIMD, as TCP's congestion window): `ceiling` is the
 * configured limit and the rate never goes above it. On a quota answer
 * cut() lowers the rate multiplicatively (x LT_GMAIL_AIMD_CUT, at most once
 * per LT_GMAIL_AIMD_COOLDOWN_MS: the requests already in flight answer for
 * the same overshoot) and remembers where it hit (w_max; a hit below the
 * previous w_max remembers less, as CUBIC's fast convergence); afterwards, while
 * the bucket is in use, the rate climbs back: quickly to just under w_max,
 * then slowly past it (LT_GMAIL_AIMD_PROBE of w_max per second) up to the
 * ceiling. With a known limit and no other user of the quota there is no
 * cut and the rate stays at the ceiling.
 *
 * pause() empties it and blocks it until a time (a Retry-After). A plain
 * value with explicit time (milliseconds, any monotonic origin), so it is
 * tested without clocks. ceiling <= 0: no limit. */
#ifndef LT_GMAIL_BUCKET_H
#define LT_GMAIL_BUCKET_H

#include <stdint.h>

#define LT_GMAIL_AIMD_CUT 0.8          /* rate factor on a quota answer */
#define LT_GMAIL_AIMD_COOLDOWN_MS 1000 /* one cut per overshoot */
#define LT_GMAIL_AIMD_NEAR 0.97        /* climb quickly to this share of w_max */
#define LT_GMAIL_AIMD_CLIMB_S 8.0      /* time constant of that climb */
#define LT_GMAIL_AIMD_PROBE 0.004      /* then w_max x this per second */
#define LT_GMAIL_AIMD_FLOOR 0.02       /* never below this share of the ceiling */

typedef struct {
    double ceiling; /* configured limit, units per second */
    double rate;    /* current rate, units per second (<= ceiling) */
    double burst_s;
    double cap;    /* units: rate * burst_s */
    double tokens; /* units available at t_ms */
    int64_t t_ms;
    int64_t pause_until_ms;
    double w_max;   /* rate at the last cut; 0: none yet */
    int64_t cut_ms; /* time of the last cut */
    int64_t cuts;   /* cuts so far */
} lt_gmail_bucket_t;

void lt_gmail_bucket_init(lt_gmail_bucket_t *b, double rate, double burst_s, int64_t now_ms);
/* A new configured limit: the rate and what was learnt scale with it (a
 * worker's share of a project grew or shrank). */
void lt_gmail_bucket_set_ceiling(lt_gmail_bucket_t *b, double rate, int64_t now_ms);
/* 0 when `cost` may be taken now, else the milliseconds to wait. A cost
 * above the capacity (a small quota) may start once the bucket is full, and
 * take() then charges it in full: the bucket goes negative and the next
 * request waits for the debt, so the rate holds at any quota. */
int64_t lt_gmail_bucket_wait(lt_gmail_bucket_t *b, double cost, int64_t now_ms);
/* Take `cost` in full (call after a wait of 0); tokens may go below 0. */
void lt_gmail_bucket_take(lt_gmail_bucket_t *b, double cost);
/* A quota answer: multiplicative decrease (once per cooldown) and the
 * bucket emptied. Returns 1 when the rate was cut, 0 within the cooldown. */
int lt_gmail_bucket_cut(lt_gmail_bucket_t *b, int64_t now_ms);
/* Empty the bucket and refuse everything until until_ms. */
void lt_gmail_bucket_pause(lt_gmail_bucket_t *b, int64_t until_ms);

#endif
