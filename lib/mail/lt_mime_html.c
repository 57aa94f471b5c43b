#include "lt_mime_html.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lt_mime_charset.h"

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
    if (cp == '\t' || cp == '\n' || cp == '\f' || cp == '\r' || cp == ' ') {
        /* &#10; &#13; ...: white space like the literal character, collapsed
         * (never a CR in the text, nor line breaks past the block rule) */
        h->space = 1;
        return end + 1;
    }
    lt_buf_t *tmp = lt_buf_new(8);
    lt_mime_put_cp(tmp, cp);
    h_text(h, lt_buf_data(tmp), lt_buf_len(tmp));
    lt_buf_destroy(tmp);
    return end + 1;
}

void lt_mime_html_to_text(const char *s, size_t n, lt_buf_t *out)
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
