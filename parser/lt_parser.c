#include "lt_parser.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_db.h"
#include "lt_emails.h"
#include "lt_event.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_parser_event.h"
#include "lt_registry.h"
#include "lt_s3.h"

#define ROW_CAP ((size_t)32 << 20) /* one row's JSON (body <= 512 KiB, escaped) */
#define SCHEMA_CAP ((size_t)1 << 20)
#define DLQ_TIMEOUT_MS 30000
#define BACKOFF_MAX_MS 30000
#define STATS_EVERY_MS 10000
#define PURGE_EVERY_MS 60000

typedef struct {
    rd_kafka_message_t *msg;
    lt_buf_t *row; /* reused across batches */
    lt_parser_outcome_t out;
    lt_email_change_result_t result; /* CHANGE: what applying it did */
} item_t;

typedef struct {
    lt_parser_t *p;
    int index;
    pthread_t thread;
    lt_parser_event_ctx_t ctx;
} lane_t;

struct lt_parser_s {
    const lt_config_t *cfg;
    const lt_settings_t *set; /* cfg's, read once at start */
    const char *raw_topic;
    const char *change_topic;
    const char *dlq_topic;
    rd_kafka_t *consumer;
    rd_kafka_t *producer; /* DLQ: idempotent, not transactional */
    lt_registry_t *registry;
    lt_db_t *db;
    int nlanes;
    lane_t *lanes;
    size_t max_items;
    size_t nitems;
    item_t *items;
    int batch_wait_ms;
    int retry_base_ms;
    int attempt; /* consecutive failed tries of the batch in hand */
    int64_t pending_retention_s;
    int64_t last_purge_ms;
    volatile sig_atomic_t stop;
    lt_parser_stats_t st; /* this thread's totals (log lines) */
    lt_parser_obs_t *obs; /* metrics, readiness (borrowed) */
};

static lt_log_ctx_t item_ctx(const item_t *it)
{
    lt_log_ctx_t c = {0};
    c.tenant = it->out.tenant[0] ? it->out.tenant : NULL;
    c.account = it->out.account[0] ? it->out.account : NULL;
    return c;
}

/* --- the batch ----------------------------------------------------------- */

static void drop_item(item_t *it)
{
    rd_kafka_message_destroy(it->msg);
    it->msg = NULL;
    lt_parser_outcome_clear(&it->out);
}

static int is_change_record(const lt_parser_t *p, const rd_kafka_message_t *m)
{
    return !strcmp(rd_kafka_topic_name(m->rkt), p->change_topic);
}

static void drop_all(lt_parser_t *p)
{
    for (size_t i = 0; i < p->nitems; i++)
        drop_item(&p->items[i]);
    p->nitems = 0;
}

/* Forget the batch's records of revoked partitions (not committed: the next
 * owner reads them again). */
static void drop_partitions(lt_parser_t *p, const rd_kafka_topic_partition_list_t *parts)
{
    size_t k = 0;
    for (size_t i = 0; i < p->nitems; i++) {
        item_t *it = &p->items[i];
        int revoked = 0;
        for (int j = 0; j < parts->cnt && !revoked; j++)
            revoked = parts->elems[j].partition == it->msg->partition &&
                      !strcmp(parts->elems[j].topic, rd_kafka_topic_name(it->msg->rkt));
        if (revoked) {
            drop_item(it);
            continue;
        }
        if (k != i) { /* keep each slot's row buffer with a slot */
            lt_buf_t *spare = p->items[k].row;
            p->items[k] = *it;
            it->row = spare;
            it->msg = NULL;
            memset(&it->out, 0, sizeof(it->out)); /* owned parts moved to slot k */
        }
        k++;
    }
    p->nitems = k;
}

/* Per partition of the batch: the lowest offset (rewind) or the highest + 1
 * (commit). */
static rd_kafka_topic_partition_list_t *batch_offsets(const lt_parser_t *p, int for_commit)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (size_t i = 0; i < p->nitems; i++) {
        const rd_kafka_message_t *m = p->items[i].msg;
        const char *topic = rd_kafka_topic_name(m->rkt);
        rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_find(l, topic, m->partition);
        int64_t want = for_commit ? m->offset + 1 : m->offset;
        if (!e)
            rd_kafka_topic_partition_list_add(l, topic, m->partition)->offset = want;
        else if (for_commit ? want > e->offset : want < e->offset)
            e->offset = want;
    }
    return l;
}

static void *lane_main(void *arg)
{
    lane_t *l = arg;
    lt_parser_t *p = l->p;
    for (size_t i = (size_t)l->index; i < p->nitems; i += (size_t)p->nlanes) {
        item_t *it = &p->items[i];
        lt_parser_outcome_clear(&it->out);
        if (is_change_record(p, it->msg))
            lt_parser_change(&l->ctx, it->msg->payload, it->msg->payload ? it->msg->len : 0,
                             &it->out);
        else
            lt_parser_event(&l->ctx, it->msg->payload, it->msg->payload ? it->msg->len : 0,
                            it->msg->partition, it->msg->offset, it->row, &it->out);
    }
    return NULL;
}

static void run_lanes(lt_parser_t *p)
{
    int n = p->nitems < (size_t)p->nlanes ? (int)p->nitems : p->nlanes;
    if (n <= 1) {
        int saved = p->nlanes;
        p->nlanes = 1;
        lane_main(&p->lanes[0]);
        p->nlanes = saved;
        return;
    }
    /* every lane index < nlanes covers its share; lanes >= n get nothing */
    for (int i = 1; i < p->nlanes; i++)
        pthread_create(&p->lanes[i].thread, NULL, lane_main, &p->lanes[i]);
    lane_main(&p->lanes[0]);
    for (int i = 1; i < p->nlanes; i++)
        pthread_join(p->lanes[i].thread, NULL);
}

/* The record, unchanged, with its headers and lattice.dlq.* reasons. */
static lt_err_t dead_letter(lt_parser_t *p, item_t *it, char *errstr, size_t n)
{
    rd_kafka_message_t *m = it->msg;
    rd_kafka_headers_t *orig = NULL, *h;
    if (!rd_kafka_message_headers(m, &orig) && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(6);
    char num[32];
    rd_kafka_header_add(h, "lattice.dlq.reason", -1, it->out.reason, -1);
    rd_kafka_header_add(h, "lattice.dlq.error_class", -1, lt_err_name(it->out.err_class), -1);
    rd_kafka_header_add(h, "lattice.dlq.source_topic", -1, rd_kafka_topic_name(m->rkt), -1);
    snprintf(num, sizeof(num), "%d", (int)m->partition);
    rd_kafka_header_add(h, "lattice.dlq.source_partition", -1, num, -1);
    snprintf(num, sizeof(num), "%lld", (long long)m->offset);
    rd_kafka_header_add(h, "lattice.dlq.source_offset", -1, num, -1);
    rd_kafka_header_add(h, "lattice.dlq.consumer", -1, "lattice-mail-parser", -1);
    lt_err_t err = lt_kafka_produce_sync(p->producer,
                                         &(lt_kafka_msg_t){.topic = p->dlq_topic,
                                                           .partition = RD_KAFKA_PARTITION_UA,
                                                           .key = m->key,
                                                           .key_len = m->key ? m->key_len : 0,
                                                           .value = m->payload,
                                                           .value_len = m->payload ? m->len : 0,
                                                           .headers = h},
                                         DLQ_TIMEOUT_MS, NULL, errstr, n);
    lt_log_ctx_t c = item_ctx(it);
    if (!err) {
        lt_warn(&c, "record %s[%d]@%lld dead-lettered to %s: %s", rd_kafka_topic_name(m->rkt),
                (int)m->partition, (long long)m->offset, p->dlq_topic, it->out.reason);
        p->st.dead_letters++;
        lt_parser_obs_dead_letter(p->obs, it->out.dlq_reason);
    }
    return err;
}

static lt_err_t db_ready(lt_parser_t *p, char *errstr, size_t n)
{
    if (p->db && lt_db_ok(p->db))
        return LT_OK;
    lt_db_destroy(p->db);
    p->db = lt_db_connect(p->set->pg.dsn, p->set->pg.password, errstr, n);
    return p->db ? LT_OK : LT_ERR_TEMPORARY;
}

static int is_work(const item_t *it)
{
    return it->out.verdict == LT_PARSED_ROW || it->out.verdict == LT_PARSED_CHANGE;
}

/* The change of a CHANGE item as lt_emails takes it (values: a new array,
 * the caller frees it). 0 for a reset: nothing to apply to rows. */
static int item_change(const item_t *it, lt_email_change_kind_t *kind, lt_email_change_t *c,
                       const char ***values)
{
    const lt_change_event_t *ev = it->out.change;
    size_t n = 0;
    *values = NULL;
    switch (lt_change_event_get_kind(ev)) {
    case LT_CHANGE_DELETED:
        *kind = LT_EMAIL_DELETED;
        break;
    case LT_CHANGE_FLAGS:
        *kind = LT_EMAIL_FLAGS;
        n = lt_change_event_flag_count(ev);
        break;
    case LT_CHANGE_LABELS:
        *kind = LT_EMAIL_LABELS;
        n = lt_change_event_label_count(ev);
        break;
    default:
        return 0;
    }
    *values = lt_xcalloc(n ? n : 1, sizeof(**values));
    for (size_t i = 0; i < n; i++)
        (*values)[i] = *kind == LT_EMAIL_FLAGS ? lt_change_event_get_flag(ev, i)
                                               : lt_change_event_get_label(ev, i);
    *c = (lt_email_change_t){.tenant_id = lt_change_event_get_tenant_id(ev),
                             .account_id = lt_change_event_get_account_id(ev),
                             .provider = lt_provider_name(lt_change_event_get_provider(ev)),
                             .provider_message_id = lt_change_event_get_provider_message_id(ev),
                             .event_time_ms = lt_change_event_get_event_time(ev),
                             .values = *values,
                             .n_values = n};
    return 1;
}

/* One transaction for the work items given: lock their messages, upsert
 * the rows (which applies their pending changes), apply the changes in
 * record order (a change for a message with no row yet is kept pending),
 * commit. Each change item's result is set; *pend gets the pending changes
 * applied (only once committed). */
static lt_err_t write_tx(lt_parser_t *p, item_t *const *items, size_t n,
                         lt_email_pending_stats_t *pend, char *errstr, size_t errstr_size)
{
    const char **rows = lt_xcalloc(n ? n : 1, sizeof(*rows));
    lt_email_key_t *keys = lt_xcalloc(n ? n : 1, sizeof(*keys));
    lt_email_pending_stats_t st = {0};
    size_t nrows = 0, nkeys = 0;
    for (size_t i = 0; i < n; i++) {
        const item_t *it = items[i];
        if (it->out.verdict == LT_PARSED_ROW) {
            rows[nrows++] = lt_buf_str(it->row);
            keys[nkeys++] = (lt_email_key_t){it->out.key_tenant, it->out.key_account,
                                             it->out.key_message};
        } else if (lt_change_event_get_provider_message_id(it->out.change)) {
            const lt_change_event_t *ev = it->out.change;
            keys[nkeys++] = (lt_email_key_t){lt_change_event_get_tenant_id(ev),
                                             lt_change_event_get_account_id(ev),
                                             lt_change_event_get_provider_message_id(ev)};
        }
    }
    size_t written = 0;
    lt_err_t err = lt_db_begin(p->db, errstr, errstr_size);
    if (!err)
        err = lt_emails_lock(p->db, keys, nkeys, errstr, errstr_size);
    if (!err && nrows)
        err = lt_emails_upsert(p->db, rows, nrows, &written, &st, errstr, errstr_size);
    for (size_t i = 0; !err && i < n; i++) {
        item_t *it = items[i];
        lt_email_change_kind_t kind;
        lt_email_change_t c;
        const char **values = NULL;
        if (it->out.verdict != LT_PARSED_CHANGE)
            continue;
        it->result = LT_EMAIL_CHANGE_SAME; /* a reset changes no row */
        if (item_change(it, &kind, &c, &values))
            err = lt_emails_apply_or_pend(p->db, kind, &c, &it->result, errstr, errstr_size);
        free(values);
    }
    if (!err)
        err = lt_db_commit(p->db, errstr, errstr_size);
    if (err)
        lt_db_rollback(p->db);
    else
        for (int k = 0; k < LT_EMAIL_CHANGE_KINDS; k++)
            for (int r = 0; r < LT_EMAIL_CHANGE_RESULTS; r++)
                pend->count[k][r] += st.count[k][r];
    free(keys);
    free(rows);
    return err;
}

/* Rows and changes durable: one transaction for the batch. If Postgres
 * refuses the batch for its content, each record alone; a record refused
 * alone is dead-lettered. */
static lt_err_t write_batch(lt_parser_t *p, lt_email_pending_stats_t *pend, char *errstr, size_t n)
{
    item_t **work = lt_xcalloc(p->nitems ? p->nitems : 1, sizeof(*work));
    size_t nwork = 0;
    for (size_t i = 0; i < p->nitems; i++)
        if (is_work(&p->items[i]))
            work[nwork++] = &p->items[i];
    lt_err_t err = LT_OK;
    if (nwork == 0)
        goto out;
    err = db_ready(p, errstr, n);
    if (err)
        goto out;
    err = write_tx(p, work, nwork, pend, errstr, n);
    if (err == LT_OK || err == LT_ERR_TEMPORARY)
        goto out;
    lt_warn(NULL, "batch of %zu records refused (%s); writing them one by one", nwork, errstr);
    for (size_t i = 0; i < nwork; i++) {
        item_t *it = work[i];
        char e[1024];
        err = db_ready(p, errstr, n);
        if (!err)
            err = write_tx(p, &it, 1, pend, e, sizeof(e));
        if (err == LT_ERR_TEMPORARY) {
            snprintf(errstr, n, "%s", e);
            goto out;
        }
        if (err) {
            int change = it->out.verdict == LT_PARSED_CHANGE;
            it->out.verdict = LT_PARSED_DLQ;
            it->out.err_class = err;
            it->out.dlq_reason = "row_refused";
            lt_seterr(it->out.reason, sizeof(it->out.reason), err, "%s refused by Postgres: %s",
                      change ? "change" : "row", e);
            err = dead_letter(p, it, errstr, n);
            if (err)
                goto out;
        }
    }
out:
    free(work);
    return err;
}

/* Handle the batch in hand. LT_OK: rows durable and offsets committed (or
 * the commit failed harmlessly); otherwise nothing was committed. */
static lt_err_t process_batch(lt_parser_t *p, char *errstr, size_t n)
{
    int64_t t0 = lt_now_ms();
    run_lanes(p);
    int64_t t1 = lt_now_ms();
    uint64_t read = 0;
    for (size_t i = 0; i < p->nitems; i++)
        read += p->items[i].out.raw_bytes;
    lt_parser_obs_s3_read(p->obs, read);
    for (size_t i = 0; i < p->nitems; i++)
        if (p->items[i].out.verdict == LT_PARSED_RETRY)
            return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "%s", p->items[i].out.reason);
    for (size_t i = 0; i < p->nitems; i++) {
        item_t *it = &p->items[i];
        if (it->out.verdict == LT_PARSED_DLQ) {
            lt_err_t err = dead_letter(p, it, errstr, n);
            if (err)
                return err == LT_ERR_TOO_BIG ? LT_ERR_FINAL : LT_ERR_TEMPORARY;
        }
    }
    int64_t t2 = lt_now_ms();
    lt_email_pending_stats_t pend = {0};
    lt_err_t err = write_batch(p, &pend, errstr, n);
    if (err)
        return LT_ERR_TEMPORARY;
    int64_t t3 = lt_now_ms();
    size_t raw_records = 0;
    for (int k = 0; k < LT_EMAIL_CHANGE_KINDS; k++)
        for (int r = 0; r < LT_EMAIL_CHANGE_RESULTS; r++)
            if (pend.count[k][r]) {
                lt_parser_obs_pending_applied(p->obs, lt_email_change_kind_name(k),
                                              lt_email_change_result_name(r), pend.count[k][r]);
                p->st.pending_applied += pend.count[k][r];
            }
    for (size_t i = 0; i < p->nitems; i++) {
        item_t *it = &p->items[i];
        if (!is_change_record(p, it->msg))
            raw_records++;
        if (it->out.verdict == LT_PARSED_CHANGE) {
            p->st.changes++;
            if (it->result == LT_EMAIL_CHANGE_PENDING)
                p->st.changes_pending++;
            lt_parser_obs_change(p->obs, lt_change_kind_name(lt_change_event_get_kind(it->out.change)),
                                 lt_email_change_result_name(it->result));
            continue;
        }
        if (it->out.verdict != LT_PARSED_ROW)
            continue;
        p->st.rows++;
        lt_parser_obs_row(p->obs, it->out.parse_error ? lt_err_name(it->out.err_class) : NULL);
        if (it->out.parse_error) {
            p->st.parse_errors++;
            lt_log_ctx_t c = item_ctx(it);
            lt_warn(&c, "event %s (%s[%d]@%lld) stored with parse_error (%s): %s", it->out.event_id,
                    rd_kafka_topic_name(it->msg->rkt), (int)it->msg->partition,
                    (long long)it->msg->offset, lt_err_name(it->out.err_class), it->out.reason);
        }
    }
    p->st.events += p->nitems;
    rd_kafka_topic_partition_list_t *offs = batch_offsets(p, 1);
    rd_kafka_resp_err_t kerr = rd_kafka_commit(p->consumer, offs, 0);
    rd_kafka_topic_partition_list_destroy(offs);
    if (kerr) /* rows are durable: a replay rewrites the same rows */
        lt_warn(NULL, "offset commit: %s (the batch will be read again)", rd_kafka_err2str(kerr));
    p->st.batches++;
    lt_parser_obs_batch(p->obs, raw_records, (double)(lt_now_ms() - t0) / 1e3, !kerr);
    lt_debug(NULL,
             "batch of %zu records: fetch+parse %lld ms, DLQ %lld ms, upsert+changes %lld ms, "
             "offsets %lld ms",
             p->nitems, (long long)(t1 - t0), (long long)(t2 - t1), (long long)(t3 - t2),
             (long long)(lt_now_ms() - t3));
    drop_all(p);
    return LT_OK;
}

/* Pending changes whose message never came go after the retention; at most
 * every PURGE_EVERY_MS, and a failure only waits for the next time. */
static void maybe_purge(lt_parser_t *p)
{
    int64_t now = lt_now_ms();
    if (p->last_purge_ms && now - p->last_purge_ms < PURGE_EVERY_MS)
        return;
    p->last_purge_ms = now;
    char e[1024];
    uint64_t purged = 0;
    lt_err_t err = db_ready(p, e, sizeof(e));
    if (!err)
        err = lt_emails_purge_pending(p->db, p->pending_retention_s, &purged, e, sizeof(e));
    if (err) {
        lt_warn(NULL, "purge of pending changes: %s (next try in %d s)", e, PURGE_EVERY_MS / 1000);
        return;
    }
    lt_parser_obs_pending_purged(p->obs, purged);
    if (purged)
        lt_info(NULL, "purged %llu pending change(s) older than %lld s whose message never came",
                (unsigned long long)purged, (long long)p->pending_retention_s);
}

/* Put the batch back: seek its partitions to its first offsets. */
static void rewind_batch(lt_parser_t *p)
{
    rd_kafka_topic_partition_list_t *l = batch_offsets(p, 0);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(p->consumer, l, 10000);
    if (e) {
        lt_warn(NULL, "rewind: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    for (int i = 0; i < l->cnt; i++)
        if (l->elems[i].err)
            lt_warn(NULL, "rewind %s[%d]: %s", l->elems[i].topic, (int)l->elems[i].partition,
                    rd_kafka_err2str(l->elems[i].err));
    rd_kafka_topic_partition_list_destroy(l);
    drop_all(p);
}

static void backoff(lt_parser_t *p)
{
    int64_t ms = (int64_t)p->retry_base_ms << (p->attempt < 16 ? p->attempt - 1 : 15);
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    ms = ms / 2 + rand() % (ms / 2 + 1);
    int64_t until = lt_now_ms() + ms;
    while (!p->stop && lt_now_ms() < until) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* --- rebalances ---------------------------------------------------------- */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    lt_parser_t *p = lt_kafka_user_opaque(rk);
    rd_kafka_error_t *e = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        lt_info(NULL, "assigned %d partition(s)", parts->cnt);
        e = rd_kafka_incremental_assign(rk, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* Batches are processed between polls, so what is in hand here is
         * unprocessed and uncommitted: leave it to the next owner. */
        lt_info(NULL, "%s %d partition(s)", rd_kafka_assignment_lost(rk) ? "lost" : "revoked",
                parts->cnt);
        drop_partitions(p, parts);
        e = rd_kafka_incremental_unassign(rk, parts);
    } else {
        lt_error(NULL, "rebalance error: %s", rd_kafka_err2str(err));
        drop_all(p);
        rd_kafka_assign(rk, NULL);
    }
    if (e) {
        lt_error(NULL, "incremental rebalance: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_t *now = NULL;
    if (!rd_kafka_assignment(rk, &now)) {
        lt_parser_obs_assignment(p->obs, now->cnt, err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS);
        rd_kafka_topic_partition_list_destroy(now);
    }
}

/* --- lifecycle ----------------------------------------------------------- */

lt_parser_t *lt_parser_new(const lt_config_t *cfg, lt_parser_obs_t *obs, char *errstr,
                           size_t errstr_size)
{
    lt_parser_t *p = lt_xcalloc(1, sizeof(*p));
    p->cfg = cfg;
    p->set = lt_config_settings(cfg);
    const lt_settings_t *set = p->set;
    p->obs = obs;
    p->raw_topic = set->topic.raw;
    p->change_topic = set->topic.changes;
    p->dlq_topic = set->parser.dlq_topic;
    p->pending_retention_s = set->parser.pending_retention_s;
    p->max_items = (size_t)set->parser.batch_messages;
    p->batch_wait_ms = set->parser.batch_wait_ms;
    p->retry_base_ms = set->parser.retry_base_ms;
    p->items = lt_xcalloc(p->max_items, sizeof(item_t));
    for (size_t i = 0; i < p->max_items; i++)
        p->items[i].row = lt_buf_new(ROW_CAP);

    if (!set->s3.access_key_id || !set->s3.secret_access_key) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "LATTICE_S3_ACCESS_KEY_ID and LATTICE_S3_SECRET_ACCESS_KEY (or their _FILE "
                  "variants) are required");
        goto fail;
    }
    if (!strcmp(p->dlq_topic, p->raw_topic) || !strcmp(p->dlq_topic, p->change_topic)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "LATTICE_PARSER_DLQ_TOPIC must differ from LATTICE_TOPIC_RAW and "
                  "LATTICE_TOPIC_CHANGES");
        goto fail;
    }
    if (!strcmp(p->raw_topic, p->change_topic)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "LATTICE_TOPIC_CHANGES must differ from LATTICE_TOPIC_RAW");
        goto fail;
    }
    p->db = lt_db_connect(set->pg.dsn, set->pg.password, errstr, errstr_size);
    if (!p->db || lt_emails_check(p->db, errstr, errstr_size))
        goto fail;
    p->registry = lt_registry_new(set->registry.url, set->registry.username, set->registry.password,
                                  set->tls_ca_file, errstr, errstr_size);
    if (!p->registry)
        goto fail;

    p->nlanes = set->parser.concurrency;
    p->lanes = lt_xcalloc((size_t)p->nlanes, sizeof(lane_t));
    lt_mime_limits_t lim;
    lt_mime_limits_default(&lim);
    lim.max_text = (size_t)set->parser.max_body_bytes;
    uint64_t max_msg = (uint64_t)set->parser.max_message_bytes;
    lim.max_input = (size_t)max_msg;
    for (int i = 0; i < p->nlanes; i++) {
        lane_t *l = &p->lanes[i];
        l->p = p;
        l->index = i;
        l->ctx.registry = p->registry;
        l->ctx.bucket = set->s3.bucket;
        l->ctx.max_message_bytes = max_msg;
        l->ctx.limits = lim;
        l->ctx.raw = lt_buf_new((size_t)max_msg);
        l->ctx.schema = lt_buf_new(SCHEMA_CAP);
        l->ctx.codec = lt_mail_codec_new(errstr, errstr_size);
        if (!l->ctx.codec)
            goto fail;
        l->ctx.change_codec = lt_change_codec_new(errstr, errstr_size);
        if (!l->ctx.change_codec)
            goto fail;
        l->ctx.s3 =
            lt_s3_new(&(lt_s3_config_t){.endpoint = set->s3.endpoint,
                                        .region = set->s3.region,
                                        .bucket = l->ctx.bucket,
                                        .access_key_id = set->s3.access_key_id,
                                        .secret_access_key = set->s3.secret_access_key,
                                        .addressing = set->s3.path_style ? LT_S3_PATH_STYLE
                                                                         : LT_S3_VIRTUAL_HOSTED,
                                        .ca_file = set->s3.ca_file,
                                        .timeout_s = (long)set->s3.timeout_s},
                      errstr, errstr_size);
        if (!l->ctx.s3)
            goto fail;
    }

    p->producer = lt_kafka_producer_new(cfg, NULL, errstr, errstr_size);
    if (!p->producer)
        goto fail;
    lt_err_t err = lt_kafka_warm_topic(p->producer, p->dlq_topic, 10000, errstr, errstr_size);
    if (err)
        goto fail;
    rd_kafka_conf_t *conf = lt_kafka_consumer_conf(cfg, set->parser.group_id, errstr, errstr_size);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    p->consumer = lt_kafka_new(RD_KAFKA_CONSUMER, conf, p, NULL, errstr, errstr_size);
    if (!p->consumer)
        goto fail;
    return p;
fail:
    lt_parser_destroy(p);
    return NULL;
}

void lt_parser_stop(lt_parser_t *p)
{
    p->stop = 1;
}

void lt_parser_stats(const lt_parser_t *p, lt_parser_stats_t *out)
{
    if (out)
        *out = p->st;
}

static void log_stats(lt_parser_t *p, int64_t *last_ms, uint64_t *last_events, int final)
{
    int64_t t = lt_now_ms();
    if (!final && t - *last_ms < STATS_EVERY_MS)
        return;
    if (p->st.events != *last_events || final) {
        double secs = (double)(t - *last_ms) / 1000.0;
        lt_info(NULL,
                "%s%llu events: %llu rows (%llu with parse_error), %llu changes (%llu kept "
                "pending, %llu pending applied), %llu dead-lettered, %llu batches, %llu retries; "
                "%.0f events/s",
                final ? "stopped after " : "", (unsigned long long)p->st.events,
                (unsigned long long)p->st.rows, (unsigned long long)p->st.parse_errors,
                (unsigned long long)p->st.changes, (unsigned long long)p->st.changes_pending,
                (unsigned long long)p->st.pending_applied,
                (unsigned long long)p->st.dead_letters, (unsigned long long)p->st.batches,
                (unsigned long long)p->st.retries,
                secs > 0 ? (double)(p->st.events - *last_events) / secs : 0.0);
    }
    *last_ms = t;
    *last_events = p->st.events;
}

lt_err_t lt_parser_run(lt_parser_t *p, char *errstr, size_t errstr_size)
{
    /* One consumer for both topics: a batch's rows and changes go to
     * Postgres in one transaction, then one offset commit covers both. */
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(sub, p->raw_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(sub, p->change_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(p->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (kerr)
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "subscribe %s, %s: %s",
                         p->raw_topic, p->change_topic, rd_kafka_err2str(kerr));
    lt_info(NULL, "parser consuming %s and %s as group %s: batches of %zu, %d thread(s), DLQ %s",
            p->raw_topic, p->change_topic, p->set->parser.group_id, p->max_items, p->nlanes,
            p->dlq_topic);

    int64_t stats_ms = lt_now_ms();
    uint64_t stats_events = 0;
    while (!p->stop) {
        /* fill: wait for a first record, then up to batch_wait_ms for more
         * (what is already fetched is taken at once) */
        int64_t first_ms = 0;
        int waiting = 1;
        while (p->nitems < p->max_items && waiting) {
            int timeout = 200;
            if (p->nitems) {
                int64_t left = first_ms + p->batch_wait_ms - lt_now_ms();
                timeout = left <= 0 ? 0 : left < 100 ? (int)left : 100;
            }
            rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, timeout);
            rd_kafka_poll(p->producer, 0);
            if (m && m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    lt_warn(NULL, "consumer: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
            } else if (m) {
                if (!p->nitems)
                    first_ms = lt_now_ms();
                p->items[p->nitems++].msg = m;
            } else if (p->nitems && timeout == 0) {
                waiting = 0;
            }
            if (!p->nitems && (p->stop || !m)) {
                log_stats(p, &stats_ms, &stats_events, 0);
                if (p->stop)
                    break;
            }
            if (p->stop)
                break;
        }
        maybe_purge(p);
        if (!p->nitems)
            continue;
        /* the batch (also when stopping: the records in hand are finished) */
        char e[1024];
        lt_err_t err = process_batch(p, e, sizeof(e));
        if (err) {
            p->attempt++;
            p->st.retries++;
            lt_parser_obs_retry(p->obs);
            lt_warn(NULL, "batch of %zu records not written (attempt %d): %s; redoing it",
                    p->nitems, p->attempt, e);
            rewind_batch(p);
            backoff(p);
        } else {
            p->attempt = 0;
        }
        log_stats(p, &stats_ms, &stats_events, 0);
    }

    /* Anything still in hand is uncommitted: the next owner reads it. */
    drop_all(p);
    /* lt_parser_destroy() closes the consumer (leaves the group). */
    rd_kafka_flush(p->producer, 10000);
    log_stats(p, &stats_ms, &stats_events, 1);
    return LT_OK;
}

void lt_parser_destroy(lt_parser_t *p)
{
    if (!p)
        return;
    drop_all(p);
    lt_kafka_destroy(p->consumer);
    if (p->producer)
        rd_kafka_flush(p->producer, 5000);
    lt_kafka_destroy(p->producer);
    for (int i = 0; p->lanes && i < p->nlanes; i++) {
        lt_s3_destroy(p->lanes[i].ctx.s3);
        lt_mail_codec_destroy(p->lanes[i].ctx.codec);
        lt_change_codec_destroy(p->lanes[i].ctx.change_codec);
        lt_buf_destroy(p->lanes[i].ctx.raw);
        lt_buf_destroy(p->lanes[i].ctx.schema);
    }
    free(p->lanes);
    for (size_t i = 0; i < p->max_items; i++)
        lt_buf_destroy(p->items[i].row);
    free(p->items);
    lt_registry_destroy(p->registry);
    lt_db_destroy(p->db);
    free(p);
}
