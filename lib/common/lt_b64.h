/* lt_b64: the value of a base64 digit, for the decoders of the base64
 * variants the programs read (IMAP's modified UTF-7 of RFC 3501, Gmail's
 * base64url that also accepts the standard alphabet). The variants share
 * A-Z a-z 0-9 (0..61) and differ in the two last digits. */
#ifndef LT_B64_H
#define LT_B64_H

/* The value 0..63 of c, or -1 when c is not a digit. A character of
 * digit62 has the value 62, one of digit63 the value 63 (each a set of
 * the characters accepted, e.g. "+" and "," for modified UTF-7, "-+" and
 * "_/" for base64url read leniently); NUL is never a digit. */
int lt_b64_value(unsigned char c, const char *digit62, const char *digit63);

#endif
