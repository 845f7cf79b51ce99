/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmctl audit's --since=/--until= times (client/time-parse.c): every form, in UTC and in a zone
 * with summer time (a day of 23 hours), with the clock fixed by passing "now"; and what is none
 * of them, or out of range, refused. Runs in: tests.
 */

#include <stdlib.h>
#include <time.h>

#include "harness.h"
#include "macro.h"
#include "time-parse.h"

#define SEC UINT64_C(1000000)
/* 2024-05-06T07:08:09.123456Z, a Monday. */
#define NOW (UINT64_C(1714979289) * SEC + 123456)

static void set_tz(const char *tz) {
        ASSERT_OK(setenv("TZ", tz, 1));
        tzset();
}

static void expect(const char *s, uint64_t now, uint64_t want) {
        uint64_t got = 0;
        int r = time_parse(s, now, &got);

        if (r < 0)
                TEST_FAIL("'%s' refused: %s", s, strerror(-r));
        if (got != want)
                TEST_FAIL("'%s' is %" PRIu64 ", expected %" PRIu64, s, got, want);
}

static void expect_refused(const char *s, uint64_t now, int error) {
        uint64_t got = 42;
        int r = time_parse(s, now, &got);

        if (r != -error)
                TEST_FAIL("'%s': %d (%" PRIu64 "), expected -%s", s, r, got, strerrorname_np(error));
        ASSERT_EQ(got, 42u); /* untouched */
}

TEST(every_form_in_utc) {
        set_tz("UTC");
        expect("now", NOW, NOW);
        expect("today", NOW, UINT64_C(1714953600) * SEC);
        expect("yesterday", NOW, UINT64_C(1714867200) * SEC);
        expect("tomorrow", NOW, UINT64_C(1715040000) * SEC);
        expect("2024-05-06", NOW, UINT64_C(1714953600) * SEC);
        expect("2024-05-06 07:08", NOW, UINT64_C(1714979280) * SEC);
        expect("2024-05-06 07:08:09", NOW, UINT64_C(1714979289) * SEC);
        /* With a T, as tsmctl audit shows a time (less its offset). */
        expect("2024-05-06T07:08:09", NOW, UINT64_C(1714979289) * SEC);
        expect("2024-05-06T07:08", NOW, UINT64_C(1714979280) * SEC);
        /* With its offset, as tsmctl audit shows it, or as the record has it (--json): the same
         * instant whatever TZ says. */
        expect("2024-05-06T07:08:09+00:00", NOW, UINT64_C(1714979289) * SEC);
        expect("2024-05-06T09:08:09+02:00", NOW, UINT64_C(1714979289) * SEC);
        expect("2024-05-06T01:38:09-05:30", NOW, UINT64_C(1714979289) * SEC);
        expect("2024-05-06T07:08:09Z", NOW, UINT64_C(1714979289) * SEC);
        expect("2024-05-06T07:08:09.123456Z", NOW, UINT64_C(1714979289) * SEC + 123456);
        expect("2024-05-06T07:08:09.5+00:00", NOW, UINT64_C(1714979289) * SEC + 500000);
        expect("1970-01-01T01:00:00+01:00", NOW, 0);
        expect("2024-02-29 23:59:59", NOW, (UINT64_C(1709251200) - 1) * SEC);
        expect("1970-01-01", NOW, 0);
        expect("@1714979289", NOW, UINT64_C(1714979289) * SEC);
        expect("@0", NOW, 0);
        expect("@9223372036854", NOW, UINT64_C(9223372036854) * SEC);
        expect("-15min", NOW, NOW - 900 * SEC);
        expect("-2h", NOW, NOW - 7200 * SEC);
        expect("-30s", NOW, NOW - 30 * SEC);
        expect("-1d", NOW, NOW - 86400 * SEC);
        expect("-1w", NOW, NOW - 7 * 86400 * SEC);
        expect("-5m", NOW, NOW - 300 * SEC);
        expect("-3minutes", NOW, NOW - 180 * SEC);
        expect("-1day", NOW, NOW - 86400 * SEC);
        expect("-10sec", NOW, NOW - 10 * SEC);
        expect("-0s", NOW, NOW);
        expect("+1h", NOW, NOW + 3600 * SEC);
        /* The last microsecond a Varlink int holds, from either side. */
        expect("+9223372036854s", UINT64_C(775807), (uint64_t) INT64_MAX);
        expect("now", (uint64_t) INT64_MAX, (uint64_t) INT64_MAX);
        /* The clock is the caller's. */
        expect("today", 0, 0);
        expect("-1s", SEC, 0);
}

TEST(every_unit) {
        static const struct {
                const char *unit;
                uint64_t sec;
        } units[] = {
                { "s", 1 },           { "sec", 1 },          { "second", 1 },  { "seconds", 1 },
                { "m", 60 },          { "min", 60 },         { "minute", 60 }, { "minutes", 60 },
                { "h", 3600 },        { "hour", 3600 },      { "hours", 3600 }, { "d", 86400 },
                { "day", 86400 },     { "days", 86400 },     { "w", 604800 },  { "week", 604800 },
                { "weeks", 604800 },
        };

        set_tz("UTC");
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                char s[32];

                ASSERT_LE((size_t) snprintf(s, sizeof(s), "-3%s", units[i].unit), sizeof(s) - 1);
                expect(s, NOW, NOW - 3 * units[i].sec * SEC);
                s[0] = '+';
                expect(s, NOW, NOW + 3 * units[i].sec * SEC);
        }
}

TEST(local_time_with_summer_time) {
        /* Central Europe: UTC+1, UTC+2 from the last Sunday of March, 02:00, to the last of
         * October, 03:00 (a POSIX rule: no zone files needed). */
        set_tz("CET-1CEST,M3.5.0,M10.5.0/3");
        expect("2024-05-06", NOW, UINT64_C(1714946400) * SEC);
        expect("2024-05-06 07:08:09", NOW, (UINT64_C(1714979289) - 7200) * SEC);
        expect("2024-05-06T07:08:09+02:00", NOW, (UINT64_C(1714979289) - 7200) * SEC);
        expect("2024-05-06T07:08:09Z", NOW, UINT64_C(1714979289) * SEC);
        expect("2024-01-15 12:00", NOW, UINT64_C(1705316400) * SEC);
        /* 2024-03-31 12:00Z, the day the clocks go forward: it has 23 hours. */
        expect("today", UINT64_C(1711886400) * SEC, UINT64_C(1711839600) * SEC);
        expect("yesterday", UINT64_C(1711886400) * SEC, UINT64_C(1711753200) * SEC);
        expect("tomorrow", UINT64_C(1711886400) * SEC, UINT64_C(1711922400) * SEC);
        set_tz("UTC");
}

TEST(what_is_no_time_is_refused) {
        static const char *const bad[] = {
                "", " ", "Now", "now ", " today", "Yesterday", "2024-5-06", "2024-05-6", "24-05-06",
                "2024-05-06T", "2024-05-06T07", "2024-05-06t07:08:09", "2024-05-06 7:08", "2024-05-06 07:8",
                "2024-05-06 07:08:9",
                "2024-05-06 07", "2024-05-06 07:08:09.5", "2024-05-06 07:08:09Z", "2024-05-06 ", "2024/05/06",
                "2024-13-01", "2024-00-01", "2024-01-00", "2024-01-32", "2024-02-30", "2023-02-29",
                "2024-04-31", "2024-05-06 24:00", "2024-05-06 07:60", "2024-05-06 07:08:60", "@", "@-1", "@+1",
                "@1.5", "@ 1", "@1 ", "@0x10", "-", "+", "-15", "+15", "-min", "-15x", "-15mins", "-15 min",
                "--15min", "-+15min", "-15min ", "-1.5h", "-M", "1h", "15min ago", "-15MIN", "-1y", "-1M",
                /* ':' follows '9' in ASCII; a 'T' only for the space between date and time. */
                "@1:", "@:", "2024-05-06 07T08", "2024-05-06T07:08T09", "2024-05-06T07T08",
                /* An offset only after the seconds of the T form; whole, and in range. */
                "2024-05-06 07:08:09+00:00", "2024-05-06T07:08+00:00", "2024-05-06+00:00",
                "2024-05-06T07:08:09+0000", "2024-05-06T07:08:09+00", "2024-05-06T07:08:09+24:00",
                "2024-05-06T07:08:09+00:60", "2024-05-06T07:08:09z", "2024-05-06T07:08:09.Z",
                "2024-05-06T07:08:09.1234567Z", "2024-05-06T07:08:09.5", "2024-05-06T07:08:09Z ",
                "2024-05-06T07:08:09+00:00:00", "2024-02-30T07:08:09Z", "2024-05-06T24:00:00Z",
        };

        set_tz("UTC");
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                expect_refused(bad[i], NOW, EINVAL);
}

TEST(what_is_out_of_range_is_refused) {
        set_tz("UTC");
        expect_refused("1969-12-31", NOW, ERANGE);
        expect_refused("1969-12-31 23:59:59", NOW, ERANGE);
        expect_refused("1970-01-01T00:59:59+01:00", NOW, ERANGE);
        expect_refused("@9223372036855", NOW, ERANGE);
        expect_refused("@99999999999999999999999", NOW, ERANGE);
        expect_refused("-2d", 86400 * SEC, ERANGE);
        expect_refused("-1s", 0, ERANGE);
        expect_refused("yesterday", 3600 * SEC, ERANGE);
        expect_refused("+9223372036854775807s", NOW, ERANGE);
        expect_refused("+106751991d", NOW, ERANGE);
        expect_refused("now", UINT64_MAX, ERANGE);
}

TEST_MAIN();
