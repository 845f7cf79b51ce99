/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The largest answers of methods that act, built and measured. Runs in: worker. */

#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "macro.h"
#include "reply-bound.h"
#include "varlink-errors.h"
#include "varlink-message.h"

/* As call_send() in varlink-server-call.c measures it: the plain JSON and its NUL. */
static int measure(json_object *message, size_t *max) {
        _cleanup_(json_object_putp) json_object *m = message;
        const char *text;
        size_t len;

        text = json_object_to_json_string_length(m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!text)
                return -ENOMEM;
        *max = MAX(*max, len + 1);
        return 0;
}

int reply_bound_reply(json_object *parameters, size_t *max) {
        json_object *m;
        int r;

        r = varlink_message_new_reply(parameters, false, &m);
        if (r < 0)
                return r;
        return measure(m, max);
}

int reply_bound_error(const char *error, const char *k1, json_object *v1, const char *k2, json_object *v2,
                      size_t *max) {
        json_object *p = json_object_new_object(), *m;
        int r;

        /* A value that could not be made is -ENOMEM (json_object_add()), not measured as null. */
        if (!p || (k1 && json_object_add(p, k1, TAKE_PTR(v1)) < 0) ||
            (k2 && json_object_add(p, k2, TAKE_PTR(v2)) < 0)) {
                json_object_put(v1);
                json_object_put(v2);
                json_object_put(p);
                return -ENOMEM;
        }
        r = varlink_message_new_error(error, p, &m);
        if (r < 0)
                return r;
        return measure(m, max);
}

json_object *reply_bound_int(void) {
        return json_object_new_int64(INT64_MIN);
}

json_object *reply_bound_string(size_t n) {
        return reply_bound_string_of(n, 'x');
}

json_object *reply_bound_string_of(size_t n, char c) {
        _cleanup_free_ char *s = malloc(n + 1);

        if (!s)
                return NULL;
        memset(s, c, n);
        s[n] = 0;
        return json_object_new_string(s);
}

json_object *reply_bound_longest(const char *const *strings) {
        const char *longest = "";

        for (const char *const *s = strings; *s; s++)
                if (strlen(*s) > strlen(longest))
                        longest = *s;
        return json_object_new_string(longest);
}

int reply_bound_common(size_t *max) {
        size_t name = 0;
        int r;

        for (int e = 1; e < 4096; e++)
                if (errno_to_name(e))
                        name = MAX(name, strlen(errno_to_name(e)));
        r = reply_bound_error(VARLINK_ERROR_SYSTEM, "errno", reply_bound_int(), "errnoName", reply_bound_string(name),
                              max);
        if (r < 0)
                return r;
        return reply_bound_error(VARLINK_ERROR_PERMISSION_DENIED, NULL, NULL, NULL, NULL, max);
}
