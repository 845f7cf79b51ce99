/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json-c trees serialized into a buffer the caller keeps, byte for byte as
 * json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), the
 * Varlink wire's form. json-c's own serializer gives each message a new print buffer, grown a
 * doubling at a time, and each integer an snprintf(): for a guest request's 116-byte reply that
 * was 5k of the worker's ~77k user instructions per 4 KiB write (BENCHMARKS.md). Strings are
 * escaped a run at a time, as json-escape.c does; doubles, rare in our messages, are written by
 * json-c itself (their formatting, kept text included, is its own).
 *
 * Byte for byte json-c's for objects whose serializer is json-c's own, json_escape_serialize() or
 * a raw array's (json-raw.h): the only ones tsmd and libtsm make (json-c gives no way to see another set with
 * json_object_set_serializer()). tests/unit/test-json-write.c and tests/fuzz/fuzz-json-write.c
 * hold it to json-c's output. Runs in: worker, clients.
 */
#pragma once

#include <json-c/json.h>

#include "macro.h"

typedef struct JsonText {
        char *data; /* NUL-terminated after a successful json_write() (the NUL not in len) */
        size_t len;
        size_t allocated;
} JsonText;

void json_text_done(JsonText *t);
/* Frees the buffer if it grew beyond keep bytes: one large message must not hold its memory
 * for good. */
void json_text_trim(JsonText *t, size_t keep);

/* Replaces t's text with o serialized (NULL: "null"). -ENOMEM: t's text is undefined. */
int json_write(json_object *o, JsonText *t);
/* The same, appended to t's text. */
int json_write_append(json_object *o, JsonText *t);
/* Appends s[0..n) to t's text (not NUL-terminated after it). */
int json_text_append(JsonText *t, const char *s, size_t n);
