/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The base64 codec (proto/base64.c): round trips of every length, and the decoder against a
 * plain reference (a bit at a time, RFC 4648 read literally: base64-reference.h) on random
 * texts, valid and not: a payload has exactly one encoding. The decoder takes sixteen characters at a step
 * while five groups are left, and on CPUs with SSSE3 sixteen with its byte shuffle before them
 * while six are left: every length and alignment around those steps, and every byte value in
 * every lane of them, for base64_decode() and for the portable steps alone (what CPUs without
 * SSSE3 run). The encoder, with SSSE3 twelve bytes at a step while sixteen are left, against a
 * reference encoder at every length and alignment, both ways too. Runs in: tests.
 */

#include "base64.h"
#include "base64-reference.h"
#include "harness.h"
#include "test-rnd.h"

DEFINE_TEST_RND(0x243f6a8885a308d3)

typedef int (*Decoder)(const char *text, size_t text_len, void **ret, size_t *ret_len);

#define GUARD 32

/* base64_decode_to() as tsmd calls it, into a block of the size the text claims, followed by
 * guard bytes that must stay as they were, also for a text refused as malformed. */
static int decode_to_exact(int (*decode_to)(const char *, size_t, void *, size_t, size_t *),
                           const char *text, size_t n, void **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *out = NULL;
        size_t size = 0;
        int r;

        (void) base64_decoded_size(text, n, &size); /* a length it refuses is refused before a write */
        out = malloc(size + GUARD);
        ASSERT_NOT_NULL(out);
        memset(out + size, 0xa5, GUARD);
        r = decode_to(text, n, out, size, ret_len);
        for (size_t i = size; i < size + GUARD; i++)
                if (out[i] != 0xa5)
                        TEST_FAIL("wrote past the %zu bytes of \"%.*s\"", size, (int) n, text);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        return 0;
}

static int decode_to(const char *text, size_t n, void **ret, size_t *ret_len) {
        return decode_to_exact(base64_decode_to, text, n, ret, ret_len);
}

static int decode_to_portable(const char *text, size_t n, void **ret, size_t *ret_len) {
        return decode_to_exact(base64_decode_to_portable, text, n, ret, ret_len);
}

/* Every decoder test runs all: base64_decode() and base64_decode_to() take SSSE3's steps where
 * this CPU has it. */
static const struct {
        const char *name;
        Decoder decode;
} decoders[] = {
        { "base64_decode", base64_decode },
        { "base64_decode_portable", base64_decode_portable },
        { "base64_decode_to", decode_to },
        { "base64_decode_to_portable", decode_to_portable },
};

TEST(round_trip_every_length) {
        uint8_t data[300];

        for (size_t n = 0; n <= sizeof(data); n++) {
                _cleanup_free_ char *text = NULL;
                _cleanup_free_ void *back = NULL;
                size_t len;

                for (size_t i = 0; i < n; i++)
                        data[i] = (uint8_t) rnd();
                ASSERT_OK(base64_encode(data, n, &text));
                ASSERT_EQ(strlen(text), (n + 2) / 3 * 4);
                ASSERT_OK(base64_decode(text, strlen(text), &back, &len));
                ASSERT_EQ(len, n);
                ASSERT_MEMEQ(back, data, n);
                /* The size the text claims, without decoding it, is the same. */
                len = SIZE_MAX;
                ASSERT_OK(base64_decoded_size(text, strlen(text), &len));
                ASSERT_EQ(len, n);
        }
}

/* Every encoder test runs both: base64_encode() takes SSSE3's steps where this CPU has it. */
static const struct {
        const char *name;
        int (*encode)(const void *data, size_t len, char **ret);
} encoders[] = {
        { "base64_encode", base64_encode },
        { "base64_encode_portable", base64_encode_portable },
};

TEST(encoder_matches_reference) {
        uint8_t data[200];
        char want[DIV_ROUND_UP(sizeof(data), 3) * 4 + 1];

        for (unsigned iter = 0; iter < 20000; iter++) {
                size_t n = rnd() % (sizeof(data) + 1);

                for (size_t i = 0; i < n; i++)
                        data[i] = (uint8_t) rnd();
                reference_encode(data, n, want);
                for (size_t e = 0; e < ELEMENTSOF(encoders); e++) {
                        _cleanup_free_ char *text = NULL;

                        ASSERT_OK(encoders[e].encode(data, n, &text));
                        if (!streq(text, want))
                                TEST_FAIL("%s: %zu bytes: \"%s\", not \"%s\"", encoders[e].name, n, text, want);
                }
        }
}

/* Every length up to 100 bytes at every alignment, each in a buffer of exactly its size (so that
 * ASan sees a read past the end of the input), and every byte value in every lane of three
 * SSSE3 steps and what follows them. */
TEST(encoder_every_length_alignment_and_byte) {
        uint8_t data[16 + 100];
        char want[DIV_ROUND_UP(100, 3) * 4 + 1];

        for (size_t n = 0; n <= 100; n++)
                for (size_t align = 0; align < 16; align++) {
                        _cleanup_free_ uint8_t *exact = malloc(n ?: 1);

                        ASSERT_NOT_NULL(exact);
                        for (size_t i = 0; i < n; i++)
                                data[align + i] = exact[i] = (uint8_t) rnd();
                        reference_encode(exact, n, want);
                        for (size_t e = 0; e < ELEMENTSOF(encoders); e++) {
                                _cleanup_free_ char *text = NULL, *text_exact = NULL;

                                ASSERT_OK(encoders[e].encode(data + align, n, &text));
                                ASSERT_OK(encoders[e].encode(exact, n, &text_exact));
                                if (!streq(text, want) || !streq(text_exact, want))
                                        TEST_FAIL("%s: %zu bytes at alignment %zu", encoders[e].name, n, align);
                        }
                }
        for (size_t at = 0; at < 40; at++)
                for (unsigned byte = 0; byte < 256; byte++) {
                        for (size_t i = 0; i < 40; i++)
                                data[i] = (uint8_t) (i * 37 + 11);
                        data[at] = (uint8_t) byte;
                        reference_encode(data, 40, want);
                        for (size_t e = 0; e < ELEMENTSOF(encoders); e++) {
                                _cleanup_free_ char *text = NULL;

                                ASSERT_OK(encoders[e].encode(data, 40, &text));
                                if (!streq(text, want))
                                        TEST_FAIL("%s: byte 0x%02x at %zu", encoders[e].name, byte, at);
                        }
                }
}

TEST(decoded_size_needs_whole_groups) {
        size_t len = 7;

        ASSERT_ERRNO(base64_decoded_size("AAAAA", 5, &len), EINVAL);
        ASSERT_ERRNO(base64_decoded_size("AA", 2, &len), EINVAL);
        ASSERT_EQ(len, 7u); /* untouched on failure */
        ASSERT_OK(base64_decoded_size("", 0, &len));
        ASSERT_EQ(len, 0u);
        /* Only the length and the padding count, as the header says. */
        ASSERT_OK(base64_decoded_size("!!!!", 4, &len));
        ASSERT_EQ(len, 3u);
}

/* A block smaller than the text claims is refused before anything is written to it (the guard
 * test above holds for malformed texts); a larger one takes the bytes at its start. Texts of
 * several SSSE3 steps, with and without padding. */
TEST(decode_to_needs_the_room_the_text_claims) {
        static int (*const to[])(const char *, size_t, void *, size_t, size_t *) = {
                base64_decode_to, base64_decode_to_portable,
        };
        uint8_t data[100], out[101];

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) rnd();
        for (size_t m = 97; m <= 99; m++) {
                _cleanup_free_ char *text = NULL;

                ASSERT_OK(base64_encode(data, m, &text));
                for (size_t t = 0; t < ELEMENTSOF(to); t++) {
                        size_t len = 7;

                        memset(out, 0xa5, sizeof(out));
                        ASSERT_ERRNO(to[t](text, strlen(text), out, m - 1, &len), ENOBUFS);
                        ASSERT_EQ(len, 7u);
                        for (size_t i = 0; i < sizeof(out); i++)
                                ASSERT_EQ(out[i], 0xa5);
                        /* A length no text has: refused as malformed, whatever the room. */
                        ASSERT_ERRNO(to[t](text, strlen(text) - 1, out, sizeof(out), &len), EINVAL);
                        ASSERT_OK(to[t](text, strlen(text), out, sizeof(out), &len));
                        ASSERT_EQ(len, m);
                        ASSERT_MEMEQ(out, data, m);
                        ASSERT_EQ(out[m], 0xa5);
                }
        }
}

/* On x86-64 CPUs with SSSE3 (this one, if it says so) base64_encode() and base64_decode() must
 * take SSSE3's steps: else the tests would test the portable ones twice. */
TEST(ssse3_steps_where_the_cpu_has_ssse3) {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("ssse3"))
                SKIP("this CPU has no SSSE3: the codec is the portable steps alone");
        ASSERT_TRUE(base64_uses_ssse3());
#else
        ASSERT_FALSE(base64_uses_ssse3());
#endif
}

TEST(rejects_what_is_not_the_one_encoding) {
        static const char *const bad[] = {
                "A", "AA", "AAA", "AAAAA",     /* length */
                "A===", "====", "=AAA", "AA=A", /* '=' out of place */
                "AA==AAAA", "AAA=AAAA",         /* '=' before the end */
                "AB==", "AAB=",                 /* bits under the padding */
                "AA A", "AA\nA", "AA-_", "AAA\x80", /* outside the alphabet */
        };
        void *out;
        size_t len;

        for (size_t d = 0; d < ELEMENTSOF(decoders); d++) {
                for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                        if (decoders[d].decode(bad[i], strlen(bad[i]), &out, &len) != -EINVAL)
                                TEST_FAIL("%s: accepted \"%s\"", decoders[d].name, bad[i]);
                ASSERT_OK(decoders[d].decode("", 0, &out, &len));
                ASSERT_EQ(len, 0);
                free(out);
        }
}

TEST(decoder_matches_reference) {
        /* Mostly the alphabet, some '=' and some bytes outside it, at every length up to 24:
         * every position of every kind of mistake, many times over; one text in four up to 120
         * long, for several steps, with fewer mistakes, so that some are valid. */
        static const char extra[] = "=\n \x80-_.";
        char t[121];
        uint8_t ref[90];

        for (unsigned iter = 0; iter < 200000; iter++) {
                size_t n = iter % 4 == 0 ? rnd() % sizeof(t) : rnd() % 25;
                unsigned one_in = n > 24 ? 256 : 16;
                ssize_t want;

                for (size_t i = 0; i < n; i++) {
                        uint64_t x = rnd();
                        t[i] = x % one_in == 0 ? extra[(x >> 8) % (sizeof(extra) - 1)] : alphabet[(x >> 8) % 64];
                }
                /* Often a valid text with padding, so the padding paths get their share. */
                if (n >= 4 && n % 4 == 0 && rnd() % 3 == 0) {
                        t[n - 1] = '=';
                        if (rnd() % 2)
                                t[n - 2] = '=';
                }
                t[n] = 0;

                want = reference_decode(t, n, ref);
                for (size_t d = 0; d < ELEMENTSOF(decoders); d++) {
                        _cleanup_free_ void *out = NULL;
                        size_t len;
                        int r;

                        r = decoders[d].decode(t, n, &out, &len);
                        if (want < 0 && r != -EINVAL)
                                TEST_FAIL("%s: accepted \"%s\"", decoders[d].name, t);
                        if (want >= 0 && r < 0)
                                TEST_FAIL("%s: refused \"%s\" (%d)", decoders[d].name, t, r);
                        if (want >= 0) {
                                ASSERT_EQ(len, (size_t) want);
                                ASSERT_MEMEQ(out, ref, len);
                        }
                }
        }
}

/* Valid texts of every length up to 200 characters (every padding), at every alignment: SSSE3's
 * steps and the portable ones, the groups left after them and the padded group, each way round. */
TEST(decoder_every_length_and_alignment) {
        uint8_t data[150];
        char buf[32 + 201];

        for (size_t m = 0; m <= sizeof(data); m++)
                for (size_t align = 0; align < 32; align++) {
                        _cleanup_free_ char *text = NULL;
                        size_t n;

                        for (size_t i = 0; i < m; i++)
                                data[i] = (uint8_t) rnd();
                        ASSERT_OK(base64_encode(data, m, &text));
                        n = strlen(text);
                        memcpy(buf + align, text, n + 1);
                        for (size_t d = 0; d < ELEMENTSOF(decoders); d++) {
                                _cleanup_free_ void *out = NULL;
                                size_t len;

                                ASSERT_OK(decoders[d].decode(buf + align, n, &out, &len));
                                ASSERT_EQ(len, m);
                                ASSERT_MEMEQ(out, data, m);
                        }
                }
}

/* Every byte value at every position of texts of one and three portable steps and what follows
 * them (a group; a group and a padded one, either way), and of one and three of SSSE3's steps
 * and what follows them (groups; a portable step and a group; groups and a padded one), at four
 * alignments, against the reference, through each decoder: each lane of each step sees every
 * character of the alphabet and every byte outside it ('=', the neighbours of each range, bytes
 * from 0x80 up, NUL). */
TEST(decoder_every_byte_in_every_lane) {
        static const struct {
                size_t n;
                const char *last; /* the last group, or NULL for one of the others */
        } texts[] = {
                { 20, NULL }, { 52, NULL }, { 56, "QQ==" }, { 56, "QQQ=" },
                { 24, NULL }, { 36, NULL }, { 60, "QQ==" }, { 60, "QQQ=" },
        };
        static const size_t aligns[] = { 0, 1, 7, 15 };
        char buf[16 + 61];
        uint8_t ref[45];

        for (size_t k = 0; k < ELEMENTSOF(texts); k++)
                for (size_t a = 0; a < ELEMENTSOF(aligns); a++)
                        for (size_t p = 0; p < texts[k].n; p++)
                                for (unsigned byte = 0; byte < 256; byte++) {
                                        char *t = buf + aligns[a];
                                        size_t n = texts[k].n;
                                        ssize_t want;

                                        for (size_t i = 0; i < n; i++)
                                                t[i] = alphabet[(i * 7 + k) % 64];
                                        if (texts[k].last)
                                                memcpy(t + n - 4, texts[k].last, 4);
                                        t[p] = (char) byte;
                                        t[n] = 0;

                                        want = reference_decode(t, n, ref);
                                        for (size_t d = 0; d < ELEMENTSOF(decoders); d++) {
                                                _cleanup_free_ void *out = NULL;
                                                size_t len;
                                                int r;

                                                r = decoders[d].decode(t, n, &out, &len);
                                                if (want < 0 && r != -EINVAL)
                                                        TEST_FAIL("%s, length %zu: accepted byte 0x%02x at %zu",
                                                                  decoders[d].name, n, byte, p);
                                                if (want >= 0 && r < 0)
                                                        TEST_FAIL("%s, length %zu: refused byte 0x%02x at %zu (%d)",
                                                                  decoders[d].name, n, byte, p, r);
                                                if (want >= 0) {
                                                        ASSERT_EQ(len, (size_t) want);
                                                        ASSERT_MEMEQ(out, ref, len);
                                                }
                                        }
                                }
}

TEST_MAIN();
