/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Base64 codec. Strict on input: a payload has exactly one encoding. Runs in: worker, clients. */

#include <endian.h>

#include "base64.h"

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

int base64_encode(const void *data, size_t len, char **ret) {
        const uint8_t *p = data;
        char *out, *o;
        size_t i = 0;

        if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
                return -E2BIG;
        out = malloc(DIV_ROUND_UP(len, 3) * 4 + 1);
        if (!out)
                return -ENOMEM;

        /* Six bytes at a step from one 8-byte load while 8 are left; then whole groups; then the
         * last one or two bytes, padded. */
        o = out;
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

int base64_decode(const char *text, size_t n, void **ret, size_t *ret_len) {
        const uint8_t *in = (const uint8_t *) text;
        _cleanup_free_ uint8_t *out = NULL;
        size_t len = 0, full;
        unsigned pad;

        if (n % 4 != 0)
                return -EINVAL;
        out = malloc(n / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;

        pad = padding_of(in, n);
        full = n - (pad > 0 ? 4 : 0);

        /* Every group but a padded last one: four table lookups; a byte outside the alphabet
         * shows in the OR. */
        for (size_t i = 0; i < full; i += 4) {
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

        *ret = TAKE_PTR(out);
        *ret_len = len;
        return 0;
}
