/* lt_sync: progress of a command, and the messages it skipped or found
 * expunged (lt_sync.h). */
#include "lt_sync_internal.h"

#include "lt_clock.h"

void lt_sync_progress_get(const lt_sync_t *s, lt_sync_progress_t *p)
{
    int64_t now = lt_now_ms();
    p->done = s->progress_done;
    p->total = s->progress_total;
    p->elapsed_ms = now - s->started_ms;
    p->rate = 0;
    p->eta_s = -1;
    if (s->progress_t0 && now > s->progress_t0) {
        p->rate = (double)(s->progress_done - s->progress_d0) * 1000.0 /
                  (double)(now - s->progress_t0);
        if (p->rate > 0 && p->total >= p->done)
            p->eta_s = (int64_t)((double)(p->total - p->done) / p->rate + 0.5);
    }
}

/* Report when a total is known and the interval has passed. */
void lt_sync_progress_tick(lt_sync_t *s)
{
    if (!s->env.progress || s->progress_total < 0)
        return;
    int64_t now = lt_now_ms();
    if (now - s->progress_last_ms < s->env.progress_interval_ms)
        return;
    s->progress_last_ms = now;
    lt_sync_progress_t p;
    lt_sync_progress_get(s, &p);
    s->env.progress(s->env.progress_opaque, s, &p);
}

void lt_sync_set_total(lt_sync_t *s, int64_t total)
{
    s->progress_total = total < 0 ? -1 : total;
    if (total >= 0 && !s->progress_t0) {
        s->progress_t0 = lt_now_ms();
        s->progress_d0 = s->progress_done;
    }
    lt_sync_progress_tick(s);
}

void lt_sync_progress_resume(lt_sync_t *s, int64_t done)
{
    if (done > 0)
        s->progress_done += done;
}

int64_t lt_sync_progress_done(const lt_sync_t *s)
{
    return s->progress_done;
}

int64_t lt_sync_progress_total(const lt_sync_t *s)
{
    return s->progress_total;
}
void lt_sync_note_skipped(lt_sync_t *s, const char *provider_message_id)
{
    lt_series_inc(s->env.metrics->messages_skipped);
    s->skipped++;
    s->progress_done++; /* handled, for the progress report */
    /* ids beyond the cap are only counted */
    (void)lt_buf_appendf(s->skipped_ids, "%s%s", lt_buf_len(s->skipped_ids) ? "," : "",
                         provider_message_id);
}
int64_t lt_sync_skipped(const lt_sync_t *s)
{
    return s->skipped;
}
const char *lt_sync_skipped_ids(const lt_sync_t *s)
{
    return lt_buf_str(s->skipped_ids);
}
void lt_sync_note_expunged(lt_sync_t *s, const char *provider_message_id)
{
    s->expunged++;
    s->progress_done++;
    (void)lt_buf_appendf(s->expunged_ids, "%s%s", lt_buf_len(s->expunged_ids) ? "," : "",
                         provider_message_id);
}
int64_t lt_sync_expunged(const lt_sync_t *s)
{
    return s->expunged;
}
const char *lt_sync_expunged_ids(const lt_sync_t *s)
{
    return lt_buf_str(s->expunged_ids);
}
