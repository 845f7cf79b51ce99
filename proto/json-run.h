/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs of JSON string bytes that need no attention, found sixteen bytes at a step (GCC vector
 * extensions: SSE2 on x86-64, NEON on arm64, plain integers elsewhere): a base64 payload is
 * kilobytes of nothing else, and a loop that looked at each byte was most of what the strict
 * check, the parse and the serialization of a 4 KiB payload cost. Two vectors are tested at a
 * step, together, while thirty-two bytes are left: what a step costs beyond its compares is the
 * test and the branch (a quarter of the worker's user instructions for a 4 KiB write went to
 * these loops, BENCHMARKS.md). Each function returns the first byte in [p, end) that is not plain
 * (or end); bytes past end are never read.
 * Runs in: worker, clients.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef uint8_t json_run_v16 __attribute__((vector_size(16)));
typedef int8_t json_run_s16 __attribute__((vector_size(16)));

static inline json_run_v16 json_run_load(const unsigned char *p) {
        json_run_v16 v;

        memcpy(&v, p, sizeof(v));
        return v;
}

/* A comparison's lanes are all ones or zero: any set? SSE2 gathers the lanes' top bits in one
 * instruction (pmovmskb); elsewhere two 64-bit halves. */
static inline bool json_run_any(json_run_v16 m) {
#if defined(__SSE2__)
        return _mm_movemask_epi8((__m128i) m) != 0;
#else
        uint64_t h[2];

        memcpy(h, &m, sizeof(h));
        return (h[0] | h[1]) != 0;
#endif
}

/* Whether the sixteen bytes at *p hold a stop (m: their lanes that are one). With SSE2, *p moves
 * to the first, found from the lanes' bits, so that the byte loop after does not walk up to
 * fifteen bytes again (every string's closing quote is found so); elsewhere the byte loop
 * finds it. */
static inline bool json_run_stop(json_run_v16 m, const unsigned char **p) {
#if defined(__SSE2__)
        unsigned bits = (unsigned) _mm_movemask_epi8((__m128i) m);

        if (bits == 0)
                return false;
        *p += __builtin_ctz(bits);
        return true;
#else
        return json_run_any(m);
#endif
}

/* The lanes of v that json_run_ascii() stops at. As signed bytes, those below 0x20 are the
 * controls and those from 0x80 up: one compare. */
static inline json_run_v16 json_run_ascii_stops(json_run_v16 v) {
        return (json_run_v16) ((json_run_s16) v < 0x20) | (json_run_v16) (v == '"') | (json_run_v16) (v == '\\');
}

/* Printable ASCII other than '"' and '\\': what the strict check passes without a look
 * (everything else is an escape, the end, a control character or UTF-8 to validate). */
static inline const unsigned char *json_run_ascii(const unsigned char *p, const unsigned char *end) {
        while (end - p >= 32) {
                if (json_run_any(json_run_ascii_stops(json_run_load(p)) | json_run_ascii_stops(json_run_load(p + 16))))
                        break;
                p += 32;
        }
        while (end - p >= 16) {
                if (json_run_stop(json_run_ascii_stops(json_run_load(p)), &p))
                        break;
                p += 16;
        }
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
                p++;
        return p;
}

/* The lanes of v that json_run_unescaped() stops at. */
static inline json_run_v16 json_run_unescaped_stops(json_run_v16 v, unsigned char slash) {
        return (json_run_v16) (v < 0x20) | (json_run_v16) (v == '"') | (json_run_v16) (v == '\\') |
               (json_run_v16) (v == slash);
}

/* Bytes that json-c writes as they are: all but controls, '"', '\\' and, unless slash_plain,
 * '/' (bytes from 0x80 up too: json-c leaves UTF-8 alone). */
static inline const unsigned char *json_run_unescaped(const unsigned char *p, const unsigned char *end,
                                                      bool slash_plain) {
        unsigned char slash = slash_plain ? '"' : '/'; /* '"' stops the run anyway */

        while (end - p >= 32) {
                if (json_run_any(json_run_unescaped_stops(json_run_load(p), slash) |
                                 json_run_unescaped_stops(json_run_load(p + 16), slash)))
                        break;
                p += 32;
        }
        while (end - p >= 16) {
                if (json_run_stop(json_run_unescaped_stops(json_run_load(p), slash), &p))
                        break;
                p += 16;
        }
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && (slash_plain || *p != '/'))
                p++;
        return p;
}
