/* Scripted-peer tests of the IMAP client (after curl's tests/data/test800):
 * a peer thread on a socketpair plays a script -- expect the client's exact
 * line, send a canned response -- so each test asserts the exact command
 * sequence the client sent, and how it handles what came back. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_imap_client.h"
#include "lt_test.h"

/* Script steps: 'C' expect this client line (without CRLF); 'R' expect these
 * raw bytes; 'S' send; 'P' pause 30 ms (so the next send arrives in a later
 * read); 'W' stay silent for 600 ms; 'X' close the connection. */
typedef struct {
    char op;
    const char *s;
} step_t;

typedef struct {
    int fd;
    const step_t *steps;
    char fail[512];
    lt_buf_t *in;
} peer_t;

static int peer_fill(peer_t *p)
{
    char b[4096];
    ssize_t n = recv(p->fd, b, sizeof(b), 0);
    if (n <= 0)
        return -1;
    lt_buf_append(p->in, b, (size_t)n);
    return 0;
}

static void *peer_main(void *arg)
{
    peer_t *p = arg;
    struct timeval tv = {.tv_sec = 30}; /* a hang guard: a loaded machine may be slow */
    setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (const step_t *s = p->steps; s->op; s++) {
        if (s->op == 'S') {
            if (send(p->fd, s->s, strlen(s->s), MSG_NOSIGNAL) < 0) {
                snprintf(p->fail, sizeof(p->fail), "send failed at \"%.40s\"", s->s);
                break;
            }
        } else if (s->op == 'P') {
            struct timespec ts = {0, 30 * 1000 * 1000};
            nanosleep(&ts, NULL);
        } else if (s->op == 'W') {
            struct timespec ts = {0, 600 * 1000 * 1000};
            nanosleep(&ts, NULL);
        } else if (s->op == 'X') {
            break;
        } else { /* C or R */
            size_t want = strlen(s->s) + (s->op == 'C' ? 2 : 0);
            while (lt_buf_len(p->in) < want && peer_fill(p) == 0)
                ;
            int ok = lt_buf_len(p->in) >= want && !memcmp(lt_buf_data(p->in), s->s, strlen(s->s)) &&
                     (s->op == 'R' || !memcmp(lt_buf_data(p->in) + want - 2, "\r\n", 2));
            if (!ok) {
                snprintf(p->fail, sizeof(p->fail), "expected %s \"%s\", client sent \"%.*s\"",
                         s->op == 'C' ? "line" : "bytes", s->s,
                         (int)(lt_buf_len(p->in) > 200 ? 200 : lt_buf_len(p->in)),
                         lt_buf_str(p->in));
                break;
            }
            lt_buf_consume(p->in, want);
        }
    }
    shutdown(p->fd, SHUT_WR);
    /* Nothing more may come from the client but EOF (LOGOUT was scripted). */
    if (!p->fail[0]) {
        while (peer_fill(p) == 0)
            ;
        if (lt_buf_len(p->in))
            snprintf(p->fail, sizeof(p->fail), "unexpected client bytes: \"%.200s\"",
                     lt_buf_str(p->in));
    }
    close(p->fd);
    return NULL;
}

typedef struct {
    pthread_t th;
    peer_t peer;
    lt_imap_t *c;
} session_t;

static lt_err_t start(session_t *s, const step_t *steps, const lt_imap_opts_t *extra, char *err,
                      size_t errsz)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        abort();
    memset(&s->peer, 0, sizeof(s->peer));
    s->peer.fd = sv[1];
    s->peer.steps = steps;
    s->peer.in = lt_buf_new(1 << 20);
    pthread_create(&s->th, NULL, peer_main, &s->peer);
    lt_imap_opts_t o = {.host = "peer", .io_timeout_ms = 30000};
    if (extra)
        o = *extra;
    s->c = lt_imap_new(&o);
    return lt_imap_connect_fd(s->c, sv[0], err, errsz);
}

/* Destroy the client, join the peer and check it saw exactly its script. */
static void finish(session_t *s, const char *name)
{
    lt_imap_destroy(s->c);
    pthread_join(s->th, NULL);
    CHECK_MSG(s->peer.fail[0] == 0, "%s: peer: %s", name, s->peer.fail);
    lt_buf_destroy(s->peer.in);
}

/* ---- a recording fetch callback ---- */

typedef struct {
    lt_buf_t *log;
    size_t max_chunk;
    int abort_at_data;
} fetch_rec_t;

static lt_err_t f_begin(void *o, uint32_t uid, uint64_t size, int64_t date)
{
    fetch_rec_t *r = o;
    lt_buf_appendf(r->log, "begin %u %llu %lld|", uid, (unsigned long long)size, (long long)date);
    return LT_OK;
}

static lt_err_t f_data(void *o, const uint8_t *d, size_t n)
{
    fetch_rec_t *r = o;
    if (r->abort_at_data)
        return LT_ERR_FINAL;
    lt_buf_append(r->log, d, n);
    if (n > r->max_chunk)
        r->max_chunk = n;
    return LT_OK;
}

static lt_err_t f_end(void *o)
{
    fetch_rec_t *r = o;
    lt_buf_appendf(r->log, "|end;");
    return LT_OK;
}

static void f_skipped(void *o, uint32_t uid, lt_err_t why, const char *reason)
{
    fetch_rec_t *r = o;
    lt_buf_appendf(r->log, "skipped %u %s;", uid, lt_err_name(why));
}

#define DATE "\"17-Jul-1996 02:44:25 -0700\""
#define DATE_MS "837596665000"

/* 1. SASL-IR login, ID, LIST, EXAMINE of a non-ASCII folder, searches, a
 * pipelined UID FETCH with a split literal, EXISTS mid-FETCH, a UID after
 * the body, LOGOUT. */
static void test_happy_path(void)
{
    const step_t steps[] = {
        {'S', "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN ID] ready\r\n"},
        {'C', "A1 AUTHENTICATE PLAIN AHVzZXIAcMOkc3M="}, /* "\0user\0pä ss" */
        {'S', "A1 OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS ID] Logged in\r\n"},
        {'C', "A2 ID (\"name\" \"lattice-mail-ingest\" \"version\" \"" LT_VERSION "\")"},
        {'S', "* ID NIL\r\nA2 OK ID completed.\r\n"},
        {'C', "A3 LIST \"\" \"*\""},
        {'S', "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
              "* LIST (\\HasChildren) \"/\" \"Entw&APw-rfe\"\r\n"
              "* LIST (\\HasNoChildren) \"/\" \"Entw&APw-rfe/&ZeVnLIqe- 2024\"\r\n"
              "* LIST (\\HasNoChildren \\Sent) \"/\" {10}\r\nSent Items\r\n"
              "* LIST (\\Noselect) \"/\" \"bad&-&Jjo\"\r\n"
              "A3 OK List completed.\r\n"},
        {'C', "A4 EXAMINE \"Entw&APw-rfe/&ZeVnLIqe- 2024\""},
        {'S', "* FLAGS (\\Answered \\Seen)\r\n* OK [PERMANENTFLAGS ()] ro\r\n* 3 EXISTS\r\n"
              "* 0 RECENT\r\n* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
              "* OK [UIDNEXT 8] Predicted next UID\r\nA4 OK [READ-ONLY] Examine completed.\r\n"},
        {'C', "A5 UID SEARCH UID 8:*"},
        {'S', "* SEARCH 7\r\nA5 OK Search completed.\r\n"},
        {'C', "A6 UID SEARCH UID 1:*"},
        {'S', "* SEARCH 5 3 7\r\nA6 OK Search completed.\r\n"},
        {'C', "A7 UID FETCH 3,5 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"},
        {'C', "A8 UID FETCH 7 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"},
        {'S', "* 1 FETCH (UID 3 RFC822.SIZE 7 INTERNALDATE " DATE " BODY[] {7}\r\nab"},
        {'P', ""},
        {'S', "\r\n"},
        {'P', ""},
        {'S', "cde)\r\n* 4 EXISTS\r\n"},
        {'S', "* 2 FETCH (UID 5 RFC822.SIZE 3 INTERNALDATE " DATE " BODY[] {3}"},
        {'P', ""},
        {'S', "\r\nxyz FLAGS (\\Recent))\r\nA7 OK Fetch completed.\r\n"},
        {'S', "* 3 FETCH (BODY[] {2}\r\nhi UID 7 INTERNALDATE " DATE ")\r\n"
              "A8 OK Fetch completed.\r\n"},
        {'C', "A9 LOGOUT"},
        {'S', "* BYE Logging out\r\nA9 OK Logout completed.\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_imap_opts_t o = {
        .host = "peer", .io_timeout_ms = 30000, .fetch_batch = 2, .fetch_pipeline = 2};
    lt_err_t e = start(&s, steps, &o, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "connect: %s", err);
    CHECK(lt_imap_has_cap(s.c, "sasl-ir"));
    e = lt_imap_login(s.c, "user", "p\xc3\xa4ss", err, sizeof(err));
    CHECK_MSG(e == LT_OK, "login: %s", err);
    CHECK(lt_imap_has_cap(s.c, "UIDPLUS"));
    CHECK(!lt_imap_has_cap(s.c, "AUTH=PLAIN")); /* replaced by the post-login list */

    lt_imap_folder_t *f = NULL;
    size_t nf = 0;
    e = lt_imap_list(s.c, &f, &nf, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "list: %s", err);
    CHECK_INT(nf, 5);
    if (nf == 5) {
        CHECK_STR(f[0].name, "INBOX");
        CHECK_STR(f[1].name, "Entw\xc3\xbcrfe");
        CHECK_STR(f[2].name, "Entw\xc3\xbcrfe/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e 2024");
        CHECK_STR(f[2].wire_name, "Entw&APw-rfe/&ZeVnLIqe- 2024");
        CHECK_INT(f[2].delimiter, '/');
        CHECK_STR(f[3].name, "Sent Items");
        CHECK_INT(f[3].flags, LT_IMAP_FOLDER_SENT);
        CHECK(f[4].name == NULL); /* invalid mUTF-7: undecodable, kept raw */
        CHECK_INT(f[4].flags, LT_IMAP_FOLDER_NOSELECT);
    }
    lt_imap_mailbox_t mb;
    e = lt_imap_examine(s.c, nf == 5 ? f[2].name : "x", &mb, err, sizeof(err));
    lt_imap_folders_free(f, nf);
    CHECK_MSG(e == LT_OK, "examine: %s", err);
    CHECK_INT(mb.uidvalidity, 1700000000u);
    CHECK_INT(mb.uidnext, 8);
    CHECK_INT(mb.exists, 3);
    CHECK_INT(mb.read_only, 1);

    uint32_t *uids = NULL;
    size_t n = 99;
    e = lt_imap_uid_search(s.c, 8, 0, &uids, &n, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "search: %s", err);
    CHECK_INT(n, 0); /* "8:*" answered with 7, the highest: filtered */
    free(uids);
    e = lt_imap_uid_search(s.c, 1, 0, &uids, &n, err, sizeof(err));
    CHECK_INT(n, 3);
    if (n == 3)
        CHECK(uids[0] == 3 && uids[1] == 5 && uids[2] == 7);

    fetch_rec_t r = {.log = lt_buf_new(1 << 16)};
    lt_imap_fetch_cb_t cb = {f_begin, f_data, f_end, f_skipped, &r, NULL};
    e = lt_imap_uid_fetch(s.c, uids, n, &cb, err, sizeof(err));
    free(uids);
    CHECK_MSG(e == LT_OK, "fetch: %s", err);
    CHECK_STR(lt_buf_str(r.log), "begin 3 7 " DATE_MS "|ab\r\ncde|end;"
                                 "begin 5 3 " DATE_MS "|xyz|end;"
                                 "begin 7 2 " DATE_MS "|hi|end;");
    CHECK_INT(lt_imap_exists(s.c), 4);
    lt_buf_destroy(r.log);
    e = lt_imap_logout(s.c, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "logout: %s", err);
    finish(&s, "happy path");
}

/* 2. NO on AUTHENTICATE (no SASL-IR: initial response after "+") -> REAUTH. */
static void test_auth_no(void)
{
    const step_t steps[] = {
        {'S', "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"},
        {'C', "A1 AUTHENTICATE PLAIN"},
        {'S', "+ \r\n"},
        {'C', "AHUAd3Jvbmc="},
        {'S', "A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    lt_err_t e = lt_imap_login(s.c, "u", "wrong", err, sizeof(err));
    CHECK_INT(e, LT_ERR_REAUTH);
    CHECK_MSG(strstr(err, "AUTHENTICATIONFAILED") != NULL, "%s", err);
    CHECK_MSG(strstr(err, "wrong") == NULL, "password in the error: %s", err);
    finish(&s, "auth NO");
}

/* 2b. A server that echoes the password in its NO answer, as sent and in
 * its quoted form: the error keeps the reason, never the password. */
static void test_auth_no_echo(void)
{
    const step_t steps[] = {
        {'S', "* OK [CAPABILITY IMAP4rev1] ready\r\n"},
        {'C', "A1 LOGIN bob \"se\\\"cret-pw\""},
        {'S', "A1 NO [AUTHENTICATIONFAILED] bad password se\"cret-pw (sent as "
              "\"se\\\"cret-pw\") for bob\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    lt_err_t e = lt_imap_login(s.c, "bob", "se\"cret-pw", err, sizeof(err));
    CHECK_INT(e, LT_ERR_REAUTH);
    CHECK_MSG(strstr(err, "AUTHENTICATIONFAILED") != NULL, "%s", err);
    CHECK_MSG(strstr(err, "bad password [redacted] (sent as \"[redacted]\") for bob") != NULL, "%s",
              err);
    CHECK_MSG(strstr(err, "cret-pw") == NULL, "password in the error: %s", err);
    finish(&s, "auth NO echo");
}

/* 3. [UNAVAILABLE] on login is temporary; LOGIN fallback with a
 * synchronizing literal for an 8-bit password. */
static void test_login_literal_unavailable(void)
{
    const step_t steps[] = {
        {'S', "* OK IMAP4rev1 ready\r\n"}, /* no capabilities in the greeting: ask */
        {'C', "A1 CAPABILITY"},
        {'S', "* CAPABILITY IMAP4rev1 IDLE\r\nA1 OK done\r\n"},
        {'C', "A2 LOGIN \"bob smith\" {7}"},
        {'S', "+ go ahead\r\n"},
        {'R', "p\xc3\xa4\"ss\\\r\n"},
        {'S', "A2 NO [UNAVAILABLE] Backend down\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    CHECK(lt_imap_has_cap(s.c, "IDLE"));
    lt_err_t e = lt_imap_login(s.c, "bob smith", "p\xc3\xa4\"ss\\", err, sizeof(err));
    CHECK_INT(e, LT_ERR_TEMPORARY);
    finish(&s, "login literal");
}

/* 4. XOAUTH2: error challenge answered with an empty line; REAUTH with the
 * server's JSON reason. */
static void test_xoauth2(void)
{
    const step_t steps[] = {
        {'S', "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready\r\n"},
        /* base64("user=me@x.org\1auth=Bearer tok\1\1") */
        {'C', "A1 AUTHENTICATE XOAUTH2 dXNlcj1tZUB4Lm9yZwFhdXRoPUJlYXJlciB0b2sBAQ=="},
        {'S', "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"},
        {'C', ""},
        {'S', "A1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    lt_err_t e = lt_imap_login_xoauth2(s.c, "me@x.org", "tok", err, sizeof(err));
    CHECK_INT(e, LT_ERR_REAUTH);
    CHECK_MSG(strstr(err, "{\"status\":\"401\"}") != NULL, "%s", err);
    finish(&s, "xoauth2");
}

static const char *const PREAUTH_EXAMINE[] = {
    "* PREAUTH [CAPABILITY IMAP4rev1] ready\r\n",
    "* 2 EXISTS\r\n* OK [UIDVALIDITY 9] x\r\nA1 OK [READ-ONLY] done\r\n",
};

/* 5. BYE mid-FETCH: the first message arrives, then BYE: TEMPORARY, the
 * connection is closed and later calls say so. */
static void test_bye_mid_fetch(void)
{
    const step_t steps[] = {
        {'S', PREAUTH_EXAMINE[0]},
        {'C', "A1 EXAMINE INBOX"},
        {'S', PREAUTH_EXAMINE[1]},
        {'C', "A2 UID FETCH 1:2 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"},
        {'S', "* 1 FETCH (UID 1 RFC822.SIZE 1 INTERNALDATE " DATE " BODY[] {1}\r\na)\r\n"
              "* BYE [UNAVAILABLE] Server shutting down.\r\n"},
        {'X', NULL},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_imap_mailbox_t mb;
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_examine(s.c, "INBOX", &mb, err, sizeof(err)), LT_OK);
    fetch_rec_t r = {.log = lt_buf_new(1 << 16)};
    lt_imap_fetch_cb_t cb = {f_begin, f_data, f_end, f_skipped, &r, NULL};
    uint32_t uids[] = {1, 2};
    lt_err_t e = lt_imap_uid_fetch(s.c, uids, 2, &cb, err, sizeof(err));
    CHECK_INT(e, LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(err, "BYE [UNAVAILABLE] Server shutting down.") != NULL, "%s", err);
    CHECK_STR(lt_buf_str(r.log), "begin 1 1 " DATE_MS "|a|end;");
    e = lt_imap_uid_fetch(s.c, uids, 2, &cb, err, sizeof(err));
    CHECK_INT(e, LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(err, "closed") != NULL, "%s", err);
    lt_buf_destroy(r.log);
    finish(&s, "bye mid-fetch");
}

/* 6. The connection drops in the middle of a literal: TEMPORARY. */
static void test_drop_mid_literal(void)
{
    const step_t steps[] = {
        {'S', PREAUTH_EXAMINE[0]},
        {'C', "A1 EXAMINE INBOX"},
        {'S', PREAUTH_EXAMINE[1]},
        {'C', "A2 UID FETCH 1 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"},
        {'S', "* 1 FETCH (UID 1 RFC822.SIZE 100 INTERNALDATE " DATE " BODY[] {100}\r\nabc"},
        {'X', NULL},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_imap_mailbox_t mb;
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_examine(s.c, "INBOX", &mb, err, sizeof(err)), LT_OK);
    fetch_rec_t r = {.log = lt_buf_new(1 << 16)};
    lt_imap_fetch_cb_t cb = {f_begin, f_data, f_end, f_skipped, &r, NULL};
    uint32_t uid = 1;
    lt_err_t e = lt_imap_uid_fetch(s.c, &uid, 1, &cb, err, sizeof(err));
    CHECK_INT(e, LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(err, "closed the connection") != NULL, "%s", err);
    lt_buf_destroy(r.log);
    finish(&s, "drop");
}

/* 7. Over the cap -> skipped (stream stays in sync); NIL body -> not skipped;
 * NO on FETCH -> TEMPORARY; NONEXISTENT -> NOT_FOUND; BAD -> FINAL. */
static void test_skips_and_errors(void)
{
    const step_t steps[] = {
        {'S', PREAUTH_EXAMINE[0]},
        {'C', "A1 EXAMINE INBOX"},
        {'S', PREAUTH_EXAMINE[1]},
        {'C', "A2 UID FETCH 1:3 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"},
        {'S', "* 1 FETCH (UID 1 RFC822.SIZE 20 INTERNALDATE " DATE " BODY[] {20}\r\n"
              "01234567890123456789)\r\n"
              "* 2 FETCH (UID 2 RFC822.SIZE 0 INTERNALDATE " DATE " BODY[] NIL)\r\n"
              "* 3 FETCH (UID 3 RFC822.SIZE 4 INTERNALDATE " DATE " BODY[] {4}\r\nabcd)\r\n"
              "A2 NO Some messages could not be FETCHed (Failure)\r\n"},
        {'C', "A3 EXAMINE nope"},
        {'S', "A3 NO [NONEXISTENT] Mailbox doesn't exist: nope\r\n"},
        {'C', "A4 EXAMINE \"a b\""},
        {'S', "A4 BAD Error in IMAP command\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_imap_mailbox_t mb;
    lt_imap_opts_t o = {.host = "peer", .io_timeout_ms = 30000, .max_message = 10};
    CHECK_INT(start(&s, steps, &o, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_examine(s.c, "INBOX", &mb, err, sizeof(err)), LT_OK);
    fetch_rec_t r = {.log = lt_buf_new(1 << 16)};
    lt_imap_fetch_cb_t cb = {f_begin, f_data, f_end, f_skipped, &r, NULL};
    uint32_t uids[] = {1, 2, 3};
    lt_err_t e = lt_imap_uid_fetch(s.c, uids, 3, &cb, err, sizeof(err));
    CHECK_INT(e, LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(err, "could not be FETCHed") != NULL, "%s", err);
    /* the NIL body of UID 2 is not taken as gone: the fetch failed anyway */
    CHECK_STR(lt_buf_str(r.log), "skipped 1 too_big;begin 3 4 " DATE_MS "|abcd|end;");
    CHECK_INT(lt_imap_examine(s.c, "nope", &mb, err, sizeof(err)), LT_ERR_NOT_FOUND);
    CHECK_INT(lt_imap_uid_fetch(s.c, uids, 3, &cb, err, sizeof(err)), LT_ERR_INVALID);
    CHECK_INT(lt_imap_examine(s.c, "a b", &mb, err, sizeof(err)), LT_ERR_FINAL);
    lt_buf_destroy(r.log);
    finish(&s, "skips and errors");
}

/* 8. A silent server: the I/O timeout fires. */
static void test_timeout(void)
{
    const step_t steps[] = {
        {'S', "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] ready\r\n"},
        {'C', "A1 AUTHENTICATE PLAIN AHUAcA=="},
        {'W', ""},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_imap_opts_t o = {.host = "peer", .io_timeout_ms = 200};
    CHECK_INT(start(&s, steps, &o, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_login(s.c, "u", "p", err, sizeof(err)), LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(err, "timed out") != NULL, "%s", err);
    finish(&s, "timeout");
}

/* 9. APPEND with a synchronizing literal (no LITERAL+) returns the
 * APPENDUID; a callback error aborts the fetch with its code. */
static void test_append_and_abort(void)
{
    const step_t steps[] = {
        {'S', "* PREAUTH [CAPABILITY IMAP4rev1 UIDPLUS] ready\r\n"},
        {'C', "A1 APPEND Entw&APw-rfe (\\Seen) {5}"},
        {'S', "+ OK\r\n"},
        {'R', "Hello\r\n"},
        {'S', "A1 OK [APPENDUID 38505 3955] APPEND completed\r\n"},
        {'C', "A2 EXAMINE INBOX"},
        {'S', "* OK [UIDVALIDITY 9] x\r\nA2 OK [READ-ONLY] done\r\n"},
        {'C', "A3 UID FETCH 1 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"},
        {'S', "* 1 FETCH (UID 1 RFC822.SIZE 1 INTERNALDATE " DATE " BODY[] {1}\r\na)\r\n"
              "A3 OK done\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_imap_mailbox_t mb;
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    uint32_t uid = 0;
    lt_err_t e = lt_imap_append(s.c, "Entw\xc3\xbcrfe",
                                &(lt_imap_message_t){.data = "Hello", .len = 5, .flags = "\\Seen"},
                                &uid, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "append: %s", err);
    CHECK_INT(uid, 3955);
    CHECK_INT(lt_imap_examine(s.c, "INBOX", &mb, err, sizeof(err)), LT_OK);
    fetch_rec_t r = {.log = lt_buf_new(1 << 16), .abort_at_data = 1};
    lt_imap_fetch_cb_t cb = {f_begin, f_data, f_end, f_skipped, &r, NULL};
    uid = 1;
    CHECK_INT(lt_imap_uid_fetch(s.c, &uid, 1, &cb, err, sizeof(err)), LT_ERR_FINAL);
    lt_buf_destroy(r.log);
    finish(&s, "append");
}

/* 10. Protocol garbage: TEMPORARY with the position. */
static void test_garbage(void)
{
    const step_t steps[] = {
        {'S', "* PREAUTH ready\r\n* CAPABILITY IMAP4rev1\r\n"},
        {'C', "A1 EXAMINE INBOX"},
        {'S', "* 2 EXISTS\r\n)(*&^ garbage\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_imap_mailbox_t mb;
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_examine(s.c, "INBOX", &mb, err, sizeof(err)), LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(err, "protocol error") && strstr(err, "stream byte 53"), "%s", err);
    finish(&s, "garbage");
}

/* 11. Every UID asked for is accounted for: one left out of the FETCH answer
 * (or answered with a NIL body) is looked up again with UID SEARCH. Still
 * there: TEMPORARY (the batch is redone; nothing reported as gone). Gone:
 * reported as expunged (skipped, LT_ERR_NOT_FOUND) and the fetch succeeds. */
static void test_missing_uid(void)
{
#define FETCH13 "UID FETCH 1:3 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[])"
#define MSG1 "* 1 FETCH (UID 1 RFC822.SIZE 1 INTERNALDATE " DATE " BODY[] {1}\r\na)\r\n"
#define MSG3 "* 3 FETCH (UID 3 RFC822.SIZE 1 INTERNALDATE " DATE " BODY[] {1}\r\nc)\r\n"
#define NIL2 "* 2 FETCH (UID 2 RFC822.SIZE 0 INTERNALDATE " DATE " BODY[] NIL)\r\n"
    const step_t steps[] = {
        {'S', PREAUTH_EXAMINE[0]},
        {'C', "A1 EXAMINE INBOX"},
        {'S', PREAUTH_EXAMINE[1]},
        /* (a) UID 2 left out, and it still exists */
        {'C', "A2 " FETCH13},
        {'S', MSG1 MSG3 "A2 OK Fetch completed.\r\n"},
        {'C', "A3 UID SEARCH UID 2"},
        {'S', "* SEARCH 2\r\nA3 OK Search completed.\r\n"},
        /* (b) UID 2 left out, and it is gone */
        {'C', "A4 " FETCH13},
        {'S', MSG1 MSG3 "A4 OK Fetch completed.\r\n"},
        {'C', "A5 UID SEARCH UID 2"},
        {'S', "* SEARCH\r\nA5 OK Search completed.\r\n"},
        /* (c) UID 2 answered NIL, and it still exists */
        {'C', "A6 " FETCH13},
        {'S', MSG1 NIL2 MSG3 "A6 OK Fetch completed.\r\n"},
        {'C', "A7 UID SEARCH UID 2"},
        {'S', "* SEARCH 2\r\nA7 OK Search completed.\r\n"},
        /* (d) UID 2 answered NIL, and it is gone */
        {'C', "A8 " FETCH13},
        {'S', MSG1 NIL2 MSG3 "A8 OK Fetch completed.\r\n"},
        {'C', "A9 UID SEARCH UID 2"},
        {'S', "* 2 EXPUNGE\r\n* SEARCH\r\nA9 OK Search completed.\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_imap_mailbox_t mb;
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_examine(s.c, "INBOX", &mb, err, sizeof(err)), LT_OK);
    uint32_t uids[] = {1, 2, 3};
    const char *both = "begin 1 1 " DATE_MS "|a|end;begin 3 1 " DATE_MS "|c|end;";
    char gone[256];
    snprintf(gone, sizeof(gone), "%sskipped 2 not_found;", both);
    for (int round = 0; round < 4; round++) {
        fetch_rec_t r = {.log = lt_buf_new(1 << 16)};
        lt_imap_fetch_cb_t cb = {f_begin, f_data, f_end, f_skipped, &r, NULL};
        err[0] = 0;
        lt_err_t e = lt_imap_uid_fetch(s.c, uids, 3, &cb, err, sizeof(err));
        if (round % 2 == 0) { /* still exists: redo the batch later */
            CHECK_MSG(e == LT_ERR_TEMPORARY, "round %d: %s (%s)", round, lt_err_name(e), err);
            CHECK_MSG(strstr(err, "UID 2") != NULL, "round %d: %s", round, err);
            CHECK_STR(lt_buf_str(r.log), both);
        } else { /* gone: reported, the batch proceeds */
            CHECK_MSG(e == LT_OK, "round %d: %s (%s)", round, lt_err_name(e), err);
            CHECK_STR(lt_buf_str(r.log), gone);
        }
        lt_buf_destroy(r.log);
    }
    finish(&s, "missing uid");
#undef FETCH13
#undef MSG1
#undef MSG3
#undef NIL2
}

/* ---- CONDSTORE / QRESYNC (RFC 7162) ---- */

typedef struct {
    lt_buf_t *log;
    int abort_changed;
} chg_rec_t;

static lt_err_t c_changed(void *o, uint32_t uid, const char *const *flags, size_t n,
                          uint64_t modseq)
{
    chg_rec_t *r = o;
    lt_buf_appendf(r->log, "changed %u (", uid);
    for (size_t i = 0; i < n; i++)
        lt_buf_appendf(r->log, "%s%s", i ? " " : "", flags[i]);
    lt_buf_appendf(r->log, ") %llu;", (unsigned long long)modseq);
    return r->abort_changed ? LT_ERR_FINAL : LT_OK;
}

static lt_err_t c_vanished(void *o, const lt_imap_range_t *rg, size_t n, int earlier)
{
    chg_rec_t *r = o;
    lt_buf_appendf(r->log, "vanished%s", earlier ? " earlier" : "");
    for (size_t i = 0; i < n; i++)
        lt_buf_appendf(r->log, " %u:%u", rg[i].lo, rg[i].hi);
    lt_buf_appendf(r->log, ";");
    return LT_OK;
}

#define QR_GREETING "* PREAUTH [CAPABILITY IMAP4rev1 ENABLE CONDSTORE QRESYNC UIDPLUS] hi\r\n"

/* ENABLE, EXAMINE with QRESYNC (the RFC 7162 3.2.5.2 example), UID FETCH
 * CHANGEDSINCE with VANISHED arriving in the middle of the FETCH, UID SEARCH
 * ALL as ranges. */
static void test_qresync(void)
{
    const step_t steps[] = {
        {'S', QR_GREETING},
        {'C', "A1 ENABLE QRESYNC"},
        {'S', "* ENABLED QRESYNC\r\nA1 OK Enabled.\r\n"},
        {'C', "A2 EXAMINE INBOX (QRESYNC (67890007 20050715194045000 41:211,214:541))"},
        {'S', "* OK [CLOSED] Previous mailbox closed.\r\n"
              "* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen)\r\n"
              "* 314 EXISTS\r\n* OK [UIDVALIDITY 67890007] UIDVALIDITY\r\n"
              "* OK [UIDNEXT 567] Predicted next UID\r\n"
              "* OK [HIGHESTMODSEQ 20060115205545359] Highest mailbox mod-sequence\r\n"
              "* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n"
              "* 49 FETCH (UID 117 FLAGS (\\Seen \\Answered) MODSEQ (20060115194045001))\r\n"},
        {'P', ""},
        {'S', "* 50 FETCH (UID 119 FLAGS (\\Draft $MDNSent) MODSEQ (20060115194045308))\r\n"
              "* 100 FETCH (FLAGS () UID 541 MODSEQ (20060115194045001))\r\n"
              "A2 OK [READ-ONLY] EXAMINE completed\r\n"},
        {'C', "A3 UID FETCH 300:500,600:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)"},
        {'S', "* VANISHED (EARLIER) 301:305\r\n"
              "* 1 FETCH (UID 300 FLAGS (\\Seen) MODSEQ (12350))\r\n"
              "* VANISHED 310,320\r\n"
              "* 2 FETCH (UID 330 FLAGS (\\Flagged \\Seen) MODSEQ (12360))\r\n"
              "A3 OK Conditional FETCH completed\r\n"},
        {'C', "A4 UID SEARCH ALL"},
        {'S', "* SEARCH 9 1 2 3 5 7 8 4294967295 2\r\nA4 OK done\r\n"},
        {'C', "A5 LOGOUT"},
        {'S', "* BYE bye\r\nA5 OK Logout completed.\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_err_t e = start(&s, steps, NULL, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "connect: %s", err);
    unsigned en = 99;
    e = lt_imap_enable(s.c, "QRESYNC", &en, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "enable: %s", err);
    CHECK_INT(en, LT_IMAP_CAP_QRESYNC | LT_IMAP_CAP_CONDSTORE);
    CHECK_INT(lt_imap_enabled(s.c), en);

    chg_rec_t r = {.log = lt_buf_new(4096)};
    lt_imap_changes_cb_t cb = {c_changed, c_vanished, &r};
    lt_imap_range_t known[] = {{41, 211}, {214, 541}};
    lt_imap_qresync_t q = {67890007, 20050715194045000ull, known, 2};
    lt_imap_mailbox_t mb;
    e = lt_imap_examine_qresync(s.c, "INBOX", &q, &mb, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine: %s", err);
    CHECK_INT(mb.uidvalidity, 67890007u);
    CHECK_INT(mb.uidnext, 567);
    CHECK_INT(mb.exists, 314);
    CHECK(mb.highestmodseq == 20060115205545359ull);
    CHECK_INT(mb.nomodseq, 0);
    CHECK_INT(mb.read_only, 1);
    CHECK_STR(lt_buf_str(r.log), "vanished earlier 41:41 43:116 118:118 120:211 214:540;"
                                 "changed 117 (\\Seen \\Answered) 20060115194045001;"
                                 "changed 119 (\\Draft $MDNSent) 20060115194045308;"
                                 "changed 541 () 20060115194045001;");

    lt_buf_reset(r.log);
    lt_imap_range_t set[] = {{300, 500}, {600, LT_IMAP_STAR}};
    e = lt_imap_uid_fetch_changed(s.c, set, 2, 12345, 1, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "fetch changed: %s", err);
    CHECK_STR(lt_buf_str(r.log), "vanished earlier 301:305;changed 300 (\\Seen) 12350;"
                                 "vanished 310:310 320:320;changed 330 (\\Flagged \\Seen) 12360;");
    CHECK_INT(lt_imap_exists(s.c), 312); /* the two expunged now */

    lt_imap_range_t *all = NULL;
    size_t nall = 0;
    e = lt_imap_uid_search_all(s.c, &all, &nall, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "search all: %s", err);
    CHECK_INT(nall, 4); /* sorted, duplicates dropped, runs joined */
    if (nall == 4)
        CHECK(all[0].lo == 1 && all[0].hi == 3 && all[1].lo == 5 && all[1].hi == 5 &&
              all[2].lo == 7 && all[2].hi == 9 && all[3].lo == 4294967295u &&
              all[3].hi == 4294967295u);
    free(all);
    e = lt_imap_logout(s.c, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "logout: %s", err);
    lt_buf_destroy(r.log);
    finish(&s, "qresync");
}

/* NOMODSEQ, then a HIGHESTMODSEQ lower than the one asked for (surfaced,
 * not an error), then garbage in HIGHESTMODSEQ (protocol error). */
static void test_qresync_odd(void)
{
    const step_t steps[] = {
        {'S', QR_GREETING},
        {'C', "A1 ENABLE CONDSTORE QRESYNC"},
        {'S', "* ENABLED CONDSTORE QRESYNC\r\nA1 OK Enabled.\r\n"},
        {'C', "A2 EXAMINE plain (QRESYNC (7 100))"},
        {'S', "* 2 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 3] x\r\n"
              "* OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences\r\n"
              "A2 OK [READ-ONLY] done\r\n"},
        {'C', "A3 EXAMINE back (QRESYNC (7 100 1:*))"},
        {'S', "* 2 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [HIGHESTMODSEQ 5] x\r\n"
              "A3 OK [READ-ONLY] done\r\n"},
        {'C', "A4 EXAMINE bad (QRESYNC (7 100 1:*))"},
        {'S', "* OK [UIDVALIDITY 7] x\r\n* OK [HIGHESTMODSEQ 99999999999999999999] x\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_err_t e = start(&s, steps, NULL, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "connect: %s", err);
    unsigned en = 0;
    e = lt_imap_enable(s.c, "CONDSTORE QRESYNC", &en, err, sizeof(err));
    CHECK_INT(en, LT_IMAP_CAP_QRESYNC | LT_IMAP_CAP_CONDSTORE);
    chg_rec_t r = {.log = lt_buf_new(4096)};
    lt_imap_changes_cb_t cb = {c_changed, c_vanished, &r};
    lt_imap_qresync_t q = {7, 100, NULL, 0};
    lt_imap_mailbox_t mb;
    e = lt_imap_examine_qresync(s.c, "plain", &q, &mb, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine nomodseq: %s", err);
    CHECK_INT(mb.nomodseq, 1);
    CHECK(mb.highestmodseq == 0);
    CHECK_INT(mb.uidnext, 3);
    lt_imap_range_t all[] = {{1, LT_IMAP_STAR}};
    q.known = all;
    q.nknown = 1;
    e = lt_imap_examine_qresync(s.c, "back", &q, &mb, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine backwards: %s", err);
    CHECK(mb.highestmodseq == 5); /* lower than the 100 asked for: the caller decides */
    CHECK_INT(mb.nomodseq, 0);
    CHECK_STR(lt_buf_str(r.log), "");
    e = lt_imap_examine_qresync(s.c, "bad", &q, &mb, &cb, err, sizeof(err));
    CHECK_INT(e, LT_ERR_TEMPORARY);
    CHECK_MSG(strstr(err, "number out of range") != NULL, "%s", err);
    lt_buf_destroy(r.log);
    finish(&s, "qresync-odd");
}

/* A server without CONDSTORE/QRESYNC (simulated with hide_caps, and one
 * without ENABLE): nothing is enabled, the QRESYNC calls refuse, UID SEARCH
 * ALL is the fallback. A change callback's error aborts the command. */
static void test_no_qresync(void)
{
    const step_t steps[] = {
        {'S', QR_GREETING},
        {'C', "A1 EXAMINE INBOX"},
        {'S', "* 3 EXISTS\r\n* OK [UIDVALIDITY 9] x\r\n* OK [HIGHESTMODSEQ 40] x\r\n"
              "A1 OK [READ-ONLY] done\r\n"},
        {'C', "A2 UID SEARCH ALL"},
        {'S', "* SEARCH\r\nA2 OK done\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    lt_imap_opts_t o = {.host = "peer",
                        .io_timeout_ms = 30000,
                        .hide_caps = LT_IMAP_CAP_CONDSTORE | LT_IMAP_CAP_QRESYNC};
    lt_err_t e = start(&s, steps, &o, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "connect: %s", err);
    CHECK(!lt_imap_has_cap(s.c, "QRESYNC") && !lt_imap_has_cap(s.c, "condstore"));
    CHECK(lt_imap_has_cap(s.c, "ENABLE") && lt_imap_has_cap(s.c, "UIDPLUS"));
    unsigned en = 99;
    e = lt_imap_enable(s.c, "QRESYNC CONDSTORE", &en, err, sizeof(err));
    CHECK_MSG(e == LT_OK && en == 0, "enable: %s", err); /* nothing sent */
    lt_imap_qresync_t q = {9, 30, NULL, 0};
    lt_imap_mailbox_t mb;
    CHECK_INT(lt_imap_examine_qresync(s.c, "INBOX", &q, &mb, NULL, err, sizeof(err)),
              LT_ERR_INVALID);
    e = lt_imap_examine(s.c, "INBOX", &mb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine: %s", err);
    CHECK(mb.highestmodseq == 40); /* sent anyway: still reported */
    lt_imap_range_t set[] = {{1, LT_IMAP_STAR}};
    CHECK_INT(lt_imap_uid_fetch_changed(s.c, set, 1, 30, 0, NULL, err, sizeof(err)),
              LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "CONDSTORE") != NULL, "%s", err);
    lt_imap_range_t *all = NULL;
    size_t nall = 9;
    e = lt_imap_uid_search_all(s.c, &all, &nall, err, sizeof(err));
    CHECK_MSG(e == LT_OK && nall == 0 && all != NULL, "search all: %s", err);
    free(all);
    finish(&s, "no-qresync");

    /* No ENABLE advertised at all. */
    const step_t steps2[] = {
        {'S', "* PREAUTH [CAPABILITY IMAP4rev1 CONDSTORE QRESYNC] hi\r\n"},
        {'C', "A1 EXAMINE x"},
        {'S', "* OK [UIDVALIDITY 9] x\r\nA1 OK done\r\n"},
        {'C', "A2 UID FETCH 4:6 (FLAGS) (CHANGEDSINCE 1)"},
        {'S', "* 1 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (3))\r\n"},
        {0, NULL},
    };
    e = start(&s, steps2, NULL, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "connect: %s", err);
    e = lt_imap_enable(s.c, "QRESYNC", &en, err, sizeof(err));
    CHECK_MSG(e == LT_OK && en == 0, "enable without ENABLE: %s", err);
    e = lt_imap_examine(s.c, "x", &mb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine: %s", err);
    lt_imap_range_t set2[] = {{4, 6}};
    CHECK_INT(lt_imap_uid_fetch_changed(s.c, set2, 1, 1, 1, NULL, err, sizeof(err)),
              LT_ERR_INVALID); /* VANISHED needs QRESYNC enabled */
    chg_rec_t r = {.log = lt_buf_new(256), .abort_changed = 1};
    lt_imap_changes_cb_t cb = {c_changed, c_vanished, &r};
    e = lt_imap_uid_fetch_changed(s.c, set2, 1, 1, 0, &cb, err, sizeof(err));
    CHECK_INT(e, LT_ERR_FINAL); /* the callback's code */
    CHECK_STR(lt_buf_str(r.log), "changed 4 (\\Seen) 3;");
    CHECK_INT(lt_imap_uid_search_all(s.c, &all, &nall, err, sizeof(err)), LT_ERR_TEMPORARY);
    lt_buf_destroy(r.log);
    finish(&s, "no-enable");
}

static lt_err_t f_flags(void *o, uint32_t uid, const char *const *flags, size_t n, uint64_t modseq)
{
    fetch_rec_t *r = o;
    lt_buf_appendf(r->log, "flags %u (", uid);
    for (size_t i = 0; i < n; i++)
        lt_buf_appendf(r->log, "%s%s", i ? " " : "", flags[i]);
    lt_buf_appendf(r->log, ") %llu;", (unsigned long long)modseq);
    return LT_OK;
}

/* Flags with fetched messages, and expunges arriving in the middle of a
 * FETCH: with QRESYNC enabled, a message fetch asks FLAGS MODSEQ and gives
 * each message's flags right after its end (also when FLAGS comes after the
 * body); an unsolicited FETCH FLAGS of another message is not taken for one;
 * a VANISHED mid-fetch leaves the message out: looked up and skipped as
 * gone. The full FLAGS listing (modseq 0) gives the VANISHED arriving in
 * its middle to the vanished callback; without CONDSTORE it is a plain
 * UID FETCH (FLAGS), an EXPUNGE in its middle only lowers the count. */
static void test_flags_and_expunge_mid_fetch(void)
{
    const step_t steps[] = {
        {'S', QR_GREETING},
        {'C', "A1 ENABLE QRESYNC"},
        {'S', "* ENABLED QRESYNC\r\nA1 OK Enabled.\r\n"},
        {'C', "A2 EXAMINE INBOX"},
        {'S', "* 3 EXISTS\r\n* OK [UIDVALIDITY 9] x\r\n* OK [HIGHESTMODSEQ 6] x\r\n"
              "A2 OK [READ-ONLY] done\r\n"},
        {'C', "A3 UID FETCH 1:3 (UID RFC822.SIZE INTERNALDATE FLAGS MODSEQ BODY.PEEK[])"},
        {'S', "* 1 FETCH (UID 1 RFC822.SIZE 1 INTERNALDATE " DATE
              " FLAGS (\\Seen) MODSEQ (5) BODY[] {1}\r\na)\r\n"
              "* VANISHED 2\r\n"
              "* 1 FETCH (UID 1 FLAGS (\\Seen \\Flagged) MODSEQ (8))\r\n"
              "* 2 FETCH (UID 3 RFC822.SIZE 1 INTERNALDATE " DATE
              " BODY[] {1}\r\nc FLAGS () MODSEQ (7))\r\n"
              "A3 OK Fetch completed.\r\n"},
        {'C', "A4 UID SEARCH UID 2"},
        {'S', "* SEARCH\r\nA4 OK Search completed.\r\n"},
        {'C', "A5 UID FETCH 1:3 (FLAGS MODSEQ)"},
        {'S', "* VANISHED 3\r\n* 1 FETCH (UID 1 FLAGS (\\Seen \\Flagged) MODSEQ (8))\r\n"
              "A5 OK Fetch completed.\r\n"},
        {0, NULL},
    };
    session_t s;
    char err[512];
    CHECK_INT(start(&s, steps, NULL, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_enable(s.c, "QRESYNC", NULL, err, sizeof(err)), LT_OK);
    lt_imap_mailbox_t mb;
    CHECK_INT(lt_imap_examine(s.c, "INBOX", &mb, err, sizeof(err)), LT_OK);
    fetch_rec_t r = {.log = lt_buf_new(1 << 16)};
    lt_imap_fetch_cb_t cb = {f_begin, f_data, f_end, f_skipped, &r, f_flags};
    uint32_t uids[] = {1, 2, 3};
    lt_err_t e = lt_imap_uid_fetch(s.c, uids, 3, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "fetch: %s (%s)", lt_err_name(e), err);
    CHECK_STR(lt_buf_str(r.log), "begin 1 1 " DATE_MS "|a|end;flags 1 (\\Seen) 5;"
                                 "begin 3 1 " DATE_MS "|c|end;flags 3 () 7;"
                                 "skipped 2 not_found;");
    CHECK_INT(lt_imap_exists(s.c), 2);
    chg_rec_t cr = {.log = lt_buf_new(4096)};
    lt_imap_changes_cb_t ccb = {c_changed, c_vanished, &cr};
    e = lt_imap_uid_fetch_changed(s.c, &(lt_imap_range_t){1, 3}, 1, 0, 0, &ccb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "listing: %s", err);
    CHECK_STR(lt_buf_str(cr.log), "vanished 3:3;changed 1 (\\Seen \\Flagged) 8;");
    lt_buf_destroy(r.log);
    finish(&s, "flags-mid-fetch");

    const step_t plain[] = {
        {'S', "* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n"},
        {'C', "A1 EXAMINE INBOX"},
        {'S', "* 3 EXISTS\r\n* OK [UIDVALIDITY 9] x\r\nA1 OK [READ-ONLY] done\r\n"},
        {'C', "A2 UID FETCH 1:5 (FLAGS)"},
        {'S', "* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n* 2 EXPUNGE\r\n* 2 FETCH (UID 4 FLAGS ())\r\n"
              "A2 OK Fetch completed.\r\n"},
        {0, NULL},
    };
    CHECK_INT(start(&s, plain, NULL, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_examine(s.c, "INBOX", &mb, err, sizeof(err)), LT_OK);
    lt_buf_reset(cr.log);
    e = lt_imap_uid_fetch_changed(s.c, &(lt_imap_range_t){1, 5}, 1, 0, 0, &ccb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "plain listing: %s", err);
    CHECK_STR(lt_buf_str(cr.log), "changed 1 (\\Seen) 0;changed 4 () 0;");
    CHECK_INT(lt_imap_exists(s.c), 2);
    lt_buf_destroy(cr.log);
    finish(&s, "flags-listing-plain");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_happy_path();
    test_auth_no();
    test_auth_no_echo();
    test_login_literal_unavailable();
    test_xoauth2();
    test_bye_mid_fetch();
    test_drop_mid_literal();
    test_skips_and_errors();
    test_timeout();
    test_append_and_abort();
    test_garbage();
    test_missing_uid();
    test_qresync();
    test_qresync_odd();
    test_no_qresync();
    test_flags_and_expunge_mid_fetch();
    return lt_test_done("test_imap_client_script");
}
