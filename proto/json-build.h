/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The json-c objects of a text json_strict_check() has accepted, built without json-c's
 * tokener, which takes each byte through its state machine one call-free step at a time and
 * copies every string twice: for a 4 KiB payload (5.5 KB of base64) that was a fifth of the
 * worker's CPU per call and a third of a client's per reply. A string without escapes is
 * copied once, straight from the text. The tree is the one json-c's tokener
 * (JSON_TOKENER_STRICT) builds: the same types (int64, uint64 above INT64_MAX, doubles that
 * keep their text), the same strings and member order (tests/unit/test-json-build.c compares
 * both on random texts); but an integer past uint64 or below int64 is a double here, where
 * json-c clamps it. Iterative, like the check: nesting costs no stack.
 * Runs in: worker, clients.
 */
#pragma once

#include <json-c/json.h>

#include "json-strict.h"
#include "macro.h"

/* text[0..len) must have passed json_strict_check() with a max_depth of at most max_depth, and
 * hold an object or an array (json_parse_strict() leaves a bare scalar to json-c). -ENOMEM, or
 * -EBADMSG. A text that never saw the check is read safely, within len, and refused for
 * brackets that do not match, a \u escape that is not one or half a surrogate pair, or a key
 * with a NUL, but its numbers, UTF-8 and duplicate keys are taken as they come: the check's. */
int json_build_checked(const char *text, size_t len, unsigned max_depth, json_object **ret);
/* The same, given where the check found long strings without escapes (json_strict_check_full()
 * on this very text): those are taken from the text without a second scan. */
int json_build_checked_full(const char *text, size_t len, unsigned max_depth, const JsonStringHints *hints,
                            json_object **ret);
