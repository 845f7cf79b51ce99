/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs of JSON string bytes that need no attention, found sixteen bytes at a step (GCC vector
 * extensions: SSE2 on x86-64, NEON on arm64, plain integers elsewhere): a base64 payload is
 * kilobytes of nothing else, and a loop that looked at each byte was most of what the strict
 * check, the parse and the serialization of a 4 KiB payload cost. Each function returns the
 * first byte in [p, end) that is not plain (or end); bytes past end are never read.
 * Runs in: worker, clients.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef uint8_t json_run_v16 __attribute__((vector_size(16)));

static inline json_run_v16 json_run_load(const unsigned char *p) {
        json_run_v16 v;

        memcpy(&v, p, sizeof(v));
        return v;
}

/* A comparison's lanes are all ones or zero: any set? */
static inline bool json_run_any(json_run_v16 m) {
        uint64_t h[2];

        memcpy(h, &m, sizeof(h));
        return (h[0] | h[1]) != 0;
}

/* Printable ASCII other than '"' and '\\': what the strict check passes without a look
 * (everything else is an escape, the end, a control character or UTF-8 to validate). */
static inline const unsigned char *json_run_ascii(const unsigned char *p, const unsigned char *end) {
        while (end - p >= 16) {
                json_run_v16 v = json_run_load(p);

                /* v - 0x20 wraps: above 0x5f is below 0x20 or from 0x80 up. */
                if (json_run_any((json_run_v16) ((json_run_v16) (v - 0x20) > 0x5f) | (json_run_v16) (v == '"') |
                                 (json_run_v16) (v == '\\')))
                        break;
                p += 16;
        }
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
                p++;
        return p;
}

/* Bytes that json-c writes as they are: all but controls, '"', '\\' and, unless slash_plain,
 * '/' (bytes from 0x80 up too: json-c leaves UTF-8 alone). */
static inline const unsigned char *json_run_unescaped(const unsigned char *p, const unsigned char *end,
                                                      bool slash_plain) {
        unsigned char slash = slash_plain ? '"' : '/'; /* '"' stops the run anyway */

        while (end - p >= 16) {
                json_run_v16 v = json_run_load(p);

                if (json_run_any((json_run_v16) (v < 0x20) | (json_run_v16) (v == '"') | (json_run_v16) (v == '\\') |
                                 (json_run_v16) (v == slash)))
                        break;
                p += 16;
        }
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && (slash_plain || *p != '/'))
                p++;
        return p;
}
