/* lt_gmail_tokens: the process-wide cache of Gmail access tokens — a token
 * is served until its end, never after; keys separate grants; a 401 drops
 * only the token that was rejected; a full cache forgets expired tokens
 * first, then the one that expires soonest. */
#include <string.h>

#include "lt_gmail_tokens.h"
#include "lt_test.h"

int main(void)
{
    char access[LT_GMAIL_TOKEN_MAX + 1];
    int64_t until = 0;
    uint8_t ka[LT_GMAIL_TOKEN_KEY_SIZE], kb[LT_GMAIL_TOKEN_KEY_SIZE], kc[LT_GMAIL_TOKEN_KEY_SIZE],
        ka2[LT_GMAIL_TOKEN_KEY_SIZE];
    lt_gmail_tokens_key("https://oauth2.example/token", "cid", "rt-a", "me", ka);
    lt_gmail_tokens_key("https://oauth2.example/token", "cid", "rt-b", "me", kb);
    lt_gmail_tokens_key("https://oauth2.example/token", "cid", "rt-c", "me", kc);
    lt_gmail_tokens_key("https://oauth2.example/token", "cid", "rt-a", "me", ka2);
    CHECK(!memcmp(ka, ka2, sizeof(ka)));
    CHECK(memcmp(ka, kb, sizeof(ka)) != 0);
    /* the parts are separated: ("ab", "c") is not ("a", "bc") */
    uint8_t s1[LT_GMAIL_TOKEN_KEY_SIZE], s2[LT_GMAIL_TOKEN_KEY_SIZE];
    lt_gmail_tokens_key("u", "ab", "c", "me", s1);
    lt_gmail_tokens_key("u", "a", "bc", "me", s2);
    CHECK(memcmp(s1, s2, sizeof(s1)) != 0);
    /* NULL parts are "" */
    lt_gmail_tokens_key(NULL, NULL, NULL, NULL, s1);
    lt_gmail_tokens_key("", "", "", "", s2);
    CHECK(!memcmp(s1, s2, sizeof(s1)));

    lt_gmail_tokens_t *t = lt_gmail_tokens_new(2);
    CHECK_INT(lt_gmail_tokens_get(t, ka, 0, access, &until), -1);
    CHECK_STR(access, "");

    /* served until its end, not at or after it */
    lt_gmail_tokens_put(t, ka, "tokA1", 1000, 0);
    CHECK_INT(lt_gmail_tokens_get(t, ka, 999, access, &until), 0);
    CHECK_STR(access, "tokA1");
    CHECK_INT(until, 1000);
    CHECK_INT(lt_gmail_tokens_get(t, kb, 10, access, &until), -1);
    CHECK_INT(lt_gmail_tokens_get(t, ka, 1000, access, &until), -1);
    CHECK_INT(lt_gmail_tokens_count(t), 0); /* the expired one is gone */

    /* a newer token replaces the older one of the same grant */
    lt_gmail_tokens_put(t, ka, "tokA1", 5000, 0);
    lt_gmail_tokens_put(t, ka, "tokA2", 6000, 10);
    CHECK_INT(lt_gmail_tokens_count(t), 1);
    CHECK_INT(lt_gmail_tokens_get(t, ka, 20, access, &until), 0);
    CHECK_STR(access, "tokA2");

    /* a 401 on the old token does not drop the newer one */
    lt_gmail_tokens_drop(t, ka, "tokA1");
    CHECK_INT(lt_gmail_tokens_get(t, ka, 20, access, &until), 0);
    CHECK_STR(access, "tokA2");
    lt_gmail_tokens_drop(t, ka, "tokA2");
    CHECK_INT(lt_gmail_tokens_get(t, ka, 20, access, &until), -1);

    /* nothing kept: empty, too long, already expired */
    lt_gmail_tokens_put(t, ka, "", 5000, 0);
    lt_gmail_tokens_put(t, ka, "x", 5, 5);
    static char long_tok[LT_GMAIL_TOKEN_MAX + 2];
    memset(long_tok, 'x', LT_GMAIL_TOKEN_MAX + 1);
    lt_gmail_tokens_put(t, ka, long_tok, 5000, 0);
    CHECK_INT(lt_gmail_tokens_count(t), 0);
    /* the longest that fits is kept whole */
    long_tok[LT_GMAIL_TOKEN_MAX] = 0;
    lt_gmail_tokens_put(t, ka, long_tok, 5000, 0);
    CHECK_INT(lt_gmail_tokens_get(t, ka, 1, access, &until), 0);
    CHECK_INT((long long)strlen(access), LT_GMAIL_TOKEN_MAX);

    /* full (capacity 2): the soonest to expire goes */
    lt_gmail_tokens_put(t, ka, "tokA", 9000, 0);
    lt_gmail_tokens_put(t, kb, "tokB", 3000, 0);
    lt_gmail_tokens_put(t, kc, "tokC", 8000, 0);
    CHECK_INT(lt_gmail_tokens_count(t), 2);
    CHECK_INT(lt_gmail_tokens_get(t, kb, 1, access, &until), -1);
    CHECK_INT(lt_gmail_tokens_get(t, ka, 1, access, &until), 0);
    CHECK_INT(lt_gmail_tokens_get(t, kc, 1, access, &until), 0);
    /* full with an expired entry: that one goes, not the soonest live one */
    lt_gmail_tokens_put(t, kb, "tokB", 20000, 8500);
    CHECK_INT(lt_gmail_tokens_get(t, ka, 8600, access, &until), 0);
    CHECK_INT(lt_gmail_tokens_get(t, kb, 8600, access, &until), 0);
    CHECK_STR(access, "tokB");
    CHECK_INT(lt_gmail_tokens_get(t, kc, 7000, access, &until), -1);

    lt_gmail_tokens_destroy(t);
    lt_gmail_tokens_destroy(NULL);
    return lt_test_done("test_gmail_tokens");
}
