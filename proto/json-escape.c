/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* json-c's string escaping, a run at a time. Runs in: worker, clients. */

#include <json-c/printbuf.h>

#include "json-escape.h"
#include "json-run.h"
#include "macro.h"

size_t json_escape_byte(unsigned char c, bool slash_plain, char ret[static JSON_ESCAPE_MAX]) {
        static const char hex[] = "0123456789abcdef";
        char e;

        switch (c) {
        case '\b': e = 'b'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        case '\f': e = 'f'; break;
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '/':
                if (slash_plain) {
                        ret[0] = '/';
                        return 1;
                }
                e = '/';
                break;
        default:
                if (c >= 0x20) {
                        ret[0] = (char) c;
                        return 1;
                }
                memcpy(ret, (const char[]) { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf] }, 6);
                return 6;
        }
        ret[0] = '\\';
        ret[1] = e;
        return 2;
}

int json_escape_serialize(json_object *o, struct printbuf *pb, int level, int flags) {
        const unsigned char *p = (const unsigned char *) json_object_get_string(o);
        const unsigned char *end = p + json_object_get_string_len(o);
        bool slash_plain = flags & JSON_C_TO_STRING_NOSLASHESCAPE;
        char e[JSON_ESCAPE_MAX];

        (void) level;
        if (printbuf_memappend(pb, "\"", 1) < 0)
                return -1;
        for (;;) {
                const unsigned char *run = json_run_unescaped(p, end, slash_plain);

                if (run > p && printbuf_memappend(pb, (const char *) p, (int) (run - p)) < 0)
                        return -1;
                if (run >= end)
                        break;
                if (printbuf_memappend(pb, e, (int) json_escape_byte(*run, slash_plain, e)) < 0)
                        return -1;
                p = run + 1;
        }
        return printbuf_memappend(pb, "\"", 1) < 0 ? -1 : 0;
}

json_object *json_object_new_string_fast(const char *s, size_t len) {
        json_object *o;

        if (len > INT_MAX)
                return NULL;
        o = json_object_new_string_len(s, (int) len);
        if (o)
                json_object_set_serializer(o, json_escape_serialize, NULL, NULL);
        return o;
}
