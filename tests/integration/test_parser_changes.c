/* lattice-mail-parser and mail.change.v1 against the real stack (Kafka,
 * registry, S3, Postgres), with topics, subjects, group and tenant of this
 * run, and a throwaway database or schema migrated for it. The test produces the events itself, transactionally, as the worker
 * does: the .eml objects in S3, mail.raw.v1 and mail.change.v1 records
 * encoded with the schemas registered for this run's topics.
 *
 *  1. Changes before their messages (the topics are read independently): a
 *     deletion, a flag set, a label set, a stale flag set, a reset, and one
 *     undecodable record. The parser keeps the three newest as pending, the
 *     garbage goes to the DLQ with its reason, nothing is written to rows.
 *  2. The raw events (older than the changes), then newer and stale changes:
 *     the pending changes are applied with the rows (the deleted message
 *     leaves emails_live and the live search; flags and labels are the full
 *     sets), the stale change is ignored, nothing stays pending; metrics
 *     count changes by kind and result.
 *  3. A replay of both topics, twice (new groups): the same state.
 *
 * Usage: test_parser_changes [PARSER_BINARY] (default: the build's). */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "lt_buf.h"
#include "lt_change_event.h"
#include "lt_clock.h"
#include "lt_config.h"
#include "lt_db.h"
#include "lt_event.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_migrate.h"
#include "lt_objkey.h"
#include "lt_registry.h"
#include "lt_s3.h"
#include "lt_test.h"
#include "lt_test_db.h"

#define WAIT_MS 180000 /* a hang guard, not a speed bound */
#define T0 1764063000000LL

static char g_err[1024];
#define E g_err, sizeof(g_err)

static char g_run[64], g_tenant[80], g_raw[128], g_chg[128], g_dlq[128];
static const lt_settings_t *g_set;
static lt_db_t *g_db;
static lt_registry_t *g_reg;
static int32_t g_raw_id, g_chg_id;
static lt_s3_t *g_s3;
static rd_kafka_t *g_tx;
static int g_port;
static char g_dsn[1024]; /* the parser's: the scratch database or schema */

/* ---- Postgres ---------------------------------------------------------- */

static void sql_value(const char *q, char *out, size_t n)
{
    PGresult *r = NULL;
    const char *params[] = {g_tenant};
    if (lt_db_exec(g_db, &(lt_db_query_t){.what = "test", .sql = q, .nparams = 1, .params = params},
                   &r, E)) {
        snprintf(out, n, "<error: %s>", g_err);
        return;
    }
    if (PQntuples(r) < 1 || PQgetisnull(r, 0, 0))
        snprintf(out, n, "<null>");
    else
        snprintf(out, n, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* Wait until query ($1 = the tenant) gives want. */
static int wait_value(const char *q, const char *want, char *got, size_t n)
{
    int64_t deadline = lt_now_ms() + WAIT_MS;
    do {
        sql_value(q, got, n);
        if (!strcmp(got, want))
            return 1;
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    } while (lt_now_ms() < deadline);
    return 0;
}

/* Wait for it; on a timeout the check fails and the run stops (goto out). */
#define CHECK_WAIT(q, want)                                                                        \
    do {                                                                                           \
        char got_[4096];                                                                           \
        int ok_ = wait_value(q, want, got_, sizeof(got_));                                         \
        CHECK_MSG(ok_, "%s: got %s, want %s", q, got_, want);                                      \
        if (!ok_)                                                                                  \
            goto out;                                                                              \
    } while (0)

/* Every row of the tenant: id, deleted or live, flags, labels. */
#define STATE                                                                                      \
    "SELECT string_agg(account_id || '/' || provider_message_id || ' ' || CASE WHEN deleted_at "   \
    "IS NULL THEN 'live' ELSE 'deleted' END || ' ' || coalesce(array_to_string(flags, ','), "    \
    "'-') || ' ' || coalesce(array_to_string(labels, ','), '-'), '; ' ORDER BY account_id, provider_message_id) FROM emails "     \
    "WHERE tenant_id = $1"
#define PENDING "SELECT count(*) FROM emails_changes_pending WHERE tenant_id = $1"
#define SEARCH                                                                                     \
    "SELECT coalesce(string_agg(provider_message_id, ',' ORDER BY provider_message_id), '') FROM " \
    "emails_live WHERE tenant_id = $1 AND fts @@ plainto_tsquery('simple', 'quokka')"

/* ---- events ------------------------------------------------------------ */

static int produce(const char *topic, const char *key, const void *v, size_t n)
{
    rd_kafka_resp_err_t e =
        rd_kafka_producev(g_tx, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                          RD_KAFKA_V_VALUE((void *)v, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_END);
    CHECK_MSG(!e, "produce %s: %s", topic, rd_kafka_err2str(e));
    return !e;
}

static int txn(int begin)
{
    rd_kafka_error_t *e =
        begin ? rd_kafka_begin_transaction(g_tx) : rd_kafka_commit_transaction(g_tx, 60000);
    CHECK_MSG(!e, "%s: %s", begin ? "begin" : "commit", e ? rd_kafka_error_string(e) : "");
    if (e)
        rd_kafka_error_destroy(e);
    return !e;
}

/* A message: its .eml in S3 and its mail.raw.v1 event. */
static void raw_event(lt_mail_codec_t *codec, const char *account, lt_provider_t provider,
                      const char *pmid, const char *subject, int64_t t)
{
    char eml[512], key[LT_OBJKEY_MAX + 1], uri[LT_OBJKEY_URI_MAX + 1], sha[LT_S3_SHA256_HEX];
    snprintf(eml, sizeof(eml),
             "From: Zoe <zoe@example.test>\r\nTo: alice@example.test\r\nSubject: %s\r\n"
             "Message-ID: <%s.%s@example.test>\r\n\r\nThe quokka report for %s.\r\n",
             subject, pmid, g_run, pmid);
    const char *pname = lt_provider_name(provider);
    lt_objkey_msg_t m = {g_tenant, account, pname, pmid};
    CHECK(lt_objkey_message(&m, key, sizeof(key), E) == LT_OK);
    CHECK(lt_objkey_uri_format(g_set->s3.bucket, key, uri, sizeof(uri)) == LT_OK);
    CHECK_MSG(lt_s3_put(g_s3, &(lt_s3_object_t){.key = key, .content_type = "message/rfc822"}, eml,
                        strlen(eml), sha, E) == LT_OK,
              "%s", g_err);
    lt_mail_event_t *ev = lt_mail_event_new();
    lt_mail_event_set_event_time(ev, t);
    lt_mail_event_set_tenant_id(ev, g_tenant);
    lt_mail_event_set_provider(ev, provider);
    lt_mail_event_set_account_id(ev, account);
    lt_mail_event_set_mailbox(ev, "INBOX");
    lt_mail_event_set_provider_message_id(ev, pmid);
    lt_mail_event_set_received_at(ev, T0);
    lt_mail_event_set_raw_object_uri(ev, uri);
    lt_mail_event_set_raw_size_bytes(ev, (int64_t)strlen(eml));
    lt_mail_event_set_raw_sha256(ev, sha);
    CHECK(lt_mail_event_derive_id(ev, E) == LT_OK);
    lt_buf_t *b = lt_buf_new(LT_MAIL_EVENT_MAX_WIRE);
    CHECK_MSG(lt_mail_event_encode(codec, ev, g_raw_id, b, E) == LT_OK, "%s", g_err);
    produce(g_raw, account, lt_buf_data(b), lt_buf_len(b));
    lt_buf_destroy(b);
    lt_mail_event_destroy(ev);
}

/* A mail.change.v1 event; values: NULL-terminated (flags or labels). */
static void change_event(lt_change_codec_t *codec, const char *account, lt_provider_t provider,
                         lt_change_kind_t kind, const char *pmid, int64_t t,
                         const char *const *values)
{
    lt_change_event_t *ev = lt_change_event_new();
    lt_change_event_set_event_time(ev, t);
    lt_change_event_set_tenant_id(ev, g_tenant);
    lt_change_event_set_provider(ev, provider);
    lt_change_event_set_account_id(ev, account);
    lt_change_event_set_mailbox(ev, "INBOX");
    lt_change_event_set_kind(ev, kind);
    lt_change_event_set_provider_message_id(ev, pmid);
    if (kind == LT_CHANGE_RESET)
        lt_change_event_set_reset_reason(ev, LT_CHANGE_RESET_UIDVALIDITY);
    for (size_t i = 0; values && values[i]; i++) {
        if (kind == LT_CHANGE_FLAGS)
            lt_change_event_add_flag(ev, values[i]);
        else
            lt_change_event_add_label(ev, values[i]);
    }
    CHECK(lt_change_event_derive_id(ev, E) == LT_OK);
    lt_buf_t *b = lt_buf_new(LT_CHANGE_EVENT_MAX_WIRE);
    CHECK_MSG(lt_change_event_encode(codec, ev, g_chg_id, b, E) == LT_OK, "%s", g_err);
    produce(g_chg, account, lt_buf_data(b), lt_buf_len(b));
    lt_buf_destroy(b);
    lt_change_event_destroy(ev);
}

/* ---- the parser -------------------------------------------------------- */

static pid_t start_parser(const char *bin, const char *group, const char *log)
{
    fflush(NULL); /* the child must not write this process's buffered output again */
    pid_t pid = fork();
    if (pid == 0) {
        char port[16];
        snprintf(port, sizeof(port), "%d", g_port);
        setenv("LATTICE_PG_DSN", g_dsn, 1);
        setenv("LATTICE_TOPIC_RAW", g_raw, 1);
        setenv("LATTICE_TOPIC_CHANGES", g_chg, 1);
        setenv("LATTICE_PARSER_DLQ_TOPIC", g_dlq, 1);
        setenv("LATTICE_PARSER_GROUP_ID", group, 1);
        setenv("LATTICE_PARSER_BATCH_WAIT_MS", "50", 1);
        setenv("LATTICE_PARSER_CONCURRENCY", "2", 1);
        setenv("LATTICE_METRICS_PORT", port, 1);
        setenv("LATTICE_LOG_FORMAT", "text", 1);
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
            _exit(126);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop_parser(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "parser exit status %d", st);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = 0;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
        !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    lt_buf_append(ud, p, size * n);
    return size * n;
}

/* The value of one metric line (name with its labels), -1 if absent. */
static double metric(const char *series)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", g_port);
    lt_buf_t *b = lt_buf_new((size_t)4 << 20);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    double v = -1;
    if (curl_easy_perform(c) == CURLE_OK) {
        const char *s = lt_buf_str(b);
        size_t n = strlen(series);
        for (const char *l = s; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
            if (!strncmp(l, series, n) && l[n] == ' ')
                v = strtod(l + n + 1, NULL);
    }
    curl_easy_cleanup(c);
    lt_buf_destroy(b);
    return v;
}

static int dlq_count(const char *reason_part)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "kcat -C -b %s -t %s -o beginning -e -q -f '%%h\\n' 2>/dev/null | grep -c '%s'",
             g_set->kafka.bootstrap_servers, g_dlq, reason_part);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        pclose(f);
    }
    return n;
}

static int wait_dlq(const char *reason_part, int want)
{
    int64_t deadline = lt_now_ms() + WAIT_MS;
    while (dlq_count(reason_part) != want && lt_now_ms() < deadline)
        sleep(1);
    return dlq_count(reason_part) == want;
}

/* ---- the test ---------------------------------------------------------- */

static const char *const k_final = "gm/g1 live - INBOX,Label_9; im/m1 deleted - -; "
                                   "im/m2 live \\Flagged,\\Seen -; im/m3 live \\Seen -";

static void run(const char *bin, lt_mail_codec_t *rc, lt_change_codec_t *cc, const char *log)
{
    char group[160];
    const char *fl[] = {"\\Seen", "\\Flagged", NULL};
    const char *fl_old[] = {"\\Draft", NULL};
    const char *lb[] = {"Label_9", "INBOX", NULL};
    const char *fl3[] = {"\\Seen", NULL};

    /* 1. changes before their messages */
    if (!txn(1))
        return;
    change_event(cc, "im", LT_PROVIDER_IMAP, LT_CHANGE_DELETED, "m1", T0 + 2000, NULL);
    change_event(cc, "im", LT_PROVIDER_IMAP, LT_CHANGE_FLAGS, "m2", T0 + 2000, fl);
    change_event(cc, "im", LT_PROVIDER_IMAP, LT_CHANGE_FLAGS, "m2", T0 + 1000, fl_old);
    change_event(cc, "gm", LT_PROVIDER_GMAIL, LT_CHANGE_LABELS, "g1", T0 + 2000, lb);
    change_event(cc, "im", LT_PROVIDER_IMAP, LT_CHANGE_RESET, NULL, T0 + 100, NULL);
    produce(g_chg, "im", "\1\0\0\0\1garbage", 12); /* bad magic byte */
    if (!txn(0))
        return;
    snprintf(group, sizeof(group), "%s.group.1", g_raw);
    pid_t pid = start_parser(bin, group, log);
    CHECK_WAIT(PENDING, "3");
    CHECK_MSG(wait_dlq("undecodable mail.change.v1 record", 1), "the garbage is not in the DLQ");
    CHECK_WAIT("SELECT count(*) FROM emails WHERE tenant_id = $1", "0");

    /* 2. the raw events (older than the changes), newer and stale changes */
    if (!txn(1))
        goto out;
    raw_event(rc, "im", LT_PROVIDER_IMAP, "m1", "m1 quokka", T0);
    raw_event(rc, "im", LT_PROVIDER_IMAP, "m2", "m2 quokka", T0);
    raw_event(rc, "im", LT_PROVIDER_IMAP, "m3", "m3 quokka", T0);
    raw_event(rc, "gm", LT_PROVIDER_GMAIL, "g1", "g1 quokka", T0);
    if (!txn(0))
        goto out;
    CHECK_WAIT("SELECT count(*) FROM emails WHERE tenant_id = $1", "4");
    if (!txn(1))
        goto out;
    change_event(cc, "im", LT_PROVIDER_IMAP, LT_CHANGE_FLAGS, "m3", T0 + 3000, fl3);
    change_event(cc, "im", LT_PROVIDER_IMAP, LT_CHANGE_FLAGS, "m3", T0 + 2500, fl_old);
    change_event(cc, "im", LT_PROVIDER_IMAP, LT_CHANGE_DELETED, "m2", T0 - 500, NULL);
    if (!txn(0))
        goto out;
    CHECK_WAIT(STATE, k_final);
    CHECK_WAIT(PENDING, "0");
    CHECK_WAIT(SEARCH, "g1,m2,m3"); /* m1 is out of the live search */
    CHECK(metric("lattice_parser_changes_total{kind=\"deleted\",result=\"pending\"}") == 1);
    CHECK(metric("lattice_parser_changes_total{kind=\"flags\",result=\"pending\"}") == 1);
    CHECK(metric("lattice_parser_changes_total{kind=\"flags\",result=\"unknown\"}") == 1);
    CHECK(metric("lattice_parser_changes_total{kind=\"labels\",result=\"pending\"}") == 1);
    CHECK(metric("lattice_parser_changes_total{kind=\"reset\",result=\"same\"}") == 1);
    CHECK(metric("lattice_parser_changes_total{kind=\"flags\",result=\"applied\"}") == 1);
    CHECK(metric("lattice_parser_changes_total{kind=\"flags\",result=\"stale\"}") == 1);
    CHECK(metric("lattice_parser_changes_total{kind=\"deleted\",result=\"stale\"}") == 1);
    CHECK(metric("lattice_parser_pending_changes_applied_total{kind=\"deleted\",result="
                 "\"applied\"}") == 1);
    CHECK(metric("lattice_parser_pending_changes_applied_total{kind=\"labels\",result="
                 "\"applied\"}") == 1);
    CHECK(metric("lattice_parser_dead_letters_total{reason=\"undecodable\"}") == 1);
    stop_parser(pid);
    pid = 0;

    /* 3. replay both topics from the start, twice: the same state */
    for (int round = 2; round <= 3; round++) {
        snprintf(group, sizeof(group), "%s.group.%d", g_raw, round);
        pid = start_parser(bin, group, log);
        CHECK_MSG(wait_dlq("undecodable mail.change.v1 record", round), "replay %d: DLQ", round);
        CHECK_WAIT(PENDING, "0");
        CHECK_WAIT(STATE, k_final);
        CHECK_WAIT(SEARCH, "g1,m2,m3");
        stop_parser(pid);
        pid = 0;
    }
out:
    stop_parser(pid);
}

int main(int argc, char **argv)
{
    lt_test_env("LATTICE_KAFKA_BOOTSTRAP_SERVERS");
    lt_log_setup("test_parser_changes", "warn", "text", E);
    const char *bin = argc > 1 ? argv[1] : LT_BINARY_DIR "/parser/lattice-mail-parser";
    snprintf(g_run, sizeof(g_run), "%ld%d", (long)time(NULL), (int)getpid());
    snprintf(g_tenant, sizeof(g_tenant), "tpc%s", g_run);
    snprintf(g_raw, sizeof(g_raw), "test.parser-changes.raw.%s", g_run);
    snprintf(g_chg, sizeof(g_chg), "test.parser-changes.change.%s", g_run);
    snprintf(g_dlq, sizeof(g_dlq), "test.parser-changes.dlq.%s", g_run);
    g_port = free_port();
    char log[256], cmd[512], subject[200];
    snprintf(log, sizeof(log), "/tmp/test_parser_changes.%s.log", g_run);

    lt_config_t *cfg = lt_config_load(LT_PROG_PARSER, E);
    CHECK_MSG(cfg != NULL, "%s", g_err);
    if (!cfg)
        return lt_test_done("test_parser_changes");
    g_set = lt_config_settings(cfg);
    lt_mail_codec_t *rc = lt_mail_codec_new(E);
    lt_change_codec_t *cc = lt_change_codec_new(E);
    const char *topics[][2] = {{g_raw, "2"}, {g_chg, "2"}, {g_dlq, "1"}};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof(cmd), "'%s/deploy/local/stack' topic '%s' %s >/dev/null",
                 LT_SOURCE_DIR, topics[i][0], topics[i][1]);
        CHECK_MSG(system(cmd) == 0, "%s", cmd);
    }
    lt_scratch_t scratch;
    int have_scratch = lt_scratch_create(&scratch, "parserchg") == 0;
    CHECK(have_scratch);
    if (have_scratch) {
        const char *kw[2], *val[2];
        char opt[128];
        lt_scratch_kw(&scratch, kw, val, opt, sizeof(opt));
        snprintf(g_dsn, sizeof(g_dsn), "%s %s=%s", g_set->pg.dsn, kw[0], val[0]);
        g_db = lt_scratch_connect(&scratch);
        CHECK(g_db != NULL);
        int applied = 0;
        CHECK_MSG(g_db && lt_migrate_apply(g_db, LT_SOURCE_DIR "/migrations", NULL, NULL,
                                           &applied, E) == LT_OK,
                  "%s", g_err);
    }
    g_reg = lt_registry_new(g_set->registry.url, g_set->registry.username,
                            g_set->registry.password, g_set->tls_ca_file, E);
    CHECK_MSG(g_reg != NULL, "%s", g_err);
    g_s3 = lt_s3_new(&(lt_s3_config_t){.endpoint = g_set->s3.endpoint,
                                       .region = g_set->s3.region,
                                       .bucket = g_set->s3.bucket,
                                       .access_key_id = g_set->s3.access_key_id,
                                       .secret_access_key = g_set->s3.secret_access_key,
                                       .addressing = g_set->s3.path_style ? LT_S3_PATH_STYLE
                                                                          : LT_S3_VIRTUAL_HOSTED,
                                       .ca_file = g_set->s3.ca_file,
                                       .timeout_s = 60},
                     E);
    CHECK_MSG(g_s3 != NULL, "%s", g_err);
    if (!g_db || !g_reg || !g_s3 || !rc || !cc)
        goto done;
    snprintf(subject, sizeof(subject), "%s-value", g_raw);
    CHECK_MSG(lt_registry_register(g_reg, subject, lt_mail_event_schema_json(), &g_raw_id, E) ==
                  LT_OK,
              "%s", g_err);
    snprintf(subject, sizeof(subject), "%s-value", g_chg);
    CHECK_MSG(lt_registry_register(g_reg, subject, lt_change_event_schema_json(), &g_chg_id, E) ==
                  LT_OK,
              "%s", g_err);
    char txid[200];
    snprintf(txid, sizeof(txid), "%s.tx", g_raw);
    g_tx = lt_kafka_producer_new(cfg, txid, E);
    CHECK_MSG(g_tx != NULL, "%s", g_err);
    if (g_tx)
        run(bin, rc, cc, log);
    if (lt_test_failures) {
        snprintf(cmd, sizeof(cmd), "tail -n 40 '%s' >&2", log);
        if (system(cmd)) {
        }
    }
done:
    for (int i = 0; g_reg && i < 2; i++) {
        snprintf(subject, sizeof(subject), "%s-value", i ? g_chg : g_raw);
        lt_registry_delete_subject(g_reg, subject, 1, E);
    }
    unlink(log);
    lt_kafka_destroy(g_tx);
    lt_s3_destroy(g_s3);
    lt_registry_destroy(g_reg);
    lt_db_destroy(g_db);
    if (have_scratch)
        lt_scratch_drop(&scratch);
    lt_change_codec_destroy(cc);
    lt_mail_codec_destroy(rc);
    lt_config_destroy(cfg);
    return lt_test_done("test_parser_changes");
}
