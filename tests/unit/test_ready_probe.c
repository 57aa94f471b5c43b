/* lt_ready_probe without a server: not ready before the first assignment
 * (naming the group), then a refused connection reads "not ready" with a
 * "Postgres: " reason, the result is cached between runs, and the password
 * never shows in the reason. */
#include <string.h>

#include "lt_ready_probe.h"
#include "lt_test.h"

int main(void)
{
    char why[512] = "";
    /* port 1 on loopback: refused at once, no server involved */
    lt_ready_probe_t *p = lt_ready_probe_new("host=127.0.0.1 port=1 dbname=lattice user=lattice",
                                             "pw-not-in-errors", "lattice-test-readiness",
                                             "g-test");
    CHECK(p != NULL);
    CHECK_INT(lt_ready_probe_check(p, why, sizeof(why)), 0);
    CHECK_STR(why, "no partition assignment yet (joining consumer group g-test)");
    lt_ready_probe_assigned(p);
    CHECK_INT(lt_ready_probe_check(p, why, sizeof(why)), 0);
    CHECK_MSG(!strncmp(why, "Postgres: ", 10) && strlen(why) > 10, "why: %s", why);
    CHECK_MSG(!strstr(why, "pw-not-in-errors"), "password in reason: %s", why);
    char first[512];
    memcpy(first, why, sizeof(first));
    why[0] = 0;
    CHECK_INT(lt_ready_probe_check(p, why, sizeof(why)), 0);
    CHECK_STR(why, first); /* cached answer, same reason */
    lt_ready_probe_destroy(p);
    lt_ready_probe_destroy(NULL);

    CHECK_INT(lt_ready_probe_check(NULL, why, sizeof(why)), 0);
    CHECK_STR(why, "starting");

    p = lt_ready_probe_new("host=127.0.0.1 port=1", NULL, NULL, NULL); /* no group: no wait */
    CHECK_INT(lt_ready_probe_check(p, why, sizeof(why)), 0);
    CHECK(!strncmp(why, "Postgres: ", 10));
    lt_ready_probe_destroy(p);
    return lt_test_done("ready_probe");
}
