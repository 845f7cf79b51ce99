/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json-c strings that serialize a run of plain bytes at a time. json-c's own escaping looks at
 * each byte in a switch: for a 4 KiB payload's base64 (5.5 KB) that was a fifth of the worker's
 * CPU per reply and a quarter of a client's per call. The output is byte for byte json-c's,
 * with and without JSON_C_TO_STRING_NOSLASHESCAPE (tests/unit/test-json-escape.c holds it to
 * that on random strings). Runs in: worker, clients.
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* The longest escape: \u00xx. */
#define JSON_ESCAPE_MAX 6U

/* A json-c string of s[0..len) (NULs included) serialized by json_escape_serialize(). */
json_object *json_object_new_string_fast(const char *s, size_t len);

/* json-c's json_object_to_json_string_fn for a string object. */
int json_escape_serialize(json_object *o, struct printbuf *pb, int level, int flags);

/* The byte c as json-c's json_escape_str() writes it, into ret; returns its length. The short
 * escapes for \b \f \n \r \t " \\ (and / unless slash_plain), \u00xx in lower case for the other
 * controls, every other byte as it is (json-c leaves UTF-8 and 0x7f alone). */
size_t json_escape_byte(unsigned char c, bool slash_plain, char ret[static JSON_ESCAPE_MAX]);
