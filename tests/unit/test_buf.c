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

    /* a buffer for secrets: lt_buf_wipe zeroes every byte it holds (the
     * memory is still the buffer's, so it can be looked at), growth keeps the
     * content, reset wipes too */
    lt_buf_t *s = lt_buf_new_secret(1 << 20);
    CHECK_INT(lt_buf_appendf(s, "refresh_token=%s", "1//rt-secret"), LT_OK);
    for (int i = 0; i < 100; i++) /* several reallocations */
        CHECK_INT(lt_buf_append(s, "0123456789abcdef", 16), LT_OK);
    CHECK_INT((int)lt_buf_len(s), 26 + 1600);
    CHECK(!strncmp(lt_buf_str(s), "refresh_token=1//rt-secret0123", 30));
    const uint8_t *p = lt_buf_data(s);
    size_t len = lt_buf_len(s), nonzero = 0;
    lt_buf_wipe(s);
    for (size_t i = 0; i <= len; i++)
        nonzero += p[i] != 0;
    CHECK_INT((int)nonzero, 0);
    CHECK_INT((int)lt_buf_len(s), 0);
    CHECK_STR(lt_buf_str(s), "");
    CHECK_INT(lt_buf_append(s, "again", 5), LT_OK);
    p = lt_buf_data(s);
    lt_buf_reset(s);
    CHECK(p[0] == 0 && p[4] == 0);
    lt_buf_destroy(s); /* wipes before it frees */
    /* lt_buf_wipe on an ordinary buffer: also zeroes it */
    b = lt_buf_new(64);
    CHECK_INT(lt_buf_append(b, "secret", 6), LT_OK);
    p = lt_buf_data(b);
    lt_buf_wipe(b);
    CHECK(p[0] == 0 && p[5] == 0);
    lt_buf_destroy(b);
    return lt_test_done("test_buf");
}
