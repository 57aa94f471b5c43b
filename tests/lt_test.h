/* A very small test framework: CHECK macros that count failures and print
 * where, and a summary line. A test executable returns lt_test_done(). */
#ifndef LT_TEST_H
#define LT_TEST_H

#include <stdio.h>
#include <string.h>

extern int lt_test_failures;
extern int lt_test_checks;

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        lt_test_checks++;                                                                         \
        if (!(cond)) {                                                                            \
            lt_test_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);              \
        }                                                                                         \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                      \
    do {                                                                                          \
        lt_test_checks++;                                                                         \
        if (!(cond)) {                                                                            \
            lt_test_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

#define CHECK_STR(a, b)                                                                           \
    do {                                                                                          \
        const char *lt_a_ = (a), *lt_b_ = (b);                                                    \
        lt_test_checks++;                                                                         \
        if (!lt_a_ || !lt_b_ || strcmp(lt_a_, lt_b_)) {                                           \
            lt_test_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s: \"%s\" vs \"%s\"\n", __FILE__,   \
                    __LINE__, #a, #b, lt_a_ ? lt_a_ : "(null)", lt_b_ ? lt_b_ : "(null)");        \
        }                                                                                         \
    } while (0)

#define CHECK_INT(a, b)                                                                           \
    do {                                                                                          \
        long long lt_a_ = (long long)(a), lt_b_ = (long long)(b);                                 \
        lt_test_checks++;                                                                         \
        if (lt_a_ != lt_b_) {                                                                     \
            lt_test_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK_INT failed: %s == %s: %lld vs %lld\n", __FILE__,       \
                    __LINE__, #a, #b, lt_a_, lt_b_);                                              \
        }                                                                                         \
    } while (0)

/* Required environment for integration tests: abort the test (failure, not
 * skip) with a clear message when the stack's variables are missing. */
const char *lt_test_env(const char *name);

/* Print the summary and return the exit status (0 only if all passed and at
 * least one check ran). */
int lt_test_done(const char *name);

#endif
