#include "lt_test.h"

#include <stdlib.h>

int lt_test_failures = 0;
int lt_test_checks = 0;

const char *lt_test_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr,
                "%s is not set: integration tests run against the local stack; "
                "run them with `make test` (or `eval \"$(deploy/local/stack env)\"` first)\n",
                name);
        exit(1);
    }
    return v;
}

int lt_test_done(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, lt_test_checks, lt_test_failures);
    if (lt_test_checks == 0) {
        fprintf(stderr, "%s: no check ran\n", name);
        return 1;
    }
    return lt_test_failures ? 1 : 0;
}
