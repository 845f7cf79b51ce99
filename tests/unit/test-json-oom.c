/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json_parse_strict() when memory runs out (proto/json-build.c builds the tree): each
 * allocation of a parse failing in turn, json-c's included, gives -ENOMEM, no tree and nothing
 * left allocated. And json_object_add() and its kin: a value that could not be made is -ENOMEM,
 * never a null in the message. malloc(), calloc() and realloc() fail at a chosen call
 * (counting-allocator.h). Runs in: tests.
 */

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counting-allocator.h"
#include "harness.h"
#include "json-util.h"
#include "macro.h"
#include "without-tcache.h"

static size_t allocated_bytes(void) {
        return mallinfo2().uordblks;
}

/* glibc allocates the (empty) thread cache with the first malloc(): before any count. */
__attribute__((constructor)) static void allocator_started(void) {
        free(strdup("started"));
}

/* A failed allocation must show, and a free in allocated_bytes(), or the test sees nothing. */
TEST(failing_allocation_and_free_show) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        size_t before = allocated_bytes();
        char *p;

        alloc_calls = 0;
        alloc_fail_at = 1;
        p = malloc(100);
        __asm__ volatile("" : : "r"(p) : "memory");
        alloc_fail_at = 0;
        ASSERT_NULL(p);
        p = malloc(100);
        __asm__ volatile("" : : "r"(p) : "memory");
        ASSERT_NOT_NULL(p);
        ASSERT_TRUE(allocated_bytes() > before);
        free(p);
        ASSERT_EQ(allocated_bytes(), before);
}

TEST(out_of_memory_fails_whole) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        /* Every kind of value, escaped strings and a key that needs the key buffer to grow. */
        static const char text[] =
                "{\"method\":\"io.tsmd.Guest.Request\",\"parameters\":{\"request\":\"QUJD\\u00e9\\n\","
                "\"list\":[1,-2,18446744073709551615,1.5e3,true,false,null,{},[[]]],"
                "\"a-key-longer-than-the-first-buffer-a-key-longer-than-the-first-buffer-a-key-longer-than-the-"
                "first-buffer-a-key-longer-than-the-first-buffer-a-key-longer-than-the-first-buffer-a-key-longer\":\"x\"}}";
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        unsigned failures = 0;

        ASSERT_OK(json_tokener_new_strict(8, &tok));
        for (unsigned k = 1;; k++) {
                json_object *o = NULL;
                size_t before = allocated_bytes();
                int r;

                alloc_calls = 0;
                alloc_fail_at = k;
                r = json_parse_strict(tok, 8, SIZE_MAX, text, strlen(text), &o);
                alloc_fail_at = 0;
                if (r >= 0) {
                        /* k is past the last allocation of a parse: all failures seen. */
                        ASSERT_NOT_NULL(o);
                        ASSERT_STREQ(json_get_string(json_object_object_get(o, "parameters"), "request"),
                                     "QUJD\xc3\xa9\n");
                        json_object_put(o);
                        break;
                }
                if (r != -ENOMEM)
                        TEST_FAIL("allocation #%u failing: %s, not ENOMEM", k, strerror(-r));
                ASSERT_NULL(o);
                if (allocated_bytes() != before)
                        TEST_FAIL("allocation #%u failing leaked %zd bytes", k, (ssize_t) (allocated_bytes() - before));
                failures++;
        }
        ASSERT_GE(failures, 20u);
}

/* One member (or element) made as the replies make theirs, the value allocated in the call. */
static int add_one(json_object *o, json_object *a, unsigned kind) {
        switch (kind) {
        case 0:
                return json_object_add(o, "key", json_object_new_string("value"));
        case 1:
                return json_object_add_literal(o, "key", json_object_new_int64(INT64_MAX));
        case 2:
                return json_object_add_string_or_null(o, "key", "value");
        default:
                return json_array_append(a, json_object_new_string("value"));
        }
}

TEST(value_out_of_memory_is_no_null) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        for (unsigned kind = 0; kind < 4; kind++) {
                unsigned failures = 0;

                for (unsigned k = 1;; k++) {
                        _cleanup_json_ json_object *o = json_object_new_object(), *a = json_object_new_array();
                        size_t before;
                        int r;

                        ASSERT_NOT_NULL(o);
                        ASSERT_NOT_NULL(a);
                        before = allocated_bytes();
                        alloc_calls = 0;
                        alloc_fail_at = k;
                        r = add_one(o, a, kind);
                        alloc_fail_at = 0;
                        if (r >= 0) {
                                /* k is past the last allocation: all failures seen. */
                                ASSERT_TRUE(kind == 3 ? json_object_array_get_idx(a, 0) != NULL :
                                                        json_object_object_get(o, "key") != NULL);
                                break;
                        }
                        if (r != -ENOMEM)
                                TEST_FAIL("kind %u, allocation #%u failing: %s, not ENOMEM", kind, k, strerror(-r));
                        ASSERT_FALSE(json_object_object_get_ex(o, "key", NULL));
                        ASSERT_EQ(json_object_array_length(a), 0u);
                        if (allocated_bytes() != before)
                                TEST_FAIL("kind %u, allocation #%u failing leaked %zd bytes", kind, k,
                                          (ssize_t) (allocated_bytes() - before));
                        failures++;
                }
                ASSERT_GE(failures, 1u);
        }
}

/* Nulls on purpose: key=null. */
TEST(intended_null) {
        _cleanup_json_ json_object *o = json_object_new_object();

        ASSERT_NOT_NULL(o);
        ASSERT_OK(json_object_add_null(o, "a"));
        ASSERT_OK(json_object_add_string_or_null(o, "b", NULL));
        ASSERT_OK(json_object_add_string_or_null(o, "c", "x"));
        ASSERT_STREQ(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), "{\"a\":null,\"b\":null,\"c\":\"x\"}");
}

TEST_MAIN();
