/* Pure parts of lib/state: watermark JSON codec, SQLSTATE classification,
 * lock keys, id and config checks, UTF-8 capping. Table-driven. */
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "lt_account_lock.h"
#include "lt_accounts.h"
#include "lt_command_log.h"
#include "lt_db.h"
#include "lt_migrate.h"
#include "lt_watermark.h"
#include "lt_test.h"

typedef struct {
    const char *provider;
    const char *json;
    lt_err_t want;
    uint64_t history_id;
    uint32_t uidvalidity, last_uid;
} wm_case_t;

static const wm_case_t k_wm_cases[] = {
    {"gmail", "{\"historyId\": \"123\"}", LT_OK, 123, 0, 0},
    {"gmail", "{\"historyId\":\"18446744073709551615\"}", LT_OK, UINT64_MAX, 0, 0},
    {"gmail", "{\"historyId\":\"18446744073709551616\"}", LT_ERR_INVALID, 0, 0, 0},
    {"gmail", "{\"historyId\":\"99999999999999999999\"}", LT_ERR_INVALID, 0, 0, 0},
    {"gmail", "{\"historyId\": 123}", LT_ERR_INVALID, 0, 0, 0},
    {"gmail", "{\"historyId\": \"\"}", LT_ERR_INVALID, 0, 0, 0},
    {"gmail", "{\"historyId\": \"12a\"}", LT_ERR_INVALID, 0, 0, 0},
    {"gmail", "{\"historyId\": \"-1\"}", LT_ERR_INVALID, 0, 0, 0},
    {"gmail", "{\"other\": \"1\"}", LT_ERR_INVALID, 0, 0, 0},
    {"gmail", "{\"historyId\": \"7\", \"extra\": true}", LT_OK, 7, 0, 0},
    {"imap", "{\"uidvalidity\": 9999, \"last_uid\": 12345}", LT_OK, 0, 9999, 12345},
    {"imap", "{\"last_uid\": 0, \"uidvalidity\": 4294967295}", LT_OK, 0, 4294967295u, 0},
    {"imap", "{\"uidvalidity\": 9999.0, \"last_uid\": 1}", LT_OK, 0, 9999, 1},
    {"imap", "{\"uidvalidity\": 0, \"last_uid\": 1}", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": 4294967296, \"last_uid\": 1}", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": 1, \"last_uid\": -1}", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": 1.5, \"last_uid\": 1}", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": \"1\", \"last_uid\": 1}", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": 1}", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "[1, 2]", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": 1, \"last_uid\": 2} trailing", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "", LT_ERR_INVALID, 0, 0, 0},
    /* change tracking (docs/imap.md): optional, strict when present */
    {"imap", "{\"uidvalidity\": 5, \"last_uid\": 9, \"highestmodseq\": \"77\"}", LT_OK, 0, 5, 9},
    {"imap", "{\"uidvalidity\": 5, \"last_uid\": 9, \"highestmodseq\": \"9223372036854775807\", "
             "\"flags_scanned_at\": 1796000000}", LT_OK, 0, 5, 9},
    {"imap", "{\"uidvalidity\": 5, \"last_uid\": 9, \"highestmodseq\": \"9223372036854775808\"}",
     LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": 5, \"last_uid\": 9, \"highestmodseq\": 77}", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": 5, \"last_uid\": 9, \"highestmodseq\": \"-1\"}", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": 5, \"last_uid\": 9, \"flags_scanned_at\": -3}", LT_ERR_INVALID, 0, 0, 0},
    {"imap", "{\"uidvalidity\": 5, \"last_uid\": 9, \"flags_scanned_at\": \"3\"}", LT_ERR_INVALID, 0, 0, 0},
    {"pop3", "{\"historyId\": \"1\"}", LT_ERR_INVALID, 0, 0, 0},
};

static void test_watermark_json(void)
{
    char err[256];
    for (size_t i = 0; i < sizeof(k_wm_cases) / sizeof(k_wm_cases[0]); i++) {
        const wm_case_t *c = &k_wm_cases[i];
        lt_watermark_t wm;
        lt_err_t got = lt_watermark_from_json(c->provider, c->json, &wm, err, sizeof(err));
        CHECK_MSG(got == c->want, "case %zu %s: got %s want %s (%s)", i, c->json, lt_err_name(got),
                  lt_err_name(c->want), got ? err : "");
        if (got == LT_OK && c->want == LT_OK) {
            CHECK_MSG(wm.history_id == c->history_id && wm.uidvalidity == c->uidvalidity &&
                          wm.last_uid == c->last_uid,
                      "case %zu values", i);
            /* Round trip through the encoder. */
            char json[LT_WATERMARK_JSON_MAX];
            lt_watermark_t back;
            CHECK(lt_watermark_to_json(c->provider, &wm, json, err, sizeof(err)) == LT_OK);
            CHECK(lt_watermark_from_json(c->provider, json, &back, err, sizeof(err)) == LT_OK);
            CHECK(memcmp(&back, &wm, sizeof(wm)) == 0);
        }
    }
    char json[LT_WATERMARK_JSON_MAX];
    lt_watermark_t g = {.history_id = 42};
    CHECK(lt_watermark_to_json("gmail", &g, json, err, sizeof(err)) == LT_OK);
    CHECK_STR(json, "{\"historyId\": \"42\"}");
    lt_watermark_t im = {.uidvalidity = 9999, .last_uid = 12345};
    CHECK(lt_watermark_to_json("imap", &im, json, err, sizeof(err)) == LT_OK);
    CHECK_STR(json, "{\"uidvalidity\": 9999, \"last_uid\": 12345}");
    lt_watermark_t full = {.uidvalidity = 4294967295u, .last_uid = 4294967295u,
                           .highestmodseq = INT64_MAX, .flags_scanned_at = INT64_MAX};
    CHECK(lt_watermark_to_json("imap", &full, json, err, sizeof(err)) == LT_OK);
    CHECK_STR(json, "{\"uidvalidity\": 4294967295, \"last_uid\": 4294967295, \"highestmodseq\": "
                    "\"9223372036854775807\", \"flags_scanned_at\": 9223372036854775807}");
    lt_watermark_t back;
    CHECK(lt_watermark_from_json("imap", json, &back, err, sizeof(err)) == LT_OK);
    CHECK(memcmp(&back, &full, sizeof(full)) == 0);
    full.highestmodseq = (uint64_t)INT64_MAX + 1;
    CHECK(lt_watermark_to_json("imap", &full, json, err, sizeof(err)) == LT_ERR_INVALID);
    lt_watermark_t zero = {0};
    CHECK(lt_watermark_to_json("imap", &zero, json, err, sizeof(err)) == LT_ERR_INVALID);
    CHECK(lt_watermark_to_json("pop3", &g, json, err, sizeof(err)) == LT_ERR_INVALID);
}

static void test_classify(void)
{
    static const struct {
        const char *state;
        lt_err_t want;
    } cases[] = {
        {"08006", LT_ERR_TEMPORARY},                              /* connection failure */
        {"08003", LT_ERR_TEMPORARY}, {"40001", LT_ERR_TEMPORARY}, /* serialization */
        {"40P01", LT_ERR_TEMPORARY},                              /* deadlock */
        {"53300", LT_ERR_TEMPORARY},                              /* too many connections */
        {"55P03", LT_ERR_TEMPORARY},                              /* lock timeout */
        {"57014", LT_ERR_TEMPORARY},                              /* statement timeout */
        {"57P01", LT_ERR_TEMPORARY},                              /* admin shutdown */
        {"23505", LT_ERR_INVALID},                                /* unique violation */
        {"23503", LT_ERR_INVALID},                                /* foreign key */
        {"23514", LT_ERR_INVALID},                                /* check */
        {"22P02", LT_ERR_INVALID},                                /* invalid text */
        {"42P01", LT_ERR_FINAL},                                  /* undefined table */
        {"42601", LT_ERR_FINAL},                                  /* syntax */
        {"XX000", LT_ERR_FINAL},                                  /* internal */
        {"", LT_ERR_TEMPORARY},                                   /* no answer */
        {NULL, LT_ERR_TEMPORARY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK_MSG(lt_db_classify_sqlstate(cases[i].state) == cases[i].want, "sqlstate %s",
                  cases[i].state ? cases[i].state : "(null)");
}

static void test_lock_keys(void)
{
    /* Stable across runs and builds: the FNV-1a of the parts. */
    const char *ns[] = {"lattice.migrate"};
    CHECK(lt_db_lock_key(ns, 1) == lt_db_lock_key(ns, 1));
    CHECK(lt_account_lock_key("t1", "a1") == lt_account_lock_key("t1", "a1"));
    /* The separator keeps ("ab","c") and ("a","bc") apart. */
    CHECK(lt_account_lock_key("ab", "c") != lt_account_lock_key("a", "bc"));
    CHECK(lt_account_lock_key("t1", "a1") != lt_account_lock_key("t1", "a2"));
    CHECK(lt_account_lock_key("t1", "a1") != lt_account_lock_key("t2", "a1"));
    const char *parts[] = {"lattice.account", "t1", "a1"};
    CHECK(lt_account_lock_key("t1", "a1") == lt_db_lock_key(parts, 3));
    /* Known value: FNV-1a 64 of "a\0" (offset basis, xor 'a', *prime, xor 0, *prime). */
    const char *a[] = {"a"};
    unsigned long long h = 0xcbf29ce484222325ULL;
    h ^= 'a';
    h *= 0x100000001b3ULL;
    h *= 0x100000001b3ULL;
    CHECK((unsigned long long)lt_db_lock_key(a, 1) == h);
}

static void test_ids_and_config(void)
{
    char err[256];
    char long_id[130];
    memset(long_id, 'x', 129);
    long_id[129] = 0;
    CHECK(lt_account_id_valid("personal"));
    CHECK(lt_account_id_valid("A-z_0.9:x"));
    CHECK(!lt_account_id_valid(""));
    CHECK(!lt_account_id_valid(NULL));
    CHECK(!lt_account_id_valid("a b"));
    CHECK(!lt_account_id_valid("a/b"));
    CHECK(!lt_account_id_valid("caf\xc3\xa9"));
    CHECK(!lt_account_id_valid(long_id));
    long_id[128] = 0;
    CHECK(lt_account_id_valid(long_id));

    static const struct {
        const char *json;
        lt_err_t want;
    } cfgs[] = {
        {"{}", LT_OK},
        {"{\"host\":\"imap.mail.us-east-1.awsapps.com\",\"password_env\":\"IMAP_PW\"}", LT_OK},
        {"{\"refresh_token_file\":\"/run/secrets/gm\"}", LT_OK},
        {"{\"password\":\"\"}", LT_OK}, /* empty: no secret in it */
        {"{\"password\":\"hunter2\"}", LT_ERR_FINAL},
        {"{\"oauth\":{\"Refresh_Token\":\"1//abc\"}}", LT_ERR_FINAL},
        {"{\"list\":[{\"client_secret\":\"x\"}]}", LT_ERR_FINAL},
        {"[]", LT_ERR_FINAL},
        {"\"str\"", LT_ERR_FINAL},
    };
    for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
        json_object *o = json_tokener_parse(cfgs[i].json);
        CHECK_MSG(o != NULL, "parse %s", cfgs[i].json);
        lt_err_t got = lt_account_config_check(o, err, sizeof(err));
        CHECK_MSG(got == cfgs[i].want, "config %s: %s", cfgs[i].json, lt_err_name(got));
        if (got == LT_ERR_FINAL && json_object_is_type(o, json_type_object))
            CHECK_MSG(strstr(err, "reference") != NULL, "%s", err);
        json_object_put(o);
    }
}

static void test_cap_utf8(void)
{
    char out[8];
    lt_db_cap_utf8(out, sizeof(out), "short");
    CHECK_STR(out, "short");
    lt_db_cap_utf8(out, sizeof(out), "1234567890");
    CHECK_STR(out, "1234567");
    /* "123456" + e-acute (2 bytes) would need 8 bytes + NUL: cut before it. */
    lt_db_cap_utf8(out, sizeof(out), "123456\xc3\xa9");
    CHECK_STR(out, "123456");
    /* A 3-byte character straddling the cut. */
    lt_db_cap_utf8(out, sizeof(out), "12345\xe2\x82\xac!");
    CHECK_STR(out, "12345");
    lt_db_cap_utf8(out, sizeof(out), "1234\xe2\x82\xac!");
    CHECK_STR(out, "1234\xe2\x82\xac");
}

static void test_names(void)
{
    CHECK_STR(lt_migration_state_name(LT_MIGRATION_CHANGED), "changed");
    CHECK_STR(lt_migration_state_name(LT_MIGRATION_PENDING), "pending");
    CHECK_STR(lt_command_status_name(LT_COMMAND_DEAD_LETTERED), "dead_lettered");
    CHECK_STR(lt_command_status_name(LT_COMMAND_RUNNING), "running");
}

int main(void)
{
    test_watermark_json();
    test_classify();
    test_lock_keys();
    test_ids_and_config();
    test_cap_utf8();
    test_names();
    return lt_test_done("test_state_pure");
}
