/* The IMAP client against the real Dovecot of the local stack: verified TLS
 * (and a failing verification with the wrong trust store or name), login,
 * CREATE/APPEND of a non-ASCII folder, LIST, EXAMINE, UID SEARCH, streamed
 * UID FETCH compared byte for byte, \Seen left alone, a 25 MB message
 * streamed in bounded chunks, UIDVALIDITY after DELETE + CREATE, and the
 * fetch throughput (printed; docs/imap.md quotes it). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_imap_client.h"
#include "lt_test.h"

static const char *host, *ca, *user, *pass;
static int port;

static lt_imap_t *connect_login(const lt_imap_opts_t *extra)
{
    char err[512];
    lt_imap_opts_t o = {
        .host = host, .port = port, .tls = 1, .ca_file = ca, .io_timeout_ms = 30000};
    if (extra)
        o = *extra;
    lt_imap_t *c = lt_imap_new(&o);
    lt_err_t e = lt_imap_connect(c, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "connect: %s", err);
    e = lt_imap_login(c, user, pass, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "login: %s", err);
    return c;
}

/* Deterministic message i of n bytes (CRLF lines, some 8-bit bytes). */
static lt_buf_t *make_msg(unsigned i, size_t n)
{
    lt_buf_t *b = lt_buf_new(n + 1024);
    lt_buf_appendf(b,
                   "From: a@example.test\r\nTo: b@example.test\r\nSubject: t%u\r\n"
                   "Message-ID: <m%u.%ld@lattice.test>\r\nContent-Type: text/plain; "
                   "charset=utf-8\r\n\r\n\xc3\xa4\xc3\xb6\r\n",
                   i, i, (long)getpid());
    unsigned x = i * 2654435761u + 1;
    while (lt_buf_len(b) + 2 < n) {
        size_t line = 0;
        while (line < 76 && lt_buf_len(b) + 2 < n) {
            x = x * 1103515245u + 12345u;
            char ch =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(x >> 16) & 63];
            lt_buf_append(b, &ch, 1);
            line++;
        }
        lt_buf_append(b, "\r\n", 2);
    }
    while (lt_buf_len(b) < n)
        lt_buf_append(b, "x", 1);
    return b;
}

/* ---- fetch verification ---- */

typedef struct {
    lt_buf_t **want; /* by index into uids */
    const uint32_t *uids;
    size_t n;
    long cur;   /* index of the message being received */
    size_t off; /* bytes of it received */
    size_t max_chunk;
    int bad;    /* byte mismatches or unknown UIDs */
    size_t got; /* completed messages */
    uint64_t bytes;
    int64_t last_date;
} verify_t;

static lt_err_t v_begin(void *o, uint32_t uid, uint64_t size, int64_t date)
{
    verify_t *v = o;
    v->cur = -1;
    for (size_t i = 0; i < v->n; i++)
        if (v->uids[i] == uid)
            v->cur = (long)i;
    if (v->cur < 0 || (v->want && size != lt_buf_len(v->want[v->cur])))
        v->bad++;
    v->off = 0;
    v->last_date = date;
    return LT_OK;
}

static lt_err_t v_data(void *o, const uint8_t *d, size_t n)
{
    verify_t *v = o;
    if (n > v->max_chunk)
        v->max_chunk = n;
    v->bytes += n;
    if (v->want && v->cur >= 0) {
        lt_buf_t *w = v->want[v->cur];
        if (v->off + n > lt_buf_len(w) || memcmp(lt_buf_data(w) + v->off, d, n))
            v->bad++;
    }
    v->off += n;
    return LT_OK;
}

static lt_err_t v_end(void *o)
{
    verify_t *v = o;
    if (v->want && v->cur >= 0 && v->off != lt_buf_len(v->want[v->cur]))
        v->bad++;
    v->got++;
    return LT_OK;
}

static void v_skipped(void *o, uint32_t uid, lt_err_t why, const char *reason)
{
    verify_t *v = o;
    fprintf(stderr, "skipped uid %u: %s\n", uid, reason);
    v->bad++;
}

static void test_tls_verification(void)
{
    char err[512];
    /* The system store does not trust the project CA: verification fails. */
    lt_imap_opts_t o = {
        .host = host, .port = port, .tls = 1, .ca_file = NULL, .connect_timeout_ms = 5000};
    lt_imap_t *c = lt_imap_new(&o);
    lt_err_t e = lt_imap_connect(c, err, sizeof(err));
    CHECK_INT(e, LT_ERR_FINAL);
    CHECK_MSG(strstr(err, "certificate verification") != NULL, "%s", err);
    lt_imap_destroy(c);

    /* The right CA but the wrong name: the identity check fails. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    o.host = "imap.wrong-name.test";
    o.ca_file = ca;
    c = lt_imap_new(&o);
    e = lt_imap_connect_fd(c, fd, err, sizeof(err));
    CHECK_INT(e, LT_ERR_FINAL);
    CHECK_MSG(strstr(err, "certificate verification") != NULL, "%s", err);
    lt_imap_destroy(c);

    /* The right CA and name ("localhost", DNS SAN; IP SAN is checked by the
     * connections with host 127.0.0.1). */
    o.host = "localhost";
    c = lt_imap_new(&o);
    e = lt_imap_connect(c, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "connect localhost: %s", err);
    CHECK(lt_imap_has_cap(c, "IMAP4rev1"));
    CHECK(lt_imap_has_cap(c, "AUTH=PLAIN"));
    /* A wrong password is a REAUTH. */
    e = lt_imap_login(c, user, "not-the-password", err, sizeof(err));
    CHECK_MSG(e == LT_ERR_REAUTH, "wrong password: %s (%s)", lt_err_name(e), err);
    lt_imap_destroy(c);
}

static void test_folder_roundtrip(void)
{
    char err[512];
    lt_imap_t *c = connect_login(NULL);
    CHECK(lt_imap_has_cap(c, "UIDPLUS"));
    char name[128];
    snprintf(name, sizeof(name), "Lattice Entw\xc3\xbcrfe \xe6\x97\xa5\xe6\x9c\xac %ld-%ld",
             (long)getpid(), (long)time(NULL));
    lt_err_t e = lt_imap_create(c, name, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "create: %s", err);

    enum { N = 4 };
    size_t sizes[N] = {300, 5000, 70000, 1};
    lt_buf_t *msgs[N];
    uint32_t uids[N];
    for (unsigned i = 0; i < N; i++) {
        msgs[i] = make_msg(i, sizes[i] < 200 ? 200 : sizes[i]);
        e = lt_imap_append(
            c, name, &(lt_imap_message_t){.data = lt_buf_data(msgs[i]), .len = lt_buf_len(msgs[i])},
            &uids[i], err, sizeof(err));
        CHECK_MSG(e == LT_OK, "append %u: %s", i, err);
        CHECK(uids[i] > 0);
    }

    lt_imap_folder_t *f;
    size_t nf;
    e = lt_imap_list(c, &f, &nf, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "list: %s", err);
    int found = 0;
    for (size_t i = 0; i < nf; i++)
        if (f[i].name && !strcmp(f[i].name, name))
            found++;
    CHECK_MSG(found == 1, "decoded folder name \"%s\" listed %d times", name, found);
    lt_imap_folders_free(f, nf);

    lt_imap_mailbox_t mb;
    e = lt_imap_examine(c, name, &mb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine: %s", err);
    CHECK(mb.uidvalidity > 0);
    CHECK_INT(mb.exists, N);
    CHECK_INT(mb.uidnext, uids[N - 1] + 1);
    CHECK_INT(mb.read_only, 1);

    uint32_t *found_uids;
    size_t n;
    e = lt_imap_uid_search(c, 1, 0, &found_uids, &n, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "search: %s", err);
    CHECK_INT(n, N);
    for (size_t i = 0; i < n && i < N; i++)
        CHECK_INT(found_uids[i], uids[i]);
    free(found_uids);
    /* "UID n:*" past the end returns the highest UID: filtered out. */
    e = lt_imap_uid_search(c, uids[N - 1] + 1, 0, &found_uids, &n, err, sizeof(err));
    CHECK_MSG(e == LT_OK && n == 0, "search past the end: %zu UIDs (%s)", n, err);
    free(found_uids);
    e = lt_imap_uid_search(c, uids[1], uids[2], &found_uids, &n, err, sizeof(err));
    CHECK_INT(n, 2);
    free(found_uids);

    verify_t v = {.want = msgs, .uids = uids, .n = N};
    lt_imap_fetch_cb_t cb = {v_begin, v_data, v_end, v_skipped, &v, NULL};
    e = lt_imap_uid_fetch(c, uids, N, &cb, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "fetch: %s", err);
    CHECK_INT(v.got, N);
    CHECK_INT(v.bad, 0);
    CHECK(v.last_date > 1600000000000LL);

    /* Read-only: nothing got \Seen. */
    for (unsigned i = 0; i < N; i++) {
        char flags[256];
        e = lt_imap_uid_flags(c, uids[i], flags, sizeof(flags), err, sizeof(err));
        CHECK_MSG(e == LT_OK, "flags: %s", err);
        CHECK_MSG(strstr(flags, "\\Seen") == NULL, "uid %u has flags \"%s\"", uids[i], flags);
    }
    CHECK_INT(lt_imap_uid_flags(c, uids[N - 1] + 100, (char[64]){0}, 64, err, sizeof(err)),
              LT_ERR_NOT_FOUND);

    /* DELETE + CREATE gives a new UIDVALIDITY. */
    e = lt_imap_examine(c, "INBOX", &(lt_imap_mailbox_t){0}, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "examine INBOX: %s", err);
    CHECK_INT(lt_imap_delete(c, name, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_create(c, name, err, sizeof(err)), LT_OK);
    lt_imap_mailbox_t mb2;
    e = lt_imap_examine(c, name, &mb2, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "re-examine: %s", err);
    CHECK_MSG(mb2.uidvalidity != mb.uidvalidity, "UIDVALIDITY unchanged: %u", mb.uidvalidity);
    CHECK_INT(mb2.exists, 0);
    CHECK_INT(lt_imap_examine(c, "INBOX", &mb2, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_delete(c, name, err, sizeof(err)), LT_OK);
    char nope[160];
    snprintf(nope, sizeof(nope), "%s-does-not-exist", name);
    e = lt_imap_examine(c, nope, &mb2, err, sizeof(err));
    CHECK_MSG(e == LT_ERR_NOT_FOUND, "examine of a missing folder: %s (%s)", lt_err_name(e), err);
    CHECK_INT(lt_imap_logout(c, err, sizeof(err)), LT_OK);
    lt_imap_destroy(c);
    for (unsigned i = 0; i < N; i++)
        lt_buf_destroy(msgs[i]);
}

/* One 25 MB message, streamed; and 1000 x 20 KB with several pipeline
 * settings. Prints the throughput. */
static void test_big_and_bulk(void)
{
    char err[512];
    lt_imap_t *c = connect_login(NULL);
    char name[128];
    snprintf(name, sizeof(name), "Lattice bench %ld-%ld", (long)getpid(), (long)time(NULL));
    CHECK_INT(lt_imap_create(c, name, err, sizeof(err)), LT_OK);

    size_t big = 25u * 1024 * 1024;
    lt_buf_t *bigmsg = make_msg(1000, big);
    uint32_t biguid = 0;
    lt_err_t e = lt_imap_append(
        c, name, &(lt_imap_message_t){.data = lt_buf_data(bigmsg), .len = lt_buf_len(bigmsg)},
        &biguid, err, sizeof(err));
    CHECK_MSG(e == LT_OK, "append 25 MB: %s", err);

    enum { BULK = 1000 };
    lt_buf_t *msgs[BULK];
    uint32_t uids[BULK];
    double t0 = lt_now_s();
    for (unsigned i = 0; i < BULK; i++) {
        msgs[i] = make_msg(i, 20 * 1024);
        e = lt_imap_append(
            c, name, &(lt_imap_message_t){.data = lt_buf_data(msgs[i]), .len = lt_buf_len(msgs[i])},
            &uids[i], err, sizeof(err));
        if (e) {
            CHECK_MSG(e == LT_OK, "append %u: %s", i, err);
            break;
        }
    }
    double tappend = lt_now_s() - t0;
    lt_imap_logout(c, err, sizeof(err));
    lt_imap_destroy(c);

    /* the big one */
    c = connect_login(NULL);
    lt_imap_mailbox_t mb;
    CHECK_INT(lt_imap_examine(c, name, &mb, err, sizeof(err)), LT_OK);
    CHECK_INT(mb.exists, BULK + 1);
    verify_t v = {.want = &bigmsg, .uids = &biguid, .n = 1};
    lt_imap_fetch_cb_t cb = {v_begin, v_data, v_end, v_skipped, &v, NULL};
    t0 = lt_now_s();
    e = lt_imap_uid_fetch(c, &biguid, 1, &cb, err, sizeof(err));
    double tbig = lt_now_s() - t0;
    CHECK_MSG(e == LT_OK, "fetch 25 MB: %s", err);
    CHECK_INT(v.got, 1);
    CHECK_INT(v.bad, 0);
    CHECK_MSG(v.max_chunk <= 64 * 1024, "chunk of %zu bytes", v.max_chunk);
    printf("IMAP fetch of one 25 MB message: %.3f s, %.1f MB/s, biggest chunk %zu bytes\n", tbig,
           (double)big / 1e6 / tbig, v.max_chunk);

    /* A cap below the message size: skipped, the connection stays usable. */
    lt_imap_opts_t capped = {
        .host = host, .port = port, .tls = 1, .ca_file = ca, .max_message = 1024 * 1024};
    lt_imap_t *c2 = connect_login(&capped);
    CHECK_INT(lt_imap_examine(c2, name, &mb, err, sizeof(err)), LT_OK);
    verify_t v2 = {.uids = &biguid, .n = 1};
    lt_imap_fetch_cb_t cb2 = {v_begin, v_data, v_end, v_skipped, &v2, NULL};
    uint32_t two[2] = {biguid, uids[0]};
    v2.uids = two;
    v2.n = 2;
    CHECK_INT(lt_imap_uid_fetch(c2, two, 2, &cb2, err, sizeof(err)), LT_OK);
    CHECK_INT(v2.bad, 1); /* the skipped one */
    CHECK_INT(v2.got, 1);
    lt_imap_destroy(c2);

    /* bulk, several batch/pipeline settings: a warm-up fetch (Dovecot builds
     * its cache on first access), then the median of 3 runs of each */
    static const struct {
        size_t batch;
        int pipeline;
    } cfg[] = {{250, 2}, {1, 1}, {1, 8}, {50, 1}, {250, 1}, {50, 2}, {250, 2}, {100, 4}, {1000, 1}};
    for (size_t k = 0; k < sizeof(cfg) / sizeof(cfg[0]); k++) {
        lt_imap_opts_t o = {.host = host,
                            .port = port,
                            .tls = 1,
                            .ca_file = ca,
                            .fetch_batch = cfg[k].batch,
                            .fetch_pipeline = cfg[k].pipeline};
        lt_imap_t *cb3 = connect_login(&o);
        CHECK_INT(lt_imap_examine(cb3, name, &mb, err, sizeof(err)), LT_OK);
        double runs[3];
        int nruns = k == 0 ? 1 : 3;
        for (int r = 0; r < nruns; r++) {
            verify_t vb = {.want = msgs, .uids = uids, .n = BULK};
            lt_imap_fetch_cb_t fcb = {v_begin, v_data, v_end, v_skipped, &vb, NULL};
            t0 = lt_now_s();
            e = lt_imap_uid_fetch(cb3, uids, BULK, &fcb, err, sizeof(err));
            runs[r] = lt_now_s() - t0;
            CHECK_MSG(e == LT_OK, "bulk fetch: %s", err);
            CHECK_INT(vb.got, BULK);
            CHECK_INT(vb.bad, 0);
        }
        lt_imap_destroy(cb3);
        if (k == 0)
            continue;
        for (int a = 0; a < 3; a++) /* sort the 3 */
            for (int b2 = a + 1; b2 < 3; b2++)
                if (runs[b2] < runs[a]) {
                    double tmp = runs[a];
                    runs[a] = runs[b2];
                    runs[b2] = tmp;
                }
        double t = runs[1];
        printf("IMAP fetch of 1000 x 20 KB, batch %zu, pipeline %d: median %.3f s, %.0f msg/s, "
               "%.1f MB/s\n",
               cfg[k].batch, cfg[k].pipeline, t, BULK / t, (double)BULK * 20 * 1024 / 1e6 / t);
    }
    printf("IMAP append of 1000 x 20 KB (one at a time): %.3f s\n", tappend);

    CHECK_INT(lt_imap_examine(c, "INBOX", &mb, err, sizeof(err)), LT_OK);
    CHECK_INT(lt_imap_delete(c, name, err, sizeof(err)), LT_OK);
    lt_imap_logout(c, err, sizeof(err));
    lt_imap_destroy(c);
    lt_buf_destroy(bigmsg);
    for (unsigned i = 0; i < BULK; i++)
        lt_buf_destroy(msgs[i]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    host = lt_test_env("LATTICE_TEST_IMAP_HOST");
    port = atoi(lt_test_env("LATTICE_TEST_IMAP_PORT"));
    ca = lt_test_env("LATTICE_CA_FILE");
    user = lt_test_env("LATTICE_TEST_IMAP_USER");
    pass = lt_test_env("LATTICE_TEST_IMAP_PASSWORD");
    test_tls_verification();
    test_folder_roundtrip();
    test_big_and_bulk();
    return lt_test_done("test_imap_client");
}
