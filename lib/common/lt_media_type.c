#include "lt_media_type.h"

#include <stddef.h>
#include <string.h>

static size_t ctype_name(const char *s)
{
    size_t n = 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
          (s[0] >= '0' && s[0] <= '9')))
        return 0;
    while (s[n] && n <= LT_MEDIA_TYPE_NAME_MAX &&
           ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
            (s[n] >= '0' && s[n] <= '9') || strchr("!#$&^_.+-", s[n])))
        n++;
    return n;
}

const char *lt_media_type_safe(const char *declared)
{
    if (!declared)
        return LT_MEDIA_TYPE_FALLBACK;
    size_t t = ctype_name(declared);
    if (!t || t > LT_MEDIA_TYPE_NAME_MAX || declared[t] != '/')
        return LT_MEDIA_TYPE_FALLBACK;
    size_t s = ctype_name(declared + t + 1);
    if (!s || s > LT_MEDIA_TYPE_NAME_MAX || declared[t + 1 + s])
        return LT_MEDIA_TYPE_FALLBACK;
    return declared;
}
