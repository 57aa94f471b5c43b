/* Fuzz lt_mime_html_to_text: arbitrary bytes, cleaned the way lt_mime cleans
 * a body before it (valid UTF-8, no NUL, CRLF and lone CR as LF), as an HTML
 * body. Invariants (lt_mime_html.h, lt_mime.h's text body):
 *  - never a crash, leak or sanitizer report;
 *  - the text is valid UTF-8 without NUL or CR ("\n" line ends);
 *  - no line break at the end, never more than one empty line in a row;
 *  - never longer than its input plus 16 bytes (lt_mime's buffer cap for it:
 *    a longer text would be cut silently);
 *  - the same input gives the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lt_buf.h"
#include "lt_mime_charset.h"
#include "lt_mime_html.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int utf8_valid(const uint8_t *p, size_t n)
{
    lt_buf_t *b = lt_buf_new(n * 3 + 16);
    lt_mime_utf8_sanitize(p, n, b);
    int ok = lt_buf_len(b) == n && (n == 0 || !memcmp(lt_buf_data(b), p, n));
    lt_buf_destroy(b);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The cleaning of lt_mime_parse before the HTML step. */
    lt_buf_t *c = lt_buf_new(size * 3 + 16);
    size_t i = 0;
    while (i < size) {
        size_t s = i;
        while (i < size && data[i] != '\r' && data[i] != 0)
            i++;
        lt_mime_utf8_sanitize(data + s, i - s, c);
        if (i < size) {
            if (data[i] == 0)
                lt_buf_append(c, LT_MIME_REPLACEMENT, 3);
            else
                lt_buf_append(c, "\n", 1);
            if (data[i] == '\r' && i + 1 < size && data[i + 1] == '\n')
                i++;
            i++;
        }
    }
    /* An exact-size copy: ASan sees any read past the end. */
    size_t n = lt_buf_len(c);
    char *html = malloc(n ? n : 1);
    memcpy(html, lt_buf_data(c), n);
    lt_buf_destroy(c);

    lt_buf_t *out = lt_buf_new(4 * n + 64), *again = lt_buf_new(4 * n + 64);
    lt_mime_html_to_text(html, n, out);
    lt_mime_html_to_text(html, n, again);
    const uint8_t *t = lt_buf_data(out);
    size_t tl = lt_buf_len(out);
    ASSERT(tl == lt_buf_len(again) && (tl == 0 || !memcmp(t, lt_buf_data(again), tl)));
    ASSERT(tl <= n + 16);
    ASSERT(utf8_valid(t, tl));
    ASSERT(tl == 0 || t[tl - 1] != '\n');
    for (size_t k = 0; k < tl; k++) {
        ASSERT(t[k] != 0 && t[k] != '\r');
        ASSERT(!(k + 2 < tl && t[k] == '\n' && t[k + 1] == '\n' && t[k + 2] == '\n'));
    }
    lt_buf_destroy(out);
    lt_buf_destroy(again);
    free(html);
    return 0;
}
