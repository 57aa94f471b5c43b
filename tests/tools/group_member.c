/* group_member: a static member of a consumer group (cooperative-sticky,
 * like lattice-worker) for the tests; it consumes nothing (what it is
 * given stays uncommitted) and says on stdout what it is assigned:
 *
 *   group_member --bootstrap HOST:PORT --group G --topic T --instance ID
 *                [--session-ms N] [--exit-on-revoke]
 *
 * With --exit-on-revoke it ends (exit 0, no LeaveGroup, no rejoin) in the
 * first round of a cooperative rebalance that revokes partitions from it:
 * what a static member that crashes mid-rebalance does. Lines:
 *   assigned P,P,...   (the partitions just assigned)
 *   revoked P,P,...    (then "exiting" with --exit-on-revoke)
 * SIGTERM: closes the consumer and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static void print_parts(const char *what, const rd_kafka_topic_partition_list_t *parts)
{
    printf("%s ", what);
    for (int i = 0; i < parts->cnt; i++)
        printf("%s%d", i ? "," : "", (int)parts->elems[i].partition);
    printf("\n");
    fflush(stdout);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    int exit_on_revoke = *(int *)opaque;
    rd_kafka_error_t *e = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        print_parts("assigned", parts);
        e = rd_kafka_incremental_assign(rk, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        print_parts("revoked", parts);
        if (exit_on_revoke && parts->cnt > 0) {
            printf("exiting\n");
            fflush(stdout);
            _exit(0);
        }
        e = rd_kafka_incremental_unassign(rk, parts);
    } else {
        fprintf(stderr, "group_member: rebalance error: %s\n", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
    if (e) {
        fprintf(stderr, "group_member: %s\n", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "group_member: %s=%s: %s\n", k, v, err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *bootstrap = NULL, *group = NULL, *topic = NULL, *instance = NULL;
    const char *session_ms = "60000";
    static int exit_on_revoke;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--exit-on-revoke"))
            exit_on_revoke = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--bootstrap"))
            bootstrap = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--group"))
            group = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--topic"))
            topic = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--instance"))
            instance = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--session-ms"))
            session_ms = argv[++i];
        else {
            fprintf(stderr, "usage: group_member --bootstrap HOST:PORT --group G --topic T "
                            "--instance ID [--session-ms N] [--exit-on-revoke]\n");
            return 2;
        }
    }
    if (!bootstrap || !group || !topic || !instance) {
        fprintf(stderr, "group_member: --bootstrap, --group, --topic and --instance are needed\n");
        return 2;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (set(conf, "bootstrap.servers", bootstrap) || set(conf, "group.id", group) ||
        set(conf, "group.instance.id", instance) ||
        set(conf, "partition.assignment.strategy", "cooperative-sticky") ||
        set(conf, "session.timeout.ms", session_ms) || set(conf, "enable.auto.commit", "false") ||
        set(conf, "auto.offset.reset", "earliest")) {
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, &exit_on_revoke);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "group_member: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (kerr) {
        fprintf(stderr, "group_member: subscribe: %s\n", rd_kafka_err2str(kerr));
        rd_kafka_destroy(rk);
        return 1;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    while (!stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m)
            rd_kafka_message_destroy(m); /* held, not run: never committed */
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}
