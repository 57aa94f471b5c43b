/* Fuzz lt_imap_client against a scripted server: the input is everything
 * the server says (greeting, capabilities, untagged data, tagged answers to
 * A1, A2, ...). A server thread plays it on one end of a socketpair, in
 * turns: the first line (the greeting) at once, then, for each line the
 * client sends, the script up to and including its next tagged ("A...")
 * line, or continuation ("+") line when the client's line asks for one;
 * literals ({n} at a line's end: n bytes) are skipped over. When the client
 * waits without sending, the next turn comes after 20 ms. At the end the
 * server closes its side for writing (EOF). The client gets the
 * other end through lt_imap_connect_fd() (plain, no TLS) and runs
 * what lattice-worker's IMAP sync runs (worker/lt_sync_imap.c): connect,
 * login, EXAMINE, UID SEARCH, UID FETCH in batches, LOGOUT; with bit 0 of the
 * first byte also the CONDSTORE/QRESYNC calls (ENABLE, EXAMINE (QRESYNC),
 * UID FETCH (CHANGEDSINCE), UID SEARCH ALL) and LIST. The first byte also
 * picks the fetch batch, the pipeline depth and the message cap. Each call
 * stops the session on error, as the worker does.
 * Invariants (lt_imap_client.h):
 *  - never a crash, leak or sanitizer report, never a hang;
 *  - errors are TEMPORARY, REAUTH, FINAL or NOT_FOUND, with a reason that
 *    never holds the password: the login's never (it is masked), another
 *    step's only if the server's own words held it;
 *  - message callbacks come as begin, data..., end; no data outside; a
 *    chunk is at most 64 KiB; a delivered message has at most max_message
 *    bytes; a UID reported gone (NOT_FOUND) was asked for;
 *  - a UID FETCH that returns LT_OK has delivered or skipped every UID it
 *    was given (the worker then moves its watermark past them all);
 *  - UID SEARCH returns ascending UIDs within the asked range;
 *  - after the session (ended or broken) a further call fails cleanly. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lt_imap_client.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define PASSWORD "Pw-7f3e9c1a-secret"
#define MAX_FETCH 64 /* UIDs given to one lt_imap_uid_fetch (the worker's batch is bigger) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint32_t *asked;
    size_t nasked;
    uint8_t *seen; /* per asked UID: delivered or skipped */
    uint64_t max_message;
    int in_msg;
    uint32_t uid;
    uint64_t got;
} fetch_state_t;

static size_t asked_at(const fetch_state_t *f, uint32_t uid)
{
    for (size_t i = 0; i < f->nasked; i++)
        if (f->asked[i] == uid)
            return i;
    return SIZE_MAX;
}

static lt_err_t on_begin(void *opaque, uint32_t uid, uint64_t size, int64_t internaldate_ms)
{
    fetch_state_t *f = opaque;
    (void)size;
    (void)internaldate_ms;
    ASSERT(!f->in_msg);
    f->in_msg = 1;
    f->uid = uid;
    f->got = 0;
    return LT_OK;
}

static lt_err_t on_data(void *opaque, const uint8_t *chunk, size_t len)
{
    fetch_state_t *f = opaque;
    ASSERT(f->in_msg);
    ASSERT(len <= 64 * 1024 && (len == 0 || chunk != NULL));
    f->got += len;
    ASSERT(f->got <= f->max_message);
    return LT_OK;
}

static lt_err_t on_end(void *opaque)
{
    fetch_state_t *f = opaque;
    ASSERT(f->in_msg);
    f->in_msg = 0;
    size_t i = asked_at(f, f->uid);
    if (i != SIZE_MAX)
        f->seen[i] = 1;
    return LT_OK;
}

static void on_skipped(void *opaque, uint32_t uid, lt_err_t why, const char *reason)
{
    fetch_state_t *f = opaque;
    ASSERT(!f->in_msg);
    ASSERT(why == LT_ERR_TOO_BIG || why == LT_ERR_NOT_FOUND);
    ASSERT(reason && reason[0]);
    size_t i = asked_at(f, uid);
    ASSERT(i != SIZE_MAX || why == LT_ERR_TOO_BIG); /* "gone" only for UIDs asked for */
    if (i != SIZE_MAX)
        f->seen[i] = 1;
}

static lt_err_t on_changed(void *opaque, uint32_t uid, const char *const *flags, size_t nflags,
                           uint64_t modseq)
{
    (void)opaque;
    (void)uid;
    (void)modseq;
    for (size_t i = 0; i < nflags; i++)
        ASSERT(flags[i] != NULL);
    return LT_OK;
}

static lt_err_t on_vanished(void *opaque, const lt_imap_range_t *ranges, size_t n, int earlier)
{
    (void)opaque;
    (void)earlier;
    ASSERT(n == 0 || ranges != NULL);
    return LT_OK;
}

/* Whether the server's script itself holds the password: an error text
 * may quote what the server said (a greeting, a NO), and a client cannot
 * keep out of it a string it has not sent yet. */
static int script_says_password(const uint8_t *data, size_t size)
{
    size_t n = strlen(PASSWORD);
    for (size_t i = 0; i + n <= size; i++)
        if (memcmp(data + i, PASSWORD, n) == 0)
            return 1;
    return 0;
}

/* An error as the client documents them, without the password (unless the
 * server said it). */
static void check_err(lt_err_t e, const char *errstr, int server_said_password)
{
    ASSERT(e == LT_ERR_TEMPORARY || e == LT_ERR_REAUTH || e == LT_ERR_FINAL ||
           e == LT_ERR_NOT_FOUND || e == LT_ERR_TOO_BIG);
    ASSERT(errstr[0] != 0);
    ASSERT(server_said_password || strstr(errstr, PASSWORD) == NULL);
}

/* ------------------------------------------------------------ the server */

typedef struct {
    int fd;
    const uint8_t *script;
    size_t len;
} server_t;

/* End of the turn that starts at off: after the next tagged line, or
 * continuation line when the client's last line asks for one (a literal
 * announced, AUTHENTICATE); the whole rest when there is none. */
static size_t turn_end(const uint8_t *s, size_t len, size_t off, int wants_cont)
{
    while (off < len) {
        int answer = (s[off] == '+' && wants_cont) ||
                     (s[off] == 'A' && off + 1 < len && s[off + 1] >= '0' && s[off + 1] <= '9');
        const uint8_t *nl = memchr(s + off, '\n', len - off);
        size_t eol = nl ? (size_t)(nl - s) + 1 : len;
        /* A literal announced at the line's end: its bytes are not lines. */
        size_t e = eol;
        if (e > off && s[e - 1] == '\n')
            e--;
        if (e > off && s[e - 1] == '\r')
            e--;
        if (e > off && s[e - 1] == '}') {
            size_t k = e - 1;
            uint64_t n = 0, mul = 1;
            while (k > off && s[k - 1] >= '0' && s[k - 1] <= '9' && mul <= 1000000000000ull) {
                n += (uint64_t)(s[k - 1] - '0') * mul;
                mul *= 10;
                k--;
            }
            if (k > off && mul > 1 && s[k - 1] == '{') {
                eol = n > len - eol ? len : eol + (size_t)n;
                answer = 0; /* the line goes on after the literal */
            }
        }
        off = eol;
        if (answer)
            return off;
    }
    return len;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *server_main(void *arg)
{
    server_t *sv = arg;
    size_t off = 0, lines = 0, turns = 0, llen = 0;
    char last[256]; /* the client's line being received */
    int wants_cont = 0;
    const uint8_t *nl = memchr(sv->script, '\n', sv->len);
    size_t greet = nl ? (size_t)(nl - sv->script) + 1 : sv->len;
    int ok = write_all(sv->fd, sv->script, greet) == 0;
    off = greet;
    char buf[4096];
    for (;;) {
        /* One turn per client line; the client pipelines, so lines may be
         * ahead of turns. */
        while (ok && off < sv->len && turns < lines) {
            size_t e = turn_end(sv->script, sv->len, off, wants_cont);
            ok = write_all(sv->fd, sv->script + off, e - off) == 0;
            off = e;
            turns++;
        }
        if (ok && off >= sv->len) {
            shutdown(sv->fd, SHUT_WR);
            ok = 0;
        }
        struct pollfd p = {.fd = sv->fd, .events = POLLIN};
        int r = poll(&p, 1, off < sv->len ? 20 : 10000);
        if (r == 0 && off < sv->len) {
            /* The client sends nothing and waits: a turn ended on a line it
             * does not answer (a "+" it did not ask for, a tag of another
             * command): play the next turn. */
            lines = turns + 1;
            continue;
        }
        if (r <= 0)
            break;
        ssize_t n = recv(sv->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the client closed */
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (llen < sizeof(last) - 1)
                    last[llen++] = buf[i];
                continue;
            }
            lines++;
            last[llen] = 0;
            wants_cont = (llen >= 2 && last[llen - 2] == '}') || strstr(last, " AUTHENTICATE ");
            llen = 0;
        }
        if (getenv("LT_FUZZ_VERBOSE"))
            fprintf(stderr, "C: %.*s", (int)n, buf);
    }
    return NULL;
}

/* Runs one step; 0 when the session goes on. */
#define STEP(call)                                                                                 \
    do {                                                                                           \
        errstr[0] = 0;                                                                             \
        lt_err_t e_ = (call);                                                                      \
        if (e_ != LT_OK) {                                                                         \
            if (getenv("LT_FUZZ_VERBOSE"))                                                         \
                fprintf(stderr, "%s: %s: %s\n", #call, lt_err_name(e_), errstr);                   \
            check_err(e_, errstr, said_pw);                                                        \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

static lt_err_t on_flags(void *opaque, uint32_t uid, const char *const *flags, size_t nflags,
                         uint64_t modseq)
{
    (void)opaque;
    (void)uid;
    (void)modseq;
    for (size_t i = 0; i < nflags; i++)
        ASSERT(flags[i] != NULL);
    return LT_OK;
}

static lt_err_t fetch_checked(lt_imap_t *c, const uint32_t *uids, size_t n, uint64_t max_message,
                              char *errstr, size_t es)
{
    fetch_state_t f = {uids, n, calloc(n ? n : 1, 1), max_message, 0, 0, 0};
    /* every other batch also asks for FLAGS (the change-tracking fetch) */
    lt_imap_fetch_cb_t cb = {.begin = on_begin,
                             .data = on_data,
                             .end = on_end,
                             .skipped = on_skipped,
                             .opaque = &f,
                             .flags = n % 2 ? on_flags : NULL};
    lt_err_t e = lt_imap_uid_fetch(c, uids, n, &cb, errstr, es);
    if (e == LT_OK) {
        ASSERT(!f.in_msg);
        for (size_t i = 0; i < n; i++)
            ASSERT(f.seen[i]); /* nothing lost: delivered or skipped */
    }
    free(f.seen);
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once) {
        signal(SIGPIPE, SIG_IGN);
        /* the client's warnings (alerts, bad folder names) are expected here */
        lt_log_setup("fuzz_imap_client", getenv("LT_FUZZ_VERBOSE") ? "debug" : "error", "text",
                     NULL, 0);
        once = 1;
    }
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    int said_pw = script_says_password(data + 1, size - 1);
    int sv[2];
    ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    server_t server = {sv[1], data + 1, size - 1};
    pthread_t th;
    ASSERT(pthread_create(&th, NULL, server_main, &server) == 0);

    uint64_t max_message = (sel & 2) ? 64 : 0; /* 0: the default, 64 MiB */
    lt_imap_opts_t o = {
        .host = "imap.test",
        .tls = 0,
        .io_timeout_ms = 2000, /* the script never waits: a wait is a bug */
        .fetch_batch = (size_t)1 + ((sel >> 2) & 3) * 3,
        .fetch_pipeline = 1 + ((sel >> 4) & 3),
        .max_message = max_message,
        .hide_caps = (sel & 0x40) ? LT_IMAP_CAP_QRESYNC : 0,
    };
    lt_imap_t *c = lt_imap_new(&o);
    ASSERT(c);
    char errstr[512];
    uint32_t *uids = NULL;
    size_t nuids = 0;
    lt_imap_range_t *ranges = NULL;
    size_t nranges = 0;
    lt_imap_folder_t *folders = NULL;
    size_t nfolders = 0;
    lt_imap_mailbox_t mb;

    STEP(lt_imap_connect_fd(c, sv[0], errstr, sizeof(errstr)));
    /* the login's error never holds the password, whatever the server
     * says (lt_imap_login masks it); later steps cannot know it */
    int said_pw_later = said_pw;
    said_pw = 0;
    STEP(lt_imap_login(c, "user@example.org", PASSWORD, errstr, sizeof(errstr)));
    said_pw = said_pw_later;
    if (sel & 1) {
        unsigned enabled = 0;
        STEP(lt_imap_list(c, &folders, &nfolders, errstr, sizeof(errstr)));
        for (size_t i = 0; i < nfolders; i++)
            ASSERT(folders[i].wire_name != NULL);
        STEP(lt_imap_enable(c, "CONDSTORE QRESYNC", &enabled, errstr, sizeof(errstr)));
        ASSERT(enabled == lt_imap_enabled(c));
        lt_imap_changes_cb_t ccb = {on_changed, on_vanished, NULL};
        if (enabled & LT_IMAP_CAP_QRESYNC) {
            lt_imap_range_t known = {1, 100};
            lt_imap_qresync_t q = {7, 1234, &known, 1};
            STEP(lt_imap_examine_qresync(c, "INBOX", &q, &mb, &ccb, errstr, sizeof(errstr)));
        } else {
            STEP(lt_imap_examine(c, "INBOX", &mb, errstr, sizeof(errstr)));
        }
        if (lt_imap_has_cap(c, "CONDSTORE")) {
            lt_imap_range_t set = {1, LT_IMAP_STAR};
            STEP(lt_imap_uid_fetch_changed(c, &set, 1, 1234, (enabled & LT_IMAP_CAP_QRESYNC) != 0,
                                           &ccb, errstr, sizeof(errstr)));
        }
        STEP(lt_imap_uid_search_all(c, &ranges, &nranges, errstr, sizeof(errstr)));
        for (size_t i = 0; i < nranges; i++) {
            ASSERT(ranges[i].lo <= ranges[i].hi);
            ASSERT(i == 0 || ranges[i].lo > ranges[i - 1].hi + 1);
        }
    } else {
        STEP(lt_imap_examine(c, "INBOX", &mb, errstr, sizeof(errstr)));
    }
    /* The worker's sync: new UIDs from uidnext-ish on, fetched in batches. */
    uint32_t first = 1 + (uint32_t)((sel >> 7) & 1) * 4;
    STEP(lt_imap_uid_search(c, first, 0, &uids, &nuids, errstr, sizeof(errstr)));
    for (size_t i = 0; i < nuids; i++) {
        ASSERT(uids[i] >= first);
        ASSERT(i == 0 || uids[i] > uids[i - 1]);
    }
    for (size_t i = 0; i < nuids; i += MAX_FETCH) {
        size_t k = nuids - i < MAX_FETCH ? nuids - i : MAX_FETCH;
        STEP(fetch_checked(c, uids + i, k, max_message ? max_message : (uint64_t)64 << 20, errstr,
                           sizeof(errstr)));
    }
    STEP(lt_imap_logout(c, errstr, sizeof(errstr)));
out:
    free(uids);
    uids = NULL;
    nuids = 0;
    errstr[0] = 0;
    lt_err_t e = lt_imap_uid_search(c, 1, 0, &uids, &nuids, errstr, sizeof(errstr));
    ASSERT(e == LT_OK || e == LT_ERR_INVALID || e == LT_ERR_TEMPORARY || e == LT_ERR_FINAL);
    lt_imap_folders_free(folders, nfolders);
    free(ranges);
    free(uids);
    lt_imap_destroy(c); /* closes the client's end: the server thread ends */
    pthread_join(th, NULL);
    close(sv[1]);
    return 0;
}
