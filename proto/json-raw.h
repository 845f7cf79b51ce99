/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON arrays held as their elements' text: a json-c array object (empty to json-c) whose
 * serializer writes the text, as json_write() does. For many elements built in one place and
 * only sent: an audit query's 10000 records as json-c trees took 33 MB (3.3 KB a record of
 * ~320 bytes), four queries at once 140 MB of a query thread's malloc arenas that stayed after
 * they were answered; as text they take what they will take on the wire. Runs in: worker, tests.
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "json-write.h"

/* An array of n_elements whose text (each element serialized, separated by commas, no
 * brackets) is elements': its buffer is taken on success (elements left empty). */
int json_raw_array_new(JsonText *elements, size_t n_elements, json_object **ret);

/* Whether o is such an array, and then its elements' text and their number. */
bool json_raw_array_get(json_object *o, const char **ret_text, size_t *ret_len, size_t *ret_n);

/* The elements as a json-c tree (a new array), for the few who look inside. -EBADMSG if the
 * text does not parse. */
int json_raw_array_parse(json_object *o, json_object **ret);

/* Calls func on each element in turn, parsed on its own (what the tree of all would cost, one
 * element at a time: a reply's check in test builds): its first negative return ends the walk
 * and is returned; -EBADMSG if the text does not parse. */
typedef int (*JsonRawElementFunc)(json_object *element, size_t index, void *userdata);
int json_raw_array_foreach(json_object *o, JsonRawElementFunc func, void *userdata);
