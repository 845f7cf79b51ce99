/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* json-c helpers. Runs in: worker, clients. */

#include <math.h>

#include "json-build.h"
#include "json-strict.h"
#include "json-util.h"

int json_tokener_new_strict(unsigned depth, json_tokener **ret) {
        json_tokener *tok;

        assert(ret);

        /* json-c's default depth is 32; callers choose theirs on purpose. json_strict_check()
         * enforces the limit exactly; json-c gets one level of slack as it counts differently. */
        tok = json_tokener_new_ex((int) CLAMP(depth, 1u, 4096u) + 1);
        if (!tok)
                return -ENOMEM;
        /* Not JSON_TOKENER_VALIDATE_UTF8: json_strict_check() has validated the UTF-8 (more
         * strictly) by the time json-c parses, and json-c's check is a call per byte, a third
         * of the cost of a 4 KiB payload. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        *ret = tok;
        return 0;
}

/* Counts object members and refuses numbers json-c could not represent (infinite: 1e400),
 * unless any number is taken (JSON_STRICT_ANY_NUMBER). */
static int json_count_members(json_object *o, JsonStrictFlags flags, size_t *n) {
        switch (json_object_get_type(o)) {
        case json_type_object: {
                json_object_object_foreach(o, key, value) {
                        (void) key;
                        (*n)++;
                        if (json_count_members(value, flags, n) < 0)
                                return -EBADMSG;
                }
                return 0;
        }
        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++)
                        if (json_count_members(json_object_array_get_idx(o, i), flags, n) < 0)
                                return -EBADMSG;
                return 0;
        case json_type_double:
                return (flags & JSON_STRICT_ANY_NUMBER) || isfinite(json_object_get_double(o)) ? 0 : -EBADMSG;
        default:
                return 0;
        }
}

int json_parse_strict(json_tokener *tok, unsigned max_depth, size_t max_values, const char *text, size_t len,
                      json_object **ret) {
        return json_parse_strict_full(tok, max_depth, max_values, 0, text, len, ret);
}

int json_parse_strict_full(json_tokener *tok, unsigned max_depth, size_t max_values, JsonStrictFlags flags,
                           const char *text, size_t len, json_object **ret) {
        enum json_tokener_error err;
        JsonStringHints hints;
        json_object *obj;
        size_t off, end, n_members = 0, n_parsed = 0;
        bool container;
        int r;

        assert(tok);
        assert(text || len == 0);
        assert(ret);

        if (len > INT32_MAX)
                return -EMSGSIZE;

        /* Objects and arrays (every Varlink message) are built without json-c's tokener, which
         * costs most on long strings; a bare scalar keeps json-c's own reading of it, which
         * clamps what is out of range: refused then, whatever the flags. */
        for (off = 0; off < len && strchr(" \t\r\n", text[off]) && text[off]; off++)
                ;
        container = off < len && (text[off] == '{' || text[off] == '[');
        if (!container)
                flags &= ~JSON_STRICT_ANY_NUMBER;

        r = json_strict_check_full(text, len, max_depth, max_values, flags, &n_members, &hints);
        if (r < 0)
                return r;

        if (container) {
                r = json_build_checked_full(text, len, max_depth, &hints, &obj);
                if (r < 0)
                        return r;
        } else {
                json_tokener_reset(tok);
                obj = json_tokener_parse_ex(tok, text, (int) len);
                err = json_tokener_get_error(tok);
                end = json_tokener_get_parse_end(tok);
                /* A number at the very end ("0", "-1.5"): json-c waits for the byte that ends it,
                 * as it would in a stream. The text ends here: a NUL says so. */
                if (!obj && err == json_tokener_continue) {
                        obj = json_tokener_parse_ex(tok, "", 1);
                        err = json_tokener_get_error(tok);
                        end = len;
                }
                if (!obj) {
                        /* json-c reports an incomplete value as "continue": for us the message ended. */
                        if (err == json_tokener_error_depth)
                                return -ELOOP;
                        return -EBADMSG;
                }

                /* Anything but whitespace after the value is garbage. */
                for (off = end; off < len; off++)
                        if (!strchr(" \t\r\n", text[off])) {
                                json_object_put(obj);
                                return -EBADMSG;
                        }
        }

        /* json-c keeps the last of duplicate keys: a member went missing if counts differ. */
        if (json_count_members(obj, flags, &n_parsed) < 0 || n_parsed != n_members) {
                json_object_put(obj);
                return -EBADMSG;
        }

        *ret = obj;
        return 0;
}

static int object_add(json_object *obj, const char *key, json_object *value, unsigned flags) {
        assert(obj);
        assert(key);

        /* json-c stores NULL as null: the value whose allocation failed would go out as null. */
        if (!value)
                return -ENOMEM;
        if (json_object_object_add_ex(obj, key, value, flags) < 0) {
                json_object_put(value);
                return -ENOMEM;
        }
        return 0;
}

int json_object_add(json_object *obj, const char *key, json_object *value) {
        return object_add(obj, key, value, 0);
}

int json_object_add_constant_key(json_object *obj, const char *key, json_object *value) {
        return object_add(obj, key, value, JSON_C_OBJECT_ADD_CONSTANT_KEY);
}

int json_object_add_null(json_object *obj, const char *key) {
        assert(obj);
        assert(key);

        return json_object_object_add(obj, key, NULL) < 0 ? -ENOMEM : 0;
}

int json_object_add_string_or_null(json_object *obj, const char *key, const char *s) {
        return s ? json_object_add(obj, key, json_object_new_string(s)) : json_object_add_null(obj, key);
}

int json_array_append(json_object *array, json_object *value) {
        assert(array);

        if (!value)
                return -ENOMEM;
        if (json_object_array_add(array, value) < 0) {
                json_object_put(value);
                return -ENOMEM;
        }
        return 0;
}

const char *json_get_string(json_object *obj, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* json-c asserts on array access to anything else: whoever walks a peer's array gets it here. */
json_object *json_get_array(json_object *obj, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_array))
                return NULL;
        return v;
}
