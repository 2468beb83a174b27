/* test.h: the test harness. Each tests/test_<module>.c is its own program: it defines
 * `static void run_tests(void)` calling TEST(fn) for each test function, includes this header,
 * and gets a main() that prints one line per failed check and ends with "N passed, N failed".
 * tests/run.sh runs every test program and CLI script and sums their closing lines.
 *
 * A test function passes when none of its CHECKs failed. CHECKs never abort: the test goes on,
 * so one run shows every failure. LOAM_ASSERT stays on in test builds (no NDEBUG).
 */
#ifndef LOAM_TEST_H
#define LOAM_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failed_checks;
static int t_passed, t_failed;
static const char *t_current = "";

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            t_failed_checks++;                                                                     \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, t_current,       \
                    #cond);                                                                        \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_I64(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            t_failed_checks++;                                                                     \
            fprintf(stderr, "%s:%d: %s: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__,     \
                    t_current, #a, #b, a_, b_);                                                    \
        }                                                                                          \
    } while (0)

#define CHECK_CLOSE(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b);                                                 \
        if (!(fabs(a_ - b_) <= (double)(tol))) {                                                   \
            t_failed_checks++;                                                                     \
            fprintf(stderr, "%s:%d: %s: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__,        \
                    __LINE__, t_current, #a, #b, (double)(tol), a_, b_);                           \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            t_failed_checks++;                                                                     \
            fprintf(stderr, "%s:%d: %s: %s == %s failed: \"%s\" vs \"%s\"\n", __FILE__, __LINE__, \
                    t_current, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                    \
        }                                                                                          \
    } while (0)

/* CHECK_OK(call): the call returns LOAM_OK; otherwise print the err message of `e`. */
#define CHECK_OK(call, e)                                                                          \
    do {                                                                                           \
        int s_ = (int)(call);                                                                      \
        if (s_ != 0) {                                                                             \
            t_failed_checks++;                                                                     \
            fprintf(stderr, "%s:%d: %s: %s returned %d: %s\n", __FILE__, __LINE__, t_current,     \
                    #call, s_, (e).msg);                                                           \
        }                                                                                          \
    } while (0)

#define TEST(fn)                                                                                   \
    do {                                                                                           \
        t_current = #fn;                                                                           \
        int before_ = t_failed_checks;                                                             \
        fn();                                                                                      \
        if (t_failed_checks == before_) t_passed++;                                                \
        else {                                                                                     \
            t_failed++;                                                                            \
            fprintf(stderr, "FAIL %s\n", #fn);                                                     \
        }                                                                                          \
    } while (0)

static void run_tests(void);

/* Directory of the source tree's tests/ (for fixtures); set by the Makefile. */
#ifndef LOAM_TEST_DIR
#define LOAM_TEST_DIR "tests"
#endif

int main(void) {
    run_tests();
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

#endif /* LOAM_TEST_H */
