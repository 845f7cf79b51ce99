/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the base64 codec (proto/base64.c), which reads every payload a guest
 * sends: the input, any bytes, is first data to encode, against an encoder that takes six bits
 * at a time, and must decode back to itself; then it is a text to decode, against a decoder
 * that takes a bit at a time and knows nothing of tables or groups: both accept the same texts
 * (RFC 4648, padded, canonical, nothing else) and give the same bytes, and
 * base64_decoded_size() claims the length the decoder gives.
 */

#include <stdint.h>

#include "base64.h"
#include "base64-reference.h"
#include "macro.h"

/* Larger inputs only make each run slower without reaching new code. */
#define INPUT_MAX (64U * 1024U)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = NULL, *want_text = NULL;
        _cleanup_free_ void *back = NULL, *got = NULL;
        _cleanup_free_ uint8_t *want = NULL;
        size_t len, claimed;
        ssize_t want_len;
        int r;

        if (size > INPUT_MAX)
                return 0;

        /* Encoding, and back. */
        want_text = malloc(DIV_ROUND_UP(size, 3) * 4 + 1);
        if (!want_text)
                return 0;
        reference_encode(data, size, want_text);
        r = base64_encode(data, size, &text);
        if (r == -ENOMEM)
                return 0;
        if (r < 0 || strcmp(text, want_text) != 0)
                abort();
        r = base64_decode(text, strlen(text), &back, &len);
        if (r == -ENOMEM)
                return 0;
        if (r < 0 || len != size || memcmp(back, data, size) != 0)
                abort();

        /* Decoding the input itself. */
        want = malloc(size / 4 * 3 + 1);
        if (!want)
                return 0;
        want_len = reference_decode(data, size, want);
        r = base64_decode((const char *) data, size, &got, &len);
        if (r == -ENOMEM)
                return 0;
        if ((want_len < 0) != (r == -EINVAL) || (r < 0 && r != -EINVAL))
                abort();
        if (r == 0) {
                if (len != (size_t) want_len || memcmp(got, want, len) != 0)
                        abort();
                if (base64_decoded_size((const char *) data, size, &claimed) < 0 || claimed != len)
                        abort();
        }
        return 0;
}
