/* lt_mime: headers, text body and attachment manifest of one message.
 *
 * gmime parses (persisting the input stream, so attachment content stays in
 * the input and is decoded on demand); this module walks the tree with its
 * own caps, picks the text body, lists the attachments and hashes them. All
 * strings handed out are copies made UTF-8 clean (lt_mime_charset). Beside
 * it: lt_mime_prescan (the caps checked before gmime parses) and
 * lt_mime_html (the text of an HTML body). */
#include "lt_mime.h"
#include "lt_media_type.h"
#include "lt_mime_charset.h"
#include "lt_mime_html.h"
#include "lt_mime_prescan.h"

#include <errno.h>
#include <fcntl.h>
#include <gmime/gmime.h>
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

static char *clean_header(lt_mime_t *m, const char *s)
{
    return lt_mime_clean_string(s, m->lim.max_header, &m->flags);
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
    lt_mime_utf8_cut(s, &len, 200);
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
    lt_mime_to_utf8(cs, raw, raw_len, u);

    /* Clean: valid UTF-8, no NUL, CRLF and lone CR as LF. */
    lt_buf_t *c = lt_buf_new(lt_buf_len(u) * 3 + 16);
    const uint8_t *p = lt_buf_data(u);
    size_t n = lt_buf_len(u), i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && p[i] != '\r' && p[i] != 0)
            i++;
        lt_mime_utf8_sanitize(p + s, i - s, c);
        if (i < n) {
            if (p[i] == 0)
                lt_buf_append(c, LT_MIME_REPLACEMENT, 3);
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
        lt_mime_html_to_text(lt_buf_str(c), lt_buf_len(c), t);
        lt_buf_destroy(c);
    }
    size_t len;
    m->text = (char *)lt_buf_steal(t, &len);
    lt_buf_destroy(t);
    if (!m->text) {
        m->text = lt_xstrdup("");
        len = 0;
    }
    if (lt_mime_utf8_cut(m->text, &len, m->lim.max_text))
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
    l->no_text = 0;
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
        l.no_text = in->no_text != 0;
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
            if (!m->lim.no_text) {
                free(m->text);
                extract_text(m, w.body, !w.plain);
            }
            m->text_part_id = lt_xstrdup(w.plain ? w.plain_id : w.html_id);
        } else if (!m->lim.no_text) {
            extract_prologue(m, root);
        }
        w.pass = 2;
        visit(&w, root, path, 0, 0);
        err = w.err;
    } else if (!m->lim.no_text) {
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
    lt_mime_prescan_t ps;
    lt_mime_prescan_init(&ps, &l);
    lt_mime_prescan_feed(&ps, data, len);
    lt_err_t err = lt_mime_prescan_result(&ps, errstr, errstr_size);
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
    lt_mime_prescan_t ps;
    lt_mime_prescan_init(&ps, &l);
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
        lt_mime_prescan_feed(&ps, buf, (size_t)r);
        left -= (uint64_t)r;
    }
    lt_err_t err = lt_mime_prescan_result(&ps, errstr, errstr_size);
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
    return lt_mime_clean_string(v, m->lim.max_header, &ignored);
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

/* Is the encoded content well-formed, so that every RFC 2045 decoder gives
 * the same bytes as gmime's (whose output the size and sha256 describe)?
 * Lenient decoders differ on malformed input (stray characters, a partial
 * base64 quantum, "=" not followed by hex digits, whitespace before a line
 * break), so such content has no range: it is stored decoded instead. */
typedef struct {
    int b64;          /* 1 base64, 0 quoted-printable */
    uint64_t nalpha;  /* base64 characters before the padding */
    int pads;         /* '=' seen (base64) */
    int qp_eq;        /* quoted-printable: characters still expected after '=' (2), or 3: just saw '=' */
    int qp_ws;        /* quoted-printable: the previous byte was a space or tab */
    int qp_cr;        /* quoted-printable: the previous byte was a CR (soft break "=\r\n") */
    int bad;
} canon_t;

static const int8_t k_hexval[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1};

static void canon_feed(canon_t *k, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n && !k->bad; i++) {
        unsigned char ch = p[i];
        if (k->b64) {
            int alpha = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                        (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
            if (alpha && !k->pads)
                k->nalpha++;
            else if (ch == '=' && k->pads < 2)
                k->pads++;
            else if (ch != '\r' && ch != '\n' && ch != ' ' && ch != '\t')
                k->bad = 1;
            continue;
        }
        if (k->qp_eq == 3) { /* after '=': two hex digits or a line break */
            if (ch == '\n') {
                k->qp_eq = 0;
            } else if (ch == '\r') {
                k->qp_eq = 0;
                k->qp_cr = 1;
                continue;
            } else if (k_hexval[ch]) {
                k->qp_eq = 1;
            } else {
                k->bad = 1;
            }
            k->qp_ws = 0;
            continue;
        }
        if (k->qp_eq == 1) {
            k->bad = !k_hexval[ch];
            k->qp_eq = 0;
            continue;
        }
        if (k->qp_cr && ch != '\n')
            k->bad = 1; /* a CR alone */
        k->qp_cr = 0;
        if (ch == '=')
            k->qp_eq = 3;
        else if ((ch == '\r' || ch == '\n') && k->qp_ws)
            k->bad = 1; /* trailing whitespace: some decoders drop it */
        else if (ch == '\r')
            k->qp_cr = 1;
        k->qp_ws = ch == ' ' || ch == '\t';
    }
}

static int canon_ok(const canon_t *k)
{
    if (k->bad)
        return 0;
    if (k->b64)
        return (k->nalpha % 4 == 0 && k->pads == 0) || (k->nalpha % 4 == 2 && k->pads == 2) ||
               (k->nalpha % 4 == 3 && k->pads == 1);
    return k->qp_eq == 0 && !k->qp_ws && !k->qp_cr;
}

static int range_canonical(GMimeStream *cs, int b64)
{
    canon_t k = {.b64 = b64};
    char buf[65536];
    if (g_mime_stream_reset(cs))
        return 0;
    /* exactly the bounded length: a file stream's read at its bound is an error */
    gint64 left = cs->bound_end - cs->bound_start;
    while (left > 0) {
        ssize_t r = g_mime_stream_read(cs, buf, left < (gint64)sizeof(buf) ? (size_t)left
                                                                             : sizeof(buf));
        if (r <= 0)
            return 0;
        left -= r;
        canon_feed(&k, (const unsigned char *)buf, (size_t)r);
        if (k.bad)
            return 0;
    }
    g_mime_stream_reset(cs);
    return canon_ok(&k);
}

lt_err_t lt_mime_attachment_range(const lt_mime_t *m, size_t i, uint64_t *offset,
                                  uint64_t *length, const char **encoding)
{
    const att_t *a = att(m, i);
    if (!a || !GMIME_IS_PART(a->obj) || GMIME_IS_MESSAGE_PART(a->obj))
        return LT_ERR_NOT_FOUND;
    GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(a->obj));
    GMimeStream *cs = w ? g_mime_data_wrapper_get_stream(w) : NULL;
    /* a range of the input itself: a substream of the parsed stream, bounded */
    if (!cs || cs->super_stream != m->stream || m->stream->super_stream ||
        m->stream->bound_start != 0 || cs->bound_start < 0 || cs->bound_end < cs->bound_start)
        return LT_ERR_NOT_FOUND;
    const char *enc;
    gint64 total = g_mime_stream_length(m->stream);
    if (total < 0 || cs->bound_end > total)
        return LT_ERR_NOT_FOUND;
    switch (g_mime_data_wrapper_get_encoding(w)) {
    case GMIME_CONTENT_ENCODING_BASE64:
        enc = "base64";
        break;
    case GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE:
        enc = "quoted-printable";
        break;
    case GMIME_CONTENT_ENCODING_DEFAULT:
    case GMIME_CONTENT_ENCODING_7BIT:
    case GMIME_CONTENT_ENCODING_8BIT:
    case GMIME_CONTENT_ENCODING_BINARY:
        enc = "binary";
        break;
    default: /* uuencode: decoded through its begin/end lines, kept as an object */
        return LT_ERR_NOT_FOUND;
    }
    if (strcmp(enc, "binary") && !range_canonical(cs, !strcmp(enc, "base64")))
        return LT_ERR_NOT_FOUND;
    *encoding = enc;
    *offset = (uint64_t)cs->bound_start;
    *length = (uint64_t)(cs->bound_end - cs->bound_start);
    return LT_OK;
}

lt_err_t lt_mime_decode(const char *encoding, const uint8_t *data, size_t len,
                        lt_mime_write_fn fn, void *opaque, char *errstr, size_t errstr_size)
{
    GMimeContentEncoding enc;
    if (encoding && !strcasecmp(encoding, "base64"))
        enc = GMIME_CONTENT_ENCODING_BASE64;
    else if (encoding && !strcasecmp(encoding, "quoted-printable"))
        enc = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
    else if (encoding && !strcasecmp(encoding, "binary"))
        enc = GMIME_CONTENT_ENCODING_BINARY;
    else
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "unknown transfer encoding %s",
                         encoding ? encoding : "(null)");
    if (!data && len)
        return lt_seterr(errstr, errstr_size, LT_ERR_INVALID, "no data");
    /* the same path as the attachment's own content: a data wrapper over the bytes */
    GMimeStream *src = g_mime_stream_mem_new_with_buffer(len ? (const char *)data : "", len);
    GMimeDataWrapper *w = g_mime_data_wrapper_new_with_stream(src, enc);
    g_object_unref(src);
    LtMimeCbStream *cb = cb_stream_new(fn, opaque);
    ssize_t r = g_mime_data_wrapper_write_to_stream(w, GMIME_STREAM(cb));
    lt_err_t err = cb->err;
    g_object_unref(cb);
    g_object_unref(w);
    if (err)
        return lt_seterr(errstr, errstr_size, err, "decode writer failed: %s", lt_err_name(err));
    if (r < 0)
        return lt_seterr(errstr, errstr_size, LT_ERR_TEMPORARY, "decoding failed");
    return LT_OK;
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
