/* lt_imap_client: a read-mostly IMAP4rev1 client for mail ingestion.
 *
 * One handle = one connection, over implicit TLS (IMAPS, OpenSSL: the
 * certificate chain AND the host name or IP address are verified, always;
 * CA file configurable, the system store by default; SNI sent for names) or
 * over an already-connected plain socket (scripted-peer tests). Not
 * thread-safe: use a handle from one thread at a time.
 *
 * Read-only guarantee: mailboxes are opened with EXAMINE and messages read
 * with BODY.PEEK[], so ingestion never sets \Seen nor changes anything. The
 * only writing commands are the helpers for tests and tools at the end
 * (CREATE, DELETE, APPEND, SELECT, UID STORE, UID EXPUNGE), which the ingestion path never calls.
 *
 * Errors (lt_err_t + errstr, never a password or message content):
 *   LT_ERR_TEMPORARY  network error, timeout, connection closed, BYE, TLS
 *                     handshake failure, protocol garbage from the server,
 *                     NO with [UNAVAILABLE]/[INUSE]/[LIMIT]/[SERVERBUG]/...,
 *                     NO on FETCH/SEARCH
 *   LT_ERR_REAUTH     NO on LOGIN/AUTHENTICATE (credentials or token rejected)
 *   LT_ERR_FINAL      BAD; NO on other commands; certificate verification
 *                     failure; LOGINDISABLED; no usable mechanism
 *   LT_ERR_NOT_FOUND  EXAMINE of a mailbox that does not exist ([NONEXISTENT])
 *   LT_ERR_INVALID    misuse (wrong state, bad argument)
 *   other codes       returned by a fetch callback, passed through
 * After TEMPORARY from the network, a BYE, a protocol error or a callback
 * error the connection is closed: every later call fails with
 * LT_ERR_TEMPORARY; destroy the handle and connect again.
 *
 * The program must ignore SIGPIPE (OpenSSL writes with write()). */
#ifndef LT_IMAP_CLIENT_H
#define LT_IMAP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "lt_err.h"
#include "lt_imap_parser.h"
#include "lt_log.h"

typedef struct lt_imap_s lt_imap_t;

/* Extensions of RFC 7162 / RFC 5161, as bits (opts.hide_caps, lt_imap_enable()). */
enum {
    LT_IMAP_CAP_CONDSTORE = 1u << 0,
    LT_IMAP_CAP_QRESYNC = 1u << 1,
    LT_IMAP_CAP_ENABLE = 1u << 2,
};

typedef struct {
    const char *host;        /* name or IP address: connect target and TLS identity */
    int port;                /* 0 = 993 */
    int tls;                 /* 1 = implicit TLS; 0 = plain (tests with connect_fd only) */
    const char *ca_file;     /* PEM bundle of trusted CAs; NULL = the system store */
    int connect_timeout_ms;  /* TCP connect + TLS handshake; 0 = 15000 */
    int io_timeout_ms;       /* longest wait for any read or write; 0 = 60000 */
    size_t max_line;         /* cap of a response outside message bodies; 0 = 64 KiB */
    uint64_t max_message;    /* cap of one message; bigger ones are skipped; 0 = 64 MiB */
    size_t fetch_batch;      /* UIDs per UID FETCH command; 0 = 250 */
    int fetch_pipeline;      /* UID FETCH commands in flight (1..8); 0 = 2 */
    const lt_log_ctx_t *log; /* borrowed until destroy; may be NULL */
    unsigned hide_caps;      /* LT_IMAP_CAP_* taken as not advertised, whatever the server
                                says (tests simulate servers without them); 0 = none */
} lt_imap_opts_t;

/* Copies what it needs of opts (strings included). */
lt_imap_t *lt_imap_new(const lt_imap_opts_t *opts);
/* Closes the connection without LOGOUT. NULL is fine. */
void lt_imap_destroy(lt_imap_t *c);

/* TCP connect (+ TLS handshake) to opts.host:opts.port and read the greeting
 * (and the capabilities). */
lt_err_t lt_imap_connect(lt_imap_t *c, char *errstr, size_t errstr_size);
/* Same over an already-connected socket; the handle owns fd from now on (also
 * on failure). TLS when opts.tls. */
lt_err_t lt_imap_connect_fd(lt_imap_t *c, int fd, char *errstr, size_t errstr_size);

/* 1 when the server advertised the capability (case-insensitive, e.g.
 * "UIDPLUS", "AUTH=PLAIN"). Capabilities are re-read after login. */
int lt_imap_has_cap(const lt_imap_t *c, const char *cap);
/* Send CAPABILITY and refresh the list. */
lt_err_t lt_imap_capability(lt_imap_t *c, char *errstr, size_t errstr_size);

/* Secrets (password, token) of at least this many bytes are masked in a
 * login's error ("[redacted]"), which quotes the server's answer. */
#define LT_IMAP_SECRET_MIN 4
/* AUTHENTICATE PLAIN (initial response inline with SASL-IR) when advertised,
 * else LOGIN. Then refreshes the capabilities and sends ID if advertised.
 * On an error errstr never holds the password (LT_IMAP_SECRET_MIN). */
lt_err_t lt_imap_login(lt_imap_t *c, const char *user, const char *password, char *errstr,
                       size_t errstr_size);
/* AUTHENTICATE XOAUTH2 with a bearer token (needs AUTH=XOAUTH2); on an
 * error errstr never holds the token. */
lt_err_t lt_imap_login_xoauth2(lt_imap_t *c, const char *user, const char *token, char *errstr,
                               size_t errstr_size);

enum {
    LT_IMAP_FOLDER_NOSELECT = 1u << 0, /* \Noselect or \NonExistent: cannot be examined */
    LT_IMAP_FOLDER_ALL = 1u << 1,      /* special-use (RFC 6154) */
    LT_IMAP_FOLDER_ARCHIVE = 1u << 2,
    LT_IMAP_FOLDER_DRAFTS = 1u << 3,
    LT_IMAP_FOLDER_FLAGGED = 1u << 4,
    LT_IMAP_FOLDER_JUNK = 1u << 5,
    LT_IMAP_FOLDER_SENT = 1u << 6,
    LT_IMAP_FOLDER_TRASH = 1u << 7,
};

typedef struct {
    char *name;      /* UTF-8, or NULL when the server's name is not valid modified UTF-7 */
    char *wire_name; /* as sent by the server (modified UTF-7) */
    char delimiter;  /* hierarchy delimiter, 0 when none */
    unsigned flags;  /* LT_IMAP_FOLDER_* */
} lt_imap_folder_t;

/* LIST "" "*". The array and its strings belong to the caller:
 * lt_imap_folders_free(). */
lt_err_t lt_imap_list(lt_imap_t *c, lt_imap_folder_t **folders, size_t *nfolders, char *errstr,
                      size_t errstr_size);
void lt_imap_folders_free(lt_imap_folder_t *folders, size_t nfolders);

typedef struct {
    uint32_t uidvalidity;
    uint32_t uidnext; /* 0 when the server did not say */
    uint32_t exists;
    int read_only; /* the server confirmed [READ-ONLY] */
    uint64_t highestmodseq; /* [HIGHESTMODSEQ n] (RFC 7162); 0 when not sent. It may be lower
                               than a value seen before (a server bug or restore): reported
                               as sent, the caller decides */
    int nomodseq;           /* [NOMODSEQ]: the mailbox has no mod-sequences */
} lt_imap_mailbox_t;

/* EXAMINE (read-only SELECT) a mailbox by its UTF-8 name. */
lt_err_t lt_imap_examine(lt_imap_t *c, const char *name, lt_imap_mailbox_t *mb, char *errstr,
                         size_t errstr_size);

/* The latest message count of the examined mailbox (EXISTS/EXPUNGE seen so far). */
uint32_t lt_imap_exists(const lt_imap_t *c);

/* UID SEARCH UID first:last (last 0 = "*"). *uids (caller frees) holds the
 * existing UIDs within [first, last], ascending; the highest UID the server
 * adds for "n:*" when all are below n is filtered out. */
lt_err_t lt_imap_uid_search(lt_imap_t *c, uint32_t first, uint32_t last, uint32_t **uids,
                            size_t *nuids, char *errstr, size_t errstr_size);

/* Streaming delivery of fetched messages. For each message: begin, data
 * (chunks of at most 64 KiB; only borrowed during the call), end. A message
 * over max_message gets skipped(LT_ERR_TOO_BIG) instead. A UID the server
 * leaves out of its answer or answers with a NIL body is looked up again
 * with UID SEARCH once the fetch is done: gone, it gets
 * skipped(LT_ERR_NOT_FOUND) (expunged); still there, the fetch returns
 * LT_ERR_TEMPORARY and reports none of them (redo the batch). A non-LT_OK
 * return from begin/data/end aborts the fetch with that code and closes the
 * connection. Any callback may be NULL. */
typedef struct {
    lt_err_t (*begin)(void *opaque, uint32_t uid, uint64_t size, int64_t internaldate_ms);
    lt_err_t (*data)(void *opaque, const uint8_t *chunk, size_t len);
    lt_err_t (*end)(void *opaque);
    void (*skipped)(void *opaque, uint32_t uid, lt_err_t why, const char *reason);
    void *opaque;
    /* Non-NULL: FLAGS (and MODSEQ when CONDSTORE is enabled) is fetched
     * with each message and given here right after its end callback (flags
     * borrowed during the call; modseq 0 when the server sent none). */
    lt_err_t (*flags)(void *opaque, uint32_t uid, const char *const *flags, size_t nflags,
                      uint64_t modseq);
} lt_imap_fetch_cb_t;

/* UID FETCH (UID RFC822.SIZE INTERNALDATE BODY.PEEK[]) of the given UIDs, in
 * commands of opts.fetch_batch UIDs with opts.fetch_pipeline of them in
 * flight; then, for UIDs not answered with a body, one UID SEARCH (above). */
lt_err_t lt_imap_uid_fetch(lt_imap_t *c, const uint32_t *uids, size_t nuids,
                           const lt_imap_fetch_cb_t *cb, char *errstr, size_t errstr_size);

/* Send the UID FETCH commands of the next lt_imap_uid_fetch() now (the first
 * opts.fetch_pipeline of them): the server's answer travels while the caller
 * does other work (one round trip hidden per fetch). with_flags: that
 * fetch's cb->flags will be non-NULL. The next call on c must be
 * lt_imap_uid_fetch() of the same UIDs with the same flags mode (a
 * different set fails with LT_ERR_INVALID and closes the connection), or
 * lt_imap_logout() (closes it), or lt_imap_destroy(); any other command
 * fails with LT_ERR_INVALID meanwhile. */
lt_err_t lt_imap_uid_fetch_ahead(lt_imap_t *c, const uint32_t *uids, size_t nuids, int with_flags,
                                 char *errstr, size_t errstr_size);

/* ---- CONDSTORE / QRESYNC (RFC 7162) ---- */

/* ENABLE (RFC 5161) the space-separated extensions in exts ("QRESYNC",
 * "CONDSTORE QRESYNC") that the server advertises; the others are not sent.
 * *enabled (LT_IMAP_CAP_* bits) gets what the server confirmed with
 * "* ENABLED" (QRESYNC implies CONDSTORE). Without ENABLE or any of them
 * advertised nothing is sent and *enabled = 0: LT_OK, the caller falls
 * back. Only before a mailbox is examined (authenticated state). */
lt_err_t lt_imap_enable(lt_imap_t *c, const char *exts, unsigned *enabled, char *errstr,
                        size_t errstr_size);
/* The LT_IMAP_CAP_* enabled on this connection. */
unsigned lt_imap_enabled(const lt_imap_t *c);

/* Changes reported by the server: a FETCH with FLAGS (uid, flags borrowed
 * during the call, modseq or 0 when not sent), and VANISHED UID ranges
 * (earlier = 1 for VANISHED (EARLIER), i.e. expunged before this command;
 * 0 for expunges happening now). A non-LT_OK return aborts the command with
 * that code and closes the connection. Either may be NULL. */
typedef struct {
    lt_err_t (*changed)(void *opaque, uint32_t uid, const char *const *flags, size_t nflags,
                        uint64_t modseq);
    lt_err_t (*vanished)(void *opaque, const lt_imap_range_t *ranges, size_t n, int earlier);
    void *opaque;
} lt_imap_changes_cb_t;

/* What the client knew of a mailbox: QRESYNC parameters. known (may be
 * NULL/0) are the UIDs it knows of; LT_IMAP_STAR as hi is sent as "*". */
typedef struct {
    uint32_t uidvalidity;
    uint64_t modseq; /* >= 1 */
    const lt_imap_range_t *known;
    size_t nknown;
} lt_imap_qresync_t;

/* EXAMINE name (QRESYNC (uidvalidity modseq [known])) with QRESYNC enabled
 * (else LT_ERR_INVALID). The server reports, through cb, the UIDs expunged
 * since modseq (VANISHED (EARLIER)) and the flags changed since
 * (FETCH UID FLAGS MODSEQ), unless uidvalidity differs (then nothing:
 * compare mb->uidvalidity). mb as for lt_imap_examine(), with
 * highestmodseq or nomodseq. */
lt_err_t lt_imap_examine_qresync(lt_imap_t *c, const char *name, const lt_imap_qresync_t *q,
                                 lt_imap_mailbox_t *mb, const lt_imap_changes_cb_t *cb,
                                 char *errstr, size_t errstr_size);

/* UID FETCH set (FLAGS) (CHANGEDSINCE modseq [VANISHED]) of the examined
 * mailbox: every message of set whose flags changed after modseq is given to
 * cb->changed; with vanished (needs QRESYNC enabled, else LT_ERR_INVALID)
 * the UIDs of set expunged since modseq come to cb->vanished (earlier = 1).
 * Needs CONDSTORE advertised (else LT_ERR_INVALID). A VANISHED arriving
 * meanwhile (earlier = 0: expunged now) is delivered too; a plain EXPUNGE
 * (sequence number only, sent when QRESYNC is not enabled) only lowers
 * lt_imap_exists(). modseq 0 without vanished: a plain UID FETCH set
 * (FLAGS) of every message of set (no CONDSTORE needed; MODSEQ asked for
 * too when CONDSTORE is enabled): the full flag listing. */
lt_err_t lt_imap_uid_fetch_changed(lt_imap_t *c, const lt_imap_range_t *set, size_t nset,
                                   uint64_t modseq, int vanished, const lt_imap_changes_cb_t *cb,
                                   char *errstr, size_t errstr_size);

/* UID SEARCH ALL of the examined mailbox as ascending, disjoint,
 * non-adjacent ranges (*ranges caller frees; at most 16 M UIDs): the UID
 * list of a mailbox without QRESYNC, to find expunges by difference. */
lt_err_t lt_imap_uid_search_all(lt_imap_t *c, lt_imap_range_t **ranges, size_t *nranges,
                                char *errstr, size_t errstr_size);

/* Application bytes read from / written to the server on this handle so
 * far (inside TLS: the IMAP protocol's own size; either pointer may be
 * NULL; c NULL: 0). */
void lt_imap_wire_bytes(const lt_imap_t *c, uint64_t *in, uint64_t *out);

/* LOGOUT and close. */
lt_err_t lt_imap_logout(lt_imap_t *c, char *errstr, size_t errstr_size);

/* ---- writing helpers for tests and tools (never used by ingestion) ---- */

lt_err_t lt_imap_create(lt_imap_t *c, const char *name, char *errstr, size_t errstr_size);
lt_err_t lt_imap_delete(lt_imap_t *c, const char *name, char *errstr, size_t errstr_size);
/* A message to APPEND. A plain value carrier; nothing owned. */
typedef struct {
    const void *data; /* sent as a literal */
    size_t len;
    const char *flags; /* like "\\Seen"; NULL: none */
} lt_imap_message_t;

/* APPEND msg to the folder name. *uid (may be NULL) gets the new UID from
 * [APPENDUID] (UIDPLUS), else 0. */
lt_err_t lt_imap_append(lt_imap_t *c, const char *name, const lt_imap_message_t *msg, uint32_t *uid,
                        char *errstr, size_t errstr_size);
/* UID FETCH uid (FLAGS) of the examined mailbox: the flags space-separated
 * into flags (NUL-terminated); LT_ERR_NOT_FOUND when no such UID. */
lt_err_t lt_imap_uid_flags(lt_imap_t *c, uint32_t uid, char *flags, size_t flags_size, char *errstr,
                           size_t errstr_size);
/* SELECT (read-write) a mailbox: only for the writing helpers below. */
lt_err_t lt_imap_select(lt_imap_t *c, const char *name, lt_imap_mailbox_t *mb, char *errstr,
                        size_t errstr_size);
/* UID STORE uid op (flags) of the selected mailbox; op is "+FLAGS",
 * "-FLAGS" or "FLAGS" (".SILENT" is added). */
lt_err_t lt_imap_uid_store(lt_imap_t *c, uint32_t uid, const char *op, const char *flags,
                           char *errstr, size_t errstr_size);
/* Set \Deleted on uid and UID EXPUNGE it (needs UIDPLUS). */
lt_err_t lt_imap_uid_expunge(lt_imap_t *c, uint32_t uid, char *errstr, size_t errstr_size);

#endif
