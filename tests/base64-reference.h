/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * base64 as RFC 4648 section 4 reads, a bit at a time, knowing nothing of tables or groups:
 * the reference proto/base64.c is checked against, by test-base64 and fuzz-base64. Included
 * once by such a program. Runs in: tests.
 */
#pragma once

#include <stdint.h>
#include <string.h>
#include <sys/types.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void reference_encode(const uint8_t *data, size_t n, char *out) {
        size_t o = 0;

        for (size_t bit = 0; bit < n * 8; bit += 6) {
                unsigned v = 0;

                for (size_t b = bit; b < bit + 6; b++)
                        v = v << 1 | (b < n * 8 ? (data[b / 8] >> (7 - b % 8)) & 1 : 0);
                out[o++] = alphabet[v];
        }
        while (o % 4 != 0)
                out[o++] = '=';
        out[o] = 0;
}

/* A bit at a time into out; the bits left over when the characters end must be zero, and
 * fewer than eight of them: '=' pads to a multiple of four, only at the end, and only as many
 * as the characters before it leave over (one for 18 bits, two for 12). -1 if not so. */
static ssize_t reference_decode(const void *text, size_t n, uint8_t *out) {
        const uint8_t *t = text;
        size_t chars = n, bits = 0, len = 0;
        unsigned acc = 0;

        while (chars > 0 && t[chars - 1] == '=')
                chars--;
        if (n % 4 != 0 || n - chars != (4 - chars % 4) % 4)
                return -1;
        for (size_t i = 0; i < chars; i++) {
                const char *pos = t[i] ? strchr(alphabet, t[i]) : NULL;

                if (!pos)
                        return -1;
                for (int b = 5; b >= 0; b--) {
                        acc = acc << 1 | (((unsigned) (pos - alphabet) >> b) & 1);
                        if (++bits == 8) {
                                out[len++] = (uint8_t) acc;
                                acc = 0;
                                bits = 0;
                        }
                }
        }
        if (acc != 0 || bits >= 6)
                return -1;
        return (ssize_t) len;
}
