/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* JSON arrays held as their elements' text. Runs in: worker, tests. */

#include <json-c/printbuf.h>
#include <limits.h>

#include "json-raw.h"
#include "json-util.h"
#include "macro.h"

/* json-c shows no object's serializer, only its userdata: tsmd sets userdata on no other
 * object (tests/unit/check-json-userdata.py keeps it so), and the magic makes sure. */
#define RAW_ARRAY_MAGIC UINT64_C(0x7261772d61727279) /* "raw-arry" */

typedef struct RawArray {
        uint64_t magic;
        JsonText text;
        size_t n;
} RawArray;

static void raw_array_free(json_object *o, void *userdata) {
        RawArray *a = userdata;

        json_text_done(&a->text);
        free(a);
}

static int raw_array_serialize(json_object *o, struct printbuf *pb, int level, int flags) {
        RawArray *a = json_object_get_userdata(o);

        if (printbuf_memappend(pb, "[", 1) < 0 ||
            (a->text.len > 0 && printbuf_memappend(pb, a->text.data, (int) a->text.len) < 0) ||
            printbuf_memappend(pb, "]", 1) < 0)
                return -1;
        return 0;
}

int json_raw_array_new(JsonText *elements, size_t n_elements, json_object **ret) {
        RawArray *a;
        json_object *o;

        assert(elements);
        assert(ret);

        /* printbuf_memappend() takes an int. */
        if (elements->len > INT_MAX - 2)
                return -E2BIG;
        a = new0(RawArray, 1);
        if (!a)
                return -ENOMEM;
        o = json_object_new_array_ext(0);
        if (!o) {
                free(a);
                return -ENOMEM;
        }
        a->magic = RAW_ARRAY_MAGIC;
        a->text = *elements;
        a->n = n_elements;
        json_object_set_serializer(o, raw_array_serialize, a, raw_array_free);
        *elements = (JsonText) {};
        *ret = o;
        return 0;
}

bool json_raw_array_get(json_object *o, const char **ret_text, size_t *ret_len, size_t *ret_n) {
        RawArray *a;

        if (!json_object_is_type(o, json_type_array))
                return false;
        a = json_object_get_userdata(o);
        if (!a || a->magic != RAW_ARRAY_MAGIC)
                return false;
        if (ret_text)
                *ret_text = a->text.data ?: "";
        if (ret_len)
                *ret_len = a->text.len;
        if (ret_n)
                *ret_n = a->n;
        return true;
}

int json_raw_array_parse(json_object *o, json_object **ret) {
        _cleanup_free_ char *text = NULL;
        const char *elements;
        json_object *tree;
        size_t len;

        assert(ret);

        if (!json_raw_array_get(o, &elements, &len, NULL))
                return -EINVAL;
        text = malloc(len + 3);
        if (!text)
                return -ENOMEM;
        text[0] = '[';
        memcpy(text + 1, elements, len);
        memcpy(text + 1 + len, "]", 2);
        tree = json_tokener_parse(text);
        if (!tree || !json_object_is_type(tree, json_type_array)) {
                json_object_put(tree);
                return -EBADMSG;
        }
        *ret = tree;
        return 0;
}

int json_raw_array_foreach(json_object *o, JsonRawElementFunc func, void *userdata) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        const char *p, *end;
        size_t len, n;
        int r;

        assert(func);

        if (!json_raw_array_get(o, &p, &len, &n))
                return -EINVAL;
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        end = p + len;
        for (size_t i = 0; p < end; i++) {
                _cleanup_json_ json_object *element = NULL;
                const char *next;

                /* One value, then its comma: json-c stops at the end of the value it parsed. */
                json_tokener_reset(tok);
                element = json_tokener_parse_ex(tok, p, (int) (end - p));
                if (json_tokener_get_error(tok) == json_tokener_continue) {
                        /* A number last waits for what follows it: the end of the text is that. */
                        element = json_tokener_parse_ex(tok, "", 1);
                        next = end;
                } else
                        next = p + json_tokener_get_parse_end(tok);
                if (json_tokener_get_error(tok) != json_tokener_success) /* (JSON null is NULL) */
                        return -EBADMSG;
                p = next;
                if (p < end && (*p++ != ',' || p == end))
                        return -EBADMSG;
                r = func(element, i, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}
