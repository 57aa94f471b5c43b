/* lt_imap_parser: an incremental IMAP4rev1 response parser (RFC 3501 section 7).
 *
 * Feed it the bytes read from the server in chunks of any size (a literal's
 * "{N}\r\n" header, its bytes and the rest of the line may be split anywhere);
 * it calls the event callback once per parsed response. The event and every
 * pointer in it are borrowed: valid only during the callback.
 *
 * Message bodies are streamed: in an untagged FETCH, a literal that is the
 * value of BODY[...], BINARY[...] or RFC822[.HEADER|.TEXT] is not buffered
 * but delivered as BODY_BEGIN, BODY_DATA (chunks no bigger than the chunks
 * fed, pointing into the caller's input), BODY_END; then the FETCH event of
 * the whole response follows. A body literal longer than max_message gives
 * BODY_SKIPPED and its bytes are discarded, so the stream stays in sync.
 * Quoted and NIL bodies give BEGIN/(DATA)/END as well (nil = 1 for NIL).
 *
 * Everything else of a response, including its non-body literals (mailbox
 * names, ...), must fit in max_line bytes. The exception is "* SEARCH": its
 * numbers are flushed in LT_IMAP_EV_SEARCH events with partial = 1 as they
 * arrive, so a search result of any length parses in bounded memory.
 *
 * "~{N}" binary literals (RFC 3516) are accepted like literals. "{N+}"
 * (LITERAL+ syntax, only valid from clients) is a protocol error.
 *
 * Errors: protocol garbage, an over-long line or literal, or a non-OK
 * return from the callback stop the parser: feed() returns LT_ERR_INVALID
 * (with the offending stream byte offset and an excerpt), LT_ERR_TOO_BIG,
 * or the callback's code, and every later feed() returns the same error.
 * After a protocol error the connection must be closed.
 *
 * Not thread-safe; one parser per connection. */
#ifndef LT_IMAP_PARSER_H
#define LT_IMAP_PARSER_H

#include <stddef.h>
#include <stdint.h>

#include "lt_err.h"

typedef enum {
    LT_IMAP_EV_TAGGED = 1,   /* tag, status, code, code_arg, text; strs = [CAPABILITY ...] */
    LT_IMAP_EV_STATUS,       /* untagged OK/NO/BAD/BYE/PREAUTH: status, code, code_arg, text */
    LT_IMAP_EV_CONTINUE,     /* "+ text": text */
    LT_IMAP_EV_CAPABILITY,   /* strs = capability names as sent */
    LT_IMAP_EV_EXISTS,       /* num */
    LT_IMAP_EV_RECENT,       /* num */
    LT_IMAP_EV_EXPUNGE,      /* num = sequence number */
    LT_IMAP_EV_FLAGS,        /* strs = flags */
    LT_IMAP_EV_LIST,         /* LIST/LSUB: strs = attributes, delimiter, mailbox (raw, mUTF-7) */
    LT_IMAP_EV_SEARCH,       /* nums; partial = 1 when more numbers of this response follow */
    LT_IMAP_EV_FETCH,        /* num = sequence number, fetch, strs = FLAGS when fetch.has FLAGS */
    LT_IMAP_EV_BODY_BEGIN,   /* num, section, literal_len, nil; fetch = items seen before it */
    LT_IMAP_EV_BODY_DATA,    /* data, len */
    LT_IMAP_EV_BODY_END,     /* num, section */
    LT_IMAP_EV_BODY_SKIPPED, /* num, section, literal_len (> max_message); fetch as for BEGIN */
    LT_IMAP_EV_OTHER,        /* any other untagged response: name (upper case), text = the rest */
    LT_IMAP_EV_ENABLED,      /* "* ENABLED ..." (RFC 5161): strs = extension names as sent */
    LT_IMAP_EV_VANISHED,     /* "* VANISHED [(EARLIER)] set" (RFC 7162): ranges, earlier */
} lt_imap_ev_type_t;

typedef enum {
    LT_IMAP_OK = 1,
    LT_IMAP_NO,
    LT_IMAP_BAD,
    LT_IMAP_BYE,
    LT_IMAP_PREAUTH,
} lt_imap_status_t;

enum {
    LT_IMAP_HAS_UID = 1u << 0,
    LT_IMAP_HAS_SIZE = 1u << 1,  /* RFC822.SIZE */
    LT_IMAP_HAS_DATE = 1u << 2,  /* INTERNALDATE */
    LT_IMAP_HAS_FLAGS = 1u << 3, /* FLAGS (in strs) */
    LT_IMAP_HAS_BODY = 1u << 4,  /* a body section (streamed, skipped, quoted or NIL) */
    LT_IMAP_HAS_MODSEQ = 1u << 5, /* MODSEQ (n) (RFC 7162) */
};

/* One range of a sequence set ("7" is 7:7; "9:3" is 3:9; "*" is the star
 * value given, LT_IMAP_STAR for sets the server sends). */
typedef struct {
    uint32_t lo, hi; /* lo <= hi, both >= 1 */
} lt_imap_range_t;

#define LT_IMAP_STAR UINT32_MAX
/* Highest mod-sequence value (RFC 7162: 63 bits). */
#define LT_IMAP_MODSEQ_MAX ((uint64_t)INT64_MAX)

typedef struct {
    unsigned has; /* LT_IMAP_HAS_* */
    uint32_t uid;
    uint64_t size;           /* RFC822.SIZE */
    int64_t internaldate_ms; /* INTERNALDATE as Unix epoch milliseconds */
    uint64_t modseq;         /* MODSEQ (n); 0 when absent */
    int body_skipped;        /* a body was over max_message and discarded */
} lt_imap_fetch_t;

typedef struct {
    lt_imap_ev_type_t type;
    const char *tag;         /* TAGGED */
    lt_imap_status_t status; /* TAGGED, STATUS */
    const char *code;        /* response code atom in upper case ("UIDVALIDITY"), or NULL */
    const char *code_arg;    /* the rest inside the brackets, or NULL */
    uint64_t modseq;         /* code HIGHESTMODSEQ: its value (checked, 1..2^63-1) */
    const lt_imap_range_t *ranges; /* VANISHED; code MODIFIED: the set, as sent */
    size_t nranges;
    int earlier;             /* VANISHED (EARLIER) */
    const char *text;        /* human-readable text ("" when none) */
    const char *name;        /* OTHER: the response name; LIST: "LIST" or "LSUB" */
    uint64_t num;
    const char *const *strs;
    size_t nstrs;
    const uint32_t *nums;
    size_t nnums;
    int partial;
    char delimiter; /* LIST: 0 for NIL */
    const char *mailbox;
    size_t mailbox_len;
    lt_imap_fetch_t fetch;
    const char *section; /* BODY_*: item name as sent, e.g. "BODY[]" */
    uint64_t literal_len;
    int nil;
    const uint8_t *data;
    size_t len;
} lt_imap_event_t;

typedef lt_err_t (*lt_imap_event_fn)(void *opaque, const lt_imap_event_t *ev);

typedef struct {
    size_t max_line;      /* bytes of a response outside body literals; 0 = 64 KiB */
    uint64_t max_message; /* bytes of one body literal; 0 = 64 MiB */
} lt_imap_parser_opts_t;

typedef struct lt_imap_parser_s lt_imap_parser_t;

/* opts may be NULL (defaults). fn is called with opaque for every event. */
lt_imap_parser_t *lt_imap_parser_new(const lt_imap_parser_opts_t *opts, lt_imap_event_fn fn,
                                     void *opaque);
void lt_imap_parser_destroy(lt_imap_parser_t *p);

lt_err_t lt_imap_parser_feed(lt_imap_parser_t *p, const uint8_t *data, size_t len, char *errstr,
                             size_t errstr_size);

/* 1 when the parser is between responses (nothing partial buffered). */
int lt_imap_parser_idle(const lt_imap_parser_t *p);

/* INTERNALDATE "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be space-padded) to
 * epoch milliseconds. LT_ERR_INVALID when malformed or out of range. */
lt_err_t lt_imap_parse_internaldate(const char *s, size_t len, int64_t *ms);

const char *lt_imap_status_name(lt_imap_status_t s);

/* A sequence set ("1:5,7,9:*", RFC 3501 sequence-set) into at most max
 * ranges (out, caller's array); "*" becomes star. LT_ERR_INVALID when
 * malformed (0, a number over 2^32-1, empty parts, anything else),
 * LT_ERR_TOO_BIG over max ranges. */
lt_err_t lt_imap_parse_seqset(const char *s, size_t len, uint32_t star, lt_imap_range_t *out,
                              size_t max, size_t *nout);
/* How many numbers the ranges cover (no overflow: at most n * 2^32). */
uint64_t lt_imap_ranges_count(const lt_imap_range_t *r, size_t n);

#endif
