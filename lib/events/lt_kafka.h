/* lt_kafka: librdkafka clients built the project's way.
 *
 * rd_kafka_t stays exposed (it is librdkafka's own opaque handle); this
 * module builds its configuration and installs the callbacks:
 *
 *  - Properties, in order: the project defaults below, then every
 *    LATTICE_KAFKA_* setting (lt_config_kafka_props(): LATTICE_KAFKA_LINGER_MS
 *    -> linger.ms), then the enforced ones. A pass-through that contradicts
 *    an enforced property is an error (not silently overridden), so a wrong
 *    deployment fails at start-up with a message naming the variable.
 *
 *    producer defaults:  client.id=lattice, linger.ms=20, compression.type=lz4,
 *                        log.connection.close=false
 *    producer enforced:  enable.idempotence=true, acks=all
 *                        (exactly-once and ordering per account depend on them)
 *    consumer defaults:  client.id=lattice, auto.offset.reset=earliest,
 *                        log.connection.close=false
 *    consumer enforced:  enable.auto.commit=false, enable.auto.offset.store=false,
 *                        isolation.level=read_committed,
 *                        partition.assignment.strategy=cooperative-sticky
 *    program-owned:      transactional.id and group.id come from the arguments,
 *                        never from LATTICE_KAFKA_* (rejected there).
 *
 *  - Callbacks: librdkafka's log lines and errors go to lt_log; a delivery
 *    report callback counts delivered and failed messages
 *    (lt_kafka_delivery_stats()) and completes lt_kafka_produce_sync().
 *    rd_kafka_opaque() belongs to this module: use lt_kafka_user_opaque().
 *
 * Destroy a handle made here with lt_kafka_destroy(), never rd_kafka_destroy(). */
#ifndef LT_KAFKA_H
#define LT_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "lt_config.h"
#include "lt_err.h"

#define LT_KAFKA_INIT_TXN_TIMEOUT_MS 60000
#define LT_KAFKA_HEADER_TRACEPARENT "traceparent"

/* Configuration only (for callers that add a rebalance callback, and for
 * tests). The conf is owned by the caller until passed to lt_kafka_new().
 * NULL with the reason in errstr on a bad property. */
rd_kafka_conf_t *lt_kafka_producer_conf(const lt_config_t *cfg, const char *transactional_id,
                                        char *errstr, size_t errstr_size);
rd_kafka_conf_t *lt_kafka_consumer_conf(const lt_config_t *cfg, const char *group_id, char *errstr,
                                        size_t errstr_size);

/* Called for every delivery report of a message not produced by
 * lt_kafka_produce_sync() (on the thread that calls rd_kafka_poll/flush). */
typedef void (*lt_kafka_dr_fn)(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *user_opaque);

/* Create a client from `conf` (always taken, also on failure). Installs the
 * callbacks. A consumer gets rd_kafka_poll_set_consumer(). A producer with a
 * transactional.id runs rd_kafka_init_transactions() with
 * LT_KAFKA_INIT_TXN_TIMEOUT_MS. `user_opaque` and `on_delivery` may be NULL. */
rd_kafka_t *lt_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, void *user_opaque,
                         lt_kafka_dr_fn on_delivery, char *errstr, size_t errstr_size);

/* The brokers as a program's clients see them, shared by the clients made
 * with lt_kafka_new_watched(): a broker outage is one log line when it
 * starts and one when it ends, not the same librdkafka error from every
 * client every second. While the brokers are down, the clients' errors and
 * warnings are counted and logged at debug only. Thread-safe.
 *
 *   down:  an _ALL_BROKERS_DOWN error of any client (suspected), confirmed by
 *          lt_kafka_health_probe() not answering (a client reconnecting
 *          late after an outage reports one too: the probe clears it)
 *   up:    a delivered message, or lt_kafka_health_probe() answered
 *   transaction coordinator unavailable: a client error naming the
 *          TxnCoordinator; available: a transactional producer's delivered
 *          message, or the brokers up again */
typedef struct lt_kafka_health_s lt_kafka_health_t;

typedef struct {
    int brokers_up;          /* 0 while every broker is unreachable */
    int txn_coordinator_up;  /* 0 while transactions cannot reach their coordinator */
    int64_t down_since_ms;   /* lt_now_ms() when the brokers went down; 0 when up */
    uint64_t client_errors;  /* errors reported by the clients (logged or not) */
    uint64_t outages;        /* times the brokers went down */
} lt_kafka_health_state_t;

lt_kafka_health_t *lt_kafka_health_new(void);
/* After every client that uses it is destroyed. NULL is fine. */
void lt_kafka_health_destroy(lt_kafka_health_t *h);
void lt_kafka_health_get(lt_kafka_health_t *h, lt_kafka_health_state_t *out);
/* While the brokers are suspected or known down: ask rk for the broker list
 * (at once after a suspicion, then at most every interval_ms, waiting up to
 * timeout_ms); no answer confirms the outage, an answer ends it. For a loop
 * that runs anyway (a consumer's poll loop); without it no outage is ever
 * confirmed. */
void lt_kafka_health_probe(lt_kafka_health_t *h, rd_kafka_t *rk, int interval_ms, int timeout_ms);

/* How rd_kafka_new() ended in lt_kafka_new_watched(). */
typedef enum {
    LT_KAFKA_NEW_OK,        /* not reached, or the client was made (init_transactions may fail) */
    LT_KAFKA_NEW_REFUSED,   /* the configuration was refused; nothing of it runs */
    LT_KAFKA_NEW_HALF_MADE, /* failed after the client's threads started: they may still run,
                             * on memory this process can no longer trust; end the process
                             * rather than try again in it */
} lt_kafka_new_result_t;

/* lt_kafka_new() whose errors go through `health` (may be NULL: as
 * lt_kafka_new()); health must outlive the client. `new_failed` (may be
 * NULL) says how rd_kafka_new() ended. */
rd_kafka_t *lt_kafka_new_watched(rd_kafka_type_t type, rd_kafka_conf_t *conf, void *user_opaque,
                                 lt_kafka_dr_fn on_delivery, lt_kafka_health_t *health,
                                 lt_kafka_new_result_t *new_failed, char *errstr, size_t errstr_size);

/* Shortcuts: conf + lt_kafka_new(). transactional_id NULL: an idempotent,
 * non-transactional producer. */
rd_kafka_t *lt_kafka_producer_new(const lt_config_t *cfg, const char *transactional_id,
                                  char *errstr, size_t errstr_size);
rd_kafka_t *lt_kafka_consumer_new(const lt_config_t *cfg, const char *group_id, char *errstr,
                                  size_t errstr_size);

/* Consumers: rd_kafka_consumer_close() first, unless the caller closed it
 * already (rd_kafka_consumer_closed()). Producers are not flushed
 * (flush or abort before, as the caller's protocol requires). NULL is fine. */
void lt_kafka_destroy(rd_kafka_t *rk);

void *lt_kafka_user_opaque(rd_kafka_t *rk);

/* Delivery reports seen so far, and the last failure's code (0 = none). */
void lt_kafka_delivery_stats(rd_kafka_t *rk, uint64_t *delivered, uint64_t *failed,
                             rd_kafka_resp_err_t *last_error);

/* One message to produce. A plain value carrier; nothing owned but the
 * headers (see lt_kafka_produce_sync()). */
typedef struct {
    const char *topic;
    int32_t partition; /* RD_KAFKA_PARTITION_UA: the partitioner's choice (0 is partition 0) */
    const void *key;   /* NULL: none */
    size_t key_len;
    const void *value; /* copied */
    size_t value_len;
    rd_kafka_headers_t *headers; /* NULL: none */
} lt_kafka_msg_t;

/* Where a message was written. */
typedef struct {
    int32_t partition;
    int64_t offset;
} lt_kafka_pos_t;

/* Produce one message and wait up to timeout_ms for its delivery report
 * (rd_kafka_flush, so other queued messages are flushed too). msg->headers
 * is always taken. In a transactional producer a transaction must be open.
 * *pos (may be NULL) receives where it was written, on success only.
 * Errors are classified by lt_kafka_resp_err_class(). */
lt_err_t lt_kafka_produce_sync(rd_kafka_t *rk, const lt_kafka_msg_t *msg, int timeout_ms,
                               lt_kafka_pos_t *pos, char *errstr, size_t errstr_size);

/* Fetch `topic`'s metadata into the client: checks at start-up that the
 * topic exists (auto-create is off) and spares the first transaction a
 * ~1 s wait (librdkafka 2.0.2 looks up a topic it has not seen on a 1 s
 * timer, inside commit_transaction's flush). LT_ERR_NOT_FOUND if the topic
 * does not exist, LT_ERR_TEMPORARY if the broker does not answer in time. */
lt_err_t lt_kafka_warm_topic(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                             size_t errstr_size);

/* A new header list holding traceparent (caller owns; rd_kafka_producev's
 * RD_KAFKA_V_HEADERS takes it on success). NULL or "" traceparent: empty list. */
rd_kafka_headers_t *lt_kafka_headers_with_traceparent(const char *traceparent);

/* Copy the last value of header `name` as a NUL-terminated string into out.
 * LT_ERR_NOT_FOUND if absent (or headers is NULL), LT_ERR_TOO_BIG if it does
 * not fit, LT_ERR_INVALID if it holds a NUL byte or is a null value. */
lt_err_t lt_kafka_header_str(const rd_kafka_headers_t *headers, const char *name, char *out,
                             size_t out_size);
/* The same on a consumed message. */
lt_err_t lt_kafka_message_header(rd_kafka_message_t *msg, const char *name, char *out,
                                 size_t out_size);

/* What to do about an rd_kafka_error_t (transactional API), after
 * librdkafka's examples/transactions.c. */
typedef enum {
    LT_KAFKA_OK = 0,
    LT_KAFKA_RETRY, /* retriable: call the same function again */
    LT_KAFKA_ABORT, /* abort the transaction, rewind the consumer, redo the batch */
    LT_KAFKA_FATAL, /* the producer is unusable (fenced, ...): destroy it, exit, restart */
    LT_KAFKA_FAIL,  /* none of these: a bug or a bad state (e.g. no open transaction) */
} lt_kafka_action_t;

/* Classify `error` (not destroyed; NULL = success): retriable -> TEMPORARY,
 * requires abort -> TEMPORARY with action ABORT, fatal -> FINAL, anything
 * else -> INVALID. errstr gets "<code name>: <text>". `action` may be NULL. */
lt_err_t lt_kafka_error_classify(const rd_kafka_error_t *error, lt_kafka_action_t *action,
                                 char *errstr, size_t errstr_size);

/* Classify a plain response code (delivery reports, produce calls):
 * size limits -> TOO_BIG; unknown topic, authorization, invalid record,
 * fatal, invalid argument -> FINAL; bad state -> INVALID; else TEMPORARY. */
lt_err_t lt_kafka_resp_err_class(rd_kafka_resp_err_t err);

#endif
