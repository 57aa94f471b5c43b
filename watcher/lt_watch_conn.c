#include "lt_watch_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "lt_buf.h"
#include "lt_clock.h"
#include "lt_imap_parser.h"
#include "lt_imap_utf7.h"

#define OUT_CAP (16 * 1024)
#define CAPS_MAX 4096
#define SECRET_MAX 1024
#define MAX_LINE (16 * 1024)
#define KEEPALIVE_IDLE_S 60
#define KEEPALIVE_INTVL_S 15
#define KEEPALIVE_CNT 4

/* The protocol step; LT_WATCH_ST_* is what the outside sees of it. */
typedef enum {
    P_TCP,       /* nonblocking connect() in progress */
    P_TLS,       /* SSL_connect() in progress */
    P_GREETING,  /* waiting for the server's greeting */
    P_CAPA,      /* CAPABILITY sent (before authentication) */
    P_AUTH,      /* AUTHENTICATE PLAIN / LOGIN sent */
    P_CAPA2,     /* CAPABILITY sent (after authentication) */
    P_EXAMINE,   /* EXAMINE sent */
    P_IDLE_SENT, /* IDLE sent, waiting for "+" */
    P_IDLING,    /* in IDLE */
    P_DONE_SENT, /* DONE sent, waiting for IDLE's tagged answer */
    P_POLL_WAIT, /* no IDLE: waiting for the next NOOP */
    P_NOOP_SENT, /* NOOP sent */
    P_CLOSED,
} phase_t;

struct lt_watch_conn_s {
    char *host, *user, *folder;
    int port;
    SSL_CTX *ctx;
    int idle_reissue_s, response_timeout_s, poll_interval_s;
    const lt_log_ctx_t *log;
    lt_watch_note_fn on_note;
    void *opaque;

    int fd;
    SSL *ssl;
    int ssl_want_write; /* the last TLS call wants the socket writable */
    phase_t phase;
    lt_imap_parser_t *parser;
    lt_buf_t *out; /* secret buffer: may hold the authentication */
    char secret[SECRET_MAX];
    size_t secret_len;
    char caps[CAPS_MAX]; /* " CAP1 CAP2 ... " upper case; empty: not known */
    char tag[16];        /* of the command waiting for its tagged answer */
    unsigned tag_no;
    int64_t deadline_ms; /* answer expected by (0: none) */
    int64_t idle_since_ms, next_poll_ms;
    int64_t now_ms; /* of the current handle() call, for the parser callback */
    uint64_t idles;
    /* the first error met inside a parser callback */
    lt_err_t err;
    char errbuf[512];
};

static const char *k_notes[] = {"connect", "exists", "expunge", "fetch"};
static const char *k_states[] = {"connecting", "login", "selecting", "idle", "polling", "closed"};

const char *lt_watch_note_name(lt_watch_note_t n)
{
    return n < LT_WATCH_NOTE_COUNT ? k_notes[n] : "unknown";
}

const char *lt_watch_state_name(lt_watch_state_t s)
{
    return s < LT_WATCH_ST_COUNT ? k_states[s] : "unknown";
}

lt_watch_state_t lt_watch_conn_state(const lt_watch_conn_t *c)
{
    switch (c->phase) {
    case P_TCP:
    case P_TLS:
        return LT_WATCH_ST_CONNECTING;
    case P_GREETING:
    case P_CAPA:
    case P_AUTH:
    case P_CAPA2:
        return LT_WATCH_ST_LOGIN;
    case P_EXAMINE:
        return LT_WATCH_ST_SELECTING;
    case P_IDLE_SENT:
    case P_IDLING:
    case P_DONE_SENT:
        return LT_WATCH_ST_IDLE;
    case P_POLL_WAIT:
    case P_NOOP_SENT:
        return LT_WATCH_ST_POLLING;
    case P_CLOSED:
        break;
    }
    return LT_WATCH_ST_CLOSED;
}

static int has_cap(const lt_watch_conn_t *c, const char *cap)
{
    char pat[80];
    snprintf(pat, sizeof(pat), " %s ", cap);
    return strcasestr(c->caps, pat) != NULL;
}

int lt_watch_conn_has_idle(const lt_watch_conn_t *c)
{
    return has_cap(c, "IDLE");
}

uint64_t lt_watch_conn_idles(const lt_watch_conn_t *c)
{
    return c->idles;
}

static void wipe_secret(lt_watch_conn_t *c)
{
    OPENSSL_cleanse(c->secret, sizeof(c->secret));
    c->secret_len = 0;
}

static void close_conn(lt_watch_conn_t *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    lt_buf_reset(c->out);
    wipe_secret(c);
    c->phase = P_CLOSED;
    c->deadline_ms = 0;
}

static lt_err_t fail(lt_watch_conn_t *c, lt_err_t code, char *errstr, size_t n, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
static lt_err_t fail(lt_watch_conn_t *c, lt_err_t code, char *errstr, size_t n, const char *fmt,
                     ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errstr && n)
        vsnprintf(errstr, n, fmt, ap);
    va_end(ap);
    close_conn(c);
    return code;
}

lt_watch_conn_t *lt_watch_conn_new(const lt_watch_conn_opts_t *o)
{
    lt_watch_conn_t *c = lt_xcalloc(1, sizeof(*c));
    c->host = lt_xstrdup(o->host ? o->host : "");
    c->user = lt_xstrdup(o->user ? o->user : "");
    c->folder = lt_xstrdup(o->folder ? o->folder : "INBOX");
    c->port = o->port ? o->port : 993;
    c->ctx = o->ssl_ctx;
    c->idle_reissue_s = o->idle_reissue_s > 0 ? o->idle_reissue_s : 1500;
    c->response_timeout_s = o->response_timeout_s > 0 ? o->response_timeout_s : 30;
    c->poll_interval_s = o->poll_interval_s > 0 ? o->poll_interval_s : 60;
    c->log = o->log;
    c->on_note = o->on_note;
    c->opaque = o->opaque;
    c->fd = -1;
    c->phase = P_CLOSED;
    c->out = lt_buf_new_secret(OUT_CAP);
    return c;
}

void lt_watch_conn_destroy(lt_watch_conn_t *c)
{
    if (!c)
        return;
    close_conn(c);
    lt_imap_parser_destroy(c->parser);
    lt_buf_destroy(c->out);
    free(c->host);
    free(c->user);
    free(c->folder);
    free(c);
}

int lt_watch_conn_fd(const lt_watch_conn_t *c)
{
    return c->fd;
}

short lt_watch_conn_events(const lt_watch_conn_t *c)
{
    if (c->fd < 0)
        return 0;
    if (c->phase == P_TCP)
        return POLLOUT;
    short ev = POLLIN;
    if (c->ssl_want_write || lt_buf_len(c->out) > 0)
        ev |= POLLOUT;
    return ev;
}

int64_t lt_watch_conn_next_ms(const lt_watch_conn_t *c)
{
    int64_t next = INT64_MAX;
    if (c->deadline_ms)
        next = c->deadline_ms;
    if (c->phase == P_IDLING && c->idle_since_ms + c->idle_reissue_s * 1000LL < next)
        next = c->idle_since_ms + c->idle_reissue_s * 1000LL;
    if (c->phase == P_POLL_WAIT && c->next_poll_ms < next)
        next = c->next_poll_ms;
    return next;
}

/* ------------------------------------------------------------ output */

static lt_err_t flush_out(lt_watch_conn_t *c, char *errstr, size_t n)
{
    c->ssl_want_write = 0;
    while (lt_buf_len(c->out) > 0) {
        size_t w = 0;
        ERR_clear_error();
        int r = SSL_write_ex(c->ssl, lt_buf_data(c->out), lt_buf_len(c->out), &w);
        if (r == 1) {
            lt_buf_consume(c->out, w);
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE) {
            c->ssl_want_write = 1;
            return LT_OK;
        }
        if (e == SSL_ERROR_WANT_READ)
            return LT_OK; /* retried on the next readable event */
        return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP %s: write failed: %s", c->host,
                    e == SSL_ERROR_SYSCALL ? strerror(errno) : "TLS error");
    }
    if (lt_buf_len(c->out) == 0)
        lt_buf_reset(c->out); /* zeroes an authentication that was written */
    return LT_OK;
}

/* Queue "<tag> <cmd>\r\n" and expect its tagged answer within the bound. */
static void send_cmd(lt_watch_conn_t *c, const char *cmd, int64_t now_ms)
{
    snprintf(c->tag, sizeof(c->tag), "W%u", ++c->tag_no);
    lt_buf_appendf(c->out, "%s %s\r\n", c->tag, cmd);
    c->deadline_ms = now_ms + c->response_timeout_s * 1000LL;
}

static int quotable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '\r' || *p == '\n' || *p >= 0x80)
            return 0;
    return 1;
}

static void put_quoted(lt_buf_t *b, const char *s)
{
    lt_buf_append(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            lt_buf_append(b, "\\", 1);
        lt_buf_append(b, s, 1);
    }
    lt_buf_append(b, "\"", 1);
}

static void set_caps(lt_watch_conn_t *c, const char *const *strs, size_t n, const char *text)
{
    size_t len = 0;
    c->caps[len++] = ' ';
    c->caps[len] = 0;
    if (strs) {
        for (size_t i = 0; i < n && len + strlen(strs[i]) + 2 < sizeof(c->caps); i++)
            len += (size_t)snprintf(c->caps + len, sizeof(c->caps) - len, "%s ", strs[i]);
    } else if (text) {
        for (const char *p = text; *p && len + 2 < sizeof(c->caps); p++)
            c->caps[len++] = *p;
        c->caps[len++] = ' ';
        c->caps[len] = 0;
    }
}

static lt_err_t start_auth(lt_watch_conn_t *c, int64_t now_ms)
{
    if (has_cap(c, "AUTH=PLAIN")) {
        send_cmd(c, "AUTHENTICATE PLAIN", now_ms);
        c->phase = P_AUTH;
        return LT_OK;
    }
    if (has_cap(c, "LOGINDISABLED")) {
        snprintf(c->errbuf, sizeof(c->errbuf),
                 "IMAP %s: LOGINDISABLED and no AUTH=PLAIN: cannot log in", c->host);
        return LT_ERR_FINAL;
    }
    if (!quotable(c->user) || !quotable(c->secret)) {
        snprintf(c->errbuf, sizeof(c->errbuf),
                 "IMAP %s: the user name or password needs a literal and the server has no "
                 "AUTH=PLAIN",
                 c->host);
        return LT_ERR_FINAL;
    }
    snprintf(c->tag, sizeof(c->tag), "W%u", ++c->tag_no);
    lt_buf_appendf(c->out, "%s LOGIN ", c->tag);
    put_quoted(c->out, c->user);
    lt_buf_append(c->out, " ", 1);
    put_quoted(c->out, c->secret);
    lt_buf_append(c->out, "\r\n", 2);
    wipe_secret(c);
    c->deadline_ms = now_ms + c->response_timeout_s * 1000LL;
    c->phase = P_AUTH;
    return LT_OK;
}

/* AUTHENTICATE PLAIN's response: base64("\0user\0password"). */
static void send_plain(lt_watch_conn_t *c)
{
    size_t ul = strlen(c->user), raw_len = 2 + ul + c->secret_len;
    unsigned char *raw = lt_xmalloc(raw_len);
    raw[0] = 0;
    memcpy(raw + 1, c->user, ul);
    raw[1 + ul] = 0;
    memcpy(raw + 2 + ul, c->secret, c->secret_len);
    size_t b64_len = 4 * ((raw_len + 2) / 3) + 1;
    unsigned char *b64 = lt_xmalloc(b64_len);
    int n = EVP_EncodeBlock(b64, raw, (int)raw_len);
    lt_buf_append(c->out, b64, (size_t)n);
    lt_buf_append(c->out, "\r\n", 2);
    OPENSSL_cleanse(raw, raw_len);
    OPENSSL_cleanse(b64, b64_len);
    free(raw);
    free(b64);
    wipe_secret(c);
}

static void start_examine(lt_watch_conn_t *c, int64_t now_ms)
{
    char err[128];
    lt_buf_t *name = lt_buf_new(4096);
    lt_buf_t *cmd = lt_buf_new(8192);
    if (lt_imap_utf7_encode(c->folder, strlen(c->folder), name, err, sizeof(err)) != LT_OK) {
        lt_buf_reset(name);
        lt_buf_append(name, c->folder, strlen(c->folder));
    }
    lt_buf_append(cmd, "EXAMINE ", 8);
    put_quoted(cmd, lt_buf_str(name));
    send_cmd(c, lt_buf_str(cmd), now_ms);
    lt_buf_destroy(name);
    lt_buf_destroy(cmd);
    c->phase = P_EXAMINE;
}

static void start_idle(lt_watch_conn_t *c, int64_t now_ms)
{
    if (has_cap(c, "IDLE")) {
        send_cmd(c, "IDLE", now_ms);
        c->phase = P_IDLE_SENT;
    } else {
        c->phase = P_POLL_WAIT;
        c->next_poll_ms = now_ms + c->poll_interval_s * 1000LL;
        c->deadline_ms = 0;
    }
}

static void note(lt_watch_conn_t *c, lt_watch_note_t n)
{
    if (c->on_note)
        c->on_note(c->opaque, n);
}

/* ------------------------------------------------------------ input */

static lt_err_t proto_err(lt_watch_conn_t *c, lt_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static lt_err_t proto_err(lt_watch_conn_t *c, lt_err_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errbuf, sizeof(c->errbuf), fmt, ap);
    va_end(ap);
    return code;
}

static lt_err_t on_tagged(lt_watch_conn_t *c, const lt_imap_event_t *ev)
{
    int64_t now = c->now_ms;
    if (strcmp(ev->tag, c->tag) != 0)
        return proto_err(c, LT_ERR_TEMPORARY, "IMAP %s: answer to unknown tag %s", c->host,
                         ev->tag);
    c->deadline_ms = 0;
    int ok = ev->status == LT_IMAP_OK;
    if (ev->status == LT_IMAP_BAD)
        return proto_err(c, LT_ERR_FINAL, "IMAP %s: BAD in state %d: %s", c->host, (int)c->phase,
                         ev->text);
    if (ok && ev->code && !strcmp(ev->code, "CAPABILITY"))
        set_caps(c, ev->nstrs ? ev->strs : NULL, ev->nstrs, ev->code_arg);
    switch (c->phase) {
    case P_CAPA:
        if (!ok)
            return proto_err(c, LT_ERR_TEMPORARY, "IMAP %s: CAPABILITY: %s", c->host, ev->text);
        return start_auth(c, now);
    case P_AUTH:
        wipe_secret(c);
        if (!ok)
            return proto_err(c, LT_ERR_REAUTH, "IMAP %s: login of %s refused: %s", c->host, c->user,
                             ev->text);
        if (ev->code && !strcmp(ev->code, "CAPABILITY")) {
            start_examine(c, now);
        } else {
            c->caps[0] = 0;
            send_cmd(c, "CAPABILITY", now);
            c->phase = P_CAPA2;
        }
        return LT_OK;
    case P_CAPA2:
        if (!ok)
            return proto_err(c, LT_ERR_TEMPORARY, "IMAP %s: CAPABILITY: %s", c->host, ev->text);
        start_examine(c, now);
        return LT_OK;
    case P_EXAMINE:
        if (!ok)
            return proto_err(c,
                             ev->code && !strcmp(ev->code, "NONEXISTENT") ? LT_ERR_NOT_FOUND
                                                                          : LT_ERR_TEMPORARY,
                             "IMAP %s: EXAMINE %s: %s", c->host, c->folder, ev->text);
        note(c, LT_WATCH_NOTE_CONNECTED);
        start_idle(c, now);
        return LT_OK;
    case P_IDLE_SENT:
    case P_IDLING:
    case P_DONE_SENT:
        if (!ok)
            return proto_err(c, LT_ERR_TEMPORARY, "IMAP %s: IDLE: %s", c->host, ev->text);
        start_idle(c, now); /* IDLE ended (re-issue): the next one */
        return LT_OK;
    case P_NOOP_SENT:
        if (!ok)
            return proto_err(c, LT_ERR_TEMPORARY, "IMAP %s: NOOP: %s", c->host, ev->text);
        start_idle(c, now); /* back to waiting for the next poll */
        return LT_OK;
    default:
        return proto_err(c, LT_ERR_TEMPORARY, "IMAP %s: unexpected tagged answer", c->host);
    }
}

/* Untagged data counts as a change only once the folder is watched. */
static int watching(const lt_watch_conn_t *c)
{
    return c->phase == P_IDLE_SENT || c->phase == P_IDLING || c->phase == P_DONE_SENT ||
           c->phase == P_POLL_WAIT || c->phase == P_NOOP_SENT;
}

static lt_err_t on_event(void *opaque, const lt_imap_event_t *ev)
{
    lt_watch_conn_t *c = opaque;
    switch (ev->type) {
    case LT_IMAP_EV_TAGGED:
        return on_tagged(c, ev);
    case LT_IMAP_EV_STATUS:
        if (ev->status == LT_IMAP_BYE)
            return proto_err(c, LT_ERR_TEMPORARY, "IMAP %s: server said BYE: %s", c->host,
                             ev->text);
        if (c->phase == P_GREETING) {
            if (ev->status == LT_IMAP_PREAUTH) { /* authenticated by the connection */
                wipe_secret(c);
                start_examine(c, c->now_ms);
                return LT_OK;
            }
            if (ev->status != LT_IMAP_OK)
                return proto_err(c, LT_ERR_TEMPORARY, "IMAP %s: greeting: %s", c->host, ev->text);
            if (ev->code && !strcmp(ev->code, "CAPABILITY")) {
                set_caps(c, ev->nstrs ? ev->strs : NULL, ev->nstrs, ev->code_arg);
                return start_auth(c, c->now_ms);
            }
            send_cmd(c, "CAPABILITY", c->now_ms);
            c->phase = P_CAPA;
        }
        return LT_OK;
    case LT_IMAP_EV_CONTINUE:
        if (c->phase == P_AUTH && c->secret_len) {
            send_plain(c);
            return LT_OK;
        }
        if (c->phase == P_IDLE_SENT) {
            c->phase = P_IDLING;
            c->idle_since_ms = c->now_ms;
            c->deadline_ms = 0;
            c->idles++;
            return LT_OK;
        }
        return proto_err(c, LT_ERR_TEMPORARY, "IMAP %s: unexpected continuation", c->host);
    case LT_IMAP_EV_CAPABILITY:
        set_caps(c, ev->strs, ev->nstrs, NULL);
        return LT_OK;
    case LT_IMAP_EV_EXISTS:
        if (watching(c))
            note(c, LT_WATCH_NOTE_EXISTS);
        return LT_OK;
    case LT_IMAP_EV_EXPUNGE:
    case LT_IMAP_EV_VANISHED:
        if (watching(c))
            note(c, LT_WATCH_NOTE_EXPUNGE);
        return LT_OK;
    case LT_IMAP_EV_FETCH:
        if (watching(c))
            note(c, LT_WATCH_NOTE_FETCH);
        return LT_OK;
    default:
        return LT_OK; /* RECENT, FLAGS, OK [..] codes of EXAMINE, ... */
    }
}

static lt_err_t tls_failure(lt_watch_conn_t *c, const char *during, char *errstr, size_t n)
{
    long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (vr != X509_V_OK)
        return fail(c, LT_ERR_FINAL, errstr, n,
                    "IMAP: TLS certificate verification of %s failed: %s", c->host,
                    X509_verify_cert_error_string(vr));
    const char *why = e && ERR_reason_error_string(e) ? ERR_reason_error_string(e)
                      : e                             ? "error"
                                                      : "connection closed";
    return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP: TLS %s with %s failed: %s", during, c->host,
                why);
}

static lt_err_t tls_step(lt_watch_conn_t *c, char *errstr, size_t n)
{
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        c->phase = P_GREETING;
        c->ssl_want_write = 0;
        return LT_OK;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->ssl_want_write = e == SSL_ERROR_WANT_WRITE;
        return LT_OK;
    }
    return tls_failure(c, "handshake", errstr, n);
}

static lt_err_t tls_begin(lt_watch_conn_t *c, char *errstr, size_t n)
{
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return tls_failure(c, "setup", errstr, n);
    SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
    unsigned char addr[16];
    if (inet_pton(AF_INET, c->host, addr) == 1 || inet_pton(AF_INET6, c->host, addr) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1)
            return tls_failure(c, "setup", errstr, n);
    } else if (SSL_set_tlsext_host_name(c->ssl, c->host) != 1 ||
               SSL_set1_host(c->ssl, c->host) != 1) {
        return tls_failure(c, "setup", errstr, n);
    }
    c->phase = P_TLS;
    return tls_step(c, errstr, n);
}

static lt_err_t read_in(lt_watch_conn_t *c, char *errstr, size_t n)
{
    uint8_t buf[16384];
    for (;;) {
        size_t got = 0;
        ERR_clear_error();
        int r = SSL_read_ex(c->ssl, buf, sizeof(buf), &got);
        if (r == 1) {
            char perr[256];
            c->err = LT_OK;
            c->errbuf[0] = 0;
            lt_err_t e = lt_imap_parser_feed(c->parser, buf, got, perr, sizeof(perr));
            if (e)
                return fail(c, e, errstr, n, "%s", c->errbuf[0] ? c->errbuf : perr);
            if (c->phase == P_CLOSED)
                return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP %s: closed", c->host);
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            return LT_OK;
        if (e == SSL_ERROR_WANT_WRITE) {
            c->ssl_want_write = 1;
            return LT_OK;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
            return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP %s: connection closed by the server",
                        c->host);
        return tls_failure(c, "read", errstr, n);
    }
}

lt_err_t lt_watch_conn_start(lt_watch_conn_t *c, const char *password, int64_t now_ms, char *errstr,
                             size_t n)
{
    close_conn(c);
    lt_imap_parser_destroy(c->parser);
    c->parser = lt_imap_parser_new(
        &(lt_imap_parser_opts_t){.max_line = MAX_LINE, .max_message = MAX_LINE}, on_event, c);
    c->caps[0] = 0;
    c->idles = 0;
    size_t pl = password ? strlen(password) : 0;
    if (pl == 0 || pl >= sizeof(c->secret))
        return fail(c, LT_ERR_FINAL, errstr, n, "IMAP %s: the password is empty or too long",
                    c->host);
    memcpy(c->secret, password, pl + 1);
    c->secret_len = pl;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", c->port);
    int gr = getaddrinfo(c->host, port, &hints, &ai);
    if (gr != 0 || !ai)
        return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP %s: cannot resolve: %s", c->host,
                    gai_strerror(gr));
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        freeaddrinfo(ai);
        return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP %s: socket: %s", c->host,
                    strerror(errno));
    }
    int one = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTVL_S, cnt = KEEPALIVE_CNT;
    setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int r = connect(c->fd, ai->ai_addr, ai->ai_addrlen);
    int cerr = errno;
    freeaddrinfo(ai);
    c->deadline_ms = now_ms + c->response_timeout_s * 1000LL;
    if (r == 0)
        return tls_begin(c, errstr, n);
    if (cerr != EINPROGRESS)
        return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP %s:%d: connect: %s", c->host, c->port,
                    strerror(cerr));
    c->phase = P_TCP;
    return LT_OK;
}

lt_err_t lt_watch_conn_handle(lt_watch_conn_t *c, short revents, int64_t now_ms, char *errstr,
                              size_t n)
{
    c->now_ms = now_ms;
    if (c->phase == P_CLOSED)
        return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP %s: closed", c->host);
    if (c->phase == P_TCP) {
        if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
            return LT_OK;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            soerr = errno;
        if (soerr)
            return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP %s:%d: connect: %s", c->host, c->port,
                        strerror(soerr));
        return tls_begin(c, errstr, n);
    }
    if (c->phase == P_TLS) {
        lt_err_t e = tls_step(c, errstr, n);
        if (e || c->phase == P_TLS)
            return e;
    }
    lt_err_t e = read_in(c, errstr, n);
    if (e)
        return e;
    if ((revents & (POLLERR | POLLHUP)) && !(revents & POLLIN))
        return fail(c, LT_ERR_TEMPORARY, errstr, n, "IMAP %s: connection lost", c->host);
    return flush_out(c, errstr, n);
}

lt_err_t lt_watch_conn_tick(lt_watch_conn_t *c, int64_t now_ms, char *errstr, size_t n)
{
    c->now_ms = now_ms;
    if (c->phase == P_CLOSED)
        return LT_OK;
    if (c->deadline_ms && now_ms >= c->deadline_ms)
        return fail(c, LT_ERR_TEMPORARY, errstr, n,
                    "IMAP %s: no answer within %d s (%s): connection dropped", c->host,
                    c->response_timeout_s, lt_watch_state_name(lt_watch_conn_state(c)));
    if (c->phase == P_IDLING && now_ms >= c->idle_since_ms + c->idle_reissue_s * 1000LL) {
        lt_buf_append(c->out, "DONE\r\n", 6); /* the IDLE's tag answers it */
        c->deadline_ms = now_ms + c->response_timeout_s * 1000LL;
        c->phase = P_DONE_SENT;
        lt_debug(c->log, "IDLE re-issued after %d s", c->idle_reissue_s);
        return flush_out(c, errstr, n);
    }
    if (c->phase == P_POLL_WAIT && now_ms >= c->next_poll_ms) {
        send_cmd(c, "NOOP", now_ms);
        c->phase = P_NOOP_SENT;
        return flush_out(c, errstr, n);
    }
    return LT_OK;
}
