/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs of JSON string bytes that need no attention, found eight bytes at a time: a base64
 * payload is kilobytes of nothing else, and a loop that looks at each byte was most of what
 * the strict check, the parse and the serialization of a 4 KiB payload cost. Each function
 * returns the first byte in [p, end) that is not plain (or end); bytes past end are never read.
 * Runs in: worker, clients.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define JSON_RUN_ONES UINT64_C(0x0101010101010101)
#define JSON_RUN_HIGHS UINT64_C(0x8080808080808080)

/* Nonzero if some byte of x is zero (exact as a whole, not per byte). */
static inline uint64_t json_run_has_zero(uint64_t x) {
        return (x - JSON_RUN_ONES) & ~x & JSON_RUN_HIGHS;
}

static inline uint64_t json_run_has_byte(uint64_t x, unsigned char c) {
        return json_run_has_zero(x ^ (JSON_RUN_ONES * c));
}

/* Nonzero if some byte of x is below 0x20 (exact as a whole, for any x). */
static inline uint64_t json_run_has_control(uint64_t x) {
        return (x - JSON_RUN_ONES * 0x20) & ~x & JSON_RUN_HIGHS;
}

static inline uint64_t json_run_load(const unsigned char *p) {
        uint64_t x;

        memcpy(&x, p, sizeof(x));
        return x;
}

/* Printable ASCII other than '"' and '\\': what the strict check passes without a look
 * (everything else is an escape, the end, a control character or UTF-8 to validate). */
static inline const unsigned char *json_run_ascii(const unsigned char *p, const unsigned char *end) {
        while (end - p >= 8) {
                uint64_t x = json_run_load(p);

                if ((x & JSON_RUN_HIGHS) || json_run_has_control(x) || json_run_has_byte(x, '"') ||
                    json_run_has_byte(x, '\\'))
                        break;
                p += 8;
        }
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
                p++;
        return p;
}

/* Bytes that json-c writes as they are: all but controls, '"', '\\' and, unless slash_plain,
 * '/' (bytes from 0x80 up too: json-c leaves UTF-8 alone). */
static inline const unsigned char *json_run_unescaped(const unsigned char *p, const unsigned char *end,
                                                      bool slash_plain) {
        while (end - p >= 8) {
                uint64_t x = json_run_load(p);

                if (json_run_has_control(x) || json_run_has_byte(x, '"') || json_run_has_byte(x, '\\') ||
                    (!slash_plain && json_run_has_byte(x, '/')))
                        break;
                p += 8;
        }
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && (slash_plain || *p != '/'))
                p++;
        return p;
}
