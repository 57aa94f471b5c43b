/* lt_mime_prescan: a streaming, over-counting estimate of what gmime would
 * build from an input, run by lt_mime before it parses, so that a small
 * input cannot make gmime allocate gigabytes. Header blocks are: the top
 * one, the one after each "--" line, and one more after a block whose
 * Content-Type says message/ (or every part of a message that has a
 * multipart/digest anywhere). */
#ifndef LT_MIME_PRESCAN_H
#define LT_MIME_PRESCAN_H

#include <stddef.h>
#include <stdint.h>

#include "lt_err.h"
#include "lt_mime.h"

/* The scan's state, a plain value (on the caller's stack). */
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
} lt_mime_prescan_t;

/* Start a scan against the caps of l (max_parts, max_header_lines,
 * max_header_bytes). */
void lt_mime_prescan_init(lt_mime_prescan_t *s, const lt_mime_limits_t *l);
/* Feed the next n bytes of the input. */
void lt_mime_prescan_feed(lt_mime_prescan_t *s, const uint8_t *p, size_t n);
/* LT_OK, or LT_ERR_TOO_BIG naming the cap the input went over. */
lt_err_t lt_mime_prescan_result(const lt_mime_prescan_t *s, char *errstr, size_t errstr_size);

#endif
