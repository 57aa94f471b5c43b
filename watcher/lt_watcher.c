#include "lt_watcher.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <librdkafka/rdkafka.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "lt_accounts.h"
#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_command.h"
#include "lt_db.h"
#include "lt_gmail_push.h"
#include "lt_gmail_watch.h"
#include "lt_issued.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_secret.h"
#include "lt_trace.h"
#include "lt_watch_conn.h"
#include "lt_watch_plan.h"

#define LOOP_MAX_WAIT_MS 250      /* Kafka clients are polled at least this often */
#define INFLIGHT_CHECK_MS 250     /* a due account's in-flight state is read this often */
#define GAUGES_EVERY_MS 1000      /* connection gauges refreshed */
#define METADATA_TIMEOUT_MS 10000 /* partition count of the commands topic */
#define FOLDERS_MAX 64            /* push folders of one account */
#define SECRET_MAX 1024
#define BATCH_MAX 500          /* commands recorded in one statement */
#define PUSH_QUEUE_MAX 65536   /* notifications waiting for the loop */
#define RENEW_WAIT_MAX_MS 1000 /* the renewal thread looks at the schedule this often */

typedef struct account_s account_t;

/* One watched folder of an account: a connection, or a reconnect time. */
typedef struct {
    account_t *a;
    char *folder;
    lt_watch_conn_t *c; /* NULL: waiting until retry_at_ms */
    int attempt;        /* failures since the last good connect */
    int64_t retry_at_ms;
    lt_log_ctx_t log;
    struct lt_watcher_s *w;
} watch_t;

struct account_s {
    char *tenant, *id;
    char *config_text; /* as read: a change restarts the connections */
    json_object *cfg;
    char host[256];
    int port;
    char user[320];
    char **folders; /* push folders */
    size_t nfolders;
    int gmail;    /* provider gmail: watched by lt_gmail_watch, woken by push */
    int gwatched; /* gmail: set in lt_gmail_watch (owned by this replica) */
    int usable;   /* config parsed; status active */
    int active;   /* status active */
    int32_t partition;
    unsigned gen;
    watch_t *watches; /* nfolders of them while watched; NULL otherwise */
    lt_watch_gate_t gate;
    lt_log_ctx_t log;
    account_t *next; /* hash chain */
};

/* Watched by this replica: IMAP connections, or a Gmail watch. */
#define WATCHED(a) ((a)->watches != NULL || (a)->gwatched)

/* A push notification of an owned account, queued by the endpoint's thread. */
typedef struct {
    char tenant[129], id[129];
} push_rec_t;

/* Travels with a produced command to its delivery report. */
typedef struct {
    char id[LT_COMMAND_ID_MAX + 8];
    char *tenant, *account, *scope;
} dr_rec_t;

struct lt_watcher_s {
    const lt_settings_t *set;
    const char *topic;
    char partitioner[64];
    lt_db_t *db;
    rd_kafka_t *producer, *group;
    SSL_CTX *ssl;
    volatile sig_atomic_t stop;
    atomic_int ready_bits; /* 1: assigned once, 2: accounts read once */

    account_t **buckets;
    size_t nbuckets, naccounts;
    unsigned gen;
    int32_t npartitions;
    unsigned char *assigned; /* [npartitions] */
    size_t nwatched, nconns;
    int64_t next_reload_ms, next_inflight_ms, next_gauges_ms;
    int reassess;   /* the assignment or the accounts changed */
    size_t opening; /* connections being opened, as of the last pass */
    int due_any;    /* some watched account's window is over (last pass) */

    /* poll() arrays, rebuilt every turn */
    struct pollfd *pfds;
    watch_t **pwatch;
    size_t pcap;

    /* Gmail push (docs/gmail-push.md): on with a topic, an endpoint and its
     * authentication */
    lt_gmail_watch_t *gw;
    lt_gmail_push_t *gp;
    lt_gmail_push_server_t *gsrv;
    volatile int gcancel;      /* stops Gmail calls in progress (shutdown) */
    pthread_mutex_t gmu;       /* guards the queue and the renewal thread's flags */
    pthread_cond_t gcv;        /* wakes the renewal thread */
    int gthread, gstop, gkick; /* renewal thread started, asked to stop, new account due */
    pthread_t renew_th;
    push_rec_t *q; /* pushes for the loop */
    size_t qn;
    int wake[2];   /* pipe: a push was queued */
    size_t ngmail; /* Gmail accounts watched */

    /* metrics */
    lt_series_t *m_g_watches, *m_g_calls_ok, *m_g_calls_failed, *m_g_push_accepted,
        *m_g_push_foreign, *m_g_push_401, *m_g_push_403, *m_g_push_400, *m_g_cmds, *m_note_push;
    lt_series_t *m_accounts, *m_partitions, *m_waiting, *m_reconnects, *m_reissues;
    lt_series_t *m_states[LT_WATCH_ST_COUNT];
    lt_series_t *m_notes[LT_WATCH_NOTE_COUNT];
    lt_series_t *m_cmd_sent, *m_cmd_failed;
};

/* ------------------------------------------------------------ accounts */

static uint64_t hash_key(const char *tenant, const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = tenant; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static account_t *find_account(lt_watcher_t *w, const char *tenant, const char *id)
{
    account_t *a = w->buckets[hash_key(tenant, id) & (w->nbuckets - 1)];
    for (; a; a = a->next)
        if (!strcmp(a->id, id) && !strcmp(a->tenant, tenant))
            return a;
    return NULL;
}

static void grow_table(lt_watcher_t *w)
{
    size_t nb = w->nbuckets * 2;
    account_t **b = lt_xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < w->nbuckets; i++) {
        account_t *a = w->buckets[i], *next;
        for (; a; a = next) {
            next = a->next;
            size_t k = hash_key(a->tenant, a->id) & (nb - 1);
            a->next = b[k];
            b[k] = a;
        }
    }
    free(w->buckets);
    w->buckets = b;
    w->nbuckets = nb;
}

static void free_conf(account_t *a)
{
    for (size_t i = 0; i < a->nfolders; i++)
        free(a->folders[i]);
    free(a->folders);
    a->folders = NULL;
    a->nfolders = 0;
    json_object_put(a->cfg);
    a->cfg = NULL;
    free(a->config_text);
    a->config_text = NULL;
}

/* Host, port, user and push folders of an IMAP account's config_json. */
static int parse_conf(account_t *a, json_object *cfg, char *err, size_t n)
{
    json_object *v;
    if (!json_object_object_get_ex(cfg, "host", &v) || !json_object_is_type(v, json_type_string)) {
        snprintf(err, n, "config: \"host\" (string) is required");
        return -1;
    }
    snprintf(a->host, sizeof(a->host), "%s", json_object_get_string(v));
    a->port = 993;
    if (json_object_object_get_ex(cfg, "port", &v)) {
        a->port = json_object_get_int(v);
        if (a->port < 1 || a->port > 65535) {
            snprintf(err, n, "config: bad \"port\"");
            return -1;
        }
    }
    if (!json_object_object_get_ex(cfg, "username", &v) ||
        !json_object_is_type(v, json_type_string)) {
        snprintf(err, n, "config: \"username\" (string) is required");
        return -1;
    }
    snprintf(a->user, sizeof(a->user), "%s", json_object_get_string(v));
    if (json_object_object_get_ex(cfg, "push_folders", &v)) {
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0 ||
            json_object_array_length(v) > FOLDERS_MAX) {
            snprintf(err, n, "config: \"push_folders\" must be an array of 1 to %d names",
                     FOLDERS_MAX);
            return -1;
        }
        size_t len = json_object_array_length(v);
        a->folders = lt_xcalloc(len, sizeof(char *));
        for (size_t i = 0; i < len; i++) {
            json_object *f = json_object_array_get_idx(v, i);
            if (!json_object_is_type(f, json_type_string) || !*json_object_get_string(f)) {
                snprintf(err, n, "config: push_folders[%zu] is not a folder name", i);
                return -1;
            }
            const char *name = lt_command_imap_mailbox(json_object_get_string(f));
            int dup = 0;
            for (size_t k = 0; k < a->nfolders && !dup; k++)
                dup = !strcmp(a->folders[k], name);
            if (!dup)
                a->folders[a->nfolders++] = lt_xstrdup(name);
        }
    } else {
        a->folders = lt_xcalloc(1, sizeof(char *));
        a->folders[a->nfolders++] = lt_xstrdup("INBOX");
    }
    return 0;
}

/* ------------------------------------------------------------ watching */

static void on_note(void *opaque, lt_watch_note_t note)
{
    watch_t *x = opaque;
    lt_watcher_t *w = x->w;
    lt_series_inc(w->m_notes[note]);
    if (note == LT_WATCH_NOTE_CONNECTED) {
        x->attempt = 0;
        lt_info(&x->log, "watching %s (%s)", x->folder,
                x->c && lt_watch_conn_has_idle(x->c) ? "IDLE" : "polling: no IDLE");
    } else {
        lt_debug(&x->log, "change in %s: %s", x->folder, lt_watch_note_name(note));
    }
    lt_watch_gate_note(&x->a->gate, x->folder, lt_now_ms(), w->set->watcher.debounce_ms);
}

static void drop_conn(lt_watcher_t *w, watch_t *x, lt_err_t e, const char *why, int64_t now)
{
    lt_watch_conn_destroy(x->c);
    x->c = NULL;
    int64_t max = (int64_t)w->set->watcher.backoff_max_s * 1000;
    uint32_t rnd = 0;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    int64_t delay = (e == LT_ERR_TEMPORARY) ? lt_watch_backoff_ms(x->attempt, max, rnd)
                                            : lt_watch_backoff_ms(30, max, rnd);
    x->attempt++;
    x->retry_at_ms = now + delay;
    lt_series_inc(w->m_reconnects);
    lt_warn(&x->log, "connection to %s lost (%s): %s; again in %.1f s", x->a->host, lt_err_name(e),
            why, (double)delay / 1000.0);
}

static void connect_watch(lt_watcher_t *w, watch_t *x, int64_t now)
{
    char err[512], pw[SECRET_MAX];
    account_t *a = x->a;
    lt_secret_ns_t ns = {a->tenant, w->set->worker.secrets_dir};
    lt_err_t e = lt_secret_resolve(&ns, a->cfg, "password", pw, sizeof(pw), err, sizeof(err));
    if (!e) {
        x->c = lt_watch_conn_new(
            &(lt_watch_conn_opts_t){.host = a->host,
                                    .port = a->port,
                                    .user = a->user,
                                    .folder = x->folder,
                                    .ssl_ctx = w->ssl,
                                    .idle_reissue_s = w->set->watcher.idle_reissue_s,
                                    .response_timeout_s = w->set->watcher.response_timeout_s,
                                    .poll_interval_s = w->set->watcher.poll_interval_s,
                                    .log = &x->log,
                                    .on_note = on_note,
                                    .opaque = x});
        e = lt_watch_conn_start(x->c, pw, now, err, sizeof(err));
    }
    lt_secret_wipe(pw, sizeof(pw));
    if (e)
        drop_conn(w, x, e, err, now);
}

static void watch_start(lt_watcher_t *w, account_t *a, int64_t now)
{
    a->watches = lt_xcalloc(a->nfolders, sizeof(watch_t));
    for (size_t i = 0; i < a->nfolders; i++) {
        watch_t *x = &a->watches[i];
        x->a = a;
        x->w = w;
        x->folder = a->folders[i];
        x->retry_at_ms = now; /* connect at once */
        x->log = (lt_log_ctx_t){.tenant = a->tenant, .account = a->id, .scope = x->folder};
    }
    w->nwatched++;
    w->nconns += a->nfolders;
}

static void watch_stop(lt_watcher_t *w, account_t *a, const char *why)
{
    if (!a->watches)
        return;
    for (size_t i = 0; i < a->nfolders; i++)
        lt_watch_conn_destroy(a->watches[i].c);
    free(a->watches);
    a->watches = NULL;
    lt_watch_gate_clear(&a->gate); /* the next owner starts with a command of its own */
    w->nwatched--;
    w->nconns -= a->nfolders;
    lt_info(&a->log, "released: %s", why);
}

static void renew_kick(lt_watcher_t *w)
{
    pthread_mutex_lock(&w->gmu);
    w->gkick = 1;
    pthread_cond_signal(&w->gcv);
    pthread_mutex_unlock(&w->gmu);
}

/* A Gmail account this replica now owns: its users.watch is due at once
 * (made by the renewal thread). */
static void gmail_start(lt_watcher_t *w, account_t *a)
{
    char err[512];
    lt_account_t *row = NULL;
    lt_err_t e = lt_account_load(w->db, a->tenant, a->id, &row, err, sizeof(err));
    if (!e)
        e = lt_gmail_watch_set(w->gw, row, err, sizeof(err));
    lt_account_destroy(row);
    if (e) {
        lt_warn(&a->log, "gmail: not watched: %s", err);
        return;
    }
    a->gwatched = 1;
    w->nwatched++;
    w->ngmail++;
    renew_kick(w);
    lt_info(&a->log, "gmail: watching (users.watch due)");
}

/* stop: users.stop first (the account is disabled or no longer active);
 * without it the account is only forgotten (another replica owns it now,
 * its users.watch replaces ours). users.stop is a Gmail call made on the
 * loop: bounded by LATTICE_GMAIL_TIMEOUT_S and _MAX_RETRIES. */
static void gmail_stop(lt_watcher_t *w, account_t *a, int stop, const char *why)
{
    char err[512];
    if (!a->gwatched)
        return;
    if (lt_gmail_watch_release(w->gw, a->tenant, a->id, stop, err, sizeof(err)) && stop)
        lt_warn(&a->log, "gmail: users.stop failed (the watch lapses within 7 days): %s", err);
    a->gwatched = 0;
    lt_watch_gate_clear(&a->gate);
    w->nwatched--;
    w->ngmail--;
    lt_info(&a->log, "released%s: %s", stop ? " (users.stop)" : "", why);
}

static void account_free(lt_watcher_t *w, account_t *a, int stop)
{
    gmail_stop(w, a, stop, "account gone");
    watch_stop(w, a, "account gone");
    free_conf(a);
    free(a->tenant);
    free(a->id);
    free(a);
}

static int partition_of(lt_watcher_t *w, const account_t *a)
{
    int32_t p = -1;
    if (w->npartitions <= 0 ||
        lt_watch_partition(w->partitioner, a->id, strlen(a->id), w->npartitions, &p))
        return -1;
    return p;
}

/* Start or stop watching each account as the assignment and its row say. */
static void reassess(lt_watcher_t *w, int64_t now)
{
    w->reassess = 0;
    for (size_t b = 0; b < w->nbuckets; b++) {
        for (account_t *a = w->buckets[b]; a; a = a->next) {
            int owned =
                a->partition >= 0 && a->partition < w->npartitions && w->assigned[a->partition];
            int want = a->usable && owned;
            if (a->gmail) {
                if (want && !a->gwatched)
                    gmail_start(w, a);
                else if (!want && a->gwatched)
                    gmail_stop(w, a, !a->usable,
                               !a->usable ? "not active"
                                          : "its partition moved to another replica");
                continue;
            }
            if (want && !a->watches) {
                if (w->nconns + a->nfolders > (size_t)w->set->watcher.max_connections) {
                    lt_warn(&a->log, "not watched: LATTICE_WATCHER_MAX_CONNECTIONS (%d) reached",
                            w->set->watcher.max_connections);
                    continue;
                }
                watch_start(w, a, now);
            } else if (!want && a->watches) {
                watch_stop(w, a,
                           !a->usable ? "disabled, not active or changed"
                                      : "its partition moved to another replica");
            }
        }
    }
    lt_series_set(w->m_accounts, (double)w->nwatched);
}

/* ------------------------------------------------------------ reload */

typedef struct {
    lt_watcher_t *w;
    int64_t now;
} reload_ctx_t;

static int on_account(const lt_account_t *row, void *opaque)
{
    reload_ctx_t *r = opaque;
    lt_watcher_t *w = r->w;
    const char *tenant = lt_account_tenant(row), *id = lt_account_id(row);
    const char *text =
        json_object_to_json_string_ext(lt_account_config(row), JSON_C_TO_STRING_PLAIN);
    int active = !strcmp(lt_account_status(row), "active");
    int gmail = !strcmp(lt_account_provider(row), "gmail");
    account_t *a = find_account(w, tenant, id);
    if (a && a->config_text && !strcmp(a->config_text, text) && a->active == active) {
        a->gen = w->gen;
        return 0; /* unchanged */
    }
    if (!a) {
        a = lt_xcalloc(1, sizeof(*a));
        a->tenant = lt_xstrdup(tenant);
        a->id = lt_xstrdup(id);
        a->log = (lt_log_ctx_t){.tenant = a->tenant, .account = a->id};
        size_t k = hash_key(tenant, id) & (w->nbuckets - 1);
        a->next = w->buckets[k];
        w->buckets[k] = a;
        if (++w->naccounts > 2 * w->nbuckets)
            grow_table(w);
    } else {
        /* a Gmail account that stays active is set again (its users.watch
         * replaces the previous one); one that is no longer active stops */
        gmail_stop(w, a, !active, "configuration or status changed");
        watch_stop(w, a, "configuration or status changed");
        free_conf(a);
    }
    a->gmail = gmail;
    a->gen = w->gen;
    a->active = active;
    a->config_text = lt_xstrdup(text);
    a->cfg = json_tokener_parse(text);
    char err[256];
    a->usable = 0;
    if (gmail)
        a->usable = a->cfg && active; /* lt_gmail_watch_set checks the rest */
    else if (!a->cfg || parse_conf(a, a->cfg, err, sizeof(err)) != 0)
        lt_warn(&a->log, "not watched: %s", a->cfg ? err : "config_json unreadable");
    else
        a->usable = active;
    a->partition = partition_of(w, a);
    w->reassess = 1;
    return 0;
}

static lt_err_t refresh_partitions(lt_watcher_t *w, char *errstr, size_t n)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(w->producer, w->topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(w->producer, 0, rkt, &md, METADATA_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (e)
        return lt_seterr(errstr, n, LT_ERR_TEMPORARY, "metadata of %s: %s", w->topic,
                         rd_kafka_err2str(e));
    int32_t cnt = 0;
    lt_err_t r = LT_OK;
    if (md->topic_cnt != 1 || md->topics[0].err)
        r = lt_seterr(errstr, n, LT_ERR_NOT_FOUND, "topic %s: %s", w->topic,
                      md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not found");
    else
        cnt = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    if (r || cnt <= 0 || cnt == w->npartitions)
        return r;
    unsigned char *as = lt_xcalloc((size_t)cnt, 1);
    for (int32_t i = 0; i < cnt && i < w->npartitions; i++)
        as[i] = w->assigned[i];
    free(w->assigned);
    w->assigned = as;
    lt_info(NULL, "commands topic %s: %d partition(s)", w->topic, cnt);
    w->npartitions = cnt;
    for (size_t b = 0; b < w->nbuckets; b++)
        for (account_t *a = w->buckets[b]; a; a = a->next)
            a->partition = partition_of(w, a);
    w->reassess = 1;
    return LT_OK;
}

static void reload(lt_watcher_t *w, int64_t now)
{
    char err[1024];
    w->next_reload_ms = now + (int64_t)w->set->watcher.reload_s * 1000;
    if (refresh_partitions(w, err, sizeof(err)))
        lt_warn(NULL, "%s", err);
    if (!lt_db_ok(w->db) && lt_db_reset(w->db, err, sizeof(err))) {
        lt_warn(NULL, "accounts not read: %s", err);
        return;
    }
    w->gen++;
    reload_ctx_t r = {w, now};
    if (lt_accounts_list_enabled(w->db, "imap", w->set->watcher.tenant, on_account, &r, err, sizeof(err)) ||
        (w->gw &&
         lt_accounts_list_enabled(w->db, "gmail", w->set->watcher.tenant, on_account, &r, err, sizeof(err)))) {
        lt_warn(NULL, "accounts not read: %s", err);
        return;
    }
    /* gone from the enabled list: disabled or deleted */
    for (size_t b = 0; b < w->nbuckets; b++) {
        account_t **pp = &w->buckets[b];
        while (*pp) {
            account_t *a = *pp;
            if (a->gen != w->gen) {
                *pp = a->next;
                w->naccounts--;
                account_free(w, a, 1); /* disabled or deleted: users.stop */
                continue;
            }
            pp = &a->next;
        }
    }
    reassess(w, now);
    atomic_fetch_or(&w->ready_bits, 2);
}

/* ------------------------------------------------------------ commands */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    lt_watcher_t *w = opaque;
    dr_rec_t *rec = msg->_private;
    if (!rec)
        return;
    lt_log_ctx_t log = {
        .tenant = rec->tenant, .account = rec->account, .scope = rec->scope, .command_id = rec->id};
    if (msg->err) {
        char err[256];
        const char *ids[] = {rec->id};
        lt_series_inc(w->m_cmd_failed);
        lt_warn(&log, "command not delivered: %s", rd_kafka_err2str(msg->err));
        if (lt_db_ok(w->db) && lt_issued_forget(w->db, ids, 1, err, sizeof(err)))
            lt_warn(&log, "undelivered command stays in flight until stale: %s", err);
        account_t *a = find_account(w, rec->tenant, rec->account);
        if (a && WATCHED(a))
            lt_watch_gate_failed(&a->gate, rec->scope, lt_now_ms());
    } else {
        lt_series_inc(w->m_cmd_sent);
        lt_info(&log, "command delivered");
    }
    free(rec->tenant);
    free(rec->account);
    free(rec->scope);
    free(rec);
}

static int on_in_flight(const char *tenant, const char *account_id, void *opaque)
{
    lt_watcher_t *w = opaque;
    account_t *a = find_account(w, tenant, account_id);
    if (a && WATCHED(a))
        a->gate.in_flight = 1;
    return 0;
}

typedef struct {
    account_t *a;
    lt_command_t *cmd;
    char *scope;
} out_t;

static void emit_batch(lt_watcher_t *w, out_t *outs, size_t n)
{
    char err[1024];
    lt_issued_t rows[BATCH_MAX] = {0};
    for (size_t i = 0; i < n; i++)
        rows[i] = (lt_issued_t){.command_id = lt_command_id(outs[i].cmd),
                                .tenant = outs[i].a->tenant,
                                .account_id = outs[i].a->id,
                                .provider = outs[i].a->gmail ? "gmail" : "imap",
                                .scope = outs[i].scope};
    /* Recorded before produced, as the scheduler does: a crash in between
     * delays the accounts until the rows are stale, it never piles up. */
    if (lt_issued_record(w->db, rows, n, err, sizeof(err))) {
        lt_warn(NULL, "%zu command(s) not issued (retried): %s", n, err);
        return;
    }
    lt_buf_t *json = lt_buf_new(LT_COMMAND_MAX_SIZE + 1);
    for (size_t i = 0; i < n; i++) {
        out_t *o = &outs[i];
        lt_buf_reset(json);
        lt_command_to_json(o->cmd, json);
        dr_rec_t *rec = lt_xcalloc(1, sizeof(*rec));
        snprintf(rec->id, sizeof(rec->id), "%s", lt_command_id(o->cmd));
        rec->tenant = lt_xstrdup(o->a->tenant);
        rec->account = lt_xstrdup(o->a->id);
        rec->scope = o->scope ? lt_xstrdup(o->scope) : NULL;
        rd_kafka_headers_t *h = lt_kafka_headers_with_traceparent(lt_command_traceparent(o->cmd));
        rd_kafka_resp_err_t e = rd_kafka_producev(
            w->producer, RD_KAFKA_V_TOPIC(w->topic), RD_KAFKA_V_KEY(o->a->id, strlen(o->a->id)),
            RD_KAFKA_V_VALUE((void *)lt_buf_data(json), lt_buf_len(json)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(rec),
            RD_KAFKA_V_END);
        lt_log_ctx_t log = {
            .tenant = o->a->tenant, .account = o->a->id, .scope = o->scope, .command_id = rec->id};
        if (e) {
            if (h)
                rd_kafka_headers_destroy(h);
            const char *ids[] = {rec->id};
            lt_warn(&log, "command not produced (retried): %s", rd_kafka_err2str(e));
            lt_issued_forget(w->db, ids, 1, err, sizeof(err));
            free(rec->tenant);
            free(rec->account);
            free(rec->scope);
            free(rec);
            lt_series_inc(w->m_cmd_failed);
            continue; /* the gate stays pending */
        }
        lt_info(&log, "command issued after %llu notification(s)",
                (unsigned long long)o->a->gate.notes);
        o->a->gate.notes = 0;
        lt_watch_gate_sent(&o->a->gate);
        if (o->a->gmail)
            lt_series_inc(w->m_g_cmds);
    }
    lt_buf_destroy(json);
}

static void emit_due(lt_watcher_t *w, int64_t now)
{
    char err[1024];
    if (!w->due_any || now < w->next_inflight_ms)
        return; /* due_any: from the timers' pass over every account */
    w->next_inflight_ms = now + INFLIGHT_CHECK_MS;
    if (!lt_db_ok(w->db) && lt_db_reset(w->db, err, sizeof(err))) {
        lt_warn(NULL, "commands held back: %s", err);
        return;
    }
    for (size_t b = 0; b < w->nbuckets; b++)
        for (account_t *a = w->buckets[b]; a; a = a->next)
            a->gate.in_flight = 0;
    if (lt_issued_list_in_flight(
            w->db,
            &(lt_issued_filter_t){.stale_after_s = w->set->watcher.stale_after_s,
                                  .provider = w->gw ? NULL : "imap"},
            on_in_flight, w, err, sizeof(err))) {
        lt_warn(NULL, "commands held back: %s", err);
        return;
    }
    out_t outs[BATCH_MAX];
    size_t n = 0, waiting = 0;
    lt_trace_t root;
    if (lt_trace_new(&root, err, sizeof(err))) {
        lt_warn(NULL, "%s", err);
        return;
    }
    for (size_t b = 0; b < w->nbuckets; b++) {
        for (account_t *a = w->buckets[b]; a; a = a->next) {
            if (!WATCHED(a) || !lt_watch_gate_due(&a->gate, now))
                continue;
            if (!lt_watch_gate_ready(&a->gate, now)) {
                waiting++;
                continue;
            }
            lt_trace_t child;
            char tp[LT_TRACEPARENT_SIZE];
            if (lt_trace_child(&root, &child, err, sizeof(err)))
                continue;
            lt_trace_format(&child, tp);
            const char *scope = lt_watch_gate_scope(&a->gate);
            lt_command_t *cmd = NULL;
            if (lt_command_new_incremental(&(lt_command_spec_t){.tenant_id = a->tenant,
                                                                .account_id = a->id,
                                                                .provider = a->gmail
                                                                                ? LT_PROVIDER_GMAIL
                                                                                : LT_PROVIDER_IMAP,
                                                                .scope = scope,
                                                                .requested_by = "watcher",
                                                                .traceparent = tp},
                                           &cmd, err, sizeof(err))) {
                lt_warn(&a->log, "no command: %s", err);
                lt_watch_gate_sent(&a->gate); /* cannot succeed as it is */
                a->gate.in_flight = 0;
                continue;
            }
            outs[n++] = (out_t){a, cmd, scope ? lt_xstrdup(scope) : NULL};
            if (n == BATCH_MAX) {
                emit_batch(w, outs, n);
                for (size_t i = 0; i < n; i++) {
                    lt_command_destroy(outs[i].cmd);
                    free(outs[i].scope);
                }
                n = 0;
            }
        }
    }
    if (n)
        emit_batch(w, outs, n);
    for (size_t i = 0; i < n; i++) {
        lt_command_destroy(outs[i].cmd);
        free(outs[i].scope);
    }
    lt_series_set(w->m_waiting, (double)waiting);
}

/* ------------------------------------------------------------ Gmail push */

/* On the endpoint's thread, before its 204: map the address to an account
 * this replica watches and queue it for the loop (no database, no Gmail
 * call while Pub/Sub waits). An address this replica does not watch is
 * answered 204 too (refused, Pub/Sub would redeliver it for days): with
 * every replica receiving every push, its owner got it as well. */
static void on_push(void *opaque, const lt_gmail_push_note_t *n)
{
    lt_watcher_t *w = opaque;
    push_rec_t r;
    if (lt_gmail_watch_lookup(w->gw, n->email, r.tenant, r.id)) {
        lt_series_inc(w->m_g_push_foreign);
        lt_debug(NULL, "gmail push for a mailbox this replica does not watch (historyId %llu)",
                 (unsigned long long)n->history_id);
        return;
    }
    lt_series_inc(w->m_g_push_accepted);
    pthread_mutex_lock(&w->gmu);
    int wake = w->qn == 0;
    if (w->qn < PUSH_QUEUE_MAX)
        w->q[w->qn++] = r;
    pthread_mutex_unlock(&w->gmu);
    if (wake) {
        ssize_t k = write(w->wake[1], "p", 1);
        (void)k; /* a full pipe already wakes the loop */
    }
}

/* On the loop: the queued pushes open their accounts' gates, like an IMAP
 * EXISTS does (same debounce, same no-pile-up rule). */
static void drain_pushes(lt_watcher_t *w, int64_t now)
{
    char buf[256];
    while (read(w->wake[0], buf, sizeof(buf)) > 0)
        ;
    pthread_mutex_lock(&w->gmu);
    size_t n = w->qn;
    push_rec_t *q = NULL;
    if (n) {
        q = lt_xmalloc(n * sizeof(*q));
        memcpy(q, w->q, n * sizeof(*q));
        w->qn = 0;
    }
    pthread_mutex_unlock(&w->gmu);
    for (size_t i = 0; i < n; i++) {
        account_t *a = find_account(w, q[i].tenant, q[i].id);
        if (!a || !a->gwatched)
            continue; /* released since */
        lt_series_inc(w->m_note_push);
        lt_debug(&a->log, "change: gmail push");
        lt_watch_gate_note(&a->gate, NULL, now, w->set->watcher.debounce_ms);
    }
    free(q);
}

/* users.watch and its renewals are blocking HTTPS calls: made on a thread of
 * their own so that the loop keeps serving IMAP connections and pushes. */
static void *renew_main(void *opaque)
{
    lt_watcher_t *w = opaque;
    pthread_mutex_lock(&w->gmu);
    while (!w->gstop) {
        w->gkick = 0;
        pthread_mutex_unlock(&w->gmu);
        int64_t d = lt_gmail_watch_next_due_ms(w->gw, 0);
        if (d == 0) {
            lt_gmail_watch_run_due(w->gw, 0);
            pthread_mutex_lock(&w->gmu);
            continue;
        }
        if (d < 0 || d > RENEW_WAIT_MAX_MS)
            d = RENEW_WAIT_MAX_MS;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += d / 1000;
        ts.tv_nsec += (long)(d % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&w->gmu);
        if (!w->gstop && !w->gkick)
            pthread_cond_timedwait(&w->gcv, &w->gmu, &ts);
    }
    pthread_mutex_unlock(&w->gmu);
    return NULL;
}

static lt_err_t gmail_init(lt_watcher_t *w, char *errstr, size_t n)
{
    const lt_settings_t *set = w->set;
    const char *topic = set->watcher_gmail.topic;
    const char *keys = set->watcher_gmail.push_keys_file, *token = set->watcher_gmail.push_token;
    if (!topic || !*topic) {
        if ((keys && *keys) || (token && *token) || set->watcher_gmail.push_port)
            lt_warn(NULL, "gmail push off: LATTICE_WATCHER_GMAIL_TOPIC is not set");
        return LT_OK;
    }
    if ((!keys || !*keys) && (!token || !*token))
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "LATTICE_WATCHER_GMAIL_TOPIC needs the push endpoint's authentication: "
                         "LATTICE_WATCHER_GMAIL_PUSH_KEYS_FILE (with _AUDIENCE) or _PUSH_TOKEN");
    if (set->watcher_gmail.push_port <= 0)
        return lt_seterr(errstr, n, LT_ERR_INVALID,
                         "LATTICE_WATCHER_GMAIL_TOPIC needs LATTICE_WATCHER_GMAIL_PUSH_PORT (the "
                         "push endpoint the subscription posts to)");
    lt_gmail_watch_opts_t wo = {
        .topic = topic,
        .renew_s = set->watcher_gmail.renew_s,
        .client = {.api_url = set->gmail.api_url,
                   .token_url = set->gmail.token_url,
                   .ca_file = set->tls_ca_file,
                   .max_inflight = 1,
                   .quota_units_per_s = set->gmail.quota_units_per_s,
                   .user_units_per_min = set->gmail.user_units_per_min,
                   .project_units_per_min = set->gmail.project_units_per_min,
                   .timeout_s = set->gmail.timeout_s,
                   .max_retries = set->gmail.max_retries,
                   .retry_base_ms = set->gmail.retry_base_ms,
                   .retry_max_ms = 64000,
                   .cancel = &w->gcancel},
        .secrets_dir = set->worker.secrets_dir};
    if (!(w->gw = lt_gmail_watch_new(&wo, errstr, n)))
        return LT_ERR_INVALID;
    lt_gmail_push_opts_t po = {.keys_file = keys && *keys ? keys : NULL,
                               .audience = set->watcher_gmail.push_audience,
                               .service_account = set->watcher_gmail.push_service_account,
                               .token = token && *token ? token : NULL,
                               .clock_skew_s = 60};
    if (!(w->gp = lt_gmail_push_new(&po, errstr, n)))
        return LT_ERR_INVALID;
    w->q = lt_xcalloc(PUSH_QUEUE_MAX, sizeof(*w->q));
    if (pipe(w->wake) != 0)
        return lt_seterr(errstr, n, LT_ERR_FINAL, "pipe: %s", strerror(errno));
    for (int i = 0; i < 2; i++) {
        fcntl(w->wake[i], F_SETFL, fcntl(w->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(w->wake[i], F_SETFD, FD_CLOEXEC);
    }
    if (pthread_create(&w->renew_th, NULL, renew_main, w) != 0)
        return lt_seterr(errstr, n, LT_ERR_FINAL, "gmail: cannot start the renewal thread");
    w->gthread = 1;
    lt_gmail_push_server_opts_t so = {.bind = set->watcher_gmail.push_bind,
                                      .port = set->watcher_gmail.push_port,
                                      .path = set->watcher_gmail.push_path,
                                      .fn = on_push,
                                      .opaque = w};
    if (!(w->gsrv = lt_gmail_push_server_start(w->gp, &so, errstr, n)))
        return LT_ERR_FINAL;
    lt_info(NULL, "gmail push: users.watch on %s, endpoint %s:%d%s (%s)", topic,
            so.bind ? so.bind : "0.0.0.0", lt_gmail_push_server_port(w->gsrv),
            so.path ? so.path : "/gmail/push",
            po.keys_file ? (po.token ? "OIDC token and shared token" : "OIDC token")
                         : "shared token");
    return LT_OK;
}

/* ------------------------------------------------------------ group */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    lt_watcher_t *w = lt_kafka_user_opaque(rk);
    rd_kafka_error_t *e = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++)
            parts->elems[i].offset = RD_KAFKA_OFFSET_END; /* nothing is read */
        e = rd_kafka_incremental_assign(rk, parts);
        rd_kafka_pause_partitions(rk, parts);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p >= 0 && p < w->npartitions)
                w->assigned[p] = 1;
        }
        lt_info(NULL, "assigned %d partition(s) of %s", parts->cnt, w->topic);
        atomic_fetch_or(&w->ready_bits, 1);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p >= 0 && p < w->npartitions)
                w->assigned[p] = 0;
        }
        lt_info(NULL, "%s %d partition(s) of %s", rd_kafka_assignment_lost(rk) ? "lost" : "revoked",
                parts->cnt, w->topic);
        e = rd_kafka_incremental_unassign(rk, parts);
    } else {
        lt_error(NULL, "rebalance error: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
        memset(w->assigned, 0, (size_t)w->npartitions);
    }
    if (e) {
        lt_error(NULL, "incremental rebalance: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    size_t n = 0;
    for (int32_t i = 0; i < w->npartitions; i++)
        n += w->assigned[i];
    lt_series_set(w->m_partitions, (double)n);
    w->reassess = 1;
}

static void poll_group(lt_watcher_t *w)
{
    rd_kafka_message_t *m;
    while ((m = rd_kafka_consumer_poll(w->group, 0)) != NULL) {
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            lt_warn(NULL, "watcher group: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m); /* commands are the workers' */
    }
}

/* ------------------------------------------------------------ life */

static lt_err_t find_partitioner(const char *prop, const char *value, void *opaque, char *errstr,
                                 size_t n)
{
    (void)errstr;
    (void)n;
    if (!strcmp(prop, "partitioner"))
        snprintf(((lt_watcher_t *)opaque)->partitioner, 64, "%s", value);
    return LT_OK;
}

static void metrics_init(lt_watcher_t *w, lt_metrics_t *reg)
{
    w->m_accounts = lt_metric_series(
        lt_metrics_gauge(reg, "lattice_watcher_accounts", "Accounts this replica watches.", NULL));
    w->m_partitions = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_watcher_partitions_assigned",
        "Partitions of the commands topic assigned to this replica (its share of the accounts).",
        NULL));
    w->m_waiting = lt_metric_series(lt_metrics_gauge(
        reg, "lattice_watcher_accounts_waiting",
        "Accounts with a change noted while their previous command is still in flight (sent "
        "when it ends).",
        NULL));
    lt_metric_t *st =
        lt_metrics_gauge(reg, "lattice_watcher_connections",
                         "IMAP connections by state (backoff: waiting to reconnect).", "state");
    for (int i = 0; i < LT_WATCH_ST_COUNT; i++)
        w->m_states[i] = lt_metric_get(
            st, i == LT_WATCH_ST_CLOSED ? "backoff" : lt_watch_state_name((lt_watch_state_t)i));
    lt_metric_t *nt = lt_metrics_counter(
        reg, "lattice_watcher_notifications_total",
        "Change notifications by kind (connect: a folder watched after a (re)connect).", "kind");
    for (int i = 0; i < LT_WATCH_NOTE_COUNT; i++)
        w->m_notes[i] = lt_metric_get(nt, lt_watch_note_name((lt_watch_note_t)i));
    lt_metric_t *cm = lt_metrics_counter(reg, "lattice_watcher_commands_total",
                                         "Incremental commands by delivery result.", "result");
    w->m_cmd_sent = lt_metric_get(cm, "delivered");
    w->m_cmd_failed = lt_metric_get(cm, "failed");
    w->m_reconnects = lt_metric_series(
        lt_metrics_counter(reg, "lattice_watcher_reconnects_total",
                           "Connections lost or refused (each is retried with backoff).", NULL));
    w->m_reissues =
        lt_metric_series(lt_metrics_counter(reg, "lattice_watcher_idle_reissues_total",
                                            "IDLE commands issued again (DONE, IDLE).", NULL));
    w->m_note_push = lt_metric_get(nt, "gmail_push");
    w->m_g_watches = lt_metric_series(
        lt_metrics_gauge(reg, "lattice_watcher_gmail_watches",
                         "Gmail accounts of this replica with a users.watch in force.", NULL));
    lt_metric_t *gc =
        lt_metrics_counter(reg, "lattice_watcher_gmail_watch_calls_total",
                           "users.watch calls (first watch and renewals) by result.", "result");
    w->m_g_calls_ok = lt_metric_get(gc, "ok");
    w->m_g_calls_failed = lt_metric_get(gc, "failed");
    lt_metric_t *gp = lt_metrics_counter(
        reg, "lattice_watcher_gmail_pushes_total",
        "Pub/Sub push requests by result: accepted (an account of this replica), foreign (an "
        "address this replica does not watch; answered 204), unauthorized (401), forbidden (403), "
        "malformed (400, 413).",
        "result");
    w->m_g_push_accepted = lt_metric_get(gp, "accepted");
    w->m_g_push_foreign = lt_metric_get(gp, "foreign");
    w->m_g_push_401 = lt_metric_get(gp, "unauthorized");
    w->m_g_push_403 = lt_metric_get(gp, "forbidden");
    w->m_g_push_400 = lt_metric_get(gp, "malformed");
    w->m_g_cmds = lt_metric_series(lt_metrics_counter(
        reg, "lattice_watcher_gmail_push_commands_total",
        "Incremental commands issued for Gmail accounts (woken by a push).", NULL));
}

lt_watcher_t *lt_watcher_new(const lt_config_t *cfg, lt_metrics_t *metrics, char *errstr,
                             size_t errstr_size)
{
    char kerr[256];
    lt_watcher_t *w = lt_xcalloc(1, sizeof(*w));
    w->wake[0] = w->wake[1] = -1;
    pthread_mutex_init(&w->gmu, NULL);
    pthread_cond_init(&w->gcv, NULL);
    w->set = lt_config_settings(cfg);
    w->topic = w->set->topic.commands;
    if (!strcmp(w->set->watcher.group_id, w->set->worker.group_id)) {
        /* joined to the workers' group it would take command partitions
         * away from them and never run the commands */
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "LATTICE_WATCHER_GROUP_ID must not be the workers' group (%s)",
                  w->set->worker.group_id);
        goto fail;
    }
    w->nbuckets = 1024;
    w->buckets = lt_xcalloc(w->nbuckets, sizeof(*w->buckets));
    metrics_init(w, metrics);
    if (lt_config_kafka_props(cfg, find_partitioner, w, errstr, errstr_size))
        goto fail;
    int32_t probe;
    if (lt_watch_partition(w->partitioner, "x", 1, 1, &probe)) {
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                  "LATTICE_KAFKA_PARTITIONER=%s: the watcher needs a keyed partitioner "
                  "(consistent_random, consistent, murmur2_random, murmur2, fnv1a_random, fnv1a)",
                  w->partitioner);
        goto fail;
    }

    w->ssl = SSL_CTX_new(TLS_client_method());
    if (!w->ssl) {
        lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "TLS: cannot make a context");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(w->ssl, TLS1_2_VERSION);
    SSL_CTX_set_verify(w->ssl, SSL_VERIFY_PEER, NULL);
    const char *ca = w->set->tls_ca_file;
    if ((ca ? SSL_CTX_load_verify_locations(w->ssl, ca, NULL)
            : SSL_CTX_set_default_verify_paths(w->ssl)) != 1) {
        lt_seterr(errstr, errstr_size, LT_ERR_FINAL, "TLS: cannot load the CA %s%s",
                  ca ? "file " : "store", ca ? ca : "");
        goto fail;
    }
    SSL_CTX_set_mode(w->ssl, SSL_MODE_RELEASE_BUFFERS);

    if (!(w->db = lt_db_connect(w->set->pg.dsn, w->set->pg.password, errstr, errstr_size)))
        goto fail;

    rd_kafka_conf_t *conf = lt_kafka_producer_conf(cfg, NULL, errstr, errstr_size);
    if (!conf)
        goto fail;
    if (rd_kafka_conf_set(conf, "client.id", "lattice-watcher", kerr, sizeof(kerr)) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "kafka: %s", kerr);
        goto fail;
    }
    if (!(w->producer = lt_kafka_new(RD_KAFKA_PRODUCER, conf, w, on_delivery, errstr, errstr_size)))
        goto fail;
    if (refresh_partitions(w, errstr, errstr_size))
        goto fail;

    conf = lt_kafka_consumer_conf(cfg, w->set->watcher.group_id, errstr, errstr_size);
    if (!conf)
        goto fail;
    char st[16], hb[16];
    snprintf(st, sizeof(st), "%d", w->set->watcher.session_timeout_ms);
    snprintf(hb, sizeof(hb), "%d", w->set->watcher.session_timeout_ms / 3);
    if (rd_kafka_conf_set(conf, "session.timeout.ms", st, kerr, sizeof(kerr)) ||
        rd_kafka_conf_set(conf, "heartbeat.interval.ms", hb, kerr, sizeof(kerr)) ||
        rd_kafka_conf_set(conf, "client.id", "lattice-watcher", kerr, sizeof(kerr))) {
        rd_kafka_conf_destroy(conf);
        lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "kafka: %s", kerr);
        goto fail;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    if (!(w->group = lt_kafka_new(RD_KAFKA_CONSUMER, conf, w, NULL, errstr, errstr_size)))
        goto fail;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, w->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(w->group, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (se) {
        lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "subscribe to %s: %s", w->topic,
                  rd_kafka_err2str(se));
        goto fail;
    }
    if (gmail_init(w, errstr, errstr_size))
        goto fail;
    return w;
fail:
    lt_watcher_destroy(w);
    return NULL;
}

void lt_watcher_destroy(lt_watcher_t *w)
{
    if (!w)
        return;
    lt_gmail_push_server_stop(w->gsrv); /* no more pushes */
    if (w->gthread) {
        pthread_mutex_lock(&w->gmu);
        w->gstop = 1;
        w->gcancel = 1;
        pthread_cond_signal(&w->gcv);
        pthread_mutex_unlock(&w->gmu);
        pthread_join(w->renew_th, NULL);
    }
    if (w->group)
        lt_kafka_destroy(w->group); /* leaves the group: the others take over at once */
    for (size_t b = 0; w->buckets && b < w->nbuckets; b++) {
        account_t *a = w->buckets[b], *next;
        for (; a; a = next) {
            next = a->next;
            account_free(w, a, 0); /* a watch outlives a restart */
        }
    }
    free(w->buckets);
    if (w->producer) {
        rd_kafka_flush(w->producer, 5000);
        rd_kafka_purge(w->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(w->producer, 0);
        lt_kafka_destroy(w->producer);
    }
    lt_db_destroy(w->db);
    SSL_CTX_free(w->ssl);
    free(w->assigned);
    free(w->pfds);
    free(w->pwatch);
    lt_gmail_watch_destroy(w->gw);
    lt_gmail_push_destroy(w->gp);
    free(w->q);
    for (int i = 0; i < 2; i++)
        if (w->wake[i] >= 0)
            close(w->wake[i]);
    pthread_cond_destroy(&w->gcv);
    pthread_mutex_destroy(&w->gmu);
    free(w);
}

void lt_watcher_stop(lt_watcher_t *w)
{
    w->stop = 1;
}

int lt_watcher_ready(lt_watcher_t *w, char *why, size_t why_size)
{
    int bits = atomic_load(&w->ready_bits);
    if (bits == 3)
        return 1;
    snprintf(why, why_size, "%s",
             !(bits & 1) ? "waiting for the group's assignment" : "accounts not read yet");
    return 0;
}

static void refresh_gauges(lt_watcher_t *w)
{
    size_t n[LT_WATCH_ST_COUNT] = {0};
    for (size_t b = 0; b < w->nbuckets; b++)
        for (account_t *a = w->buckets[b]; a; a = a->next)
            for (size_t i = 0; a->watches && i < a->nfolders; i++) {
                lt_watch_conn_t *c = a->watches[i].c;
                n[c ? lt_watch_conn_state(c) : LT_WATCH_ST_CLOSED]++;
            }
    for (int i = 0; i < LT_WATCH_ST_COUNT; i++)
        lt_series_set(w->m_states[i], (double)n[i]);
    if (!w->gw)
        return;
    size_t active = 0;
    int64_t ok = 0, failed = 0;
    for (size_t b = 0; b < w->nbuckets; b++)
        for (account_t *a = w->buckets[b]; a; a = a->next) {
            lt_gmail_watch_info_t info;
            if (!a->gwatched || lt_gmail_watch_info(w->gw, a->tenant, a->id, &info))
                continue;
            active += info.active != 0;
            ok += info.watch_calls;
            failed += info.failures;
        }
    lt_series_set(w->m_g_watches, (double)active);
    /* counters of the accounts watched now: they never go down */
    if ((double)ok > lt_series_value(w->m_g_calls_ok))
        lt_series_add(w->m_g_calls_ok, (double)ok - lt_series_value(w->m_g_calls_ok));
    if ((double)failed > lt_series_value(w->m_g_calls_failed))
        lt_series_add(w->m_g_calls_failed, (double)failed - lt_series_value(w->m_g_calls_failed));
    lt_gmail_push_stats_t ps;
    lt_gmail_push_stats(w->gp, &ps);
    lt_series_add(w->m_g_push_401, (double)ps.unauthorized - lt_series_value(w->m_g_push_401));
    lt_series_add(w->m_g_push_403, (double)ps.forbidden - lt_series_value(w->m_g_push_403));
    lt_series_add(w->m_g_push_400, (double)ps.malformed - lt_series_value(w->m_g_push_400));
}

/* One pass over every watch: timers, reconnects; fills the poll arrays. */
static int64_t timers(lt_watcher_t *w, int64_t now, size_t *nfds)
{
    char err[512];
    int64_t next = now + LOOP_MAX_WAIT_MS;
    *nfds = 0;
    if (w->pcap < w->nconns + 1) { /* + the push queue's pipe */
        w->pcap = w->nconns + 64;
        w->pfds = lt_xrealloc(w->pfds, w->pcap * sizeof(*w->pfds));
        w->pwatch = lt_xrealloc(w->pwatch, w->pcap * sizeof(*w->pwatch));
    }
    /* connections being opened: at most connect_concurrency at once (as
     * counted in the previous pass, plus the ones started in this one) */
    size_t opening = w->opening, opening_now = 0;
    w->due_any = 0;
    for (size_t b = 0; b < w->nbuckets; b++) {
        for (account_t *a = w->buckets[b]; a; a = a->next) {
            for (size_t i = 0; a->watches && i < a->nfolders; i++) {
                watch_t *x = &a->watches[i];
                if (!x->c && now >= x->retry_at_ms &&
                    opening < (size_t)w->set->watcher.connect_concurrency) {
                    connect_watch(w, x, now);
                    opening += x->c != NULL;
                }
                if (x->c) {
                    uint64_t idles = lt_watch_conn_idles(x->c);
                    lt_err_t e = lt_watch_conn_tick(x->c, now, err, sizeof(err));
                    if (e) {
                        drop_conn(w, x, e, err, now);
                    } else {
                        (void)idles;
                        int64_t t = lt_watch_conn_next_ms(x->c);
                        if (t < next)
                            next = t;
                    }
                }
                if (!x->c) { /* due but held by the cap: look again soon, no busy loop */
                    int64_t t = x->retry_at_ms > now ? x->retry_at_ms : now + 50;
                    if (t < next)
                        next = t;
                }
                if (x->c && lt_watch_conn_state(x->c) <= LT_WATCH_ST_SELECTING)
                    opening_now++;
                if (x->c && lt_watch_conn_fd(x->c) >= 0 && *nfds < w->pcap) {
                    w->pfds[*nfds] = (struct pollfd){.fd = lt_watch_conn_fd(x->c),
                                                     .events = lt_watch_conn_events(x->c)};
                    w->pwatch[*nfds] = x;
                    (*nfds)++;
                }
            }
            if (WATCHED(a) && a->gate.pending) {
                /* a due account held back by a command in flight is looked
                 * at again with the next in-flight check, not in a spin */
                int64_t t =
                    a->gate.due_ms > w->next_inflight_ms ? a->gate.due_ms : w->next_inflight_ms;
                if (t < next)
                    next = t;
                if (a->gate.due_ms <= now)
                    w->due_any = 1;
            }
        }
    }
    w->opening = opening_now;
    return next;
}

lt_err_t lt_watcher_run(lt_watcher_t *w, char *errstr, size_t errstr_size)
{
    char err[512];
    (void)errstr;
    (void)errstr_size;
    lt_info(NULL,
            "watching IMAP accounts: group %s on %s (%d partitions), debounce %d ms, "
            "IDLE re-issued every %d s",
            w->set->watcher.group_id, w->topic, w->npartitions, w->set->watcher.debounce_ms,
            w->set->watcher.idle_reissue_s);
    while (!w->stop) {
        int64_t now = lt_now_ms();
        poll_group(w);
        rd_kafka_poll(w->producer, 0);
        if (now >= w->next_reload_ms)
            reload(w, now);
        if (w->reassess)
            reassess(w, now);
        size_t nfds = 0;
        int64_t next = timers(w, now, &nfds);
        if (w->wake[0] >= 0) {
            w->pfds[nfds] = (struct pollfd){.fd = w->wake[0], .events = POLLIN};
            w->pwatch[nfds++] = NULL;
        }
        int wait = (int)(next - now);
        if (wait < 0)
            wait = 0;
        if (wait > LOOP_MAX_WAIT_MS)
            wait = LOOP_MAX_WAIT_MS;
        int r = poll(w->pfds, nfds, wait);
        now = lt_now_ms();
        for (size_t i = 0; r > 0 && i < nfds; i++) {
            if (!w->pfds[i].revents)
                continue;
            watch_t *x = w->pwatch[i];
            if (!x) {
                drain_pushes(w, now);
                continue;
            }
            if (!x->c)
                continue;
            uint64_t before = lt_watch_conn_idles(x->c);
            lt_err_t e = lt_watch_conn_handle(x->c, w->pfds[i].revents, now, err, sizeof(err));
            if (e)
                drop_conn(w, x, e, err, now);
            else if (before && lt_watch_conn_idles(x->c) > before)
                lt_series_inc(w->m_reissues);
        }
        emit_due(w, now);
        if (now >= w->next_gauges_ms) {
            w->next_gauges_ms = now + GAUGES_EVERY_MS;
            refresh_gauges(w);
        }
    }
    lt_info(NULL, "stopping: %zu account(s) released", w->nwatched);
    return LT_OK;
}
