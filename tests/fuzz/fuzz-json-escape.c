/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the strings that serialize a run at a time (proto/json-escape.c,
 * json-run.h): the input, any bytes at all, as a json_object_new_string_fast() string against
 * a json-c one, serialized alone and as an object's member with each set of flags tsmd and
 * libtsm use (and pretty printing). Aborts unless the string keeps the bytes it was given and
 * both serialize byte for byte the same. The member's serialization then goes back through
 * json_parse_strict(), which must give the same bytes again (or refuse bytes from 0x80 up
 * that are not UTF-8).
 */

#include <stdint.h>

#include "json-escape.h"
#include "json-util.h"

/* Larger inputs only make each run slower without reaching new code. */
#define INPUT_MAX (64U * 1024U)

static const int flag_sets[] = {
        JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
        JSON_C_TO_STRING_PLAIN,
        JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_PRETTY,
};

static void same_serialization(json_object *a, json_object *b, int flags) {
        const char *sa, *sb;
        size_t la, lb;

        sa = json_object_to_json_string_length(a, flags, &la);
        sb = json_object_to_json_string_length(b, flags, &lb);
        if (!sa || !sb)
                return; /* out of memory */
        if (la != lb || memcmp(sa, sb, la) != 0)
                abort();
}

/* RFC 3629 UTF-8, written here as a reference: no overlong forms, no surrogates, nothing
 * above U+10FFFF. */
static bool is_utf8(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t k;

                if (p[i] < 0x80) {
                        i++;
                        continue;
                }
                k = p[i] >= 0xF0 ? 3 : p[i] >= 0xE0 ? 2 : p[i] >= 0xC0 ? 1 : 0;
                if (k == 0 || p[i] >= 0xF8 || n - i <= k)
                        return false;
                cp = p[i] & (0x3F >> k);
                for (size_t j = 1; j <= k; j++) {
                        if ((p[i + j] & 0xC0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i + j] & 0x3F);
                }
                if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
                    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
                        return false;
                i += k + 1;
        }
        return true;
}

/* The serialized member read back by the strict parser (which takes no invalid UTF-8). */
static void reads_back(json_object *fast_obj, const uint8_t *data, size_t size) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_json_ json_object *back = NULL;
        json_object *v;
        const char *s;
        size_t n;
        int r;

        s = json_object_to_json_string_length(fast_obj, JSON_C_TO_STRING_PLAIN, &n);
        if (!s || json_tokener_new_strict(1, &tok) < 0)
                return;
        r = json_parse_strict(tok, 1, SIZE_MAX, s, n, &back);
        if (r == -ENOMEM)
                return;
        /* Refused only for bytes that are not UTF-8 (escaped, everything else is). */
        if (r == -EBADMSG && !is_utf8(data, size))
                return;
        if (r < 0 || !json_object_object_get_ex(back, "k/\"", &v) || !json_object_is_type(v, json_type_string) ||
            (size_t) json_object_get_string_len(v) != size || memcmp(json_object_get_string(v), data, size) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_json_ json_object *ref = NULL, *fast = NULL, *ref_obj = NULL, *fast_obj = NULL;

        if (size > INPUT_MAX)
                return 0;

        ref = json_object_new_string_len((const char *) data, (int) size);
        fast = json_object_new_string_fast((const char *) data, size);
        ref_obj = json_object_new_object();
        fast_obj = json_object_new_object();
        if (!ref || !fast || !ref_obj || !fast_obj)
                return 0;
        if ((size_t) json_object_get_string_len(fast) != size || memcmp(json_object_get_string(fast), data, size) != 0)
                abort();
        if (json_object_add(ref_obj, "k/\"", json_object_get(ref)) < 0 ||
            json_object_add(ref_obj, "n", json_object_new_int(1)) < 0 ||
            json_object_add(fast_obj, "k/\"", json_object_get(fast)) < 0 ||
            json_object_add(fast_obj, "n", json_object_new_int(1)) < 0)
                return 0;

        for (size_t f = 0; f < ELEMENTSOF(flag_sets); f++) {
                same_serialization(ref, fast, flag_sets[f]);
                same_serialization(ref_obj, fast_obj, flag_sets[f]);
        }
        reads_back(fast_obj, data, size);
        return 0;
}
