/* lt_gmail_pacer: the Gmail quotas of one process, shared by its threads.
 *
 * Google limits every user (mailbox) and every Cloud project to so many
 * quota units per minute. The pacer keeps one adaptive token bucket
 * (lt_gmail_bucket_t) per user and one per project, by name, and a request
 * is sent only when both allow its cost: the user's at user_per_min / 60
 * units per second, the project's at project_per_min / 60 x share, where
 * share is this process's part of the project limit in a pool of workers
 * (lt_gmail_pacer_set_share; 1 alone). Both start empty and pace evenly
 * over the minute with `burst_s` seconds of burst.
 *
 * A quota answer lowers the rate of the user (userRateLimitExceeded) or of
 * the project (rateLimitExceeded) it names; the rate climbs back slowly
 * (lt_gmail_bucket.h). What a user or project learnt outlives the command:
 * the next command of the same account starts at the learnt rate.
 *
 * Thread-safe (one mutex). Time is passed in (milliseconds, monotonic), so
 * it is tested with a fake clock. At most LT_GMAIL_PACER_MAX names: beyond
 * it the one unused longest is forgotten. */
#ifndef LT_GMAIL_PACER_H
#define LT_GMAIL_PACER_H

#include <stdint.h>

#define LT_GMAIL_PACER_MAX 8192

typedef struct lt_gmail_pacer_s lt_gmail_pacer_t;

/* Which quotas a request counts against. user/project NULL or "": none of
 * that kind; a limit <= 0: not paced. */
typedef struct {
    const char *user;       /* a mailbox: "tenant/account" or the address */
    double user_per_min;    /* Google: 6,000 (projects since May 2026), 15,000 older */
    double user_burst_s;    /* seconds of the user's rate that may go at once */
    const char *project;    /* the Google Cloud project (or the OAuth client id) */
    double project_per_min; /* Google: 1,200,000 */
} lt_gmail_pace_t;

typedef enum { LT_GMAIL_QUOTA_USER = 1, LT_GMAIL_QUOTA_PROJECT = 2 } lt_gmail_quota_kind_t;

typedef struct {
    double user_rate;    /* units/s now */
    double user_ceiling; /* units/s configured */
    double project_rate; /* units/s now (this process's share) */
    double project_ceiling;
    int64_t user_cuts, project_cuts;
} lt_gmail_pace_info_t;

lt_gmail_pacer_t *lt_gmail_pacer_new(void);
void lt_gmail_pacer_destroy(lt_gmail_pacer_t *p);
/* This process's share of every project's limit, (0, 1]. */
void lt_gmail_pacer_set_share(lt_gmail_pacer_t *p, double share);
double lt_gmail_pacer_share(lt_gmail_pacer_t *p);
/* 0 when `cost` was taken from both buckets, else the milliseconds to wait
 * (nothing taken). */
int64_t lt_gmail_pacer_take(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, double cost,
                            int64_t now_ms);
/* A quota answer of that kind. Returns 1 when the rate was cut. */
int lt_gmail_pacer_cut(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, lt_gmail_quota_kind_t kind,
                       int64_t now_ms);
/* Retry-After: nothing of the user's is sent before until_ms. */
void lt_gmail_pacer_pause(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, int64_t until_ms);
void lt_gmail_pacer_info(lt_gmail_pacer_t *p, const lt_gmail_pace_t *k, lt_gmail_pace_info_t *out);

#endif
