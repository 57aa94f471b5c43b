/* lt_watch_conn: one nonblocking IMAP connection that watches one folder
 * (RFC 2177 IDLE, or NOOP polling on servers without IDLE), driven by the
 * watcher's event loop: never blocks, never sleeps.
 *
 *   connect (TCP, nonblocking) -> TLS handshake (OpenSSL, the certificate
 *   chain and the host name or IP address verified, as lt_imap_client) ->
 *   greeting -> CAPABILITY -> AUTHENTICATE PLAIN (or LOGIN) -> CAPABILITY ->
 *   EXAMINE folder -> IDLE ... DONE -> IDLE ... (or NOOP every poll interval)
 *
 * The mailbox is opened read-only (EXAMINE): the watcher changes nothing.
 * Once EXAMINE succeeds the owner is told LT_WATCH_NOTE_CONNECTED (mail may
 * have arrived while nobody watched); then every untagged EXISTS, EXPUNGE,
 * VANISHED or FETCH (a flag change) while idling or polling is a note.
 * IDLE is ended and issued again every idle_reissue_s; a command without a
 * tagged answer within response_timeout_s (login, EXAMINE, IDLE, DONE,
 * NOOP) breaks the connection. TCP keepalive finds a peer that vanished
 * while idling between two re-issues.
 *
 * Errors (lt_watch_conn_handle, lt_watch_conn_tick): after any error the
 * connection is closed; destroy it and make a new one (the owner decides
 * the backoff):
 *   LT_ERR_TEMPORARY  network, TLS handshake, timeout, BYE, NO on EXAMINE
 *                     for [UNAVAILABLE]-like reasons, protocol garbage
 *   LT_ERR_REAUTH     NO on AUTHENTICATE/LOGIN
 *   LT_ERR_FINAL      certificate not verified; BAD; LOGINDISABLED and no
 *                     AUTH=PLAIN; a password LOGIN cannot carry quoted
 *   LT_ERR_NOT_FOUND  the folder does not exist
 * errstr never holds the password.
 *
 * Ownership: the connection owns its socket, SSL and parser; the SSL_CTX and
 * the log context are borrowed for its life. The password given to
 * lt_watch_conn_start() is copied into a buffer wiped as soon as the
 * authentication command is written. Not thread-safe. */
#ifndef LT_WATCH_CONN_H
#define LT_WATCH_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lt_err.h"
#include "lt_log.h"

typedef struct lt_watch_conn_s lt_watch_conn_t;

typedef enum {
    LT_WATCH_NOTE_CONNECTED = 0, /* the folder is examined: a fresh start */
    LT_WATCH_NOTE_EXISTS,        /* new message(s) */
    LT_WATCH_NOTE_EXPUNGE,       /* EXPUNGE or VANISHED */
    LT_WATCH_NOTE_FETCH,         /* flags changed */
    LT_WATCH_NOTE_COUNT
} lt_watch_note_t;

const char *lt_watch_note_name(lt_watch_note_t n); /* "connect", "exists", ... */

typedef enum {
    LT_WATCH_ST_CONNECTING = 0, /* TCP and TLS */
    LT_WATCH_ST_LOGIN,          /* greeting, capabilities, authentication */
    LT_WATCH_ST_SELECTING,      /* EXAMINE */
    LT_WATCH_ST_IDLE,           /* in IDLE (or re-issuing it) */
    LT_WATCH_ST_POLLING,        /* no IDLE: NOOP every poll interval */
    LT_WATCH_ST_CLOSED,         /* failed; to be destroyed */
    LT_WATCH_ST_COUNT
} lt_watch_state_t;

const char *lt_watch_state_name(lt_watch_state_t s); /* "connecting", ... */

typedef void (*lt_watch_note_fn)(void *opaque, lt_watch_note_t note);

/* A plain value carrier; strings are copied. */
typedef struct {
    const char *host;
    int port;
    const char *user;
    const char *folder;      /* UTF-8 */
    SSL_CTX *ssl_ctx;        /* borrowed: verification set up by the caller */
    int idle_reissue_s;      /* > 0 */
    int response_timeout_s;  /* > 0 */
    int poll_interval_s;     /* > 0 */
    const lt_log_ctx_t *log; /* borrowed; may be NULL */
    lt_watch_note_fn on_note;
    void *opaque;
} lt_watch_conn_opts_t;

lt_watch_conn_t *lt_watch_conn_new(const lt_watch_conn_opts_t *opts);
/* Closes the socket without LOGOUT. NULL is fine. */
void lt_watch_conn_destroy(lt_watch_conn_t *c);

/* Start connecting (resolves the host, blocking only for a name that is not
 * an IP address). Errors as above; then the connection is closed. */
lt_err_t lt_watch_conn_start(lt_watch_conn_t *c, const char *password, int64_t now_ms, char *errstr,
                             size_t errstr_size);

/* The socket and the poll events it waits for (-1 / 0 when closed). */
int lt_watch_conn_fd(const lt_watch_conn_t *c);
short lt_watch_conn_events(const lt_watch_conn_t *c);
/* Progress after poll() reported revents on the socket. */
lt_err_t lt_watch_conn_handle(lt_watch_conn_t *c, short revents, int64_t now_ms, char *errstr,
                              size_t errstr_size);
/* Timers: the next one is at lt_watch_conn_next_ms(); calling it earlier is
 * harmless. */
lt_err_t lt_watch_conn_tick(lt_watch_conn_t *c, int64_t now_ms, char *errstr, size_t errstr_size);
int64_t lt_watch_conn_next_ms(const lt_watch_conn_t *c);

lt_watch_state_t lt_watch_conn_state(const lt_watch_conn_t *c);
/* 1 when the server advertised IDLE (known once logged in). */
int lt_watch_conn_has_idle(const lt_watch_conn_t *c);
/* How many times IDLE was issued on this connection. */
uint64_t lt_watch_conn_idles(const lt_watch_conn_t *c);

#endif
