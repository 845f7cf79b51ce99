/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* format_u64() (proto/macro.h) against snprintf() with PRIu64. Runs in: tests. */

#include <inttypes.h>
#include <stdio.h>

#include "harness.h"
#include "macro.h"

static void check(uint64_t v) {
        char want[32], buf[DECIMAL_U64_MAX];

        snprintf(want, sizeof(want), "%" PRIu64, v);
        ASSERT_STREQ(format_u64(v, buf), want);
}

TEST(edges) {
        static const uint64_t values[] = { 0, 1, 9, 10, 99, 100, UINT32_MAX, (uint64_t) INT64_MAX,
                                           (uint64_t) INT64_MAX + 1, UINT64_MAX - 1, UINT64_MAX };

        for (size_t i = 0; i < ELEMENTSOF(values); i++)
                check(values[i]);
        /* Every power of ten and its neighbours: each number of digits. */
        for (uint64_t p = 1; p <= UINT64_MAX / 10; p *= 10) {
                check(p - 1);
                check(p);
                check(p + 1);
        }
}

TEST(random) {
        uint64_t x = 0x9e3779b97f4a7c15;

        for (unsigned i = 0; i < 100000; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                check(x >> (x % 64));
        }
}

TEST_MAIN();
