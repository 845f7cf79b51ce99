/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for json_write() (proto/json-write.c): the input read as JSON, by
 * json_parse_strict() (the trees every message tsmd and libtsm receive becomes, doubles with
 * their text kept) and by json-c's lenient tokener (whatever else json-c makes of bytes: NaN,
 * Infinity, single-quoted strings, uint64s, keys it cuts at a NUL), then every string of the tree
 * replaced by a json_object_new_string_fast() one of the same bytes, as the payloads tsmd sends
 * are. Aborts unless json_write() writes each tree byte for byte as json-c's
 * json_object_to_json_string_ext(JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) does,
 * into a buffer kept from one input to the next as a server keeps it.
 */

#include <stdint.h>

#include "json-escape.h"
#include "json-util.h"
#include "json-write.h"

/* Larger inputs only make each run slower without reaching new code. */
#define INPUT_MAX (64U * 1024U)

static JsonText kept;

static void same(json_object *o) {
        const char *ref;
        size_t n;

        ref = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        if (!ref || json_write(o, &kept) < 0)
                return; /* out of memory */
        if (kept.len != n || memcmp(kept.data, ref, n) != 0 || kept.data[n] != '\0')
                abort();
}

/* The strings of o, members and elements, made fast ones (the top is left as it is). */
static void make_strings_fast(json_object *o) {
        if (json_object_is_type(o, json_type_object)) {
                json_object_object_foreach(o, key, value) {
                        if (json_object_is_type(value, json_type_string)) {
                                json_object *f = json_object_new_string_fast(json_object_get_string(value),
                                                                             (size_t) json_object_get_string_len(value));
                                if (f)
                                        (void) json_object_object_add(o, key, f);
                        } else
                                make_strings_fast(value);
                }
        } else if (json_object_is_type(o, json_type_array))
                for (size_t i = 0; i < json_object_array_length(o); i++) {
                        json_object *v = json_object_array_get_idx(o, i);

                        if (json_object_is_type(v, json_type_string)) {
                                json_object *f = json_object_new_string_fast(json_object_get_string(v),
                                                                             (size_t) json_object_get_string_len(v));
                                if (f)
                                        (void) json_object_array_put_idx(o, i, f);
                        } else
                                make_strings_fast(v);
                }
}

static void check(json_object *o) {
        same(o);
        make_strings_fast(o);
        same(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL, *lenient = NULL;
        _cleanup_json_ json_object *strict = NULL, *loose = NULL;

        if (size > INPUT_MAX)
                return 0;

        if (json_tokener_new_strict(64, &tok) >= 0 &&
            json_parse_strict(tok, 64, SIZE_MAX, (const char *) data, size, &strict) >= 0)
                check(strict);

        lenient = json_tokener_new_ex(64);
        if (lenient) {
                loose = json_tokener_parse_ex(lenient, (const char *) data, (int) size);
                if (loose)
                        check(loose);
        }
        return 0;
}
