/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The benchmarks' percentiles (bench-util.h): nearest rank, on known arrays. Runs in: tests
 * (built with the benchmarks).
 */

#include <stdlib.h>

#include "bench-util.h"
#include "harness.h"
#include "macro.h"

/* n values 1000, 2000, ..., n * 1000 ns (1 µs apart), shuffled: stats_of() sorts. */
static Stats stats_of_ramp(size_t n) {
        _cleanup_free_ uint64_t *ns = new0(uint64_t, n);

        ASSERT_NOT_NULL(ns);
        for (size_t i = 0; i < n; i++)
                ns[i] = (uint64_t) ((i * 37) % n + 1) * 1000;
        return stats_of(ns, n);
}

TEST(no_values) {
        Stats s = stats_of_ramp(0);

        ASSERT_EQ(s.n, 0u);
        ASSERT_TRUE(s.p50_us == 0 && s.p99_us == 0 && s.mean_us == 0);
}

TEST(one_value_is_every_percentile) {
        Stats s = stats_of_ramp(1);

        ASSERT_TRUE(s.p50_us == 1.0 && s.p99_us == 1.0 && s.mean_us == 1.0);
}

TEST(two_values_lower_median_upper_p99) {
        Stats s = stats_of_ramp(2);

        ASSERT_TRUE(s.p50_us == 1.0);
        ASSERT_TRUE(s.p99_us == 2.0);
}

TEST(hundred_values_p99_is_not_the_maximum) {
        Stats s = stats_of_ramp(100);

        /* Ranks 50 and 99 of 1..100 µs. */
        ASSERT_TRUE(s.p50_us == 50.0);
        ASSERT_TRUE(s.p99_us == 99.0);
        ASSERT_TRUE(s.mean_us == 50.5);
}

TEST(hundred_and_one_values) {
        Stats s = stats_of_ramp(101);

        /* Ranks ceil(50.5) = 51 and ceil(99.99) = 100. */
        ASSERT_TRUE(s.p50_us == 51.0);
        ASSERT_TRUE(s.p99_us == 100.0);
}

TEST(thousand_values) {
        Stats s = stats_of_ramp(1000);

        ASSERT_TRUE(s.p50_us == 500.0);
        ASSERT_TRUE(s.p99_us == 990.0);
}

TEST_MAIN();
