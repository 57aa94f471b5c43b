#include "lt_err.h"

#include <stdarg.h>
#include <stdio.h>

const char *lt_err_name(lt_err_t err)
{
    switch (err) {
    case LT_OK:
        return "ok";
    case LT_ERR_TEMPORARY:
        return "temporary";
    case LT_ERR_REAUTH:
        return "reauth";
    case LT_ERR_RESYNC:
        return "resync";
    case LT_ERR_FINAL:
        return "final";
    case LT_ERR_INVALID:
        return "invalid";
    case LT_ERR_NOT_FOUND:
        return "not_found";
    case LT_ERR_TOO_BIG:
        return "too_big";
    }
    return "unknown";
}

lt_err_t lt_seterr(char *errstr, size_t errstr_size, lt_err_t err, const char *fmt, ...)
{
    if (errstr && errstr_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return err;
}
