/* lib/state/lt_known against the stack's Postgres (a scratch database):
 * a batch's known-set changes are staged with its pending row and applied
 * with it (committed) or dropped with it (aborted); the last operation of a
 * message in a batch wins, a forget clears what came before; ids with
 * quotes, backslashes and commas survive the array literal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_accounts.h"
#include "lt_db.h"
#include "lt_known.h"
#include "lt_migrate.h"
#include "lt_test.h"
#include "lt_test_db.h"
#include "lt_watermark.h"

static char g_err[1024];
#define E g_err, sizeof(g_err)

typedef struct {
    char all[4096];
    int n;
} ids_t;

static int collect(const char *id, const char *state, void *opaque)
{
    ids_t *x = opaque;
    size_t l = strlen(x->all);
    snprintf(x->all + l, sizeof(x->all) - l, "[%s]", id);
    if (state) {
        l = strlen(x->all);
        snprintf(x->all + l, sizeof(x->all) - l, "=%s;", state);
    }
    x->n++;
    return 0;
}

/* 1 when the scope's known set is exactly the n ids given. */
static int known_is(lt_db_t *db, const lt_watermark_key_t *k, int n, const char *const *ids)
{
    ids_t x = {{0}, 0};
    if (lt_known_each(db, k, collect, &x, E)) {
        fprintf(stderr, "lt_known_each: %s\n", g_err);
        return 0;
    }
    int ok = x.n == n;
    for (int i = 0; ok && i < n; i++) {
        char want[600];
        snprintf(want, sizeof(want), "[%s]", ids[i]);
        ok = strstr(x.all, want) != NULL;
    }
    if (!ok)
        fprintf(stderr, "known set is %d: %s (want %d)\n", x.n, x.all, n);
    return ok;
}

static lt_watermark_pending_t pending_of(const char *cmd, int64_t off, uint32_t last_uid)
{
    lt_watermark_pending_t p;
    memset(&p, 0, sizeof(p));
    p.wm.uidvalidity = 7;
    p.wm.last_uid = last_uid;
    snprintf(p.command_id, sizeof(p.command_id), "%s", cmd);
    snprintf(p.marker_topic, sizeof(p.marker_topic), "lattice.mail.checkpoints.v1");
    p.marker_partition = 0;
    p.marker_offset = off;
    return p;
}

static void test_known(lt_db_t *db)
{
    CHECK(lt_account_upsert(db,
                            &(lt_account_row_t){.tenant = "t1",
                                                .account_id = "imap-a",
                                                .provider = "imap",
                                                .enabled = 1,
                                                .config_json = "{\"host\":\"h\",\"username\":\"u\"}"},
                            E) == LT_OK);
    lt_watermark_key_t k = {"t1", "imap-a", "INBOX", "imap"};
    lt_watermark_key_t other = {"t1", "imap-a", "Archive", "imap"};
    const char *odd = "INBOX/7/\"quoted\",\\back{x}";

    /* batch 1: committed -> applied with its pending row */
    lt_known_delta_t *d = lt_known_delta_new();
    lt_known_delta_add(d, "INBOX/7/1");
    lt_known_delta_add(d, "INBOX/7/2");
    lt_known_delta_add(d, odd);
    lt_known_delta_add(d, "INBOX/7/3");
    lt_known_delta_del(d, "INBOX/7/3"); /* added then deleted in one batch: absent */
    CHECK_INT(lt_known_delta_count(d), 5);
    CHECK_MSG(lt_known_stage(db, &k, d, E) == LT_OK, "%s", g_err);
    lt_watermark_pending_t p1 = pending_of("cmd-1", 10, 3);
    CHECK_MSG(lt_watermark_pending_put(db, &k, &p1, E) == LT_OK, "%s", g_err);
    CHECK(known_is(db, &k, 0, NULL)); /* nothing before the apply */
    int stored = 0;
    CHECK_MSG(lt_watermark_pending_apply(db, &k, &p1, &stored, E) == LT_OK, "%s", g_err);
    const char *after1[] = {"INBOX/7/1", "INBOX/7/2", odd};
    CHECK(known_is(db, &k, 3, after1));
    CHECK(known_is(db, &other, 0, NULL));

    /* batch 2: aborted -> dropped with its pending row */
    lt_known_delta_reset(d);
    lt_known_delta_del(d, "INBOX/7/1");
    lt_known_delta_add(d, "INBOX/7/9");
    CHECK(lt_known_stage(db, &k, d, E) == LT_OK);
    lt_watermark_pending_t p2 = pending_of("cmd-2", 11, 9);
    CHECK(lt_watermark_pending_put(db, &k, &p2, E) == LT_OK);
    CHECK_MSG(lt_watermark_pending_discard(db, &k, &p2, E) == LT_OK, "%s", g_err);
    CHECK(known_is(db, &k, 3, after1));
    long long staged = -1;
    {
        PGresult *r = NULL;
        CHECK(lt_db_exec(db,
                         &(lt_db_query_t){.what = "staged",
                                          .sql = "SELECT count(*) FROM mail_known_pending",
                                          .nparams = 0},
                         &r, E) == LT_OK);
        if (r) {
            staged = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            PQclear(r);
        }
    }
    CHECK_INT(staged, 0);

    /* a stage that never got its pending row is replaced by the next one */
    lt_known_delta_reset(d);
    lt_known_delta_add(d, "INBOX/7/50");
    CHECK(lt_known_stage(db, &k, d, E) == LT_OK);
    lt_known_delta_reset(d);
    lt_known_delta_del(d, "INBOX/7/1");
    lt_known_delta_add(d, "INBOX/7/4");
    CHECK(lt_known_stage(db, &k, d, E) == LT_OK);
    lt_watermark_pending_t p3 = pending_of("cmd-3", 12, 4);
    CHECK(lt_watermark_pending_put(db, &k, &p3, E) == LT_OK);
    CHECK(lt_watermark_pending_apply(db, &k, &p3, &stored, E) == LT_OK);
    const char *after3[] = {"INBOX/7/2", odd, "INBOX/7/4"};
    CHECK(known_is(db, &k, 3, after3));

    /* forget (UIDVALIDITY changed): only what follows it remains */
    lt_known_delta_reset(d);
    lt_known_delta_add(d, "INBOX/7/5");
    lt_known_delta_forget(d);
    lt_known_delta_add(d, "INBOX/8/1");
    lt_known_delta_del(d, "INBOX/8/1");
    lt_known_delta_add(d, "INBOX/8/1"); /* deleted then back: present */
    lt_known_delta_add(d, "INBOX/8/2");
    CHECK_MSG(lt_known_apply_now(db, &k, d, E) == LT_OK, "%s", g_err);
    const char *after4[] = {"INBOX/8/1", "INBOX/8/2"};
    CHECK(known_is(db, &k, 2, after4));
    long long n = -1;
    CHECK(lt_known_count(db, &k, &n, E) == LT_OK);
    CHECK_INT(n, 2);

    /* states: set with a change, kept by a later add, replaced by the
     * next set, gone with a delete; set on an unknown message adds it */
    lt_known_delta_reset(d);
    lt_known_delta_set(d, "INBOX/8/1", "\\Seen");
    lt_known_delta_set(d, "INBOX/8/3", "\\Flagged \\Seen");
    CHECK(lt_known_apply_now(db, &k, d, E) == LT_OK);
    lt_known_delta_reset(d);
    lt_known_delta_add(d, "INBOX/8/1");
    lt_known_delta_set(d, "INBOX/8/2", "$Important");
    lt_known_delta_set(d, "INBOX/8/3", "");
    CHECK(lt_known_apply_now(db, &k, d, E) == LT_OK);
    {
        ids_t x = {{0}, 0};
        CHECK(lt_known_each(db, &k, collect, &x, E) == LT_OK);
        CHECK_INT(x.n, 3);
        CHECK_MSG(strstr(x.all, "[INBOX/8/1]=\\Seen;") != NULL, "%s", x.all);
        CHECK_MSG(strstr(x.all, "[INBOX/8/2]=$Important;") != NULL, "%s", x.all);
        CHECK_MSG(strstr(x.all, "[INBOX/8/3]=;") != NULL, "%s", x.all);
    }
    lt_known_delta_reset(d);
    lt_known_delta_del(d, "INBOX/8/3");
    CHECK(lt_known_apply_now(db, &k, d, E) == LT_OK);
    CHECK(known_is(db, &k, 2, after4));

    /* 20,000 ids in one batch (a large first sync step) */
    lt_known_delta_reset(d);
    char id[64];
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "Archive/3/%d", i + 1);
        lt_known_delta_add(d, id);
    }
    CHECK_MSG(lt_known_apply_now(db, &other, d, E) == LT_OK, "%s", g_err);
    CHECK(lt_known_count(db, &other, &n, E) == LT_OK);
    CHECK_INT(n, 20000);
    CHECK(lt_known_count(db, &k, &n, E) == LT_OK);
    CHECK_INT(n, 2);
    lt_known_delta_destroy(d);
}

int main(void)
{
    lt_scratch_t s;
    if (lt_scratch_create(&s, "known") != 0)
        return lt_test_done("test_known (no scratch)") | 1;
    lt_db_t *db = lt_scratch_connect(&s);
    CHECK(db != NULL);
    if (db) {
        int applied = 0;
        lt_err_t e = lt_migrate_apply(db, LT_SOURCE_DIR "/migrations", NULL, NULL, &applied, E);
        CHECK_MSG(e == LT_OK, "%s", g_err);
        if (e == LT_OK)
            test_known(db);
        lt_db_destroy(db);
    }
    lt_scratch_drop(&s);
    return lt_test_done("test_known");
}
