/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Typed access to the fields of tsmd's replies. tsmd validates its replies against the IDL in
 * debug builds only, so libtsm checks every field it uses: a missing or mistyped one is
 * -EBADMSG, never a crash. Runs in: the VMM process.
 */

#include "base64.h"
#include "libtsm-internal.h"

static json_object *field(json_object *o, const char *key, json_type type) {
        json_object *v;

        if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
            !json_object_is_type(v, type))
                return NULL;
        return v;
}

int ltsm_reply_get_int(json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret) {
        json_object *v = field(o, key, json_type_int);
        int64_t i;

        if (!v)
                return -EBADMSG;
        /* json-c clamps what does not fit into int64_t: out of range either way. */
        i = json_object_get_int64(v);
        if (i < min || i > max)
                return -EBADMSG;
        *ret = i;
        return 0;
}

int ltsm_reply_get_string(json_object *o, const char *key, const char **ret) {
        json_object *v = field(o, key, json_type_string);

        if (!v)
                return -EBADMSG;
        *ret = json_object_get_string(v);
        return 0;
}

int ltsm_reply_get_bool(json_object *o, const char *key, bool *ret) {
        json_object *v = field(o, key, json_type_boolean);

        if (!v)
                return -EBADMSG;
        *ret = json_object_get_boolean(v);
        return 0;
}

TsmTdiState ltsm_reply_get_state(json_object *o, const char *key) {
        json_object *v = field(o, key, json_type_string);

        return v ? tsm_tdi_state_from_string(json_object_get_string(v)) : _TSM_TDI_STATE_INVALID;
}

int ltsm_reply_get_base64(json_object *o, const char *key, size_t max, void **ret, size_t *ret_len) {
        _cleanup_free_ void *data = NULL;
        json_object *v = field(o, key, json_type_string);
        size_t len, bound;
        int r;

        if (!v)
                return -EBADMSG;
        /* More than max whatever the padding: bound - 2 > max, as "max + 2" wraps for a max
         * of SIZE_MAX - 1 or more (a 32-bit VMM may take any size_t up to SIZE_MAX). */
        bound = (size_t) json_object_get_string_len(v) / 4 * 3;
        if (bound > 2 && bound - 2 > max)
                return -ENOBUFS;
        r = base64_decode(json_object_get_string(v), (size_t) json_object_get_string_len(v), &data, &len);
        if (r == -EINVAL)
                return -EBADMSG;
        if (r < 0)
                return r;
        if (len > max)
                return -ENOBUFS;
        *ret = TAKE_PTR(data);
        *ret_len = len;
        return 0;
}
