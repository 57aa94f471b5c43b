/* lt_sync progress: no report before a total is known, reports throttled
 * to the interval, done counts skipped messages, rate and ETA; the metrics
 * member may be NULL. No server: lt_sync is used without a database, S3 or
 * Kafka (only the progress calls run). */
#include <string.h>
#include <time.h>

#include "lt_command.h"
#include "lt_sync.h"
#include "lt_test.h"

typedef struct {
    int calls;
    lt_sync_progress_t last;
} seen_t;

static void on_progress(void *opaque, lt_sync_t *s, const lt_sync_progress_t *p)
{
    seen_t *seen = opaque;
    seen->calls++;
    seen->last = *p;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(void)
{
    const char *json = "{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"c-1\","
                       "\"tenant_id\":\"t\",\"account_id\":\"a\",\"provider\":\"imap\","
                       "\"kind\":\"backfill\",\"backfill\":{\"folder\":\"INBOX\"},"
                       "\"requested_at\":\"2026-11-25T12:00:00Z\",\"requested_by\":\"test\"}";
    lt_command_t *cmd = NULL;
    char err[256];
    CHECK_INT(lt_command_parse(json, strlen(json), &cmd, err, sizeof(err)), LT_OK);
    if (!cmd)
        return lt_test_done("test_sync_progress");

    seen_t seen = {0};
    lt_sync_env_t env;
    memset(&env, 0, sizeof(env));
    env.progress = on_progress;
    env.progress_opaque = &seen;
    /* long enough that "within the interval" holds on a loaded machine (a few
     * calls in a row), the sleeps below pass it */
    env.progress_interval_ms = 1000;
    lt_sync_t *s = lt_sync_new(&env, NULL, cmd, NULL, NULL);

    /* no total yet: nothing reported, however long it runs */
    sleep_ms(1050);
    lt_sync_note_skipped(s, "INBOX;UIDVALIDITY=1;UID=1");
    CHECK_INT(seen.calls, 0);
    CHECK_INT(lt_sync_progress_total(s), -1);
    CHECK_INT(lt_sync_progress_done(s), 1);

    /* the total arrives after the interval: reported at once */
    lt_sync_set_total(s, 10);
    CHECK_INT(seen.calls, 1);
    CHECK_INT(seen.last.done, 1);
    CHECK_INT(seen.last.total, 10);
    CHECK(seen.last.rate == 0);
    CHECK_INT(seen.last.eta_s, -1);
    CHECK(seen.last.elapsed_ms >= 1050);

    /* within the interval: throttled */
    for (int i = 2; i <= 5; i++)
        lt_sync_note_skipped(s, "x");
    lt_sync_set_total(s, 10);
    CHECK_INT(seen.calls, 1);

    /* after it: done 5 of 10, a rate from the 4 done since the total (at least
     * one interval ago; the lower bound on the rate only guards a hang), an ETA
     * of the 5 left at that rate */
    sleep_ms(1050);
    lt_sync_set_total(s, 10);
    CHECK_INT(seen.calls, 2);
    CHECK_INT(seen.last.done, 5);
    CHECK_MSG(seen.last.rate > 4.0 / 60.0 && seen.last.rate < 4.0 / 1.0, "rate %f",
              seen.last.rate);
    CHECK_MSG(seen.last.rate > 0 && seen.last.eta_s == (int64_t)(5.0 / seen.last.rate + 0.5),
              "eta %lld at rate %f", (long long)seen.last.eta_s, seen.last.rate);
    CHECK(seen.last.eta_s >= 1);

    /* the estimate grows: total follows; unknown again: no report */
    sleep_ms(1050);
    lt_sync_set_total(s, 50);
    CHECK_INT(seen.calls, 3);
    CHECK_INT(seen.last.total, 50);
    sleep_ms(1050);
    lt_sync_set_total(s, -5);
    CHECK_INT(seen.calls, 3);
    CHECK_INT(lt_sync_progress_total(s), -1);

    lt_sync_progress_t p;
    lt_sync_progress_get(s, &p);
    CHECK_INT(p.done, 5);
    CHECK_INT(p.eta_s, -1);

    lt_sync_destroy(s);
    lt_command_destroy(cmd);
    return lt_test_done("test_sync_progress");
}
