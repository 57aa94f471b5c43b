/* lt_provider: the mail providers, one enum for commands, accounts and
 * events. The values are the symbol order of the Avro enum MailProvider in
 * schemas/mail.raw.v1.avsc (the event codec writes them as they are). */
#ifndef LT_PROVIDER_H
#define LT_PROVIDER_H

#include "lt_err.h"

typedef enum {
    LT_PROVIDER_GMAIL = 0,
    LT_PROVIDER_IMAP = 1,
} lt_provider_t;

/* "gmail" / "imap"; NULL for a value out of range. */
const char *lt_provider_name(lt_provider_t p);
/* Parse "gmail" / "imap" (exact, lower case); LT_ERR_INVALID otherwise. */
lt_err_t lt_provider_parse(const char *s, lt_provider_t *out);

#endif
