/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the base64 codec (proto/base64.c), which reads every payload a guest
 * sends: the input, any bytes, is first data to encode, against an encoder that takes six bits
 * at a time, and must decode back to itself; then it is a text to decode, against a decoder
 * that takes a bit at a time and knows nothing of tables or groups: both accept the same texts
 * (RFC 4648, padded, canonical, nothing else) and give the same bytes, and
 * base64_decoded_size() claims the length the decoder gives. Both ways through base64_decode()
 * (SSSE3's steps where this CPU has it) and base64_decode_portable() (the steps of any CPU), the
 * same through base64_decode_to() into a block of exactly the size the text claims (as tsmd
 * decodes a payload into the block it sends: ASan sees a write past it), and the encoder both
 * ways as well.
 */

#include <stdint.h>

#include "base64.h"
#include "base64-reference.h"
#include "macro.h"

/* Larger inputs only make each run slower without reaching new code. */
#define INPUT_MAX (64U * 1024U)

/* Decodes text as the reference does (want_len bytes of want, or -1 for a text it refuses) and
 * as base64_decoded_size() claims; aborts if not. */
static void check_decode(int (*decode)(const char *, size_t, void **, size_t *),
                         const uint8_t *text, size_t size, const uint8_t *want, ssize_t want_len) {
        _cleanup_free_ void *got = NULL;
        size_t len, claimed;
        int r;

        r = decode((const char *) text, size, &got, &len);
        if (r == -ENOMEM)
                return;
        if ((want_len < 0) != (r == -EINVAL) || (r < 0 && r != -EINVAL))
                abort();
        if (r == 0) {
                if (len != (size_t) want_len || memcmp(got, want, len) != 0)
                        abort();
                if (base64_decoded_size((const char *) text, size, &claimed) < 0 || claimed != len)
                        abort();
        }
}

/* base64_decode_to() (or its portable steps) into a block of exactly the claimed size. */
static int decode_to_exact(int (*decode_to)(const char *, size_t, void *, size_t, size_t *),
                           const char *text, size_t n, void **ret, size_t *ret_len) {
        _cleanup_free_ void *out = NULL;
        size_t size = 0;
        int r;

        (void) base64_decoded_size(text, n, &size);
        out = malloc(size ?: 1);
        if (!out)
                return -ENOMEM;
        r = decode_to(text, n, out, size, ret_len);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = NULL, *text_portable = NULL, *want_text = NULL;
        _cleanup_free_ void *back = NULL, *back_portable = NULL;
        _cleanup_free_ uint8_t *want = NULL;
        ssize_t want_len;
        size_t len;
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
        r = base64_encode_portable(data, size, &text_portable);
        if (r == -ENOMEM)
                return 0;
        if (r < 0 || strcmp(text_portable, want_text) != 0)
                abort();
        r = base64_decode(text, strlen(text), &back, &len);
        if (r == -ENOMEM)
                return 0;
        if (r < 0 || len != size || memcmp(back, data, size) != 0)
                abort();
        r = base64_decode_portable(text, strlen(text), &back_portable, &len);
        if (r == -ENOMEM)
                return 0;
        if (r < 0 || len != size || memcmp(back_portable, data, size) != 0)
                abort();

        /* Decoding the input itself. */
        want = malloc(size / 4 * 3 + 1);
        if (!want)
                return 0;
        want_len = reference_decode(data, size, want);
        check_decode(base64_decode, data, size, want, want_len);
        check_decode(base64_decode_portable, data, size, want, want_len);
        check_decode(decode_to, data, size, want, want_len);
        check_decode(decode_to_portable, data, size, want, want_len);
        return 0;
}
