#include "lt_kafka.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_log.h"

/* ---- configuration ------------------------------------------------------ */

typedef struct {
    const char *prop;
    const char *value;
} kv_t;

static const kv_t k_producer_defaults[] = {
    {"client.id", "lattice"},          {"linger.ms", "20"}, {"compression.type", "lz4"},
    {"log.connection.close", "false"}, {NULL, NULL},
};

static const kv_t k_consumer_defaults[] = {
    {"client.id", "lattice"},
    {"auto.offset.reset", "earliest"},
    {"log.connection.close", "false"},
    {NULL, NULL},
};

/* Enforced properties; `also` lists other spellings of an acceptable value. */
typedef struct {
    const char *prop;
    const char *value;
    const char *also;
    const char *why;
} enforced_t;

static const enforced_t k_producer_enforced[] = {
    {"enable.idempotence", "true", "1|yes|on", "exactly-once delivery relies on it"},
    {"acks", "all", "-1", "idempotence requires it"},
    {"request.required.acks", "all", "-1", "idempotence requires it"},
    {NULL, NULL, NULL, NULL},
};

static const enforced_t k_consumer_enforced[] = {
    {"enable.auto.commit", "false", "0|no|off",
     "offsets are committed in the worker's transaction"},
    {"enable.auto.offset.store", "false", "0|no|off",
     "offsets are committed in the worker's transaction"},
    {"isolation.level", "read_committed", NULL, "aborted transactions must stay invisible"},
    {"partition.assignment.strategy", "cooperative-sticky", NULL,
     "the worker's rebalance handling is incremental"},
    {NULL, NULL, NULL, NULL},
};

/* Set by the program from its arguments only. */
static const char *const k_program_owned[] = {"transactional.id", "group.id", NULL};

/* Properties that only one kind of client reads (librdkafka's
 * CONFIGURATION.md, column C/P). A LATTICE_KAFKA_* setting is shared by the
 * consumer and the producers of a program; each client gets only what it
 * reads, so librdkafka has no CONFWARN to print at every start. */
static const char *const k_consumer_only[] = {
    "session.timeout.ms", "heartbeat.interval.ms", "group.instance.id", "group.protocol.type",
    "group.protocol", "group.remote.assignor", "coordinator.query.interval.ms",
    "max.poll.interval.ms", "auto.commit.interval.ms", "queued.min.messages",
    "queued.max.messages.kbytes", "fetch.wait.max.ms", "fetch.queue.backoff.ms",
    "fetch.message.max.bytes", "max.partition.fetch.bytes", "fetch.max.bytes", "fetch.min.bytes",
    "fetch.error.backoff.ms", "enable.partition.eof", "check.crcs", "allow.auto.create.topics",
    "consume.callback.max.messages", "offset.store.method", "isolation.level",
    "enable.auto.commit", "enable.auto.offset.store", "partition.assignment.strategy",
    "auto.offset.reset", NULL};
static const char *const k_producer_only[] = {
    "transaction.timeout.ms", "enable.gapless.guarantee", "queue.buffering.max.messages",
    "queue.buffering.max.kbytes", "queue.buffering.max.ms", "linger.ms",
    "message.send.max.retries", "retries", "queue.buffering.backpressure.threshold",
    "compression.codec", "compression.type", "batch.num.messages", "batch.size",
    "delivery.report.only.error", "sticky.partitioning.linger.ms", "request.timeout.ms",
    "message.timeout.ms", "delivery.timeout.ms", "partitioner", "compression.level", "enable.idempotence", "acks", "request.required.acks",
    NULL};

static int in_list(const char *const *list, const char *prop)
{
    for (; *list; list++)
        if (!strcmp(*list, prop))
            return 1;
    return 0;
}

typedef struct {
    rd_kafka_conf_t *conf;
    const enforced_t *enforced;
    const char *const *not_mine; /* properties the other kind of client reads */
} build_t;

static int value_in(const char *v, const char *value, const char *also)
{
    if (!strcasecmp(v, value))
        return 1;
    while (also && *also) {
        const char *bar = strchr(also, '|');
        size_t l = bar ? (size_t)(bar - also) : strlen(also);
        if (strlen(v) == l && !strncasecmp(v, also, l))
            return 1;
        also = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* "linger.ms" -> "LATTICE_KAFKA_LINGER_MS" for messages. */
static void env_name(const char *prop, char *out, size_t out_size)
{
    int n = snprintf(out, out_size, "LATTICE_KAFKA_");
    for (const char *p = prop; *p && (size_t)n + 1 < out_size; p++)
        out[n++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    out[n < (int)out_size ? n : (int)out_size - 1] = 0;
}

static lt_err_t conf_set(rd_kafka_conf_t *conf, const char *prop, const char *value, char *errstr,
                         size_t errstr_size)
{
    char why[512];
    if (rd_kafka_conf_set(conf, prop, value, why, sizeof(why)) != RD_KAFKA_CONF_OK)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "kafka property %s: %s", prop, why);
    return LT_OK;
}

/* lt_config_kafka_props() callback: one pass-through property. */
static lt_err_t pass_through(const char *prop, const char *value, void *opaque, char *errstr,
                             size_t errstr_size)
{
    build_t *b = opaque;
    char env[256];
    env_name(prop, env, sizeof(env));
    for (const char *const *o = k_program_owned; *o; o++)
        if (!strcmp(*o, prop))
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                             "%s: %s is set by the program, not through LATTICE_KAFKA_*", env,
                             prop);
    if (in_list(b->not_mine, prop))
        return LT_OK;
    for (const enforced_t *e = b->enforced; e->prop; e++)
        if (!strcmp(e->prop, prop) && !value_in(value, e->value, e->also))
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s=%s: %s must be %s (%s)", env,
                             value, prop, e->value, e->why);
    char why[512];
    if (rd_kafka_conf_set(b->conf, prop, value, why, sizeof(why)) != RD_KAFKA_CONF_OK)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s: %s", env, why);
    return LT_OK;
}

static rd_kafka_conf_t *build_conf(const lt_config_t *cfg, const kv_t *defaults,
                                   const enforced_t *enforced, const char *const *not_mine,
                                   const char *owned_prop,
                                   const char *owned_value, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (const kv_t *d = defaults; d->prop; d++)
        if (conf_set(conf, d->prop, d->value, errstr, errstr_size))
            goto fail;
    build_t b = {conf, enforced, not_mine};
    if (lt_config_kafka_props(cfg, pass_through, &b, errstr, errstr_size))
        goto fail;
    for (const enforced_t *e = enforced; e->prop; e++)
        if (conf_set(conf, e->prop, e->value, errstr, errstr_size))
            goto fail;
    if (owned_prop && owned_value && conf_set(conf, owned_prop, owned_value, errstr, errstr_size))
        goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

rd_kafka_conf_t *lt_kafka_producer_conf(const lt_config_t *cfg, const char *transactional_id,
                                        char *errstr, size_t errstr_size)
{
    if (transactional_id && !*transactional_id) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "kafka: empty transactional.id");
        return NULL;
    }
    return build_conf(cfg, k_producer_defaults, k_producer_enforced, k_consumer_only,
                      "transactional.id",
                      transactional_id, errstr, errstr_size);
}

rd_kafka_conf_t *lt_kafka_consumer_conf(const lt_config_t *cfg, const char *group_id, char *errstr,
                                        size_t errstr_size)
{
    if (!group_id || !*group_id) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "kafka: a consumer needs a group.id");
        return NULL;
    }
    return build_conf(cfg, k_consumer_defaults, k_consumer_enforced, k_producer_only, "group.id",
                      group_id, errstr, errstr_size);
}

/* ---- client state and callbacks ----------------------------------------- */

/* One lt_kafka_produce_sync() call waiting for its report. The delivery
 * callback only compares msg->_private against this list (no dereference of
 * other callers' opaques). */
typedef struct sync_dr_s {
    struct sync_dr_s *next;
    int done;
    int abandoned; /* the waiter gave up: the callback frees it */
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
} sync_dr_t;

struct lt_kafka_health_s {
    pthread_mutex_t lock;
    int brokers_down, txn_down;
    int suspect;    /* an _ALL_BROKERS_DOWN not yet confirmed by a probe */
    int txn_logged; /* the coordinator's outage had its own line */
    char reason[256];
    int64_t down_since, txn_down_since;
    uint64_t client_errors, outages;
    uint64_t errors_at_down; /* client_errors when the outage began */
    int64_t last_probe;
};

typedef struct {
    pthread_mutex_t lock;
    lt_kafka_health_t *health; /* NULL: every error logged */
    int transactional;
    uint64_t delivered;
    uint64_t failed;
    rd_kafka_resp_err_t last_error;
    sync_dr_t *waiting;
    void *user_opaque;
    lt_kafka_dr_fn on_delivery;
} kstate_t;

lt_kafka_health_t *lt_kafka_health_new(void)
{
    lt_kafka_health_t *h = lt_xcalloc(1, sizeof(*h));
    pthread_mutex_init(&h->lock, NULL);
    return h;
}

void lt_kafka_health_destroy(lt_kafka_health_t *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void lt_kafka_health_get(lt_kafka_health_t *h, lt_kafka_health_state_t *out)
{
    memset(out, 0, sizeof(*out));
    out->brokers_up = out->txn_coordinator_up = 1;
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    out->brokers_up = !h->brokers_down;
    out->txn_coordinator_up = !h->txn_down;
    out->down_since_ms = h->brokers_down ? h->down_since : 0;
    out->client_errors = h->client_errors;
    out->outages = h->outages;
    pthread_mutex_unlock(&h->lock);
}

/* The brokers answer again (a delivery, a probe); txn: a transactional
 * producer's delivery (its coordinator answered too). */
static void health_up(lt_kafka_health_t *h, int txn, const char *how)
{
    if (!h)
        return;
    int64_t now = lt_now_ms();
    pthread_mutex_lock(&h->lock);
    int was_down = h->brokers_down, txn_logged = h->txn_down && h->txn_logged;
    int brokers_back = was_down || h->suspect, was_suspect = h->suspect && !was_down;
    int64_t since = h->down_since, txn_since = h->txn_down_since;
    uint64_t errors = h->client_errors - h->errors_at_down;
    h->brokers_down = h->suspect = 0;
    if (txn || brokers_back || !h->txn_logged) {
        h->txn_down = h->txn_logged = 0;
    } else {
        txn_logged = 0; /* still unavailable */
    }
    pthread_mutex_unlock(&h->lock);
    if (was_down)
        lt_info(NULL, "kafka: brokers reachable again after %.1f s (%s; %llu client error(s) "
                      "meanwhile)",
                (double)(now - since) / 1000.0, how, (unsigned long long)errors);
    else if (was_suspect && errors)
        lt_warn(NULL, "kafka: %llu client connection error(s) in %.1f s, but the brokers "
                      "answer (%s): a broker restart or a client reconnecting",
                (unsigned long long)errors, (double)(now - since) / 1000.0, how);
    if (txn_logged)
        lt_info(NULL, "kafka: transaction coordinator available again after %.1f s",
                (double)(now - txn_since) / 1000.0);
}

/* A client error seen through h: returns the level to log it at
 * (LT_LOG_DEBUG when it only repeats a known or suspected outage). An
 * _ALL_BROKERS_DOWN makes the brokers suspect; lt_kafka_health_probe()
 * confirms the outage (one line) or clears it (a client that reconnects
 * late after an outage reports one too). */
static lt_log_level_t health_error(lt_kafka_health_t *h, int err, const char *reason,
                                   lt_log_level_t level)
{
    int64_t now = lt_now_ms();
    int txn_went_down = 0;
    if (!reason)
        reason = "";
    pthread_mutex_lock(&h->lock);
    h->client_errors++;
    /* any lost connection makes the brokers suspect at once (each client
     * reports its own, before librdkafka says all are down): the probe
     * decides, so a burst of them is one line, not one per client */
    if ((err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT) &&
        !h->brokers_down && !h->suspect) {
        h->suspect = 1;
        h->down_since = now;
        h->errors_at_down = h->client_errors - 1;
        h->last_probe = 0; /* probe at once */
        snprintf(h->reason, sizeof(h->reason), "%s", reason);
    }
    if (strstr(reason, "TxnCoordinator") && !h->txn_down) {
        h->txn_down = 1;
        h->txn_down_since = now;
        /* during a broker outage the brokers' line says it */
        h->txn_logged = txn_went_down = !h->brokers_down && !h->suspect;
    }
    int quiet = h->brokers_down || h->suspect || h->txn_down;
    pthread_mutex_unlock(&h->lock);
    if (txn_went_down)
        lt_warn(NULL, "kafka: transaction coordinator unavailable (%s); transactions wait",
                reason);
    return txn_went_down || quiet ? LT_LOG_DEBUG : level;
}

void lt_kafka_health_probe(lt_kafka_health_t *h, rd_kafka_t *rk, int interval_ms, int timeout_ms)
{
    if (!h || !rk)
        return;
    int64_t now = lt_now_ms();
    pthread_mutex_lock(&h->lock);
    int ask = (h->brokers_down || h->suspect) && now - h->last_probe >= interval_ms;
    if (ask)
        h->last_probe = now;
    pthread_mutex_unlock(&h->lock);
    if (!ask)
        return;
    const struct rd_kafka_metadata *md = NULL;
    int answered = 0;
    if (rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        answered = md->broker_cnt > 0;
        rd_kafka_metadata_destroy(md);
    }
    if (answered) {
        health_up(h, 0, "metadata answered");
        return;
    }
    char reason[sizeof(h->reason)];
    int went_down = 0;
    pthread_mutex_lock(&h->lock);
    if (h->suspect && !h->brokers_down) {
        h->brokers_down = went_down = 1;
        h->outages++;
        memcpy(reason, h->reason, sizeof(reason));
    }
    pthread_mutex_unlock(&h->lock);
    if (went_down)
        lt_error(NULL,
                 "kafka: all brokers unreachable (%s); the clients' errors are counted "
                 "(lattice_worker_kafka_client_errors_total), not logged, until they answer again",
                 reason);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kstate_t *st = opaque;
    int mine = 0;
    pthread_mutex_lock(&st->lock);
    if (m->err) {
        st->failed++;
        st->last_error = m->err;
    } else {
        st->delivered++;
    }
    for (sync_dr_t **pp = &st->waiting; *pp; pp = &(*pp)->next) {
        sync_dr_t *s = *pp;
        if (s != m->_private)
            continue;
        mine = 1;
        if (s->abandoned) {
            *pp = s->next;
            free(s);
        } else {
            s->done = 1;
            s->err = m->err;
            s->partition = m->partition;
            s->offset = m->offset;
        }
        break;
    }
    pthread_mutex_unlock(&st->lock);
    if (!m->err && st->health)
        health_up(st->health, st->transactional, "a message delivered");
    if (m->err)
        lt_log(mine ? LT_LOG_DEBUG : LT_LOG_WARN, NULL, "kafka: delivery to %s [%d] failed: %s",
               rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
    if (!mine && st->on_delivery)
        st->on_delivery(rk, m, st->user_opaque);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        lt_error(NULL, "kafka: fatal error %s: %s", rd_kafka_err2name(orig), fatal);
        return;
    }
    /* Transport errors come and go (librdkafka reconnects): a warning. */
    lt_log_level_t level =
        err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__AUTHENTICATION
            ? LT_LOG_ERROR
            : LT_LOG_WARN;
    kstate_t *st = opaque;
    if (st && st->health)
        level = health_error(st->health, err, reason, level);
    lt_log(level, NULL, "kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels */
    lt_log_level_t l = level <= 3   ? LT_LOG_ERROR
                       : level == 4 ? LT_LOG_WARN
                       : level <= 6 ? LT_LOG_INFO
                                    : LT_LOG_DEBUG;
    /* during a known outage the clients' own lines repeat it: debug */
    kstate_t *st = rd_kafka_opaque(rk);
    if (l >= LT_LOG_WARN && st && st->health && fac && !strcmp(fac, "FAIL")) {
        /* a lost connection: as the error callback's _TRANSPORT */
        l = health_error(st->health, RD_KAFKA_RESP_ERR__TRANSPORT, buf, l);
    } else if (l >= LT_LOG_WARN && st && st->health) {
        pthread_mutex_lock(&st->health->lock);
        if (st->health->brokers_down || st->health->suspect || st->health->txn_down)
            l = LT_LOG_DEBUG;
        pthread_mutex_unlock(&st->health->lock);
    }
    lt_log(l, NULL, "kafka %s: %s: %s", rd_kafka_name(rk), fac, buf);
}

rd_kafka_t *lt_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, void *user_opaque,
                         lt_kafka_dr_fn on_delivery, char *errstr, size_t errstr_size)
{
    return lt_kafka_new_watched(type, conf, user_opaque, on_delivery, NULL, NULL, errstr,
                                errstr_size);
}

rd_kafka_t *lt_kafka_new_watched(rd_kafka_type_t type, rd_kafka_conf_t *conf, void *user_opaque,
                                 lt_kafka_dr_fn on_delivery, lt_kafka_health_t *health,
                                 lt_kafka_new_result_t *new_failed, char *errstr, size_t errstr_size)
{
    if (new_failed)
        *new_failed = LT_KAFKA_NEW_OK;
    if (!conf) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "kafka: no configuration");
        return NULL;
    }
    char txn[256];
    size_t txn_len = sizeof(txn);
    int transactional =
        type == RD_KAFKA_PRODUCER &&
        rd_kafka_conf_get(conf, "transactional.id", txn, &txn_len) == RD_KAFKA_CONF_OK && txn[0];

    kstate_t *st = lt_xcalloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->user_opaque = user_opaque;
    st->on_delivery = on_delivery;
    st->health = health;
    st->transactional = transactional;
    rd_kafka_conf_set_opaque(conf, st);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);

    char why[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, why, sizeof(why));
    if (!rk) {
        const char *what = type == RD_KAFKA_PRODUCER ? "producer" : "consumer";
        if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__INVALID_ARG) {
            /* Not a refused configuration (checked before any thread
             * starts) but a failure after its threads started, e.g. "Timed
             * out waiting for 1 background thread(s) to initialize" (its
             * wait is on CLOCK_REALTIME: a wall-clock step cuts it short).
             * librdkafka 2.0.2 may leave those threads running (librdkafka
             * PR #4112), still reading the conf and the opaque: both are
             * left allocated, and the caller must end the process. */
            if (new_failed)
                *new_failed = LT_KAFKA_NEW_HALF_MADE;
            lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                      "kafka: cannot create the %s: %s (its threads may still run)", what, why);
            return NULL;
        }
        if (new_failed)
            *new_failed = LT_KAFKA_NEW_REFUSED;
        rd_kafka_conf_destroy(conf);
        pthread_mutex_destroy(&st->lock);
        free(st);
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "kafka: cannot create the %s: %s", what,
                  why);
        return NULL;
    }
    if (type == RD_KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    if (transactional) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(rk, LT_KAFKA_INIT_TXN_TIMEOUT_MS);
        if (e) {
            char reason[512];
            lt_kafka_error_classify(e, NULL, reason, sizeof(reason));
            lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                      "kafka: init_transactions for transactional.id %s: %s", txn, reason);
            rd_kafka_error_destroy(e);
            lt_kafka_destroy(rk);
            return NULL;
        }
    }
    return rk;
}

rd_kafka_t *lt_kafka_producer_new(const lt_config_t *cfg, const char *transactional_id,
                                  char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = lt_kafka_producer_conf(cfg, transactional_id, errstr, errstr_size);
    if (!conf)
        return NULL;
    return lt_kafka_new(RD_KAFKA_PRODUCER, conf, NULL, NULL, errstr, errstr_size);
}

rd_kafka_t *lt_kafka_consumer_new(const lt_config_t *cfg, const char *group_id, char *errstr,
                                  size_t errstr_size)
{
    rd_kafka_conf_t *conf = lt_kafka_consumer_conf(cfg, group_id, errstr, errstr_size);
    if (!conf)
        return NULL;
    return lt_kafka_new(RD_KAFKA_CONSUMER, conf, NULL, NULL, errstr, errstr_size);
}

void lt_kafka_destroy(rd_kafka_t *rk)
{
    if (!rk)
        return;
    kstate_t *st = rd_kafka_opaque(rk);
    /* A consumer the caller closed already (the worker leaves its group at
     * the end of its run) is not closed again: that fails with "Broker
     * handle destroyed". */
    if (rd_kafka_type(rk) == RD_KAFKA_CONSUMER && !rd_kafka_consumer_closed(rk)) {
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk);
        if (err)
            lt_warn(NULL, "kafka: consumer close: %s", rd_kafka_err2str(err));
    }
    rd_kafka_destroy(rk);
    if (st) {
        while (st->waiting) {
            sync_dr_t *s = st->waiting;
            st->waiting = s->next;
            free(s);
        }
        pthread_mutex_destroy(&st->lock);
        free(st);
    }
}

void *lt_kafka_user_opaque(rd_kafka_t *rk)
{
    kstate_t *st = rd_kafka_opaque(rk);
    return st ? st->user_opaque : NULL;
}

void lt_kafka_delivery_stats(rd_kafka_t *rk, uint64_t *delivered, uint64_t *failed,
                             rd_kafka_resp_err_t *last_error)
{
    kstate_t *st = rd_kafka_opaque(rk);
    pthread_mutex_lock(&st->lock);
    if (delivered)
        *delivered = st->delivered;
    if (failed)
        *failed = st->failed;
    if (last_error)
        *last_error = st->last_error;
    pthread_mutex_unlock(&st->lock);
}

/* ---- producing ---------------------------------------------------------- */

lt_err_t lt_kafka_produce_sync(rd_kafka_t *rk, const lt_kafka_msg_t *msg, int timeout_ms,
                               lt_kafka_pos_t *pos, char *errstr, size_t errstr_size)
{
    const char *topic = msg->topic;
    rd_kafka_headers_t *headers = msg->headers;
    kstate_t *st = rd_kafka_opaque(rk);
    lt_err_t ret = LT_OK;
    sync_dr_t *s = lt_xcalloc(1, sizeof(*s));
    pthread_mutex_lock(&st->lock);
    s->next = st->waiting;
    st->waiting = s;
    pthread_mutex_unlock(&st->lock);

    rd_kafka_resp_err_t err =
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(msg->partition),
                          RD_KAFKA_V_KEY(msg->key, msg->key_len),
                          RD_KAFKA_V_VALUE((void *)msg->value, msg->value_len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
                          RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
    if (err) {
        if (headers)
            rd_kafka_headers_destroy(headers);
        pthread_mutex_lock(&st->lock);
        for (sync_dr_t **pp = &st->waiting; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        pthread_mutex_unlock(&st->lock);
        free(s);
        return lt_seterr(errstr, errstr_size, lt_kafka_resp_err_class(err),
                         "kafka: produce to %s: %s", topic, rd_kafka_err2str(err));
    }
    rd_kafka_flush(rk, timeout_ms);

    pthread_mutex_lock(&st->lock);
    if (s->done) {
        for (sync_dr_t **pp = &st->waiting; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        err = s->err;
        if (!err && pos) {
            pos->partition = s->partition;
            pos->offset = s->offset;
        }
        free(s);
        if (err)
            ret = lt_seterr(errstr, errstr_size, lt_kafka_resp_err_class(err),
                            "kafka: delivery to %s failed: %s", topic, rd_kafka_err2str(err));
    } else {
        s->abandoned = 1; /* the callback frees it, or lt_kafka_destroy() */
        ret = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "kafka: no delivery report from %s within %d ms", topic, timeout_ms);
    }
    pthread_mutex_unlock(&st->lock);
    return ret;
}

lt_err_t lt_kafka_warm_topic(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
                             size_t errstr_size)
{
    lt_err_t ret = LT_OK;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "kafka: topic %s: %s", topic,
                         rd_kafka_err2str(rd_kafka_last_error()));
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (err) {
        ret = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "kafka: metadata of %s: %s", topic,
                        rd_kafka_err2str(err));
    } else if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
        rd_kafka_resp_err_t terr =
            md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        ret = lt_seterr(
            errstr, errstr_size,
            terr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? LT_ERR_NOT_FOUND : LT_ERR_TEMPORARY,
            "kafka: topic %s: %s", topic, terr ? rd_kafka_err2str(terr) : "no partitions");
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return ret;
}

/* ---- headers ------------------------------------------------------------ */

rd_kafka_headers_t *lt_kafka_headers_with_traceparent(const char *traceparent)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    if (traceparent && *traceparent)
        rd_kafka_header_add(h, LT_KAFKA_HEADER_TRACEPARENT, -1, traceparent,
                            (ssize_t)strlen(traceparent));
    return h;
}

lt_err_t lt_kafka_header_str(const rd_kafka_headers_t *headers, const char *name, char *out,
                             size_t out_size)
{
    const void *v = NULL;
    size_t n = 0;
    if (out_size)
        out[0] = 0;
    if (!headers || rd_kafka_header_get_last(headers, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return LT_ERR_NOT_FOUND;
    if (!v || memchr(v, 0, n))
        return LT_ERR_INVALID;
    if (n + 1 > out_size)
        return LT_ERR_TOO_BIG;
    memcpy(out, v, n);
    out[n] = 0;
    return LT_OK;
}

lt_err_t lt_kafka_message_header(rd_kafka_message_t *msg, const char *name, char *out,
                                 size_t out_size)
{
    rd_kafka_headers_t *h = NULL;
    if (out_size)
        out[0] = 0;
    if (rd_kafka_message_headers(msg, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return LT_ERR_NOT_FOUND;
    return lt_kafka_header_str(h, name, out, out_size);
}

/* ---- errors ------------------------------------------------------------- */

lt_err_t lt_kafka_error_classify(const rd_kafka_error_t *error, lt_kafka_action_t *action,
                                 char *errstr, size_t errstr_size)
{
    lt_kafka_action_t a;
    lt_err_t ret;
    if (!error) {
        a = LT_KAFKA_OK;
        ret = LT_OK;
    } else if (rd_kafka_error_is_fatal(error)) {
        a = LT_KAFKA_FATAL;
        ret = LT_ERR_FINAL;
    } else if (rd_kafka_error_txn_requires_abort(error)) {
        a = LT_KAFKA_ABORT;
        ret = LT_ERR_TEMPORARY;
    } else if (rd_kafka_error_is_retriable(error)) {
        a = LT_KAFKA_RETRY;
        ret = LT_ERR_TEMPORARY;
    } else {
        a = LT_KAFKA_FAIL;
        ret = LT_ERR_INVALID;
    }
    if (action)
        *action = a;
    if (error)
        lt_seterr(errstr, errstr_size, ret, "%s: %s", rd_kafka_error_name(error),
                  rd_kafka_error_string(error));
    return ret;
}

lt_err_t lt_kafka_resp_err_class(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return LT_OK;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return LT_ERR_TOO_BIG;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
        return LT_ERR_FINAL;
    case RD_KAFKA_RESP_ERR__STATE:
        return LT_ERR_INVALID;
    default:
        return LT_ERR_TEMPORARY;
    }
}
