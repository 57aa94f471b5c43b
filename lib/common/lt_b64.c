#include "lt_b64.h"

#include <string.h>

int lt_b64_value(unsigned char c, const char *digit62, const char *digit63)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == 0)
        return -1;
    if (strchr(digit62, c))
        return 62;
    if (strchr(digit63, c))
        return 63;
    return -1;
}
