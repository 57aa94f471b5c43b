/* lt_mime: one mail message parsed for its headers, text body and
 * attachment manifest (gmime 3.2 underneath; see docs/mime.md).
 *
 * The input is outside data: any byte sequence up to limits.max_input gives
 * either LT_OK and a message (possibly with no headers, no text and no
 * attachments) or LT_ERR_TOO_BIG / LT_ERR_INVALID / LT_ERR_NOT_FOUND for the
 * input itself; parsing never crashes or hangs. A message that is not MIME
 * at all is still a message: no attachments, its body as text.
 *
 * Process setup: gmime keeps global library state (type system, charset
 * tables). main() calls lt_mime_global_init() once before the first parse
 * and lt_mime_global_shutdown() once after the last lt_mime_destroy(). These
 * two are the only global state of the module and belong to gmime.
 *
 * Ownership: an lt_mime_t owns all it returns; every const char * returned
 * is UTF-8 (invalid bytes replaced by U+FFFD, no NUL inside), valid until
 * lt_mime_destroy(). An lt_mime_t is used by one thread at a time; distinct
 * lt_mime_t may be used in parallel. */
#ifndef LT_MIME_H
#define LT_MIME_H

#include <stddef.h>
#include <stdint.h>

#include "lt_buf.h"
#include "lt_err.h"

typedef struct lt_mime_s lt_mime_t;

/* Caps, a plain value carrier. A zero field means "the default". */
typedef struct {
    size_t max_input;       /* raw message bytes; more: LT_ERR_TOO_BIG. 64 MiB */
    size_t max_depth;       /* multipart levels walked (1..256); deeper parts ignored. 32 */
    size_t max_attachments; /* attachments listed; more are ignored. 1000 */
    size_t max_text;        /* bytes of the UTF-8 text body. 1 MiB */
    size_t max_header;      /* bytes of each decoded header string. 64 KiB */
    size_t max_list;        /* addresses per field, entries of References. 1000 */
    /* Structure caps checked by a streaming pre-scan before gmime parses
     * (gmime builds an object per part, header and address, ~0.5-1.5 KiB
     * each): over any of them, the parse fails with LT_ERR_TOO_BIG. */
    size_t max_parts;        /* lines starting with "--" (boundary-like). 20000 */
    size_t max_header_lines; /* lines in header blocks, all parts. 50000 */
    size_t max_header_bytes; /* bytes in header blocks, all parts. 1 MiB */
    /* 1: the text body is not extracted (no charset conversion, no HTML to
     * text): lt_mime_text() is "" and lt_mime_text_source() NULL, the body
     * part is still chosen (lt_mime_text_part_id(), and it is not an
     * attachment). For callers that only want headers and attachments. */
    int no_text;
} lt_mime_limits_t;

#define LT_MIME_DEFAULT_MAX_INPUT ((size_t)64 << 20)
#define LT_MIME_DEFAULT_MAX_DEPTH 32
#define LT_MIME_DEFAULT_MAX_ATTACHMENTS 1000
#define LT_MIME_DEFAULT_MAX_TEXT ((size_t)1 << 20)
#define LT_MIME_DEFAULT_MAX_HEADER ((size_t)64 << 10)
#define LT_MIME_DEFAULT_MAX_LIST 1000
#define LT_MIME_DEFAULT_MAX_PARTS 20000
#define LT_MIME_DEFAULT_MAX_HEADER_LINES 50000
#define LT_MIME_DEFAULT_MAX_HEADER_BYTES ((size_t)1 << 20)

/* Fill *l with the defaults above. */
void lt_mime_limits_default(lt_mime_limits_t *l);

/* Once per process, from main() only (wrap g_mime_init/g_mime_shutdown). */
void lt_mime_global_init(void);
void lt_mime_global_shutdown(void);

/* Parse the file at path (read through a file stream: the file is not
 * loaded into memory; attachment content is read from the file again on
 * demand, so the file must stay unchanged until lt_mime_destroy()).
 * limits may be NULL (defaults). On LT_OK *out is a new message the caller
 * destroys; otherwise *out is NULL and errstr says why:
 * LT_ERR_NOT_FOUND (no such file), LT_ERR_TOO_BIG (over max_input or a
 * structure cap), LT_ERR_INVALID (not a readable regular file),
 * LT_ERR_TEMPORARY (read error). */
lt_err_t lt_mime_parse_file(const char *path, const lt_mime_limits_t *limits, lt_mime_t **out,
                            char *errstr, size_t errstr_size);

/* Parse len bytes at data. The bytes are copied once; the caller's buffer
 * may be freed when this returns. Errors: LT_ERR_TOO_BIG (size or
 * structure cap), LT_ERR_INVALID. */
lt_err_t lt_mime_parse_mem(const uint8_t *data, size_t len, const lt_mime_limits_t *limits,
                           lt_mime_t **out, char *errstr, size_t errstr_size);

void lt_mime_destroy(lt_mime_t *m);

/* What was cut or skipped because of a cap (bit set) — the result is still
 * usable, but incomplete. */
enum {
    LT_MIME_F_TEXT_TRUNCATED = 1 << 0,   /* text body cut at max_text */
    LT_MIME_F_DEPTH_CAPPED = 1 << 1,     /* parts deeper than max_depth ignored */
    LT_MIME_F_TOO_MANY_PARTS = 1 << 2,   /* attachments past max_attachments ignored */
    LT_MIME_F_HEADER_TRUNCATED = 1 << 3, /* a header string or list was cut */
    LT_MIME_F_CTYPE_REPLACED = 1 << 4,   /* an attachment's declared Content-Type was
                                            not a bounded media type: reported as
                                            application/octet-stream */
};
unsigned lt_mime_flags(const lt_mime_t *m);

/* ---- Headers (top-level message) ---- */

/* Message-ID without the angle brackets; NULL if missing or empty. */
const char *lt_mime_message_id(const lt_mime_t *m);
/* Subject, RFC 2047 decoded (raw 8-bit: UTF-8 if valid, else
 * Windows-1252); NULL if missing. */
const char *lt_mime_subject(const lt_mime_t *m);
/* Date as milliseconds since the epoch; 0 if missing or unparseable. */
int64_t lt_mime_date_ms(const lt_mime_t *m);
/* First message id of In-Reply-To, without <>; NULL if missing. */
const char *lt_mime_in_reply_to(const lt_mime_t *m);
/* Message ids of References (without <>), in order. */
size_t lt_mime_reference_count(const lt_mime_t *m);
const char *lt_mime_reference(const lt_mime_t *m, size_t i);

typedef enum {
    LT_MIME_FROM = 0,
    LT_MIME_TO,
    LT_MIME_CC,
    LT_MIME_REPLY_TO,
} lt_mime_field_t;

/* The field as one display string ("Name" <a@b>, c@d); NULL if the field is
 * missing or holds no address. */
const char *lt_mime_addr_display(const lt_mime_t *m, lt_mime_field_t f);
/* The mailboxes of the field, groups flattened. name is NULL when there is
 * none; email is never NULL for i < count (may be "" for a broken one). */
size_t lt_mime_addr_count(const lt_mime_t *m, lt_mime_field_t f);
const char *lt_mime_addr_name(const lt_mime_t *m, lt_mime_field_t f, size_t i);
const char *lt_mime_addr_email(const lt_mime_t *m, lt_mime_field_t f, size_t i);

/* Any top-level header by name (case-insensitive): the first occurrence,
 * unfolded and RFC 2047 decoded, as a new string the caller free()s; NULL if
 * absent. Capped at max_header bytes. */
char *lt_mime_header_dup(const lt_mime_t *m, const char *name);

/* ---- Text body ---- */

/* The text body in UTF-8 with "\n" line ends, at most max_text bytes; never
 * NULL ("" when there is none). *len (may be NULL) gets its length. */
const char *lt_mime_text(const lt_mime_t *m, size_t *len);
/* Where the text came from: "text/plain", "text/html" (tags stripped) or
 * NULL (no text body). */
const char *lt_mime_text_source(const lt_mime_t *m);
/* attachment_id-style part path of the text body part, NULL if none. */
const char *lt_mime_text_part_id(const lt_mime_t *m);

/* ---- Attachments (rule in docs/mime.md), in MIME order ---- */

size_t lt_mime_attachment_count(const lt_mime_t *m);
/* Stable id: the IMAP part path ("1", "2.1", ...). Never NULL. */
const char *lt_mime_attachment_id(const lt_mime_t *m, size_t i);
/* Decoded file name (RFC 2231 / RFC 2047); NULL if none. For an attached
 * message without one: "<subject>.eml" or "message.eml". Not path-safe. */
const char *lt_mime_attachment_filename(const lt_mime_t *m, size_t i);
/* "type/subtype", lower case, a bounded media type (lt_media_type_safe:
 * anything else declared is "application/octet-stream" and sets
 * LT_MIME_F_CTYPE_REPLACED). Never NULL. */
const char *lt_mime_attachment_content_type(const lt_mime_t *m, size_t i);
/* "attachment", "inline" (lower case, as sent) or NULL if no header. */
const char *lt_mime_attachment_disposition(const lt_mime_t *m, size_t i);
/* Content-ID without <>; NULL if none. */
const char *lt_mime_attachment_content_id(const lt_mime_t *m, size_t i);
/* Size in bytes and SHA-256 (64 lower-case hex) of the decoded content. */
uint64_t lt_mime_attachment_size(const lt_mime_t *m, size_t i);
const char *lt_mime_attachment_sha256(const lt_mime_t *m, size_t i);

/* Receives the decoded content in chunks; a non-LT_OK return stops the
 * stream and is returned by lt_mime_attachment_write(). */
typedef lt_err_t (*lt_mime_write_fn)(void *opaque, const uint8_t *data, size_t len);

/* Stream the decoded content of attachment i to fn (transfer encoding
 * undone; the same bytes as size/sha256 describe). LT_ERR_NOT_FOUND if
 * i >= count; the callback's code if it failed; LT_ERR_TEMPORARY if
 * reading the source failed. */
lt_err_t lt_mime_attachment_write(lt_mime_t *m, size_t i, lt_mime_write_fn fn, void *opaque,
                                  char *errstr, size_t errstr_size);

/* The decoded content appended to out (its cap applies: LT_ERR_TOO_BIG). */
lt_err_t lt_mime_attachment_read(lt_mime_t *m, size_t i, lt_buf_t *out, char *errstr,
                                 size_t errstr_size);

/* Where attachment i's content lies in the parsed input, still transfer-
 * encoded: the decoded content (size/sha256 above) is exactly
 * lt_mime_decode(*encoding, input[*offset .. *offset + *length)). *encoding
 * is "base64", "quoted-printable" or "binary" (7bit, 8bit, binary and none:
 * the bytes as they are). LT_ERR_NOT_FOUND when the content is not one
 * such range of the input: an attached message (message/rfc822: its content
 * is the message written out again), uuencode, a part gmime did not keep
 * as a range of the input, or encoded content that is not well-formed (base64
 * with characters outside its alphabet or a partial last quantum;
 * quoted-printable with "=" not followed by two hex digits or a line break,
 * whitespace before a line break, a lone CR): there, decoders differ, so
 * only the bytes gmime decoded are certain. Reads the range once. The
 * outputs are set only on LT_OK. */
lt_err_t lt_mime_attachment_range(const lt_mime_t *m, size_t i, uint64_t *offset,
                                  uint64_t *length, const char **encoding);

/* Decode len bytes of transfer-encoded content (as lt_mime_attachment_range
 * names them: "base64", "quoted-printable", "binary"; case-insensitive) with
 * the decoder the attachment's size and sha256 were computed with, in
 * chunks to fn. LT_ERR_INVALID for another encoding; fn's code if it failed. */
lt_err_t lt_mime_decode(const char *encoding, const uint8_t *data, size_t len,
                        lt_mime_write_fn fn, void *opaque, char *errstr, size_t errstr_size);

#endif
