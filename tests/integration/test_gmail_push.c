/* Gmail push (watcher/lt_gmail_watch, watcher/lt_gmail_push) against a
 * Gmail emulator of this source tree (started here on a free port, with
 * the stack's certificate and a push-token signing key made for the run)
 * and the stack's Postgres (a scratch database for mail_accounts):
 *
 *   - users.watch is called for a Gmail account (topic, INBOX label) and
 *     renewed when the (short) renewal interval is up;
 *   - a new message makes the emulator POST a Pub/Sub push with an OIDC
 *     token: the endpoint accepts it and yields (account, historyId);
 *   - pushes with a wrong audience, a key not in the key file, or no token
 *     are refused (403/401) and yield nothing;
 *   - releasing a disabled account calls users.stop. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/evp.h>

#include "lt_accounts.h"
#include "lt_clock.h"
#include "lt_gmail_push.h"
#include "lt_gmail_watch.h"
#include "lt_migrate.h"
#include "lt_secret.h"
#include "lt_test.h"
#include "lt_test_db.h"

#define E g_err, sizeof(g_err)
static char g_err[512];

static char g_tmp[256], g_base[256];
static const char *g_ca;
static pid_t g_emu = -1;

/* --- what the endpoint yielded --------------------------------------------- */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static lt_gmail_push_note_t g_notes[64];
static int g_nnotes;

static void on_note(void *opaque, const lt_gmail_push_note_t *n)
{
    pthread_mutex_lock(&g_mu);
    if (g_nnotes < 64)
        g_notes[g_nnotes] = *n;
    g_nnotes++;
    pthread_mutex_unlock(&g_mu);
}

static int notes(void)
{
    pthread_mutex_lock(&g_mu);
    int n = g_nnotes;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* --- the emulator ------------------------------------------------------------ */
typedef struct {
    char *p;
    size_t n;
} body_t;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    body_t *b = ud;
    b->p = realloc(b->p, b->n + sz * nm + 1);
    memcpy(b->p + b->n, p, sz * nm);
    b->n += sz * nm;
    b->p[b->n] = 0;
    return sz * nm;
}

/* A JSON call to the emulator; the answer's JSON (NULL if none), status in *st. */
static json_object *call(const char *method, const char *path, const char *json, long *st)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", g_base, path);
    CURL *h = curl_easy_init();
    body_t b = {0};
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, g_ca);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    if (json)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    if (st)
        *st = status;
    json_object *o = b.p ? json_tokener_parse(b.p) : NULL;
    free(b.p);
    return o;
}

static json_object *ctl(const char *method, const char *path, const char *json)
{
    char p[512];
    snprintf(p, sizeof(p), "/_emulator%s", path);
    long st = 0;
    json_object *o = call(method, p, json, &st);
    CHECK_MSG(st == 200, "%s %s -> %ld", method, path, st);
    return o;
}

static int start_emulator(const char *stack, const char *key)
{
    char cert[512], skey[512], state[300], log[300], ready[400];
    snprintf(cert, sizeof(cert), "%s/gmail/server.pem", stack);
    snprintf(skey, sizeof(skey), "%s/gmail/server.key", stack);
    snprintf(state, sizeof(state), "%s/state", g_tmp);
    snprintf(log, sizeof(log), "%s/emulator.log", g_tmp);
    snprintf(ready, sizeof(ready), "%s/gmail-emulator.ready", state);
    g_emu = fork();
    if (g_emu == 0) {
        FILE *f = freopen(log, "w", stdout);
        (void)f;
        dup2(1, 2);
        execl(LT_SOURCE_DIR "/tests/gmail-emulator/run", "run", "--port", "0", "--cert", cert,
              "--key", skey, "--state-dir", state, "--push-key", key, "--quota-units-per-s", "0",
              (char *)NULL);
        _exit(127);
    }
    int64_t deadline = lt_now_ms() + 60000; /* a hang guard: python starts slowly when loaded */
    while (lt_now_ms() < deadline) {
        FILE *f = fopen(ready, "r");
        if (f) {
            int ok = fgets(g_base, sizeof(g_base), f) != NULL;
            fclose(f);
            g_base[strcspn(g_base, "\r\n")] = 0;
            if (ok && g_base[0])
                return 0;
        }
        if (waitpid(g_emu, NULL, WNOHANG) == g_emu) {
            g_emu = -1;
            break;
        }
        usleep(50 * 1000);
    }
    fprintf(stderr, "the emulator did not start (log: %s)\n", log);
    return -1;
}

/* The deliveries of one subscription as seen by the emulator. */
static int delivery_statuses(const char *sub, int *out, int max)
{
    char path[512];
    char *esc = curl_easy_escape(NULL, sub, 0);
    snprintf(path, sizeof(path), "/pubsub/deliveries?subscription=%s", esc);
    curl_free(esc);
    json_object *o = ctl("GET", path, NULL), *d;
    int n = 0;
    if (o && json_object_object_get_ex(o, "deliveries", &d))
        for (size_t i = 0; i < json_object_array_length(d) && n < max; i++) {
            json_object *st;
            if (json_object_object_get_ex(json_object_array_get_idx(d, i), "status", &st))
                out[n++] = json_object_get_int(st);
        }
    json_object_put(o);
    return n;
}

static int64_t by_method(const char *name)
{
    json_object *o = ctl("GET", "/counters", NULL), *m, *v;
    int64_t n = 0;
    if (o && json_object_object_get_ex(o, "by_method", &m) && json_object_object_get_ex(m, name, &v))
        n = json_object_get_int64(v);
    json_object_put(o);
    return n;
}

static int watched(const char *email)
{
    json_object *o = ctl("GET", "/pubsub/watches", NULL), *w;
    int yes = o && json_object_object_get_ex(o, "watches", &w) &&
              json_object_object_get_ex(w, email, NULL);
    json_object_put(o);
    return yes;
}

static uint64_t add_message(const char *email, const char *label, const char *subject)
{
    char raw[512], body[1024], path[300];
    snprintf(raw, sizeof(raw),
             "From: a@example.net\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@push.test>\r\n\r\n"
             "hello\r\n",
             email, subject, subject);
    char *b64 = lt_xmalloc(1024);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)raw, (int)strlen(raw));
    snprintf(body, sizeof(body), "{\"raw\":\"%s\",\"labelIds\":[\"%s\"]}", b64, label);
    free(b64);
    snprintf(path, sizeof(path), "/users/%s/messages", email);
    json_object *o = ctl("POST", path, body), *h;
    uint64_t hid = 0;
    if (o && json_object_object_get_ex(o, "historyId", &h))
        hid = strtoull(json_object_get_string(h), NULL, 10);
    json_object_put(o);
    return hid;
}

static int subscribe(const char *name, const char *topic, int port, const char *audience,
                     const char *key)
{
    char body[2048];
    if (audience)
        snprintf(body, sizeof(body),
                 "{\"name\":\"%s\",\"topic\":\"%s\",\"push_endpoint\":"
                 "\"http://127.0.0.1:%d/gmail/push\",\"key_file\":\"%s\",\"oidc_token\":"
                 "{\"service_account_email\":\"push@lattice-test.iam.gserviceaccount.com\","
                 "\"audience\":\"%s\"}}",
                 name, topic, port, key, audience);
    else
        snprintf(body, sizeof(body),
                 "{\"name\":\"%s\",\"topic\":\"%s\",\"push_endpoint\":"
                 "\"http://127.0.0.1:%d/gmail/push\"}",
                 name, topic, port);
    json_object *o = ctl("POST", "/pubsub/subscriptions", body);
    json_object_put(o);
    return o ? 0 : -1;
}

static void run(lt_db_t *db)
{
    long pid = (long)getpid(), t = (long)time(NULL);
    char email[128], tenant[64], topic[128], audience[128], key[300], key2[300], jwks[300],
        cmd[1200];
    snprintf(email, sizeof(email), "push-%ld-%ld@example.test", t, pid);
    snprintf(tenant, sizeof(tenant), "push%ld%ld", t, pid);
    snprintf(topic, sizeof(topic), "projects/lattice-test/topics/gmail-%ld-%ld", t, pid);
    snprintf(audience, sizeof(audience), "lattice-watcher-%ld", pid);
    snprintf(key, sizeof(key), "%s/push-key.pem", g_tmp);
    snprintf(key2, sizeof(key2), "%s/other-key.pem", g_tmp);
    snprintf(jwks, sizeof(jwks), "%s/jwks.json", g_tmp);
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd),
                 "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null",
                 i ? key2 : key);
        CHECK_MSG(system(cmd) == 0, "%s", cmd);
    }
    if (start_emulator(lt_test_env("LATTICE_STACK_DIR"), key)) {
        CHECK(0);
        return;
    }

    /* the mailbox and its account */
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"refresh_token\":\"rt-%ld\",\"client_id\":\"cid-%ld\","
             "\"client_secret\":\"cs-%ld\"}",
             email, pid, pid, pid);
    json_object_put(ctl("POST", "/users", body));
    char var_rt[200], var_cs[200];
    lt_secret_env_name(tenant, "GMAIL_RT", var_rt, sizeof(var_rt));
    lt_secret_env_name(tenant, "GMAIL_CS", var_cs, sizeof(var_cs));
    char val[64];
    snprintf(val, sizeof(val), "rt-%ld", pid);
    setenv(var_rt, val, 1);
    snprintf(val, sizeof(val), "cs-%ld", pid);
    setenv(var_cs, val, 1);
    char config[1024];
    snprintf(config, sizeof(config),
             "{\"user\":\"%s\",\"client_id\":\"cid-%ld\",\"client_secret_env\":\"%s\","
             "\"refresh_token_env\":\"%s\"}",
             email, pid, var_cs, var_rt);
    lt_account_row_t row = {.tenant = tenant,
                            .account_id = "gmail-push",
                            .provider = "gmail",
                            .enabled = 1,
                            .config_json = config};
    CHECK_MSG(lt_account_upsert(db, &row, E) == LT_OK, "%s", g_err);
    lt_account_t *acc = NULL;
    CHECK_MSG(lt_account_load(db, tenant, "gmail-push", &acc, E) == LT_OK, "%s", g_err);
    if (!acc)
        return;

    /* the endpoint: keys from the emulator's JWKS (loaded once the
     * subscription names the key) */
    char sub_ok[200];
    snprintf(sub_ok, sizeof(sub_ok), "projects/lattice-test/subscriptions/ok-%ld-%ld", t, pid);
    lt_gmail_push_server_t *srv = NULL;
    lt_gmail_push_t *push = NULL;
    /* the port is known only once the server runs: subscribe after */
    {
        json_object_put(ctl("POST", "/pubsub/subscriptions",
                            "{\"name\":\"projects/lattice-test/subscriptions/keyload\","
                            "\"topic\":\"projects/lattice-test/topics/none\",\"push_endpoint\":"
                            "\"http://127.0.0.1:9/x\",\"oidc_token\":{\"service_account_email\":"
                            "\"x@y\"}}"));
        long st = 0;
        CURL *h = curl_easy_init();
        char url[400];
        snprintf(url, sizeof(url), "%s/oauth2/v3/certs", g_base);
        FILE *f = fopen(jwks, "w");
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_CAINFO, g_ca);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
        CHECK(curl_easy_perform(h) == CURLE_OK);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
        curl_easy_cleanup(h);
        fclose(f);
        CHECK_INT(st, 200);
    }
    lt_gmail_push_opts_t po = {.keys_file = jwks,
                               .audience = audience,
                               .service_account = "push@lattice-test.iam.gserviceaccount.com",
                               .clock_skew_s = 60};
    push = lt_gmail_push_new(&po, E);
    CHECK_MSG(push != NULL, "%s", g_err);
    if (!push)
        goto out;
    lt_gmail_push_server_opts_t so = {.bind = "127.0.0.1", .port = 0, .fn = on_note};
    srv = lt_gmail_push_server_start(push, &so, E);
    CHECK_MSG(srv != NULL, "%s", g_err);
    if (!srv)
        goto out;
    int port = lt_gmail_push_server_port(srv);
    CHECK(subscribe(sub_ok, topic, port, audience, key) == 0);

    /* users.watch, then its renewal with a 1 s interval */
    lt_gmail_watch_opts_t wo = {.topic = topic,
                                .renew_s = 1,
                                .client = {.api_url = g_base,
                                           .token_url = NULL,
                                           .ca_file = g_ca,
                                           .timeout_s = 30,
                                           .max_retries = 3,
                                           .retry_base_ms = 100,
                                           .retry_max_ms = 1000}};
    char token_url[300];
    snprintf(token_url, sizeof(token_url), "%s/token", g_base);
    wo.client.token_url = token_url;
    lt_gmail_watch_t *w = lt_gmail_watch_new(&wo, E);
    CHECK_MSG(w != NULL, "%s", g_err);
    if (!w)
        goto out;
    CHECK_MSG(lt_gmail_watch_set(w, acc, E) == LT_OK, "%s", g_err);
    CHECK_INT(lt_gmail_watch_next_due_ms(w, 0), 0);
    int64_t t0 = lt_wall_ms();
    CHECK_INT(lt_gmail_watch_run_due(w, 0), 1);
    lt_gmail_watch_info_t info;
    CHECK(lt_gmail_watch_info(w, tenant, "gmail-push", &info) == LT_OK);
    CHECK_INT(info.watch_calls, 1);
    CHECK_MSG(info.last_error[0] == 0, "%s", info.last_error);
    CHECK(info.active);
    CHECK(info.expiration_ms >= t0 + 7LL * 86400 * 1000 - 60000);
    CHECK(info.next_ms > t0 && info.next_ms < info.expiration_ms);
    CHECK(watched(email));
    CHECK_INT(by_method("gmail.users.watch"), 1);
    /* setting the same account again keeps its schedule */
    CHECK(lt_gmail_watch_set(w, acc, E) == LT_OK);
    CHECK(lt_gmail_watch_next_due_ms(w, 0) > 0 || lt_wall_ms() >= info.next_ms);
    int64_t deadline = lt_now_ms() + 30000;
    while (lt_gmail_watch_next_due_ms(w, 0) > 0 && lt_now_ms() < deadline)
        usleep(50 * 1000);
    CHECK_INT(lt_gmail_watch_run_due(w, 0), 1);
    CHECK(lt_gmail_watch_info(w, tenant, "gmail-push", &info) == LT_OK);
    CHECK_INT(info.watch_calls, 2);
    CHECK_INT(by_method("gmail.users.watch"), 2);

    /* a new message: one accepted push naming the mailbox and its historyId */
    uint64_t hid = add_message(email, "INBOX", "first");
    CHECK(hid > 0);
    deadline = lt_now_ms() + 30000;
    while (notes() < 1 && lt_now_ms() < deadline)
        usleep(20 * 1000);
    CHECK_INT(notes(), 1);
    if (notes() >= 1) {
        CHECK_STR(g_notes[0].email, email);
        CHECK_INT(g_notes[0].history_id, hid);
        CHECK_STR(g_notes[0].subscription, sub_ok);
        char t_out[129], a_out[129];
        CHECK(lt_gmail_watch_lookup(w, g_notes[0].email, t_out, a_out) == LT_OK);
        CHECK_STR(t_out, tenant);
        CHECK_STR(a_out, "gmail-push");
    }
    int st[8];
    CHECK_INT(delivery_statuses(sub_ok, st, 8), 1);
    CHECK_INT(st[0], 204);

    /* refused pushes yield nothing: wrong audience, unknown key, no token */
    char del[300];
    snprintf(del, sizeof(del), "{\"name\":\"%s\"}", sub_ok);
    json_object_put(ctl("DELETE", "/pubsub/subscriptions", del));
    char sub_aud[200], sub_key[200], sub_none[200];
    snprintf(sub_aud, sizeof(sub_aud), "projects/lattice-test/subscriptions/aud-%ld-%ld", t, pid);
    snprintf(sub_key, sizeof(sub_key), "projects/lattice-test/subscriptions/key-%ld-%ld", t, pid);
    snprintf(sub_none, sizeof(sub_none), "projects/lattice-test/subscriptions/none-%ld-%ld", t,
             pid);
    CHECK(subscribe(sub_aud, topic, port, "someone-else", key) == 0);
    CHECK(subscribe(sub_key, topic, port, audience, key2) == 0);
    CHECK(subscribe(sub_none, topic, port, NULL, NULL) == 0);
    lt_gmail_push_stats_t before, after;
    lt_gmail_push_stats(push, &before);
    add_message(email, "INBOX", "second");
    deadline = lt_now_ms() + 30000;
    int na = 0, nk = 0, nn = 0;
    while (lt_now_ms() < deadline) {
        na = delivery_statuses(sub_aud, st, 8);
        nk = delivery_statuses(sub_key, st, 8);
        nn = delivery_statuses(sub_none, st, 8);
        if (na && nk && nn)
            break;
        usleep(50 * 1000);
    }
    CHECK(na >= 1 && nk >= 1 && nn >= 1);
    CHECK(delivery_statuses(sub_aud, st, 8) >= 1 && st[0] == 403);
    CHECK(delivery_statuses(sub_key, st, 8) >= 1 && st[0] == 401);
    CHECK(delivery_statuses(sub_none, st, 8) >= 1 && st[0] == 401);
    lt_gmail_push_stats(push, &after);
    CHECK_INT(after.accepted, before.accepted);
    CHECK(after.forbidden >= before.forbidden + 1);
    CHECK(after.unauthorized >= before.unauthorized + 2);
    CHECK_INT(notes(), 1);

    /* disabled: users.stop, forgotten */
    row.enabled = 0;
    CHECK(lt_account_upsert(db, &row, E) == LT_OK);
    CHECK_MSG(lt_gmail_watch_release(w, tenant, "gmail-push", 1, E) == LT_OK, "%s", g_err);
    CHECK_INT(by_method("gmail.users.stop"), 1);
    CHECK(!watched(email));
    char t_out[129], a_out[129];
    CHECK(lt_gmail_watch_lookup(w, email, t_out, a_out) == LT_ERR_NOT_FOUND);
    CHECK_INT(lt_gmail_watch_count(w), 0);
    CHECK(lt_gmail_watch_release(w, tenant, "gmail-push", 1, E) == LT_ERR_NOT_FOUND);
    lt_gmail_watch_destroy(w);
out:
    lt_gmail_push_server_stop(srv);
    lt_gmail_push_destroy(push);
    lt_account_destroy(acc);
    unsetenv(var_rt);
    unsetenv(var_cs);
}

int main(void)
{
    g_ca = lt_test_env("LATTICE_CA_FILE");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/lt_gmail_push_%ld_%ld", (long)time(NULL),
             (long)getpid());
    mkdir(g_tmp, 0700);
    lt_scratch_t s;
    if (lt_scratch_create(&s, "gmailpush") != 0)
        return lt_test_done("test_gmail_push (no scratch)") | 1;
    lt_db_t *db = lt_scratch_connect(&s);
    CHECK(db != NULL);
    if (db) {
        int applied = 0;
        lt_err_t e = lt_migrate_apply(db, LT_SOURCE_DIR "/migrations", NULL, NULL, &applied, E);
        CHECK_MSG(e == LT_OK, "%s", g_err);
        if (e == LT_OK)
            run(db);
        lt_db_destroy(db);
    }
    lt_scratch_drop(&s);
    if (g_emu > 0) {
        kill(g_emu, SIGTERM);
        int status = 0;
        waitpid(g_emu, &status, 0);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "emulator exit status %d",
                  status);
    }
    if (!lt_test_failures) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
        CHECK(system(cmd) == 0);
    } else {
        fprintf(stderr, "kept %s (emulator log)\n", g_tmp);
    }
    curl_global_cleanup();
    return lt_test_done("test_gmail_push");
}
