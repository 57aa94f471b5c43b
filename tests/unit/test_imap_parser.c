/* The incremental IMAP response parser: canned server outputs, each fed
 * whole, byte by byte, split at every position and in random chunk sizes,
 * must give the same event sequence (and the same error, if any). */
#include <stdint.h>
#include <stdlib.h>

#include "lt_buf.h"
#include "lt_imap_parser.h"
#include "lt_test.h"

/* ---- an event recorder: one text line per event ---- */

typedef struct {
    lt_buf_t *out;
    int in_data;      /* consecutive BODY_DATA are merged, so chunking does not show */
    int in_search;    /* partial SEARCH events are merged likewise */
    size_t max_chunk; /* the biggest BODY_DATA chunk seen */
} rec_t;

static void put_esc(lt_buf_t *b, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
            lt_buf_append(b, &s[i], 1);
        else
            lt_buf_appendf(b, "\\x%02x", s[i]);
    }
}

static void put_strs(lt_buf_t *b, const lt_imap_event_t *ev)
{
    lt_buf_appendf(b, " (");
    for (size_t i = 0; i < ev->nstrs; i++)
        lt_buf_appendf(b, "%s%s", i ? " " : "", ev->strs[i]);
    lt_buf_appendf(b, ")");
}

static void put_fetch(lt_buf_t *b, const lt_imap_fetch_t *f)
{
    if (f->has & LT_IMAP_HAS_UID)
        lt_buf_appendf(b, " uid=%u", f->uid);
    if (f->has & LT_IMAP_HAS_SIZE)
        lt_buf_appendf(b, " size=%llu", (unsigned long long)f->size);
    if (f->has & LT_IMAP_HAS_DATE)
        lt_buf_appendf(b, " date=%lld", (long long)f->internaldate_ms);
    if (f->has & LT_IMAP_HAS_MODSEQ)
        lt_buf_appendf(b, " modseq=%llu", (unsigned long long)f->modseq);
    if (f->has & LT_IMAP_HAS_BODY)
        lt_buf_appendf(b, " body");
    if (f->body_skipped)
        lt_buf_appendf(b, " skipped");
}

static void put_ranges(lt_buf_t *b, const lt_imap_event_t *ev)
{
    for (size_t i = 0; i < ev->nranges; i++)
        lt_buf_appendf(b, "%s%u-%u", i ? "," : " ", ev->ranges[i].lo, ev->ranges[i].hi);
}

static lt_err_t record(void *opaque, const lt_imap_event_t *ev)
{
    rec_t *r = opaque;
    lt_buf_t *b = r->out;
    if (ev->type == LT_IMAP_EV_BODY_DATA) {
        if (!r->in_data)
            lt_buf_appendf(b, "DATA ");
        r->in_data = 1;
        put_esc(b, ev->data, ev->len);
        if (ev->len > r->max_chunk)
            r->max_chunk = ev->len;
        return LT_OK;
    }
    if (r->in_data)
        lt_buf_appendf(b, "\n");
    r->in_data = 0;
    if (ev->type == LT_IMAP_EV_SEARCH) {
        if (!r->in_search)
            lt_buf_appendf(b, "SEARCH");
        r->in_search = ev->partial;
        for (size_t i = 0; i < ev->nnums; i++)
            lt_buf_appendf(b, " %u", ev->nums[i]);
        if (!ev->partial)
            lt_buf_appendf(b, "\n");
        return LT_OK;
    }
    switch (ev->type) {
    case LT_IMAP_EV_TAGGED:
    case LT_IMAP_EV_STATUS:
        lt_buf_appendf(b, "%s %s%s%s", ev->type == LT_IMAP_EV_TAGGED ? "TAGGED" : "STATUS",
                       ev->tag ? ev->tag : "", ev->tag ? " " : "", lt_imap_status_name(ev->status));
        if (ev->code)
            lt_buf_appendf(b, " [%s%s%s]", ev->code, ev->code_arg ? " " : "",
                           ev->code_arg ? ev->code_arg : "");
        if (ev->modseq)
            lt_buf_appendf(b, " modseq=%llu", (unsigned long long)ev->modseq);
        if (ev->nranges) {
            lt_buf_appendf(b, " set");
            put_ranges(b, ev);
        }
        lt_buf_appendf(b, " text=%s", ev->text);
        if (ev->nstrs)
            put_strs(b, ev);
        break;
    case LT_IMAP_EV_ENABLED:
        lt_buf_appendf(b, "ENABLED");
        put_strs(b, ev);
        break;
    case LT_IMAP_EV_VANISHED:
        lt_buf_appendf(b, "VANISHED%s", ev->earlier ? " EARLIER" : "");
        put_ranges(b, ev);
        break;
    case LT_IMAP_EV_CONTINUE:
        lt_buf_appendf(b, "CONTINUE text=%s", ev->text);
        break;
    case LT_IMAP_EV_CAPABILITY:
        lt_buf_appendf(b, "CAPABILITY");
        put_strs(b, ev);
        break;
    case LT_IMAP_EV_EXISTS:
        lt_buf_appendf(b, "EXISTS %llu", (unsigned long long)ev->num);
        break;
    case LT_IMAP_EV_RECENT:
        lt_buf_appendf(b, "RECENT %llu", (unsigned long long)ev->num);
        break;
    case LT_IMAP_EV_EXPUNGE:
        lt_buf_appendf(b, "EXPUNGE %llu", (unsigned long long)ev->num);
        break;
    case LT_IMAP_EV_FLAGS:
        lt_buf_appendf(b, "FLAGS");
        put_strs(b, ev);
        break;
    case LT_IMAP_EV_LIST:
        lt_buf_appendf(b, "%s", ev->name);
        put_strs(b, ev);
        lt_buf_appendf(b, " delim=%c name=", ev->delimiter ? ev->delimiter : '0');
        put_esc(b, (const uint8_t *)ev->mailbox, ev->mailbox_len);
        break;
    case LT_IMAP_EV_FETCH:
        lt_buf_appendf(b, "FETCH %llu", (unsigned long long)ev->num);
        put_fetch(b, &ev->fetch);
        if (ev->fetch.has & LT_IMAP_HAS_FLAGS)
            put_strs(b, ev);
        break;
    case LT_IMAP_EV_BODY_BEGIN:
    case LT_IMAP_EV_BODY_SKIPPED:
        lt_buf_appendf(b, "%s %llu %s len=%llu%s",
                       ev->type == LT_IMAP_EV_BODY_BEGIN ? "BEGIN" : "SKIPPED",
                       (unsigned long long)ev->num, ev->section,
                       (unsigned long long)ev->literal_len, ev->nil ? " nil" : "");
        put_fetch(b, &ev->fetch);
        break;
    case LT_IMAP_EV_BODY_END:
        lt_buf_appendf(b, "END %llu %s", (unsigned long long)ev->num, ev->section);
        break;
    case LT_IMAP_EV_OTHER:
        lt_buf_appendf(b, "OTHER %s text=%s", ev->name, ev->text);
        break;
    default:
        lt_buf_appendf(b, "?");
    }
    lt_buf_appendf(b, "\n");
    return LT_OK;
}

/* Feed input in the given chunk sizes (cycled); returns the transcript, with
 * "ERROR <code>: <text>" appended on failure. */
static char *run(const char *in, size_t len, const size_t *chunks, size_t nchunks,
                 const lt_imap_parser_opts_t *opts, size_t *max_chunk)
{
    rec_t r = {.out = lt_buf_new(1 << 24)};
    lt_imap_parser_t *p = lt_imap_parser_new(opts, record, &r);
    char err[512];
    size_t off = 0, k = 0;
    lt_err_t e = LT_OK;
    while (off < len) {
        size_t n = chunks[k++ % nchunks];
        if (n > len - off)
            n = len - off;
        /* Copy each chunk so that reads past it are caught by ASan. */
        uint8_t *c = lt_xmalloc(n);
        memcpy(c, in + off, n);
        e = lt_imap_parser_feed(p, c, n, err, sizeof(err));
        free(c);
        off += n;
        if (e)
            break;
    }
    if (r.in_data)
        lt_buf_appendf(r.out, "\n");
    if (e)
        lt_buf_appendf(r.out, "ERROR %s: %s\n", lt_err_name(e), err);
    else if (!lt_imap_parser_idle(p))
        lt_buf_appendf(r.out, "INCOMPLETE\n");
    if (max_chunk)
        *max_chunk = r.max_chunk;
    lt_imap_parser_destroy(p);
    size_t l;
    char *text = (char *)lt_buf_steal(r.out, &l);
    lt_buf_destroy(r.out);
    return text;
}

/* Table rows leave the caps at 0 (defaults) unless a row tests them. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

typedef struct {
    const char *name;
    const char *in;
    const char *expect; /* exact transcript; for errors, the transcript up to "ERROR <code>" */
    size_t max_line, max_message;
} tcase_t;

static const tcase_t cases[] = {
    {"greeting",
     "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] "
     "Dovecot ready.\r\n",
     "STATUS OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] "
     "text=Dovecot ready. (IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
     "AUTH=PLAIN)\n"},
    {"capability", "* CAPABILITY IMAP4rev1 UIDPLUS AUTH=XOAUTH2\r\na1 OK Capability completed.\r\n",
     "CAPABILITY (IMAP4rev1 UIDPLUS AUTH=XOAUTH2)\nTAGGED a1 OK text=Capability completed.\n"},
    {"list",
     "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
     "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"
     "* LIST () \".\" {17}\r\nEntw&APw-rfe \"x\"\\\r\n"
     "* LIST (\\Noselect) NIL \"&ZeVnLIqe-\"\r\n"
     "* LIST () \"/\" \"a \\\"q\\\" \\\\b\"\r\n"
     "* LSUB () \"/\" Archive]x\r\n"
     "A2 OK List completed (0.001 + 0.000 secs).\r\n",
     "LIST (\\HasNoChildren) delim=/ name=INBOX\n"
     "LIST (\\HasNoChildren \\Sent) delim=/ name=Sent Items\n"
     "LIST () delim=. name=Entw&APw-rfe \"x\"\\x5c\n"
     "LIST (\\Noselect) delim=0 name=&ZeVnLIqe-\n"
     "LIST () delim=/ name=a \"q\" \\x5cb\n"
     "LSUB () delim=/ name=Archive]x\n"
     "TAGGED A2 OK text=List completed (0.001 + 0.000 secs).\n"},
    {"examine",
     "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n"
     "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n"
     "* 172 EXISTS\r\n* 1 RECENT\r\n"
     "* OK [UNSEEN 12] Message 12 is first unseen\r\n"
     "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
     "* OK [UIDNEXT 4392] Predicted next UID\r\n"
     "* OK [HIGHESTMODSEQ 7]\r\n"
     "A3 OK [READ-ONLY] Examine completed.\r\n",
     "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\n"
     "STATUS OK [PERMANENTFLAGS ()] text=Read-only mailbox.\n"
     "EXISTS 172\nRECENT 1\n"
     "STATUS OK [UNSEEN 12] text=Message 12 is first unseen\n"
     "STATUS OK [UIDVALIDITY 3857529045] text=UIDs valid\n"
     "STATUS OK [UIDNEXT 4392] text=Predicted next UID\n"
     "STATUS OK [HIGHESTMODSEQ 7] modseq=7 text=\n"
     "TAGGED A3 OK [READ-ONLY] text=Examine completed.\n"},
    {"fetch",
     "* 1 FETCH (UID 7 RFC822.SIZE 12 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "
     "BODY[] {12}\r\nHi\r\n\r\nthere!)\r\n"
     "* 3 EXISTS\r\n"
     "* 2 FETCH (BODY[] {5}\r\n)(\r\n) UID 9 FLAGS (\\Seen $X) RFC822.SIZE 5 "
     "INTERNALDATE \" 1-Jan-1970 00:00:00 +0000\")\r\n"
     "* 2 FETCH (FLAGS (\\Seen))\r\n"
     "* 1 EXPUNGE\r\n"
     "A4 OK Fetch completed.\r\n",
     "BEGIN 1 BODY[] len=12 uid=7 size=12 date=837596665000 body\n"
     "DATA Hi\\x0d\\x0a\\x0d\\x0athere!\n"
     "END 1 BODY[]\n"
     "FETCH 1 uid=7 size=12 date=837596665000 body\n"
     "EXISTS 3\n"
     "BEGIN 2 BODY[] len=5 body\n"
     "DATA )(\\x0d\\x0a)\n"
     "END 2 BODY[]\n"
     "FETCH 2 uid=9 size=5 date=0 body (\\Seen $X)\n"
     "FETCH 2 (\\Seen)\n"
     "EXPUNGE 1\n"
     "TAGGED A4 OK text=Fetch completed.\n"},
    {"fetch-nil-quoted-empty-binary",
     "* 4 FETCH (UID 10 BODY[] NIL)\r\n"
     "* 5 FETCH (UID 11 BODY[] \"a\\\"b\")\r\n"
     "* 6 FETCH (UID 12 BODY[]<0> {0}\r\n)\r\n"
     "* 7 FETCH (UID 13 BINARY[] ~{3}\r\n\x00\x01\x02)\r\n"
     "* 8 FETCH (UID 14 MODSEQ (12345) BODY[HEADER.FIELDS (FROM \"TO\")] {4}\r\nab\r\n "
     "ENVELOPE (NIL \"s\" ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL NIL {2}\r\nid))\r\n"
     "A5 OK done\r\n",
     "BEGIN 4 BODY[] len=0 nil uid=10 body\nEND 4 BODY[]\nFETCH 4 uid=10 body\n"
     "BEGIN 5 BODY[] len=3 uid=11 body\nDATA a\"b\nEND 5 BODY[]\nFETCH 5 uid=11 body\n"
     "BEGIN 6 BODY[]<0> len=0 uid=12 body\nEND 6 BODY[]<0>\nFETCH 6 uid=12 body\n"
     "BEGIN 7 BINARY[] len=3 uid=13 body\nDATA \\x00\\x01\\x02\nEND 7 BINARY[]\n"
     "FETCH 7 uid=13 body\n"
     "BEGIN 8 BODY[HEADER.FIELDS (FROM \"TO\")] len=4 uid=14 modseq=12345 body\n"
     "DATA ab\\x0d\\x0a\n"
     "END 8 BODY[HEADER.FIELDS (FROM \"TO\")]\nFETCH 8 uid=14 modseq=12345 body\n"
     "TAGGED A5 OK text=done\n"},
    {"over-cap-skipped",
     "* 1 FETCH (UID 1 RFC822.SIZE 20 BODY[] {20}\r\n0123456789{1}\r\n}89\r\n)\r\n"
     "* 2 FETCH (UID 2 RFC822.SIZE 3 BODY[] {3}\r\nabc)\r\n"
     "A6 OK Fetch completed.\r\n",
     "SKIPPED 1 BODY[] len=20 uid=1 size=20 body\n"
     "FETCH 1 uid=1 size=20 body skipped\n"
     "BEGIN 2 BODY[] len=3 uid=2 size=3 body\nDATA abc\nEND 2 BODY[]\n"
     "FETCH 2 uid=2 size=3 body\n"
     "TAGGED A6 OK text=Fetch completed.\n",
     0, 10},
    {"search-continue-bye",
     "* SEARCH 3 5 4294967295\r\n* SEARCH\r\n* SEARCH 7 \r\nA7 OK Search done\r\n"
     "+ \r\n+\r\n+ dXNlcg==\r\n"
     "* ID (\"name\" \"Dovecot\")\r\n* 3 XSTATE foo\r\n* ENABLED\r\n"
     "* BYE [UNAVAILABLE] Server shutting down.\r\n",
     "SEARCH 3 5 4294967295\nSEARCH\nSEARCH 7\nTAGGED A7 OK text=Search done\n"
     "CONTINUE text=\nCONTINUE text=\nCONTINUE text=dXNlcg==\n"
     "OTHER ID text=(\"name\" \"Dovecot\")\nOTHER XSTATE text=foo\nENABLED ()\n"
     "STATUS BYE [UNAVAILABLE] text=Server shutting down.\n"},
    {"no-bad",
     "A8 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
     "A9 BAD Error in IMAP command UID: Invalid arguments.\r\n"
     "a10 no [NONEXISTENT] Mailbox doesn't exist: x\r\n"
     "A11 OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n",
     "TAGGED A8 NO [AUTHENTICATIONFAILED] text=Authentication failed.\n"
     "TAGGED A9 BAD text=Error in IMAP command UID: Invalid arguments.\n"
     "TAGGED a10 NO [NONEXISTENT] text=Mailbox doesn't exist: x\n"
     "TAGGED A11 OK [CAPABILITY IMAP4rev1 UIDPLUS] text=Logged in (IMAP4rev1 UIDPLUS)\n"},
    /* errors: transcript up to the error, then the code */
    {"garbage", "* 1 EXISTS\r\n)garbage\r\n", "EXISTS 1\nERROR invalid"},
    {"bad-tag-status", "A1 MAYBE ok\r\n", "ERROR invalid"},
    {"plus-literal", "* LIST () \"/\" {3+}\r\nabc\r\n", "ERROR invalid"},
    {"bare-lf", "* 1 EXISTS\n", "ERROR invalid"},
    {"bare-cr", "* 1 EX\rISTS\r\n", "ERROR invalid"},
    {"nul",
     "* OK a\x00"
     "b\r\n",
     "ERROR invalid"},
    {"empty-line", "\r\n", "ERROR invalid"},
    {"bad-date", "* 1 FETCH (UID 1 INTERNALDATE \"31-Feb-2020 00:00:00 +0000\")\r\n",
     "ERROR invalid"},
    {"uid-zero", "* 1 FETCH (UID 0)\r\n", "ERROR invalid"},
    {"uid-overflow", "* 1 FETCH (UID 4294967296)\r\n", "ERROR invalid"},
    {"fetch-trailing", "* 1 FETCH (UID 1) x\r\n", "ERROR invalid"},
    {"deep-nesting",
     "* 1 FETCH (X ((((((((((((((((((((((((((((((((((((((((a)))))))))))))))))))))))))))))))))))))))"
     "))\r\n",
     "ERROR invalid"},
    {"long-line", "* OK 0123456789012345678901234567890123456789\r\n", "ERROR too_big", 32, 0},
    {"long-literal", "* LIST () \"/\" {100}\r\n", "ERROR too_big", 64, 0},
    {"huge-literal-number", "* LIST () \"/\" {99999999999999999999}\r\n", "ERROR invalid"},
    /* CONDSTORE / QRESYNC (RFC 7162) */
    {"qresync-examine",
     "* CAPABILITY IMAP4rev1 ENABLE CONDSTORE QRESYNC\r\n"
     "* ENABLED QRESYNC condstore \r\n"
     "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
     "* OK [HIGHESTMODSEQ 9223372036854775807] Highest\r\n"
     "* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n"
     "* 49 FETCH (UID 117 FLAGS (\\Seen \\Answered) MODSEQ (90060115194045001))\r\n"
     "* 50 FETCH (MODSEQ (1) UID 119)\r\n"
     "* OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences\r\n"
     "A1 OK [READ-ONLY] done\r\n",
     "CAPABILITY (IMAP4rev1 ENABLE CONDSTORE QRESYNC)\nENABLED (QRESYNC condstore)\n"
     "STATUS OK [UIDVALIDITY 3857529045] text=UIDs valid\n"
     "STATUS OK [HIGHESTMODSEQ 9223372036854775807] modseq=9223372036854775807 text=Highest\n"
     "VANISHED EARLIER 41-41,43-116,118-118,120-211,214-540\n"
     "FETCH 49 uid=117 modseq=90060115194045001 (\\Seen \\Answered)\n"
     "FETCH 50 uid=119 modseq=1\n"
     "STATUS OK [NOMODSEQ] text=Sorry, this mailbox format doesn't support modsequences\n"
     "TAGGED A1 OK [READ-ONLY] text=done\n"},
    {"vanished-mid-fetch",
     "* 1 FETCH (UID 4 MODSEQ (12) BODY[] {3}\r\nabc)\r\n"
     "* VANISHED 5:7,9\r\n* VANISHED 4294967295:*\r\n* vanished 30:20\r\n"
     "* 2 FETCH (UID 8 FLAGS () MODSEQ (13))\r\n"
     "A2 OK [MODIFIED 7,9:12] Conditional STORE failed\r\n",
     "BEGIN 1 BODY[] len=3 uid=4 modseq=12 body\nDATA abc\nEND 1 BODY[]\n"
     "FETCH 1 uid=4 modseq=12 body\n"
     "VANISHED 5-7,9-9\nVANISHED 4294967295-4294967295\nVANISHED 20-30\n"
     "FETCH 2 uid=8 modseq=13 ()\n"
     "TAGGED A2 OK [MODIFIED 7,9:12] set 7-7,9-12 text=Conditional STORE failed\n"},
    {"vanished-zero", "* VANISHED (EARLIER) 0:3\r\n", "ERROR invalid"},
    {"vanished-overflow", "* VANISHED 1:4294967296\r\n", "ERROR invalid"},
    {"vanished-huge-number", "* VANISHED 99999999999999999999999999\r\n", "ERROR invalid"},
    {"vanished-empty-part", "* VANISHED 1,,2\r\n", "ERROR invalid"},
    {"vanished-trailing-comma", "* VANISHED 1,2,\r\n", "ERROR invalid"},
    {"vanished-no-set", "* VANISHED (EARLIER)\r\n", "ERROR invalid"},
    {"vanished-later", "* VANISHED (LATER) 1\r\n", "ERROR invalid"},
    {"vanished-range3", "* VANISHED 1:2:3\r\n", "ERROR invalid"},
    {"vanished-long", "* VANISHED 1,3,5,7,9,11,13,15,17,19,21,23,25,27,29\r\n", "ERROR too_big",
     32, 0},
    {"modseq-zero", "* 1 FETCH (UID 1 MODSEQ (0))\r\n", "ERROR invalid"},
    {"modseq-63bit", "* 1 FETCH (UID 1 MODSEQ (9223372036854775808))\r\n", "ERROR invalid"},
    {"modseq-no-parens", "* 1 FETCH (UID 1 MODSEQ 5)\r\n", "ERROR invalid"},
    {"highestmodseq-bad", "* OK [HIGHESTMODSEQ 12x] x\r\n", "ERROR invalid"},
    {"highestmodseq-none", "* OK [HIGHESTMODSEQ] x\r\n", "ERROR invalid"},
    {"modified-bad", "A1 OK [MODIFIED 1,0] x\r\n", "ERROR invalid"},
};

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void check_case(const tcase_t *t)
{
    lt_imap_parser_opts_t o = {.max_line = t->max_line, .max_message = t->max_message};
    size_t len = strlen(t->in);
    const char *in = t->in;
    /* The two inputs with a NUL byte: strlen() would stop there. */
    if (!strcmp(t->name, "fetch-nil-quoted-empty-binary"))
        len = strlen(in) + 1 + strlen(in + strlen(in) + 1);
    if (!strcmp(t->name, "nul"))
        len = 10;
    size_t whole = len ? len : 1, one = 1;
    char *ref = run(in, len, &whole, 1, &o, NULL);
    int is_err = strstr(t->expect, "ERROR ") != NULL;
    if (is_err) {
        CHECK_MSG(starts_with(ref, t->expect), "%s: got\n%s\nwant prefix\n%s", t->name, ref,
                  t->expect);
        CHECK_MSG(strstr(ref, "stream byte") || strstr(ref, "offset"), "%s: no position: %s",
                  t->name, ref);
    } else {
        CHECK_MSG(!strcmp(ref, t->expect), "%s: got\n%s\nwant\n%s", t->name, ref, t->expect);
    }
    /* byte by byte: same events, body chunks of at most 1 byte */
    size_t maxc = 0;
    char *got = run(in, len, &one, 1, &o, &maxc);
    CHECK_MSG(!strcmp(got, ref), "%s byte-by-byte: got\n%s\nwant\n%s", t->name, got, ref);
    if (!strcmp(t->name, "fetch")) /* streamed literals only; quoted bodies come whole */
        CHECK_MSG(maxc == 1, "%s: chunk of %zu bytes from 1-byte feeds", t->name, maxc);
    free(got);
    /* every two-piece split */
    for (size_t cut = 1; cut < len; cut++) {
        size_t ch[2] = {cut, len};
        got = run(in, len, ch, 2, &o, NULL);
        CHECK_MSG(!strcmp(got, ref), "%s split at %zu: got\n%s\nwant\n%s", t->name, cut, got, ref);
        free(got);
    }
    /* random chunk sizes */
    srand(42);
    for (int round = 0; round < 50; round++) {
        size_t ch[16];
        for (int i = 0; i < 16; i++)
            ch[i] = 1 + (size_t)(rand() % 9);
        got = run(in, len, ch, 16, &o, NULL);
        CHECK_MSG(!strcmp(got, ref), "%s random round %d: got\n%s\nwant\n%s", t->name, round, got,
                  ref);
        free(got);
    }
    free(ref);
}

/* A long SEARCH result is flushed in pieces and never hits the line cap. */
static void check_long_search(void)
{
    lt_buf_t *in = lt_buf_new(1 << 24);
    lt_buf_t *want = lt_buf_new(1 << 24);
    lt_buf_appendf(in, "* SEARCH");
    lt_buf_appendf(want, "SEARCH");
    for (uint32_t u = 1; u <= 100000; u++) {
        lt_buf_appendf(in, " %u", u * 3);
        lt_buf_appendf(want, " %u", u * 3);
    }
    lt_buf_appendf(in, "\r\nA1 OK done\r\n");
    lt_buf_appendf(want, "\nTAGGED A1 OK text=done\n");
    lt_imap_parser_opts_t o = {.max_line = 8192};
    size_t chunks[] = {1, 7000, 3, 65536, 13};
    char *got = run(lt_buf_str(in), lt_buf_len(in), chunks, 5, &o, NULL);
    CHECK_MSG(!strcmp(got, lt_buf_str(want)), "long search: got %.200s", got);
    free(got);
    lt_buf_destroy(in);
    lt_buf_destroy(want);
}

/* A large body streams in chunks no bigger than what was fed. */
static void check_big_body(void)
{
    size_t n = 3 * 1024 * 1024;
    lt_buf_t *in = lt_buf_new(n + 1024);
    lt_buf_appendf(in, "* 1 FETCH (UID 5 BODY[] {%zu}\r\n", n);
    for (size_t i = 0; i < n; i++)
        lt_buf_append(in, &"abcdefghijklmnopqrstuvwxyz\r\n"[i % 28], 1);
    lt_buf_appendf(in, ")\r\nA1 OK done\r\n");
    size_t chunk = 16384, maxc = 0;
    lt_imap_parser_opts_t o = {.max_line = 1024};
    char *got = run(lt_buf_str(in), lt_buf_len(in), &chunk, 1, &o, &maxc);
    CHECK(strstr(got, "BEGIN 1 BODY[] len=3145728 uid=5 body\n") == got);
    CHECK(strstr(got, "END 1 BODY[]\nFETCH 1 uid=5 body\nTAGGED A1 OK text=done\n") != NULL);
    CHECK(maxc <= chunk && maxc > 0);
    free(got);
    lt_buf_destroy(in);
}

static void check_dates(void)
{
    static const struct {
        const char *s;
        long long ms;
    } ok[] = {
        {"17-Jul-1996 02:44:25 -0700", 837596665000LL},
        {" 1-Jan-1970 00:00:00 +0000", 0},
        {"1-Jan-1970 00:00:00 +0000", 0},
        {"29-Feb-2024 23:59:59 +0530", 1709231399000LL},
        {"31-Dec-1969 23:59:59 +0000", -1000},
    };
    static const char *bad[] = {
        "29-Feb-2023 00:00:00 +0000", "17-Jux-1996 02:44:25 -0700", "17-Jul-1996 24:00:00 +0000",
        "17-Jul-1996 02:44:25 0700",  "17-Jul-1996 02:44:25 +07",   "",
        "17-Jul-1996T02:44:25 +0700", "00-Jul-1996 02:44:25 +0700",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t ms = 42;
        CHECK_INT(lt_imap_parse_internaldate(ok[i].s, strlen(ok[i].s), &ms), LT_OK);
        CHECK_INT(ms, ok[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms;
        CHECK_MSG(lt_imap_parse_internaldate(bad[i], strlen(bad[i]), &ms) == LT_ERR_INVALID,
                  "accepted \"%s\"", bad[i]);
    }
}

/* Found by the fuzzer: errors are reported in stream order whatever the
 * chunking -- here the cap is crossed before the NUL byte. */
/* lt_imap_parse_seqset(): ranges, "*", and hostile sets. */
static void check_seqset(void)
{
    lt_imap_range_t r[4];
    size_t n;
    const char *s = "1:5,7,9:*,12:10";
    CHECK_INT(lt_imap_parse_seqset(s, strlen(s), 100, r, 4, &n), LT_OK);
    CHECK_INT(n, 4);
    CHECK(r[0].lo == 1 && r[0].hi == 5 && r[1].lo == 7 && r[1].hi == 7);
    CHECK(r[2].lo == 9 && r[2].hi == 100 && r[3].lo == 10 && r[3].hi == 12);
    CHECK(lt_imap_ranges_count(r, n) == 5 + 1 + 92 + 3);
    CHECK_INT(lt_imap_parse_seqset("*:1", 3, LT_IMAP_STAR, r, 4, &n), LT_OK);
    CHECK(n == 1 && r[0].lo == 1 && r[0].hi == UINT32_MAX);
    CHECK(lt_imap_ranges_count(r, n) == UINT32_MAX);
    static const char *bad[] = {"",   "0",  "1:0", ",1",  "1,",      "1::2", "a",
                                "1 2", "*5", "1:2:3", "4294967296", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_MSG(lt_imap_parse_seqset(bad[i], strlen(bad[i]), 9, r, 4, &n) == LT_ERR_INVALID,
                  "seqset \"%s\" accepted", bad[i]);
    CHECK_INT(lt_imap_parse_seqset("1,2,3,4,5", 9, 9, r, 4, &n), LT_ERR_TOO_BIG);
    CHECK_INT(n, 4);
    /* A huge set in a huge line: 1 MiB of "n," under a 2 MiB cap, all ranges kept. */
    lt_buf_t *in = lt_buf_new(4u << 20);
    lt_buf_appendf(in, "* VANISHED (EARLIER) ");
    for (uint32_t i = 0; i < 100000; i++)
        lt_buf_appendf(in, "%s%u", i ? "," : "", 4294967295u - 2 * i);
    lt_buf_appendf(in, "\r\n");
    lt_imap_parser_opts_t o = {.max_line = 2u << 20};
    size_t chunks[] = {4093, 1, 65536};
    char *got = run(lt_buf_str(in), lt_buf_len(in), chunks, 3, &o, NULL);
    CHECK(strncmp(got, "VANISHED EARLIER 4294967295-4294967295,4294967293-", 50) == 0);
    CHECK(strstr(got, ",4294767297-4294767297\n") != NULL);
    free(got);
    lt_buf_destroy(in);
}

static void check_error_order(void)
{
    static const char in[] = "* OK 0123456789012345678901234567890123456789\0x\r\n";
    lt_imap_parser_opts_t o = {.max_line = 32};
    size_t whole = sizeof(in) - 1;
    for (size_t chunk = 1; chunk <= whole; chunk++) {
        char *got = run(in, sizeof(in) - 1, &chunk, 1, &o, NULL);
        CHECK_MSG(starts_with(got, "ERROR too_big"), "chunks of %zu: %s", chunk, got);
        free(got);
    }
}

/* After an error the parser stays failed. */
static void check_sticky_error(void)
{
    rec_t r = {.out = lt_buf_new(4096)};
    lt_imap_parser_t *p = lt_imap_parser_new(NULL, record, &r);
    char err[256];
    CHECK_INT(lt_imap_parser_feed(p, (const uint8_t *)"*x\r\n", 4, err, sizeof(err)),
              LT_ERR_INVALID);
    CHECK_MSG(strstr(err, "expected SP after '*'") != NULL, "%s", err);
    CHECK_INT(lt_imap_parser_feed(p, (const uint8_t *)"* 1 EXISTS\r\n", 12, err, sizeof(err)),
              LT_ERR_INVALID);
    CHECK_INT(lt_buf_len(r.out), 0);
    lt_imap_parser_destroy(p);
    lt_buf_destroy(r.out);
}

int main(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i]);
    check_long_search();
    check_big_body();
    check_dates();
    check_sticky_error();
    check_error_order();
    check_seqset();
    return lt_test_done("test_imap_parser");
}
