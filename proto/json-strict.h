/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A strict RFC 8259 syntax check that runs before json-c builds objects. json-c, even with
 * JSON_TOKENER_STRICT, accepts single quotes, NaN/Infinity, raw control characters in
 * strings, lone surrogate escapes, duplicate keys (the last one silently wins) and keys with an
 * escaped NUL (cut short there), and a
 * Varlink peer must not be able to smuggle any of that past the IDL validation. Runs in:
 * worker, clients.
 */
#pragma once

#include "macro.h"

/* Checks that text[0..len) is exactly one JSON value (surrounding whitespace allowed) with
 * well-formed UTF-8, no nesting deeper than max_depth, at most max_values values (containers
 * and scalars alike, the top one included; SIZE_MAX: no limit), and returns the number of
 * object members it contains (for the duplicate-key check done by json_parse_strict()).
 * -EBADMSG on any violation, -ELOOP if nested too deep, -E2BIG if there are too many values
 * (whichever the text shows first). */
int json_strict_check(const char *text, size_t len, unsigned max_depth, size_t max_values, size_t *ret_n_members);

/* The value of the four hex digits at p (a \uXXXX escape's, either case), or -1. */
int json_unhex4(const unsigned char *p);

/* Strings the check found long and without a backslash, and so their own text, in the order of
 * the text: json_build_checked_full() copies them without looking for their end again (a 4 KiB
 * payload's 5.5 KB of base64 were scanned twice, 5k of the worker's user instructions per call,
 * BENCHMARKS.md). The first few string values only, not keys; a shorter string costs little to
 * scan. */
#define JSON_STRING_HINTS_MAX 4U
#define JSON_STRING_HINT_MIN 256U

typedef struct JsonStringHint {
        const char *start; /* the byte after its opening quote */
        size_t len;        /* up to its closing quote */
} JsonStringHint;

typedef struct JsonStringHints {
        JsonStringHint strings[JSON_STRING_HINTS_MAX];
        size_t n;
} JsonStringHints;

typedef enum JsonStrictFlags {
        /* An integer past int64 and uint64 is a number like any other (RFC 8259 leaves the
         * range to the reader), not refused: json_build_checked() keeps it as a double, never
         * clamped as json-c would, and json_parse_strict_full() takes numbers past a double's
         * range (1e400, infinite) too. Varlink messages are read so: such a number in an int
         * field is then refused by name, as any other value that is no int. Objects and arrays
         * only (json-c reads a bare scalar, and clamps). */
        JSON_STRICT_ANY_NUMBER = 1 << 0,
} JsonStrictFlags;

/* json_strict_check() with flags, noting such strings in *ret_hints (filled even when the text
 * is refused, where it must not be used). */
int json_strict_check_full(const char *text, size_t len, unsigned max_depth, size_t max_values, JsonStrictFlags flags,
                           size_t *ret_n_members, JsonStringHints *ret_hints);
