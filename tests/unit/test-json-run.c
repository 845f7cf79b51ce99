/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The run scanners (proto/json-run.h: steps of thirty-two bytes, then of sixteen, then single
 * bytes) against a byte at a time: random buffers of every length up to 80 with every byte
 * value, each in a buffer of exactly its size (so that ASan sees any read past the end); every
 * byte value at every offset of a step of each size and of the bytes after them. Runs in: tests.
 */

#include "harness.h"
#include "test-rnd.h"
#include "json-run.h"
#include "macro.h"

DEFINE_TEST_RND(0x2545f4914f6cdd1d)

static const unsigned char *ref_ascii(const unsigned char *p, const unsigned char *end) {
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
                p++;
        return p;
}

static const unsigned char *ref_unescaped(const unsigned char *p, const unsigned char *end, bool slash_plain) {
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && (slash_plain || *p != '/'))
                p++;
        return p;
}

TEST(runs_match_a_byte_at_a_time) {
        for (unsigned iter = 0; iter < 400000; iter++) {
                size_t n = rnd() % 81;
                _cleanup_free_ unsigned char *b = malloc(n ?: 1);
                unsigned odds = (unsigned) (rnd() % 64) + 1;

                ASSERT_NOT_NULL(b);
                /* Mostly plain bytes, one in odds anything at all. */
                for (size_t i = 0; i < n; i++) {
                        uint64_t x = rnd();

                        b[i] = x % odds == 0 ? (unsigned char) (x >> 8) : (unsigned char) (0x20 + (x >> 8) % 0x5f);
                }
                ASSERT_TRUE(json_run_ascii(b, b + n) == ref_ascii(b, b + n));
                ASSERT_TRUE(json_run_unescaped(b, b + n, true) == ref_unescaped(b, b + n, true));
                ASSERT_TRUE(json_run_unescaped(b, b + n, false) == ref_unescaped(b, b + n, false));
        }
}

TEST(every_byte_at_every_offset) {
        unsigned char b[56]; /* a step of thirty-two, one of sixteen, eight single bytes */

        for (unsigned c = 0; c < 256; c++)
                for (size_t at = 0; at < sizeof(b); at++) {
                        memset(b, 'A', sizeof(b));
                        b[at] = (unsigned char) c;
                        ASSERT_TRUE(json_run_ascii(b, b + sizeof(b)) == ref_ascii(b, b + sizeof(b)));
                        ASSERT_TRUE(json_run_unescaped(b, b + sizeof(b), true) == ref_unescaped(b, b + sizeof(b), true));
                        ASSERT_TRUE(json_run_unescaped(b, b + sizeof(b), false) ==
                                    ref_unescaped(b, b + sizeof(b), false));
                }
}

TEST_MAIN();
