/* lt_gmail_pacer: even pacing at a known limit, AIMD against an unknown one,
 * a project shared by users and by workers; a fake clock and a simulated
 * server (a token bucket of Google's per-minute rate with one second of burst). */
#include <stdint.h>
#include <stdio.h>

#include "lt_gmail_bucket.h"
#include "lt_gmail_pacer.h"
#include "lt_test.h"

typedef struct {
    double rate, cap, tokens;
    int64_t t;
} server_t;

static int server_charge(server_t *s, double cost, int64_t now)
{
    if (now > s->t) {
        s->tokens += (double)(now - s->t) * s->rate / 1000.0;
        if (s->tokens > s->cap)
            s->tokens = s->cap;
        s->t = now;
    }
    if (s->tokens < cost)
        return 0;
    s->tokens -= cost;
    return 1;
}

#define LAT_MS 50
#define INFLIGHT 8

typedef struct {
    int64_t sent, ok, rejected;
} tally_t;

/* One client with up to INFLIGHT requests of 5 units, each answered LAT_MS
 * after it was sent (the server decides at send + LAT_MS / 2), for `ms`. */
static void run_client(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, server_t *srv,
                       lt_gmail_quota_kind_t kind, int64_t t0, int64_t ms, tally_t *out)
{
    int64_t done_at[INFLIGHT];
    int verdict[INFLIGHT];
    int used = 0;
    for (int64_t t = t0; t < t0 + ms; t++) {
        for (int i = 0; i < used;) { /* answers due */
            if (done_at[i] <= t) {
                if (verdict[i])
                    out->ok++;
                else {
                    out->rejected++;
                    lt_gmail_pacer_cut(p, k, kind, t);
                }
                done_at[i] = done_at[used - 1];
                verdict[i] = verdict[used - 1];
                used--;
                continue;
            }
            i++;
        }
        while (used < INFLIGHT && lt_gmail_pacer_take(p, k, 5, t) == 0) {
            out->sent++;
            verdict[used] = server_charge(srv, 5, t + LAT_MS / 2);
            done_at[used++] = t + LAT_MS;
        }
    }
}

int main(void)
{
    /* 1. the known limit (6,000 units/min = 100 units/s = 20 gets/s): paced evenly,
     *    never refused, the limit used in full */
    {
        lt_gmail_pacer_t *p = lt_gmail_pacer_new();
        lt_gmail_pace_t k = {"u1", 6000, 1.0 - INFLIGHT * 5 / 100.0, "proj", 1200000};
        server_t srv = {100, 100, 100, 0};
        tally_t t = {0};
        run_client(p, &k, &srv, LT_GMAIL_QUOTA_USER, 0, 600000, &t);
        CHECK_INT(t.rejected, 0);
        double share = (double)t.ok * 5 / (100.0 * 600);
        CHECK_MSG(share >= 0.99 && share <= 1.0, "known limit: %.4f of it used", share);
        /* no second may take more than one second's units plus the burst */
        lt_gmail_pace_info_t info;
        lt_gmail_pacer_info(p, &k, &info);
        CHECK_MSG(info.user_rate == 100 && info.user_cuts == 0, "rate %.1f cuts %lld",
                  info.user_rate, (long long)info.user_cuts);
        lt_gmail_pacer_destroy(p);
    }
    /* 2. even: after idle time, one second at most goes out in the first second */
    {
        lt_gmail_pacer_t *p = lt_gmail_pacer_new();
        lt_gmail_pace_t k = {"u1", 6000, 0.6, NULL, 0};
        int n = 0;
        for (int64_t t = 0; t < 1000; t++)
            while (lt_gmail_pacer_take(p, &k, 5, t) == 0)
                n++;
        CHECK_MSG(n <= 20, "first second: %d gets (at most 20)", n);
        int m = 0;
        for (int64_t t = 60000; t < 61000; t++) /* after a minute idle: burst 0.6 s + 1 s */
            while (lt_gmail_pacer_take(p, &k, 5, t) == 0)
                m++;
        CHECK_MSG(m <= 33, "a second after a minute idle: %d gets (want <= 32)", m);
        lt_gmail_pacer_destroy(p);
    }
    /* 3. adaptive: the real limit is 60 % of what the client was told (a lower quota,
     *    another app on the project): >= 90 % of it with <= 1 % refused */
    for (int kind = 1; kind <= 2; kind++) {
        lt_gmail_pacer_t *p = lt_gmail_pacer_new();
        lt_gmail_pace_t k = {"u1", 6000, 0.6, "proj", kind == 2 ? 6000 : 0};
        if (kind == 2)
            k.user_per_min = 0; /* only the project is paced */
        server_t srv = {60, 60, 60, 0};
        tally_t t = {0};
        run_client(p, &k, &srv, (lt_gmail_quota_kind_t)kind, 0, 1200000, &t);
        double used = (double)t.ok * 5 / (60.0 * 1200);
        double refused = (double)t.rejected / (double)t.sent;
        printf("adaptive (%s): %.1f %% of the real limit, %.2f %% refused (%lld of %lld)\n",
               kind == 1 ? "user" : "project", used * 100, refused * 100, (long long)t.rejected,
               (long long)t.sent);
        CHECK_MSG(used >= 0.90, "adaptive: %.3f of the real limit", used);
        CHECK_MSG(refused <= 0.01, "adaptive: %.4f refused", refused);
        lt_gmail_pace_info_t info;
        lt_gmail_pacer_info(p, &k, &info);
        double rate = kind == 1 ? info.user_rate : info.project_rate;
        double ceil = kind == 1 ? info.user_ceiling : info.project_ceiling;
        CHECK_MSG(rate <= ceil, "rate %.1f above the ceiling %.1f", rate, ceil);
        lt_gmail_pacer_destroy(p);
    }
    /* 4. the limit comes back (the other app stopped): the rate climbs back to the
     *    configured ceiling, not beyond */
    {
        lt_gmail_pacer_t *p = lt_gmail_pacer_new();
        lt_gmail_pace_t k = {"u1", 6000, 0.6, NULL, 0};
        server_t srv = {50, 50, 50, 0};
        tally_t t = {0};
        run_client(p, &k, &srv, LT_GMAIL_QUOTA_USER, 0, 60000, &t);
        CHECK(t.rejected > 0);
        srv.rate = 1000; /* far above the configured 100 */
        srv.cap = 1000;
        tally_t t2 = {0};
        run_client(p, &k, &srv, LT_GMAIL_QUOTA_USER, 60000, 600000, &t2);
        lt_gmail_pace_info_t info;
        lt_gmail_pacer_info(p, &k, &info);
        CHECK_MSG(info.user_rate == 100, "back to the ceiling: %.1f", info.user_rate);
        CHECK_INT(t2.rejected, 0);
        lt_gmail_pacer_destroy(p);
    }
    /* 5. one cut per overshoot: answers of requests already in flight do not cut again */
    {
        lt_gmail_bucket_t b;
        lt_gmail_bucket_init(&b, 100, 1.0, 0);
        CHECK_INT(lt_gmail_bucket_cut(&b, 5000), 1);
        CHECK_INT(lt_gmail_bucket_cut(&b, 5400), 0);
        CHECK(b.rate == 100 * LT_GMAIL_AIMD_CUT);
        CHECK_INT(lt_gmail_bucket_cut(&b, 6100), 1);
        CHECK(b.rate < 100 * LT_GMAIL_AIMD_CUT);
        for (int i = 0; i < 200; i++)
            lt_gmail_bucket_cut(&b, 7000 + i * 2000);
        CHECK(b.rate >= 100 * LT_GMAIL_AIMD_FLOOR); /* never to zero */
    }
    /* 6. a project shared by users, and by workers: 3 users of one project of
     *    6,000 units/min, this worker's share 1/3 -> 33.3 units/s for all three */
    {
        lt_gmail_pacer_t *p = lt_gmail_pacer_new();
        lt_gmail_pacer_set_share(p, 1.0 / 3);
        lt_gmail_pace_t k[3] = {{"a", 6000, 0.6, "proj", 6000},
                                {"b", 6000, 0.6, "proj", 6000},
                                {"c", 6000, 0.6, "proj", 6000}};
        double units = 0;
        for (int64_t t = 0; t < 60000; t++)
            for (int i = 0; i < 3; i++)
                while (lt_gmail_pacer_take(p, &k[i], 5, t) == 0)
                    units += 5;
        CHECK_MSG(units <= 2000 + 40 && units >= 2000 - 40, "a minute, share 1/3: %.0f units",
                  units);
        lt_gmail_pacer_set_share(p, 1.0); /* a rebalance: this worker alone */
        double more = 0;
        for (int64_t t = 60000; t < 120000; t++)
            for (int i = 0; i < 3; i++)
                while (lt_gmail_pacer_take(p, &k[i], 5, t) == 0)
                    more += 5;
        CHECK_MSG(more >= 6000 - 60 && more <= 6000 + 60, "a minute alone: %.0f units", more);
        lt_gmail_pacer_destroy(p);
    }
    /* 7. the learnt rate outlives a client: the same user in a new command */
    {
        lt_gmail_pacer_t *p = lt_gmail_pacer_new();
        lt_gmail_pace_t k = {"u1", 6000, 0.6, NULL, 0};
        lt_gmail_pacer_cut(p, &k, LT_GMAIL_QUOTA_USER, 1000);
        lt_gmail_pace_info_t info;
        lt_gmail_pacer_info(p, &k, &info);
        CHECK(info.user_rate == 80 && info.user_cuts == 1);
        lt_gmail_pace_t other = {"u2", 6000, 0.6, NULL, 0};
        CHECK(lt_gmail_pacer_take(p, &other, 5, 1100) > 0); /* starts empty */
        lt_gmail_pacer_info(p, &other, &info);
        CHECK(info.user_rate == 100);
        lt_gmail_pacer_destroy(p);
    }
    return lt_test_done("test_gmail_pacer");
}
