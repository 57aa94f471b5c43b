#include "lt_provider.h"

#include <string.h>

const char *lt_provider_name(lt_provider_t p)
{
    switch (p) {
    case LT_PROVIDER_GMAIL:
        return "gmail";
    case LT_PROVIDER_IMAP:
        return "imap";
    }
    return NULL;
}

lt_err_t lt_provider_parse(const char *s, lt_provider_t *out)
{
    if (s && !strcmp(s, "gmail")) {
        *out = LT_PROVIDER_GMAIL;
        return LT_OK;
    }
    if (s && !strcmp(s, "imap")) {
        *out = LT_PROVIDER_IMAP;
        return LT_OK;
    }
    return LT_ERR_INVALID;
}
