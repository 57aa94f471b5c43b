/* Sync command contract: one row per rejection with its reason, valid
 * examples of every provider and kind, round trips, builders, the key
 * check, and the example files shared with the JSON Schema check
 * (tests/data/commands, see tests/integration/test_command_schema.sh). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"
#include "lt_command.h"
#include "lt_test.h"

#define HEAD                                                                                       \
    "\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"c1\",\"tenant_id\":\"t1\","          \
    "\"account_id\":\"a1\""
#define TAIL "\"requested_at\":\"2025-01-02T03:04:05Z\",\"requested_by\":\"alice\""
#define GI "\"provider\":\"gmail\",\"kind\":\"incremental\""
#define GB "\"provider\":\"gmail\",\"kind\":\"backfill\""
#define II "\"provider\":\"imap\",\"kind\":\"incremental\""
#define IB "\"provider\":\"imap\",\"kind\":\"backfill\""
/* A command with HEAD and TAIL plus the given fields. */
#define DOC(...) "{" HEAD "," TAIL "," __VA_ARGS__ "}"
/* A command without TAIL (to leave out or replace its fields). */
#define DOC_NT(...) "{" HEAD "," __VA_ARGS__ "}"
#define BY "\"requested_by\":\"alice\""
#define AT "\"requested_at\":\"2025-01-02T03:04:05Z\""
#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static char err_g[512];

typedef struct {
    const char *json;
    const char *reason; /* substring of the error */
} bad_t;

static const bad_t k_bad[] = {
    /* Not a JSON object at all. */
    {"", "not valid JSON"},
    {"{", "not valid JSON"},
    {"[]", "must be a JSON object, not array"},
    {"\"x\"", "must be a JSON object, not string"},
    {"{} {}", "not valid JSON: unexpected character (at byte 3)"},
    {DOC(GI) " x", "not valid JSON"},
    {"{'schema':1}", "single-quoted string"},
    {DOC(GI ",\"scope\":\"a\" /* c */"), "not valid JSON"},
    {"{\"a\":1,}", "not valid JSON"},
    /* Duplicates (json-c alone would keep the last). */
    {DOC(GI ",\"kind\":\"backfill\""), "duplicate field \"kind\""},
    {DOC(GI ",\"\\u006bind\":\"backfill\""), "duplicate field (the same name written"},
    {DOC(IB ",\"backfill\":{\"folder\":\"A\",\"folder\":\"B\"}"),
     "backfill: duplicate field \"folder\""},
    /* Unknown fields. */
    {DOC(GI ",\"priority\":\"high\""), "unknown field \"priority\""},
    {DOC(GI ",\"Kind\":\"x\""), "unknown field \"Kind\""},
    {DOC(GB ",\"backfill\":{\"start_date\":\"2024-01-01\",\"end_date\":\"2024-01-02\","
            "\"folder\":\"INBOX\"}"),
     "backfill: unknown field \"folder\""},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"start_date\":\"2024-01-01\"}"),
     "backfill: unknown field \"start_date\""},
    /* schema. */
    {"{\"command_id\":\"c1\",\"tenant_id\":\"t1\",\"account_id\":\"a1\"," GI "," TAIL "}",
     "schema: missing required field"},
    {"{\"schema\":\"lattice.mail.sync.cmd.v2\",\"command_id\":\"c1\",\"tenant_id\":\"t1\","
     "\"account_id\":\"a1\"," GI "," TAIL "}",
     "schema: \"lattice.mail.sync.cmd.v2\" is not \"lattice.mail.sync.cmd.v1\""},
    {"{\"schema\":1,\"command_id\":\"c1\"}", "schema: must be a string, not int"},
    /* ids. */
    {"{\"schema\":\"lattice.mail.sync.cmd.v1\",\"tenant_id\":\"t1\",\"account_id\":\"a1\"," GI
     "," TAIL "}",
     "command_id: missing required field"},
    {"{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"\",\"tenant_id\":\"t1\","
     "\"account_id\":\"a1\"," GI "," TAIL "}",
     "command_id: must not be empty"},
    {"{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"c 1\",\"tenant_id\":\"t1\","
     "\"account_id\":\"a1\"," GI "," TAIL "}",
     "command_id: character 2 is not allowed"},
    {"{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"c1\",\"tenant_id\":null,"
     "\"account_id\":\"a1\"," GI "," TAIL "}",
     "tenant_id: must be a string, not null"},
    {"{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"c1\",\"tenant_id\":\"t1\","
     "\"account_id\":42," GI "," TAIL "}",
     "account_id: must be a string, not int"},
    {"{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"c1\",\"tenant_id\":\"t1\"," GI
     "," TAIL "}",
     "account_id: missing required field"},
    {"{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"c1\",\"tenant_id\":\"t1\","
     "\"account_id\":\"\\u00e9\"," GI "," TAIL "}",
     "account_id: character 1 is not allowed"},
    /* provider, kind. */
    {DOC("\"provider\":\"pop3\",\"kind\":\"incremental\""),
     "provider: \"pop3\" is not one of gmail, imap"},
    {DOC("\"provider\":\"Gmail\",\"kind\":\"incremental\""),
     "provider: \"Gmail\" is not one of gmail, imap"},
    {DOC("\"kind\":\"incremental\""), "provider: missing required field"},
    {DOC("\"provider\":\"gmail\",\"kind\":\"full\""),
     "kind: \"full\" is not one of incremental, backfill"},
    {DOC("\"provider\":\"gmail\",\"kind\":[\"backfill\"]"), "kind: must be a string, not array"},
    {DOC("\"provider\":\"gmail\""), "kind: missing required field"},
    /* scope. */
    {DOC(GI ",\"scope\":\"\""), "scope: must not be empty"},
    {DOC(GI ",\"scope\":\"a\\tb\""), "scope: control characters are not allowed"},
    {DOC(GI ",\"scope\":\"a\\u0000b\""), "scope: control characters are not allowed"},
    {DOC(GI ",\"scope\":7"), "scope: must be a string, not int"},
    {DOC(IB ",\"scope\":\"INBOX\",\"backfill\":{\"folder\":\"INBOX\"}"),
     "scope: not allowed on an imap backfill"},
    /* backfill presence and shape. */
    {DOC(GI ",\"backfill\":{\"start_date\":\"2024-01-01\",\"end_date\":\"2024-01-02\"}"),
     "backfill: only allowed when kind is backfill"},
    {DOC(GB), "backfill: missing required field (kind is backfill)"},
    {DOC(GB ",\"backfill\":\"2024-01-01\""), "backfill: must be an object, not string"},
    /* gmail backfill. */
    {DOC(GB ",\"backfill\":{\"end_date\":\"2024-01-02\"}"),
     "backfill.start_date: missing required field"},
    {DOC(GB ",\"backfill\":{\"start_date\":\"2024-01-01\"}"),
     "backfill.end_date: missing required field"},
    {DOC(GB ",\"backfill\":{\"start_date\":\"2024-13-01\",\"end_date\":\"2024-12-31\"}"),
     "backfill.start_date: \"2024-13-01\" is not a valid date"},
    {DOC(GB ",\"backfill\":{\"start_date\":\"2023-02-29\",\"end_date\":\"2023-12-31\"}"),
     "backfill.start_date: \"2023-02-29\" is not a valid date"},
    {DOC(GB ",\"backfill\":{\"start_date\":\"2024-01-01\",\"end_date\":\"2024-04-31\"}"),
     "backfill.end_date: \"2024-04-31\" is not a valid date"},
    {DOC(GB ",\"backfill\":{\"start_date\":\"2024/01/01\",\"end_date\":\"2024-01-02\"}"),
     "backfill.start_date: \"2024/01/01\" is not a valid date"},
    {DOC(GB ",\"backfill\":{\"start_date\":\"1969-12-31\",\"end_date\":\"2024-01-02\"}"),
     "backfill.start_date: \"1969-12-31\" is not a valid date"},
    {DOC(GB ",\"backfill\":{\"start_date\":\"2024-01-01T00:00:00Z\",\"end_date\":\"2024-01-02\"}"),
     "is not a valid date"},
    {DOC(GB ",\"backfill\":{\"start_date\":20240101,\"end_date\":\"2024-01-02\"}"),
     "backfill.start_date: must be a string, not int"},
    {DOC(GB ",\"backfill\":{\"start_date\":\"2024-03-02\",\"end_date\":\"2024-03-01\"}"),
     "backfill: start_date 2024-03-02 is after end_date 2024-03-01"},
    /* imap backfill. */
    {DOC(IB ",\"backfill\":{\"start_uid\":1}"), "backfill.folder: missing required field"},
    {DOC(IB ",\"backfill\":{\"folder\":\"\"}"), "backfill.folder: must not be empty"},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"start_uid\":0}"),
     "backfill.start_uid: must be between 1 and 4294967295"},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"end_uid\":4294967296}"),
     "backfill.end_uid: must be between 1 and 4294967295"},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"end_uid\":-1}"),
     "backfill.end_uid: must be between 1 and 4294967295"},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"end_uid\":99999999999999999999999}"),
     "backfill.end_uid: must be"},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"start_uid\":\"1\"}"),
     "backfill.start_uid: must be an integer, not string"},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"start_uid\":1.0}"),
     "backfill.start_uid: must be an integer, not double"},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"start_uid\":1e3}"),
     "backfill.start_uid: must be an integer, not double"},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"start_uid\":NaN}"),
     "backfill.start_uid: must be an integer, not double"},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"start_uid\":10,\"end_uid\":9}"),
     "backfill: start_uid 10 is after end_uid 9"},
    /* requested_at, requested_by. */
    {DOC_NT(GI "," BY), "requested_at: missing required field"},
    {DOC_NT(GI "," BY ",\"requested_at\":\"2025-01-02T03:04:05+02:00\""),
     "requested_at: \"2025-01-02T03:04:05+02:00\" is not an RFC 3339 UTC timestamp"},
    {DOC_NT(GI "," BY ",\"requested_at\":\"2025-01-02 03:04:05Z\""),
     "is not an RFC 3339 UTC timestamp"},
    {DOC_NT(GI "," BY ",\"requested_at\":\"2025-01-02T03:04:05z\""),
     "is not an RFC 3339 UTC timestamp"},
    {DOC_NT(GI "," BY ",\"requested_at\":\"2025-01-02\""), "is not an RFC 3339 UTC timestamp"},
    {DOC_NT(GI "," BY ",\"requested_at\":\"2025-02-30T03:04:05Z\""),
     "is not an RFC 3339 UTC timestamp"},
    {DOC_NT(GI "," BY ",\"requested_at\":\"2025-01-02T24:00:00Z\""),
     "is not an RFC 3339 UTC timestamp"},
    {DOC_NT(GI "," BY ",\"requested_at\":\"2025-01-02T23:59:60Z\""),
     "is not an RFC 3339 UTC timestamp"},
    {DOC_NT(GI "," BY ",\"requested_at\":\"2025-01-02T03:04:05.Z\""),
     "is not an RFC 3339 UTC timestamp"},
    {DOC_NT(GI "," BY ",\"requested_at\":\"2025-01-02T03:04:05.1234567890Z\""),
     "is not an RFC 3339 UTC timestamp"},
    {DOC_NT(GI "," BY ",\"requested_at\":1735787045"), "requested_at: must be a string, not int"},
    {DOC_NT(GI "," AT), "requested_by: missing required field"},
    {DOC_NT(GI "," AT ",\"requested_by\":\"\""), "requested_by: must not be empty"},
    {DOC_NT(GI "," AT ",\"requested_by\":\"a\\nb\""),
     "requested_by: control characters are not allowed"},
    /* traceparent. */
    {DOC(GI ",\"traceparent\":\"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\""),
     "traceparent: trace-id is not 32 lower-case hex digits"},
    {DOC(GI ",\"traceparent\":\"00-00000000000000000000000000000000-00f067aa0ba902b7-01\""),
     "traceparent: an all-zero trace-id is invalid"},
    {DOC(GI ",\"traceparent\":\"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\""),
     "traceparent: version ff is invalid"},
    {DOC(GI ",\"traceparent\":\"abc\""), "traceparent: expected 55 characters"},
    {DOC(GI ",\"traceparent\":{}"), "traceparent: must be a string, not object"},
};

/* Valid commands and what the getters must return. */
typedef struct {
    const char *json;
    lt_provider_t provider;
    lt_sync_kind_t kind;
    const char *scope;
    const char *start_date, *end_date, *folder;
    uint32_t start_uid, end_uid;
    const char *traceparent;
} good_t;

static const good_t k_good[] = {
    {DOC(GI), LT_PROVIDER_GMAIL, LT_SYNC_INCREMENTAL, NULL, NULL, NULL, NULL, 0, 0, NULL},
    {DOC(GI ",\"scope\":\"label:INBOX\",\"traceparent\":\"" TP "\""), LT_PROVIDER_GMAIL,
     LT_SYNC_INCREMENTAL, "label:INBOX", NULL, NULL, NULL, 0, 0, TP},
    {DOC(GB ",\"backfill\":{\"start_date\":\"2024-01-01\",\"end_date\":\"2024-12-31\"}"),
     LT_PROVIDER_GMAIL, LT_SYNC_BACKFILL, NULL, "2024-01-01", "2024-12-31", NULL, 0, 0, NULL},
    {DOC(GB ",\"scope\":\"in:sent\",\"backfill\":{\"start_date\":\"2024-02-29\","
            "\"end_date\":\"2024-02-29\"}"),
     LT_PROVIDER_GMAIL, LT_SYNC_BACKFILL, "in:sent", "2024-02-29", "2024-02-29", NULL, 0, 0, NULL},
    {DOC(II), LT_PROVIDER_IMAP, LT_SYNC_INCREMENTAL, NULL, NULL, NULL, NULL, 0, 0, NULL},
    {DOC(II ",\"scope\":\"INBOX/\\u00c9t\\u00e9 \\ud83d\\ude00\""), LT_PROVIDER_IMAP,
     LT_SYNC_INCREMENTAL, "INBOX/\xc3\x89t\xc3\xa9 \xf0\x9f\x98\x80", NULL, NULL, NULL, 0, 0, NULL},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\"}"), LT_PROVIDER_IMAP, LT_SYNC_BACKFILL, NULL, NULL,
     NULL, "INBOX", 0, 0, NULL},
    {DOC(IB ",\"backfill\":{\"folder\":\"Sent Items\",\"start_uid\":1,\"end_uid\":4294967295}"),
     LT_PROVIDER_IMAP, LT_SYNC_BACKFILL, NULL, NULL, NULL, "Sent Items", 1, 4294967295u, NULL},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"end_uid\":500}"), LT_PROVIDER_IMAP,
     LT_SYNC_BACKFILL, NULL, NULL, NULL, "INBOX", 0, 500, NULL},
    {DOC(IB ",\"backfill\":{\"folder\":\"INBOX\",\"start_uid\":7,\"end_uid\":7}"), LT_PROVIDER_IMAP,
     LT_SYNC_BACKFILL, NULL, NULL, NULL, "INBOX", 7, 7, NULL},
    /* Whitespace around and inside is fine; field order is free. */
    {" \n{ " TAIL " , " GI " , " HEAD " }\n ", LT_PROVIDER_GMAIL, LT_SYNC_INCREMENTAL, NULL, NULL,
     NULL, NULL, 0, 0, NULL},
};

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* to_json, parse again, to_json again: the same text. */
static void check_round_trip(const lt_command_t *c, const char *what)
{
    lt_buf_t *a = lt_buf_new(LT_COMMAND_MAX_SIZE), *b = lt_buf_new(LT_COMMAND_MAX_SIZE);
    char err[512];
    lt_command_t *again = NULL;
    CHECK_INT(lt_command_to_json(c, a), LT_OK);
    lt_err_t r = lt_command_parse(lt_buf_str(a), lt_buf_len(a), &again, err, sizeof(err));
    CHECK_MSG(r == LT_OK, "%s: round trip rejected: %s: %s", what, err, lt_buf_str(a));
    if (again) {
        CHECK_INT(lt_command_to_json(again, b), LT_OK);
        CHECK_STR(lt_buf_str(a), lt_buf_str(b));
        CHECK_STR(lt_command_id(again), lt_command_id(c));
        CHECK_STR(lt_command_requested_at(again), lt_command_requested_at(c));
        CHECK_INT(lt_command_requested_at_unix(again), lt_command_requested_at_unix(c));
    }
    lt_command_destroy(again);
    lt_buf_destroy(a);
    lt_buf_destroy(b);
}

/* Parse every *.json of tests/data/commands/<sub>; expect success or not. */
static int parse_dir(const char *sub, int want_ok)
{
    char dir[1024], path[2048], err[512];
    snprintf(dir, sizeof(dir), "%s/tests/data/commands/%s", LT_SOURCE_DIR, sub);
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        CHECK_MSG(f != NULL, "cannot open %s", path);
        if (!f)
            continue;
        char *buf = malloc(LT_COMMAND_MAX_SIZE + 1);
        size_t got = fread(buf, 1, LT_COMMAND_MAX_SIZE + 1, f);
        fclose(f);
        lt_command_t *c = NULL;
        err[0] = 0;
        lt_err_t r = lt_command_parse(buf, got, &c, err, sizeof(err));
        if (want_ok) {
            CHECK_MSG(r == LT_OK, "%s/%s rejected: %s", sub, e->d_name, err);
            if (c)
                check_round_trip(c, e->d_name);
        } else {
            CHECK_MSG(r != LT_OK && c == NULL && err[0], "%s/%s accepted", sub, e->d_name);
            printf("  %s/%s: %s\n", sub, e->d_name, err);
        }
        lt_command_destroy(c);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

static void test_builders(void)
{
    char err[512];
    lt_command_t *c = NULL;
    lt_command_spec_t spec = {
        .tenant_id = "acme",
        .account_id = "workmail-imap",
        .provider = LT_PROVIDER_IMAP,
        .requested_by = "lattice-scheduler",
        .requested_at = 1735787045, /* 2025-01-02T03:04:05Z */
    };
    CHECK_INT(lt_command_new_incremental(&spec, &c, err, sizeof(err)), LT_OK);
    if (c) {
        CHECK(!strncmp(lt_command_id(c), "cmd-", 4) && strlen(lt_command_id(c)) == 36);
        CHECK_STR(lt_command_requested_at(c), "2025-01-02T03:04:05Z");
        CHECK_INT(lt_command_requested_at_unix(c), 1735787045);
        CHECK_INT(lt_command_kind(c), LT_SYNC_INCREMENTAL);
        CHECK(lt_command_scope(c) == NULL);
        CHECK(lt_command_traceparent(c) == NULL);
        check_round_trip(c, "builder incremental");
    }
    lt_command_t *c2 = NULL;
    CHECK_INT(lt_command_new_incremental(&spec, &c2, err, sizeof(err)), LT_OK);
    if (c && c2)
        CHECK(strcmp(lt_command_id(c), lt_command_id(c2)) != 0);
    lt_command_destroy(c);
    lt_command_destroy(c2);

    /* requested_at 0 = now. */
    spec.requested_at = 0;
    time_t before = time(NULL);
    CHECK_INT(lt_command_new_incremental(&spec, &c, err, sizeof(err)), LT_OK);
    if (c)
        CHECK(lt_command_requested_at_unix(c) >= before &&
              lt_command_requested_at_unix(c) <= time(NULL));
    lt_command_destroy(c);

    lt_command_backfill_t bf = {.folder = "INBOX", .start_uid = 100, .end_uid = 200};
    spec.command_id = "bf-1";
    spec.traceparent = TP;
    CHECK_INT(lt_command_new_backfill(&spec, &bf, &c, err, sizeof(err)), LT_OK);
    if (c) {
        CHECK_STR(lt_command_id(c), "bf-1");
        CHECK_STR(lt_command_backfill_folder(c), "INBOX");
        CHECK_INT(lt_command_backfill_start_uid(c), 100);
        CHECK_INT(lt_command_backfill_end_uid(c), 200);
        CHECK_STR(lt_command_traceparent(c), TP);
        check_round_trip(c, "builder imap backfill");
    }
    lt_command_destroy(c);

    /* The builder applies the parser's rules. */
    bf.start_uid = 300;
    CHECK_INT(lt_command_new_backfill(&spec, &bf, &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK(c == NULL);
    CHECK_MSG(strstr(err, "start_uid 300 is after end_uid 200") != NULL, "%s", err);
    spec.scope = "INBOX";
    bf.start_uid = 1;
    CHECK_INT(lt_command_new_backfill(&spec, &bf, &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "scope: not allowed on an imap backfill") != NULL, "%s", err);
    spec.scope = NULL;
    CHECK_INT(lt_command_new_backfill(&spec, NULL, &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "backfill: missing required field") != NULL, "%s", err);
    spec.account_id = NULL;
    CHECK_INT(lt_command_new_incremental(&spec, &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "account_id: missing required field") != NULL, "%s", err);

    spec.account_id = "alice@gmail";
    CHECK_INT(lt_command_new_incremental(&spec, &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "account_id: character 6 is not allowed") != NULL, "%s", err);
    spec.account_id = "gmail-alice";
    spec.provider = LT_PROVIDER_GMAIL;
    spec.scope = "label:Receipts";
    lt_command_backfill_t gbf = {.start_date = "2024-01-01", .end_date = "2024-06-30"};
    CHECK_INT(lt_command_new_backfill(&spec, &gbf, &c, err, sizeof(err)), LT_OK);
    if (c) {
        CHECK_STR(lt_command_backfill_start_date(c), "2024-01-01");
        CHECK_STR(lt_command_backfill_end_date(c), "2024-06-30");
        CHECK_STR(lt_command_scope(c), "label:Receipts");
        CHECK(lt_command_backfill_folder(c) == NULL);
        check_round_trip(c, "builder gmail backfill");
    }
    lt_command_destroy(c);
}

static void test_key_and_limits(void)
{
    char err[512];
    lt_command_t *c = NULL;
    const char *doc = DOC(II);
    CHECK_INT(lt_command_parse(doc, strlen(doc), &c, err, sizeof(err)), LT_OK);
    if (c) {
        CHECK_INT(lt_command_check_key(c, "a1", 2, err, sizeof(err)), LT_OK);
        CHECK_INT(lt_command_check_key(c, "a12", 3, err, sizeof(err)), LT_ERR_INVALID);
        CHECK_MSG(strstr(err, "message key: \"a12\" is not the account_id \"a1\"") != NULL, "%s",
                  err);
        CHECK_INT(lt_command_check_key(c, "a", 1, err, sizeof(err)), LT_ERR_INVALID);
        CHECK_INT(lt_command_check_key(c, "a\0", 2, err, sizeof(err)), LT_ERR_INVALID);
        CHECK_INT(lt_command_check_key(c, NULL, 0, err, sizeof(err)), LT_ERR_INVALID);
        CHECK_MSG(strstr(err, "message key: missing") != NULL, "%s", err);
        CHECK_STR(lt_provider_name(lt_command_provider(c)), "imap");
        CHECK_STR(lt_sync_kind_name(lt_command_kind(c)), "incremental");
        CHECK_STR(lt_command_tenant_id(c), "t1");
        CHECK_STR(lt_command_requested_by(c), "alice");
        CHECK_INT(lt_command_requested_at_unix(c), 1735787045);
        /* to_json respects the buffer's cap. */
        lt_buf_t *small = lt_buf_new(16);
        CHECK_INT(lt_command_to_json(c, small), LT_ERR_TOO_BIG);
        lt_buf_destroy(small);
    }
    lt_command_destroy(c);

    /* Only len bytes are read (no NUL needed). */
    char *exact = malloc(strlen(doc));
    memcpy(exact, doc, strlen(doc));
    CHECK_INT(lt_command_parse(exact, strlen(doc), &c, err, sizeof(err)), LT_OK);
    lt_command_destroy(c);
    free(exact);

    /* Size cap: a valid command padded with whitespace past 64 KiB. */
    size_t big = LT_COMMAND_MAX_SIZE + 1;
    char *pad = malloc(big);
    memset(pad, ' ', big);
    memcpy(pad, doc, strlen(doc));
    CHECK_INT(lt_command_parse(pad, big, &c, err, sizeof(err)), LT_ERR_TOO_BIG);
    CHECK(c == NULL);
    CHECK_MSG(strstr(err, "65537 bytes, the limit is 65536") != NULL, "%s", err);
    CHECK_INT(lt_command_parse(pad, big - 1, &c, err, sizeof(err)), LT_OK);
    lt_command_destroy(c);
    free(pad);

    /* Non-UTF-8 and NUL bytes. */
    const char latin1[] = "{" HEAD "," TAIL "," GI ",\"scope\":\"caf\xe9\"}";
    CHECK_INT(lt_command_parse(latin1, strlen(latin1), &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "not valid UTF-8") != NULL, "%s", err);
    const char overlong[] = "{" HEAD "," TAIL "," GI ",\"scope\":\"\xc0\xaf\"}";
    CHECK_INT(lt_command_parse(overlong, strlen(overlong), &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "not valid UTF-8") != NULL, "%s", err);
    const char surrogate[] = "{" HEAD "," TAIL "," GI ",\"scope\":\"\xed\xa0\x80\"}";
    CHECK_INT(lt_command_parse(surrogate, strlen(surrogate), &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "not valid UTF-8") != NULL, "%s", err);
    const char withnul[] = DOC(GI);
    CHECK_INT(lt_command_parse(withnul, sizeof(withnul), &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "contains a NUL byte") != NULL, "%s", err);
    CHECK_INT(lt_command_parse(NULL, 0, &c, err, sizeof(err)), LT_ERR_INVALID);

    /* Length limits at the edge, counted in characters. */
    char longid[300], json[2048];
    memset(longid, 'x', 128);
    longid[128] = 0;
    snprintf(json, sizeof(json),
             "{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"%s\",\"tenant_id\":\"t\","
             "\"account_id\":\"a\"," GI "," TAIL "}",
             longid);
    CHECK_INT(lt_command_parse(json, strlen(json), &c, err, sizeof(err)), LT_OK);
    lt_command_destroy(c);
    longid[128] = 'x';
    longid[129] = 0;
    snprintf(json, sizeof(json),
             "{\"schema\":\"lattice.mail.sync.cmd.v1\",\"command_id\":\"%s\",\"tenant_id\":\"t\","
             "\"account_id\":\"a\"," GI "," TAIL "}",
             longid);
    CHECK_INT(lt_command_parse(json, strlen(json), &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "command_id: too long (129 characters, at most 128)") != NULL, "%s", err);
    /* requested_by: 256 two-byte characters pass, 257 do not. */
    char by[1024];
    for (int i = 0; i < 257; i++)
        memcpy(by + 2 * i, "\xc3\xa9", 2);
    by[2 * 256] = 0;
    snprintf(json, sizeof(json), "{" HEAD "," AT "," GI ",\"requested_by\":\"%s\"}", by);
    CHECK_INT(lt_command_parse(json, strlen(json), &c, err, sizeof(err)), LT_OK);
    lt_command_destroy(c);
    memcpy(by + 2 * 256, "\xc3\xa9", 3);
    snprintf(json, sizeof(json), "{" HEAD "," AT "," GI ",\"requested_by\":\"%s\"}", by);
    CHECK_INT(lt_command_parse(json, strlen(json), &c, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "requested_by: too long (257 characters, at most 256)") != NULL, "%s",
              err);
}

/* IMAP: INBOX is case-insensitive (RFC 3501 5.1, RFC 9051 5.1), every other
 * mailbox name is not: any spelling of INBOX becomes "INBOX" (scope and
 * backfill.folder), so one folder has one watermark. Gmail scopes and
 * other names stay as sent. */
static void test_inbox_case(void)
{
    static const struct {
        const char *provider_kind; /* II, IB or GI */
        int backfill;
        const char *given, *want;
    } rows[] = {
        {II, 0, "INBOX", "INBOX"},
        {II, 0, "inbox", "INBOX"},
        {II, 0, "Inbox", "INBOX"},
        {II, 0, "iNbOx", "INBOX"},
        {II, 0, "inbox/Sub", "inbox/Sub"}, /* only INBOX itself */
        {II, 0, "inbox.Sub", "inbox.Sub"},
        {II, 0, "INBOX/Sub", "INBOX/Sub"},
        {II, 0, "inboxes", "inboxes"},
        {II, 0, " inbox", " inbox"},
        {II, 0, "Archive", "Archive"},
        {IB, 1, "inbox", "INBOX"},
        {IB, 1, "InBox", "INBOX"},
        {IB, 1, "Sent Items", "Sent Items"},
        {GI, 0, "inbox", "inbox"}, /* a Gmail query/label scope: as sent */
        {GI, 0, "label:inbox", "label:inbox"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char json[512], err[512] = "";
        if (rows[i].backfill)
            snprintf(json, sizeof(json), DOC("%s,\"backfill\":{\"folder\":\"%s\"}"),
                     rows[i].provider_kind, rows[i].given);
        else
            snprintf(json, sizeof(json), DOC("%s,\"scope\":\"%s\""), rows[i].provider_kind,
                     rows[i].given);
        lt_command_t *c = NULL;
        CHECK_MSG(lt_command_parse(json, strlen(json), &c, err, sizeof(err)) == LT_OK,
                  "row %zu: %s", i, err);
        if (!c)
            continue;
        const char *got = rows[i].backfill ? lt_command_backfill_folder(c) : lt_command_scope(c);
        CHECK_MSG(got && !strcmp(got, rows[i].want), "row %zu: \"%s\" -> \"%s\", want \"%s\"", i,
                  rows[i].given, got ? got : "(null)", rows[i].want);
        lt_command_destroy(c);
    }
    /* the builder (the scheduler's commands): the same spelling */
    lt_command_spec_t spec = {0};
    spec.tenant_id = "t1";
    spec.account_id = "a1";
    spec.provider = LT_PROVIDER_IMAP;
    spec.scope = "inbox";
    spec.requested_by = "test";
    lt_command_t *c = NULL;
    char err[512] = "";
    CHECK_INT(lt_command_new_incremental(&spec, &c, err, sizeof(err)), LT_OK);
    if (c) {
        CHECK_STR(lt_command_scope(c), "INBOX");
        lt_command_destroy(c);
    }
}

/* lt_command_write_incremental: the same bytes as building (serialize and
 * parse) then lt_command_to_json, and the same refusals with the same
 * reasons, for every kind of field value. */
static void test_write_incremental(void)
{
    static const char *const scopes[] = {
        NULL, "INBOX", "inbox", "Sent Items", "a\"b\\c/d", "Entw\xc3\xbcrfe", "\xe2\x82\xac"};
    static const char *const bys[] = {"scheduler", "o'brien \"ops\" \\ x", "\xc3\xa9quipe"};
    static const char *const tps[] = {NULL, TP};
    for (int p = 0; p < 2; p++)
        for (size_t si = 0; si < sizeof(scopes) / sizeof(scopes[0]); si++)
            for (size_t bi = 0; bi < sizeof(bys) / sizeof(bys[0]); bi++)
                for (size_t ti = 0; ti < 2; ti++) {
                    lt_command_spec_t spec = {
                        .command_id = "cmd-fixed.1",
                        .tenant_id = "acme",
                        .account_id = "a_b-c:d.e",
                        .provider = p ? LT_PROVIDER_IMAP : LT_PROVIDER_GMAIL,
                        .scope = scopes[si],
                        .requested_by = bys[bi],
                        .requested_at = 1735787045,
                        .traceparent = tps[ti],
                    };
                    lt_buf_t *a = lt_buf_new(LT_COMMAND_MAX_SIZE), *b = lt_buf_new(4096);
                    lt_command_t *c = NULL;
                    char id[64];
                    CHECK_INT(lt_command_new_incremental(&spec, &c, err_g, sizeof(err_g)), LT_OK);
                    if (c)
                        CHECK_INT(lt_command_to_json(c, a), LT_OK);
                    CHECK_INT(lt_command_write_incremental(&spec, b, id, sizeof(id), err_g,
                                                           sizeof(err_g)),
                              LT_OK);
                    CHECK_MSG(!strcmp(lt_buf_str(a), lt_buf_str(b)),
                              "p%d s%zu b%zu t%zu:\n  built   %s\n  written %s", p, si, bi, ti,
                              lt_buf_str(a), lt_buf_str(b));
                    CHECK_STR(id, "cmd-fixed.1");
                    lt_command_destroy(c);
                    lt_buf_destroy(a);
                    lt_buf_destroy(b);
                }

    /* a fresh id: the builder's format, new each time */
    lt_command_spec_t spec = {
        .tenant_id = "t", .account_id = "a", .provider = LT_PROVIDER_IMAP, .requested_by = "s"};
    char id1[64], id2[64];
    lt_buf_t *b = lt_buf_new(4096);
    CHECK_INT(lt_command_write_incremental(&spec, b, id1, sizeof(id1), err_g, sizeof(err_g)),
              LT_OK);
    CHECK_INT(lt_command_write_incremental(&spec, b, id2, sizeof(id2), err_g, sizeof(err_g)),
              LT_OK);
    CHECK_MSG(!strncmp(id1, "cmd-", 4) && strlen(id1) == 36 && strcmp(id1, id2), "fresh ids %s %s",
              id1, id2);
    CHECK(strstr(lt_buf_str(b), id1) && strstr(lt_buf_str(b), id2));
    lt_buf_destroy(b);

    /* refusals: the builder's reason, nothing appended */
    static const char long_id[] =
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    static const lt_command_spec_t bad[] = {
        {.command_id = "c 1",
         .tenant_id = "t",
         .account_id = "a",
         .provider = LT_PROVIDER_IMAP,
         .requested_by = "s"},
        {.tenant_id = long_id,
         .account_id = "a",
         .provider = LT_PROVIDER_IMAP,
         .requested_by = "s"},
        {.account_id = "a", .provider = LT_PROVIDER_IMAP, .requested_by = "s"},
        {.tenant_id = "t", .account_id = "", .provider = LT_PROVIDER_IMAP, .requested_by = "s"},
        {.tenant_id = "t", .account_id = "a", .provider = (lt_provider_t)77, .requested_by = "s"},
        {.tenant_id = "t",
         .account_id = "a",
         .provider = LT_PROVIDER_GMAIL,
         .scope = "x\ty",
         .requested_by = "s"},
        {.tenant_id = "t",
         .account_id = "a",
         .provider = LT_PROVIDER_GMAIL,
         .scope = "\xff",
         .requested_by = "s"},
        {.tenant_id = "t", .account_id = "a", .provider = LT_PROVIDER_GMAIL, .requested_by = NULL},
        {.tenant_id = "t",
         .account_id = "a",
         .provider = LT_PROVIDER_GMAIL,
         .requested_by = "s",
         .traceparent = "00-zz"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char e1[256] = "", e2[256] = "";
        lt_command_t *c = NULL;
        lt_buf_t *out = lt_buf_new(4096);
        lt_err_t r1 = lt_command_new_incremental(&bad[i], &c, e1, sizeof(e1));
        lt_err_t r2 = lt_command_write_incremental(&bad[i], out, NULL, 0, e2, sizeof(e2));
        CHECK_MSG(r1 == LT_ERR_INVALID && r2 == LT_ERR_INVALID, "bad %zu: %d %d", i, r1, r2);
        /* the same field named (the builder's parse finds invalid UTF-8
         * in the whole document first; the writer names the field) */
        CHECK_MSG(!strncmp(e1, e2, strcspn(e1, ":")) ||
                      (strstr(e1, "UTF-8") && !strcmp(e2, "scope: not valid UTF-8")),
                  "bad %zu: \"%s\" vs \"%s\"", i, e1, e2);
        CHECK_INT(lt_buf_len(out), 0);
        lt_command_destroy(c);
        lt_buf_destroy(out);
    }

    /* a full buffer: LT_ERR_TOO_BIG, nothing left behind */
    lt_buf_t *small = lt_buf_new(40);
    lt_buf_append(small, "x", 1);
    CHECK_INT(lt_command_write_incremental(&spec, small, NULL, 0, err_g, sizeof(err_g)),
              LT_ERR_TOO_BIG);
    CHECK_INT(lt_buf_len(small), 1);
    lt_buf_destroy(small);
}

int main(void)
{
    char err[512];

    for (size_t i = 0; i < sizeof(k_bad) / sizeof(k_bad[0]); i++) {
        lt_command_t *c = (lt_command_t *)1;
        err[0] = 0;
        lt_err_t r = lt_command_parse(k_bad[i].json, strlen(k_bad[i].json), &c, err, sizeof(err));
        CHECK_MSG(r == LT_ERR_INVALID, "row %zu accepted (%d): %s", i, r, k_bad[i].json);
        CHECK_MSG(c == NULL, "row %zu: out not NULL", i);
        CHECK_MSG(strstr(err, k_bad[i].reason) != NULL, "row %zu: \"%s\" lacks \"%s\"", i, err,
                  k_bad[i].reason);
        if (r == LT_OK)
            lt_command_destroy(c);
    }

    for (size_t i = 0; i < sizeof(k_good) / sizeof(k_good[0]); i++) {
        const good_t *g = &k_good[i];
        lt_command_t *c = NULL;
        lt_err_t r = lt_command_parse(g->json, strlen(g->json), &c, err, sizeof(err));
        CHECK_MSG(r == LT_OK, "good row %zu rejected: %s", i, err);
        if (!c)
            continue;
        CHECK_STR(lt_command_id(c), "c1");
        CHECK_STR(lt_command_account_id(c), "a1");
        CHECK_INT(lt_command_provider(c), g->provider);
        CHECK_INT(lt_command_kind(c), g->kind);
        CHECK_MSG(str_eq(lt_command_scope(c), g->scope), "good row %zu: scope", i);
        CHECK_MSG(str_eq(lt_command_backfill_start_date(c), g->start_date), "row %zu", i);
        CHECK_MSG(str_eq(lt_command_backfill_end_date(c), g->end_date), "row %zu", i);
        CHECK_MSG(str_eq(lt_command_backfill_folder(c), g->folder), "row %zu", i);
        CHECK_INT(lt_command_backfill_start_uid(c), g->start_uid);
        CHECK_INT(lt_command_backfill_end_uid(c), g->end_uid);
        CHECK_MSG(str_eq(lt_command_traceparent(c), g->traceparent), "row %zu", i);
        check_round_trip(c, g->json);
        lt_command_destroy(c);
    }

    /* A fraction of a second is kept as sent. */
    const char *frac = DOC_NT(GI "," BY ",\"requested_at\":\"2025-01-02T03:04:05.123456789Z\"");
    lt_command_t *c = NULL;
    CHECK_INT(lt_command_parse(frac, strlen(frac), &c, err, sizeof(err)), LT_OK);
    if (c) {
        CHECK_STR(lt_command_requested_at(c), "2025-01-02T03:04:05.123456789Z");
        CHECK_INT(lt_command_requested_at_unix(c), 1735787045);
    }
    lt_command_destroy(c);

    test_builders();
    test_key_and_limits();

    /* The examples shared with the JSON Schema check. */
    CHECK(parse_dir("valid", 1) >= 10);
    CHECK(parse_dir("invalid", 0) >= 30);
    CHECK(parse_dir("invalid-c-only", 0) >= 5);

    test_inbox_case();
    test_write_incremental();
    return lt_test_done("test_command");
}
