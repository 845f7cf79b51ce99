/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The log rate limit (proto/ratelimit.h): a burst per interval, silence after it, a fresh
 * burst in the next interval with the count of what was dropped. Runs in: tests.
 */

#include "harness.h"
#include "ratelimit.h"

#define SEC 1000000ull

TEST(burst_then_silence_then_a_new_interval) {
        RateLimit r = RATELIMIT(10 * SEC, 3);
        uint64_t t0 = 5 * SEC;

        for (unsigned i = 0; i < 3; i++)
                ASSERT_TRUE(ratelimit_below_at(&r, t0 + i));
        for (unsigned i = 0; i < 100; i++)
                ASSERT_FALSE(ratelimit_below_at(&r, t0 + 9 * SEC));
        /* Just before the interval ends: still silent. */
        ASSERT_FALSE(ratelimit_below_at(&r, t0 + 10 * SEC - 1));
        ASSERT_TRUE(ratelimit_below_at(&r, t0 + 10 * SEC));
        ASSERT_EQ(ratelimit_take_dropped(&r), 101u);
        ASSERT_EQ(ratelimit_take_dropped(&r), 0u);
        ASSERT_TRUE(ratelimit_below_at(&r, t0 + 10 * SEC + 1));
        ASSERT_TRUE(ratelimit_below_at(&r, t0 + 10 * SEC + 2));
        ASSERT_FALSE(ratelimit_below_at(&r, t0 + 10 * SEC + 3));
}

TEST(first_call_at_time_zero_and_clock_going_back) {
        RateLimit r = RATELIMIT(SEC, 1);

        ASSERT_TRUE(ratelimit_below_at(&r, 0));
        ASSERT_FALSE(ratelimit_below_at(&r, 10));
        /* A clock earlier than the interval's start starts a new one rather than silencing
         * forever. */
        ASSERT_TRUE(ratelimit_below_at(&r, 50 * SEC));
        ASSERT_TRUE(ratelimit_below_at(&r, 40 * SEC));
        ASSERT_EQ(ratelimit_take_dropped(&r), 1u);
}

TEST(real_clock) {
        RateLimit r = RATELIMIT(3600 * SEC, 2);

        ASSERT_TRUE(ratelimit_below(&r));
        ASSERT_TRUE(ratelimit_below(&r));
        ASSERT_FALSE(ratelimit_below(&r));
}

TEST_MAIN();
