/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Base64 codec. Strict on input: a payload has exactly one encoding. Runs in: worker, clients. */

#include <endian.h>
#if defined(__x86_64__)
#define B64_SSSE3 1
#include <tmmintrin.h>
#endif

#include "base64.h"

/* The decoder takes sixteen characters at a step with GCC vector extensions (SSE2 on x86-64,
 * NEON on arm64, plain integers elsewhere), as proto/json-run.h does: a 4 KiB payload is 5.5 KB
 * of base64, and a group at a time was a tenth of the worker's loop, sixteen at a step still
 * 8-10%: SSE2 has no byte shuffle, so each character's class takes five compares and its
 * group's three bytes a dozen shifts. On x86-64 CPUs with SSSE3 (all since 2006-2011), a
 * function compiled for SSSE3 alone, called only where the CPU has it, looks both up with its
 * shuffle instead: a third of the instructions (BENCHMARKS.md). It stays with 128-bit
 * vectors, as the SSE2 code does: an AVX2 decoder was tried and not kept (its 256-bit units
 * cost the one-client latency more than it saved). The encoder looks up two characters per 12
 * bits in a table (an SSE2 encoder, without a shuffle, was slower than that), and with SSSE3
 * takes sixteen characters a step as the decoder does: a read's 4 KiB response is encoded in
 * the worker. */
typedef uint8_t b64_vu8 __attribute__((vector_size(16)));
typedef int8_t b64_vs8 __attribute__((vector_size(16)));
typedef uint16_t b64_vu16 __attribute__((vector_size(16)));
typedef uint32_t b64_vu32 __attribute__((vector_size(16)));
typedef uint64_t b64_vu64 __attribute__((vector_size(16)));

/* The lanes of c from lo to hi (all ones, else zero), in one add and one signed compare (SSE2
 * has no unsigned one): lo moves to -128, so the range is what lies below -128 + its size. */
#define B64_IN_RANGE(c, lo, hi) \
        ((b64_vs8) ((c) + (uint8_t) (0x80 - (lo))) < (int8_t) (-0x80 + (hi) - (lo) + 1))

/* Any lane of a comparison set? */
static inline bool b64_any(b64_vs8 m) {
        uint64_t h[2];

        memcpy(h, &m, sizeof(h));
        return (h[0] | h[1]) != 0;
}

/* Each 32-bit lane from (to) its four bytes in memory order, the first byte lowest: the
 * arithmetic below is written for that order. A no-op on little-endian hosts. */
static inline b64_vu32 b64_le32(b64_vu32 u) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return u >> 24 | (u >> 8 & 0xff00) | (u << 8 & 0xff0000) | u << 24;
#else
        return u;
#endif
}

/* w's 32-bit lanes hold three bytes each in their first three (in memory order): the six of
 * two lanes at the start of each 64-bit half, in order, for an 8-byte store. */
static inline b64_vu64 b64_pack6(b64_vu32 w) {
        b64_vu64 x = (b64_vu64) w;

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return (x & 0xffffff0000000000) | (x << 8 & 0x000000ffffff0000);
#else
        return (x & 0xffffff) | (x >> 8 & 0xffffff000000);
#endif
}

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The two characters of every 12-bit value, built by the compiler: two lookups per three bytes
 * instead of four. */
#define B64_CHAR(v) ((char) ((v) < 26 ? 'A' + (v) : (v) < 52 ? 'a' + (v) - 26 : (v) < 62 ? '0' + (v) - 52 : (v) == 62 ? '+' : '/'))
#define B64_PAIR(i) { B64_CHAR((i) >> 6), B64_CHAR((i) & 63) }
#define B64_PAIRS4(i) B64_PAIR(i), B64_PAIR((i) + 1), B64_PAIR((i) + 2), B64_PAIR((i) + 3)
#define B64_PAIRS16(i) B64_PAIRS4(i), B64_PAIRS4((i) + 4), B64_PAIRS4((i) + 8), B64_PAIRS4((i) + 12)
#define B64_PAIRS64(i) B64_PAIRS16(i), B64_PAIRS16((i) + 16), B64_PAIRS16((i) + 32), B64_PAIRS16((i) + 48)
#define B64_PAIRS256(i) B64_PAIRS64(i), B64_PAIRS64((i) + 64), B64_PAIRS64((i) + 128), B64_PAIRS64((i) + 192)
#define B64_PAIRS1024(i) B64_PAIRS256(i), B64_PAIRS256((i) + 256), B64_PAIRS256((i) + 512), B64_PAIRS256((i) + 768)
static const char pairs[4096][2] = {
        B64_PAIRS1024(0), B64_PAIRS1024(1024), B64_PAIRS1024(2048), B64_PAIRS1024(3072),
};

bool base64_uses_ssse3(void) {
#ifdef B64_SSSE3
        /* A test of what libgcc's constructor found once: no CPUID per call. */
        return __builtin_cpu_supports("ssse3");
#else
        return false;
#endif
}

#ifdef B64_SSSE3
/* The steps of encode() below with SSSE3's byte shuffle, twelve bytes (four groups) at a step
 * from one 16-byte load while sixteen are left, from p[*i_io] and *o_io on, both moved past what
 * was done: sixteen characters a step, the store all of them (W. Mula's method). A shuffle puts
 * each group's bytes s0 s1 s2 in a 32-bit lane as s1 s0 s2 s1, whose 16-bit halves s0<<8 | s1
 * and s1<<8 | s2 hold the four 6-bit values a (bits 10-15 of the first), b (4-9 of the first),
 * c (6-11 of the second), d (0-5 of the second); masks and two multiplies (the high half of one,
 * the low half of the other) move each to its own byte. A value becomes its character by adding
 * what its range adds, looked up by a shuffle: index 0 for A-Z (0-25), 1 for a-z (26-51), 2-11
 * for the digits (52-61), 12 for '+' (62), 13 for '/' (63), made by a saturating subtraction of
 * 51 and one more for all above 25. */
__attribute__((target("ssse3")))
static void encode_steps_ssse3(const uint8_t *p, size_t len, size_t *i_io, char **o_io) {
        const __m128i spread = _mm_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
        const __m128i add_by_range = _mm_setr_epi8('A', 'a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                                                   '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                                                   '+' - 62, '/' - 63, 0, 0);
        size_t i = *i_io;
        char *o = *o_io;

        for (; len - i >= 16; i += 12, o += 16) {
                __m128i in, ac, bd, values, range;

                memcpy(&in, p + i, sizeof(in));
                in = _mm_shuffle_epi8(in, spread);
                ac = _mm_mulhi_epu16(_mm_and_si128(in, _mm_set1_epi32(0x0fc0fc00)), _mm_set1_epi32(0x04000040));
                bd = _mm_mullo_epi16(_mm_and_si128(in, _mm_set1_epi32(0x003f03f0)), _mm_set1_epi32(0x01000010));
                values = _mm_or_si128(ac, bd);
                range = _mm_sub_epi8(_mm_subs_epu8(values, _mm_set1_epi8(51)),
                                     _mm_cmpgt_epi8(values, _mm_set1_epi8(25)));
                values = _mm_add_epi8(values, _mm_shuffle_epi8(add_by_range, range));
                memcpy(o, &values, sizeof(values));
        }
        *i_io = i;
        *o_io = o;
}
#endif

static int encode(const void *data, size_t len, bool ssse3, char **ret) {
        const uint8_t *p = data;
        char *out, *o;
        size_t i = 0;

        if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
                return -E2BIG;
        out = malloc(DIV_ROUND_UP(len, 3) * 4 + 1);
        if (!out)
                return -ENOMEM;

        /* SSSE3's steps first, where the CPU has it; then six bytes at a step from one 8-byte load
         * while 8 are left; then whole groups; then the last one or two bytes, padded. */
        o = out;
#ifdef B64_SSSE3
        if (ssse3)
                encode_steps_ssse3(p, len, &i, &o);
#else
        assert(!ssse3);
#endif
        for (; len - i >= 8; i += 6, o += 8) {
                uint64_t x;

                memcpy(&x, p + i, sizeof(x));
                x = be64toh(x);
                memcpy(o, pairs[x >> 52], 2);
                memcpy(o + 2, pairs[(x >> 40) & 0xfff], 2);
                memcpy(o + 4, pairs[(x >> 28) & 0xfff], 2);
                memcpy(o + 6, pairs[(x >> 16) & 0xfff], 2);
        }
        for (; len - i >= 3; i += 3, o += 4) {
                uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];

                memcpy(o, pairs[v >> 12], 2);
                memcpy(o + 2, pairs[v & 0xfff], 2);
        }
        if (i < len) {
                uint32_t v = (uint32_t) p[i] << 16 | (i + 1 < len ? (uint32_t) p[i + 1] << 8 : 0);

                *o++ = alphabet[v >> 18];
                *o++ = alphabet[(v >> 12) & 63];
                *o++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
                *o++ = '=';
        }
        *o = 0;
        *ret = out;
        return 0;
}

int base64_encode(const void *data, size_t len, char **ret) {
        return encode(data, len, base64_uses_ssse3(), ret);
}

int base64_encode_portable(const void *data, size_t len, char **ret) {
        return encode(data, len, false, ret);
}

/* One more than each character's value, 0 for every byte outside the alphabet ('=' included:
 * it is handled apart). */
static const uint8_t value_plus_one[256] = {
        ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8,
        ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
        ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
        ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
        ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
        ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
        ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
        ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
};

/* The 6-bit value of c, or 0xff (outside any value) if c is not in the alphabet: no branch. */
static inline uint8_t value_of(uint8_t c) {
        return (uint8_t) (value_plus_one[c] - 1);
}

static unsigned padding_of(const uint8_t *in, size_t n) {
        /* '=' may only end the text, once or twice. */
        if (n > 0 && in[n - 1] == '=')
                return n > 1 && in[n - 2] == '=' ? 2 : 1;
        return 0;
}

int base64_decoded_size(const char *text, size_t n, size_t *ret) {
        assert(text || n == 0);
        assert(ret);

        if (n % 4 != 0)
                return -EINVAL;
        *ret = n / 4 * 3 - padding_of((const uint8_t *) text, n);
        return 0;
}

#ifdef B64_SSSE3
/* The steps of decode() below with SSSE3's byte shuffle, sixteen characters (four groups) at a
 * step while six groups are left, from in[*i_io] and out[*len_io] on, both moved past what was
 * done: 12 bytes a step, as one 16-byte store reaching four bytes past them, at most to
 * out[full / 4 * 3 - 3], inside out. Whether a character outside the alphabet was seen.
 *
 * Each character is classified by its two nibbles, looked up in 16-byte tables (W. Mula's
 * method): by_high[h] is one bit for the high nibble's class, by_low[l] the classes in which
 * low nibble l is no character of the alphabet, so a character is outside it exactly where the
 * two share a bit:
 *   0x01  high 2: only '+' (low 0xb) and '/' (0xf)    0x04  high 4, 6: 'A'-'O', 'a'-'o' (not low 0)
 *   0x02  high 3: only '0'-'9' (low 0-9)              0x08  high 5, 7: 'P'-'Z', 'p'-'z' (low 0-0xa)
 *   0x10  any other high nibble (controls, 0x80 up): never
 * What a class adds to a character to make its value is looked up by the high nibble as well,
 * '/' moved to index 1 to tell it from '+'. The values of a group's four characters, a b c d,
 * become a<<18 | b<<12 | c<<6 | d by two multiply-adds, whose bytes 2, 1, 0 one more shuffle
 * puts in order. */
__attribute__((target("ssse3")))
static bool decode_steps_ssse3(const uint8_t *in, size_t full, uint8_t *out, size_t *i_io, size_t *len_io) {
        const __m128i by_low = _mm_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                             0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a);
        const __m128i by_high = _mm_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08,
                                              0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
        const __m128i add_by_high = _mm_setr_epi8(0, 63 - '/', 62 - '+', 52 - '0', -'A', -'A', 26 - 'a', 26 - 'a',
                                                  0, 0, 0, 0, 0, 0, 0, 0);
        const __m128i pack = _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
        const __m128i nibble = _mm_set1_epi8(0x0f), slash = _mm_set1_epi8('/');
        __m128i outside = _mm_setzero_si128();
        size_t i = *i_io, len = *len_io;

        for (; full - i >= 24; i += 16, len += 12) {
                __m128i chars, high, low, values, ab_cd, abcd;

                memcpy(&chars, in + i, sizeof(chars));
                high = _mm_and_si128(_mm_srli_epi32(chars, 4), nibble);
                low = _mm_and_si128(chars, nibble);
                outside = _mm_or_si128(outside, _mm_and_si128(_mm_shuffle_epi8(by_low, low),
                                                              _mm_shuffle_epi8(by_high, high)));
                /* The compare is -1 for '/' alone: its index 2 becomes 1. */
                values = _mm_add_epi8(chars, _mm_shuffle_epi8(add_by_high,
                                                              _mm_add_epi8(high, _mm_cmpeq_epi8(chars, slash))));
                ab_cd = _mm_maddubs_epi16(values, _mm_set1_epi32(0x01400140));
                abcd = _mm_madd_epi16(ab_cd, _mm_set1_epi32(0x00011000));
                abcd = _mm_shuffle_epi8(abcd, pack);
                memcpy(out + len, &abcd, sizeof(abcd));
        }
        *i_io = i;
        *len_io = len;
        return _mm_movemask_epi8(_mm_cmpeq_epi8(outside, _mm_setzero_si128())) != 0xffff;
}
#endif

/* Writes only inside the decoded size (what base64_decoded_size() says), also where the text
 * turns out malformed: a caller's block of exactly that size takes it. */
static int decode_to(const char *text, size_t n, bool ssse3, uint8_t *out, size_t size, size_t *ret_len) {
        const uint8_t *in = (const uint8_t *) text;
        b64_vs8 outside = { 0 }; /* the lanes that saw a byte outside the alphabet */
        size_t len = 0, full, i = 0;
        unsigned pad;

        if (n % 4 != 0)
                return -EINVAL;
        pad = padding_of(in, n);
        if (n / 4 * 3 - pad > size)
                return -ENOBUFS;
        full = n - (pad > 0 ? 4 : 0);

        /* SSSE3's steps first, where the CPU has it; what they leave (fewer than six groups)
         * goes on as on any other CPU. */
#ifdef B64_SSSE3
        if (ssse3 && decode_steps_ssse3(in, full, out, &i, &len))
                return -EINVAL;
#else
        assert(!ssse3);
#endif

        /* Sixteen characters (four groups) at a step while five groups are left: twelve bytes
         * written as two 8-byte stores, the second reaching two bytes past them, at most to
         * out[full / 4 * 3 - 2], inside out. A character outside the alphabet is looked for
         * once, after the loop: the text is refused whole, so the bytes written do not matter. */
        for (; full - i >= 20; i += 16, len += 12) {
                b64_vu8 chars, offset;
                b64_vu16 ab_cd;
                b64_vu32 u, t;
                b64_vu64 x;

                memcpy(&chars, in + i, sizeof(chars));
                /* What each character's class adds to it to make its value (mod 256); never 0,
                 * so 0 is a character in no class. */
                offset = (b64_vu8) ((B64_IN_RANGE(chars, 'A', 'Z') & (int8_t) -'A') |
                                    (B64_IN_RANGE(chars, 'a', 'z') & (int8_t) (26 - 'a')) |
                                    (B64_IN_RANGE(chars, '0', '9') & (52 - '0')) |
                                    ((chars == '+') & (62 - '+')) | ((chars == '/') & (63 - '/')));
                outside |= offset == 0;
                chars += offset;

                /* Each 32-bit lane is a group, the values a, b, c, d of its characters in bytes
                 * 0-3: a<<6 | b and c<<6 | d in its 16-bit halves, then a<<18 | b<<12 | c<<6 | d,
                 * whose three bytes go to bytes 0-2 the other way round. */
                ab_cd = (b64_vu16) b64_le32((b64_vu32) chars);
                ab_cd = (ab_cd << 6 & 0x0fc0) | ab_cd >> 8;
                u = (b64_vu32) ab_cd;
                t = (u << 16 >> 4) | u >> 16;
                t = t >> 16 | (t & 0xff00) | (t << 24 >> 8);
                x = b64_pack6(b64_le32(t));
                memcpy(out + len, &x, 8);
                memcpy(out + len + 6, (const uint8_t *) &x + 8, 8);
        }
        if (b64_any(outside))
                return -EINVAL;

        /* The groups left but a padded last one: four table lookups; a byte outside the
         * alphabet shows in the OR. */
        for (; i < full; i += 4) {
                uint8_t a = value_of(in[i]), b = value_of(in[i + 1]), c = value_of(in[i + 2]), d = value_of(in[i + 3]);

                if ((a | b | c | d) & 0xc0)
                        return -EINVAL;
                out[len++] = (uint8_t) (a << 2 | b >> 4);
                out[len++] = (uint8_t) (b << 4 | c >> 2);
                out[len++] = (uint8_t) (c << 6 | d);
        }
        if (pad > 0) {
                uint8_t a = value_of(in[full]), b = value_of(in[full + 1]);
                uint8_t c = pad == 1 ? value_of(in[full + 2]) : 0;

                if (((a | b | c) & 0xc0))
                        return -EINVAL;
                /* Non-canonical: the bits under the padding must be zero. */
                if ((pad == 2 && (b & 0x0f)) || (pad == 1 && (c & 0x03)))
                        return -EINVAL;
                out[len++] = (uint8_t) (a << 2 | b >> 4);
                if (pad == 1)
                        out[len++] = (uint8_t) (b << 4 | c >> 2);
        }

        *ret_len = len;
        return 0;
}

static int decode(const char *text, size_t n, bool ssse3, void **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *out = NULL;
        size_t size;
        int r;

        r = base64_decoded_size(text, n, &size);
        if (r < 0)
                return r;
        out = malloc(size + 1); /* a byte for an empty payload, which malloc(0) need not give */
        if (!out)
                return -ENOMEM;
        r = decode_to(text, n, ssse3, out, size, ret_len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        return 0;
}

int base64_decode(const char *text, size_t n, void **ret, size_t *ret_len) {
        return decode(text, n, base64_uses_ssse3(), ret, ret_len);
}

int base64_decode_portable(const char *text, size_t n, void **ret, size_t *ret_len) {
        return decode(text, n, false, ret, ret_len);
}

int base64_decode_to(const char *text, size_t n, void *out, size_t size, size_t *ret_len) {
        assert(text || n == 0);
        assert(out || size == 0);
        assert(ret_len);

        return decode_to(text, n, base64_uses_ssse3(), out, size, ret_len);
}

int base64_decode_to_portable(const char *text, size_t n, void *out, size_t size, size_t *ret_len) {
        return decode_to(text, n, false, out, size, ret_len);
}
