/* Kafka transactions on the local single-node broker (Kafka 3.9.1, KRaft)
 * with librdkafka 2.0.2, through lt_kafka:
 *   - sync produce of input messages; a consumer group reads them;
 *   - a transactional producer commits N messages with traceparent headers
 *     plus the group's offsets (send_offsets_to_transaction), aborts M
 *     messages plus lower offsets, then commits one more message;
 *   - a read_committed consumer sees exactly the N+1 committed messages with
 *     keys and headers intact; a read_uncommitted one also sees the M aborted
 *     (so they really were in the log); the group's offset is the committed one;
 *   - a second producer with the same transactional.id fences the first,
 *     whose next commit fails with an error classified FATAL/FINAL.
 * Each run creates its own topics (admin API) and deletes them at the end. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lt_clock.h"
#include "lt_config.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_trace.h"
#include "lt_test.h"

#define N_COMMITTED 5
#define N_ABORTED 3
#define N_INPUT 3
#define WAIT_MS 60000

static char g_base[128], g_in[160], g_out[160], g_group[160], g_txid[160];

static int admin_wait(rd_kafka_queue_t *q, rd_kafka_event_type_t type, const char *what)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, WAIT_MS);
    int ok = 0;
    if (!ev) {
        fprintf(stderr, "%s: no result\n", what);
        return 0;
    }
    if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "%s: %s\n", what, rd_kafka_event_error_string(ev));
    } else if (type == RD_KAFKA_EVENT_CREATETOPICS_RESULT) {
        size_t n;
        const rd_kafka_topic_result_t **r =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        ok = n > 0;
        for (size_t i = 0; i < n; i++)
            if (rd_kafka_topic_result_error(r[i])) {
                fprintf(stderr, "%s %s: %s\n", what, rd_kafka_topic_result_name(r[i]),
                        rd_kafka_topic_result_error_string(r[i]));
                ok = 0;
            }
    } else {
        size_t n;
        const rd_kafka_topic_result_t **r =
            rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
        ok = n > 0;
        for (size_t i = 0; i < n; i++)
            if (rd_kafka_topic_result_error(r[i]))
                ok = 0;
    }
    rd_kafka_event_destroy(ev);
    return ok;
}

static int create_topics(rd_kafka_t *rk)
{
    char err[512];
    rd_kafka_NewTopic_t *t[2] = {rd_kafka_NewTopic_new(g_in, 1, 1, err, sizeof(err)),
                                 rd_kafka_NewTopic_new(g_out, 2, 1, err, sizeof(err))};
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, t, 2, NULL, q);
    int ok = admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, "CreateTopics");
    rd_kafka_NewTopic_destroy_array(t, 2);
    rd_kafka_queue_destroy(q);
    /* Wait until the broker's metadata shows both with their partitions. */
    int64_t deadline = lt_now_ms() + WAIT_MS;
    while (ok && lt_now_ms() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        int found = 0;
        if (rd_kafka_metadata(rk, 1, NULL, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (int i = 0; i < md->topic_cnt; i++)
                if (!md->topics[i].err &&
                    ((!strcmp(md->topics[i].topic, g_in) && md->topics[i].partition_cnt == 1) ||
                     (!strcmp(md->topics[i].topic, g_out) && md->topics[i].partition_cnt == 2)))
                    found++;
            rd_kafka_metadata_destroy(md);
        }
        if (found == 2)
            return 1;
        usleep(200 * 1000);
    }
    return 0;
}

static void delete_topics(rd_kafka_t *rk)
{
    rd_kafka_DeleteTopic_t *t[2] = {rd_kafka_DeleteTopic_new(g_in),
                                    rd_kafka_DeleteTopic_new(g_out)};
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, t, 2, NULL, q);
    CHECK(admin_wait(q, RD_KAFKA_EVENT_DELETETOPICS_RESULT, "DeleteTopics"));
    rd_kafka_DeleteTopic_destroy_array(t, 2);
    rd_kafka_queue_destroy(q);
}

/* Fail the test with the classified reason of a transactional call. */
static int txn_ok(rd_kafka_error_t *e, const char *what)
{
    char why[512];
    lt_kafka_action_t a;
    if (!e)
        return 1;
    lt_kafka_error_classify(e, &a, why, sizeof(why));
    CHECK_MSG(0, "%s: %s (action %d)", what, why, (int)a);
    rd_kafka_error_destroy(e);
    return 0;
}

typedef struct {
    char value[64];
    char key[64];
    char traceparent[LT_TRACEPARENT_SIZE];
    int seen;
} sent_t;

static sent_t g_sent[N_COMMITTED + 1];

static lt_err_t produce_txn_msg(rd_kafka_t *rk, const char *value, const char *key,
                                const char *traceparent)
{
    rd_kafka_headers_t *h = lt_kafka_headers_with_traceparent(traceparent);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(g_out), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        fprintf(stderr, "producev: %s\n", rd_kafka_err2str(err));
        return lt_kafka_resp_err_class(err);
    }
    return LT_OK;
}

/* Read the out topic from the beginning until both partitions reach their
 * end; returns the number of data messages, counting aborted ones seen. */
static int read_out(rd_kafka_t *rk, int *aborted_seen, int check_headers)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(2);
    for (int p = 0; p < 2; p++)
        rd_kafka_topic_partition_list_add(parts, g_out, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t aerr = rd_kafka_assign(rk, parts);
    CHECK_MSG(aerr == 0, "assign: %s", rd_kafka_err2str(aerr));
    rd_kafka_topic_partition_list_destroy(parts);
    int count = 0, eof = 0;
    *aborted_seen = 0;
    int64_t deadline = lt_now_ms() + WAIT_MS;
    while (eof < 2 && lt_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else if (m->err) {
            fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(m));
        } else {
            count++;
            char v[128];
            snprintf(v, sizeof(v), "%.*s", (int)m->len, (const char *)m->payload);
            if (!strncmp(v, "aborted-", 8))
                (*aborted_seen)++;
            for (int i = 0; check_headers && i < N_COMMITTED + 1; i++) {
                if (strcmp(g_sent[i].value, v))
                    continue;
                g_sent[i].seen++;
                char tp[128];
                CHECK_INT(lt_kafka_message_header(m, LT_KAFKA_HEADER_TRACEPARENT, tp, sizeof(tp)),
                          LT_OK);
                CHECK_STR(tp, g_sent[i].traceparent);
                CHECK(m->key_len == strlen(g_sent[i].key) &&
                      !memcmp(m->key, g_sent[i].key, m->key_len));
                lt_trace_t t;
                CHECK_INT(lt_trace_parse(tp, strlen(tp), &t, NULL, 0), LT_OK);
            }
        }
        rd_kafka_message_destroy(m);
    }
    CHECK_MSG(eof == 2, "did not reach the end of both partitions of %s", g_out);
    return count;
}

int main(void)
{
    char err[1024];
    lt_test_env("LATTICE_KAFKA_BOOTSTRAP_SERVERS");
    lt_log_setup("test_kafka_tx", "warn", "text", err, sizeof(err));
    lt_config_t *cfg = lt_config_load(LT_PROG_SCHEDULER, err, sizeof(err));
    CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return lt_test_done("test_kafka_tx");

    snprintf(g_base, sizeof(g_base), "lattice-test-kafka-tx-%ld-%d", (long)time(NULL),
             (int)getpid());
    snprintf(g_in, sizeof(g_in), "%s.in", g_base);
    snprintf(g_out, sizeof(g_out), "%s.out", g_base);
    snprintf(g_group, sizeof(g_group), "%s.group", g_base);
    snprintf(g_txid, sizeof(g_txid), "%s.tx", g_base);

    /* 1. Topics, and input messages through the sync helper. */
    rd_kafka_t *p0 = lt_kafka_producer_new(cfg, NULL, err, sizeof(err));
    CHECK_MSG(p0 != NULL, "%s", err);
    if (!p0)
        goto done;
    int created = create_topics(p0);
    CHECK_MSG(created, "could not create %s and %s", g_in, g_out);
    if (!created)
        goto done;
    for (int i = 0; i < N_INPUT; i++) {
        char v[32];
        lt_kafka_pos_t pos = {-1, -1};
        snprintf(v, sizeof(v), "input-%d", i);
        lt_err_t r = lt_kafka_produce_sync(
            p0,
            &(lt_kafka_msg_t){.topic = g_in,
                              .partition = RD_KAFKA_PARTITION_UA,
                              .key = "acct-1",
                              .key_len = 6,
                              .value = v,
                              .value_len = strlen(v),
                              .headers = lt_kafka_headers_with_traceparent(NULL)},
            30000, &pos, err, sizeof(err));
        CHECK_MSG(r == LT_OK, "produce_sync: %s", err);
        CHECK_INT(pos.offset, i); /* idempotent producer, one partition: 0, 1, 2 */
    }

    /* 2. A consumer group reads them (cooperative-sticky, no auto commit). */
    rd_kafka_t *c = lt_kafka_consumer_new(cfg, g_group, err, sizeof(err));
    CHECK_MSG(c != NULL, "%s", err);
    if (!c)
        goto done;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, g_in, RD_KAFKA_PARTITION_UA);
    CHECK_INT(rd_kafka_subscribe(c, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    int got = 0;
    int64_t last_offset = -1;
    int64_t deadline = lt_now_ms() + WAIT_MS;
    while (got < N_INPUT && lt_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 500);
        if (!m)
            continue;
        if (!m->err) {
            got++;
            last_offset = m->offset;
        }
        rd_kafka_message_destroy(m);
    }
    CHECK_INT(got, N_INPUT);
    CHECK_INT(last_offset, N_INPUT - 1);

    /* 3. Transactional producer: commit N messages + the group's offsets. */
    int64_t t0 = lt_now_ms();
    rd_kafka_t *tx = lt_kafka_producer_new(cfg, g_txid, err, sizeof(err));
    CHECK_MSG(tx != NULL, "%s", err);
    if (!tx)
        goto done_c;
    printf("init_transactions: %" PRId64 " ms\n", lt_now_ms() - t0);
    /* The topics exist (and the first commit does not wait for metadata). */
    CHECK_INT(lt_kafka_warm_topic(tx, g_out, 10000, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_kafka_warm_topic(tx, g_in, 10000, err, sizeof(err)), LT_OK);
    char missing[200];
    snprintf(missing, sizeof(missing), "%s.missing", g_base);
    CHECK_INT(lt_kafka_warm_topic(tx, missing, 10000, err, sizeof(err)), LT_ERR_NOT_FOUND);
    printf("missing topic: %s\n", err);
    lt_trace_t root;
    CHECK_INT(lt_trace_new(&root, err, sizeof(err)), LT_OK);
    t0 = lt_now_ms();
    if (txn_ok(rd_kafka_begin_transaction(tx), "begin 1")) {
        for (int i = 0; i < N_COMMITTED; i++) {
            lt_trace_t child;
            lt_trace_child(&root, &child, NULL, 0);
            snprintf(g_sent[i].value, sizeof(g_sent[i].value), "committed-%d", i);
            snprintf(g_sent[i].key, sizeof(g_sent[i].key), "acct-%d", i % 3);
            lt_trace_format(&child, g_sent[i].traceparent);
            CHECK_INT(produce_txn_msg(tx, g_sent[i].value, g_sent[i].key, g_sent[i].traceparent),
                      LT_OK);
        }
        int64_t t1 = lt_now_ms();
        rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(offs, g_in, 0)->offset = last_offset + 1;
        rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata(c);
        txn_ok(rd_kafka_send_offsets_to_transaction(tx, offs, gm, 30000), "send_offsets 1");
        rd_kafka_consumer_group_metadata_destroy(gm);
        rd_kafka_topic_partition_list_destroy(offs);
        int64_t t2 = lt_now_ms();
        txn_ok(rd_kafka_commit_transaction(tx, 30000), "commit 1");
        printf("send_offsets_to_transaction: %" PRId64 " ms, commit_transaction: %" PRId64 " ms\n",
               t2 - t1, lt_now_ms() - t2);
    }
    printf("transaction of %d messages + offsets committed in %" PRId64 " ms\n", N_COMMITTED,
           lt_now_ms() - t0);

    /* 4. Abort M messages (flushed to the log first) and lower offsets. */
    if (txn_ok(rd_kafka_begin_transaction(tx), "begin 2")) {
        for (int i = 0; i < N_ABORTED; i++) {
            char v[32];
            snprintf(v, sizeof(v), "aborted-%d", i);
            CHECK_INT(produce_txn_msg(tx, v, "acct-9", NULL), LT_OK);
        }
        CHECK_INT(rd_kafka_flush(tx, 30000), 0);
        rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(offs, g_in, 0)->offset = 1;
        rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata(c);
        txn_ok(rd_kafka_send_offsets_to_transaction(tx, offs, gm, 30000), "send_offsets 2");
        rd_kafka_consumer_group_metadata_destroy(gm);
        rd_kafka_topic_partition_list_destroy(offs);
        txn_ok(rd_kafka_abort_transaction(tx, 30000), "abort");
    }

    /* 5. One more committed transaction after the aborted one. */
    if (txn_ok(rd_kafka_begin_transaction(tx), "begin 3")) {
        snprintf(g_sent[N_COMMITTED].value, sizeof(g_sent[0].value), "after-abort");
        snprintf(g_sent[N_COMMITTED].key, sizeof(g_sent[0].key), "acct-1");
        lt_trace_format(&root, g_sent[N_COMMITTED].traceparent);
        lt_kafka_pos_t pos = {-1, -1};
        /* The sync helper inside a transaction (flush + delivery report). */
        lt_err_t r =
            lt_kafka_produce_sync(tx,
                                  &(lt_kafka_msg_t){.topic = g_out,
                                                    .partition = RD_KAFKA_PARTITION_UA,
                                                    .key = g_sent[N_COMMITTED].key,
                                                    .key_len = strlen(g_sent[N_COMMITTED].key),
                                                    .value = g_sent[N_COMMITTED].value,
                                                    .value_len = strlen(g_sent[N_COMMITTED].value),
                                                    .headers = lt_kafka_headers_with_traceparent(
                                                        g_sent[N_COMMITTED].traceparent)},
                                  30000, &pos, err, sizeof(err));
        CHECK_MSG(r == LT_OK, "%s", err);
        CHECK(pos.offset >= 0);
        int64_t t3 = lt_now_ms();
        txn_ok(rd_kafka_commit_transaction(tx, 30000), "commit 3");
        printf("commit_transaction after an abort: %" PRId64 " ms\n", lt_now_ms() - t3);
    }
    uint64_t delivered = 0, failed = 9;
    lt_kafka_delivery_stats(tx, &delivered, &failed, NULL);
    CHECK_INT(failed, 0);
    CHECK_INT(delivered, N_COMMITTED + N_ABORTED + 1);

    /* 6. The group's committed offset is the one of the committed transaction. */
    rd_kafka_topic_partition_list_t *cp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(cp, g_in, 0);
    CHECK_INT(rd_kafka_committed(c, cp, 30000), 0);
    CHECK_INT(cp->elems[0].err, 0);
    CHECK_INT(cp->elems[0].offset, last_offset + 1);
    rd_kafka_topic_partition_list_destroy(cp);

    /* 7. read_committed sees exactly the committed messages, headers intact. */
    rd_kafka_conf_t *rc_conf = lt_kafka_consumer_conf(cfg, g_group, err, sizeof(err));
    CHECK_MSG(rc_conf != NULL, "%s", err);
    if (rc_conf) {
        char why[256];
        rd_kafka_conf_set(rc_conf, "enable.partition.eof", "true", why, sizeof(why));
        rd_kafka_t *rc = lt_kafka_new(RD_KAFKA_CONSUMER, rc_conf, NULL, NULL, err, sizeof(err));
        CHECK_MSG(rc != NULL, "%s", err);
        if (rc) {
            int aborted = -1;
            int n = read_out(rc, &aborted, 1);
            CHECK_INT(n, N_COMMITTED + 1);
            CHECK_INT(aborted, 0);
            for (int i = 0; i < N_COMMITTED + 1; i++)
                CHECK_MSG(g_sent[i].seen == 1, "%s seen %d times", g_sent[i].value, g_sent[i].seen);
            lt_kafka_destroy(rc);
        }
    }

    /* 8. read_uncommitted (plain librdkafka) also sees the aborted ones. */
    {
        char why[256];
        rd_kafka_conf_t *uc = rd_kafka_conf_new();
        rd_kafka_conf_set(uc, "bootstrap.servers", lt_test_env("LATTICE_KAFKA_BOOTSTRAP_SERVERS"),
                          why, sizeof(why));
        rd_kafka_conf_set(uc, "group.id", g_group, why, sizeof(why));
        rd_kafka_conf_set(uc, "isolation.level", "read_uncommitted", why, sizeof(why));
        rd_kafka_conf_set(uc, "enable.partition.eof", "true", why, sizeof(why));
        rd_kafka_conf_set(uc, "enable.auto.commit", "false", why, sizeof(why));
        rd_kafka_t *u = rd_kafka_new(RD_KAFKA_CONSUMER, uc, why, sizeof(why));
        CHECK_MSG(u != NULL, "%s", why);
        if (u) {
            rd_kafka_poll_set_consumer(u);
            int aborted = -1;
            int n = read_out(u, &aborted, 0);
            CHECK_INT(n, N_COMMITTED + N_ABORTED + 1);
            CHECK_INT(aborted, N_ABORTED);
            rd_kafka_consumer_close(u);
            rd_kafka_destroy(u);
        }
    }

    /* 9. Fencing: a new producer with the same transactional.id; the old
     * one's next transaction fails with a fatal error. */
    rd_kafka_t *tx2 = lt_kafka_producer_new(cfg, g_txid, err, sizeof(err));
    CHECK_MSG(tx2 != NULL, "%s", err);
    if (tx2) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(tx);
        if (!e) {
            produce_txn_msg(tx, "zombie", "acct-1", NULL);
            e = rd_kafka_commit_transaction(tx, 30000);
        }
        CHECK_MSG(e != NULL, "the fenced producer committed");
        if (e) {
            lt_kafka_action_t a = LT_KAFKA_OK;
            lt_err_t r = lt_kafka_error_classify(e, &a, err, sizeof(err));
            printf("fenced producer: %s\n", err);
            CHECK_MSG(a == LT_KAFKA_FATAL && r == LT_ERR_FINAL, "action %d: %s", (int)a, err);
            rd_kafka_error_destroy(e);
        }
        lt_kafka_destroy(tx2);
    }
    lt_kafka_destroy(tx);
done_c:
    lt_kafka_destroy(c);
    delete_topics(p0);
done:
    lt_kafka_destroy(p0);
    lt_config_destroy(cfg);
    return lt_test_done("test_kafka_tx");
}
