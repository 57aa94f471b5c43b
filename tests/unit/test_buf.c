/* lt_buf: the cap, NUL termination, consume and truncate. */
#include <string.h>

#include "lt_buf.h"
#include "lt_test.h"

int main(void)
{
    lt_buf_t *b = lt_buf_new(8);
    CHECK_INT(lt_buf_append(b, "abcdef", 6), LT_OK);
    CHECK_STR(lt_buf_str(b), "abcdef");
    /* past the cap: refused, content unchanged */
    CHECK_INT(lt_buf_append(b, "xyz", 3), LT_ERR_TOO_BIG);
    CHECK_STR(lt_buf_str(b), "abcdef");
    CHECK_INT(lt_buf_appendf(b, "%d", 12345), LT_ERR_TOO_BIG);
    CHECK_STR(lt_buf_str(b), "abcdef");
    CHECK_INT(lt_buf_append(b, "gh", 2), LT_OK);
    CHECK_INT((int)lt_buf_len(b), 8);
    /* truncate keeps a prefix, still a C string; longer lengths change nothing */
    lt_buf_truncate(b, 20);
    CHECK_STR(lt_buf_str(b), "abcdefgh");
    lt_buf_truncate(b, 3);
    CHECK_STR(lt_buf_str(b), "abc");
    CHECK_INT((int)lt_buf_len(b), 3);
    CHECK_INT(lt_buf_appendf(b, ",%s", "d"), LT_OK);
    CHECK_STR(lt_buf_str(b), "abc,d");
    lt_buf_consume(b, 2);
    CHECK_STR(lt_buf_str(b), "c,d");
    lt_buf_truncate(b, 0);
    CHECK_STR(lt_buf_str(b), "");
    CHECK_INT((int)lt_buf_len(b), 0);
    lt_buf_destroy(b);
    return lt_test_done("test_buf");
}
