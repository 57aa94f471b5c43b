/* lt_mime: headers, text body and attachment manifest of one message.
 *
 * gmime parses (persisting the input stream, so attachment content stays in
 * the input and is decoded on demand); this module walks the tree with its
 * own caps, picks the text body, lists the attachments and hashes them. All
 * strings handed out are copies made UTF-8 clean here. */
#include "lt_mime.h"
#include "lt_media_type.h"

#include <errno.h>
#include <fcntl.h>
#include <gmime/gmime.h>
#include <iconv.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define NFIELDS 4
#define PATH_MAX_LEN 4096
#define MAX_DEPTH_LIMIT 256

typedef struct {
    char *display;
    char **names;
    char **emails;
    size_t n;
} addrs_t;

typedef struct {
    GMimeObject *obj; /* a reference held */
    char *id;
    char *filename;
    char *content_type;
    char *disposition;
    char *content_id;
    uint64_t size;
    char sha256[65];
} att_t;

struct lt_mime_s {
    lt_mime_limits_t lim;
    GMimeStream *stream;
    GMimeParserOptions *popts;
    GMimeFormatOptions *fopts;
    GMimeMessage *msg; /* NULL when gmime found no message at all */
    unsigned flags;

    char *message_id;
    char *subject;
    char *in_reply_to;
    int64_t date_ms;
    char **refs;
    size_t nrefs;
    addrs_t addrs[NFIELDS];

    char *text;
    size_t text_len;
    const char *text_source;
    char *text_part_id;

    att_t *att;
    size_t natt;
};

/* ------------------------------------------------------------------ */
/* A GMimeStream that hands every write to a callback: lets gmime's own
 * decoders (data wrappers, message serialisation) feed our sinks. */

typedef struct {
    GMimeStream parent_object;
    lt_mime_write_fn fn;
    void *opaque;
    lt_err_t err;
} LtMimeCbStream;

typedef struct {
    GMimeStreamClass parent_class;
} LtMimeCbStreamClass;

GType lt_mime_cb_stream_get_type(void);
G_DEFINE_TYPE(LtMimeCbStream, lt_mime_cb_stream, GMIME_TYPE_STREAM)

static ssize_t cb_write(GMimeStream *stream, const char *buf, size_t len)
{
    LtMimeCbStream *s = (LtMimeCbStream *)stream;
    if (s->err)
        return -1;
    if (len == 0)
        return 0;
    lt_err_t err = s->fn(s->opaque, (const uint8_t *)buf, len);
    if (err) {
        s->err = err;
        return -1;
    }
    stream->position += (gint64)len;
    return (ssize_t)len;
}

static ssize_t cb_read(GMimeStream *stream, char *buf, size_t len)
{
    return -1;
}

static int cb_flush(GMimeStream *stream)
{
    return 0;
}

static int cb_close(GMimeStream *stream)
{
    return 0;
}

static gboolean cb_eos(GMimeStream *stream)
{
    return TRUE;
}

static int cb_reset(GMimeStream *stream)
{
    return 0;
}

static gint64 cb_seek(GMimeStream *stream, gint64 offset, GMimeSeekWhence whence)
{
    return -1;
}

static gint64 cb_tell(GMimeStream *stream)
{
    return stream->position;
}

static gint64 cb_length(GMimeStream *stream)
{
    return -1;
}

static GMimeStream *cb_substream(GMimeStream *stream, gint64 start, gint64 end)
{
    return NULL;
}

static void lt_mime_cb_stream_class_init(LtMimeCbStreamClass *klass)
{
    GMimeStreamClass *sc = GMIME_STREAM_CLASS(klass);
    sc->read = cb_read;
    sc->write = cb_write;
    sc->flush = cb_flush;
    sc->close = cb_close;
    sc->eos = cb_eos;
    sc->reset = cb_reset;
    sc->seek = cb_seek;
    sc->tell = cb_tell;
    sc->length = cb_length;
    sc->substream = cb_substream;
}

static void lt_mime_cb_stream_init(LtMimeCbStream *s)
{
    s->fn = NULL;
    s->opaque = NULL;
    s->err = LT_OK;
}

static LtMimeCbStream *cb_stream_new(lt_mime_write_fn fn, void *opaque)
{
    LtMimeCbStream *s = g_object_new(lt_mime_cb_stream_get_type(), NULL);
    g_mime_stream_construct(GMIME_STREAM(s), 0, -1);
    s->fn = fn;
    s->opaque = opaque;
    return s;
}

/* ------------------------------------------------------------------ */
/* UTF-8 and charsets */

static const uint8_t REPLACEMENT[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid.
 * NUL counts as invalid: our strings are C strings. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return c ? 1 : 0;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

/* Expected length of a sequence by its lead byte (0: not a lead byte). */
static size_t utf8_lead_len(uint8_t c)
{
    if (c >= 0xC2 && c < 0xE0)
        return 2;
    if (c >= 0xE0 && c < 0xF0)
        return 3;
    if (c >= 0xF0 && c < 0xF5)
        return 4;
    return 0;
}

/* Valid UTF-8, ignoring a sequence cut short by the end of the data (the
 * data may have been cut at a cap). */
static int utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            size_t want = utf8_lead_len(p[i]);
            if (want && n - i < want) {
                int prefix_ok = 1;
                for (size_t j = i + 1; j < n; j++)
                    prefix_ok &= (p[j] & 0xC0) == 0x80;
                return prefix_ok;
            }
            return 0;
        }
        i += k;
    }
    return 1;
}

static lt_err_t put_cp(lt_buf_t *b, uint32_t cp)
{
    uint8_t u[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return lt_buf_append(b, REPLACEMENT, 3);
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | (cp >> 6));
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (uint8_t)(0xE0 | (cp >> 12));
        u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (uint8_t)(0xF0 | (cp >> 18));
        u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return lt_buf_append(b, u, n);
}

/* Windows-1252 0x80..0x9F; 0 = undefined. */
static const uint16_t CP1252[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178,
};

static void from_cp1252(const uint8_t *p, size_t n, lt_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = p[i];
        if (cp >= 0x80 && cp < 0xA0)
            cp = CP1252[cp - 0x80];
        if (cp == 0)
            cp = 0xFFFD;
        if (put_cp(out, cp))
            return;
    }
}

/* Copy valid UTF-8, each invalid byte becoming U+FFFD. */
static void utf8_sanitize(const uint8_t *p, size_t n, lt_buf_t *out)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        size_t k;
        while (i < n && (k = utf8_seq(p + i, n - i)) != 0)
            i += k;
        if (i > start && lt_buf_append(out, p + start, i - start))
            return;
        if (i < n) {
            if (lt_buf_append(out, REPLACEMENT, 3))
                return;
            i++;
        }
    }
}

/* No usable charset: UTF-8 if the bytes are UTF-8, else Windows-1252 (the
 * common case of undeclared 8-bit mail). */
static void from_unknown(const uint8_t *p, size_t n, lt_buf_t *out)
{
    if (utf8_valid(p, n))
        utf8_sanitize(p, n, out);
    else
        from_cp1252(p, n, out);
}

static int is_ascii_name(const char *cs)
{
    return !strcasecmp(cs, "us-ascii") || !strcasecmp(cs, "ascii") ||
           !strcasecmp(cs, "ansi_x3.4-1968") || !strcasecmp(cs, "iso646-us");
}

/* raw bytes in charset cs (may be NULL) to UTF-8 (maybe still with NULs and
 * CRs; the caller cleans). */
static void to_utf8(const char *cs, const uint8_t *p, size_t n, lt_buf_t *out)
{
    if (!cs || !*cs || is_ascii_name(cs)) {
        from_unknown(p, n, out);
        return;
    }
    if (!strcasecmp(cs, "utf-8") || !strcasecmp(cs, "utf8")) {
        utf8_sanitize(p, n, out);
        return;
    }
    const char *name = g_mime_charset_iconv_name(cs);
    iconv_t cd = iconv_open("UTF-8", name ? name : cs);
    if (cd == (iconv_t)-1) {
        from_unknown(p, n, out);
        return;
    }
    char *in = (char *)p;
    size_t inleft = n;
    char tmp[16384];
    while (inleft > 0) {
        char *o = tmp;
        size_t oleft = sizeof(tmp);
        size_t r = iconv(cd, &in, &inleft, &o, &oleft);
        int e = errno;
        if (o > tmp && lt_buf_append(out, tmp, (size_t)(o - tmp)))
            goto out;
        if (r == (size_t)-1) {
            if (e == E2BIG)
                continue;
            /* EILSEQ / EINVAL: one bad byte becomes U+FFFD, go on. */
            if (lt_buf_append(out, REPLACEMENT, 3))
                goto out;
            in++;
            inleft--;
        }
    }
    char *o = tmp;
    size_t oleft = sizeof(tmp);
    iconv(cd, NULL, NULL, &o, &oleft);
    if (o > tmp)
        lt_buf_append(out, tmp, (size_t)(o - tmp));
out:
    iconv_close(cd);
}

/* Cut b to at most max bytes at a UTF-8 character boundary. */
static int utf8_cut(char *s, size_t *len, size_t max)
{
    if (*len <= max)
        return 0;
    size_t n = max;
    while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80)
        n--;
    s[n] = 0;
    *len = n;
    return 1;
}

/* A header string made clean: valid UTF-8, CR/LF as spaces, at most max
 * bytes (cut: *flags gets LT_MIME_F_HEADER_TRUNCATED). NULL in, NULL out. */
static char *clean_string(const char *s, size_t max, unsigned *flags)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    lt_buf_t *b = lt_buf_new(n * 3 + 16);
    utf8_sanitize((const uint8_t *)s, n, b);
    size_t len;
    char *r = (char *)lt_buf_steal(b, &len);
    lt_buf_destroy(b);
    if (!r)
        r = lt_xstrdup("");
    for (size_t i = 0; i < len; i++)
        if (r[i] == '\r' || r[i] == '\n')
            r[i] = ' ';
    if (utf8_cut(r, &len, max))
        *flags |= LT_MIME_F_HEADER_TRUNCATED;
    return r;
}

static char *clean_header(lt_mime_t *m, const char *s)
{
    return clean_string(s, m->lim.max_header, &m->flags);
}

static char *clean_header_nonempty(lt_mime_t *m, const char *s)
{
    char *r = clean_header(m, s);
    if (r && !*r) {
        free(r);
        r = NULL;
    }
    return r;
}

/* ------------------------------------------------------------------ */
/* HTML to text: drop tags, comments, script and style; decode the common
 * entities; collapse white space; block tags become line breaks. */

static int ascii_ieq(const char *a, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n < k)
        return 0;
    return strncasecmp(a, lit, k) == 0;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static const char *memfind_ci(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(s + i, lit, k) == 0)
            return s + i;
    return NULL;
}

typedef struct {
    lt_buf_t *out;
    int space; /* a space is pending */
    int nl;    /* consecutive line breaks at the end of out */
    int any;   /* text written */
} html_out_t;

static void h_newline(html_out_t *h)
{
    h->space = 0;
    if (!h->any || h->nl >= 2)
        return;
    lt_buf_append(h->out, "\n", 1);
    h->nl++;
}

static void h_text(html_out_t *h, const void *p, size_t n)
{
    if (h->space && h->any && h->nl == 0)
        lt_buf_append(h->out, " ", 1);
    h->space = 0;
    lt_buf_append(h->out, p, n);
    h->nl = 0;
    h->any = 1;
}

static const char *const BLOCK_TAGS[] = {
    "br",  "p",       "div",     "tr",     "li",     "h1", "h2",         "h3",
    "h4",  "h5",      "h6",      "table",  "ul",     "ol", "blockquote", "hr",
    "pre", "section", "article", "header", "footer", "dt", "dd",
};

static size_t html_entity(html_out_t *h, const char *s, size_t n)
{
    /* s[0] == '&'; returns bytes consumed, 0 if not an entity. */
    size_t end = 1;
    while (end < n && end < 12 && s[end] != ';')
        end++;
    if (end >= n || s[end] != ';')
        return 0;
    const char *e = s + 1;
    size_t k = end - 1;
    uint32_t cp = 0;
    if (k >= 2 && e[0] == '#') {
        int hex = e[1] == 'x' || e[1] == 'X';
        size_t i = hex ? 2 : 1;
        if (i >= k)
            return 0;
        for (; i < k; i++) {
            char c = e[i];
            uint32_t d;
            if (c >= '0' && c <= '9')
                d = (uint32_t)(c - '0');
            else if (hex && c >= 'a' && c <= 'f')
                d = (uint32_t)(c - 'a' + 10);
            else if (hex && c >= 'A' && c <= 'F')
                d = (uint32_t)(c - 'A' + 10);
            else
                return 0;
            cp = cp * (hex ? 16 : 10) + d;
            if (cp > 0x10FFFF)
                cp = 0x110000; /* stays invalid */
        }
    } else {
        static const struct {
            const char *name;
            uint32_t cp;
        } names[] = {{"amp", '&'},     {"lt", '<'},        {"gt", '>'},       {"quot", '"'},
                     {"apos", '\''},   {"nbsp", ' '},      {"copy", 0xA9},    {"reg", 0xAE},
                     {"euro", 0x20AC}, {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013}};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (strlen(names[i].name) == k && !memcmp(e, names[i].name, k))
                cp = names[i].cp;
        if (!cp)
            return 0;
    }
    lt_buf_t *tmp = lt_buf_new(8);
    put_cp(tmp, cp);
    h_text(h, lt_buf_data(tmp), lt_buf_len(tmp));
    lt_buf_destroy(tmp);
    return end + 1;
}

static void html_to_text(const char *s, size_t n, lt_buf_t *out)
{
    html_out_t h = {out, 0, 0, 0};
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '<') {
            const char *r = s + i;
            size_t left = n - i;
            if (ascii_ieq(r, left, "<!--")) {
                const char *e = memfind_ci(r + 4, left - 4, "-->");
                i = e ? (size_t)(e - s) + 3 : n;
                continue;
            }
            size_t j = 1;
            if (j < left && (r[j] == '/' || r[j] == '!' || r[j] == '?'))
                j++;
            size_t name_at = j;
            while (j < left && ((r[j] >= 'a' && r[j] <= 'z') || (r[j] >= 'A' && r[j] <= 'Z') ||
                                (r[j] >= '0' && r[j] <= '9')))
                j++;
            size_t name_len = j - name_at;
            if (name_len == 0 && name_at == 1) {
                h_text(&h, "<", 1); /* a literal '<' */
                i++;
                continue;
            }
            const char *gt = memchr(r + j, '>', left - j);
            size_t tag_end = gt ? (size_t)(gt - s) + 1 : n;
            const char *name = r + name_at;
            int closing = r[1] == '/';
            const char *skip_to = NULL; /* elements whose content is not text */
            if (!closing && name_len == 6 && !strncasecmp(name, "script", 6))
                skip_to = "</script";
            else if (!closing && name_len == 5 && !strncasecmp(name, "style", 5))
                skip_to = "</style";
            else if (!closing && name_len == 5 && !strncasecmp(name, "title", 5))
                skip_to = "</title";
            if (skip_to) {
                const char *e = memfind_ci(s + tag_end, n - tag_end, skip_to);
                const char *g = e ? memchr(e, '>', (size_t)(s + n - e)) : NULL;
                i = g ? (size_t)(g - s) + 1 : n;
                continue;
            }
            int block = 0;
            for (size_t t = 0; t < sizeof(BLOCK_TAGS) / sizeof(BLOCK_TAGS[0]); t++)
                if (strlen(BLOCK_TAGS[t]) == name_len &&
                    !strncasecmp(name, BLOCK_TAGS[t], name_len))
                    block = 1;
            if (block)
                h_newline(&h);
            else if (name_len == 2 && (!strncasecmp(name, "td", 2) || !strncasecmp(name, "th", 2)))
                h.space = 1;
            i = tag_end;
            continue;
        }
        if (c == '&') {
            size_t k = html_entity(&h, s + i, n - i);
            if (k) {
                i += k;
                continue;
            }
        }
        if (is_ws(c)) {
            h.space = 1;
            i++;
            continue;
        }
        size_t k = i + 1;
        while (k < n && s[k] != '<' && s[k] != '&' && !is_ws(s[k]))
            k++;
        h_text(&h, s + i, k - i);
        i = k;
    }
    /* no trailing line breaks */
    size_t len = lt_buf_len(out);
    const uint8_t *d = lt_buf_data(out);
    while (len > 0 && d[len - 1] == '\n')
        len--;
    if (len < lt_buf_len(out)) {
        uint8_t *all = lt_buf_steal(out, &(size_t){0});
        lt_buf_append(out, all, len);
        free(all);
    }
}

/* ------------------------------------------------------------------ */
/* Content streaming */

static lt_err_t write_object(const lt_mime_t *m, GMimeObject *obj, lt_mime_write_fn fn,
                             void *opaque, char *errstr, size_t errstr_size)
{
    LtMimeCbStream *cb = cb_stream_new(fn, opaque);
    ssize_t r = 0;
    if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        if (inner)
            r = g_mime_object_write_to_stream(GMIME_OBJECT(inner), m->fopts, GMIME_STREAM(cb));
    } else if (GMIME_IS_PART(obj)) {
        GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(obj));
        if (w)
            r = g_mime_data_wrapper_write_to_stream(w, GMIME_STREAM(cb));
    }
    lt_err_t err = cb->err;
    g_object_unref(cb);
    if (err)
        return lt_seterr(errstr, errstr_size, err, "attachment writer failed: %s",
                         lt_err_name(err));
    if (r < 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "reading the part content failed");
    return LT_OK;
}

typedef struct {
    EVP_MD_CTX *md;
    uint64_t size;
} hash_sink_t;

static lt_err_t hash_write(void *opaque, const uint8_t *data, size_t len)
{
    hash_sink_t *h = opaque;
    EVP_DigestUpdate(h->md, data, len);
    h->size += len;
    return LT_OK;
}

static lt_err_t buf_write(void *opaque, const uint8_t *data, size_t len)
{
    return lt_buf_append(opaque, data, len);
}

/* ------------------------------------------------------------------ */
/* Walking the tree */

/* "type/subtype" in lower case; a declared type that is not a bounded media
 * type (lt_media_type_safe) is application/octet-stream, flagged. */
static char *lower_mime_type(GMimeObject *obj, unsigned *flags)
{
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    char *t = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
    const char *safe = lt_media_type_safe(t);
    if (t && safe != t)
        *flags |= LT_MIME_F_CTYPE_REPLACED;
    char *r = lt_xstrdup(safe);
    g_free(t);
    for (char *p = r; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return r;
}

static int is_type(GMimeObject *obj, const char *type, const char *subtype)
{
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    return ct && g_mime_content_type_is_type(ct, type, subtype);
}

static int disposition_is_attachment(GMimeObject *obj)
{
    const char *d = g_mime_object_get_disposition(obj);
    return d && !strcasecmp(d, "attachment");
}

static const char *raw_filename(GMimeObject *obj)
{
    if (GMIME_IS_PART(obj))
        return g_mime_part_get_filename(GMIME_PART(obj));
    const char *f = g_mime_object_get_content_disposition_parameter(obj, "filename");
    if (!f)
        f = g_mime_object_get_content_type_parameter(obj, "name");
    return f;
}

static int is_text_candidate(GMimeObject *obj, const char *subtype)
{
    if (!GMIME_IS_PART(obj) || !is_type(obj, "text", subtype))
        return 0;
    return !disposition_is_attachment(obj) && !raw_filename(obj);
}

static int is_attachment(GMimeObject *obj)
{
    if (GMIME_IS_MESSAGE_PART(obj))
        return 1;
    if (!GMIME_IS_PART(obj))
        return 0;
    if (disposition_is_attachment(obj) || raw_filename(obj))
        return 1;
    return !is_type(obj, "text", "plain") && !is_type(obj, "text", "html");
}

typedef struct {
    lt_mime_t *m;
    int pass; /* 1: find the text body; 2: list attachments */
    GMimeObject *plain, *html, *body;
    char plain_id[PATH_MAX_LEN], html_id[PATH_MAX_LEN];
    lt_err_t err;
    char *errstr;
    size_t errstr_size;
} walk_t;

/* "<subject>.eml" with path-hostile characters replaced, or "message.eml". */
static char *message_filename(lt_mime_t *m, GMimeMessage *inner)
{
    const char *subj = inner ? g_mime_message_get_subject(inner) : NULL;
    char *s = clean_header(m, subj);
    if (!s)
        return lt_xstrdup("message.eml");
    size_t len = strlen(s);
    utf8_cut(s, &len, 200);
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F || strchr("/\\:*?\"<>|", *p))
            *p = '_';
    char *a = s;
    while (*a == ' ' || *a == '.')
        a++;
    size_t n = strlen(a);
    while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '.'))
        n--;
    char *r;
    if (n == 0) {
        r = lt_xstrdup("message.eml");
    } else {
        r = lt_xmalloc(n + 5);
        memcpy(r, a, n);
        memcpy(r + n, ".eml", 5);
    }
    free(s);
    return r;
}

static lt_err_t add_attachment(walk_t *w, GMimeObject *obj, const char *id)
{
    lt_mime_t *m = w->m;
    if (m->natt >= m->lim.max_attachments) {
        m->flags |= LT_MIME_F_TOO_MANY_PARTS;
        return LT_OK;
    }
    if (m->natt % 16 == 0)
        m->att = lt_xrealloc(m->att, (m->natt + 16) * sizeof(*m->att));
    att_t *a = &m->att[m->natt];
    memset(a, 0, sizeof(*a));
    a->obj = g_object_ref(obj);
    a->id = lt_xstrdup(id);
    a->content_type = lower_mime_type(obj, &m->flags);
    a->filename = clean_header_nonempty(m, raw_filename(obj));
    if (!a->filename && GMIME_IS_MESSAGE_PART(obj))
        a->filename = message_filename(m, g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj)));
    char *d = clean_header_nonempty(m, g_mime_object_get_disposition(obj));
    if (d)
        for (char *p = d; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    a->disposition = d;
    a->content_id = clean_header_nonempty(m, g_mime_object_get_content_id(obj));
    m->natt++;

    hash_sink_t h = {EVP_MD_CTX_new(), 0};
    if (!h.md) {
        fputs("lattice: out of memory\n", stderr);
        abort();
    }
    EVP_DigestInit_ex(h.md, EVP_sha256(), NULL);
    lt_err_t err = write_object(m, obj, hash_write, &h, w->errstr, w->errstr_size);
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(h.md, md, &mdlen);
    EVP_MD_CTX_free(h.md);
    for (unsigned int i = 0; i < 32; i++)
        snprintf(a->sha256 + 2 * i, 3, "%02x", md[i]);
    a->size = h.size;
    return err;
}

static void visit_leaf(walk_t *w, GMimeObject *obj, const char *id)
{
    if (w->pass == 1) {
        if (!w->plain && is_text_candidate(obj, "plain")) {
            w->plain = obj;
            snprintf(w->plain_id, sizeof(w->plain_id), "%s", id);
        } else if (!w->html && is_text_candidate(obj, "html")) {
            w->html = obj;
            snprintf(w->html_id, sizeof(w->html_id), "%s", id);
        }
        return;
    }
    if (obj == w->body || !is_attachment(obj))
        return;
    if (!w->err)
        w->err = add_attachment(w, obj, id);
}

static void visit(walk_t *w, GMimeObject *obj, char *path, size_t pathlen, size_t depth)
{
    if (!obj || w->err)
        return;
    if (!GMIME_IS_MULTIPART(obj)) {
        visit_leaf(w, obj, pathlen ? path : "1");
        return;
    }
    if (depth >= w->m->lim.max_depth) {
        w->m->flags |= LT_MIME_F_DEPTH_CAPPED;
        return;
    }
    int count = g_mime_multipart_get_count(GMIME_MULTIPART(obj));
    for (int i = 0; i < count && !w->err; i++) {
        int k = snprintf(path + pathlen, PATH_MAX_LEN - pathlen, "%s%d", pathlen ? "." : "", i + 1);
        if (k < 0 || (size_t)k >= PATH_MAX_LEN - pathlen) {
            w->m->flags |= LT_MIME_F_DEPTH_CAPPED;
            break;
        }
        visit(w, g_mime_multipart_get_part(GMIME_MULTIPART(obj), i), path, pathlen + (size_t)k,
              depth + 1);
        path[pathlen] = 0;
    }
}

static size_t raw_text_cap(const lt_mime_t *m)
{
    return m->lim.max_text > SIZE_MAX / 4 ? SIZE_MAX : m->lim.max_text * 4;
}

/* Decoded body bytes in charset cs (may be NULL) into m->text. */
static void set_text(lt_mime_t *m, const uint8_t *raw, size_t raw_len, const char *cs, int html)
{
    lt_buf_t *u = lt_buf_new(raw_len * 4 + 16);
    to_utf8(cs, raw, raw_len, u);

    /* Clean: valid UTF-8, no NUL, CRLF and lone CR as LF. */
    lt_buf_t *c = lt_buf_new(lt_buf_len(u) * 3 + 16);
    const uint8_t *p = lt_buf_data(u);
    size_t n = lt_buf_len(u), i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && p[i] != '\r' && p[i] != 0)
            i++;
        utf8_sanitize(p + s, i - s, c);
        if (i < n) {
            if (p[i] == 0)
                lt_buf_append(c, REPLACEMENT, 3);
            else
                lt_buf_append(c, "\n", 1);
            if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            i++;
        }
    }
    lt_buf_destroy(u);

    lt_buf_t *t = c;
    if (html) {
        t = lt_buf_new(lt_buf_len(c) + 16);
        html_to_text(lt_buf_str(c), lt_buf_len(c), t);
        lt_buf_destroy(c);
    }
    size_t len;
    m->text = (char *)lt_buf_steal(t, &len);
    lt_buf_destroy(t);
    if (!m->text) {
        m->text = lt_xstrdup("");
        len = 0;
    }
    if (utf8_cut(m->text, &len, m->lim.max_text))
        m->flags |= LT_MIME_F_TEXT_TRUNCATED;
    m->text_len = len;
    m->text_source = html ? "text/html" : "text/plain";
}

/* Decode the chosen body part into m->text. */
static void extract_text(lt_mime_t *m, GMimeObject *part, int html)
{
    lt_buf_t *raw = lt_buf_new(raw_text_cap(m));
    char err[128];
    if (write_object(m, part, buf_write, raw, err, sizeof(err)) == LT_ERR_TOO_BIG)
        m->flags |= LT_MIME_F_TEXT_TRUNCATED;
    set_text(m, lt_buf_data(raw), lt_buf_len(raw),
             g_mime_object_get_content_type_parameter(part, "charset"), html);
    lt_buf_destroy(raw);
}

/* A multipart in which gmime found no part at all (no or a wrong
 * boundary): its text is all in the prologue; take that as the body. */
static void extract_prologue(lt_mime_t *m, GMimeObject *root)
{
    if (!root || !GMIME_IS_MULTIPART(root) || g_mime_multipart_get_count(GMIME_MULTIPART(root)))
        return;
    const char *pro = g_mime_multipart_get_prologue(GMIME_MULTIPART(root));
    if (!pro || !*pro)
        return;
    size_t n = strlen(pro);
    if (n > raw_text_cap(m)) {
        n = raw_text_cap(m);
        m->flags |= LT_MIME_F_TEXT_TRUNCATED;
    }
    free(m->text);
    set_text(m, (const uint8_t *)pro, n, NULL, 0);
}

/* Input in which gmime found no message at all (its first line is not a
 * header, nor a blank line, nor an mbox "From " line): no headers; the
 * whole input is a text/plain body (docs/mime.md). */
static void extract_whole_input(lt_mime_t *m)
{
    size_t cap = raw_text_cap(m);
    lt_buf_t *raw = lt_buf_new(cap);
    char chunk[16384];
    if (g_mime_stream_reset(m->stream) == 0) {
        for (;;) {
            ssize_t r = g_mime_stream_read(m->stream, chunk, sizeof(chunk));
            if (r <= 0)
                break;
            size_t room = cap - lt_buf_len(raw);
            if ((size_t)r > room) {
                lt_buf_append(raw, chunk, room);
                m->flags |= LT_MIME_F_TEXT_TRUNCATED;
                break;
            }
            lt_buf_append(raw, chunk, (size_t)r);
        }
    }
    if (lt_buf_len(raw) > 0) {
        free(m->text);
        set_text(m, lt_buf_data(raw), lt_buf_len(raw), NULL, 0);
        m->text_part_id = lt_xstrdup("1");
    }
    lt_buf_destroy(raw);
}

static void extract_addrs(lt_mime_t *m, lt_mime_field_t f, GMimeAddressType type)
{
    addrs_t *a = &m->addrs[f];
    InternetAddressList *list = g_mime_message_get_addresses(m->msg, type);
    if (!list || internet_address_list_length(list) == 0)
        return;
    InternetAddressList *shown = list;
    if ((size_t)internet_address_list_length(list) > m->lim.max_list) {
        shown = internet_address_list_new();
        for (size_t i = 0; i < m->lim.max_list; i++)
            internet_address_list_add(shown, internet_address_list_get_address(list, (int)i));
    }
    char *disp = internet_address_list_to_string(shown, m->fopts, FALSE);
    if (shown != list)
        g_object_unref(shown);
    a->display = clean_header_nonempty(m, disp);
    g_free(disp);
    size_t cap = m->lim.max_list;
    a->names = lt_xcalloc(cap, sizeof(char *));
    a->emails = lt_xcalloc(cap, sizeof(char *));
    int len = internet_address_list_length(list);
    for (int i = 0; i < len; i++) {
        InternetAddress *ia = internet_address_list_get_address(list, i);
        InternetAddressList *members = NULL;
        int nm = 1;
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            members = internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
            nm = members ? internet_address_list_length(members) : 0;
        }
        for (int j = 0; j < nm; j++) {
            InternetAddress *mb = members ? internet_address_list_get_address(members, j) : ia;
            if (!INTERNET_ADDRESS_IS_MAILBOX(mb))
                continue; /* groups inside groups: not valid, skipped */
            if (a->n >= cap) {
                m->flags |= LT_MIME_F_HEADER_TRUNCATED;
                return;
            }
            a->names[a->n] = clean_header_nonempty(m, internet_address_get_name(mb));
            char *e =
                clean_header(m, internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(mb)));
            a->emails[a->n] = e ? e : lt_xstrdup("");
            a->n++;
        }
    }
}

static void extract_headers(lt_mime_t *m)
{
    GMimeObject *o = GMIME_OBJECT(m->msg);
    m->message_id = clean_header_nonempty(m, g_mime_message_get_message_id(m->msg));
    m->subject = clean_header(m, g_mime_message_get_subject(m->msg));
    GDateTime *dt = g_mime_message_get_date(m->msg);
    if (dt)
        m->date_ms =
            (int64_t)g_date_time_to_unix(dt) * 1000 + g_date_time_get_microsecond(dt) / 1000;

    const char *irt = g_mime_object_get_header(o, "In-Reply-To");
    if (irt) {
        char *id = g_mime_utils_decode_message_id(irt);
        m->in_reply_to = clean_header_nonempty(m, id);
        g_free(id);
    }
    const char *refs = g_mime_object_get_header(o, "References");
    if (refs) {
        GMimeReferences *r = g_mime_references_parse(m->popts, refs);
        int n = r ? g_mime_references_length(r) : 0;
        if (n > 0) {
            size_t keep = (size_t)n;
            if (keep > m->lim.max_list) {
                keep = m->lim.max_list;
                m->flags |= LT_MIME_F_HEADER_TRUNCATED;
            }
            m->refs = lt_xcalloc(keep, sizeof(char *));
            for (size_t i = 0; i < keep; i++) {
                char *id = clean_header(m, g_mime_references_get_message_id(r, (int)i));
                m->refs[m->nrefs++] = id ? id : lt_xstrdup("");
            }
        }
        if (r)
            g_mime_references_free(r);
    }
    extract_addrs(m, LT_MIME_FROM, GMIME_ADDRESS_TYPE_FROM);
    extract_addrs(m, LT_MIME_TO, GMIME_ADDRESS_TYPE_TO);
    extract_addrs(m, LT_MIME_CC, GMIME_ADDRESS_TYPE_CC);
    extract_addrs(m, LT_MIME_REPLY_TO, GMIME_ADDRESS_TYPE_REPLY_TO);
}

/* ------------------------------------------------------------------ */
/* Pre-scan: a streaming, over-counting estimate of what gmime would build,
 * so that a small input cannot make it allocate gigabytes. Header blocks
 * are: the top one, the one after each "--" line, and one more after a block
 * whose Content-Type says message/ (or every part of a message that has a
 * multipart/digest anywhere). */

typedef struct {
    size_t max_parts, max_header_lines, max_header_bytes;
    size_t parts, header_lines, header_bytes;
    size_t line_pos;
    uint8_t head[2];
    int blocks_left; /* header blocks still expected: >0 means in a header */
    int block_msg;   /* this block's Content-Type is message/... */
    int digest;      /* a multipart/digest seen */
    char name[16];   /* header name at line start, lower case */
    size_t name_len;
    int in_name;  /* still reading the name */
    int in_ctype; /* inside a Content-Type header (with folded lines) */
    int comment;  /* depth of (comment) in Content-Type */
    char win[17]; /* last lower-case non-blank Content-Type chars */
    const char *over;
} prescan_t;

static void prescan_init(prescan_t *s, const lt_mime_limits_t *l)
{
    memset(s, 0, sizeof(*s));
    s->max_parts = l->max_parts;
    s->max_header_lines = l->max_header_lines;
    s->max_header_bytes = l->max_header_bytes;
    s->blocks_left = 1;
    s->in_name = 1;
}

static int ends_with(const char *w, const char *lit)
{
    size_t a = strlen(w), b = strlen(lit);
    return a >= b && !memcmp(w + a - b, lit, b);
}

static void prescan_ctype_char(prescan_t *s, uint8_t c)
{
    if (c == '(') {
        s->comment++;
        return;
    }
    if (c == ')' && s->comment) {
        s->comment--;
        return;
    }
    if (s->comment || c == ' ' || c == '\t' || c == '\r')
        return;
    if (c == ';') { /* parameters follow: only the media type matters */
        s->in_ctype = 0;
        return;
    }
    if (c >= 'A' && c <= 'Z')
        c = (uint8_t)(c - 'A' + 'a');
    size_t n = strlen(s->win);
    if (n == sizeof(s->win) - 1) {
        memmove(s->win, s->win + 1, n - 1);
        n--;
    }
    s->win[n] = (char)c;
    s->win[n + 1] = 0;
    if (ends_with(s->win, "message/"))
        s->block_msg = 1;
    if (ends_with(s->win, "multipart/digest"))
        s->digest = 1;
}

static void prescan_end_line(prescan_t *s)
{
    int empty = s->line_pos == 0 || (s->line_pos == 1 && s->head[0] == '\r');
    int dashes = s->line_pos >= 2 && s->head[0] == '-' && s->head[1] == '-';
    if (dashes) {
        if (++s->parts > s->max_parts)
            s->over = "boundary-like lines";
        s->blocks_left = s->digest ? 2 : 1;
        s->block_msg = 0;
        s->in_ctype = 0;
    } else if (s->blocks_left > 0) {
        if (empty) {
            s->blocks_left--;
            if (s->block_msg && s->blocks_left == 0)
                s->blocks_left = 1;
            s->block_msg = 0;
            s->in_ctype = 0;
        } else if (++s->header_lines > s->max_header_lines) {
            s->over = "header lines";
        }
    }
    s->line_pos = 0;
    s->name_len = 0;
    s->in_name = 1;
}

static void prescan_header_char(prescan_t *s, uint8_t c)
{
    if (s->line_pos == 1) { /* first byte of the line */
        if (c == ' ' || c == '\t') {
            s->in_name = 0; /* folded: same header goes on */
            return;
        }
        s->in_ctype = 0;
        s->comment = 0;
        s->win[0] = 0;
    }
    if (s->in_name) {
        if (c == ':') {
            while (s->name_len &&
                   (s->name[s->name_len - 1] == ' ' || s->name[s->name_len - 1] == '\t'))
                s->name_len--;
            s->in_ctype = s->name_len == 12 && !memcmp(s->name, "content-type", 12);
            s->in_name = 0;
        } else if (s->name_len < sizeof(s->name)) {
            s->name[s->name_len++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        } else {
            s->in_name = 0;
        }
        return;
    }
    if (s->in_ctype)
        prescan_ctype_char(s, c);
}

static void prescan_feed(prescan_t *s, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n && !s->over) {
        uint8_t c = p[i];
        if (c == '\n') {
            prescan_end_line(s);
            i++;
            continue;
        }
        if (s->line_pos < 2)
            s->head[s->line_pos] = c;
        s->line_pos++;
        if (s->blocks_left > 0) {
            if (++s->header_bytes > s->max_header_bytes) {
                s->over = "header bytes";
                return;
            }
            prescan_header_char(s, c);
            i++;
        } else if (s->line_pos >= 2 || c != '-') {
            /* a body line that is not boundary-like: skip to its end */
            const uint8_t *nl = memchr(p + i + 1, '\n', n - i - 1);
            if (!nl)
                return;
            i = (size_t)(nl - p);
        } else {
            i++;
        }
    }
}

static lt_err_t prescan_result(const prescan_t *s, char *errstr, size_t errstr_size)
{
    if (!s->over)
        return LT_OK;
    return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                     "message structure over the caps (%s): %zu boundary-like lines (cap %zu), "
                     "%zu header lines (cap %zu), %zu header bytes (cap %zu) seen",
                     s->over, s->parts, s->max_parts, s->header_lines, s->max_header_lines,
                     s->header_bytes, s->max_header_bytes);
}

/* ------------------------------------------------------------------ */
/* Parsing */

void lt_mime_limits_default(lt_mime_limits_t *l)
{
    l->max_input = LT_MIME_DEFAULT_MAX_INPUT;
    l->max_depth = LT_MIME_DEFAULT_MAX_DEPTH;
    l->max_attachments = LT_MIME_DEFAULT_MAX_ATTACHMENTS;
    l->max_text = LT_MIME_DEFAULT_MAX_TEXT;
    l->max_header = LT_MIME_DEFAULT_MAX_HEADER;
    l->max_list = LT_MIME_DEFAULT_MAX_LIST;
    l->max_parts = LT_MIME_DEFAULT_MAX_PARTS;
    l->max_header_lines = LT_MIME_DEFAULT_MAX_HEADER_LINES;
    l->max_header_bytes = LT_MIME_DEFAULT_MAX_HEADER_BYTES;
}

static lt_mime_limits_t effective_limits(const lt_mime_limits_t *in)
{
    lt_mime_limits_t l;
    lt_mime_limits_default(&l);
    if (in) {
        if (in->max_input)
            l.max_input = in->max_input;
        if (in->max_depth)
            l.max_depth = in->max_depth;
        if (in->max_attachments)
            l.max_attachments = in->max_attachments;
        if (in->max_text)
            l.max_text = in->max_text;
        if (in->max_header)
            l.max_header = in->max_header;
        if (in->max_list)
            l.max_list = in->max_list;
        if (in->max_parts)
            l.max_parts = in->max_parts;
        if (in->max_header_lines)
            l.max_header_lines = in->max_header_lines;
        if (in->max_header_bytes)
            l.max_header_bytes = in->max_header_bytes;
    }
    if (l.max_depth > MAX_DEPTH_LIMIT)
        l.max_depth = MAX_DEPTH_LIMIT;
    return l;
}

void lt_mime_global_init(void)
{
    g_mime_init();
}

void lt_mime_global_shutdown(void)
{
    g_mime_shutdown();
}

/* Takes the stream reference. */
static lt_err_t parse_stream(GMimeStream *stream, const lt_mime_limits_t *limits, lt_mime_t **out,
                             char *errstr, size_t errstr_size)
{
    lt_mime_t *m = lt_xcalloc(1, sizeof(*m));
    lt_err_t err = LT_OK;
    m->lim = effective_limits(limits);
    m->stream = stream;
    m->popts = g_mime_parser_options_new();
    g_mime_parser_options_set_address_compliance_mode(m->popts, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_parameter_compliance_mode(m->popts, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_rfc2047_compliance_mode(m->popts, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_allow_addresses_without_domain(m->popts, TRUE);
    const char *fallback[] = {"UTF-8", "windows-1252", NULL};
    g_mime_parser_options_set_fallback_charsets(m->popts, fallback);
    m->fopts = g_mime_format_options_new();

    GMimeParser *p = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_format(p, GMIME_FORMAT_MESSAGE);
    g_mime_parser_set_persist_stream(p, TRUE);
    m->msg = g_mime_parser_construct_message(p, m->popts);
    g_object_unref(p);
    m->text = lt_xstrdup("");

    if (m->msg) {
        extract_headers(m);
        walk_t w = {.m = m, .pass = 1, .errstr = errstr, .errstr_size = errstr_size};
        char path[PATH_MAX_LEN] = "";
        GMimeObject *root = g_mime_message_get_mime_part(m->msg);
        visit(&w, root, path, 0, 0);
        if (w.plain || w.html) {
            w.body = w.plain ? w.plain : w.html;
            free(m->text);
            extract_text(m, w.body, !w.plain);
            m->text_part_id = lt_xstrdup(w.plain ? w.plain_id : w.html_id);
        } else {
            extract_prologue(m, root);
        }
        w.pass = 2;
        visit(&w, root, path, 0, 0);
        err = w.err;
    } else {
        extract_whole_input(m);
    }
    if (err) {
        lt_mime_destroy(m);
        m = NULL;
    }
    *out = m;
    return err;
}

lt_err_t lt_mime_parse_mem(const uint8_t *data, size_t len, const lt_mime_limits_t *limits,
                           lt_mime_t **out, char *errstr, size_t errstr_size)
{
    *out = NULL;
    lt_mime_limits_t l = effective_limits(limits);
    if (!data && len)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "no data");
    if (len > l.max_input)
        return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                         "message of %zu bytes is over the %zu byte cap", len, l.max_input);
    prescan_t ps;
    prescan_init(&ps, &l);
    prescan_feed(&ps, data, len);
    lt_err_t err = prescan_result(&ps, errstr, errstr_size);
    if (err)
        return err;
    GMimeStream *s = g_mime_stream_mem_new_with_buffer(len ? (const char *)data : "", len);
    return parse_stream(s, &l, out, errstr, errstr_size);
}

lt_err_t lt_mime_parse_file(const char *path, const lt_mime_limits_t *limits, lt_mime_t **out,
                            char *errstr, size_t errstr_size)
{
    *out = NULL;
    lt_mime_limits_t l = effective_limits(limits);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lt_seterr(errstr, errstr_size, errno == ENOENT ? LT_ERR_NOT_FOUND : LT_ERR_INVALID,
                         "open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > l.max_input) {
        close(fd);
        return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                         "%s: %lld bytes is over the %zu byte cap", path, (long long)st.st_size,
                         l.max_input);
    }
    /* Pre-scan through a small buffer (the file is not held in memory). */
    prescan_t ps;
    prescan_init(&ps, &l);
    uint8_t buf[65536];
    uint64_t left = (uint64_t)st.st_size;
    while (left > 0 && !ps.over) {
        ssize_t r = read(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "read %s: %s", path,
                             r < 0 ? strerror(e) : "file shrank while reading");
        }
        prescan_feed(&ps, buf, (size_t)r);
        left -= (uint64_t)r;
    }
    lt_err_t err = prescan_result(&ps, errstr, errstr_size);
    if (err) {
        close(fd);
        return err;
    }
    /* Bounded to the size seen, so a growing file cannot pass the cap. The
     * stream owns fd. */
    GMimeStream *s = g_mime_stream_fs_new_with_bounds(fd, 0, (gint64)st.st_size);
    return parse_stream(s, &l, out, errstr, errstr_size);
}

void lt_mime_destroy(lt_mime_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->natt; i++) {
        att_t *a = &m->att[i];
        g_object_unref(a->obj);
        free(a->id);
        free(a->filename);
        free(a->content_type);
        free(a->disposition);
        free(a->content_id);
    }
    free(m->att);
    for (int f = 0; f < NFIELDS; f++) {
        addrs_t *a = &m->addrs[f];
        for (size_t i = 0; i < a->n; i++) {
            free(a->names[i]);
            free(a->emails[i]);
        }
        free(a->names);
        free(a->emails);
        free(a->display);
    }
    for (size_t i = 0; i < m->nrefs; i++)
        free(m->refs[i]);
    free(m->refs);
    free(m->message_id);
    free(m->subject);
    free(m->in_reply_to);
    free(m->text);
    free(m->text_part_id);
    if (m->msg)
        g_object_unref(m->msg);
    if (m->stream)
        g_object_unref(m->stream);
    if (m->popts)
        g_mime_parser_options_free(m->popts);
    if (m->fopts)
        g_mime_format_options_free(m->fopts);
    free(m);
}

/* ------------------------------------------------------------------ */
/* Accessors */

unsigned lt_mime_flags(const lt_mime_t *m)
{
    return m->flags;
}

const char *lt_mime_message_id(const lt_mime_t *m)
{
    return m->message_id;
}

const char *lt_mime_subject(const lt_mime_t *m)
{
    return m->subject;
}

int64_t lt_mime_date_ms(const lt_mime_t *m)
{
    return m->date_ms;
}

const char *lt_mime_in_reply_to(const lt_mime_t *m)
{
    return m->in_reply_to;
}

size_t lt_mime_reference_count(const lt_mime_t *m)
{
    return m->nrefs;
}

const char *lt_mime_reference(const lt_mime_t *m, size_t i)
{
    return i < m->nrefs ? m->refs[i] : NULL;
}

static const addrs_t *field(const lt_mime_t *m, lt_mime_field_t f)
{
    return (unsigned)f < NFIELDS ? &m->addrs[f] : NULL;
}

const char *lt_mime_addr_display(const lt_mime_t *m, lt_mime_field_t f)
{
    const addrs_t *a = field(m, f);
    return a ? a->display : NULL;
}

size_t lt_mime_addr_count(const lt_mime_t *m, lt_mime_field_t f)
{
    const addrs_t *a = field(m, f);
    return a ? a->n : 0;
}

const char *lt_mime_addr_name(const lt_mime_t *m, lt_mime_field_t f, size_t i)
{
    const addrs_t *a = field(m, f);
    return a && i < a->n ? a->names[i] : NULL;
}

const char *lt_mime_addr_email(const lt_mime_t *m, lt_mime_field_t f, size_t i)
{
    const addrs_t *a = field(m, f);
    return a && i < a->n ? a->emails[i] : NULL;
}

char *lt_mime_header_dup(const lt_mime_t *m, const char *name)
{
    if (!m->msg || !name)
        return NULL;
    const char *v = g_mime_object_get_header(GMIME_OBJECT(m->msg), name);
    unsigned ignored = 0;
    return clean_string(v, m->lim.max_header, &ignored);
}

const char *lt_mime_text(const lt_mime_t *m, size_t *len)
{
    if (len)
        *len = m->text_len;
    return m->text;
}

const char *lt_mime_text_source(const lt_mime_t *m)
{
    return m->text_source;
}

const char *lt_mime_text_part_id(const lt_mime_t *m)
{
    return m->text_part_id;
}

size_t lt_mime_attachment_count(const lt_mime_t *m)
{
    return m->natt;
}

static const att_t *att(const lt_mime_t *m, size_t i)
{
    return i < m->natt ? &m->att[i] : NULL;
}

const char *lt_mime_attachment_id(const lt_mime_t *m, size_t i)
{
    const att_t *a = att(m, i);
    return a ? a->id : NULL;
}

const char *lt_mime_attachment_filename(const lt_mime_t *m, size_t i)
{
    const att_t *a = att(m, i);
    return a ? a->filename : NULL;
}

const char *lt_mime_attachment_content_type(const lt_mime_t *m, size_t i)
{
    const att_t *a = att(m, i);
    return a ? a->content_type : NULL;
}

const char *lt_mime_attachment_disposition(const lt_mime_t *m, size_t i)
{
    const att_t *a = att(m, i);
    return a ? a->disposition : NULL;
}

const char *lt_mime_attachment_content_id(const lt_mime_t *m, size_t i)
{
    const att_t *a = att(m, i);
    return a ? a->content_id : NULL;
}

uint64_t lt_mime_attachment_size(const lt_mime_t *m, size_t i)
{
    const att_t *a = att(m, i);
    return a ? a->size : 0;
}

const char *lt_mime_attachment_sha256(const lt_mime_t *m, size_t i)
{
    const att_t *a = att(m, i);
    return a ? a->sha256 : NULL;
}

lt_err_t lt_mime_attachment_write(lt_mime_t *m, size_t i, lt_mime_write_fn fn, void *opaque,
                                  char *errstr, size_t errstr_size)
{
    const att_t *a = att(m, i);
    if (!a)
        return lt_seterr(errstr, errstr_size, LT_ERR_NOT_FOUND, "no attachment %zu (of %zu)", i,
                         m->natt);
    return write_object(m, a->obj, fn, opaque, errstr, errstr_size);
}

lt_err_t lt_mime_attachment_read(lt_mime_t *m, size_t i, lt_buf_t *out, char *errstr,
                                 size_t errstr_size)
{
    lt_err_t err = lt_mime_attachment_write(m, i, buf_write, out, errstr, errstr_size);
    if (err == LT_ERR_TOO_BIG)
        return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                         "attachment %zu is over the buffer cap of %zu bytes", i, lt_buf_cap(out));
    return err;
}
