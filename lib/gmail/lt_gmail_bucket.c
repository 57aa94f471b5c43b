#include "lt_gmail_bucket.h"

void lt_gmail_bucket_init(lt_gmail_bucket_t *b, double rate, double burst_s, int64_t now_ms)
{
    b->rate = rate > 0 ? rate : 0;
    b->cap = b->rate * (burst_s > 0 ? burst_s : 1.0);
    b->tokens = 0;
    b->t_ms = now_ms;
    b->pause_until_ms = 0;
}

static void refill(lt_gmail_bucket_t *b, int64_t now_ms)
{
    if (now_ms <= b->t_ms)
        return;
    b->tokens += (double)(now_ms - b->t_ms) * b->rate / 1000.0;
    if (b->tokens > b->cap)
        b->tokens = b->cap;
    b->t_ms = now_ms;
}

int64_t lt_gmail_bucket_wait(lt_gmail_bucket_t *b, double cost, int64_t now_ms)
{
    if (now_ms < b->pause_until_ms)
        return b->pause_until_ms - now_ms;
    if (b->rate <= 0)
        return 0;
    refill(b, now_ms);
    double need = cost > b->cap ? b->cap : cost;
    if (b->tokens >= need)
        return 0;
    return (int64_t)((need - b->tokens) * 1000.0 / b->rate) + 1;
}

void lt_gmail_bucket_take(lt_gmail_bucket_t *b, double cost)
{
    if (b->rate <= 0)
        return;
    b->tokens -= cost; /* a cost above the capacity leaves a debt: the average holds */
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
