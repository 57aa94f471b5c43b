#include "lt_imap_parser.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"

#define DEFAULT_MAX_LINE (64 * 1024)
#define DEFAULT_MAX_MESSAGE (64ull * 1024 * 1024)
#define SEARCH_FLUSH 4096 /* a "* SEARCH" line is flushed beyond this many bytes */
#define LINE_STEP 4096    /* bytes appended to the line buffer per step */
#define MAX_DEPTH 32      /* nesting of parenthesized lists */

enum { ST_LINE, ST_LIT_INLINE, ST_LIT_STREAM, ST_LIT_SKIP, ST_FAILED };

struct lt_imap_parser_s {
    lt_imap_event_fn fn;
    void *opaque;
    size_t max_line;
    uint64_t max_message;

    int state;
    lt_buf_t *line;    /* the current response (body literals replaced by a NUL byte) */
    size_t frag_start; /* start of the current line fragment in line */
    uint64_t lit_rem;  /* bytes left of the current literal */
    uint64_t offset;   /* stream bytes consumed before the current chunk */
    uint64_t resp_off; /* stream offset of the current response */
    lt_err_t failed;
    char failmsg[320];

    /* The body literal being streamed or skipped. */
    uint32_t body_seq;
    char *body_section;
    lt_imap_fetch_t body_pre;
    int resp_body_skipped; /* the current response had a body over max_message */

    /* Scratch of one parse: strings, string lists, numbers. */
    char *arena;
    size_t arena_len, arena_cap;
    const char **strs;
    size_t nstrs, strs_cap;
    uint32_t *nums;
    size_t nnums, nums_cap;
    lt_imap_range_t *ranges; /* at most one set per response: < line length / 2 ranges */
    size_t nranges, ranges_cap;
};

typedef struct {
    lt_imap_parser_t *p;
    const uint8_t *b;
    size_t len, pos;
    int prefix; /* prefix scan: b ends right after a literal header whose data is pending */
    const char *err;
    size_t errpos;
    lt_err_t cb_err;
    /* prefix scan result */
    const char *pending_item;
} cur_t;

/* Parse results beyond 0 (done) and -1 (error). */
#define PENDING 2      /* prefix scan reached the pending literal, not as a body value */
#define PENDING_BODY 3 /* prefix scan reached the pending literal as a body value */

/* ---- small helpers ---- */

static int upc(int c)
{
    return (c >= 'a' && c <= 'z') ? c - 32 : c;
}

static int ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (upc((unsigned char)*a) != upc((unsigned char)*b))
            return 0;
    return *a == *b;
}

static int istarts(const uint8_t *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    if (len < n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (upc(s[i]) != upc((unsigned char)prefix[i]))
            return 0;
    return 1;
}

static int is_atom_char(int c)
{
    if (c <= 0x20 || c >= 0x7f)
        return 0;
    return !strchr("(){%*\"\\]", c);
}

static void excerpt(char *out, size_t outsz, const uint8_t *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < 32 && o + 5 < outsz; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
            out[o++] = (char)s[i];
        else
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", s[i]);
    }
    out[o < outsz ? o : outsz - 1] = 0;
}

static lt_err_t fail_parser(lt_imap_parser_t *p, lt_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static lt_err_t fail_parser(lt_imap_parser_t *p, lt_err_t err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->failmsg, sizeof(p->failmsg), fmt, ap);
    va_end(ap);
    p->state = ST_FAILED;
    p->failed = err;
    return err;
}

static char *arena_put(lt_imap_parser_t *p, const void *s, size_t n)
{
    /* The arena is sized before a parse so that it never moves (see prepare()). */
    if (p->arena_len + n + 1 > p->arena_cap)
        abort(); /* cannot happen: a bug in the size estimate */
    char *d = p->arena + p->arena_len;
    if (n)
        memcpy(d, s, n);
    d[n] = 0;
    p->arena_len += n + 1;
    return d;
}

static void push_str(lt_imap_parser_t *p, const char *s)
{
    if (p->nstrs + 1 >= p->strs_cap) {
        p->strs_cap = p->strs_cap ? p->strs_cap * 2 : 32;
        p->strs = lt_xrealloc(p->strs, p->strs_cap * sizeof(*p->strs));
    }
    p->strs[p->nstrs++] = s;
    p->strs[p->nstrs] = NULL;
}

static void push_num(lt_imap_parser_t *p, uint32_t n)
{
    if (p->nnums == p->nums_cap) {
        p->nums_cap = p->nums_cap ? p->nums_cap * 2 : 64;
        p->nums = lt_xrealloc(p->nums, p->nums_cap * sizeof(*p->nums));
    }
    p->nums[p->nnums++] = n;
}

static void push_range(lt_imap_parser_t *p, uint32_t a, uint32_t b)
{
    if (p->nranges == p->ranges_cap) {
        p->ranges_cap = p->ranges_cap ? p->ranges_cap * 2 : 64;
        p->ranges = lt_xrealloc(p->ranges, p->ranges_cap * sizeof(*p->ranges));
    }
    p->ranges[p->nranges].lo = a < b ? a : b;
    p->ranges[p->nranges].hi = a < b ? b : a;
    p->nranges++;
}

static void prepare(lt_imap_parser_t *p, size_t len)
{
    size_t need = 3 * len + 64; /* strings are disjoint slices of the input, +1 NUL each;
                                     [CAPABILITY] codes are copied twice */
    if (need > p->arena_cap) {
        free(p->arena);
        p->arena = lt_xmalloc(need);
        p->arena_cap = need;
    }
    p->arena_len = 0;
    p->nstrs = 0;
    p->nnums = 0;
    p->nranges = 0;
}

static lt_err_t emit(lt_imap_parser_t *p, lt_imap_event_t *ev)
{
    if (!ev->text)
        ev->text = "";
    return p->fn(p->opaque, ev);
}

/* ---- tokens over a complete (or prefix) response ---- */

static int fail(cur_t *c, const char *what)
{
    if (!c->err) {
        c->err = what;
        c->errpos = c->pos;
    }
    return -1;
}

static int peek(const cur_t *c)
{
    return c->pos < c->len ? c->b[c->pos] : -1;
}

static int at_end(const cur_t *c)
{
    return c->pos >= c->len;
}

static int expect(cur_t *c, int ch, const char *what)
{
    if (peek(c) != ch)
        return fail(c, what);
    c->pos++;
    return 0;
}

static int read_number(cur_t *c, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t start = c->pos;
    while (c->pos < c->len && c->b[c->pos] >= '0' && c->b[c->pos] <= '9') {
        unsigned d = (unsigned)(c->b[c->pos] - '0');
        if (v > (max - d) / 10)
            return fail(c, "number out of range");
        v = v * 10 + d;
        c->pos++;
    }
    if (c->pos == start)
        return fail(c, "expected a number");
    *out = v;
    return 0;
}

static int read_nz32(cur_t *c, uint32_t *out)
{
    uint64_t v;
    if (read_number(c, UINT32_MAX, &v))
        return -1;
    if (v == 0)
        return fail(c, "expected a non-zero number");
    *out = (uint32_t)v;
    return 0;
}

/* seq-number: nz-number or "*" (= star). */
static int read_seqnum(cur_t *c, uint32_t star, uint32_t *out)
{
    if (peek(c) == '*') {
        c->pos++;
        *out = star;
        return 0;
    }
    return read_nz32(c, out);
}

/* sequence-set into the parser's ranges (at most max of them; every range
 * takes two bytes or more, so the line cap bounds them anyway). */
static int read_seqset(cur_t *c, uint32_t star, size_t max)
{
    lt_imap_parser_t *p = c->p;
    p->nranges = 0;
    for (;;) {
        uint32_t a, b;
        if (read_seqnum(c, star, &a))
            return -1;
        b = a;
        if (peek(c) == ':') {
            c->pos++;
            if (read_seqnum(c, star, &b))
                return -1;
        }
        if (p->nranges >= max)
            return fail(c, "too many ranges in a sequence set");
        push_range(p, a, b);
        if (peek(c) != ',')
            return 0;
        c->pos++;
    }
}

/* "(" mod-sequence-value ")" of a FETCH MODSEQ item; 1..2^63-1 (0 is
 * allowed only in a STORE's UNCHANGEDSINCE, never sent by servers). */
static int read_modseq(cur_t *c, uint64_t *out)
{
    if (read_number(c, LT_IMAP_MODSEQ_MAX, out))
        return -1;
    if (*out == 0)
        return fail(c, "mod-sequence 0");
    return 0;
}

/* An atom; with astring set, ']' is allowed too (ASTRING-CHAR). */
static int read_atom(cur_t *c, int astring, const char **out)
{
    size_t start = c->pos;
    while (c->pos < c->len && (is_atom_char(c->b[c->pos]) || (astring && c->b[c->pos] == ']')))
        c->pos++;
    if (c->pos == start)
        return fail(c, "expected an atom");
    *out = arena_put(c->p, c->b + start, c->pos - start);
    return 0;
}

static int is_nil(const cur_t *c)
{
    return c->pos + 3 <= c->len && istarts(c->b + c->pos, 3, "NIL") &&
           (c->pos + 3 == c->len || !is_atom_char(c->b[c->pos + 3]));
}

/* A quoted string or a literal. Literal data stays in the buffer (*out points
 * into it, not NUL-terminated); quoted strings are unescaped into the arena. */
static int read_string(cur_t *c, const char **out, size_t *outlen)
{
    int ch = peek(c);
    if (ch == '"') {
        size_t start = ++c->pos;
        char *d = c->p->arena + c->p->arena_len, *o = d;
        (void)start;
        for (;;) {
            if (at_end(c))
                return fail(c, "unterminated quoted string");
            uint8_t b = c->b[c->pos++];
            if (b == '"')
                break;
            if (b == '\\') {
                if (at_end(c) || (c->b[c->pos] != '"' && c->b[c->pos] != '\\')) {
                    c->pos -= 1;
                    return fail(c, "bad escape in quoted string");
                }
                b = c->b[c->pos++];
            } else if (b == 0) {
                c->pos--;
                return fail(c, "NUL in quoted string");
            }
            *o++ = (char)b;
        }
        *o = 0;
        c->p->arena_len += (size_t)(o - d) + 1;
        *out = d;
        *outlen = (size_t)(o - d);
        return 0;
    }
    if (ch == '~' || ch == '{') {
        if (ch == '~')
            c->pos++;
        if (expect(c, '{', "expected '{' of a literal"))
            return -1;
        uint64_t n;
        if (read_number(c, UINT64_MAX / 2, &n) || expect(c, '}', "expected '}' of a literal"))
            return -1;
        if (c->prefix && c->pos == c->len)
            return PENDING;
        if (expect(c, '\r', "expected CRLF after a literal header") ||
            expect(c, '\n', "expected CRLF after a literal header"))
            return -1;
        if (n > c->len - c->pos)
            return fail(c, "literal longer than the response"); /* cannot happen */
        *out = (const char *)c->b + c->pos;
        *outlen = (size_t)n;
        c->pos += (size_t)n;
        return 0;
    }
    return fail(c, "expected a string");
}

static int read_astring(cur_t *c, const char **out, size_t *outlen)
{
    int ch = peek(c);
    if (ch == '"' || ch == '{' || ch == '~')
        return read_string(c, out, outlen);
    size_t start = c->pos;
    if (read_atom(c, 1, out))
        return -1;
    *outlen = c->pos - start;
    return 0;
}

/* flag-list or mbx-list-flags: "(" [flag *(SP flag)] ")" into strs. */
static int read_flag_list(cur_t *c)
{
    if (expect(c, '(', "expected '(' of a flag list"))
        return -1;
    if (peek(c) == ')') {
        c->pos++;
        return 0;
    }
    for (;;) {
        size_t start = c->pos;
        if (peek(c) == '\\') {
            c->pos++;
            if (peek(c) == '*')
                c->pos++;
            else
                while (c->pos < c->len && is_atom_char(c->b[c->pos]))
                    c->pos++;
        } else {
            while (c->pos < c->len && is_atom_char(c->b[c->pos]))
                c->pos++;
        }
        if (c->pos == start || (c->pos == start + 1 && c->b[start] == '\\'))
            return fail(c, "expected a flag");
        push_str(c->p, arena_put(c->p, c->b + start, c->pos - start));
        if (peek(c) == ')') {
            c->pos++;
            return 0;
        }
        if (expect(c, ' ', "expected SP or ')' in a flag list"))
            return -1;
    }
}

/* Skip any value: atom/number/NIL, string, list (nested), body placeholder. */
static int skip_value(cur_t *c, int depth)
{
    int ch = peek(c);
    if (ch == '(') {
        if (depth >= MAX_DEPTH)
            return fail(c, "lists nested too deeply");
        c->pos++;
        if (peek(c) == ')') {
            c->pos++;
            return 0;
        }
        for (;;) {
            int r = skip_value(c, depth + 1);
            if (r)
                return r;
            if (peek(c) == ')') {
                c->pos++;
                return 0;
            }
            if (expect(c, ' ', "expected SP or ')' in a list"))
                return -1;
        }
    }
    if (ch == '"' || ch == '{' || ch == '~') {
        const char *s;
        size_t n;
        return read_string(c, &s, &n);
    }
    size_t start = c->pos;
    while (c->pos < c->len && (is_atom_char(c->b[c->pos]) || c->b[c->pos] == ']' ||
                               c->b[c->pos] == '\\' || c->b[c->pos] == '*'))
        c->pos++;
    if (c->pos == start)
        return fail(c, "expected a value");
    return 0;
}

/* resp-text: ["[" code [SP args] "]" SP] text, after the status word. */
static int read_resp_text(cur_t *c, lt_imap_event_t *ev)
{
    ev->text = "";
    if (at_end(c))
        return 0;
    if (expect(c, ' ', "expected SP after the status"))
        return -1;
    if (peek(c) == '[') {
        c->pos++;
        size_t start = c->pos;
        while (c->pos < c->len && c->b[c->pos] != ' ' && c->b[c->pos] != ']')
            c->pos++;
        if (c->pos == start || at_end(c))
            return fail(c, "bad response code");
        char *code = arena_put(c->p, c->b + start, c->pos - start);
        for (char *q = code; *q; q++)
            *q = (char)upc((unsigned char)*q);
        ev->code = code;
        size_t arg_start = c->pos, arg_end = c->pos;
        if (c->b[c->pos] == ' ') {
            arg_start = start = ++c->pos;
            while (c->pos < c->len && c->b[c->pos] != ']')
                c->pos++;
            if (at_end(c))
                return fail(c, "unterminated response code");
            ev->code_arg = arena_put(c->p, c->b + start, c->pos - start);
            arg_end = c->pos;
        }
        c->pos++; /* ']' */
        if (peek(c) == ' ')
            c->pos++;
        if (!strcmp(code, "HIGHESTMODSEQ") || !strcmp(code, "MODIFIED")) {
            /* The argument is checked where it stands in the line. */
            cur_t a = {.p = c->p, .b = c->b, .len = arg_end, .pos = arg_start};
            int r = !ev->code_arg ? fail(&a, "response code without its argument")
                    : code[0] == 'H' ? read_modseq(&a, &ev->modseq)
                                     : read_seqset(&a, LT_IMAP_STAR, SIZE_MAX);
            if (!r && !at_end(&a))
                r = fail(&a, "garbage in a response code");
            if (r) {
                c->err = a.err;
                c->errpos = a.errpos;
                return -1;
            }
            if (code[0] == 'M') {
                ev->ranges = c->p->ranges;
                ev->nranges = c->p->nranges;
            }
        }
        if (ev->code_arg && !strcmp(code, "CAPABILITY")) {
            const char *a = ev->code_arg;
            while (*a) {
                const char *e = strchr(a, ' ');
                size_t n = e ? (size_t)(e - a) : strlen(a);
                if (n)
                    push_str(c->p, arena_put(c->p, a, n));
                a += n + (e ? 1 : 0);
            }
            ev->strs = c->p->strs;
            ev->nstrs = c->p->nstrs;
        }
    }
    for (size_t i = c->pos; i < c->len; i++)
        if (c->b[i] == 0) {
            c->pos = i;
            return fail(c, "NUL in text");
        }
    ev->text = arena_put(c->p, c->b + c->pos, c->len - c->pos);
    c->pos = c->len;
    return 0;
}

static int status_word(const char *w, lt_imap_status_t *st)
{
    static const struct {
        const char *w;
        lt_imap_status_t s;
    } t[] = {{"OK", LT_IMAP_OK},
             {"NO", LT_IMAP_NO},
             {"BAD", LT_IMAP_BAD},
             {"BYE", LT_IMAP_BYE},
             {"PREAUTH", LT_IMAP_PREAUTH}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (ieq(w, t[i].w)) {
            *st = t[i].s;
            return 1;
        }
    return 0;
}

/* ---- INTERNALDATE ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

lt_err_t lt_imap_parse_internaldate(const char *s, size_t len, int64_t *ms)
{
    static const char *mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    char b[27];
    if (len == 25) { /* lenient: "d-Mon-..." without the padding space */
        b[0] = ' ';
        memcpy(b + 1, s, 25);
    } else if (len == 26) {
        memcpy(b, s, 26);
    } else {
        return LT_ERR_INVALID;
    }
    b[26] = 0;
    int day, year, hh, mm, ss, zh, zm, m = -1;
    if (b[0] == ' ')
        b[0] = '0';
    if (digits(b, 2, &day) || b[2] != '-' || b[6] != '-' || digits(b + 7, 4, &year) ||
        b[11] != ' ' || digits(b + 12, 2, &hh) || b[14] != ':' || digits(b + 15, 2, &mm) ||
        b[17] != ':' || digits(b + 18, 2, &ss) || b[20] != ' ' || (b[21] != '+' && b[21] != '-') ||
        digits(b + 22, 2, &zh) || digits(b + 24, 2, &zm))
        return LT_ERR_INVALID;
    for (int i = 0; i < 12; i++)
        if (upc(b[3]) == upc(mon[i][0]) && upc(b[4]) == upc(mon[i][1]) &&
            upc(b[5]) == upc(mon[i][2]))
            m = i;
    if (m < 0 || day < 1 || day > mdays[m] || hh > 23 || mm > 59 || ss > 60 || zm > 59 || zh > 23)
        return LT_ERR_INVALID;
    if (m == 1 && day == 29 && !((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
        return LT_ERR_INVALID;
    int64_t secs =
        days_from_civil(year, (unsigned)m + 1, (unsigned)day) * 86400 + hh * 3600 + mm * 60 + ss;
    int64_t zone = zh * 3600 + zm * 60;
    secs -= b[21] == '+' ? zone : -zone;
    *ms = secs * 1000;
    return LT_OK;
}

/* ---- FETCH ---- */

static int body_item(const char *name)
{
    if (istarts((const uint8_t *)name, strlen(name), "BODY[") ||
        istarts((const uint8_t *)name, strlen(name), "BINARY["))
        return 1;
    return ieq(name, "RFC822") || ieq(name, "RFC822.HEADER") || ieq(name, "RFC822.TEXT");
}

/* A msg-att name: atom chars, an optional [section] (with nested parens and
 * quoted strings) and an optional <origin>. */
static int read_item_name(cur_t *c, const char **out)
{
    size_t start = c->pos;
    while (c->pos < c->len && is_atom_char(c->b[c->pos]) && c->b[c->pos] != '[')
        c->pos++;
    if (c->pos == start)
        return fail(c, "expected a FETCH item name");
    if (peek(c) == '[') {
        int inq = 0;
        for (;;) {
            if (at_end(c))
                return fail(c, "unterminated section");
            uint8_t b = c->b[c->pos++];
            if (inq && b == '\\' && !at_end(c))
                c->pos++;
            else if (b == '"')
                inq = !inq;
            else if (!inq && b == ']')
                break;
            else if (b == 0 || b == '{')
                return fail(c, "bad character in section");
        }
        if (peek(c) == '<') {
            uint64_t v;
            c->pos++;
            if (read_number(c, UINT32_MAX, &v) || expect(c, '>', "expected '>'"))
                return -1;
        }
    }
    *out = arena_put(c->p, c->b + start, c->pos - start);
    return 0;
}

static int body_value(cur_t *c, uint32_t seq, const char *name, lt_imap_fetch_t *f)
{
    lt_imap_parser_t *p = c->p;
    f->has |= LT_IMAP_HAS_BODY;
    if (peek(c) == 0) { /* streamed or skipped earlier */
        c->pos++;
        return 0;
    }
    if (c->prefix) { /* in a prefix scan only the pending literal matters */
        if (peek(c) == '{' || peek(c) == '~') {
            const char *s;
            size_t n;
            int r = read_string(c, &s, &n);
            if (r == PENDING) {
                c->pending_item = name;
                return PENDING_BODY;
            }
            return r;
        }
        return skip_value(c, 0);
    }
    lt_imap_event_t ev = {.type = LT_IMAP_EV_BODY_BEGIN, .num = seq, .section = name, .fetch = *f};
    const char *s = NULL;
    size_t n = 0;
    if (is_nil(c)) {
        c->pos += 3;
        ev.nil = 1;
    } else if (read_string(c, &s, &n)) {
        return -1;
    }
    ev.literal_len = n;
    if (n > p->max_message) {
        ev.type = LT_IMAP_EV_BODY_SKIPPED;
        f->body_skipped = 1;
        if ((c->cb_err = emit(p, &ev)))
            return fail(c, "callback");
        return 0;
    }
    if ((c->cb_err = emit(p, &ev)))
        return fail(c, "callback");
    if (n) {
        lt_imap_event_t d = {.type = LT_IMAP_EV_BODY_DATA,
                             .num = seq,
                             .section = name,
                             .data = (const uint8_t *)s,
                             .len = n};
        if ((c->cb_err = emit(p, &d)))
            return fail(c, "callback");
    }
    lt_imap_event_t e = {.type = LT_IMAP_EV_BODY_END, .num = seq, .section = name};
    if ((c->cb_err = emit(p, &e)))
        return fail(c, "callback");
    return 0;
}

/* msg-att after "* n FETCH ": "(" item SP value *(SP item SP value) ")". */
static int parse_fetch(cur_t *c, uint32_t seq, lt_imap_fetch_t *f)
{
    if (expect(c, '(', "expected '(' after FETCH"))
        return -1;
    if (peek(c) == ')') {
        c->pos++;
        return 0;
    }
    for (;;) {
        const char *name;
        int r;
        if (read_item_name(c, &name) || expect(c, ' ', "expected SP after a FETCH item name"))
            return -1;
        if (ieq(name, "UID")) {
            if (read_nz32(c, &f->uid))
                return -1;
            f->has |= LT_IMAP_HAS_UID;
        } else if (ieq(name, "RFC822.SIZE")) {
            if (read_number(c, UINT64_MAX / 2, &f->size))
                return -1;
            f->has |= LT_IMAP_HAS_SIZE;
        } else if (ieq(name, "INTERNALDATE")) {
            const char *s;
            size_t n;
            if (peek(c) != '"')
                return fail(c, "expected a quoted INTERNALDATE");
            if (read_string(c, &s, &n))
                return -1;
            if (lt_imap_parse_internaldate(s, n, &f->internaldate_ms)) {
                c->pos -= n + 2;
                return fail(c, "malformed INTERNALDATE");
            }
            f->has |= LT_IMAP_HAS_DATE;
        } else if (ieq(name, "MODSEQ")) {
            if (expect(c, '(', "expected '(' of MODSEQ") || read_modseq(c, &f->modseq) ||
                expect(c, ')', "expected ')' of MODSEQ"))
                return -1;
            f->has |= LT_IMAP_HAS_MODSEQ;
        } else if (ieq(name, "FLAGS")) {
            c->p->nstrs = 0;
            if (read_flag_list(c))
                return -1;
            f->has |= LT_IMAP_HAS_FLAGS;
        } else if (body_item(name)) {
            if ((r = body_value(c, seq, name, f)))
                return r;
        } else if ((r = skip_value(c, 0))) {
            return r;
        }
        if (peek(c) == ')') {
            c->pos++;
            break;
        }
        if (expect(c, ' ', "expected SP or ')' between FETCH items"))
            return -1;
    }
    if (!at_end(c))
        return fail(c, "garbage after FETCH data");
    return 0;
}

/* ---- whole responses ---- */

static int parse_untagged(cur_t *c)
{
    lt_imap_parser_t *p = c->p;
    lt_imap_event_t ev = {0};
    if (peek(c) >= '0' && peek(c) <= '9') {
        uint64_t n;
        const char *w;
        if (read_number(c, UINT32_MAX, &n) || expect(c, ' ', "expected SP after a number") ||
            read_atom(c, 0, &w))
            return -1;
        ev.num = n;
        if (ieq(w, "EXISTS"))
            ev.type = LT_IMAP_EV_EXISTS;
        else if (ieq(w, "RECENT"))
            ev.type = LT_IMAP_EV_RECENT;
        else if (ieq(w, "EXPUNGE"))
            ev.type = LT_IMAP_EV_EXPUNGE;
        if (ev.type) {
            if (!at_end(c))
                return fail(c, "garbage after a message count");
        } else if (ieq(w, "FETCH")) {
            if (n == 0)
                return fail(c, "FETCH of message 0");
            if (expect(c, ' ', "expected SP after FETCH"))
                return -1;
            ev.type = LT_IMAP_EV_FETCH;
            if (parse_fetch(c, (uint32_t)n, &ev.fetch))
                return -1;
            ev.fetch.body_skipped |= p->resp_body_skipped;
            if (ev.fetch.has & LT_IMAP_HAS_FLAGS) {
                ev.strs = p->strs;
                ev.nstrs = p->nstrs;
            }
        } else {
            ev.type = LT_IMAP_EV_OTHER;
            ev.name = w;
            if (peek(c) == ' ')
                c->pos++;
            ev.text = arena_put(p, c->b + c->pos, c->len - c->pos);
            c->pos = c->len;
        }
        if ((c->cb_err = emit(p, &ev)))
            return fail(c, "callback");
        return 0;
    }
    const char *w;
    if (read_atom(c, 0, &w))
        return -1;
    for (char *q = (char *)w; *q; q++)
        *q = (char)upc((unsigned char)*q);
    if (status_word(w, &ev.status)) {
        ev.type = LT_IMAP_EV_STATUS;
        if (read_resp_text(c, &ev))
            return -1;
    } else if (!strcmp(w, "CAPABILITY")) {
        ev.type = LT_IMAP_EV_CAPABILITY;
        while (!at_end(c)) {
            const char *a;
            if (expect(c, ' ', "expected SP between capabilities") || read_atom(c, 0, &a))
                return -1;
            push_str(p, a);
        }
        ev.strs = p->strs;
        ev.nstrs = p->nstrs;
    } else if (!strcmp(w, "FLAGS")) {
        ev.type = LT_IMAP_EV_FLAGS;
        if (expect(c, ' ', "expected SP after FLAGS") || read_flag_list(c))
            return -1;
        if (!at_end(c))
            return fail(c, "garbage after FLAGS");
        ev.strs = p->strs;
        ev.nstrs = p->nstrs;
    } else if (!strcmp(w, "LIST") || !strcmp(w, "LSUB")) {
        ev.type = LT_IMAP_EV_LIST;
        ev.name = w;
        if (expect(c, ' ', "expected SP after LIST") || read_flag_list(c) ||
            expect(c, ' ', "expected SP after the LIST attributes"))
            return -1;
        ev.strs = p->strs;
        ev.nstrs = p->nstrs;
        if (is_nil(c)) {
            c->pos += 3;
        } else {
            const char *d;
            size_t n;
            if (peek(c) != '"' || read_string(c, &d, &n))
                return fail(c, "expected a quoted delimiter or NIL");
            if (n != 1 || (unsigned char)d[0] >= 0x80 || d[0] == 0)
                return fail(c, "the delimiter must be one 7-bit character");
            ev.delimiter = d[0];
        }
        if (expect(c, ' ', "expected SP before the mailbox name") ||
            read_astring(c, &ev.mailbox, &ev.mailbox_len))
            return -1;
        /* LIST-EXTENDED data after the name is ignored. */
        if (!at_end(c) && peek(c) != ' ')
            return fail(c, "garbage after the mailbox name");
        c->pos = c->len;
    } else if (!strcmp(w, "ENABLED")) {
        ev.type = LT_IMAP_EV_ENABLED;
        while (!at_end(c)) {
            const char *a;
            if (expect(c, ' ', "expected SP between extensions"))
                return -1;
            if (at_end(c))
                break; /* a trailing SP */
            if (read_atom(c, 0, &a))
                return -1;
            push_str(p, a);
        }
        ev.strs = p->strs;
        ev.nstrs = p->nstrs;
    } else if (!strcmp(w, "VANISHED")) {
        ev.type = LT_IMAP_EV_VANISHED;
        if (expect(c, ' ', "expected SP after VANISHED"))
            return -1;
        if (peek(c) == '(') {
            const char *tag;
            c->pos++;
            if (read_atom(c, 0, &tag))
                return -1;
            if (!ieq(tag, "EARLIER")) {
                c->pos -= strlen(tag);
                return fail(c, "expected EARLIER");
            }
            if (expect(c, ')', "expected ')' after EARLIER") ||
                expect(c, ' ', "expected SP after (EARLIER)"))
                return -1;
            ev.earlier = 1;
        }
        if (read_seqset(c, LT_IMAP_STAR, SIZE_MAX))
            return -1;
        if (!at_end(c))
            return fail(c, "garbage after the VANISHED set");
        ev.ranges = p->ranges;
        ev.nranges = p->nranges;
    } else if (!strcmp(w, "SEARCH")) {
        ev.type = LT_IMAP_EV_SEARCH;
        while (!at_end(c)) {
            uint32_t n;
            if (expect(c, ' ', "expected SP in SEARCH"))
                return -1;
            if (at_end(c))
                break; /* a trailing SP, as some servers send */
            if (read_nz32(c, &n))
                return -1;
            push_num(p, n);
        }
        ev.nums = p->nums;
        ev.nnums = p->nnums;
    } else {
        ev.type = LT_IMAP_EV_OTHER;
        ev.name = w;
        if (peek(c) == ' ')
            c->pos++;
        for (size_t i = c->pos; i < c->len; i++)
            if (c->b[i] == 0) {
                c->pos = i;
                return fail(c, "unexpected NUL");
            }
        ev.text = arena_put(p, c->b + c->pos, c->len - c->pos);
        c->pos = c->len;
    }
    if ((c->cb_err = emit(p, &ev)))
        return fail(c, "callback");
    return 0;
}

static int parse_response(cur_t *c)
{
    lt_imap_parser_t *p = c->p;
    lt_imap_event_t ev = {0};
    int ch = peek(c);
    if (ch == '+') {
        c->pos++;
        ev.type = LT_IMAP_EV_CONTINUE;
        if (peek(c) == ' ')
            c->pos++;
        for (size_t i = c->pos; i < c->len; i++)
            if (c->b[i] == 0) {
                c->pos = i;
                return fail(c, "unexpected NUL");
            }
        ev.text = arena_put(p, c->b + c->pos, c->len - c->pos);
        if ((c->cb_err = emit(p, &ev)))
            return fail(c, "callback");
        return 0;
    }
    if (ch == '*') {
        c->pos++;
        if (expect(c, ' ', "expected SP after '*'"))
            return -1;
        return parse_untagged(c);
    }
    size_t start = c->pos;
    while (c->pos < c->len && is_atom_char(c->b[c->pos]) && c->b[c->pos] != '+')
        c->pos++;
    if (c->pos == start)
        return fail(c, "expected a tag, '*' or '+'");
    ev.tag = arena_put(p, c->b + start, c->pos - start);
    const char *w;
    if (expect(c, ' ', "expected SP after the tag") || read_atom(c, 0, &w))
        return -1;
    if (!status_word(w, &ev.status) || ev.status > LT_IMAP_BAD) {
        c->pos -= strlen(w);
        return fail(c, "expected OK, NO or BAD after the tag");
    }
    ev.type = LT_IMAP_EV_TAGGED;
    if (read_resp_text(c, &ev))
        return -1;
    if ((c->cb_err = emit(p, &ev)))
        return fail(c, "callback");
    return 0;
}

static lt_err_t cur_error(lt_imap_parser_t *p, cur_t *c)
{
    if (c->cb_err)
        return fail_parser(p, c->cb_err, "stopped by the event callback");
    char ex[160];
    excerpt(ex, sizeof(ex), c->b + c->errpos, c->len - c->errpos);
    return fail_parser(p, LT_ERR_INVALID,
                       "IMAP protocol error: %s at offset %zu of the response starting at stream "
                       "byte %llu, near \"%s\"",
                       c->err ? c->err : "unknown", c->errpos, (unsigned long long)p->resp_off, ex);
}

/* ---- the byte-level state machine ---- */

static void reset_response(lt_imap_parser_t *p)
{
    lt_buf_reset(p->line);
    p->frag_start = 0;
    p->resp_body_skipped = 0;
}

/* Emit the numbers of a long "* SEARCH" line received so far. */
static lt_err_t flush_search(lt_imap_parser_t *p)
{
    const uint8_t *b = lt_buf_data(p->line);
    size_t len = lt_buf_len(p->line);
    size_t last = len;
    while (last > 9 && b[last - 1] != ' ')
        last--;
    if (last <= 9)
        return LT_OK; /* one number longer than SEARCH_FLUSH: the line cap decides */
    prepare(p, last);
    cur_t c = {.p = p, .b = b, .len = last - 1, .pos = 8};
    while (!at_end(&c)) {
        uint32_t n;
        if (expect(&c, ' ', "expected SP in SEARCH") || read_nz32(&c, &n))
            return cur_error(p, &c);
        push_num(p, n);
    }
    lt_imap_event_t ev = {
        .type = LT_IMAP_EV_SEARCH, .nums = p->nums, .nnums = p->nnums, .partial = 1};
    lt_err_t err = emit(p, &ev);
    if (err)
        return fail_parser(p, err, "stopped by the event callback");
    lt_buf_consume(p->line, last - 1);
    /* Keep "* SEARCH" + " rest": rebuild the prefix in front of the remainder. */
    lt_buf_t *nb = lt_buf_new(p->max_line);
    lt_buf_append(nb, "* SEARCH", 8);
    lt_buf_append(nb, lt_buf_data(p->line), lt_buf_len(p->line));
    lt_buf_destroy(p->line);
    p->line = nb;
    return LT_OK;
}

/* A line fragment ended with CRLF; the CR is the last byte of the buffer. */
static lt_err_t fragment_end(lt_imap_parser_t *p)
{
    const uint8_t *b = lt_buf_data(p->line);
    size_t len = lt_buf_len(p->line) - 1; /* without the CR */
    for (size_t i = p->frag_start; i < len; i++)
        if (b[i] == '\r')
            return fail_parser(p, LT_ERR_INVALID,
                               "IMAP protocol error: bare CR in a line at stream byte %llu",
                               (unsigned long long)p->resp_off);
    /* A literal header "{N}" or "~{N}" at the end of the fragment? */
    size_t e = len ? len - 1 : 0, i;
    int plus = 0;
    if (len > p->frag_start && b[e] == '}') {
        if (e > p->frag_start && b[e - 1] == '+') {
            plus = 1;
            e--;
        }
        for (i = e; i > p->frag_start && b[i - 1] >= '0' && b[i - 1] <= '9';)
            i--;
        if (i < e && i > p->frag_start && b[i - 1] == '{') {
            if (plus)
                return fail_parser(p, LT_ERR_INVALID,
                                   "IMAP protocol error: non-synchronizing literal {N+} from the "
                                   "server (response at stream byte %llu)",
                                   (unsigned long long)p->resp_off);
            size_t hdr = i - 1;
            if (hdr > p->frag_start && b[hdr - 1] == '~')
                hdr--;
            uint64_t n = 0;
            if (e - i > 19)
                return fail_parser(p, LT_ERR_INVALID,
                                   "IMAP protocol error: literal length too long (response at "
                                   "stream byte %llu)",
                                   (unsigned long long)p->resp_off);
            for (size_t k = i; k < e; k++)
                n = n * 10 + (uint64_t)(b[k] - '0');
            /* Is it the value of a body item of an untagged FETCH? */
            int r = -1;
            cur_t c = {.p = p, .b = b, .len = len, .prefix = 1};
            if (istarts(b, len, "* ") && len > 2 && b[2] >= '0' && b[2] <= '9') {
                uint64_t seq;
                const char *w;
                c.pos = 2;
                prepare(p, len);
                memset(&p->body_pre, 0, sizeof(p->body_pre));
                if (!read_number(&c, UINT32_MAX, &seq) && !expect(&c, ' ', "") &&
                    !read_atom(&c, 0, &w) && ieq(w, "FETCH") && !expect(&c, ' ', "") && seq) {
                    p->body_seq = (uint32_t)seq;
                    r = parse_fetch(&c, (uint32_t)seq, &p->body_pre);
                }
            }
            if (r == PENDING_BODY) {
                free(p->body_section);
                p->body_section = lt_xstrdup(c.pending_item);
                lt_buf_t *keep = p->line;
                /* Replace the header by the NUL placeholder. */
                lt_buf_t *nb = lt_buf_new(p->max_line);
                lt_buf_append(nb, lt_buf_data(keep), hdr);
                lt_buf_append(nb, "", 1);
                lt_buf_destroy(keep);
                p->line = nb;
                p->frag_start = lt_buf_len(nb);
                lt_imap_event_t ev = {.num = p->body_seq,
                                      .section = p->body_section,
                                      .literal_len = n,
                                      .fetch = p->body_pre};
                p->lit_rem = n;
                if (n > p->max_message) {
                    ev.type = LT_IMAP_EV_BODY_SKIPPED;
                    p->state = ST_LIT_SKIP;
                    p->resp_body_skipped = 1;
                } else {
                    ev.type = LT_IMAP_EV_BODY_BEGIN;
                    p->state = ST_LIT_STREAM;
                }
                lt_err_t err = emit(p, &ev);
                if (err)
                    return fail_parser(p, err, "stopped by the event callback");
                if (n == 0 && p->state == ST_LIT_STREAM) {
                    lt_imap_event_t endev = {.type = LT_IMAP_EV_BODY_END,
                                             .num = p->body_seq,
                                             .section = p->body_section};
                    p->state = ST_LINE;
                    if ((err = emit(p, &endev)))
                        return fail_parser(p, err, "stopped by the event callback");
                } else if (n == 0) {
                    p->state = ST_LINE;
                }
                return LT_OK;
            }
            /* Any other literal is kept in the response, within max_line. */
            if (n > p->max_line || len + 2 + n > p->max_line)
                return fail_parser(p, LT_ERR_TOO_BIG,
                                   "IMAP response too long: a %llu-byte literal exceeds the "
                                   "%zu-byte cap for a response (stream byte %llu)",
                                   (unsigned long long)n, p->max_line,
                                   (unsigned long long)p->resp_off);
            lt_buf_append(p->line, "\n", 1);
            p->frag_start = lt_buf_len(p->line);
            p->lit_rem = n;
            p->state = n ? ST_LIT_INLINE : ST_LINE;
            return LT_OK;
        }
    }
    /* A complete response. */
    prepare(p, len);
    cur_t c = {.p = p, .b = b, .len = len};
    lt_err_t err = LT_OK;
    if (len == 0)
        err = fail_parser(p, LT_ERR_INVALID, "IMAP protocol error: empty line at stream byte %llu",
                          (unsigned long long)p->resp_off);
    else if (parse_response(&c))
        err = cur_error(p, &c);
    if (!err)
        reset_response(p);
    return err;
}

lt_imap_parser_t *lt_imap_parser_new(const lt_imap_parser_opts_t *opts, lt_imap_event_fn fn,
                                     void *opaque)
{
    lt_imap_parser_t *p = lt_xcalloc(1, sizeof(*p));
    p->fn = fn;
    p->opaque = opaque;
    p->max_line = opts && opts->max_line ? opts->max_line : DEFAULT_MAX_LINE;
    p->max_message = opts && opts->max_message ? opts->max_message : DEFAULT_MAX_MESSAGE;
    p->line = lt_buf_new(p->max_line);
    p->state = ST_LINE;
    return p;
}

void lt_imap_parser_destroy(lt_imap_parser_t *p)
{
    if (!p)
        return;
    lt_buf_destroy(p->line);
    free(p->body_section);
    free(p->arena);
    free(p->strs);
    free(p->nums);
    free(p->ranges);
    free(p);
}

int lt_imap_parser_idle(const lt_imap_parser_t *p)
{
    return p->state == ST_LINE && lt_buf_len(p->line) == 0;
}

lt_err_t lt_imap_parser_feed(lt_imap_parser_t *p, const uint8_t *data, size_t len, char *errstr,
                             size_t errstr_size)
{
    size_t off = 0;
    lt_err_t err = LT_OK;
    while (off < len && p->state != ST_FAILED) {
        if (p->state == ST_LINE) {
            if (lt_buf_len(p->line) == 0)
                p->resp_off = p->offset + off;
            size_t n = len - off;
            if (n > LINE_STEP)
                n = LINE_STEP;
            const uint8_t *lf = memchr(data + off, '\n', n);
            size_t take = lf ? (size_t)(lf - (data + off)) : n;
            /* Check bytes in stream order whatever the chunking: a NUL that
             * fits is reported before an overflow of the cap. */
            size_t room = p->max_line - lt_buf_len(p->line);
            size_t fit = take < room ? take : room;
            const uint8_t *nul = memchr(data + off, 0, fit);
            if (nul) {
                err = fail_parser(p, LT_ERR_INVALID,
                                  "IMAP protocol error: NUL byte at stream byte %llu",
                                  (unsigned long long)(p->offset + (size_t)(nul - data)));
                break;
            }
            if (take > room || lt_buf_append(p->line, data + off, take)) {
                err = fail_parser(p, LT_ERR_TOO_BIG,
                                  "IMAP response line longer than %zu bytes (response at stream "
                                  "byte %llu)",
                                  p->max_line, (unsigned long long)p->resp_off);
                break;
            }
            off += take;
            if (!lf) {
                if (p->frag_start == 0 && lt_buf_len(p->line) > SEARCH_FLUSH &&
                    istarts(lt_buf_data(p->line), lt_buf_len(p->line), "* SEARCH ") &&
                    (err = flush_search(p)))
                    break;
                continue;
            }
            off++; /* LF */
            size_t l = lt_buf_len(p->line);
            if (l == p->frag_start || lt_buf_data(p->line)[l - 1] != '\r') {
                err = fail_parser(p, LT_ERR_INVALID,
                                  "IMAP protocol error: bare LF at stream byte %llu",
                                  (unsigned long long)(p->offset + off - 1));
                break;
            }
            if ((err = fragment_end(p)))
                break;
        } else if (p->state == ST_LIT_INLINE) {
            size_t n = len - off;
            if (n > p->lit_rem)
                n = (size_t)p->lit_rem;
            lt_buf_append(p->line, data + off, n); /* fits: checked at the header */
            off += n;
            p->lit_rem -= n;
            if (p->lit_rem == 0) {
                p->frag_start = lt_buf_len(p->line);
                p->state = ST_LINE;
            }
        } else { /* ST_LIT_STREAM, ST_LIT_SKIP */
            size_t n = len - off;
            if (n > p->lit_rem)
                n = (size_t)p->lit_rem;
            if (p->state == ST_LIT_STREAM && n) {
                lt_imap_event_t ev = {.type = LT_IMAP_EV_BODY_DATA,
                                      .num = p->body_seq,
                                      .section = p->body_section,
                                      .data = data + off,
                                      .len = n};
                if ((err = emit(p, &ev))) {
                    fail_parser(p, err, "stopped by the event callback");
                    break;
                }
            }
            off += n;
            p->lit_rem -= n;
            if (p->lit_rem == 0) {
                int streamed = p->state == ST_LIT_STREAM;
                p->state = ST_LINE;
                if (streamed) {
                    lt_imap_event_t ev = {.type = LT_IMAP_EV_BODY_END,
                                          .num = p->body_seq,
                                          .section = p->body_section};
                    if ((err = emit(p, &ev))) {
                        fail_parser(p, err, "stopped by the event callback");
                        break;
                    }
                }
            }
        }
    }
    p->offset += off;
    if (p->state == ST_FAILED) {
        lt_seterr(errstr, errstr_size, p->failed, "%s", p->failmsg);
        return p->failed;
    }
    return LT_OK;
}

const char *lt_imap_status_name(lt_imap_status_t s)
{
    switch (s) {
    case LT_IMAP_OK:
        return "OK";
    case LT_IMAP_NO:
        return "NO";
    case LT_IMAP_BAD:
        return "BAD";
    case LT_IMAP_BYE:
        return "BYE";
    case LT_IMAP_PREAUTH:
        return "PREAUTH";
    }
    return "?";
}

lt_err_t lt_imap_parse_seqset(const char *s, size_t len, uint32_t star, lt_imap_range_t *out,
                              size_t max, size_t *nout)
{
    size_t n = 0;
    size_t i = 0;
    *nout = 0;
    if (len == 0)
        return LT_ERR_INVALID;
    for (;;) {
        uint32_t v[2];
        int k = 0;
        for (;;) {
            if (i < len && s[i] == '*') {
                v[k] = star;
                i++;
            } else {
                uint64_t x = 0;
                size_t st = i;
                while (i < len && s[i] >= '0' && s[i] <= '9') {
                    x = x * 10 + (uint64_t)(s[i] - '0');
                    if (x > UINT32_MAX)
                        return LT_ERR_INVALID;
                    i++;
                }
                if (i == st || x == 0)
                    return LT_ERR_INVALID;
                v[k] = (uint32_t)x;
            }
            if (k == 0 && i < len && s[i] == ':') {
                i++;
                k = 1;
                continue;
            }
            break;
        }
        if (k == 0)
            v[1] = v[0];
        if (n >= max)
            return LT_ERR_TOO_BIG;
        out[n].lo = v[0] < v[1] ? v[0] : v[1];
        out[n].hi = v[0] < v[1] ? v[1] : v[0];
        n++;
        *nout = n;
        if (i == len)
            return LT_OK;
        if (s[i] != ',')
            return LT_ERR_INVALID;
        i++;
    }
}

uint64_t lt_imap_ranges_count(const lt_imap_range_t *r, size_t n)
{
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += (uint64_t)r[i].hi - r[i].lo + 1;
    return t;
}
