#include "lt_mime_prescan.h"

#include <string.h>

void lt_mime_prescan_init(lt_mime_prescan_t *s, const lt_mime_limits_t *l)
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

static void prescan_ctype_char(lt_mime_prescan_t *s, uint8_t c)
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

static void prescan_end_line(lt_mime_prescan_t *s)
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

static void prescan_header_char(lt_mime_prescan_t *s, uint8_t c)
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

void lt_mime_prescan_feed(lt_mime_prescan_t *s, const uint8_t *p, size_t n)
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

lt_err_t lt_mime_prescan_result(const lt_mime_prescan_t *s, char *errstr, size_t errstr_size)
{
    if (!s->over)
        return LT_OK;
    return lt_seterr(errstr, errstr_size, LT_ERR_TOO_BIG,
                     "message structure over the caps (%s): %zu boundary-like lines (cap %zu), "
                     "%zu header lines (cap %zu), %zu header bytes (cap %zu) seen",
                     s->over, s->parts, s->max_parts, s->header_lines, s->max_header_lines,
                     s->header_bytes, s->max_header_bytes);
}
