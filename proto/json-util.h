/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* json-c helpers: cleanup, strict bounded parsing, typed field access. Runs in: worker, clients. */
#pragma once

#include <json-c/json.h>

#include "json-strict.h"
#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(json_object *, json_object_put, NULL);
DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(json_tokener *, json_tokener_free, NULL);
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Parses exactly one JSON value occupying text[0..len) (trailing whitespace allowed), with
 * strict RFC 8259 syntax (see json-strict.h), no duplicate keys, finite numbers only, at
 * most max_depth levels of nesting and at most max_values values (SIZE_MAX: no limit). Objects
 * and arrays are built by json_build_checked() (json-build.h); `tok`, reused across calls so a
 * connection does not allocate a tokener per message, reads a bare scalar (but null, for which
 * json-c has no object: -EBADMSG). Returns
 * -EBADMSG on any syntax error, -ELOOP when nested deeper than max_depth, -E2BIG
 * with too many values (checked before json-c allocates anything), -EMSGSIZE past 2 GiB. */
int json_parse_strict(json_tokener *tok, unsigned max_depth, size_t max_values, const char *text, size_t len,
                      json_object **ret);
/* The same with flags (json-strict.h): JSON_STRICT_ANY_NUMBER for a Varlink message, where a
 * number no int64, uint64 or finite double holds is a double (in an object or array). */
int json_parse_strict_full(json_tokener *tok, unsigned max_depth, size_t max_values, JsonStrictFlags flags,
                           const char *text, size_t len, json_object **ret);

/* Creates a tokener with an explicit depth limit and the strict flags, for json_parse_strict()
 * (which checks every byte, UTF-8 included, before json-c sees the text). */
int json_tokener_new_strict(unsigned depth, json_tokener **ret);

/* Adds key=value to obj, taking ownership of value even on failure. A NULL value is -ENOMEM:
 * it is what a json_object_new_*() that failed returns, and json-c would send it as null. */
int json_object_add(json_object *obj, const char *key, json_object *value);
/* A null on purpose: key=null. */
int json_object_add_null(json_object *obj, const char *key);
/* key=s as a string, or key=null where s is NULL; -ENOMEM only if the string cannot be made. */
int json_object_add_string_or_null(json_object *obj, const char *key, const char *s);

/* As json_object_add() for a key that is a string literal (the "" makes anything else a compile
 * error): json-c keeps the pointer instead of a copy of the key, one allocation fewer. */
#define json_object_add_literal(obj, key, value) json_object_add_constant_key(obj, "" key "", value)
/* Behind json_object_add_literal(): key must outlive obj (static storage). */
int json_object_add_constant_key(json_object *obj, const char *key, json_object *value);

/* Appends value to array, taking ownership of it even on failure; a NULL value is -ENOMEM, as
 * with json_object_add(). */
int json_array_append(json_object *array, json_object *value);

/* Typed getters returning NULL/default when the key is missing or has another type. */
const char *json_get_string(json_object *obj, const char *key);
json_object *json_get_array(json_object *obj, const char *key);
