#include "lt_gmail_bucket.h"

static void set_cap(lt_gmail_bucket_t *b)
{
    b->cap = b->rate * b->burst_s;
}

void lt_gmail_bucket_init(lt_gmail_bucket_t *b, double rate, double burst_s, int64_t now_ms)
{
    b->ceiling = rate > 0 ? rate : 0;
    b->rate = b->ceiling;
    b->burst_s = burst_s > 0 ? burst_s : 1.0;
    set_cap(b);
    b->tokens = 0;
    b->t_ms = now_ms;
    b->pause_until_ms = 0;
    b->w_max = 0;
    b->cut_ms = 0;
    b->cuts = 0;
}

void lt_gmail_bucket_set_ceiling(lt_gmail_bucket_t *b, double rate, int64_t now_ms)
{
    (void)now_ms;
    if (rate <= 0) {
        b->ceiling = b->rate = 0;
        set_cap(b);
        return;
    }
    if (b->ceiling <= 0) { /* was unlimited */
        b->rate = rate;
    } else { /* what was learnt scales with the limit (a worker's share changed) */
        b->rate *= rate / b->ceiling;
        b->w_max *= rate / b->ceiling;
    }
    b->ceiling = rate;
    if (b->rate > rate)
        b->rate = rate;
    set_cap(b);
}

/* The additive side: while the bucket is used (not full), the rate climbs
 * back towards the ceiling. Idle time does not count: a limit is only
 * probed by traffic. */
static void grow(lt_gmail_bucket_t *b, double dt_s)
{
    if (b->rate >= b->ceiling || b->tokens >= b->cap)
        return;
    double near = b->w_max * LT_GMAIL_AIMD_NEAR;
    if (b->w_max > 0 && b->rate < near) {
        double k = dt_s / LT_GMAIL_AIMD_CLIMB_S;
        b->rate += (near - b->rate) * (k > 1 ? 1 : k);
        b->rate += b->w_max * LT_GMAIL_AIMD_PROBE * dt_s; /* never stuck just under near */
    } else {
        double base = b->w_max > 0 ? b->w_max : b->ceiling;
        b->rate += base * LT_GMAIL_AIMD_PROBE * dt_s;
    }
    if (b->rate > b->ceiling)
        b->rate = b->ceiling;
    set_cap(b);
}

static void refill(lt_gmail_bucket_t *b, int64_t now_ms)
{
    if (now_ms <= b->t_ms)
        return;
    double dt = (double)(now_ms - b->t_ms) / 1000.0;
    grow(b, dt);
    b->tokens += dt * b->rate;
    if (b->tokens > b->cap)
        b->tokens = b->cap;
    b->t_ms = now_ms;
}

int64_t lt_gmail_bucket_wait(lt_gmail_bucket_t *b, double cost, int64_t now_ms)
{
    if (now_ms < b->pause_until_ms)
        return b->pause_until_ms - now_ms;
    if (b->ceiling <= 0)
        return 0;
    refill(b, now_ms);
    double need = cost > b->cap ? b->cap : cost;
    if (b->tokens >= need)
        return 0;
    return (int64_t)((need - b->tokens) * 1000.0 / b->rate) + 1;
}

void lt_gmail_bucket_take(lt_gmail_bucket_t *b, double cost)
{
    if (b->ceiling <= 0)
        return;
    b->tokens -= cost; /* a cost above the capacity leaves a debt: the average holds */
}

int lt_gmail_bucket_cut(lt_gmail_bucket_t *b, int64_t now_ms)
{
    if (b->ceiling <= 0)
        return 0;
    if (b->cuts > 0 && now_ms - b->cut_ms < LT_GMAIL_AIMD_COOLDOWN_MS)
        return 0;
    refill(b, now_ms);
    /* hit again below the last point: the limit is lower than that point
     * too, so remember less than where it hit (fast convergence, as CUBIC) */
    if (b->w_max > 0 && b->rate < b->w_max)
        b->w_max = b->rate * (1.0 + LT_GMAIL_AIMD_CUT) / 2.0;
    else
        b->w_max = b->rate;
    b->rate *= LT_GMAIL_AIMD_CUT;
    if (b->rate < b->ceiling * LT_GMAIL_AIMD_FLOOR)
        b->rate = b->ceiling * LT_GMAIL_AIMD_FLOOR;
    set_cap(b);
    if (b->tokens > 0)
        b->tokens = 0; /* the server's bucket is empty: so is ours */
    b->cut_ms = now_ms;
    b->cuts++;
    return 1;
}

void lt_gmail_bucket_pause(lt_gmail_bucket_t *b, int64_t until_ms)
{
    if (until_ms > b->pause_until_ms)
        b->pause_until_ms = until_ms;
    if (b->tokens > 0)
        b->tokens = 0;
    if (b->t_ms < until_ms)
        b->t_ms = until_ms; /* no refill while paused */
}
