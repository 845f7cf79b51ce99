/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The largest answer a method that acts can give, for varlink_server_set_reply_bound(): each
 * answer is built at its longest (every int an int64 at its longest, every string at the most
 * what bounds it allows) and measured as the server sends it. Runs in: worker.
 */
#pragma once

#include <json-c/json.h>

/* Raises *max to the size of a reply with these parameters (taken; NULL: {}) as sent. */
int reply_bound_reply(json_object *parameters, size_t *max);
/* Raises *max to the size of error with up to two parameters (values taken; k2 may be NULL). */
int reply_bound_error(const char *error, const char *k1, json_object *v1, const char *k2, json_object *v2,
                      size_t *max);
/* The longest int: an int64's. */
json_object *reply_bound_int(void);
/* A string of n characters, standing for any of at most n. */
json_object *reply_bound_string(size_t n);
/* The same of n c's: '"' for text that may need escaping ('"' and '\\' take two bytes, what
 * may take more is replaced before it is sent). */
json_object *reply_bound_string_of(size_t n, char c);
/* The longest of a NULL-terminated list of strings, as a JSON string. */
json_object *reply_bound_longest(const char *const *strings);
/* Raises *max to what every method may answer whatever it does: io.tsmd.System (a handler
 * that failed with an errno) and org.varlink.service.PermissionDenied. */
int reply_bound_common(size_t *max);
