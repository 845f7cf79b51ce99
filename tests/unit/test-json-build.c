/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json_parse_strict() builds objects and arrays itself (proto/json-build.c): here against what
 * it did before, json_strict_check() and then json-c's tokener, on random texts, valid ones
 * and damaged ones: the same result, the same error, and the same tree (types, int64 and
 * uint64 values, doubles and the text they keep, strings byte for byte, member order).
 * Runs in: tests.
 */

#include <locale.h>
#include <math.h>
#include <stdlib.h>

#include "harness.h"
#include "test-rnd.h"
#include "json-strict.h"
#include "json-util.h"

/* The builder compiled here, its buffer's growth and its locales counted: what a text costs it
 * (json_parse_strict() from the library calls this json_build_checked()). */
static size_t largest_realloc, n_newlocale, n_freelocale;

static void *counted_realloc(void *p, size_t size) {
        largest_realloc = MAX(largest_realloc, size);
        return realloc(p, size);
}

static locale_t counted_newlocale(int mask, const char *name, locale_t base) {
        n_newlocale++;
        return newlocale(mask, name, base);
}

static void counted_freelocale(locale_t l) {
        n_freelocale++;
        freelocale(l);
}

#define realloc counted_realloc
#define newlocale counted_newlocale
#define freelocale counted_freelocale
#include "json-build.c"
#undef realloc
#undef newlocale
#undef freelocale

DEFINE_TEST_RND(0x853c49e6748fea9b)

/* json_parse_strict() as it was: the check, then json-c, told where the text ends (a NUL after
 * it, which ends a number or literal at its very end: json-c waits for more without it). */
static int reference_parse(json_tokener *tok, unsigned max_depth, const char *text, size_t len, json_object **ret) {
        size_t n_members = 0, n_parsed = 0, end;
        json_object *obj;
        int r;

        r = json_strict_check(text, len, max_depth, SIZE_MAX, &n_members);
        if (r < 0)
                return r;
        json_tokener_reset(tok);
        obj = json_tokener_parse_ex(tok, text, (int) len);
        end = json_tokener_get_parse_end(tok);
        if (!obj && json_tokener_get_error(tok) == json_tokener_continue) {
                obj = json_tokener_parse_ex(tok, "", 1);
                end = len;
        }
        if (!obj)
                return json_tokener_get_error(tok) == json_tokener_error_depth ? -ELOOP : -EBADMSG;
        for (size_t off = end; off < len; off++)
                if (!strchr(" \t\r\n", text[off])) {
                        json_object_put(obj);
                        return -EBADMSG;
                }
        /* The member count and finiteness, as json_count_members() does. */
        json_object *stack[64];
        size_t sp = 0;
        stack[sp++] = obj;
        while (sp > 0) {
                json_object *o = stack[--sp];

                if (json_object_is_type(o, json_type_object)) {
                        json_object_object_foreach(o, k, v) {
                                (void) k;
                                n_parsed++;
                                ASSERT_TRUE(sp < ELEMENTSOF(stack));
                                stack[sp++] = v;
                        }
                } else if (json_object_is_type(o, json_type_array)) {
                        for (size_t i = 0; i < json_object_array_length(o); i++) {
                                ASSERT_TRUE(sp < ELEMENTSOF(stack));
                                stack[sp++] = json_object_array_get_idx(o, i);
                        }
                } else if (json_object_is_type(o, json_type_double) && !isfinite(json_object_get_double(o))) {
                        json_object_put(obj);
                        return -EBADMSG;
                }
        }
        if (n_parsed != n_members) {
                json_object_put(obj);
                return -EBADMSG;
        }
        *ret = obj;
        return 0;
}

static void compare_trees(json_object *a, json_object *b, const char *text) {
        if (json_object_get_type(a) != json_object_get_type(b))
                TEST_FAIL("types differ in %s", text);
        switch (json_object_get_type(a)) {
        case json_type_object: {
                struct json_object_iterator ia = json_object_iter_begin(a), ea = json_object_iter_end(a);
                struct json_object_iterator ib = json_object_iter_begin(b), eb = json_object_iter_end(b);

                ASSERT_EQ(json_object_object_length(a), json_object_object_length(b));
                while (!json_object_iter_equal(&ia, &ea)) {
                        ASSERT_FALSE(json_object_iter_equal(&ib, &eb));
                        ASSERT_STREQ(json_object_iter_peek_name(&ia), json_object_iter_peek_name(&ib));
                        compare_trees(json_object_iter_peek_value(&ia), json_object_iter_peek_value(&ib), text);
                        json_object_iter_next(&ia);
                        json_object_iter_next(&ib);
                }
                ASSERT_TRUE(json_object_iter_equal(&ib, &eb));
                break;
        }
        case json_type_array:
                ASSERT_EQ(json_object_array_length(a), json_object_array_length(b));
                for (size_t i = 0; i < json_object_array_length(a); i++)
                        compare_trees(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i), text);
                break;
        case json_type_string:
                ASSERT_EQ(json_object_get_string_len(a), json_object_get_string_len(b));
                ASSERT_MEMEQ(json_object_get_string(a), json_object_get_string(b),
                             (size_t) json_object_get_string_len(a));
                break;
        case json_type_int:
                ASSERT_EQ(json_object_get_int64(a), json_object_get_int64(b));
                ASSERT_EQ(json_object_get_uint64(a), json_object_get_uint64(b));
                break;
        case json_type_double: {
                double da = json_object_get_double(a), db = json_object_get_double(b);

                ASSERT_MEMEQ(&da, &db, sizeof(da));
                break;
        }
        case json_type_boolean:
                ASSERT_EQ(json_object_get_boolean(a), json_object_get_boolean(b));
                break;
        case json_type_null:
                break;
        }
        /* And what each serializes to (a double's kept text, key order, escaping). */
        ASSERT_STREQ(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN),
                     json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN));
}

typedef struct Text {
        char buf[8192];
        size_t n;
} Text;

static void put(Text *t, const char *s, size_t n) {
        if (t->n + n < sizeof(t->buf)) {
                memcpy(t->buf + t->n, s, n);
                t->n += n;
        }
}

static void put_str(Text *t, const char *s) {
        put(t, s, strlen(s));
}

static void ws(Text *t) {
        static const char w[] = " \t\r\n";

        while (rnd() % 4 == 0)
                put(t, &w[rnd() % 4], 1);
}

static void gen_string(Text *t, bool key) {
        static const char *const pieces[] = {
                "a", "Z", "09", "+/=", "AAAA", "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t",
                "\\u0041", "\\u00e9", "\\u20AC", "\\uD83D\\uDE00", "\\udbff\\udfff", "\\u0000", "\\u001f",
                "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x7f", " ", "'",
        };
        size_t n = rnd() % (rnd() % 8 == 0 ? 600 : 6);
        /* Now and then no escape at all: a long one is taken from the check's hints. */
        bool plain = rnd() % 4 == 0;

        put(t, "\"", 1);
        for (size_t i = 0; i < n; i++) {
                const char *p = pieces[rnd() % ELEMENTSOF(pieces)];

                if (key && strcmp(p, "\\u0000") == 0 && rnd() % 4 != 0)
                        continue;
                if (plain && p[0] == '\\')
                        continue;
                if (rnd() % 2)
                        p = "QUJDREVGR0g="; /* base64 runs: the fast path */
                put_str(t, p);
        }
        put(t, "\"", 1);
}

static void gen_number(Text *t) {
        static const char *const fixed[] = {
                "0", "-0", "1", "-1", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                "18446744073709551615", "0.5", "-0.0", "1e5", "1E-5", "1.50", "2.5e+10", "1e999", "-1e999",
                "1e-999", "123456789012345678901234567890.5", "0.1000000000000000055511151231257827",
                "4294967296", "-4294967297",
        };
        char b[64];

        switch (rnd() % 3) {
        case 0:
                put_str(t, fixed[rnd() % ELEMENTSOF(fixed)]);
                break;
        case 1:
                snprintf(b, sizeof(b), "%" PRIi64, (int64_t) rnd() >> (rnd() % 64));
                put_str(t, b);
                break;
        default:
                snprintf(b, sizeof(b), "%.*g", (int) (rnd() % 18) + 1,
                         (double) (int64_t) rnd() / (double) (rnd() % 100000 + 1));
                put_str(t, b);
                break;
        }
}

static void gen_value(Text *t, unsigned depth) {
        unsigned kind = (unsigned) (rnd() % (depth >= 5 ? 6 : 8));

        ws(t);
        switch (kind) {
        case 0: gen_string(t, false); break;
        case 1: gen_number(t); break;
        case 2: put_str(t, "true"); break;
        case 3: put_str(t, "false"); break;
        case 4: put_str(t, "null"); break;
        case 5: gen_string(t, false); break;
        case 6: {
                size_t n = rnd() % 5;

                put(t, "[", 1);
                for (size_t i = 0; i < n; i++) {
                        if (i > 0)
                                put(t, ",", 1);
                        gen_value(t, depth + 1);
                }
                ws(t);
                put(t, "]", 1);
                break;
        }
        default: {
                size_t n = rnd() % 5;

                put(t, "{", 1);
                for (size_t i = 0; i < n; i++) {
                        if (i > 0)
                                put(t, ",", 1);
                        ws(t);
                        if (rnd() % 8 == 0)
                                put_str(t, "\"dup\""); /* duplicates now and then */
                        else
                                gen_string(t, true);
                        ws(t);
                        put(t, ":", 1);
                        gen_value(t, depth + 1);
                }
                ws(t);
                put(t, "}", 1);
                break;
        }
        }
        ws(t);
}

static void check_text(json_tokener *tok, const char *text, size_t n, unsigned max_depth, unsigned *ok) {
        _cleanup_json_ json_object *ref = NULL, *got = NULL;
        int want, r;

        want = reference_parse(tok, max_depth, text, n, &ref);
        r = json_parse_strict(tok, max_depth, SIZE_MAX, text, n, &got);
        if (r != want)
                TEST_FAIL("json_parse_strict() %d, before %d: %.*s", r, want, (int) n, text);
        if (r == 0) {
                compare_trees(ref, got, text);
                (*ok)++;
        }
}

TEST(random_texts_as_before) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        unsigned ok = 0, damaged_ok = 0;
        Text t;

        ASSERT_OK(json_tokener_new_strict(6, &tok));
        for (unsigned iter = 0; iter < 40000; iter++) {
                t.n = 0;
                if (iter % 2)
                        put(&t, "{\"k\":", 5); /* the shape of a message */
                gen_value(&t, 0);
                if (iter % 2)
                        put(&t, "}", 1);
                t.buf[t.n] = 0;
                check_text(tok, t.buf, t.n, 6, &ok);

                /* Damaged: a byte changed, dropped or the text cut short. */
                for (unsigned k = 0; k < 3 && t.n > 0; k++) {
                        Text d = t;
                        size_t at = rnd() % d.n;

                        switch (k) {
                        case 0: d.buf[at] = "\"\\{}[],:0-e.tn\x80 "[rnd() % 17]; break;
                        case 1: memmove(d.buf + at, d.buf + at + 1, d.n - at - 1); d.n--; break;
                        default: d.n = at; break;
                        }
                        d.buf[d.n] = 0;
                        check_text(tok, d.buf, d.n, 6, &damaged_ok);
                }
        }
        /* The generator made what it should: mostly valid texts, some damaged ones still valid. */
        ASSERT_GE(ok, 20000u);
        ASSERT_GE(damaged_ok, 100u);
}

/* A plain string of n bytes (base64 and UTF-8), quoted, at *t's end. */
static void put_plain_string(Text *t, size_t n) {
        put(t, "\"", 1);
        for (size_t i = 0; i < n;)
                if (i % 97 == 50 && n - i >= 2) {
                        put(t, "\xc3\xa9", 2);
                        i += 2;
                } else
                        put(t, &"QUJDREVGR0g+/="[i++ % 14], 1);
        put(t, "\"", 1);
}

/* Long strings without escapes: noted by the check, the first JSON_STRING_HINTS_MAX values of
 * them, not keys, and built from those notes into the tree the text makes. */
TEST(long_strings_from_the_check) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        unsigned ok = 0;

        ASSERT_OK(json_tokener_new_strict(6, &tok));
        for (unsigned strings = 0; strings <= JSON_STRING_HINTS_MAX + 2; strings++) {
                JsonStringHints hints;
                Text t = {};

                put_str(&t, "{");
                put_plain_string(&t, JSON_STRING_HINT_MIN + 7); /* a long key: not noted */
                put_str(&t, ":[\"short\",");
                put_plain_string(&t, JSON_STRING_HINT_MIN - 1); /* too short to be noted */
                put_str(&t, ",\"");
                for (unsigned i = 0; i < JSON_STRING_HINT_MIN; i++)
                        put_str(&t, "A");
                put_str(&t, "\\n\"]"); /* long, with an escape: not noted */
                for (unsigned i = 0; i < strings; i++) {
                        char key[16];

                        snprintf(key, sizeof(key), ",\"k%u\":", i);
                        put_str(&t, key);
                        put_plain_string(&t, JSON_STRING_HINT_MIN + i * 100);
                }
                put_str(&t, "}");
                ASSERT_LE(t.n, sizeof(t.buf) - 2);
                t.buf[t.n] = 0;

                ASSERT_OK(json_strict_check_full(t.buf, t.n, 6, SIZE_MAX, 0, NULL, &hints));
                ASSERT_EQ(hints.n, (size_t) MIN(strings, JSON_STRING_HINTS_MAX));
                for (size_t i = 0; i < hints.n; i++) {
                        ASSERT_EQ(hints.strings[i].len, JSON_STRING_HINT_MIN + i * 100);
                        ASSERT_EQ(hints.strings[i].start[-1], '"');
                        ASSERT_EQ(hints.strings[i].start[hints.strings[i].len], '"');
                }
                check_text(tok, t.buf, t.n, 6, &ok);
        }
        ASSERT_EQ(ok, JSON_STRING_HINTS_MAX + 3);
}

/* A note the text does not bear out, a length whose byte is no quote (off by one either way) or
 * past the text's end, is not taken: the string is read as any other, and nothing outside the
 * text is. */
TEST(long_string_note_checked) {
        static const size_t wrong[] = { 1, 1000, SIZE_MAX / 2 };
        _cleanup_json_ json_object *want = NULL;
        JsonStringHints hints;
        Text t = {};

        put_str(&t, "[");
        put_plain_string(&t, JSON_STRING_HINT_MIN);
        put_str(&t, ",\"x\"]");
        ASSERT_OK(json_strict_check_full(t.buf, t.n, 2, SIZE_MAX, 0, NULL, &hints));
        ASSERT_EQ(hints.n, (size_t) 1);
        ASSERT_OK(json_build_checked(t.buf, t.n, 2, &want));

        for (size_t i = 0; i < ELEMENTSOF(wrong); i++)
                for (int sign = -1; sign <= 1; sign += 2) {
                        _cleanup_json_ json_object *got = NULL;
                        JsonStringHints bad = hints;

                        bad.strings[0].len = hints.strings[0].len + (size_t) sign * wrong[i];
                        ASSERT_OK(json_build_checked_full(t.buf, t.n, 2, &bad, &got));
                        compare_trees(want, got, t.buf);
                }
}

TEST(depth_limit_as_before) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        unsigned ok = 0;

        ASSERT_OK(json_tokener_new_strict(100, &tok));
        /* Objects and arrays in turn, 1 to 102 deep (the limit is 100); past 64 the builder's
         * stack moves to the heap. */
        for (unsigned d = 1; d <= 102; d++) {
                char text[1024];
                size_t n = 0;

                for (unsigned i = 0; i < d; i++)
                        n += (size_t) snprintf(text + n, sizeof(text) - n, "%s", i % 2 ? "[" : "{\"a\":");
                text[n++] = '1';
                for (unsigned i = d; i > 0; i--)
                        text[n++] = (i - 1) % 2 ? ']' : '}';
                check_text(tok, text, n, 100, &ok);
        }
        ASSERT_EQ(ok, 100u);
}

/* A bare scalar is a JSON text too, ending where the text does ("0", "true": json-c alone would
 * wait for a byte after it), as json-util.h promises. */
TEST(bare_scalars_as_before) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        static const char *const texts[] = { "1", "1 ", " \"a\"", "true", "null ", "-0.5e1\n", "[]", " {} ",
                                             "0", "-0", "12", "1.5", "false", "\ttrue", "\"a\"" };
        static const char *const bad[] = { "1 x", "tru", "1.", "-", "01", "true false" };
        unsigned ok = 0;

        ASSERT_OK(json_tokener_new_strict(4, &tok));
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                check_text(tok, texts[i], strlen(texts[i]), 4, &ok);
        ASSERT_EQ(ok, ELEMENTSOF(texts) - 1); /* all but "null ": json-c has no object for a null */
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_object *o = NULL;

                ASSERT_ERRNO(json_parse_strict(tok, 4, SIZE_MAX, bad[i], strlen(bad[i]), &o), EBADMSG);
        }
        {
                _cleanup_json_ json_object *o = NULL;

                ASSERT_OK(json_parse_strict(tok, 4, SIZE_MAX, "12", 2, &o));
                ASSERT_EQ(json_object_get_int64(o), 12);
        }
}

/* Numbers no int64, uint64 or finite double holds: refused by default (json-c would clamp
 * them), doubles that keep their text with JSON_STRICT_ANY_NUMBER, but for a bare scalar, which
 * json-c reads. */
TEST(numbers_out_of_range) {
        static const char *const numbers[] = {
                "18446744073709551616", "-9223372036854775809", "99999999999999999999999", "1e400", "-1e400",
        };
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;

        ASSERT_OK(json_tokener_new_strict(4, &tok));
        for (size_t i = 0; i < ELEMENTSOF(numbers); i++) {
                _cleanup_json_ json_object *o = NULL;
                json_object *v = NULL;
                char text[64];

                snprintf(text, sizeof(text), "{\"n\":%s}", numbers[i]);
                ASSERT_ERRNO(json_parse_strict(tok, 4, SIZE_MAX, text, strlen(text), &v), EBADMSG);
                ASSERT_ERRNO(json_parse_strict_full(tok, 4, SIZE_MAX, JSON_STRICT_ANY_NUMBER, numbers[i],
                                                    strlen(numbers[i]), &v),
                             EBADMSG);
                ASSERT_OK(json_parse_strict_full(tok, 4, SIZE_MAX, JSON_STRICT_ANY_NUMBER, text, strlen(text), &o));
                ASSERT_TRUE(json_object_object_get_ex(o, "n", &v));
                ASSERT_TRUE(json_object_is_type(v, json_type_double));
                ASSERT_STREQ(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), numbers[i]);
                ASSERT_EQ(signbit(json_object_get_double(v)) != 0, numbers[i][0] == '-');
        }
        /* What fits stays an integer. */
        {
                _cleanup_json_ json_object *o = NULL;

                ASSERT_OK(json_parse_strict_full(tok, 4, SIZE_MAX, JSON_STRICT_ANY_NUMBER,
                                                 "[18446744073709551615,-9223372036854775808,-0]", 46, &o));
                ASSERT_EQ(json_object_get_uint64(json_object_array_get_idx(o, 0)), UINT64_MAX);
                ASSERT_EQ(json_object_get_int64(json_object_array_get_idx(o, 1)), INT64_MIN);
                ASSERT_TRUE(json_object_is_type(json_object_array_get_idx(o, 2), json_type_int));
        }
}

/* json-c writes U+FFFD for an escaped pair whose code point ends in D800-DFFF (U+1D800-U+1DFFF,
 * U+2D800..., a 32nd of all pairs); the builder writes the code point, as RFC 8259 says. */
TEST(pairs_json_c_gets_wrong) {
        static const char text[] = "{\"\\ud836\\udc00\":[\"\\uDBF7\\uDFFF\",\"\\ud877\\udc01\"]}";
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_json_ json_object *o = NULL;
        json_object *a;

        ASSERT_OK(json_tokener_new_strict(4, &tok));
        ASSERT_OK(json_parse_strict(tok, 4, SIZE_MAX, text, strlen(text), &o));
        ASSERT_TRUE(json_object_object_get_ex(o, "\xf0\x9d\xa0\x80", &a)); /* U+1D800 */
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(a, 0)), "\xf4\x8d\xbf\xbf"); /* U+10DFFF */
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(a, 1)), "\xf0\xad\xb0\x81"); /* U+2DC01 */
}

/* No caller skips the check, but the builder does not count on that where a wrong reading
 * would make a tree with bytes that are not UTF-8, a key cut short or the wrong container. */
TEST(unchecked_text_refused) {
        static const char *const texts[] = {
                "[\"\\uD800\\u0041\"]", /* a high surrogate and no low one */
                "[\"\\uD800\\uD800\"]",
                "[\"\\uD800\\uE000\"]",  /* "low" just above the low surrogates */
                "[\"\\uDC00\"]",          /* a low surrogate alone */
                "[\"\\u00G0\"]",          /* not hex */
                "[\"\\u 123\"]",
                "[\"\\uD83D\\uDZ00\"]",
                "{\"a\\u0000b\":1}",      /* a key json-c would cut at the NUL */
                "[1}",                    /* brackets that do not match */
                "{\"a\":1]",
                "[}",
                "{\"a\":[]}]",
        };

        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                json_object *o = NULL;

                if (json_build_checked(texts[i], strlen(texts[i]), 8, &o) != -EBADMSG)
                        TEST_FAIL("built %s", texts[i]);
                ASSERT_NULL(o);
        }
        /* What they would be with the escape or bracket right. */
        static const char *const fine[] = { "[\"\\uD83D\\uDE00\\u00e9\"]", "{\"a\\u0001b\":[1]}" };
        for (size_t i = 0; i < ELEMENTSOF(fine); i++) {
                _cleanup_json_ json_object *o = NULL;

                ASSERT_OK(json_build_checked(fine[i], strlen(fine[i]), 8, &o));
        }
}

/* A string with an escape takes room for itself, not for the rest of the message (16 MiB of
 * whitespace after it here); the doubles of one text share one C locale. */
TEST(what_a_text_costs) {
        static const char head[] = "{\"a\":\"x\\ny\",\"d\":[1.5,2.5e1,-3.25,4.0]";
        _cleanup_json_ json_object *obj = NULL;
        size_t n = sizeof(head) - 1 + (16u << 20) + 1;
        _cleanup_free_ char *text = malloc(n);

        ASSERT_NOT_NULL(text);
        memcpy(text, head, sizeof(head) - 1);
        memset(text + sizeof(head) - 1, ' ', n - sizeof(head));
        text[n - 1] = '}';

        largest_realloc = n_newlocale = n_freelocale = 0;
        ASSERT_OK(json_build_checked(text, n, 4, &obj));
        ASSERT_STREQ(json_object_get_string(json_object_object_get(obj, "a")), "x\ny");
        ASSERT_EQ(json_object_get_double(json_object_array_get_idx(json_object_object_get(obj, "d"), 1)), 25.0);
        ASSERT_LE(largest_realloc, (size_t) 4096);
        ASSERT_EQ(n_newlocale, (size_t) 1);
        ASSERT_EQ(n_freelocale, (size_t) 1);

        /* A failed text frees its locale too. */
        n_newlocale = n_freelocale = 0;
        json_object_put(TAKE_PTR(obj));
        ASSERT_EQ(json_build_checked("[1.5,2.5,\"", 10, 4, &obj), -EBADMSG);
        ASSERT_EQ(n_newlocale, (size_t) 1);
        ASSERT_EQ(n_freelocale, (size_t) 1);
}

TEST_MAIN();
