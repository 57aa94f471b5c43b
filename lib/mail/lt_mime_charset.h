/* lt_mime_charset: text made clean UTF-8 for lt_mime. Bytes in a declared
 * charset become UTF-8 (iconv through gmime's charset names; Windows-1252
 * and Latin-1 as fallbacks); bytes that are not valid UTF-8 become U+FFFD;
 * NUL never passes. Used by lt_mime.c and lt_mime_html.c only. */
#ifndef LT_MIME_CHARSET_H
#define LT_MIME_CHARSET_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"

/* U+FFFD REPLACEMENT CHARACTER in UTF-8 (3 bytes). */
#define LT_MIME_REPLACEMENT "\xEF\xBF\xBD"

/* Append code point cp as UTF-8 (U+FFFD for NUL, surrogates and values
 * past U+10FFFF). Fails only when out is full. */
lt_err_t lt_mime_put_cp(lt_buf_t *out, uint32_t cp);
/* Copy valid UTF-8, each invalid byte becoming U+FFFD. */
void lt_mime_utf8_sanitize(const uint8_t *p, size_t n, lt_buf_t *out);
/* Bytes in charset cs (NULL or unknown: UTF-8 if valid, else Windows-1252)
 * as UTF-8. */
void lt_mime_to_utf8(const char *cs, const uint8_t *p, size_t n, lt_buf_t *out);
/* Cut s (length *len) to at most max bytes at a character boundary; 1 when
 * cut. */
int lt_mime_utf8_cut(char *s, size_t *len, size_t max);
/* A header string made clean: valid UTF-8, CR/LF as spaces, at most max
 * bytes (cut: *flags gets LT_MIME_F_HEADER_TRUNCATED). NULL in, NULL out;
 * the caller frees. */
char *lt_mime_clean_string(const char *s, size_t max, unsigned *flags);

#endif
