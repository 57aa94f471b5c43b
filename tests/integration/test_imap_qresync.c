/* CONDSTORE / QRESYNC (RFC 7162) against the real Dovecot of the local
 * stack: in a folder of its own, append messages, record HIGHESTMODSEQ,
 * change the flags of one (UID STORE) and expunge another (UID EXPUNGE) on a
 * second, writing connection, then EXAMINE with QRESYNC from the recorded
 * state: the VANISHED (EARLIER) UIDs and the changed FLAGS must be exactly
 * those. Then UID FETCH CHANGEDSINCE and UID SEARCH ALL must agree, and a
 * client told to ignore the extensions falls back to UID SEARCH ALL. */
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_imap_client.h"
#include "lt_test.h"

static const char *host, *ca, *user, *pass;
static int port;

static lt_imap_t *connect_login(unsigned hide)
{
    char err[512];
    lt_imap_opts_t o = {.host = host,
                        .port = port,
                        .tls = 1,
                        .ca_file = ca,
                        .io_timeout_ms = 30000,
                        .hide_caps = hide};
    lt_imap_t *c = lt_imap_new(&o);
    lt_err_t e = lt_imap_connect(c, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "connect: %s", err);
    e = lt_imap_login(c, user, pass, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "login: %s", err);
    return c;
}

typedef struct {
    lt_buf_t *log;
    uint64_t max_modseq;
    int nchanged;
} rec_t;

static lt_err_t on_changed(void *o, uint32_t uid, const char *const *flags, size_t n,
                           uint64_t modseq)
{
    rec_t *r = o;
    lt_buf_appendf(r->log, "changed %u (", uid);
    for (size_t i = 0; i < n; i++)
        if (strcmp(flags[i], "\\Recent")) /* session-dependent */
            lt_buf_appendf(r->log, "%s%s", lt_buf_str(r->log)[lt_buf_len(r->log) - 1] == '(' ? "" : " ",
                           flags[i]);
    lt_buf_appendf(r->log, ");");
    if (modseq > r->max_modseq)
        r->max_modseq = modseq;
    r->nchanged++;
    return LT_OK;
}

static lt_err_t on_vanished(void *o, const lt_imap_range_t *rg, size_t n, int earlier)
{
    rec_t *r = o;
    lt_buf_appendf(r->log, "vanished%s", earlier ? " earlier" : "");
    for (size_t i = 0; i < n; i++)
        lt_buf_appendf(r->log, " %u:%u", rg[i].lo, rg[i].hi);
    lt_buf_appendf(r->log, ";");
    return LT_OK;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    host = lt_test_env("LATTICE_TEST_IMAP_HOST");
    port = atoi(lt_test_env("LATTICE_TEST_IMAP_PORT"));
    ca = lt_test_env("LATTICE_CA_FILE");
    user = lt_test_env("LATTICE_TEST_IMAP_USER");
    pass = lt_test_env("LATTICE_TEST_IMAP_PASSWORD");
    char err[512], exp[256];
    lt_err_t e;

    lt_imap_t *w = connect_login(0); /* the writing connection */
    CHECK_MSG(lt_imap_has_cap(w, "CONDSTORE") && lt_imap_has_cap(w, "QRESYNC") &&
                  lt_imap_has_cap(w, "ENABLE") && lt_imap_has_cap(w, "UIDPLUS"),
              "Dovecot lacks CONDSTORE/QRESYNC/ENABLE/UIDPLUS");
    char name[96];
    snprintf(name, sizeof(name), "lattice-qresync-%ld-%ld", (long)time(NULL), (long)getpid());
    e = lt_imap_create(w, name, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "create: %s", err);
    enum { N = 5 };
    uint32_t uids[N];
    for (unsigned i = 0; i < N; i++) {
        char msg[256];
        int n = snprintf(msg, sizeof(msg),
                         "From: a@example.test\r\nSubject: q%u\r\nMessage-ID: <q%u.%ld@lattice.test>"
                         "\r\n\r\nbody %u\r\n",
                         i, i, (long)getpid(), i);
        e = lt_imap_append(w, name, &(lt_imap_message_t){.data = msg, .len = (size_t)n},
                           &uids[i], err, sizeof(err));
        CHECK_MSG(e == LT_OK && uids[i], "append %u: %s", i, err);
    }

    /* The state a client would have recorded. */
    lt_imap_t *r = connect_login(0);
    unsigned en = 0;
    e = lt_imap_enable(r, "QRESYNC", &en, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "enable: %s", err);
    CHECK_INT(en, LT_IMAP_CAP_QRESYNC | LT_IMAP_CAP_CONDSTORE);
    lt_imap_mailbox_t mb0;
    e = lt_imap_examine(r, name, &mb0, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine: %s", err);
    CHECK_MSG(mb0.highestmodseq > 0 && !mb0.nomodseq, "no HIGHESTMODSEQ (%llu)",
              (unsigned long long)mb0.highestmodseq);
    CHECK_INT(mb0.exists, N);
    lt_imap_range_t *all = NULL;
    size_t nall = 0;
    e = lt_imap_uid_search_all(r, &all, &nall, err, sizeof(err));
    CHECK_MSG(e == LT_OK && nall == 1 && all[0].lo == uids[0] && all[0].hi == uids[N - 1],
              "search all before: %s (%zu ranges)", err, nall);
    free(all);
    lt_imap_logout(r, err, sizeof(err));
    lt_imap_destroy(r);

    /* The changes: flags of message 2, message 4 expunged. */
    lt_imap_mailbox_t mbw;
    e = lt_imap_select(w, name, &mbw, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "select: %s", err);
    e = lt_imap_uid_store(w, uids[1], "+FLAGS", "\\Flagged $Lattice", err, sizeof(err));
    CHECK_MSG(e == LT_OK, "store: %s", err);
    e = lt_imap_uid_expunge(w, uids[3], err, sizeof(err));
    CHECK_MSG(e == LT_OK, "expunge: %s", err);

    /* Resynchronise from the recorded state. */
    r = connect_login(0);
    e = lt_imap_enable(r, "QRESYNC", &en, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "enable: %s", err);
    rec_t rec = {.log = lt_buf_new(4096)};
    lt_imap_changes_cb_t cb = {on_changed, on_vanished, &rec};
    lt_imap_range_t known[] = {{uids[0], uids[N - 1]}};
    lt_imap_qresync_t q = {mb0.uidvalidity, mb0.highestmodseq, known, 1};
    lt_imap_mailbox_t mb;
    e = lt_imap_examine_qresync(r, name, &q, &mb, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine qresync: %s", err);
    CHECK_INT(mb.uidvalidity, mb0.uidvalidity);
    CHECK_INT(mb.exists, N - 1);
    CHECK_MSG(mb.highestmodseq > mb0.highestmodseq, "HIGHESTMODSEQ %llu after %llu",
              (unsigned long long)mb.highestmodseq, (unsigned long long)mb0.highestmodseq);
    snprintf(exp, sizeof(exp), "vanished earlier %u:%u;changed %u (\\Flagged $Lattice);",
             uids[3], uids[3], uids[1]);
    CHECK_STR(lt_buf_str(rec.log), exp);
    CHECK_MSG(rec.max_modseq > mb0.highestmodseq && rec.max_modseq <= mb.highestmodseq,
              "changed modseq %llu", (unsigned long long)rec.max_modseq);
    printf("QRESYNC from HIGHESTMODSEQ %llu: %s (now %llu)\n",
           (unsigned long long)mb0.highestmodseq, lt_buf_str(rec.log),
           (unsigned long long)mb.highestmodseq);

    /* The same changes with UID FETCH CHANGEDSINCE ... VANISHED. */
    lt_buf_reset(rec.log);
    e = lt_imap_uid_fetch_changed(r, known, 1, mb0.highestmodseq, 1, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "fetch changed: %s", err);
    CHECK_STR(lt_buf_str(rec.log), exp);
    /* Nothing changed since the current HIGHESTMODSEQ. */
    lt_buf_reset(rec.log);
    e = lt_imap_uid_fetch_changed(r, known, 1, mb.highestmodseq, 1, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "fetch changed (none): %s", err);
    CHECK_STR(lt_buf_str(rec.log), "");

    /* An expunge by another session while examined: VANISHED, EARLIER or not
     * depending on whether the server announced it before this command. */
    e = lt_imap_uid_expunge(w, uids[0], err, sizeof(err));
    CHECK_MSG(e == LT_OK, "expunge 2: %s", err);
    lt_buf_reset(rec.log);
    e = lt_imap_uid_fetch_changed(r, known, 1, mb.highestmodseq, 1, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "fetch changed (after expunge): %s", err);
    char exp2[64];
    snprintf(exp, sizeof(exp), "vanished earlier %u:%u;", uids[0], uids[0]);
    snprintf(exp2, sizeof(exp2), "vanished %u:%u;", uids[0], uids[0]);
    CHECK_MSG(!strcmp(lt_buf_str(rec.log), exp) || !strcmp(lt_buf_str(rec.log), exp2),
              "got \"%s\"", lt_buf_str(rec.log));
    lt_imap_range_t *after = NULL;
    size_t nafter = 0;
    e = lt_imap_uid_search_all(r, &after, &nafter, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "search all after: %s", err);
    CHECK_INT(nafter, 2); /* uids[1..2], uids[4] */
    if (nafter == 2)
        CHECK(after[0].lo == uids[1] && after[0].hi == uids[2] && after[1].lo == uids[4] &&
              after[1].hi == uids[4]);
    free(after);
    CHECK_INT(lt_imap_exists(r), N - 2);
    lt_imap_logout(r, err, sizeof(err));
    lt_imap_destroy(r);

    /* A client ignoring the extensions: nothing enabled, the fallback works. */
    r = connect_login(LT_IMAP_CAP_CONDSTORE | LT_IMAP_CAP_QRESYNC);
    e = lt_imap_enable(r, "QRESYNC", &en, err, sizeof(err));
    CHECK_MSG(e == LT_OK && en == 0, "enable hidden: %s", err);
    CHECK_INT(lt_imap_examine_qresync(r, name, &q, &mb, &cb, err, sizeof(err)), LT_ERR_INVALID);
    e = lt_imap_examine(r, name, &mb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine: %s", err);
    e = lt_imap_uid_search_all(r, &after, &nafter, err, sizeof(err));
    CHECK_MSG(e == LT_OK && nafter == 2, "fallback search: %s", err);
    free(after);
    lt_imap_logout(r, err, sizeof(err));
    lt_imap_destroy(r);

    e = lt_imap_logout(w, err, sizeof(err));
    lt_imap_destroy(w);
    w = connect_login(0);
    e = lt_imap_delete(w, name, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "delete: %s", err);
    lt_imap_destroy(w);
    lt_buf_destroy(rec.log);
    return lt_test_done("test_imap_qresync");
}
