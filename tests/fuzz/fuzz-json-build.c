/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for json_parse_strict() (proto/json-util.c, json-build.c, json-strict.c,
 * json-run.h), every byte a client or tsmd receives, against the path it replaced: the strict
 * check and then json-c's tokener (JSON_TOKENER_STRICT, as json_tokener_new_strict() sets
 * it). Aborts unless both give the same result, the same error and the same tree: types,
 * int64 and uint64 values, doubles and the text they keep, strings byte for byte, keys and
 * member order, and what the whole tree serializes to. The first byte of the input chooses the
 * depth limit (1 + its value % 80, 4096 from 0xf0 up: past 64 the builder's stack moves to the
 * heap), the rest is the text. Then json_build_checked() alone reads the text unchecked, as no
 * caller should: it must neither crash nor leak.
 *
 * One difference is json-c's: it writes U+FFFD for an escaped surrogate pair whose code point
 * ends in D800-DFFF (U+1D800-U+1DFFF, U+2D800..., a 32nd of the pairs), where the builder
 * writes the code point, as RFC 8259 says. json-c is given those as the raw UTF-8 instead,
 * which it copies as it is, where the builder reads the text (json_parse_strict() still leaves
 * a bare scalar to json-c).
 */

#include <math.h>
#include <stdint.h>

#include "json-build.h"
#include "json-strict.h"
#include "json-util.h"

/* Larger inputs only make each run slower without reaching new code. */
#define INPUT_MAX (64U * 1024U)

/* json-c's tokener and the member count of json_count_members(), recursive like it. */
static int count_members(json_object *o, size_t *n) {
        switch (json_object_get_type(o)) {
        case json_type_object: {
                json_object_object_foreach(o, key, value) {
                        (void) key;
                        (*n)++;
                        if (count_members(value, n) < 0)
                                return -EBADMSG;
                }
                return 0;
        }
        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++)
                        if (count_members(json_object_array_get_idx(o, i), n) < 0)
                                return -EBADMSG;
                return 0;
        case json_type_double:
                return isfinite(json_object_get_double(o)) ? 0 : -EBADMSG;
        default:
                return 0;
        }
}

static unsigned hex4(const char *p) {
        unsigned v = 0;

        for (int i = 0; i < 4; i++)
                v = v << 4 | (unsigned) (p[i] <= '9' ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
        return v;
}

/* A checked text with each escaped pair json-c gets wrong (see the top) as raw UTF-8; NULL if
 * there is none. Outside strings a checked text has no backslash, inside each escape is whole. */
static char *without_pairs_jsonc_gets_wrong(const char *text, size_t len, size_t *ret_len) {
        _cleanup_free_ char *out = NULL;
        bool in_string = false, any = false;
        size_t n = 0;

        out = malloc(len);
        if (!out)
                return NULL;
        for (size_t i = 0; i < len;) {
                unsigned cp;

                if (text[i] == '"')
                        in_string = !in_string;
                if (!in_string || text[i] != '\\') {
                        out[n++] = text[i++];
                        continue;
                }
                if (text[i + 1] != 'u' || (hex4(text + i + 2) & 0xFC00) != 0xD800) {
                        memcpy(out + n, text + i, 2);
                        n += 2;
                        i += 2;
                        continue;
                }
                cp = 0x10000 + ((hex4(text + i + 2) & 0x3FF) << 10) + (hex4(text + i + 8) & 0x3FF);
                if ((cp & 0xF800) != 0xD800) {
                        memcpy(out + n, text + i, 12);
                        n += 12;
                        i += 12;
                        continue;
                }
                out[n++] = (char) (0xF0 | cp >> 18);
                out[n++] = (char) (0x80 | (cp >> 12 & 0x3F));
                out[n++] = (char) (0x80 | (cp >> 6 & 0x3F));
                out[n++] = (char) (0x80 | (cp & 0x3F));
                i += 12;
                any = true;
        }
        if (!any)
                return NULL;
        *ret_len = n;
        return TAKE_PTR(out);
}

/* json_parse_strict() before json-build.c (886509c): the check, then json-c for everything. */
static int reference_parse(json_tokener *tok, unsigned max_depth, const char *text, size_t len, json_object **ret) {
        _cleanup_free_ char *raw = NULL;
        size_t off, end, n_members = 0, n_parsed = 0;
        json_object *obj;
        int r;

        r = json_strict_check(text, len, max_depth, SIZE_MAX, &n_members);
        if (r < 0)
                return r;
        for (off = 0; off < len && strchr(" \t\r\n", text[off]) && text[off]; off++)
                ;
        if (off < len && (text[off] == '{' || text[off] == '[')) {
                raw = without_pairs_jsonc_gets_wrong(text, len, &len);
                if (raw)
                        text = raw;
        }
        json_tokener_reset(tok);
        obj = json_tokener_parse_ex(tok, text, (int) len);
        end = json_tokener_get_parse_end(tok);
        /* A scalar at the very end of the text: json-c waits for a byte to end it; a NUL says
         * the text ended. */
        if (!obj && json_tokener_get_error(tok) == json_tokener_continue) {
                obj = json_tokener_parse_ex(tok, "", 1);
                end = len;
        }
        if (!obj)
                return json_tokener_get_error(tok) == json_tokener_error_depth ? -ELOOP : -EBADMSG;
        for (off = end; off < len; off++)
                if (!strchr(" \t\r\n", text[off])) {
                        json_object_put(obj);
                        return -EBADMSG;
                }
        if (count_members(obj, &n_parsed) < 0 || n_parsed != n_members) {
                json_object_put(obj);
                return -EBADMSG;
        }
        *ret = obj;
        return 0;
}

static void same_tree(json_object *a, json_object *b) {
        if (json_object_get_type(a) != json_object_get_type(b))
                abort();
        switch (json_object_get_type(a)) {
        case json_type_object: {
                struct json_object_iterator ia = json_object_iter_begin(a), ea = json_object_iter_end(a);
                struct json_object_iterator ib = json_object_iter_begin(b), eb = json_object_iter_end(b);

                if (json_object_object_length(a) != json_object_object_length(b))
                        abort();
                for (; !json_object_iter_equal(&ia, &ea); json_object_iter_next(&ia), json_object_iter_next(&ib)) {
                        if (json_object_iter_equal(&ib, &eb) ||
                            strcmp(json_object_iter_peek_name(&ia), json_object_iter_peek_name(&ib)) != 0)
                                abort();
                        same_tree(json_object_iter_peek_value(&ia), json_object_iter_peek_value(&ib));
                }
                if (!json_object_iter_equal(&ib, &eb))
                        abort();
                break;
        }
        case json_type_array:
                if (json_object_array_length(a) != json_object_array_length(b))
                        abort();
                for (size_t i = 0; i < json_object_array_length(a); i++)
                        same_tree(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i));
                break;
        case json_type_string:
                if (json_object_get_string_len(a) != json_object_get_string_len(b) ||
                    memcmp(json_object_get_string(a), json_object_get_string(b),
                           (size_t) json_object_get_string_len(a)) != 0)
                        abort();
                break;
        case json_type_int:
                /* Both getters: an int64 and a uint64 differ in one or the other. */
                if (json_object_get_int64(a) != json_object_get_int64(b) ||
                    json_object_get_uint64(a) != json_object_get_uint64(b))
                        abort();
                break;
        case json_type_double: {
                double da = json_object_get_double(a), db = json_object_get_double(b);

                /* The kept text too: a double serializes as it was written. */
                if (memcmp(&da, &db, sizeof(da)) != 0 ||
                    strcmp(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN),
                           json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN)) != 0)
                        abort();
                break;
        }
        case json_type_boolean:
                if (json_object_get_boolean(a) != json_object_get_boolean(b))
                        abort();
                break;
        case json_type_null:
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_json_ json_object *want = NULL, *got = NULL, *unchecked = NULL;
        const char *text;
        unsigned max_depth;
        size_t len;
        int r, want_r;

        if (size < 1 || size > INPUT_MAX)
                return 0;
        max_depth = data[0] >= 0xf0 ? 4096 : 1 + data[0] % 80;
        /* The text in a buffer of its own length (libFuzzer's copy): no NUL after it, so a
         * read past its end is one ASan sees. */
        text = (const char *) data + 1;
        len = size - 1;

        if (json_tokener_new_strict(max_depth, &tok) < 0)
                return 0;
        want_r = reference_parse(tok, max_depth, text, len, &want);
        r = json_parse_strict(tok, max_depth, SIZE_MAX, text, len, &got);
        if (r == -ENOMEM || want_r == -ENOMEM)
                return 0;
        if (r != want_r)
                abort();
        if (r == 0) {
                same_tree(want, got);
                if (strcmp(json_object_to_json_string_ext(want, JSON_C_TO_STRING_PLAIN),
                           json_object_to_json_string_ext(got, JSON_C_TO_STRING_PLAIN)) != 0)
                        abort();
        }

        /* Unchecked text: garbage in, but no crash and no leak (ASan and LeakSanitizer watch). */
        (void) json_build_checked(text, len, max_depth, &unchecked);
        return 0;
}
