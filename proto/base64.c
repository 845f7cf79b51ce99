/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Base64 codec. Strict on input: a payload has exactly one encoding. Runs in: worker, clients. */

#include "base64.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_encode(const void *data, size_t len, char **ret) {
        const uint8_t *p = data;
        char *out, *o;

        if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
                return -E2BIG;
        out = malloc(DIV_ROUND_UP(len, 3) * 4 + 1);
        if (!out)
                return -ENOMEM;

        o = out;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t) p[i] << 16;

                if (i + 1 < len)
                        v |= (uint32_t) p[i + 1] << 8;
                if (i + 2 < len)
                        v |= p[i + 2];
                *o++ = alphabet[(v >> 18) & 63];
                *o++ = alphabet[(v >> 12) & 63];
                *o++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
                *o++ = i + 2 < len ? alphabet[v & 63] : '=';
        }
        *o = 0;
        *ret = out;
        return 0;
}

static int value_of(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int base64_decode(const char *text, size_t n, void **ret, size_t *ret_len) {
        _cleanup_free_ uint8_t *out = NULL;
        size_t len = 0;

        if (n % 4 != 0)
                return -EINVAL;
        out = malloc(n / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;

        for (size_t i = 0; i < n; i += 4) {
                int v[4], pad = 0;

                for (int k = 0; k < 4; k++) {
                        if (text[i + k] == '=' && i + 4 == n && k >= 2) {
                                v[k] = 0;
                                pad++;
                                continue;
                        }
                        if (pad > 0) /* '=' only at the very end */
                                return -EINVAL;
                        v[k] = value_of(text[i + k]);
                        if (v[k] < 0)
                                return -EINVAL;
                }
                uint32_t w = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 | (uint32_t) v[2] << 6 | (uint32_t) v[3];
                /* Non-canonical: bits under the padding must be zero. */
                if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
                        return -EINVAL;
                out[len++] = (uint8_t) (w >> 16);
                if (pad < 2)
                        out[len++] = (uint8_t) (w >> 8);
                if (pad < 1)
                        out[len++] = (uint8_t) w;
        }

        *ret = TAKE_PTR(out);
        *ret_len = len;
        return 0;
}
