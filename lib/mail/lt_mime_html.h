/* lt_mime_html: the text of an HTML body, for lt_mime when a message has
 * no text/plain part. Tags, comments, script and style are dropped; the
 * common entities decoded; white space collapsed; block tags become line
 * breaks (at most one empty line in a row, none at the end). */
#ifndef LT_MIME_HTML_H
#define LT_MIME_HTML_H

#include <stddef.h>

#include "lt_buf.h"

/* Append the text of the n bytes of clean UTF-8 HTML at s to out. */
void lt_mime_html_to_text(const char *s, size_t n, lt_buf_t *out);

#endif
