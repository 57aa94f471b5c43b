/* lt_media_type: a declared media type made safe to pass on (an S3 PUT's
 * Content-Type, a parsed part's type). Pure; thread-safe. */
#ifndef LT_MEDIA_TYPE_H
#define LT_MEDIA_TYPE_H

/* The content type an object is stored with (the PUT's Content-Type):
 * `declared` when it is a bare media type "type/subtype" of RFC 6838
 * restricted names (a letter or digit, then [A-Za-z0-9!#$&^_.+-]), each
 * name 1..63 bytes; otherwise (NULL, parameters, spaces, controls, too
 * long) "application/octet-stream". Never NULL. A message declares its
 * parts' types, so this keeps outside data from S3 request headers. */
#define LT_MEDIA_TYPE_NAME_MAX 63
#define LT_MEDIA_TYPE_FALLBACK "application/octet-stream"
const char *lt_media_type_safe(const char *declared);

#endif
