/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Strings serialized a run at a time (proto/json-escape.c) against json-c's own escaping, byte
 * for byte, with and without JSON_C_TO_STRING_NOSLASHESCAPE, alone and inside objects: every
 * byte value at every offset of the sixteen-byte steps, and random strings of all kinds.
 * Runs in: tests.
 */

#include "harness.h"
#include "test-rnd.h"
#include "json-escape.h"
#include "json-util.h"

DEFINE_TEST_RND(0x9e3779b97f4a7c15)

static const int flag_sets[] = {
        JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
        JSON_C_TO_STRING_PLAIN,
        JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_PRETTY,
};

/* The same string serialized by json-c and by the fast serializer, alone and as a member. */
static void check_same(const char *s, size_t n) {
        for (size_t f = 0; f < ELEMENTSOF(flag_sets); f++) {
                _cleanup_json_ json_object *ref = json_object_new_string_len(s, (int) n);
                _cleanup_json_ json_object *fast = json_object_new_string_fast(s, n);
                _cleanup_json_ json_object *ref_obj = json_object_new_object();
                _cleanup_json_ json_object *fast_obj = json_object_new_object();
                const char *a, *b;
                size_t la, lb;

                ASSERT_NOT_NULL(ref);
                ASSERT_NOT_NULL(fast);
                ASSERT_EQ(json_object_get_string_len(fast), (int) n);
                ASSERT_MEMEQ(json_object_get_string(fast), s, n);

                a = json_object_to_json_string_length(ref, flag_sets[f], &la);
                b = json_object_to_json_string_length(fast, flag_sets[f], &lb);
                if (la != lb || memcmp(a, b, la) != 0)
                        TEST_FAIL("flags %d, %zu bytes: json-c %s, fast %s", flag_sets[f], n, a, b);

                ASSERT_OK(json_object_add(ref_obj, "k/\"", json_object_get(ref)));
                ASSERT_OK(json_object_add(ref_obj, "n", json_object_new_int(1)));
                ASSERT_OK(json_object_add(fast_obj, "k/\"", json_object_get(fast)));
                ASSERT_OK(json_object_add(fast_obj, "n", json_object_new_int(1)));
                a = json_object_to_json_string_length(ref_obj, flag_sets[f], &la);
                b = json_object_to_json_string_length(fast_obj, flag_sets[f], &lb);
                if (la != lb || memcmp(a, b, la) != 0)
                        TEST_FAIL("flags %d, member of %zu bytes: json-c %s, fast %s", flag_sets[f], n, a, b);
        }
}

TEST(every_byte_at_every_offset) {
        char s[40];

        /* One special byte in a run of plain ones, at each position relative to the steps. */
        for (unsigned c = 0; c < 256; c++)
                for (size_t len = 1; len <= 20; len++)
                        for (size_t at = 0; at < len; at++) {
                                memset(s, 'A', len);
                                s[at] = (char) c;
                                check_same(s, len);
                        }
}

TEST(random_strings) {
        static const char specials[] = "\"\\/\b\f\n\r\t\x01\x1f\x7f\x80\xc3\xa9\xe2\x82\xac\xff ";
        char s[300];

        for (unsigned iter = 0; iter < 100000; iter++) {
                size_t n = rnd() % (iter % 10 == 0 ? sizeof(s) : 24);
                unsigned density = (unsigned) (rnd() % 4);

                for (size_t i = 0; i < n; i++) {
                        uint64_t x = rnd();

                        if (density == 0)
                                s[i] = (char) x; /* any byte */
                        else if (x % (density * 8) == 0)
                                s[i] = specials[(x >> 8) % (sizeof(specials) - 1)];
                        else
                                s[i] = (char) ('+' + (x >> 8) % 80); /* base64-ish, '/' included */
                }
                check_same(s, n);
        }
}

TEST(empty_and_nul) {
        check_same("", 0);
        check_same("\0", 1);
        check_same("a\0b\0\0c", 6);
}

TEST_MAIN();
