/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* json-c trees serialized as json-c does, into a kept buffer. Runs in: worker, clients. */

#include <inttypes.h>

#include "json-escape.h"
#include "json-raw.h"
#include "json-run.h"
#include "json-write.h"

void json_text_done(JsonText *t) {
        t->data = mfree(t->data);
        t->len = t->allocated = 0;
}

void json_text_trim(JsonText *t, size_t keep) {
        if (t->allocated > keep)
                json_text_done(t);
}

/* Room for n more bytes and the NUL. */
static int grow(JsonText *t, size_t n) {
        if (n > SIZE_MAX - 1 - t->len || !GREEDY_REALLOC(t->data, t->allocated, t->len + n + 1))
                return -ENOMEM;
        return 0;
}

/* Inlined, most appends a byte or two: a call and a check of the room each was most of what a
 * small reply cost. */
static inline int append(JsonText *t, const void *p, size_t n) {
        if (_unlikely_(t->allocated - t->len <= n) && grow(t, n) < 0)
                return -ENOMEM;
        memcpy(t->data + t->len, p, n);
        t->len += n;
        return 0;
}

#define append_literal(t, s) append((t), "" s "", sizeof(s) - 1)

/* As json-c's json_escape_str() with JSON_C_TO_STRING_NOSLASHESCAPE, in quotes. */
static int write_string(JsonText *t, const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s, *end = p + n;
        char e[JSON_ESCAPE_MAX];
        int r;

        r = append_literal(t, "\"");
        for (;;) {
                const unsigned char *run = json_run_unescaped(p, end, true);

                if (r >= 0)
                        r = append(t, p, (size_t) (run - p));
                if (r < 0 || run >= end)
                        break;
                r = append(t, e, json_escape_byte(*run, true, e));
                p = run + 1;
        }
        return r < 0 ? r : append_literal(t, "\"");
}

/* json-c keeps an int64 or a uint64 and prints it with PRId64 or PRIu64; it reads back the
 * other kind clamped, so a value that reads as INT64_MAX may be a larger uint64. */
static int write_int(JsonText *t, json_object *o) {
        char buf[1 + DECIMAL_U64_MAX], *q;
        int64_t v = json_object_get_int64(o);
        uint64_t u = v == INT64_MAX ? json_object_get_uint64(o) : v < 0 ? 0 - (uint64_t) v : (uint64_t) v;

        q = format_u64(u, buf + 1);
        if (v < 0)
                *--q = '-';
        return append(t, q, strlen(q));
}

/* What json-c writes itself (doubles), appended. */
static int write_by_json_c(JsonText *t, json_object *o) {
        const char *s;
        size_t n;

        s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        if (!s)
                return -ENOMEM;
        return append(t, s, n);
}

static int write_value(JsonText *t, json_object *o);

static int write_object(JsonText *t, json_object *o) {
        bool first = true;
        int r;

        r = append_literal(t, "{");
        json_object_object_foreach(o, key, value) {
                if (r >= 0 && !first)
                        r = append_literal(t, ",");
                first = false;
                /* json-c writes a key up to its first NUL. */
                if (r >= 0)
                        r = write_string(t, key, strlen(key));
                if (r >= 0)
                        r = append_literal(t, ":");
                if (r >= 0)
                        r = write_value(t, value);
                if (r < 0)
                        return r;
        }
        return r < 0 ? r : append_literal(t, "}");
}

static int write_array(JsonText *t, json_object *o) {
        const char *raw;
        size_t raw_len;
        int r;

        r = append_literal(t, "[");
        if (r >= 0 && json_raw_array_get(o, &raw, &raw_len, NULL))
                return append(t, raw, raw_len) < 0 ? -ENOMEM : append_literal(t, "]");
        for (size_t i = 0, n = json_object_array_length(o); r >= 0 && i < n; i++) {
                if (i > 0)
                        r = append_literal(t, ",");
                if (r >= 0)
                        r = write_value(t, json_object_array_get_idx(o, i));
        }
        return r < 0 ? r : append_literal(t, "]");
}

/* A NULL member or element is JSON's null, as json-c writes it. */
static int write_value(JsonText *t, json_object *o) {
        switch (json_object_get_type(o)) {
        case json_type_null:
                return append_literal(t, "null");
        case json_type_boolean:
                return json_object_get_boolean(o) ? append_literal(t, "true") : append_literal(t, "false");
        case json_type_int:
                return write_int(t, o);
        case json_type_string:
                return write_string(t, json_object_get_string(o), (size_t) json_object_get_string_len(o));
        case json_type_object:
                return write_object(t, o);
        case json_type_array:
                return write_array(t, o);
        default:
                return write_by_json_c(t, o);
        }
}

int json_text_append(JsonText *t, const char *s, size_t n) {
        assert(t);
        assert(s || n == 0);

        return n > 0 ? append(t, s, n) : 0;
}

int json_write_append(json_object *o, JsonText *t) {
        int r;

        assert(t);

        r = write_value(t, o);
        if (r < 0)
                return r;
        if (t->allocated == t->len && grow(t, 0) < 0)
                return -ENOMEM;
        t->data[t->len] = '\0';
        return 0;
}

int json_write(json_object *o, JsonText *t) {
        assert(t);

        t->len = 0;
        return json_write_append(o, t);
}
