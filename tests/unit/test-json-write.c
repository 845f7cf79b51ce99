/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json-c trees serialized into a kept buffer (proto/json-write.c) against json-c's own
 * json_object_to_json_string_ext(JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), byte
 * for byte: random trees of every type json-c has (int64 and uint64 at their limits, doubles
 * with and without kept text, strings of any bytes by json-c and by json_object_new_string_fast(),
 * keys that need escapes, NULL members and elements), trees of parsed texts, the replies tsmd
 * sends, and the buffer kept and trimmed across messages. Runs in: tests.
 */

#include <math.h>

#include "harness.h"
#include "test-rnd.h"
#include "json-escape.h"
#include "json-raw.h"
#include "json-util.h"
#include "json-write.h"

#define FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

DEFINE_TEST_RND(0x2545f4914f6cdd1d)

/* o as json-c writes it and as json_write() does, into t (kept by the caller). */
static void check_same_in(json_object *o, JsonText *t) {
        const char *ref;
        size_t n;

        ref = json_object_to_json_string_length(o, FLAGS, &n);
        ASSERT_NOT_NULL(ref);
        ASSERT_OK(json_write(o, t));
        if (t->len != n || memcmp(t->data, ref, n) != 0)
                TEST_FAIL("json-c wrote %s, json_write() %.*s", ref, (int) t->len, t->data);
        ASSERT_EQ(t->data[t->len], '\0');
}

static void check_same(json_object *o) {
        _cleanup_(json_text_done) JsonText t = {};

        check_same_in(o, &t);
}

static void random_bytes(char *s, size_t n) {
        static const char specials[] = "\"\\/\b\f\n\r\t\x01\x1f\x7f\x80\xc3\xa9\xe2\x82\xac\xff {}[],:";

        for (size_t i = 0; i < n; i++) {
                uint64_t x = rnd();

                s[i] = x % 4 == 0 ? (char) (x >> 8) : x % 4 == 1 ? specials[(x >> 8) % (sizeof(specials) - 1)]
                                                                 : (char) ('+' + (x >> 8) % 80);
        }
}

static int64_t random_int64(void) {
        static const int64_t edges[] = { 0, 1, -1, 9, 10, -10, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1,
                                         INT32_MAX, INT32_MIN };
        uint64_t x = rnd();

        if (x % 3 == 0)
                return edges[(x >> 8) % ELEMENTSOF(edges)];
        if (x % 3 == 1)
                return (int64_t) (rnd() % 100000) - 50000;
        return (int64_t) rnd();
}

static json_object *random_tree(unsigned depth);

static json_object *random_scalar(void) {
        static const double doubles[] = { 0.0, -0.0, 1.0, -1.5, 0.1, 1e300, -1e-300, 123456789.0, 3.141592653589793 };
        char s[64];
        size_t n;

        switch (rnd() % 9) {
        case 0:
                return NULL; /* JSON's null, as json-c keeps it */
        case 1:
                return json_object_new_boolean(rnd() % 2);
        case 2:
                return json_object_new_int64(random_int64());
        case 3:
                /* Above INT64_MAX json-c keeps a uint64; below, the same digits either way. */
                return json_object_new_uint64(rnd() % 2 ? UINT64_MAX - rnd() % 1000 : rnd() >> 1);
        case 4:
                return json_object_new_double(rnd() % 2 ? doubles[rnd() % ELEMENTSOF(doubles)]
                                                        : (double) (int64_t) rnd() / (double) (rnd() | 1));
        case 5:
                return json_object_new_double_s(2.5, "2.50e0"); /* the text kept, as parsed */
        case 6:
                n = (size_t) (rnd() % sizeof(s));
                random_bytes(s, n);
                return json_object_new_string_fast(s, n);
        default:
                n = (size_t) (rnd() % sizeof(s));
                random_bytes(s, n);
                return json_object_new_string_len(s, (int) n);
        }
}

static json_object *random_tree(unsigned depth) {
        uint64_t kind = depth == 0 ? 2 : rnd() % 3;
        size_t n = (size_t) (rnd() % 6);
        json_object *o, *v;

        if (kind == 2)
                return random_scalar();
        if (kind == 0) {
                o = json_object_new_array();
                ASSERT_NOT_NULL(o);
                for (size_t i = 0; i < n; i++)
                        ASSERT_OK(json_object_array_add(o, random_tree(depth - 1)));
                return o;
        }
        o = json_object_new_object();
        ASSERT_NOT_NULL(o);
        for (size_t i = 0; i < n; i++) {
                char key[16];
                size_t k = (size_t) (rnd() % (sizeof(key) - 1));

                random_bytes(key, k);
                key[k] = '\0'; /* json-c's keys are C strings: any other byte */
                v = random_tree(depth - 1);
                ASSERT_OK(v ? json_object_add(o, key, v) : json_object_add_null(o, key));
        }
        return o;
}

TEST(random_trees) {
        _cleanup_(json_text_done) JsonText kept = {};

        for (unsigned i = 0; i < 20000; i++) {
                _cleanup_json_ json_object *o = random_tree((unsigned) (rnd() % 5));

                check_same(o);
                /* The same buffer for every message, as a server keeps it. */
                check_same_in(o, &kept);
        }
}

TEST(scalars_at_the_limits) {
        json_object *values[] = {
                json_object_new_int64(INT64_MIN),   json_object_new_int64(INT64_MAX),
                json_object_new_int64(0),           json_object_new_int64(-1),
                json_object_new_uint64(UINT64_MAX), json_object_new_uint64((uint64_t) INT64_MAX),
                json_object_new_uint64((uint64_t) INT64_MAX + 1),
                json_object_new_int(INT32_MIN),     json_object_new_boolean(true),
                json_object_new_boolean(false),     json_object_new_double(NAN),
                json_object_new_double(INFINITY),   json_object_new_double(-INFINITY),
                json_object_new_double(1e22),       json_object_new_string(""),
                json_object_new_string_len("a\0b", 3),
        };

        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                _cleanup_json_ json_object *arr = json_object_new_array();

                ASSERT_NOT_NULL(values[i]);
                check_same(values[i]);
                ASSERT_OK(json_object_array_add(arr, values[i]));
                ASSERT_OK(json_object_array_add(arr, NULL));
                check_same(arr);
        }
        check_same(NULL);
}

TEST(parsed_texts) {
        static const char *texts[] = {
                "{\"method\":\"io.tsmd.Guest.GuestRequest\",\"parameters\":{\"context\":1,\"vdeviceId\":2,"
                "\"scope\":\"debug-write\",\"request\":\"AAEC/+8=\",\"maxResponseSize\":65536}}",
                "{\"a\":[1,-2,3.25,1e5,-0.0,18446744073709551615,-9223372036854775808,true,false,null],"
                "\"b\\u00e9\\/\\\"\":{\"\":{},\"x\":[]},\"c\":\"\\u0001\\n\\t\\ud83d\\ude00\"}",
                "[[[[]]],{},\"\",0]",
        };

        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
                _cleanup_json_ json_object *strict = NULL, *lenient = NULL;

                ASSERT_OK(json_tokener_new_strict(8, &tok));
                ASSERT_OK(json_parse_strict(tok, 8, SIZE_MAX, texts[i], strlen(texts[i]), &strict));
                check_same(strict);
                lenient = json_tokener_parse(texts[i]);
                ASSERT_NOT_NULL(lenient);
                check_same(lenient);
        }
}

/* A guest request's reply as tsmd builds it, with a 4 KiB response's base64. */
TEST(guest_request_reply) {
        _cleanup_json_ json_object *m = json_object_new_object();
        json_object *p = json_object_new_object();
        char b64[5464];

        for (size_t i = 0; i < sizeof(b64); i++)
                b64[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[rnd() % 64];
        ASSERT_NOT_NULL(m);
        ASSERT_NOT_NULL(p);
        ASSERT_OK(json_object_add_literal(p, "response", json_object_new_string_fast(b64, sizeof(b64))));
        ASSERT_OK(json_object_add_literal(p, "scopeNumber", json_object_new_int64(3)));
        ASSERT_OK(json_object_add_literal(p, "auditSequence", json_object_new_int64(INT64_C(1) << 40)));
        ASSERT_OK(json_object_add_literal(m, "parameters", p));
        check_same(m);
}

TEST(kept_and_trimmed) {
        _cleanup_(json_text_done) JsonText t = {};
        _cleanup_json_ json_object *big = json_object_new_array(), *small = json_object_new_int(7);

        ASSERT_NOT_NULL(big);
        for (unsigned i = 0; i < 10000; i++)
                ASSERT_OK(json_object_array_add(big, json_object_new_string("0123456789")));
        check_same_in(big, &t);
        ASSERT_GE(t.allocated, (size_t) 130000);

        /* A smaller message after a larger one: its own text alone, NUL-terminated. */
        check_same_in(small, &t);
        ASSERT_EQ(t.len, (size_t) 1);

        json_text_trim(&t, 64 * 1024);
        ASSERT_NULL(t.data);
        ASSERT_EQ(t.allocated, (size_t) 0);
        check_same_in(small, &t);
        json_text_trim(&t, 64 * 1024); /* small enough: kept */
        ASSERT_NOT_NULL(t.data);
        check_same_in(big, &t);
}

/* An array held as its elements' text (json-raw.h), built as a query thread builds it: written
 * by json_write() and json-c alike as the same array of trees would be, alone and inside a reply,
 * and parsed back into those trees. */
typedef struct ElementsSeen {
        json_object *trees;
        size_t n;
} ElementsSeen;

static int on_element(json_object *element, size_t index, void *userdata) {
        ElementsSeen *seen = userdata;

        ASSERT_EQ(index, seen->n);
        ASSERT_TRUE(json_object_equal(element, json_object_array_get_idx(seen->trees, index)));
        seen->n++;
        return 0;
}

static int count_to_eight(json_object *element, size_t index, void *userdata) {
        unsigned *n = userdata;

        if (index >= 8)
                return -ECANCELED;
        ASSERT_EQ(index, *n);
        (*n)++;
        return 0;
}

TEST(raw_array) {
        for (unsigned i = 0; i < 2000; i++) {
                _cleanup_(json_text_done) JsonText elements = {}, ref = {}, raw_text = {};
                _cleanup_json_ json_object *trees = json_object_new_array(), *raw = NULL, *reply = NULL,
                                           *parsed = NULL;
                size_t n = (size_t) (rnd() % 5), len, count;
                const char *text;

                ASSERT_NOT_NULL(trees);
                for (size_t k = 0; k < n; k++) {
                        json_object *e = json_object_new_object(), *v;

                        ASSERT_NOT_NULL(e);
                        ASSERT_OK(json_object_add(e, "seq", json_object_new_int64((int64_t) k)));
                        v = random_tree((unsigned) (rnd() % 3));
                        ASSERT_OK(v ? json_object_add(e, "tree", v) : json_object_add_null(e, "tree"));
                        if (k > 0)
                                ASSERT_OK(json_text_append(&elements, ",", 1));
                        ASSERT_OK(json_write_append(e, &elements));
                        ASSERT_OK(json_object_array_add(trees, e));
                }
                ASSERT_FALSE(json_raw_array_get(trees, NULL, NULL, NULL));
                ASSERT_OK(json_raw_array_new(&elements, n, &raw));
                ASSERT_NULL(elements.data);
                ASSERT_TRUE(json_raw_array_get(raw, &text, &len, &count));
                ASSERT_EQ(count, n);

                /* The array of trees, the raw one: the same text, by either writer. */
                ASSERT_OK(json_write(trees, &ref));
                check_same_in(raw, &raw_text);
                if (raw_text.len != ref.len || memcmp(raw_text.data, ref.data, ref.len) != 0)
                        TEST_FAIL("raw array written as %s, its trees as %s", raw_text.data, ref.data);

                reply = json_object_new_object();
                ASSERT_NOT_NULL(reply);
                ASSERT_OK(json_object_add(reply, "records", json_object_get(raw)));
                ASSERT_OK(json_object_add(reply, "damaged", json_object_new_int(1)));
                check_same(reply);

                ASSERT_OK(json_raw_array_parse(raw, &parsed));
                ASSERT_TRUE(json_object_equal(parsed, trees));
                {
                        ElementsSeen seen = { trees };

                        ASSERT_OK(json_raw_array_foreach(raw, on_element, &seen));
                        ASSERT_EQ(seen.n, n);
                }
        }
        ASSERT_ERRNO(json_raw_array_parse(NULL, &(json_object *) { NULL }), EINVAL);
}

/* Each element on its own, in order; a number last ends with the text; text that is no list of
 * values is -EBADMSG; a callback's error ends the walk. */
TEST(raw_array_foreach) {
        static const struct {
                const char *text;
                int expected; /* elements seen, or a negative errno */
        } cases[] = {
                { "", 0 }, { "1", 1 }, { "1,22,-3", 3 }, { "{\"a\":[1,2]},\"x\",null,7", 4 },
                { "1,", -EBADMSG }, { "1 2", -EBADMSG }, { ",1", -EBADMSG }, { "[1", -EBADMSG },
                { "1,2,3,4,5,6,7,8,9,10", -ECANCELED }, /* the callback refuses the ninth */
        };

        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                _cleanup_(json_text_done) JsonText text = {};
                _cleanup_json_ json_object *raw = NULL;
                unsigned n = 0;
                int r;

                ASSERT_OK(json_text_append(&text, cases[k].text, strlen(cases[k].text)));
                ASSERT_OK(json_raw_array_new(&text, 0, &raw));
                r = json_raw_array_foreach(raw, count_to_eight, &n);
                if (r != (cases[k].expected < 0 ? cases[k].expected : 0) ||
                    (cases[k].expected >= 0 && n != (unsigned) cases[k].expected))
                        TEST_FAIL("[%s]: %d after %u elements", cases[k].text, r, n);
        }
}

TEST_MAIN();
