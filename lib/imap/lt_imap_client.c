#include "lt_imap_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_imap_parser.h"
#include "lt_imap_utf7.h"

#define MAX_INFLIGHT 9
#define RBUF_SIZE (64 * 1024)
#define MAX_SEARCH_UIDS (16u * 1024 * 1024)
#define MAX_FOLDERS 100000

enum { S_CLOSED, S_NOT_AUTH, S_AUTH, S_SELECTED };
enum { K_AUTH, K_EXAMINE, K_READ, K_OTHER }; /* command kinds, for error classes */
enum { W_NONE, W_DONE, W_NIL }; /* answer to one UID of a UID FETCH */

typedef struct {
    unsigned tag; /* 0 = free */
    int done;
    lt_imap_status_t st;
    char code[32];
    char code_arg[96];
    char text[256];
} pending_t;

struct lt_imap_s {
    char *host;
    int port, tls;
    char *ca_file;
    int connect_timeout_ms, io_timeout_ms;
    size_t max_line, fetch_batch;
    uint64_t max_message;
    int fetch_pipeline;
    const lt_log_ctx_t *log;
    unsigned hide_caps;
    uint64_t bytes_in, bytes_out; /* application bytes read / written (TLS payload) */
    unsigned enabled; /* LT_IMAP_CAP_* confirmed by ENABLED */
    const lt_imap_changes_cb_t *ccb;

    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    lt_imap_parser_t *parser;
    int state;
    int greeted;
    int logging_out;
    lt_err_t broken;
    char broken_msg[320];
    lt_err_t ev_err; /* set by the event handler to stop the parser */
    char ev_msg[320];

    unsigned next_tag;
    pending_t pend[MAX_INFLIGHT];
    int cont;            /* continuation requests not consumed yet */
    char cont_text[512]; /* text of the last one */
    char caps[2048];     /* " CAP1 CAP2 " in upper case */
    unsigned caps_gen;   /* bumped whenever caps is replaced */
    uint32_t exists;

    /* Results of the running command. */
    lt_imap_mailbox_t *mb;
    lt_imap_folder_t *folders;
    size_t nfolders, folders_cap;
    uint32_t *uids;
    size_t nuids, uids_cap;
    uint32_t search_lo, search_hi;
    int searching;
    const lt_imap_fetch_cb_t *fcb;
    uint32_t flags_uid;
    char *flags_out;
    size_t flags_size;
    int flags_found;
    /* The message being fetched. */
    int f_mode; /* 0 none, 1 streaming to the callbacks, 2 buffering (UID not yet known) */
    lt_buf_t *f_buf;
    uint64_t f_len;
    int f_nil;  /* the body was NIL */
    int f_body; /* the FETCH had a body (delivered, streamed or skipped) */
    /* The UIDs asked for by the running UID FETCH (ascending, unique) and
     * what came back for each (W_*). */
    uint32_t *want;
    uint8_t *want_st;
    size_t nwant;
    int bye_seen;
    /* A UID FETCH sent ahead (lt_imap_uid_fetch_ahead): its commands, the
     * UIDs they cover, and the UIDs and mode of the whole set. */
    int ahead_slots[MAX_INFLIGHT];
    int nahead;
    size_t ahead_next;
    uint32_t *ahead_uids;
    size_t ahead_nuids;
    int ahead_flags;

    uint8_t rbuf[RBUF_SIZE];
};

/* ---------------------------------------------------------------- utils */

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static void close_conn(lt_imap_t *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->ctx) {
        SSL_CTX_free(c->ctx);
        c->ctx = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->state = S_CLOSED;
}

static void ahead_clear(lt_imap_t *c);

/* The connection is unusable from now on: remember why. */
static lt_err_t set_broken(lt_imap_t *c, lt_err_t err, char *errstr, size_t errstr_size,
                           const char *msg)
{
    if (!c->broken) {
        c->broken = err;
        copy_str(c->broken_msg, sizeof(c->broken_msg), msg);
    }
    close_conn(c);
    return lt_seterr(errstr, errstr_size, err, "%s", msg);
}

static lt_err_t check_open(lt_imap_t *c, int need_state, char *errstr, size_t errstr_size)
{
    if (c->nahead)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "IMAP: a UID FETCH sent ahead is not collected yet");
    if (c->broken)
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "IMAP connection is closed: %s",
                         c->broken_msg);
    if (c->state == S_CLOSED)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: not connected");
    if (c->state < need_state)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: %s first",
                         need_state == S_SELECTED ? "examine a mailbox" : "log in");
    return LT_OK;
}

static void b64(lt_buf_t *out, const void *data, size_t len)
{
    size_t n = 4 * ((len + 2) / 3);
    char *tmp = lt_xmalloc(n + 1);
    EVP_EncodeBlock((unsigned char *)tmp, data, (int)len);
    lt_buf_append(out, tmp, n);
    OPENSSL_cleanse(tmp, n);
    free(tmp);
}

/* An astring argument: atom when possible, else quoted, else a literal
 * marker is not needed for our 7-bit arguments: returns 1 when a literal is
 * required (8-bit, CR, LF). */
static int needs_literal(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n' || ch == 0 || ch >= 0x80)
            return 1;
    }
    return 0;
}

static void put_quoted(lt_buf_t *b, const char *s, size_t n)
{
    int atom = n > 0;
    for (size_t i = 0; i < n && atom; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || strchr("(){%*\"\\]", ch))
            atom = 0;
    }
    if (atom && !(n == 3 && strncasecmp(s, "NIL", 3) == 0)) {
        lt_buf_append(b, s, n);
        return;
    }
    lt_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            lt_buf_append(b, "\\", 1);
        lt_buf_append(b, &s[i], 1);
    }
    lt_buf_append(b, "\"", 1);
}

/* ------------------------------------------------------------ transport */

static lt_err_t wait_fd(lt_imap_t *c, short events, int timeout_ms, const char *what, char *errstr,
                        size_t errstr_size)
{
    struct pollfd pfd = {.fd = c->fd, .events = events};
    for (;;) {
        int r = poll(&pfd, 1, timeout_ms);
        if (r > 0)
            return LT_OK;
        if (r == 0)
            return set_broken(c, LT_ERR_TEMPORARY, errstr, errstr_size,
                              what[0] == 'c' ? "IMAP: timed out connecting"
                                             : "IMAP: timed out waiting for the server");
        if (errno != EINTR) {
            char m[160];
            snprintf(m, sizeof(m), "IMAP: poll: %s", strerror(errno));
            return set_broken(c, LT_ERR_TEMPORARY, errstr, errstr_size, m);
        }
    }
}

static lt_err_t tls_failure(lt_imap_t *c, const char *during, char *errstr, size_t errstr_size)
{
    char m[320];
    long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (vr != X509_V_OK) {
        snprintf(m, sizeof(m), "IMAP: TLS certificate verification of %s failed: %s", c->host,
                 X509_verify_cert_error_string(vr));
        return set_broken(c, LT_ERR_FINAL, errstr, errstr_size, m);
    }
    snprintf(m, sizeof(m), "IMAP: TLS %s with %s failed: %s", during, c->host,
             e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "error"
               : "connection closed");
    return set_broken(c, LT_ERR_TEMPORARY, errstr, errstr_size, m);
}

/* Read at least one byte into rbuf. */
static lt_err_t tr_read(lt_imap_t *c, size_t *got, char *errstr, size_t errstr_size)
{
    for (;;) {
        if (c->ssl) {
            size_t n = 0;
            ERR_clear_error();
            int r = SSL_read_ex(c->ssl, c->rbuf, sizeof(c->rbuf), &n);
            if (r == 1) {
                *got = n;
                c->bytes_in += n;
                return LT_OK;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                lt_err_t err = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                                       c->io_timeout_ms, "read", errstr, errstr_size);
                if (err)
                    return err;
                continue;
            }
            if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
                goto eof;
            return tls_failure(c, "read", errstr, errstr_size);
        }
        ssize_t r = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
        if (r > 0) {
            *got = (size_t)r;
            c->bytes_in += (uint64_t)r;
            return LT_OK;
        }
        if (r == 0)
            goto eof;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            lt_err_t err = wait_fd(c, POLLIN, c->io_timeout_ms, "read", errstr, errstr_size);
            if (err)
                return err;
            continue;
        }
        char m[160];
        snprintf(m, sizeof(m), "IMAP: read: %s", strerror(errno));
        return set_broken(c, LT_ERR_TEMPORARY, errstr, errstr_size, m);
    }
eof:
    return set_broken(c, LT_ERR_TEMPORARY, errstr, errstr_size,
                      "IMAP: the server closed the connection");
}

static lt_err_t tr_write(lt_imap_t *c, const void *data, size_t len, char *errstr,
                         size_t errstr_size)
{
    const uint8_t *p = data;
    while (len > 0) {
        if (c->ssl) {
            size_t n = 0;
            ERR_clear_error();
            int r = SSL_write_ex(c->ssl, p, len, &n);
            if (r == 1) {
                p += n;
                len -= n;
                c->bytes_out += n;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                lt_err_t err = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                                       c->io_timeout_ms, "write", errstr, errstr_size);
                if (err)
                    return err;
                continue;
            }
            return tls_failure(c, "write", errstr, errstr_size);
        }
        ssize_t r = send(c->fd, p, len, MSG_NOSIGNAL);
        if (r > 0) {
            p += r;
            len -= (size_t)r;
            c->bytes_out += (uint64_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            lt_err_t err = wait_fd(c, POLLOUT, c->io_timeout_ms, "write", errstr, errstr_size);
            if (err)
                return err;
            continue;
        }
        char m[160];
        snprintf(m, sizeof(m), "IMAP: write: %s", r < 0 ? strerror(errno) : "closed");
        return set_broken(c, LT_ERR_TEMPORARY, errstr, errstr_size, m);
    }
    return LT_OK;
}

static lt_err_t tls_start(lt_imap_t *c, int64_t deadline, char *errstr, size_t errstr_size)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx)
        return tls_failure(c, "setup", errstr, errstr_size);
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    int ok = c->ca_file ? SSL_CTX_load_verify_locations(c->ctx, c->ca_file, NULL)
                        : SSL_CTX_set_default_verify_paths(c->ctx);
    if (ok != 1) {
        char m[320];
        ERR_clear_error();
        snprintf(m, sizeof(m), "IMAP: cannot load the CA %s%s", c->ca_file ? "file " : "store",
                 c->ca_file ? c->ca_file : "");
        return set_broken(c, LT_ERR_FINAL, errstr, errstr_size, m);
    }
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return tls_failure(c, "setup", errstr, errstr_size);
    unsigned char addr[16];
    if (inet_pton(AF_INET, c->host, addr) == 1 || inet_pton(AF_INET6, c->host, addr) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1)
            return tls_failure(c, "setup", errstr, errstr_size);
    } else {
        if (SSL_set_tlsext_host_name(c->ssl, c->host) != 1 || SSL_set1_host(c->ssl, c->host) != 1)
            return tls_failure(c, "setup", errstr, errstr_size);
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return LT_OK;
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return tls_failure(c, "handshake", errstr, errstr_size);
        int left = (int)(deadline - lt_now_ms());
        lt_err_t err = wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, left > 0 ? left : 0,
                               "connect", errstr, errstr_size);
        if (err)
            return err;
    }
}

/* -------------------------------------------------------------- events */

/* The LT_IMAP_CAP_* bit of an extension name, 0 for others. */
static unsigned cap_bit(const char *name)
{
    if (!strcasecmp(name, "CONDSTORE"))
        return LT_IMAP_CAP_CONDSTORE;
    if (!strcasecmp(name, "QRESYNC"))
        return LT_IMAP_CAP_QRESYNC;
    if (!strcasecmp(name, "ENABLE"))
        return LT_IMAP_CAP_ENABLE;
    return 0;
}

static void set_caps(lt_imap_t *c, const char *const *strs, size_t n)
{
    size_t o = 0;
    c->caps_gen++;
    c->caps[o++] = ' ';
    for (size_t i = 0; i < n; i++) {
        if (cap_bit(strs[i]) & c->hide_caps)
            continue; /* simulated server without it */
        size_t l = strlen(strs[i]);
        if (o + l + 2 >= sizeof(c->caps))
            break;
        for (size_t k = 0; k < l; k++)
            c->caps[o++] =
                (char)((strs[i][k] >= 'a' && strs[i][k] <= 'z') ? strs[i][k] - 32 : strs[i][k]);
        c->caps[o++] = ' ';
    }
    c->caps[o] = 0;
}

static lt_err_t ev_fail(lt_imap_t *c, lt_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static lt_err_t ev_fail(lt_imap_t *c, lt_err_t err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->ev_msg, sizeof(c->ev_msg), fmt, ap);
    va_end(ap);
    c->ev_err = err;
    return err;
}

static uint32_t parse_u32(const char *s, int *ok)
{
    char *end;
    errno = 0;
    unsigned long v = s ? strtoul(s, &end, 10) : 0;
    *ok = s && end != s && errno == 0 && v <= UINT32_MAX && (*end == 0 || *end == ' ');
    return (uint32_t)v;
}

/* Record what the server answered for an asked UID (others are ignored:
 * unsolicited FETCHes). */
static void want_mark(lt_imap_t *c, uint32_t uid, uint8_t st)
{
    size_t lo = 0, hi = c->nwant;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->want[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->nwant && c->want[lo] == uid && c->want_st[lo] == W_NONE)
        c->want_st[lo] = st;
}

static lt_err_t deliver_buffered(lt_imap_t *c, const lt_imap_fetch_t *f)
{
    const lt_imap_fetch_cb_t *cb = c->fcb;
    lt_err_t err = LT_OK;
    if (cb->begin)
        err = cb->begin(cb->opaque, f->uid, (f->has & LT_IMAP_HAS_SIZE) ? f->size : c->f_len,
                        (f->has & LT_IMAP_HAS_DATE) ? f->internaldate_ms : -1);
    const uint8_t *p = lt_buf_data(c->f_buf);
    size_t left = lt_buf_len(c->f_buf);
    while (!err && left && cb->data) {
        size_t n = left > RBUF_SIZE ? RBUF_SIZE : left;
        err = cb->data(cb->opaque, p, n);
        p += n;
        left -= n;
    }
    if (!err && cb->end)
        err = cb->end(cb->opaque);
    lt_buf_reset(c->f_buf);
    return err ? ev_fail(c, err, "IMAP: fetch aborted by the message callback") : LT_OK;
}

/* The FLAGS of a message just delivered (after its end callback). */
static lt_err_t fetch_flags(lt_imap_t *c, const lt_imap_event_t *ev)
{
    const lt_imap_fetch_cb_t *cb = c->fcb;
    if (!cb->flags || !(ev->fetch.has & LT_IMAP_HAS_FLAGS))
        return LT_OK;
    lt_err_t err = cb->flags(cb->opaque, ev->fetch.uid, ev->strs, ev->nstrs,
                             (ev->fetch.has & LT_IMAP_HAS_MODSEQ) ? ev->fetch.modseq : 0);
    return err ? ev_fail(c, err, "IMAP: fetch aborted by the flags callback") : LT_OK;
}

static lt_err_t on_fetch_event(lt_imap_t *c, const lt_imap_event_t *ev)
{
    const lt_imap_fetch_cb_t *cb = c->fcb;
    const lt_imap_fetch_t *f = &ev->fetch;
    lt_err_t err = LT_OK;
    switch (ev->type) {
    case LT_IMAP_EV_BODY_SKIPPED:
        c->f_len = ev->literal_len;
        c->f_mode = 0;
        c->f_body = 1;
        break;
    case LT_IMAP_EV_BODY_BEGIN:
        c->f_len = ev->literal_len;
        c->f_body = !ev->nil;
        if (ev->nil) {
            c->f_mode = 0;
            c->f_nil = 1;
        } else if ((f->has & LT_IMAP_HAS_UID) && (f->has & LT_IMAP_HAS_DATE)) {
            c->f_mode = 1;
            if (cb->begin)
                err = cb->begin(cb->opaque, f->uid,
                                (f->has & LT_IMAP_HAS_SIZE) ? f->size : ev->literal_len,
                                f->internaldate_ms);
        } else {
            c->f_mode = 2; /* UID or INTERNALDATE after the body: hold it (<= max_message) */
            if (!c->f_buf)
                c->f_buf = lt_buf_new(c->max_message);
            lt_buf_reset(c->f_buf);
        }
        break;
    case LT_IMAP_EV_BODY_DATA:
        if (c->f_mode == 1 && cb->data)
            err = cb->data(cb->opaque, ev->data, ev->len);
        else if (c->f_mode == 2 && lt_buf_append(c->f_buf, ev->data, ev->len))
            return ev_fail(c, LT_ERR_TOO_BIG, "IMAP: message over the cap"); /* cannot happen */
        break;
    case LT_IMAP_EV_BODY_END:
        if (c->f_mode == 1) {
            c->f_mode = 0;
            if (cb->end)
                err = cb->end(cb->opaque);
        }
        break;
    case LT_IMAP_EV_FETCH: {
        int body = c->f_body;
        c->f_body = 0;
        if (c->f_nil) {
            /* Not "gone" yet: checked with UID SEARCH once the fetch is done. */
            c->f_nil = 0;
            if (f->has & LT_IMAP_HAS_UID)
                want_mark(c, f->uid, W_NIL);
            break;
        }
        if (c->f_mode == 2) {
            c->f_mode = 0;
            if (!(f->has & LT_IMAP_HAS_UID))
                return ev_fail(c, LT_ERR_TEMPORARY,
                               "IMAP protocol error: FETCH of message %llu without a UID",
                               (unsigned long long)ev->num);
            want_mark(c, f->uid, W_DONE);
            if ((err = deliver_buffered(c, f)))
                return err;
            return fetch_flags(c, ev);
        }
        if ((f->has & LT_IMAP_HAS_UID) && body)
            want_mark(c, f->uid, W_DONE);
        if ((f->has & LT_IMAP_HAS_UID) && body && !f->body_skipped &&
            (err = fetch_flags(c, ev)))
            return err;
        if ((f->has & LT_IMAP_HAS_UID) && f->body_skipped && cb->skipped) {
            char why[128];
            snprintf(why, sizeof(why), "message of %llu bytes is over the %llu-byte cap",
                     (unsigned long long)c->f_len, (unsigned long long)c->max_message);
            cb->skipped(cb->opaque, f->uid, LT_ERR_TOO_BIG, why);
        }
        break;
    }
    default:
        break;
    }
    return err ? ev_fail(c, err, "IMAP: fetch aborted by the message callback") : LT_OK;
}

/* A response code that any status carries (tagged or not). */
static void on_common_code(lt_imap_t *c, const lt_imap_event_t *ev)
{
    if (ev->code && !strcmp(ev->code, "CAPABILITY") && ev->nstrs)
        set_caps(c, ev->strs, ev->nstrs);
    if (ev->code && !strcmp(ev->code, "ALERT"))
        lt_warn(c->log, "IMAP server alert: %s", ev->text);
}

/* A tagged response completes its command's slot. */
static lt_err_t on_tagged(lt_imap_t *c, const lt_imap_event_t *ev)
{
    int ok;
    unsigned tag = ev->tag[0] == 'A' ? parse_u32(ev->tag + 1, &ok) : (ok = 0);
    pending_t *p = NULL;
    for (int i = 0; ok && i < MAX_INFLIGHT; i++)
        if (c->pend[i].tag == tag && !c->pend[i].done)
            p = &c->pend[i];
    if (!p)
        return ev_fail(c, LT_ERR_TEMPORARY,
                       "IMAP protocol error: tagged response for unknown tag %s", ev->tag);
    p->done = 1;
    p->st = ev->status;
    copy_str(p->code, sizeof(p->code), ev->code);
    copy_str(p->code_arg, sizeof(p->code_arg), ev->code_arg);
    copy_str(p->text, sizeof(p->text), ev->text);
    on_common_code(c, ev);
    return LT_OK;
}

/* UIDVALIDITY and UIDNEXT of the mailbox being examined. */
static lt_err_t on_mailbox_code(lt_imap_t *c, const lt_imap_event_t *ev)
{
    int ok;
    if (!strcmp(ev->code, "UIDVALIDITY")) {
        c->mb->uidvalidity = parse_u32(ev->code_arg, &ok);
        if (!ok || !c->mb->uidvalidity)
            return ev_fail(c, LT_ERR_TEMPORARY, "IMAP protocol error: bad UIDVALIDITY");
    } else if (!strcmp(ev->code, "UIDNEXT")) {
        c->mb->uidnext = parse_u32(ev->code_arg, &ok);
        if (!ok)
            return ev_fail(c, LT_ERR_TEMPORARY, "IMAP protocol error: bad UIDNEXT");
    } else if (!strcmp(ev->code, "HIGHESTMODSEQ")) {
        c->mb->highestmodseq = ev->modseq; /* checked by the parser */
    } else if (!strcmp(ev->code, "NOMODSEQ")) {
        c->mb->nomodseq = 1;
    }
    return LT_OK;
}

/* An untagged OK / NO / BAD / PREAUTH / BYE: the greeting, a BYE, codes. */
static lt_err_t on_status(lt_imap_t *c, const lt_imap_event_t *ev)
{
    if (ev->status == LT_IMAP_BYE) {
        c->bye_seen = 1;
        if (c->logging_out)
            return LT_OK;
        return ev_fail(c, LT_ERR_TEMPORARY, "IMAP: the server said BYE%s%s%s %s",
                       ev->code ? " [" : "", ev->code ? ev->code : "", ev->code ? "]" : "",
                       ev->text);
    }
    if (!c->greeted) {
        c->greeted = 1;
        if (ev->status == LT_IMAP_PREAUTH)
            c->state = S_AUTH;
        else if (ev->status != LT_IMAP_OK)
            return ev_fail(c, LT_ERR_TEMPORARY, "IMAP: greeting is not OK: %s", ev->text);
    }
    on_common_code(c, ev);
    if (c->mb && ev->code && ev->status == LT_IMAP_OK)
        return on_mailbox_code(c, ev);
    return LT_OK;
}

/* The folder flags of a LIST response's attributes. */
static unsigned folder_flags(const lt_imap_event_t *ev)
{
    static const struct {
        const char *a;
        unsigned f;
    } attrs[] = {
        {"\\NOSELECT", LT_IMAP_FOLDER_NOSELECT}, {"\\NONEXISTENT", LT_IMAP_FOLDER_NOSELECT},
        {"\\ALL", LT_IMAP_FOLDER_ALL},           {"\\ARCHIVE", LT_IMAP_FOLDER_ARCHIVE},
        {"\\DRAFTS", LT_IMAP_FOLDER_DRAFTS},     {"\\FLAGGED", LT_IMAP_FOLDER_FLAGGED},
        {"\\JUNK", LT_IMAP_FOLDER_JUNK},         {"\\SENT", LT_IMAP_FOLDER_SENT},
        {"\\TRASH", LT_IMAP_FOLDER_TRASH}};
    unsigned flags = 0;
    for (size_t i = 0; i < ev->nstrs; i++)
        for (size_t k = 0; k < sizeof(attrs) / sizeof(attrs[0]); k++)
            if (!strcasecmp(ev->strs[i], attrs[k].a))
                flags |= attrs[k].f;
    return flags;
}

/* One folder of a LIST in progress (others are ignored). */
static lt_err_t on_list(lt_imap_t *c, const lt_imap_event_t *ev)
{
    if (!c->folders_cap && !c->folders)
        return LT_OK; /* not listing */
    if (c->nfolders >= MAX_FOLDERS)
        return ev_fail(c, LT_ERR_TOO_BIG, "IMAP: more than %d folders", MAX_FOLDERS);
    if (c->nfolders == c->folders_cap) {
        c->folders_cap *= 2;
        c->folders = lt_xrealloc(c->folders, c->folders_cap * sizeof(*c->folders));
    }
    lt_imap_folder_t *f = &c->folders[c->nfolders++];
    memset(f, 0, sizeof(*f));
    f->wire_name = lt_xmalloc(ev->mailbox_len + 1);
    memcpy(f->wire_name, ev->mailbox, ev->mailbox_len);
    f->wire_name[ev->mailbox_len] = 0;
    f->delimiter = ev->delimiter;
    lt_buf_t *b = lt_buf_new(4 * ev->mailbox_len + 16);
    char e[200];
    if (ev->mailbox_len == strlen(f->wire_name) &&
        lt_imap_utf7_decode(ev->mailbox, ev->mailbox_len, b, e, sizeof(e)) == LT_OK) {
        f->name = lt_xstrdup(lt_buf_str(b));
    } else {
        lt_warn(c->log, "IMAP: folder name is not valid modified UTF-7; skipped from "
                        "examination");
    }
    lt_buf_destroy(b);
    f->flags |= folder_flags(ev);
    return LT_OK;
}

/* The UIDs of a UID SEARCH in progress, within its range. */
static lt_err_t on_search(lt_imap_t *c, const lt_imap_event_t *ev)
{
    if (!c->searching)
        return LT_OK;
    for (size_t i = 0; i < ev->nnums; i++) {
        uint32_t u = ev->nums[i];
        if (u < c->search_lo || u > c->search_hi)
            continue; /* "n:*" always includes the highest UID, even below n */
        if (c->nuids >= MAX_SEARCH_UIDS)
            return ev_fail(c, LT_ERR_TOO_BIG, "IMAP: search result over %u UIDs", MAX_SEARCH_UIDS);
        if (c->nuids == c->uids_cap) {
            c->uids_cap = c->uids_cap ? c->uids_cap * 2 : 1024;
            c->uids = lt_xrealloc(c->uids, c->uids_cap * sizeof(*c->uids));
        }
        c->uids[c->nuids++] = u;
    }
    return LT_OK;
}

/* The FLAGS of the UID lt_imap_uid_flags() asked for, space-separated. */
static void on_fetch_flags(lt_imap_t *c, const lt_imap_event_t *ev)
{
    if (!c->flags_out || !(ev->fetch.has & LT_IMAP_HAS_UID) || ev->fetch.uid != c->flags_uid ||
        !(ev->fetch.has & LT_IMAP_HAS_FLAGS))
        return;
    size_t o = 0;
    c->flags_found = 1;
    c->flags_out[0] = 0;
    for (size_t i = 0; i < ev->nstrs; i++)
        o += (size_t)snprintf(c->flags_out + (o < c->flags_size ? o : c->flags_size - 1),
                              o < c->flags_size ? c->flags_size - o : 1, "%s%s", i ? " " : "",
                              ev->strs[i]);
}

/* ENABLED, VANISHED and FETCH FLAGS for lt_imap_enable() and the change callbacks. */
static lt_err_t on_changes(lt_imap_t *c, const lt_imap_event_t *ev)
{
    lt_err_t err = LT_OK;
    const lt_imap_changes_cb_t *cb = c->ccb;
    if (ev->type == LT_IMAP_EV_ENABLED) {
        for (size_t i = 0; i < ev->nstrs; i++) {
            unsigned b = cap_bit(ev->strs[i]);
            c->enabled |= b == LT_IMAP_CAP_QRESYNC ? b | LT_IMAP_CAP_CONDSTORE : b;
        }
        return LT_OK;
    }
    if (ev->type == LT_IMAP_EV_VANISHED) {
        if (!ev->earlier) { /* expunged now: the message count drops */
            uint64_t n = lt_imap_ranges_count(ev->ranges, ev->nranges);
            c->exists = n >= c->exists ? 0 : c->exists - (uint32_t)n;
        }
        if (cb && cb->vanished)
            err = cb->vanished(cb->opaque, ev->ranges, ev->nranges, ev->earlier);
    } else if (ev->type == LT_IMAP_EV_FETCH && cb && cb->changed &&
               (ev->fetch.has & LT_IMAP_HAS_UID) && (ev->fetch.has & LT_IMAP_HAS_FLAGS)) {
        err = cb->changed(cb->opaque, ev->fetch.uid, ev->strs, ev->nstrs,
                          (ev->fetch.has & LT_IMAP_HAS_MODSEQ) ? ev->fetch.modseq : 0);
    }
    return err ? ev_fail(c, err, "IMAP: aborted by the change callback") : LT_OK;
}

/* The parser's event callback: one handler per kind of response. */
static lt_err_t on_event(void *opaque, const lt_imap_event_t *ev)
{
    lt_imap_t *c = opaque;
    switch (ev->type) {
    case LT_IMAP_EV_TAGGED:
        return on_tagged(c, ev);
    case LT_IMAP_EV_STATUS:
        return on_status(c, ev);
    case LT_IMAP_EV_CONTINUE:
        c->cont++;
        copy_str(c->cont_text, sizeof(c->cont_text), ev->text);
        return LT_OK;
    case LT_IMAP_EV_CAPABILITY:
        set_caps(c, ev->strs, ev->nstrs);
        return LT_OK;
    case LT_IMAP_EV_EXISTS:
        c->exists = ev->num > UINT32_MAX ? UINT32_MAX : (uint32_t)ev->num;
        return LT_OK;
    case LT_IMAP_EV_EXPUNGE:
        if (c->exists)
            c->exists--;
        return LT_OK;
    case LT_IMAP_EV_LIST:
        return on_list(c, ev);
    case LT_IMAP_EV_SEARCH:
        return on_search(c, ev);
    case LT_IMAP_EV_ENABLED:
    case LT_IMAP_EV_VANISHED:
        return on_changes(c, ev);
    case LT_IMAP_EV_FETCH: {
        on_fetch_flags(c, ev);
        lt_err_t err = on_changes(c, ev);
        if (err)
            return err;
    }
        /* fall through */
    case LT_IMAP_EV_BODY_BEGIN:
    case LT_IMAP_EV_BODY_DATA:
    case LT_IMAP_EV_BODY_END:
    case LT_IMAP_EV_BODY_SKIPPED:
        return c->fcb ? on_fetch_event(c, ev) : LT_OK;
    default:
        return LT_OK;
    }
}

/* Read once and feed the parser. */
static lt_err_t pump(lt_imap_t *c, char *errstr, size_t errstr_size)
{
    size_t got = 0;
    lt_err_t err = tr_read(c, &got, errstr, errstr_size);
    if (err)
        return err;
    char perr[320];
    c->ev_err = LT_OK;
    err = lt_imap_parser_feed(c->parser, c->rbuf, got, perr, sizeof(perr));
    if (!err)
        return LT_OK;
    if (c->ev_err)
        return set_broken(c, c->ev_err, errstr, errstr_size, c->ev_msg);
    /* Garbage from the server: retrying later is all we can do. */
    return set_broken(c, LT_ERR_TEMPORARY, errstr, errstr_size, perr);
}

/* ------------------------------------------------------------ commands */

static int new_slot(lt_imap_t *c)
{
    for (int i = 0; i < MAX_INFLIGHT; i++)
        if (!c->pend[i].tag) {
            memset(&c->pend[i], 0, sizeof(c->pend[i]));
            c->pend[i].tag = ++c->next_tag;
            return i;
        }
    return -1; /* cannot happen: fetch_pipeline < MAX_INFLIGHT */
}

static lt_err_t wait_slot(lt_imap_t *c, int slot, int or_cont, char *errstr, size_t errstr_size)
{
    while (!c->pend[slot].done && !(or_cont && c->cont)) {
        lt_err_t err = pump(c, errstr, errstr_size);
        if (err)
            return err;
    }
    return LT_OK;
}

static int temp_code(const char *code)
{
    static const char *t[] = {"UNAVAILABLE",   "INUSE",     "LIMIT",      "SERVERBUG",
                              "EXPUNGEISSUED", "OVERQUOTA", "CORRUPTION", NULL};
    for (int i = 0; t[i]; i++)
        if (!strcmp(code, t[i]))
            return 1;
    return 0;
}

/* Turn a completed command into a result code, and free its slot. */
static lt_err_t finish(lt_imap_t *c, int slot, int kind, const char *what, char *errstr,
                       size_t errstr_size)
{
    pending_t *p = &c->pend[slot];
    p->tag = 0;
    if (p->st == LT_IMAP_OK)
        return LT_OK;
    lt_err_t err;
    if (p->st == LT_IMAP_BAD)
        err = LT_ERR_FINAL;
    else if (temp_code(p->code))
        err = LT_ERR_TEMPORARY;
    else if (kind == K_AUTH)
        err = LT_ERR_REAUTH;
    else if (kind == K_EXAMINE && (!strcmp(p->code, "NONEXISTENT") ||
                                   (!p->code[0] && (strcasestr(p->text, "doesn't exist") ||
                                                    strcasestr(p->text, "does not exist")))))
        err = LT_ERR_NOT_FOUND; /* Dovecot 2.3 sends no [NONEXISTENT] on SELECT/EXAMINE */
    else if (kind == K_READ)
        err = LT_ERR_TEMPORARY;
    else
        err = LT_ERR_FINAL;
    return lt_seterr(errstr, errstr_size, err, "IMAP %s: %s%s%s%s %s", what,
                     lt_imap_status_name(p->st), p->code[0] ? " [" : "", p->code,
                     p->code[0] ? "]" : "", p->text);
}

/* Send "A<n> " + line + CRLF in one write and return the slot. */
static lt_err_t send_cmd(lt_imap_t *c, lt_buf_t *line, int *slot, char *errstr, size_t errstr_size)
{
    int s = new_slot(c);
    if (s < 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: too many commands in flight");
    lt_buf_t *b = lt_buf_new(lt_buf_len(line) + 32);
    lt_buf_appendf(b, "A%u ", c->pend[s].tag);
    lt_buf_append(b, lt_buf_data(line), lt_buf_len(line));
    lt_buf_append(b, "\r\n", 2);
    lt_err_t err = tr_write(c, lt_buf_data(b), lt_buf_len(b), errstr, errstr_size);
    OPENSSL_cleanse((void *)lt_buf_data(b), lt_buf_len(b)); /* may hold a password */
    lt_buf_destroy(b);
    if (err) {
        c->pend[s].tag = 0;
        return err;
    }
    *slot = s;
    return LT_OK;
}

/* A simple command: send, wait for completion, classify. */
static lt_err_t simple(lt_imap_t *c, lt_buf_t *line, int kind, const char *what, char *errstr,
                       size_t errstr_size)
{
    int slot;
    lt_err_t err = send_cmd(c, line, &slot, errstr, errstr_size);
    if (!err)
        err = wait_slot(c, slot, 0, errstr, errstr_size);
    if (!err)
        err = finish(c, slot, kind, what, errstr, errstr_size);
    return err;
}

/* Send a literal: "{n}" or "{n+}" ends the current part of the command. */
static lt_err_t send_literal(lt_imap_t *c, int slot, const void *data, size_t len, char *errstr,
                             size_t errstr_size)
{
    lt_err_t err;
    if (!lt_imap_has_cap(c, "LITERAL+")) {
        c->cont = 0;
        if ((err = wait_slot(c, slot, 1, errstr, errstr_size)))
            return err;
        if (c->pend[slot].done)
            return LT_OK; /* refused: finish() reports it */
        c->cont = 0;
    }
    return tr_write(c, data, len, errstr, errstr_size);
}

static lt_err_t encode_name(const char *name, lt_buf_t *out, char *errstr, size_t errstr_size)
{
    lt_buf_t *b = lt_buf_new(8 * 1024);
    lt_err_t err = lt_imap_utf7_encode(name, strlen(name), b, errstr, errstr_size);
    if (!err)
        put_quoted(out, lt_buf_str(b), lt_buf_len(b));
    lt_buf_destroy(b);
    return err;
}

/* ------------------------------------------------------------ API */

lt_imap_t *lt_imap_new(const lt_imap_opts_t *o)
{
    lt_imap_t *c = lt_xcalloc(1, sizeof(*c));
    c->host = lt_xstrdup(o->host ? o->host : "");
    c->port = o->port ? o->port : 993;
    c->tls = o->tls;
    c->ca_file = o->ca_file ? lt_xstrdup(o->ca_file) : NULL;
    c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 15000;
    c->io_timeout_ms = o->io_timeout_ms > 0 ? o->io_timeout_ms : 60000;
    c->max_line = o->max_line ? o->max_line : 64 * 1024;
    c->max_message = o->max_message ? o->max_message : 64ull * 1024 * 1024;
    c->fetch_batch = o->fetch_batch ? o->fetch_batch : 250;
    c->fetch_pipeline = o->fetch_pipeline > 0 ? o->fetch_pipeline : 2;
    if (c->fetch_pipeline > MAX_INFLIGHT - 1)
        c->fetch_pipeline = MAX_INFLIGHT - 1;
    c->log = o->log;
    c->hide_caps = o->hide_caps;
    c->fd = -1;
    lt_imap_parser_opts_t po = {.max_line = c->max_line, .max_message = c->max_message};
    c->parser = lt_imap_parser_new(&po, on_event, c);
    return c;
}

void lt_imap_destroy(lt_imap_t *c)
{
    if (!c)
        return;
    close_conn(c);
    ahead_clear(c);
    lt_imap_parser_destroy(c->parser);
    lt_buf_destroy(c->f_buf);
    lt_imap_folders_free(c->folders, c->nfolders);
    free(c->uids);
    free(c->host);
    free(c->ca_file);
    free(c);
}

static lt_err_t greet(lt_imap_t *c, char *errstr, size_t errstr_size)
{
    c->state = S_NOT_AUTH;
    while (!c->greeted) {
        lt_err_t err = pump(c, errstr, errstr_size);
        if (err)
            return err;
    }
    if (!strstr(c->caps, " IMAP4REV1 ") && !strstr(c->caps, " IMAP4REV2 "))
        return lt_imap_capability(c, errstr, errstr_size);
    return LT_OK;
}

lt_err_t lt_imap_connect_fd(lt_imap_t *c, int fd, char *errstr, size_t errstr_size)
{
    if (c->fd >= 0 || c->broken) {
        close(fd);
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: handle already used");
    }
    c->fd = fd;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return set_broken(c, LT_ERR_TEMPORARY, errstr, errstr_size, "IMAP: fcntl failed");
    if (c->tls) {
        lt_err_t err = tls_start(c, lt_now_ms() + c->connect_timeout_ms, errstr, errstr_size);
        if (err)
            return err;
    }
    return greet(c, errstr, errstr_size);
}

lt_err_t lt_imap_connect(lt_imap_t *c, char *errstr, size_t errstr_size)
{
    if (c->fd >= 0 || c->broken)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: handle already used");
    int64_t deadline = lt_now_ms() + c->connect_timeout_ms;
    char port[16];
    snprintf(port, sizeof(port), "%d", c->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gr = getaddrinfo(c->host, port, &hints, &res);
    if (gr)
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "IMAP: cannot resolve %s: %s",
                         c->host, gai_strerror(gr));
    char last[200] = "no address";
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int left = (int)(deadline - lt_now_ms());
            int r = left > 0 ? poll(&pfd, 1, left) : 0;
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (r > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                freeaddrinfo(res);
                c->fd = fd;
                if (c->tls) {
                    lt_err_t err = tls_start(c, deadline, errstr, errstr_size);
                    if (err)
                        return err;
                }
                return greet(c, errstr, errstr_size);
            }
            snprintf(last, sizeof(last), "%s",
                     r == 0 ? "timed out" : strerror(soerr ? soerr : errno));
        } else {
            snprintf(last, sizeof(last), "%s", strerror(errno));
        }
        close(fd);
    }
    freeaddrinfo(res);
    return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "IMAP: cannot connect to %s:%d: %s",
                     c->host, c->port, last);
}

int lt_imap_has_cap(const lt_imap_t *c, const char *cap)
{
    char want[128];
    size_t n = strlen(cap);
    if (n + 3 > sizeof(want))
        return 0;
    want[0] = ' ';
    for (size_t i = 0; i < n; i++)
        want[i + 1] = (char)((cap[i] >= 'a' && cap[i] <= 'z') ? cap[i] - 32 : cap[i]);
    want[n + 1] = ' ';
    want[n + 2] = 0;
    return strstr(c->caps, want) != NULL;
}

lt_err_t lt_imap_capability(lt_imap_t *c, char *errstr, size_t errstr_size)
{
    lt_err_t err = check_open(c, S_NOT_AUTH, errstr, errstr_size);
    if (err)
        return err;
    lt_buf_t *b = lt_buf_new(64);
    lt_buf_appendf(b, "CAPABILITY");
    err = simple(c, b, K_OTHER, "CAPABILITY", errstr, errstr_size);
    lt_buf_destroy(b);
    return err;
}

/* caps_gen: the capability generation before the login command was sent;
 * capabilities change at login, so they are asked for again unless the
 * server sent them (in the tagged OK, usually). */
static lt_err_t after_login(lt_imap_t *c, int slot, unsigned caps_gen, char *errstr,
                            size_t errstr_size)
{
    lt_err_t err = wait_slot(c, slot, 0, errstr, errstr_size);
    if (!err)
        err = finish(c, slot, K_AUTH, "login", errstr, errstr_size);
    if (err)
        return err;
    c->state = S_AUTH;
    if (c->caps_gen == caps_gen && (err = lt_imap_capability(c, errstr, errstr_size)))
        return err;
    if (lt_imap_has_cap(c, "ID")) {
        lt_buf_t *b = lt_buf_new(256);
        lt_buf_appendf(b, "ID (\"name\" \"lattice-mail-ingest\" \"version\" \"%s\")", LT_VERSION);
        err = simple(c, b, K_OTHER, "ID", errstr, errstr_size);
        lt_buf_destroy(b);
        if (err == LT_ERR_FINAL)
            err = LT_OK; /* ID is informational */
    }
    return err;
}

/* AUTHENTICATE <mech> with an initial response (inline with SASL-IR, else
 * after the first continuation). A later challenge means failure: answer it
 * with an empty line (XOAUTH2) or "*" (cancel), then read the NO. */
static lt_err_t authenticate(lt_imap_t *c, const char *mech, const lt_buf_t *ir, char *errstr,
                             size_t errstr_size)
{
    int sasl_ir = lt_imap_has_cap(c, "SASL-IR");
    lt_buf_t *b = lt_buf_new(lt_buf_len(ir) + 64);
    lt_buf_appendf(b, "AUTHENTICATE %s", mech);
    if (sasl_ir) {
        lt_buf_append(b, " ", 1);
        lt_buf_append(b, lt_buf_data(ir), lt_buf_len(ir));
    }
    int slot;
    unsigned gen = c->caps_gen;
    c->cont = 0;
    lt_err_t err = send_cmd(c, b, &slot, errstr, errstr_size);
    OPENSSL_cleanse((void *)lt_buf_data(b), lt_buf_len(b));
    lt_buf_destroy(b);
    if (err)
        return err;
    if (!sasl_ir) {
        if ((err = wait_slot(c, slot, 1, errstr, errstr_size)))
            return err;
        if (!c->pend[slot].done) {
            c->cont = 0;
            lt_buf_t *l = lt_buf_new(lt_buf_len(ir) + 4);
            lt_buf_append(l, lt_buf_data(ir), lt_buf_len(ir));
            lt_buf_append(l, "\r\n", 2);
            err = tr_write(c, lt_buf_data(l), lt_buf_len(l), errstr, errstr_size);
            OPENSSL_cleanse((void *)lt_buf_data(l), lt_buf_len(l));
            lt_buf_destroy(l);
            if (err)
                return err;
        }
    }
    char challenge[512] = "";
    for (;;) {
        if ((err = wait_slot(c, slot, 1, errstr, errstr_size)))
            return err;
        if (c->pend[slot].done)
            break;
        c->cont = 0;
        copy_str(challenge, sizeof(challenge), c->cont_text);
        const char *answer = strcmp(mech, "XOAUTH2") ? "*\r\n" : "\r\n";
        if ((err = tr_write(c, answer, strlen(answer), errstr, errstr_size)))
            return err;
    }
    err = after_login(c, slot, gen, errstr, errstr_size);
    if (err && challenge[0]) {
        /* XOAUTH2 errors come as base64 JSON: decode it for the reason. */
        unsigned char js[400];
        size_t cl = strlen(challenge);
        if (cl < 4 * (sizeof(js) - 1) / 3) {
            int n = EVP_DecodeBlock(js, (const unsigned char *)challenge, (int)cl);
            if (n > 0) {
                js[n] = 0;
                for (int i = 0; i < n; i++)
                    if (js[i] < 0x20 || js[i] >= 0x7f)
                        js[i] = '?';
                size_t l = strlen(errstr);
                if (errstr_size > l)
                    snprintf(errstr + l, errstr_size - l, " (%s)", js);
            }
        }
    }
    return err;
}

/* The preamble of every login: a connection not yet authenticated. */
static lt_err_t check_login(lt_imap_t *c, char *errstr, size_t errstr_size)
{
    lt_err_t err = check_open(c, S_NOT_AUTH, errstr, errstr_size);
    if (err)
        return err;
    if (c->state != S_NOT_AUTH)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: already logged in");
    return LT_OK;
}

/* AUTHENTICATE mech with the raw SASL response `raw` (taken: wiped and
 * freed), sent base64-encoded; the encoded copy is wiped too. */
static lt_err_t authenticate_secret(lt_imap_t *c, const char *mech, lt_buf_t *raw, char *errstr,
                                    size_t errstr_size)
{
    lt_buf_t *ir = lt_buf_new(2 * lt_buf_len(raw) + 16);
    b64(ir, lt_buf_data(raw), lt_buf_len(raw));
    OPENSSL_cleanse((void *)lt_buf_data(raw), lt_buf_len(raw));
    lt_buf_destroy(raw);
    lt_err_t err = authenticate(c, mech, ir, errstr, errstr_size);
    OPENSSL_cleanse((void *)lt_buf_data(ir), lt_buf_len(ir));
    lt_buf_destroy(ir);
    return err;
}

/* Mask every whole occurrence of secret (n bytes) in the string errstr;
 * the result is cut to errstr_size like any error. A secret's prefix left at
 * the end (an error already cut inside it) goes too. */
static void mask_in(char *errstr, size_t errstr_size, const char *secret, size_t n)
{
    static const char mask[] = "[redacted]";
    size_t len = strlen(errstr), ml = sizeof(mask) - 1, o = 0;
    size_t cap = len + (len / n + 1) * ml + 1;
    char *out = lt_xmalloc(cap);
    for (size_t i = 0; i < len;) {
        if (len - i >= n && memcmp(errstr + i, secret, n) == 0) {
            memcpy(out + o, mask, ml);
            o += ml;
            i += n;
        } else {
            out[o++] = errstr[i++];
        }
    }
    out[o] = 0;
    for (size_t k = n - 1; k >= LT_IMAP_SECRET_MIN && o >= k; k--)
        if (memcmp(out + o - k, secret, k) == 0) {
            o -= k;
            out[o] = 0;
            break;
        }
    snprintf(errstr, errstr_size, "%s", out);
    OPENSSL_cleanse(out, cap);
    free(out);
}

/* A login's error quotes the server's words (its NO or BYE answer): a
 * server that echoes the secret back would put it into the error, and so
 * into the log and the command's status. Each occurrence is masked, as sent
 * and in its quoted form. Secrets shorter than LT_IMAP_SECRET_MIN bytes are
 * not looked for: they would match ordinary words. */
static void redact(char *errstr, size_t errstr_size, const char *secret)
{
    size_t n = strlen(secret);
    if (!errstr || !errstr_size || n < LT_IMAP_SECRET_MIN)
        return;
    mask_in(errstr, errstr_size, secret, n);
    lt_buf_t *q = lt_buf_new(2 * n + 2);
    put_quoted(q, secret, n); /* as LOGIN sends it */
    const char *qd = (const char *)lt_buf_data(q);
    size_t ql = lt_buf_len(q);
    if (ql > n + 2 && qd[0] == '"') /* escapes inside: the quoted form differs */
        mask_in(errstr, errstr_size, qd + 1, ql - 2);
    OPENSSL_cleanse((void *)lt_buf_data(q), lt_buf_len(q));
    lt_buf_destroy(q);
}

static lt_err_t login(lt_imap_t *c, const char *user, const char *password, char *errstr,
                      size_t errstr_size);

lt_err_t lt_imap_login(lt_imap_t *c, const char *user, const char *password, char *errstr,
                       size_t errstr_size)
{
    lt_err_t err = login(c, user, password, errstr, errstr_size);
    if (err)
        redact(errstr, errstr_size, password);
    return err;
}

static lt_err_t login(lt_imap_t *c, const char *user, const char *password, char *errstr,
                      size_t errstr_size)
{
    lt_err_t err = check_login(c, errstr, errstr_size);
    if (err)
        return err;
    size_t ul = strlen(user), pl = strlen(password);
    if (lt_imap_has_cap(c, "AUTH=PLAIN")) {
        lt_buf_t *raw = lt_buf_new(ul + pl + 2);
        lt_buf_append(raw, "", 1);
        lt_buf_append(raw, user, ul);
        lt_buf_append(raw, "", 1);
        lt_buf_append(raw, password, pl);
        return authenticate_secret(c, "PLAIN", raw, errstr, errstr_size);
    }
    if (lt_imap_has_cap(c, "LOGINDISABLED"))
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                         "IMAP: the server disabled LOGIN and offers no AUTH=PLAIN");
    /* LOGIN user password, with literals for 8-bit or CR/LF characters. */
    lt_buf_t *b = lt_buf_new(2 * (ul + pl) + 64);
    int ulit = needs_literal(user, ul), plit = needs_literal(password, pl);
    int plus = lt_imap_has_cap(c, "LITERAL+");
    int slot = -1;
    unsigned gen = c->caps_gen;
    if (!ulit && !plit) {
        lt_buf_appendf(b, "LOGIN ");
        put_quoted(b, user, ul);
        lt_buf_append(b, " ", 1);
        put_quoted(b, password, pl);
        err = send_cmd(c, b, &slot, errstr, errstr_size);
        if (!err)
            err = after_login(c, slot, gen, errstr, errstr_size);
        OPENSSL_cleanse((void *)lt_buf_data(b), lt_buf_len(b));
        lt_buf_destroy(b);
        return err;
    }
    /* Literal form: "LOGIN {u}" CRLF user " {p}" CRLF password CRLF. */
    lt_buf_appendf(b, "LOGIN ");
    if (ulit) {
        lt_buf_appendf(b, "{%zu%s}", ul, plus ? "+" : "");
    } else {
        put_quoted(b, user, ul);
        lt_buf_appendf(b, " {%zu%s}", pl, plus ? "+" : "");
    }
    err = send_cmd(c, b, &slot, errstr, errstr_size);
    lt_buf_reset(b);
    if (!err && ulit) {
        err = send_literal(c, slot, user, ul, errstr, errstr_size);
        if (!err && !c->pend[slot].done) {
            lt_buf_append(b, " ", 1);
            if (plit)
                lt_buf_appendf(b, "{%zu%s}\r\n", pl, plus ? "+" : "");
            else {
                put_quoted(b, password, pl);
                lt_buf_append(b, "\r\n", 2);
            }
            err = tr_write(c, lt_buf_data(b), lt_buf_len(b), errstr, errstr_size);
        }
    }
    if (!err && plit && !c->pend[slot].done) {
        err = send_literal(c, slot, password, pl, errstr, errstr_size);
        if (!err && !c->pend[slot].done)
            err = tr_write(c, "\r\n", 2, errstr, errstr_size);
    }
    OPENSSL_cleanse((void *)lt_buf_data(b), lt_buf_len(b));
    lt_buf_destroy(b);
    if (!err)
        err = after_login(c, slot, gen, errstr, errstr_size);
    return err;
}

lt_err_t lt_imap_login_xoauth2(lt_imap_t *c, const char *user, const char *token, char *errstr,
                               size_t errstr_size)
{
    lt_err_t err = check_login(c, errstr, errstr_size);
    if (err)
        return err;
    if (!lt_imap_has_cap(c, "AUTH=XOAUTH2"))
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                         "IMAP: the server does not offer AUTH=XOAUTH2");
    size_t n = strlen(user) + strlen(token) + 32;
    lt_buf_t *raw = lt_buf_new(n);
    lt_buf_appendf(raw, "user=%s\001auth=Bearer %s\001\001", user, token);
    err = authenticate_secret(c, "XOAUTH2", raw, errstr, errstr_size);
    if (err)
        redact(errstr, errstr_size, token);
    return err;
}

void lt_imap_folders_free(lt_imap_folder_t *folders, size_t nfolders)
{
    for (size_t i = 0; folders && i < nfolders; i++) {
        free(folders[i].name);
        free(folders[i].wire_name);
    }
    free(folders);
}

lt_err_t lt_imap_list(lt_imap_t *c, lt_imap_folder_t **folders, size_t *nfolders, char *errstr,
                      size_t errstr_size)
{
    *folders = NULL;
    *nfolders = 0;
    lt_err_t err = check_open(c, S_AUTH, errstr, errstr_size);
    if (err)
        return err;
    c->folders_cap = 16;
    c->nfolders = 0;
    c->folders = lt_xmalloc(c->folders_cap * sizeof(*c->folders));
    lt_buf_t *b = lt_buf_new(64);
    lt_buf_appendf(b, "LIST \"\" \"*\"");
    err = simple(c, b, K_READ, "LIST", errstr, errstr_size);
    lt_buf_destroy(b);
    if (!err) {
        *folders = c->folders;
        *nfolders = c->nfolders;
    } else {
        lt_imap_folders_free(c->folders, c->nfolders);
    }
    c->folders = NULL;
    c->nfolders = c->folders_cap = 0;
    return err;
}

static lt_err_t search_cmd(lt_imap_t *c, lt_buf_t *b, uint32_t lo, uint32_t hi, uint32_t **uids,
                           size_t *nuids, char *errstr, size_t errstr_size);

/* The ranges as a sequence set; hi = LT_IMAP_STAR as "*". */
static void range_set(lt_buf_t *b, const lt_imap_range_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        lt_buf_appendf(b, "%s%u", i ? "," : "", r[i].lo);
        if (r[i].hi == LT_IMAP_STAR)
            lt_buf_appendf(b, ":*");
        else if (r[i].hi != r[i].lo)
            lt_buf_appendf(b, ":%u", r[i].hi);
    }
}

static int ranges_ok(const lt_imap_range_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!r[i].lo || r[i].hi < r[i].lo)
            return 0;
    return 1;
}

/* EXAMINE or SELECT (verb), with QRESYNC parameters when q. */
static lt_err_t open_mailbox(lt_imap_t *c, const char *verb, const char *name,
                             const lt_imap_qresync_t *q, lt_imap_mailbox_t *mb,
                             const lt_imap_changes_cb_t *cb, char *errstr, size_t errstr_size)
{
    memset(mb, 0, sizeof(*mb));
    lt_err_t err = check_open(c, S_AUTH, errstr, errstr_size);
    if (err)
        return err;
    lt_buf_t *b = lt_buf_new(16 * 1024 + (q ? 24 * q->nknown : 0));
    lt_buf_appendf(b, "%s ", verb);
    if ((err = encode_name(name, b, errstr, errstr_size))) {
        lt_buf_destroy(b);
        return err;
    }
    if (q) {
        lt_buf_appendf(b, " (QRESYNC (%u %llu", q->uidvalidity, (unsigned long long)q->modseq);
        if (q->nknown) {
            lt_buf_appendf(b, " ");
            range_set(b, q->known, q->nknown);
        }
        lt_buf_appendf(b, "))");
    }
    c->state = S_AUTH; /* a failed EXAMINE leaves no mailbox selected */
    c->exists = 0;
    c->mb = mb;
    c->ccb = cb;
    int slot;
    err = send_cmd(c, b, &slot, errstr, errstr_size);
    lt_buf_destroy(b);
    if (!err)
        err = wait_slot(c, slot, 0, errstr, errstr_size);
    c->mb = NULL;
    c->ccb = NULL;
    if (err)
        return err;
    int ro = !strcmp(c->pend[slot].code, "READ-ONLY");
    if ((err = finish(c, slot, K_EXAMINE, verb, errstr, errstr_size)))
        return err;
    mb->exists = c->exists;
    mb->read_only = ro;
    if (!mb->uidvalidity)
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                         "IMAP %s: the server sent no UIDVALIDITY", verb);
    c->state = S_SELECTED;
    return LT_OK;
}

lt_err_t lt_imap_examine(lt_imap_t *c, const char *name, lt_imap_mailbox_t *mb, char *errstr,
                         size_t errstr_size)
{
    return open_mailbox(c, "EXAMINE", name, NULL, mb, NULL, errstr, errstr_size);
}

lt_err_t lt_imap_examine_qresync(lt_imap_t *c, const char *name, const lt_imap_qresync_t *q,
                                 lt_imap_mailbox_t *mb, const lt_imap_changes_cb_t *cb,
                                 char *errstr, size_t errstr_size)
{
    memset(mb, 0, sizeof(*mb));
    if (!(c->enabled & LT_IMAP_CAP_QRESYNC))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "IMAP: QRESYNC is not enabled on this connection");
    if (!q->uidvalidity || !q->modseq || q->modseq > LT_IMAP_MODSEQ_MAX ||
        !ranges_ok(q->known, q->nknown))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: bad QRESYNC parameters");
    return open_mailbox(c, "EXAMINE", name, q, mb, cb, errstr, errstr_size);
}

lt_err_t lt_imap_select(lt_imap_t *c, const char *name, lt_imap_mailbox_t *mb, char *errstr,
                        size_t errstr_size)
{
    return open_mailbox(c, "SELECT", name, NULL, mb, NULL, errstr, errstr_size);
}

unsigned lt_imap_enabled(const lt_imap_t *c)
{
    return c->enabled;
}

lt_err_t lt_imap_enable(lt_imap_t *c, const char *exts, unsigned *enabled, char *errstr,
                        size_t errstr_size)
{
    if (enabled)
        *enabled = 0;
    lt_err_t err = check_open(c, S_AUTH, errstr, errstr_size);
    if (err)
        return err;
    if (c->state != S_AUTH)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "IMAP: ENABLE before a mailbox is examined");
    lt_buf_t *b = lt_buf_new(64 + strlen(exts));
    lt_buf_appendf(b, "ENABLE");
    size_t nsent = 0;
    const char *p = exts;
    while (*p) {
        size_t n = strcspn(p, " ");
        char name[64];
        if (n && n < sizeof(name)) {
            memcpy(name, p, n);
            name[n] = 0;
            int ok = 1;
            for (size_t i = 0; i < n; i++)
                if (!(name[i] >= 'A' && name[i] <= 'Z') && !(name[i] >= 'a' && name[i] <= 'z') &&
                    !(name[i] >= '0' && name[i] <= '9') && !strchr("=-_.+", name[i]))
                    ok = 0;
            if (!ok) {
                lt_buf_destroy(b);
                return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                                 "IMAP: bad extension name for ENABLE");
            }
            if (lt_imap_has_cap(c, name)) {
                lt_buf_appendf(b, " %s", name);
                nsent++;
            }
        }
        p += n;
        while (*p == ' ')
            p++;
    }
    if (nsent && lt_imap_has_cap(c, "ENABLE"))
        err = simple(c, b, K_OTHER, "ENABLE", errstr, errstr_size);
    lt_buf_destroy(b);
    if (!err && enabled)
        *enabled = c->enabled;
    return err;
}

lt_err_t lt_imap_uid_fetch_changed(lt_imap_t *c, const lt_imap_range_t *set, size_t nset,
                                   uint64_t modseq, int vanished, const lt_imap_changes_cb_t *cb,
                                   char *errstr, size_t errstr_size)
{
    lt_err_t err = check_open(c, S_SELECTED, errstr, errstr_size);
    if (err)
        return err;
    if (!nset || !ranges_ok(set, nset) || modseq > LT_IMAP_MODSEQ_MAX)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: bad UID set or modseq");
    if (!modseq && !vanished) { /* every message's flags: plain IMAP4rev1 */
        lt_buf_t *b = lt_buf_new(24 * nset + 32);
        lt_buf_appendf(b, "UID FETCH ");
        range_set(b, set, nset);
        lt_buf_appendf(b, (c->enabled & LT_IMAP_CAP_CONDSTORE) ? " (FLAGS MODSEQ)" : " (FLAGS)");
        c->ccb = cb;
        err = simple(c, b, K_READ, "UID FETCH FLAGS", errstr, errstr_size);
        c->ccb = NULL;
        lt_buf_destroy(b);
        return err;
    }
    if (!lt_imap_has_cap(c, "CONDSTORE") && !(c->enabled & LT_IMAP_CAP_CONDSTORE))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "IMAP: the server does not offer CONDSTORE");
    if (vanished && !(c->enabled & LT_IMAP_CAP_QRESYNC))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID,
                         "IMAP: VANISHED needs QRESYNC enabled");
    lt_buf_t *b = lt_buf_new(24 * nset + 96);
    lt_buf_appendf(b, "UID FETCH ");
    range_set(b, set, nset);
    lt_buf_appendf(b, " (FLAGS) (CHANGEDSINCE %llu%s)", (unsigned long long)modseq,
                   vanished ? " VANISHED" : "");
    c->ccb = cb;
    err = simple(c, b, K_READ, "UID FETCH CHANGEDSINCE", errstr, errstr_size);
    c->ccb = NULL;
    lt_buf_destroy(b);
    return err;
}

lt_err_t lt_imap_uid_search_all(lt_imap_t *c, lt_imap_range_t **ranges, size_t *nranges,
                                char *errstr, size_t errstr_size)
{
    *ranges = NULL;
    *nranges = 0;
    lt_err_t err = check_open(c, S_SELECTED, errstr, errstr_size);
    if (err)
        return err;
    uint32_t *uids = NULL;
    size_t n = 0;
    lt_buf_t *b = lt_buf_new(32);
    lt_buf_appendf(b, "UID SEARCH ALL");
    err = search_cmd(c, b, 1, UINT32_MAX, &uids, &n, errstr, errstr_size);
    lt_buf_destroy(b);
    if (err)
        return err;
    /* uids is ascending and unique: runs of consecutive UIDs become ranges. */
    size_t o = 0;
    lt_imap_range_t *r = lt_xmalloc((n ? n : 1) * sizeof(*r));
    for (size_t i = 0; i < n; i++) {
        if (o && r[o - 1].hi != UINT32_MAX && uids[i] == r[o - 1].hi + 1)
            r[o - 1].hi = uids[i];
        else
            r[o++] = (lt_imap_range_t){uids[i], uids[i]};
    }
    free(uids);
    *ranges = n ? lt_xrealloc(r, o * sizeof(*r)) : r;
    *nranges = o;
    return LT_OK;
}

void lt_imap_wire_bytes(const lt_imap_t *c, uint64_t *in, uint64_t *out)
{
    if (in)
        *in = c ? c->bytes_in : 0;
    if (out)
        *out = c ? c->bytes_out : 0;
}

uint32_t lt_imap_exists(const lt_imap_t *c)
{
    return c->exists;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Send the UID SEARCH command in b; keep the UIDs within [lo, hi]. */
static lt_err_t search_cmd(lt_imap_t *c, lt_buf_t *b, uint32_t lo, uint32_t hi, uint32_t **uids,
                           size_t *nuids, char *errstr, size_t errstr_size)
{
    c->searching = 1;
    c->search_lo = lo;
    c->search_hi = hi;
    c->nuids = 0;
    lt_err_t err = simple(c, b, K_READ, "UID SEARCH", errstr, errstr_size);
    c->searching = 0;
    if (err) {
        free(c->uids);
    } else {
        if (c->nuids)
            qsort(c->uids, c->nuids, sizeof(*c->uids), cmp_u32);
        size_t o = 0; /* drop duplicates */
        for (size_t i = 0; i < c->nuids; i++)
            if (!o || c->uids[o - 1] != c->uids[i])
                c->uids[o++] = c->uids[i];
        *uids = c->uids ? c->uids : lt_xcalloc(1, sizeof(uint32_t));
        *nuids = o;
    }
    c->uids = NULL;
    c->nuids = c->uids_cap = 0;
    return err;
}

lt_err_t lt_imap_uid_search(lt_imap_t *c, uint32_t first, uint32_t last, uint32_t **uids,
                            size_t *nuids, char *errstr, size_t errstr_size)
{
    *uids = NULL;
    *nuids = 0;
    lt_err_t err = check_open(c, S_SELECTED, errstr, errstr_size);
    if (err)
        return err;
    if (first == 0 || (last && last < first))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: bad UID range %u:%u", first,
                         last);
    lt_buf_t *b = lt_buf_new(64);
    if (last)
        lt_buf_appendf(b, "UID SEARCH UID %u:%u", first, last);
    else
        lt_buf_appendf(b, "UID SEARCH UID %u:*", first);
    err = search_cmd(c, b, first, last ? last : UINT32_MAX, uids, nuids, errstr, errstr_size);
    lt_buf_destroy(b);
    return err;
}

/* The sequence set of uids[from..to): runs of consecutive UIDs as a:b. */
static void uid_set(lt_buf_t *b, const uint32_t *u, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j + 1 < n && u[j + 1] == u[j] + 1)
            j++;
        if (j > i)
            lt_buf_appendf(b, "%s%u:%u", i ? "," : "", u[i], u[j]);
        else
            lt_buf_appendf(b, "%s%u", i ? "," : "", u[i]);
        i = j + 1;
    }
}

/* After a UID FETCH that completed: every UID asked for must have been
 * answered with a body. One left out or answered NIL is looked up again
 * (UID SEARCH; a UID command, so the server may first tell of expunges it
 * held back): still there, the fetch failed (TEMPORARY: the caller redoes
 * the batch, nothing is reported as gone); gone, skipped(LT_ERR_NOT_FOUND). */
static lt_err_t check_answers(lt_imap_t *c, const lt_imap_fetch_cb_t *cb, char *errstr,
                              size_t errstr_size)
{
    size_t nmiss = 0;
    for (size_t i = 0; i < c->nwant; i++)
        if (c->want_st[i] != W_DONE)
            c->want[nmiss++] = c->want[i]; /* want[] is not needed any more */
    if (!nmiss)
        return LT_OK;
    lt_buf_t *b = lt_buf_new(16 * nmiss + 64);
    lt_buf_appendf(b, "UID SEARCH UID ");
    uid_set(b, c->want, nmiss);
    uint32_t *found = NULL;
    size_t nfound = 0;
    lt_err_t err = search_cmd(c, b, c->want[0], c->want[nmiss - 1], &found, &nfound, errstr,
                              errstr_size);
    lt_buf_destroy(b);
    if (err)
        return err;
    lt_buf_t *still = lt_buf_new(4096);
    size_t nstill = 0, k = 0;
    for (size_t i = 0; i < nmiss; i++) {
        while (k < nfound && found[k] < c->want[i])
            k++;
        if (k < nfound && found[k] == c->want[i]) {
            if (nstill++ < 20)
                lt_buf_appendf(still, "%s%u", nstill > 1 ? "," : "", c->want[i]);
        }
    }
    if (nstill) {
        err = lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY,
                        "IMAP UID FETCH: no body for UID %s%s (%zu in all), which UID SEARCH "
                        "still finds; fetched again later",
                        lt_buf_str(still), nstill > 20 ? ",..." : "", nstill);
    } else {
        for (size_t i = 0; i < nmiss && cb->skipped; i++)
            cb->skipped(cb->opaque, c->want[i], LT_ERR_NOT_FOUND,
                        "no longer in the mailbox (expunged before it was fetched)");
    }
    lt_buf_destroy(still);
    free(found);
    return err;
}

/* One UID FETCH command of the message fetch. */
static lt_err_t send_fetch(lt_imap_t *c, const uint32_t *uids, size_t n, int with_flags,
                           int *slot, char *errstr, size_t errstr_size)
{
    lt_buf_t *b = lt_buf_new(16 * n + 128);
    lt_buf_appendf(b, "UID FETCH ");
    uid_set(b, uids, n);
    lt_buf_appendf(b, " (UID RFC822.SIZE INTERNALDATE %sBODY.PEEK[])",
                   !with_flags                             ? ""
                   : (c->enabled & LT_IMAP_CAP_CONDSTORE) ? "FLAGS MODSEQ "
                                                           : "FLAGS ");
    lt_err_t err = send_cmd(c, b, slot, errstr, errstr_size);
    lt_buf_destroy(b);
    return err;
}

static void ahead_clear(lt_imap_t *c)
{
    free(c->ahead_uids);
    c->ahead_uids = NULL;
    c->ahead_nuids = 0;
    c->nahead = 0;
    c->ahead_next = 0;
}

lt_err_t lt_imap_uid_fetch_ahead(lt_imap_t *c, const uint32_t *uids, size_t nuids, int with_flags,
                                 char *errstr, size_t errstr_size)
{
    lt_err_t err = check_open(c, S_SELECTED, errstr, errstr_size);
    if (err)
        return err;
    if (!nuids)
        return LT_OK;
    for (size_t i = 0; i < nuids; i++)
        if (uids[i] == 0)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: UID 0");
    c->ahead_uids = lt_xmalloc(nuids * sizeof(*uids));
    memcpy(c->ahead_uids, uids, nuids * sizeof(*uids));
    c->ahead_nuids = nuids;
    c->ahead_flags = with_flags;
    while (c->ahead_next < nuids && c->nahead < c->fetch_pipeline) {
        size_t n = nuids - c->ahead_next < c->fetch_batch ? nuids - c->ahead_next : c->fetch_batch;
        err = send_fetch(c, uids + c->ahead_next, n, with_flags, &c->ahead_slots[c->nahead],
                         errstr, errstr_size);
        if (err)
            break;
        c->nahead++;
        c->ahead_next += n;
    }
    if (err && !c->nahead)
        ahead_clear(c);
    return err;
}

lt_err_t lt_imap_uid_fetch(lt_imap_t *c, const uint32_t *uids, size_t nuids,
                           const lt_imap_fetch_cb_t *cb, char *errstr, size_t errstr_size)
{
    int slots[MAX_INFLIGHT];
    int inflight = 0;
    size_t next = 0;
    if (c->nahead) {
        /* The commands sent ahead are this fetch's first ones, if the set is
         * the same; else their answers cannot be told apart: the
         * connection is given up. */
        int same = c->ahead_nuids == nuids && c->ahead_flags == (cb->flags != NULL) &&
                   !memcmp(c->ahead_uids, uids, nuids * sizeof(*uids));
        inflight = c->nahead;
        memcpy(slots, c->ahead_slots, sizeof(slots));
        next = c->ahead_next;
        ahead_clear(c);
        if (!same)
            return set_broken(c, LT_ERR_INVALID, errstr, errstr_size,
                              "IMAP: UID FETCH of a set other than the one sent ahead");
    }
    lt_err_t err = check_open(c, S_SELECTED, errstr, errstr_size);
    if (err)
        return err;
    for (size_t i = 0; i < nuids; i++)
        if (uids[i] == 0)
            return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: UID 0");
    lt_err_t first_err = LT_OK;
    char first_msg[320] = "";
    c->fcb = cb;
    c->f_mode = 0;
    c->f_nil = 0;
    c->f_body = 0;
    c->want = lt_xmalloc((nuids ? nuids : 1) * sizeof(*c->want));
    c->want_st = lt_xcalloc(nuids ? nuids : 1, 1);
    memcpy(c->want, uids, nuids * sizeof(*uids));
    qsort(c->want, nuids, sizeof(*c->want), cmp_u32);
    c->nwant = 0;
    for (size_t i = 0; i < nuids; i++)
        if (!c->nwant || c->want[c->nwant - 1] != c->want[i])
            c->want[c->nwant++] = c->want[i];
    while ((next < nuids && !first_err) || inflight > 0) {
        /* Keep the pipeline full. */
        while (next < nuids && !first_err && inflight < c->fetch_pipeline) {
            size_t n = nuids - next < c->fetch_batch ? nuids - next : c->fetch_batch;
            err = send_fetch(c, uids + next, n, cb->flags != NULL, &slots[inflight], errstr,
                             errstr_size);
            if (err)
                goto out;
            inflight++;
            next += n;
        }
        /* Wait for the oldest to complete (responses stream meanwhile). */
        if ((err = wait_slot(c, slots[0], 0, errstr, errstr_size)))
            goto out;
        char m[320];
        lt_err_t e = finish(c, slots[0], K_READ, "UID FETCH", m, sizeof(m));
        if (e && !first_err) {
            first_err = e;
            copy_str(first_msg, sizeof(first_msg), m);
        }
        memmove(slots, slots + 1, (size_t)(inflight - 1) * sizeof(int));
        inflight--;
    }
    if (first_err)
        err = lt_seterr(errstr, errstr_size, first_err, "%s", first_msg);
    if (!err)
        err = check_answers(c, cb, errstr, errstr_size);
out:
    c->fcb = NULL;
    free(c->want);
    free(c->want_st);
    c->want = NULL;
    c->want_st = NULL;
    c->nwant = 0;
    return err;
}

lt_err_t lt_imap_logout(lt_imap_t *c, char *errstr, size_t errstr_size)
{
    if (c->nahead) { /* answers still coming: just close */
        ahead_clear(c);
        close_conn(c);
        c->state = S_CLOSED;
        return LT_OK;
    }
    lt_err_t err = check_open(c, S_NOT_AUTH, errstr, errstr_size);
    if (err)
        return err;
    c->logging_out = 1;
    lt_buf_t *b = lt_buf_new(16);
    lt_buf_appendf(b, "LOGOUT");
    err = simple(c, b, K_OTHER, "LOGOUT", errstr, errstr_size);
    lt_buf_destroy(b);
    if (err && c->bye_seen && err == LT_ERR_TEMPORARY)
        err = LT_OK; /* closed right after its BYE: logged out all the same */
    close_conn(c);
    c->state = S_CLOSED;
    return err;
}

static lt_err_t name_cmd(lt_imap_t *c, const char *verb, const char *name, char *errstr,
                         size_t errstr_size)
{
    lt_err_t err = check_open(c, S_AUTH, errstr, errstr_size);
    if (err)
        return err;
    lt_buf_t *b = lt_buf_new(16 * 1024);
    lt_buf_appendf(b, "%s ", verb);
    if (!(err = encode_name(name, b, errstr, errstr_size)))
        err = simple(c, b, K_OTHER, verb, errstr, errstr_size);
    lt_buf_destroy(b);
    return err;
}

lt_err_t lt_imap_create(lt_imap_t *c, const char *name, char *errstr, size_t errstr_size)
{
    return name_cmd(c, "CREATE", name, errstr, errstr_size);
}

lt_err_t lt_imap_delete(lt_imap_t *c, const char *name, char *errstr, size_t errstr_size)
{
    return name_cmd(c, "DELETE", name, errstr, errstr_size);
}

lt_err_t lt_imap_append(lt_imap_t *c, const char *name, const lt_imap_message_t *message,
                        uint32_t *uid, char *errstr, size_t errstr_size)
{
    const void *msg = message->data;
    size_t len = message->len;
    const char *flags = message->flags;
    if (uid)
        *uid = 0;
    lt_err_t err = check_open(c, S_AUTH, errstr, errstr_size);
    if (err)
        return err;
    lt_buf_t *b = lt_buf_new(16 * 1024);
    lt_buf_appendf(b, "APPEND ");
    if ((err = encode_name(name, b, errstr, errstr_size))) {
        lt_buf_destroy(b);
        return err;
    }
    if (flags && *flags)
        lt_buf_appendf(b, " (%s)", flags);
    lt_buf_appendf(b, " {%zu%s}", len, lt_imap_has_cap(c, "LITERAL+") ? "+" : "");
    int slot;
    c->cont = 0;
    err = send_cmd(c, b, &slot, errstr, errstr_size);
    lt_buf_destroy(b);
    if (!err)
        err = send_literal(c, slot, msg, len, errstr, errstr_size);
    if (!err && !c->pend[slot].done)
        err = tr_write(c, "\r\n", 2, errstr, errstr_size);
    if (!err)
        err = wait_slot(c, slot, 0, errstr, errstr_size);
    if (err)
        return err;
    char code[32], arg[96];
    copy_str(code, sizeof(code), c->pend[slot].code);
    copy_str(arg, sizeof(arg), c->pend[slot].code_arg);
    if ((err = finish(c, slot, K_OTHER, "APPEND", errstr, errstr_size)))
        return err;
    unsigned long v, u;
    if (uid && !strcmp(code, "APPENDUID") && sscanf(arg, "%lu %lu", &v, &u) == 2 && u <= UINT32_MAX)
        *uid = (uint32_t)u;
    return LT_OK;
}

lt_err_t lt_imap_uid_flags(lt_imap_t *c, uint32_t uid, char *flags, size_t flags_size, char *errstr,
                           size_t errstr_size)
{
    lt_err_t err = check_open(c, S_SELECTED, errstr, errstr_size);
    if (err)
        return err;
    if (!flags || flags_size == 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: no flags buffer");
    lt_buf_t *b = lt_buf_new(64);
    lt_buf_appendf(b, "UID FETCH %u (FLAGS)", uid);
    c->flags_uid = uid;
    c->flags_out = flags;
    c->flags_size = flags_size;
    c->flags_found = 0;
    flags[0] = 0;
    err = simple(c, b, K_READ, "UID FETCH FLAGS", errstr, errstr_size);
    lt_buf_destroy(b);
    c->flags_out = NULL;
    if (!err && !c->flags_found)
        err = lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "IMAP: no message with UID %u", uid);
    return err;
}

lt_err_t lt_imap_uid_store(lt_imap_t *c, uint32_t uid, const char *op, const char *flags,
                           char *errstr, size_t errstr_size)
{
    lt_err_t err = check_open(c, S_SELECTED, errstr, errstr_size);
    if (err)
        return err;
    if (!uid || (strcmp(op, "+FLAGS") && strcmp(op, "-FLAGS") && strcmp(op, "FLAGS")) ||
        strpbrk(flags, "()\r\n"))
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "IMAP: bad UID STORE arguments");
    lt_buf_t *b = lt_buf_new(64 + strlen(flags));
    lt_buf_appendf(b, "UID STORE %u %s.SILENT (%s)", uid, op, flags);
    err = simple(c, b, K_OTHER, "UID STORE", errstr, errstr_size);
    lt_buf_destroy(b);
    return err;
}

lt_err_t lt_imap_uid_expunge(lt_imap_t *c, uint32_t uid, char *errstr, size_t errstr_size)
{
    lt_err_t err = lt_imap_uid_store(c, uid, "+FLAGS", "\\Deleted", errstr, errstr_size);
    if (err)
        return err;
    if (!lt_imap_has_cap(c, "UIDPLUS"))
        return lt_seterr(errstr, errstr_size, LT_ERR_FINAL,
                         "IMAP: UID EXPUNGE needs UIDPLUS");
    lt_buf_t *b = lt_buf_new(48);
    lt_buf_appendf(b, "UID EXPUNGE %u", uid);
    err = simple(c, b, K_OTHER, "UID EXPUNGE", errstr, errstr_size);
    lt_buf_destroy(b);
    return err;
}
