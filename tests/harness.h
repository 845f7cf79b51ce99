/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small in-house test harness: TEST(name) { ... } registers a test; the test binary's
 * main() (TEST_MAIN()) runs all of them, or those named on the command line, in a forked
 * child each so a crash fails one test and not the binary, and so (in builds with
 * LeakSanitizer) does memory the test lost by its end. ASSERT_* macros print where and why
 * and abort the test. A test that cannot run here calls SKIP("why") (exit 77, which meson
 * reports as skipped when every test in the binary skips).
 */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* HAVE_ASAN: built with AddressSanitizer (gcc says so one way, clang another), which owns
 * malloc and free and checks leaks at exit. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#endif

/* HAVE_LSAN: LeakSanitizer is linked in (ASan carries it; clang's -fsanitize=leak alone too), so
 * the runner can ask it for a leak check at the end of each test case. */
#if defined(HAVE_ASAN)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(leak_sanitizer)
#define HAVE_LSAN 1
#endif
#endif

typedef struct TestCase {
        const char *name;
        void (*func)(void);
} TestCase;

#define TEST_MAX 512
extern TestCase test_cases[TEST_MAX];
extern size_t test_n_cases;

#define TEST(n)                                                                                    \
        static void test_##n(void);                                                                \
        __attribute__((constructor)) static void test_register_##n(void) {                         \
                if (test_n_cases < TEST_MAX)                                                       \
                        test_cases[test_n_cases] = (TestCase){ #n, test_##n };                     \
                test_n_cases++; /* past TEST_MAX: test_main() fails */                             \
        }                                                                                          \
        static void test_##n(void)

#define TEST_FAIL(...)                                                                             \
        do {                                                                                       \
                fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                    \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
                _exit(1);                                                                          \
        } while (0)

#define SKIP(...)                                                                                  \
        do {                                                                                       \
                fprintf(stderr, "skipped: ");                                                      \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
                _exit(77);                                                                         \
        } while (0)

#define ASSERT_TRUE(expr)                                                                          \
        do {                                                                                       \
                if (!(expr))                                                                       \
                        TEST_FAIL("expected true: %s", #expr);                                     \
        } while (0)
#define ASSERT_FALSE(expr)                                                                         \
        do {                                                                                       \
                if (expr)                                                                          \
                        TEST_FAIL("expected false: %s", #expr);                                    \
        } while (0)
#define ASSERT_NULL(expr) ASSERT_TRUE((expr) == NULL)
#define ASSERT_NOT_NULL(expr) ASSERT_TRUE((expr) != NULL)

#define ASSERT_OK(expr)                                                                            \
        ({                                                                                         \
                typeof(expr) _r_ = (expr);                                                         \
                if (_r_ < 0)                                                                       \
                        TEST_FAIL("%s failed: %s", #expr, strerror((int) -_r_));                   \
                _r_;                                                                               \
        })

#define ASSERT_ERRNO(expr, e)                                                                      \
        do {                                                                                       \
                long long _r_ = (long long) (expr);                                                \
                if (_r_ != -(long long) (e))                                                       \
                        TEST_FAIL("%s: expected -%s, got %lld (%s)", #expr, #e, _r_,               \
                                  _r_ < 0 ? strerror((int) -_r_) : "success");                     \
        } while (0)

#define ASSERT_EQ(a, b)                                                                            \
        do {                                                                                       \
                long long _a_ = (long long) (a), _b_ = (long long) (b);                            \
                if (_a_ != _b_)                                                                    \
                        TEST_FAIL("%s == %s: %lld != %lld", #a, #b, _a_, _b_);                     \
        } while (0)
#define ASSERT_NE(a, b)                                                                            \
        do {                                                                                       \
                long long _a_ = (long long) (a), _b_ = (long long) (b);                            \
                if (_a_ == _b_)                                                                    \
                        TEST_FAIL("%s != %s: both %lld", #a, #b, _a_);                             \
        } while (0)
#define ASSERT_GE(a, b)                                                                            \
        do {                                                                                       \
                long long _a_ = (long long) (a), _b_ = (long long) (b);                            \
                if (!(_a_ >= _b_))                                                                 \
                        TEST_FAIL("%s >= %s: %lld < %lld", #a, #b, _a_, _b_);                      \
        } while (0)
#define ASSERT_LE(a, b)                                                                            \
        do {                                                                                       \
                long long _a_ = (long long) (a), _b_ = (long long) (b);                            \
                if (!(_a_ <= _b_))                                                                 \
                        TEST_FAIL("%s <= %s: %lld > %lld", #a, #b, _a_, _b_);                      \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                         \
        do {                                                                                       \
                const char *_a_ = (a), *_b_ = (b);                                                 \
                if (!_a_ || !_b_ || strcmp(_a_, _b_) != 0)                                         \
                        TEST_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, _a_ ?: "(null)",          \
                                  _b_ ?: "(null)");                                                \
        } while (0)

#define ASSERT_MEMEQ(a, b, n)                                                                      \
        do {                                                                                       \
                if (memcmp((a), (b), (n)) != 0)                                                    \
                        TEST_FAIL("%s and %s differ in their first %zu bytes", #a, #b,            \
                                  (size_t) (n));                                                   \
        } while (0)

int test_main(int argc, char *argv[]);

/* Called by a case (or a process it forked) for a directory tree it made (mkdtemp()): the runner
 * removes it once the case has passed or was skipped and its child is gone, and leaves it in
 * place for a look when the case failed. At most TEST_REMOVE_MAX per case. */
#define TEST_REMOVE_MAX 8
void test_remove_at_end(const char *path);
/* Removes what was remembered so far, for a program that forks its own children (test_main()
 * does this itself after each case). */
void test_remove_now(void);

/* The fds this process has open now (/proc/self/fd's entries, the directory's own while it is
 * read included: counts to compare, not absolute). */
size_t test_count_fds(void);

#define TEST_MAIN()                                                                                \
        TestCase test_cases[TEST_MAX];                                                             \
        size_t test_n_cases;                                                                       \
        int main(int argc, char *argv[]) {                                                         \
                return test_main(argc, argv);                                                      \
        }
