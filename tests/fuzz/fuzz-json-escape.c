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

static bool has_byte_from_0x80(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] >= 0x80)
                        return true;
        return false;
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
        /* Refused only for bytes from 0x80 up: not UTF-8, perhaps (escaped, all else is). */
        if (r == -EBADMSG && has_byte_from_0x80(data, size))
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
