#include "lt_sync_internal.h"

#include "lt_clock.h"
#include "lt_command_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* --- recovery ----------------------------------------------------------- */

/* In-doubt rows are collected first (the list callback must not use the
 * connection), then resolved one by one. */
typedef struct {
    char scope[1024];
    char provider[16];
    lt_watermark_pending_t p;
} pending_row_t;

typedef struct {
    pending_row_t *rows;
    int n, alloc;
} pending_list_t;
/* 1: committed, 0: aborted, -1: not decided yet / error */
static int marker_visible(lt_sync_t *s, const char *topic, int32_t partition, int64_t offset,
                          int timeout_ms, char *errstr, size_t n)
{
    rd_kafka_t *rk = s->env.marker_reader;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, topic, partition)->offset = offset;
    rd_kafka_resp_err_t kerr = rd_kafka_assign(rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    if (kerr) {
        lt_seterr(errstr, n, LT_ERR_TEMPORARY, "assign marker partition: %s",
                  rd_kafka_err2str(kerr));
        return -1;
    }
    int verdict = -1;
    int64_t deadline = lt_now_ms() + timeout_ms; /* monotonic: a stepped clock moves it not */
    while (lt_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* End of the stable part of the log: beyond the marker means
             * its transaction was aborted; at or before it, undecided. */
            if (m->offset > offset)
                verdict = 0;
        } else if (m->err) {
            lt_seterr(errstr, n, LT_ERR_TEMPORARY, "read marker: %s",
                      rd_kafka_message_errstr(m));
        } else {
            verdict = m->offset == offset ? 1 : 0;
        }
        rd_kafka_message_destroy(m);
        if (verdict >= 0)
            break;
    }
    rd_kafka_assign(rk, NULL);
    if (verdict < 0 && errstr && !*errstr)
        lt_seterr(errstr, n, LT_ERR_TEMPORARY,
                  "transaction of marker %s[%d]@%lld not decided after %d ms", topic, partition,
                  (long long)offset, timeout_ms);
    return verdict;
}

static int collect_pending(const char *scope, const char *provider,
                           const lt_watermark_pending_t *p, void *opaque)
{
    pending_list_t *l = opaque;
    if (l->n == l->alloc) {
        l->alloc = l->alloc ? l->alloc * 2 : 4;
        l->rows = lt_xrealloc(l->rows, (size_t)l->alloc * sizeof(pending_row_t));
    }
    pending_row_t *r = &l->rows[l->n++];
    snprintf(r->scope, sizeof(r->scope), "%s", scope);
    snprintf(r->provider, sizeof(r->provider), "%s", provider);
    r->p = *p;
    return 0;
}

lt_err_t lt_sync_recover(lt_sync_t *s, char *errstr, size_t errstr_size)
{
    const char *tenant = lt_account_tenant(s->account);
    const char *acct = lt_account_id(s->account);
    pending_list_t l = {NULL, 0, 0};
    lt_err_t err =
        lt_watermark_pending_list(s->env.db, tenant, acct, collect_pending, &l, errstr, errstr_size);
    for (int i = 0; !err && i < l.n; i++) {
        pending_row_t *r = &l.rows[i];
        if (errstr && errstr_size)
            errstr[0] = 0;
        int v = marker_visible(s, r->p.marker_topic, r->p.marker_partition, r->p.marker_offset,
                               s->env.txn_timeout_ms + 10000, errstr, errstr_size);
        if (v < 0) {
            err = LT_ERR_TEMPORARY;
            break;
        }
        int stored = 0;
        err = v ? lt_watermark_pending_apply(
                      s->env.db, &(lt_watermark_key_t){tenant, acct, r->scope, r->provider}, &r->p,
                      &stored, errstr, errstr_size)
                : lt_watermark_pending_discard(
                      s->env.db, &(lt_watermark_key_t){tenant, acct, r->scope, r->provider}, &r->p,
                      errstr, errstr_size);
        /* the run that committed it made progress: not a stalled run */
        if (!err && v)
            err = lt_command_progressed(s->env.db, r->p.command_id, errstr, errstr_size);
        if (!err)
            lt_info(&s->log, "recovered in-doubt batch of scope %s (command %s): %s", r->scope,
                    r->p.command_id, v ? "committed, watermark applied" : "aborted, discarded");
    }
    free(l.rows);
    return err;
}
