/* lattice-scheduler's pure parts (scheduler/lt_sched_plan.h): command line,
 * scopes, commands (accepted by the worker's parser), the in-flight set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_command.h"
#include "lt_sched_plan.h"
#include "lt_test.h"
#include "lt_trace.h"

/* ---- command line ---- */

typedef struct {
    const char *argv[8];
    lt_err_t err;
    const char *reason; /* substring of errstr */
    int once, interval, dry_run, help;
    const char *provider, *tenant;
} args_case_t;

static const args_case_t k_args[] = {
    {{NULL}, LT_OK, NULL, 0, 0, 0, 0, NULL, NULL},
    {{"--once", NULL}, LT_OK, NULL, 1, 0, 0, 0, NULL, NULL},
    {{"--interval", "60", NULL}, LT_OK, NULL, 0, 60, 0, 0, NULL, NULL},
    {{"--interval=5", "--dry-run", NULL}, LT_OK, NULL, 0, 5, 1, 0, NULL, NULL},
    {{"--once", "--provider", "gmail", "--tenant", "acme", NULL},
     LT_OK,
     NULL,
     1,
     0,
     0,
     0,
     "gmail",
     "acme"},
    {{"--provider=imap", "--tenant=t.1:x-y_z", NULL}, LT_OK, NULL, 0, 0, 0, 0, "imap", "t.1:x-y_z"},
    {{"-h", NULL}, LT_OK, NULL, 0, 0, 0, 1, NULL, NULL},
    {{"--once", "--interval", "5", NULL},
     LT_ERR_INVALID,
     "exclude each other",
     0,
     0,
     0,
     0,
     NULL,
     NULL},
    {{"--once", "--once", NULL}, LT_ERR_INVALID, "--once given twice", 0, 0, 0, 0, NULL, NULL},
    {{"--interval", NULL}, LT_ERR_INVALID, "--interval needs SECONDS", 0, 0, 0, 0, NULL, NULL},
    {{"--interval", "0", NULL}, LT_ERR_INVALID, "1..604800", 0, 0, 0, 0, NULL, NULL},
    {{"--interval", "604801", NULL}, LT_ERR_INVALID, "1..604800", 0, 0, 0, 0, NULL, NULL},
    {{"--interval", "5s", NULL}, LT_ERR_INVALID, "whole seconds", 0, 0, 0, 0, NULL, NULL},
    {{"--interval", "", NULL}, LT_ERR_INVALID, "whole seconds", 0, 0, 0, 0, NULL, NULL},
    {{"--interval=1", "--interval=2", NULL},
     LT_ERR_INVALID,
     "--interval given twice",
     0,
     0,
     0,
     0,
     NULL,
     NULL},
    {{"--provider", "pop3", NULL},
     LT_ERR_INVALID,
     "expected gmail or imap",
     0,
     0,
     0,
     0,
     NULL,
     NULL},
    {{"--provider", NULL}, LT_ERR_INVALID, "--provider needs", 0, 0, 0, 0, NULL, NULL},
    {{"--provider=gmail", "--provider=imap", NULL},
     LT_ERR_INVALID,
     "--provider given twice",
     0,
     0,
     0,
     0,
     NULL,
     NULL},
    {{"--tenant", "a b", NULL}, LT_ERR_INVALID, "not a tenant id", 0, 0, 0, 0, NULL, NULL},
    {{"--tenant=", NULL}, LT_ERR_INVALID, "not a tenant id", 0, 0, 0, 0, NULL, NULL},
    {{"--tenant", NULL}, LT_ERR_INVALID, "--tenant needs", 0, 0, 0, 0, NULL, NULL},
    {{"--tenants=x", NULL},
     LT_ERR_INVALID,
     "unknown argument \"--tenants=x\"",
     0,
     0,
     0,
     0,
     NULL,
     NULL},
    {{"--oncex", NULL}, LT_ERR_INVALID, "unknown argument", 0, 0, 0, 0, NULL, NULL},
    {{"once", NULL}, LT_ERR_INVALID, "unknown argument", 0, 0, 0, 0, NULL, NULL},
};

static void test_args(void)
{
    for (size_t i = 0; i < sizeof(k_args) / sizeof(k_args[0]); i++) {
        const args_case_t *c = &k_args[i];
        char *argv[10] = {(char *)"lattice-scheduler"};
        int argc = 1;
        for (int j = 0; c->argv[j]; j++)
            argv[argc++] = (char *)c->argv[j];
        lt_sched_args_t a;
        char err[256] = "";
        lt_err_t e = lt_sched_args_parse(argc, argv, &a, err, sizeof(err));
        CHECK_MSG(e == c->err, "case %zu: %d (%s)", i, (int)e, err);
        if (c->err) {
            CHECK_MSG(strstr(err, c->reason) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, err,
                      c->reason);
            continue;
        }
        CHECK_INT(a.once, c->once);
        CHECK_INT(a.interval_s, c->interval);
        CHECK_INT(a.dry_run, c->dry_run);
        CHECK_INT(a.help, c->help);
        CHECK_MSG((a.provider == NULL) == (c->provider == NULL), "case %zu provider", i);
        if (c->provider)
            CHECK_STR(a.provider, c->provider);
        CHECK_MSG((a.tenant == NULL) == (c->tenant == NULL), "case %zu tenant", i);
        if (c->tenant)
            CHECK_STR(a.tenant, c->tenant);
    }
}

/* ---- scopes ---- */

typedef struct {
    char got[512];
    int stop_after; /* 0 = never */
    int calls;
} scopes_t;

static int collect(const char *scope, void *opaque)
{
    scopes_t *s = opaque;
    size_t n = strlen(s->got);
    snprintf(s->got + n, sizeof(s->got) - n, "%s[%s]", n ? "," : "", scope ? scope : "ALL");
    s->calls++;
    return s->stop_after && s->calls >= s->stop_after;
}

static void check_scopes(const char *provider, const char *config, int per_scope, const char *want,
                         size_t want_calls)
{
    json_object *cfg = config ? json_tokener_parse(config) : NULL;
    CHECK_MSG(!config || cfg, "bad test config %s", config);
    scopes_t s = {{0}, 0, 0};
    size_t calls = lt_sched_scopes(provider, cfg, per_scope, collect, &s);
    CHECK_MSG(!strcmp(s.got, want), "%s %s per_scope=%d: got %s, want %s", provider,
              config ? config : "(null)", per_scope, s.got, want);
    CHECK_INT(calls, want_calls);
    json_object_put(cfg);
}

static void test_scopes(void)
{
    check_scopes("imap", "{\"folders\":[\"INBOX\",\"Sent Items\",\"INBOX/Sub\"]}", 1,
                 "[INBOX],[Sent Items],[INBOX/Sub]", 3);
    check_scopes("imap", "{\"folders\":[\"INBOX\",\"Sent Items\"]}", 0, "[ALL]", 1);
    check_scopes("imap", "{\"folders\":[\"A\",\"B\",\"A\"]}", 1, "[A],[B]", 2);
    /* INBOX in any case is one folder (RFC 3501 5.1), one command; other
     * names are case-sensitive */
    check_scopes("imap",
                 "{\"folders\":[\"inbox\",\"INBOX\",\"Inbox\",\"inbox/Sub\",\"INBOX/Sub\"]}", 1,
                 "[INBOX],[inbox/Sub],[INBOX/Sub]", 3);
    check_scopes("imap", "{\"folders\":[\"Archive\",\"archive\"]}", 1, "[Archive],[archive]", 2);
    check_scopes("gmail", "{\"scopes\":[\"inbox\",\"INBOX\"]}", 1, "[inbox],[INBOX]", 2);
    check_scopes("imap", "{}", 1, "[ALL]", 1);
    check_scopes("imap", NULL, 1, "[ALL]", 1);
    check_scopes("imap", "{\"folders\":[]}", 1, "[ALL]", 1);
    check_scopes("imap", "{\"folders\":\"INBOX\"}", 1, "[ALL]", 1);
    check_scopes("imap", "{\"folders\":[\"INBOX\",3]}", 1, "[ALL]", 1);
    check_scopes("imap", "{\"label_ids\":[\"INBOX\"]}", 1, "[ALL]", 1);
    check_scopes("gmail", "{\"label_ids\":[\"INBOX\",\"SENT\"]}", 1, "[label:INBOX],[label:SENT]",
                 2);
    check_scopes("gmail",
                 "{\"scopes\":[\"in:sent\",\"label:INBOX\"],\"label_ids\":[\"INBOX\",\"Label_7\"],"
                 "\"query\":\"from:boss\"}",
                 1, "[in:sent],[label:INBOX],[label:Label_7],[from:boss]", 4);
    check_scopes("gmail", "{\"query\":\"in:inbox -category:promotions\"}", 1,
                 "[in:inbox -category:promotions]", 1);
    check_scopes("gmail", "{\"label_ids\":[\"INBOX\"],\"query\":7}", 1, "[ALL]", 1);
    check_scopes("gmail", "{\"label_ids\":[\"\"]}", 1, "[ALL]", 1);
    check_scopes("gmail", "{\"user\":\"me\"}", 1, "[ALL]", 1);
    check_scopes("gmail", "{\"folders\":[\"INBOX\"]}", 1, "[ALL]", 1);
    check_scopes("pop3", "{\"folders\":[\"INBOX\"]}", 1, "[ALL]", 1);
    check_scopes("imap", "[\"INBOX\"]", 1, "[ALL]", 1);

    /* more than LT_SCHED_SCOPES_MAX: one command for all */
    json_object *many = json_object_new_object(), *arr = json_object_new_array();
    for (int i = 0; i <= LT_SCHED_SCOPES_MAX; i++) {
        char f[16];
        snprintf(f, sizeof(f), "f%d", i);
        json_object_array_add(arr, json_object_new_string(f));
    }
    json_object_object_add(many, "folders", arr);
    scopes_t sm = {{0}, 0, 0};
    CHECK_INT(lt_sched_scopes("imap", many, 1, collect, &sm), 1);
    CHECK_STR(sm.got, "[ALL]");
    json_object_put(many);

    /* the callback stops the walk */
    json_object *cfg = json_tokener_parse("{\"folders\":[\"A\",\"B\",\"C\"]}");
    scopes_t s = {{0}, 2, 0};
    CHECK_INT(lt_sched_scopes("imap", cfg, 1, collect, &s), 2);
    CHECK_STR(s.got, "[A],[B]");
    json_object_put(cfg);
}

/* ---- commands ---- */

static lt_command_t *build_and_parse(const lt_sched_cmd_t *c, char id[LT_SCHED_COMMAND_ID_SIZE])
{
    lt_buf_t *b = lt_buf_new(LT_COMMAND_MAX_SIZE);
    char err[512] = "";
    lt_command_t *cmd = NULL;
    lt_err_t e = lt_sched_command(c, b, id, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "build: %s", err);
    if (!e) {
        CHECK_MSG(memchr(lt_buf_data(b), '\n', lt_buf_len(b)) == NULL, "one line");
        e = lt_command_parse(lt_buf_str(b), lt_buf_len(b), &cmd, err, sizeof(err));
        CHECK_MSG(e == LT_OK, "the worker's parser refused %s: %s", lt_buf_str(b), err);
    }
    lt_buf_destroy(b);
    return cmd;
}

static void test_commands(void)
{
    char id[LT_SCHED_COMMAND_ID_SIZE], id2[LT_SCHED_COMMAND_ID_SIZE], err[256];
    lt_trace_t t;
    char tp[LT_TRACEPARENT_SIZE];
    CHECK(lt_trace_new(&t, err, sizeof(err)) == LT_OK);
    lt_trace_format(&t, tp);

    lt_sched_cmd_t c = {"acme", "workmail-imap", "imap", "Sent Items", "scheduler", tp, NULL};
    lt_command_t *cmd = build_and_parse(&c, id);
    if (cmd) {
        CHECK_STR(lt_command_id(cmd), id);
        CHECK_MSG(!strncmp(id, "cmd-", 4) && strlen(id) == 36, "fresh id %s", id);
        CHECK_STR(lt_command_tenant_id(cmd), "acme");
        CHECK_STR(lt_command_account_id(cmd), "workmail-imap");
        CHECK_INT(lt_command_provider(cmd), LT_PROVIDER_IMAP);
        CHECK_INT(lt_command_kind(cmd), LT_SYNC_INCREMENTAL);
        CHECK_STR(lt_command_scope(cmd), "Sent Items");
        CHECK_STR(lt_command_requested_by(cmd), "scheduler");
        CHECK_STR(lt_command_traceparent(cmd), tp);
        CHECK(lt_command_check_key(cmd, "workmail-imap", 13, err, sizeof(err)) == LT_OK);
        lt_command_destroy(cmd);
    }
    cmd = build_and_parse(&c, id2);
    CHECK_MSG(strcmp(id, id2) != 0, "every command gets a fresh id (%s %s)", id, id2);
    lt_command_destroy(cmd);

    /* the scheduler's own id is used as given (and checked) */
    lt_sched_cmd_t given = {"acme", "a", "imap", NULL, "scheduler", NULL, "cmd-0123abcd"};
    cmd = build_and_parse(&given, id);
    CHECK_STR(id, "cmd-0123abcd");
    if (cmd)
        CHECK_STR(lt_command_id(cmd), "cmd-0123abcd");
    lt_command_destroy(cmd);
    given.command_id = "cmd 1";
    lt_buf_t *gb = lt_buf_new(LT_COMMAND_MAX_SIZE);
    CHECK(lt_sched_command(&given, gb, id, err, sizeof(err)) == LT_ERR_INVALID &&
          strstr(err, "command_id"));
    lt_buf_destroy(gb);

    lt_sched_cmd_t g = {"acme", "personal-gmail", "gmail", NULL, "scheduler", NULL, NULL};
    cmd = build_and_parse(&g, id);
    if (cmd) {
        CHECK_INT(lt_command_provider(cmd), LT_PROVIDER_GMAIL);
        CHECK(lt_command_scope(cmd) == NULL);
        CHECK(lt_command_traceparent(cmd) == NULL);
        lt_command_destroy(cmd);
    }

    /* refused: the contract's rules apply to what the scheduler makes */
    static const struct {
        lt_sched_cmd_t c;
        const char *reason;
    } bad[] = {
        {{"acme", "a b", "imap", NULL, "scheduler", NULL, NULL}, "account_id"},
        {{"acme", "a", "pop3", NULL, "scheduler", NULL, NULL}, "provider"},
        {{"acme", "a", "imap", "bad\x01scope", "scheduler", NULL, NULL}, "scope"},
        {{"acme", "a", "imap", "", "scheduler", NULL, NULL}, "scope"},
        {{"acme", "a", "imap", NULL, "scheduler", "00-zz", NULL}, "traceparent"},
        {{NULL, "a", "imap", NULL, "scheduler", NULL, NULL}, "required"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lt_buf_t *b = lt_buf_new(LT_COMMAND_MAX_SIZE);
        char e2[512] = "";
        lt_err_t e = lt_sched_command(&bad[i].c, b, id, e2, sizeof(e2));
        CHECK_MSG(e == LT_ERR_INVALID, "bad %zu accepted", i);
        CHECK_MSG(strstr(e2, bad[i].reason) != NULL, "bad %zu: \"%s\" lacks \"%s\"", i, e2,
                  bad[i].reason);
        CHECK_INT(lt_buf_len(b), 0);
        lt_buf_destroy(b);
    }

    /* a full output buffer */
    lt_buf_t *small = lt_buf_new(40);
    CHECK(lt_sched_command(&c, small, id, err, sizeof(err)) == LT_ERR_TOO_BIG);
    lt_buf_destroy(small);
}

/* ---- the set ---- */

static void test_set(void)
{
    lt_sched_set_t *s = lt_sched_set_new(5000);
    char t[32], a[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(t, sizeof(t), "t%d", i % 7);
        snprintf(a, sizeof(a), "acct-%d", i);
        CHECK(lt_sched_set_add(s, t, a) == LT_OK);
    }
    CHECK_INT(lt_sched_set_count(s), 5000);
    CHECK(lt_sched_set_add(s, "t0", "acct-0") == LT_OK); /* present: no-op */
    CHECK_INT(lt_sched_set_count(s), 5000);
    CHECK(lt_sched_set_add(s, "t0", "acct-new") == LT_ERR_TOO_BIG);
    int ok = 1;
    for (int i = 0; i < 5000; i++) {
        snprintf(t, sizeof(t), "t%d", i % 7);
        snprintf(a, sizeof(a), "acct-%d", i);
        ok &= lt_sched_set_has(s, t, a);
        snprintf(t, sizeof(t), "t%d", (i + 1) % 7); /* same account, other tenant */
        ok &= !lt_sched_set_has(s, t, a);
    }
    CHECK_MSG(ok, "membership");
    /* the pair boundary matters: ("ab","c") is not ("a","bc") */
    lt_sched_set_clear(s);
    CHECK_INT(lt_sched_set_count(s), 0);
    CHECK(lt_sched_set_add(s, "ab", "c") == LT_OK);
    CHECK(lt_sched_set_has(s, "ab", "c"));
    CHECK(!lt_sched_set_has(s, "a", "bc"));
    CHECK(!lt_sched_set_has(s, "t0", "acct-0"));
    lt_sched_set_destroy(s);
    lt_sched_set_destroy(NULL);
}

int main(void)
{
    test_args();
    test_scopes();
    test_commands();
    test_set();
    return lt_test_done("test_scheduler");
}
